//! Per-IP token buckets as SPIRE's rate limits use them (`rate.NewLimiter(limit, limit)`):
//! a bucket of `limit` tokens refilled at `limit` per second; a request for `n` tokens waits
//! until they are available, and asking for more than the bucket holds is refused. Callers
//! on the UNIX socket are never limited.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
/// A request for more tokens than a bucket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate ({requested}) exceeds burst size ({burst})")]
pub struct BurstExceeded {
    /// Tokens asked for.
    pub requested: u32,
    /// The bucket's size.
    pub burst: u32,
}

/// One limit, applied per caller IP.
#[derive(Debug)]
pub struct PerIpLimiter {
    limit: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PerIpLimiter {
    /// `limit` events per second, with a burst of `limit`.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves `n` tokens for `ip` and returns how long to wait before proceeding.
    fn reserve(&self, ip: &str, n: u32, now: Instant) -> Result<Duration, BurstExceeded> {
        if n > self.limit {
            return Err(BurstExceeded {
                requested: n,
                burst: self.limit,
            });
        }
        let rate = f64::from(self.limit);
        let mut buckets = self.buckets.lock();
        if buckets.len() > 100_000 {
            // Forget idle callers; a full bucket is what a new one starts with anyway.
            buckets.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(60));
        }
        let b = buckets.entry(ip.to_string()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = now;
        b.tokens -= f64::from(n);
        if b.tokens >= 0.0 {
            Ok(Duration::ZERO)
        } else {
            Ok(Duration::from_secs_f64(-b.tokens / rate))
        }
    }

    /// Waits until `n` tokens are available for `ip` (`None`: local caller, no limit).
    pub async fn wait(&self, ip: Option<&str>, n: u32) -> Result<(), BurstExceeded> {
        let Some(ip) = ip else { return Ok(()) };
        let delay = self.reserve(ip, n, Instant::now())?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}

/// The limits SPIRE applies.
#[derive(Debug)]
pub struct RateLimits {
    /// AttestAgent: 1 per second per IP.
    pub attestation: Option<PerIpLimiter>,
    /// X.509 signing (BatchNewX509SVID, NewDownstreamX509CA and RenewAgent share it, as
    /// SPIRE's `csrLimit`): 500 CSRs per second per IP.
    pub x509_signing: Option<PerIpLimiter>,
    /// JWT signing: 500 per second per IP.
    pub jwt_signing: Option<PerIpLimiter>,
    /// Where `rateLimit_<method>` calls are counted.
    pub metrics: spire_telemetry::Metrics,
}

impl RateLimits {
    /// SPIRE's defaults, each switchable as `ratelimit { attestation, signing }` allows.
    pub fn new(attestation: bool, signing: bool) -> Self {
        Self {
            attestation: attestation.then(|| PerIpLimiter::new(1)),
            x509_signing: signing.then(|| PerIpLimiter::new(500)),
            jwt_signing: signing.then(|| PerIpLimiter::new(500)),
            metrics: spire_telemetry::Metrics::disabled(),
        }
    }

    /// Counts limiter calls into `metrics`.
    pub fn with_metrics(mut self, metrics: spire_telemetry::Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// Waits on an optional limiter. A limiter in use is counted as SPIRE's
/// `rateLimit_<method key>` call (`ResourceExhausted` when over the burst); a disabled one
/// is not.
pub async fn limit(
    limits: &RateLimits,
    l: &Option<PerIpLimiter>,
    ip: Option<&str>,
    n: u32,
    method_key: &[&str],
) -> Result<(), BurstExceeded> {
    match l {
        Some(l) => {
            let mut key = Vec::with_capacity(method_key.len() + 1);
            key.push("rateLimit");
            key.extend_from_slice(method_key);
            let call = limits.metrics.start_call(&key);
            let r = l.wait(ip, n).await;
            call.done(if r.is_ok() {
                tonic::Code::Ok
            } else {
                tonic::Code::ResourceExhausted
            });
            r
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_limit_rate() {
        let l = PerIpLimiter::new(2);
        let t0 = Instant::now();
        assert_eq!(l.reserve("a", 2, t0).unwrap(), Duration::ZERO);
        // Empty now: one more token takes half a second.
        assert_eq!(l.reserve("a", 1, t0).unwrap(), Duration::from_millis(500));
        // Other IPs have their own bucket.
        assert_eq!(l.reserve("b", 1, t0).unwrap(), Duration::ZERO);
        assert!(l.reserve("a", 3, t0).is_err());
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.reserve("a", 2, later).unwrap(), Duration::ZERO);
    }
}
