//! The server side of the raft RPCs: decodes a peer's request and hands it to openraft.

use std::sync::Mutex;

use baton_proto::v1::raft_server::Raft as RaftRpc;
use baton_proto::v1::RaftPayload;
use openraft::raft::InstallSnapshotRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::raft::election::{self, ElectionTiming, PreVoteRequest};
use crate::raft::types::{from_payload, to_payload, Raft, TypeConfig};
use crate::rules::limits::MAX_SNAPSHOT_BYTES;

/// gRPC `Raft` service of a voter.
pub struct RaftService {
    raft: Raft,
    timing: ElectionTiming,
    /// The snapshot being received: its id and the end of what arrived.
    receiving: Mutex<Option<(String, u64)>>,
}

impl RaftService {
    pub fn new(raft: Raft, timing: ElectionTiming) -> Self {
        Self {
            raft,
            timing,
            receiving: Mutex::new(None),
        }
    }

    fn check_chunk(&self, request: &InstallSnapshotRequest<TypeConfig>) -> Result<(), Status> {
        let mut receiving = self.receiving.lock().unwrap_or_else(|p| p.into_inner());
        check_chunk(&mut receiving, request)
    }
}

/// A snapshot chunk must continue what arrived (no gaps: the buffer
/// grows only as far as data really came) and stay under the snapshot
/// limit; a chunk at offset 0 starts a snapshot. `receiving` is the
/// snapshot being received (its id and the end of what arrived).
pub fn check_chunk(
    receiving: &mut Option<(String, u64)>,
    request: &InstallSnapshotRequest<TypeConfig>,
) -> Result<(), Status> {
    let id = &request.meta.snapshot_id;
    let len = request.data.len() as u64;
    let end = request
        .offset
        .checked_add(len)
        .filter(|end| *end <= MAX_SNAPSHOT_BYTES);
    let Some(end) = end else {
        return Err(Status::invalid_argument(format!(
            "snapshot chunk at offset {} ({len} bytes) goes past the snapshot limit of {MAX_SNAPSHOT_BYTES} bytes",
            request.offset
        )));
    };
    let received = match receiving.as_ref() {
        _ if request.offset == 0 => 0,
        Some((current, received)) if current == id => *received,
        _ => {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at offset {} of snapshot {id}, which was not started",
                request.offset
            )))
        }
    };
    if request.offset > received {
        return Err(Status::invalid_argument(format!(
            "snapshot chunk at offset {} leaves a gap: {received} bytes arrived so far",
            request.offset
        )));
    }
    *receiving = Some((id.clone(), received.max(end)));
    Ok(())
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    from_payload(request.get_ref())
        .map_err(|e| Status::invalid_argument(format!("malformed raft request: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    to_payload(value)
        .map(Response::new)
        .map_err(|e| Status::internal(format!("cannot encode raft response: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.append_entries(decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.vote(decode(request)?).await;
        encode(&result)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let request: PreVoteRequest = decode(request)?;
        let answer = election::answer(&self.raft, &self.timing, &request).await;
        encode(&answer)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let request: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        self.check_chunk(&request)?;
        let result = self.raft.install_snapshot(request).await;
        encode(&result)
    }
}
