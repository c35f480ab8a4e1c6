//! The host agent end to end: real voters and client hosts; the test plays the machines.
//!
//! Three voters only serve the lease; client hosts have sentinel update
//! sources and a reboot command, and are killed between phases.

use std::time::{Duration, Instant};

use crate::support::{AgentHost, TestCluster};

const WAIT: Duration = Duration::from_secs(20);

/// The lease holders of group `workers` (linearizable).
fn holders(cluster: &TestCluster) -> Vec<String> {
    cluster.holders("workers")
}

#[test]
fn hosts_roll_one_at_a_time_and_come_back_idle() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let mut hosts: Vec<AgentHost> = (1..=3)
        .map(|i| AgentHost::new(&cluster, &format!("w{i}"), ""))
        .collect();
    for host in &mut hosts {
        host.update_pending();
        host.start();
    }
    let started = Instant::now();
    let mut rolled = 0;
    let mut boot = 1;
    while rolled < hosts.len() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "fleet did not roll"
        );
        // Exactly one host asks to reboot at a time, and it holds the lease.
        let asking: Vec<usize> = (0..hosts.len())
            .filter(|&i| hosts[i].reboot_calls() > 0 && hosts[i].phase() == "rebooting")
            .collect();
        if asking.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(asking.len(), 1, "two hosts rebooting at once");
        let i = asking[0];
        assert_eq!(
            holders(&cluster),
            vec![hosts[i].name.clone()],
            "the rebooting host holds the lease"
        );
        hosts[i].reboot(boot);
        boot += 1;
        hosts[i].wait_phase("idle", WAIT);
        assert_eq!(hosts[i].reboot_calls(), 1, "{}", hosts[i].log());
        // Mark the marker as handled so the host is not counted again.
        std::fs::rename(hosts[i].marker(), hosts[i].dir().join("reboot-calls.done")).unwrap();
        rolled += 1;
    }
    assert!(holders(&cluster).is_empty(), "every lease was released");
    for host in &hosts {
        assert!(
            host.log().contains("back from the reboot"),
            "{}",
            host.log()
        );
    }
}

#[test]
fn crash_in_each_phase_resumes_correctly() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    // Slow hooks make draining and post-reboot long enough to crash in.
    let extra = "[[hooks.before_reboot]]\ncommand = [\"sleep\", \"1\"]\n[[hooks.after_reboot]]\ncommand = [\"sleep\", \"1\"]\n";
    let mut host = AgentHost::new(&cluster, "crashy", extra);
    host.update_pending();
    host.start();

    // Crash while draining: comes back, still holds, drains again, reboots.
    host.wait_phase("draining", WAIT);
    host.kill();
    let token_before = holders(&cluster);
    assert_eq!(token_before, vec!["crashy".to_string()]);
    host.start();
    host.wait_reboot_calls(1, WAIT);
    assert_eq!(host.phase(), "rebooting");

    // Crash after the reboot call, before the machine went down (same boot
    // id): the agent re-verifies the lease and calls reboot again.
    host.kill();
    host.start();
    host.wait_reboot_calls(2, WAIT);

    // The reboot happens; crash during the post-reboot checks.
    host.reboot(1);
    host.wait_phase("post-reboot", WAIT);
    host.kill();
    host.start();
    host.wait_phase("idle", WAIT);
    assert!(holders(&cluster).is_empty(), "released after the checks");
    assert_eq!(host.reboot_calls(), 2);
}

#[test]
fn crash_while_queued_keeps_or_regains_the_place() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    // Someone else holds the lease, so the host queues.
    let out = cluster.cli(&["lease", "acquire", "workers", "--holder", "operator"]);
    assert!(out.status.success());
    let mut host = AgentHost::new(&cluster, "queued", "");
    host.update_pending();
    host.start();
    host.wait_phase("waiting-for-lease", WAIT);
    host.kill();
    host.start();
    host.wait_phase("waiting-for-lease", WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(host.reboot_calls(), 0, "no reboot without the lease");
    let out = cluster.cli(&["lease", "release", "workers", "--holder", "operator"]);
    assert!(out.status.success());
    host.wait_reboot_calls(1, WAIT);
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    assert!(holders(&cluster).is_empty());
}

#[test]
fn a_lease_lost_before_the_reboot_call_means_no_reboot() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let extra = "[[hooks.before_reboot]]\ncommand = [\"sleep\", \"2\"]\n";
    let mut host = AgentHost::new(&cluster, "unlucky", extra);
    host.update_pending();
    host.start();
    host.wait_phase("draining", WAIT);
    // An operator takes the lease away while the host drains.
    let out = cluster.cli(&["unlock", "workers", "unlucky"]);
    assert!(out.status.success());
    // The host notices before the reboot call, undoes the drain, gives up
    // this round and does not reboot.
    let deadline = Instant::now() + WAIT;
    while !host.log().contains("no longer ours") {
        assert!(Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        host.reboot_calls(),
        0,
        "rebooted without the lease:\n{}",
        host.log()
    );
    host.kill();
}

#[test]
fn a_lease_held_but_not_remembered_is_released_at_start() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let out = cluster.cli(&["lease", "acquire", "workers", "--holder", "forgetful"]);
    assert!(out.status.success());
    let mut host = AgentHost::new(&cluster, "forgetful", "");
    host.start();
    wait_until_nobody_holds(&cluster, &host, "stray lease not released");
    assert_eq!(host.reboot_calls(), 0);
}

/// Waits (at most `WAIT`) until the cluster shows no holder; fails with
/// `why` and the host's log.
fn wait_until_nobody_holds(cluster: &TestCluster, host: &AgentHost, why: &str) {
    let deadline = Instant::now() + WAIT;
    while !holders(cluster).is_empty() {
        assert!(Instant::now() < deadline, "{why}:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A late retry of an acquire (one the network held until after the host
/// had released; simulation seed 20560 had two) grants a host that is
/// done. An idle agent sees the grant in its orders and gives it back.
#[test]
fn a_lease_granted_to_an_idle_host_is_given_back() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let mut host = AgentHost::new(&cluster, "finished", "");
    host.start();
    host.wait_phase("idle", WAIT);
    // Its start-up check is done: this grant comes after it.
    std::thread::sleep(Duration::from_millis(500));
    let out = cluster.cli(&["lease", "acquire", "workers", "--holder", "finished"]);
    assert!(out.status.success());
    wait_until_nobody_holds(&cluster, &host, "the idle host kept the grant");
    assert!(host.log().contains("released it"), "{}", host.log());
    assert_eq!(host.reboot_calls(), 0);
    assert_eq!(host.phase(), "idle");
}

#[test]
fn outside_its_window_a_host_never_queues() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    // A one-minute window that opens 12 hours from now (UTC).
    let now = jiff::Timestamp::now().in_tz("UTC").unwrap();
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(12))
        .unwrap();
    let extra = format!(
        "time_zone = \"UTC\"\n[[reboot.window]]\nstart = \"{:02}:{:02}\"\nlength = \"1m\"\n",
        later.hour(),
        later.minute()
    );
    // `time_zone` belongs to [reboot], which AgentHost writes last.
    let mut host = AgentHost::new(&cluster, "patient", &extra);
    host.update_pending();
    host.start();
    host.wait_phase("reboot-needed", WAIT);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host.phase(), "reboot-needed");
    let status = cluster.wait_for_leader(Duration::from_secs(5));
    assert!(
        status["groups"]["workers"].is_null(),
        "host queued outside its window: {status}"
    );
    assert!(
        host.log().contains("next opens") || host.log().contains("reboot needed"),
        "{}",
        host.log()
    );
}

/// `[updates]`/`[reboot]` for a host whose update source is a sentinel
/// command that appends a line to `probes` each time it runs and says "no
/// update" (exit 1), asked every `poll`.
fn counting_sentinel(host_dir: &std::path::Path, poll: &str) -> (String, std::path::PathBuf) {
    let probes = host_dir.join("probes");
    let marker = host_dir.join("reboot-calls");
    let sections = format!(
        "[updates]\nsource = \"sentinel\"\nsentinel_command = [\"sh\", \"-c\", \"echo probe >> {probes}; exit 1\"]\n\
         poll_interval = \"{poll}\"\n\n\
         [reboot]\nmethod = \"command\"\ncommand = [\"sh\", \"-c\", \"echo $$ >> {marker}\"]\n",
        probes = probes.display(),
        marker = marker.display(),
    );
    (sections, probes)
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The pid of the `baton agent` process whose command line names a file in
/// `dir` (its config), found in /proc.
fn agent_pid(dir: &std::path::Path) -> Option<u32> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours =
                args.iter().any(|a| a == "agent") && args.iter().any(|a| a.starts_with(&dir));
            ours.then_some(pid)
        })
}

fn sigterm(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
}

#[test]
fn an_idle_host_asks_its_update_source_once_per_poll_interval_and_stops_at_once() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let dir = cluster.layout.root().join("patient-poller");
    let (sections, probes) = counting_sentinel(&dir, "10s");
    let mut host = AgentHost::with_sections(&cluster, "patient-poller", Some(&sections), "");
    host.start();
    // The first probe comes at start; the next one is due 10 s later.
    let deadline = Instant::now() + WAIT;
    while lines(&probes) == 0 {
        assert!(Instant::now() < deadline, "never probed:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lines(&probes),
        1,
        "the sentinel command ran more than once within 3 s of a 10 s poll_interval:\n{}",
        host.log()
    );
    assert_eq!(host.phase(), "idle");

    // SIGTERM in the middle of the 10 s wait ends the agent promptly.
    let pid = agent_pid(host.dir()).expect("the agent's pid");
    let stopping = Instant::now();
    sigterm(pid);
    let status = host.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "the agent did not stop cleanly within 5 s of SIGTERM ({status:?}):\n{}",
        host.log()
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopping took {:?}",
        stopping.elapsed()
    );
    assert_eq!(lines(&probes), 1, "{}", host.log());
}

/// Starts `host`'s agent as systemd would with `NOTIFY_SOCKET=socket` (and `env`), its
/// log in `log_name` in the host's directory.
fn spawn_notifying(
    host: &AgentHost,
    socket: &std::path::Path,
    log_name: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    let log = std::fs::File::create(host.dir().join(log_name)).expect("log file");
    std::process::Command::new(crate::support::baton_bin())
        .args(["agent", "--config"])
        .arg(host.dir().join("baton.toml"))
        .arg("--vendor-dir")
        .arg(host.dir().join("no-vendor"))
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", socket)
        .envs(env.iter().copied())
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn baton agent")
}

/// Under systemd with `WatchdogSec=1.5s` (as WATCHDOG_USEC says), an agent
/// in a 10 s idle wait still sends WATCHDOG=1 at least every 1.5 s: long
/// waits feed the watchdog. Plays systemd's notification socket.
#[test]
fn a_long_idle_wait_keeps_feeding_the_watchdog() {
    use std::os::unix::net::UnixDatagram;

    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let dir = cluster.layout.root().join("watched");
    let (sections, probes) = counting_sentinel(&dir, "10s");
    let host = AgentHost::with_sections(&cluster, "watched", Some(&sections), "");
    let socket_path = host.dir().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut agent = spawn_notifying(
        &host,
        &socket_path,
        "watched.log",
        &[("WATCHDOG_USEC", "1500000")],
    );

    let mut ready = false;
    let mut pings: Vec<Instant> = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buf[..n]);
        ready |= message.lines().any(|l| l == "READY=1");
        if message.lines().any(|l| l == "WATCHDOG=1") {
            pings.push(Instant::now());
        }
    }
    sigterm(agent.id());
    let mut stopping = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            stopping |= String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "STOPPING=1");
        }
        if stopping {
            break;
        }
    }
    let exited = agent.wait().expect("wait for the agent");
    let agent_log = std::fs::read_to_string(host.dir().join("watched.log")).unwrap_or_default();
    assert!(ready, "no READY=1:\n{agent_log}");
    assert!(stopping, "no STOPPING=1 after SIGTERM:\n{agent_log}");
    assert!(exited.success(), "{exited:?}:\n{agent_log}");
    assert_eq!(lines(&probes), 1, "one probe in 6 s:\n{agent_log}");
    assert!(
        pings.len() >= 4,
        "{} pings in 6 s:\n{agent_log}",
        pings.len()
    );
    let longest = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest < Duration::from_millis(1500),
        "{longest:?} without WATCHDOG=1 (WatchdogSec=1.5s):\n{agent_log}"
    );
}

/// The holders queued in group `workers` (linearizable).
fn queued(cluster: &TestCluster) -> Vec<String> {
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    status["groups"]["workers"]["queue"]
        .as_array()
        .map(|q| {
            q.iter()
                .map(|w| w["holder"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A freeze covering today (UTC dates, the `to` date frozen all day): a host with a
/// reboot pending does not queue, and says in STATUS until when and why. Plays systemd's
/// notification socket to read STATUS.
#[test]
fn a_host_in_a_freeze_does_not_queue_and_says_so() {
    use std::os::unix::net::UnixDatagram;

    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let (yesterday, tomorrow) = (today.yesterday().unwrap(), today.tomorrow().unwrap());
    let until = tomorrow.tomorrow().unwrap();
    let extra = format!(
        "time_zone = \"UTC\"\n[[reboot.freeze]]\nfrom = \"{yesterday}\"\nto = \"{tomorrow}\"\n\
         reason = \"test freeze\"\n"
    );
    let host = AgentHost::new(&cluster, "frozen", &extra);
    host.update_pending();
    let socket_path = host.dir().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let log_path = host.dir().join("frozen-agent.log");
    let mut agent = spawn_notifying(&host, &socket_path, "frozen-agent.log", &[]);

    let want = format!("STATUS=reboot needed: frozen until {until} 00:00 UTC (test freeze)");
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < WAIT && !seen.contains(&want) {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.extend(message.lines().map(str::to_string));
        }
    }
    let agent_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        seen.contains(&want),
        "no {want:?} in {seen:?}:\n{}",
        agent_log()
    );
    assert_eq!(host.phase(), "reboot-needed");
    // Still not queued a while later (it keeps polling its update source).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host.phase(), "reboot-needed", "{}", agent_log());
    let status = cluster.wait_for_leader(Duration::from_secs(5));
    assert!(
        status["groups"]["workers"].is_null(),
        "host queued during a freeze: {status}"
    );
    assert_eq!(host.reboot_calls(), 0);
    assert!(
        agent_log().contains(&format!(
            "freezes: {yesterday} 00:00 UTC to {until} 00:00 UTC (test freeze)"
        )),
        "the start line lists the freeze:\n{}",
        agent_log()
    );
    sigterm(agent.id());
    let exited = agent.wait().expect("wait for the agent");
    assert!(exited.success(), "{exited:?}:\n{}", agent_log());
}

/// `[reboot]` keys (then `more`, which may go on with the freeze's `reason` and further
/// tables) for a freeze in UTC that begins `begins_in` from now and lasts an hour, and
/// when it begins: written to the second, so at most a second before `now + begins_in`.
fn freeze_soon(begins_in: Duration, more: &str) -> (String, jiff::Timestamp) {
    let now = jiff::Timestamp::now();
    let at = |t: jiff::Timestamp| {
        let dt = t.to_zoned_datetime(jiff::tz::TimeZone::UTC).datetime();
        let second =
            dt.date()
                .to_datetime(jiff::civil::time(dt.hour(), dt.minute(), dt.second(), 0));
        (
            second,
            format!(
                "{}T{:02}:{:02}:{:02}",
                dt.date(),
                dt.hour(),
                dt.minute(),
                dt.second()
            ),
        )
    };
    let (begins, from) = at(now + begins_in);
    let (_, to) = at(now + Duration::from_secs(3600));
    let begins = jiff::tz::TimeZone::UTC
        .to_timestamp(begins)
        .expect("a UTC instant");
    let extra =
        format!("time_zone = \"UTC\"\n[[reboot.freeze]]\nfrom = \"{from}\"\nto = \"{to}\"\n{more}");
    (extra, begins)
}

/// A host waiting in the queue when a freeze begins leaves the queue (like when its
/// window closes), and does not take the lease when it frees up.
#[test]
fn a_freeze_beginning_while_queued_leaves_the_queue() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let out = cluster.cli(&["lease", "acquire", "workers", "--holder", "operator"]);
    assert!(out.status.success());
    let (extra, begins) = freeze_soon(Duration::from_secs(8), "");
    let mut host = AgentHost::new(&cluster, "queued-then-frozen", &extra);
    host.update_pending();
    host.start();
    host.wait_phase("waiting-for-lease", WAIT);
    let deadline = Instant::now() + WAIT;
    while queued(&cluster) != ["queued-then-frozen"] {
        assert!(Instant::now() < deadline, "never queued:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        jiff::Timestamp::now() < begins,
        "the host took too long to queue for this test to mean anything"
    );
    // The freeze begins: the host leaves the queue and waits again.
    host.wait_phase("reboot-needed", WAIT);
    let deadline = Instant::now() + WAIT;
    while !queued(&cluster).is_empty() {
        assert!(Instant::now() < deadline, "still queued:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        jiff::Timestamp::now() >= begins,
        "left the queue before the freeze began:\n{}",
        host.log()
    );
    assert!(
        host.log().contains("a freeze began before a grant"),
        "{}",
        host.log()
    );
    // The lease frees up; the frozen host does not take it.
    let out = cluster.cli(&["lease", "release", "workers", "--holder", "operator"]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(holders(&cluster).is_empty(), "{}", host.log());
    assert_eq!(host.reboot_calls(), 0);
    assert_eq!(host.phase(), "reboot-needed");
    assert!(host.log().contains("frozen until"), "{}", host.log());
}

/// A host `name` with a reboot pending and a freeze (see [`freeze_soon`], with `more`)
/// beginning 6 s from now, started and draining before the freeze begins; and when it
/// begins.
fn draining_before_a_freeze(
    cluster: &TestCluster,
    name: &str,
    more: &str,
) -> (AgentHost, jiff::Timestamp) {
    let (extra, freeze_begins) = freeze_soon(Duration::from_secs(6), more);
    let mut host = AgentHost::new(cluster, name, &extra);
    host.update_pending();
    host.start();
    host.wait_phase("draining", WAIT);
    assert!(
        jiff::Timestamp::now() < freeze_begins,
        "the host took too long to start draining for this test to mean anything"
    );
    (host, freeze_begins)
}

/// A host that began draining before a freeze begins is not stopped by it: it makes its
/// reboot call during the freeze (a freeze stops reboots from starting, not the one under
/// way).
#[test]
fn a_host_already_draining_when_a_freeze_begins_still_reboots() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    // The before-reboot hook outlasts the freeze's start.
    let (mut host, freeze_begins) = draining_before_a_freeze(
        &cluster,
        "under-way",
        "[[hooks.before_reboot]]\ncommand = [\"sleep\", \"9\"]\n",
    );
    host.wait_reboot_calls(1, WAIT);
    assert!(
        jiff::Timestamp::now() > freeze_begins,
        "rebooted before the freeze began:\n{}",
        host.log()
    );
    assert_eq!(host.phase(), "rebooting");
    assert_eq!(holders(&cluster), ["under-way"]);
    // Back from the reboot during the freeze: it finishes its checks and releases.
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    assert!(holders(&cluster).is_empty());
}

/// An agent that restarts in the middle of a drain starts the drain over; if a freeze has
/// begun meanwhile, that counts as a new start: it gives the lease back without rebooting
/// and waits out the freeze.
#[test]
fn a_drain_started_over_during_a_freeze_gives_the_lease_back() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let (mut host, freeze_begins) = draining_before_a_freeze(
        &cluster,
        "restarted",
        "reason = \"audit\"\n[[hooks.before_reboot]]\ncommand = [\"sleep\", \"15\"]\n",
    );
    host.kill();
    assert_eq!(holders(&cluster), ["restarted"]);
    while jiff::Timestamp::now() < freeze_begins {
        std::thread::sleep(Duration::from_millis(100));
    }
    host.start();
    host.wait_phase("reboot-needed", WAIT);
    let deadline = Instant::now() + WAIT;
    while !holders(&cluster).is_empty() {
        assert!(Instant::now() < deadline, "lease kept:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(host.reboot_calls(), 0);
    let log = host.log();
    assert!(log.contains("a freeze began before the drain"), "{log}");
    let deadline = Instant::now() + WAIT;
    while !host.log().contains("frozen until") {
        assert!(Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(host.log().contains("(audit)"), "{}", host.log());
}
