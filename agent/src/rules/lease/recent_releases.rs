//! The last release of each holder, for ten minutes: what refuses an acquire sent before it.
//!
//! A network that holds a request (a partition, a link that queues) can
//! deliver an Acquire long after its host gave up on it, got the lease by
//! another call, rebooted and released. Applied then, it would queue or
//! grant a host that is done. A host agent says, with each Acquire, the
//! token of the last grant it released (`released`, 0 before its first);
//! the leader refuses an Acquire that names an older one than the holder's
//! last release here ([`LATE_ACQUIRE`](super::LATE_ACQUIRE)).
//!
//! This is part of the replicated state (beside the lease state, in the
//! snapshot), filled from the events of each applied command with that
//! command's stamped time: every voter has it, also after a restart or a
//! snapshot install. A request the network held longer than
//! [`REMEMBER_FOR_MS`] is not caught.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Event, EventKind, ReleaseCause, UnixMillis, WaiterRef};

/// How long a release is remembered: ten minutes.
pub const REMEMBER_FOR_MS: u64 = 600_000;

/// Most releases remembered (a fleet of 10,000 hosts, five times over);
/// past it, those older than [`REMEMBER_FOR_MS`] go, then the oldest half.
pub const MAX_REMEMBERED: usize = 50_000;

/// A grant its holder (or an operator in its name) released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub token: u64,
    /// When the release was applied (its command's stamp).
    pub at: UnixMillis,
}

/// The last release per holder, by group then holder (maps keyed by
/// strings, so the state also has a JSON form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentReleases {
    by_group: BTreeMap<String, BTreeMap<String, Released>>,
}

impl RecentReleases {
    /// Notes the releases among `events`, applied at `now`. Only a release
    /// (by the holder, or by an operator's `lease release`) counts: a grant
    /// that expired or was forced away was not given back by its host, whose
    /// next acquire may rightly name an older release.
    pub fn note(&mut self, events: &[Event], now: UnixMillis) {
        for event in events {
            if let EventKind::Released {
                holder,
                token,
                cause: ReleaseCause::Released,
            } = &event.kind
            {
                self.record(
                    WaiterRef::new(event.group.clone(), holder.clone()),
                    *token,
                    now,
                );
            }
        }
    }

    fn record(&mut self, key: WaiterRef, token: u64, now: UnixMillis) {
        if self.len() >= MAX_REMEMBERED && self.get(&key).is_none() {
            self.forget_old(now);
        }
        let entry = self
            .by_group
            .entry(key.group)
            .or_default()
            .entry(key.holder)
            .or_insert(Released { token, at: now });
        // Tokens only grow: an older grant's release applied later does not
        // move the mark back.
        if token >= entry.token {
            *entry = Released { token, at: now };
        }
    }

    /// Makes room: drops what is past remembering, then, if that was not
    /// enough, the older half.
    fn forget_old(&mut self, now: UnixMillis) {
        self.retain(|r| now.saturating_sub(r.at) < REMEMBER_FOR_MS);
        if self.len() >= MAX_REMEMBERED {
            let mut ages: Vec<UnixMillis> = self
                .by_group
                .values()
                .flat_map(|holders| holders.values().map(|r| r.at))
                .collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.retain(|r| r.at > cut);
        }
    }

    /// Keeps the releases `keep` says yes to; drops groups left empty.
    fn retain(&mut self, keep: impl Fn(&Released) -> bool) {
        for holders in self.by_group.values_mut() {
            holders.retain(|_, r| keep(r));
        }
        self.by_group.retain(|_, holders| !holders.is_empty());
    }

    fn get(&self, key: &WaiterRef) -> Option<&Released> {
        self.by_group.get(&key.group)?.get(&key.holder)
    }

    /// The token of a release by `key` newer than `known` (the last one the
    /// caller says it released) and applied within [`REMEMBER_FOR_MS`] of
    /// `now`, when there is one: an acquire that names `known` is late.
    pub fn released_since(&self, key: &WaiterRef, known: u64, now: UnixMillis) -> Option<u64> {
        let last = self.get(key)?;
        (last.token > known && now.saturating_sub(last.at) < REMEMBER_FOR_MS).then_some(last.token)
    }

    /// How many holders' releases are remembered.
    pub fn len(&self) -> usize {
        self.by_group.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_group.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(group: &str, holder: &str, token: u64, cause: ReleaseCause) -> Event {
        Event {
            group: group.into(),
            kind: EventKind::Released {
                holder: holder.into(),
                token,
                cause,
            },
        }
    }

    fn key(holder: &str) -> WaiterRef {
        WaiterRef::new("g", holder)
    }

    #[test]
    fn an_acquire_that_knows_the_last_release_is_not_late() {
        let mut recent = RecentReleases::default();
        recent.note(&[released("g", "a", 7, ReleaseCause::Released)], 1_000);
        assert_eq!(recent.released_since(&key("a"), 0, 1_000), Some(7));
        assert_eq!(recent.released_since(&key("a"), 3, 1_000), Some(7));
        assert_eq!(recent.released_since(&key("a"), 7, 1_000), None);
        assert_eq!(recent.released_since(&key("b"), 0, 1_000), None);
        assert_eq!(
            recent.released_since(&WaiterRef::new("other", "a"), 0, 1_000),
            None
        );
        // An older release applied again does not move the mark back.
        recent.note(&[released("g", "a", 5, ReleaseCause::Released)], 2_000);
        assert_eq!(recent.released_since(&key("a"), 5, 2_000), Some(7));
    }

    #[test]
    fn only_a_release_counts_not_an_expiry_or_a_forced_release() {
        let mut recent = RecentReleases::default();
        recent.note(
            &[
                released("g", "a", 3, ReleaseCause::HoldTimeout),
                released("g", "b", 4, ReleaseCause::Forced),
                released("g", "c", 5, ReleaseCause::SessionLost),
            ],
            1_000,
        );
        assert!(recent.is_empty());
        assert_eq!(recent.released_since(&key("a"), 0, 1_000), None);
    }

    #[test]
    fn the_releases_have_a_json_form_as_the_state_does() {
        let mut recent = RecentReleases::default();
        recent.note(
            &[
                released("g", "a", 7, ReleaseCause::Released),
                released("h", "a", 8, ReleaseCause::Released),
            ],
            1_000,
        );
        let text = serde_json::to_string(&recent).expect("JSON");
        let back: RecentReleases = serde_json::from_str(&text).expect("JSON back");
        assert_eq!(back, recent);
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn a_release_is_remembered_for_ten_minutes() {
        let mut recent = RecentReleases::default();
        recent.note(&[released("g", "a", 9, ReleaseCause::Released)], 1_000);
        assert_eq!(
            recent.released_since(&key("a"), 0, 1_000 + REMEMBER_FOR_MS - 1),
            Some(9)
        );
        assert_eq!(
            recent.released_since(&key("a"), 0, 1_000 + REMEMBER_FOR_MS),
            None
        );
    }

    #[test]
    fn a_full_memory_drops_the_old_first_and_stays_bounded() {
        let mut recent = RecentReleases::default();
        for i in 0..MAX_REMEMBERED as u64 {
            let holder = format!("h{i}");
            recent.note(&[released("g", &holder, i + 1, ReleaseCause::Released)], i);
        }
        assert_eq!(recent.len(), MAX_REMEMBERED);
        // Ten minutes on, nearly all are past remembering: they make room.
        let later = REMEMBER_FOR_MS + 100;
        recent.note(&[released("g", "new", 1, ReleaseCause::Released)], later);
        assert_eq!(recent.len(), MAX_REMEMBERED - 101 + 1);
        assert_eq!(recent.released_since(&key("new"), 0, later), Some(1));
        assert_eq!(recent.released_since(&key("h0"), 0, later), None);
        // All recent: the older half goes.
        let mut recent = RecentReleases::default();
        for i in 0..MAX_REMEMBERED as u64 {
            let holder = format!("h{i}");
            recent.note(&[released("g", &holder, i + 1, ReleaseCause::Released)], i);
        }
        recent.note(
            &[released("g", "new", 1, ReleaseCause::Released)],
            MAX_REMEMBERED as u64,
        );
        assert!(recent.len() <= MAX_REMEMBERED / 2 + 1, "{}", recent.len());
        assert_eq!(
            recent.released_since(&key("new"), 0, MAX_REMEMBERED as u64),
            Some(1)
        );
        let newest = format!("h{}", MAX_REMEMBERED - 1);
        assert!(recent
            .released_since(&key(&newest), 0, MAX_REMEMBERED as u64)
            .is_some());
    }
}
