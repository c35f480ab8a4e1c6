//! The voters: their processes in their namespaces, the run's set-up and its health.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::{TlsFiles, TlsMode, TlsState};
use baton_proto::v1 as pb;
use serde_json::Value;

use super::clients::{all, Clients};
use super::net::{must, Net};
use super::report::Figures;
use super::{RUST_LOG, VOTERS};
use crate::support::baton_bin;

/// One voter: its directory and, while it runs, its process inside its namespace.
pub(super) struct VoterProc {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) ns: String,
    pub(super) child: Option<Child>,
}

impl VoterProc {
    pub(super) fn config(&self) -> PathBuf {
        self.dir.join("baton.toml")
    }

    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// Starts `baton agent` in the voter's namespace (`ip netns exec` execs
    /// it, so the child's pid is the agent's).
    pub(super) fn start(&mut self, bin: &Path) {
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
    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(super) fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the voter runs");
        let pid = i32::try_from(child.id()).expect("a pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal the voter");
    }

    pub(super) fn log_tail(&self, lines: usize) -> String {
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

pub(super) struct Chaos {
    // Dropped in this order: processes first, then the network, then the files.
    pub(super) voters: Vec<VoterProc>,
    pub(super) net: Net,
    pub(super) bin: PathBuf,
    pub(super) clients: Clients,
    pub(super) admin_args: Vec<String>,
    pub(super) figures: Figures,
    pub(super) _dir: tempfile::TempDir,
}

impl Chaos {
    /// Lays out the network, the CA, three voters' configs, and starts them.
    pub(super) fn start() -> Chaos {
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

    pub(super) fn logs(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("--- {} (last lines) ---\n{}", v.name, v.log_tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(super) fn name(&self, i: usize) -> &str {
        &self.voters[i].name
    }

    pub(super) async fn leader(&self, via: &[usize]) -> pb::StatusResponse {
        self.clients
            .leader_status(via, Duration::from_secs(20))
            .await
    }

    /// Voter `i`'s term as it sees it, asked from inside its namespace (it
    /// answers there while its link is down).
    pub(super) async fn term_inside(&self, i: usize) -> Option<u64> {
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
    pub(super) async fn wait_healthy(&self) {
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
}
