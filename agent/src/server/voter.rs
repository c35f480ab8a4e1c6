//! Runs a voter: storage, raft, the gRPC server, bootstrap, expiry, and a clean stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::v1::admin_server::AdminServer;
use baton_proto::v1::control_server::ControlServer;
use baton_proto::v1::fleet_server::FleetServer;
use baton_proto::v1::lease_server::LeaseServer;
use baton_proto::v1::raft_server::RaftServer;
use openraft::error::{InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{Config, SnapshotPolicy};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{LeaseSettings, Settings, VoterSettings};
use crate::log_fields::lease_span;
use crate::raft::election::{self, ElectionTiming};
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerHealth};
use crate::raft::service::{RaftGate, RaftService};
use crate::raft::state_machine::{Change, StateMachine};
use crate::raft::storage::{open_database, OpenError};
use crate::raft::types::{NodeId, Raft, StorageError, TypeConfig, VoterNode};
use crate::rules::lease::{Command, EventKind, ReleaseCause};
use crate::rules::limits::{
    MAX_API_MESSAGE_BYTES, MAX_CONCURRENT_REQUESTS_PER_CONNECTION, MAX_FORWARDED_IN_FLIGHT,
    MAX_RAFT_MESSAGE_BYTES, SNAPSHOT_CHUNK_BYTES,
};
use crate::server::admin_service::AdminService;
use crate::server::auth::{AuthLayer, VoterNames};
use crate::server::bootstrap::{self, Start};
use crate::server::call_latency::CallLatency;
use crate::server::control_service::ControlService;
use crate::server::fleet_state::FleetView;
use crate::server::fleet_view::{self, FleetService};
use crate::server::lease_service::LeaseService;
use crate::server::proposals::Proposals;
use crate::server::routing::{now_ms, Cluster};
use crate::server::session_loops;
use crate::server::sessions::Sessions;
use crate::transport::tls::TlsMode;
use crate::transport::{self, Dialer, Network, TransportError};

/// How often the leader looks for holds that ran out of time.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);

/// Why a voter could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("this host ({name}) is not among [cluster].voters; only voters run the lease cluster")]
    NotAVoter { name: String },
    #[error(
        "voter {id} has no state in {state_dir}, but the cluster (leader: voter {leader}) knows it stored log entries{}: \
         its state was lost, and a voter that forgot its vote must not rejoin under the same id. \
         Remove it (baton voter remove {id}) and add this host under a new id (baton voter add NEW_ID NAME ADDRESS, and the same id in [cluster].voters)",
        .matched.map(|m| format!(" up to index {m}")).unwrap_or_default()
    )]
    WipedState {
        id: NodeId,
        leader: NodeId,
        matched: Option<u64>,
        state_dir: std::path::PathBuf,
    },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot start the raft log writer thread: {0}")]
    LogWriter(std::io::Error),
    #[error(
        "voter {id} has no raft state, but {} says it was a member ({since}): its raft store was lost, \
         and a voter that forgot its vote must not start afresh under the same id. \
         Remove it (baton voter remove {id}), delete that file, and add this host under a new id \
         (baton voter add NEW_ID NAME ADDRESS, and the same id in [cluster].voters)",
        marker.display()
    )]
    StoreLost {
        id: NodeId,
        marker: std::path::PathBuf,
        since: String,
    },
    #[error("raft storage: {0}")]
    Storage(#[from] StorageError),
    #[error("invalid raft settings: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error("raft failed to start: {0}")]
    RaftStart(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("gRPC server stopped: {0}")]
    ServerGone(String),
    #[error("raft stopped: {0} (the log or the disk under the state directory failed; see the errors above)")]
    RaftFatal(String),
}

/// How long the raft core may take to answer a liveness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Voters ping each other's connections this often, and give up on one
/// whose ping goes unanswered this long: a dead link is replaced within
/// 1-1.5 s (a shorter timeout would drop live links of a voter that is
/// merely busy).
const PEER_PING_INTERVAL: Duration = Duration::from_millis(500);
const PEER_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// A voter that serves until asked to stop.
pub struct Voter {
    pub id: NodeId,
    raft: Raft,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    stop_server: watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The services' handle, for the metrics (`server::metrics`).
    cluster: Cluster,
    /// How long Lease and Admin calls take, timed by the auth layer.
    latency: CallLatency,
}

/// What a voter runs on: its network, its raft log store (and whether it
/// is pristine: no vote, no log) and its state machine.
pub struct Parts<L> {
    pub network: Network,
    pub log_store: L,
    pub pristine: bool,
    pub state_machine: StateMachine,
}

/// The raft tuning from the settings.
fn raft_config(settings: &Settings) -> Result<Config, openraft::ConfigError> {
    let cluster = &settings.cluster;
    let election_ms = cluster.election_timeout.as_millis() as u64;
    let keep = cluster.snapshot_every / 2;
    Config {
        cluster_name: "baton".to_string(),
        heartbeat_interval: cluster.heartbeat_interval.as_millis() as u64,
        election_timeout_min: election_ms,
        // A narrow range keeps failover fast (openraft's leader lease is the
        // maximum) while still spreading candidates apart.
        election_timeout_max: election_ms * 3 / 2,
        // Elections are started by `raft::election` after a pre-vote.
        enable_elect: false,
        install_snapshot_timeout: cluster.request_timeout.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cluster.snapshot_every),
        // Keep some log after a snapshot so a briefly lagging follower is
        // caught up by entries; one further behind gets the snapshot.
        max_in_snapshot_log_to_keep: keep,
        purge_batch_size: 64,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    }
    .validate()
}

fn members(voters: &[VoterSettings]) -> BTreeMap<NodeId, VoterNode> {
    voters
        .iter()
        .map(|v| {
            (
                v.id,
                VoterNode {
                    name: v.name.clone(),
                    address: v.address.clone(),
                },
            )
        })
        .collect()
}

impl Voter {
    /// Opens storage, starts raft, listens, and bootstraps the cluster from
    /// the configured voters when this voter has no state yet.
    pub async fn start(settings: &Settings, tls: TlsMode) -> Result<Voter, NodeError> {
        if settings.this_voter().is_none() {
            return Err(NodeError::NotAVoter {
                name: settings.node.name.clone(),
            });
        }
        let db = open_database(&settings.node.state_dir)?;
        let log_store = LogStore::new(db.clone()).map_err(NodeError::LogWriter)?;
        let pristine = log_store.is_pristine()?;
        let state_machine = StateMachine::open(db)?;
        Self::start_with(
            settings,
            tls,
            Parts {
                network: Network::Tcp,
                log_store,
                pristine,
                state_machine,
            },
        )
        .await
    }

    /// [`Voter::start`] with the storage and network given: production
    /// passes the redb log store and the host's TCP stack; the
    /// deterministic simulation (`examples/simulate.rs`) a simulated disk
    /// (`raft::sim_store`) and a simulated network.
    pub async fn start_with<L>(
        settings: &Settings,
        tls: TlsMode,
        parts: Parts<L>,
    ) -> Result<Voter, NodeError>
    where
        L: RaftLogStorage<TypeConfig>,
    {
        let Parts {
            network: net,
            log_store,
            pristine,
            state_machine,
        } = parts;
        let me = settings
            .this_voter()
            .ok_or_else(|| NodeError::NotAVoter {
                name: settings.node.name.clone(),
            })?
            .clone();
        let view = state_machine.view();

        let dialer = Dialer::new(
            settings.cluster.connect_timeout,
            settings.cluster.request_timeout,
            tls.clone(),
        )
        .over(net.clone())
        .with_keep_alive(PEER_PING_INTERVAL, PEER_PING_TIMEOUT);
        let health = PeerHealth::default();
        let network = NetworkFactory::new(dialer.clone(), health.clone());
        let config = Arc::new(raft_config(settings)?);
        let raft = Raft::new(me.id, config, network, log_store, state_machine)
            .await
            .map_err(|e| NodeError::RaftStart(e.to_string()))?;

        let cluster = Cluster {
            id: me.id,
            raft: raft.clone(),
            view,
            dialer,
            health: health.clone(),
            lease: settings.lease.clone(),
            tls: tls.clone(),
            read_barrier_term: Default::default(),
            sessions: Sessions::new(settings.lease.waiter_ttl),
            forward_slots: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDED_IN_FLIGHT)),
            fleet: FleetView::default(),
            proposals: Proposals::start(raft.clone(), health.clone()),
        };

        // A voter without state takes no raft traffic until it knows it may
        // (server::bootstrap): entries or votes arriving while it asks would
        // blur whether the cluster's record of it is about this process.
        let raft_gate = RaftGate::new(!pristine);
        // Listen before bootstrapping, so peers can reach us for the first election.
        // The config requires `listen` for voters; this is only a guard.
        let listen = settings
            .cluster
            .listen
            .ok_or_else(|| NodeError::RaftStart("a voter needs [cluster] listen".into()))?;
        let incoming = transport::listen(&net, listen, tls).await?;
        let timing = ElectionTiming::new(settings.cluster.election_timeout);
        let (stop_server, mut stop_rx) = watch::channel(false);
        let voters = VoterNames::new(
            raft.clone(),
            settings
                .cluster
                .voters
                .iter()
                .map(|v| v.name.clone())
                .collect(),
        );
        // Every call passes the one authentication and role check, and
        // every service decodes only messages of its bounded size.
        let latency = CallLatency::default();
        let router = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(MAX_CONCURRENT_REQUESTS_PER_CONNECTION)
            // Over the limit is ResourceExhausted at once, not a queue.
            .load_shed(true)
            .layer(AuthLayer::new(voters, latency.clone()))
            .add_service(
                RaftServer::new(RaftService::new(raft.clone(), timing, raft_gate.clone()))
                    .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
            )
            .add_service(
                LeaseServer::new(LeaseService::new(cluster.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            )
            .add_service(
                AdminServer::new(AdminService::new(cluster.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            )
            .add_service(
                FleetServer::new(FleetService::new(cluster.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            )
            .add_service(
                ControlServer::new(ControlService::new(cluster.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            );
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }));
        info!(
            BATON_NODE = me.id,
            listen = %listen,
            "voter {} ({}) serving",
            me.id,
            me.name
        );

        let marker = settings.node.state_dir.join(MEMBER_MARKER);
        if pristine {
            let started = match member_marker(&marker) {
                Some(since) => Err(NodeError::StoreLost {
                    id: me.id,
                    marker: marker.clone(),
                    since,
                }),
                None => {
                    let start = first_start(settings, me.id, &cluster.dialer).await;
                    if !matches!(start, Start::Refuse { .. }) {
                        raft_gate.open();
                    }
                    begin(&raft, settings, &me, start).await
                }
            };
            if let Err(e) = started {
                let _ = stop_server.send(true);
                let _ = server.await;
                let _ = raft.shutdown().await;
                return Err(e);
            }
        }
        // From here on this voter has (or is about to get) a vote to keep.
        if let Err(e) = write_member_marker(&marker, me.id) {
            warn!(
                "cannot write {}: {e}; if the raft store is lost, this voter cannot tell it was a member",
                marker.display()
            );
        }

        let background = vec![
            tokio::spawn(election::run(raft.clone(), cluster.dialer.clone(), timing)),
            tokio::spawn(expire_loop(cluster.clone(), settings.lease.clone())),
            tokio::spawn(record_voters(cluster.clone())),
            tokio::spawn(session_loops::dispatch_changes(cluster.clone())),
            tokio::spawn(session_loops::keep_alive(cluster.clone())),
            tokio::spawn(session_loops::drop_lapsed(cluster.clone())),
            tokio::spawn(log_changes(cluster.clone())),
            tokio::spawn(fleet_view::track_leadership(cluster.clone())),
            tokio::spawn(fleet_view::pass_on(cluster.clone())),
            tokio::spawn(log_leader_changes(raft.clone())),
        ];
        Ok(Voter {
            id: me.id,
            raft,
            server,
            stop_server,
            background,
            cluster,
            latency,
        })
    }

    /// Resolves when the voter can no longer serve: openraft stopped on a
    /// fatal error (storage, a failed fsync), or the gRPC server ended.
    /// The daemon then exits non-zero, so systemd restarts it from what
    /// is on disk. After this, drop the voter (do not `stop` it).
    pub async fn failure(&mut self) -> NodeError {
        let mut metrics = self.raft.metrics();
        let raft_failed = async {
            loop {
                if let Err(fatal) = &metrics.borrow().running_state {
                    return NodeError::RaftFatal(fatal.to_string());
                }
                if metrics.changed().await.is_err() {
                    return NodeError::RaftFatal("the raft core ended".into());
                }
            }
        };
        tokio::select! {
            error = raft_failed => error,
            served = &mut self.server => match served {
                Ok(Ok(())) => NodeError::ServerGone("it ended without being asked to".into()),
                Ok(Err(e)) => NodeError::Serve(e),
                Err(join) => NodeError::ServerGone(join.to_string()),
            },
        }
    }

    /// True when the raft core answers within [`PROBE_TIMEOUT`] and the
    /// gRPC server still runs: what the systemd watchdog is fed on.
    pub async fn responsive(&self) -> bool {
        let core = tokio::time::timeout(PROBE_TIMEOUT, self.raft.with_raft_state(|_| ())).await;
        matches!(core, Ok(Ok(()))) && !self.server.is_finished()
    }

    /// The services' handle (the applied state, raft, peer health).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The Lease and Admin call durations the auth layer records.
    pub fn call_latency(&self) -> CallLatency {
        self.latency.clone()
    }

    /// Stops serving and shuts raft down.
    pub async fn stop(self) {
        let _ = self.stop_server.send(true);
        for task in &self.background {
            task.abort();
        }
        let _ = self.server.await;
        if let Err(e) = self.raft.shutdown().await {
            warn!("raft did not shut down cleanly: {e}");
        }
        info!(BATON_NODE = self.id, "voter stopped");
    }
}

/// A file next to the raft store, written once a voter is a member: if the
/// store is gone but this file is not, the voter lost its vote and must not
/// start afresh (nor form a new cluster when nobody answers).
pub const MEMBER_MARKER: &str = "member";

/// When the marker says this voter became a member, if it exists.
fn member_marker(marker: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(marker).ok()?;
    Some(text.trim().to_string())
}

fn write_member_marker(marker: &std::path::Path, id: NodeId) -> std::io::Result<()> {
    if marker.exists() {
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    std::fs::write(marker, format!("voter {id} since {now}\n"))
}

/// Asks the other voters until it is clear what to do: a voter does not
/// form a cluster while too few answer (see `bootstrap`).
async fn first_start(settings: &Settings, me: NodeId, dialer: &Dialer) -> Start {
    let mut asked = 0u32;
    loop {
        match bootstrap::probe(settings, me, dialer).await {
            Start::Wait { answered, voters } => {
                if asked.is_multiple_of(40) {
                    warn!(
                        "no cluster state here, and only {answered} of {voters} voters answer: waiting for a majority before forming a cluster"
                    );
                }
                asked += 1;
                tokio::time::sleep(FIRST_START_RETRY).await;
            }
            start => return start,
        }
    }
}

/// How often a voter without state asks again while too few voters answer.
const FIRST_START_RETRY: Duration = Duration::from_millis(250);

/// Acts on what a voter without state found out about the cluster.
async fn begin(
    raft: &Raft,
    settings: &Settings,
    me: &VoterSettings,
    start: Start,
) -> Result<(), NodeError> {
    match start {
        Start::FormCluster => form_cluster(raft, &settings.cluster.voters).await,
        // `first_start` asks again until it is something else.
        Start::Wait { .. } => Ok(()),
        Start::CatchUp { leader } => {
            info!("joining the cluster led by voter {leader}; it sends this voter the log");
            Ok(())
        }
        Start::AwaitAdd { leader } => {
            warn!(
                "voter {} is not a member of the cluster led by voter {leader}; add it with: baton voter add {} {} {}",
                me.id, me.id, me.name, me.address
            );
            Ok(())
        }
        Start::Refuse { leader, matched } => Err(NodeError::WipedState {
            id: me.id,
            leader,
            matched,
            state_dir: settings.node.state_dir.clone(),
        }),
    }
}

/// Forms the cluster from the configured voters. Every voter of a new
/// cluster does this with the same list; openraft accepts that, and a voter
/// that already has state refuses without changing anything.
async fn form_cluster(raft: &Raft, voters: &[VoterSettings]) -> Result<(), NodeError> {
    match raft.initialize(members(voters)).await {
        Ok(()) => {
            info!(
                "new cluster: bootstrapped from {} configured voters",
                voters.len()
            );
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(NodeError::RaftStart(format!("bootstrap failed: {e}"))),
    }
}

/// On the leader: proposes `Expire` whenever a hold timeout has run out or a
/// settling slot opens again (its apply hands the slot to the queue), and
/// `SetSettleTime` when the state's settle time is not this leader's
/// `[lease] settle_time`. (Waiters are dropped by their sessions, see
/// `sessions::drop_lapsed`.)
async fn expire_loop(cluster: Cluster, lease: LeaseSettings) {
    let hold_timeout_ms = lease.hold_timeout.map(millis);
    let settle_ms = lease.settle_time.map_or(0, millis);
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let leading = cluster.raft.metrics().borrow().current_leader == Some(cluster.id);
        if !leading {
            continue;
        }
        let Ok(now) = now_ms() else { continue };
        let (due, settle_in_state) = {
            let view = cluster.view.read();
            let expiry = view.lease.next_expiry(hold_timeout_ms);
            let settled = view.lease.next_settle_end();
            let due = match (expiry, settled) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (due, view.lease.settle_ms)
        };
        if settle_in_state != settle_ms {
            let set = Command::SetSettleTime { settle_ms, now };
            if let crate::server::routing::Attempt::Fail(status) = cluster.propose(set).await {
                warn!("could not set the settle time: {}", status.message());
            }
            continue;
        }
        // Due before the next tick: wait for it, so a settled slot is handed
        // over on time rather than up to a tick late.
        let mut now = now;
        if let Some(wait) = due
            .filter(|&at| at > now)
            .map(|at| Duration::from_millis(at - now))
            .filter(|&wait| wait < EXPIRY_CHECK)
        {
            tokio::time::sleep(wait).await;
            let Ok(later) = now_ms() else { continue };
            now = later;
        }
        if due.is_some_and(|at| at <= now) {
            let expire = Command::Expire {
                now,
                hold_timeout_ms,
            };
            if let crate::server::routing::Attempt::Fail(status) = cluster.propose(expire).await {
                warn!("could not expire stale lease entries: {}", status.message());
            }
        }
    }
}

/// On the leader: records in the replicated state every voter it sees has
/// stored entries (`Command::RecordVoter`, once per voter), so that a voter
/// that comes back without state is refused even by a leader that restarted
/// since and knows no matched index for it (`server::bootstrap`).
async fn record_voters(cluster: Cluster) {
    let mut tick = tokio::time::interval(RECORD_VOTERS_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let unrecorded: Vec<NodeId> = {
            let metrics = cluster.raft.metrics().borrow().clone();
            if metrics.current_leader != Some(cluster.id) {
                continue;
            }
            let recorded = &cluster.view.read().stored_voters;
            let mut stored: Vec<NodeId> = metrics
                .replication
                .iter()
                .flatten()
                .filter(|(_, matched)| matched.is_some_and(|m| m.index > 0))
                .map(|(id, _)| *id)
                .collect();
            stored.push(cluster.id);
            stored.retain(|id| {
                !recorded.contains(id) && metrics.membership_config.voter_ids().any(|v| v == *id)
            });
            stored
        };
        for voter in unrecorded {
            let record = |now| Command::RecordVoter { voter, now };
            if let crate::server::routing::Attempt::Fail(status) =
                cluster.propose_stamped(record).await
            {
                warn!("could not record voter {voter}: {}", status.message());
            }
        }
    }
}

/// How often the leader looks for voters to record as having stored entries.
const RECORD_VOTERS_CHECK: Duration = Duration::from_millis(250);

/// A configured duration in milliseconds (saturating: config durations are far below).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Logs each change of leader (`BATON_LEADER`), as this voter learns it.
async fn log_leader_changes(raft: Raft) {
    let mut metrics = raft.metrics();
    let mut known = None;
    loop {
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if leader != known {
            match leader {
                Some(id) => info!(BATON_LEADER = id, "leader is voter {id} (term {term})"),
                None => warn!("no leader (term {term})"),
            }
            known = leader;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Writes every applied lease change to the log with structured fields.
async fn log_changes(cluster: Cluster) {
    let mut changes = cluster.view.subscribe();
    loop {
        match changes.recv().await {
            Ok(change) => match &*change {
                Change::Applied { index, event, .. } => {
                    log_event(*index, &event.group, &event.kind)
                }
                Change::Resync { index } => {
                    info!(index, "installed snapshot up to log index {index}")
                }
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!("lease change log fell behind by {n} changes")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One applied lease change in the journal, with BATON_GROUP (and, for
/// grants and releases, BATON_HOLDER and BATON_TOKEN).
fn log_event(index: u64, group: &str, kind: &EventKind) {
    match kind {
        EventKind::Granted(g) => lease_span(None, group, Some(&g.holder), Some(g.token))
            .in_scope(|| {
                info!(
                    index,
                    "lease granted to {} in {group} (token {})", g.holder, g.token
                )
            }),
        EventKind::Released {
            holder,
            token,
            cause,
        } => lease_span(None, group, Some(holder), Some(*token)).in_scope(|| match cause {
            ReleaseCause::HoldTimeout => warn!(
                index,
                "HOLD TIMEOUT: lease of {holder} in {group} (token {token}) expired and was taken back"
            ),
            cause => info!(
                index,
                "lease of {holder} in {group} (token {token}) released ({cause:?})"
            ),
        }),
        other => lease_span(None, group, None, None)
            .in_scope(|| info!(index, "lease change in {group}: {other:?}")),
    }
}
