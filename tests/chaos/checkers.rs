//! The checkers: never more holders than `max_holders`, tokens only increase.

use std::collections::BTreeMap;
use std::time::Instant;

use super::hosts::Turn;

/// What the checkers found in one group's turns.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    pub(super) violations: Vec<String>,
    /// Grants answered before the previous holder's release was: not a
    /// violation (that release had committed, its answer came later; the
    /// previous holder had stopped holding when it sent it), counted for the record.
    pub(super) release_reply_overlaps: usize,
}

/// How many grants found more than `max` intervals open (each interval from
/// the grant's answer to `end`), with the first few described.
pub(super) fn over_max(
    turns: &[Turn],
    end: impl Fn(&Turn) -> Instant,
    max: usize,
) -> (usize, Vec<String>) {
    let mut events: Vec<(Instant, i32, usize)> = Vec::new();
    for (n, turn) in turns.iter().enumerate() {
        events.push((turn.granted, 1, n));
        events.push((end(turn), -1, n));
    }
    // At the same instant an end comes before a start.
    events.sort_by_key(|&(at, delta, _)| (at, delta));
    let mut open: Vec<usize> = Vec::new();
    let mut count = 0;
    let mut found = Vec::new();
    for (_, delta, n) in events {
        if delta < 0 {
            open.retain(|&o| o != n);
            continue;
        }
        open.push(n);
        if open.len() > max {
            count += 1;
            if found.len() < 5 {
                let who: Vec<String> = open
                    .iter()
                    .map(|&o| format!("{} (token {})", turns[o].holder, turns[o].token))
                    .collect();
                found.push(format!(
                    "{} holders at once in {} (max {max}): {}",
                    open.len(),
                    turns[n].group,
                    who.join(", ")
                ));
            }
        }
    }
    (count, found)
}

/// Leader stamps this far apart are ordered for sure (stamping and log
/// order may differ a little between concurrent proposals).
const STAMP_SLACK_MS: u64 = 100;

pub(super) fn check_group(turns: &[Turn], max: usize) -> Verdict {
    let mut verdict = Verdict::default();
    // A holder holds from its grant's answer until it sends its release.
    let (_, found) = over_max(turns, |t| t.release_sent, max);
    verdict.violations.extend(found);
    verdict.release_reply_overlaps = over_max(turns, |t| t.released, max).0;

    // Fencing tokens: each grant its own token ...
    let mut holders_of = BTreeMap::new();
    for turn in turns {
        if let Some(other) = holders_of.insert(turn.token, &turn.holder) {
            verdict.violations.push(format!(
                "token {} granted twice in {} ({other} and {})",
                turn.token, turn.group, turn.holder
            ));
        }
    }
    // ... greater than every token the leaders granted clearly before ...
    let mut by_stamp: Vec<&Turn> = turns.iter().collect();
    by_stamp.sort_by_key(|t| t.stamped_ms);
    let mut earlier = 0;
    let mut highest: Option<&Turn> = None;
    for turn in &by_stamp {
        while by_stamp[earlier].stamped_ms + STAMP_SLACK_MS < turn.stamped_ms {
            let candidate = by_stamp[earlier];
            if highest.is_none_or(|h| candidate.token > h.token) {
                highest = Some(candidate);
            }
            earlier += 1;
        }
        if let Some(h) = highest.filter(|h| h.token >= turn.token) {
            verdict.violations.push(format!(
                "in {}, {} got token {} at {} ms, after {} got token {} at {} ms",
                turn.group,
                turn.holder,
                turn.token,
                turn.stamped_ms,
                h.holder,
                h.token,
                h.stamped_ms
            ));
        }
    }
    // ... and, one holder at a time, increasing in the order the holders saw.
    if max == 1 {
        let mut by_grant: Vec<&Turn> = turns.iter().collect();
        by_grant.sort_by_key(|t| t.granted);
        for pair in by_grant.windows(2) {
            if pair[1].token <= pair[0].token {
                verdict.violations.push(format!(
                    "in {}, {} was granted token {} after {} had token {}",
                    pair[0].group, pair[1].holder, pair[1].token, pair[0].holder, pair[0].token
                ));
            }
        }
    }
    verdict.violations.truncate(20);
    verdict
}
