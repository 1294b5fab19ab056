//! `server.conf`: SPIRE's `cmd/spire-server/cli/run` (`Config`, `ParseFile`, `mergeInput`,
//! `NewServerConfig`, `checkForUnknownConfig`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spiffe_core::{KeyType, SpiffeId, TrustDomain};

use crate::decode::{DecodeCtx, Parent, RawNode, Spanned, decode_nodes};
use crate::duration::{DurationError, format_go_duration, parse_go_duration};
use crate::env::EnvLookup;
use crate::error::{ConfigError, UnknownKey};
use crate::hcl::Format;
use crate::hcl::ast::Node;
use crate::plugins::{PluginsConfig, plugins_from_node};
use crate::sections::{ConfigFile, Parsed, pick};
use crate::telemetry::{HealthChecksConfig, RawHealthChecks, RawTelemetry, TelemetryConfig};
use crate::{ConfigWarning, LogConfig, go_quote, log_config};

mod config;
mod federation;

pub use config::*;
use federation::*;

const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-server/private/api.sock";
const DEFAULT_BIND_ADDRESS: &str = "0.0.0.0";
const DEFAULT_BIND_PORT: i64 = 8081;
const DEFAULT_LOG_LEVEL: &str = "INFO";
const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_X509_SVID_TTL: Duration = Duration::from_secs(3600);
const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(300);
const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);
const MINIMUM_REFRESH_HINT: Duration = Duration::from_secs(60);
const DEFAULT_FILE_SYNC_INTERVAL: Duration = Duration::from_secs(3600);
const DEFAULT_CACHE_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_FULL_CACHE_RELOAD_INTERVAL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_PRUNE_EVENTS_OLDER_THAN: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const MAX_SVID_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const ACTIVATION_DIVISOR: u32 = 6;
/// Let's Encrypt's v2 directory, SPIRE's default ACME directory.
pub const LETS_ENCRYPT_DIRECTORY_URL: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The only developer feature flag SPIRE 1.13 knows.
pub(crate) const KNOWN_FEATURE_FLAGS: &[&str] = &["i_am_a_test_flag"];

type SStr = Option<Spanned<String>>;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServerFile {
    server: Option<RawServer>,
    plugins: Option<RawNode>,
    telemetry: RawTelemetry,
    health_checks: RawHealthChecks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawServer {
    admin_ids: Vec<Spanned<String>>,
    agent_ttl: SStr,
    audit_log_enabled: bool,
    bind_address: String,
    bind_port: Option<Spanned<i64>>,
    ca_key_type: SStr,
    ca_subject: Option<RawCaSubject>,
    ca_ttl: SStr,
    data_dir: String,
    default_x509_svid_ttl: SStr,
    default_jwt_svid_ttl: SStr,
    experimental: RawExperimental,
    federation: Option<RawFederation>,
    jwt_issuer: String,
    jwt_key_type: SStr,
    log_file: String,
    log_level: String,
    log_format: String,
    log_source_location: bool,
    prune_attested_nodes_expired_for: SStr,
    prune_tofu_nodes: bool,
    ratelimit: RawRateLimit,
    socket_path: String,
    trust_domain: SStr,
    max_attested_node_info_staleness: SStr,
    profiling_enabled: bool,
    profiling_port: i64,
    profiling_freq: i64,
    profiling_names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawExperimental {
    auth_opa_policy_engine: Option<RawOpaEngine>,
    cache_reload_interval: SStr,
    full_cache_reload_interval: SStr,
    events_based_cache: bool,
    prune_events_older_than: SStr,
    event_timeout: SStr,
    sql_transaction_timeout: SStr,
    require_pq_kem: bool,
    feature_flags: Vec<String>,
    named_pipe_name: String,
}

impl RawExperimental {
    fn is_set(&self) -> bool {
        self.auth_opa_policy_engine.is_some()
            || [
                &self.cache_reload_interval,
                &self.full_cache_reload_interval,
                &self.prune_events_older_than,
                &self.event_timeout,
                &self.sql_transaction_timeout,
            ]
            .iter()
            .any(|v| nonempty(v).is_some())
            || self.events_based_cache
            || self.require_pq_kem
            || !self.feature_flags.is_empty()
            || !self.named_pipe_name.is_empty()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawOpaEngine {
    local: Option<RawOpaLocal>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawOpaLocal {
    rego_path: String,
    policy_data_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawCaSubject {
    country: Vec<String>,
    organization: Vec<String>,
    common_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFederation {
    bundle_endpoint: Option<RawBundleEndpoint>,
    federates_with: BTreeMap<String, RawFederatesWith>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawBundleEndpoint {
    address: String,
    port: Option<Spanned<i64>>,
    refresh_hint: SStr,
    acme: Option<RawAcme>,
    profile: Option<RawNode>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct RawAcme {
    directory_url: String,
    domain_name: String,
    email: String,
    tos_accepted: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawBundleEndpointProfile {
    https_spiffe: Option<RawEmpty>,
    https_web: Option<RawHttpsWeb>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEmpty {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHttpsWeb {
    acme: Option<RawAcme>,
    serving_cert_file: Option<RawServingCertFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawServingCertFile {
    cert_file_path: String,
    key_file_path: String,
    file_sync_interval: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFederatesWith {
    bundle_endpoint_url: String,
    bundle_endpoint_profile: Option<RawNode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFederatesWithProfile {
    https_spiffe: Option<RawHttpsSpiffe>,
    https_web: Option<RawEmpty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHttpsSpiffe {
    endpoint_spiffe_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRateLimit {
    attestation: Option<bool>,
    signing: Option<bool>,
}

/// `spire-server run` flags that override the file (`-bindAddress`, `-serverPort`,
/// `-socketPath`, `-dataDir`, `-trustDomain`, `-logFile`, `-logFormat`, `-logLevel`,
/// `-logSourceLocation`).
///
/// As in SPIRE (which merges with `mergo`), an override only applies when it is not the zero
/// value: `Some("")`, `Some(0)` and `Some(false)` leave the file's value in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOverrides {
    /// `-bindAddress`.
    pub bind_address: Option<String>,
    /// `-serverPort`.
    pub server_port: Option<i64>,
    /// `-socketPath`.
    pub socket_path: Option<String>,
    /// `-dataDir`.
    pub data_dir: Option<String>,
    /// `-trustDomain`.
    pub trust_domain: Option<String>,
    /// `-logFile`.
    pub log_file: Option<String>,
    /// `-logFormat`.
    pub log_format: Option<String>,
    /// `-logLevel`.
    pub log_level: Option<String>,
    /// `-logSourceLocation`.
    pub log_source_location: Option<bool>,
}

/// A parsed `server.conf`, before flags are merged and values validated.
pub type ServerFile = ConfigFile<RawServerFile>;

impl ServerFile {
    /// Merges the overrides and validates, as `spire-server run` does.
    pub fn into_config(self, overrides: &ServerOverrides) -> Result<ServerConfig, ConfigError> {
        build(self.parsed, overrides, false)
    }

    /// Like [`ServerFile::into_config`] but accepting unknown keys (SPIRE's
    /// `allowUnknownConfig`); they are reported in `ignored_unknown_keys`.
    pub fn into_config_allowing_unknown(
        self,
        overrides: &ServerOverrides,
    ) -> Result<ServerConfig, ConfigError> {
        build(self.parsed, overrides, true)
    }
}

/// Loads a server configuration from text, as `spire-server run` would from a file with
/// these contents. `expand_env` is `-expandEnv`.
pub fn load_server_config(
    text: &str,
    format: Format,
    overrides: &ServerOverrides,
    expand_env: Option<&dyn EnvLookup>,
) -> Result<ServerConfig, ConfigError> {
    ServerFile::parse_expanded(text, format, expand_env)?.into_config(overrides)
}

/// Loads a server configuration file as `spire-server run -config PATH` does.
pub fn load_server_config_file(
    path: &Path,
    overrides: &ServerOverrides,
    expand_env: Option<&dyn EnvLookup>,
) -> Result<ServerConfig, ConfigError> {
    ServerFile::read(path, expand_env)?.into_config(overrides)
}

pub(crate) fn nonempty(v: &SStr) -> Option<&Spanned<String>> {
    v.as_ref().filter(|s| !s.value.is_empty())
}

fn duration(
    key: &str,
    value: &Spanned<String>,
    message: impl Fn(&DurationError) -> String,
) -> Result<Duration, ConfigError> {
    parse_go_duration(&value.value).map_err(|e| ConfigError::invalid(key, value.line, message(&e)))
}

pub(crate) fn parse_key_type(s: &str) -> Result<KeyType, String> {
    s.to_lowercase().parse::<KeyType>().map_err(|_| {
        format!(
            "key type {} is unknown; must be one of [rsa-2048, rsa-4096, ec-p256, ec-p384]",
            go_quote(s)
        )
    })
}

/// SPIRE's `printDuration`: truncated to seconds, without trailing zero units.
fn print_duration(d: Duration) -> String {
    let mut s = format_go_duration(Duration::from_secs(d.as_secs()));
    if s.ends_with("m0s") {
        s.truncate(s.len() - 2);
    }
    if s.ends_with("h0m") {
        s.truncate(s.len() - 2);
    }
    s
}

fn max_svid_ttl_for_ca_ttl(ca_ttl: Duration) -> Duration {
    (ca_ttl / ACTIVATION_DIVISOR).min(MAX_SVID_TTL)
}

fn min_ca_ttl_for_svid_ttl(ttl: Duration) -> Duration {
    ttl.saturating_mul(ACTIVATION_DIVISOR)
}

pub(crate) fn feature_flags(flags: &[String]) -> Result<(), ConfigError> {
    let mut bad: Vec<&str> = flags
        .iter()
        .map(String::as_str)
        .filter(|f| !KNOWN_FEATURE_FLAGS.contains(f))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort_unstable();
    Err(ConfigError::invalid(
        "feature_flags",
        0,
        format!(
            "error loading feature flags: unknown feature flag(s): [{}]",
            bad.join(" ")
        ),
    ))
}

fn warn(warnings: &mut Vec<ConfigWarning>, message: impl Into<String>) {
    warnings.push(ConfigWarning {
        message: message.into(),
    });
}

fn build(
    parsed: Parsed<RawServerFile>,
    o: &ServerOverrides,
    allow_unknown: bool,
) -> Result<ServerConfig, ConfigError> {
    let Parsed {
        raw,
        unknown,
        mut ignored,
    } = parsed;
    let server = raw.server.unwrap_or_default();
    let mut warnings = Vec::new();

    // mergeInput: flags, then file, then defaults.
    let bind_address = pick(&o.bind_address, &server.bind_address, DEFAULT_BIND_ADDRESS);
    let (bind_port, bind_port_line) = match (o.server_port, &server.bind_port) {
        (Some(p), _) if p != 0 => (p, 0),
        (_, Some(p)) if p.value != 0 => (p.value, p.line),
        _ => (DEFAULT_BIND_PORT, 0),
    };
    let data_dir = pick(&o.data_dir, &server.data_dir, "");
    let log_level = pick(&o.log_level, &server.log_level, DEFAULT_LOG_LEVEL);
    let log_format = pick(&o.log_format, &server.log_format, "");
    let log_file = pick(&o.log_file, &server.log_file, "");
    let log_source_location = o.log_source_location == Some(true) || server.log_source_location;
    let socket_path = pick(&o.socket_path, &server.socket_path, DEFAULT_SOCKET_PATH);
    let trust_domain_text = match (&o.trust_domain, nonempty(&server.trust_domain)) {
        (Some(t), _) if !t.is_empty() => Spanned {
            line: 0,
            column: 0,
            value: t.clone(),
        },
        (_, Some(t)) => t.clone(),
        _ => Spanned::default(),
    };

    feature_flags(&server.experimental.feature_flags)?;

    // validateConfig.
    if bind_address.is_empty() || bind_port == 0 {
        return Err(ConfigError::missing(
            "bind_address",
            "bind_address and bind_port must be configured",
        ));
    }
    if trust_domain_text.value.is_empty() {
        return Err(ConfigError::missing(
            "trust_domain",
            "trust_domain must be configured",
        ));
    }
    if data_dir.is_empty() {
        return Err(ConfigError::missing(
            "data_dir",
            "data_dir must be configured",
        ));
    }
    let Some(plugins_node) = raw.plugins else {
        return Err(ConfigError::missing(
            "plugins",
            "plugins section must be configured",
        ));
    };
    if let Some(fed) = &server.federation {
        if let Some(acme) = fed.bundle_endpoint.as_ref().and_then(|b| b.acme.as_ref()) {
            if acme.domain_name.is_empty() {
                return Err(ConfigError::missing(
                    "domain_name",
                    "federation.bundle_endpoint.acme.domain_name must be configured",
                ));
            }
            if acme.email.is_empty() {
                return Err(ConfigError::missing(
                    "email",
                    "federation.bundle_endpoint.acme.email must be configured",
                ));
            }
        }
        for (td, cfg) in &fed.federates_with {
            if cfg.bundle_endpoint_url.is_empty() {
                return Err(ConfigError::missing(
                    "bundle_endpoint_url",
                    format!(
                        "federation.federates_with[\"{td}\"].bundle_endpoint_url must be configured"
                    ),
                ));
            }
            if !cfg
                .bundle_endpoint_url
                .to_lowercase()
                .starts_with("https://")
            {
                return Err(ConfigError::invalid(
                    "bundle_endpoint_url",
                    0,
                    format!(
                        "federation.federates_with[\"{td}\"].bundle_endpoint_url must use the HTTPS protocol; URL found: {}",
                        go_quote(&cfg.bundle_endpoint_url)
                    ),
                ));
            }
        }
    }
    let exp = &server.experimental;
    if nonempty(&exp.event_timeout).is_some() && nonempty(&exp.sql_transaction_timeout).is_some() {
        return Err(ConfigError::invalid(
            "event_timeout",
            0,
            "both experimental sql_transaction_timeout and event_timeout set, only set event_timeout",
        ));
    }
    if !exp.named_pipe_name.is_empty() {
        return Err(ConfigError::invalid(
            "named_pipe_name",
            0,
            "invalid configuration: named_pipe_name is not supported in this platform; please use socket_path instead",
        ));
    }

    // NewServerConfig.
    let log = log_config(&log_level, &log_format, &log_file, log_source_location)?;
    let bind_port = u16::try_from(bind_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ConfigError::invalid(
                "bind_port",
                bind_port_line,
                format!(
                    "could not resolve bind address \"{bind_address}:{bind_port}\": address {bind_port}: invalid port"
                ),
            )
        })?;
    let bind_address = bind_address.trim_matches(['[', ']']).to_owned();

    let trust_domain = crate::ids::parse_trust_domain(&trust_domain_text.value).map_err(|e| {
        ConfigError::invalid(
            "trust_domain",
            trust_domain_text.line,
            format!(
                "could not parse trust_domain {}: {e}",
                go_quote(&trust_domain_text.value)
            ),
        )
    })?;
    if trust_domain.name().len() > 255 {
        warn(
            &mut warnings,
            "Configured trust domain name should be less than 255 characters to be SPIFFE compliant; a longer trust domain name may impact interoperability",
        );
    }

    let ratelimit = RateLimitConfig {
        attestation: server.ratelimit.attestation.unwrap_or(true),
        signing: server.ratelimit.signing.unwrap_or(true),
    };

    let federation = match &server.federation {
        None => FederationConfig::default(),
        Some(fed) => build_federation(fed, Path::new(&data_dir), &mut warnings)?,
    };

    let profiling = ProfilingConfig {
        enabled: server.profiling_enabled,
        port: server.profiling_port,
        freq: server.profiling_freq,
        names: server.profiling_names.clone(),
    };

    let max_attested_node_info_staleness = match &server.max_attested_node_info_staleness {
        Some(v) => duration("max_attested_node_info_staleness", v, |e| {
            format!(
                "could not parse max attested node staleness {}: {e}",
                go_quote(&v.value)
            )
        })?,
        None => Duration::ZERO,
    };

    let mut admin_ids = Vec::with_capacity(server.admin_ids.len());
    for id in &server.admin_ids {
        let parsed = crate::ids::parse_spiffe_id(&id.value).map_err(|e| {
            ConfigError::invalid(
                "admin_ids",
                id.line,
                format!("could not parse admin ID {}: {e}", go_quote(&id.value)),
            )
        })?;
        admin_ids.push(parsed);
    }

    let agent_ttl = match nonempty(&server.agent_ttl) {
        Some(v) => Some(duration("agent_ttl", v, |e| {
            format!("could not parse agent ttl {}: {e}", go_quote(&v.value))
        })?),
        None => None,
    };
    let default_x509_svid_ttl = match nonempty(&server.default_x509_svid_ttl) {
        Some(v) => duration("default_x509_svid_ttl", v, |e| {
            format!(
                "could not parse default X509 SVID ttl {}: {e}",
                go_quote(&v.value)
            )
        })?,
        None => DEFAULT_X509_SVID_TTL,
    };
    let default_jwt_svid_ttl = match nonempty(&server.default_jwt_svid_ttl) {
        Some(v) => duration("default_jwt_svid_ttl", v, |e| {
            format!(
                "could not parse default JWT SVID ttl {}: {e}",
                go_quote(&v.value)
            )
        })?,
        None => DEFAULT_JWT_SVID_TTL,
    };
    let ca_ttl = match nonempty(&server.ca_ttl) {
        Some(v) => duration("ca_ttl", v, |e| {
            format!("could not parse default CA ttl {}: {e}", go_quote(&v.value))
        })?,
        None => DEFAULT_CA_TTL,
    };
    let mut ttl_checks = vec![
        ("default_x509_svid_ttl", default_x509_svid_ttl),
        ("default_jwt_svid_ttl", default_jwt_svid_ttl),
    ];
    if let Some(t) = agent_ttl.filter(|t| !t.is_zero()) {
        ttl_checks.push(("agent_ttl", t));
    }
    for (name, ttl) in ttl_checks {
        if ttl <= max_svid_ttl_for_ca_ttl(ca_ttl) {
            continue;
        }
        let message = if ttl < MAX_SVID_TTL {
            format!(
                "{name} is too high for the configured ca_ttl value. SVIDs with shorter lifetimes may be issued. Please set {name} to {} or less, or the ca_ttl to {} or more, to guarantee the full {name} lifetime when CA rotations are scheduled.",
                print_duration(max_svid_ttl_for_ca_ttl(ca_ttl)),
                print_duration(min_ca_ttl_for_svid_ttl(ttl))
            )
        } else if ca_ttl < min_ca_ttl_for_svid_ttl(MAX_SVID_TTL) {
            format!(
                "{name} is too high and the ca_ttl is too low. SVIDs with shorter lifetimes may be issued. Please set {name} to {} or less, and the ca_ttl to {} or more, to guarantee the full {name} lifetime when CA rotations are scheduled.",
                print_duration(MAX_SVID_TTL),
                print_duration(min_ca_ttl_for_svid_ttl(MAX_SVID_TTL))
            )
        } else {
            format!(
                "{name} is too high. SVIDs with shorter lifetimes may be issued. Please set {name} to {} or less to guarantee the full {name} lifetime when CA rotations are scheduled.",
                print_duration(max_svid_ttl_for_ca_ttl(ca_ttl))
            )
        };
        warn(&mut warnings, message);
    }

    let ca_key_type = match nonempty(&server.ca_key_type) {
        Some(v) => parse_key_type(&v.value).map_err(|e| {
            ConfigError::invalid(
                "ca_key_type",
                v.line,
                format!("error parsing ca_key_type: {e}"),
            )
        })?,
        None => KeyType::EcP256,
    };
    let jwt_key_type = match nonempty(&server.jwt_key_type) {
        Some(v) => parse_key_type(&v.value).map_err(|e| {
            ConfigError::invalid(
                "jwt_key_type",
                v.line,
                format!("error parsing jwt_key_type: {e}"),
            )
        })?,
        None => ca_key_type,
    };

    let ca_subject = match &server.ca_subject {
        Some(s) => {
            if s.country.is_empty() && s.organization.is_empty() && s.common_name.is_empty() {
                warn(
                    &mut warnings,
                    "ca_subject configurable is set but empty; the default will be used",
                );
                CaSubject::default()
            } else {
                CaSubject {
                    country: s.country.clone(),
                    organization: s.organization.clone(),
                    common_name: s.common_name.clone(),
                }
            }
        }
        None => CaSubject::default(),
    };

    let plugins = plugins_from_node(&plugins_node)?;

    let (prune_attested_nodes_expired_for, prune_tofu_nodes) =
        match nonempty(&server.prune_attested_nodes_expired_for) {
            Some(v) => (
                Some(duration("prune_attested_nodes_expired_for", v, |e| {
                    format!("could not parse prune_attested_nodes_expired_for: {e}")
                })?),
                server.prune_tofu_nodes,
            ),
            None => (None, false),
        };

    if !allow_unknown && !unknown.is_empty() {
        return Err(ConfigError::UnknownKeys { keys: unknown });
    }
    if allow_unknown {
        ignored.extend(unknown);
    }

    if exp.is_set() {
        warn(
            &mut warnings,
            "Experimental features have been enabled. Please see doc/upgrading.md for upgrade and compatibility considerations for experimental features.",
        );
    }
    let cache_reload_interval = match nonempty(&exp.cache_reload_interval) {
        Some(v) => duration("cache_reload_interval", v, |e| {
            format!("could not parse cache reload interval: {e}")
        })?,
        None => DEFAULT_CACHE_RELOAD_INTERVAL,
    };
    let full_cache_reload_interval = match nonempty(&exp.full_cache_reload_interval) {
        Some(v) => duration("full_cache_reload_interval", v, |e| {
            format!("could not parse full cache reload interval: {e}")
        })?,
        None => DEFAULT_FULL_CACHE_RELOAD_INTERVAL,
    };
    let prune_events_older_than = match nonempty(&exp.prune_events_older_than) {
        Some(v) => duration("prune_events_older_than", v, |e| {
            format!("could not parse prune events interval: {e}")
        })?,
        None => DEFAULT_PRUNE_EVENTS_OLDER_THAN,
    };
    let mut event_timeout = DEFAULT_EVENT_TIMEOUT;
    if let Some(v) = nonempty(&exp.sql_transaction_timeout) {
        warn(
            &mut warnings,
            "experimental.sql_transaction_timeout is deprecated, use experimental.event_timeout instead",
        );
        event_timeout = duration("sql_transaction_timeout", v, |e| {
            format!("could not parse SQL transaction timeout interval: {e}")
        })?;
    }
    if let Some(v) = nonempty(&exp.event_timeout) {
        event_timeout = duration("event_timeout", v, |e| {
            format!("could not parse event timeout interval: {e}")
        })?;
    }
    for f in &exp.feature_flags {
        warn(
            &mut warnings,
            format!("Developer feature flag {} has been enabled", go_quote(f)),
        );
    }

    Ok(ServerConfig {
        bind_address,
        bind_port,
        socket_path: PathBuf::from(socket_path),
        trust_domain,
        data_dir: PathBuf::from(data_dir),
        log,
        ca_ttl,
        default_x509_svid_ttl,
        default_jwt_svid_ttl,
        agent_ttl: agent_ttl
            .filter(|t| !t.is_zero())
            .unwrap_or(default_x509_svid_ttl),
        agent_ttl_configured: agent_ttl.is_some_and(|t| !t.is_zero()),
        ca_key_type,
        jwt_key_type,
        ca_subject,
        jwt_issuer: (!server.jwt_issuer.is_empty()).then(|| server.jwt_issuer.clone()),
        admin_ids,
        audit_log_enabled: server.audit_log_enabled,
        prune_attested_nodes_expired_for,
        prune_tofu_nodes,
        max_attested_node_info_staleness,
        profiling,
        ratelimit,
        experimental: ServerExperimental {
            cache_reload_interval,
            full_cache_reload_interval,
            events_based_cache: exp.events_based_cache,
            prune_events_older_than,
            event_timeout,
            auth_opa_policy_engine: exp
                .auth_opa_policy_engine
                .as_ref()
                .map(|e| OpaEngineConfig {
                    local: e
                        .local
                        .as_ref()
                        .map(|l| (l.rego_path.clone(), l.policy_data_path.clone())),
                }),
            require_pq_kem: exp.require_pq_kem,
            feature_flags: exp.feature_flags.clone(),
        },
        federation,
        plugins,
        telemetry: raw.telemetry.into_config(),
        health_checks: raw.health_checks.into_config(),
        warnings,
        ignored_unknown_keys: ignored,
    })
}
