use std::time::Duration;

use super::*;

fn cmd(script: &str, timeout_ms: u64, force: bool) -> CommandSettings {
    CommandSettings {
        command: vec!["sh".into(), "-c".into(), script.into()],
        timeout: Duration::from_millis(timeout_ms),
        force,
    }
}

#[tokio::test]
async fn hooks_get_the_lease_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = format!(
        "echo $BATON_GROUP $BATON_HOLDER $BATON_TOKEN $BATON_PHASE > {}",
        out.display()
    );
    let lease = HeldLease::from_grant("workers", "h1", 42);
    run_hooks(&[cmd(&script, 5000, false)], &lease, "draining")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out).unwrap().trim(),
        "workers h1 42 draining"
    );
}

#[tokio::test]
async fn a_failing_hook_stops_the_run_with_its_output() {
    let lease = HeldLease::from_grant("g", "h", 1);
    let err = run_hooks(
        &[
            cmd("echo draining failed >&2; exit 3", 5000, false),
            cmd("exit 0", 5000, false),
        ],
        &lease,
        "draining",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("exit status 3"), "{err}");
    assert!(err.contains("draining failed"), "{err}");
}

#[tokio::test]
async fn a_forced_hook_failure_does_not_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("second-ran");
    let lease = HeldLease::from_grant("g", "h", 1);
    run_hooks(
        &[
            cmd("exit 1", 5000, true),
            cmd(&format!("touch {}", marker.display()), 5000, false),
        ],
        &lease,
        "draining",
    )
    .await
    .unwrap();
    assert!(marker.exists());
}

#[tokio::test]
async fn a_hook_that_hangs_is_killed_at_its_timeout() {
    let started = std::time::Instant::now();
    let err = check_blockers(&[cmd("sleep 30", 200, false)])
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_it() {
    let settings = CommandSettings {
        command: vec!["/nonexistent/blocker".into()],
        timeout: Duration::from_secs(1),
        force: false,
    };
    let err = check_blockers(&[settings]).await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/blocker"), "{err}");
}
