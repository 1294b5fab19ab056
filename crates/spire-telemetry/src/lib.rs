//! SPIRE's telemetry (`pkg/common/telemetry` over hashicorp/go-metrics), for both programs.
//!
//! [`Metrics`] is the handle every subsystem gets: counters, gauges and samples (timers
//! in milliseconds) keyed by parts that are prefixed with `metric_prefix` (by default
//! the service name `spire_server` / `spire_agent`), filtered by the allowed/blocked
//! prefixes and labels, labelled with `host` (and `trust_domain` when asked), and
//! rendered in the Prometheus exposition by `metrics-exporter-prometheus` as go-metrics'
//! Prometheus sink does: names joined with `_`, counters without a `_total` suffix,
//! samples as summaries with the 0.5, 0.9 and 0.99 quantiles over the last 10 seconds,
//! `# HELP` repeating the name. The `Statsd` and `DogStatsd` sinks ([`statsd`]) and the `M3`
//! sink ([`m3`], which sees the key with its metric type as SPIRE's M3 instance does) get
//! every emission too. A disabled handle (no sink configured) costs one branch.
//!
//! [`rpc::RpcMetricsLayer`] counts every gRPC call as SPIRE's RPC middleware does
//! (`rpc_<service>_<method>` with a `status` label, and its `_elapsed_time` summary).

mod filter;
pub mod inmem;
pub mod m3;
pub mod names;
pub mod otlp;
mod process;
mod prometheus;
pub mod rpc;
pub mod statsd;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Key, KeyName, Label as MLabel, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::PrometheusRecorder;
use parking_lot::RwLock;
use spire_config::TelemetryConfig;

pub use crate::prometheus::PrometheusListener;
use filter::Filter;

/// A label: name and value.
pub type Label<'a> = (&'a str, &'a str);

/// SPIRE's `elapsed_time` key part under a call's counter.
pub const ELAPSED_TIME: &str = "elapsed_time";

/// Telemetry configurations spire-rs refuses at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TelemetryError {
    /// The Prometheus port is outside 0..=65535.
    #[error("invalid Prometheus port {0}")]
    InvalidPort(i64),
    /// The exporter refused its settings.
    #[error("unable to set up the Prometheus sink: {0}")]
    Exporter(String),
    /// A `Statsd`, `DogStatsd` or `M3` sink could not be set up (address, `env`).
    #[error("unable to set up the {0} sink: {1}")]
    Sink(&'static str, String),
    /// `OpenTelemetry { }` has an invalid endpoint or interval.
    #[error("{0}")]
    OpenTelemetry(String),
}

/// Which program is emitting: the default metric prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `spire_server`.
    Server,
    /// `spire_agent`.
    Agent,
}

impl Service {
    /// The service name, which is also the default `metric_prefix`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Server => "spire_server",
            Service::Agent => "spire_agent",
        }
    }
}

/// The telemetry handle. Cheap to clone; `Metrics::default()` is disabled.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

struct Inner {
    prefix: String,
    /// `host` label value (the hostname), when `EnableHostnameLabel`.
    host: Option<String>,
    /// `trust_domain` label value, when `EnableTrustDomainLabel`.
    trust_domain: Option<String>,
    filter: Filter,
    /// The Prometheus sink, when configured.
    recorder: Option<PrometheusRecorder>,
    /// The `Statsd` and `DogStatsd` sinks.
    udp: Vec<statsd::UdpSink>,
    /// The `InMem` sink.
    inmem: Option<Arc<inmem::InmemSink>>,
    /// The OpenTelemetry exporter's state, and where it exports.
    otlp: Option<(Arc<otlp::OtlpSink>, otlp::Target)>,
    /// The `M3` sinks.
    m3: Vec<m3::M3Sink>,
    described: RwLock<HashSet<String>>,
}

/// What [`Metrics::configure`] sets up: the handle and, when configured, the Prometheus
/// listener still to be started.
#[derive(Debug)]
pub struct Telemetry {
    /// The handle for every subsystem.
    pub metrics: Metrics,
    /// `Prometheus { host, port }`, to be started with [`PrometheusListener::start`].
    pub prometheus: Option<PrometheusListener>,
    /// Warnings to log at start-up (accepted but unimplemented settings).
    pub warnings: Vec<String>,
}

enum Kind {
    Counter(f32),
    Gauge(f64),
    /// `AddSample`.
    Sample(f64),
    /// `MeasureSince` (a sample in milliseconds).
    Timer(f64),
}

impl Kind {
    /// The key part go-metrics puts after the prefix when a sink asks for the type
    /// (`EnableTypePrefix`, which SPIRE sets for M3 only).
    fn type_prefix(&self) -> &'static str {
        match self {
            Kind::Counter(_) => "counter",
            Kind::Gauge(_) => "gauge",
            Kind::Sample(_) => "sample",
            Kind::Timer(_) => "timer",
        }
    }
}

impl Metrics {
    /// Metrics that record nothing.
    pub fn disabled() -> Self {
        Metrics::default()
    }

    /// Whether any sink is configured.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Builds the handle from `telemetry { ... }`. `hostname` is the `host` label's value
    /// (Go's `os.Hostname()`; see [`hostname`]); `trust_domain` the trust domain's name.
    pub fn configure(
        config: &TelemetryConfig,
        service: Service,
        trust_domain: &str,
        hostname: Option<String>,
    ) -> Result<Telemetry, TelemetryError> {
        let warnings = Vec::new();
        let inmem = config.in_mem.then(|| Arc::new(inmem::InmemSink::new()));
        let otlp = match &config.open_telemetry {
            Some(o) => {
                let target = otlp::Target::parse(o).map_err(TelemetryError::OpenTelemetry)?;
                let name = match service {
                    Service::Server => "spire-server",
                    Service::Agent => "spire-agent",
                };
                Some((
                    Arc::new(otlp::OtlpSink::new(name, std::time::SystemTime::now())),
                    target,
                ))
            }
            None => None,
        };
        let mut udp = Vec::new();
        for (format, sinks) in [
            (statsd::Format::Statsd, &config.statsd),
            (statsd::Format::DogStatsd, &config.dogstatsd),
        ] {
            for sink in sinks {
                udp.push(
                    statsd::UdpSink::start(format, &sink.address)
                        .map_err(|e| TelemetryError::Sink(format.name(), e))?,
                );
            }
        }
        let mut m3_sinks = Vec::new();
        for sink in &config.m3 {
            // tally's `service` tag is the service name even when `metric_prefix` is set.
            m3_sinks.push(
                m3::M3Sink::start(service.name(), &sink.address, &sink.env)
                    .map_err(|e| TelemetryError::Sink("M3", e))?,
            );
        }
        let (recorder, listener) = match &config.prometheus {
            Some(prom) => {
                let port =
                    u16::try_from(prom.port).map_err(|_| TelemetryError::InvalidPort(prom.port))?;
                let recorder =
                    prometheus::recorder().map_err(|e| TelemetryError::Exporter(e.to_string()))?;
                let listener = PrometheusListener::new(prom.host.clone(), port, recorder.handle());
                (Some(recorder), Some(listener))
            }
            None => (None, None),
        };
        if recorder.is_none()
            && udp.is_empty()
            && m3_sinks.is_empty()
            && inmem.is_none()
            && otlp.is_none()
        {
            return Ok(Telemetry {
                metrics: Metrics::disabled(),
                prometheus: None,
                warnings,
            });
        }
        let prefix = config
            .metric_prefix
            .clone()
            .unwrap_or_else(|| service.name().to_owned());
        let metrics = Metrics {
            inner: Some(Arc::new(Inner {
                prefix,
                host: hostname
                    .filter(|h| !h.is_empty())
                    .filter(|_| config.enable_hostname_label),
                trust_domain: config
                    .enable_trust_domain_label
                    .then(|| trust_domain.to_owned()),
                filter: Filter::new(
                    &config.allowed_prefixes,
                    &config.blocked_prefixes,
                    &config.allowed_labels,
                    &config.blocked_labels,
                ),
                recorder,
                udp,
                inmem,
                otlp,
                m3: m3_sinks,
                described: RwLock::new(HashSet::new()),
            })),
        };
        Ok(Telemetry {
            metrics,
            prometheus: listener,
            warnings,
        })
    }

    /// The Prometheus exposition of everything recorded so far (empty when disabled).
    pub fn render(&self) -> String {
        match self.inner.as_ref().and_then(|i| i.recorder.as_ref()) {
            Some(recorder) => recorder.handle().render(),
            None => String::new(),
        }
    }

    /// A server span for a gRPC call to `path` when spans are exported (OpenTelemetry).
    pub fn start_span(&self, path: &str, traceparent: Option<&str>) -> Option<otlp::SpanStart> {
        let inner = self.inner.as_ref()?;
        inner.otlp.as_ref()?;
        Some(otlp::SpanStart::new(
            path,
            traceparent,
            std::time::SystemTime::now(),
        ))
    }

    /// Finishes a span started by [`Metrics::start_span`].
    pub fn finish_span(&self, span: otlp::SpanStart, code: tonic::Code) {
        if let Some((sink, _)) = self.inner.as_ref().and_then(|i| i.otlp.as_ref()) {
            sink.record_span(span.finish(code, std::time::SystemTime::now()));
        }
    }

    /// `IncrCounterWithLabels`.
    pub fn incr_counter(&self, key: &[&str], val: f32, labels: &[Label<'_>]) {
        if self.inner.is_some() && val >= 0.0 {
            self.emit(key, labels, Kind::Counter(val));
        }
    }

    /// `SetGaugeWithLabels` / `SetPrecisionGaugeWithLabels`.
    pub fn set_gauge(&self, key: &[&str], val: f64, labels: &[Label<'_>]) {
        if self.inner.is_some() {
            self.emit(key, labels, Kind::Gauge(val));
        }
    }

    /// `AddSampleWithLabels`.
    pub fn add_sample(&self, key: &[&str], val: f32, labels: &[Label<'_>]) {
        if self.inner.is_some() {
            self.emit(key, labels, Kind::Sample(f64::from(val)));
        }
    }

    /// `MeasureSinceWithLabels`: the time since `start` in milliseconds, as a sample.
    pub fn measure_since(&self, key: &[&str], start: Instant, labels: &[Label<'_>]) {
        if self.inner.is_some() {
            let ms = start.elapsed().as_nanos() as f64 / 1_000_000.0;
            self.emit(key, labels, Kind::Timer(f64::from(ms as f32)));
        }
    }

    /// `MeasureSinceWithLabels` for a start given as nanoseconds since the Unix epoch (the
    /// plugin Metrics host service's form); a start in the future counts as zero.
    pub fn measure_since_unix_nanos(
        &self,
        key: &[&str],
        start_unix_nanos: i64,
        labels: &[Label<'_>],
    ) {
        if self.inner.is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            let ms = now.saturating_sub(start_unix_nanos).max(0) as f64 / 1_000_000.0;
            self.emit(key, labels, Kind::Timer(f64::from(ms as f32)));
        }
    }

    /// `telemetry.StartCall`: a call whose [`CallCounter::done`] emits the counter and its
    /// `elapsed_time` with a `status` label.
    pub fn start_call(&self, key: &[&str]) -> CallCounter {
        CallCounter {
            metrics: self.clone(),
            key: if self.enabled() {
                key.iter().map(|s| (*s).to_owned()).collect()
            } else {
                Vec::new()
            },
            labels: Vec::new(),
            start: Instant::now(),
        }
    }

    /// `telemetry.EmitStarted`: the `started` gauge with the version and trust domain.
    pub fn emit_started(&self, version: &str, trust_domain: &str) {
        self.set_gauge(
            &["started"],
            1.0,
            &[("version", version), ("trust_domain_id", trust_domain)],
        );
    }

    /// `uptime.ReportMetrics`: `uptime_in_ms` now and every 10 seconds until `stop`.
    pub async fn report_uptime(
        &self,
        started: Instant,
        stop: impl std::future::Future<Output = ()>,
    ) {
        if !self.enabled() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let ms = started.elapsed().as_millis() as f32;
                    self.set_gauge(&["uptime_in_ms"], f64::from(ms), &[]);
                }
                () = &mut stop => return,
            }
        }
    }

    fn emit(&self, key: &[&str], labels: &[Label<'_>], kind: Kind) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut parts: Vec<&str> = Vec::with_capacity(key.len() + 1);
        parts.push(&inner.prefix);
        parts.extend_from_slice(key);
        let allowed = inner.filter.allows(&parts);
        // SPIRE's M3 go-metrics instance puts the type after the prefix and filters that key.
        let typed: Option<Vec<&str>> = if inner.m3.is_empty() {
            None
        } else {
            let mut typed = Vec::with_capacity(parts.len() + 1);
            typed.push(inner.prefix.as_str());
            typed.push(kind.type_prefix());
            typed.extend_from_slice(key);
            inner.filter.allows(&typed).then_some(typed)
        };
        if !allowed && typed.is_none() {
            return;
        }
        let name = names::flatten_key(&parts);
        // SPIRE appends the trust domain and sanitizes; go-metrics then appends `host`
        // (unsanitized) and filters; the Prometheus client sorts labels by name.
        let mut out: Vec<MLabel> = Vec::with_capacity(labels.len() + 2);
        let mut push = |n: String, v: String| {
            if inner.filter.label_allowed(&n) {
                out.push(MLabel::new(n, v));
            }
        };
        for (n, v) in labels {
            push(names::sanitize(n), names::sanitize(v));
        }
        if let Some(td) = &inner.trust_domain {
            push("trust_domain".to_owned(), names::sanitize(td));
        }
        if let Some(host) = &inner.host {
            push("host".to_owned(), host.clone());
        }
        let pairs = |out: &[MLabel]| -> Vec<(String, String)> {
            out.iter()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect()
        };
        let value = match kind {
            Kind::Counter(v) => statsd::Value::Counter(v),
            Kind::Gauge(v) => statsd::Value::Gauge(v),
            Kind::Sample(v) | Kind::Timer(v) => statsd::Value::Sample(v as f32),
        };
        let udp = allowed && (!inner.udp.is_empty() || inner.inmem.is_some());
        if udp || typed.is_some() {
            // go-metrics hands the sinks the labels in emission order.
            let ordered = pairs(&out);
            if udp {
                for sink in &inner.udp {
                    sink.emit(&parts, &ordered, value);
                }
                if let Some(sink) = &inner.inmem {
                    sink.emit(&parts, &ordered, value);
                }
            }
            if let Some(typed) = &typed {
                for sink in &inner.m3 {
                    sink.emit(typed, &ordered, value);
                }
            }
        }
        if !allowed || (inner.recorder.is_none() && inner.otlp.is_none()) {
            return;
        }
        out.sort_by(|a, b| a.key().cmp(b.key()));
        out.dedup_by(|a, b| a.key() == b.key());
        if let Some((sink, _)) = &inner.otlp {
            sink.emit(&name, pairs(&out), value);
        }
        let Some(recorder) = &inner.recorder else {
            return;
        };
        self.describe(inner, recorder, &name, &kind);
        let k = Key::from_parts(name, out);
        let meta = Metadata::new(module_path!(), metrics::Level::INFO, None);
        match kind {
            Kind::Counter(v) => recorder.register_counter(&k, &meta).increment(v as u64),
            Kind::Gauge(v) => recorder.register_gauge(&k, &meta).set(v),
            Kind::Sample(v) | Kind::Timer(v) => recorder.register_histogram(&k, &meta).record(v),
        }
    }

    /// The Prometheus client writes `# HELP <name> <name>` for go-metrics' metrics.
    fn describe(&self, inner: &Inner, recorder: &PrometheusRecorder, name: &str, kind: &Kind) {
        if inner.described.read().contains(name) {
            return;
        }
        let mut described = inner.described.write();
        if !described.insert(name.to_owned()) {
            return;
        }
        let key = KeyName::from(name.to_owned());
        let help = SharedString::from(name.to_owned());
        match kind {
            Kind::Counter(_) => recorder.describe_counter(key, None, help),
            Kind::Gauge(_) => recorder.describe_gauge(key, None, help),
            Kind::Sample(_) | Kind::Timer(_) => recorder.describe_histogram(key, None, help),
        }
    }
}

/// `telemetry.CallCounter`: started by [`Metrics::start_call`], finished once by
/// [`CallCounter::done`].
#[derive(Debug)]
pub struct CallCounter {
    metrics: Metrics,
    key: Vec<String>,
    labels: Vec<(String, String)>,
    start: Instant,
}

impl CallCounter {
    /// The handle it emits to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds a label emitted with the counter and its timing.
    pub fn add_label(&mut self, name: &str, value: &str) {
        if self.metrics.enabled() {
            self.labels.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Emits the counter and `elapsed_time` with `status` = the gRPC code's Go name.
    pub fn done(mut self, code: tonic::Code) {
        if !self.metrics.enabled() {
            return;
        }
        let status = spire_gocompat::grpc::code_name(code as i32);
        self.labels.push(("status".to_owned(), status));
        let labels: Vec<Label<'_>> = self
            .labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut key: Vec<&str> = self.key.iter().map(String::as_str).collect();
        self.metrics.incr_counter(&key, 1.0, &labels);
        key.push(ELAPSED_TIME);
        self.metrics.measure_since(&key, self.start, &labels);
    }

    /// [`CallCounter::done`] with OK or the code of `result`'s error.
    pub fn done_with<T, E: AsCode>(self, result: &Result<T, E>) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        };
        self.done(code);
    }
}

/// An error with a gRPC code (Go's `status.Code(err)`; `Unknown` for plain errors).
pub trait AsCode {
    /// The code.
    fn code(&self) -> tonic::Code;
}

impl AsCode for tonic::Status {
    fn code(&self) -> tonic::Code {
        tonic::Status::code(self)
    }
}

/// Go's `os.Hostname()` on Linux: `/proc/sys/kernel/hostname`, trimmed.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;

/// Sets telemetry up at start-up as SPIRE's `NewMetrics`, `ListenAndServe`,
/// `EmitStarted` and `uptime.ReportMetrics` do: logs the Prometheus exporter, starts its
/// listener (a port that cannot be bound is logged as SPIRE does and leaves the program
/// running without it), emits `started` and reports `uptime_in_ms` every 10 seconds.
pub async fn start(
    config: &TelemetryConfig,
    service: Service,
    trust_domain: &str,
    version: &str,
) -> Result<Metrics, TelemetryError> {
    let t = Metrics::configure(config, service, trust_domain, hostname())?;
    for w in &t.warnings {
        tracing::warn!(subsystem_name = "telemetry", "{w}");
    }
    if let Some(listener) = t.prometheus {
        if listener.host() != "localhost" {
            tracing::warn!(
                subsystem_name = "telemetry",
                "Agent is now configured to accept remote network connections for Prometheus stats collection. Please ensure access to this port is tightly controlled"
            );
        }
        tracing::info!(
            host = listener.host(),
            port = listener.port(),
            subsystem_name = "telemetry",
            "Starting prometheus exporter"
        );
        let addr = listener.address();
        if let Err(e) = listener.start().await {
            tracing::warn!(
                subsystem_name = "telemetry",
                "Prometheus listener stopped unexpectedly: listen tcp {addr}: bind: {}",
                spire_gocompat::os::errno_text(&e)
            );
        }
    }
    let metrics = t.metrics;
    metrics.emit_started(version, trust_domain);
    let started = Instant::now();
    let m = metrics.clone();
    tokio::spawn(async move { m.report_uptime(started, std::future::pending()).await });
    if let Some((sink, target)) = metrics.inner.as_ref().and_then(|i| i.otlp.clone()) {
        tracing::info!(
            subsystem_name = "telemetry",
            endpoint = %target.endpoint,
            interval = ?target.interval,
            "Exporting metrics over OpenTelemetry"
        );
        tokio::spawn(otlp::run(sink, target));
    }
    if let Some(sink) = metrics.inner.as_ref().and_then(|i| i.inmem.clone()) {
        // go-metrics' InmemSignal: SIGUSR1 writes the finished intervals to the log.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
            Ok(mut sig) => {
                tokio::spawn(async move {
                    while sig.recv().await.is_some() {
                        for line in sink.dump() {
                            tracing::info!(subsystem_name = "telemetry", "{line}");
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(
                subsystem_name = "telemetry",
                error = %e,
                "Unable to listen for SIGUSR1; the InMem sink cannot be dumped"
            ),
        }
    }
    Ok(metrics)
}
