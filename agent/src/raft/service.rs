//! The server side of the raft RPCs: decodes a peer's request and hands it to openraft.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use baton_proto::v1::raft_server::Raft as RaftRpc;
use baton_proto::v1::RaftPayload;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::locks::LockOrRecover;
use crate::raft::election::{self, ElectionTiming, PreVoteRequest};
use crate::raft::types::{from_payload, to_payload, NodeId, Raft, TypeConfig, READS_BATCHES};
use crate::rules::limits::MAX_SNAPSHOT_BYTES;

/// Whether a voter takes raft traffic yet. A voter that starts without
/// state keeps it shut while it asks the cluster what it is
/// (`server::bootstrap`): no entry or vote reaches it before it knows it
/// may take them.
#[derive(Clone, Default)]
pub struct RaftGate(Arc<AtomicBool>);

impl RaftGate {
    pub fn new(open: bool) -> Self {
        Self(Arc::new(AtomicBool::new(open)))
    }

    pub fn open(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn check(&self) -> Result<(), Status> {
        if self.0.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Status::unavailable(
                "this voter has no state yet and is asking the cluster whether it may join",
            ))
        }
    }
}

/// gRPC `Raft` service of a voter.
pub struct RaftService {
    raft: Raft,
    timing: ElectionTiming,
    gate: RaftGate,
    /// The snapshot being received: its id and the end of what arrived.
    receiving: Mutex<Option<(String, u64)>>,
}

impl RaftService {
    pub fn new(raft: Raft, timing: ElectionTiming, gate: RaftGate) -> Self {
        Self {
            raft,
            timing,
            gate,
            receiving: Mutex::new(None),
        }
    }

    fn receiving(&self) -> std::sync::MutexGuard<'_, Option<(String, u64)>> {
        self.receiving.lock_or_recover()
    }
}

/// A snapshot chunk must continue what arrived (no gaps: the buffer
/// grows only as far as data really came) and stay under the snapshot
/// limit; a chunk at offset 0 starts a snapshot. `receiving` is the
/// snapshot being received (its id and the end of what openraft took).
/// Returns what `receiving` becomes once openraft has taken this chunk:
/// the caller records it only then (see [`taken`]), so a chunk openraft
/// ignores (an older vote) never counts as arrived.
pub fn check_chunk(
    receiving: &Option<(String, u64)>,
    request: &InstallSnapshotRequest<TypeConfig>,
) -> Result<(String, u64), Status> {
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
    Ok((id.clone(), received.max(end)))
}

/// Whether openraft took a chunk: it answers with its own vote, which
/// equals the request's when it accepted the sender as leader and wrote
/// the chunk, and is greater when it ignored a stale one.
pub fn taken(
    request_vote: &Vote<NodeId>,
    answer: &Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
) -> bool {
    matches!(answer, Ok(response) if response.vote == *request_vote)
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    from_payload(request.get_ref())
        .map_err(|e| Status::invalid_argument(format!("malformed raft request: {e}")))
}

/// Encodes an answer, saying that this voter reads batches (`READS_BATCHES`).
fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let mut response = to_payload(value)
        .map(Response::new)
        .map_err(|e| Status::internal(format!("cannot encode raft response: {e}")))?;
    response
        .metadata_mut()
        .insert(READS_BATCHES, MetadataValue::from_static("1"));
    Ok(response)
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.gate.check()?;
        let result = self.raft.append_entries(decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.gate.check()?;
        let result = self.raft.vote(decode(request)?).await;
        encode(&result)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.gate.check()?;
        let request: PreVoteRequest = decode(request)?;
        let answer = election::answer(&self.raft, &self.timing, &request).await;
        encode(&answer)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.gate.check()?;
        let request: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        let arrived = check_chunk(&self.receiving(), &request)?;
        let vote = request.vote;
        let result = self.raft.install_snapshot(request).await;
        if taken(&vote, &result) {
            *self.receiving() = Some(arrived);
        }
        encode(&result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{SnapshotMeta, StoredMembership};

    fn chunk(
        id: &str,
        vote: Vote<NodeId>,
        offset: u64,
        len: usize,
    ) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote,
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: id.to_string(),
            },
            offset,
            data: vec![7; len],
            done: false,
        }
    }

    #[test]
    fn a_chunk_counts_only_once_openraft_took_it() {
        let leader = Vote::new_committed(3, 1);
        let stale = Vote::new_committed(2, 2);
        let mut receiving = None;

        let first = chunk("s", leader, 0, 10);
        let arrived = check_chunk(&receiving, &first).unwrap();
        assert!(taken(
            &leader,
            &Ok(InstallSnapshotResponse { vote: leader })
        ));
        receiving = Some(arrived);

        // A stale sender's chunk passes the shape check but openraft answers
        // with its newer vote: it is not counted, so the next chunk may not
        // start past what openraft holds.
        let ignored = chunk("s", stale, 10, 10);
        assert!(check_chunk(&receiving, &ignored).is_ok());
        assert!(!taken(
            &stale,
            &Ok(InstallSnapshotResponse { vote: leader })
        ));
        let past = chunk("s", leader, 20, 10);
        let refused = check_chunk(&receiving, &past).unwrap_err();
        assert!(refused.message().contains("gap"), "{refused:?}");
        assert_eq!(
            check_chunk(&receiving, &chunk("s", leader, 10, 10)).unwrap(),
            ("s".to_string(), 20)
        );
    }

    #[test]
    fn chunks_past_the_limit_or_of_an_unstarted_snapshot_are_refused() {
        let vote = Vote::new_committed(1, 1);
        let too_far = chunk("s", vote, MAX_SNAPSHOT_BYTES, 1);
        assert!(check_chunk(&None, &too_far).is_err());
        let overflow = chunk("s", vote, u64::MAX, 1);
        assert!(check_chunk(&None, &overflow).is_err());
        assert!(check_chunk(&None, &chunk("s", vote, 5, 1)).is_err());
        let other = Some(("t".to_string(), 100));
        assert!(check_chunk(&other, &chunk("s", vote, 5, 1)).is_err());
    }
}
