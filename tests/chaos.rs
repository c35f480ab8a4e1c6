//! Chaos with real processes: three voters, each in its own network
//! namespace on a bridge, while simulated hosts roll through two groups and a
//! nemesis kills, pauses, isolates and cuts voters and degrades the network.
//!
//! Checked, from what the clients saw: never more holders at once than the
//! group's `max_holders`, fencing tokens that only increase, and a roll that
//! finishes (every host gets a turn) within a bound once all is healed.
//! Printed (visible with `--nocapture`), not asserted: what each fault cost
//! (time until a new leader answers a write, time until a voter that was away
//! has caught up, the term before and after a voter comes back, the longest
//! time without an answered write), and one JSON line that sums the run up.
//!
//! Needs root and `ip netns`; without them it says why and passes. Faults
//! that need a tool the machine lacks are skipped with a note: packet loss
//! needs `nft` (the one-pair cut then uses blackhole routes), delay needs the
//! kernel's `sch_netem`.
//!
//! `BATON_CHAOS_BIN=/path/to/baton` runs the voters from another build, to
//! compare figures before and after a change (the clients stay this build's).
//!
//! Run: `cargo test -p baton --test integration chaos -- --nocapture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::{Dialer, TlsFiles, TlsMode, TlsState};
use baton_proto::v1 as pb;
use pb::admin_client::AdminClient;
use pb::lease_client::LeaseClient;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::support::baton_bin;

const VOTERS: usize = 3;
/// Every voter listens on this port at its own address.
const PORT: u16 = 7443;
const RUST_LOG: &str = "info,openraft=warn";

/// The group of max 1 and its hosts.
const GROUP_ONE: &str = "chaos-one";
const HOSTS_ONE: usize = 20;
/// The group of max 2 and its hosts.
const GROUP_TWO: &str = "chaos-two";
const HOSTS_TWO: usize = 8;
/// The probes' group: admin writes that measure when writes are answered.
const PROBE_GROUP: &str = "chaos-probe";
/// How long a host holds the lease.
const HOLD: Duration = Duration::from_millis(20);

/// Rounds of the whole nemesis schedule.
const ROUNDS: usize = 2;
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(3);
/// How long a voter's return is watched.
const WINDOW: Duration = Duration::from_millis(2_500);
/// A probe write every this long while measuring.
const PROBE_EVERY: Duration = Duration::from_millis(25);
/// No answered write within this long after a fault: recorded as none.
const FAILOVER_LIMIT: Duration = Duration::from_secs(15);
/// A returning voter not caught up within this long: recorded as none.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(15);
/// After the last heal, every host must finish a turn within this long.
const FINISH_BOUND: Duration = Duration::from_secs(30);
/// A host gives up on a Wait stream after this long and opens one on the next voter.
const WAIT_PATIENCE: Duration = Duration::from_secs(3);

// ------------------------------------------------------------ commands ----

/// Runs a command; its stderr on failure.
fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}");
    }
}

/// Why this test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not root: network namespaces need root".into());
    }
    let probe = format!("bchaosprobe{}", std::process::id());
    if let Err(e) = run(&["ip", "netns", "add", &probe]) {
        return Some(format!("`ip netns` is not available: {e}"));
    }
    let _ = run(&["ip", "netns", "del", &probe]);
    None
}

// ------------------------------------------------------------- network ----

/// The test's network: a bridge in the root namespace (where the test and
/// its clients live) and one namespace per voter, joined by veth pairs.
/// Names carry this process's id; dropping it removes them all.
struct Net {
    tag: u32,
    /// The x of 10.77.x.0/24.
    subnet: u8,
    bridge: Option<String>,
    namespaces: Vec<String>,
    veths: Vec<String>,
    /// `nft` works in the voters' namespaces (loss and the one-pair cut).
    nft: bool,
    /// Why netem cannot be used, if it cannot.
    no_netem: Option<String>,
}

impl Net {
    fn setup(n: usize) -> Net {
        remove_stale();
        let tag = std::process::id();
        let mut net = Net {
            tag,
            subnet: free_subnet(),
            bridge: None,
            namespaces: Vec::new(),
            veths: Vec::new(),
            nft: false,
            no_netem: None,
        };
        let bridge = format!("br-baton{tag}");
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        net.bridge = Some(bridge.clone());
        let own = format!("10.77.{}.254/24", net.subnet);
        must(&["ip", "addr", "add", &own, "dev", &bridge]);
        must(&["ip", "link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("bchaos{tag}-{}", i + 1);
            must(&["ip", "netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let veth = format!("vb{tag}-{}", i + 1);
            let peer = format!("vn{tag}-{}", i + 1);
            must(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
            ]);
            net.veths.push(veth.clone());
            must(&["ip", "link", "set", &peer, "netns", &ns]);
            must(&["ip", "-n", &ns, "link", "set", &peer, "name", "eth0"]);
            let address = format!("{}/24", net.ip(i));
            must(&["ip", "-n", &ns, "addr", "add", &address, "dev", "eth0"]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            must(&["ip", "link", "set", &veth, "master", &bridge]);
            must(&["ip", "link", "set", &veth, "up"]);
        }
        net.nft = (0..n).all(|i| {
            net.nft(i, "add table inet chaos").is_ok()
                && net
                    .nft(
                        i,
                        "add chain inet chaos input { type filter hook input priority 0 ; }",
                    )
                    .is_ok()
                && net
                    .nft(
                        i,
                        "add chain inet chaos output { type filter hook output priority 0 ; }",
                    )
                    .is_ok()
        });
        let ns = net.namespaces[0].clone();
        let netem = ["root", "netem", "delay", "1ms"];
        net.no_netem = match run(&[
            &["tc", "-n", &ns, "qdisc", "add", "dev", "eth0"][..],
            &netem,
        ]
        .concat())
        {
            Ok(_) => {
                let _ = run(&["tc", "-n", &ns, "qdisc", "del", "dev", "eth0", "root"]);
                None
            }
            Err(e) => Some(e),
        };
        net
    }

    fn ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.subnet, i + 1)
    }

    fn address(&self, i: usize) -> String {
        format!("{}:{PORT}", self.ip(i))
    }

    fn nft(&self, i: usize, command: &str) -> Result<String, String> {
        run(&["ip", "netns", "exec", &self.namespaces[i], "nft", command])
    }

    /// Takes voter `i`'s link to the bridge down (or up again): nothing
    /// reaches it or leaves it, the test's clients included.
    fn isolate(&self, i: usize, on: bool) {
        let state = if on { "down" } else { "up" };
        must(&["ip", "link", "set", &self.veths[i], state]);
    }

    /// Drops every packet between voters `a` and `b` (or lets them through
    /// again); both still reach everyone else.
    fn cut(&self, a: usize, b: usize, on: bool) {
        for (me, peer) in [(a, b), (b, a)] {
            let peer = self.ip(peer);
            if self.nft {
                if on {
                    let drop_in = format!("add rule inet chaos input ip saddr {peer} drop");
                    let drop_out = format!("add rule inet chaos output ip daddr {peer} drop");
                    self.nft(me, &drop_in).expect("nft rule");
                    self.nft(me, &drop_out).expect("nft rule");
                } else {
                    self.flush(me);
                }
            } else {
                let verb = if on { "add" } else { "del" };
                let route = format!("{peer}/32");
                let ns = &self.namespaces[me];
                must(&["ip", "-n", ns, "route", verb, "blackhole", &route]);
            }
        }
    }

    /// Drops `percent` of the packets each voter sends and receives (or stops).
    fn loss(&self, percent: u32, on: bool) {
        for i in 0..self.namespaces.len() {
            if on {
                for (chain, dev) in [("input", "iifname"), ("output", "oifname")] {
                    let rule = format!(
                        "add rule inet chaos {chain} {dev} \"eth0\" numgen random mod 100 lt {percent} drop"
                    );
                    self.nft(i, &rule).expect("nft loss rule");
                }
            } else {
                self.flush(i);
            }
        }
    }

    fn flush(&self, i: usize) {
        self.nft(i, "flush chain inet chaos input")
            .expect("nft flush");
        self.nft(i, "flush chain inet chaos output")
            .expect("nft flush");
    }

    /// netem on every voter's link: `spec` such as "delay 50ms loss 5%" (or none).
    fn netem(&self, spec: &str, on: bool) {
        for ns in &self.namespaces {
            if on {
                let mut args = vec![
                    "tc", "-n", ns, "qdisc", "add", "dev", "eth0", "root", "netem",
                ];
                args.extend(spec.split_whitespace());
                must(&args);
            } else {
                must(&["tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root"]);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        for veth in &self.veths {
            // Gone with its peer's namespace, unless something still runs there.
            let _ = run(&["ip", "link", "del", veth]);
        }
        if let Some(bridge) = &self.bridge {
            let _ = run(&["ip", "link", "del", bridge]);
        }
    }
}

/// The id in `name` = `prefix` + digits (+ `-` + digits when `numbered`).
fn tag_of(name: &str, prefix: &str, numbered: bool) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (tag, number) = match rest.split_once('-') {
        Some((tag, number)) if numbered => (tag, number),
        None if !numbered => (rest, "0"),
        _ => return None,
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(tag) && digits(number))
        .then(|| tag.parse().ok())
        .flatten()
}

/// Removes the namespaces and links of earlier runs whose process is gone
/// (a run killed before its clean-up).
fn remove_stale() {
    let dead = |tag: u32| !Path::new(&format!("/proc/{tag}")).exists();
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if tag_of(name, "bchaos", true).is_some_and(dead) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(list) = run(&["ip", "-o", "link", "show"]) {
        for line in list.lines() {
            let Some(name) = line.split(':').nth(1) else {
                continue;
            };
            let name = name.trim().split('@').next().unwrap_or_default();
            let stale = tag_of(name, "br-baton", false).is_some_and(dead)
                || tag_of(name, "vb", true).is_some_and(dead);
            if stale {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}

/// A 10.77.x.0/24 no address or route of the root namespace uses.
fn free_subnet() -> u8 {
    let used = [
        run(&["ip", "-4", "-o", "addr", "show"]).unwrap_or_default(),
        run(&["ip", "-4", "route", "show"]).unwrap_or_default(),
    ]
    .concat();
    let start = std::process::id() % 250;
    (0..250)
        .map(|k| ((start + k) % 250 + 1) as u8)
        .find(|x| !used.contains(&format!("10.77.{x}.")))
        .expect("a free 10.77.x.0/24")
}

// -------------------------------------------------------------- voters ----

/// One voter: its directory and, while it runs, its process inside its namespace.
struct VoterProc {
    name: String,
    dir: PathBuf,
    ns: String,
    child: Option<Child>,
}

impl VoterProc {
    fn config(&self) -> PathBuf {
        self.dir.join("baton.toml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// Starts `baton agent` in the voter's namespace (`ip netns exec` execs
    /// it, so the child's pid is the agent's).
    fn start(&mut self, bin: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the voter's log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin)
            .args(["agent", "--config"])
            .arg(self.config())
            .arg("--vendor-dir")
            .arg(self.dir.join("no-vendor"))
            .env("RUST_LOG", RUST_LOG)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a voter in its namespace");
        self.child = Some(child);
    }

    /// kill -9 (also of a stopped process).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the voter runs");
        let pid = i32::try_from(child.id()).expect("a pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal the voter");
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for VoterProc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------- clients ----

/// Channels to the voters (at their bridge addresses) as the test's admin.
#[derive(Clone)]
struct Clients {
    tls: TlsMode,
    dialer: Dialer,
    addresses: Vec<String>,
}

impl Clients {
    /// Short timeouts: a client that fails over fast, so that the figures
    /// are the cluster's, not the client's patience.
    fn new(tls: &TlsMode, addresses: Vec<String>) -> Clients {
        let dialer = Dialer::new(
            Duration::from_millis(500),
            Duration::from_secs(2),
            tls.clone(),
        );
        Clients {
            tls: tls.clone(),
            dialer,
            addresses,
        }
    }

    /// The same clients on new connections: a connection that lived through
    /// a cut link can wait seconds for TCP's next retransmission, which
    /// would be measured as the cluster's time.
    fn fresh(&self) -> Clients {
        Clients::new(&self.tls, self.addresses.clone())
    }

    fn channel(&self, i: usize) -> Channel {
        self.dialer
            .channel(&self.addresses[i])
            .expect("a channel to a voter")
    }

    fn lease(&self, i: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(i))
    }

    fn admin(&self, i: usize) -> AdminClient<Channel> {
        AdminClient::new(self.channel(i))
    }

    /// Voter `i`'s own view (term, leader, applied index), if it answers.
    async fn stale(&self, i: usize) -> Option<pb::StatusResponse> {
        self.stale_within(i, Duration::from_millis(800)).await
    }

    async fn stale_within(&self, i: usize, within: Duration) -> Option<pb::StatusResponse> {
        let mut lease = self.lease(i);
        let call = lease.status(pb::StatusRequest { stale: true });
        let reply = tokio::time::timeout(within, call).await;
        Some(reply.ok()?.ok()?.into_inner())
    }

    /// A linearizable status (the leader's) through the first of `via` that answers.
    async fn linearizable(&self, via: &[usize]) -> Option<pb::StatusResponse> {
        for &i in via {
            let mut lease = self.lease(i);
            let call = lease.status(pb::StatusRequest { stale: false });
            if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(1_500), call).await {
                if reply.get_ref().leader.is_some() {
                    return Some(reply.into_inner());
                }
            }
        }
        None
    }

    /// The leader's status, through `via`, waiting for one up to `within`.
    async fn leader_status(&self, via: &[usize], within: Duration) -> pb::StatusResponse {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.linearizable(via).await {
                return status;
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The voter index of a status's leader.
fn leader_of(status: &pb::StatusResponse) -> usize {
    status.leader.expect("a leader") as usize - 1
}

fn others(voter: usize) -> Vec<usize> {
    (0..VOTERS).filter(|&i| i != voter).collect()
}

fn all() -> Vec<usize> {
    (0..VOTERS).collect()
}

/// Sends a probe write (an admin SetMax) every [`PROBE_EVERY`] to `targets`
/// in turn, each on its own, for `window` (or until the first is answered
/// when `first_only`); returns when each answered write was answered.
async fn probe_writes(
    clients: &Clients,
    targets: &[usize],
    window: Duration,
    first_only: bool,
) -> Vec<Instant> {
    let end = Instant::now() + window;
    let mut probes = JoinSet::new();
    let mut answered = Vec::new();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= end {
                    break;
                }
                let mut admin = clients.admin(targets[n % targets.len()]);
                let max_holders = 1 + (n % 2) as u32;
                n += 1;
                probes.spawn(async move {
                    let request = pb::SetMaxRequest { group: PROBE_GROUP.into(), max_holders };
                    admin.set_max(request).await.is_ok().then(Instant::now)
                });
            }
            Some(joined) = probes.join_next() => {
                if let Ok(Some(at)) = joined {
                    answered.push(at);
                    if first_only {
                        break;
                    }
                }
            }
        }
    }
    probes.abort_all();
    answered
}

/// Polls every voter's own view for `window` and returns the longest
/// stretch in which none of those that answered was leader in the highest
/// term any of them knew (a deposed leader that still thinks it leads, in
/// an older term, does not count).
async fn longest_leaderless(clients: &Clients, window: Duration) -> Duration {
    let start = Instant::now();
    let end = start + window;
    let mut since: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    while Instant::now() < end {
        let within = Duration::from_millis(200);
        let (a, b, c) = tokio::join!(
            clients.stale_within(0, within),
            clients.stale_within(1, within),
            clients.stale_within(2, within)
        );
        let now = Instant::now();
        let views: Vec<pb::StatusResponse> = [a, b, c].into_iter().flatten().collect();
        let term = views.iter().map(|v| v.term).max().unwrap_or(0);
        let led = views
            .iter()
            .any(|v| v.term == term && v.leader == Some(v.served_by));
        match (led, since) {
            (false, None) => since = Some(now),
            (true, Some(from)) => {
                longest = longest.max(now - from);
                since = None;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(from) = since {
        longest = longest.max(end.saturating_duration_since(from));
    }
    longest
}

/// The longest stretch of [start, end] without an answered write.
fn longest_gap(start: Instant, end: Instant, mut answered: Vec<Instant>) -> Duration {
    answered.sort();
    let mut last = start;
    let mut gap = Duration::ZERO;
    for at in answered.into_iter().filter(|&at| at <= end) {
        if at > last {
            gap = gap.max(at - last);
            last = at;
        }
    }
    gap.max(end.saturating_duration_since(last))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

// --------------------------------------------------------------- hosts ----

/// One turn of one host, as its client saw it.
#[derive(Debug, Clone)]
struct Turn {
    group: &'static str,
    holder: String,
    token: u64,
    /// When the leader made the grant (its stamp, unix milliseconds).
    stamped_ms: u64,
    /// When the host started asking.
    asked: Instant,
    /// When the Acquire that gave it the lease answered.
    granted: Instant,
    /// When it sent its (first) Release: it holds no longer.
    release_sent: Instant,
    /// When a Release was answered.
    released: Instant,
}

/// What the hosts share: every turn, and when the last fault was healed.
#[derive(Default)]
struct Workload {
    turns: Mutex<Vec<Turn>>,
    healed: Mutex<Option<Instant>>,
}

/// Waits on a `Lease.Wait` stream until it says Granted (false: the stream
/// failed, ended or took longer than [`WAIT_PATIENCE`]).
async fn wait_for_grant(lease: &mut LeaseClient<Channel>, request: pb::WaitRequest) -> bool {
    let wait = async {
        let mut stream = lease.wait(request).await.ok()?.into_inner();
        while let Some(event) = stream.next().await {
            match event.ok()?.kind {
                Some(pb::wait_event::Kind::Granted(_)) => return Some(()),
                _ => continue,
            }
        }
        None
    };
    matches!(
        tokio::time::timeout(WAIT_PATIENCE, wait).await,
        Ok(Some(()))
    )
}

/// One turn as the agent takes it: wait on a stream (on the next voter when
/// one fails), take the slot with Acquire, hold, release (retried until answered).
async fn one_turn(
    lease: &[LeaseClient<Channel>],
    voter: &mut usize,
    group: &'static str,
    holder: &str,
) -> Turn {
    let asked = Instant::now();
    let machine_id = format!("machine-{holder}");
    let (token, stamped_ms) = loop {
        let mut client = lease[*voter % lease.len()].clone();
        let request = pb::WaitRequest {
            group: group.into(),
            holder: holder.into(),
            machine_id: machine_id.clone(),
        };
        if !wait_for_grant(&mut client, request).await {
            *voter += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let claim = client
            .acquire(pb::AcquireRequest {
                group: group.into(),
                holder: holder.into(),
                machine_id: machine_id.clone(),
            })
            .await;
        match claim.map(|r| r.into_inner().outcome) {
            Ok(Some(pb::acquire_response::Outcome::Granted(grant))) => {
                break (grant.token, grant.granted_at_ms)
            }
            // Queued: that voter's state was behind. Failed: unknown; the
            // next Wait says whether it holds (Acquire is reentrant).
            _ => {
                *voter += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let granted = Instant::now();
    tokio::time::sleep(HOLD).await;
    let release_sent = Instant::now();
    loop {
        let mut client = lease[*voter % lease.len()].clone();
        let release = client
            .release(pb::ReleaseRequest {
                group: group.into(),
                holder: holder.into(),
                token: Some(token),
            })
            .await;
        if release.is_ok() {
            break;
        }
        *voter += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Turn {
        group,
        holder: holder.into(),
        token,
        stamped_ms,
        asked,
        granted,
        release_sent,
        released: Instant::now(),
    }
}

/// A host takes turns until it has taken one that it asked for after the last heal.
async fn host(
    lease: Vec<LeaseClient<Channel>>,
    group: &'static str,
    holder: String,
    first: usize,
    work: Arc<Workload>,
) {
    let mut voter = first;
    loop {
        let turn = one_turn(&lease, &mut voter, group, &holder).await;
        let asked = turn.asked;
        work.turns.lock().expect("turns").push(turn);
        let healed = *work.healed.lock().expect("healed");
        if healed.is_some_and(|healed| asked >= healed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------ checkers ----

/// What the checkers found in one group's turns.
#[derive(Debug, Default)]
struct Verdict {
    violations: Vec<String>,
    /// Grants answered before the previous holder's release was: not a
    /// violation (that release had committed, its answer came later; the
    /// previous holder had stopped holding when it sent it), counted for the record.
    release_reply_overlaps: usize,
}

/// How many grants found more than `max` intervals open (each interval from
/// the grant's answer to `end`), with the first few described.
fn over_max(turns: &[Turn], end: impl Fn(&Turn) -> Instant, max: usize) -> (usize, Vec<String>) {
    let mut events: Vec<(Instant, i32, usize)> = Vec::new();
    for (n, turn) in turns.iter().enumerate() {
        events.push((turn.granted, 1, n));
        events.push((end(turn), -1, n));
    }
    // At the same instant an end comes before a start.
    events.sort_by_key(|&(at, delta, _)| (at, delta));
    let mut open: Vec<usize> = Vec::new();
    let mut count = 0;
    let mut found = Vec::new();
    for (_, delta, n) in events {
        if delta < 0 {
            open.retain(|&o| o != n);
            continue;
        }
        open.push(n);
        if open.len() > max {
            count += 1;
            if found.len() < 5 {
                let who: Vec<String> = open
                    .iter()
                    .map(|&o| format!("{} (token {})", turns[o].holder, turns[o].token))
                    .collect();
                found.push(format!(
                    "{} holders at once in {} (max {max}): {}",
                    open.len(),
                    turns[n].group,
                    who.join(", ")
                ));
            }
        }
    }
    (count, found)
}

/// Leader stamps this far apart are ordered for sure (stamping and log
/// order may differ a little between concurrent proposals).
const STAMP_SLACK_MS: u64 = 100;

fn check_group(turns: &[Turn], max: usize) -> Verdict {
    let mut verdict = Verdict::default();
    // A holder holds from its grant's answer until it sends its release.
    let (_, found) = over_max(turns, |t| t.release_sent, max);
    verdict.violations.extend(found);
    verdict.release_reply_overlaps = over_max(turns, |t| t.released, max).0;

    // Fencing tokens: each grant its own token ...
    let mut holders_of = BTreeMap::new();
    for turn in turns {
        if let Some(other) = holders_of.insert(turn.token, &turn.holder) {
            verdict.violations.push(format!(
                "token {} granted twice in {} ({other} and {})",
                turn.token, turn.group, turn.holder
            ));
        }
    }
    // ... greater than every token the leaders granted clearly before ...
    let mut by_stamp: Vec<&Turn> = turns.iter().collect();
    by_stamp.sort_by_key(|t| t.stamped_ms);
    let mut earlier = 0;
    let mut highest: Option<&Turn> = None;
    for turn in &by_stamp {
        while by_stamp[earlier].stamped_ms + STAMP_SLACK_MS < turn.stamped_ms {
            let candidate = by_stamp[earlier];
            if highest.is_none_or(|h| candidate.token > h.token) {
                highest = Some(candidate);
            }
            earlier += 1;
        }
        if let Some(h) = highest.filter(|h| h.token >= turn.token) {
            verdict.violations.push(format!(
                "in {}, {} got token {} at {} ms, after {} got token {} at {} ms",
                turn.group,
                turn.holder,
                turn.token,
                turn.stamped_ms,
                h.holder,
                h.token,
                h.stamped_ms
            ));
        }
    }
    // ... and, one holder at a time, increasing in the order the holders saw.
    if max == 1 {
        let mut by_grant: Vec<&Turn> = turns.iter().collect();
        by_grant.sort_by_key(|t| t.granted);
        for pair in by_grant.windows(2) {
            if pair[1].token <= pair[0].token {
                verdict.violations.push(format!(
                    "in {}, {} was granted token {} after {} had token {}",
                    pair[0].group, pair[1].holder, pair[1].token, pair[0].holder, pair[0].token
                ));
            }
        }
    }
    verdict.violations.truncate(20);
    verdict
}

// --------------------------------------------------------------- chaos ----

/// The figures of one return: a voter back from a kill, a pause, an
/// isolation or a cut.
struct Return {
    fault: &'static str,
    voter: usize,
    /// The cluster's term just before the voter came back.
    term_before: u64,
    /// The voter's own term as it came back (when known).
    returning_term: Option<u64>,
    /// The cluster's term after the watch window.
    term_after: u64,
    leader_before: usize,
    leader_after: usize,
    /// Longest time without a leader in the window after the return.
    leaderless: Duration,
    /// Longest time without an answered write in the window after the return.
    longest_gap: Duration,
    /// Until the voter's applied index reached the leader's at the return.
    catch_up: Option<Duration>,
}

#[derive(Default)]
struct Figures {
    faults: BTreeMap<&'static str, u32>,
    skipped: Vec<String>,
    failover: BTreeMap<&'static str, Vec<Option<u64>>>,
    returns: Vec<Return>,
    /// Network-wide faults: (fault, term before, term after, longest gap).
    degraded: Vec<(&'static str, u64, u64, Duration)>,
}

struct Chaos {
    // Dropped in this order: processes first, then the network, then the files.
    voters: Vec<VoterProc>,
    net: Net,
    bin: PathBuf,
    clients: Clients,
    admin_args: Vec<String>,
    figures: Figures,
    _dir: tempfile::TempDir,
}

impl Chaos {
    /// Lays out the network, the CA, three voters' configs, and starts them.
    fn start() -> Chaos {
        let net = Net::setup(VOTERS);
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = dir.path().join("tls");
        let tls_arg = tls.display().to_string();
        let cli = baton_bin();
        let cli = cli.to_str().expect("utf-8 path");
        must(&[cli, "cert", "init", "--dir", &tls_arg, "--days", "2"]);
        let bin = std::env::var_os("BATON_CHAOS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(baton_bin);
        let voters_toml: Vec<String> = (0..VOTERS)
            .map(|i| {
                format!(
                    "  {{ id = {}, name = \"cp-{}\", address = \"{}\" }},",
                    i + 1,
                    i + 1,
                    net.address(i)
                )
            })
            .collect();
        let mut voters = Vec::new();
        for i in 0..VOTERS {
            let name = format!("cp-{}", i + 1);
            let ip = net.ip(i);
            must(&[
                cli,
                "cert",
                "issue",
                &name,
                "--role",
                "voter",
                "--dir",
                &tls_arg,
                "--address",
                &ip,
                "--days",
                "2",
            ]);
            let vdir = dir.path().join(&name);
            std::fs::create_dir_all(&vdir).expect("voter dir");
            let config = format!(
                "[node]\nname = \"{name}\"\nstate_dir = \"{state}\"\n\n\
                 [cluster]\nlisten = \"{listen}\"\nvoters = [\n{voters}\n]\n\n\
                 [updates]\nsource = \"none\"\n\n\
                 [tls]\nca = \"{tls}/ca.crt\"\ncert = \"{tls}/{name}.crt\"\nkey = \"{tls}/{name}.key\"\n",
                state = vdir.join("state").display(),
                listen = net.address(i),
                voters = voters_toml.join("\n"),
                tls = tls.display(),
            );
            std::fs::write(vdir.join("baton.toml"), config).expect("write voter config");
            voters.push(VoterProc {
                name,
                dir: vdir,
                ns: net.namespaces[i].clone(),
                child: None,
            });
        }
        must(&[
            cli,
            "cert",
            "issue",
            "chaos-admin",
            "--role",
            "admin",
            "--dir",
            &tls_arg,
            "--days",
            "2",
        ]);
        let files = TlsFiles {
            ca: tls.join("ca.crt"),
            cert: tls.join("chaos-admin.crt"),
            key: tls.join("chaos-admin.key"),
        };
        let mode = TlsMode::Mutual(TlsState::load(&files).expect("admin TLS"));
        let admin_args = ["--ca", "--cert", "--key"]
            .iter()
            .zip([&files.ca, &files.cert, &files.key])
            .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
            .collect();
        let clients = Clients::new(&mode, (0..VOTERS).map(|i| net.address(i)).collect());
        let mut chaos = Chaos {
            voters,
            net,
            bin,
            clients,
            admin_args,
            figures: Figures::default(),
            _dir: dir,
        };
        for voter in &mut chaos.voters {
            voter.start(&chaos.bin);
        }
        chaos
    }

    fn logs(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("--- {} (last lines) ---\n{}", v.name, v.log_tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn name(&self, i: usize) -> &str {
        &self.voters[i].name
    }

    async fn leader(&self, via: &[usize]) -> pb::StatusResponse {
        self.clients
            .leader_status(via, Duration::from_secs(20))
            .await
    }

    /// Voter `i`'s term as it sees it, asked from inside its namespace (it
    /// answers there while its link is down).
    async fn term_inside(&self, i: usize) -> Option<u64> {
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.voters[i].ns])
            .arg(baton_bin())
            .args(["--endpoint", &self.net.address(i)])
            .args(&self.admin_args)
            .args(["--request-timeout", "1s", "status", "--json", "--stale"])
            .output()
            .await
            .ok()?;
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        status["term"].as_u64()
    }

    /// Waits until the leader sees every voter answering and matched up to
    /// about its own index (between faults, so each starts from a whole cluster).
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.clients.linearizable(&all()).await {
                let whole = status.voters.len() == VOTERS
                    && status.voters.iter().all(|v| {
                        v.reachable && v.matched.is_some_and(|m| m + 20 >= status.last_applied)
                    });
                if whole {
                    return;
                }
            }
            if Instant::now() > deadline {
                eprintln!("chaos: the cluster is not whole again after 15 s; going on");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Counts a fault that starts now (on new connections).
    fn begin(&mut self, fault: &'static str) {
        *self.figures.faults.entry(fault).or_default() += 1;
        self.clients = self.clients.fresh();
    }

    /// From a fault at `from`: until a write sent to `targets` after it is answered.
    async fn failover(&mut self, fault: &'static str, from: Instant, targets: &[usize]) {
        let answered = probe_writes(&self.clients, targets, FAILOVER_LIMIT, true).await;
        let took = answered.first().map(|at| ms(at.duration_since(from)));
        match took {
            Some(took) => {
                eprintln!("chaos: {fault}: a new leader answered a write after {took} ms")
            }
            None => eprintln!("chaos: {fault}: no write answered within {FAILOVER_LIMIT:?}"),
        }
        self.figures.failover.entry(fault).or_default().push(took);
    }

    /// Watches voter `voter` come back at `healed`: writes through the others
    /// for [`WINDOW`], its applied index until it reaches `before`'s, and the
    /// term and leader after.
    async fn observe_return(
        &mut self,
        fault: &'static str,
        voter: usize,
        before: &pb::StatusResponse,
        mut returning_term: Option<u64>,
        healed: Instant,
    ) {
        self.clients = self.clients.fresh();
        let targets = others(voter);
        let writes = probe_writes(&self.clients, &targets, WINDOW, false);
        let clients = self.clients.clone();
        let target = before.last_applied;
        let catch_up = async {
            let deadline = healed + CATCH_UP_LIMIT;
            loop {
                if let Some(status) = clients.stale(voter).await {
                    returning_term.get_or_insert(status.term);
                    if status.last_applied >= target {
                        return Some(healed.elapsed());
                    }
                }
                if Instant::now() > deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let leaderless = longest_leaderless(&self.clients, WINDOW);
        let (answered, catch_up, leaderless) = tokio::join!(writes, catch_up, leaderless);
        let longest_gap = longest_gap(healed, healed + WINDOW, answered);
        let after = self.leader(&all()).await;
        let back = Return {
            fault,
            voter,
            term_before: before.term,
            returning_term,
            term_after: after.term,
            leader_before: leader_of(before),
            leader_after: leader_of(&after),
            leaderless,
            longest_gap,
            catch_up,
        };
        eprintln!(
            "chaos: {fault}: {} came back (own term {}): term {} -> {}, leader {} -> {}, \
             leaderless {} ms, longest write gap {} ms, caught up in {}",
            self.name(voter),
            back.returning_term
                .map_or("unknown".to_string(), |t| t.to_string()),
            back.term_before,
            back.term_after,
            self.name(back.leader_before),
            self.name(back.leader_after),
            ms(back.leaderless),
            ms(back.longest_gap),
            back.catch_up
                .map_or(format!("more than {CATCH_UP_LIMIT:?}"), |d| format!(
                    "{} ms",
                    ms(d)
                )),
        );
        self.figures.returns.push(back);
    }

    /// kill -9 of the leader; restarted with the same state after [`FAULT`].
    async fn kill_leader(&mut self) {
        let fault = "kill-leader";
        self.begin(fault);
        let leader = leader_of(&self.leader(&all()).await);
        eprintln!("chaos: {fault}: kill -9 {}", self.name(leader));
        self.voters[leader].kill();
        let from = Instant::now();
        self.failover(fault, from, &others(leader)).await;
        tokio::time::sleep_until((from + FAULT).into()).await;
        let before = self.leader(&others(leader)).await;
        self.voters[leader].start(&self.bin);
        let healed = Instant::now();
        self.observe_return(fault, leader, &before, None, healed)
            .await;
    }

    /// SIGSTOP of the leader; SIGCONT after [`FAULT`].
    async fn stop_leader(&mut self) {
        let fault = "stop-leader";
        self.begin(fault);
        let status = self.leader(&all()).await;
        let leader = leader_of(&status);
        eprintln!("chaos: {fault}: SIGSTOP {}", self.name(leader));
        self.voters[leader].signal(nix::sys::signal::Signal::SIGSTOP);
        let from = Instant::now();
        self.failover(fault, from, &others(leader)).await;
        tokio::time::sleep_until((from + FAULT).into()).await;
        let before = self.leader(&others(leader)).await;
        self.voters[leader].signal(nix::sys::signal::Signal::SIGCONT);
        let healed = Instant::now();
        self.observe_return(fault, leader, &before, Some(status.term), healed)
            .await;
    }

    /// Voter `victim` (the leader or a follower) loses its link for [`FAULT`].
    async fn isolate(&mut self, fault: &'static str, leader: bool) {
        self.begin(fault);
        let status = self.leader(&all()).await;
        let victim = if leader {
            leader_of(&status)
        } else {
            (leader_of(&status) + 1) % VOTERS
        };
        eprintln!("chaos: {fault}: {} loses its link", self.name(victim));
        self.net.isolate(victim, true);
        let from = Instant::now();
        if leader {
            self.failover(fault, from, &others(victim)).await;
        }
        tokio::time::sleep_until((from + FAULT).into()).await;
        let own = self.term_inside(victim).await;
        let before = self.leader(&others(victim)).await;
        self.net.isolate(victim, false);
        let healed = Instant::now();
        self.observe_return(fault, victim, &before, own, healed)
            .await;
    }

    /// The leader and one follower cannot reach each other for [`FAULT`];
    /// both still reach the third voter.
    async fn cut_leader_follower(&mut self) {
        let fault = "cut-leader-follower";
        self.begin(fault);
        let status = self.leader(&all()).await;
        let leader = leader_of(&status);
        let follower = (leader + 1) % VOTERS;
        eprintln!(
            "chaos: {fault}: {} and {} cannot reach each other",
            self.name(leader),
            self.name(follower)
        );
        self.net.cut(leader, follower, true);
        let from = Instant::now();
        let answered = probe_writes(&self.clients, &others(follower), FAULT, false).await;
        let gap = longest_gap(from, from + FAULT, answered);
        eprintln!(
            "chaos: {fault}: longest write gap during the cut {} ms",
            ms(gap)
        );
        let own = self.clients.stale(follower).await.map(|s| s.term);
        let before = self.leader(&others(follower)).await;
        self.net.cut(leader, follower, false);
        let healed = Instant::now();
        self.observe_return(fault, follower, &before, own, healed)
            .await;
    }

    /// Every voter's link degraded for [`FAULT`]: writes go on through all.
    async fn degrade(&mut self, fault: &'static str, apply: impl Fn(&Net, bool)) {
        self.begin(fault);
        let before = self.leader(&all()).await;
        eprintln!("chaos: {fault}: on every voter's link");
        apply(&self.net, true);
        let from = Instant::now();
        let answered = probe_writes(&self.clients, &all(), FAULT, false).await;
        apply(&self.net, false);
        self.clients = self.clients.fresh();
        let gap = longest_gap(from, from + FAULT, answered);
        let after = self.leader(&all()).await;
        eprintln!(
            "chaos: {fault}: term {} -> {}, leader {} -> {}, longest write gap {} ms",
            before.term,
            after.term,
            self.name(leader_of(&before)),
            self.name(leader_of(&after)),
            ms(gap)
        );
        self.figures
            .degraded
            .push((fault, before.term, after.term, gap));
    }

    fn skip(&mut self, why: String) {
        if !self.figures.skipped.contains(&why) {
            eprintln!("chaos: skipped: {why}");
            self.figures.skipped.push(why);
        }
    }

    /// One round of the schedule, each fault healed before the next.
    async fn round(&mut self) {
        self.kill_leader().await;
        self.wait_healthy().await;
        self.stop_leader().await;
        self.wait_healthy().await;
        self.isolate("isolate-follower", false).await;
        self.wait_healthy().await;
        self.isolate("isolate-leader", true).await;
        self.wait_healthy().await;
        self.cut_leader_follower().await;
        self.wait_healthy().await;
        if self.net.nft {
            self.degrade("loss-5%", |net, on| net.loss(5, on)).await;
            self.wait_healthy().await;
        } else {
            self.skip("loss-5%: `nft` is not installed (apt-get install nftables)".into());
        }
        match self.net.no_netem.clone() {
            None => {
                self.degrade("netem-delay-50ms-loss-5%", |net, on| {
                    net.netem("delay 50ms loss 5%", on)
                })
                .await;
                self.wait_healthy().await;
            }
            Some(why) => self.skip(format!("netem delay: this kernel has no sch_netem ({why})")),
        }
    }

    fn summary(
        &self,
        violations: usize,
        turns: &BTreeMap<&str, usize>,
        late: usize,
        roll: Duration,
    ) -> Value {
        let by_fault = |pick: &dyn Fn(&Return) -> Option<u64>| {
            let mut out: BTreeMap<&str, Vec<Option<u64>>> = BTreeMap::new();
            for back in &self.figures.returns {
                out.entry(back.fault).or_default().push(pick(back));
            }
            out
        };
        let terms: Vec<Value> = self
            .figures
            .returns
            .iter()
            .map(|back| {
                json!({
                    "fault": back.fault,
                    "voter": self.name(back.voter),
                    "before": back.term_before,
                    "returning": back.returning_term,
                    "after": back.term_after,
                    "leader_changed": back.leader_before != back.leader_after,
                    "leaderless_ms": ms(back.leaderless),
                    "write_gap_ms": ms(back.longest_gap),
                })
            })
            .collect();
        let degraded: Vec<Value> = self
            .figures
            .degraded
            .iter()
            .map(|(fault, before, after, gap)| {
                json!({"fault": fault, "before": before, "after": after, "longest_gap_ms": ms(*gap)})
            })
            .collect();
        json!({
            "voters_binary": self.bin.display().to_string(),
            "faults": self.figures.faults,
            "skipped": self.figures.skipped,
            "violations": violations,
            "turns": turns,
            "roll_after_heal_ms": ms(roll),
            "release_reply_overlaps": late,
            "failover_ms": self.figures.failover,
            "catch_up_ms": by_fault(&|b| b.catch_up.map(ms)),
            "term_before_after": terms,
            "degraded": degraded,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_in_namespaces_stay_safe_under_a_nemesis() {
    if let Some(why) = cannot_run() {
        eprintln!("chaos: skipped: {why}");
        return;
    }
    let started = Instant::now();
    let mut chaos = Chaos::start();
    let first = chaos.leader(&all()).await;
    eprintln!(
        "chaos: voters at {} (bridge br-baton{}), leader {} in term {}",
        chaos.clients.addresses.join(", "),
        chaos.net.tag,
        chaos.name(leader_of(&first)),
        first.term
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let request = pb::SetMaxRequest {
            group: GROUP_TWO.into(),
            max_holders: 2,
        };
        match chaos
            .clients
            .admin(leader_of(&first))
            .set_max(request)
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("set max 2 on {GROUP_TWO}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    // The hosts: their own channels, so that probes do not queue behind them.
    let hosts = chaos.clients.fresh();
    let lease: Vec<LeaseClient<Channel>> = (0..VOTERS).map(|i| hosts.lease(i)).collect();
    let work = Arc::new(Workload::default());
    let mut tasks = JoinSet::new();
    let groups = [(GROUP_ONE, HOSTS_ONE, 1usize), (GROUP_TWO, HOSTS_TWO, 2)];
    for (group, count, _) in groups {
        for n in 0..count {
            let holder = format!("{group}-h{n:02}");
            tasks.spawn(host(lease.clone(), group, holder, n % VOTERS, work.clone()));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    for round in 0..ROUNDS {
        eprintln!("chaos: round {} of {ROUNDS}", round + 1);
        chaos.round().await;
    }

    // All healed: every host must finish a turn asked for from now on.
    chaos.wait_healthy().await;
    let healed = Instant::now();
    *work.healed.lock().expect("healed") = Some(healed);
    let finished = tokio::time::timeout(FINISH_BOUND, async {
        while let Some(joined) = tasks.join_next().await {
            joined.expect("host task");
        }
    })
    .await;
    let roll = healed.elapsed();
    let unfinished = tasks.len();
    tasks.abort_all();

    let turns = work.turns.lock().expect("turns").clone();
    let mut violations = Vec::new();
    let mut counts = BTreeMap::new();
    let mut late = 0;
    for (group, _, max) in groups {
        let of_group: Vec<Turn> = turns.iter().filter(|t| t.group == group).cloned().collect();
        counts.insert(group, of_group.len());
        let verdict = check_group(&of_group, max);
        late += verdict.release_reply_overlaps;
        violations.extend(verdict.violations);
    }
    for violation in &violations {
        eprintln!("chaos: VIOLATION: {violation}");
    }
    eprintln!(
        "chaos: after the last heal the roll finished in {} ms ({unfinished} hosts unfinished); \
         {} turns in all; run took {} s",
        ms(roll),
        turns.len(),
        started.elapsed().as_secs()
    );
    let summary = chaos.summary(violations.len(), &counts, late, roll);
    eprintln!("{summary}");

    assert!(
        violations.is_empty(),
        "safety violated:\n{}\n{}",
        violations.join("\n"),
        chaos.logs()
    );
    assert!(
        finished.is_ok(),
        "{unfinished} hosts did not finish a turn within {FINISH_BOUND:?} after the last heal\n{}",
        chaos.logs()
    );
    for (group, count, _) in groups {
        assert!(
            counts[group] >= 2 * count,
            "only {} turns in {group}: the hosts hardly rolled",
            counts[group]
        );
    }
}

/// The checkers themselves, on made-up turns (no root needed).
#[test]
fn the_checkers_catch_overlaps_and_tokens_going_back() {
    let base = Instant::now();
    let at = |ms: u64| base + Duration::from_millis(ms);
    // (holder, token, leader stamp, grant answered, release sent, release answered)
    let turns = |spec: &[(&str, u64, u64, u64, u64, u64)]| -> Vec<Turn> {
        spec.iter()
            .map(
                |&(holder, token, stamped_ms, granted, sent, answered)| Turn {
                    group: GROUP_ONE,
                    holder: holder.into(),
                    token,
                    stamped_ms,
                    asked: at(0),
                    granted: at(granted),
                    release_sent: at(sent),
                    released: at(answered),
                },
            )
            .collect()
    };
    let fine = turns(&[("a", 1, 0, 10, 30, 40), ("b", 2, 500, 35, 60, 70)]);
    let verdict = check_group(&fine, 1);
    assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
    // b's grant came before a's release answer, after a sent it: counted, not a violation.
    assert_eq!(verdict.release_reply_overlaps, 1);

    let overlap = turns(&[("a", 1, 0, 10, 30, 40), ("b", 2, 500, 20, 60, 70)]);
    let verdict = check_group(&overlap, 1);
    assert!(
        verdict.violations[0].contains("2 holders at once"),
        "{:?}",
        verdict.violations
    );
    assert!(check_group(&overlap, 2).violations.is_empty());
    let three = turns(&[
        ("a", 1, 0, 10, 30, 40),
        ("b", 2, 0, 20, 60, 70),
        ("c", 3, 0, 25, 60, 70),
    ]);
    assert!(check_group(&three, 2).violations[0].contains("3 holders at once"));

    let back = turns(&[("a", 5, 0, 10, 30, 40), ("b", 4, 500, 50, 60, 70)]);
    let verdict = check_group(&back, 2);
    assert!(
        verdict.violations[0].contains("got token 4"),
        "{:?}",
        verdict.violations
    );
    assert!(check_group(&back, 1).violations.len() >= 2);
    let twice = turns(&[("a", 5, 0, 10, 30, 40), ("b", 5, 500, 50, 60, 70)]);
    assert!(check_group(&twice, 2).violations[0].contains("granted twice"));
}
