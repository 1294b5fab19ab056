//! OpenTelemetry metrics export (a spire-rs addition; SPIRE has none):
//! `telemetry { OpenTelemetry { endpoint, export_interval } }` sends every metric to an
//! OTLP/gRPC collector (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`)
//! each interval, with the names and labels the Prometheus sink uses:
//!
//! - counters as cumulative monotonic sums;
//! - gauges as gauges (the last value set);
//! - samples (timers in milliseconds) as cumulative summaries: count and sum since start,
//!   and the interval's minimum and maximum as the 0 and 1 quantiles.
//!
//! Every gRPC call the programs serve is also a server span (OpenTelemetry's gRPC
//! conventions: `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`),
//! continuing the caller's trace when it sends a W3C `traceparent`, exported over OTLP's
//! trace service after the metrics.
//!
//! The resource carries `service.name` (`spire-server` / `spire-agent`). Each export is
//! bounded by [`EXPORT_TIMEOUT`]; a failed one is logged once until an export succeeds
//! again, and the data stays cumulative, so nothing is lost but resolution.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::statsd::Value;

/// The bound on one export call.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The gRPC method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// The OTLP messages this exporter sends (field numbers from the OTLP protocol).
pub mod proto {
    /// `opentelemetry.proto.common.v1.AnyValue` (the string and integer cases; one is set).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        /// `string_value`.
        #[prost(string, optional, tag = "1")]
        pub string_value: Option<String>,
        /// `int_value`.
        #[prost(int64, optional, tag = "3")]
        pub int_value: Option<i64>,
    }
    /// `opentelemetry.proto.common.v1.KeyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        /// `key`.
        #[prost(string, tag = "1")]
        pub key: String,
        /// `value`.
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    /// `opentelemetry.proto.common.v1.InstrumentationScope`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        /// `name`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `version`.
        #[prost(string, tag = "2")]
        pub version: String,
    }
    /// `opentelemetry.proto.resource.v1.Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        /// `attributes`.
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }
    /// `opentelemetry.proto.metrics.v1.ResourceMetrics`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        /// `resource`.
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        /// `scope_metrics`.
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
    }
    /// `opentelemetry.proto.metrics.v1.ScopeMetrics`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        /// `scope`.
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        /// `metrics`.
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }
    /// `opentelemetry.proto.metrics.v1.Metric`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        /// `name`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `unit`.
        #[prost(string, tag = "3")]
        pub unit: String,
        /// `gauge`.
        #[prost(message, optional, tag = "5")]
        pub gauge: Option<Gauge>,
        /// `sum`.
        #[prost(message, optional, tag = "7")]
        pub sum: Option<Sum>,
        /// `summary`.
        #[prost(message, optional, tag = "11")]
        pub summary: Option<Summary>,
    }
    /// `opentelemetry.proto.metrics.v1.Gauge`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        /// `data_points`.
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
    }
    /// `opentelemetry.proto.metrics.v1.Sum`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sum {
        /// `data_points`.
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
        /// `aggregation_temporality` (2: cumulative).
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
        /// `is_monotonic`.
        #[prost(bool, tag = "3")]
        pub is_monotonic: bool,
    }
    /// `opentelemetry.proto.metrics.v1.Summary`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// `data_points`.
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<SummaryDataPoint>,
    }
    /// `opentelemetry.proto.metrics.v1.NumberDataPoint` (the double case).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NumberDataPoint {
        /// `start_time_unix_nano`.
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        /// `time_unix_nano`.
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        /// `as_double`.
        #[prost(double, tag = "4")]
        pub as_double: f64,
        /// `attributes`.
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
    }
    /// `opentelemetry.proto.metrics.v1.SummaryDataPoint`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryDataPoint {
        /// `start_time_unix_nano`.
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        /// `time_unix_nano`.
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        /// `count`.
        #[prost(fixed64, tag = "4")]
        pub count: u64,
        /// `sum`.
        #[prost(double, tag = "5")]
        pub sum: f64,
        /// `quantile_values`.
        #[prost(message, repeated, tag = "6")]
        pub quantile_values: Vec<ValueAtQuantile>,
        /// `attributes`.
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
    }
    /// `opentelemetry.proto.metrics.v1.SummaryDataPoint.ValueAtQuantile`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueAtQuantile {
        /// `quantile`.
        #[prost(double, tag = "1")]
        pub quantile: f64,
        /// `value`.
        #[prost(double, tag = "2")]
        pub value: f64,
    }
    /// `opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsServiceRequest {
        /// `resource_metrics`.
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }
    /// `opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsServiceResponse {
        /// `partial_success`.
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportMetricsPartialSuccess>,
    }
    /// `opentelemetry.proto.collector.metrics.v1.ExportMetricsPartialSuccess`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsPartialSuccess {
        /// `rejected_data_points`.
        #[prost(int64, tag = "1")]
        pub rejected_data_points: i64,
        /// `error_message`.
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    /// `opentelemetry.proto.trace.v1.ResourceSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        /// `resource`.
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        /// `scope_spans`.
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    /// `opentelemetry.proto.trace.v1.ScopeSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        /// `scope`.
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        /// `spans`.
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    /// `opentelemetry.proto.trace.v1.Span`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        /// `trace_id` (16 bytes).
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        /// `span_id` (8 bytes).
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        /// `parent_span_id` (empty for a root span).
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        /// `name`.
        #[prost(string, tag = "5")]
        pub name: String,
        /// `kind` (2: server).
        #[prost(int32, tag = "6")]
        pub kind: i32,
        /// `start_time_unix_nano`.
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        /// `end_time_unix_nano`.
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        /// `attributes`.
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        /// `status`.
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }
    /// `opentelemetry.proto.trace.v1.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        /// `message`.
        #[prost(string, tag = "2")]
        pub message: String,
        /// `code` (0 unset, 1 ok, 2 error).
        #[prost(int32, tag = "3")]
        pub code: i32,
    }
    /// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        /// `resource_spans`.
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    /// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceResponse {}
}

/// Where the sink exports, parsed from the configuration.
#[derive(Debug, Clone)]
pub struct Target {
    /// The collector's URL.
    pub endpoint: http::Uri,
    /// The export interval.
    pub interval: Duration,
}

impl Target {
    /// Checks `OpenTelemetry { }`.
    pub fn parse(c: &spire_config::OpenTelemetryConfig) -> Result<Target, String> {
        let endpoint: http::Uri = c
            .endpoint
            .parse()
            .map_err(|e| format!("invalid OpenTelemetry endpoint {:?}: {e}", c.endpoint))?;
        match endpoint.scheme_str() {
            Some("http") | Some("https") if endpoint.host().is_some() => {}
            _ => {
                return Err(format!(
                    "invalid OpenTelemetry endpoint {:?}: expected http://host:port or https://host:port",
                    c.endpoint
                ));
            }
        }
        let interval = spire_config::parse_go_duration(&c.export_interval).map_err(|e| {
            format!(
                "invalid OpenTelemetry export_interval {:?}: {e}",
                c.export_interval
            )
        })?;
        if interval < Duration::from_secs(1) {
            return Err(format!(
                "invalid OpenTelemetry export_interval {:?}: must be at least 1s",
                c.export_interval
            ));
        }
        Ok(Target { endpoint, interval })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Counter(f64),
    Gauge(f64),
    Sample {
        count: u64,
        sum: f64,
        /// This interval's minimum and maximum (reset at each export).
        window: Option<(f64, f64)>,
    },
}

/// A metric's name and sorted labels.
type SeriesKey = (String, Vec<(String, String)>);

/// The sink: cumulative state per metric name and label set.
#[derive(Debug)]
pub struct OtlpSink {
    service: &'static str,
    started: SystemTime,
    state: Mutex<BTreeMap<SeriesKey, State>>,
    /// Finished spans not exported yet (at most [`MAX_SPANS`]; more are dropped).
    spans: Mutex<Vec<proto::Span>>,
}

/// The most finished spans held between two exports.
pub const MAX_SPANS: usize = 4096;
/// The trace export's gRPC method.
pub const TRACE_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC call's server span, started when the request arrived.
#[derive(Debug, Clone)]
pub struct SpanStart {
    path: String,
    trace_id: [u8; 16],
    parent: Option<[u8; 8]>,
    span_id: [u8; 8],
    start: SystemTime,
}

/// W3C Trace Context's `traceparent` (`00-<trace id>-<parent id>-<flags>`): the trace and
/// parent span IDs, when well formed and not all zeros.
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut it = v.trim().split('-');
    let (version, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if version.len() != 2 || version == "ff" || flags.len() != 2 {
        return None;
    }
    let hex = |s: &str, out: &mut [u8]| -> Option<()> {
        if s.len() != out.len() * 2 {
            return None;
        }
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(())
    };
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    hex(trace, &mut t)?;
    hex(parent, &mut p)?;
    if t == [0; 16] || p == [0; 8] {
        return None;
    }
    Some((t, p))
}

impl SpanStart {
    /// A span for the call to `path`, continuing the caller's trace when it sent a
    /// `traceparent`.
    pub fn new(path: &str, traceparent: Option<&str>, now: SystemTime) -> SpanStart {
        let (trace_id, parent) = match traceparent.and_then(parse_traceparent) {
            Some((t, p)) => (t, Some(p)),
            None => (rand::random(), None),
        };
        SpanStart {
            path: path.to_owned(),
            trace_id,
            parent,
            span_id: rand::random(),
            start: now,
        }
    }

    /// The finished span, as OpenTelemetry's gRPC conventions describe a server call.
    pub fn finish(self, code: tonic::Code, now: SystemTime) -> proto::Span {
        let name = self.path.trim_start_matches('/').to_owned();
        let (service, method) = name.split_once('/').unwrap_or((name.as_str(), ""));
        let text = |k: &str, v: &str| proto::KeyValue {
            key: k.into(),
            value: Some(proto::AnyValue {
                string_value: Some(v.into()),
                int_value: None,
            }),
        };
        let attributes = vec![
            text("rpc.system", "grpc"),
            text("rpc.service", service),
            text("rpc.method", method),
            proto::KeyValue {
                key: "rpc.grpc.status_code".into(),
                value: Some(proto::AnyValue {
                    string_value: None,
                    int_value: Some(i64::from(code as i32)),
                }),
            },
        ];
        // Server spans are errors for the codes that mean the server failed.
        let error = matches!(
            code,
            tonic::Code::Unknown
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unimplemented
                | tonic::Code::Internal
                | tonic::Code::Unavailable
                | tonic::Code::DataLoss
        );
        proto::Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: name.clone(),
            kind: 2,
            start_time_unix_nano: nanos(self.start),
            end_time_unix_nano: nanos(now),
            attributes,
            status: Some(proto::Status {
                message: String::new(),
                code: if error { 2 } else { 0 },
            }),
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn attributes(labels: &[(String, String)]) -> Vec<proto::KeyValue> {
    labels
        .iter()
        .map(|(k, v)| proto::KeyValue {
            key: k.clone(),
            value: Some(proto::AnyValue {
                string_value: Some(v.clone()),
                int_value: None,
            }),
        })
        .collect()
}

impl OtlpSink {
    /// A sink for `service` (`spire-server` or `spire-agent`).
    pub fn new(service: &'static str, started: SystemTime) -> OtlpSink {
        OtlpSink {
            service,
            started,
            state: Mutex::new(BTreeMap::new()),
            spans: Mutex::new(Vec::new()),
        }
    }

    /// Holds a finished span for the next export (dropped when [`MAX_SPANS`] wait).
    pub fn record_span(&self, span: proto::Span) {
        let mut spans = self.spans.lock();
        if spans.len() < MAX_SPANS {
            spans.push(span);
        }
    }

    fn resource(&self) -> proto::Resource {
        proto::Resource {
            attributes: attributes(&[("service.name".into(), self.service.into())]),
        }
    }

    fn scope() -> proto::InstrumentationScope {
        proto::InstrumentationScope {
            name: "spire-rs".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The spans finished since the last call, as one request (`None` when there are none).
    pub fn trace_request(&self) -> Option<proto::ExportTraceServiceRequest> {
        let spans = std::mem::take(&mut *self.spans.lock());
        if spans.is_empty() {
            return None;
        }
        Some(proto::ExportTraceServiceRequest {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(self.resource()),
                scope_spans: vec![proto::ScopeSpans {
                    scope: Some(OtlpSink::scope()),
                    spans,
                }],
            }],
        })
    }

    /// Records one emission under its Prometheus-style `name` and sorted `labels`.
    pub fn emit(&self, name: &str, labels: Vec<(String, String)>, value: Value) {
        let mut st = self.state.lock();
        let slot = st.entry((name.to_owned(), labels));
        match value {
            Value::Counter(v) => {
                let s = slot.or_insert(State::Counter(0.0));
                if let State::Counter(total) = s {
                    *total += f64::from(v);
                }
            }
            Value::Gauge(v) => {
                slot.insert_entry(State::Gauge(v));
            }
            Value::Sample(v) => {
                let v = f64::from(v);
                let s = slot.or_insert(State::Sample {
                    count: 0,
                    sum: 0.0,
                    window: None,
                });
                if let State::Sample { count, sum, window } = s {
                    *count += 1;
                    *sum += v;
                    *window = Some(match *window {
                        None => (v, v),
                        Some((lo, hi)) => (lo.min(v), hi.max(v)),
                    });
                }
            }
        }
    }

    /// The request for everything recorded, as of `now`; the samples' windows restart.
    pub fn request(&self, now: SystemTime) -> proto::ExportMetricsServiceRequest {
        let (start, at) = (nanos(self.started), nanos(now));
        let mut metrics: BTreeMap<String, proto::Metric> = BTreeMap::new();
        let mut st = self.state.lock();
        for ((name, labels), state) in st.iter_mut() {
            let m = metrics
                .entry(name.clone())
                .or_insert_with(|| proto::Metric {
                    name: name.clone(),
                    unit: if name.ends_with("_elapsed_time") {
                        "ms".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                });
            let attributes = attributes(labels);
            match state {
                State::Counter(total) => {
                    let sum = m.sum.get_or_insert_with(|| proto::Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    });
                    sum.data_points.push(proto::NumberDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: at,
                        as_double: *total,
                        attributes,
                    });
                }
                State::Gauge(v) => {
                    m.gauge
                        .get_or_insert_with(Default::default)
                        .data_points
                        .push(proto::NumberDataPoint {
                            start_time_unix_nano: 0,
                            time_unix_nano: at,
                            as_double: *v,
                            attributes,
                        });
                }
                State::Sample { count, sum, window } => {
                    let quantile_values = window
                        .take()
                        .map(|(lo, hi)| {
                            vec![
                                proto::ValueAtQuantile {
                                    quantile: 0.0,
                                    value: lo,
                                },
                                proto::ValueAtQuantile {
                                    quantile: 1.0,
                                    value: hi,
                                },
                            ]
                        })
                        .unwrap_or_default();
                    m.summary
                        .get_or_insert_with(Default::default)
                        .data_points
                        .push(proto::SummaryDataPoint {
                            start_time_unix_nano: start,
                            time_unix_nano: at,
                            count: *count,
                            sum: *sum,
                            quantile_values,
                            attributes,
                        });
                }
            }
        }
        drop(st);
        proto::ExportMetricsServiceRequest {
            resource_metrics: vec![proto::ResourceMetrics {
                resource: Some(self.resource()),
                scope_metrics: vec![proto::ScopeMetrics {
                    scope: Some(OtlpSink::scope()),
                    metrics: metrics.into_values().collect(),
                }],
            }],
        }
    }
}

/// One unary OTLP export of `req` to `channel` at `path`.
pub async fn export<Req, Rsp>(
    channel: tonic::transport::Channel,
    path: &'static str,
    req: Req,
) -> Result<Rsp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Rsp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("collector not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Rsp>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(req), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// The channel to the collector (TLS with the system's roots for `https`).
pub fn channel(target: &Target) -> Result<tonic::transport::Channel, String> {
    let mut ep = tonic::transport::Endpoint::from(target.endpoint.clone())
        .connect_timeout(EXPORT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT);
    if target.endpoint.scheme_str() == Some("https") {
        // The system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured).
        let roots = rustls_native_certs::load_native_certs().certs;
        if roots.is_empty() {
            return Err("no system root certificates to verify the collector with".into());
        }
        let pems: Vec<tonic::transport::Certificate> = roots
            .iter()
            .map(|der| {
                tonic::transport::Certificate::from_pem(pem::encode(&pem::Pem::new(
                    "CERTIFICATE",
                    der.to_vec(),
                )))
            })
            .collect();
        ep = ep
            .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificates(pems))
            .map_err(|e| e.to_string())?;
    }
    Ok(ep.connect_lazy())
}

/// Exports every `target.interval` until the process stops.
pub async fn run(sink: Arc<OtlpSink>, target: Target) {
    let channel = match channel(&target) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(subsystem_name = "telemetry", error = %e, "Unable to set up the OpenTelemetry exporter");
            return;
        }
    };
    let mut tick = tokio::time::interval(target.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    loop {
        tick.tick().await;
        let metrics = export::<_, proto::ExportMetricsServiceResponse>(
            channel.clone(),
            EXPORT_PATH,
            sink.request(SystemTime::now()),
        );
        let mut result = tokio::time::timeout(EXPORT_TIMEOUT, metrics).await;
        if let Ok(Ok(rsp)) = &result
            && let Some(p) = &rsp.partial_success
            && p.rejected_data_points > 0
        {
            tracing::warn!(subsystem_name = "telemetry", rejected = p.rejected_data_points, error = %p.error_message, "The OpenTelemetry collector rejected data points");
        }
        if let (Ok(Ok(_)), Some(req)) = (&result, sink.trace_request()) {
            let traces = export::<_, proto::ExportTraceServiceResponse>(
                channel.clone(),
                TRACE_EXPORT_PATH,
                req,
            );
            result = match tokio::time::timeout(EXPORT_TIMEOUT, traces).await {
                Ok(Ok(_)) => result,
                Ok(Err(e)) => Ok(Err(e)),
                Err(e) => Err(e),
            };
        }
        match result {
            Ok(Ok(_)) => {
                if failing {
                    tracing::info!(
                        subsystem_name = "telemetry",
                        "OpenTelemetry export succeeded again"
                    );
                }
                failing = false;
            }
            Ok(Err(status)) => {
                if !failing {
                    tracing::warn!(subsystem_name = "telemetry", endpoint = %target.endpoint, error = %status.message(), "OpenTelemetry export failed");
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(subsystem_name = "telemetry", endpoint = %target.endpoint, "OpenTelemetry export timed out");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn cfg(endpoint: &str, interval: &str) -> spire_config::OpenTelemetryConfig {
        spire_config::OpenTelemetryConfig {
            endpoint: endpoint.into(),
            export_interval: interval.into(),
        }
    }

    #[test]
    fn traceparent_and_server_spans() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, p) = parse_traceparent(tp).unwrap();
        assert_eq!(t[0], 0x4b);
        assert_eq!(p[7], 0xb7);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let child = SpanStart::new(
            "/spire.api.server.svid.v1.SVID/BatchNewX509SVID",
            Some(tp),
            t0,
        )
        .finish(tonic::Code::Internal, t0 + Duration::from_millis(3));
        assert_eq!(child.trace_id, t.to_vec());
        assert_eq!(child.parent_span_id, p.to_vec());
        assert_eq!(child.span_id.len(), 8);
        assert_eq!(child.name, "spire.api.server.svid.v1.SVID/BatchNewX509SVID");
        assert_eq!(child.kind, 2);
        assert_eq!(
            child.end_time_unix_nano - child.start_time_unix_nano,
            3_000_000
        );
        assert_eq!(child.status.as_ref().unwrap().code, 2);
        let attr = |k: &str| {
            child
                .attributes
                .iter()
                .find(|a| a.key == k)
                .unwrap()
                .value
                .clone()
                .unwrap()
        };
        assert_eq!(
            attr("rpc.service").string_value.as_deref(),
            Some("spire.api.server.svid.v1.SVID")
        );
        assert_eq!(
            attr("rpc.method").string_value.as_deref(),
            Some("BatchNewX509SVID")
        );
        assert_eq!(attr("rpc.grpc.status_code").int_value, Some(13));
        // Without a caller's trace: a new root; a denied call is not a server error.
        let root = SpanStart::new("/x.Y/Z", None, t0).finish(tonic::Code::PermissionDenied, t0);
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.trace_id.len(), 16);
        assert_eq!(root.status.unwrap().code, 0);
        // Held until taken, once.
        let s = OtlpSink::new("spire-agent", t0);
        assert!(s.trace_request().is_none());
        s.record_span(child);
        let req = s.trace_request().unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 1);
        assert!(s.trace_request().is_none());
    }

    #[test]
    fn targets_are_checked() {
        let t = Target::parse(&cfg("http://127.0.0.1:4317", "10s")).unwrap();
        assert_eq!(t.interval, Duration::from_secs(10));
        for (e, i, want) in [
            ("127.0.0.1:4317", "10s", "expected http://host:port"),
            ("ftp://x:1", "10s", "expected http://host:port"),
            ("http://x:1", "ten", "invalid OpenTelemetry export_interval"),
            ("http://x:1", "500ms", "must be at least 1s"),
        ] {
            let err = Target::parse(&cfg(e, i)).unwrap_err();
            assert!(err.contains(want), "{e} {i}: {err}");
        }
    }

    #[test]
    fn requests_are_cumulative_and_sample_windows_restart() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = OtlpSink::new("spire-server", t0);
        let l = |v: &str| vec![("status".to_string(), v.to_string())];
        s.emit("c", l("OK"), Value::Counter(1.0));
        s.emit("c", l("OK"), Value::Counter(2.0));
        s.emit("c", l("Internal"), Value::Counter(1.0));
        s.emit("g", vec![], Value::Gauge(5.0));
        s.emit("t_elapsed_time", vec![], Value::Sample(3.0));
        s.emit("t_elapsed_time", vec![], Value::Sample(7.0));
        let req = s.request(t0 + Duration::from_secs(10));
        // Through the wire and back.
        let req =
            proto::ExportMetricsServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        let rm = &req.resource_metrics[0];
        assert_eq!(
            rm.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let m = &rm.scope_metrics[0].metrics;
        assert_eq!(
            m.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["c", "g", "t_elapsed_time"]
        );
        let sum = m[0].sum.as_ref().unwrap();
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, 2);
        let values: Vec<f64> = sum.data_points.iter().map(|p| p.as_double).collect();
        assert_eq!(values, [1.0, 3.0]); // Internal, OK (label order)
        assert_eq!(sum.data_points[0].start_time_unix_nano, nanos(t0));
        assert_eq!(m[1].gauge.as_ref().unwrap().data_points[0].as_double, 5.0);
        assert_eq!(m[2].unit, "ms");
        let p = &m[2].summary.as_ref().unwrap().data_points[0];
        assert_eq!((p.count, p.sum), (2, 10.0));
        assert_eq!(
            p.quantile_values
                .iter()
                .map(|q| (q.quantile, q.value))
                .collect::<Vec<_>>(),
            [(0.0, 3.0), (1.0, 7.0)]
        );
        // The next request: totals stay, the window is empty until a new sample.
        s.emit("c", l("OK"), Value::Counter(1.0));
        let req = s.request(t0 + Duration::from_secs(20));
        let m = &req.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(m[0].sum.as_ref().unwrap().data_points[1].as_double, 4.0);
        let p = &m[2].summary.as_ref().unwrap().data_points[0];
        assert_eq!(p.count, 2);
        assert!(p.quantile_values.is_empty());
    }
}
