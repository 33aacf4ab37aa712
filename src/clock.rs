//! The one clock: wall time in Unix seconds, injectable so the poller and the engine can be
//! driven through time in tests.

#[cfg(test)]
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Current Unix time in seconds (fractional).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Current Unix time in nanoseconds (0 before the epoch).
pub fn unix_now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A source of wall time in Unix seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> f64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        unix_now()
    }
}

/// A clock that only moves when told to (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct ManualClock(Mutex<f64>);

#[cfg(test)]
impl ManualClock {
    /// A clock standing at `t` (Unix seconds).
    pub fn at(t: f64) -> Self {
        ManualClock(Mutex::new(t))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: f64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += secs;
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> f64 {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
