//! `[fleetlock]`: the FleetLock endpoint of a voter (off by default), and its validation.

use std::net::SocketAddr;
use std::time::Duration;

use super::inputs::FleetLockInputs;
use super::validate::{group_name, Validator};
use super::ConfigError;
use crate::rules::networks::Cidr;

/// How long a voter keeps a polling Zincati's place in the queue after its
/// last `pre-reboot` when `poll_ttl` is not set: Zincati asks every 5
/// minutes (plus up to 10% jitter), so two missed polls and then some.
pub const DEFAULT_POLL_TTL: Duration = Duration::from_secs(15 * 60);

/// `[fleetlock]`: present when `listen` is set (on a voter only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetLockSettings {
    /// `listen`: `ADDR:PORT` of `POST /v1/pre-reboot` and `/v1/steady-state`.
    pub listen: SocketAddr,
    /// `groups`: the lease groups FleetLock clients may use (at least one).
    pub groups: Vec<String>,
    /// `allow_networks`: client networks besides loopback (CIDRs).
    pub allow_networks: Vec<Cidr>,
    /// `poll_ttl`: a client queued by `pre-reboot` keeps its place this long
    /// after its last poll (then `lease.waiter_ttl` more, as any waiter).
    pub poll_ttl: Duration,
}

impl Validator<'_> {
    /// `None` (the default: no endpoint) when `[fleetlock] listen` is not set.
    /// `is_voter`: whether this host is among `[cluster] voters`.
    pub(super) fn fleetlock(
        &self,
        inputs: FleetLockInputs,
        is_voter: bool,
    ) -> Result<Option<FleetLockSettings>, ConfigError> {
        let Some(at) = inputs.listen else {
            return Ok(None);
        };
        let listen = at.value.parse::<SocketAddr>().map_err(|e| {
            self.error(
                &at,
                "fleetlock.listen",
                format!(
                    "invalid socket address {:?}: {e}; write ADDR:PORT, e.g. \"0.0.0.0:7430\"",
                    at.value
                ),
            )
        })?;
        if !is_voter {
            return Err(self.error(
                &at,
                "fleetlock.listen",
                "only a voter serves FleetLock: this host is not in [cluster] voters",
            ));
        }
        let Some(groups_at) = inputs.groups else {
            return Err(self.error(
                &at,
                "fleetlock.groups",
                "required with fleetlock.listen: the lease groups Zincati may use, \
                 e.g. groups = [\"default\"] (Zincati's default group)",
            ));
        };
        if groups_at.value.is_empty() {
            return Err(self.error(
                &groups_at,
                "fleetlock.groups",
                "must name at least one lease group, e.g. [\"default\"]",
            ));
        }
        let mut groups = Vec::with_capacity(groups_at.value.len());
        for (i, group) in groups_at.value.iter().enumerate() {
            group_name(group.get_ref()).map_err(|message| {
                self.error_at(
                    groups_at.fragment,
                    &group.span(),
                    format!("fleetlock.groups[{i}]"),
                    message,
                )
            })?;
            groups.push(group.get_ref().clone());
        }
        let mut allow_networks = Vec::new();
        if let Some(networks) = inputs.allow_networks {
            for (i, network) in networks.value.iter().enumerate() {
                let cidr = Cidr::parse(network.get_ref()).map_err(|message| {
                    self.error_at(
                        networks.fragment,
                        &network.span(),
                        format!("fleetlock.allow_networks[{i}]"),
                        message,
                    )
                })?;
                allow_networks.push(cidr);
            }
        }
        let poll_ttl = self.duration(
            inputs.poll_ttl.as_ref(),
            "fleetlock.poll_ttl",
            DEFAULT_POLL_TTL,
        )?;
        Ok(Some(FleetLockSettings {
            listen,
            groups,
            allow_networks,
            poll_ttl,
        }))
    }
}
