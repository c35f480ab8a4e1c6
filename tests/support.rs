//! Test support: real `baton agent` processes on 127.0.0.1, their configs, and the CLI.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use baton_proto::v1::lease_client::LeaseClient;
use serde_json::Value;
use tonic::transport::Channel;

/// The `baton` binary cargo built for these tests.
pub fn baton_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_baton"))
}

/// A port that was free a moment ago. Taken below the kernel's ephemeral
/// range (32768 and up), so that no outgoing connection of another test can
/// grab it between now and the agent's bind; spread by process id so that
/// test binaries running at once do not collide.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 200) as u16 * 100;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 20_000;
        let port = 10_000 + (base - 10_000 + offset) % 20_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A cluster of voters, each a real `baton agent` process with its own
/// config file and state directory under one temp dir.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
    pub procs: Vec<Option<Child>>,
    /// Extra TOML appended to every voter's config (e.g. snapshot settings).
    pub extra: String,
}

impl TestCluster {
    /// Writes configs for `n` voters and starts them all.
    pub fn start(n: usize, extra: &str) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut cluster = TestCluster {
            dir,
            ports,
            procs: (0..n).map(|_| None).collect(),
            extra: extra.to_string(),
        };
        for i in 0..n {
            cluster.write_config(i);
        }
        for i in 0..n {
            cluster.start_voter(i);
        }
        cluster
    }

    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("cp-{}", i + 1))
            .join("baton.toml")
    }

    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("cp-{}", i + 1)).join("state")
    }

    pub fn address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// All voter addresses, comma-separated, for `--endpoint`.
    pub fn endpoints(&self) -> String {
        (0..self.ports.len())
            .map(|i| self.address(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn write_config(&self, i: usize) {
        let voters: Vec<String> = (0..self.ports.len())
            .map(|j| {
                format!(
                    "  {{ id = {}, name = \"cp-{}\", address = \"{}\" }},",
                    j + 1,
                    j + 1,
                    self.address(j)
                )
            })
            .collect();
        let config = format!(
            "[node]\nname = \"cp-{n}\"\nstate_dir = \"{state}\"\n\n[cluster]\nlisten = \"{listen}\"\nvoters = [\n{voters}\n]\n{extra}\n\n# These voters only serve the lease.\n[updates]\nsource = \"none\"\n",
            n = i + 1,
            state = self.state_dir(i).display(),
            listen = self.address(i),
            voters = voters.join("\n"),
            extra = self.extra,
        );
        let path = self.config_path(i);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, config).unwrap();
    }

    /// Adds a voter process that is not in the cluster yet: its own config
    /// lists all voters including itself; the others' configs stay as they are.
    pub fn start_new_voter(&mut self) -> usize {
        self.ports.push(free_port());
        self.procs.push(None);
        let i = self.ports.len() - 1;
        self.write_config(i);
        self.start_voter(i);
        i
    }

    pub fn start_voter(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("cp-{}.log", i + 1)))
            .expect("log file");
        let child = Command::new(baton_bin())
            .args(["agent", "--config"])
            .arg(self.config_path(i))
            .arg("--vendor-dir")
            .arg(self.dir.path().join("no-vendor"))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn baton agent");
        self.procs[i] = Some(child);
    }

    /// Waits for voter `i`'s process to exit by itself.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.procs[i].take()?;
        wait_with_timeout(&mut child, within)
    }

    /// kill -9: no clean shutdown, no flush beyond what fsync already did.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: the clean shutdown path.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.procs[i].take().expect("voter running");
        let pid = nix_pid(&child);
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        wait_with_timeout(&mut child, Duration::from_secs(10)).expect("voter stops after SIGTERM")
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("cp-{}.log", i + 1)))
            .unwrap_or_default()
    }

    /// Runs the CLI against the given endpoints.
    pub fn cli_at(&self, endpoints: &str, args: &[&str]) -> Output {
        Command::new(baton_bin())
            .args(["--endpoint", endpoints])
            .args(args)
            .output()
            .expect("run baton cli")
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
            for i in 0..self.ports.len() {
                if self.procs[i].is_none() {
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

    pub fn all_logs(&self) -> String {
        (0..self.ports.len())
            .map(|i| format!("--- cp-{} ---\n{}", i + 1, self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A gRPC Lease client to voter `i`.
    pub async fn lease_client(&self, i: usize) -> LeaseClient<Channel> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match LeaseClient::connect(format!("http://{}", self.address(i))).await {
                Ok(client) => return client,
                Err(e) if Instant::now() > deadline => panic!("connect to voter {i}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

fn nix_pid(child: &Child) -> u32 {
    child.id()
}

/// Waits for `child` to exit, up to `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
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
    pub dir: PathBuf,
    pub process: Option<Child>,
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
        let dir = cluster.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let host = AgentHost {
            name: name.to_string(),
            dir,
            process: None,
        };
        let voters: Vec<String> = (0..cluster.ports.len())
            .map(|j| {
                format!(
                    "  {{ id = {}, name = \"cp-{}\", address = \"{}\" }},",
                    j + 1,
                    j + 1,
                    cluster.address(j)
                )
            })
            .collect();
        let sections = match sections {
            Some(sections) => sections.to_string(),
            None => format!(
                "[updates]\nsource = \"sentinel\"\nsentinel_file = \"{sentinel}\"\npoll_interval = \"100ms\"\n\n\
                 [reboot]\nmethod = \"command\"\ncommand = [\"sh\", \"-c\", \"echo $$ >> {marker}\"]\n",
                sentinel = host.sentinel().display(),
                marker = host.marker().display(),
            ),
        };
        let config = format!(
            "[node]\nname = \"{name}\"\nstate_dir = \"{state}\"\ngroup = \"workers\"\n\n[cluster]\nvoters = [\n{voters}\n]\n\n\
             {sections}boot_id_path = \"{boot_id}\"\nblocker_retry = \"1s\"\n{extra}\n",
            state = host.state_dir().display(),
            voters = voters.join("\n"),
            boot_id = host.boot_id().display(),
        );
        std::fs::write(host.config(), config).unwrap();
        std::fs::write(host.boot_id(), "boot-0\n").unwrap();
        host
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("baton.toml")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn sentinel(&self) -> PathBuf {
        self.dir.join("reboot-required")
    }
    /// One line per reboot command the agent ran.
    pub fn marker(&self) -> PathBuf {
        self.dir.join("reboot-calls")
    }
    pub fn boot_id(&self) -> PathBuf {
        self.dir.join("boot_id")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let child = Command::new(baton_bin())
            .args(["agent", "--config"])
            .arg(self.config())
            .arg("--vendor-dir")
            .arg(self.dir.join("no-vendor"))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn baton agent");
        self.process = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

impl Drop for AgentHost {
    fn drop(&mut self) {
        self.kill();
    }
}
