//! Hand-made seeds for the binary targets: valid inputs that reach deep
//! (every request kind, every raft record and message, a snapshot sent in
//! chunks). `BATON_FUZZ_WRITE_SEEDS=1 cargo test` writes them to
//! `corpus/<target>/seed-<name>`; plain `cargo test` only checks they still
//! decode. `crash-*` inputs once failed and stay as regressions. The config
//! seeds are the example configs (`corpus/config/`),
//! copied by hand; `agent_state`'s are `agent.json` files as the agent writes them.

use std::collections::{BTreeMap, BTreeSet};

use baton::fuzzing::{
    encode, AppliedState, Command, LeaseState, Phase, PreVoteRequest, PreVoteResponse,
    RecentReleases, VoterNode,
};
use baton_proto::v1 as pb;
use openraft::{CommittedLeaderId, EntryPayload, Membership, StoredMembership};
use prost::Message;

use crate::raft::{
    AppendEntriesReply, AppendEntriesRequest, Entry, InstallSnapshotReply, InstallSnapshotRequest,
    LogId, SnapshotMeta, Vote, VoteReply, VoteRequest,
};
use crate::{
    Call, Chunks, Expire, FleetAction, FleetLockScript, FleetLockStep, FleetScript, FleetStep,
    Header, HttpCall, RaftKind, Request, Script,
};

/// One seed: target, file name (`seed-*`, or `crash-*` for an input that
/// once failed), bytes.
pub type Seed = (&'static str, String, Vec<u8>);

const MACHINE: &str = "4f1c1d2e3b4a59687766554433221100";

fn call(now: u64, request: Request) -> Call {
    Call {
        now,
        by: "admin".into(),
        request: Some(request),
    }
}

fn acquire(group: &str, holder: &str) -> Request {
    Request::Acquire(pb::AcquireRequest {
        group: group.into(),
        holder: holder.into(),
        machine_id: MACHINE.into(),
        released: None,
    })
}

fn release(group: &str, holder: &str, token: Option<u64>) -> Request {
    Request::Release(pb::ReleaseRequest {
        group: group.into(),
        holder: holder.into(),
        token,
    })
}

fn hold(holder: &str, reason: &str) -> Request {
    Request::Hold(pb::HoldRequest {
        holder: holder.into(),
        reason: reason.into(),
    })
}

fn reboot_now(holder: &str, cancel: bool) -> Request {
    Request::RebootNow(pb::RebootNowRequest {
        holder: holder.into(),
        cancel,
    })
}

fn session(group: &str, holder: &str) -> pb::SessionRef {
    pb::SessionRef {
        group: group.into(),
        holder: holder.into(),
    }
}

/// `requests`: a roll through one group, then every admin call, then the
/// other requests once each.
fn requests() -> Vec<Seed> {
    let roll = Script {
        default_max_holders: 1,
        calls: vec![
            call(1_000, acquire("workers", "node-1")),
            call(1_001, acquire("workers", "node-2.example.com")),
            call(
                1_002,
                Request::Wait(pb::WaitRequest {
                    group: "workers".into(),
                    holder: "node-3".into(),
                    machine_id: MACHINE.into(),
                    released: Some(7),
                }),
            ),
            call(
                1_003,
                Request::KeepAlive(pb::KeepAliveRequest {
                    sessions: vec![session("workers", "node-2.example.com")],
                }),
            ),
            call(1_004, release("workers", "node-1", Some(1))),
            call(1_005, acquire("workers", "node-2.example.com")),
            call(1_006, release("workers", "node-2.example.com", None)),
            call(
                9_999,
                Request::Expire(Expire {
                    hold_timeout_ms: Some(5_000),
                }),
            ),
        ],
    };
    let admin = Script {
        default_max_holders: 2,
        calls: vec![
            call(1, acquire("db", "db-1")),
            call(
                2,
                Request::Pause(pb::PauseRequest {
                    group: "db".into(),
                    reason: "maintenance window moved".into(),
                }),
            ),
            call(
                3,
                Request::Pause(pb::PauseRequest {
                    group: String::new(),
                    reason: "incident 42".into(),
                }),
            ),
            call(4, acquire("db", "db-2")),
            call(
                5,
                Request::Resume(pb::ResumeRequest {
                    group: String::new(),
                }),
            ),
            call(6, Request::Resume(pb::ResumeRequest { group: "db".into() })),
            call(
                7,
                Request::SetMax(pb::SetMaxRequest {
                    group: "db".into(),
                    max_holders: 3,
                }),
            ),
            call(
                8,
                Request::ForceRelease(pb::ForceReleaseRequest {
                    group: "db".into(),
                    holder: "db-1".into(),
                }),
            ),
        ],
    };
    let others = Script {
        default_max_holders: 1,
        calls: vec![
            call(1, Request::Status(pb::StatusRequest { stale: true })),
            call(
                2,
                Request::Watch(pb::WatchRequest {
                    group: "workers".into(),
                }),
            ),
            call(
                3,
                Request::AddVoter(pb::AddVoterRequest {
                    id: 4,
                    name: "cp-4".into(),
                    address: "[fd00::4]:7421".into(),
                }),
            ),
            call(4, Request::RemoveVoter(pb::RemoveVoterRequest { id: 4 })),
        ],
    };
    let control = Script {
        default_max_holders: 1,
        calls: vec![
            call(1, acquire("workers", "node-1")),
            call(2, acquire("workers", "node-2")),
            call(3, hold("node-2", "disk swap")),
            call(4, hold("node-1", "look first")),
            call(
                5,
                Request::HostControl(pb::HostControlRequest {
                    holder: "node-2".into(),
                }),
            ),
            call(6, reboot_now("node-3", false)),
            call(7, acquire("workers", "node-2")),
            call(
                8,
                Request::Unhold(pb::UnholdRequest {
                    holder: "node-2".into(),
                }),
            ),
            call(9, release("workers", "node-1", None)),
            call(10, acquire("workers", "node-3")),
            call(11, reboot_now("node-3", true)),
        ],
    };
    [
        ("roll", roll),
        ("admin", admin),
        ("others", others),
        ("control", control),
    ]
    .into_iter()
    .map(|(name, script)| ("requests", format!("seed-{name}"), script.encode_to_vec()))
    .collect()
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(3, 1), index)
}

fn membership() -> StoredMembership<u64, VoterNode> {
    let nodes: BTreeMap<u64, VoterNode> = (1..=3)
        .map(|id| {
            let node = VoterNode {
                name: format!("cp-{id}"),
                address: format!("10.0.0.{id}:7421"),
            };
            (id, node)
        })
        .collect();
    let voters = BTreeSet::from([1, 2, 3]);
    StoredMembership::new(
        Some(log_id(1)),
        Membership::new(vec![voters], nodes.clone()),
    )
}

fn entries() -> Vec<Entry> {
    let command = |index| Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Command::Acquire {
            group: "workers".into(),
            holder: format!("node-{index}"),
            machine_id: MACHINE.into(),
            now: 1_764_000_000_000 + index,
            default_max_holders: 1,
        }),
    };
    vec![
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Membership(membership().membership().clone()),
        },
        Entry {
            log_id: log_id(2),
            payload: EntryPayload::Blank,
        },
        command(3),
        command(4),
        Entry {
            log_id: log_id(5),
            payload: EntryPayload::Normal(Command::Release {
                group: "workers".into(),
                holder: "node-3".into(),
                token: Some(3),
                now: 1_764_000_000_100,
            }),
        },
    ]
}

/// A state with a holder, a waiter, a pause: what a snapshot holds.
fn applied_state() -> AppliedState {
    let mut lease = LeaseState::default();
    // The releases among the entries, noted as the state machine does.
    let mut recent_releases = RecentReleases::default();
    for entry in entries() {
        if let EntryPayload::Normal(command) = &entry.payload {
            let (_, events) = lease
                .apply(entry.log_id.index, command)
                .expect("seed entry");
            recent_releases.note(&events, command.now());
        }
    }
    let more = [
        Command::Acquire {
            group: "workers".into(),
            holder: "node-9".into(),
            machine_id: MACHINE.into(),
            now: 1_764_000_000_200,
            default_max_holders: 1,
        },
        Command::Pause {
            group: Some("db".into()),
            reason: "backup".into(),
            by: "admin".into(),
            now: 1_764_000_000_300,
            default_max_holders: 2,
        },
    ];
    for (i, command) in more.iter().enumerate() {
        lease.apply(6 + i as u64, command).expect("seed command");
    }
    AppliedState {
        last_applied: Some(log_id(7)),
        membership: membership(),
        lease,
        stored_voters: [1, 2].into(),
        recent_releases,
    }
}

fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(7)),
        last_membership: membership(),
        snapshot_id: "3-1-7".into(),
    }
}

fn vote() -> Vote {
    Vote::new_committed(3, 1)
}

fn chunk(offset: usize, data: &[u8], done: bool) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        vote: vote(),
        meta: snapshot_meta(),
        offset: offset as u64,
        data: data.to_vec(),
        done,
    }
}

fn encoded<T: serde::Serialize>(value: &T) -> Vec<u8> {
    encode(value).expect("seed encodes")
}

fn payload<T: serde::Serialize>(value: &T) -> pb::RaftPayload {
    pb::RaftPayload {
        data: encoded(value),
    }
}

/// `raft_payloads`: one of each kind, postcard; and the JSON of earlier versions.
fn raft_payloads() -> Vec<Seed> {
    let entries = entries();
    let record = |kind: RaftKind, bytes: Vec<u8>| {
        let mut seed = vec![kind.byte()];
        seed.extend(bytes);
        seed
    };
    let rpc = |kind: RaftKind, payload: pb::RaftPayload| record(kind, payload.encode_to_vec());
    let snapshot = encoded(&applied_state());
    let append = AppendEntriesRequest {
        vote: vote(),
        prev_log_id: Some(log_id(2)),
        entries: entries[2..].to_vec(),
        leader_commit: Some(log_id(2)),
    };
    let append_reply: AppendEntriesReply = Ok(openraft::raft::AppendEntriesResponse::Success);
    let vote_reply: VoteReply = Ok(openraft::raft::VoteResponse::new(
        vote(),
        Some(log_id(5)),
        true,
    ));
    let install_reply: InstallSnapshotReply =
        Ok(openraft::raft::InstallSnapshotResponse { vote: vote() });
    let mut seeds = vec![
        (
            "entry-membership",
            record(RaftKind::Entry, encoded(&entries[0])),
        ),
        (
            "entry-acquire",
            record(RaftKind::Entry, encoded(&entries[2])),
        ),
        (
            "entry-release",
            record(RaftKind::Entry, encoded(&entries[4])),
        ),
        ("vote", record(RaftKind::Vote, encoded(&vote()))),
        (
            "committed",
            record(RaftKind::Committed, encoded(&Some(log_id(5)))),
        ),
        (
            "last-purged",
            record(RaftKind::LastPurged, encoded(&log_id(2))),
        ),
        (
            "snapshot-meta",
            record(RaftKind::SnapshotMeta, encoded(&snapshot_meta())),
        ),
        (
            "snapshot-data",
            record(RaftKind::SnapshotData, snapshot.clone()),
        ),
        (
            "append-entries",
            rpc(RaftKind::AppendEntries, payload(&append)),
        ),
        (
            "vote-request",
            rpc(
                RaftKind::VoteRequest,
                payload(&VoteRequest::new(vote(), Some(log_id(5)))),
            ),
        ),
        (
            "install-snapshot",
            rpc(
                RaftKind::InstallSnapshot,
                payload(&chunk(0, &snapshot, true)),
            ),
        ),
        (
            "append-reply",
            rpc(RaftKind::AppendEntriesReply, payload(&append_reply)),
        ),
        ("vote-reply", rpc(RaftKind::VoteReply, payload(&vote_reply))),
        (
            "install-reply",
            rpc(RaftKind::InstallSnapshotReply, payload(&install_reply)),
        ),
        (
            "pre-vote",
            rpc(
                RaftKind::PreVote,
                payload(&PreVoteRequest {
                    candidate: 2,
                    last_log_id: Some(log_id(5)),
                }),
            ),
        ),
        (
            "pre-vote-reply",
            rpc(
                RaftKind::PreVoteReply,
                payload(&PreVoteResponse { granted: true }),
            ),
        ),
    ];
    // Records of earlier versions were JSON; they must still read.
    seeds.push(("json-entry", record(RaftKind::Entry, json(&entries[3]))));
    seeds.push((
        "json-snapshot-data",
        record(RaftKind::SnapshotData, json(&applied_state())),
    ));
    // Once a panic: a slot handed over at log index u64::MAX overflowed the
    // next token (`rules::lease::ops::promote`).
    let top = |index: u64, command: Command| Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(command),
    };
    let acquire = |holder: &str| Command::Acquire {
        group: "workers".into(),
        holder: holder.into(),
        machine_id: MACHINE.into(),
        now: 1,
        default_max_holders: 1,
    };
    let at_the_top = AppendEntriesRequest {
        vote: vote(),
        prev_log_id: Some(log_id(u64::MAX - 3)),
        entries: vec![
            top(u64::MAX - 2, acquire("node-1")),
            top(u64::MAX - 1, acquire("node-2")),
            top(
                u64::MAX,
                Command::Release {
                    group: "workers".into(),
                    holder: "node-1".into(),
                    token: None,
                    now: 2,
                },
            ),
        ],
        leader_commit: None,
    };
    let mut inputs: Vec<(String, Vec<u8>)> = seeds
        .into_iter()
        .map(|(name, bytes)| (format!("seed-{name}"), bytes))
        .collect();
    inputs.push((
        "crash-token-at-u64-max".into(),
        rpc(RaftKind::AppendEntries, payload(&at_the_top)),
    ));
    inputs
        .into_iter()
        .map(|(name, bytes)| ("raft_payloads", name, bytes))
        .collect()
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("seed JSON")
}

/// `snapshot_chunks`: a snapshot sent in three chunks, and one resent from the start.
fn snapshot_chunks() -> Vec<Seed> {
    let data = encoded(&applied_state());
    let third = data.len() / 3;
    let in_three = Chunks {
        payloads: vec![
            payload(&chunk(0, &data[..third], false)),
            payload(&chunk(third, &data[third..2 * third], false)),
            payload(&chunk(2 * third, &data[2 * third..], true)),
        ],
    };
    let restarted = Chunks {
        payloads: vec![
            payload(&chunk(0, &data[..third], false)),
            payload(&chunk(0, &data[..third], false)),
            payload(&chunk(third, &data[third..], true)),
        ],
    };
    [("in-three", in_three), ("restarted", restarted)]
        .into_iter()
        .map(|(name, chunks)| {
            let bytes = chunks.encode_to_vec();
            ("snapshot_chunks", format!("seed-{name}"), bytes)
        })
        .collect()
}

/// `agent_state`: phases as `PhaseFile::save` writes them (pretty JSON).
fn agent_state() -> Vec<Seed> {
    let update = r#"{"source":"apt","reason":"packages: libc6","new_version":"24.04.2"}"#;
    let lease = r#"{"group":"workers","holder":"node-1","token":7}"#;
    let drain = r#"{"node":"node-1","we_cordoned":true,"evicted":["default/web-0"]}"#;
    let phases = [
        r#"{"phase":"idle"}"#.to_string(),
        format!(r#"{{"phase":"waiting-for-lease","update":{update}}}"#),
        format!(
            r#"{{"phase":"rebooting","update":{update},"lease":{lease},"drain":{drain},"boot_id":"5e1b2c3d-0000-4000-8000-000000000001"}}"#
        ),
        format!(r#"{{"phase":"undraining","lease":{lease},"drain":null}}"#),
    ];
    phases
        .iter()
        .map(|text| {
            let phase: Phase = serde_json::from_str(text).expect("seed phase");
            let bytes = serde_json::to_vec_pretty(&phase).expect("phase JSON");
            ("agent_state", format!("seed-{}", phase.name()), bytes)
        })
        .collect()
}

/// A FleetLock request as Zincati sends it.
fn zincati(now: u64, steady_state: bool, id: &str, group: &str) -> HttpCall {
    HttpCall {
        now,
        steady_state,
        method: b"POST".to_vec(),
        headers: vec![
            header("fleet-lock-protocol", "true"),
            header("content-type", "application/json"),
        ],
        body: format!(r#"{{"client_params":{{"id":"{id}","group":"{group}"}}}}"#).into_bytes(),
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

fn http_step(http: HttpCall) -> FleetLockStep {
    FleetLockStep {
        http: Some(http),
        call: None,
    }
}

/// `fleetlock`: two machines take turns; every refusal once; a pause and a hold.
fn fleetlock() -> Vec<Seed> {
    let roll = FleetLockScript {
        groups: vec!["workers".into(), "controllers".into()],
        default_max_holders: 1,
        steps: [
            zincati(1, false, "node-1", "workers"),
            zincati(2, false, "node-2", "workers"),
            zincati(3, false, "node-1", "workers"),
            zincati(4, true, "node-1", "workers"),
            zincati(5, false, "node-2", "workers"),
            zincati(6, true, "node-2", "workers"),
            zincati(7, true, "node-9", "workers"),
        ]
        .into_iter()
        .map(http_step)
        .collect(),
    };
    let mut get = zincati(1, false, "node-1", "workers");
    get.method = b"GET".to_vec();
    let mut no_header = zincati(2, false, "node-1", "workers");
    no_header.headers.remove(0);
    let mut not_json = zincati(3, false, "node-1", "workers");
    not_json.body = br#"{"client_params":{"id":"node-1"}"#.to_vec();
    let refusals = FleetLockScript {
        groups: vec!["workers".into()],
        default_max_holders: 1,
        steps: [
            get,
            no_header,
            not_json,
            zincati(4, false, "node-1", "databases"),
            zincati(5, false, "localhost", "workers"),
            zincati(6, true, "two words", "workers"),
        ]
        .into_iter()
        .map(http_step)
        .collect(),
    };
    let paused = FleetLockScript {
        groups: vec!["workers".into()],
        default_max_holders: 2,
        steps: vec![
            FleetLockStep {
                http: None,
                call: Some(call(
                    1,
                    Request::Pause(pb::PauseRequest {
                        group: "workers".into(),
                        reason: "incident 42".into(),
                    }),
                )),
            },
            http_step(zincati(2, false, "node-1", "workers")),
            FleetLockStep {
                http: Some(zincati(3, false, "node-1", "workers")),
                call: Some(call(4, Request::Resume(pb::ResumeRequest::default()))),
            },
            FleetLockStep {
                http: Some(zincati(5, false, "node-1", "workers")),
                call: Some(call(6, hold("node-2", "vendor check"))),
            },
            http_step(zincati(7, false, "node-2", "workers")),
        ],
    };
    [("roll", roll), ("refusals", refusals), ("paused", paused)]
        .into_iter()
        .map(|(name, script)| ("fleetlock", format!("seed-{name}"), script.encode_to_vec()))
        .collect()
}

/// A report as a host agent sends it.
fn host_report(name: &str, phase: &str) -> pb::HostReport {
    pb::HostReport {
        name: name.into(),
        group: "workers".into(),
        phase: phase.into(),
        pending: (phase != "idle").then(|| pb::PendingReboot {
            source: "apt".into(),
            reason: "packages: linux-image-6.1.0-28-amd64, libc6".into(),
            version: Some("6.1.0-28".into()),
        }),
        last_boot_s: Some(1_764_000_000),
        agent_version: "0.1.0".into(),
        report_interval_ms: 30_000,
        phase_since_ms: Some(1_764_000_000_000),
    }
}

fn fleet_step(now: u64, name: &str, role: u32, action: FleetAction) -> FleetStep {
    FleetStep {
        now,
        name: name.into(),
        role,
        action: Some(action),
    }
}

/// `fleet_reports`: hosts report to a follower and to the leader, the table
/// fills past its limit, leadership moves; and a refusal of each kind.
fn fleet_reports() -> Vec<Seed> {
    const HOST: u32 = 1;
    const ADMIN: u32 = 2;
    let report = |now, name: &str, phase: &str| {
        fleet_step(
            now,
            name,
            HOST,
            FleetAction::Report(host_report(name, phase)),
        )
    };
    let roll = FleetScript {
        capacity: 2,
        steps: vec![
            report(1_000, "node-1", "idle"),
            report(1_001, "node-2", "reboot-needed"),
            fleet_step(1_200, "", 0, FleetAction::PassOn(false)),
            fleet_step(1_300, "", 0, FleetAction::Lead(3)),
            fleet_step(1_400, "", 0, FleetAction::PassOn(true)),
            report(1_500, "node-3", "draining"),
            report(1_501, "node-4", "rebooting"),
            report(1_502, "node-1", "waiting-for-lease"),
            fleet_step(1_600, "", 0, FleetAction::PassOn(true)),
            fleet_step(
                1_700,
                "cp-2",
                3,
                FleetAction::Forward(pb::ReportBatch {
                    reports: vec![host_report("node-5", "idle"), host_report("node-2", "idle")],
                }),
            ),
            fleet_step(1_800, "ops", ADMIN, FleetAction::Hosts(true)),
            fleet_step(200_000, "ops", ADMIN, FleetAction::Hosts(true)),
            fleet_step(200_001, "", 0, FleetAction::Lead(0)),
            fleet_step(200_002, "ops", ADMIN, FleetAction::Hosts(true)),
            fleet_step(200_003, "", 0, FleetAction::Lead(4)),
            report(200_004, "node-1", "idle"),
            fleet_step(200_200, "", 0, FleetAction::PassOn(true)),
            fleet_step(200_300, "ops", ADMIN, FleetAction::Hosts(true)),
        ],
    };
    let mut long_reason = host_report("node-1", "reboot-needed");
    if let Some(pending) = long_reason.pending.as_mut() {
        pending.reason = "x".repeat(2_000);
    }
    let mut bad_interval = host_report("node-1", "idle");
    bad_interval.report_interval_ms = 10;
    let refusals = FleetScript {
        capacity: 0,
        steps: vec![
            report(1, "node-1", "sleeping"),
            fleet_step(2, "node-1", HOST, FleetAction::Report(long_reason)),
            fleet_step(3, "node-1", HOST, FleetAction::Report(bad_interval)),
            fleet_step(
                4,
                "node-2",
                HOST,
                FleetAction::Report(host_report("node-1", "idle")),
            ),
            fleet_step(
                5,
                "ops",
                ADMIN,
                FleetAction::Report(host_report("node-1", "idle")),
            ),
            report(6, "node-2", "idle"),
            fleet_step(7, "", 0, FleetAction::Lead(1)),
            fleet_step(
                8,
                "cp-2",
                3,
                FleetAction::Forward(pb::ReportBatch {
                    reports: vec![host_report("node-3", "idle"), host_report("", "idle")],
                }),
            ),
            fleet_step(9, "ops", ADMIN, FleetAction::Hosts(true)),
        ],
    };
    [("roll", roll), ("refusals", refusals)]
        .into_iter()
        .map(|(name, script)| {
            (
                "fleet_reports",
                format!("seed-{name}"),
                script.encode_to_vec(),
            )
        })
        .collect()
}

/// Every seed.
pub fn all() -> Vec<Seed> {
    let mut seeds = requests();
    seeds.extend(raft_payloads());
    seeds.extend(snapshot_chunks());
    seeds.extend(agent_state());
    seeds.extend(fleetlock());
    seeds.extend(fleet_reports());
    seeds
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn seeds_decode_and_are_written_on_request() {
        let seeds = super::all();
        assert!(seeds.len() > 20);
        let script = seeds
            .iter()
            .find(|(target, name, _)| *target == "requests" && name == "seed-roll")
            .expect("roll");
        let decoded = <crate::Script as prost::Message>::decode(script.2.as_slice()).unwrap();
        assert_eq!(decoded.calls.len(), 8);
        if std::env::var_os("BATON_FUZZ_WRITE_SEEDS").is_some() {
            let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
            for (target, name, bytes) in seeds {
                let dir = corpus.join(target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}
