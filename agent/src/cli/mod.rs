//! The `baton` command line: clap definitions, exit codes, and the dispatch to each command.

pub mod cert;
pub mod client;
mod commands;
mod daemon;
pub mod demo;
pub mod hosts;
pub mod local_fleet;
pub mod logging;
pub mod output;
mod resident;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cli::client::ClientError;
use crate::config::{ConfigError, DEFAULT_CONFIG_PATH, DEFAULT_VENDOR_DIR};
use crate::rules::access::Role;
use crate::server::voter::NodeError;

/// Exit code when a lease was not granted (yet): EX_TEMPFAIL, "try again".
pub const EXIT_QUEUED: u8 = 75;
/// Exit code for a broken configuration: EX_CONFIG. The systemd unit
/// does not restart on it (`RestartPreventExitStatus=78`).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code when no voter could be reached: EX_UNAVAILABLE.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code when the cluster refused the caller's identity: EX_NOPERM.
pub const EXIT_NOPERM: u8 = 77;

/// baton: coordinated, lease-guarded reboots for Flatcar and Ubuntu fleets.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file; drop-ins are read from baton.d/ beside it.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "BATON_CONFIG")]
    pub config: PathBuf,
    /// Directory of vendor drop-ins, read before the configuration file.
    #[arg(long, global = true, default_value = DEFAULT_VENDOR_DIR, hide = true)]
    pub vendor_dir: PathBuf,
    /// Voter to talk to (HOST:PORT); default: this host's listen address, then the other voters.
    #[arg(long, global = true, env = "BATON_ENDPOINT")]
    pub endpoint: Option<String>,
    /// How long to wait for each answer from the cluster.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// The cluster CA certificate (PEM); default: the local config's [tls] ca.
    #[arg(long, global = true, env = "BATON_CA")]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM); default: the local config's [tls] cert.
    #[arg(long, global = true, env = "BATON_CERT")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM); default: the local config's [tls] key.
    #[arg(long, global = true, env = "BATON_KEY")]
    pub key: Option<PathBuf>,
    /// Talk plaintext, to a cluster running with [tls] insecure = true.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Where log events go: auto (the journal when run by systemd, else stderr), journal, plain, json.
    #[arg(long, global = true, value_enum, default_value_t = crate::cli::logging::LogFormat::Auto, env = "BATON_LOG_FORMAT")]
    pub log_format: crate::cli::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether this invocation runs the daemon (`baton agent`), which logs
    /// differently from the one-shot commands.
    pub fn runs_daemon(&self) -> bool {
        matches!(self.command, Command::Agent)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (until SIGTERM).
    Agent,
    /// Show leader, voters, and per group: holders and queue.
    Status {
        /// Print JSON (stable keys) instead of tables.
        #[arg(long)]
        json: bool,
        /// Answer from the contacted voter's own state, without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// List every host as its agent last reported: phase, pending update, last reboot, version, last seen (admin).
    Hosts {
        /// Print JSON (stable keys) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Take, queue for, or give back a reboot lease.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Stop granting leases, in one group or in all.
    Pause {
        /// Group to pause; all groups when left out.
        group: Option<String>,
        /// Why (shown in status and the journal).
        #[arg(long)]
        reason: String,
    },
    /// Grant leases again, in one group or in all.
    Resume { group: Option<String> },
    /// Take a lease away from a holder (force-release).
    Unlock { group: String, holder: String },
    /// Set how many hosts of a group may hold the lease at once.
    SetMax { group: String, max_holders: u32 },
    /// Hold a host: it does not queue for the lease until unheld (a lease it
    /// holds already is not taken away; `baton unlock` does that).
    Hold {
        host: String,
        /// Why (shown in status, in the host's STATUS= and its refusals).
        #[arg(long)]
        reason: String,
    },
    /// Let a held host queue again.
    Unhold { host: String },
    /// Make a host reboot at its next check, outside its reboot window and
    /// even with no update pending; it still takes the lease and runs its
    /// blockers and hooks.
    RebootNow {
        host: String,
        /// Withdraw a reboot asked for earlier.
        #[arg(long)]
        cancel: bool,
    },
    /// Print lease changes as they happen.
    Watch {
        /// Only this group.
        group: Option<String>,
    },
    /// Change the set of voters.
    #[command(subcommand)]
    Voter(VoterCommand),
    /// Make the cluster CA and certificates, or show one.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Roll a local fleet of real agents on loopback, one lease at a time, and show the timeline.
    Demo {
        /// How many hosts (3 of them are voters; with fewer, one is).
        #[arg(long, default_value_t = 5)]
        hosts: usize,
        /// End with the summary as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Give up if the fleet has not rolled by then.
        #[arg(long = "give-up-after", default_value = "5m", value_parser = parse_duration)]
        give_up_after: Duration,
        /// Leave the fleet's configs, state and agent logs in the temp dir.
        #[arg(long)]
        keep_files: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make a new cluster CA: DIR/ca.crt and DIR/ca.key (0600). Keep ca.key offline.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The CA's name (common name).
        #[arg(long, default_value = "baton cluster CA")]
        name: String,
        #[arg(long, default_value_t = cert::CA_DAYS)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue NAME's certificate, signed by DIR/ca.crt: DIR/NAME.crt and DIR/NAME.key (0600).
    Issue {
        /// The holder: the host's node.name (voters: their name in [cluster] voters).
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        dir: PathBuf,
        /// An IP or DNS name peers dial this host at (voters: each address they are listed under).
        #[arg(long = "address")]
        addresses: Vec<String>,
        #[arg(long, default_value_t = cert::CERT_DAYS)]
        days: u32,
        /// Replace existing files (rotation).
        #[arg(long)]
        force: bool,
    },
    /// Print a certificate's name, role, addresses and expiry.
    Show { file: PathBuf },
}

/// `--role`: voter, host, admin or monitor (reads metrics and status only).
fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text)
        .ok_or_else(|| format!("unknown role {text:?}; expected voter, host, admin or monitor"))
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Take a slot; prints the fencing token. Exits 75 when queued instead.
    Acquire(AcquireArgs),
    /// Give the slot back (or leave the queue). Idempotent.
    Release {
        group: String,
        #[arg(long)]
        holder: String,
        /// Release only if the grant carries this token.
        #[arg(long)]
        token: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    pub group: String,
    /// Who takes the lease (usually the host name).
    #[arg(long)]
    pub holder: String,
    /// Stay queued (refreshing the place) until granted.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 75), and leave the queue.
    #[arg(long = "timeout", requires = "wait", value_parser = parse_duration)]
    pub wait_timeout: Option<Duration>,
    /// Machine id recorded with the grant (default: /etc/machine-id).
    #[arg(long)]
    pub machine_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum VoterCommand {
    /// Add a voter (caught up as a learner first). Never reuse an id.
    Add {
        id: u64,
        name: String,
        address: String,
    },
    /// Remove a voter from the cluster.
    Remove { id: u64 },
}

/// Parses "30s", "2h", "1h30m", "500ms" for clap, by the one duration rule.
fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::rules::durations::parse_duration(text).map_err(|e| e.to_string())
}

/// A failed command: the message chain to print and the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("demo: {0}")]
    Demo(#[from] crate::cli::demo::DemoError),
    #[error("host agent: {0}")]
    Agent(#[from] crate::host::agent::AgentError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("cert: {0}")]
    Cert(#[from] cert::CertError),
    #[error("TLS: {0}")]
    Identity(String),
    #[error("metrics endpoint ([metrics] listen): {0}")]
    Metrics(crate::transport::TransportError),
    #[error("FleetLock endpoint ([fleetlock] listen): {0}")]
    FleetLock(crate::transport::TransportError),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) | CliError::Tls(_) | CliError::Identity(_) => {
                ExitCode::from(EXIT_CONFIG)
            }
            CliError::Node(
                NodeError::NotAVoter { .. }
                | NodeError::WipedState { .. }
                | NodeError::StoreLost { .. },
            ) => ExitCode::from(EXIT_CONFIG),
            CliError::Client(ClientError::Unreachable { .. }) => ExitCode::from(EXIT_UNAVAILABLE),
            CliError::Client(ClientError::Denied { .. }) => ExitCode::from(EXIT_NOPERM),
            CliError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs one CLI invocation; returns the exit code to use on success paths
/// that are not plain success (e.g. queued).
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Agent => daemon::run_agent(&cli.config, &cli.vendor_dir).await,
        Command::Demo {
            hosts,
            json,
            give_up_after,
            keep_files,
        } => {
            crate::cli::demo::run(crate::cli::demo::DemoOptions {
                hosts: *hosts,
                keep_files: *keep_files,
                json: *json,
                timeout: *give_up_after,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cert(command) => run_cert(command),
        _ => commands::run_client_command(&cli).await,
    }
}

/// `baton cert ...`: local files only, no cluster.
fn run_cert(command: &CertCommand) -> Result<ExitCode, CliError> {
    match command {
        CertCommand::Init {
            dir,
            name,
            days,
            force,
        } => {
            let written = cert::init(dir, name, *days, *force)?;
            println!(
                "wrote {} and {} (keep the key offline)",
                written.cert.display(),
                written.key.display()
            );
        }
        CertCommand::Issue {
            name,
            role,
            dir,
            addresses,
            days,
            force,
        } => {
            if *role == Role::Voter && addresses.is_empty() {
                eprintln!("warning: a voter's certificate needs --address for each address peers dial it at");
            }
            let written = cert::issue(dir, name, *role, addresses, *days, *force)?;
            println!(
                "wrote {} and {}",
                written.cert.display(),
                written.key.display()
            );
        }
        CertCommand::Show { file } => print!("{}", cert::show(file)?),
    }
    Ok(ExitCode::SUCCESS)
}
