//! Waiters' sessions: the leader's deadlines and the Wait streams open on this voter.
//!
//! A queued host keeps its place by holding a `Lease.Wait` stream open to any
//! voter; nothing goes into the raft log while it waits. Every voter counts
//! the Wait streams open on it ([`Sessions::register`]) and tells the leader
//! about them every third of the waiter TTL (`Lease.KeepAlive`; the leader
//! touches its own directly). The leader keeps one deadline per session in
//! memory, as etcd does for its leases; a session past its deadline is
//! dropped by one `DropWaiters` entry for all that lapsed together. A new
//! leader starts every session with a fresh TTL, so an election never
//! drops anyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Instant;
use crate::locks::LockOrRecover;
use crate::rules::lease::WaiterRef;

/// Why a Wait stream was woken without its state telling it all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its session lapsed (or the whole state was replaced): queue again.
    Dropped,
    /// It left the queue by releasing: the stream ends.
    Left,
}

/// One Wait stream open on this voter: how to wake it, and why it was woken.
#[derive(Default)]
struct Slot {
    wake: Notify,
    removal: Mutex<Option<Removal>>,
}

/// The leader's deadlines, valid for one term.
#[derive(Default)]
struct Deadlines {
    term: u64,
    by_session: HashMap<WaiterRef, Instant>,
}

#[derive(Default)]
struct Inner {
    local: Mutex<HashMap<WaiterRef, Vec<Arc<Slot>>>>,
    deadlines: Mutex<Deadlines>,
    /// A Wait stream was registered since the keepalive loop last looked.
    joined: Notify,
}

/// The sessions of one voter: its own Wait streams, and (when it leads) every deadline.
#[derive(Clone)]
pub struct Sessions {
    ttl: Duration,
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock_or_recover()
}

/// One open Wait stream; its session stops being kept alive here when dropped.
pub struct Registration {
    sessions: Sessions,
    key: WaiterRef,
    slot: Arc<Slot>,
}

impl Registration {
    /// Waits until something happened to this waiter (or to the whole state)
    /// since the last call; a wake-up that came in between is not lost.
    pub async fn woken(&self) {
        self.slot.wake.notified().await
    }

    /// Why the waiter was last removed from the state, if it was; cleared by reading.
    pub fn take_removal(&self) -> Option<Removal> {
        lock(&self.slot.removal).take()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut local = lock(&self.sessions.inner.local);
        if let Some(slots) = local.get_mut(&self.key) {
            slots.retain(|slot| !Arc::ptr_eq(slot, &self.slot));
            if slots.is_empty() {
                local.remove(&self.key);
            }
        }
    }
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            inner: Arc::default(),
        }
    }

    /// The waiter TTL: a session unheard of this long is dropped.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Counts one more Wait stream for `key` on this voter.
    pub fn register(&self, key: WaiterRef) -> Registration {
        let slot = Arc::new(Slot::default());
        lock(&self.inner.local)
            .entry(key.clone())
            .or_default()
            .push(slot.clone());
        self.inner.joined.notify_one();
        Registration {
            sessions: self.clone(),
            key,
            slot,
        }
    }

    /// Waits until a Wait stream registers (one may already have, since the last call).
    pub async fn joined(&self) {
        self.inner.joined.notified().await
    }

    /// The waiters with a Wait stream open on this voter.
    pub fn local_sessions(&self) -> Vec<WaiterRef> {
        lock(&self.inner.local).keys().cloned().collect()
    }

    /// Wakes the Wait streams of `group`/`holder` on this voter, if any.
    pub fn wake(&self, group: &str, holder: &str, removal: Option<Removal>) {
        let key = WaiterRef::new(group, holder);
        if let Some(slots) = lock(&self.inner.local).get(&key) {
            for slot in slots {
                wake_slot(slot, removal);
            }
        }
    }

    /// Wakes every Wait stream on this voter (the state was replaced).
    pub fn wake_all(&self) {
        for slot in lock(&self.inner.local).values().flatten() {
            wake_slot(slot, Some(Removal::Dropped));
        }
    }

    /// On the leader: these sessions are alive now.
    pub fn touch(&self, keys: impl IntoIterator<Item = WaiterRef>) {
        let deadline = Instant::now() + self.ttl;
        let mut deadlines = lock(&self.inner.deadlines);
        for key in keys {
            deadlines.by_session.insert(key, deadline);
        }
    }

    /// On the leader in `term`: the sessions among `current` (every waiter
    /// and unclaimed holder in the state) whose deadline passed. A session
    /// seen for the first time in this term starts with a fresh TTL; one no
    /// longer in the state is forgotten.
    pub fn lapsed(
        &self,
        term: u64,
        current: impl Iterator<Item = WaiterRef>,
        now: Instant,
    ) -> Vec<WaiterRef> {
        let mut deadlines = lock(&self.inner.deadlines);
        if deadlines.term != term {
            // New leadership: nobody is dropped for what a former leader saw.
            deadlines.term = term;
            deadlines.by_session.clear();
        }
        let mut kept = HashMap::with_capacity(deadlines.by_session.len());
        let mut lapsed = Vec::new();
        for key in current {
            let deadline = deadlines.by_session.remove(&key).unwrap_or(now + self.ttl);
            if deadline < now {
                lapsed.push(key.clone());
            }
            kept.insert(key, deadline);
        }
        deadlines.by_session = kept;
        lapsed
    }
}

fn wake_slot(slot: &Slot, removal: Option<Removal>) {
    if removal.is_some() {
        *lock(&slot.removal) = removal;
    }
    // A stored permit: a stream busy sending sees the wake-up when it next waits.
    slot.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(holder: &str) -> WaiterRef {
        WaiterRef::new("g", holder)
    }

    #[test]
    fn a_session_lapses_only_after_its_ttl_without_a_touch() {
        let sessions = Sessions::new(Duration::from_secs(10));
        // First seen 5 s ago: both deadlines are 5 s from now.
        let seen = Instant::now() - Duration::from_secs(5);
        assert!(sessions
            .lapsed(1, [key("a"), key("b")].into_iter(), seen)
            .is_empty());
        // A keepalive for "a" now moves its deadline to 10 s from now.
        sessions.touch([key("a")]);
        let later = Instant::now() + Duration::from_secs(7);
        assert_eq!(
            sessions.lapsed(1, [key("a"), key("b")].into_iter(), later),
            vec![key("b")]
        );
    }

    #[test]
    fn a_new_term_gives_every_session_a_fresh_ttl() {
        let sessions = Sessions::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(sessions.lapsed(1, [key("a")].into_iter(), t0).is_empty());
        let later = t0 + Duration::from_secs(11);
        assert!(sessions.lapsed(2, [key("a")].into_iter(), later).is_empty());
        assert_eq!(
            sessions.lapsed(2, [key("a")].into_iter(), later + Duration::from_secs(11)),
            vec![key("a")]
        );
    }

    #[test]
    fn sessions_gone_from_the_state_are_forgotten() {
        let sessions = Sessions::new(Duration::from_secs(10));
        let t0 = Instant::now();
        sessions.lapsed(1, [key("a")].into_iter(), t0);
        sessions.lapsed(1, std::iter::empty(), t0);
        // Back in the state later: counted from then, not from before.
        let later = t0 + Duration::from_secs(11);
        assert!(sessions.lapsed(1, [key("a")].into_iter(), later).is_empty());
    }

    #[test]
    fn a_registration_counts_streams_and_wakes_with_the_removal() {
        let sessions = Sessions::new(Duration::from_secs(10));
        let first = sessions.register(key("a"));
        let second = sessions.register(key("a"));
        assert_eq!(sessions.local_sessions(), vec![key("a")]);
        sessions.wake("g", "a", Some(Removal::Dropped));
        assert_eq!(first.take_removal(), Some(Removal::Dropped));
        assert_eq!(first.take_removal(), None);
        assert_eq!(second.take_removal(), Some(Removal::Dropped));
        drop(first);
        assert_eq!(sessions.local_sessions(), vec![key("a")]);
        drop(second);
        assert!(sessions.local_sessions().is_empty());
    }
}
