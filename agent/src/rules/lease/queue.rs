//! One group's queue: waiters in arrival order, with an index of who waits.
//!
//! Whether a holder waits is asked for every waiter's session every few
//! seconds (keepalives, Wait streams re-reading their place) and by every
//! acquire and release; with 10,000 waiters, a scan of the queue for each
//! made those checks quadratic. The index answers them without a scan; only
//! a position (shown to the waiter, rarely asked) still counts its way down.
//! Stored as the plain list of waiters, as before the index existed.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Waiter;

/// Waiters, first come first served; no holder twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    waiters: VecDeque<Waiter>,
    /// The holders in `waiters` (ordered, not hashed: the rules use no
    /// randomness).
    members: BTreeSet<String>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, Waiter> {
        self.waiters.iter()
    }

    /// Whether `holder` waits here, without a scan.
    pub fn contains(&self, holder: &str) -> bool {
        self.members.contains(holder)
    }

    /// Where `holder` stands (0 = next), if it waits.
    pub fn index_of(&self, holder: &str) -> Option<usize> {
        if !self.contains(holder) {
            return None;
        }
        self.waiters.iter().position(|w| w.holder == holder)
    }

    /// Queues `waiter` last; the rules never queue a holder twice.
    pub fn push_back(&mut self, waiter: Waiter) {
        self.members.insert(waiter.holder.clone());
        self.waiters.push_back(waiter);
    }

    pub fn pop_front(&mut self) -> Option<Waiter> {
        let waiter = self.waiters.pop_front()?;
        self.members.remove(&waiter.holder);
        Some(waiter)
    }

    /// Takes out the waiter at `index`.
    pub fn remove(&mut self, index: usize) -> Option<Waiter> {
        let waiter = self.waiters.remove(index)?;
        self.members.remove(&waiter.holder);
        Some(waiter)
    }
}

impl From<VecDeque<Waiter>> for Queue {
    fn from(waiters: VecDeque<Waiter>) -> Self {
        let members = waiters.iter().map(|w| w.holder.clone()).collect();
        Self { waiters, members }
    }
}

impl std::ops::Index<usize> for Queue {
    type Output = Waiter;

    fn index(&self, index: usize) -> &Waiter {
        &self.waiters[index]
    }
}

impl<'a> IntoIterator for &'a Queue {
    type Item = &'a Waiter;
    type IntoIter = std::collections::vec_deque::Iter<'a, Waiter>;

    fn into_iter(self) -> Self::IntoIter {
        self.waiters.iter()
    }
}

impl Serialize for Queue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.waiters.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Queue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        VecDeque::<Waiter>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(holder: &str) -> Waiter {
        Waiter {
            holder: holder.into(),
            machine_id: String::new(),
            since: 0,
        }
    }

    #[test]
    fn the_index_follows_every_change() {
        let mut q = Queue::default();
        for h in ["a", "b", "c", "d"] {
            q.push_back(waiter(h));
        }
        assert_eq!(q.index_of("c"), Some(2));
        assert_eq!(q.pop_front().map(|w| w.holder), Some("a".into()));
        assert!(!q.contains("a"));
        assert_eq!(q.remove(1).map(|w| w.holder), Some("c".into()));
        assert!(!q.contains("c"));
        assert_eq!(q.index_of("d"), Some(1));
        assert_eq!(q.index_of("zz"), None);
        let holders: Vec<&str> = q.iter().map(|w| w.holder.as_str()).collect();
        assert_eq!(holders, ["b", "d"]);
    }

    #[test]
    fn stored_as_the_plain_list_and_read_back_with_its_index() {
        let waiters: VecDeque<Waiter> = [waiter("a"), waiter("b")].into();
        let q = Queue::from(waiters.clone());
        // The same bytes as the list the state stored before the index.
        let plain = postcard::to_allocvec(&waiters).unwrap();
        assert_eq!(postcard::to_allocvec(&q).unwrap(), plain);
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            serde_json::to_string(&waiters).unwrap()
        );
        let back: Queue = postcard::from_bytes(&plain).unwrap();
        assert_eq!(back, q);
        assert!(back.contains("b") && !back.contains("c"));
    }
}
