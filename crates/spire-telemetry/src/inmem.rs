//! The `InMem` sink: go-metrics' `InmemSink` as SPIRE configures it (one-second intervals
//! kept for an hour) and its `InmemSignal`: on SIGUSR1 every finished interval is written
//! to the log, one info line per metric, in go-metrics' dump format:
//!
//! ```text
//! [2026-12-05 10:00:01 +0000 UTC][G] 'spire_server.started.1_13_3.example_org.host': 1.000
//! [2026-12-05 10:00:01 +0000 UTC][C] 'spire_server.rpc.x.y.OK': Count: 1 Sum: 1.000 LastUpdated: ...
//! [2026-12-05 10:00:01 +0000 UTC][S] 'spire_server.x.elapsed_time': Count: 2 Min: ... Sum: ...
//! ```
//!
//! Names are the key parts joined with `.` (spaces to `_`), then each label's value after a
//! `.` (spaces and `:` to `_`). Times print as Go prints a `time.Time` in UTC, the
//! last-update time with the monotonic reading (`m=+<seconds since start>`) Go adds.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::statsd::Value;

/// The aggregation interval (SPIRE's `inmemInterval`).
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long intervals are kept (SPIRE's `inmemRetention`).
pub const RETENTION: Duration = Duration::from_secs(3600);

/// go-metrics' `AggregateSample`.
#[derive(Debug, Clone, PartialEq)]
struct Aggregate {
    name: String,
    labels: Vec<(String, String)>,
    count: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
    last_updated: (SystemTime, Duration),
}

impl Aggregate {
    fn ingest(&mut self, v: f64, at: (SystemTime, Duration)) {
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
        if v < self.min || self.count == 1 {
            self.min = v;
        }
        if v > self.max || self.count == 1 {
            self.max = v;
        }
        self.last_updated = at;
    }

    fn stddev(&self) -> f64 {
        let n = self.count as f64;
        let num = n * self.sum_sq - self.sum * self.sum;
        let div = n * (n - 1.0);
        if div == 0.0 { 0.0 } else { (num / div).sqrt() }
    }

    /// `AggregateSample.String()`.
    fn describe(&self) -> String {
        let updated = go_time_mono(self.last_updated.0, self.last_updated.1);
        if self.count == 0 {
            "Count: 0".into()
        } else if self.stddev() == 0.0 {
            format!(
                "Count: {} Sum: {:.3} LastUpdated: {updated}",
                self.count, self.sum
            )
        } else {
            format!(
                "Count: {} Min: {:.3} Mean: {:.3} Max: {:.3} Stddev: {:.3} Sum: {:.3} LastUpdated: {updated}",
                self.count,
                self.min,
                self.sum / self.count as f64,
                self.max,
                self.stddev(),
                self.sum
            )
        }
    }
}

/// A gauge's name, labels and value.
type Gauge = (String, Vec<(String, String)>, f64);

/// One interval's metrics, keyed as go-metrics keys them (name and `;name=value` labels).
#[derive(Debug)]
struct Interval {
    start: SystemTime,
    gauges: BTreeMap<String, Gauge>,
    counters: BTreeMap<String, Aggregate>,
    samples: BTreeMap<String, Aggregate>,
}

/// The sink.
#[derive(Debug)]
pub struct InmemSink {
    started: Instant,
    intervals: Mutex<VecDeque<Interval>>,
}

impl Default for InmemSink {
    fn default() -> Self {
        InmemSink {
            started: Instant::now(),
            intervals: Mutex::new(VecDeque::new()),
        }
    }
}

fn flatten(parts: &[&str]) -> String {
    parts.join(".").replace(' ', "_")
}

/// Whole seconds since the epoch, truncated to [`INTERVAL`].
fn truncate(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// go-metrics' `getInterval`: makes `now`'s second the newest interval (a clock that went
/// back keeps filling the newest), dropping those older than [`RETENTION`].
fn roll(all: &mut VecDeque<Interval>, now: SystemTime) {
    let start = truncate(now);
    if all.back().is_none_or(|i| i.start < start) {
        all.push_back(Interval {
            start,
            gauges: BTreeMap::new(),
            counters: BTreeMap::new(),
            samples: BTreeMap::new(),
        });
        let keep = (RETENTION.as_secs() / INTERVAL.as_secs()) as usize;
        while all.len() > keep {
            all.pop_front();
        }
    }
}

/// Go's `time.Time.String()` in UTC without a monotonic reading.
pub fn go_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut out = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        let _ = write!(out, ".{}", frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Go's `time.Time.String()` of `time.Now()`: with `m=+<monotonic seconds>`.
fn go_time_mono(t: SystemTime, since_start: Duration) -> String {
    format!(
        "{} m=+{}.{:09}",
        go_time(t),
        since_start.as_secs(),
        since_start.subsec_nanos()
    )
}

impl InmemSink {
    /// An empty sink.
    pub fn new() -> InmemSink {
        InmemSink::default()
    }

    /// Records one emission at the current time.
    pub fn emit(&self, parts: &[&str], labels: &[(String, String)], value: Value) {
        self.emit_at(
            parts,
            labels,
            value,
            SystemTime::now(),
            self.started.elapsed(),
        );
    }

    /// Records one emission at `now` (`since_start` is the monotonic reading).
    pub fn emit_at(
        &self,
        parts: &[&str],
        labels: &[(String, String)],
        value: Value,
        now: SystemTime,
        since_start: Duration,
    ) {
        let name = flatten(parts);
        let mut key = name.clone();
        for (n, v) in labels {
            let _ = write!(key, ";{n}={v}");
        }
        let key = key.replace(' ', "_");
        let mut all = self.intervals.lock();
        roll(&mut all, now);
        let Some(cur) = all.back_mut() else {
            return;
        };
        let fresh = || Aggregate {
            name: name.clone(),
            labels: labels.to_vec(),
            count: 0,
            sum: 0.0,
            sum_sq: 0.0,
            min: 0.0,
            max: 0.0,
            last_updated: (now, since_start),
        };
        match value {
            Value::Gauge(v) => {
                cur.gauges.insert(key, (name.clone(), labels.to_vec(), v));
            }
            Value::Counter(v) => cur
                .counters
                .entry(key)
                .or_insert_with(fresh)
                .ingest(f64::from(v), (now, since_start)),
            Value::Sample(v) => cur
                .samples
                .entry(key)
                .or_insert_with(fresh)
                .ingest(f64::from(v), (now, since_start)),
        }
    }

    /// go-metrics' `dumpStats`: every interval but the current second's.
    pub fn dump(&self) -> Vec<String> {
        self.dump_at(SystemTime::now())
    }

    /// [`InmemSink::dump`] at `now`: as go-metrics' `Data`, the current second's interval
    /// is created first (so a quiet second ago is finished and dumped).
    pub fn dump_at(&self, now: SystemTime) -> Vec<String> {
        let mut all = self.intervals.lock();
        roll(&mut all, now);
        let mut out = Vec::new();
        let finished = all.len().saturating_sub(1);
        for intv in all.iter().take(finished) {
            let at = go_time(intv.start);
            let named = |name: &str, labels: &[(String, String)]| {
                let mut n = name.to_string();
                for (_, v) in labels {
                    n.push('.');
                    n.push_str(&v.replace([' ', ':'], "_"));
                }
                n
            };
            for (name, labels, v) in intv.gauges.values() {
                out.push(format!("[{at}][G] '{}': {v:.3}", named(name, labels)));
            }
            for a in intv.counters.values() {
                out.push(format!(
                    "[{at}][C] '{}': {}",
                    named(&a.name, &a.labels),
                    a.describe()
                ));
            }
            for a in intv.samples.values() {
                out.push(format!(
                    "[{at}][S] '{}': {}",
                    named(&a.name, &a.labels),
                    a.describe()
                ));
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn go_time_strings() {
        assert_eq!(
            go_time(at(1_796_464_801, 0)),
            "2026-12-05 10:00:01 +0000 UTC"
        );
        assert_eq!(
            go_time(at(1_796_464_801, 120_000_000)),
            "2026-12-05 10:00:01.12 +0000 UTC"
        );
        assert_eq!(
            go_time_mono(at(1_796_464_801, 5), Duration::new(3, 4_000)),
            "2026-12-05 10:00:01.000000005 +0000 UTC m=+3.000004000"
        );
    }

    #[test]
    fn dump_skips_the_current_interval_and_formats_as_go_metrics() {
        let s = InmemSink::new();
        let host = vec![("host".to_string(), "vm".to_string())];
        let t0 = at(1_796_464_801, 250_000_000);
        let mono = Duration::from_millis(1500);
        s.emit_at(
            &["spire_server", "started"],
            &host,
            Value::Gauge(1.0),
            t0,
            mono,
        );
        s.emit_at(
            &["spire_server", "rpc", "x"],
            &[
                ("status".into(), "OK".into()),
                ("host".into(), "a b:c".into()),
            ],
            Value::Counter(1.0),
            t0,
            mono,
        );
        for v in [2.0, 4.0] {
            s.emit_at(
                &["spire_server", "t", "elapsed_time"],
                &[],
                Value::Sample(v),
                t0,
                mono,
            );
        }
        // Still being filled: nothing to dump.
        assert!(s.dump_at(t0).is_empty());
        // A second later, with nothing emitted since, the interval is finished.
        let d = s.dump_at(at(1_796_464_802, 0));
        let when = "[2026-12-05 10:00:01 +0000 UTC]";
        let updated = "2026-12-05 10:00:01.25 +0000 UTC m=+1.500000000";
        assert_eq!(
            d,
            [
                format!("{when}[G] 'spire_server.started.vm': 1.000"),
                format!(
                    "{when}[C] 'spire_server.rpc.x.OK.a_b_c': Count: 1 Sum: 1.000 LastUpdated: {updated}"
                ),
                format!(
                    "{when}[S] 'spire_server.t.elapsed_time': Count: 2 Min: 2.000 Mean: 3.000 Max: 4.000 Stddev: 1.414 Sum: 6.000 LastUpdated: {updated}"
                ),
            ]
        );
    }

    #[test]
    fn an_hour_of_intervals_is_kept() {
        let s = InmemSink::new();
        for i in 0..3700u64 {
            s.emit_at(
                &["x"],
                &[],
                Value::Gauge(1.0),
                at(1_000_000 + i, 0),
                Duration::ZERO,
            );
        }
        assert_eq!(s.intervals.lock().len(), 3600);
        assert_eq!(s.dump_at(at(1_000_000 + 3699, 0)).len(), 3599);
    }
}
