//! openraft type configuration (ids, voters, log payload, apply result) and the RPC codec.

use std::fmt;
use std::io::Cursor;

use baton_proto::v1::RaftPayload;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{self, CodecError};
use crate::rules::lease::{Command, LeaseError, Outcome};

/// A voter's stable numeric id, from config. Never reused for another voter.
pub type NodeId = u64;

/// What the cluster remembers of a voter: its name and where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterNode {
    pub name: String,
    /// `host:port` of the voter's gRPC listener.
    pub address: String,
}

impl fmt::Display for VoterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

/// What applying one log entry produced. Entries without a lease command
/// (blank, membership) apply to `Ok(Outcome::Done { .. })`.
pub type Applied = Result<Outcome, LeaseError>;

openraft::declare_raft_types!(
    /// baton's raft: lease commands in the log, voters as nodes.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = VoterNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The raft handle with baton's types.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry with baton's types.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id with baton's node id.
pub type LogId = openraft::LogId<NodeId>;
/// Membership as stored in the log and in snapshots.
pub type StoredMembership = openraft::StoredMembership<NodeId, VoterNode>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;
/// What a raft write returns.
pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;

/// Response metadata with which a voter says it reads `Command::Batch`
/// entries (every raft RPC answer of this version carries it). The leader
/// groups commands only once every other voter has said so, so that a
/// voter of an older version, which cannot decode a batch, never stalls on
/// one during a rolling upgrade.
pub const READS_BATCHES: &str = "x-baton-reads-batches";

/// A raft RPC message (openraft's own serde types) as sent between voters:
/// the one encoding for both ends, `network` (client) and `service` (server).
pub fn to_payload<T: Serialize>(message: &T) -> Result<RaftPayload, CodecError> {
    codec::encode(message).map(|data| RaftPayload { data })
}

/// The message in a received [`RaftPayload`].
pub fn from_payload<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, CodecError> {
    codec::decode(&payload.data)
}
