//! `[metrics] listen`: real voters and a host agent scraped over HTTPS with a monitor certificate (refusals too); promtool checks the text and the alert rules.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton::Role;

use crate::http_client::{status_and_body, Client};
use crate::support::{stderr, AgentHost, TestCluster};

/// A scraper of `cluster`'s endpoints: TLS with a certificate of `role`
/// (Prometheus gets a monitor certificate).
fn scraper(cluster: &TestCluster, name: &str, role: Role) -> Client {
    let identity = cluster
        .layout
        .client_identity(name, role)
        .expect("certificate")
        .expect("a TLS cluster");
    Client::tls(&identity.ca, Some((&identity.cert, &identity.key)))
}

/// One HTTP/1.1 exchange; the answer as text.
fn try_http(client: &Client, port: u16, request: &str) -> std::io::Result<String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    client.exchange(address, request.as_bytes())
}

/// One HTTP/1.1 exchange; returns the status code and the body.
fn http(client: &Client, port: u16, request: &str) -> (u16, String) {
    status_and_body(&try_http(client, port, request).expect("metrics exchange"))
}

fn scrape(client: &Client, port: u16) -> String {
    let (status, body) = http(client, port, SCRAPE);
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample named exactly `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

const SCRAPE: &str = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Polls the metrics until `ok` holds for the text, or panics with the last
/// text. The endpoint opens once the daemon has started its parts.
fn scrape_until(client: &Client, port: u16, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = match try_http(client, port, SCRAPE) {
            Ok(answer) => answer,
            Err(e) => format!("({e})"),
        };
        if text.starts_with("HTTP/1.1 200") && ok(&text) {
            return text
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_string())
                .unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "{what}; last scrape:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("promtool not installed (Debian package prometheus): check skipped");
    }
    found.then_some("promtool")
}

/// `promtool check metrics` on a scrape: the text must pass, lint included.
fn promtool_accepts(text: &str) {
    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics rejects the scrape: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn voters_serve_lease_and_raft_metrics() {
    let ports: Vec<u16> = (0..3)
        .map(|_| baton::free_port().expect("free port"))
        .collect();
    let cluster = TestCluster::start_with_drop_ins(3, "", &|i| {
        Some(format!("[metrics]\nlisten = \"127.0.0.1:{}\"\n", ports[i]))
    });
    cluster.wait_for_leader(Duration::from_secs(10));
    let client = scraper(&cluster, "prometheus", Role::Monitor);
    // Counters count what is applied once the endpoint is up.
    for &port in &ports {
        scrape_until(&client, port, "the endpoint is up", |_| true);
    }
    let out = cluster.cli(&["lease", "acquire", "workers", "--holder", "h1"]);
    assert!(out.status.success(), "acquire: {}", stderr(&out));

    // Every voter applies the grant and counts it.
    let mut texts = Vec::new();
    for &port in &ports {
        texts.push(scrape_until(
            &client,
            port,
            "one holder of workers",
            |text| {
                value(text, "baton_lease_holders{group=\"workers\"}") == Some(1.0)
                    && value(text, "baton_lease_grants_total{group=\"workers\"}")
                        .is_some_and(|n| n >= 1.0)
            },
        ));
    }
    let text = &texts[0];
    for series in [
        "baton_lease_queue_length{group=\"workers\"}",
        "baton_lease_max_holders{group=\"workers\"}",
        "baton_lease_paused{group=\"workers\"}",
        "baton_lease_oldest_hold_seconds{group=\"workers\"}",
        "baton_raft_applied_index",
        "baton_raft_last_log_index",
    ] {
        assert!(value(text, series).is_some(), "{series} missing:\n{text}");
    }
    assert_eq!(
        value(text, "baton_lease_paused{group=\"workers\"}"),
        Some(0.0)
    );
    assert_eq!(value(text, "baton_raft_voters"), Some(3.0), "{text}");
    // The acquire was timed where it arrived (and where it was forwarded to).
    assert!(
        texts.iter().any(|t| value(
            t,
            "baton_grpc_call_duration_seconds_count{call=\"Lease/Acquire\"}"
        )
        .is_some_and(|n| n >= 1.0)),
        "{texts:#?}"
    );
    // One leader, all in the same term >= 1.
    let leaders: f64 = texts
        .iter()
        .map(|t| value(t, "baton_raft_is_leader").unwrap_or(0.0))
        .sum();
    assert_eq!(leaders, 1.0, "{texts:#?}");
    let terms: Vec<_> = texts
        .iter()
        .map(|t| value(t, "baton_raft_term").unwrap_or(0.0))
        .collect();
    assert!(
        terms.iter().all(|t| *t >= 1.0 && *t == terms[0]),
        "{terms:?}"
    );
    // The leader hears from every voter.
    let leader = texts
        .iter()
        .position(|t| value(t, "baton_raft_is_leader") == Some(1.0))
        .expect("a leader");
    scrape_until(
        &client,
        ports[leader],
        "leader reaches all voters",
        |text| value(text, "baton_raft_peers_reachable") == Some(3.0),
    );

    // A release counts; holders go back to 0.
    let out = cluster.cli(&["lease", "release", "workers", "--holder", "h1"]);
    assert!(out.status.success(), "release: {}", stderr(&out));
    scrape_until(&client, ports[0], "the release counted", |text| {
        value(text, "baton_lease_holders{group=\"workers\"}") == Some(0.0)
            && value(text, "baton_lease_releases_total{group=\"workers\"}") == Some(1.0)
    });

    // The Control service: a held host and a reboot asked for show on every
    // voter (applied state), and the calls are timed; unheld, the gauge is 0.
    assert_eq!(value(text, "baton_control_held_hosts"), Some(0.0), "{text}");
    assert_eq!(
        value(text, "baton_control_reboot_now_pending"),
        Some(0.0),
        "{text}"
    );
    let out = cluster.cli(&["hold", "h2", "--reason", "disk swap"]);
    assert!(out.status.success(), "hold: {}", stderr(&out));
    let out = cluster.cli(&["reboot-now", "h3"]);
    assert!(out.status.success(), "reboot-now: {}", stderr(&out));
    let texts: Vec<String> = ports
        .iter()
        .map(|&port| {
            scrape_until(&client, port, "h2 held, h3 asked to reboot", |text| {
                value(text, "baton_control_held_hosts") == Some(1.0)
                    && value(text, "baton_control_reboot_now_pending") == Some(1.0)
            })
        })
        .collect();
    for call in ["Control/Hold", "Control/RebootNow"] {
        let series = format!("baton_grpc_call_duration_seconds_count{{call=\"{call}\"}}");
        assert!(
            texts
                .iter()
                .any(|t| value(t, &series).is_some_and(|n| n >= 1.0)),
            "{series} not counted: {texts:#?}"
        );
    }
    let out = cluster.cli(&["unhold", "h2"]);
    assert!(out.status.success(), "unhold: {}", stderr(&out));
    scrape_until(&client, ports[0], "h2 unheld", |text| {
        value(text, "baton_control_held_hosts") == Some(0.0)
    });

    // Only GET /metrics.
    let (status, _) = http(
        &client,
        ports[0],
        "GET /other HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
    let (status, _) = http(
        &client,
        ports[0],
        "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    // A request head beyond the bound is refused, and the voter serves on.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // (The server may close before the whole head is sent: a write error.)
    if let Ok(answer) = try_http(&client, ports[0], &huge) {
        assert!(!answer.starts_with("HTTP/1.1 200"), "served: {answer:.200}");
    }
    scrape(&client, ports[0]);

    // A scraper that asks for OpenMetrics gets it.
    let (status, body) = http(
        &client,
        ports[0],
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE baton_lease_grants counter"), "{body}");

    promtool_accepts(&scrape(&client, ports[leader]));

    // Only monitor and admin certificates read metrics: no certificate, a
    // host's or a voter's is refused (403), plaintext gets no HTTP answer.
    let identity = cluster
        .layout
        .client_identity("h9", Role::Host)
        .expect("certificate")
        .expect("a TLS cluster");
    let anonymous = Client::tls(&identity.ca, None);
    let (status, body) = http(&anonymous, ports[0], SCRAPE);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("role monitor or admin"), "{body}");
    let host = Client::tls(&identity.ca, Some((&identity.cert, &identity.key)));
    let (status, body) = http(&host, ports[0], SCRAPE);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("only monitor and admin certificates may read metrics"),
        "{body}"
    );
    let admin = scraper(&cluster, "ops", Role::Admin);
    assert_eq!(http(&admin, ports[0], SCRAPE).0, 200);
    if let Ok(answer) = try_http(&Client::Plain, ports[0], SCRAPE) {
        assert!(
            !answer.contains("HTTP/1.1"),
            "plaintext answered: {answer:.200}"
        );
    }
    assert!(
        cluster.log(0).contains("refused"),
        "the refusal is logged:\n{}",
        cluster.log(0)
    );
}

#[test]
fn a_host_agent_serves_its_phase_and_pending_reboot() {
    let cluster = TestCluster::start(1, "");
    let port = baton::free_port().expect("free port");
    let mut host = AgentHost::new(
        &cluster,
        "h1",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    host.start();
    let client = scraper(&cluster, "prometheus", Role::Monitor);
    let text = scrape_until(&client, port, "the agent reports idle", |text| {
        value(text, "baton_host_phase{phase=\"idle\"}") == Some(1.0)
    });
    assert_eq!(
        value(&text, "baton_host_reboot_required{version=\"\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(value(&text, "baton_host_drain_failures_total"), Some(0.0));
    assert_eq!(value(&text, "baton_host_hook_failures_total"), Some(0.0));
    assert!(
        value(&text, "baton_host_last_reboot_timestamp_seconds").is_some_and(|t| t > 0.0),
        "{text}"
    );
    // No voter here: no lease or raft metrics.
    assert!(!text.contains("baton_raft_"), "{text}");

    host.update_pending();
    let text = scrape_until(&client, port, "a reboot is required", |text| {
        value(text, "baton_host_reboot_required{version=\"\"}") == Some(1.0)
            && value(text, "baton_host_phase{phase=\"idle\"}") == Some(0.0)
    });
    promtool_accepts(&text);
}

#[test]
fn a_remote_metrics_address_is_a_config_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::support::write_file(
        dir.path(),
        "baton.toml",
        "[node]\nname = \"h1\"\n\n[metrics]\nlisten = \"0.0.0.0:9464\"\n",
    );
    let out = Command::new(crate::support::baton_bin())
        .args(["agent", "--config"])
        .arg(&config)
        .arg("--vendor-dir")
        .arg(dir.path().join("none"))
        .output()
        .expect("run baton agent");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let at = format!("{}:5:", config.display());
    assert!(err.contains(&at), "expected {at} in: {err}");
    assert!(err.contains("metrics.listen"), "{err}");
    assert!(err.contains("allow_remote"), "{err}");
}

#[test]
fn the_alert_rules_pass_promtool() {
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/prometheus/baton-rules.yml");
    assert!(rules.is_file(), "{} missing", rules.display());
    let Some(promtool) = promtool() else { return };
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}
