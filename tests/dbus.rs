//! Update sources against a real dbus-daemon with fake update_engine, and the file sources.

// Needs `dbus-daemon` (Debian package `dbus`). The reboot call's own tests are unit tests
// in agent/src/host/reboot.rs (they need a `HeldLease`, which only the crate can make);
// they use the same fakes (baton-testkit).

use std::path::Path;
use std::time::Duration;

use baton::{
    automatic_reboot_warning, PendingUpdate, ProcessError, UpdateError, UpdateSettings,
    UpdateSource, UpdateSourceKind,
};

use baton_testkit::dbus::{DbusDaemon, UpdateEngineService, DOWNLOADING, IDLE, NEED_REBOOT};

/// Long enough that a test waking within a few seconds was woken by a signal, not a poll.
const LONG_POLL: Duration = Duration::from_secs(120);

fn settings(dir: &Path, source: UpdateSourceKind, bus: Option<String>) -> UpdateSettings {
    UpdateSettings {
        source,
        check_interval: None,
        poll_interval: LONG_POLL,
        report_interval: Duration::from_secs(30),
        dbus_address: bus,
        os_release: dir.join("os-release"),
        reboot_required: dir.join("reboot-required"),
        unattended_upgrade: vec!["unattended-upgrade".into()],
        apt_conf_dir: dir.join("apt.conf.d"),
        sentinel_file: None,
        sentinel_command: None,
    }
}

async fn open(settings: &UpdateSettings) -> UpdateSource {
    match UpdateSource::open(settings).await {
        Ok(source) => source,
        Err(e) => panic!("open update source: {e}"),
    }
}

async fn open_err(settings: &UpdateSettings) -> UpdateError {
    match UpdateSource::open(settings).await {
        Ok(source) => panic!("expected an error, got the {} source", source.name()),
        Err(e) => e,
    }
}

async fn flatcar(bus: &DbusDaemon, poll: Duration) -> UpdateSource {
    let mut s = settings(bus.dir(), UpdateSourceKind::Flatcar, Some(bus.address()));
    s.poll_interval = poll;
    let source = open(&s).await;
    assert_eq!(source.name(), "flatcar");
    source
}

async fn within<T>(what: &str, limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

// ---- flatcar (update_engine over a real bus) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_pending_sees_need_reboot_at_start() {
    let bus = DbusDaemon::start();
    let _engine = UpdateEngineService::start(&bus.address(), NEED_REBOOT, "4152.2.1").await;
    let mut source = flatcar(&bus, LONG_POLL).await;
    let pending = source.pending().await.expect("GetStatus");
    assert_eq!(
        pending,
        Some(PendingUpdate {
            source: "flatcar".into(),
            reason: "update_engine: Flatcar 4152.2.1 downloaded".into(),
            new_version: Some("4152.2.1".into()),
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_changed_wakes_on_status_update_signal() {
    let bus = DbusDaemon::start();
    let engine = UpdateEngineService::start(&bus.address(), IDLE, "0.0.0").await;
    let mut source = flatcar(&bus, LONG_POLL).await;
    assert_eq!(source.pending().await.expect("GetStatus"), None);

    // A state change wakes `changed` (long before the 2-minute poll).
    engine.set(DOWNLOADING, "4152.2.1", 0.1).await;
    within(
        "StatusUpdate(DOWNLOADING) wakes changed()",
        Duration::from_secs(10),
        source.changed(),
    )
    .await;
    assert_eq!(source.pending().await.expect("GetStatus"), None);

    // Download progress alone is noise: it does not wake `changed`.
    engine.set(DOWNLOADING, "4152.2.1", 0.5).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(700), source.changed())
            .await
            .is_err(),
        "a progress-only StatusUpdate must not wake changed()"
    );

    engine.set(NEED_REBOOT, "4152.2.1", 1.0).await;
    within(
        "StatusUpdate(NEED_REBOOT) wakes changed()",
        Duration::from_secs(10),
        source.changed(),
    )
    .await;
    let pending = source.pending().await.expect("GetStatus").expect("pending");
    assert_eq!(pending.source, "flatcar");
    assert_eq!(pending.new_version.as_deref(), Some("4152.2.1"));
    assert!(pending.reason.contains("4152.2.1"), "{}", pending.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_changed_polls_when_no_signal_comes() {
    let bus = DbusDaemon::start();
    let engine = UpdateEngineService::start(&bus.address(), IDLE, "0.0.0").await;
    let mut source = flatcar(&bus, Duration::from_millis(300)).await;
    assert_eq!(source.pending().await.expect("GetStatus"), None);
    // The state changes but no signal is sent: the poll fallback still wakes us.
    engine.set_quietly(NEED_REBOOT, "4152.2.1", 1.0);
    within(
        "poll fallback wakes changed()",
        Duration::from_secs(5),
        source.changed(),
    )
    .await;
    assert!(source.pending().await.expect("GetStatus").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_check_for_updates_calls_attempt_update() {
    let bus = DbusDaemon::start();
    let engine = UpdateEngineService::start(&bus.address(), IDLE, "0.0.0").await;
    let mut source = flatcar(&bus, LONG_POLL).await;
    source.check_for_updates().await.expect("AttemptUpdate");
    assert_eq!(engine.attempts(), 1);
    source.check_for_updates().await.expect("AttemptUpdate");
    assert_eq!(engine.attempts(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_verify_after_boot() {
    let bus = DbusDaemon::start();
    let engine = UpdateEngineService::start(&bus.address(), NEED_REBOOT, "4152.2.1").await;
    let mut source = flatcar(&bus, LONG_POLL).await;
    let before = source.pending().await.expect("GetStatus").expect("pending");

    // Still NEED_REBOOT (e.g. the host booted the old partition): not applied.
    match source.verify_after_boot(&before).await {
        Err(e @ UpdateError::StillPending { .. }) => {
            assert!(!e.is_transient(), "a still-pending update is a verdict");
            let UpdateError::StillPending { updater, detail } = e else {
                unreachable!()
            };
            assert_eq!(updater, "flatcar");
            assert!(
                detail.contains("4152.2.1") && detail.contains(NEED_REBOOT),
                "{detail}"
            );
        }
        other => panic!("expected StillPending, got {other:?}"),
    }

    engine.set(IDLE, "0.0.0", 0.0).await;
    source
        .verify_after_boot(&before)
        .await
        .expect("update applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_survives_update_engine_and_bus_restarts() {
    let mut bus = DbusDaemon::start();
    let engine = UpdateEngineService::start(&bus.address(), IDLE, "0.0.0").await;
    let mut source = flatcar(&bus, LONG_POLL).await;
    assert_eq!(source.pending().await.expect("GetStatus"), None);

    // update_engine goes away: a clear error naming the call and the bus, no panic.
    engine.stop().await;
    match source.pending().await {
        Err(e @ UpdateError::DbusCall { .. }) => {
            assert!(e.is_transient(), "update_engine away is worth asking again");
            let text = e.to_string();
            assert!(
                text.contains("GetStatus") && text.contains(&bus.address()),
                "{text}"
            );
        }
        other => panic!("expected DbusCall error, got {other:?}"),
    }

    // It comes back: answers again, and its signals still reach us.
    let engine = UpdateEngineService::start(&bus.address(), IDLE, "0.0.0").await;
    assert_eq!(
        source.pending().await.expect("GetStatus after restart"),
        None
    );
    engine.set(NEED_REBOOT, "4152.2.1", 1.0).await;
    within(
        "signal after update_engine restart",
        Duration::from_secs(10),
        source.changed(),
    )
    .await;
    assert!(source.pending().await.expect("GetStatus").is_some());
    drop(engine);

    // The whole bus restarts (every connection breaks): we reconnect by ourselves.
    bus.restart();
    let engine = UpdateEngineService::start(&bus.address(), IDLE, "0.0.0").await;
    assert_eq!(
        source.pending().await.expect("GetStatus after bus restart"),
        None
    );
    engine.set(NEED_REBOOT, "4153.0.0", 1.0).await;
    within(
        "signal after bus restart",
        Duration::from_secs(10),
        source.changed(),
    )
    .await;
    let pending = source.pending().await.expect("GetStatus").expect("pending");
    assert_eq!(pending.new_version.as_deref(), Some("4153.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_changed_keeps_polling_after_the_bus_died() {
    let mut bus = DbusDaemon::start();
    let engine = UpdateEngineService::start(&bus.address(), IDLE, "0.0.0").await;
    let mut source = flatcar(&bus, Duration::from_millis(300)).await;
    assert_eq!(source.pending().await.expect("GetStatus"), None);
    drop(engine);
    bus.restart();
    // The signal stream ends with the old bus; changed() must neither hang nor spin.
    let start = std::time::Instant::now();
    for _ in 0..3 {
        within(
            "changed() after bus death",
            Duration::from_secs(5),
            source.changed(),
        )
        .await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "changed() spun: {:?}",
        start.elapsed()
    );
    let _engine = UpdateEngineService::start(&bus.address(), NEED_REBOOT, "4152.2.1").await;
    assert!(source.pending().await.expect("GetStatus").is_some());
}

#[tokio::test]
async fn flatcar_without_a_bus_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let address = format!("unix:path={}", dir.path().join("no-bus").display());
    let s = settings(dir.path(), UpdateSourceKind::Flatcar, Some(address.clone()));
    let err = open_err(&s).await;
    assert!(matches!(err, UpdateError::DbusConnect { .. }), "{err}");
    assert!(err.to_string().contains(&address), "{err}");
}

// ---- apt (unattended-upgrades) ----

#[tokio::test]
async fn apt_reboot_required_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = settings(dir.path(), UpdateSourceKind::Apt, None);
    let mut source = open(&s).await;
    assert_eq!(source.name(), "apt");
    assert_eq!(source.pending().await.expect("pending"), None);

    std::fs::write(&s.reboot_required, "*** System restart required ***\n").expect("write");
    let bare = source
        .pending()
        .await
        .expect("pending")
        .expect("reboot-required exists");
    assert!(
        bare.reason.contains("reboot-required exists"),
        "{}",
        bare.reason
    );

    // Each package's postinst appends its name, so names repeat.
    let pkgs = dir.path().join("reboot-required.pkgs");
    std::fs::write(
        &pkgs,
        "linux-image-6.1.0-28-amd64\nlibc6\nlinux-image-6.1.0-28-amd64\n\n",
    )
    .expect("write");
    let before = source.pending().await.expect("pending").expect("pending");
    assert_eq!(
        before,
        PendingUpdate {
            source: "apt".into(),
            reason: "packages: linux-image-6.1.0-28-amd64, libc6".into(),
            new_version: None,
        }
    );

    match source.verify_after_boot(&before).await {
        Err(UpdateError::StillPending {
            updater: "apt",
            detail,
        }) => {
            assert!(
                detail.contains("reboot-required") && detail.contains("libc6"),
                "{detail}"
            )
        }
        other => panic!("expected StillPending, got {other:?}"),
    }
    std::fs::remove_file(&s.reboot_required).expect("rm");
    std::fs::remove_file(&pkgs).expect("rm");
    source.verify_after_boot(&before).await.expect("applied");
    assert_eq!(source.pending().await.expect("pending"), None);
}

#[tokio::test]
async fn apt_check_for_updates_runs_unattended_upgrade() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ran = dir.path().join("ran");
    let mut s = settings(dir.path(), UpdateSourceKind::Apt, None);
    s.unattended_upgrade = vec![
        "sh".into(),
        "-c".into(),
        format!("touch '{}'", ran.display()),
    ];
    let mut source = open(&s).await;
    source
        .check_for_updates()
        .await
        .expect("unattended-upgrade ran");
    assert!(ran.exists());

    s.unattended_upgrade = vec![
        "sh".into(),
        "-c".into(),
        "echo 'E: dpkg was interrupted' >&2; exit 1".into(),
    ];
    let mut source = open(&s).await;
    let err = source.check_for_updates().await.expect_err("exit 1");
    let text = err.to_string();
    assert!(
        text.contains("exit status 1") && text.contains("dpkg was interrupted"),
        "{text}"
    );

    s.unattended_upgrade = vec!["/nonexistent/unattended-upgrade".into()];
    let mut source = open(&s).await;
    let err = source.check_for_updates().await.expect_err("not installed");
    assert!(
        matches!(err, UpdateError::Command(ProcessError::Spawn { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("/nonexistent/unattended-upgrade"),
        "{err}"
    );
}

#[test]
fn apt_automatic_reboot_warning() {
    fn warning_for(files: &[(&str, &str)]) -> Option<String> {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        automatic_reboot_warning(dir.path())
    }
    let stock = r#"// Automatically reboot *WITHOUT CONFIRMATION* if
//  the file /var/run/reboot-required is found after the upgrade
//Unattended-Upgrade::Automatic-Reboot "false";
Unattended-Upgrade::Allowed-Origins {
        "${distro_id}:${distro_codename}-security";
};
"#;
    assert_eq!(warning_for(&[("50unattended-upgrades", stock)]), None);
    assert_eq!(warning_for(&[]), None);
    assert_eq!(
        automatic_reboot_warning(Path::new("/nonexistent/apt.conf.d")),
        None
    );

    for setting in [
        r#"Unattended-Upgrade::Automatic-Reboot "true";"#,
        r#"Unattended-Upgrade::Automatic-Reboot "1";"#,
        "Unattended-Upgrade::Automatic-Reboot true;",
        "unattended-upgrade::automatic-reboot \"yes\";",
        "Unattended-Upgrade {\n  Automatic-Reboot \"true\";\n  Automatic-Reboot-Time \"02:00\";\n};",
    ] {
        let warning = warning_for(&[("50unattended-upgrades", stock), ("52reboot", setting)])
            .unwrap_or_else(|| panic!("no warning for {setting:?}"));
        assert!(warning.contains("52reboot") && warning.contains("Automatic-Reboot"), "{warning}");
    }

    for setting in [
        r#"Unattended-Upgrade::Automatic-Reboot "false";"#,
        r#"// Unattended-Upgrade::Automatic-Reboot "true";"#,
        r#"# Unattended-Upgrade::Automatic-Reboot "true";"#,
        r#"/* Unattended-Upgrade::Automatic-Reboot "true"; */"#,
        r#"Unattended-Upgrade { Automatic-Reboot "false"; };"#,
        r#"Unattended-Upgrade::Automatic-Reboot-WithUsers "true";"#,
    ] {
        assert_eq!(warning_for(&[("52reboot", setting)]), None, "{setting:?}");
    }

    // apt reads files in name order and the last setting wins.
    let on = r#"Unattended-Upgrade::Automatic-Reboot "true";"#;
    let off = r#"Unattended-Upgrade::Automatic-Reboot "false";"#;
    assert_eq!(warning_for(&[("20on", on), ("99off", off)]), None);
    assert!(warning_for(&[("20off", off), ("99on", on)]).is_some());
    // ...and skips files it would not read.
    assert_eq!(warning_for(&[("99on.dpkg-old", on), ("99on~", on)]), None);
}

// ---- sentinel (kured-compatible) ----

#[tokio::test]
async fn sentinel_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("reboot-needed");
    let mut s = settings(dir.path(), UpdateSourceKind::Sentinel, None);
    s.sentinel_file = Some(file.clone());
    let mut source = open(&s).await;
    assert_eq!(source.name(), "sentinel");
    assert_eq!(source.pending().await.expect("pending"), None);
    source.check_for_updates().await.expect("nothing to do");

    std::fs::write(&file, "").expect("touch");
    let before = source
        .pending()
        .await
        .expect("pending")
        .expect("file exists");
    assert_eq!(before.source, "sentinel");
    assert!(before.reason.contains("reboot-needed"), "{}", before.reason);
    assert!(matches!(
        source.verify_after_boot(&before).await,
        Err(UpdateError::StillPending {
            updater: "sentinel",
            ..
        })
    ));
    std::fs::remove_file(&file).expect("rm");
    source.verify_after_boot(&before).await.expect("gone");
}

#[tokio::test]
async fn sentinel_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flag");
    let mut s = settings(dir.path(), UpdateSourceKind::Sentinel, None);
    s.sentinel_command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!("test -e '{}'", file.display()),
    ]);
    let mut source = open(&s).await;
    assert_eq!(source.pending().await.expect("exit 1 = no reboot"), None);

    std::fs::write(&file, "").expect("touch");
    let before = source
        .pending()
        .await
        .expect("pending")
        .expect("exit 0 = reboot");
    assert!(
        before.reason.contains("test -e") && before.reason.contains("exited 0"),
        "{}",
        before.reason
    );
    assert!(matches!(
        source.verify_after_boot(&before).await,
        Err(UpdateError::StillPending { .. })
    ));
    std::fs::remove_file(&file).expect("rm");
    source.verify_after_boot(&before).await.expect("gone");

    s.sentinel_command = Some(vec!["/nonexistent/check".into()]);
    let mut source = open(&s).await;
    let err = source.pending().await.expect_err("cannot run");
    assert!(err.to_string().contains("/nonexistent/check"), "{err}");

    s.sentinel_file = Some(file);
    assert!(matches!(open_err(&s).await, UpdateError::Settings(_)));
}

#[tokio::test]
async fn changed_is_cancel_safe_in_a_select_loop() {
    // A select loop that wakes every 50 ms (say, the watchdog) must still see the 300 ms poll.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = settings(dir.path(), UpdateSourceKind::Sentinel, None);
    s.sentinel_file = Some(dir.path().join("flag"));
    s.poll_interval = Duration::from_millis(300);
    let mut source = open(&s).await;
    let start = std::time::Instant::now();
    let mut ticks = 0;
    loop {
        tokio::select! {
            _ = source.changed() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => ticks += 1,
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "changed() never fired"
        );
    }
    assert!(
        ticks >= 3,
        "the select loop should have ticked meanwhile ({ticks})"
    );
}

// ---- auto ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_the_source_from_os_release() {
    let bus = DbusDaemon::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let s = settings(dir.path(), UpdateSourceKind::Auto, Some(bus.address()));

    let flatcar = "NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nID_LIKE=coreos\nVERSION=4152.2.1\nVERSION_ID=4152.2.1\n";
    std::fs::write(&s.os_release, flatcar).expect("write");
    assert_eq!(open(&s).await.name(), "flatcar");

    for apt_like in [
        "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\nID_LIKE=debian\n",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
        "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n",
        "ID='ubuntu'\n",
    ] {
        std::fs::write(&s.os_release, apt_like).expect("write");
        assert_eq!(open(&s).await.name(), "apt", "{apt_like}");
    }

    std::fs::write(&s.os_release, "NAME=\"Fedora Linux\"\nID=fedora\n").expect("write");
    let err = open_err(&s).await;
    let text = err.to_string();
    assert!(matches!(err, UpdateError::UnknownOs { .. }), "{text}");
    assert!(
        text.contains("fedora")
            && text.contains("os-release")
            && text.contains("set source = ")
            && text.contains("\"sentinel\""),
        "{text}"
    );

    std::fs::remove_file(&s.os_release).expect("rm");
    let err = open_err(&s).await;
    assert!(matches!(err, UpdateError::Read { .. }), "{err}");
    assert!(err.to_string().contains("os-release"), "{err}");
}
