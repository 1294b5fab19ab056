//! The agent's health as SPIRE's checker decides it (`pkg/agent/agent.go` `CheckHealth` and
//! `pkg/common/health`): one subsystem, `agent`, whose check asks the agent's own Workload
//! API for its X.509 bundles; only an unreachable Workload API (gRPC `Unavailable`) fails it.
//! Until the Workload API listens (`started`), the agent is live but not ready, and a
//! failure is not shown under the live details. Checks run every second until the agent is
//! both live and ready, then every minute; the HTTP endpoints answer from the last check.

use std::time::Duration;

/// Before the first success.
pub const INITIAL_INTERVAL: Duration = Duration::from_secs(1);
/// Once live and ready.
pub const STEADY_INTERVAL: Duration = Duration::from_secs(60);
/// How long the listener waits for the Workload API to listen before starting anyway.
pub const START_TIMEOUT: Duration = Duration::from_secs(8);
/// The check's error, as SPIRE words it.
pub const UNAVAILABLE: &str = "workload api is unavailable";

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Whether the Workload API listens yet.
    pub started: bool,
    /// Live.
    pub live: bool,
    /// Ready.
    pub ready: bool,
    /// `make_new_x509_err` under the live details, if any.
    pub live_err: Option<&'static str>,
    /// `make_new_x509_err` under the ready details, if any.
    pub ready_err: Option<&'static str>,
}

impl Assessment {
    /// SPIRE's `CheckHealth` for a check that found the Workload API `unavailable` or not.
    pub fn of(started: bool, unavailable: bool) -> Self {
        let err = unavailable.then_some(UNAVAILABLE);
        Assessment {
            started,
            live: !started || !unavailable,
            ready: !unavailable,
            live_err: if started { err } else { None },
            ready_err: err,
        }
    }

    /// The wait before the next check.
    pub fn next_interval(&self) -> Duration {
        if self.live && self.ready {
            STEADY_INTERVAL
        } else {
            INITIAL_INTERVAL
        }
    }

    /// The error the checker logs (`subsystem is not ...`), if any.
    pub fn error(&self) -> Option<&'static str> {
        match (self.live, self.ready) {
            (true, true) => None,
            (false, true) => Some("subsystem is not live"),
            (true, false) => Some("subsystem is not ready"),
            (false, false) => Some("subsystem is not live or ready"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_started_is_live_but_not_ready_and_hides_the_live_error() {
        let a = Assessment::of(false, true);
        assert!(a.live && !a.ready);
        assert_eq!(a.live_err, None);
        assert_eq!(a.ready_err, Some(UNAVAILABLE));
        assert_eq!(a.error(), Some("subsystem is not ready"));
        assert_eq!(a.next_interval(), INITIAL_INTERVAL);
    }

    #[test]
    fn started_and_reachable_is_live_and_ready() {
        let a = Assessment::of(true, false);
        assert!(a.live && a.ready);
        assert_eq!((a.live_err, a.ready_err), (None, None));
        assert_eq!(a.error(), None);
        assert_eq!(a.next_interval(), STEADY_INTERVAL);
    }

    #[test]
    fn started_and_unreachable_is_neither() {
        let a = Assessment::of(true, true);
        assert!(!a.live && !a.ready);
        assert_eq!(a.live_err, Some(UNAVAILABLE));
        assert_eq!(a.error(), Some("subsystem is not live or ready"));
    }
}
