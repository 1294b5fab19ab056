//! The `M3` sink: SPIRE's tally v4 root scope with tally's M3 reporter, in Rust.
//!
//! SPIRE builds one tally root scope per `M3` block (`env` and `address` from the
//! configuration, `service` the program's service name) reporting every second. Its
//! go-metrics instance puts the metric type after the prefix, and the sink names a metric
//! by the key parts after those two joined with `_`. Labels become the tags of a tally
//! sub-scope. Counters are aggregated and the increase since the last report is sent
//! (nothing when it did not change); a gauge is sent when it was set since the last report;
//! samples go to histograms: keys of type `timer` (`MeasureSince`) to a duration histogram
//! with SPIRE's `durationBuckets` (the milliseconds truncated), others to a value histogram
//! with `exponentialValueBuckets`. A histogram is sent as one counter per bucket that got
//! samples since the last report, tagged `bucketid` (its index, four digits) and `bucket`
//! (its bounds, such as `100ms-200ms` or `10.000000-100.000000`).
//!
//! Each report also carries what tally adds on its own: the scope registry's cardinality
//! gauges before the metrics, and the reporter's batch-size histogram and batch, metric,
//! write-error and tag-cache counters after them, all tagged `version`, `host` = `global`
//! and `instance` = `global`.
//!
//! On the wire each batch is one UDP datagram holding a Thrift compact-protocol `oneway`
//! call `emitMetricBatchV2(MetricBatch)` of M3's v2 IDL, with the common tags `service` and
//! `env`; metrics are split across datagrams as tally does (a 32768-byte budget, each
//! metric counted at its largest encoding). A thread per sink reports; callers only update
//! counts under a short lock, and at most [`MAX_SERIES`] distinct metrics are kept (more
//! are dropped, where tally would grow without bound).

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::statsd::Value;

/// How often the scope reports (SPIRE's `reportEvery`).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// tally's `DefaultMaxPacketSize`.
const MAX_PACKET: i64 = 32768;
/// tally's `_emitMetricBatchOverhead`: what it allows for the call around the batch.
const CALL_OVERHEAD: i64 = 19;
/// Distinct counters, gauges and histograms a sink keeps.
pub const MAX_SERIES: usize = 65536;
/// The tally version the internal metrics carry.
const TALLY_VERSION: &str = "4.1.17";
/// The Thrift method tally calls.
const METHOD: &str = "emitMetricBatchV2";

/// SPIRE's `durationBuckets`, in milliseconds.
const DURATION_BUCKETS_MS: [i64; 20] = [
    0, 10, 25, 50, 75, 100, 200, 300, 400, 500, 600, 800, 1000, 2000, 5000, 10000, 15000, 20000,
    25000, 30000,
];
/// SPIRE's `exponentialValueBuckets`: 0, then 1 to 10000 by factors of 10.
const VALUE_BUCKETS: [f64; 6] = [0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0];
/// tally's reporter batch-size buckets: 0, then 2 to 2048 by factors of 2.
const BATCH_SIZE_BUCKETS: [f64; 12] = [
    0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// A tag: name and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

impl Tag {
    fn new(name: &str, value: &str) -> Tag {
        Tag {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// M3's `MetricValue`: its type and the field that type uses (the others are zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// `COUNTER` with `count`.
    Counter(i64),
    /// `GAUGE` with `gauge`.
    Gauge(f64),
    /// `TIMER` with `timer` in nanoseconds (tally's M3 reporter does not send these for
    /// SPIRE, whose timings are histograms).
    Timer(i64),
}

/// M3's `Metric`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The name.
    pub name: String,
    /// The value.
    pub value: MetricValue,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// The tags; `None` leaves the optional field out.
    pub tags: Option<Vec<Tag>>,
}

// ---------------------------------------------------------------------------------------
// Thrift compact protocol, for exactly the structs of M3's v2 IDL.

/// Compact-protocol type codes.
mod ty {
    pub(super) const I32: u8 = 5;
    pub(super) const I64: u8 = 6;
    pub(super) const DOUBLE: u8 = 7;
    pub(super) const BINARY: u8 = 8;
    pub(super) const LIST: u8 = 9;
    pub(super) const STRUCT: u8 = 12;
}
const PROTOCOL_ID: u8 = 0x82;
const VERSION: u8 = 1;
const ONEWAY: u8 = 4;
const STOP: u8 = 0;

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A field header for the field right after the previous one (every field here is).
fn put_next_field(out: &mut Vec<u8>, ty: u8) {
    out.push(0x10 | ty);
}

fn put_list_header(out: &mut Vec<u8>, len: usize, elem: u8) {
    if len < 15 {
        out.push(((len as u8) << 4) | elem);
    } else {
        out.push(0xf0 | elem);
        put_uvarint(out, len as u64);
    }
}

fn put_tags(out: &mut Vec<u8>, tags: &[Tag]) {
    put_list_header(out, tags.len(), ty::STRUCT);
    for t in tags {
        put_next_field(out, ty::BINARY);
        put_string(out, &t.name);
        put_next_field(out, ty::BINARY);
        put_string(out, &t.value);
        out.push(STOP);
    }
}

/// Appends one `Metric` struct.
pub fn encode_metric(out: &mut Vec<u8>, m: &Metric) {
    let (kind, count, gauge, timer) = match m.value {
        MetricValue::Counter(c) => (1, c, 0.0, 0),
        MetricValue::Gauge(g) => (2, 0, g, 0),
        MetricValue::Timer(t) => (3, 0, 0.0, t),
    };
    put_next_field(out, ty::BINARY);
    put_string(out, &m.name);
    put_next_field(out, ty::STRUCT);
    put_next_field(out, ty::I32);
    put_i32(out, kind);
    put_next_field(out, ty::I64);
    put_i64(out, count);
    put_next_field(out, ty::DOUBLE);
    out.extend_from_slice(&gauge.to_bits().to_le_bytes());
    put_next_field(out, ty::I64);
    put_i64(out, timer);
    out.push(STOP);
    put_next_field(out, ty::I64);
    put_i64(out, m.timestamp);
    if let Some(tags) = &m.tags {
        put_next_field(out, ty::LIST);
        put_tags(out, tags);
    }
    out.push(STOP);
}

fn encode_batch(out: &mut Vec<u8>, metrics: &[Metric], common_tags: &[Tag]) {
    put_next_field(out, ty::LIST);
    put_list_header(out, metrics.len(), ty::STRUCT);
    for m in metrics {
        encode_metric(out, m);
    }
    put_next_field(out, ty::LIST);
    put_tags(out, common_tags);
    out.push(STOP);
}

/// One datagram: the `oneway` call `emitMetricBatchV2` with sequence number `seq` and
/// its argument `batch` (field 1), the batch holding `metrics` and `common_tags`.
pub fn encode_call(seq: i32, metrics: &[Metric], common_tags: &[Tag]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 64 * metrics.len());
    out.push(PROTOCOL_ID);
    out.push(VERSION | (ONEWAY << 5));
    put_uvarint(&mut out, u64::from(seq as u32));
    put_string(&mut out, METHOD);
    put_next_field(&mut out, ty::STRUCT);
    encode_batch(&mut out, metrics, common_tags);
    out.push(STOP);
    out
}

/// tally's size estimate of a metric: encoded with its largest values.
fn estimated_size(name: &str, kind: MetricValue, tags: Option<&[Tag]>) -> i64 {
    let value = match kind {
        MetricValue::Counter(_) => MetricValue::Counter(i64::MAX),
        MetricValue::Gauge(_) => MetricValue::Gauge(f64::MAX),
        MetricValue::Timer(_) => MetricValue::Timer(i64::MAX),
    };
    let mut out = Vec::new();
    encode_metric(
        &mut out,
        &Metric {
            name: name.to_owned(),
            value,
            timestamp: i64::MAX,
            tags: tags.map(<[Tag]>::to_vec),
        },
    );
    out.len() as i64
}

// ---------------------------------------------------------------------------------------
// Histogram buckets.

/// A histogram's buckets: upper bounds (the last one open) and their tags.
#[derive(Debug)]
struct Buckets {
    /// Inclusive upper bounds, ascending, of all buckets but the open last one.
    upper: Vec<f64>,
    /// `bucketid` and `bucket` tag values per bucket.
    names: Vec<(String, String)>,
}

fn duration_name(ms: i64) -> String {
    if ms == 0 {
        "0".to_owned()
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn value_name(v: f64) -> String {
    format!("{v:.6}")
}

fn make_buckets(bounds: &[String], upper: Vec<f64>) -> Buckets {
    // tally pads the id to the digits of the bound count, at least four.
    let width = bounds.len().to_string().len().max(4);
    let mut names = Vec::with_capacity(bounds.len() + 1);
    let mut lower = "-infinity".to_owned();
    for (i, b) in bounds
        .iter()
        .cloned()
        .chain(std::iter::once("infinity".to_owned()))
        .enumerate()
    {
        names.push((format!("{i:0width$}"), format!("{lower}-{b}")));
        lower = b;
    }
    Buckets { upper, names }
}

fn duration_buckets() -> Buckets {
    let bounds: Vec<String> = DURATION_BUCKETS_MS
        .iter()
        .map(|&ms| duration_name(ms))
        .collect();
    let upper = DURATION_BUCKETS_MS
        .iter()
        .map(|&ms| (ms * 1_000_000) as f64)
        .collect();
    make_buckets(&bounds, upper)
}

fn value_buckets(values: &[f64]) -> Buckets {
    let bounds: Vec<String> = values.iter().map(|&v| value_name(v)).collect();
    make_buckets(&bounds, values.to_vec())
}

impl Buckets {
    fn len(&self) -> usize {
        self.names.len()
    }

    /// The first bucket whose upper bound holds `v` (the open last bucket otherwise).
    fn index(&self, v: f64) -> usize {
        self.upper
            .iter()
            .position(|&u| u >= v)
            .unwrap_or(self.upper.len())
    }
}

#[derive(Debug)]
struct AllBuckets {
    duration: Buckets,
    value: Buckets,
    batch_size: Buckets,
}

impl AllBuckets {
    fn new() -> AllBuckets {
        AllBuckets {
            duration: duration_buckets(),
            value: value_buckets(&VALUE_BUCKETS),
            batch_size: value_buckets(&BATCH_SIZE_BUCKETS),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scope registry: what callers update.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HistKind {
    Duration,
    Value,
}

#[derive(Debug)]
struct Histogram {
    name: String,
    kind: HistKind,
    /// Samples per bucket since the last report.
    samples: Vec<i64>,
}

#[derive(Debug)]
struct Gauge {
    name: String,
    value: f64,
    updated: bool,
}

/// A tally sub-scope: one set of tags and the metrics emitted with it.
#[derive(Debug)]
struct Scope {
    tags: Vec<Tag>,
    counters: Vec<(String, i64)>,
    counter_index: HashMap<String, usize>,
    gauges: Vec<Gauge>,
    gauge_index: HashMap<String, usize>,
    histograms: Vec<Histogram>,
    histogram_index: HashMap<String, usize>,
}

impl Scope {
    fn new(tags: Vec<Tag>) -> Scope {
        Scope {
            tags,
            counters: Vec::new(),
            counter_index: HashMap::new(),
            gauges: Vec::new(),
            gauge_index: HashMap::new(),
            histograms: Vec::new(),
            histogram_index: HashMap::new(),
        }
    }
}

#[derive(Debug)]
struct Registry {
    buckets: Arc<AllBuckets>,
    /// Scopes in creation order.
    scopes: Vec<Scope>,
    /// Sorted tags → scope.
    index: HashMap<Vec<Tag>, usize>,
    series: usize,
    /// The distinct tag sets tally's reporter caches.
    tag_sets: HashSet<Vec<Tag>>,
}

fn internal_tags() -> Vec<Tag> {
    vec![
        Tag::new("version", TALLY_VERSION),
        Tag::new("host", "global"),
        Tag::new("instance", "global"),
    ]
}

fn sorted(tags: &[Tag]) -> Vec<Tag> {
    let mut s = tags.to_vec();
    s.sort();
    s
}

impl Registry {
    fn new(buckets: Arc<AllBuckets>) -> Registry {
        let mut tag_sets = HashSet::new();
        tag_sets.insert(sorted(&internal_tags()));
        Registry {
            buckets,
            scopes: Vec::new(),
            index: HashMap::new(),
            series: 0,
            tag_sets,
        }
    }

    /// The scope for `labels` as tally's `Tagged` makes it: a map, so a repeated name
    /// keeps its first position and takes its last value.
    fn scope(&mut self, labels: &[(String, String)]) -> usize {
        let mut tags: Vec<Tag> = Vec::with_capacity(labels.len());
        for (n, v) in labels {
            match tags.iter_mut().find(|t| &t.name == n) {
                Some(t) => t.value.clone_from(v),
                None => tags.push(Tag::new(n, v)),
            }
        }
        let key = sorted(&tags);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.scopes.push(Scope::new(tags));
        self.index.insert(key, self.scopes.len() - 1);
        self.scopes.len() - 1
    }

    fn record(&mut self, parts: &[&str], labels: &[(String, String)], value: Value) {
        // SPIRE's flattenKey: the prefix and the metric type are not part of the name.
        let name = parts.get(2..).unwrap_or_default().join("_");
        let is_timer = parts.get(1) == Some(&"timer");
        let full = self.series >= MAX_SERIES;
        let s = self.scope(labels);
        let scope = &mut self.scopes[s];
        match value {
            Value::Counter(v) => {
                let i = match scope.counter_index.get(&name) {
                    Some(&i) => i,
                    None if full => return,
                    None => {
                        scope.counters.push((name.clone(), 0));
                        scope.counter_index.insert(name, scope.counters.len() - 1);
                        self.series += 1;
                        if !scope.tags.is_empty() {
                            self.tag_sets.insert(sorted(&scope.tags));
                        }
                        scope.counters.len() - 1
                    }
                };
                // Go's int64(val) truncates.
                let c = &mut scope.counters[i].1;
                *c = c.wrapping_add(v as i64);
            }
            Value::Gauge(v) => {
                let i = match scope.gauge_index.get(&name) {
                    Some(&i) => i,
                    None if full => return,
                    None => {
                        scope.gauges.push(Gauge {
                            name: name.clone(),
                            value: 0.0,
                            updated: false,
                        });
                        scope.gauge_index.insert(name, scope.gauges.len() - 1);
                        self.series += 1;
                        if !scope.tags.is_empty() {
                            self.tag_sets.insert(sorted(&scope.tags));
                        }
                        scope.gauges.len() - 1
                    }
                };
                let g = &mut scope.gauges[i];
                g.value = v;
                g.updated = true;
            }
            Value::Sample(v) => {
                let kind = if is_timer {
                    HistKind::Duration
                } else {
                    HistKind::Value
                };
                let i = match scope.histogram_index.get(&name) {
                    Some(&i) => i,
                    None if full => return,
                    None => {
                        let n = match kind {
                            HistKind::Duration => self.buckets.duration.len(),
                            HistKind::Value => self.buckets.value.len(),
                        };
                        scope.histograms.push(Histogram {
                            name: name.clone(),
                            kind,
                            samples: vec![0; n],
                        });
                        scope
                            .histogram_index
                            .insert(name, scope.histograms.len() - 1);
                        self.series += 1;
                        self.tag_sets.insert(sorted(&scope.tags));
                        scope.histograms.len() - 1
                    }
                };
                let h = &mut scope.histograms[i];
                // tally keeps the buckets a histogram was made with and ignores a record
                // of the other kind.
                if h.kind != kind {
                    return;
                }
                let idx = match kind {
                    // time.Duration(int64(val)) * time.Millisecond.
                    HistKind::Duration => self
                        .buckets
                        .duration
                        .index(((v as i64).wrapping_mul(1_000_000)) as f64),
                    // A NaN or infinite sample has no bucket in tally (it panics).
                    HistKind::Value if !v.is_finite() => return,
                    HistKind::Value => self.buckets.value.index(f64::from(v)),
                };
                if let Some(c) = h.samples.get_mut(idx) {
                    *c += 1;
                }
            }
        }
    }
}

/// A metric ready to batch with tally's size estimate.
#[derive(Debug)]
struct Sized {
    metric: Metric,
    size: i64,
}

fn bucket_metric(
    name: &str,
    tags: &[Tag],
    (id, bucket): &(String, String),
    count: i64,
    now: i64,
) -> Sized {
    // tally sizes the counter with the scope's tags, then adds the bucket tags' lengths.
    let size = estimated_size(name, MetricValue::Counter(0), Some(tags))
        + ("bucketid".len() + "bucket".len() + id.len() + bucket.len()) as i64;
    let mut all = tags.to_vec();
    all.push(Tag::new("bucketid", id));
    all.push(Tag::new("bucket", bucket));
    Sized {
        metric: Metric {
            name: name.to_owned(),
            value: MetricValue::Counter(count),
            timestamp: now,
            tags: Some(all),
        },
        size,
    }
}

fn plain_metric(name: &str, value: MetricValue, tags: &[Tag], now: i64) -> Sized {
    let tags = (!tags.is_empty()).then(|| tags.to_vec());
    Sized {
        size: estimated_size(name, value, tags.as_deref()),
        metric: Metric {
            name: name.to_owned(),
            value,
            timestamp: now,
            tags,
        },
    }
}

/// What the reporter carries from one report to the next.
#[derive(Debug)]
struct Reporter {
    buckets: Arc<AllBuckets>,
    common_tags: Vec<Tag>,
    /// Bytes a batch's metrics may take.
    free_bytes: i64,
    seq: i32,
    /// Batches, metrics and failed sends since the internal metrics were last reported.
    batches: i64,
    metrics: i64,
    write_errors: i64,
}

impl Reporter {
    fn new(buckets: Arc<AllBuckets>, service: &str, env: &str) -> Reporter {
        let common_tags = vec![Tag::new("service", service), Tag::new("env", env)];
        let mut empty = Vec::new();
        encode_batch(&mut empty, &[], &common_tags);
        let free_bytes = MAX_PACKET - CALL_OVERHEAD - empty.len() as i64;
        Reporter {
            buckets,
            common_tags,
            free_bytes,
            seq: 0,
            batches: 0,
            metrics: 0,
            write_errors: 0,
        }
    }

    /// One report: takes what changed since the last one and returns its datagrams.
    fn report(&mut self, registry: &Mutex<Registry>, now: i64) -> Vec<Vec<u8>> {
        let internal = internal_tags();
        let mut out: Vec<Sized> = Vec::new();
        let tag_cache;
        {
            let mut reg = registry.lock();
            let reg = &mut *reg;
            let (mut counters, mut gauges, mut histograms) = (0, 0, 0);
            for s in &reg.scopes {
                counters += s.counters.len();
                gauges += s.gauges.len();
                histograms += s.histograms.len();
            }
            // The root scope (no tags) always exists.
            let scopes = 1 + reg.scopes.iter().filter(|s| !s.tags.is_empty()).count();
            for (name, v) in [
                ("tally.internal.counter_cardinality", counters),
                ("tally.internal.gauge_cardinality", gauges),
                ("tally.internal.histogram_cardinality", histograms),
                ("tally.internal.num_active_scopes", scopes),
            ] {
                out.push(plain_metric(
                    name,
                    MetricValue::Gauge(v as f64),
                    &internal,
                    now,
                ));
            }
            for scope in &mut reg.scopes {
                for (name, c) in &mut scope.counters {
                    if *c != 0 {
                        out.push(plain_metric(
                            name,
                            MetricValue::Counter(*c),
                            &scope.tags,
                            now,
                        ));
                        *c = 0;
                    }
                }
                for g in &mut scope.gauges {
                    if std::mem::take(&mut g.updated) {
                        out.push(plain_metric(
                            &g.name,
                            MetricValue::Gauge(g.value),
                            &scope.tags,
                            now,
                        ));
                    }
                }
                for h in &mut scope.histograms {
                    let buckets = match h.kind {
                        HistKind::Duration => &self.buckets.duration,
                        HistKind::Value => &self.buckets.value,
                    };
                    for (i, n) in h.samples.iter_mut().enumerate() {
                        if *n != 0 {
                            if let Some(b) = buckets.names.get(i) {
                                out.push(bucket_metric(&h.name, &scope.tags, b, *n, now));
                            }
                            *n = 0;
                        }
                    }
                }
            }
            tag_cache = reg.tag_sets.len();
        }
        // The reporter's own metrics, about the previous report's batches.
        let batch_size = self.metrics as f64 / self.batches as f64;
        let b = &self.buckets.batch_size;
        let idx = if batch_size.is_nan() {
            b.len() - 1
        } else {
            b.index(batch_size)
        };
        if let Some(name) = b.names.get(idx) {
            out.push(bucket_metric(
                "tally.internal.batch-size",
                &internal,
                name,
                1,
                now,
            ));
        }
        for (name, v) in [
            ("tally.internal.num-batches", self.batches),
            ("tally.internal.num-metrics", self.metrics),
            ("tally.internal.num-write-errors", self.write_errors),
            ("tally.internal.num-tag-cache", tag_cache as i64),
        ] {
            out.push(plain_metric(name, MetricValue::Counter(v), &internal, now));
        }
        (self.batches, self.metrics, self.write_errors) = (0, 0, 0);
        self.batch(out)
    }

    /// Splits metrics into datagrams as tally's reporter does.
    fn batch(&mut self, metrics: Vec<Sized>) -> Vec<Vec<u8>> {
        let mut datagrams = Vec::new();
        let mut current: Vec<Metric> = Vec::new();
        let mut bytes = 0;
        for m in metrics {
            if bytes + m.size > self.free_bytes && !current.is_empty() {
                datagrams.push(self.call(&current));
                current.clear();
                bytes = 0;
            }
            bytes += m.size;
            current.push(m.metric);
        }
        if !current.is_empty() {
            datagrams.push(self.call(&current));
        }
        datagrams
    }

    fn call(&mut self, metrics: &[Metric]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        self.batches += 1;
        self.metrics += metrics.len() as i64;
        encode_call(self.seq, metrics, &self.common_tags)
    }
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A running `M3` sink: callers update its registry, its thread reports every second.
#[derive(Debug)]
pub struct M3Sink {
    registry: Arc<Mutex<Registry>>,
    /// Dropped with the sink, which makes the thread send a last report and stop.
    _stop: Sender<()>,
}

impl M3Sink {
    /// Checks the settings as tally's `NewReporter` does (`env` is required), resolves
    /// `address` (`host:port`) and starts the reporting thread. `service` is the `service`
    /// tag (the program's service name, not the metric prefix).
    pub fn start(service: &str, address: &str, env: &str) -> Result<M3Sink, String> {
        if env.is_empty() {
            return Err("env common tag is required".to_owned());
        }
        let target: SocketAddr = address
            .to_socket_addrs()
            .map_err(|e| format!("invalid M3 address {address:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("invalid M3 address {address:?}: no address"))?;
        let local: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .and_then(|s| s.connect(target).map(|()| s))
            .map_err(|e| format!("unable to reach M3 at {address}: {e}"))?;
        let buckets = Arc::new(AllBuckets::new());
        let registry = Arc::new(Mutex::new(Registry::new(buckets.clone())));
        let reporter = Reporter::new(buckets, service, env);
        let (stop, stopped) = channel();
        let reg = registry.clone();
        std::thread::Builder::new()
            .name("telemetry-m3".to_owned())
            .spawn(move || report_loop(reporter, &reg, &socket, &stopped))
            .map_err(|e| format!("unable to start the M3 sink: {e}"))?;
        Ok(M3Sink {
            registry,
            _stop: stop,
        })
    }

    /// Records one emission. `parts` are go-metrics' key parts with the prefix and the
    /// metric type (`counter`, `gauge`, `sample` or `timer`) first.
    pub fn emit(&self, parts: &[&str], labels: &[(String, String)], value: Value) {
        self.registry.lock().record(parts, labels, value);
    }
}

fn report_loop(
    mut reporter: Reporter,
    registry: &Mutex<Registry>,
    socket: &UdpSocket,
    stopped: &Receiver<()>,
) {
    let mut next = Instant::now() + REPORT_INTERVAL;
    loop {
        let last = match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(()) => continue,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        // A ticker: a late report does not make the next ones come early.
        let now = Instant::now();
        next += REPORT_INTERVAL;
        if next <= now {
            next = now + REPORT_INTERVAL;
        }
        for datagram in reporter.report(registry, unix_nanos()) {
            if socket.send(&datagram).is_err() {
                reporter.write_errors += 1;
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
