//! Time as the voter and the lease client read it: one monotonic clock, one wall clock.
//!
//! The monotonic clock is tokio's `Instant`: the system's in the daemon,
//! the simulated one under turmoil and in tests with paused time, so a
//! deadline or a TTL runs on the same clock as the sleeps that wait for it.
//! The wall clock is the system's, unless the deterministic simulation has
//! installed its own (`run_wall_clock_on`): the leader stamps it into raft
//! commands, and a stamp that came from the host's real clock would make a
//! simulated run differ from its replay.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

/// The wall clock the simulation installed, if any.
static WALL_CLOCK: OnceLock<fn() -> SystemTime> = OnceLock::new();

/// Now, on the wall clock.
pub fn wall_now() -> SystemTime {
    match WALL_CLOCK.get() {
        Some(clock) => clock(),
        None => SystemTime::now(),
    }
}

/// Now, as the time since the unix epoch; None while the clock is set
/// before 1970.
pub fn since_unix_epoch() -> Option<Duration> {
    wall_now().duration_since(UNIX_EPOCH).ok()
}

/// Makes `clock` the wall clock of this process, for good: only the
/// deterministic simulation calls this, before it starts a voter. False if
/// a clock was installed already (the first one stays).
pub fn run_wall_clock_on(clock: fn() -> SystemTime) -> bool {
    WALL_CLOCK.set(clock).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Installing a clock is for good and the unit tests share one process,
    // so only the default is tested here; the simulation's replay check
    // (examples/simulate.rs, `--recheck`) shows an installed one is used.
    #[test]
    fn the_wall_clock_is_the_systems_by_default() {
        let before = SystemTime::now();
        let read = wall_now();
        assert!(read >= before && read <= SystemTime::now());
        assert!(since_unix_epoch().is_some_and(|d| d.as_secs() > 1_600_000_000));
    }
}
