//! `baton demo`: a local fleet of real agents rolled one lease at a time, with a timeline.
//!
//! Every host is a `baton agent` process on loopback with "reboot needed" set.
//!
//! Each host is a process with its own state dir. Its update source is a
//! sentinel file; its reboot method is a command that leaves a marker. The
//! demo plays the machine: on a marker it kills the host's process (power
//! off), removes the sentinel (the update is now active), gives it a new
//! boot id and starts it again (boot).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use baton_proto::v1::lease_client::LeaseClient;
use serde_json::json;
use tokio_stream::StreamExt;

use crate::cli::local_fleet::{free_port, FleetError, FleetLayout, HostConfig, LocalHost};
use crate::host::phase_file::PhaseFile;
use crate::rules::access::Role;
use crate::rules::phases::Phase;
use crate::transport::tls::{TlsError, TlsMode, TlsState};
use crate::transport::Dialer;

/// The lease group every demo host joins.
const GROUP: &str = "demo";
/// How long a simulated machine stays down.
const BOOT_TIME: Duration = Duration::from_millis(300);
/// The demo fleet's `[lease] settle_time`: after a host releases, the next one
/// waits this long, so one host is back a while before the next goes down.
const SETTLE_TIME: Duration = Duration::from_secs(2);

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo needs at least 1 host")]
    NoHosts,
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start host {host}: {source}")]
    Spawn {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot lay out the fleet: {0}")]
    Fleet(#[from] FleetError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("the fleet did not finish rolling within {0:?}")]
    Timeout(Duration),
    #[error("interrupted")]
    Interrupted,
}

/// Options of `baton demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub hosts: usize,
    /// Leave the fleet's directory (configs, state, agent logs) behind.
    pub keep_files: bool,
    pub json: bool,
    pub timeout: Duration,
}

/// One simulated machine: a host of the local fleet, and what the demo saw of it.
struct DemoHost {
    host: LocalHost,
    voter: bool,
    /// Where its Prometheus metrics are served while the demo runs.
    metrics: String,
    reboots: u32,
    rolled: bool,
}

impl DemoHost {
    fn sentinel(&self) -> PathBuf {
        self.host.dir.join("reboot-required")
    }
    fn marker(&self) -> PathBuf {
        self.host.dir.join("reboot-requested")
    }
    fn boot_id(&self) -> PathBuf {
        self.host.dir.join("boot_id")
    }
}

/// The fleet: its hosts and the temp dir they live in; dropping it stops
/// every process and removes the dir, also on error and on Ctrl-C.
struct Fleet {
    layout: FleetLayout,
    binary: PathBuf,
    keep_files: bool,
    hosts: Vec<DemoHost>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.host.kill();
        }
        if !self.keep_files {
            let _ = std::fs::remove_dir_all(self.layout.root());
        }
    }
}

fn prepare<T>(path: &Path, result: std::io::Result<T>) -> Result<T, DemoError> {
    result.map_err(|source| DemoError::Prepare {
        path: path.to_path_buf(),
        source,
    })
}

fn new_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{:?}", Instant::now()))
}

impl Fleet {
    fn create(hosts: usize) -> Result<Fleet, DemoError> {
        if hosts == 0 {
            return Err(DemoError::NoHosts);
        }
        let voters = if hosts >= 3 { 3 } else { 1 };
        let root = std::env::temp_dir().join(format!("baton-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let names: Vec<String> = (1..=hosts).map(|i| format!("host-{i}")).collect();
        // TLS, as a real fleet runs: a throw-away CA in the demo's temp dir.
        let layout = FleetLayout::new(&root, &names[..voters], true)?;
        let binary = prepare(Path::new("/proc/self/exe"), std::env::current_exe())?;
        let mut fleet = Fleet {
            layout,
            binary,
            keep_files: false,
            hosts: Vec::new(),
        };
        for (i, name) in names.iter().enumerate() {
            let dir = root.join(name);
            let (sentinel, marker, boot_id) = (
                dir.join("reboot-required"),
                dir.join("reboot-requested"),
                dir.join("boot_id"),
            );
            let metrics = format!("127.0.0.1:{}", prepare(&dir, free_port())?);
            let sections = format!(
                "[metrics]\nlisten = \"{metrics}\"\n\n[updates]\nsource = \"sentinel\"\nsentinel_file = \"{sentinel}\"\npoll_interval = \"100ms\"\n\n\
                 [reboot]\nmethod = \"command\"\ncommand = [\"touch\", \"{marker}\"]\nboot_id_path = \"{boot_id}\"\n\n\
                 [lease]\nsettle_time = \"{settle}s\"\n",
                settle = SETTLE_TIME.as_secs(),
                sentinel = sentinel.display(),
                marker = marker.display(),
                boot_id = boot_id.display(),
            );
            let config = HostConfig {
                node: &format!("group = \"{GROUP}\"\n"),
                sections: &format!("# baton demo host {name}\n{sections}"),
                ..HostConfig::default()
            };
            let host = fleet.layout.write_host(name, &config)?;
            prepare(&boot_id, std::fs::write(&boot_id, new_boot_id()))?;
            // Every host has an update waiting for a reboot.
            prepare(&sentinel, std::fs::write(&sentinel, "demo update\n"))?;
            fleet.hosts.push(DemoHost {
                host,
                voter: i < voters,
                metrics,
                reboots: 0,
                rolled: false,
            });
        }
        Ok(fleet)
    }

    fn start(&mut self, index: usize) -> Result<(), DemoError> {
        let host = &mut self.hosts[index].host;
        host.start(&self.binary, "info,openraft=error")
            .map_err(|source| DemoError::Spawn {
                host: host.name.clone(),
                source,
            })
    }

    /// Plays the machine for hosts that asked to reboot: power off (kill),
    /// the update becomes active (sentinel gone), new boot id, power on.
    fn reboot_requested(&mut self, index: usize, clock: &Clock) -> Result<(), DemoError> {
        let host = &mut self.hosts[index];
        if !host.marker().exists() {
            return Ok(());
        }
        clock.line(&format!("{} reboots", host.host.name));
        host.host.kill();
        let _ = std::fs::remove_file(host.marker());
        let _ = std::fs::remove_file(host.sentinel());
        prepare(
            &host.boot_id(),
            std::fs::write(host.boot_id(), new_boot_id()),
        )?;
        host.reboots += 1;
        std::thread::sleep(BOOT_TIME);
        self.start(index)?;
        clock.line(&format!("{} is back up", self.hosts[index].host.name));
        Ok(())
    }
}

/// Prints timeline lines with the time since the demo started.
struct Clock {
    start: Instant,
    quiet: bool,
}

impl Clock {
    fn line(&self, text: &str) {
        if !self.quiet {
            println!("{:>7.3}s  {text}", self.start.elapsed().as_secs_f64());
        }
    }
}

/// What the watcher saw of the lease.
#[derive(Default)]
struct Observed {
    holders: BTreeSet<String>,
    waiting: usize,
    /// The highest log index seen: a snapshot from a voter further behind
    /// (the two watched voters lag each other) must not undo newer deltas.
    index: u64,
    max_holders: usize,
    last_release: Option<Instant>,
    handoffs: Vec<Duration>,
}

impl Observed {
    fn apply(&mut self, event: &pb::WatchEvent, clock: &Clock) {
        use pb::watch_event::Kind;
        // Events are deltas on the snapshot that opens the stream.
        match &event.kind {
            Some(Kind::Snapshot(_)) if event.index < self.index => {}
            Some(Kind::Snapshot(state)) => {
                self.holders = state.holders.iter().map(|h| h.holder.clone()).collect();
                self.waiting = state.queue.len();
            }
            Some(Kind::Granted(grant)) => {
                self.holders.insert(grant.holder.clone());
                let mut settled = String::new();
                if let Some(released) = self.last_release.take() {
                    let gap = released.elapsed();
                    // The hand-off's own cost: what it took beyond the settle time.
                    self.handoffs.push(gap.saturating_sub(SETTLE_TIME));
                    settled = format!(" after the slot settled {:.1}s", gap.as_secs_f64());
                }
                clock.line(&format!(
                    "{} holds the lease (token {}){settled}; {} waiting",
                    grant.holder, grant.token, self.waiting
                ));
            }
            Some(Kind::Released(released)) => {
                self.holders.remove(&released.holder);
                self.last_release = Some(Instant::now());
                clock.line(&format!(
                    "{} released the lease; the slot settles {}s before the next host may go down",
                    released.holder,
                    SETTLE_TIME.as_secs()
                ));
            }
            Some(Kind::Queued(queued)) => {
                self.waiting += 1;
                clock.line(&format!(
                    "{} queued at position {}",
                    queued.holder, queued.position
                ));
            }
            Some(Kind::LeftQueue(_) | Kind::WaiterDropped(_)) => {
                self.waiting = self.waiting.saturating_sub(1);
            }
            _ => {}
        }
        self.index = self.index.max(event.index);
        self.max_holders = self.max_holders.max(self.holders.len());
    }
}

fn percentile(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Opens a watch stream on the voter at `address`.
async fn open_watch(dialer: &Dialer, address: &str) -> Option<tonic::Streaming<pb::WatchEvent>> {
    let channel = dialer.stream_channel(address).ok()?;
    let request = pb::WatchRequest {
        group: GROUP.into(),
    };
    let stream = LeaseClient::new(channel).watch(request).await.ok()?;
    Some(stream.into_inner())
}

/// The next event of `stream`, or never when there is none.
async fn next_event(
    stream: &mut Option<tonic::Streaming<pb::WatchEvent>>,
) -> Option<Result<pb::WatchEvent, tonic::Status>> {
    match stream.as_mut() {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Identifies a change seen on two streams, so it is counted once.
fn change_key(event: &pb::WatchEvent) -> Option<(u64, &'static str, String)> {
    use pb::watch_event::Kind;
    match &event.kind {
        Some(Kind::Granted(g)) => Some((event.index, "granted", g.holder.clone())),
        Some(Kind::Released(r)) => Some((event.index, "released", r.holder.clone())),
        Some(Kind::Queued(q)) => Some((event.index, "queued", q.holder.clone())),
        _ => None,
    }
}

/// Runs the demo until every host rolled (or the timeout, or Ctrl-C).
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let clock = Clock {
        start: Instant::now(),
        quiet: false,
    };
    let mut fleet = Fleet::create(options.hosts)?;
    fleet.keep_files = options.keep_files;
    let voters = fleet.hosts.iter().filter(|h| h.voter).count();
    clock.line(&format!(
        "starting {} hosts ({voters} voters, {} clients) in {}; every host has an update waiting for a reboot",
        fleet.hosts.len(),
        fleet.hosts.len() - voters,
        fleet.layout.root().display()
    ));
    for host in &fleet.hosts {
        let role = if host.voter { "voter" } else { "client" };
        clock.line(&format!(
            "{} ({role}): metrics at http://{}/metrics",
            host.host.name, host.metrics
        ));
    }
    for i in 0..fleet.hosts.len() {
        fleet.start(i)?;
    }
    let mut observed = Observed::default();
    // Two watchers on two voters: voters reboot too, one at a time, so one
    // of the two always sees each change as it happens.
    let mut watches: [Option<tonic::Streaming<pb::WatchEvent>>; 2] = [None, None];
    let watched: Vec<String> = fleet
        .layout
        .voters()
        .iter()
        .take(2)
        .map(|v| v.address.clone())
        .collect();
    let tls = match fleet.layout.client_identity("demo-watch", Role::Admin)? {
        Some(identity) => TlsMode::Mutual(TlsState::load(&identity.files())?),
        None => TlsMode::Insecure,
    };
    let dialer = Dialer::new(Duration::from_secs(1), Duration::from_secs(5), tls);
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + options.timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut phases: BTreeMap<String, &'static str> = BTreeMap::new();
    loop {
        for (slot, address) in watches.iter_mut().zip(&watched) {
            if slot.is_none() {
                *slot = open_watch(&dialer, address).await;
            }
        }
        let [first, second] = &mut watches;
        let (which, event) = tokio::select! {
            _ = &mut ctrl_c => return Err(DemoError::Interrupted),
            _ = tick.tick() => (None, None),
            event = next_event(first) => (Some(0), event),
            event = next_event(second) => (Some(1), event),
        };
        match (which, event) {
            (_, Some(Ok(event))) => {
                let new = match change_key(&event) {
                    Some(key) => seen.insert(key),
                    None => true,
                };
                if new {
                    observed.apply(&event, &clock);
                }
            }
            // That voter went down (it reboots too); reopen when it is back.
            (Some(i), _) => watches[i] = None,
            (None, _) => {}
        }
        for i in 0..fleet.hosts.len() {
            fleet.reboot_requested(i, &clock)?;
            let host = &mut fleet.hosts[i];
            let phase = PhaseFile::new(&host.host.state_dir())
                .load()
                .unwrap_or(Phase::Idle);
            let name = phase.name();
            if phases.insert(host.host.name.clone(), name) != Some(name) && name != "idle" {
                tracing::debug!("{} is {}", host.host.name, name);
            }
            if host.reboots > 0 && !host.rolled && phase == Phase::Idle {
                host.rolled = true;
                clock.line(&format!(
                    "{} rolled: rebooted, checked, released",
                    host.host.name
                ));
            }
        }
        if fleet.hosts.iter().all(|h| h.rolled) {
            break;
        }
        if Instant::now() > deadline {
            return Err(DemoError::Timeout(options.timeout));
        }
    }
    let total = clock.start.elapsed();
    let rolled = fleet.hosts.iter().filter(|h| h.rolled).count();
    let lost: Duration = observed.handoffs.iter().sum();
    if !options.json {
        println!();
    }
    println!(
        "rolled {rolled} of {} hosts in {:.1} s; at most {} held the lease at once; \
         {} hand-offs, each after a {}s settle time, {:.1} ms lost beyond it in all (p50 {:.1} ms, p99 {:.1} ms)",
        fleet.hosts.len(),
        total.as_secs_f64(),
        observed.max_holders,
        observed.handoffs.len(),
        SETTLE_TIME.as_secs(),
        lost.as_secs_f64() * 1000.0,
        percentile(&observed.handoffs, 0.5),
        percentile(&observed.handoffs, 0.99),
    );
    if options.json {
        println!(
            "{}",
            json!({
                "hosts": fleet.hosts.len(),
                "rolled": rolled,
                "max_concurrent_holders": observed.max_holders,
                "total_seconds": total.as_secs_f64(),
                "metrics": fleet.hosts.iter().map(|h| json!({"host": h.host.name, "url": format!("http://{}/metrics", h.metrics)})).collect::<Vec<_>>(),
                "settle_seconds": SETTLE_TIME.as_secs(),
                "handoff_ms": {
                    "p50": percentile(&observed.handoffs, 0.5),
                    "p99": percentile(&observed.handoffs, 0.99),
                },
            })
        );
    }
    Ok(())
}
