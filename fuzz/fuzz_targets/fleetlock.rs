//! The FleetLock front (`server::fleetlock`): a request as `transport::http`
//! hands it on (method, headers and body from raw bytes; a body over
//! `MAX_FLEETLOCK_BODY_BYTES` never gets here: 413) -> `check_request`
//! (method, the protocol header, the JSON body, the id and group by
//! `rules::names`, the configured groups) -> the Acquire or Release the
//! front routes (`server::requests`) -> `propose` and `apply` on one state
//! -> the answer (`acquire_response` / `release_response` ->
//! `pre_reboot_reply` / `steady_state_reply`). Lease, Admin and Control
//! calls in between change the state (pauses, holds, other hosts).
//!
//! No panic anywhere. Every answer is the protocol's JSON, exactly
//! `{"kind","value"}`, with the status its kind has (405 with `Allow:
//! POST`); the checks refuse in order (method, header, then body, names
//! and group). An accepted request was a POST with `fleet-lock-protocol:
//! true` whose body names that id and group, both pass the name rules and
//! the group is configured; its command passes `Command::validate` (the
//! empty machine id included); granted answers 200 and the holder holds a
//! claimed slot; queued answers 409; steady-state answers 200 unless the
//! cluster refuses. The lease invariants hold after every apply.
#![no_main]

use baton::fuzzing::fleetlock::{
    check_request, pre_reboot_reply, steady_state_reply, Reply, PROTOCOL_HEADER,
};
use baton::fuzzing::http::{
    Bytes, HeaderName, HeaderValue, Method, Request, StatusCode, ALLOW, CONTENT_TYPE,
};
use baton::fuzzing::limits::MAX_FLEETLOCK_BODY_BYTES;
use baton::fuzzing::{
    acquire_response, applied, names, release_response, requests, HttpCaller, HttpEndpoint,
    LeaseState, WaiterRef, MAX_HOLDERS_CAP,
};
use baton_fuzz::{command, propose_and_apply, FleetLockScript, HttpCall};
use baton_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const MAX_STEPS: usize = 128;
/// The waiter TTL a queued answer carries (`lease.waiter_ttl`'s default).
const WAITER_TTL_MS: u64 = 30_000;

/// The status each kind of answer has (`server::fleetlock`, `transport::http`).
fn status_of(kind: &str) -> StatusCode {
    match kind {
        "lock_held" | "lock_released" => StatusCode::OK,
        "missing_fleet_lock_header" | "invalid_client_params" => StatusCode::BAD_REQUEST,
        "group_not_allowed" | "forbidden" => StatusCode::FORBIDDEN,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "failed_lock_semaphore_full" | "failed_lock_paused" | "failed_precondition" => {
            StatusCode::CONFLICT
        }
        "lease_limit" | "cluster_unavailable" | "too_many_clients" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        other => panic!("an answer of an unknown kind {other:?}"),
    }
}

/// Every answer: `{"kind","value"}` and nothing else, JSON, the kind's status.
fn assert_reply(reply: &Reply) {
    assert_eq!(reply.status, status_of(reply.kind), "{reply:?}");
    let body: serde_json::Value = serde_json::from_str(&reply.body()).expect("an answer is JSON");
    let object = body.as_object().expect("an answer is a JSON object");
    assert_eq!(object.len(), 2, "an answer is kind and value only: {body}");
    assert_eq!(object["kind"].as_str(), Some(reply.kind), "{body}");
    assert_eq!(
        object["value"].as_str(),
        Some(reply.value.as_str()),
        "{body}"
    );
    let response = reply.response();
    assert_eq!(response.status(), reply.status);
    assert_eq!(
        response.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    assert_eq!(
        response.headers().get(ALLOW).map(|v| v.as_bytes()),
        (reply.status == StatusCode::METHOD_NOT_ALLOWED).then_some(&b"POST"[..])
    );
}

/// The request as hyper parses it; None where hyper would refuse it first
/// (a method or header it cannot read) or the body is over the bound (413).
fn http_request(call: &HttpCall, endpoint: HttpEndpoint) -> Option<Request<Bytes>> {
    if call.body.len() > MAX_FLEETLOCK_BODY_BYTES {
        return None;
    }
    let method = if call.method.is_empty() {
        Method::POST
    } else {
        Method::from_bytes(&call.method).ok()?
    };
    let mut request = Request::builder().method(method).uri(endpoint.path());
    for header in &call.headers {
        request = request.header(
            HeaderName::from_bytes(&header.name).ok()?,
            HeaderValue::from_bytes(&header.value).ok()?,
        );
    }
    request.body(Bytes::from(call.body.clone())).ok()
}

/// What an accepted request said: POST, the header, and that id and group in the body.
fn assert_accepted(request: &Request<Bytes>, key: &WaiterRef, groups: &[String]) {
    assert_eq!(request.method(), Method::POST);
    assert_eq!(
        request.headers().get(PROTOCOL_HEADER).map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let body: serde_json::Value =
        serde_json::from_slice(request.body()).expect("an accepted body is JSON");
    let params = &body["client_params"];
    assert_eq!(params["id"].as_str(), Some(key.holder.as_str()), "{body}");
    assert_eq!(params["group"].as_str(), Some(key.group.as_str()), "{body}");
    assert!(names::check_holder(&key.holder).is_ok(), "{key:?}");
    assert!(names::check_group(&key.group).is_ok(), "{key:?}");
    assert!(groups.contains(&key.group), "{key:?} not in {groups:?}");
}

/// A refusal comes from the first check that fails.
fn assert_refused_in_order(request: &Request<Bytes>, reply: &Reply) {
    let header = request.headers().get(PROTOCOL_HEADER).map(|v| v.as_bytes());
    let expected: &[&str] = if request.method() != Method::POST {
        &["method_not_allowed"]
    } else if header != Some(b"true") {
        &["missing_fleet_lock_header"]
    } else {
        &["invalid_client_params", "group_not_allowed"]
    };
    assert!(
        expected.contains(&reply.kind),
        "{reply:?}, expected {expected:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(script) = FleetLockScript::decode(data) else {
        return;
    };
    let groups: Vec<String> = script
        .groups
        .into_iter()
        .filter(|g| names::check_group(g).is_ok())
        .collect();
    let default_max = 1 + script.default_max_holders % MAX_HOLDERS_CAP;
    // The caller `permit_http` let in: loopback or an allowed network.
    let caller = HttpCaller {
        identity: None,
        insecure: false,
        network_allowed: true,
    };
    let mut state = LeaseState::default();
    let mut index = 0u64;
    for step in script.steps.iter().take(MAX_STEPS) {
        if let Some(call) = &step.http {
            let endpoint = if call.steady_state {
                HttpEndpoint::FleetLockSteadyState
            } else {
                HttpEndpoint::FleetLockPreReboot
            };
            if let Some(request) = http_request(call, endpoint) {
                match check_request(endpoint, &request, &caller, &groups) {
                    Err(reply) => {
                        assert_reply(&reply);
                        assert_refused_in_order(&request, &reply);
                    }
                    Ok(key) => {
                        assert_accepted(&request, &key, &groups);
                        index += 1;
                        let reply = if call.steady_state {
                            release(&mut state, index, call.now, &key)
                        } else {
                            acquire(&mut state, index, call.now, default_max, &key)
                        };
                        assert_reply(&reply);
                    }
                }
            }
        }
        if let Some(cmd) = step.call.as_ref().and_then(|c| command(c, default_max)) {
            index += 1;
            let _ = propose_and_apply(&mut state, index, &cmd);
        }
    }
});

/// `pre-reboot` on the leader: Acquire for holder = id, no machine id.
fn acquire(
    state: &mut LeaseState,
    index: u64,
    now: u64,
    default_max: u32,
    key: &WaiterRef,
) -> Reply {
    let req = pb::AcquireRequest {
        group: key.group.clone(),
        holder: key.holder.clone(),
        machine_id: String::new(),
        released: None,
    };
    let cmd = requests::acquire_command(&req, now, default_max);
    if let Err(e) = cmd.validate() {
        panic!("propose refuses what the FleetLock front accepted: {e} ({cmd:?})");
    }
    let answer = applied(propose_and_apply(state, index, &cmd))
        .and_then(|outcome| acquire_response(&req, outcome, WAITER_TTL_MS));
    let reply = pre_reboot_reply(key, &answer);
    match answer.as_ref().map(|a| a.outcome.as_ref()) {
        Ok(Some(pb::acquire_response::Outcome::Granted(_))) => {
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            let grant = state.holder_grant(&key.group, &key.holder);
            assert!(
                grant.is_some_and(|g| g.claimed),
                "granted but not held: {key:?}"
            );
        }
        Ok(Some(pb::acquire_response::Outcome::Queued(q))) => {
            assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
            assert!(q.position >= 1 && q.position <= q.waiters, "{q:?}");
        }
        Ok(None) => panic!("an acquire answered without an outcome"),
        Err(_) => assert_ne!(reply.status, StatusCode::OK, "{reply:?}"),
    }
    reply
}

/// `steady-state` on the leader: Release for holder = id, any token.
fn release(state: &mut LeaseState, index: u64, now: u64, key: &WaiterRef) -> Reply {
    let req = pb::ReleaseRequest {
        group: key.group.clone(),
        holder: key.holder.clone(),
        token: None,
    };
    let cmd = requests::release_command(&req, now);
    let answer = applied(propose_and_apply(state, index, &cmd))
        .and_then(|outcome| release_response(&req, outcome));
    let reply = steady_state_reply(key, &answer);
    assert_eq!(answer.is_ok(), reply.status == StatusCode::OK, "{reply:?}");
    if answer.is_ok() {
        assert!(
            state.holder_grant(&key.group, &key.holder).is_none(),
            "{key:?} still holds after steady-state"
        );
    }
    reply
}
