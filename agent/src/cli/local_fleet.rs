//! A fleet of real `baton agent` processes on loopback, for the demo, benchmark and tests.
//!
//! A [`FleetLayout`] knows the fleet's directory and its voters and writes
//! each host's configuration; a [`LocalHost`] is one host's directory and
//! process (config `baton.toml`, state in `state/`, log in `agent.log`),
//! started, killed, stopped or restarted as a machine would be.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::cert::{self, CertError};
use crate::config::TlsFiles;
use crate::rules::access::Role;

/// A loopback port that was free a moment ago. Taken below the kernel's
/// ephemeral range (32768 and up), so that no outgoing connection can grab
/// it between now and the agent's bind; spread by process id, so that
/// fleets of processes running at once do not collide.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const FIRST: u16 = 10_000;
    const SPAN: u16 = 20_000;
    let base = (std::process::id() % 200) as u16 * 100;
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = FIRST + (base + offset) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "no free port on 127.0.0.1 between {FIRST} and {}",
            FIRST + SPAN
        ),
    ))
}

/// One voter as every host's config lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetVoter {
    pub id: u64,
    pub name: String,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

/// Where a fleet lives and who its voters are; writes each host's config
/// and, in a TLS fleet, issues each host's certificate from the fleet's CA.
#[derive(Debug, Clone)]
pub struct FleetLayout {
    root: PathBuf,
    voters: Vec<FleetVoter>,
    /// The certificate directory (CA and every host's pair); None: plaintext.
    tls: Option<PathBuf>,
}

/// Why a fleet could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// The files a client (the CLI, a test) presents to the fleet.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientIdentity {
    /// The CLI's flags for this identity.
    pub fn cli_args(&self) -> Vec<String> {
        let arg = |flag: &str, path: &Path| [flag.to_string(), path.display().to_string()];
        [
            arg("--ca", &self.ca),
            arg("--cert", &self.cert),
            arg("--key", &self.key),
        ]
        .concat()
    }

    /// The same files as `[tls]` settings.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// Days the certificates of a local fleet are valid.
const FLEET_CERT_DAYS: u32 = 30;

/// What goes into one host's config besides what the layout writes.
#[derive(Debug, Clone, Default)]
pub struct HostConfig<'a> {
    /// Extra `[node]` keys, e.g. `group = "workers"\n`.
    pub node: &'a str,
    /// Extra `[cluster]` keys, e.g. `snapshot_every = 20\n`.
    pub cluster: &'a str,
    /// Further tables (`[updates]`, `[reboot]`, ...), appended as they are.
    pub sections: &'a str,
}

impl FleetLayout {
    /// A fleet in `root` whose voters are `names`, each on a free loopback
    /// port; with `tls`, a throw-away CA in `root/tls` signs every host.
    pub fn new(root: &Path, names: &[String], tls: bool) -> Result<FleetLayout, FleetError> {
        let mut layout = FleetLayout {
            root: root.to_path_buf(),
            voters: Vec::new(),
            tls: None,
        };
        if tls {
            let dir = root.join("tls");
            cert::init(&dir, "local fleet CA", FLEET_CERT_DAYS, true)?;
            layout.tls = Some(dir);
        }
        for name in names {
            layout.add_voter(name)?;
        }
        Ok(layout)
    }

    /// Issues a certificate for a client of the fleet (the CLI, a test);
    /// None in a plaintext fleet.
    pub fn client_identity(
        &self,
        name: &str,
        role: Role,
    ) -> Result<Option<ClientIdentity>, FleetError> {
        let Some(dir) = &self.tls else {
            return Ok(None);
        };
        let written = cert::issue(dir, name, role, &[], FLEET_CERT_DAYS, true)?;
        Ok(Some(ClientIdentity {
            ca: dir.join("ca.crt"),
            cert: written.cert,
            key: written.key,
        }))
    }

    /// The CLI flags of an admin of this fleet (`--insecure` without TLS).
    pub fn admin_args(&self) -> Result<Vec<String>, FleetError> {
        Ok(match self.client_identity("fleet-admin", Role::Admin)? {
            Some(identity) => identity.cli_args(),
            None => vec!["--insecure".to_string()],
        })
    }

    /// Adds a voter on a free port, with the next id. Hosts written from
    /// now on list it; configs written before stay as they are (as on a
    /// real fleet, until an operator runs `baton voter add`).
    pub fn add_voter(&mut self, name: &str) -> std::io::Result<FleetVoter> {
        let voter = FleetVoter {
            id: self.voters.len() as u64 + 1,
            name: name.to_string(),
            address: format!("127.0.0.1:{}", free_port()?),
        };
        self.voters.push(voter.clone());
        Ok(voter)
    }

    /// The fleet's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The voters, in id order.
    pub fn voters(&self) -> &[FleetVoter] {
        &self.voters
    }

    /// Every voter address, comma-separated (for `--endpoint`).
    pub fn endpoints(&self) -> String {
        let addresses: Vec<&str> = self.voters.iter().map(|v| v.address.as_str()).collect();
        addresses.join(",")
    }

    /// Writes host `name`'s directory and config: it listens when it is one
    /// of the voters, every host lists all voters, and in a TLS fleet it
    /// gets its certificate (role voter or host).
    pub fn write_host(&self, name: &str, config: &HostConfig<'_>) -> Result<LocalHost, FleetError> {
        let host = LocalHost {
            name: name.to_string(),
            dir: self.root.join(name),
            process: None,
        };
        std::fs::create_dir_all(&host.dir)?;
        let voter = self.voters.iter().find(|v| v.name == name);
        let listen = voter
            .map(|v| format!("listen = \"{}\"\n", v.address))
            .unwrap_or_default();
        let tls = match &self.tls {
            Some(dir) => {
                let role = if voter.is_some() {
                    Role::Voter
                } else {
                    Role::Host
                };
                let written = cert::issue(
                    dir,
                    name,
                    role,
                    &["127.0.0.1".into()],
                    FLEET_CERT_DAYS,
                    true,
                )?;
                format!(
                    "\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                    dir.join("ca.crt").display(),
                    written.cert.display(),
                    written.key.display()
                )
            }
            None => "\n[tls]\ninsecure = true\n".to_string(),
        };
        let voters: Vec<String> = self
            .voters
            .iter()
            .map(|v| {
                format!(
                    "  {{ id = {}, name = \"{}\", address = \"{}\" }},",
                    v.id, v.name, v.address
                )
            })
            .collect();
        let text = format!(
            "[node]\nname = \"{name}\"\nstate_dir = \"{state}\"\n{node}\n\
             [cluster]\n{listen}voters = [\n{voters}\n]\n{cluster}\n{sections}{tls}",
            state = host.state_dir().display(),
            node = config.node,
            voters = voters.join("\n"),
            cluster = config.cluster,
            sections = config.sections,
        );
        std::fs::write(host.config(), text)?;
        Ok(host)
    }
}

/// One host of a local fleet: its directory and, while it runs, its process.
/// Dropping it kills the process.
#[derive(Debug)]
pub struct LocalHost {
    pub name: String,
    pub dir: PathBuf,
    process: Option<Child>,
}

impl LocalHost {
    pub fn config(&self) -> PathBuf {
        self.dir.join("baton.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The agent's stderr, appended to across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// What the agent logged so far (empty before its first start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `binary agent` on this host's config with `RUST_LOG=rust_log`
    /// and no vendor drop-ins.
    pub fn start(&mut self, binary: &Path, rust_log: &str) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(binary)
            .args(["agent", "--config"])
            .arg(self.config())
            .arg("--vendor-dir")
            .arg(self.dir.join("no-vendor"))
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.process = Some(child);
        Ok(())
    }

    /// Whether its process was started and not killed or reaped since.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// kill -9: power off, nothing flushed beyond what was fsynced.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as systemd stops the unit, then waits up to `within` for the
    /// exit (and kills it after that). None when it was not running or did
    /// not stop in time.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.process.as_ref()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(within)
    }

    /// Waits up to `within` for the process to exit by itself; kills it
    /// when it does not. None when it was not running or did not exit.
    /// The exit status if the process has ended by itself; never waits or kills.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.process.as_mut()?.try_wait().ok()??;
        self.process = None;
        Some(status)
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.process.take()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalHost {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_list_every_voter_and_only_voters_listen() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["v1".to_string(), "v2".to_string()];
        let layout = FleetLayout::new(dir.path(), &names, true).unwrap();
        let voter = layout.write_host("v1", &HostConfig::default()).unwrap();
        let client = layout
            .write_host(
                "c1",
                &HostConfig {
                    node: "group = \"workers\"\n",
                    sections: "[updates]\nsource = \"none\"\n",
                    ..HostConfig::default()
                },
            )
            .unwrap();
        let settings = crate::config::Settings::load(&voter.config(), &dir.path().join("none"))
            .expect("a voter's config loads");
        assert_eq!(settings.cluster.voters.len(), 2);
        assert_eq!(
            settings.cluster.listen.map(|a| a.to_string()),
            Some(layout.voters()[0].address.clone())
        );
        let settings = crate::config::Settings::load(&client.config(), &dir.path().join("none"))
            .expect("a client's config loads");
        assert_eq!(settings.cluster.listen, None);
        assert_eq!(settings.node.group, "workers");
        assert_eq!(settings.node.state_dir, client.state_dir());
        assert_ne!(layout.voters()[0].address, layout.voters()[1].address);
        assert_eq!(layout.endpoints().split(',').count(), 2);
        assert!(matches!(
            settings.tls,
            crate::config::TlsSettings::Mutual(_)
        ));
        crate::transport::tls::TlsState::load(match &settings.tls {
            crate::config::TlsSettings::Mutual(files) => files,
            crate::config::TlsSettings::Insecure => unreachable!(),
        })
        .expect("the host's certificate loads");
    }
}
