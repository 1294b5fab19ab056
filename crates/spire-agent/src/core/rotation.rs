//! When to rotate an X509-SVID or a JWT-SVID: at half of its lifetime with ±10% jitter, or,
//! with an `availability_target`, when the remaining lifetime falls under the target plus up
//! to ten minutes of jitter (only when the lifetime leaves a grace period of more than 12h).
//!
//! SPIRE draws a fresh random jitter at every check; here the draw is an argument (`jitter`,
//! a number in `[0, 1)`), so tests choose it.

use std::time::{Duration, SystemTime};

/// The grace period (lifetime minus availability target) under which the availability
/// target is ignored.
pub const GRACE_PERIOD_THRESHOLD: Duration = Duration::from_secs(12 * 3600);

/// The jitter added to the availability target: up to ten minutes.
pub const AVAILABILITY_TARGET_JITTER: Duration = Duration::from_secs(600);

/// SPIRE's rotation strategy (`rotationutil.RotationStrategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationStrategy {
    availability_target: Option<Duration>,
}

/// What an agent should do about its own SVID at a rotation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentSvidAction {
    /// Nothing yet.
    Keep,
    /// Call `Agent/RenewAgent` with a new CSR.
    Renew,
    /// Run node attestation again (the agent is re-attestable).
    Reattest,
}

impl RotationStrategy {
    /// A strategy; `availability_target` of zero or `None` means half-life only.
    pub fn new(availability_target: Option<Duration>) -> Self {
        Self {
            availability_target: availability_target.filter(|d| !d.is_zero()),
        }
    }

    /// Whether an X509-SVID valid from `not_before` to `not_after` should be rotated at
    /// `now`; `jitter` is a uniform draw in `[0, 1)`.
    pub fn should_rotate_x509(
        &self,
        now: SystemTime,
        not_before: SystemTime,
        not_after: SystemTime,
        jitter: f64,
    ) -> bool {
        let Ok(ttl) = not_after.duration_since(now) else {
            return true;
        };
        if ttl.is_zero() {
            return true;
        }
        let lifetime = not_after.duration_since(not_before).unwrap_or_default();
        if let Some(target) = self.availability_target
            && !should_fallback(lifetime, target)
        {
            let jittered = target + AVAILABILITY_TARGET_JITTER.mul_f64(clamp_unit(jitter));
            if ttl <= jittered {
                return true;
            }
        }
        ttl <= jittered_half_life(lifetime, jitter)
    }

    /// Whether the availability target cannot be honoured for an SVID of this lifetime, so
    /// that the default (half-life) rotation applies; SPIRE warns about it.
    pub fn should_fallback_x509_default(&self, lifetime: Duration) -> bool {
        self.availability_target
            .is_some_and(|target| should_fallback(lifetime, target))
    }

    /// Whether a cached JWT-SVID issued at `issued_at` and expiring at `expires_at` must be
    /// replaced before it is handed out at `now`.
    pub fn jwt_expires_soon(
        &self,
        now: SystemTime,
        issued_at: SystemTime,
        expires_at: SystemTime,
        jitter: f64,
    ) -> bool {
        let Ok(ttl) = expires_at.duration_since(now) else {
            return true;
        };
        if ttl.is_zero() {
            return true;
        }
        let lifetime = expires_at.duration_since(issued_at).unwrap_or_default();
        ttl <= jittered_half_life(lifetime, jitter)
    }

    /// The agent SVID decision at a rotation check: rotate when due (or when the SVID is
    /// chained to a tainted authority), by re-attesting when the agent may.
    pub fn agent_svid_action(
        &self,
        now: SystemTime,
        not_before: SystemTime,
        not_after: SystemTime,
        reattestable: bool,
        tainted: bool,
        jitter: f64,
    ) -> AgentSvidAction {
        if !tainted && !self.should_rotate_x509(now, not_before, not_after, jitter) {
            return AgentSvidAction::Keep;
        }
        if reattestable {
            AgentSvidAction::Reattest
        } else {
            AgentSvidAction::Renew
        }
    }
}

/// Whether a JWT-SVID is already expired at `now`.
pub fn jwt_expired(now: SystemTime, expires_at: SystemTime) -> bool {
    now >= expires_at
}

/// Whether an X509 certificate is expired at `now`.
pub fn x509_expired(now: SystemTime, not_after: SystemTime) -> bool {
    now > not_after
}

fn should_fallback(lifetime: Duration, target: Duration) -> bool {
    lifetime.saturating_sub(target) <= GRACE_PERIOD_THRESHOLD
}

fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// Half the lifetime, moved by up to ±10% of the half life: `jitter` 0 gives 45% of the
/// lifetime, `jitter` just under 1 gives 55%.
fn jittered_half_life(lifetime: Duration, jitter: f64) -> Duration {
    let half = lifetime / 2;
    let delta = half / 10;
    (half - delta) + (delta * 2).mul_f64(clamp_unit(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn half_life_with_jitter_bounds() {
        let s = RotationStrategy::new(None);
        // Lifetime 100s: rotate between 45s and 55s of remaining life.
        assert!(!s.should_rotate_x509(t(40), t(0), t(100), 0.0)); // 60s left
        assert!(!s.should_rotate_x509(t(50), t(0), t(100), 0.0)); // 50s left > 45s
        assert!(s.should_rotate_x509(t(50), t(0), t(100), 0.99)); // 50s left <= ~55s
        assert!(s.should_rotate_x509(t(56), t(0), t(100), 0.0)); // 44s left
        assert!(s.should_rotate_x509(t(100), t(0), t(100), 0.5)); // expired
        assert!(s.should_rotate_x509(t(200), t(0), t(100), 0.5));
    }

    #[test]
    fn availability_target() {
        let day = 24 * 3600;
        let s = RotationStrategy::new(Some(Duration::from_secs(2 * day)));
        // Lifetime 72h, 48h left: the target applies (grace 24h > 12h).
        assert!(s.should_rotate_x509(t(day), t(0), t(3 * day), 0.0));
        // Lifetime 30h, target 24h: grace 6h, fall back to half life.
        let s = RotationStrategy::new(Some(Duration::from_secs(day)));
        assert!(s.should_fallback_x509_default(Duration::from_secs(30 * 3600)));
        assert!(!s.should_rotate_x509(t(6 * 3600), t(0), t(30 * 3600), 0.0));
        assert!(!RotationStrategy::new(None).should_fallback_x509_default(Duration::ZERO));
    }

    #[test]
    fn jwt_rules() {
        let s = RotationStrategy::default();
        assert!(!s.jwt_expires_soon(t(0), t(0), t(3600), 0.5));
        assert!(s.jwt_expires_soon(t(3540), t(0), t(3600), 0.5));
        assert!(s.jwt_expires_soon(t(5000), t(0), t(3600), 0.5));
        assert!(jwt_expired(t(3600), t(3600)));
        assert!(!x509_expired(t(3600), t(3600)));
        assert!(x509_expired(t(3601), t(3600)));
    }

    /// `rotation::short_ttls`: agent SVIDs of a 10 s TTL, backdated 10 s by the server as
    /// SPIRE does (a 20 s lifetime), checked every 5 s ± 10% (the rotator's backoff after a
    /// success). Whatever the jitter draws, every check rotates, long before expiry.
    #[test]
    fn short_agent_svids_rotate_well_before_expiry() {
        use crate::core::backoff::Backoff;
        let s = RotationStrategy::default();
        for (check_jitter, rotation_jitter) in
            [(0.0, 0.0), (0.999, 0.0), (0.0, 0.999), (0.999, 0.999)]
        {
            let mut backoff = Backoff::new(Duration::from_secs(5));
            let mut now = t(0);
            // Issued at t(0): valid from t(0) - 10 s to t(0) + 10 s.
            let (mut not_before, mut not_after) = (t(0) - Duration::from_secs(10), t(10));
            let mut rotations = 0;
            for _ in 0..20 {
                backoff.reset();
                now += backoff.next(check_jitter).unwrap();
                assert!(now < not_after, "checked after expiry");
                let action =
                    s.agent_svid_action(now, not_before, not_after, false, false, rotation_jitter);
                if action == AgentSvidAction::Renew {
                    rotations += 1;
                    not_before = now - Duration::from_secs(10);
                    not_after = now + Duration::from_secs(10);
                }
            }
            assert_eq!(rotations, 20);
        }
    }

    #[test]
    fn agent_action() {
        let s = RotationStrategy::default();
        assert_eq!(
            s.agent_svid_action(t(10), t(0), t(100), false, false, 0.5),
            AgentSvidAction::Keep
        );
        assert_eq!(
            s.agent_svid_action(t(10), t(0), t(100), false, true, 0.5),
            AgentSvidAction::Renew
        );
        assert_eq!(
            s.agent_svid_action(t(60), t(0), t(100), true, false, 0.5),
            AgentSvidAction::Reattest
        );
    }
}
