//! What baton's fuzz targets share: their input formats, the raft types by
//! name, the round-trip property, and the lease state's invariants.
//!
//! The targets (`fuzz_targets/`) call baton through `baton::fuzzing`, which
//! re-exports the code that reads outside bytes. `seeds` writes the
//! hand-made seeds of `corpus/` (`BATON_FUZZ_WRITE_SEEDS=1 cargo test`).

use std::collections::BTreeSet;

use baton::fuzzing::{
    decode, encode, requests, Command, LeaseError, LeaseState, WaiterRef, MAX_HOST_CONTROLS,
};
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
        tags = "3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19"
    )]
    pub request: Option<Request>,
}

/// Every Lease, Admin and Control request, as the generated code decodes
/// it; and the leader's own `Expire`, which moves time for held leases.
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
    #[prost(message, tag = "16")]
    Hold(pb::HoldRequest),
    #[prost(message, tag = "17")]
    Unhold(pb::UnholdRequest),
    #[prost(message, tag = "18")]
    RebootNow(pb::RebootNowRequest),
    #[prost(message, tag = "19")]
    HostControl(pb::HostControlRequest),
}

/// The command `call` becomes on the leader, if it passes the service's
/// checks (`server::requests`, as the Lease, Admin and Control services
/// run them) and makes one (Status, Watch, HostControl and the voter calls
/// make none).
pub fn command(call: &Call, default_max: u32) -> Option<Command> {
    let (now, by) = (call.now, call.by.as_str());
    match call.request.as_ref()? {
        Request::Acquire(req) => {
            requests::check_acquire(req).ok()?;
            Some(requests::acquire_command(req, now, default_max))
        }
        Request::Wait(req) => {
            requests::check_wait(req).ok()?;
            let acquire = requests::wait_as_acquire(req);
            Some(requests::acquire_command(&acquire, now, default_max))
        }
        // The sessions a keepalive names are the ones the leader drops
        // with one entry when they lapse.
        Request::KeepAlive(req) => {
            let waiters: Vec<WaiterRef> = requests::check_keep_alive(req).ok()?;
            Some(Command::DropWaiters { waiters, now })
        }
        Request::Release(req) => {
            requests::check_release(req).ok()?;
            Some(requests::release_command(req, now))
        }
        Request::Status(_) | Request::RemoveVoter(_) | Request::HostControl(_) => None,
        Request::Watch(req) => {
            let _ = requests::check_watch(req);
            None
        }
        Request::Pause(req) => {
            requests::check_pause(req).ok()?;
            Some(requests::pause_command(req, by, now, default_max))
        }
        Request::Resume(req) => {
            requests::check_resume(req).ok()?;
            Some(requests::resume_command(req, by, now))
        }
        Request::ForceRelease(req) => {
            requests::check_force_release(req).ok()?;
            Some(requests::force_release_command(req, by, now))
        }
        Request::SetMax(req) => {
            requests::check_set_max(req).ok()?;
            Some(requests::set_max_command(req, by, now, default_max))
        }
        Request::AddVoter(req) => {
            let _ = requests::check_add_voter(req);
            None
        }
        Request::Expire(expire) => Some(Command::Expire {
            now,
            hold_timeout_ms: expire.hold_timeout_ms,
        }),
        // The Control service's checks (`server::control_service`).
        Request::Hold(req) => {
            requests::check_hold(req).ok()?;
            Some(requests::hold_command(req, by, now))
        }
        Request::Unhold(req) => {
            requests::check_host(&req.holder).ok()?;
            Some(requests::unhold_command(req, by, now))
        }
        Request::RebootNow(req) => {
            requests::check_host(&req.holder).ok()?;
            Some(requests::reboot_now_command(req, by, now))
        }
    }
}

/// What `propose` does with a command a service made, then the log and
/// `apply`: it validates (the services leave an Acquire's machine id to
/// `propose`; everything else they accept, it must accept), round-trips
/// through the log encoding, and applies as entry `index`; a rejected apply
/// changes nothing, an accepted one keeps the invariants. The applied result.
pub fn propose_and_apply(
    state: &mut LeaseState,
    index: u64,
    cmd: &Command,
) -> baton::fuzzing::Applied {
    match cmd.validate() {
        Ok(()) => {}
        Err(LeaseError::MachineId { .. }) if matches!(cmd, Command::Acquire { .. }) => {}
        Err(e) => panic!("the service accepted what propose refuses: {e} ({cmd:?})"),
    }
    assert_round_trip(cmd);
    let before = state.clone();
    let applied = state.apply(index, cmd);
    match &applied {
        Ok(_) => assert_lease_invariants(&before, state),
        Err(_) => assert_eq!(*state, before, "a rejected command changed the state"),
    }
    applied.map(|(outcome, _)| outcome)
}

/// The leader's `Expire` entry (hold timeout), not a request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Expire {
    #[prost(uint64, optional, tag = "1")]
    pub hold_timeout_ms: Option<u64>,
}

/// `fleetlock`: what reaches the FleetLock front, in order, on one
/// leader's state: HTTP requests (as `transport::http` hands them on) and,
/// between them, Lease/Admin/Control calls (pauses, holds, other hosts).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FleetLockScript {
    /// `[fleetlock] groups` (those that pass the group rule, as the config keeps them).
    #[prost(string, repeated, tag = "1")]
    pub groups: Vec<String>,
    #[prost(uint32, tag = "2")]
    pub default_max_holders: u32,
    #[prost(message, repeated, tag = "3")]
    pub steps: Vec<FleetLockStep>,
}

/// One step: a FleetLock request, a call through the gRPC services, or both (in that order).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FleetLockStep {
    #[prost(message, optional, tag = "1")]
    pub http: Option<HttpCall>,
    #[prost(message, optional, tag = "2")]
    pub call: Option<Call>,
}

/// A FleetLock request: endpoint, method, headers and body as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpCall {
    /// The leader's clock when it proposes.
    #[prost(uint64, tag = "1")]
    pub now: u64,
    /// `POST /v1/steady-state`; otherwise `POST /v1/pre-reboot`.
    #[prost(bool, tag = "2")]
    pub steady_state: bool,
    /// The method's bytes; empty means POST.
    #[prost(bytes = "vec", tag = "3")]
    pub method: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub headers: Vec<Header>,
    #[prost(bytes = "vec", tag = "5")]
    pub body: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `fleet_reports`: what reaches one voter's Fleet service and its loops, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FleetScript {
    /// The table's and the inbox's host limit, `1 + capacity % 64` (the
    /// daemon's is `MAX_FLEET_HOSTS`; small, so the limit is reached).
    #[prost(uint32, tag = "1")]
    pub capacity: u32,
    #[prost(message, repeated, tag = "2")]
    pub steps: Vec<FleetStep>,
}

/// One step at `now` (unix ms), by a caller (`role`: 0 insecure cluster,
/// 1 host, 2 admin, 3 voter, 4 monitor; named `name`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FleetStep {
    #[prost(uint64, tag = "1")]
    pub now: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(uint32, tag = "3")]
    pub role: u32,
    #[prost(oneof = "FleetAction", tags = "4, 5, 6, 7, 8")]
    pub action: Option<FleetAction>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum FleetAction {
    /// `Fleet.Report` from a host agent.
    #[prost(message, tag = "4")]
    Report(pb::HostReport),
    /// `Fleet.Forward` from another voter, to this one as the leader.
    #[prost(message, tag = "5")]
    Forward(pb::ReportBatch),
    /// `pass_on`: the inbox in batches to the leader (this voter when it leads).
    #[prost(bool, tag = "6")]
    PassOn(bool),
    /// This voter leads in the term given (`track_leadership`); 0: it follows.
    #[prost(uint64, tag = "7")]
    Lead(u64),
    /// `Fleet.Hosts`, answered by the leader.
    #[prost(bool, tag = "8")]
    Hosts(bool),
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
    assert_host_control_invariants(before, after);
}

/// The per-host orders (the Control service's): bounded, and a held host
/// never waits in a queue, never has a slot handed to it unclaimed, and
/// never gets a grant it did not have before the apply.
fn assert_host_control_invariants(before: &LeaseState, after: &LeaseState) {
    assert!(after.held.len() <= MAX_HOST_CONTROLS, "too many holds");
    assert!(
        after.reboot_now.len() <= MAX_HOST_CONTROLS,
        "too many reboot-now requests"
    );
    for holder in after.held.keys() {
        for (name, g) in &after.groups {
            assert!(
                g.queue.iter().all(|w| &w.holder != holder),
                "held {holder} waits in {name}"
            );
            if let Some(grant) = g.grant(holder) {
                assert!(grant.claimed, "held {holder} was handed a slot of {name}");
                assert_eq!(
                    before.holder_grant(name, holder).map(|b| b.token),
                    Some(grant.token),
                    "held {holder} got a new grant in {name}"
                );
            }
        }
    }
}
