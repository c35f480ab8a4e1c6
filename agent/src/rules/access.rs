//! Who may call what: roles, caller identities, and the one rule table every RPC is checked by.
//!
//! A certificate names its holder and its role (`voter`, `host`, `admin`,
//! `monitor`).
//! The server looks up every call here, by its gRPC path, before anything
//! else runs; calls that name a holder are checked once more against the
//! holder they name. An insecure cluster (`[tls] insecure = true`) has no
//! identities: every call is allowed, as the operator chose.

use std::fmt;

/// What a certificate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A raft voter: speaks raft (while in the voter list), and acts as a host for itself.
    Voter,
    /// A host: takes and gives back its own reboot lease.
    Host,
    /// An operator: the Admin service, and leases for anyone.
    Admin,
    /// A scraper (Prometheus): reads metrics and status, takes no lease.
    Monitor,
}

impl Role {
    /// Every role, as `baton cert issue --role` lists them.
    pub const ALL: [Role; 4] = [Role::Voter, Role::Host, Role::Admin, Role::Monitor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Host => "host",
            Role::Admin => "admin",
            Role::Monitor => "monitor",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate's holder and role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A client that presented a certificate of the cluster CA.
    Certified(Identity),
    /// Nobody was checked: the cluster runs with `[tls] insecure = true`.
    Insecure,
}

impl Caller {
    /// The caller's name, for logs (`BATON_CALLER`).
    pub fn name(&self) -> &str {
        match self {
            Caller::Certified(identity) => &identity.name,
            Caller::Insecure => "insecure",
        }
    }

    /// The caller's role, for logs (`BATON_ROLE`).
    pub fn role(&self) -> &str {
        match self {
            Caller::Certified(identity) => identity.role.as_str(),
            Caller::Insecure => "insecure",
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Certified(identity) => write!(f, "{identity}"),
            Caller::Insecure => f.write_str("an unauthenticated caller (insecure cluster)"),
        }
    }
}

/// Every RPC baton serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    RaftAppendEntries,
    RaftVote,
    RaftInstallSnapshot,
    RaftPreVote,
    Acquire,
    Release,
    Wait,
    KeepAlive,
    Status,
    Watch,
    Pause,
    Resume,
    ForceRelease,
    SetMax,
    AddVoter,
    RemoveVoter,
    // The fleet view (`rules::fleet`).
    FleetReport,
    FleetForward,
    FleetHosts,
    // Per-host control (the Control service).
    Hold,
    Unhold,
    RebootNow,
    HostControl,
}

/// Who may make an RPC at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// Voters in the current voter list.
    Voters,
    /// Any certificate of the cluster.
    Anyone,
    /// Hosts and voters (as themselves, see [`permit_holder`]) and admins.
    LeaseTakers,
    /// Admins only.
    Admins,
    /// Admins only, to read what the fleet reports.
    FleetReaders,
}

impl Allowed {
    fn words(self) -> &'static str {
        match self {
            Allowed::Voters => "only voter certificates of current voters may call it",
            Allowed::Anyone => "any certificate of the cluster may",
            Allowed::LeaseTakers => {
                "voter and host certificates act for themselves, admin certificates for anyone \
                 (monitor certificates take no lease)"
            }
            Allowed::Admins => "only admin certificates may change the cluster",
            Allowed::FleetReaders => "only admin certificates may list the fleet",
        }
    }
}

impl Rpc {
    /// Every RPC, for tests that go through all of them.
    pub const ALL: [Rpc; 23] = [
        Rpc::RaftAppendEntries,
        Rpc::RaftVote,
        Rpc::RaftInstallSnapshot,
        Rpc::RaftPreVote,
        Rpc::Acquire,
        Rpc::Release,
        Rpc::Wait,
        Rpc::KeepAlive,
        Rpc::Status,
        Rpc::Watch,
        Rpc::Pause,
        Rpc::Resume,
        Rpc::ForceRelease,
        Rpc::SetMax,
        Rpc::AddVoter,
        Rpc::RemoveVoter,
        Rpc::FleetReport,
        Rpc::FleetForward,
        Rpc::FleetHosts,
        Rpc::Hold,
        Rpc::Unhold,
        Rpc::RebootNow,
        Rpc::HostControl,
    ];

    /// The gRPC path of this RPC (`/baton.v1.Lease/Acquire`).
    pub fn path(self) -> &'static str {
        match self {
            Rpc::RaftAppendEntries => "/baton.v1.Raft/AppendEntries",
            Rpc::RaftVote => "/baton.v1.Raft/Vote",
            Rpc::RaftInstallSnapshot => "/baton.v1.Raft/InstallSnapshot",
            Rpc::RaftPreVote => "/baton.v1.Raft/PreVote",
            Rpc::Acquire => "/baton.v1.Lease/Acquire",
            Rpc::Release => "/baton.v1.Lease/Release",
            Rpc::Wait => "/baton.v1.Lease/Wait",
            Rpc::KeepAlive => "/baton.v1.Lease/KeepAlive",
            Rpc::Status => "/baton.v1.Lease/Status",
            Rpc::Watch => "/baton.v1.Lease/Watch",
            Rpc::Pause => "/baton.v1.Admin/Pause",
            Rpc::Resume => "/baton.v1.Admin/Resume",
            Rpc::ForceRelease => "/baton.v1.Admin/ForceRelease",
            Rpc::SetMax => "/baton.v1.Admin/SetMax",
            Rpc::AddVoter => "/baton.v1.Admin/AddVoter",
            Rpc::RemoveVoter => "/baton.v1.Admin/RemoveVoter",
            Rpc::FleetReport => "/baton.v1.Fleet/Report",
            Rpc::FleetForward => "/baton.v1.Fleet/Forward",
            Rpc::FleetHosts => "/baton.v1.Fleet/Hosts",
            Rpc::Hold => "/baton.v1.Control/Hold",
            Rpc::Unhold => "/baton.v1.Control/Unhold",
            Rpc::RebootNow => "/baton.v1.Control/RebootNow",
            Rpc::HostControl => "/baton.v1.Control/HostControl",
        }
    }

    /// The RPC at a gRPC path; None for a path baton does not serve.
    pub fn from_path(path: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.path() == path)
    }

    /// `Lease.Acquire`, for messages.
    pub fn name(self) -> String {
        self.path()
            .trim_start_matches("/baton.v1.")
            .replacen('/', ".", 1)
    }

    fn allowed(self) -> Allowed {
        match self {
            Rpc::RaftAppendEntries
            | Rpc::RaftVote
            | Rpc::RaftInstallSnapshot
            | Rpc::RaftPreVote
            | Rpc::KeepAlive => Allowed::Voters,
            Rpc::Status | Rpc::Watch => Allowed::Anyone,
            Rpc::Acquire | Rpc::Release | Rpc::Wait => Allowed::LeaseTakers,
            Rpc::Pause
            | Rpc::Resume
            | Rpc::ForceRelease
            | Rpc::SetMax
            | Rpc::AddVoter
            | Rpc::RemoveVoter => Allowed::Admins,
            // A host reports only as itself (`permit_holder`); voters pass
            // the reports on; admins read them.
            Rpc::FleetReport => Allowed::LeaseTakers,
            Rpc::FleetForward => Allowed::Voters,
            Rpc::FleetHosts => Allowed::FleetReaders,
            // Per-host control: admins change it, any host may read it.
            Rpc::Hold | Rpc::Unhold | Rpc::RebootNow => Allowed::Admins,
            Rpc::HostControl => Allowed::Anyone,
        }
    }
}

/// A refused call, in the words the caller sees (`PermissionDenied`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{caller} may not call {rpc}: {why}")]
pub struct Denied {
    pub caller: String,
    pub rpc: String,
    pub why: String,
}

fn denied(caller: &Caller, rpc: Rpc, why: impl Into<String>) -> Denied {
    Denied {
        caller: caller.to_string(),
        rpc: rpc.name(),
        why: why.into(),
    }
}

/// May `caller` make `rpc` at all? `voters`: the names in the current voter list.
pub fn permit(caller: &Caller, rpc: Rpc, voters: &[String]) -> Result<(), Denied> {
    let Caller::Certified(identity) = caller else {
        return Ok(());
    };
    let allowed = rpc.allowed();
    let ok = match allowed {
        Allowed::Voters => identity.role == Role::Voter && voters.contains(&identity.name),
        Allowed::Anyone => true,
        Allowed::LeaseTakers => identity.role != Role::Monitor,
        Allowed::Admins | Allowed::FleetReaders => identity.role == Role::Admin,
    };
    if ok {
        Ok(())
    } else {
        Err(denied(caller, rpc, allowed.words()))
    }
}

/// May `caller` take or give back the lease of `holder`? Voters and hosts
/// act only as themselves (their certificate's name); admins for anyone.
pub fn permit_holder(caller: &Caller, rpc: Rpc, holder: &str) -> Result<(), Denied> {
    match caller {
        Caller::Insecure => Ok(()),
        Caller::Certified(identity) if identity.role == Role::Admin => Ok(()),
        Caller::Certified(identity) if identity.name == holder => Ok(()),
        Caller::Certified(identity) => Err(denied(
            caller,
            rpc,
            format!(
                "a {} certificate acts only as itself ({:?}), not as {holder:?}",
                identity.role, identity.name
            ),
        )),
    }
}

// HTTP endpoints (`[metrics]`, `[fleetlock]`): the same rule table idea as
// the RPCs above, for callers an HTTP listener knows.

/// Every HTTP endpoint baton serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpEndpoint {
    /// `GET /metrics` on `[metrics] listen`.
    Metrics,
    /// `POST /v1/pre-reboot` on `[fleetlock] listen`: take or queue for a slot.
    FleetLockPreReboot,
    /// `POST /v1/steady-state` on `[fleetlock] listen`: give the slot back.
    FleetLockSteadyState,
}

impl HttpEndpoint {
    /// Every HTTP endpoint, for tests that go through all of them.
    #[cfg(test)]
    pub const ALL: [HttpEndpoint; 3] = [
        HttpEndpoint::Metrics,
        HttpEndpoint::FleetLockPreReboot,
        HttpEndpoint::FleetLockSteadyState,
    ];

    /// The path it is served at.
    pub fn path(self) -> &'static str {
        match self {
            HttpEndpoint::Metrics => "/metrics",
            HttpEndpoint::FleetLockPreReboot => "/v1/pre-reboot",
            HttpEndpoint::FleetLockSteadyState => "/v1/steady-state",
        }
    }

    /// The endpoint at `path` among those a listener serves; None: 404.
    pub fn from_path(path: &str, served: &[HttpEndpoint]) -> Option<HttpEndpoint> {
        served.iter().copied().find(|e| e.path() == path)
    }

    fn is_fleetlock(self) -> bool {
        self != HttpEndpoint::Metrics
    }
}

/// Who calls an HTTP endpoint, as its listener saw the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCaller {
    /// The certificate of the cluster CA the client showed (TLS listeners).
    pub identity: Option<Identity>,
    /// The listener is plaintext because the cluster is (`[tls] insecure = true`).
    pub insecure: bool,
    /// The client's address is loopback or inside the listener's allowed
    /// networks (`rules::networks::network_allowed`).
    pub network_allowed: bool,
}

impl fmt::Display for HttpCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identity {
            Some(identity) => write!(f, "{identity}"),
            None if self.insecure => f.write_str("an unauthenticated caller (insecure cluster)"),
            None => f.write_str("a caller without a client certificate"),
        }
    }
}

/// May `caller` use `endpoint` at all?
///
/// - `/metrics`: with TLS, a `monitor` or `admin` certificate (Prometheus
///   gets a monitor certificate); without TLS (insecure cluster) anyone who
///   reaches it, and `[metrics]` binds loopback unless `allow_remote`.
/// - FleetLock: Zincati shows no client certificate, so the caller is the
///   FleetLock client role, known by its network: loopback or the
///   configured `allow_networks`, TLS or not. It may only take and give
///   back slots, in the configured groups ([`permit_fleetlock_group`]),
///   for the id it names; nothing else is served on that listener.
pub fn permit_http(caller: &HttpCaller, endpoint: HttpEndpoint) -> Result<(), Denied> {
    let refuse = |why: &str| {
        Err(Denied {
            caller: caller.to_string(),
            rpc: endpoint.path().to_string(),
            why: why.to_string(),
        })
    };
    if endpoint.is_fleetlock() {
        return if caller.network_allowed {
            Ok(())
        } else {
            refuse("FleetLock clients are served from loopback and [fleetlock] allow_networks only")
        };
    }
    match &caller.identity {
        Some(identity) if matches!(identity.role, Role::Monitor | Role::Admin) => Ok(()),
        None if caller.insecure => Ok(()),
        Some(_) => refuse("only monitor and admin certificates may read metrics"),
        None => refuse("a client certificate of the cluster (role monitor or admin) is required"),
    }
}

/// May a FleetLock client act in `group`? Only in the groups `[fleetlock]
/// groups` names (Zincati's default group is `default`).
pub fn permit_fleetlock_group(
    caller: &HttpCaller,
    endpoint: HttpEndpoint,
    group: &str,
    groups: &[String],
) -> Result<(), Denied> {
    if groups.iter().any(|g| g == group) {
        Ok(())
    } else {
        Err(Denied {
            caller: caller.to_string(),
            rpc: endpoint.path().to_string(),
            why: format!(
                "group {group:?} is not served over FleetLock (configured: {})",
                groups.join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certified(name: &str, role: Role) -> Caller {
        Caller::Certified(Identity {
            name: name.into(),
            role,
        })
    }

    #[test]
    fn paths_round_trip_and_unknown_paths_are_none() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(rpc.path()), Some(rpc));
        }
        assert_eq!(Rpc::from_path("/baton.v1.Lease/Steal"), None);
        assert_eq!(Rpc::from_path("/grpc.health.v1.Health/Check"), None);
        assert_eq!(Rpc::Acquire.name(), "Lease.Acquire");
        assert_eq!(Role::parse("voter"), Some(Role::Voter));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn the_rule_table() {
        let voters = vec!["cp-1".to_string(), "cp-2".to_string()];
        let voter = certified("cp-1", Role::Voter);
        let former = certified("cp-9", Role::Voter);
        let host = certified("h1", Role::Host);
        let admin = certified("ops", Role::Admin);
        let monitor = certified("prometheus", Role::Monitor);
        for rpc in Rpc::ALL {
            let expect = |caller: &Caller| permit(caller, rpc, &voters).is_ok();
            let admin_call = matches!(rpc.allowed(), Allowed::Admins | Allowed::FleetReaders);
            // Raft and keepalives: current voters only.
            let raft = rpc.allowed() == Allowed::Voters;
            assert_eq!(expect(&voter), !admin_call, "voter {rpc:?}");
            assert_eq!(
                expect(&former),
                !admin_call && !raft,
                "former voter {rpc:?}"
            );
            assert_eq!(expect(&host), !admin_call && !raft, "host {rpc:?}");
            assert_eq!(expect(&admin), !raft, "admin {rpc:?}");
            // Monitors read (Status, Watch) and nothing else.
            assert_eq!(
                expect(&monitor),
                rpc.allowed() == Allowed::Anyone,
                "monitor {rpc:?}"
            );
            assert!(expect(&Caller::Insecure), "insecure {rpc:?}");
        }
    }

    #[test]
    fn hosts_and_voters_act_only_as_themselves() {
        let host = certified("h1", Role::Host);
        assert!(permit_holder(&host, Rpc::Acquire, "h1").is_ok());
        let refused = permit_holder(&host, Rpc::Release, "h2").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "h1 (host) may not call Lease.Release: a host certificate acts only as itself (\"h1\"), not as \"h2\""
        );
        let voter = certified("cp-1", Role::Voter);
        assert!(permit_holder(&voter, Rpc::Acquire, "cp-1").is_ok());
        assert!(permit_holder(&voter, Rpc::Acquire, "h1").is_err());
        let admin = certified("ops", Role::Admin);
        assert!(permit_holder(&admin, Rpc::Release, "h1").is_ok());
        assert!(permit_holder(&Caller::Insecure, Rpc::Release, "h1").is_ok());
    }

    #[test]
    fn a_refusal_names_the_identity_and_what_it_may_do() {
        let voters = vec!["cp-1".to_string()];
        let host = certified("h1", Role::Host);
        let refused = permit(&host, Rpc::Pause, &voters).unwrap_err().to_string();
        assert_eq!(
            refused,
            "h1 (host) may not call Admin.Pause: only admin certificates may change the cluster"
        );
        let refused = permit(&host, Rpc::RaftVote, &voters)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("only voter certificates of current voters"),
            "{refused}"
        );
    }

    #[test]
    fn http_endpoints_metrics_by_certificate_fleetlock_by_network() {
        let caller = |role: Option<Role>, insecure, network_allowed| HttpCaller {
            identity: role.map(|role| Identity {
                name: "x".into(),
                role,
            }),
            insecure,
            network_allowed,
        };
        let metrics = HttpEndpoint::Metrics;
        assert!(permit_http(&caller(Some(Role::Monitor), false, false), metrics).is_ok());
        assert!(permit_http(&caller(Some(Role::Admin), false, false), metrics).is_ok());
        assert!(permit_http(&caller(Some(Role::Host), false, true), metrics).is_err());
        assert!(permit_http(&caller(Some(Role::Voter), false, true), metrics).is_err());
        let refused = permit_http(&caller(None, false, true), metrics).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "a caller without a client certificate may not call /metrics: \
             a client certificate of the cluster (role monitor or admin) is required"
        );
        assert!(permit_http(&caller(None, true, false), metrics).is_ok());
        for endpoint in [
            HttpEndpoint::FleetLockPreReboot,
            HttpEndpoint::FleetLockSteadyState,
        ] {
            assert!(permit_http(&caller(None, false, true), endpoint).is_ok());
            assert!(permit_http(&caller(None, true, true), endpoint).is_ok());
            // A certificate does not replace the network rule.
            assert!(permit_http(&caller(Some(Role::Admin), false, false), endpoint).is_err());
            assert!(permit_http(&caller(None, true, false), endpoint).is_err());
        }
        let groups = vec!["default".to_string(), "workers".to_string()];
        let fl = caller(None, false, true);
        let pre = HttpEndpoint::FleetLockPreReboot;
        assert!(permit_fleetlock_group(&fl, pre, "workers", &groups).is_ok());
        let refused = permit_fleetlock_group(&fl, pre, "db", &groups).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("\"db\" is not served over FleetLock (configured: default, workers)"),
            "{refused}"
        );
        for endpoint in HttpEndpoint::ALL {
            assert_eq!(
                HttpEndpoint::from_path(endpoint.path(), &HttpEndpoint::ALL),
                Some(endpoint)
            );
        }
        assert_eq!(
            HttpEndpoint::from_path("/metrics", &[HttpEndpoint::FleetLockPreReboot]),
            None
        );
    }

    #[test]
    fn hosts_report_as_themselves_and_only_admins_list_the_fleet() {
        let voters = vec!["cp-1".to_string()];
        let host = certified("h1", Role::Host);
        assert!(permit(&host, Rpc::FleetReport, &voters).is_ok());
        assert!(permit_holder(&host, Rpc::FleetReport, "h1").is_ok());
        assert!(permit_holder(&host, Rpc::FleetReport, "h2").is_err());
        assert_eq!(
            permit(&host, Rpc::FleetHosts, &voters)
                .unwrap_err()
                .to_string(),
            "h1 (host) may not call Fleet.Hosts: only admin certificates may list the fleet"
        );
        assert!(permit(&host, Rpc::FleetForward, &voters).is_err());
        assert!(permit(&certified("cp-1", Role::Voter), Rpc::FleetForward, &voters).is_ok());
        assert!(permit(&certified("cp-1", Role::Voter), Rpc::FleetHosts, &voters).is_err());
        assert!(permit(&certified("ops", Role::Admin), Rpc::FleetHosts, &voters).is_ok());
    }

    #[test]
    fn only_admins_hold_unhold_and_ask_reboots_any_host_reads_its_orders() {
        let voters = vec!["cp-1".to_string()];
        let host = certified("h1", Role::Host);
        let voter = certified("cp-1", Role::Voter);
        let admin = certified("ops", Role::Admin);
        for rpc in [Rpc::Hold, Rpc::Unhold, Rpc::RebootNow] {
            let refused = permit(&host, rpc, &voters).unwrap_err().to_string();
            assert!(refused.contains("only admin certificates"), "{refused}");
            assert!(permit(&voter, rpc, &voters).is_err());
            assert!(permit(&admin, rpc, &voters).is_ok());
        }
        assert_eq!(Rpc::Hold.name(), "Control.Hold");
        for caller in [&host, &voter, &admin] {
            assert!(permit(caller, Rpc::HostControl, &voters).is_ok());
        }
    }
}
