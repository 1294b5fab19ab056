//! When to prepare and when to activate the next authority: pure functions of the current
//! authority's issue time, expiry and `now`, exactly SPIRE's thresholds.
//!
//! - Prepare the next authority once the remaining life is at most min(lifetime/2, 30 days).
//! - Activate it once the remaining life is at most min(lifetime/6, 7 days).
//!
//! Hence a safe SVID TTL is at most ca_ttl/6 ([`max_svid_ttl_for_ca_ttl`]).

use std::time::{Duration, SystemTime};

const PREPARATION_CAP: Duration = Duration::from_secs(30 * 24 * 3600);
const ACTIVATION_CAP: Duration = Duration::from_secs(7 * 24 * 3600);

fn lifetime(issued_at: SystemTime, not_after: SystemTime) -> Duration {
    not_after.duration_since(issued_at).unwrap_or_default()
}

/// The instant after which the next authority should be prepared.
pub fn preparation_threshold(issued_at: SystemTime, not_after: SystemTime) -> SystemTime {
    let t = (lifetime(issued_at, not_after) / 2).min(PREPARATION_CAP);
    not_after.checked_sub(t).unwrap_or(issued_at)
}

/// The instant after which the next authority should be activated.
pub fn activation_threshold(issued_at: SystemTime, not_after: SystemTime) -> SystemTime {
    let t = (lifetime(issued_at, not_after) / 6).min(ACTIVATION_CAP);
    not_after.checked_sub(t).unwrap_or(issued_at)
}

/// The longest SVID TTL that never outlives the authority that signed it.
pub fn max_svid_ttl_for_ca_ttl(ca_ttl: Duration) -> Duration {
    (ca_ttl / 6).min(ACTIVATION_CAP)
}

/// The state of one authority kind (X.509 CA or JWT key) that rotation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsView {
    /// `(issued_at, not_after)` of the current authority, `None` when there is none.
    pub current: Option<(SystemTime, SystemTime)>,
    /// Whether the next slot holds a prepared authority.
    pub next_prepared: bool,
}

/// What the rotator should do now, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// Prepare an authority into the current slot and activate it (nothing active yet).
    PrepareAndActivateCurrent,
    /// Prepare the next authority.
    PrepareNext,
    /// Swap next into current and activate it.
    Rotate,
}

/// The steps for one rotation check, as SPIRE's rotator runs them every 10 seconds.
pub fn plan(view: SlotsView, now: SystemTime) -> Vec<RotationStep> {
    let mut steps = Vec::new();
    let (issued_at, not_after) = match view.current {
        Some(c) => c,
        None => {
            // A fresh authority is not due for anything else in the same check.
            steps.push(RotationStep::PrepareAndActivateCurrent);
            return steps;
        }
    };
    let mut next_prepared = view.next_prepared;
    if !next_prepared && now > preparation_threshold(issued_at, not_after) {
        steps.push(RotationStep::PrepareNext);
        next_prepared = true;
    }
    if next_prepared && now > activation_threshold(issued_at, not_after) {
        steps.push(RotationStep::Rotate);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn thresholds_for_a_day() {
        let (i, n) = (t(0), t(86_400));
        assert_eq!(preparation_threshold(i, n), t(43_200));
        assert_eq!(activation_threshold(i, n), t(86_400 - 14_400));
        assert_eq!(
            max_svid_ttl_for_ca_ttl(Duration::from_secs(86_400)),
            Duration::from_secs(14_400)
        );
    }

    #[test]
    fn caps_apply_to_long_lifetimes() {
        let year = 365 * 86_400;
        assert_eq!(preparation_threshold(t(0), t(year)), t(year - 30 * 86_400));
        assert_eq!(activation_threshold(t(0), t(year)), t(year - 7 * 86_400));
    }

    #[test]
    fn a_full_cycle_with_a_fake_clock() {
        // A 600 s CA: prepare after 300 s, activate after 500 s.
        let mut view = SlotsView {
            current: None,
            next_prepared: false,
        };
        assert_eq!(plan(view, t(0)), [RotationStep::PrepareAndActivateCurrent]);
        view.current = Some((t(0), t(600)));
        assert!(plan(view, t(10)).is_empty());
        assert!(
            plan(view, t(300)).is_empty(),
            "exactly at the threshold nothing happens"
        );
        assert_eq!(plan(view, t(301)), [RotationStep::PrepareNext]);
        view.next_prepared = true;
        assert!(plan(view, t(400)).is_empty());
        assert_eq!(plan(view, t(501)), [RotationStep::Rotate]);
        // A server that was down past both thresholds does both at once.
        let late = SlotsView {
            current: Some((t(0), t(600))),
            next_prepared: false,
        };
        assert_eq!(
            plan(late, t(550)),
            [RotationStep::PrepareNext, RotationStep::Rotate]
        );
    }
}
