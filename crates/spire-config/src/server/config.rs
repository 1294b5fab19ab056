//! The validated server configuration and its sections, as `spire-server run` uses them.

use super::*;

/// The validated server configuration (SPIRE's `server.Config`, minus the parts that need
/// I/O such as resolving the bind address or opening the log file).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `bind_address` (default `0.0.0.0`; brackets around an IPv6 address removed). Host
    /// names are kept as written: SPIRE resolves them when loading.
    pub bind_address: String,
    /// `bind_port` (default 8081).
    pub bind_port: u16,
    /// `socket_path` (default `/tmp/spire-server/private/api.sock`).
    pub socket_path: PathBuf,
    /// `trust_domain`.
    pub trust_domain: TrustDomain,
    /// `data_dir`.
    pub data_dir: PathBuf,
    /// `log_*`.
    pub log: LogConfig,
    /// `ca_ttl` (default 24h).
    pub ca_ttl: Duration,
    /// `default_x509_svid_ttl` (default 1h).
    pub default_x509_svid_ttl: Duration,
    /// `default_jwt_svid_ttl` (default 5m).
    pub default_jwt_svid_ttl: Duration,
    /// `agent_ttl` (default: `default_x509_svid_ttl`).
    pub agent_ttl: Duration,
    /// Whether `agent_ttl` was configured.
    pub agent_ttl_configured: bool,
    /// `ca_key_type` (default ec-p256).
    pub ca_key_type: KeyType,
    /// `jwt_key_type` (default: `ca_key_type`).
    pub jwt_key_type: KeyType,
    /// `ca_subject` (default C=US, O=SPIFFE, also used when the block is empty).
    pub ca_subject: CaSubject,
    /// `jwt_issuer`.
    pub jwt_issuer: Option<String>,
    /// `admin_ids`.
    pub admin_ids: Vec<SpiffeId>,
    /// `audit_log_enabled`.
    pub audit_log_enabled: bool,
    /// `prune_attested_nodes_expired_for`.
    pub prune_attested_nodes_expired_for: Option<Duration>,
    /// `prune_tofu_nodes` (only honoured with `prune_attested_nodes_expired_for`).
    pub prune_tofu_nodes: bool,
    /// `max_attested_node_info_staleness` (default 0).
    pub max_attested_node_info_staleness: Duration,
    /// `profiling_*`.
    pub profiling: ProfilingConfig,
    /// `ratelimit { }`.
    pub ratelimit: RateLimitConfig,
    /// `experimental { }`.
    pub experimental: ServerExperimental,
    /// `federation { }`.
    pub federation: FederationConfig,
    /// `plugins { }`.
    pub plugins: PluginsConfig,
    /// `telemetry { }`.
    pub telemetry: TelemetryConfig,
    /// `health_checks { }`.
    pub health_checks: HealthChecksConfig,
    /// What SPIRE would log as warnings while loading.
    pub warnings: Vec<ConfigWarning>,
    /// Unknown keys in sections SPIRE does not check (`experimental`, `federation`,
    /// `federates_with`, `telemetry`): accepted, as SPIRE does; worth a warning.
    pub ignored_unknown_keys: Vec<UnknownKey>,
}

/// `ca_subject { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSubject {
    /// `country`.
    pub country: Vec<String>,
    /// `organization`.
    pub organization: Vec<String>,
    /// `common_name`.
    pub common_name: String,
}

impl Default for CaSubject {
    /// SPIRE's default CA subject: C=US, O=SPIFFE.
    fn default() -> Self {
        CaSubject {
            country: vec!["US".to_owned()],
            organization: vec!["SPIFFE".to_owned()],
            common_name: String::new(),
        }
    }
}

/// `profiling_enabled`, `profiling_port`, `profiling_freq`, `profiling_names`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfilingConfig {
    /// `profiling_enabled`.
    pub enabled: bool,
    /// `profiling_port`.
    pub port: i64,
    /// `profiling_freq`.
    pub freq: i64,
    /// `profiling_names`.
    pub names: Vec<String>,
}

/// `ratelimit { attestation, signing }`, both default true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `attestation`.
    pub attestation: bool,
    /// `signing`.
    pub signing: bool,
}

/// `experimental { }` with the server's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerExperimental {
    /// `cache_reload_interval` (default 5s).
    pub cache_reload_interval: Duration,
    /// `full_cache_reload_interval` (default 24h).
    pub full_cache_reload_interval: Duration,
    /// `events_based_cache`.
    pub events_based_cache: bool,
    /// `prune_events_older_than` (default 12h).
    pub prune_events_older_than: Duration,
    /// `event_timeout`, or the deprecated `sql_transaction_timeout` (default 15m).
    pub event_timeout: Duration,
    /// `auth_opa_policy_engine { local { } }`.
    pub auth_opa_policy_engine: Option<OpaEngineConfig>,
    /// `require_pq_kem`.
    pub require_pq_kem: bool,
    /// `feature_flags`.
    pub feature_flags: Vec<String>,
}

/// `auth_opa_policy_engine { local { rego_path, policy_data_path } }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpaEngineConfig {
    /// `local { rego_path, policy_data_path }`, when given.
    pub local: Option<(String, String)>,
}

/// `federation { }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FederationConfig {
    /// `bundle_endpoint { }`.
    pub bundle_endpoint: Option<BundleEndpointConfig>,
    /// `federates_with "<td>" { }`.
    pub federates_with: BTreeMap<TrustDomain, FederatesWithConfig>,
}

/// `federation.bundle_endpoint { }`.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleEndpointConfig {
    /// `address` as an IP (`None`: unset or not an IP, so all addresses, as Go's nil IP).
    pub address: Option<IpAddr>,
    /// `port`.
    pub port: u16,
    /// `refresh_hint` (default 5m).
    pub refresh_hint: Duration,
    /// The profile.
    pub profile: BundleEndpointProfile,
}

/// How the bundle endpoint authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleEndpointProfile {
    /// `profile "https_spiffe" {}` (also the default when no profile is set).
    HttpsSpiffe,
    /// `profile "https_web" { acme { } }` (or the deprecated `acme { }` in
    /// `bundle_endpoint`).
    HttpsWebAcme(AcmeConfig),
    /// `profile "https_web" { serving_cert_file { } }`.
    HttpsWebServingCert(ServingCertFile),
}

/// ACME settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// `directory_url` (default Let's Encrypt v2).
    pub directory_url: String,
    /// `domain_name`.
    pub domain_name: String,
    /// `email`.
    pub email: String,
    /// `tos_accepted`.
    pub tos_accepted: bool,
    /// `<data_dir>/bundle-acme`.
    pub cache_dir: PathBuf,
}

/// `serving_cert_file { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCertFile {
    /// `cert_file_path`.
    pub cert_file_path: PathBuf,
    /// `key_file_path`.
    pub key_file_path: PathBuf,
    /// `file_sync_interval` (0 means 1h).
    pub file_sync_interval: Duration,
}

/// `federates_with "<td>" { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatesWithConfig {
    /// `bundle_endpoint_url` (https).
    pub bundle_endpoint_url: String,
    /// `bundle_endpoint_profile`.
    pub profile: FederatesWithProfile,
}

/// `bundle_endpoint_profile "https_web" {}` or `"https_spiffe" { endpoint_spiffe_id }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederatesWithProfile {
    /// `https_web`.
    HttpsWeb,
    /// `https_spiffe`.
    HttpsSpiffe {
        /// `endpoint_spiffe_id`.
        endpoint_spiffe_id: SpiffeId,
    },
}
