//! The fleet view's rules: what a host report may hold, the bounded table of reports, staleness.
//!
//! Every host agent reports what it does (phase, pending update, last boot,
//! version) on every phase change and at least once per report interval.
//! The leader keeps the latest report of each host in memory, not in the
//! raft log: a [`FleetTable`]. It holds at most `MAX_FLEET_HOSTS` hosts;
//! a new host over that makes the host heard from least recently be
//! forgotten (a live host comes back at its next report, a dead one stays
//! out). A host is stale when it has not been heard from for
//! [`STALE_AFTER_INTERVALS`] of its own report intervals. After a leader
//! change the new leader starts an empty table (`reset`): it refills
//! within one report interval.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::rules::limits::{
    MAX_REPORT_INTERVAL_MS, MAX_REPORT_REASON_LEN, MAX_REPORT_WORD_LEN, MIN_REPORT_INTERVAL_MS,
};
use crate::rules::names::{check_group, check_holder, check_text, NameError};
use crate::rules::phases::PHASE_NAMES;

/// How often a host agent reports when nothing changes (the default of
/// `[updates] report_interval`).
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// A host not heard from for this many of its report intervals is stale.
pub const STALE_AFTER_INTERVALS: u64 = 3;

/// A report's fields, borrowed from wherever it arrived (the gRPC message).
#[derive(Debug, Clone, Copy)]
pub struct ReportFields<'a> {
    pub name: &'a str,
    pub group: &'a str,
    pub phase: &'a str,
    /// The pending update: source, reason, version.
    pub pending: Option<(&'a str, &'a str, Option<&'a str>)>,
    pub agent_version: &'a str,
    pub report_interval_ms: u64,
}

/// Why a report is refused (the reporter sees `InvalidArgument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("report field {field} {value:?}: {source}")]
    Field {
        field: &'static str,
        value: String,
        source: NameError,
    },
    #[error("report field phase {0:?}: not a phase of the host agent (one of {PHASE_NAMES:?})")]
    Phase(String),
    #[error(
        "report field report_interval_ms {0}: must be {MIN_REPORT_INTERVAL_MS} to {MAX_REPORT_INTERVAL_MS}"
    )]
    Interval(u64),
}

/// Shown in an error: at most the start of a long value.
fn shown(value: &str) -> String {
    value.chars().take(80).collect()
}

fn field(name: &'static str, value: &str, check: Result<(), NameError>) -> Result<(), ReportError> {
    check.map_err(|source| ReportError::Field {
        field: name,
        value: shown(value),
        source,
    })
}

/// Every field of a report within its limit: the host and group by the
/// names' rules, the phase one of the agent's, texts short and without
/// control characters, the interval in range.
pub fn check_report(report: &ReportFields<'_>) -> Result<(), ReportError> {
    field("name", report.name, check_holder(report.name))?;
    field("group", report.group, check_group(report.group))?;
    if !PHASE_NAMES.contains(&report.phase) {
        return Err(ReportError::Phase(shown(report.phase)));
    }
    if let Some((source, reason, version)) = report.pending {
        field(
            "pending.source",
            source,
            check_text(source, MAX_REPORT_WORD_LEN),
        )?;
        field(
            "pending.reason",
            reason,
            check_text(reason, MAX_REPORT_REASON_LEN),
        )?;
        if let Some(version) = version {
            field(
                "pending.version",
                version,
                check_text(version, MAX_REPORT_WORD_LEN),
            )?;
        }
    }
    field(
        "agent_version",
        report.agent_version,
        check_text(report.agent_version, MAX_REPORT_WORD_LEN),
    )?;
    if !(MIN_REPORT_INTERVAL_MS..=MAX_REPORT_INTERVAL_MS).contains(&report.report_interval_ms) {
        return Err(ReportError::Interval(report.report_interval_ms));
    }
    Ok(())
}

/// A text cut to `max` characters, control characters replaced, so that
/// what an agent reports passes [`check_report`] (a long apt package list).
pub fn fit_text(text: &str, max: usize) -> String {
    let mut fitted: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max && max > 0 {
        fitted.pop();
        fitted.push('…');
    }
    fitted
}

/// One host in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<R> {
    pub report: R,
    /// When the leader last heard of it (unix ms, the leader's clock).
    pub last_seen_ms: u64,
    pub report_interval_ms: u64,
    /// Its place in the order of recency (see `FleetTable::recency`).
    seq: u64,
}

impl<R> Entry<R> {
    /// Not heard of for more than [`STALE_AFTER_INTERVALS`] of its intervals.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_seen_ms)
            > self
                .report_interval_ms
                .saturating_mul(STALE_AFTER_INTERVALS)
    }
}

/// The latest report of each host, bounded; kept by the leader.
#[derive(Debug, Clone)]
pub struct FleetTable<R> {
    hosts: HashMap<String, Entry<R>>,
    /// Hosts by when they were last heard of (oldest first).
    recency: BTreeMap<u64, String>,
    next_seq: u64,
    max_hosts: usize,
    /// Since when this table collects (unix ms): a new leader's start.
    since_ms: u64,
    /// Hosts forgotten to stay under `max_hosts`, since `since_ms`.
    dropped: u64,
}

impl<R> FleetTable<R> {
    /// An empty table of at most `max_hosts` hosts (at least one; the
    /// daemon's is `MAX_FLEET_HOSTS`), collecting from `since_ms`.
    pub fn with_capacity(since_ms: u64, max_hosts: usize) -> Self {
        FleetTable {
            hosts: HashMap::new(),
            recency: BTreeMap::new(),
            next_seq: 0,
            max_hosts: max_hosts.max(1),
            since_ms,
            dropped: 0,
        }
    }

    pub fn since_ms(&self) -> u64 {
        self.since_ms
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Keeps `report` as `name`'s latest, heard of at `now_ms`. A new host
    /// in a full table makes the one heard from least recently go.
    pub fn record(&mut self, name: &str, report_interval_ms: u64, report: R, now_ms: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(entry) = self.hosts.get_mut(name) {
            self.recency.remove(&entry.seq);
            entry.report = report;
            entry.last_seen_ms = now_ms;
            entry.report_interval_ms = report_interval_ms;
            entry.seq = seq;
        } else {
            while self.hosts.len() >= self.max_hosts {
                let Some((_, oldest)) = self.recency.pop_first() else {
                    break;
                };
                self.hosts.remove(&oldest);
                self.dropped += 1;
            }
            self.hosts.insert(
                name.to_string(),
                Entry {
                    report,
                    last_seen_ms: now_ms,
                    report_interval_ms,
                    seq,
                },
            );
        }
        self.recency.insert(seq, name.to_string());
    }

    /// Every host with its entry, by name.
    pub fn entries(&self) -> Vec<(&str, &Entry<R>)> {
        let mut all: Vec<(&str, &Entry<R>)> = self
            .hosts
            .iter()
            .map(|(name, entry)| (name.as_str(), entry))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// Hosts heard from within their stale limit at `now_ms`.
    pub fn reporting(&self, now_ms: u64) -> usize {
        self.hosts.values().filter(|e| !e.is_stale(now_ms)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(name: &'a str, phase: &'a str) -> ReportFields<'a> {
        ReportFields {
            name,
            group: "workers",
            phase,
            pending: Some(("flatcar", "update to 4081.2.1", Some("4081.2.1"))),
            agent_version: "0.1.0",
            report_interval_ms: 30_000,
        }
    }

    #[test]
    fn every_field_is_checked() {
        assert!(check_report(&report("h1", "waiting-for-lease")).is_ok());
        let long = "x".repeat(MAX_REPORT_REASON_LEN + 1);
        let cases: Vec<(ReportFields<'_>, &str)> = vec![
            (report("", "idle"), "report field name"),
            (report("localhost", "idle"), "names every host"),
            (report("a b", "idle"), "report field name"),
            (report("h1", "sleeping"), "not a phase"),
            (
                ReportFields {
                    group: "a/b",
                    ..report("h1", "idle")
                },
                "report field group",
            ),
            (
                ReportFields {
                    pending: Some(("apt", &long, None)),
                    ..report("h1", "idle")
                },
                "pending.reason",
            ),
            (
                ReportFields {
                    pending: Some(("apt", "x", Some("1\u{1b}[2J"))),
                    ..report("h1", "idle")
                },
                "pending.version",
            ),
            (
                ReportFields {
                    agent_version: &long,
                    ..report("h1", "idle")
                },
                "agent_version",
            ),
            (
                ReportFields {
                    report_interval_ms: 10,
                    ..report("h1", "idle")
                },
                "report_interval_ms",
            ),
            (
                ReportFields {
                    report_interval_ms: MAX_REPORT_INTERVAL_MS + 1,
                    ..report("h1", "idle")
                },
                "report_interval_ms",
            ),
        ];
        for (fields, says) in cases {
            let error = check_report(&fields).unwrap_err().to_string();
            assert!(error.contains(says), "{fields:?}: {error}");
            // A long value is not echoed whole.
            assert!(error.len() < 400, "{error}");
        }
    }

    #[test]
    fn fitted_text_passes_the_check() {
        let reason = format!("packages: {}\nmore", "linux-image ".repeat(200));
        let fitted = fit_text(&reason, MAX_REPORT_REASON_LEN);
        assert_eq!(fitted.chars().count(), MAX_REPORT_REASON_LEN);
        assert!(fitted.ends_with('…'));
        assert!(check_text(&fitted, MAX_REPORT_REASON_LEN).is_ok());
        assert_eq!(fit_text("short", 64), "short");
    }

    #[test]
    fn latest_report_wins_and_staleness_follows_each_hosts_interval() {
        let mut table = FleetTable::with_capacity(1_000, crate::rules::limits::MAX_FLEET_HOSTS);
        table.record("h1", 1_000, "idle", 2_000);
        table.record("h2", 30_000, "idle", 2_000);
        table.record("h1", 1_000, "draining", 2_500);
        assert_eq!(table.hosts.len(), 2);
        let entries = table.entries();
        assert_eq!(entries[0].0, "h1");
        assert_eq!(entries[0].1.report, "draining");
        assert_eq!(entries[0].1.last_seen_ms, 2_500);
        // h1 reports every second: stale after 3 s unheard; h2 after 90 s.
        assert!(!entries[0].1.is_stale(5_500));
        assert!(entries[0].1.is_stale(5_501));
        assert!(!entries[1].1.is_stale(92_000));
        assert!(entries[1].1.is_stale(92_001));
        assert_eq!(table.reporting(5_501), 1);
        assert_eq!(table.reporting(100_000), 0);
        // A clock that went back is not stale.
        assert!(!entries[0].1.is_stale(0));
    }

    #[test]
    fn a_full_table_forgets_the_host_heard_from_least_recently() {
        let mut table = FleetTable::with_capacity(0, 3);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            table.record(name, 1_000, i, i as u64);
        }
        // "a" reports again: "b" is now the one heard from least recently.
        table.record("a", 1_000, 10, 10);
        table.record("d", 1_000, 11, 11);
        let names: Vec<&str> = table.entries().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a", "c", "d"]);
        assert_eq!(table.dropped(), 1);
        table.record("e", 1_000, 12, 12);
        let names: Vec<&str> = table.entries().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a", "d", "e"]);
        assert_eq!(table.hosts.len(), 3);
        assert_eq!(table.dropped(), 2);
        assert_eq!(table.since_ms(), 0);
    }

    #[test]
    fn the_table_never_grows_past_its_cap() {
        let mut table = FleetTable::with_capacity(0, 100);
        for i in 0..1_000u64 {
            table.record(&format!("h{}", i % 250), 1_000, i, i);
            assert!(table.hosts.len() <= 100);
            assert_eq!(table.recency.len(), table.hosts.len());
        }
        assert_eq!(table.hosts.len(), 100);
        // The 100 heard from last are those kept.
        let kept: Vec<u64> = table.entries().iter().map(|(_, e)| e.report).collect();
        assert!(kept.iter().all(|&i| i >= 900), "{kept:?}");
    }
}
