//! The shell's one clock. The core never reads a clock (time is passed in); everything above
//! it reads this module:
//!
//! - [`mono`]: a monotonic reading in [`Millis`] from one process-wide origin (lease
//!   deadlines and the write fence, heartbeats' silence, the session and role machines'
//!   timers), so every shell measures on one base;
//! - [`wall_ms`]: the wall clock in Unix milliseconds (LTX timestamps, HEARTBEAT's primary
//!   time, `.lag`, names of set-aside directories);
//! - [`now`]: an [`Instant`], for durations the metrics record.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::core::types::Millis;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)] // this module is the clock
    *ORIGIN.get_or_init(Instant::now)
}

/// Monotonic milliseconds since the process first read the clock.
pub fn mono() -> Millis {
    Millis(origin().elapsed().as_millis() as u64)
}

/// The [`Instant`] of a monotonic reading (for timers that take one).
pub fn instant(at: Millis) -> Instant {
    origin() + Duration::from_millis(at.0)
}

/// The monotonic reading of `at` (0 for an instant before the origin).
pub fn millis(at: Instant) -> Millis {
    Millis(at.saturating_duration_since(origin()).as_millis() as u64)
}

/// A monotonic instant, for measuring how long something took (metrics).
pub fn now() -> Instant {
    #[allow(clippy::disallowed_methods)] // this module is the clock
    Instant::now()
}

/// Unix milliseconds (0 if the clock is before 1970).
pub fn wall_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // this module is the clock
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_round_trip_and_go_forward() {
        let a = mono();
        assert_eq!(millis(instant(a)), a);
        assert!(mono() >= a);
        assert!(wall_ms() > 1_700_000_000_000);
    }
}
