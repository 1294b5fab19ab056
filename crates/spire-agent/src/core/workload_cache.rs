//! Workload attestation results cached per process lifetime.
//!
//! A process is identified by its PID together with its start time (from `/proc/<pid>/stat`)
//! and its credentials: a recycled PID has another start time, so a result is never reused
//! across PID reuse. Entries also age out after `max_age`, which bounds how long a change of
//! the process (an `exec`, say) can go unnoticed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use spire_plugin::Selector;

/// Identifies one process lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    /// PID.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// UID at accept time.
    pub uid: u32,
    /// GID at accept time.
    pub gid: u32,
}

/// The cache.
#[derive(Debug)]
pub struct AttestationCache {
    max_entries: usize,
    max_age: Duration,
    map: HashMap<ProcessKey, (SystemTime, Vec<Selector>)>,
}

impl AttestationCache {
    /// At most `max_entries` processes, each for at most `max_age`.
    pub fn new(max_entries: usize, max_age: Duration) -> Self {
        Self {
            max_entries: max_entries.max(1),
            max_age,
            map: HashMap::new(),
        }
    }

    /// The cached selectors of `key`, if fresh at `now`.
    pub fn get(&self, key: &ProcessKey, now: SystemTime) -> Option<Vec<Selector>> {
        let (at, selectors) = self.map.get(key)?;
        let age = now.duration_since(*at).unwrap_or_default();
        (age < self.max_age).then(|| selectors.clone())
    }

    /// Stores the selectors of `key`, evicting stale and then the oldest results when full.
    pub fn put(&mut self, key: ProcessKey, selectors: Vec<Selector>, now: SystemTime) {
        if self.map.len() >= self.max_entries && !self.map.contains_key(&key) {
            let max_age = self.max_age;
            self.map
                .retain(|_, (at, _)| now.duration_since(*at).unwrap_or_default() < max_age);
            if self.map.len() >= self.max_entries
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key, (now, selectors));
    }

    /// Number of processes held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn key(pid: i32, start: u64) -> ProcessKey {
        ProcessKey {
            pid,
            start_time: start,
            uid: 1,
            gid: 1,
        }
    }

    #[test]
    fn never_reused_across_pid_reuse_and_ages_out() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        let mut c = AttestationCache::new(2, Duration::from_secs(30));
        assert!(c.is_empty());
        let sel = vec![Selector::parse("unix:uid:1").unwrap()];
        c.put(key(10, 100), sel.clone(), t0);
        assert_eq!(c.get(&key(10, 100), t0), Some(sel.clone()));
        // Same PID, another process.
        assert_eq!(c.get(&key(10, 101), t0), None);
        // Aged out.
        assert_eq!(c.get(&key(10, 100), t0 + Duration::from_secs(30)), None);
        // Bounded.
        c.put(key(11, 1), sel.clone(), t0 + Duration::from_secs(1));
        c.put(key(12, 1), sel.clone(), t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key(10, 100), t0 + Duration::from_secs(2)), None);
    }
}
