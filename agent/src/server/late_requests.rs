//! Late acquires: the releases this voter applied lately, to refuse an acquire sent before one.
//!
//! A network that holds a request (a partition, a link that queues) can
//! deliver an Acquire long after its host gave up on it, got the lease by
//! another call, rebooted and released. Applied then, it would queue or
//! grant a host that is done. A host agent says, with each Acquire, the
//! token of the last grant it released (`released`, 0 before its first);
//! the leader refuses an Acquire that names an older one than the holder's
//! last release it applied. This memory lives in each voter (every voter
//! applies the releases, so a new leader has it too); a restarted voter
//! starts without it, which only lets a late acquire through as before.
//! Entries go after [`REMEMBER_FOR`]: a request the network held longer is
//! not caught.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Instant;
use crate::locks::LockOrRecover;
use crate::rules::lease::WaiterRef;

/// How long a release is remembered.
pub const REMEMBER_FOR: Duration = Duration::from_secs(600);

/// Most releases remembered (a fleet of 10,000 hosts, five times over);
/// past it, the oldest half goes.
const MAX_REMEMBERED: usize = 50_000;

/// The last release applied per holder: its token and when it was applied here.
#[derive(Clone, Default)]
pub struct LateRequests {
    released: Arc<Mutex<HashMap<WaiterRef, (u64, Instant)>>>,
}

impl LateRequests {
    fn lock(&self) -> MutexGuard<'_, HashMap<WaiterRef, (u64, Instant)>> {
        self.released.lock_or_recover()
    }

    /// `key` released the grant with `token` (applied now).
    pub fn released(&self, key: WaiterRef, token: u64) {
        let now = Instant::now();
        let mut released = self.lock();
        if released.len() >= MAX_REMEMBERED {
            released.retain(|_, (_, at)| now.duration_since(*at) < REMEMBER_FOR);
        }
        if released.len() >= MAX_REMEMBERED {
            let mut ages: Vec<Instant> = released.values().map(|(_, at)| *at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            released.retain(|_, (_, at)| *at > cut);
        }
        let entry = released.entry(key).or_insert((token, now));
        // Tokens only grow; a release applied again (a replay) changes nothing.
        if token >= entry.0 {
            *entry = (token, now);
        }
    }

    /// The token of a release by `key` newer than `known` (the last one the
    /// caller says it released), when there is one: the call is late.
    pub fn released_since(&self, key: &WaiterRef, known: u64) -> Option<u64> {
        let released = self.lock();
        let (token, at) = released.get(key)?;
        (*token > known && at.elapsed() < REMEMBER_FOR).then_some(*token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(holder: &str) -> WaiterRef {
        WaiterRef::new("g", holder)
    }

    #[test]
    fn an_acquire_that_knows_the_last_release_is_not_late() {
        let late = LateRequests::default();
        late.released(key("a"), 7);
        assert_eq!(late.released_since(&key("a"), 0), Some(7));
        assert_eq!(late.released_since(&key("a"), 3), Some(7));
        assert_eq!(late.released_since(&key("a"), 7), None);
        assert_eq!(late.released_since(&key("b"), 0), None);
        // An older release applied again does not move the mark back.
        late.released(key("a"), 5);
        assert_eq!(late.released_since(&key("a"), 5), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn releases_are_forgotten_after_a_while() {
        let late = LateRequests::default();
        late.released(key("a"), 7);
        tokio::time::advance(REMEMBER_FOR + Duration::from_secs(1)).await;
        assert_eq!(late.released_since(&key("a"), 0), None);
    }

    #[test]
    fn memory_stays_bounded() {
        let late = LateRequests::default();
        for i in 0..(MAX_REMEMBERED as u64 + 10) {
            late.released(key(&format!("h{i}")), i + 1);
        }
        assert!(late.lock().len() <= MAX_REMEMBERED);
        let last = format!("h{}", MAX_REMEMBERED + 9);
        assert!(late.released_since(&key(&last), 0).is_some());
    }
}
