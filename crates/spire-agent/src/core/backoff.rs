//! SPIRE's retry timing (`pkg/common/backoff`, on cenkalti/backoff): exponential growth by
//! 1.5 from an initial interval, ±10% randomisation, a cap, and an optional maximum elapsed
//! time after which the caller gives up. Random draws and `now` are arguments.

use std::time::Duration;

/// Randomisation factor: each interval is moved by up to ±10%.
pub const JITTER: f64 = 0.10;
/// Growth factor between consecutive intervals.
pub const MULTIPLIER: f64 = 1.5;

/// An exponential backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max_interval: Duration,
    max_elapsed: Option<Duration>,
    current: Duration,
    elapsed: Duration,
}

impl Backoff {
    /// Starts at `initial`; the cap defaults to 24 times `initial`, as in SPIRE.
    pub fn new(initial: Duration) -> Self {
        Self {
            initial,
            max_interval: initial * 24,
            max_elapsed: None,
            current: initial,
            elapsed: Duration::ZERO,
        }
    }

    /// Caps intervals at `max`.
    pub fn with_max_interval(mut self, max: Duration) -> Self {
        if !max.is_zero() {
            self.max_interval = max;
        }
        self
    }

    /// Gives up (returns `None`) once the intervals handed out add up to `max`.
    pub fn with_max_elapsed(mut self, max: Duration) -> Self {
        self.max_elapsed = Some(max);
        self
    }

    /// Back to the initial interval.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.elapsed = Duration::ZERO;
    }

    /// The next interval, randomised by `jitter` (a uniform draw in `[0, 1)`), or `None`
    /// when the maximum elapsed time has been used up.
    pub fn next(&mut self, jitter: f64) -> Option<Duration> {
        if let Some(max) = self.max_elapsed
            && self.elapsed >= max
        {
            return None;
        }
        let base = self.current.as_secs_f64();
        let delta = JITTER * base;
        let low = base - delta;
        let j = if jitter.is_nan() {
            0.5
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let out = Duration::from_secs_f64((low + j * 2.0 * delta).max(0.0));
        let grown = self.current.mul_f64(MULTIPLIER);
        self.current = grown.min(self.max_interval);
        self.elapsed += out;
        Some(out)
    }
}

/// SPIRE's size-limited backoff for batch sizes (`backoff.SizeLimitedBackOff`): start at a
/// limit, halve on failure, double back on success, never under one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimit {
    max: usize,
    current: usize,
}

impl SizeLimit {
    /// Starts at `max` (500 in SPIRE: the server's signing rate limit).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self { max, current: max }
    }
    /// The current batch size.
    pub fn current(&self) -> usize {
        self.current
    }
    /// A batch failed: halve.
    pub fn failure(&mut self) {
        self.current = (self.current / 2).max(1);
    }
    /// A batch succeeded: grow back.
    pub fn success(&mut self) {
        self.current = (self.current * 2).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(5)).with_max_interval(Duration::from_secs(10));
        assert_eq!(b.next(0.5), Some(Duration::from_secs(5)));
        assert_eq!(b.next(0.5), Some(Duration::from_secs_f64(7.5)));
        assert_eq!(b.next(0.5), Some(Duration::from_secs(10)));
        assert_eq!(b.next(0.5), Some(Duration::from_secs(10)));
        b.reset();
        let low = b.next(0.0).unwrap();
        assert_eq!(low, Duration::from_secs_f64(4.5));
        b.reset();
        let high = b.next(1.0).unwrap();
        assert_eq!(high, Duration::from_secs_f64(5.5));
    }

    #[test]
    fn gives_up_after_max_elapsed() {
        let mut b = Backoff::new(Duration::from_secs(5)).with_max_elapsed(Duration::from_secs(12));
        assert!(b.next(0.5).is_some()); // 5
        assert!(b.next(0.5).is_some()); // 12.5
        assert_eq!(b.next(0.5), None);
    }

    #[test]
    fn size_limit() {
        let mut s = SizeLimit::new(500);
        s.failure();
        assert_eq!(s.current(), 250);
        for _ in 0..20 {
            s.failure();
        }
        assert_eq!(s.current(), 1);
        s.success();
        assert_eq!(s.current(), 2);
        for _ in 0..20 {
            s.success();
        }
        assert_eq!(s.current(), 500);
    }
}
