//! Raft records and RPC payloads: the first byte picks what the rest is
//! read as (`baton_fuzz::RaftKind`). Records go through `codec::decode`
//! (what `raft::storage` runs on redb's bytes); RPCs (openraft's three and
//! baton's PreVote, requests and replies) through a protobuf `RaftPayload`
//! and `types::from_payload` (what `raft::service`, `raft::network` and
//! `raft::election` run on the wire).
//!
//! No panic on any bytes, postcard or JSON. What decodes round-trips
//! (encode(decode(encode(x))) == encode(x)). Log entries and snapshots go on
//! to what a voter does with them: entries are applied in log order
//! (a rejected command changes nothing), a snapshot's state takes the next
//! commands, and a snapshot chunk meets the chunk check.
#![no_main]

use baton::fuzzing::{
    check_chunk, decode, from_payload, AppliedState, Command, LeaseState, PreVoteRequest,
    PreVoteResponse, WaiterRef,
};
use baton_fuzz::raft::{
    AppendEntriesReply, AppendEntriesRequest, Entry, InstallSnapshotReply, InstallSnapshotRequest,
    LogId, SnapshotMeta, Vote, VoteReply, VoteRequest,
};
use baton_fuzz::{assert_round_trip, RaftKind};
use baton_proto::v1::RaftPayload;
use libfuzzer_sys::fuzz_target;
use openraft::EntryPayload;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A stored record, as `raft::storage::decode` reads it.
fn record<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let value = decode::<T>(bytes).ok()?;
    assert_round_trip(&value);
    Some(value)
}

/// An RPC message, as the receiving end reads it.
fn rpc<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let payload = RaftPayload::decode(bytes).ok()?;
    let value = from_payload::<T>(&payload).ok()?;
    assert_round_trip(&value);
    Some(value)
}

/// Applies `command` at `index`: no panic, and a rejection changes nothing.
fn apply(state: &mut LeaseState, index: u64, command: &Command) {
    let before = state.clone();
    if state.apply(index, command).is_err() {
        assert_eq!(*state, before, "a rejected command changed the state");
    }
}

/// Entries as a follower applies them: in log order (openraft hands over
/// only increasing indexes), lease commands only.
fn apply_entries(entries: &[Entry]) {
    let mut state = LeaseState::default();
    let mut last = 0;
    for entry in entries {
        if entry.log_id.index <= last {
            continue;
        }
        last = entry.log_id.index;
        if let EntryPayload::Normal(command) = &entry.payload {
            apply(&mut state, last, command);
        }
    }
}

/// A snapshot's state (possibly one no apply could make) taking the next
/// commands: a newcomer in every group, every holder released (its slot
/// handed to the queue), max raised, pauses lifted, every session dropped,
/// every grant expired.
fn continue_from(snapshot: AppliedState) {
    let mut lease = snapshot.lease;
    let mut index = snapshot.last_applied.map_or(0, |l| l.index);
    let now = lease
        .groups
        .values()
        .flat_map(|g| g.holders.iter().map(|h| h.granted_at))
        .max()
        .unwrap_or(0);
    let by = String::from("fuzz");
    let mut commands = Vec::new();
    for (name, group) in &lease.groups {
        commands.push(Command::Acquire {
            group: name.clone(),
            holder: "fuzz-newcomer".into(),
            machine_id: "0123456789abcdef".into(),
            now,
            default_max_holders: 1,
        });
        for grant in &group.holders {
            commands.push(Command::Release {
                group: name.clone(),
                holder: grant.holder.clone(),
                token: Some(grant.token),
                now,
            });
        }
        commands.push(Command::SetMax {
            group: name.clone(),
            max_holders: group.max_holders.saturating_add(1).clamp(1, 1000),
            by: by.clone(),
            now,
            default_max_holders: 1,
        });
        commands.push(Command::Resume {
            group: Some(name.clone()),
            by: by.clone(),
            now,
        });
    }
    commands.push(Command::Resume {
        group: None,
        by,
        now,
    });
    commands.push(Command::DropWaiters {
        waiters: lease.sessions().collect::<Vec<WaiterRef>>(),
        now,
    });
    commands.push(Command::Expire {
        now: now.saturating_add(1),
        hold_timeout_ms: Some(0),
    });
    for command in &commands {
        index = index.saturating_add(1);
        apply(&mut lease, index, command);
        let _ = (lease.next_expiry(Some(1)), lease.sessions().count());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match RaftKind::from_byte(kind) {
        RaftKind::Entry => {
            if let Some(entry) = record::<Entry>(bytes) {
                apply_entries(&[entry]);
            }
        }
        RaftKind::Vote => drop(record::<Vote>(bytes)),
        RaftKind::Committed => drop(record::<Option<LogId>>(bytes)),
        RaftKind::LastPurged => drop(record::<LogId>(bytes)),
        RaftKind::SnapshotMeta => drop(record::<SnapshotMeta>(bytes)),
        RaftKind::SnapshotData => {
            if let Some(state) = record::<AppliedState>(bytes) {
                continue_from(state);
            }
        }
        RaftKind::AppendEntries => {
            if let Some(request) = rpc::<AppendEntriesRequest>(bytes) {
                apply_entries(&request.entries);
            }
        }
        RaftKind::VoteRequest => drop(rpc::<VoteRequest>(bytes)),
        RaftKind::InstallSnapshot => {
            if let Some(request) = rpc::<InstallSnapshotRequest>(bytes) {
                let _ = check_chunk(&None, &request);
            }
        }
        RaftKind::AppendEntriesReply => drop(rpc::<AppendEntriesReply>(bytes)),
        RaftKind::VoteReply => drop(rpc::<VoteReply>(bytes)),
        RaftKind::InstallSnapshotReply => drop(rpc::<InstallSnapshotReply>(bytes)),
        RaftKind::PreVote => drop(rpc::<PreVoteRequest>(bytes)),
        RaftKind::PreVoteReply => drop(rpc::<PreVoteResponse>(bytes)),
    }
});
