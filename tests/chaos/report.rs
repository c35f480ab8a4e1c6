//! The figures of a run and the JSON line that sums it up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::clients::ms;
use super::voters::Chaos;

/// The figures of one return: a voter back from a kill, a pause, an
/// isolation or a cut.
pub(super) struct Return {
    pub(super) fault: &'static str,
    pub(super) voter: usize,
    /// The cluster's term just before the voter came back.
    pub(super) term_before: u64,
    /// The voter's own term as it came back (when known).
    pub(super) returning_term: Option<u64>,
    /// The cluster's term after the watch window.
    pub(super) term_after: u64,
    pub(super) leader_before: usize,
    pub(super) leader_after: usize,
    /// Longest time without a leader in the window after the return.
    pub(super) leaderless: Duration,
    /// Longest time without an answered write in the window after the return.
    pub(super) longest_gap: Duration,
    /// Until the voter's applied index reached the leader's at the return.
    pub(super) catch_up: Option<Duration>,
}

#[derive(Default)]
pub(super) struct Figures {
    pub(super) faults: BTreeMap<&'static str, u32>,
    pub(super) skipped: Vec<String>,
    pub(super) failover: BTreeMap<&'static str, Vec<Option<u64>>>,
    pub(super) returns: Vec<Return>,
    /// Network-wide faults: (fault, term before, term after, longest gap).
    pub(super) degraded: Vec<(&'static str, u64, u64, Duration)>,
}

impl Chaos {
    pub(super) fn summary(
        &self,
        violations: usize,
        turns: &BTreeMap<&str, usize>,
        late: usize,
        roll: Duration,
    ) -> Value {
        let by_fault = |pick: &dyn Fn(&Return) -> Option<u64>| {
            let mut out: BTreeMap<&str, Vec<Option<u64>>> = BTreeMap::new();
            for back in &self.figures.returns {
                out.entry(back.fault).or_default().push(pick(back));
            }
            out
        };
        let terms: Vec<Value> = self
            .figures
            .returns
            .iter()
            .map(|back| {
                json!({
                    "fault": back.fault,
                    "voter": self.name(back.voter),
                    "before": back.term_before,
                    "returning": back.returning_term,
                    "after": back.term_after,
                    "leader_changed": back.leader_before != back.leader_after,
                    "leaderless_ms": ms(back.leaderless),
                    "write_gap_ms": ms(back.longest_gap),
                })
            })
            .collect();
        let degraded: Vec<Value> = self
            .figures
            .degraded
            .iter()
            .map(|(fault, before, after, gap)| {
                json!({"fault": fault, "before": before, "after": after, "longest_gap_ms": ms(*gap)})
            })
            .collect();
        json!({
            "voters_binary": self.bin.display().to_string(),
            "faults": self.figures.faults,
            "skipped": self.figures.skipped,
            "violations": violations,
            "turns": turns,
            "roll_after_heal_ms": ms(roll),
            "release_reply_overlaps": late,
            "failover_ms": self.figures.failover,
            "catch_up_ms": by_fault(&|b| b.catch_up.map(ms)),
            "term_before_after": terms,
            "degraded": degraded,
        })
    }
}
