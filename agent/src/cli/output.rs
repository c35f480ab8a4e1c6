//! How the CLI shows cluster status: a readable table, or JSON with stable keys.

use std::fmt::Write as _;

use baton_proto::v1 as pb;
use serde_json::{json, Map, Value};

/// Unix milliseconds as an RFC 3339 timestamp (UTC), or the number if out of range.
pub fn timestamp(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Unix seconds as an RFC 3339 timestamp (UTC).
fn seconds(s: i64) -> String {
    jiff::Timestamp::from_second(s).map_or_else(|_| s.to_string(), |t| t.to_string())
}

/// Text from the network as it may be printed: control characters (which
/// could move the cursor or recolour a terminal) become '?'.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The status as JSON. These keys are a public interface: scripts and tests
/// depend on them, so only ever add keys.
pub fn status_json(status: &pb::StatusResponse) -> Value {
    let voters: Vec<Value> = status
        .voters
        .iter()
        .map(|v| json!({"id": v.id, "name": v.name, "address": v.address, "reachable": v.reachable, "matched": v.matched, "stored": v.stored, "cert_expires": v.cert_expires.map(seconds)}))
        .collect();
    let mut groups = Map::new();
    for g in &status.groups {
        groups.insert(
            g.name.clone(),
            json!({
                "max_holders": g.max_holders,
                "paused": g.paused,
                "paused_by": g.paused_by,
                "paused_at": g.paused_at_ms.map(timestamp),
                "settling_until": g.settling_until_ms.iter().map(|&t| timestamp(t)).collect::<Vec<_>>(),
                "holders": g.holders.iter().map(|h| json!({
                    "holder": h.holder,
                    "token": h.token,
                    "since": timestamp(h.since_ms),
                    "machine_id": h.machine_id,
                    "claimed": h.claimed,
                })).collect::<Vec<_>>(),
                "queue": g.queue.iter().map(|w| json!({
                    "holder": w.holder,
                    "position": w.position,
                    "since": timestamp(w.since_ms),
                    // Kept for scripts; waiters live on sessions now, with no deadline.
                    "expires": Value::Null,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    json!({
        "leader": status.leader,
        "term": status.term,
        "voters": voters,
        "groups": groups,
        "paused_all": status.paused_all,
        "paused_all_by": status.paused_all_by,
        "paused_all_at": status.paused_all_at_ms.map(timestamp),
        "insecure": status.insecure,
        "last_applied": status.last_applied,
        "served_by": status.served_by,
        "snapshot": status.snapshot,
        "purged": status.purged,
        "reporting_hosts": status.reporting_hosts,
        "settle_ms": status.settle_ms,
        "held_hosts": status.held_hosts.iter().map(|h| json!({
            "holder": h.holder,
            "reason": h.reason,
            "by": h.by,
            "at": timestamp(h.at_ms),
        })).collect::<Vec<_>>(),
        "reboot_now": status.reboot_now.iter().map(|r| json!({
            "holder": r.holder,
            "by": r.by,
            "at": timestamp(r.at_ms),
        })).collect::<Vec<_>>(),
    })
}

/// Pads each column of `rows` to its widest cell.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// " by NAME at TIME" of a pause, when known.
fn paused_by(by: Option<&str>, at_ms: Option<u64>) -> String {
    let mut text = String::new();
    if let Some(by) = by.filter(|b| !b.is_empty()) {
        text.push_str(&format!(" by {}", printable(by)));
    }
    if let Some(at) = at_ms {
        text.push_str(&format!(" at {}", timestamp(at)));
    }
    text
}

/// A settle time in words: "300s", "1.5s".
fn settle_words(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

/// The status as tables for people.
pub fn status_text(status: &pb::StatusResponse) -> String {
    let mut out = String::new();
    let leader = status
        .leader
        .map(|id| id.to_string())
        .unwrap_or_else(|| "none".to_string());
    let _ = writeln!(out, "leader: {leader}   term: {}", status.term);
    if status.insecure {
        let _ = writeln!(
            out,
            "WARNING: this cluster runs without TLS ([tls] insecure = true): anyone who reaches a voter may call it"
        );
    }
    if let Some(reason) = &status.paused_all {
        let _ = writeln!(
            out,
            "ALL GROUPS PAUSED{}: {}",
            paused_by(status.paused_all_by.as_deref(), status.paused_all_at_ms),
            printable(reason)
        );
    }
    if status.settle_ms > 0 {
        let _ = writeln!(
            out,
            "settle time between hosts: {}",
            settle_words(status.settle_ms)
        );
    }
    out.push('\n');
    let mut voters = vec![vec![
        "VOTER".to_string(),
        "NAME".to_string(),
        "ADDRESS".to_string(),
        "REACHABLE".to_string(),
        "ROLE".to_string(),
        "CERTIFICATE EXPIRES".to_string(),
    ]];
    for v in &status.voters {
        voters.push(vec![
            v.id.to_string(),
            v.name.clone(),
            v.address.clone(),
            if v.reachable { "yes" } else { "NO" }.to_string(),
            if status.leader == Some(v.id) {
                "leader"
            } else {
                "follower"
            }
            .to_string(),
            v.cert_expires.map_or_else(|| "-".to_string(), seconds),
        ]);
    }
    out.push_str(&table(&voters));
    // The fleet view: counted by the leader (`baton hosts` lists it).
    match status.reporting_hosts {
        Some(n) => {
            let _ = writeln!(out, "\nhosts: {n} reporting (baton hosts lists them)");
        }
        None => out.push_str("\nhosts: baton hosts lists them\n"),
    }
    for h in &status.held_hosts {
        let _ = writeln!(
            out,
            "HELD {} by {} at {}: {} (does not queue; baton unhold {0})",
            printable(&h.holder),
            printable(&h.by),
            timestamp(h.at_ms),
            printable(&h.reason)
        );
    }
    for r in &status.reboot_now {
        let _ = writeln!(
            out,
            "REBOOT NOW {} (asked by {} at {}; outside its window, at its next check)",
            printable(&r.holder),
            printable(&r.by),
            timestamp(r.at_ms)
        );
    }
    if status.groups.is_empty() {
        out.push_str("\nno lease groups yet (a group appears on first use)\n");
        return out;
    }
    for g in &status.groups {
        let _ = writeln!(
            out,
            "\ngroup {}: {} of {} held{}",
            g.name,
            g.holders.len(),
            g.max_holders,
            g.paused
                .as_ref()
                .map(|r| format!(
                    ", PAUSED{}: {}",
                    paused_by(g.paused_by.as_deref(), g.paused_at_ms),
                    printable(r)
                ))
                .unwrap_or_default()
        );
        let mut rows = vec![vec![
            "STATE".to_string(),
            "HOLDER".to_string(),
            "TOKEN".to_string(),
            "SINCE".to_string(),
        ]];
        for h in &g.holders {
            rows.push(vec![
                if h.claimed { "holding" } else { "handed over" }.to_string(),
                printable(&h.holder),
                h.token.to_string(),
                timestamp(h.since_ms),
            ]);
        }
        for w in &g.queue {
            rows.push(vec![
                format!("queued #{}", w.position),
                printable(&w.holder),
                "-".to_string(),
                timestamp(w.since_ms),
            ]);
        }
        for &until in &g.settling_until_ms {
            rows.push(vec![
                "settling".to_string(),
                "(free slot)".to_string(),
                "-".to_string(),
                format!("opens {}", timestamp(until)),
            ]);
        }
        if rows.len() > 1 {
            out.push_str(&table(&rows));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::StatusResponse {
        pb::StatusResponse {
            leader: Some(2),
            term: 7,
            voters: vec![pb::Voter {
                id: 2,
                name: "cp-2".into(),
                address: "127.0.0.1:7422".into(),
                reachable: true,
                matched: Some(40),
                cert_expires: None,
                stored: true,
            }],
            groups: vec![pb::GroupStatus {
                name: "workers".into(),
                max_holders: 1,
                paused: None,
                paused_by: None,
                paused_at_ms: None,
                settling_until_ms: vec![90_000],
                holders: vec![pb::Holder {
                    holder: "h1".into(),
                    token: 12,
                    machine_id: String::new(),
                    since_ms: 0,
                    claimed: true,
                }],
                queue: vec![pb::Waiter {
                    holder: "h2".into(),
                    position: 1,
                    since_ms: 0,
                    expires_ms: 30_000,
                }],
            }],
            paused_all: None,
            last_applied: 40,
            served_by: 2,
            snapshot: None,
            purged: None,
            insecure: false,
            paused_all_by: None,
            paused_all_at_ms: None,
            reporting_hosts: Some(2),
            settle_ms: 300_000,
            held_hosts: vec![pb::HostHold {
                holder: "h3".into(),
                reason: "disk".into(),
                by: "ops".into(),
                at_ms: 0,
            }],
            reboot_now: vec![pb::RebootNowEntry {
                holder: "h4".into(),
                by: "ops".into(),
                at_ms: 0,
            }],
        }
    }

    #[test]
    fn json_keeps_the_documented_shape() {
        let v = status_json(&sample());
        assert_eq!(v["leader"], 2);
        assert_eq!(v["term"], 7);
        assert_eq!(v["voters"][0]["reachable"], true);
        let g = &v["groups"]["workers"];
        assert_eq!(g["max_holders"], 1);
        assert!(g["paused"].is_null());
        assert_eq!(g["holders"][0]["holder"], "h1");
        assert_eq!(g["holders"][0]["token"], 12);
        assert_eq!(g["holders"][0]["since"], "1970-01-01T00:00:00Z");
        assert_eq!(g["queue"][0]["position"], 1);
        assert_eq!(g["settling_until"][0], "1970-01-01T00:01:30Z");
        assert_eq!(v["settle_ms"], 300_000);
        assert_eq!(v["held_hosts"][0]["reason"], "disk");
        assert_eq!(v["reboot_now"][0]["holder"], "h4");
    }

    #[test]
    fn text_lists_holders_and_queue() {
        let text = status_text(&sample());
        assert!(text.contains("leader: 2"), "{text}");
        assert!(text.contains("group workers: 1 of 1 held"), "{text}");
        assert!(text.contains("queued #1"), "{text}");
        assert!(
            text.contains("hosts: 2 reporting (baton hosts lists them)"),
            "{text}"
        );
        assert_eq!(status_json(&sample())["reporting_hosts"], 2);
        assert!(text.contains("settle time between hosts: 300s"), "{text}");
        assert!(
            text.contains("HELD h3 by ops at 1970-01-01T00:00:00Z: disk"),
            "{text}"
        );
        assert!(text.contains("REBOOT NOW h4 (asked by ops"), "{text}");
        assert!(
            text.contains("settling") && text.contains("opens 1970-01-01T00:01:30Z"),
            "{text}"
        );
    }
}
