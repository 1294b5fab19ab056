//! Bootstrap bookkeeping and the rebootstrap decision (SPIRE's `trustbundlesources` and
//! `rebootstrap_mode` / `rebootstrap_delay`).
//!
//! The agent remembers in `agent-data.json` whether it is bootstrapping for the first time
//! (`bootstrap_use` 1) or re-bootstrapping (2), since when (`bootstrap_start_time`) and how
//! many times it fetched the bootstrap bundle (`connection_attempts`). When the server's
//! certificate stops chaining to the agent's bundle ("certificate signed by unknown
//! authority"), the agent tolerates it for `rebootstrap_delay` counted from the start time,
//! then forgets its SVID and bundle and starts over from the configured trust bundle source
//! (`rebootstrap_mode` `auto` or `always`), or gives up at once (`never`, during sync).

use std::time::{Duration, SystemTime};

/// `bootstrap_use` values.
pub const USE_UNSPECIFIED: i64 = 0;
/// The first bootstrap.
pub const USE_BOOTSTRAP: i64 = 1;
/// A later bootstrap (the agent has trusted a bundle before).
pub const USE_REBOOTSTRAP: i64 = 2;

pub use spire_config::RebootstrapMode;

/// The bootstrap state kept in `agent-data.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapState {
    /// `bootstrap_use`.
    pub use_: i64,
    /// `bootstrap_start_time` (`None` is Go's zero time: not bootstrapping).
    pub start_time: Option<SystemTime>,
    /// `connection_attempts`.
    pub connection_attempts: i64,
}

/// What [`BootstrapState::succeeded`] reports for SPIRE's "Success after" log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Success {
    /// Time since the start time; Go's largest duration when there was none (SPIRE measures
    /// from the zero time then).
    pub elapsed: Duration,
    /// Bundle fetches it took.
    pub attempts: i64,
}

/// Go's largest `time.Duration`, which `time.Since(time.Time{})` saturates to.
pub const GO_MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

impl BootstrapState {
    /// The state as stored; an unspecified use becomes a rebootstrap when a bundle is
    /// cached (the agent trusted a server before), else a first bootstrap.
    pub fn load(
        use_: i64,
        start_time: Option<SystemTime>,
        connection_attempts: i64,
        bundle_cached: bool,
    ) -> Self {
        let use_ = match use_ {
            USE_UNSPECIFIED if bundle_cached => USE_REBOOTSTRAP,
            USE_UNSPECIFIED => USE_BOOTSTRAP,
            other => other,
        };
        Self {
            use_,
            start_time,
            connection_attempts,
        }
    }

    /// Whether this is a first bootstrap.
    pub fn is_bootstrap(&self) -> bool {
        self.use_ != USE_REBOOTSTRAP
    }

    /// The bootstrap bundle is about to be fetched (SPIRE's `GetBundle`).
    pub fn fetching_bundle(&mut self, now: SystemTime) {
        self.connection_attempts += 1;
        if self.start_time.is_none() {
            self.start_time = Some(now);
        }
    }

    /// Attestation or a sync succeeded: from now on a failure is a rebootstrap, and the
    /// clock and attempt counter start over. Returns what SPIRE logs.
    pub fn succeeded(&mut self, now: SystemTime) -> Success {
        let elapsed = match self.start_time {
            Some(t) => now.duration_since(t).unwrap_or_default(),
            None => GO_MAX_DURATION,
        };
        let out = Success {
            elapsed,
            attempts: self.connection_attempts,
        };
        self.use_ = USE_REBOOTSTRAP;
        self.connection_attempts = 0;
        self.start_time = None;
        out
    }

    /// Whether a bootstrap (or a period of disagreement) is under way (SPIRE's
    /// `SetSuccessIfRunning` condition).
    pub fn running(&self) -> bool {
        self.start_time.is_some()
    }

    /// When the current period of disagreement started, starting it now if none is under
    /// way (SPIRE's `GetStartTime`).
    pub fn start_time(&mut self, now: SystemTime) -> SystemTime {
        *self.start_time.get_or_insert(now)
    }

    /// The agent gives up its SVID and bundle and will bootstrap again from the configured
    /// source (SPIRE's `SetForceRebootstrap`).
    pub fn force_rebootstrap(&mut self, now: SystemTime) {
        self.use_ = USE_REBOOTSTRAP;
        self.start_time = Some(now);
        self.connection_attempts = 0;
    }
}

/// What to do when the server's certificate does not chain to the agent's bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disagreement {
    /// Keep trying; `time_left` until the agent re-bootstraps.
    Wait {
        /// Remaining part of `rebootstrap_delay`.
        time_left: Duration,
    },
    /// `rebootstrap_delay` has passed: re-bootstrap.
    Rebootstrap,
}

/// Whether the disagreement that started at `start` has lasted `delay` at `now`.
pub fn disagreement(start: SystemTime, now: SystemTime, delay: Duration) -> Disagreement {
    let elapsed = now.duration_since(start).unwrap_or_default();
    if elapsed < delay {
        Disagreement::Wait {
            time_left: delay - elapsed,
        }
    } else {
        Disagreement::Rebootstrap
    }
}

/// Whether `rebootstrap_mode` can be honoured for an agent whose SVID is (not)
/// re-attestable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeCheck {
    /// Keep the mode.
    Keep,
    /// `auto` without re-attestation: warn and fall back to `never`.
    Disable,
    /// `always` without re-attestation: refuse to run.
    Refuse,
}

/// SPIRE's check of `rebootstrap_mode` against the stored SVID's re-attestability.
pub fn check_mode(mode: RebootstrapMode, reattestable: bool) -> ModeCheck {
    match (mode, reattestable) {
        (RebootstrapMode::Never, _) | (_, true) => ModeCheck::Keep,
        (RebootstrapMode::Auto, false) => ModeCheck::Disable,
        (RebootstrapMode::Always, false) => ModeCheck::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn unspecified_use_depends_on_a_cached_bundle() {
        assert!(BootstrapState::load(0, None, 0, false).is_bootstrap());
        assert!(!BootstrapState::load(0, None, 0, true).is_bootstrap());
        assert!(BootstrapState::load(USE_BOOTSTRAP, None, 0, true).is_bootstrap());
        assert!(!BootstrapState::load(USE_REBOOTSTRAP, None, 0, false).is_bootstrap());
    }

    #[test]
    fn attempts_and_success() {
        let mut s = BootstrapState::load(0, None, 0, false);
        assert!(!s.running());
        s.fetching_bundle(t(0));
        s.fetching_bundle(t(5));
        assert_eq!(s.connection_attempts, 2);
        assert_eq!(s.start_time, Some(t(0)));
        assert!(s.running());
        let ok = s.succeeded(t(12));
        assert_eq!(
            ok,
            Success {
                elapsed: Duration::from_secs(12),
                attempts: 2
            }
        );
        assert_eq!(
            s,
            BootstrapState {
                use_: USE_REBOOTSTRAP,
                start_time: None,
                connection_attempts: 0
            }
        );
        // Without a start time SPIRE measures from Go's zero time.
        assert_eq!(s.succeeded(t(13)).elapsed, GO_MAX_DURATION);
    }

    #[test]
    fn disagreement_waits_out_the_delay_from_its_start() {
        let delay = Duration::from_secs(600);
        let mut s = BootstrapState::load(USE_REBOOTSTRAP, None, 0, true);
        let start = s.start_time(t(100));
        assert_eq!(start, t(100));
        // Later calls keep the first start.
        assert_eq!(s.start_time(t(200)), t(100));
        assert_eq!(
            disagreement(start, t(100), delay),
            Disagreement::Wait {
                time_left: Duration::from_secs(600)
            }
        );
        assert_eq!(
            disagreement(start, t(699), delay),
            Disagreement::Wait {
                time_left: Duration::from_secs(1)
            }
        );
        assert_eq!(
            disagreement(start, t(700), delay),
            Disagreement::Rebootstrap
        );
        // A clock that went backwards is no time at all.
        assert_eq!(
            disagreement(start, t(50), delay),
            Disagreement::Wait { time_left: delay }
        );
        // A success ends the period; the next disagreement starts a new one.
        s.succeeded(t(300));
        assert_eq!(s.start_time(t(1000)), t(1000));
    }

    #[test]
    fn force_rebootstrap_restarts_the_clock() {
        let mut s = BootstrapState::load(USE_BOOTSTRAP, Some(t(0)), 7, false);
        s.force_rebootstrap(t(50));
        assert_eq!(
            s,
            BootstrapState {
                use_: USE_REBOOTSTRAP,
                start_time: Some(t(50)),
                connection_attempts: 0
            }
        );
    }

    #[test]
    fn modes_against_reattestability() {
        use RebootstrapMode::*;
        assert_eq!(check_mode(Never, false), ModeCheck::Keep);
        assert_eq!(check_mode(Auto, true), ModeCheck::Keep);
        assert_eq!(check_mode(Auto, false), ModeCheck::Disable);
        assert_eq!(check_mode(Always, true), ModeCheck::Keep);
        assert_eq!(check_mode(Always, false), ModeCheck::Refuse);
    }
}
