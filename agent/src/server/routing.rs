//! Leader routing: answers a call on the leader or forwards it there; proposes; reads status.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_proto::v1 as pb;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::Semaphore;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::clock::{self, Instant};
use crate::config::LeaseSettings;
use crate::raft::network::PeerHealth;
use crate::raft::state_machine::StateView;
use crate::raft::types::{Applied, NodeId, Raft, VoterNode};
use crate::rules::access::Caller;
use crate::rules::lease::{Command, Outcome, UnixMillis};
use crate::server::auth;
use crate::server::fleet_state::FleetView;
use crate::server::proposals::Proposals;
use crate::server::sessions::Sessions;
use crate::server::wire;
use crate::transport::tls::TlsMode;
use crate::transport::Dialer;

/// How long a peer may stay silent and still count as reachable in status.
pub const REACHABLE_WITHIN: Duration = Duration::from_secs(2);

/// How long a call that could not be answered on the leader waits before
/// it tries the same leader again (a change of leader ends the wait).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What one try on the leader came to.
pub enum Attempt<T> {
    Done(T),
    /// Leadership moved under us; try again where it went.
    Retry(String),
    Fail(Status),
}

/// Resolves when the leader or the term differ from `seen`; never, once
/// raft has stopped (the caller's pause then runs out).
async fn leadership_moved(
    metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, VoterNode>>,
    seen: (Option<NodeId>, u64),
) {
    loop {
        if metrics.changed().await.is_err() {
            return std::future::pending().await;
        }
        let now = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if now != seen {
            return;
        }
    }
}

/// What a failed raft write means for the caller: try again where
/// leadership went, or give up with a status.
pub fn write_failed<T>(
    error: RaftError<NodeId, ClientWriteError<NodeId, VoterNode>>,
) -> Attempt<T> {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Attempt::Retry(format!("leadership moved to {:?}", f.leader_id))
        }
        RaftError::APIError(other) => Attempt::Fail(Status::failed_precondition(other.to_string())),
        RaftError::Fatal(fatal) => {
            Attempt::Fail(Status::unavailable(format!("raft stopped: {fatal}")))
        }
    }
}

impl<T> Attempt<T> {
    /// Maps the value of a successful try.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Attempt::Done(value) => Attempt::Done(f(value)),
            Attempt::Retry(why) => Attempt::Retry(why),
            Attempt::Fail(status) => Attempt::Fail(status),
        }
    }
}

/// A request as it arrived: its message, who called (see `auth`), and
/// whether another voter already forwarded it (then it is not forwarded
/// again: no loops during elections).
pub struct Routed<Req> {
    pub message: Req,
    pub caller: Caller,
    forwarded: bool,
}

impl<Req> Routed<Req> {
    /// A call this voter makes on behalf of `caller` (a Wait stream's acquire).
    pub fn on_behalf(message: Req, caller: Caller) -> Self {
        Routed {
            message,
            caller,
            forwarded: false,
        }
    }

    pub fn new(request: Request<Req>) -> Result<Self, Status> {
        Ok(Routed {
            caller: auth::caller(&request)?,
            forwarded: request.metadata().contains_key(auth::FORWARDED),
            message: request.into_inner(),
        })
    }
}

/// Where a routed call was answered: here, because this voter leads, or by
/// the leader it was forwarded to (whose answer is passed on as is).
pub enum Answered<Here, ByLeader> {
    Here(Here),
    ByLeader(ByLeader),
}

/// Everything the Lease and Admin services need from this voter.
#[derive(Clone)]
pub struct Cluster {
    pub id: NodeId,
    pub raft: Raft,
    pub view: StateView,
    pub dialer: Dialer,
    pub health: PeerHealth,
    pub lease: LeaseSettings,
    /// How this voter talks to the cluster (its certificate, or plaintext).
    pub tls: TlsMode,
    /// The term in which this process, as leader, committed a read barrier
    /// (see `ensure_linearizable`). Zero: none yet.
    pub read_barrier_term: Arc<AtomicU64>,
    /// Waiters' sessions: the Wait streams open here, and the leader's deadlines.
    pub sessions: Sessions,
    /// Calls this voter may have in flight to the leader at once (see
    /// [`crate::rules::limits::MAX_FORWARDED_IN_FLIGHT`]).
    pub forward_slots: Arc<Semaphore>,
    /// Host reports: the inbox of this voter, and the leader's fleet view.
    pub fleet: FleetView,
    /// The group commit every write goes through (`server::proposals`).
    pub proposals: Proposals,
}

/// What an applied command answers its caller: the outcome, or the
/// refusal (`wire::refusal_status`) or rejection (InvalidArgument) as a status.
pub fn applied(result: Applied) -> Result<Outcome, Status> {
    match result {
        Ok(Outcome::Refused(refusal)) => Err(wire::refusal_status(&refusal)),
        Ok(outcome) => Ok(outcome),
        Err(rejected) => Err(Status::invalid_argument(rejected.to_string())),
    }
}

/// Now, in unix milliseconds, as the leader stamps it into commands.
pub fn now_ms() -> Result<UnixMillis, Status> {
    clock::since_unix_epoch()
        .map(|d| d.as_millis() as UnixMillis)
        .ok_or_else(|| Status::internal("system clock is before 1970"))
}

impl Cluster {
    /// The leader as this voter knows it, with its address (None when it is
    /// not in the membership).
    pub fn leader(&self) -> Option<(NodeId, Option<String>)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let address = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.address.clone());
        Some((leader, address))
    }

    /// Whether this voter leads now.
    pub fn leading(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Answers `request` on the leader: `local()` when this voter leads;
    /// otherwise `remote` sends the request, marked as forwarded, to the
    /// leader. Retries across elections until the request timeout runs out.
    pub async fn route<Req, T, Resp, L, LF, R, RF>(
        &self,
        request: &Routed<Req>,
        local: L,
        remote: R,
    ) -> Result<Answered<T, Resp>, Status>
    where
        Req: Clone,
        L: Fn() -> LF,
        LF: Future<Output = Attempt<T>>,
        R: Fn(Channel, Request<Req>) -> RF,
        RF: Future<Output = Result<Response<Resp>, Status>>,
    {
        let (local, remote) = (&local, &remote);
        self.on_leader(
            request.forwarded,
            move || async move { local().await.map(Answered::Here) },
            move |channel| async move {
                let mut forwarded = Request::new(request.message.clone());
                auth::mark_forwarded(&mut forwarded, &request.caller);
                remote(channel, forwarded)
                    .await
                    .map(|response| Answered::ByLeader(response.into_inner()))
            },
        )
        .await
    }

    /// Stamps `make(now)` with the leader's clock and proposes it.
    pub async fn propose_stamped(
        &self,
        make: impl FnOnce(UnixMillis) -> Command,
    ) -> Attempt<Outcome> {
        match now_ms() {
            Ok(now) => self.propose(make(now)).await,
            Err(status) => Attempt::Fail(status),
        }
    }

    /// Runs `local` if this voter leads, else `remote` against the leader's
    /// channel; retries across elections until the request timeout runs out.
    async fn on_leader<T, L, LF, R, RF>(
        &self,
        forwarded: bool,
        local: L,
        remote: R,
    ) -> Result<T, Status>
    where
        L: Fn() -> LF,
        LF: Future<Output = Attempt<T>>,
        R: Fn(Channel) -> RF,
        RF: Future<Output = Result<T, Status>>,
    {
        let budget = self.dialer.request_timeout();
        let deadline = Instant::now() + budget;
        let mut metrics = self.raft.metrics();
        let mut last_problem: String;
        loop {
            let (leader, address, term) = {
                let m = metrics.borrow_and_update();
                let address = m.current_leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.address.clone())
                });
                (m.current_leader, address, m.current_term)
            };
            match (leader, address) {
                (Some(leader), _) if leader == self.id => match local().await {
                    Attempt::Done(value) => return Ok(value),
                    Attempt::Fail(status) => return Err(status),
                    Attempt::Retry(why) => last_problem = why,
                },
                (Some(leader), Some(address)) => {
                    if forwarded {
                        return Err(Status::unavailable(format!(
                            "voter {} is not the leader (voter {leader} is)",
                            self.id
                        )));
                    }
                    let channel = self
                        .dialer
                        .channel(&address)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    // Forwarded calls share one connection to the leader,
                    // which sheds calls over its per-connection limit: wait
                    // here for a slot instead (back-pressure, not refusal).
                    let answer = match self.forward_slots.acquire().await {
                        Ok(_slot) => remote(channel).await,
                        Err(_) => Err(Status::unavailable("this voter is stopping")),
                    };
                    match answer {
                        Ok(value) => return Ok(value),
                        Err(status) if status.code() == tonic::Code::Unavailable => {
                            last_problem =
                                format!("leader {leader} at {address}: {}", status.message());
                        }
                        Err(status) => return Err(status),
                    }
                }
                (Some(leader), None) => {
                    last_problem = format!("leader {leader} is not in the membership");
                }
                (None, _) => last_problem = String::from("no leader elected yet"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Status::unavailable(format!(
                    "no leader answered within {budget:?}: {last_problem}"
                )));
            }
            // Try again at once where leadership goes, else after a pause.
            // Not on every metrics change: a leader that cannot reach a
            // quorum changes its metrics with every failed heartbeat, and
            // each try makes more (13,000 connects a second to two dead
            // followers for one waiting Status call, before this).
            let _ = tokio::time::timeout(
                left.min(RETRY_PAUSE),
                leadership_moved(&mut metrics, (leader, term)),
            )
            .await;
        }
    }

    /// Appends `command` through raft on this voter (which must lead) and
    /// waits until it is applied.
    pub async fn propose(&self, command: Command) -> Attempt<Outcome> {
        // Refuse before anything reaches the log: a rejected command must
        // not cost an entry (nor ever grow one past the message limit).
        if let Err(rejected) = command.validate() {
            return Attempt::Fail(Status::invalid_argument(rejected.to_string()));
        }
        match self.proposals.propose(command).await {
            Ok(Ok(result)) => match applied(result) {
                Ok(outcome) => Attempt::Done(outcome),
                Err(status) => Attempt::Fail(status),
            },
            Ok(Err(e)) => write_failed(e),
            Err(gone) => Attempt::Fail(Status::unavailable(gone.to_string())),
        }
    }

    /// Waits until this leader's state machine reflects every write committed
    /// before the call (read-index), so the status read after it is linearizable.
    ///
    /// openraft 0.9 restores leadership at start-up from a committed vote
    /// without committing a new entry, and its read index is then the
    /// committed index it last persisted, which can be older than entries
    /// it acknowledged before the crash. So the first read of each term in
    /// this process first commits an entry (a harmless `Expire`): that
    /// commits everything before it.
    pub async fn ensure_linearizable(&self) -> Attempt<()> {
        let term = self.raft.metrics().borrow().current_term;
        if self.read_barrier_term.load(Ordering::Acquire) != term {
            let barrier = match now_ms() {
                Ok(now) => Command::Expire {
                    now,
                    hold_timeout_ms: None,
                },
                Err(status) => return Attempt::Fail(status),
            };
            match self.propose(barrier).await {
                Attempt::Done(_) => self.read_barrier_term.store(term, Ordering::Release),
                Attempt::Retry(why) => return Attempt::Retry(why),
                Attempt::Fail(status) => return Attempt::Fail(status),
            }
        }
        match self.raft.ensure_linearizable().await {
            Ok(_) => Attempt::Done(()),
            Err(RaftError::APIError(e)) => Attempt::Retry(e.to_string()),
            Err(RaftError::Fatal(fatal)) => {
                Attempt::Fail(Status::unavailable(format!("raft stopped: {fatal}")))
            }
        }
    }

    /// When the certificate of voter `id` expires: this voter's own, or a
    /// peer's as its TLS handshakes showed (None without TLS).
    fn cert_expiry(&self, id: NodeId, address: &str) -> Option<i64> {
        match &self.tls {
            TlsMode::Mutual(state) if id == self.id => Some(state.current().own.not_after),
            TlsMode::Mutual(_) => self.dialer.peer_certs().expiry(address),
            TlsMode::Insecure => None,
        }
    }

    /// The status as this voter sees it now (not itself a linearizable read).
    pub fn status(&self) -> pb::StatusResponse {
        let metrics = self.raft.metrics().borrow().clone();
        let leading = metrics.current_leader == Some(self.id);
        let membership = metrics.membership_config.membership();
        let matched = |id: &NodeId| {
            metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(id).copied().flatten())
                .map(|log_id| log_id.index)
                .or_else(|| {
                    // The leader itself is not in its replication map.
                    (leading && *id == self.id)
                        .then_some(metrics.last_log_index)
                        .flatten()
                })
        };
        let stored = self.view.read().stored_voters.clone();
        let voters = membership
            .nodes()
            .filter(|(id, _)| membership.voter_ids().any(|v| v == **id))
            .map(|(id, node)| pb::Voter {
                cert_expires: self.cert_expiry(*id, &node.address),
                id: *id,
                name: node.name.clone(),
                address: node.address.clone(),
                reachable: *id == self.id
                    || if leading {
                        self.health.answered_within(*id, REACHABLE_WITHIN)
                    } else {
                        metrics.current_leader == Some(*id)
                    },
                matched: matched(id),
                stored: stored.contains(id),
            })
            .collect();
        let state = self.view.read();
        pb::StatusResponse {
            leader: metrics.current_leader,
            term: metrics.current_term,
            voters,
            groups: state
                .lease
                .groups
                .iter()
                .map(|(name, group)| wire::group_status(&state.lease, name, group))
                .collect(),
            paused_all: state.lease.paused_all.clone(),
            paused_all_by: state.lease.paused_all_by.clone(),
            paused_all_at_ms: state.lease.paused_all_at,
            settle_ms: state.lease.settle_ms,
            held_hosts: wire::held_hosts(&state.lease),
            reboot_now: wire::reboot_requests(&state.lease),
            insecure: self.tls.is_insecure(),
            last_applied: state.last_applied.map(|l| l.index).unwrap_or(0),
            served_by: self.id,
            snapshot: metrics.snapshot.map(|l| l.index),
            purged: metrics.purged.map(|l| l.index),
            reporting_hosts: now_ms().ok().and_then(|now| self.fleet.reporting(now)),
        }
    }
}
