//! Every Lease, Admin and Control request on the service boundary: raw
//! bytes -> prost decode (the generated code the gRPC server runs) -> the
//! services' checks (`server::requests`) -> the command the leader would
//! propose -> `Command::validate` (what `Cluster::propose` runs) -> the
//! raft log encoding -> `LeaseState::apply`, call after call on one state.
//!
//! No panic anywhere. What a service accepts, `propose` accepts (an
//! Acquire's machine id is left to `propose`); a command round-trips through
//! the log encoding; a rejected apply changes nothing; after every apply the
//! lease invariants hold, the per-host orders' too (Hold, Unhold,
//! RebootNow: bounded, a held host never queues nor gets a new slot);
//! HostControl answers what the state holds; the final state round-trips
//! as a snapshot.
#![no_main]

use baton::fuzzing::{host_control, requests, LeaseState, MAX_HOLDERS_CAP};
use baton_fuzz::{assert_round_trip, command, propose_and_apply, Request, Script};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const MAX_CALLS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Ok(script) = Script::decode(data) else {
        return;
    };
    // The config keeps the default in range; so does the leader.
    let default_max = 1 + script.default_max_holders % MAX_HOLDERS_CAP;
    let mut state = LeaseState::default();
    let mut index = 0u64;
    for call in script.calls.iter().take(MAX_CALLS) {
        // A host agent's read of its orders: answered from the applied state.
        if let Some(Request::HostControl(req)) = &call.request {
            if requests::check_host(&req.holder).is_ok() {
                let answer = host_control(&state, &req.holder);
                assert_eq!(answer.held.is_some(), state.held.contains_key(&req.holder));
                assert_eq!(
                    answer.reboot_now.is_some(),
                    state.reboot_now.contains_key(&req.holder)
                );
                let again = baton_proto::v1::HostControlResponse::decode(&*answer.encode_to_vec());
                assert_eq!(again.ok(), Some(answer), "HostControl answer round-trip");
            }
            continue;
        }
        let Some(cmd) = command(call, default_max) else {
            continue;
        };
        index += 1;
        let _ = propose_and_apply(&mut state, index, &cmd);
    }
    assert_round_trip(&state);
});
