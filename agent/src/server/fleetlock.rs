//! The FleetLock server of a voter: Zincati's pre-reboot and steady-state on lease groups.
//!
//! FleetLock (coreos/zincati `docs/development/fleetlock/protocol.md`) is a
//! recursive, owned counting semaphore over HTTP: `POST /v1/pre-reboot`
//! takes a reboot slot, `POST /v1/steady-state` gives it back, both with
//! the header `fleet-lock-protocol: true` and the body
//! `{"client_params":{"id":"...","group":"..."}}`; 200 means done, anything
//! else failed, errors are `{"kind":"...","value":"..."}`.
//!
//! Here the group is a baton lease group (only those `[fleetlock] groups`
//! names) and the id is the holder (checked by `rules::names`, as any
//! holder): the same queue, the same `max_holders`, pause and safety rules
//! as the host agents', through `Cluster::route` like the gRPC services
//! (`lease_service::acquire_routed` / `release_routed`; the commands come
//! from `server::requests`). A forwarded call names the client as a host
//! acting as itself (`Caller` host `ID`): the voter vouches for the network
//! and group check it made.
//!
//! Zincati polls `pre-reboot` (every 5 minutes) instead of holding a stream
//! open, so this front keeps the client's place for it: the first poll
//! queues it (one `Acquire` entry) and registers its session on this voter
//! as a Wait stream would (`server::sessions`: keepalives to the leader, no
//! entries); each later poll refreshes the registration and is answered
//! from this voter's applied state (no entry). A client not heard from for
//! `poll_ttl` loses the registration, and the leader drops it from the
//! queue after `lease.waiter_ttl` (one `DropWaiters` entry), as it drops a
//! host whose Wait stream broke. A poll while granted claims the slot (200);
//! a poll while holding is answered 200 again (reentrant); `steady-state`
//! from a client that holds nothing is 200 (idempotent).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_proto::v1 as pb;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tonic::{Code, Status};
use tracing::info;

use crate::clock::Instant;
use crate::config::FleetLockSettings;
use crate::locks::LockOrRecover;
use crate::rules::access::{
    permit_fleetlock_group, Caller, HttpCaller, HttpEndpoint, Identity, Role,
};
use crate::rules::lease::{QueueReason, WaiterRef};
use crate::rules::limits::{
    MAX_FLEETLOCK_BODY_BYTES, MAX_FLEETLOCK_CLIENTS, MAX_FLEETLOCK_CONNECTIONS,
};
use crate::server::lease_service::{acquire_routed, release_routed};
use crate::server::requests;
use crate::server::routing::{Cluster, Routed};
use crate::server::sessions::Registration;
use crate::transport::http::{Answer, Body, Endpoints, HttpOptions, HttpServer};
use crate::transport::tls::TlsMode;
use crate::transport::TransportError;

/// The header every FleetLock request carries, with the value `true`.
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";

/// The body of both requests. Unknown fields are ignored (later clients may add some).
#[derive(Debug, Deserialize)]
struct Params {
    client_params: ClientParams,
}

#[derive(Debug, Deserialize)]
struct ClientParams {
    id: String,
    group: String,
}

/// A polling client's place, kept on this voter until `until`.
struct Polling {
    _registration: Registration,
    until: Instant,
}

struct Front {
    cluster: Cluster,
    groups: Vec<String>,
    poll_ttl: Duration,
    clients: Mutex<HashMap<WaiterRef, Polling>>,
}

/// The FleetLock listener of a voter; stops when dropped.
pub struct FleetLockServer {
    _server: HttpServer,
    sweeper: tokio::task::JoinHandle<()>,
}

impl FleetLockServer {
    /// Binds `[fleetlock] listen` (HTTPS with this voter's certificate when
    /// `tls` is mutual) and serves FleetLock for `cluster`.
    pub async fn start(
        settings: &FleetLockSettings,
        cluster: Cluster,
        tls: TlsMode,
    ) -> Result<FleetLockServer, TransportError> {
        let front = Arc::new(Front {
            cluster,
            groups: settings.groups.clone(),
            poll_ttl: settings.poll_ttl,
            clients: Mutex::default(),
        });
        let options = HttpOptions {
            address: settings.listen,
            tls,
            allow_networks: settings.allow_networks.clone(),
            max_connections: MAX_FLEETLOCK_CONNECTIONS,
            max_body: MAX_FLEETLOCK_BODY_BYTES,
        };
        let server = HttpServer::start(options, front.clone()).await?;
        let sweeper = tokio::spawn(sweep(front));
        Ok(FleetLockServer {
            _server: server,
            sweeper,
        })
    }
}

impl Drop for FleetLockServer {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

/// Lets go of the places of clients that stopped polling.
async fn sweep(front: Arc<Front>) {
    let every = (front.poll_ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let gone: Vec<WaiterRef> = {
            let mut clients = front.clients();
            let gone = clients
                .iter()
                .filter(|(_, polling)| polling.until < now)
                .map(|(key, _)| key.clone())
                .collect::<Vec<_>>();
            for key in &gone {
                clients.remove(key);
            }
            gone
        };
        for key in gone {
            info!(
                BATON_GROUP = %key.group,
                BATON_HOLDER = %key.holder,
                "fleetlock: {} stopped polling for {:?}; it leaves the queue after the waiter TTL",
                key.holder,
                front.poll_ttl
            );
        }
    }
}

/// A FleetLock answer before it is sent: the status, and the
/// `{"kind":..,"value":..}` body the protocol words every answer in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub kind: &'static str,
    pub value: String,
}

impl Reply {
    pub fn new(status: StatusCode, kind: &'static str, value: impl Into<String>) -> Reply {
        Reply {
            status,
            kind,
            value: value.into(),
        }
    }

    /// The body: `{"kind":..,"value":..}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "kind": self.kind, "value": self.value }).to_string()
    }

    /// The HTTP response: JSON, and `Allow: POST` with a 405.
    pub fn response(&self) -> Response<Body> {
        let mut response = Response::new(Body::new(Bytes::from(self.body())));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// A failed call to the cluster, as a FleetLock error (a small, fixed set of kinds).
pub fn failed(status: &Status) -> Reply {
    let (code, kind) = match status.code() {
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_client_params"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
        Code::ResourceExhausted => (StatusCode::SERVICE_UNAVAILABLE, "lease_limit"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
        Code::Unavailable | Code::DeadlineExceeded => {
            (StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    Reply::new(code, kind, status.message())
}

/// 409 for a client that waits: the semaphore is full (or paused), and where it stands.
pub fn queued(group: &str, position: u32, waiters: u32, reason: &QueueReason) -> Reply {
    match reason {
        QueueReason::Full => Reply::new(
            StatusCode::CONFLICT,
            "failed_lock_semaphore_full",
            format!(
                "all reboot slots of group {group:?} are taken; queued at {position} of {waiters}; \
                 keep polling to keep the place"
            ),
        ),
        QueueReason::Paused(why) => Reply::new(
            StatusCode::CONFLICT,
            "failed_lock_paused",
            format!("group {group:?} is paused ({why}); queued at {position} of {waiters}"),
        ),
    }
}

/// The checks every request goes through, in order: method, header, body,
/// names (`server::requests`, so `rules::names`), group
/// (`permit_fleetlock_group` against the configured `groups`). Accepted:
/// the client's place (group, holder = id).
pub fn check_request(
    endpoint: HttpEndpoint,
    request: &Request<Bytes>,
    caller: &HttpCaller,
    groups: &[String],
) -> Result<WaiterRef, Reply> {
    if request.method() != Method::POST {
        return Err(Reply::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "FleetLock requests are POST",
        ));
    }
    let header = request
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|value| value.to_str().ok());
    if header != Some("true") {
        return Err(Reply::new(
            StatusCode::BAD_REQUEST,
            "missing_fleet_lock_header",
            "the header 'fleet-lock-protocol: true' is required",
        ));
    }
    let params: Params = serde_json::from_slice(request.body()).map_err(|e| {
        Reply::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_params",
            format!("the body is not {{\"client_params\":{{\"id\":..,\"group\":..}}}}: {e}"),
        )
    })?;
    let ClientParams { id, group } = params.client_params;
    let acquire = pb::AcquireRequest {
        group: group.clone(),
        holder: id.clone(),
        machine_id: String::new(),
        released: None,
    };
    requests::check_acquire(&acquire).map_err(|status| {
        Reply::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_params",
            status.message(),
        )
    })?;
    permit_fleetlock_group(caller, endpoint, &group, groups).map_err(|denied| {
        Reply::new(
            StatusCode::FORBIDDEN,
            "group_not_allowed",
            denied.to_string(),
        )
    })?;
    Ok(WaiterRef { group, holder: id })
}

/// The answer to a `pre-reboot` the cluster answered (`acquire_routed`):
/// granted 200, queued 409, failed as [`failed`].
pub fn pre_reboot_reply(key: &WaiterRef, answer: &Result<pb::AcquireResponse, Status>) -> Reply {
    let outcome = match answer {
        Ok(response) => response.outcome.as_ref(),
        Err(status) => return failed(status),
    };
    match outcome {
        Some(pb::acquire_response::Outcome::Granted(grant)) => Reply::new(
            StatusCode::OK,
            "lock_held",
            format!(
                "reboot slot of group {:?} held, token {}",
                key.group, grant.token
            ),
        ),
        Some(pb::acquire_response::Outcome::Queued(q)) => {
            // The reason as `wire::queue_reason` words it: "full" or "paused: WHY".
            let reason = match q.reason.strip_prefix("paused: ") {
                Some(why) => QueueReason::Paused(why.to_string()),
                None => QueueReason::Full,
            };
            queued(&key.group, q.position, q.waiters, &reason)
        }
        None => Reply::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the cluster answered without an outcome",
        ),
    }
}

/// The answer to a `steady-state` the cluster answered (`release_routed`):
/// 200 whether or not a slot was held.
pub fn steady_state_reply(key: &WaiterRef, answer: &Result<pb::ReleaseResponse, Status>) -> Reply {
    match answer {
        Ok(_) => Reply::new(
            StatusCode::OK,
            "lock_released",
            format!("no reboot slot of group {:?} held", key.group),
        ),
        Err(status) => failed(status),
    }
}

impl Front {
    fn clients(&self) -> MutexGuard<'_, HashMap<WaiterRef, Polling>> {
        self.clients.lock_or_recover()
    }

    /// Keeps `key`'s place until `poll_ttl` from now (registering its
    /// session here if it has none); false when too many clients are kept.
    fn keep(&self, key: &WaiterRef) -> bool {
        let until = Instant::now() + self.poll_ttl;
        let mut clients = self.clients();
        if let Some(polling) = clients.get_mut(key) {
            polling.until = until;
            return true;
        }
        if clients.len() >= MAX_FLEETLOCK_CLIENTS {
            return false;
        }
        let registration = self.cluster.sessions.register(key.clone());
        clients.insert(
            key.clone(),
            Polling {
                _registration: registration,
                until,
            },
        );
        true
    }

    fn forget(&self, key: &WaiterRef) {
        self.clients().remove(key);
    }

    /// Where a client with a kept place stands in this voter's state, when
    /// it is still queued: its answer, with no entry written.
    fn still_queued(&self, key: &WaiterRef) -> Option<Response<Body>> {
        if !self.clients().contains_key(key) {
            return None;
        }
        let answer = {
            let state = self.cluster.view.read();
            let group = state.lease.groups.get(&key.group)?;
            if group.grant(&key.holder).is_some() {
                return None;
            }
            let position = group.queue_position(&key.holder)?;
            let waiters = u32::try_from(group.queue.len()).unwrap_or(u32::MAX);
            queued(
                &key.group,
                position,
                waiters,
                &state.lease.queue_reason(&key.group),
            )
            .response()
        };
        self.keep(key);
        Some(answer)
    }

    /// The client as the caller of a forwarded call: a host acting as itself.
    fn caller(id: &str) -> Caller {
        Caller::Certified(Identity {
            name: id.to_string(),
            role: Role::Host,
        })
    }

    async fn pre_reboot(&self, key: WaiterRef) -> Response<Body> {
        if let Some(answer) = self.still_queued(&key) {
            return answer;
        }
        // Keep the session before asking (as a Wait stream registers first):
        // a place taken now must not lapse before the answer arrives.
        if !self.keep(&key) {
            return Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_clients",
                format!("this voter keeps the places of {MAX_FLEETLOCK_CLIENTS} FleetLock clients already"),
            )
            .response();
        }
        let request = Routed::on_behalf(
            pb::AcquireRequest {
                group: key.group.clone(),
                holder: key.holder.clone(),
                machine_id: String::new(),
                released: None,
            },
            Self::caller(&key.holder),
        );
        let answer = acquire_routed(&self.cluster, &request).await;
        if let Ok(pb::AcquireResponse {
            outcome: Some(pb::acquire_response::Outcome::Granted(grant)),
        }) = &answer
        {
            // A claimed grant is never taken by a session: no place to keep.
            self.forget(&key);
            info!(
                BATON_GROUP = %key.group,
                BATON_HOLDER = %key.holder,
                BATON_TOKEN = grant.token,
                "fleetlock: {} holds a reboot slot of {}",
                key.holder,
                key.group
            );
        }
        pre_reboot_reply(&key, &answer).response()
    }

    async fn steady_state(&self, key: WaiterRef) -> Response<Body> {
        self.forget(&key);
        let request = Routed::on_behalf(
            pb::ReleaseRequest {
                group: key.group.clone(),
                holder: key.holder.clone(),
                token: None,
            },
            Self::caller(&key.holder),
        );
        let answer = release_routed(&self.cluster, &request).await;
        if let Ok(response) = &answer {
            if response.released || response.left_queue {
                info!(
                    BATON_GROUP = %key.group,
                    BATON_HOLDER = %key.holder,
                    "fleetlock: {} is steady: {} of {}",
                    key.holder,
                    if response.released { "released its slot" } else { "left the queue" },
                    key.group
                );
            }
        }
        steady_state_reply(&key, &answer).response()
    }
}

impl Endpoints for Front {
    fn name(&self) -> &'static str {
        "fleetlock"
    }

    fn served(&self) -> &[HttpEndpoint] {
        &[
            HttpEndpoint::FleetLockPreReboot,
            HttpEndpoint::FleetLockSteadyState,
        ]
    }

    fn answer(
        self: Arc<Self>,
        endpoint: HttpEndpoint,
        request: Request<Bytes>,
        caller: HttpCaller,
    ) -> Answer {
        Box::pin(async move {
            let key = match check_request(endpoint, &request, &caller, &self.groups) {
                Ok(key) => key,
                Err(reply) => return reply.response(),
            };
            match endpoint {
                HttpEndpoint::FleetLockPreReboot => self.pre_reboot(key).await,
                HttpEndpoint::FleetLockSteadyState => self.steady_state(key).await,
                HttpEndpoint::Metrics => {
                    Reply::new(StatusCode::NOT_FOUND, "not_found", "not served here").response()
                }
            }
        })
    }

    fn error(&self, status: StatusCode, kind: &'static str, message: String) -> Response<Body> {
        Reply::new(status, kind, message).response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: HttpCaller = HttpCaller {
        identity: None,
        insecure: false,
        network_allowed: true,
    };

    fn request(method: Method, header: Option<&str>, body: &str) -> Request<Bytes> {
        let mut request = Request::builder()
            .method(method)
            .uri(HttpEndpoint::FleetLockPreReboot.path());
        if let Some(value) = header {
            request = request.header(PROTOCOL_HEADER, value);
        }
        request.body(Bytes::from(body.to_string())).unwrap()
    }

    fn check(request: &Request<Bytes>) -> Result<WaiterRef, Reply> {
        let groups = ["workers".to_string()];
        check_request(HttpEndpoint::FleetLockPreReboot, request, &CALLER, &groups)
    }

    fn refused_kind(request: &Request<Bytes>) -> &'static str {
        check(request).expect_err("refused").kind
    }

    #[test]
    fn the_checks_refuse_in_order_and_answer_in_the_protocols_json() {
        let body = r#"{"client_params":{"id":"node-1","group":"workers"}}"#;
        let key = check(&request(Method::POST, Some("true"), body)).unwrap();
        assert_eq!(
            (key.group.as_str(), key.holder.as_str()),
            ("workers", "node-1")
        );
        // The method first, then the header, then the body, names and group.
        assert_eq!(
            refused_kind(&request(Method::GET, None, "")),
            "method_not_allowed"
        );
        assert_eq!(
            refused_kind(&request(Method::POST, Some("yes"), body)),
            "missing_fleet_lock_header"
        );
        assert_eq!(
            refused_kind(&request(Method::POST, Some("true"), "{}")),
            "invalid_client_params"
        );
        let other = r#"{"client_params":{"id":"node-1","group":"db"}}"#;
        assert_eq!(
            refused_kind(&request(Method::POST, Some("true"), other)),
            "group_not_allowed"
        );
        let reply = check(&request(Method::PUT, Some("true"), body)).unwrap_err();
        let response = reply.response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "POST");
        let json: serde_json::Value = serde_json::from_str(&reply.body()).unwrap();
        assert_eq!(json["kind"], "method_not_allowed");
        assert_eq!(json["value"], "FleetLock requests are POST");
    }

    #[test]
    fn the_clusters_answers_in_fleetlock_words() {
        let key = WaiterRef::new("workers", "node-1");
        let queued = pb::AcquireResponse {
            outcome: Some(pb::acquire_response::Outcome::Queued(pb::Queued {
                position: 2,
                waiters: 3,
                reason: "paused: incident".into(),
                waiter_ttl_ms: 30_000,
                holder: "node-1".into(),
            })),
        };
        let reply = pre_reboot_reply(&key, &Ok(queued));
        assert_eq!(
            (reply.status, reply.kind),
            (StatusCode::CONFLICT, "failed_lock_paused")
        );
        let held = pre_reboot_reply(&key, &Err(Status::failed_precondition("node-1 is held")));
        assert_eq!(
            (held.status, held.kind),
            (StatusCode::CONFLICT, "failed_precondition")
        );
        let released = steady_state_reply(&key, &Ok(pb::ReleaseResponse::default()));
        assert_eq!(
            (released.status, released.kind),
            (StatusCode::OK, "lock_released")
        );
    }
}
