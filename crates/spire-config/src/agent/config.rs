//! The validated agent configuration and its sections, and the `spire-agent run` flags that
//! override the file.

use super::*;

/// `spire-agent run` flags that override the file.
///
/// As in SPIRE (`mergo`), an override applies only when it is not the zero value
/// (`Some("")`, `Some(0)`, `Some(false)` leave the file's value), except `retry_bootstrap`,
/// which SPIRE records only when the flag is given, so `Some(false)` overrides too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOverrides {
    /// `-dataDir`.
    pub data_dir: Option<String>,
    /// `-joinToken`.
    pub join_token: Option<String>,
    /// `-joinTokenFile`.
    pub join_token_file: Option<String>,
    /// `-logFile`.
    pub log_file: Option<String>,
    /// `-logFormat`.
    pub log_format: Option<String>,
    /// `-logLevel`.
    pub log_level: Option<String>,
    /// `-logSourceLocation`.
    pub log_source_location: Option<bool>,
    /// `-serverAddress`.
    pub server_address: Option<String>,
    /// `-serverPort`.
    pub server_port: Option<i64>,
    /// `-socketPath`.
    pub socket_path: Option<String>,
    /// `-trustDomain`.
    pub trust_domain: Option<String>,
    /// `-trustBundle` (a path).
    pub trust_bundle: Option<String>,
    /// `-trustBundleUrl`.
    pub trust_bundle_url: Option<String>,
    /// `-trustBundleFormat`.
    pub trust_bundle_format: Option<String>,
    /// `-allowUnauthenticatedVerifiers`.
    pub allow_unauthenticated_verifiers: Option<bool>,
    /// `-insecureBootstrap`.
    pub insecure_bootstrap: Option<bool>,
    /// `-retryBootstrap` (only when given on the command line).
    pub retry_bootstrap: Option<bool>,
    /// `-rebootstrapMode`.
    pub rebootstrap_mode: Option<String>,
    /// `-rebootstrapDelay`.
    pub rebootstrap_delay: Option<String>,
}

/// How the agent gets the bundle it trusts the server with before its first attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustBundleSource {
    /// `trust_bundle_path`.
    Path(PathBuf),
    /// `trust_bundle_url`, fetched over `trust_bundle_unix_socket` when that is set.
    Url {
        /// The URL (https, or http with a unix socket).
        url: String,
        /// `trust_bundle_unix_socket`.
        unix_socket: Option<PathBuf>,
    },
    /// `insecure_bootstrap = true`.
    InsecureBootstrap,
}

/// `trust_bundle_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustBundleFormat {
    /// `pem` (default).
    #[default]
    Pem,
    /// `spiffe`.
    Spiffe,
}

/// `rebootstrap_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootstrapMode {
    /// `never` (default).
    #[default]
    Never,
    /// `auto`.
    Auto,
    /// `always`.
    Always,
}

/// The key type of workload X509-SVIDs (`workload_x509_svid_key_type`): only ec-p256
/// (default) and rsa-2048 are accepted.
pub type WorkloadKeyType = KeyType;

/// `sds { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsConfig {
    /// `default_svid_name` (default `default`).
    pub default_svid_name: String,
    /// `default_bundle_name` (default `ROOTCA`).
    pub default_bundle_name: String,
    /// `default_all_bundles_name` (default `ALL`).
    pub default_all_bundles_name: String,
    /// `disable_spiffe_cert_validation`.
    pub disable_spiffe_cert_validation: bool,
}

/// `experimental { }` with the agent's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExperimental {
    /// `sync_interval` (default 5s).
    pub sync_interval: Duration,
    /// `use_sync_authorized_entries` (default true; deprecated).
    pub use_sync_authorized_entries: bool,
    /// `require_pq_kem`.
    pub require_pq_kem: bool,
    /// `feature_flags`.
    pub feature_flags: Vec<String>,
}

/// The validated agent configuration (SPIRE's `agent.Config`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// `data_dir` (default `.`).
    pub data_dir: PathBuf,
    /// `socket_path` (default `/tmp/spire-agent/public/api.sock`).
    pub socket_path: PathBuf,
    /// `admin_socket_path` (absolute), when the admin API is enabled.
    pub admin_socket_path: Option<PathBuf>,
    /// `trust_domain`.
    pub trust_domain: TrustDomain,
    /// `server_address`.
    pub server_address: String,
    /// `server_port`.
    pub server_port: u16,
    /// Exactly one of `trust_bundle_path`, `trust_bundle_url`, `insecure_bootstrap`.
    pub trust_bundle: TrustBundleSource,
    /// `trust_bundle_format`.
    pub trust_bundle_format: TrustBundleFormat,
    /// `join_token`, or the trimmed contents of `join_token_file`.
    pub join_token: Option<String>,
    /// `retry_bootstrap` (default true; deprecated).
    pub retry_bootstrap: bool,
    /// `rebootstrap_mode`.
    pub rebootstrap_mode: RebootstrapMode,
    /// `rebootstrap_delay` (default 10m).
    pub rebootstrap_delay: Duration,
    /// `log_*`.
    pub log: LogConfig,
    /// `sds { }`.
    pub sds: SdsConfig,
    /// `workload_x509_svid_key_type` (ec-p256 or rsa-2048).
    pub workload_x509_svid_key_type: KeyType,
    /// `allow_unauthenticated_verifiers`.
    pub allow_unauthenticated_verifiers: bool,
    /// `allowed_foreign_jwt_claims`.
    pub allowed_foreign_jwt_claims: Vec<String>,
    /// `authorized_delegates` (members of the trust domain).
    pub authorized_delegates: Vec<SpiffeId>,
    /// `availability_target` (at least 24h when set).
    pub availability_target: Option<Duration>,
    /// `x509_svid_cache_max_size` (default 1000).
    pub x509_svid_cache_max_size: usize,
    /// `jwt_svid_cache_max_size` (default 1000).
    pub jwt_svid_cache_max_size: usize,
    /// `profiling_*`.
    pub profiling: ProfilingConfig,
    /// `experimental { }`.
    pub experimental: AgentExperimental,
    /// `plugins { }`.
    pub plugins: PluginsConfig,
    /// `telemetry { }`.
    pub telemetry: TelemetryConfig,
    /// `health_checks { }`.
    pub health_checks: HealthChecksConfig,
    /// What SPIRE would log as warnings.
    pub warnings: Vec<ConfigWarning>,
    /// Unknown keys in sections SPIRE does not check (`sds`, `experimental`, `telemetry`).
    pub ignored_unknown_keys: Vec<UnknownKey>,
}
