//! What baton's fuzz targets share: their input formats, the raft types by
//! name, the round-trip property, and the lease state's invariants.
//!
//! The targets (`fuzz_targets/`) call baton through `baton::fuzzing`, which
//! re-exports the code that reads outside bytes. `seeds` writes the
//! hand-made seeds of `corpus/` (`BATON_FUZZ_WRITE_SEEDS=1 cargo test`).

use std::collections::BTreeSet;

use baton::fuzzing::{decode, encode, LeaseState};
use baton_proto::v1 as pb;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod seeds;

/// The raft records and messages baton stores and sends, by name.
pub mod raft {
    use baton::fuzzing::{NodeId, TypeConfig, VoterNode};
    use openraft::error::{InstallSnapshotError, RaftError};

    pub type Entry = openraft::Entry<TypeConfig>;
    pub type LogId = openraft::LogId<NodeId>;
    pub type Vote = openraft::Vote<NodeId>;
    pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, VoterNode>;
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
    pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
    /// The replies as `raft::network` decodes them: the peer's result.
    pub type AppendEntriesReply =
        Result<openraft::raft::AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
    pub type VoteReply = Result<openraft::raft::VoteResponse<NodeId>, RaftError<NodeId>>;
    pub type InstallSnapshotReply = Result<
        openraft::raft::InstallSnapshotResponse<NodeId>,
        RaftError<NodeId, InstallSnapshotError>,
    >;
}

/// `config`: the fragments of one load, in merge order, split at this byte
/// (TOML text never holds a NUL).
pub const FRAGMENT_SEPARATOR: u8 = 0;

/// `raft_payloads`: what the byte after the kind byte is read as. Records
/// are what redb holds (`raft::storage`), read by `codec::decode`; RPCs
/// arrive as a protobuf `RaftPayload`, read by `types::from_payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftKind {
    /// Record: a log entry.
    Entry,
    /// Record: the `vote` marker.
    Vote,
    /// Record: the `committed` marker.
    Committed,
    /// Record: the `last_purged` marker.
    LastPurged,
    /// Record: the stored snapshot's meta.
    SnapshotMeta,
    /// Record: the stored snapshot's data (also what an installed snapshot decodes to).
    SnapshotData,
    /// RPC request: AppendEntries.
    AppendEntries,
    /// RPC request: Vote.
    VoteRequest,
    /// RPC request: one InstallSnapshot chunk.
    InstallSnapshot,
    /// RPC reply to AppendEntries.
    AppendEntriesReply,
    /// RPC reply to Vote.
    VoteReply,
    /// RPC reply to InstallSnapshot.
    InstallSnapshotReply,
    /// RPC request: PreVote (baton's own, `raft::election`).
    PreVote,
    /// RPC reply to PreVote.
    PreVoteReply,
}

impl RaftKind {
    pub const ALL: [RaftKind; 14] = [
        RaftKind::Entry,
        RaftKind::Vote,
        RaftKind::Committed,
        RaftKind::LastPurged,
        RaftKind::SnapshotMeta,
        RaftKind::SnapshotData,
        RaftKind::AppendEntries,
        RaftKind::VoteRequest,
        RaftKind::InstallSnapshot,
        RaftKind::AppendEntriesReply,
        RaftKind::VoteReply,
        RaftKind::InstallSnapshotReply,
        RaftKind::PreVote,
        RaftKind::PreVoteReply,
    ];

    pub fn from_byte(byte: u8) -> RaftKind {
        Self::ALL[usize::from(byte) % Self::ALL.len()]
    }

    pub fn byte(self) -> u8 {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0) as u8
    }
}

/// `requests`: calls as they reach the services, in order, on one leader.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Script {
    /// `lease.default_max_holders` (the config keeps it in 1..=1000; taken modulo).
    #[prost(uint32, tag = "1")]
    pub default_max_holders: u32,
    #[prost(message, repeated, tag = "2")]
    pub calls: Vec<Call>,
}

/// One call: the request, the leader's clock when it proposes, the caller's name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Call {
    #[prost(uint64, tag = "1")]
    pub now: u64,
    #[prost(string, tag = "2")]
    pub by: String,
    #[prost(
        oneof = "Request",
        tags = "3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15"
    )]
    pub request: Option<Request>,
}

/// Every Lease and Admin request, as the generated code decodes it; and the
/// leader's own `Expire`, which moves time for held leases.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    #[prost(message, tag = "3")]
    Acquire(pb::AcquireRequest),
    #[prost(message, tag = "4")]
    Wait(pb::WaitRequest),
    #[prost(message, tag = "5")]
    KeepAlive(pb::KeepAliveRequest),
    #[prost(message, tag = "6")]
    Release(pb::ReleaseRequest),
    #[prost(message, tag = "7")]
    Status(pb::StatusRequest),
    #[prost(message, tag = "8")]
    Watch(pb::WatchRequest),
    #[prost(message, tag = "9")]
    Pause(pb::PauseRequest),
    #[prost(message, tag = "10")]
    Resume(pb::ResumeRequest),
    #[prost(message, tag = "11")]
    ForceRelease(pb::ForceReleaseRequest),
    #[prost(message, tag = "12")]
    SetMax(pb::SetMaxRequest),
    #[prost(message, tag = "13")]
    AddVoter(pb::AddVoterRequest),
    #[prost(message, tag = "14")]
    RemoveVoter(pb::RemoveVoterRequest),
    #[prost(message, tag = "15")]
    Expire(Expire),
}

/// The leader's `Expire` entry (hold timeout), not a request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Expire {
    #[prost(uint64, optional, tag = "1")]
    pub hold_timeout_ms: Option<u64>,
}

/// `snapshot_chunks`: InstallSnapshot payloads as one voter receives them, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunks {
    #[prost(message, repeated, tag = "1")]
    pub payloads: Vec<pb::RaftPayload>,
}

/// What decodes re-encodes, and decodes again to the same bytes:
/// encode(decode(encode(x))) == encode(x). Byte equality, so it needs no
/// `PartialEq` (openraft's messages have none).
pub fn assert_round_trip<T: Serialize + DeserializeOwned>(value: &T) {
    let first = encode(value).expect("a decoded value encodes");
    let again: T = decode(&first).expect("an encoded value decodes");
    let second = encode(&again).expect("a decoded value encodes");
    assert_eq!(first, second, "decode(encode(x)) != x");
}

/// What must hold after every apply that started from the empty state
/// (`before` is the state before it): the invariants `rules::lease`'s
/// proptest checks, where they are cheap.
pub fn assert_lease_invariants(before: &LeaseState, after: &LeaseState) {
    assert!(
        after.last_token >= before.last_token,
        "fencing token went back"
    );
    let mut sessions = BTreeSet::new();
    for (name, g) in &after.groups {
        assert!(g.max_holders >= 1, "group {name} has max 0");
        let had = before.groups.get(name).map_or(0, |b| b.holders.len());
        assert!(
            g.holders.len() <= had.max(g.max_holders as usize),
            "group {name}: {} holders, max {}",
            g.holders.len(),
            g.max_holders
        );
        if after.pause_reason(name).is_none() {
            assert!(
                g.queue.is_empty() || g.holders.len() >= g.max_holders as usize,
                "group {name} has a free slot and waiters"
            );
        }
        let mut queued = BTreeSet::new();
        for w in &g.queue {
            assert!(queued.insert(&w.holder), "{} queued twice", w.holder);
            assert!(g.grant(&w.holder).is_none(), "{} holds and waits", w.holder);
            sessions.insert((name.clone(), w.holder.clone()));
        }
        let mut holding = BTreeSet::new();
        for grant in &g.holders {
            assert_eq!(&grant.group, name);
            assert!(
                holding.insert(&grant.holder),
                "{} holds twice",
                grant.holder
            );
            assert!(grant.token <= after.last_token, "token above last_token");
            if !grant.claimed {
                sessions.insert((name.clone(), grant.holder.clone()));
            }
        }
        assert!(
            g.holders.windows(2).all(|w| w[0].token < w[1].token),
            "group {name}: grants out of token order"
        );
    }
    let listed: BTreeSet<(String, String)> =
        after.sessions().map(|w| (w.group, w.holder)).collect();
    assert_eq!(listed, sessions, "sessions() disagrees with the state");
}
