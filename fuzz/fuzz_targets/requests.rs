//! Every Lease and Admin request on the service boundary: raw bytes ->
//! prost decode (the generated code the gRPC server runs) -> the services'
//! checks (`server::requests`) -> the command the leader would propose ->
//! `Command::validate` (what `Cluster::propose` runs) -> the raft log
//! encoding -> `LeaseState::apply`, call after call on one state.
//!
//! No panic anywhere. What a service accepts, `propose` accepts (an
//! Acquire's machine id is left to `propose`); a command round-trips through
//! the log encoding; a rejected apply changes nothing; after every apply the
//! lease invariants hold; the final state round-trips as a snapshot.
#![no_main]

use baton::fuzzing::{requests, Command, LeaseError, LeaseState, WaiterRef, MAX_HOLDERS_CAP};
use baton_fuzz::{assert_lease_invariants, assert_round_trip, Call, Request, Script};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const MAX_CALLS: usize = 256;

/// The command a call becomes on the leader, if it passes the service's
/// checks and makes one (Status, Watch and the voter calls make none).
fn command(call: &Call, default_max: u32) -> Option<Command> {
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
        Request::Status(_) | Request::RemoveVoter(_) => None,
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
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(script) = Script::decode(data) else {
        return;
    };
    // The config keeps the default in range; so does the leader.
    let default_max = 1 + script.default_max_holders % MAX_HOLDERS_CAP;
    let mut state = LeaseState::default();
    let mut index = 0u64;
    for call in script.calls.iter().take(MAX_CALLS) {
        let Some(cmd) = command(call, default_max) else {
            continue;
        };
        match cmd.validate() {
            Ok(()) => {}
            Err(LeaseError::MachineId { .. }) if matches!(cmd, Command::Acquire { .. }) => {}
            Err(e) => panic!("the service accepted what propose refuses: {e} ({cmd:?})"),
        }
        assert_round_trip(&cmd);
        index += 1;
        let before = state.clone();
        match state.apply(index, &cmd) {
            Ok(_) => assert_lease_invariants(&before, &state),
            Err(_) => assert_eq!(state, before, "a rejected command changed the state"),
        }
    }
    assert_round_trip(&state);
});
