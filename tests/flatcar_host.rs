//! A Flatcar host end to end on a real D-Bus: one logind Reboot(false), while holding.
//!
//! update_engine reports NEED_REBOOT (at start through GetStatus, later through
//! the StatusUpdate signal); the agent takes the lease and reboots exactly once.
//! The bus is a real dbus-daemon; update_engine and logind on it are test
//! services (no real update_engine or logind may run here), and each
//! Reboot call asks the cluster, at that moment, who holds the lease.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{AgentHost, TestCluster};
use baton::Dialer;
use baton_proto::v1 as pb;
use baton_testkit::dbus::{wait_until, DbusDaemon, UpdateEngineService};

const NEED_REBOOT: &str = "UPDATE_STATUS_UPDATED_NEED_REBOOT";
const IDLE: &str = "UPDATE_STATUS_IDLE";
const WAIT: Duration = Duration::from_secs(20);

/// One Reboot call as the fake logind saw it.
#[derive(Debug, Clone)]
struct RebootCall {
    interactive: bool,
    /// Who held the lease group when the call arrived.
    holders: Vec<String>,
}

/// logind's Manager.Reboot, recording each call with the lease holders at
/// that moment (asked from the cluster before the call returns).
struct CheckingLogind {
    calls: Arc<Mutex<Vec<RebootCall>>>,
    voter: String,
    dialer: Dialer,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl CheckingLogind {
    async fn reboot(&self, interactive: bool) {
        let mut holders = Vec::new();
        if let Ok(channel) = self.dialer.connect(&self.voter).await {
            let mut client = pb::lease_client::LeaseClient::new(channel);
            if let Ok(status) = client.status(pb::StatusRequest { stale: false }).await {
                for group in status.into_inner().groups {
                    if group.name == "workers" {
                        holders = group.holders.into_iter().map(|h| h.holder).collect();
                    }
                }
            }
        }
        self.calls.lock().unwrap().push(RebootCall {
            interactive,
            holders,
        });
    }
}

async fn start_logind(
    address: &str,
    voter: String,
    dialer: Dialer,
) -> (zbus::Connection, Arc<Mutex<Vec<RebootCall>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let conn = zbus::connection::Builder::address(address)
        .unwrap()
        .name("org.freedesktop.login1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/login1",
            CheckingLogind {
                calls: calls.clone(),
                voter,
                dialer,
            },
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    (conn, calls)
}

fn flatcar_sections(bus: &str, os_release: &Path) -> String {
    format!(
        "[updates]\nsource = \"flatcar\"\ndbus_address = \"{bus}\"\npoll_interval = \"200ms\"\nos_release = \"{}\"\n\n[reboot]\nmethod = \"logind\"\n",
        os_release.display()
    )
}

/// The host's /etc/os-release: Flatcar at `version`.
fn os_release(cluster: &TestCluster, host: &str, version: &str) -> PathBuf {
    let path = cluster.layout.root().join(format!("{host}.os-release"));
    set_version(&path, version);
    path
}

/// What the machine boots into: Flatcar at `version`.
fn set_version(os_release: &Path, version: &str) {
    std::fs::write(
        os_release,
        format!("NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nVERSION={version}\nVERSION_ID={version}\n"),
    )
    .unwrap();
}

/// Asserts for `span` that `host` stays idle (never queues, never holds)
/// and makes no further Reboot call than the `calls` it made so far.
async fn stays_idle(
    cluster: &TestCluster,
    host: &AgentHost,
    calls: &Arc<Mutex<Vec<RebootCall>>>,
    span: Duration,
) {
    let before = calls.lock().unwrap().len();
    let until = std::time::Instant::now() + span;
    while std::time::Instant::now() < until {
        assert_eq!(host.phase(), "idle", "{}", host.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls.lock().unwrap().len(), before, "{}", host.log());
    assert!(holders(cluster).is_empty(), "{}", host.log());
}

/// The lease holders of group `workers` (linearizable).
fn holders(cluster: &TestCluster) -> Vec<String> {
    cluster.holders("workers")
}

/// One Flatcar host on its own bus, with update_engine offering 4152.2.1
/// over the booted 4152.2.0, past its first Reboot call (fields drop in
/// order: the agent first, the cluster last).
struct RebootingHost {
    host: AgentHost,
    os: PathBuf,
    calls: Arc<Mutex<Vec<RebootCall>>>,
    _logind: zbus::Connection,
    engine: UpdateEngineService,
    _bus: DbusDaemon,
    cluster: TestCluster,
}

async fn rebooting_host(name: &str) -> RebootingHost {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let bus = DbusDaemon::start();
    let engine = UpdateEngineService::start(&bus.address(), NEED_REBOOT, "4152.2.1").await;
    let (logind, calls) = start_logind(&bus.address(), cluster.address(0), cluster.dialer()).await;
    let os = os_release(&cluster, name, "4152.2.0");
    let mut host = AgentHost::with_sections(
        &cluster,
        name,
        Some(&flatcar_sections(&bus.address(), &os)),
        "",
    );
    host.start();
    wait_until("reboot call", WAIT, || !calls.lock().unwrap().is_empty()).await;
    RebootingHost {
        host,
        os,
        calls,
        _logind: logind,
        engine,
        _bus: bus,
        cluster,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_hosts_reboot_through_logind_only_while_holding_the_lease() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));

    // Host a: update already downloaded when the agent starts (GetStatus).
    let bus_a = DbusDaemon::start();
    let engine_a = UpdateEngineService::start(&bus_a.address(), NEED_REBOOT, "4152.2.1").await;
    let (_logind_a, calls_a) =
        start_logind(&bus_a.address(), cluster.address(0), cluster.dialer()).await;
    let os_a = os_release(&cluster, "flatcar-a", "4152.2.0");
    let mut a = AgentHost::with_sections(
        &cluster,
        "flatcar-a",
        Some(&flatcar_sections(&bus_a.address(), &os_a)),
        "",
    );

    // Host b: idle at start; the update arrives later (StatusUpdate signal).
    let bus_b = DbusDaemon::start();
    let engine_b = UpdateEngineService::start(&bus_b.address(), IDLE, "").await;
    let (_logind_b, calls_b) =
        start_logind(&bus_b.address(), cluster.address(1), cluster.dialer()).await;
    let os_b = os_release(&cluster, "flatcar-b", "4152.2.0");
    let mut b = AgentHost::with_sections(
        &cluster,
        "flatcar-b",
        Some(&flatcar_sections(&bus_b.address(), &os_b)),
        "",
    );

    a.start();
    b.start();
    wait_until("a asks logind to reboot", WAIT, || {
        !calls_a.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(b.phase(), "idle", "b has no update yet");
    engine_b.set(NEED_REBOOT, "4152.2.1", 1.0).await;
    b.wait_phase("waiting-for-lease", WAIT);

    // a's call came while a held the lease, and only once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let calls = calls_a.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "exactly one Reboot call: {calls:?}");
        assert!(!calls[0].interactive, "Reboot(false)");
        assert_eq!(
            calls[0].holders,
            vec!["flatcar-a".to_string()],
            "a held the lease at the call"
        );
    }
    assert!(
        calls_b.lock().unwrap().is_empty(),
        "b must not reboot while a holds the lease"
    );

    // a reboots: the new version is active, update_engine is idle again.
    engine_a.set(IDLE, "", 0.0).await;
    set_version(&os_a, "4152.2.1");
    a.reboot(1);
    a.wait_phase("idle", WAIT);

    // Now b gets the lease and reboots the same way.
    wait_until("b asks logind to reboot", WAIT, || {
        !calls_b.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = calls_b.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].holders, vec!["flatcar-b".to_string()]);
    engine_b.set(IDLE, "", 0.0).await;
    set_version(&os_b, "4152.2.1");
    b.reboot(1);
    b.wait_phase("idle", WAIT);
    assert_eq!(calls_a.lock().unwrap().len(), 1, "a did not reboot again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_update_did_not_take_says_so_and_releases() {
    // Bound in reverse drop order: the agent goes first, the cluster last.
    let RebootingHost {
        cluster,
        _bus,
        engine: _engine,
        _logind,
        calls,
        os: _os,
        mut host,
    } = rebooting_host("stuck").await;
    // The machine "reboots" but update_engine still wants a reboot.
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    assert!(
        host.log().contains("update not active after the reboot"),
        "{}",
        host.log()
    );
    let status = cluster.wait_for_leader(Duration::from_secs(5));
    assert!(
        status["groups"]["workers"]["holders"]
            .as_array()
            .is_none_or(|h| h.is_empty()),
        "the lease was released: {status}"
    );
    // update_engine still offers the update that did not take: the host
    // does not take the lease for it again (the back-off after a failed
    // round is 1 s, a poll 200 ms).
    stays_idle(&cluster, &host, &calls, Duration::from_secs(3)).await;
    assert!(host.log().contains("not rebooting for"), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_booted_its_old_partition_fails_its_check_and_releases() {
    // Bound in reverse drop order: the agent goes first, the cluster last.
    let RebootingHost {
        cluster,
        _bus,
        engine,
        _logind,
        calls,
        os,
        mut host,
    } = rebooting_host("rolled-back").await;
    // The new partition does not boot; the old one comes up again: a fresh
    // update_engine is idle, and os-release still says 4152.2.0.
    engine.set(IDLE, "", 0.0).await;
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    let log = host.log();
    assert!(
        log.contains("update not active after the reboot")
            && log.contains("VERSION_ID=4152.2.0")
            && log.contains("old partition")
            && log.contains("journalctl -b -1"),
        "{log}"
    );
    assert!(holders(&cluster).is_empty(), "the lease was released");
    assert_eq!(calls.lock().unwrap().len(), 1);

    // The host remembers the update that did not take, in its state dir.
    let record = host.state_dir().join("failed-update.json");
    let text = std::fs::read_to_string(&record).expect("failed-update.json");
    assert!(
        text.contains("4152.2.1") && text.contains("boot-1"),
        "{text}"
    );

    // update_engine downloads the same version again: no second lease, no
    // second reboot, and the log says why and how to retry.
    engine.set(NEED_REBOOT, "4152.2.1", 1.0).await;
    stays_idle(&cluster, &host, &calls, Duration::from_secs(3)).await;
    let log = host.log();
    assert!(
        log.contains("not rebooting for update_engine: Flatcar 4152.2.1 downloaded")
            && log.contains("failed-update.json"),
        "{log}"
    );
    // Nor after a restart of the agent: the record is on disk.
    host.kill();
    host.start();
    stays_idle(&cluster, &host, &calls, Duration::from_secs(2)).await;

    // A newer update goes ahead: lease, one Reboot call while holding it.
    engine.set(NEED_REBOOT, "4152.2.2", 1.0).await;
    wait_until("a Reboot call for 4152.2.2", WAIT, || {
        calls.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        calls.lock().unwrap()[1].holders,
        vec!["rolled-back".to_string()]
    );
    // This time the new partition boots: the check passes and the record of
    // the old failure is gone.
    engine.set(IDLE, "", 0.0).await;
    set_version(&os, "4152.2.2");
    host.reboot(2);
    host.wait_phase("idle", WAIT);
    assert!(!record.exists(), "{}", host.log());
    assert!(
        host.log()
            .contains("forgetting that update_engine: Flatcar 4152.2.1"),
        "{}",
        host.log()
    );
    assert!(holders(&cluster).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_failed_update_record_lets_the_host_try_that_update_again() {
    // Bound in reverse drop order: the agent goes first, the cluster last.
    let RebootingHost {
        cluster,
        _bus,
        engine,
        _logind,
        calls,
        os,
        mut host,
    } = rebooting_host("retried").await;
    host.reboot(1);
    // update_engine still wants the reboot: the update did not take.
    host.wait_phase("idle", WAIT);
    stays_idle(&cluster, &host, &calls, Duration::from_secs(2)).await;
    // The operator has looked and removes the record: the host tries again,
    // without a restart.
    std::fs::remove_file(host.state_dir().join("failed-update.json")).expect("the record");
    wait_until("a second Reboot call", WAIT, || {
        calls.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        calls.lock().unwrap()[1].holders,
        vec!["retried".to_string()]
    );
    engine.set(IDLE, "", 0.0).await;
    set_version(&os, "4152.2.1");
    host.reboot(2);
    host.wait_phase("idle", WAIT);
    assert!(holders(&cluster).is_empty());
}
