//! The one check every call to a voter goes through: who calls, and may it (`rules::access`).
//!
//! [`AuthLayer`] wraps the whole gRPC server: it finds the RPC by its path
//! (an unknown path is refused), the caller (the TLS peer's certificate, or,
//! on a call another voter forwarded, the original caller that voter
//! vouches for), checks the rule table, and leaves the [`Caller`] in the
//! request for the services' holder check. Every refusal is logged with
//! BATON_CALLER and BATON_ROLE.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};

use crate::clock::Instant;
use crate::log_fields::caller_span;
use crate::raft::types::Raft;
use crate::rules::access::{self, Caller, Denied, Identity, Role, Rpc};
use crate::server::call_latency::CallLatency;
use crate::transport::PeerInfo;

/// gRPC metadata a forwarding voter sets: the original caller's name
/// (binary metadata: names are UTF-8) and role.
const CALLER_NAME: &str = "x-baton-caller-bin";
const CALLER_ROLE: &str = "x-baton-caller-role";

/// Set on a call one voter forwarded to another (see `routing`).
pub const FORWARDED: &str = "x-baton-forwarded";

/// The names of the current voters: the raft membership, or, before the
/// cluster is formed, the configured voters.
#[derive(Clone)]
pub struct VoterNames {
    raft: Raft,
    configured: Arc<Vec<String>>,
}

impl VoterNames {
    pub fn new(raft: Raft, configured: Vec<String>) -> Self {
        Self {
            raft,
            configured: Arc::new(configured),
        }
    }

    pub fn current(&self) -> Vec<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let names: Vec<String> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(_, node)| node.name.clone())
            .collect();
        if names.is_empty() {
            self.configured.as_ref().clone()
        } else {
            names
        }
    }
}

/// The layer that authenticates and authorizes every call.
#[derive(Clone)]
pub struct AuthLayer {
    voters: VoterNames,
    latency: CallLatency,
}

impl AuthLayer {
    /// Checks every call against `voters`; times Lease and Admin calls into `latency`.
    pub fn new(voters: VoterNames, latency: CallLatency) -> Self {
        Self { voters, latency }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            voters: self.voters.clone(),
            latency: self.latency.clone(),
        }
    }
}

/// [`AuthLayer`]'s service.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    voters: VoterNames,
    latency: CallLatency,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.authorize(&request) {
            Ok((rpc, caller)) => {
                request.extensions_mut().insert(caller);
                // The clone that was made ready is the one to call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let call = inner.call(request);
                if !CallLatency::measures(rpc) {
                    return Box::pin(call);
                }
                let latency = self.latency.clone();
                let start = Instant::now();
                Box::pin(async move {
                    let response = call.await;
                    latency.observe(rpc, start.elapsed());
                    response
                })
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

impl<S> Auth<S> {
    fn authorize<B>(&self, request: &http::Request<B>) -> Result<(Rpc, Caller), Status> {
        let path = request.uri().path();
        let Some(rpc) = Rpc::from_path(path) else {
            return Err(Status::unimplemented(format!("no such call: {path}")));
        };
        let peer = request.extensions().get::<PeerInfo>();
        let caller = caller_of(peer, request.headers(), &self.voters)?;
        access::permit(&caller, rpc, &self.voters.current())
            .map_err(|denied| refuse(&caller, &denied))?;
        Ok((rpc, caller))
    }
}

/// Who is calling: the certificate's identity; on a forwarded call, the
/// caller the forwarding voter names (only a voter may forward).
fn caller_of(
    peer: Option<&PeerInfo>,
    headers: &http::HeaderMap,
    voters: &VoterNames,
) -> Result<Caller, Status> {
    let Some(peer) = peer.filter(|peer| peer.tls) else {
        return Ok(Caller::Insecure);
    };
    let Some(identity) = &peer.identity else {
        return Err(Status::permission_denied(
            "the client certificate names no baton role; issue it with `baton cert issue NAME --role ...`",
        ));
    };
    if !headers.contains_key(FORWARDED) {
        return Ok(Caller::Certified(identity.clone()));
    }
    let direct = Caller::Certified(identity.clone());
    if identity.role != Role::Voter || !voters.current().contains(&identity.name) {
        return Err(refuse(
            &direct,
            &Denied {
                caller: direct.to_string(),
                rpc: "a forwarded call".into(),
                why: "only current voters forward calls".into(),
            },
        ));
    }
    let metadata = MetadataMap::from_headers(headers.clone());
    let name = metadata
        .get_bin(CALLER_NAME)
        .and_then(|value| value.to_bytes().ok())
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
    let role = metadata
        .get(CALLER_ROLE)
        .and_then(|value| value.to_str().ok())
        .and_then(Role::parse);
    match (name, role) {
        (Some(name), Some(role)) => Ok(Caller::Certified(Identity { name, role })),
        // A forwarding voter in an insecure cluster names nobody.
        _ => Err(Status::permission_denied(format!(
            "{direct} forwarded a call without naming its caller"
        ))),
    }
}

/// Marks `request` as forwarded on behalf of `caller`.
pub fn mark_forwarded<T>(request: &mut Request<T>, caller: &Caller) {
    let metadata = request.metadata_mut();
    metadata.insert(FORWARDED, MetadataValue::from_static("1"));
    if let Caller::Certified(identity) = caller {
        metadata.insert_bin(
            CALLER_NAME,
            MetadataValue::from_bytes(identity.name.as_bytes()),
        );
        metadata.insert(
            CALLER_ROLE,
            MetadataValue::from_static(identity.role.as_str()),
        );
    }
}

/// The caller the layer found for this request.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("request reached a service without authentication"))
}

/// A refusal: logged with the caller's identity, answered PermissionDenied.
pub fn refuse(caller: &Caller, denied: &Denied) -> Status {
    caller_span(caller.name(), caller.role()).in_scope(|| tracing::warn!("refused: {denied}"));
    Status::permission_denied(denied.to_string())
}

/// An admin action, logged with who asked for it.
pub fn audit(caller: &Caller, what: &str) {
    caller_span(caller.name(), caller.role()).in_scope(|| tracing::info!("admin: {what}"));
}

/// The holder check of Acquire and Release.
pub fn permit_holder(caller: &Caller, rpc: Rpc, holder: &str) -> Result<(), Status> {
    access::permit_holder(caller, rpc, holder).map_err(|denied| refuse(caller, &denied))
}
