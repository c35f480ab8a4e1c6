//! Bad configuration as an operator writes it: `baton agent` exits 78 naming file, key, line.

use std::process::Command;

use crate::support::{baton_bin, stderr, write_file};

const GOOD: &str = r#"[node]
name = "cp-1"
state_dir = "/tmp/baton-config-test"

[cluster]
listen = "127.0.0.1:7421"
voters = [
  { id = 1, name = "cp-1", address = "127.0.0.1:7421" },
  { id = 2, name = "cp-2", address = "127.0.0.1:7422" },
]

[lease]
waiter_ttl = "30s"
"#;

/// Runs `baton agent` on a config with `from` replaced by `to`; returns (exit code, stderr, path).
fn agent_with(from: &str, to: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    assert!(GOOD.contains(from), "{from}");
    let path = write_file(dir.path(), "baton.toml", &GOOD.replacen(from, to, 1));
    let out = Command::new(baton_bin())
        .args(["agent", "--config"])
        .arg(&path)
        .arg("--vendor-dir")
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    (out.status.code(), stderr(&out), path.display().to_string())
}

fn assert_names(from: &str, to: &str, line: usize, key: &str) {
    let (code, err, path) = agent_with(from, to);
    assert_eq!(code, Some(78), "{err}");
    let at = format!("{path}:{line}:");
    assert!(err.contains(&at), "expected {at} in: {err}");
    assert!(err.contains(key), "expected key {key} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn syntax_error() {
    let (code, err, path) = agent_with("waiter_ttl = \"30s\"", "waiter_ttl = \"30s");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains(&format!("{path}:13")), "{err}");
}

#[test]
fn unknown_key() {
    assert_names("waiter_ttl", "waiter_tll", 13, "lease.waiter_tll");
}

#[test]
fn unknown_key_in_a_voter() {
    assert_names(
        "{ id = 2, name",
        "{ id = 2, nmae",
        9,
        "cluster.voters[1].nmae",
    );
}

#[test]
fn wrong_type() {
    assert_names(
        "waiter_ttl = \"30s\"",
        "waiter_ttl = 30",
        13,
        "lease.waiter_ttl",
    );
}

#[test]
fn bad_duration() {
    assert_names(
        "waiter_ttl = \"30s\"",
        "waiter_ttl = \"thirty\"",
        13,
        "lease.waiter_ttl",
    );
}

#[test]
fn bad_listen_address() {
    assert_names(
        "listen = \"127.0.0.1:7421\"",
        "listen = \"127.0.0.1:99999\"",
        6,
        "cluster.listen",
    );
}

#[test]
fn bad_voter_address() {
    assert_names(
        "address = \"127.0.0.1:7422\"",
        "address = \"127.0.0.1\"",
        9,
        "cluster.voters[1].address",
    );
}

#[test]
fn duplicate_voter_id() {
    assert_names(
        "{ id = 2, name",
        "{ id = 1, name",
        9,
        "cluster.voters[1].id",
    );
}

#[test]
fn bad_group_name() {
    assert_names(
        "name = \"cp-1\"\n",
        "name = \"cp-1\"\ngroup = \"a b\"\n",
        3,
        "node.group",
    );
}

#[test]
fn missing_file_names_the_path() {
    let out = Command::new(baton_bin())
        .args([
            "agent",
            "--config",
            "/nonexistent/baton.toml",
            "--vendor-dir",
            "/nonexistent/vendor",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("/nonexistent/baton.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_voter_without_listen_is_told_so() {
    let (code, err, path) = agent_with("listen = \"127.0.0.1:7421\"\n", "");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains(&path), "{err}");
    assert!(err.contains("cluster.listen"), "{err}");
}
