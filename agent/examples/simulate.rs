//! Deterministic simulation: 3 real voters and real host lease clients on turmoil's simulated network and clock, under seeded faults, with safety and liveness checkers.
//!
//! `cargo run --release --example simulate -- --seeds N --json` runs seeds
//! 0..N, each in a process of its own (`--jobs J` at a time); `--seed S`
//! replays one (add `-v` for its event log), and the replay is the same run:
//! in a seed's process only the seed decides (this binary's `getrandom`
//! draws from it; the voters' clocks are turmoil's). `--recheck K` runs the
//! first K seeds twice and fails if a trace differs. Each seed:
//!
//! - three voters run baton's real voter (`Voter::start_with`): openraft with
//!   baton's state machine (`rules::lease`), the Raft, Lease and Admin gRPC
//!   services behind the auth layer, baton's pre-vote elections, sessions
//!   and expiry loops, over turmoil TCP through the `transport` seam
//!   (`Network::Custom`); their raft log is on a simulated disk
//!   (`raft::sim_store`) that loses what was not fsynced when they crash;
//! - 3-5 hosts run the real host-agent lease client (`HostLeaseClient`):
//!   acquire (polling while queued), "reboot" (prove the grant by a
//!   linearizable `verify`), hold a random time, release; in one seed in
//!   four a host dies holding the lease, and `hold_timeout` must free it;
//! - a seeded schedule injects faults for a while (partitions, one-way
//!   partitions, held (delayed, then burst) links, lossy links, latency
//!   spikes, crashes with restarts, leader kills, slow disks), then heals;
//! - checkers read what the clients observed: never more holders than
//!   max_holders at any instant (a holder counts from its grant's answer
//!   until it sends its release); tokens never granted twice and, with one
//!   slot, strictly increasing in grant order; no acknowledged grant or
//!   release lost; every host that "rebooted" held the lease then; after
//!   the heal every client is granted again within a bound (liveness);
//! - after the heal a probe reads the group from the leader twice a second,
//!   so a failing seed's log shows who held the slot its waiters missed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton::simulation::{
    lease_dialer, open_in_memory, Acquired, BoxedIo, HostLeaseClient, HostLeaseError, Incoming,
    Links, Network, Parts, RememberedLease, Settings, SimDisk, StateMachine, Voter,
};
use baton::TlsMode;
use futures::future::BoxFuture;
use futures::StreamExt;

const VOTERS: usize = 3;
const PORT: u16 = 7421;
/// Faults start once the cluster has formed (a voter that crashes before
/// its first fsync would, rightly, refuse to start again: `StoreLost`).
const FAULTS_FROM: Duration = Duration::from_secs(3);
/// After the heal, every client must be granted again within this.
const LIVENESS_BASE: Duration = Duration::from_secs(20);
const HOLD_MAX_MS: u64 = 400;
/// `[lease] hold_timeout` in the seeds where a host dies holding the lease
/// (one in four): longer than any live host's hold here, faults included.
const HOLD_TIMEOUT: Duration = Duration::from_secs(30);
/// How much earlier than `HOLD_TIMEOUT` after a dead holder's grant
/// (as its host saw it) the next grant may be seen: the grant was stamped
/// when the leader applied it, up to a request timeout before its answer.
const EXPIRY_SLACK: Duration = Duration::from_secs(5);

/// The seed being run, for the panic hook's replay line.
static CURRENT_SEED: AtomicU64 = AtomicU64::new(u64::MAX);

// ---------------------------------------------------------------- randomness

/// splitmix64: every choice of the schedule comes from the seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------- process randomness

/// The stream `getrandom` draws from in this process (see below).
static PROCESS_RANDOMNESS: Mutex<Rng> = Mutex::new(Rng(0));

/// Replaces libc's `getrandom` in this binary, so that what the process
/// would draw from the kernel comes from the seed instead: std's hash-map
/// keys (every `HashMap`'s iteration order, baton's election jitter) and
/// tokio's scheduler randomness (`select!` branch order) are then the same
/// in every run of a seed. The linker binds this executable's calls to this
/// definition; baton's library and the daemon keep the kernel's.
///
/// # Safety
/// As libc's: `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, _flags: u32) -> isize {
    let mut rng = PROCESS_RANDOMNESS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for i in 0..len {
        // SAFETY: the caller's buffer holds `len` bytes.
        unsafe { *buf.add(i) = rng.next() as u8 };
    }
    len as isize
}

// ---------------------------------------------------------------- network

/// turmoil's TCP as baton's `transport::Links`.
struct TurmoilNet;

impl Links for TurmoilNet {
    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
        Box::pin(async move {
            let asked = now();
            match turmoil::net::TcpStream::connect((host, port)).await {
                Ok(stream) => Ok(Box::new(stream) as BoxedIo),
                // turmoil refuses a connect across a partition at once (it
                // drops the SYN and with it the reply channel). A real
                // partition loses the SYN: the connect hangs until the
                // dialer's connect timeout. Only a refusal that took a round
                // trip (no listener at the far end: a RST) is passed on.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && now() == asked => {
                    std::future::pending().await
                }
                Err(e) => Err(e),
            }
        })
    }

    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, std::io::Result<Incoming>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(address).await?;
            let incoming = futures::stream::unfold(listener, |listener| async move {
                let accepted = listener
                    .accept()
                    .await
                    .map(|(stream, peer)| (Box::new(stream) as BoxedIo, peer));
                Some((accepted, listener))
            });
            Ok(incoming.boxed())
        })
    }
}

fn network() -> Network {
    Network::Custom(Arc::new(TurmoilNet))
}

// ---------------------------------------------------------------- observations

#[derive(Debug, Clone)]
enum Ev {
    /// The client got a grant's answer (a holder from now on).
    Granted {
        token: u64,
    },
    /// The client "rebooted": a linearizable read showed it holds `token`.
    Rebooted {
        token: u64,
    },
    /// The client sent its release (no longer a holder from now on).
    ReleaseSent,
    /// The host died holding `token` (after its reboot check): it never
    /// releases, and only the hold timeout frees its slot.
    Died {
        token: u64,
    },
    ReleaseAcked,
    /// The client saw something that must never happen.
    Broken(String),
    /// The client is waiting for the lease (after the heal: liveness).
    Waiting,
    /// What an acquire answered, when it changed (for `-v`).
    Answer(String),
    /// The host, idle after its rolls, gave back a grant it found it held.
    GaveBackStray {
        token: u64,
    },
    /// The group as the leader had it after the heal, when it changed
    /// (recorded by the probe, not by a host).
    State(String),
}

#[derive(Default)]
struct Log {
    events: Vec<(Duration, usize, Ev)>,
}

type SharedLog = Arc<Mutex<Log>>;

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn record(log: &SharedLog, client: usize, ev: Ev) {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .events
        .push((now(), client, ev));
}

/// What each voter last knew of the leader: (term, leader).
type Leaders = Arc<Mutex<Vec<Option<(u64, u64)>>>>;

// ---------------------------------------------------------------- hosts

fn voter_name(i: usize) -> String {
    format!("v{}", i + 1)
}

fn settings_for(
    voter: usize,
    max_holders: u32,
    hold_timeout: Option<Duration>,
    state_dir: &std::path::Path,
) -> Settings {
    let voters: Vec<String> = (0..VOTERS)
        .map(|i| {
            format!(
                "{{ id = {}, name = \"{}\", address = \"{}:{PORT}\" }}",
                i + 1,
                voter_name(i),
                voter_name(i)
            )
        })
        .collect();
    let text = format!(
        "[node]\nname = \"{}\"\nstate_dir = \"{}\"\n\n[cluster]\nvoters = [{}]\nlisten = \"0.0.0.0:{PORT}\"\nsnapshot_every = 40\n\n\
         [lease]\ndefault_max_holders = {max_holders}\n{}\n[tls]\ninsecure = true\n\n[updates]\nsource = \"none\"\n",
        voter_name(voter),
        state_dir.display(),
        voters.join(", "),
        hold_timeout.map_or(String::new(), |t| format!("hold_timeout = \"{}s\"\n", t.as_secs()))
    );
    match Settings::from_fragments(&[(PathBuf::from("sim.toml"), text)]) {
        Ok(settings) => settings,
        Err(e) => panic!("the simulation's own voter config is invalid: {e}"),
    }
}

/// One voter process: storage from its simulated disk (log) and its
/// in-memory redb (snapshots), both surviving crashes; the real voter.
async fn voter_process(
    index: usize,
    settings: Settings,
    disk: SimDisk,
    snapshots: Arc<redb::Database>,
    leaders: Leaders,
) -> turmoil::Result {
    let state_machine = StateMachine::open(snapshots)?;
    let pristine = disk.is_pristine();
    let log_store = disk.open();
    let mut voter = Voter::start_with(
        &settings,
        TlsMode::Insecure,
        Parts {
            network: network(),
            log_store,
            pristine,
            state_machine,
        },
    )
    .await?;
    let mut metrics = voter.cluster().raft.metrics();
    tokio::spawn(async move {
        loop {
            let seen = {
                let m = metrics.borrow_and_update();
                m.current_leader.map(|leader| (m.current_term, leader))
            };
            leaders.lock().unwrap_or_else(|p| p.into_inner())[index] = seen;
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
    let failure = voter.failure().await;
    Err(format!("voter {} stopped: {failure}", index + 1).into())
}

/// When clients may stop: set by the driver at the heal; and how many
/// have stopped (the probe stops with the last).
#[derive(Default)]
struct Phase {
    healed_at: Option<Duration>,
    done: usize,
}

/// The dialer every simulated lease client uses: the host agent's own
/// (`lease_dialer`), on the simulated network.
fn sim_dialer() -> baton::simulation::Dialer {
    lease_dialer(
        Duration::from_secs(1),
        Duration::from_secs(3),
        TlsMode::Insecure,
    )
    .over(network())
}

/// After the heal, reads the group from the leader twice a second and
/// records it whenever it changed: who holds (and whether the holder
/// claimed its slot) and who waits. A liveness failure's log then shows
/// what kept the waiters out.
async fn probe_process(
    log: SharedLog,
    phase: Arc<Mutex<Phase>>,
    clients: usize,
    bound: Duration,
) -> turmoil::Result {
    let endpoints: Vec<String> = (0..VOTERS)
        .map(|i| format!("{}:{PORT}", voter_name(i)))
        .collect();
    let mut client = HostLeaseClient::new(endpoints, sim_dialer(), "default", "probe", "probe");
    let mut last = String::new();
    loop {
        let (healed_at, done) = {
            let phase = phase.lock().unwrap_or_else(|p| p.into_inner());
            (phase.healed_at, phase.done)
        };
        if done >= clients {
            return Ok(());
        }
        if let Some(at) = healed_at {
            if now() > at + bound + Duration::from_secs(1) {
                return Ok(());
            }
            let seen = match client.group_status().await {
                Ok(Some(group)) => describe_group(&group),
                Ok(None) => "no state for the group".to_string(),
                Err(e) => format!("status failed: {e}"),
            };
            if seen != last {
                record(&log, clients, Ev::State(seen.clone()));
                last = seen;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// "holders [h2 #199, h4 #204 unclaimed] queue [h3]".
fn describe_group(group: &baton_proto::v1::GroupStatus) -> String {
    let holders: Vec<String> = group
        .holders
        .iter()
        .map(|h| {
            let unclaimed = if h.claimed { "" } else { " unclaimed" };
            format!("{} #{}{unclaimed}", h.holder, h.token)
        })
        .collect();
    let queue: Vec<&str> = group.queue.iter().map(|w| w.holder.as_str()).collect();
    format!(
        "holders [{}] queue [{}]",
        holders.join(", "),
        queue.join(", ")
    )
}

/// What a host does besides rolling like the others.
#[derive(Clone, Copy, Default)]
struct HostRole {
    /// --sabotage: goes ahead without the lease when queued.
    sabotage: bool,
    /// Dies holding its n-th grant, after its reboot check.
    dies_at_grant: Option<u32>,
}

/// One host: acquire, reboot (proved by `verify`), hold, release, again;
/// done once it was granted after the heal (or the liveness bound passed),
/// or when it dies.
async fn client_process(
    index: usize,
    seed: u64,
    log: SharedLog,
    phase: Arc<Mutex<Phase>>,
    bound: Duration,
    role: HostRole,
    clients: usize,
) -> turmoil::Result {
    let mut rng = Rng(seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let dialer = sim_dialer();
    let endpoints: Vec<String> = (0..VOTERS)
        .map(|i| format!("{}:{PORT}", voter_name((i + index) % VOTERS)))
        .collect();
    let holder = format!("h{}", index + 1);
    let mut client = HostLeaseClient::new(endpoints, dialer, "default", &holder, &holder);
    let healed =
        |phase: &Arc<Mutex<Phase>>| phase.lock().unwrap_or_else(|p| p.into_inner()).healed_at;
    let mut grants = 0u32;
    loop {
        // Wait for, then take, the lease.
        record(&log, index, Ev::Waiting);
        let mut last_answer = String::new();
        let token = loop {
            if let Some(at) = healed(&phase) {
                if now() > at + bound {
                    // The checker sees a wait with no grant: a liveness failure.
                    phase.lock().unwrap_or_else(|p| p.into_inner()).done += 1;
                    return Ok(());
                }
            }
            let answer = client.acquire().await;
            let said = match &answer {
                Ok(Acquired::Granted(_)) => String::new(),
                Ok(Acquired::Queued {
                    position,
                    waiters,
                    reason,
                }) => {
                    format!("queued {position}/{waiters}: {reason}")
                }
                Err(e) => e.to_string(),
            };
            if !said.is_empty() && said != last_answer {
                record(&log, index, Ev::Answer(said.clone()));
                last_answer = said;
            }
            match answer {
                Ok(Acquired::Granted(lease)) => break lease.token(),
                Ok(Acquired::Queued { .. }) if role.sabotage => {
                    // --sabotage: this client goes ahead without the lease,
                    // claiming a token of its own; the checkers must catch it.
                    break 1 << 40;
                }
                Ok(Acquired::Queued { .. }) => tokio::time::sleep(rng.ms(50, 250)).await,
                Err(HostLeaseError::Unavailable { .. }) => {
                    tokio::time::sleep(rng.ms(100, 300)).await
                }
                Err(HostLeaseError::Refused(why)) => {
                    // Refusals while the cluster moves (no leader yet, a
                    // forward that failed) are retried like a real agent does.
                    if why.contains("machine") {
                        record(&log, index, Ev::Broken(format!("acquire refused: {why}")));
                    }
                    tokio::time::sleep(rng.ms(100, 300)).await
                }
            }
        };
        record(&log, index, Ev::Granted { token });

        // "Reboot": only with proof, from a linearizable read, that the
        // cluster still has this grant.
        let remembered = RememberedLease {
            group: "default".into(),
            holder: holder.clone(),
            token,
        };
        let mut proved = false;
        for _ in 0..50 {
            match client.verify(&remembered).await {
                Ok(Some(held)) if held.token() == token => {
                    record(&log, index, Ev::Rebooted { token });
                    proved = true;
                    break;
                }
                Ok(_) => {
                    record(
                        &log,
                        index,
                        Ev::Broken(format!(
                            "acknowledged grant (token {token}) lost: verify says it is not held"
                        )),
                    );
                    break;
                }
                Err(_) => tokio::time::sleep(rng.ms(100, 300)).await,
            }
        }
        let _ = proved;
        grants += 1;
        if role.dies_at_grant == Some(grants) {
            record(&log, index, Ev::Died { token });
            phase.lock().unwrap_or_else(|p| p.into_inner()).done += 1;
            return Ok(());
        }
        tokio::time::sleep(rng.ms(0, HOLD_MAX_MS)).await;

        // Release, until acknowledged.
        record(&log, index, Ev::ReleaseSent);
        let mut last_failure = String::new();
        loop {
            match client.release(Some(token)).await {
                Ok(()) => break,
                // Each new reason a release failed goes into the seed's log:
                // a release stuck for long is what a liveness failure
                // looks like from the other hosts.
                Err(failed) => {
                    let why = failed.to_string();
                    if why != last_failure {
                        record(&log, index, Ev::Answer(format!("release: {why}")));
                        last_failure = why;
                    }
                    tokio::time::sleep(rng.ms(100, 300)).await
                }
            }
        }
        record(&log, index, Ev::ReleaseAcked);
        // The release must stick: a linearizable read must not show it held.
        for _ in 0..50 {
            match client.held_token().await {
                Ok(Some(held)) if held == token => {
                    record(
                        &log,
                        index,
                        Ev::Broken(format!(
                            "acknowledged release (token {token}) lost: still held"
                        )),
                    );
                    break;
                }
                Ok(_) => break,
                Err(_) => tokio::time::sleep(rng.ms(100, 300)).await,
            }
        }
        if let Some(at) = healed(&phase) {
            let granted_after_heal = log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .events
                .iter()
                .any(|(t, c, e)| *c == index && *t >= at && matches!(e, Ev::Granted { .. }));
            if granted_after_heal {
                phase.lock().unwrap_or_else(|p| p.into_inner()).done += 1;
                idle_until_all_done(&mut client, &log, index, &phase, clients).await;
                return Ok(());
            }
        }
    }
}

/// A host done with its rolls stays up, as its agent does when idle: it
/// learns its orders and gives back a grant it finds there (a late retry of
/// one of its acquires can take one after its release). Until every host is
/// done.
async fn idle_until_all_done(
    client: &mut HostLeaseClient,
    log: &SharedLog,
    index: usize,
    phase: &Arc<Mutex<Phase>>,
    clients: usize,
) {
    while phase.lock().unwrap_or_else(|p| p.into_inner()).done < clients {
        if let Ok(orders) = client.orders().await {
            if orders.grant.is_some() {
                if let Ok(Some(token)) = client.give_back_stray().await {
                    record(log, index, Ev::GaveBackStray { token });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------- faults

#[derive(Debug, Clone)]
enum Action {
    /// Counts one isolation (the partitions that make it follow).
    Isolate,
    Partition(String, String),
    Repair(String, String),
    PartitionOneway(String, String),
    RepairOneway(String, String),
    Hold(String, String),
    Release(String, String),
    Lossy(String, String),
    Lossless(String, String),
    Latency(String, String, Duration),
    Crash(usize),
    KillLeader,
    Restart(usize),
    SlowDisk(usize),
    FastDisk(usize),
}

/// Fault kinds counted in the JSON line.
const KINDS: [&str; 11] = [
    "isolate",
    "partition",
    "partition_oneway",
    "hold",
    "loss",
    "delay",
    "crash",
    "leader_kill",
    "slow_disk",
    "lost_unsynced_writes",
    "host_death",
];

struct Schedule {
    actions: Vec<(Duration, Action)>,
    heal_at: Duration,
}

/// The faults of one seed: network faults one after another (each repaired
/// before the next, as turmoil does not combine one-way partitions with
/// holds), crashes and slow disks overlapping them.
fn schedule(rng: &mut Rng, clients: usize) -> Schedule {
    let fault_time = rng.ms(8_000, 20_000);
    let heal_at = FAULTS_FROM + fault_time;
    let mut actions = Vec::new();
    let hosts: Vec<String> = (0..VOTERS)
        .map(voter_name)
        .chain((0..clients).map(|c| format!("h{}", c + 1)))
        .collect();
    // Network faults.
    let mut t = FAULTS_FROM;
    while t < heal_at {
        let a = rng.pick(VOTERS);
        // Mostly voter pairs; sometimes a voter and a client.
        let b = if rng.pick(4) == 0 {
            VOTERS + rng.pick(clients)
        } else {
            (a + 1 + rng.pick(VOTERS - 1)) % VOTERS
        };
        let (x, y) = (hosts[a].clone(), hosts[b].clone());
        let length = rng.ms(200, 3_000);
        let end = (t + length).min(heal_at);
        match rng.pick(6) {
            0 => {
                actions.push((t, Action::Partition(x.clone(), y.clone())));
                actions.push((end, Action::Repair(x, y)));
            }
            1 => {
                // A whole voter cut off from everybody.
                actions.push((t, Action::Isolate));
                for other in hosts.iter().filter(|h| **h != x) {
                    actions.push((t, Action::Partition(x.clone(), other.clone())));
                    actions.push((end, Action::Repair(x.clone(), other.clone())));
                }
            }
            2 => {
                actions.push((t, Action::PartitionOneway(x.clone(), y.clone())));
                actions.push((end, Action::RepairOneway(x, y)));
            }
            3 => {
                actions.push((t, Action::Hold(x.clone(), y.clone())));
                actions.push((end, Action::Release(x, y)));
            }
            4 => {
                actions.push((t, Action::Lossy(x.clone(), y.clone())));
                actions.push((end, Action::Lossless(x, y)));
            }
            _ => {
                let spike = rng.ms(50, 600);
                actions.push((t, Action::Latency(x.clone(), y.clone(), spike)));
                actions.push((end, Action::Latency(x, y, Duration::from_millis(20))));
            }
        }
        t = end + rng.ms(0, 800);
    }
    // Crashes (at random points, also between a write and its fsync),
    // leader kills and slow disks.
    let mut t = FAULTS_FROM + rng.ms(0, 2_000);
    while t < heal_at {
        let v = rng.pick(VOTERS);
        let down = rng.ms(100, 3_000);
        match rng.pick(3) {
            0 => {
                actions.push((t, Action::Crash(v)));
                actions.push(((t + down).min(heal_at), Action::Restart(v)));
            }
            1 => actions.push((t, Action::KillLeader)),
            _ => {
                actions.push((t, Action::SlowDisk(v)));
                actions.push(((t + down).min(heal_at), Action::FastDisk(v)));
            }
        }
        t += rng.ms(500, 4_000);
    }
    actions.sort_by_key(|(at, _)| *at);
    Schedule { actions, heal_at }
}

// ---------------------------------------------------------------- one seed

struct SeedResult {
    violations: Vec<String>,
    liveness: Vec<String>,
    faults: BTreeMap<String, u64>,
    /// FNV-1a of the seed's trace (faults, client events, probe readings,
    /// in time order): two runs of a seed that differ anywhere differ here.
    digest: u64,
}

impl SeedResult {
    /// A seed that could not run: a violation, so the run fails.
    fn broken(why: String) -> SeedResult {
        SeedResult {
            violations: vec![why],
            liveness: Vec::new(),
            faults: BTreeMap::new(),
            digest: 0,
        }
    }
}

fn run_seed(seed: u64, verbose: bool, sabotage: bool) -> SeedResult {
    CURRENT_SEED.store(seed, Ordering::SeqCst);
    let mut rng = Rng(seed);
    *PROCESS_RANDOMNESS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Rng(!seed);
    let max_holders = if rng.pick(3) == 0 { 2 } else { 1 };
    let clients = 3 + rng.pick(3);
    let plan = schedule(&mut rng, clients);
    // A host that dies holding the lease, in one seed in four (drawn apart
    // from the schedule, which stays what it was before hosts could die).
    let mut fate = Rng(seed ^ 0xD1ED_0F0D_EAD0_0001);
    let dies = (fate.pick(4) == 0).then(|| (fate.pick(clients), 1 + fate.pick(3) as u32));
    let hold_timeout = dies.map(|_| HOLD_TIMEOUT);
    let bound = LIVENESS_BASE
        + Duration::from_millis(clients as u64 * (HOLD_MAX_MS + 1_500))
        + hold_timeout.unwrap_or_default();

    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(3_600))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(rng.range(0, 2)))
        .max_message_latency(Duration::from_millis(rng.range(2, 20)))
        // Every port, not only the 16k ephemeral range: turmoil keeps a
        // socket whose connect was refused or timed out bound until the end.
        .ephemeral_ports(1024..=65535)
        .rng_seed(seed)
        .build();

    let mut faults: BTreeMap<&'static str, u64> = KINDS.iter().map(|k| (*k, 0)).collect();
    let mut violations = Vec::new();
    let mut liveness = Vec::new();

    let dirs: Vec<tempfile::TempDir> = match (0..VOTERS).map(|_| tempfile::tempdir()).collect() {
        Ok(dirs) => dirs,
        Err(e) => return SeedResult::broken(format!("cannot make state dirs: {e}")),
    };
    let disks: Vec<SimDisk> = (0..VOTERS)
        .map(|i| SimDisk::new(rng.next() ^ i as u64))
        .collect();
    let leaders: Leaders = Arc::new(Mutex::new(vec![None; VOTERS]));
    for i in 0..VOTERS {
        let settings = settings_for(i, max_holders, hold_timeout, dirs[i].path());
        let disk = disks[i].clone();
        let snapshots = match open_in_memory() {
            Ok(db) => db,
            Err(e) => {
                return SeedResult::broken(format!("cannot open the in-memory snapshot store: {e}"))
            }
        };
        let leaders = leaders.clone();
        sim.host(voter_name(i), move || {
            voter_process(
                i,
                settings.clone(),
                disk.clone(),
                snapshots.clone(),
                leaders.clone(),
            )
        });
    }
    let log: SharedLog = Arc::default();
    let phase: Arc<Mutex<Phase>> = Arc::default();
    for c in 0..clients {
        let run = client_process(
            c,
            seed,
            log.clone(),
            phase.clone(),
            bound,
            HostRole {
                sabotage: sabotage && c == 0,
                dies_at_grant: dies.filter(|(host, _)| *host == c).map(|(_, n)| n),
            },
            clients,
        );
        sim.client(format!("h{}", c + 1), run);
    }
    sim.client(
        "probe",
        probe_process(log.clone(), phase.clone(), clients, bound),
    );

    let mut down = [false; VOTERS];
    let mut actions = plan.actions.into_iter().peekable();
    let mut healed = false;
    // The seed's faults and events, printed with -v or when the seed fails.
    let mut trace = Vec::new();
    let give_up = plan.heal_at + bound + Duration::from_secs(30);
    loop {
        let elapsed = sim.elapsed();
        while actions.peek().is_some_and(|(at, _)| *at <= elapsed) {
            let Some((_, action)) = actions.next() else {
                break;
            };
            trace.push(format!("{:>8.3}s fault: {action:?}", elapsed.as_secs_f64()));
            match action {
                Action::Isolate => *faults.entry("isolate").or_default() += 1,
                Action::Partition(a, b) => {
                    sim.partition(a.as_str(), b.as_str());
                    *faults.entry("partition").or_default() += 1;
                }
                Action::Repair(a, b) => sim.repair(a.as_str(), b.as_str()),
                Action::PartitionOneway(a, b) => {
                    sim.partition_oneway(a.as_str(), b.as_str());
                    *faults.entry("partition_oneway").or_default() += 1;
                }
                Action::RepairOneway(a, b) => sim.repair_oneway(a.as_str(), b.as_str()),
                Action::Hold(a, b) => {
                    sim.hold(a.as_str(), b.as_str());
                    *faults.entry("hold").or_default() += 1;
                }
                Action::Release(a, b) => sim.release(a.as_str(), b.as_str()),
                Action::Lossy(a, b) => {
                    sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.02);
                    *faults.entry("loss").or_default() += 1;
                }
                Action::Lossless(a, b) => sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0),
                Action::Latency(a, b, max) => {
                    if max > Duration::from_millis(20) {
                        *faults.entry("delay").or_default() += 1;
                    }
                    sim.set_link_max_message_latency(a.as_str(), b.as_str(), max);
                }
                Action::Crash(v) => {
                    if !down[v] {
                        crash(&mut sim, &disks, v, &mut faults);
                        down[v] = true;
                        *faults.entry("crash").or_default() += 1;
                    }
                }
                Action::KillLeader => {
                    let leader = leaders
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !down[*i])
                        .filter_map(|(_, seen)| *seen)
                        .max()
                        .map(|(_, leader)| leader as usize - 1);
                    if let Some(v) = leader.filter(|v| *v < VOTERS && !down[*v]) {
                        crash(&mut sim, &disks, v, &mut faults);
                        sim.bounce(voter_name(v).as_str());
                        *faults.entry("leader_kill").or_default() += 1;
                    }
                }
                Action::Restart(v) => {
                    if down[v] {
                        sim.bounce(voter_name(v).as_str());
                        down[v] = false;
                    }
                }
                Action::SlowDisk(v) => {
                    disks[v].set_sync_delay(Duration::from_millis(50), Duration::from_millis(800));
                    *faults.entry("slow_disk").or_default() += 1;
                }
                Action::FastDisk(v) => {
                    disks[v].set_sync_delay(Duration::ZERO, Duration::from_millis(2))
                }
            }
        }
        if !healed && elapsed >= plan.heal_at {
            heal(&mut sim, &disks, &mut down, clients);
            healed = true;
            phase.lock().unwrap_or_else(|p| p.into_inner()).healed_at = Some(elapsed);
            trace.push(format!("{:>8.3}s healed", elapsed.as_secs_f64()));
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                violations.push(format!("simulation stopped: {e}"));
                break;
            }
        }
        if elapsed > give_up {
            liveness.push(format!("clients still running {give_up:?} into the run"));
            break;
        }
    }

    let events = std::mem::take(&mut log.lock().unwrap_or_else(|p| p.into_inner()).events);
    for (at, client, ev) in &events {
        trace.push(match ev {
            Ev::State(text) => format!("{:>8.3}s state: {text}", at.as_secs_f64()),
            Ev::Answer(text) => format!(
                "{:>8.3}s h{}: acquire: {text}",
                at.as_secs_f64(),
                client + 1
            ),
            ev => format!("{:>8.3}s h{}: {ev:?}", at.as_secs_f64(), client + 1),
        });
    }
    let healed_at = phase.lock().unwrap_or_else(|p| p.into_inner()).healed_at;
    let deaths = events
        .iter()
        .filter(|(_, _, ev)| matches!(ev, Ev::Died { .. }))
        .count();
    *faults.entry("host_death").or_default() += deaths as u64;
    let run = Run {
        max_holders,
        clients,
        healed_at,
        bound,
        hold_timeout,
    };
    check(&events, &run, &mut violations, &mut liveness);
    trace.sort_by(|a, b| {
        let at = |line: &str| {
            line.trim_start()
                .split('s')
                .next()
                .and_then(|t| t.parse::<f64>().ok())
        };
        at(a)
            .partial_cmp(&at(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if verbose || !violations.is_empty() || !liveness.is_empty() {
        for line in &trace {
            eprintln!("seed {seed}: {line}");
        }
    }
    SeedResult {
        violations,
        liveness,
        faults: faults
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        digest: fnv1a(trace.iter().flat_map(|line| line.bytes().chain([b'\n']))),
    }
}

/// FNV-1a, 64 bits: a digest that is the same in every process (std's
/// hasher is keyed per process).
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Crashes voter `v`: its process goes, its disk loses what was not synced.
fn crash(
    sim: &mut turmoil::Sim<'_>,
    disks: &[SimDisk],
    v: usize,
    faults: &mut BTreeMap<&'static str, u64>,
) {
    sim.crash(voter_name(v).as_str());
    *faults.entry("lost_unsynced_writes").or_default() += disks[v].crash();
}

/// Ends every fault: links repaired and released, latency and loss back
/// to normal, disks fast, crashed voters started again.
fn heal(sim: &mut turmoil::Sim<'_>, disks: &[SimDisk], down: &mut [bool; VOTERS], clients: usize) {
    let hosts: Vec<String> = (0..VOTERS)
        .map(voter_name)
        .chain((0..clients).map(|c| format!("h{}", c + 1)))
        .collect();
    for a in &hosts {
        for b in &hosts {
            if a < b {
                sim.repair_oneway(a.as_str(), b.as_str());
                sim.repair_oneway(b.as_str(), a.as_str());
                sim.release(a.as_str(), b.as_str());
                sim.repair(a.as_str(), b.as_str());
                sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), Duration::from_millis(20));
            }
        }
    }
    for (v, disk) in disks.iter().enumerate() {
        disk.set_sync_delay(Duration::ZERO, Duration::from_millis(2));
        if down[v] {
            sim.bounce(voter_name(v).as_str());
            down[v] = false;
        }
    }
}

/// What the checkers need to know of a seed's run.
struct Run {
    max_holders: u32,
    clients: usize,
    healed_at: Option<Duration>,
    /// After the heal, every live host is granted within this.
    bound: Duration,
    /// Set in the seeds where a host dies holding the lease.
    hold_timeout: Option<Duration>,
}

/// The checkers, over what the clients observed (in simulated-time order).
fn check(
    events: &[(Duration, usize, Ev)],
    run: &Run,
    violations: &mut Vec<String>,
    liveness: &mut Vec<String>,
) {
    let Run {
        max_holders,
        clients,
        healed_at,
        bound,
        hold_timeout,
    } = *run;
    // The host that died, and when it saw the grant it died holding.
    let mut dead: Option<(usize, Duration)> = None;
    let mut holding: HashMap<usize, u64> = HashMap::new();
    let mut granted_to: HashMap<u64, usize> = HashMap::new();
    let mut last_token: Option<u64> = None;
    let mut last_of_client: HashMap<usize, u64> = HashMap::new();
    for (at, client, ev) in events {
        match ev {
            Ev::Granted { token } => {
                // With one slot, the dead host's slot opens only when its
                // hold timeout has run out.
                if let (1, Some((host, granted)), Some(timeout)) = (max_holders, dead, hold_timeout)
                {
                    if host != *client && *at + EXPIRY_SLACK < granted + timeout {
                        violations.push(format!(
                            "{at:?}: h{} granted {:?} after h{}'s grant, which it died holding (hold timeout {timeout:?})",
                            client + 1,
                            *at - granted,
                            host + 1
                        ));
                    }
                }
                if let Some(other) = granted_to.insert(*token, *client) {
                    if other != *client {
                        violations.push(format!(
                            "{at:?}: token {token} granted to h{} and to h{}",
                            other + 1,
                            client + 1
                        ));
                    }
                }
                if last_of_client.get(client).is_some_and(|t| t >= token) {
                    violations.push(format!(
                        "{at:?}: h{} granted token {token} after token {}",
                        client + 1,
                        last_of_client[client]
                    ));
                }
                last_of_client.insert(*client, *token);
                if max_holders == 1 && last_token.is_some_and(|t| t >= *token) {
                    violations.push(format!(
                        "{at:?}: token {token} granted after token {} (tokens must increase)",
                        last_token.unwrap_or_default()
                    ));
                }
                last_token = Some(last_token.map_or(*token, |t| t.max(*token)));
                holding.insert(*client, *token);
                if holding.len() > max_holders as usize {
                    violations.push(format!(
                        "{at:?}: {} holders at once (max {max_holders}): {:?}",
                        holding.len(),
                        holding
                    ));
                }
            }
            Ev::Rebooted { token } => {
                if holding.get(client) != Some(token) {
                    violations.push(format!(
                        "{at:?}: h{} rebooted without holding token {token}",
                        client + 1
                    ));
                }
            }
            Ev::ReleaseSent => {
                holding.remove(client);
            }
            Ev::Died { token } => {
                // Down for good: no longer a host that can act on a grant.
                holding.remove(client);
                let granted = events
                    .iter()
                    .rev()
                    .find(|(t, c, e)| {
                        t <= at
                            && c == client
                            && matches!(e, Ev::Granted { token: g } if g == token)
                    })
                    .map_or(*at, |(t, _, _)| *t);
                dead = Some((*client, granted));
            }
            Ev::Broken(why) => violations.push(format!("{at:?}: h{}: {why}", client + 1)),
            Ev::GaveBackStray { token } => {
                // Only a grant the host did not know of is stray.
                if holding.get(client) == Some(token) {
                    violations.push(format!(
                        "{at:?}: h{} gave back its own grant (token {token}) as stray",
                        client + 1
                    ));
                }
            }
            Ev::ReleaseAcked | Ev::Waiting | Ev::Answer(_) | Ev::State(_) => {}
        }
    }
    // Liveness: after the heal, every client is granted within the bound.
    let Some(healed) = healed_at else {
        liveness.push("the run ended before the faults healed".into());
        return;
    };
    for c in (0..clients).filter(|c| dead.is_none_or(|(host, _)| host != *c)) {
        let granted = events.iter().find(|(at, client, ev)| {
            *client == c && *at >= healed && matches!(ev, Ev::Granted { .. })
        });
        match granted {
            Some((at, _, _)) if *at - healed <= bound => {}
            Some((at, _, _)) => liveness.push(format!(
                "h{} granted {:?} after the heal (bound {bound:?})",
                c + 1,
                *at - healed
            )),
            None => liveness.push(format!(
                "h{} not granted within {bound:?} after the heal",
                c + 1
            )),
        }
    }
}

// ---------------------------------------------------------------- main

struct Args {
    seeds: u64,
    first: u64,
    json: bool,
    verbose: bool,
    sabotage: bool,
    /// Seeds run side by side, each in its own process.
    jobs: usize,
    /// Run the first this many seeds a second time and compare their traces.
    recheck: u64,
    /// Run the one seed and print its result as one JSON line, for the
    /// process that started this one.
    child: bool,
}

const USAGE: &str = "usage: simulate [--seeds N] [--first S] [--seed S] [--jobs J] [--recheck K] [--json] [-v] [--sabotage]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 10,
        first: 0,
        json: false,
        verbose: false,
        sabotage: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        recheck: 0,
        child: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--seeds" => args.seeds = number("--seeds")?,
            "--first" => args.first = number("--first")?,
            "--seed" => {
                args.first = number("--seed")?;
                args.seeds = 1;
            }
            "--jobs" => args.jobs = number("--jobs")?.max(1) as usize,
            "--recheck" => args.recheck = number("--recheck")?,
            "--json" => args.json = true,
            "-v" | "--verbose" => args.verbose = true,
            "--sabotage" => args.sabotage = true,
            "--child" => args.child = true,
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    args.recheck = args.recheck.min(args.seeds);
    Ok(args)
}

/// The command that runs `seed` again with this same build (the profile
/// is the name of the directory cargo put this program's build in:
/// `target/<profile>/examples/simulate`), so the replay is the same run.
fn replay(seed: u64) -> String {
    let profile = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?.parent()?.file_name()?.to_str()?.to_string();
        Some(dir)
    });
    let flag = match profile.as_deref() {
        Some("release") | None => "--release ".to_string(),
        Some("debug") => String::new(),
        Some(other) => format!("--profile {other} "),
    };
    format!("cargo run {flag}--example simulate -- --seed {seed} -v")
}

/// The simulation's wall clock: a fixed day plus the simulated time, so the
/// times the leader stamps into raft commands are the same in every run.
fn simulated_wall_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + turmoil::sim_elapsed().unwrap_or_default()
}

fn result_json(result: &SeedResult) -> String {
    serde_json::json!({
        "violations": result.violations,
        "liveness": result.liveness,
        "faults": result.faults,
        "digest": format!("{:016x}", result.digest),
    })
    .to_string()
}

fn parse_result(line: &str) -> Option<SeedResult> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let strings = |key: &str| -> Option<Vec<String>> {
        value[key]
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect()
    };
    let faults = value["faults"]
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_u64()?)))
        .collect::<Option<BTreeMap<String, u64>>>()?;
    Some(SeedResult {
        violations: strings("violations")?,
        liveness: strings("liveness")?,
        faults,
        digest: u64::from_str_radix(value["digest"].as_str()?, 16).ok()?,
    })
}

/// Runs `seed` in a process of its own (this program with `--child`): a
/// seed's run then starts from the same process state as its replay, which
/// is what makes the replay the same run. What the child wrote to stderr
/// (its trace, with -v or when it failed) is passed on in one piece.
fn run_child(exe: &Path, seed: u64, args: &Args) -> SeedResult {
    let mut command = std::process::Command::new(exe);
    command.args(["--child", "--seed", &seed.to_string()]);
    if args.verbose {
        command.arg("-v");
    }
    if args.sabotage {
        command.arg("--sabotage");
    }
    match command.output() {
        Ok(output) => {
            std::io::stderr().write_all(&output.stderr).ok();
            let stdout = String::from_utf8_lossy(&output.stdout);
            match (
                output.status.success(),
                stdout.lines().last().and_then(parse_result),
            ) {
                (true, Some(result)) => result,
                _ => SeedResult::broken(format!("the seed's process ended with {}", output.status)),
            }
        }
        Err(e) => SeedResult::broken(format!("cannot start {}: {e}", exe.display())),
    }
}

/// Runs `seeds`, `jobs` at a time, each in its own process; results by seed.
fn run_seeds(seeds: Vec<u64>, args: &Args) -> BTreeMap<u64, SeedResult> {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            let why = format!("cannot find this program to run seeds in: {e}");
            return seeds
                .into_iter()
                .map(|seed| (seed, SeedResult::broken(why.clone())))
                .collect();
        }
    };
    let next = AtomicU64::new(0);
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(seeds.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(&seed) = seeds.get(index) else { break };
                let result = run_child(&exe, seed, args);
                if !args.json {
                    eprintln!(
                        "seed {seed}: {} violations, {} liveness failures, faults {:?}",
                        result.violations.len(),
                        result.liveness.len(),
                        result.faults
                    );
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(seed, result);
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // A panic aborts (release builds): name the seed first.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let seed = CURRENT_SEED.load(Ordering::SeqCst);
        eprintln!("seed {seed}: PANIC; replay: {}", replay(seed));
        default_hook(info);
    }));
    if !baton::simulation::run_wall_clock_on(simulated_wall_clock) {
        eprintln!("the wall clock was installed before the simulation's");
        std::process::exit(2);
    }
    let started = Instant::now();
    // One seed (a replay, or a child of a run) runs in this process.
    if args.child || (args.seeds == 1 && args.recheck == 0) {
        let result = run_seed(args.first, args.verbose, args.sabotage);
        if args.child {
            println!("{}", result_json(&result));
            return;
        }
        let results = BTreeMap::from([(args.first, result)]);
        std::process::exit(summarize(&args, &results, 0, started.elapsed()));
    }
    let results = run_seeds((args.first..args.first + args.seeds).collect(), &args);
    // Each seed of the recheck again, in a new process: its trace must be
    // the one of its first run, to the byte.
    let again = run_seeds((args.first..args.first + args.recheck).collect(), &args);
    let mut differ = 0u64;
    for (seed, second) in &again {
        let first = results.get(seed).map(|r| r.digest);
        if first != Some(second.digest) {
            differ += 1;
            eprintln!(
                "seed {seed}: NOT REPEATABLE: trace digest {first:016x?} then {:016x}; compare the traces of two runs of: {}",
                second.digest,
                replay(*seed)
            );
        }
    }
    std::process::exit(summarize(&args, &results, differ, started.elapsed()));
}

/// Prints what went wrong in each seed and the run's JSON line; the exit code.
fn summarize(args: &Args, results: &BTreeMap<u64, SeedResult>, differ: u64, took: Duration) -> i32 {
    let mut violations = 0u64;
    // Hosts not granted in time, and the seeds they were in (one seed can
    // leave every host of its group waiting).
    let mut liveness_failures = 0u64;
    let mut liveness_failed_seeds = 0u64;
    let mut faults: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    for (seed, result) in results {
        for (kind, n) in &result.faults {
            *faults.entry(kind.clone()).or_default() += n;
        }
        for v in &result.violations {
            eprintln!("seed {seed}: VIOLATION: {v}");
        }
        for l in &result.liveness {
            eprintln!("seed {seed}: LIVENESS: {l}");
        }
        if !result.violations.is_empty() || !result.liveness.is_empty() {
            eprintln!("seed {seed}: replay with: {}", replay(*seed));
        }
        violations += result.violations.len() as u64;
        liveness_failures += result.liveness.len() as u64;
        liveness_failed_seeds += u64::from(!result.liveness.is_empty());
    }
    let faults_json: Vec<String> = faults.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let line = format!(
        "{{\"seeds\":{},\"violations\":{violations},\"liveness_failures\":{liveness_failures},\"liveness_failed_seeds\":{liveness_failed_seeds},\"replays_checked\":{},\"replays_differ\":{differ},\"seconds\":{:.1},\"jobs\":{},\"faults\":{{{}}}}}",
        args.seeds,
        args.recheck,
        took.as_secs_f64(),
        args.jobs,
        faults_json.join(",")
    );
    if args.json {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    i32::from(violations > 0 || liveness_failures > 0 || differ > 0)
}
