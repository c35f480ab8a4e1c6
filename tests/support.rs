//! Test support: clusters and hosts of real `baton agent` processes, the CLI, and waits.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use baton::{Dialer, FleetLayout, HostConfig, LocalHost, Role, TlsMode, TlsState};
use baton_proto::v1::lease_client::LeaseClient;
use serde_json::Value;
use tonic::transport::Channel;

/// The `baton` binary cargo built for these tests.
pub fn baton_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_baton"))
}

/// Log filter of every agent the tests start.
const RUST_LOG: &str = "info,openraft=warn";

/// Voters that only serve the lease (no host agent).
const VOTER_SECTIONS: &str = "# These voters only serve the lease.\n[updates]\nsource = \"none\"\n";

/// A cluster of voters `cp-1`..`cp-N`, each a real `baton agent` process
/// with its own config file and state directory under one temp dir, with
/// mutual TLS from a CA of its own (or plaintext, see [`TestCluster::insecure`]).
pub struct TestCluster {
    /// Kept for its lifetime: the fleet's directory is removed on drop.
    _dir: tempfile::TempDir,
    pub layout: FleetLayout,
    pub voters: Vec<LocalHost>,
    /// Extra `[cluster]` keys of every voter (e.g. snapshot settings).
    extra: String,
    /// The CLI flags of an admin of this cluster.
    admin_args: Vec<String>,
    /// Channels as an admin of this cluster.
    dialer: Dialer,
}

impl TestCluster {
    /// Writes configs for `n` voters with TLS and starts them all.
    pub fn start(n: usize, extra: &str) -> TestCluster {
        Self::start_with(n, extra, true, &|_| None)
    }

    /// Like [`TestCluster::start`], with a drop-in (`baton.d/50-test.toml`)
    /// of its own for each voter that `drop_in(i)` gives one, e.g. a port
    /// each voter needs for itself.
    pub fn start_with_drop_ins(
        n: usize,
        extra: &str,
        drop_in: &dyn Fn(usize) -> Option<String>,
    ) -> TestCluster {
        Self::start_with(n, extra, true, drop_in)
    }

    /// The same, in plaintext (`[tls] insecure = true`).
    pub fn insecure(n: usize, extra: &str) -> TestCluster {
        Self::start_with(n, extra, false, &|_| None)
    }

    /// Writes configs for `n` voters with TLS and starts all but voter
    /// `down` (an index; start it later with [`TestCluster::start_voter`]),
    /// as an operator who brings the voters up one by one.
    pub fn start_all_but(n: usize, down: usize) -> TestCluster {
        Self::start_some(n, "", true, &|_| None, &|i| i != down)
    }

    /// Plaintext, with a drop-in per voter as [`TestCluster::start_with_drop_ins`].
    pub fn insecure_with_drop_ins(
        n: usize,
        extra: &str,
        drop_in: &dyn Fn(usize) -> Option<String>,
    ) -> TestCluster {
        Self::start_with(n, extra, false, drop_in)
    }

    fn start_with(
        n: usize,
        extra: &str,
        tls: bool,
        drop_in: &dyn Fn(usize) -> Option<String>,
    ) -> TestCluster {
        Self::start_some(n, extra, tls, drop_in, &|_| true)
    }

    fn start_some(
        n: usize,
        extra: &str,
        tls: bool,
        drop_in: &dyn Fn(usize) -> Option<String>,
        started: &dyn Fn(usize) -> bool,
    ) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let names: Vec<String> = (1..=n).map(|i| format!("cp-{i}")).collect();
        let layout = FleetLayout::new(dir.path(), &names, tls).expect("lay out the fleet");
        let admin = layout
            .client_identity("test-admin", Role::Admin)
            .expect("admin certificate");
        let (admin_args, mode) = match &admin {
            Some(identity) => (
                identity.cli_args(),
                TlsMode::Mutual(TlsState::load(&identity.files()).expect("admin TLS")),
            ),
            None => (vec!["--insecure".to_string()], TlsMode::Insecure),
        };
        let mut cluster = TestCluster {
            _dir: dir,
            layout,
            voters: Vec::new(),
            extra: extra.to_string(),
            admin_args,
            dialer: Dialer::new(Duration::from_secs(2), Duration::from_secs(10), mode),
        };
        for (i, name) in names.iter().enumerate() {
            let voter = cluster.write_voter(name);
            if let Some(text) = drop_in(i) {
                write_file(&voter.dir.join("baton.d"), "50-test.toml", &text);
            }
            cluster.voters.push(voter);
        }
        for i in (0..n).filter(|&i| started(i)) {
            cluster.start_voter(i);
        }
        cluster.wait_all_joined(Duration::from_secs(20));
        cluster
    }

    /// Whether voter `i` has joined: its own (stale) status names a leader
    /// and has applied entries.
    pub fn has_joined(&self, i: usize) -> bool {
        let out = self.cli_at(&self.address(i), &["status", "--stale", "--json"]);
        let status: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        status.is_some_and(|s| {
            s["leader"].is_u64() && s["last_applied"].as_u64().is_some_and(|a| a > 0)
        })
    }

    /// Waits until every voter has joined: its own (stale) status names a
    /// leader and has applied entries. A voter that started before the
    /// others asks them what to do first (`server::bootstrap`) and joins
    /// a moment after the rest elected a leader; a test that kills, wipes
    /// or watches a voter in that moment tests the start-up race, not what
    /// it means to.
    fn wait_all_joined(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for i in 0..self.voters.len() {
            if !self.voters[i].is_running() {
                continue;
            }
            loop {
                if self.has_joined(i) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "voter {} did not join within {within:?}; logs:\n{}",
                    i + 1,
                    self.all_logs()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn write_voter(&self, name: &str) -> LocalHost {
        let config = HostConfig {
            cluster: &self.extra,
            sections: VOTER_SECTIONS,
            ..HostConfig::default()
        };
        self.layout
            .write_host(name, &config)
            .expect("write voter config")
    }

    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.voters[i].state_dir()
    }

    pub fn address(&self, i: usize) -> String {
        self.layout.voters()[i].address.clone()
    }

    /// All voter addresses, comma-separated, for `--endpoint`.
    pub fn endpoints(&self) -> String {
        self.layout.endpoints()
    }

    /// Adds a voter process that is not in the cluster yet: its own config
    /// lists all voters including itself; the others' configs stay as they are.
    pub fn start_new_voter(&mut self) -> usize {
        let name = format!("cp-{}", self.voters.len() + 1);
        self.layout.add_voter(&name).expect("free port");
        let voter = self.write_voter(&name);
        self.voters.push(voter);
        let i = self.voters.len() - 1;
        self.start_voter(i);
        i
    }

    pub fn start_voter(&mut self, i: usize) {
        self.voters[i]
            .start(&baton_bin(), RUST_LOG)
            .expect("spawn baton agent");
    }

    /// Starts voter `i` through `program`, a wrapper that runs the baton
    /// binary it is given first with the arguments after it (e.g. strace
    /// injecting faults).
    pub fn start_voter_through(&mut self, i: usize, program: &Path) {
        self.voters[i]
            .start(program, RUST_LOG)
            .expect("spawn wrapped baton agent");
    }

    /// Waits until the leader has recorded every voter as having stored
    /// entries (`RecordVoter`: one raft entry per voter, soon after the
    /// cluster forms), so that a test counting raft entries counts its own.
    pub fn wait_voters_recorded(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.wait_for_leader(Duration::from_secs(5));
            let voters = status["voters"].as_array().cloned().unwrap_or_default();
            if !voters.is_empty() && voters.iter().all(|v| v["stored"] == true) {
                return;
            }
            assert!(Instant::now() < deadline, "voters not recorded: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Voter `i`'s exit status if it has ended by itself (no wait, no kill).
    pub fn exited(&mut self, i: usize) -> Option<ExitStatus> {
        self.voters[i].exited()
    }

    /// Waits for voter `i`'s process to exit by itself (killed if it has not by then).
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Option<ExitStatus> {
        self.voters[i].wait_exit(within)
    }

    /// kill -9: no clean shutdown, no flush beyond what fsync already did.
    pub fn kill(&mut self, i: usize) {
        self.voters[i].kill();
    }

    /// SIGTERM and wait: the clean shutdown path.
    pub fn terminate(&mut self, i: usize) -> ExitStatus {
        self.voters[i]
            .terminate(Duration::from_secs(10))
            .expect("voter stops after SIGTERM")
    }

    pub fn log(&self, i: usize) -> String {
        self.voters[i].log()
    }

    /// Runs the CLI, as an admin of this cluster, against the given endpoints.
    pub fn cli_at(&self, endpoints: &str, args: &[&str]) -> Output {
        Command::new(baton_bin())
            .args(["--endpoint", endpoints])
            .args(&self.admin_args)
            .args(args)
            .output()
            .expect("run baton cli")
    }

    /// Runs the CLI with exactly these arguments (no identity added).
    pub fn cli_raw(&self, args: &[&str]) -> Output {
        Command::new(baton_bin())
            .args(["--endpoint", &self.endpoints()])
            .args(args)
            .output()
            .expect("run baton cli")
    }

    /// Channels to the voters as an admin of this cluster.
    pub fn dialer(&self) -> Dialer {
        self.dialer.clone()
    }

    /// Runs the CLI against all voters (first that answers).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_at(&self.endpoints(), args)
    }

    /// `status --json` from voter `i` (linearizable: forwarded to the leader).
    pub fn status_json_at(&self, i: usize) -> Option<Value> {
        let out = self.cli_at(&self.address(i), &["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until some voter serves a linearizable status with a leader.
    pub fn wait_for_leader(&self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            for i in 0..self.voters.len() {
                if !self.voters[i].is_running() {
                    continue;
                }
                if let Some(status) = self.status_json_at(i) {
                    if status["leader"].is_u64() {
                        return status;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("no leader within {within:?}; logs:\n{}", self.all_logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The holders of `group` (linearizable).
    pub fn holders(&self, group: &str) -> Vec<String> {
        let status = self.wait_for_leader(Duration::from_secs(10));
        status["groups"][group]["holders"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| h["holder"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn all_logs(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("--- {} ---\n{}", v.name, v.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The host agent's lease client for `holder` in `group`, on every
    /// voter, as an admin of this cluster.
    pub fn host_lease_client(
        &self,
        group: &str,
        holder: &str,
    ) -> baton::simulation::HostLeaseClient {
        let endpoints = (0..self.voters.len()).map(|i| self.address(i)).collect();
        baton::simulation::HostLeaseClient::new(
            endpoints,
            self.dialer.clone(),
            group,
            holder,
            &format!("machine-{holder}"),
        )
    }

    /// A gRPC Lease client to voter `i`, as an admin of this cluster.
    pub async fn lease_client(&self, i: usize) -> LeaseClient<Channel> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.dialer.connect(&self.address(i)).await {
                Ok(channel) => return LeaseClient::new(channel),
                Err(e) if Instant::now() > deadline => panic!("connect to voter {i}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `text` as a config file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A host running `baton agent` as a client of a [`TestCluster`], with a
/// sentinel update source and a reboot command that leaves a marker; the
/// test plays the machine (see [`AgentHost::reboot`]).
pub struct AgentHost {
    pub name: String,
    host: LocalHost,
}

impl AgentHost {
    /// Writes the host's config with a sentinel source and a reboot command
    /// that leaves a marker. `extra` is appended (hooks, windows, ...).
    pub fn new(cluster: &TestCluster, name: &str, extra: &str) -> AgentHost {
        Self::with_sections(cluster, name, None, extra)
    }

    /// Like [`AgentHost::new`], but `sections` replaces the `[updates]` and
    /// `[reboot]` tables (without `boot_id_path`, which is always set).
    pub fn with_sections(
        cluster: &TestCluster,
        name: &str,
        sections: Option<&str>,
        extra: &str,
    ) -> AgentHost {
        let dir = cluster.layout.root().join(name);
        let (sentinel, marker, boot_id) = (
            dir.join("reboot-required"),
            dir.join("reboot-calls"),
            dir.join("boot_id"),
        );
        let sections = match sections {
            Some(sections) => sections.to_string(),
            None => format!(
                "[updates]\nsource = \"sentinel\"\nsentinel_file = \"{sentinel}\"\npoll_interval = \"100ms\"\n\n\
                 [reboot]\nmethod = \"command\"\ncommand = [\"sh\", \"-c\", \"echo $$ >> {marker}\"]\n",
                sentinel = sentinel.display(),
                marker = marker.display(),
            ),
        };
        let sections = format!(
            "{sections}boot_id_path = \"{boot_id}\"\nblocker_retry = \"1s\"\n{extra}\n",
            boot_id = boot_id.display(),
        );
        let config = HostConfig {
            node: "group = \"workers\"\n",
            sections: &sections,
            ..HostConfig::default()
        };
        let host = cluster
            .layout
            .write_host(name, &config)
            .expect("write host config");
        std::fs::write(&boot_id, "boot-0\n").unwrap();
        AgentHost {
            name: name.to_string(),
            host,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.host.dir
    }
    pub fn state_dir(&self) -> PathBuf {
        self.host.state_dir()
    }
    pub fn sentinel(&self) -> PathBuf {
        self.dir().join("reboot-required")
    }
    /// One line per reboot command the agent ran.
    pub fn marker(&self) -> PathBuf {
        self.dir().join("reboot-calls")
    }
    pub fn boot_id(&self) -> PathBuf {
        self.dir().join("boot_id")
    }
    pub fn log(&self) -> String {
        self.host.log()
    }

    /// How many times the agent called its reboot command.
    pub fn reboot_calls(&self) -> usize {
        std::fs::read_to_string(self.marker())
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Marks an update as waiting for a reboot.
    pub fn update_pending(&self) {
        std::fs::write(self.sentinel(), "update\n").unwrap();
    }

    pub fn start(&mut self) {
        self.host
            .start(&baton_bin(), RUST_LOG)
            .expect("spawn baton agent");
    }

    pub fn kill(&mut self) {
        self.host.kill();
    }

    /// Waits for the agent to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.host.wait_exit(within)
    }

    /// The machine reboots: the process dies, the update is active (the
    /// sentinel is gone), the boot id changes, the agent starts again.
    pub fn reboot(&mut self, boot: u32) {
        self.kill();
        let _ = std::fs::remove_file(self.sentinel());
        std::fs::write(self.boot_id(), format!("boot-{boot}\n")).unwrap();
        self.start();
    }

    /// The persisted phase name ("idle" when there is no state yet).
    pub fn phase(&self) -> String {
        let path = self.state_dir().join("agent.json");
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["phase"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unreadable".to_string()),
            Err(_) => "idle".to_string(),
        }
    }

    /// Waits until the persisted phase is `phase`.
    pub fn wait_phase(&self, phase: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.phase() != phase {
            assert!(
                Instant::now() < deadline,
                "{} never reached {phase} (is {}):\n{}",
                self.name,
                self.phase(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the agent has called its reboot command `n` times.
    pub fn wait_reboot_calls(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.reboot_calls() < n {
            assert!(
                Instant::now() < deadline,
                "{} did not ask to reboot (phase {}):\n{}",
                self.name,
                self.phase(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestCluster {
    /// A failing test shows what the voters said about leadership, so a
    /// flaky election can be told from a bug.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, voter) in self.voters.iter().enumerate() {
            let log = voter.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("leader") || l.contains("election") || l.contains("WARN"))
                .collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- voter {} (leadership, warnings; last 40)\n{}",
                i + 1,
                tail.join("\n")
            );
        }
    }
}
