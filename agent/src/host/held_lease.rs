//! Proof of holding the reboot lease: made only from a grant; every drain and reboot needs it.

use std::fmt;

use crate::log_fields;

/// A reboot lease this host holds right now, as granted by the cluster.
///
/// There is deliberately no public constructor and no `Deserialize`: the
/// only way to get one is [`HeldLease::from_grant`], which the lease client
/// calls with a grant it just received (or re-verified with a linearizable
/// read). Drain hooks, Kubernetes eviction and the reboot call all take a
/// `&HeldLease`, so "drain or reboot without the lease" does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    group: String,
    holder: String,
    token: u64,
}

impl HeldLease {
    /// Made from a grant the cluster just gave (or confirmed) to `holder`.
    pub(crate) fn from_grant(group: &str, holder: &str, token: u64) -> Self {
        Self {
            group: group.to_string(),
            holder: holder.to_string(),
            token,
        }
    }

    /// The lease group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Who holds it (this host's name).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The fencing token of the grant.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The environment of hooks and the reboot command run while holding
    /// it in `phase`: BATON_GROUP, BATON_HOLDER, BATON_TOKEN, BATON_PHASE.
    pub fn env(&self, phase: &str) -> Vec<(&'static str, String)> {
        vec![
            (log_fields::GROUP, self.group.clone()),
            (log_fields::HOLDER, self.holder.clone()),
            (log_fields::TOKEN, self.token.to_string()),
            (log_fields::PHASE, phase.to_string()),
        ]
    }
}

impl fmt::Display for HeldLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}, token {}", self.group, self.token)
    }
}
