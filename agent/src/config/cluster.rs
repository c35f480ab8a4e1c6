//! `[node]`, `[cluster]` and `[lease]`: what the lease cluster needs, and its validation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::fragments::FragmentVoter;
use super::inputs::{ClusterInputs, LeaseInputs, Located, NodeInputs};
use super::validate::{group_name, holder_name, Validator};
use super::ConfigError;
use crate::rules::names::check_host_port;

const DEFAULT_STATE_DIR: &str = "/var/lib/baton";
const DEFAULT_GROUP: &str = "default";
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(300);
const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_MAX_HOLDERS: u32 = 1;
const DEFAULT_WAITER_TTL: Duration = Duration::from_secs(30);

/// `[node]`: identity and local storage of this host.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// Holder name of this host; defaults to the kernel host name.
    pub name: String,
    /// Absolute directory for persistent state (default `/var/lib/baton`).
    pub state_dir: PathBuf,
    /// Lease group this host's agent joins (default `default`).
    pub group: String,
}

/// `[cluster]`: raft membership and transport timings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// Address the gRPC server binds to; required when `node.name` is among
    /// the voters, optional on a client host.
    pub listen: Option<SocketAddr>,
    /// Raft voters; empty means this node only runs as a client.
    pub voters: Vec<VoterSettings>,
    /// Raft heartbeat interval (default 100ms).
    pub heartbeat_interval: Duration,
    /// Minimum raft election timeout; the maximum is 1.5 times this (default 300ms).
    pub election_timeout: Duration,
    /// Log entries between raft snapshots (default 1000).
    pub snapshot_every: u64,
    /// gRPC connect timeout (default 1s).
    pub connect_timeout: Duration,
    /// gRPC request timeout (default 3s).
    pub request_timeout: Duration,
}

/// One `cluster.voters` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterSettings {
    /// Raft node id (>= 1, unique).
    pub id: u64,
    /// Holder name of the voter's host (unique); matched against `node.name`.
    pub name: String,
    /// `host:port` the voter is reachable at (unique); host is an IP or DNS name.
    pub address: String,
}

/// `[lease]`: lease defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseSettings {
    /// Holders a lease admits unless configured otherwise (>= 1, default 1).
    pub default_max_holders: u32,
    /// How long a waiter stays queued without renewing (default 30s).
    pub waiter_ttl: Duration,
    /// Longest a holder may keep a lease; `None` means no limit.
    pub hold_timeout: Option<Duration>,
    /// After a holder releases, how long its slot stays closed before the next
    /// host is granted (kured's reboot delay); `None` means no settle time.
    pub settle_time: Option<Duration>,
}

impl Validator<'_> {
    pub(super) fn node(
        &self,
        inputs: NodeInputs,
        host_name: impl FnOnce() -> Option<String>,
    ) -> Result<NodeSettings, ConfigError> {
        let name = match inputs.name {
            Some(name) => {
                holder_name(&name.value).map_err(|m| self.error(&name, "node.name", m))?;
                name.value
            }
            None => {
                let name = host_name_or_localhost(host_name());
                holder_name(&name).map_err(|message| ConfigError::InvalidDefault {
                    key: "node.name".to_owned(),
                    value: name.clone(),
                    message,
                })?;
                name
            }
        };
        let state_dir = self.path_or(inputs.state_dir, "node.state_dir", DEFAULT_STATE_DIR)?;
        let group = match inputs.group {
            Some(group) => {
                group_name(&group.value).map_err(|m| self.error(&group, "node.group", m))?;
                group.value
            }
            None => DEFAULT_GROUP.to_owned(),
        };
        Ok(NodeSettings {
            name,
            state_dir,
            group,
        })
    }

    pub(super) fn cluster(
        &self,
        inputs: ClusterInputs,
        node_name: &str,
    ) -> Result<ClusterSettings, ConfigError> {
        let listen = inputs
            .listen
            .map(|listen| {
                listen.value.parse::<SocketAddr>().map_err(|e| {
                    self.error(
                        &listen,
                        "cluster.listen",
                        format!("invalid socket address {:?}: {e}", listen.value),
                    )
                })
            })
            .transpose()?;

        let voters = match inputs.voters {
            Some(voters) => self.voters(voters)?,
            None => Vec::new(),
        };
        // A voter serves raft and the lease API; a client host only calls out.
        if listen.is_none() {
            if let Some(index) = voters.iter().position(|v| v.name == node_name) {
                let message = format!(
                    "required because node.name {node_name:?} is a voter (cluster.voters[{index}])"
                );
                return Err(match &inputs.table {
                    Some(table) => self.error(table, "cluster.listen", message),
                    None => ConfigError::Missing {
                        key: "cluster.listen".to_owned(),
                    },
                });
            }
        }

        let heartbeat_interval = self.duration(
            inputs.heartbeat_interval.as_ref(),
            "cluster.heartbeat_interval",
            DEFAULT_HEARTBEAT_INTERVAL,
        )?;
        let election_timeout = self.duration(
            inputs.election_timeout.as_ref(),
            "cluster.election_timeout",
            DEFAULT_ELECTION_TIMEOUT,
        )?;
        // Below this a follower can time out between two heartbeats of a
        // healthy leader and start needless elections.
        if election_timeout <= heartbeat_interval.saturating_mul(2) {
            let message = format!(
                "election_timeout ({election_timeout:?}) must be greater than \
                 2 * heartbeat_interval ({heartbeat_interval:?})"
            );
            // Blame whichever of the two was actually configured.
            return Err(
                match (&inputs.election_timeout, &inputs.heartbeat_interval) {
                    (Some(at), _) => self.error(at, "cluster.election_timeout", message),
                    (None, Some(at)) => self.error(at, "cluster.heartbeat_interval", message),
                    (None, None) => ConfigError::InvalidDefault {
                        key: "cluster.election_timeout".to_owned(),
                        value: format!("{election_timeout:?}"),
                        message,
                    },
                },
            );
        }

        let snapshot_every = match inputs.snapshot_every {
            Some(at) if at.value == 0 => {
                return Err(self.error(&at, "cluster.snapshot_every", "must be at least 1"))
            }
            Some(at) => at.value,
            None => DEFAULT_SNAPSHOT_EVERY,
        };
        let connect_timeout = self.duration(
            inputs.connect_timeout.as_ref(),
            "cluster.connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let request_timeout = self.duration(
            inputs.request_timeout.as_ref(),
            "cluster.request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
        )?;

        Ok(ClusterSettings {
            listen,
            voters,
            heartbeat_interval,
            election_timeout,
            snapshot_every,
            connect_timeout,
            request_timeout,
        })
    }

    pub(super) fn voters(
        &self,
        voters: Located<Vec<Spanned<FragmentVoter>>>,
    ) -> Result<Vec<VoterSettings>, ConfigError> {
        let fragment = voters.fragment;
        let mut out: Vec<VoterSettings> = Vec::with_capacity(voters.value.len());
        // Maps from an identifying value to the index of the first entry using it.
        let mut ids = HashMap::new();
        let mut names = HashMap::new();
        let mut addresses = HashMap::new();

        for (index, entry) in voters.value.into_iter().enumerate() {
            let entry_span = entry.span();
            let entry = entry.into_inner();
            let key = |field: &str| format!("cluster.voters[{index}].{field}");
            let required = |field: &str| {
                self.error_at(fragment, &entry_span, key(field), "required key is missing")
            };
            let id = entry.id.ok_or_else(|| required("id"))?;
            let name = entry.name.ok_or_else(|| required("name"))?;
            let address = entry.address.ok_or_else(|| required("address"))?;
            let invalid = |span: Range<usize>, field: &str, message: String| {
                self.error_at(fragment, &span, key(field), message)
            };

            // Raft reserves no id, but 0 is the conventional "unset" value
            // and would be easy to produce by mistake.
            if *id.get_ref() == 0 {
                return Err(invalid(id.span(), "id", "must be at least 1".to_owned()));
            }
            if let Some(first) = ids.insert(*id.get_ref(), index) {
                let message = format!(
                    "duplicate voter id {} (also used by cluster.voters[{first}])",
                    id.get_ref()
                );
                return Err(invalid(id.span(), "id", message));
            }

            holder_name(name.get_ref()).map_err(|m| invalid(name.span(), "name", m))?;
            if let Some(first) = names.insert(name.get_ref().clone(), index) {
                let message = format!(
                    "duplicate voter name {:?} (also used by cluster.voters[{first}])",
                    name.get_ref()
                );
                return Err(invalid(name.span(), "name", message));
            }

            check_host_port(address.get_ref()).map_err(|m| {
                let message = format!("invalid address {:?}: {m}", address.get_ref());
                invalid(address.span(), "address", message)
            })?;
            // DNS names are case-insensitive, so compare case-folded.
            if let Some(first) = addresses.insert(address.get_ref().to_ascii_lowercase(), index) {
                let message = format!(
                    "duplicate voter address {:?} (also used by cluster.voters[{first}])",
                    address.get_ref()
                );
                return Err(invalid(address.span(), "address", message));
            }

            out.push(VoterSettings {
                id: id.into_inner(),
                name: name.into_inner(),
                address: address.into_inner(),
            });
        }
        Ok(out)
    }

    pub(super) fn lease(&self, inputs: LeaseInputs) -> Result<LeaseSettings, ConfigError> {
        let default_max_holders = match inputs.default_max_holders {
            Some(at) if at.value == 0 => {
                return Err(self.error(&at, "lease.default_max_holders", "must be at least 1"))
            }
            Some(at) => at.value,
            None => DEFAULT_MAX_HOLDERS,
        };
        let waiter_ttl = self.duration(
            inputs.waiter_ttl.as_ref(),
            "lease.waiter_ttl",
            DEFAULT_WAITER_TTL,
        )?;
        let hold_timeout =
            self.optional_duration(inputs.hold_timeout.as_ref(), "lease.hold_timeout")?;
        let settle_time =
            self.optional_duration(inputs.settle_time.as_ref(), "lease.settle_time")?;
        Ok(LeaseSettings {
            default_max_holders,
            waiter_ttl,
            hold_timeout,
            settle_time,
        })
    }
}

/// Default `node.name` from a (possibly missing) raw host name.
pub(super) fn host_name_or_localhost(raw: Option<String>) -> String {
    raw.map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
