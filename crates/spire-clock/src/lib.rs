//! Wall-clock time passed in rather than read: code that stamps, expires or prunes takes a
//! [`SharedClock`] (or a `now` argument computed from one), so the programs run on
//! [`SystemClock`] and tests on a [`ManualClock`] they move themselves.
//!
//! Only wall-clock time (`SystemTime`) lives here. Intervals and timeouts in async code use
//! `tokio::time`, which tests control with `tokio::time::pause`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// A clock shared by everything one program (or one test) runs.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The operating system's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until the test sets or advances it. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A clock showing `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Shows `t` from now on.
    pub fn set(&self, t: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += d;
    }

    /// This clock as a [`SharedClock`]; the clone keeps following `set` and `advance`.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_follow() {
        let c = ManualClock::at_unix(1_000);
        let shared = c.shared();
        assert_eq!(shared.now(), c.now());
        c.advance(Duration::from_secs(5));
        assert_eq!(
            shared.now(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_005)
        );
        c.set(SystemTime::UNIX_EPOCH);
        assert_eq!(shared.now(), SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn system_clock_is_after_the_epoch() {
        assert!(system().now() > SystemTime::UNIX_EPOCH);
    }
}
