//! Tests of the M3 sink: a strict compact-protocol decoder for the call, golden bytes, the
//! registry's report rules, batching, a loopback run through `Metrics` and a datagram
//! written by reference SPIRE 1.13.3 (tally v4.1.17).

use super::*;
use crate::{Metrics, Service};
use spire_config::{M3Config, TelemetryConfig};

/// A decoded `emitMetricBatchV2` call.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) seq: i32,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) common_tags: Option<Vec<Tag>>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.b.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn i64(&mut self) -> Result<i64, String> {
        let u = self.uvarint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, String> {
        i32::try_from(self.i64()?).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        let n = usize::try_from(self.uvarint()?).map_err(|e| e.to_string())?;
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.b.get(self.pos..end).ok_or("truncated string")?;
        self.pos = end;
        String::from_utf8(s.to_vec()).map_err(|e| e.to_string())
    }

    fn double(&mut self) -> Result<f64, String> {
        let s = self
            .b
            .get(self.pos..self.pos + 8)
            .ok_or("truncated double")?;
        self.pos += 8;
        Ok(f64::from_le_bytes(s.try_into().map_err(|_| "double")?))
    }

    /// The next field's id and type, `None` at the stop byte.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        if b == STOP {
            return Ok(None);
        }
        let delta = i16::from(b >> 4);
        let id = if delta == 0 {
            i16::try_from(self.i64()?).map_err(|e| e.to_string())?
        } else {
            *last + delta
        };
        *last = id;
        Ok(Some((id, b & 0x0f)))
    }

    fn list(&mut self, elem: u8) -> Result<usize, String> {
        let b = self.byte()?;
        if b & 0x0f != elem {
            return Err(format!("list of type {} where {elem} expected", b & 0x0f));
        }
        let n = b >> 4;
        if n == 15 {
            usize::try_from(self.uvarint()?).map_err(|e| e.to_string())
        } else {
            Ok(usize::from(n))
        }
    }

    fn tags(&mut self) -> Result<Vec<Tag>, String> {
        let n = self.list(ty::STRUCT)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (mut name, mut value, mut last) = (None, None, 0);
            while let Some(f) = self.field(&mut last)? {
                match f {
                    (1, ty::BINARY) => name = Some(self.string()?),
                    (2, ty::BINARY) => value = Some(self.string()?),
                    f => return Err(format!("unexpected MetricTag field {f:?}")),
                }
            }
            out.push(Tag {
                name: name.ok_or("tag without name")?,
                value: value.ok_or("tag without value")?,
            });
        }
        Ok(out)
    }

    fn value(&mut self) -> Result<MetricValue, String> {
        let (mut kind, mut count, mut gauge, mut timer, mut last) = (None, None, None, None, 0);
        while let Some(f) = self.field(&mut last)? {
            match f {
                (1, ty::I32) => kind = Some(self.i32()?),
                (2, ty::I64) => count = Some(self.i64()?),
                (3, ty::DOUBLE) => gauge = Some(self.double()?),
                (4, ty::I64) => timer = Some(self.i64()?),
                f => return Err(format!("unexpected MetricValue field {f:?}")),
            }
        }
        let (Some(kind), Some(count), Some(gauge), Some(timer)) = (kind, count, gauge, timer)
        else {
            return Err("MetricValue misses a required field".into());
        };
        match (kind, count, gauge.to_bits(), timer) {
            (1, c, 0, 0) => Ok(MetricValue::Counter(c)),
            (2, 0, _, 0) => Ok(MetricValue::Gauge(gauge)),
            (3, 0, 0, t) => Ok(MetricValue::Timer(t)),
            v => Err(format!("inconsistent MetricValue {v:?}")),
        }
    }

    fn metric(&mut self) -> Result<Metric, String> {
        let (mut name, mut value, mut timestamp, mut tags, mut last) = (None, None, None, None, 0);
        while let Some(f) = self.field(&mut last)? {
            match f {
                (1, ty::BINARY) => name = Some(self.string()?),
                (2, ty::STRUCT) => value = Some(self.value()?),
                (3, ty::I64) => timestamp = Some(self.i64()?),
                (4, ty::LIST) => tags = Some(self.tags()?),
                f => return Err(format!("unexpected Metric field {f:?}")),
            }
        }
        Ok(Metric {
            name: name.ok_or("metric without name")?,
            value: value.ok_or("metric without value")?,
            timestamp: timestamp.ok_or("metric without timestamp")?,
            tags,
        })
    }
}

/// Decodes one datagram, refusing anything but the call tally makes.
pub(crate) fn decode_call(b: &[u8]) -> Result<Call, String> {
    let mut r = Reader { b, pos: 0 };
    if r.byte()? != PROTOCOL_ID {
        return Err("not the compact protocol".into());
    }
    let vt = r.byte()?;
    if vt != (VERSION | (ONEWAY << 5)) {
        return Err(format!("version/type byte {vt:#x}"));
    }
    let seq = r.uvarint()? as u32 as i32;
    let method = r.string()?;
    if method != METHOD {
        return Err(format!("method {method}"));
    }
    let mut last = 0;
    let Some((1, ty::STRUCT)) = r.field(&mut last)? else {
        return Err("no batch argument".into());
    };
    let (mut metrics, mut common_tags, mut blast) = (None, None, 0);
    while let Some(f) = r.field(&mut blast)? {
        match f {
            (1, ty::LIST) => {
                let n = r.list(ty::STRUCT)?;
                let mut v = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    v.push(r.metric()?);
                }
                metrics = Some(v);
            }
            (2, ty::LIST) => common_tags = Some(r.tags()?),
            f => return Err(format!("unexpected MetricBatch field {f:?}")),
        }
    }
    if r.field(&mut last)?.is_some() {
        return Err("extra argument".into());
    }
    if r.pos != b.len() {
        return Err(format!("{} trailing bytes", b.len() - r.pos));
    }
    Ok(Call {
        seq,
        metrics: metrics.ok_or("batch without metrics")?,
        common_tags,
    })
}

fn tags(l: &[(&str, &str)]) -> Vec<Tag> {
    l.iter().map(|(n, v)| Tag::new(n, v)).collect()
}

fn labels(l: &[(&str, &str)]) -> Vec<(String, String)> {
    l.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn golden_bytes_of_a_tiny_call() {
    let m = Metric {
        name: "c".into(),
        value: MetricValue::Counter(1),
        timestamp: 2,
        tags: None,
    };
    let got = encode_call(1, &[m], &tags(&[("env", "e")]));
    let mut want = vec![0x82, 0x81, 0x01, 0x11];
    want.extend_from_slice(b"emitMetricBatchV2");
    want.extend_from_slice(&[
        0x1c, // argument 1: struct MetricBatch
        0x19, 0x1c, // field 1 metrics: list of one struct
        0x18, 0x01, b'c', // Metric.name
        0x1c, // Metric.value: struct MetricValue
        0x15, 0x02, // metricType COUNTER (zigzag 1)
        0x16, 0x02, // count 1
        0x17, 0, 0, 0, 0, 0, 0, 0, 0, // gauge 0.0
        0x16, 0x00, // timer 0
        0x00, // end of MetricValue
        0x16, 0x04, // timestamp 2
        0x00, // end of Metric
        0x19, 0x1c, // field 2 commonTags: list of one struct
        0x18, 0x03, b'e', b'n', b'v', 0x18, 0x01, b'e', 0x00, // MetricTag
        0x00, // end of MetricBatch
        0x00, // end of the arguments
    ]);
    assert_eq!(got, want);
}

#[test]
fn calls_decode_back() {
    let mut metrics = Vec::new();
    for i in 0..20i64 {
        metrics.push(Metric {
            name: format!("m{i}"),
            value: match i % 3 {
                0 => MetricValue::Counter(-i * 1_000_000_007),
                1 => MetricValue::Gauge(i as f64 / 3.0),
                _ => MetricValue::Timer(i64::MAX - i),
            },
            timestamp: 1_700_000_000_000_000_000 + i,
            tags: (i % 2 == 0).then(|| {
                (0..i)
                    .map(|j| Tag::new(&format!("t{j}"), &"v".repeat(j as usize * 10)))
                    .collect()
            }),
        });
    }
    let common = tags(&[("service", "spire_agent"), ("env", "prod")]);
    let bytes = encode_call(300, &metrics, &common);
    let call = decode_call(&bytes).unwrap();
    assert_eq!(call.seq, 300);
    assert_eq!(call.metrics, metrics);
    assert_eq!(call.common_tags, Some(common));
    assert!(decode_call(&bytes[..bytes.len() - 1]).is_err());
    // A negative sequence number (after wrapping) is written as its 32-bit pattern.
    let call = decode_call(&encode_call(i32::MIN, &metrics[..1], &[])).unwrap();
    assert_eq!(call.seq, i32::MIN);
}

#[test]
fn bucket_tags_are_tallys() {
    let b = AllBuckets::new();
    assert_eq!(b.duration.len(), 21);
    assert_eq!(b.duration.names[0], ("0000".into(), "-infinity-0".into()));
    assert_eq!(b.duration.names[1], ("0001".into(), "0-10ms".into()));
    assert_eq!(b.duration.names[12], ("0012".into(), "800ms-1s".into()));
    assert_eq!(b.duration.names[20], ("0020".into(), "30s-infinity".into()));
    assert_eq!(b.value.len(), 7);
    assert_eq!(
        b.value.names[0],
        ("0000".into(), "-infinity-0.000000".into())
    );
    assert_eq!(
        b.value.names[6],
        ("0006".into(), "10000.000000-infinity".into())
    );
    assert_eq!(
        b.batch_size.names[12],
        ("0012".into(), "2048.000000-infinity".into())
    );
    // Upper bounds are inclusive.
    assert_eq!(b.duration.index(0.0), 0);
    assert_eq!(b.duration.index(10e6), 1);
    assert_eq!(b.duration.index(10e6 + 1.0), 2);
    assert_eq!(b.duration.index(31e9), 20);
    assert_eq!(b.value.index(-1.0), 0);
    assert_eq!(b.value.index(1.0), 1);
    assert_eq!(b.value.index(1e9), 6);
}

fn test_reporter() -> (Reporter, Mutex<Registry>) {
    let buckets = Arc::new(AllBuckets::new());
    (
        Reporter::new(buckets.clone(), "spire_server", "test"),
        Mutex::new(Registry::new(buckets)),
    )
}

fn decode_all(datagrams: &[Vec<u8>]) -> Vec<Metric> {
    datagrams
        .iter()
        .flat_map(|d| decode_call(d).unwrap().metrics)
        .collect()
}

fn find<'a>(metrics: &'a [Metric], name: &str) -> Vec<&'a Metric> {
    metrics.iter().filter(|m| m.name == name).collect()
}

#[test]
fn reports_follow_tally() {
    let (mut rep, reg) = test_reporter();
    let host = labels(&[("host", "vm")]);
    {
        let mut r = reg.lock();
        r.record(&["p", "counter", "calls"], &host, Value::Counter(2.9));
        r.record(&["p", "counter", "calls"], &host, Value::Counter(1.0));
        r.record(&["p", "counter", "zero"], &host, Value::Counter(0.5));
        r.record(&["p", "gauge", "g"], &[], Value::Gauge(1.5));
        r.record(&["p", "gauge", "g"], &[], Value::Gauge(2.5));
        r.record(
            &["p", "timer", "a", "elapsed_time"],
            &host,
            Value::Sample(150.9),
        );
        r.record(
            &["p", "timer", "a", "elapsed_time"],
            &host,
            Value::Sample(100.0),
        );
        r.record(
            &["p", "timer", "a", "elapsed_time"],
            &host,
            Value::Sample(199.0),
        );
        r.record(&["p", "sample", "s"], &host, Value::Sample(5.0));
        r.record(&["p", "sample", "s"], &host, Value::Sample(f32::NAN));
        // The same tags in another order are the same scope; a repeated name keeps its
        // last value.
        r.record(
            &["p", "gauge", "two"],
            &labels(&[("b", "1"), ("a", "x"), ("a", "2")]),
            Value::Gauge(7.0),
        );
        r.record(
            &["p", "gauge", "two"],
            &labels(&[("a", "2"), ("b", "1")]),
            Value::Gauge(8.0),
        );
    }
    let first = rep.report(&reg, 42);
    assert_eq!(first.len(), 1);
    let call = decode_call(&first[0]).unwrap();
    assert_eq!(call.seq, 1);
    assert_eq!(
        call.common_tags,
        Some(tags(&[("service", "spire_server"), ("env", "test")]))
    );
    let m = call.metrics;
    assert!(m.iter().all(|m| m.timestamp == 42));
    let host_tags = Some(tags(&[("host", "vm")]));
    assert_eq!(
        find(&m, "calls"),
        [&Metric {
            name: "calls".into(),
            value: MetricValue::Counter(3),
            timestamp: 42,
            tags: host_tags.clone(),
        }]
    );
    assert!(find(&m, "zero").is_empty(), "a zero increase is not sent");
    let g = find(&m, "g");
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].value, MetricValue::Gauge(2.5));
    assert_eq!(g[0].tags, None, "no tags, no tag list");
    let two = find(&m, "two");
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].value, MetricValue::Gauge(8.0));
    assert_eq!(two[0].tags, Some(tags(&[("b", "1"), ("a", "2")])));
    let timer = find(&m, "a_elapsed_time");
    assert_eq!(
        timer
            .iter()
            .map(|m| (m.value, m.tags.clone().unwrap()))
            .collect::<Vec<_>>(),
        [
            (
                MetricValue::Counter(1),
                tags(&[
                    ("host", "vm"),
                    ("bucketid", "0005"),
                    ("bucket", "75ms-100ms")
                ])
            ),
            (
                MetricValue::Counter(2),
                tags(&[
                    ("host", "vm"),
                    ("bucketid", "0006"),
                    ("bucket", "100ms-200ms")
                ])
            ),
        ]
    );
    let s = find(&m, "s");
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].tags.clone().unwrap()[2].value,
        "1.000000-10.000000".to_owned()
    );
    let gauge = |m: &[Metric], name: &str| find(m, name)[0].value;
    assert_eq!(
        gauge(&m, "tally.internal.counter_cardinality"),
        MetricValue::Gauge(2.0)
    );
    assert_eq!(
        gauge(&m, "tally.internal.gauge_cardinality"),
        MetricValue::Gauge(2.0)
    );
    assert_eq!(
        gauge(&m, "tally.internal.histogram_cardinality"),
        MetricValue::Gauge(2.0)
    );
    // The root, {host}, {b, a}.
    assert_eq!(
        gauge(&m, "tally.internal.num_active_scopes"),
        MetricValue::Gauge(3.0)
    );
    assert_eq!(
        gauge(&m, "tally.internal.num-tag-cache"),
        MetricValue::Counter(3)
    );
    assert_eq!(
        find(&m, "tally.internal.batch-size")[0]
            .tags
            .clone()
            .unwrap()[4]
            .value,
        "2048.000000-infinity"
    );
    let sent = m.len() as i64;

    // Nothing changed: only tally's own metrics, about the first report.
    let second = decode_all(&rep.report(&reg, 43));
    assert!(second.iter().all(|m| m.name.starts_with("tally.internal.")));
    assert_eq!(second.len(), 9);
    assert_eq!(
        gauge(&second, "tally.internal.num-batches"),
        MetricValue::Counter(1)
    );
    assert_eq!(
        gauge(&second, "tally.internal.num-metrics"),
        MetricValue::Counter(sent)
    );
    reg.lock()
        .record(&["p", "counter", "calls"], &host, Value::Counter(4.0));
    let third = decode_all(&rep.report(&reg, 44));
    assert_eq!(find(&third, "calls")[0].value, MetricValue::Counter(4));
}

#[test]
fn big_reports_are_split_within_the_packet_budget() {
    let (mut rep, reg) = test_reporter();
    {
        let mut r = reg.lock();
        for i in 0..2000 {
            let name = format!("counter_number_{i}");
            r.record(
                &["p", "counter", &name],
                &labels(&[("host", "vm"), ("status", "OK")]),
                Value::Counter(1.0),
            );
        }
    }
    let datagrams = rep.report(&reg, 1);
    assert!(datagrams.len() > 1);
    let mut seqs = Vec::new();
    let mut total = 0;
    for d in &datagrams {
        assert!(d.len() <= MAX_PACKET as usize, "{}", d.len());
        let call = decode_call(d).unwrap();
        seqs.push(call.seq);
        total += call.metrics.len();
    }
    assert_eq!(seqs, (1..=datagrams.len() as i32).collect::<Vec<_>>());
    assert_eq!(total, 2000 + 9);
}

#[test]
fn the_series_are_bounded() {
    let (mut rep, reg) = test_reporter();
    {
        let mut r = reg.lock();
        for i in 0..MAX_SERIES + 10 {
            let name = i.to_string();
            r.record(&["p", "gauge", &name], &[], Value::Gauge(1.0));
        }
        assert_eq!(r.series, MAX_SERIES);
    }
    assert_eq!(decode_all(&rep.report(&reg, 1)).len(), MAX_SERIES + 9);
}

#[test]
fn start_checks_settings_as_tally_does() {
    assert_eq!(
        M3Sink::start("spire_server", "127.0.0.1:9052", "").err(),
        Some("env common tag is required".to_owned())
    );
    assert!(M3Sink::start("spire_server", "no-port", "prod").is_err());
    let cfg = TelemetryConfig {
        m3: vec![M3Config {
            address: "nowhere".into(),
            env: "prod".into(),
        }],
        ..Default::default()
    };
    assert!(matches!(
        Metrics::configure(&cfg, Service::Server, "td", None).err(),
        Some(crate::TelemetryError::Sink("M3", _))
    ));
}

/// The reference datagram: SPIRE 1.13.3's `telemetry.NewMetrics` with
/// `M3 { address = <local UDP socket>, env = "test" }`, service `spire_server`, on a host
/// named `vm`, after `IncrCounterWithLabels(["calls"], 2, nil)`,
/// `SetGaugeWithLabels(["started"], 1, [version=1.13.3])`,
/// `AddSampleWithLabels(["batch", "size"], 42, nil)` and
/// `MeasureSinceWithLabels(["rpc", "elapsed_time"], now-150ms, [status=OK])`: the first
/// datagram its tally v4.1.17 reporter sent.
const TALLY_REFERENCE: &str = include_str!("../../testdata/m3_tally_reference.hex");

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A metric without its timestamp, tags sorted (tally's tag order is Go's map order).
fn comparable(m: &Metric) -> (String, String, Vec<Tag>) {
    let mut t = m.tags.clone().unwrap_or_default();
    t.sort();
    (m.name.clone(), format!("{:?}", m.value), t)
}

#[test]
fn loopback_matches_reference_spire() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cfg = TelemetryConfig {
        m3: vec![M3Config {
            address: collector.local_addr().unwrap().to_string(),
            env: "test".into(),
        }],
        ..Default::default()
    };
    let t = Metrics::configure(&cfg, Service::Server, "example.org", Some("vm".into())).unwrap();
    let metrics = t.metrics;
    assert!(metrics.enabled());
    metrics.incr_counter(&["calls"], 2.0, &[]);
    metrics.set_gauge(&["started"], 1.0, &[("version", "1.13.3")]);
    metrics.add_sample(&["batch", "size"], 42.0, &[]);
    let start = Instant::now()
        .checked_sub(Duration::from_millis(150))
        .unwrap();
    metrics.measure_since(&["rpc", "elapsed_time"], start, &[("status", "OK")]);
    let mut buf = vec![0u8; 65536];
    let n = collector.recv(&mut buf).unwrap();
    let ours = decode_call(&buf[..n]).unwrap();
    let theirs = decode_call(&unhex(TALLY_REFERENCE)).unwrap();
    assert_eq!(ours.seq, theirs.seq);
    let sorted_tags = |c: &Call| {
        let mut t = c.common_tags.clone().unwrap();
        t.sort();
        t
    };
    assert_eq!(sorted_tags(&ours), sorted_tags(&theirs));
    let mut a: Vec<_> = ours.metrics.iter().map(comparable).collect();
    let mut b: Vec<_> = theirs.metrics.iter().map(comparable).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // tally's order: its cardinality gauges, the scopes' metrics, its reporter's metrics.
    let names = |c: &Call| -> Vec<String> { c.metrics.iter().map(|m| m.name.clone()).collect() };
    let (on, tn) = (names(&ours), names(&theirs));
    assert_eq!(on[..4], tn[..4]);
    assert_eq!(on[on.len() - 5..], tn[tn.len() - 5..]);
    // One timestamp per report.
    assert!(
        ours.metrics
            .iter()
            .all(|m| m.timestamp == ours.metrics[0].timestamp)
    );
    drop(metrics);
}

#[test]
fn prefix_filters_see_the_metric_type() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // go-metrics filters M3's key with its type: `spire_agent.counter.calls`.
    let cfg = TelemetryConfig {
        m3: vec![M3Config {
            address: collector.local_addr().unwrap().to_string(),
            env: "test".into(),
        }],
        blocked_prefixes: vec!["spire_agent.counter".into(), "spire_agent.x".into()],
        ..Default::default()
    };
    let t = Metrics::configure(&cfg, Service::Agent, "example.org", None).unwrap();
    t.metrics.incr_counter(&["calls"], 1.0, &[]);
    t.metrics.set_gauge(&["x"], 1.0, &[]);
    let mut buf = vec![0u8; 65536];
    let n = collector.recv(&mut buf).unwrap();
    let call = decode_call(&buf[..n]).unwrap();
    assert!(find(&call.metrics, "calls").is_empty());
    // The untyped key is blocked, not `spire_agent.gauge.x`.
    let g = find(&call.metrics, "x");
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].tags, None, "no labels and no host: no tag list");
    assert_eq!(
        call.common_tags,
        Some(tags(&[("service", "spire_agent"), ("env", "test")]))
    );
}
