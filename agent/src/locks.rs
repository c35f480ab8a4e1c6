//! Locks that stay usable after a thread panicked while holding them.
//!
//! A panic with a lock held poisons it. What such a lock guards here is a
//! cache, a counter or a state that each write replaces whole, so the data
//! is still what the last finished write left; the daemon goes on with it
//! instead of panicking in every later caller (a voter must keep serving).

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `Mutex::lock`, taking the data of a poisoned lock as it is.
pub trait LockOrRecover<T: ?Sized> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockOrRecover<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `RwLock::read` and `RwLock::write`, taking the data of a poisoned lock as it is.
pub trait ReadWriteOrRecover<T: ?Sized> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T>;
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> ReadWriteOrRecover<T> for RwLock<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_still_gives_its_data() {
        let mutex = Mutex::new(1);
        let rwlock = RwLock::new(2);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = mutex.lock().unwrap();
                let _written = rwlock.write().unwrap();
                panic!("poison both");
            })
            .join()
        });
        assert!(mutex.is_poisoned() && rwlock.is_poisoned());
        *mutex.lock_or_recover() += 1;
        assert_eq!(*mutex.lock_or_recover(), 2);
        *rwlock.write_or_recover() += 1;
        assert_eq!(*rwlock.read_or_recover(), 3);
    }
}
