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
use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::info;

use crate::config::FleetLockSettings;
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

/// A FleetLock answer: `{"kind":..,"value":..}` with `status`.
fn json(status: StatusCode, kind: &str, value: &str) -> Response<Body> {
    let text = serde_json::json!({ "kind": kind, "value": value }).to_string();
    let mut response = Response::new(Body::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A failed call to the cluster, as a FleetLock error (a small, fixed set of kinds).
fn failed(status: &Status) -> Response<Body> {
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
    json(code, kind, status.message())
}

/// 409 for a client that waits: the semaphore is full (or paused), and where it stands.
fn queued(group: &str, position: u32, waiters: u32, reason: &QueueReason) -> Response<Body> {
    match reason {
        QueueReason::Full => json(
            StatusCode::CONFLICT,
            "failed_lock_semaphore_full",
            &format!(
                "all reboot slots of group {group:?} are taken; queued at {position} of {waiters}; \
                 keep polling to keep the place"
            ),
        ),
        QueueReason::Paused(why) => json(
            StatusCode::CONFLICT,
            "failed_lock_paused",
            &format!("group {group:?} is paused ({why}); queued at {position} of {waiters}"),
        ),
    }
}

impl Front {
    fn clients(&self) -> MutexGuard<'_, HashMap<WaiterRef, Polling>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
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
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_clients",
                &format!("this voter keeps the places of {MAX_FLEETLOCK_CLIENTS} FleetLock clients already"),
            );
        }
        let request = Routed::on_behalf(
            pb::AcquireRequest {
                group: key.group.clone(),
                holder: key.holder.clone(),
                machine_id: String::new(),
            },
            Self::caller(&key.holder),
        );
        let outcome = match acquire_routed(&self.cluster, &request).await {
            Ok(response) => response.outcome,
            Err(status) => return failed(&status),
        };
        match outcome {
            Some(pb::acquire_response::Outcome::Granted(grant)) => {
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
                json(
                    StatusCode::OK,
                    "lock_held",
                    &format!(
                        "reboot slot of group {:?} held, token {}",
                        key.group, grant.token
                    ),
                )
            }
            Some(pb::acquire_response::Outcome::Queued(q)) => {
                // The reason as `wire::queue_reason` words it: "full" or "paused: WHY".
                let reason = match q.reason.strip_prefix("paused: ") {
                    Some(why) => QueueReason::Paused(why.to_string()),
                    None => QueueReason::Full,
                };
                queued(&key.group, q.position, q.waiters, &reason)
            }
            None => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the cluster answered without an outcome",
            ),
        }
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
        match release_routed(&self.cluster, &request).await {
            Ok(response) => {
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
                json(
                    StatusCode::OK,
                    "lock_released",
                    &format!("no reboot slot of group {:?} held", key.group),
                )
            }
            Err(status) => failed(&status),
        }
    }

    /// The checks every request goes through: method, header, body, names, group.
    fn check(
        &self,
        endpoint: HttpEndpoint,
        request: &Request<Bytes>,
        caller: &HttpCaller,
    ) -> Result<WaiterRef, Response<Body>> {
        if request.method() != Method::POST {
            let mut response = json(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "FleetLock requests are POST",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return Err(response);
        }
        let header = request
            .headers()
            .get(PROTOCOL_HEADER)
            .and_then(|value| value.to_str().ok());
        if header != Some("true") {
            return Err(json(
                StatusCode::BAD_REQUEST,
                "missing_fleet_lock_header",
                "the header 'fleet-lock-protocol: true' is required",
            ));
        }
        let params: Params = serde_json::from_slice(request.body()).map_err(|e| {
            json(
                StatusCode::BAD_REQUEST,
                "invalid_client_params",
                &format!("the body is not {{\"client_params\":{{\"id\":..,\"group\":..}}}}: {e}"),
            )
        })?;
        let ClientParams { id, group } = params.client_params;
        let acquire = pb::AcquireRequest {
            group: group.clone(),
            holder: id.clone(),
            machine_id: String::new(),
        };
        requests::check_acquire(&acquire).map_err(|status| {
            json(
                StatusCode::BAD_REQUEST,
                "invalid_client_params",
                status.message(),
            )
        })?;
        permit_fleetlock_group(caller, endpoint, &group, &self.groups).map_err(|denied| {
            json(
                StatusCode::FORBIDDEN,
                "group_not_allowed",
                &denied.to_string(),
            )
        })?;
        Ok(WaiterRef { group, holder: id })
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
            let key = match self.check(endpoint, &request, &caller) {
                Ok(key) => key,
                Err(response) => return response,
            };
            match endpoint {
                HttpEndpoint::FleetLockPreReboot => self.pre_reboot(key).await,
                HttpEndpoint::FleetLockSteadyState => self.steady_state(key).await,
                HttpEndpoint::Metrics => {
                    json(StatusCode::NOT_FOUND, "not_found", "not served here")
                }
            }
        })
    }

    fn error(&self, status: StatusCode, kind: &'static str, message: String) -> Response<Body> {
        json(status, kind, &message)
    }
}
