//! `telemetry { ... }` and `health_checks { ... }`, shared by server and agent
//! (SPIRE's `pkg/common/telemetry/config.go` and `pkg/common/health/config.go`).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTelemetry {
    #[serde(rename = "Prometheus")]
    prometheus: Option<RawPrometheus>,
    #[serde(rename = "DogStatsd")]
    dogstatsd: Vec<RawAddress>,
    #[serde(rename = "Statsd")]
    statsd: Vec<RawAddress>,
    #[serde(rename = "M3")]
    m3: Vec<RawM3>,
    #[serde(rename = "InMem")]
    in_mem: Option<RawInMem>,
    #[serde(rename = "OpenTelemetry")]
    open_telemetry: Option<RawOpenTelemetry>,
    #[serde(rename = "MetricPrefix")]
    metric_prefix: String,
    #[serde(rename = "EnableTrustDomainLabel")]
    enable_trust_domain_label: Option<bool>,
    #[serde(rename = "EnableHostnameLabel")]
    enable_hostname_label: Option<bool>,
    #[serde(rename = "AllowedPrefixes")]
    allowed_prefixes: Vec<String>,
    #[serde(rename = "BlockedPrefixes")]
    blocked_prefixes: Vec<String>,
    #[serde(rename = "AllowedLabels")]
    allowed_labels: Vec<String>,
    #[serde(rename = "BlockedLabels")]
    blocked_labels: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPrometheus {
    host: String,
    port: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAddress {
    address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawM3 {
    address: String,
    env: String,
}

#[derive(Debug, Default, Deserialize)]
struct RawInMem {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawOpenTelemetry {
    endpoint: String,
    export_interval: String,
}

/// `telemetry { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `Prometheus { host, port }`: serve metrics for scraping.
    pub prometheus: Option<PrometheusConfig>,
    /// `DogStatsd = [{ address }]`.
    pub dogstatsd: Vec<StatsdConfig>,
    /// `Statsd = [{ address }]`.
    pub statsd: Vec<StatsdConfig>,
    /// `M3 = [{ address, env }]`.
    pub m3: Vec<M3Config>,
    /// `InMem {}`: the in-memory sink is enabled only when the block is present.
    pub in_mem: bool,
    /// `OpenTelemetry { endpoint, export_interval }` (a spire-rs addition: OTLP/gRPC metrics
    /// export; SPIRE ignores the block).
    pub open_telemetry: Option<OpenTelemetryConfig>,
    /// `MetricPrefix`; `None` means the service name (`spire_server` / `spire_agent`).
    pub metric_prefix: Option<String>,
    /// `EnableTrustDomainLabel` (default false).
    pub enable_trust_domain_label: bool,
    /// `EnableHostnameLabel` (default true).
    pub enable_hostname_label: bool,
    /// `AllowedPrefixes`.
    pub allowed_prefixes: Vec<String>,
    /// `BlockedPrefixes`.
    pub blocked_prefixes: Vec<String>,
    /// `AllowedLabels`.
    pub allowed_labels: Vec<String>,
    /// `BlockedLabels`.
    pub blocked_labels: Vec<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            prometheus: None,
            dogstatsd: Vec::new(),
            statsd: Vec::new(),
            m3: Vec::new(),
            in_mem: false,
            open_telemetry: None,
            metric_prefix: None,
            enable_trust_domain_label: false,
            enable_hostname_label: true,
            allowed_prefixes: Vec::new(),
            blocked_prefixes: Vec::new(),
            allowed_labels: Vec::new(),
            blocked_labels: Vec::new(),
        }
    }
}

/// `Prometheus { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// `host` (default `localhost`).
    pub host: String,
    /// `port` (SPIRE does not check it here; 0 lets the listener fail at start).
    pub port: i64,
}

/// One `DogStatsd` or `Statsd` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdConfig {
    /// `address` (`host:port`).
    pub address: String,
}

/// `OpenTelemetry { }`: where and how often to export metrics over OTLP/gRPC. The values
/// are checked when telemetry starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTelemetryConfig {
    /// `endpoint`: the collector's `http://` or `https://` URL (default
    /// `http://localhost:4317`, OTLP/gRPC's).
    pub endpoint: String,
    /// `export_interval`: a Go duration (default `10s`).
    pub export_interval: String,
}

/// One `M3` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct M3Config {
    /// `address`.
    pub address: String,
    /// `env`.
    pub env: String,
}

impl RawTelemetry {
    pub(crate) fn into_config(self) -> TelemetryConfig {
        TelemetryConfig {
            prometheus: self.prometheus.map(|p| PrometheusConfig {
                host: if p.host.is_empty() {
                    "localhost".to_owned()
                } else {
                    p.host
                },
                port: p.port,
            }),
            dogstatsd: self
                .dogstatsd
                .into_iter()
                .map(|a| StatsdConfig { address: a.address })
                .collect(),
            statsd: self
                .statsd
                .into_iter()
                .map(|a| StatsdConfig { address: a.address })
                .collect(),
            m3: self
                .m3
                .into_iter()
                .map(|m| M3Config {
                    address: m.address,
                    env: m.env,
                })
                .collect(),
            in_mem: self.in_mem.is_some(),
            open_telemetry: self.open_telemetry.map(|o| OpenTelemetryConfig {
                endpoint: if o.endpoint.is_empty() {
                    "http://localhost:4317".to_owned()
                } else {
                    o.endpoint
                },
                export_interval: if o.export_interval.is_empty() {
                    "10s".to_owned()
                } else {
                    o.export_interval
                },
            }),
            metric_prefix: (!self.metric_prefix.is_empty()).then_some(self.metric_prefix),
            enable_trust_domain_label: self.enable_trust_domain_label.unwrap_or(false),
            enable_hostname_label: self.enable_hostname_label.unwrap_or(true),
            allowed_prefixes: self.allowed_prefixes,
            blocked_prefixes: self.blocked_prefixes,
            allowed_labels: self.allowed_labels,
            blocked_labels: self.blocked_labels,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHealthChecks {
    listener_enabled: bool,
    bind_address: String,
    bind_port: String,
    ready_path: String,
    live_path: String,
}

/// `health_checks { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChecksConfig {
    /// `listener_enabled` (default false).
    pub listener_enabled: bool,
    /// `bind_address` (default `localhost`; brackets around IPv6 addresses are removed).
    pub bind_address: String,
    /// `bind_port` (a string in SPIRE; default `"80"`).
    pub bind_port: String,
    /// `live_path` (default `/live`).
    pub live_path: String,
    /// `ready_path` (default `/ready`).
    pub ready_path: String,
}

impl Default for HealthChecksConfig {
    fn default() -> Self {
        RawHealthChecks::default().into_config()
    }
}

impl HealthChecksConfig {
    /// `host:port` to listen on, as Go's `net.JoinHostPort` writes it.
    pub fn listen_address(&self) -> String {
        if self.bind_address.contains(':') {
            format!("[{}]:{}", self.bind_address, self.bind_port)
        } else {
            format!("{}:{}", self.bind_address, self.bind_port)
        }
    }
}

impl RawHealthChecks {
    pub(crate) fn into_config(self) -> HealthChecksConfig {
        let or = |s: String, d: &str| if s.is_empty() { d.to_owned() } else { s };
        HealthChecksConfig {
            listener_enabled: self.listener_enabled,
            bind_address: if self.bind_address.is_empty() {
                "localhost".to_owned()
            } else {
                self.bind_address.trim_matches(['[', ']']).to_owned()
            },
            bind_port: or(self.bind_port, "80"),
            live_path: or(self.live_path, "/live"),
            ready_path: or(self.ready_path, "/ready"),
        }
    }
}
