//! The `Statsd` and `DogStatsd` sinks: UDP datagrams in go-metrics' formats.
//!
//! `Statsd` (go-metrics' `StatsdSink`): the key parts and then the label values joined with
//! `.`, `:` and spaces replaced by `_`, the value with Go's `%f` (six decimals) and `|c`,
//! `|g` or `|ms`, each line ending in `\n`, packed into datagrams of at most 1400 bytes.
//! `DogStatsd` (go-metrics' `DogStatsdSink` over datadog-go v3): the key parts joined with
//! `.`, labels as `|#name:value` tags in emission order, counters as integers, gauges in
//! Go's shortest form, timings with six decimals; lines joined by `\n` in datagrams of at
//! most 1432 bytes. Both flush every 100 ms from a thread of their own and drop metrics
//! when 4096 are queued (a slow or absent collector never blocks a caller).

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// How often queued lines are sent.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Lines queued before new ones are dropped.
const QUEUE: usize = 4096;

/// Which wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain statsd, labels folded into the name.
    Statsd,
    /// DogStatsd, labels as tags.
    DogStatsd,
}

impl Format {
    fn max_packet(self) -> usize {
        match self {
            Format::Statsd => 1400,
            Format::DogStatsd => 1432,
        }
    }

    /// The sink's name in SPIRE's configuration.
    pub fn name(self) -> &'static str {
        match self {
            Format::Statsd => "Statsd",
            Format::DogStatsd => "DogStatsd",
        }
    }
}

/// What is emitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A counter increment.
    Counter(f32),
    /// A gauge.
    Gauge(f64),
    /// A sample (milliseconds for timers).
    Sample(f32),
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c == ':' || c == ' ' { '_' } else { c })
        .collect()
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest decimal that reads back.
fn shortest(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{v}")
}

/// One line in `format` (without its separator).
pub fn line(format: Format, parts: &[&str], labels: &[(String, String)], value: Value) -> String {
    match format {
        Format::Statsd => {
            let mut all: Vec<&str> = parts.to_vec();
            all.extend(labels.iter().map(|(_, v)| v.as_str()));
            let key = sanitize(&all.join("."));
            let (v, kind) = match value {
                Value::Counter(v) => (f64::from(v), "c"),
                Value::Gauge(v) => (v, "g"),
                Value::Sample(v) => (f64::from(v), "ms"),
            };
            format!("{key}:{v:.6}|{kind}")
        }
        Format::DogStatsd => {
            // The sink splices its (empty) host name out of the key.
            let mut key: Vec<&str> = parts.to_vec();
            if let Some(i) = key.iter().position(|p| p.is_empty()) {
                key.remove(i);
            }
            let key = sanitize(&key.join("."));
            let value = match value {
                Value::Counter(v) => format!("{}|c", v as i64),
                Value::Gauge(v) => format!("{}|g", shortest(v)),
                Value::Sample(v) => format!("{:.6}|ms", f64::from(v)),
            };
            let mut out = format!("{key}:{value}");
            if !labels.is_empty() {
                let tags: Vec<String> = labels
                    .iter()
                    .map(|(n, v)| {
                        let (n, v) = (sanitize(n), sanitize(v));
                        if v.is_empty() { n } else { format!("{n}:{v}") }
                    })
                    .map(|t| t.replace('\n', ""))
                    .collect();
                out.push_str("|#");
                out.push_str(&tags.join(","));
            }
            out
        }
    }
}

/// A running sink: lines go to its sender thread.
#[derive(Debug)]
pub struct UdpSink {
    format: Format,
    tx: SyncSender<String>,
}

impl UdpSink {
    /// Resolves `address` (`host:port`) and starts the sender thread.
    pub fn start(format: Format, address: &str) -> Result<UdpSink, String> {
        let target: SocketAddr = address
            .to_socket_addrs()
            .map_err(|e| format!("invalid {} address {address:?}: {e}", format.name()))?
            .next()
            .ok_or_else(|| format!("invalid {} address {address:?}: no address", format.name()))?;
        let local: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .and_then(|s| s.connect(target).map(|()| s))
            .map_err(|e| format!("unable to reach {} at {address}: {e}", format.name()))?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name(format!("telemetry-{}", format.name().to_ascii_lowercase()))
            .spawn(move || flush_loop(format, &socket, &rx))
            .map_err(|e| format!("unable to start the {} sink: {e}", format.name()))?;
        Ok(UdpSink { format, tx })
    }

    /// Queues one metric; dropped when the queue is full.
    pub fn emit(&self, parts: &[&str], labels: &[(String, String)], value: Value) {
        // A full queue or a stopped sender drops the metric, as go-metrics' sinks do.
        let _ = self.tx.try_send(line(self.format, parts, labels, value));
    }
}

fn flush_loop(format: Format, socket: &UdpSocket, rx: &Receiver<String>) {
    let max = format.max_packet();
    let mut buf = String::new();
    let mut deadline = Instant::now() + FLUSH_INTERVAL;
    let send = |buf: &mut String| {
        if !buf.is_empty() {
            // A collector that is not listening is not an error worth more than a drop.
            let _ = socket.send(buf.trim_end_matches('\n').as_bytes());
            buf.clear();
        }
    };
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(mut l) => {
                l.push('\n');
                if buf.len() + l.len() > max {
                    send(&mut buf);
                }
                buf.push_str(&l);
            }
            Err(RecvTimeoutError::Timeout) => {
                send(&mut buf);
                deadline = Instant::now() + FLUSH_INTERVAL;
            }
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut buf);
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(l: &[(&str, &str)]) -> Vec<(String, String)> {
        l.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn lines_as_go_metrics_writes_them() {
        let parts = [
            "spire_server",
            "rpc",
            "svid",
            "v1",
            "svid",
            "batch_new_x509_svid",
        ];
        let l = labels(&[("status", "OK"), ("host", "vm 1")]);
        assert_eq!(
            line(Format::Statsd, &parts, &l, Value::Counter(1.0)),
            "spire_server.rpc.svid.v1.svid.batch_new_x509_svid.OK.vm_1:1.000000|c"
        );
        assert_eq!(
            line(Format::DogStatsd, &parts, &l, Value::Counter(1.0)),
            "spire_server.rpc.svid.v1.svid.batch_new_x509_svid:1|c|#status:OK,host:vm_1"
        );
        assert_eq!(
            line(
                Format::Statsd,
                &["spire_agent", "uptime_in_ms"],
                &[],
                Value::Gauge(12.5)
            ),
            "spire_agent.uptime_in_ms:12.500000|g"
        );
        assert_eq!(
            line(
                Format::DogStatsd,
                &["spire_agent", "uptime_in_ms"],
                &[],
                Value::Gauge(12.5)
            ),
            "spire_agent.uptime_in_ms:12.5|g"
        );
        assert_eq!(
            line(
                Format::DogStatsd,
                &["a", "elapsed_time"],
                &labels(&[("k", "")]),
                Value::Sample(0.25)
            ),
            "a.elapsed_time:0.250000|ms|#k"
        );
        assert_eq!(shortest(1e21), "1000000000000000000000");
        assert_eq!(shortest(0.1), "0.1");
    }

    #[test]
    fn datagrams_reach_a_collector() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let addr = collector.local_addr().unwrap().to_string();
        let sink = UdpSink::start(Format::DogStatsd, &addr).unwrap();
        sink.emit(
            &["x", "started"],
            &labels(&[("version", "1.13.3")]),
            Value::Gauge(1.0),
        );
        sink.emit(&["x", "calls"], &[], Value::Counter(2.0));
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "x.started:1|g|#version:1.13.3\nx.calls:2|c"
        );
        assert!(UdpSink::start(Format::Statsd, "no-port").is_err());
    }
}
