//! How the CLI shows the fleet view (`baton hosts`): a table, or JSON with stable keys.

use std::fmt::Write as _;

use baton_proto::v1 as pb;
use serde_json::{json, Value};

use super::output::{printable, table, timestamp};
use crate::rules::fleet::DEFAULT_REPORT_INTERVAL;

/// The longest report interval among the hosts (the default when none reported).
fn longest_interval_ms(hosts: &pb::HostsResponse) -> u64 {
    hosts
        .hosts
        .iter()
        .filter_map(|h| h.report.as_ref())
        .map(|r| r.report_interval_ms)
        .max()
        .unwrap_or(DEFAULT_REPORT_INTERVAL.as_millis() as u64)
}

/// Whether the leader started its view less than one report interval ago:
/// hosts that have not reported to it yet are missing.
fn refilling(hosts: &pb::HostsResponse) -> bool {
    hosts.now_ms.saturating_sub(hosts.since_ms) < longest_interval_ms(hosts)
}

/// "4s", "3m", "2h", "5d": how long ago, coarse.
fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7_199 => format!("{}m", s / 60),
        7_200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The pending update in a table cell: its version, else its reason.
fn pending_cell(pending: Option<&pb::PendingReboot>) -> String {
    match pending {
        None => "-".to_string(),
        Some(p) => match p.version.as_deref().filter(|v| !v.is_empty()) {
            Some(version) => format!("{} {}", p.source, version),
            None => {
                let reason: String = p.reason.chars().take(40).collect();
                let cut = if p.reason.chars().count() > 40 {
                    "…"
                } else {
                    ""
                };
                format!("{}: {reason}{cut}", p.source)
            }
        },
    }
}

/// The fleet view as a table for people.
pub fn hosts_text(hosts: &pb::HostsResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet view of leader {}, collecting since {}{}",
        hosts.leader,
        timestamp(hosts.since_ms),
        if refilling(hosts) {
            " (REFILLING: this leader has collected for less than one report interval; hosts that have not reported to it yet are missing)"
        } else {
            ""
        }
    );
    if hosts.dropped > 0 {
        let _ = writeln!(
            out,
            "{} hosts forgotten to stay under the limit (the least recently seen)",
            hosts.dropped
        );
    }
    if hosts.hosts.is_empty() {
        out.push_str("no host has reported yet\n");
        return out;
    }
    let mut rows = vec![[
        "HOST",
        "GROUP",
        "PHASE",
        "IN PHASE",
        "PENDING UPDATE",
        "LAST REBOOT",
        "AGENT",
        "LAST SEEN",
    ]
    .map(String::from)
    .to_vec()];
    let stale = hosts.hosts.iter().filter(|h| h.stale).count();
    for host in &hosts.hosts {
        let Some(report) = &host.report else { continue };
        rows.push(vec![
            printable(&report.name),
            printable(&report.group),
            printable(&report.phase),
            report.phase_since_ms.map_or_else(
                || "-".to_string(),
                |since| ago(hosts.now_ms.saturating_sub(since)),
            ),
            printable(&pending_cell(report.pending.as_ref())),
            report
                .last_boot_s
                .map_or_else(|| "-".to_string(), |s| timestamp(s.saturating_mul(1000))),
            printable(&report.agent_version),
            format!(
                "{} ago{}",
                ago(hosts.now_ms.saturating_sub(host.last_seen_ms)),
                if host.stale { " STALE" } else { "" }
            ),
        ]);
    }
    out.push_str(&table(&rows));
    let _ = writeln!(
        out,
        "{} hosts, {} reporting, {stale} stale (not heard of for 3 report intervals)",
        hosts.hosts.len(),
        hosts.hosts.len() - stale
    );
    out
}

/// The fleet view as JSON. These keys are a public interface: only ever add keys.
pub fn hosts_json(hosts: &pb::HostsResponse) -> Value {
    let list: Vec<Value> = hosts
        .hosts
        .iter()
        .filter_map(|host| {
            let report = host.report.as_ref()?;
            Some(json!({
                "name": report.name,
                "group": report.group,
                "phase": report.phase,
                "phase_since": report.phase_since_ms.map(timestamp),
                "pending": report.pending.as_ref().map(|p| json!({
                    "source": p.source,
                    "reason": p.reason,
                    "version": p.version,
                })),
                "last_reboot": report.last_boot_s.map(|s| timestamp(s.saturating_mul(1000))),
                "agent_version": report.agent_version,
                "report_interval_ms": report.report_interval_ms,
                "last_seen": timestamp(host.last_seen_ms),
                "last_seen_ms_ago": hosts.now_ms.saturating_sub(host.last_seen_ms),
                "stale": host.stale,
            }))
        })
        .collect();
    json!({
        "leader": hosts.leader,
        "since": timestamp(hosts.since_ms),
        "now": timestamp(hosts.now_ms),
        "refilling": refilling(hosts),
        "dropped": hosts.dropped,
        "hosts": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::HostsResponse {
        let report = |name: &str, phase: &str, pending: Option<pb::PendingReboot>| pb::HostReport {
            name: name.into(),
            group: "workers".into(),
            phase: phase.into(),
            pending,
            last_boot_s: Some(1_700_000_000),
            agent_version: "0.1.0".into(),
            report_interval_ms: 30_000,
            phase_since_ms: Some(1_000_000),
        };
        pb::HostsResponse {
            hosts: vec![
                pb::HostEntry {
                    report: Some(report(
                        "h1",
                        "waiting-for-lease",
                        Some(pb::PendingReboot {
                            source: "flatcar".into(),
                            reason: "update_engine: 4081.2.1".into(),
                            version: Some("4081.2.1".into()),
                        }),
                    )),
                    last_seen_ms: 1_100_000,
                    stale: false,
                },
                pb::HostEntry {
                    report: Some(report("h2\u{1b}[2J", "idle", None)),
                    last_seen_ms: 900_000,
                    stale: true,
                },
            ],
            leader: 2,
            since_ms: 1_000_000,
            now_ms: 1_105_000,
            dropped: 0,
        }
    }

    #[test]
    fn the_table_shows_phase_pending_update_and_staleness() {
        let text = hosts_text(&sample());
        assert!(text.contains("fleet view of leader 2"), "{text}");
        assert!(!text.contains("REFILLING"), "{text}");
        let h1 = text.lines().find(|l| l.starts_with("h1 ")).unwrap();
        assert!(h1.contains("waiting-for-lease"), "{h1}");
        assert!(h1.contains("flatcar 4081.2.1"), "{h1}");
        assert!(h1.contains("5s ago"), "{h1}");
        assert!(h1.contains("2023-11-14T22:13:20Z"), "{h1}");
        let h2 = text.lines().find(|l| l.starts_with("h2")).unwrap();
        assert!(h2.contains("3m ago STALE"), "{h2}");
        assert!(!text.contains('\u{1b}'), "no control characters: {text:?}");
        assert!(text.contains("2 hosts, 1 reporting, 1 stale"), "{text}");
    }

    #[test]
    fn a_fresh_leader_says_it_is_refilling() {
        let mut hosts = sample();
        hosts.now_ms = hosts.since_ms + 10_000;
        assert!(hosts_text(&hosts).contains("REFILLING"));
        assert_eq!(hosts_json(&hosts)["refilling"], true);
    }

    #[test]
    fn json_keeps_the_documented_shape() {
        let v = hosts_json(&sample());
        assert_eq!(v["leader"], 2);
        assert_eq!(v["refilling"], false);
        let h1 = &v["hosts"][0];
        assert_eq!(h1["name"], "h1");
        assert_eq!(h1["phase"], "waiting-for-lease");
        assert_eq!(h1["pending"]["version"], "4081.2.1");
        assert_eq!(h1["last_seen_ms_ago"], 5_000);
        assert_eq!(h1["stale"], false);
        assert!(v["hosts"][1]["pending"].is_null());
        assert_eq!(v["hosts"][1]["stale"], true);
    }
}
