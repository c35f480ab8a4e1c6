//! The host agent's client of the Lease service: any voter, failing over; grants as `HeldLease`.

use std::future::Future;
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_proto::v1::control_client::ControlClient;
use baton_proto::v1::fleet_client::FleetClient;
use baton_proto::v1::lease_client::LeaseClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::config::Settings;
use crate::host::held_lease::HeldLease;
use crate::rules::lease::LATE_ACQUIRE;
use crate::rules::limits::MAX_RESPONSE_BYTES;
use crate::rules::phases::RememberedLease;
use crate::transport::tls::TlsMode;
use crate::transport::{Dialer, TransportError};

/// Where the agent sends lease calls: the local voter first when this host
/// is one, then the other voters.
pub fn lease_endpoints(settings: &Settings) -> Vec<String> {
    let mut endpoints = Vec::new();
    if let (Some(_), Some(listen)) = (settings.this_voter(), settings.cluster.listen) {
        let local = if listen.ip().is_unspecified() {
            format!("127.0.0.1:{}", listen.port())
        } else {
            listen.to_string()
        };
        endpoints.push(local);
    }
    for voter in &settings.cluster.voters {
        if settings.this_voter().map(|me| me.id) != Some(voter.id) {
            endpoints.push(voter.address.clone());
        }
    }
    endpoints
}

/// The host agent's lease channels ping their connection this often while
/// a call is in flight, and replace it when a ping goes unanswered this long.
const CALL_PING_INTERVAL: Duration = Duration::from_secs(1);
const CALL_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The dialer of the host agent's lease calls (see [`Dialer::with_call_pings`]).
pub fn lease_dialer(connect_timeout: Duration, request_timeout: Duration, tls: TlsMode) -> Dialer {
    Dialer::new(connect_timeout, request_timeout, tls)
        .with_call_pings(CALL_PING_INTERVAL, CALL_PING_TIMEOUT)
}

/// Why a lease call failed.
#[derive(Debug, thiserror::Error)]
pub enum HostLeaseError {
    #[error("no voter answered (tried {tried}): {last}")]
    Unavailable { tried: String, last: String },
    #[error("the cluster refused: {0}")]
    Refused(String),
}

/// What an acquire came to.
#[derive(Debug)]
pub enum Acquired {
    Granted(HeldLease),
    Queued {
        position: u32,
        waiters: u32,
        reason: String,
    },
}

/// Calls the Lease service for one holder in one group.
pub struct HostLeaseClient {
    endpoints: Vec<String>,
    /// The endpoint that answered last; tried first next time.
    current: usize,
    dialer: Dialer,
    group: String,
    holder: String,
    machine_id: String,
    /// The token of the last grant this client released (0: none yet), sent
    /// with each acquire so that one the network held past a release is
    /// refused as late. None after a live acquire of ours was refused as
    /// late (the holder's last release was not ours: an operator's, or one
    /// before a restart): not sent until our next release.
    released: Option<u64>,
}

/// Whether a failed call should be tried on the next voter.
fn try_elsewhere(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

impl HostLeaseClient {
    pub fn new(
        endpoints: Vec<String>,
        dialer: Dialer,
        group: &str,
        holder: &str,
        machine_id: &str,
    ) -> Self {
        Self {
            endpoints,
            current: 0,
            dialer,
            group: group.to_string(),
            holder: holder.to_string(),
            machine_id: machine_id.to_string(),
            released: Some(0),
        }
    }

    /// Runs `call` against the voters, starting with the last one that
    /// answered, until one answers or all failed.
    async fn call<T, F, Fut>(&mut self, call: F) -> Result<T, HostLeaseError>
    where
        F: Fn(LeaseClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_on(
            |channel| LeaseClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES),
            call,
        )
        .await
    }

    /// Sends this host's report to the voters (the fleet view), failing over
    /// as every lease call does.
    pub async fn report(&mut self, report: &pb::HostReport) -> Result<(), HostLeaseError> {
        self.call_on(FleetClient::new, |mut c| {
            let report = report.clone();
            async move { c.report(report).await.map(drop) }
        })
        .await
    }

    /// What an admin asked of this host (`baton hold`, `baton reboot-now`),
    /// read from a voter's applied state: one call.
    pub async fn orders(&mut self) -> Result<HostOrders, HostLeaseError> {
        let request = pb::HostControlRequest {
            holder: self.holder.clone(),
        };
        let reply = self
            .call_on(ControlClient::new, |mut client| {
                let request = request.clone();
                async move { client.host_control(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        let grant = reply
            .grants
            .iter()
            .find(|g| g.group == self.group)
            .map(|g| g.token);
        Ok(HostOrders {
            grant,
            held: reply
                .held
                .map(|h| format!("{} (held by {})", h.reason, h.by)),
            reboot_now_at: reply.reboot_now.as_ref().map(|r| r.at_ms),
            reboot_now_by: reply.reboot_now.map(|r| r.by),
        })
    }

    /// [`Self::call`] with any service's client, made by `client` from a channel.
    async fn call_on<C, T, F, Fut>(
        &mut self,
        client: impl Fn(Channel) -> C,
        call: F,
    ) -> Result<T, HostLeaseError>
    where
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.on_voters(Dialer::channel, client, call).await
    }

    /// Runs `call` with a client on a channel `channel` makes, against the
    /// voters from the last one that answered, until one answers or all
    /// failed; what cannot be tried elsewhere is a refusal.
    async fn on_voters<C, T, F, Fut>(
        &mut self,
        channel: fn(&Dialer, &str) -> Result<Channel, TransportError>,
        client: impl Fn(Channel) -> C,
        call: F,
    ) -> Result<T, HostLeaseError>
    where
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last = String::from("no voters configured");
        for attempt in 0..self.endpoints.len() {
            let index = (self.current + attempt) % self.endpoints.len();
            let address = &self.endpoints[index];
            let channel = match channel(&self.dialer, address) {
                Ok(channel) => channel,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match call(client(channel)).await {
                Ok(value) => {
                    self.current = index;
                    return Ok(value);
                }
                Err(status) if try_elsewhere(&status) => {
                    last = format!("{address}: {}", status.message());
                }
                Err(status) => return Err(HostLeaseError::Refused(status.message().to_string())),
            }
        }
        Err(HostLeaseError::Unavailable {
            tried: self.endpoints.join(", "),
            last,
        })
    }

    /// Takes a slot (also one handed over to us on release), or queues.
    pub async fn acquire(&mut self) -> Result<Acquired, HostLeaseError> {
        let reply = match self.try_acquire().await {
            // Refused as late, yet this is a live call: the holder's last
            // release was not ours (an operator's, or before a restart).
            // Ask again without naming one.
            Err(HostLeaseError::Refused(why)) if self.forget_release_if_late(&why) => {
                self.try_acquire().await?
            }
            other => other?,
        };
        match reply.outcome {
            Some(pb::acquire_response::Outcome::Granted(grant)) => Ok(Acquired::Granted(
                HeldLease::from_grant(&grant.group, &grant.holder, grant.token),
            )),
            Some(pb::acquire_response::Outcome::Queued(q)) => Ok(Acquired::Queued {
                position: q.position,
                waiters: q.waiters,
                reason: q.reason,
            }),
            None => Err(HostLeaseError::Refused("empty acquire reply".into())),
        }
    }

    async fn try_acquire(&mut self) -> Result<pb::AcquireResponse, HostLeaseError> {
        let request = pb::AcquireRequest {
            group: self.group.clone(),
            holder: self.holder.clone(),
            machine_id: self.machine_id.clone(),
            released: self.released,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.acquire(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Gives the slot back (only under `token`, when given) or leaves the queue.
    pub async fn release(&mut self, token: Option<u64>) -> Result<(), HostLeaseError> {
        let request = pb::ReleaseRequest {
            group: self.group.clone(),
            holder: self.holder.clone(),
            token,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.release(request).await.map(|_| ()) }
        })
        .await?;
        if let Some(token) = token {
            // Released (or released before): acquires sent from now on
            // come after it.
            self.released = Some(self.released.unwrap_or(0).max(token));
        }
        Ok(())
    }

    /// This host's group as the leader has it now (holders and queue), by a
    /// linearizable read; None when the group has no state yet.
    pub async fn group_status(&mut self) -> Result<Option<pb::GroupStatus>, HostLeaseError> {
        let status = self
            .call(|mut c| async move {
                c.status(pb::StatusRequest { stale: false })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
        Ok(status.groups.into_iter().find(|g| g.name == self.group))
    }

    /// The token under which this holder holds its group now, by a
    /// linearizable read; None when it holds nothing.
    pub async fn held_token(&mut self) -> Result<Option<u64>, HostLeaseError> {
        Ok(self.group_status().await?.and_then(|g| {
            g.holders
                .iter()
                .find(|h| h.holder == self.holder)
                .map(|h| h.token)
        }))
    }

    /// Gives back a grant this host holds but does not want (it is idle): one
    /// its agent forgot, or one a late retry of an acquire took after the
    /// host had released. Checked by a linearizable read first; returns the
    /// token given back.
    pub async fn give_back_stray(&mut self) -> Result<Option<u64>, HostLeaseError> {
        let Some(token) = self.held_token().await? else {
            return Ok(None);
        };
        self.release(Some(token)).await?;
        Ok(Some(token))
    }

    /// Re-checks a remembered grant with a linearizable read: the proof of
    /// holding when the cluster still has it under the same token.
    pub async fn verify(
        &mut self,
        remembered: &RememberedLease,
    ) -> Result<Option<HeldLease>, HostLeaseError> {
        if remembered.group != self.group || remembered.holder != self.holder {
            return Ok(None);
        }
        Ok(match self.held_token().await? {
            Some(token) if token == remembered.token => Some(HeldLease::from_grant(
                &remembered.group,
                &remembered.holder,
                token,
            )),
            _ => None,
        })
    }

    /// Opens a `Lease.Wait` stream for this holder on some voter, starting
    /// with the one after the voter whose stream broke last (see
    /// [`HostLeaseClient::stream_broke`]). The open stream keeps our place.
    pub async fn wait(&mut self) -> Result<tonic::Streaming<pb::WaitEvent>, HostLeaseError> {
        let request = pb::WaitRequest {
            group: self.group.clone(),
            holder: self.holder.clone(),
            machine_id: self.machine_id.clone(),
            released: self.released,
        };
        self.on_voters(Dialer::stream_channel, LeaseClient::new, |mut c| {
            let request = request.clone();
            async move { c.wait(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Whether a Wait stream that ended with `status` was refused as late:
    /// it named our last release, yet the holder's last release is newer
    /// (not ours: an operator's, or one before a restart). The stream was
    /// live, so the next one names no release, and may open at once.
    pub fn wait_refused_as_late(&mut self, status: &Status) -> bool {
        status.code() == Code::FailedPrecondition && self.forget_release_if_late(status.message())
    }

    /// Whether `refusal` is the voters' refusal of a late acquire; if so, our
    /// last release is not the holder's last, and is no longer named.
    fn forget_release_if_late(&mut self, refusal: &str) -> bool {
        let late = refusal.starts_with(LATE_ACQUIRE);
        if late {
            self.released = None;
        }
        late
    }

    /// The voter we waited on went away: try the next one first.
    pub fn stream_broke(&mut self) {
        if !self.endpoints.is_empty() {
            self.current = (self.current + 1) % self.endpoints.len();
        }
    }
}

/// What an admin asked of this host, as its agent learns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOrders {
    /// Held (`baton hold`): the reason and who held it; the host does not queue.
    pub held: Option<String>,
    /// `baton reboot-now`: who asked; the host reboots outside its window.
    pub reboot_now_by: Option<String>,
    /// When it was asked (unix ms): tells one request from the next.
    pub reboot_now_at: Option<u64>,
    /// The token of a grant the answering voter has for this host in its
    /// group (perhaps a moment stale).
    pub grant: Option<u64>,
}

/// This host's machine id (/etc/machine-id), recorded with its grants; empty
/// when unreadable (it is informational).
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
