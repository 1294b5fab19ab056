//! `agent.conf`: SPIRE's `cmd/spire-agent/cli/run` (`Config`, `ParseFile`, `mergeInput`,
//! `NewAgentConfig`, `checkForUnknownConfig`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spiffe_core::{KeyType, SpiffeId, TrustDomain};

use crate::decode::{RawNode, Spanned};
use crate::duration::{format_go_duration, parse_go_duration};
use crate::env::EnvLookup;
use crate::error::{ConfigError, UnknownKey};
use crate::hcl::Format;
use crate::plugins::{PluginsConfig, plugins_from_node};
use crate::sections::{ConfigFile, Parsed, pick};
use crate::server::{ProfilingConfig, feature_flags, nonempty};
use crate::telemetry::{HealthChecksConfig, RawHealthChecks, RawTelemetry, TelemetryConfig};
use crate::{ConfigWarning, LogConfig, go_quote, log_config};

mod config;

pub use config::*;

const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-agent/public/api.sock";
const DEFAULT_DATA_DIR: &str = ".";
const DEFAULT_LOG_LEVEL: &str = "INFO";
const DEFAULT_REBOOTSTRAP_DELAY: &str = "10m";
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_SVID_CACHE_MAX_SIZE: usize = 1000;
const MINIMUM_AVAILABILITY_TARGET: Duration = Duration::from_secs(24 * 3600);

type SStr = Option<Spanned<String>>;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAgentFile {
    agent: Option<RawAgent>,
    plugins: Option<RawNode>,
    telemetry: RawTelemetry,
    health_checks: RawHealthChecks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAgent {
    data_dir: String,
    admin_socket_path: String,
    insecure_bootstrap: bool,
    retry_bootstrap: Option<bool>,
    rebootstrap_mode: String,
    rebootstrap_delay: SStr,
    join_token: String,
    join_token_file: String,
    log_file: String,
    log_format: String,
    log_level: String,
    log_source_location: bool,
    sds: RawSds,
    server_address: String,
    server_port: Option<Spanned<i64>>,
    socket_path: String,
    workload_x509_svid_key_type: SStr,
    trust_bundle_format: String,
    trust_bundle_path: String,
    trust_bundle_unix_socket: String,
    trust_bundle_url: String,
    trust_domain: SStr,
    allow_unauthenticated_verifiers: bool,
    allowed_foreign_jwt_claims: Vec<String>,
    availability_target: SStr,
    x509_svid_cache_max_size: i64,
    jwt_svid_cache_max_size: i64,
    authorized_delegates: Vec<Spanned<String>>,
    profiling_enabled: bool,
    profiling_port: i64,
    profiling_freq: i64,
    profiling_names: Vec<String>,
    experimental: RawExperimental,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSds {
    // SPIRE's defaults are in place before decoding, so an explicit "" stays "".
    default_svid_name: Option<String>,
    default_bundle_name: Option<String>,
    default_all_bundles_name: Option<String>,
    disable_spiffe_cert_validation: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawExperimental {
    sync_interval: SStr,
    named_pipe_name: String,
    admin_named_pipe_name: String,
    use_sync_authorized_entries: Option<bool>,
    require_pq_kem: bool,
    feature_flags: Vec<String>,
}

impl RawExperimental {
    fn is_set(&self) -> bool {
        nonempty(&self.sync_interval).is_some()
            || !self.named_pipe_name.is_empty()
            || !self.admin_named_pipe_name.is_empty()
            || self.use_sync_authorized_entries.is_some()
            || self.require_pq_kem
            || !self.feature_flags.is_empty()
    }
}

/// A parsed `agent.conf`, before flags are merged and values validated.
pub type AgentFile = ConfigFile<RawAgentFile>;

impl AgentFile {
    /// Merges the overrides and validates, as `spire-agent run` does.
    pub fn into_config(self, overrides: &AgentOverrides) -> Result<AgentConfig, ConfigError> {
        build(self.parsed, overrides, false)
    }

    /// Like [`AgentFile::into_config`] but accepting unknown keys.
    pub fn into_config_allowing_unknown(
        self,
        overrides: &AgentOverrides,
    ) -> Result<AgentConfig, ConfigError> {
        build(self.parsed, overrides, true)
    }
}

/// Loads an agent configuration from text, as `spire-agent run` would from a file with
/// these contents. `expand_env` is `-expandEnv`.
pub fn load_agent_config(
    text: &str,
    format: Format,
    overrides: &AgentOverrides,
    expand_env: Option<&dyn EnvLookup>,
) -> Result<AgentConfig, ConfigError> {
    AgentFile::parse_expanded(text, format, expand_env)?.into_config(overrides)
}

/// Loads an agent configuration file as `spire-agent run -config PATH` does.
pub fn load_agent_config_file(
    path: &Path,
    overrides: &AgentOverrides,
    expand_env: Option<&dyn EnvLookup>,
) -> Result<AgentConfig, ConfigError> {
    AgentFile::read(path, expand_env)?.into_config(overrides)
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, 0, message)
}

/// The scheme (lowercased) and query keys of a URL, as Go's `url.Parse` sees them.
fn url_parts(raw: &str) -> Result<(String, Vec<String>), String> {
    if raw.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}') {
        return Err(format!(
            "parse {}: net/url: invalid control character in URL",
            go_quote(raw)
        ));
    }
    let without_fragment = raw.split('#').next().unwrap_or("");
    let mut scheme = String::new();
    for (i, c) in without_fragment.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' => {
                if i == 0 {
                    return Err(format!("parse {}: missing protocol scheme", go_quote(raw)));
                }
                scheme = without_fragment[..i].to_lowercase();
                break;
            }
            _ => break,
        }
    }
    let keys = match without_fragment.split_once('?') {
        Some((_, q)) => q
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.contains(';'))
            .map(|kv| kv.split('=').next().unwrap_or("").to_owned())
            .collect(),
        None => Vec::new(),
    };
    Ok((scheme, keys))
}

fn build(
    parsed: Parsed<RawAgentFile>,
    o: &AgentOverrides,
    allow_unknown: bool,
) -> Result<AgentConfig, ConfigError> {
    let Parsed {
        raw,
        unknown,
        mut ignored,
    } = parsed;
    let agent = raw.agent.unwrap_or_default();
    let mut warnings = Vec::new();
    let warn = |w: &mut Vec<ConfigWarning>, m: &str| {
        w.push(ConfigWarning {
            message: m.to_owned(),
        })
    };

    // mergeInput.
    let data_dir = pick(&o.data_dir, &agent.data_dir, DEFAULT_DATA_DIR);
    let join_token = pick(&o.join_token, &agent.join_token, "");
    let join_token_file = pick(&o.join_token_file, &agent.join_token_file, "");
    let log_file = pick(&o.log_file, &agent.log_file, "");
    let log_format = pick(&o.log_format, &agent.log_format, "");
    let log_level = pick(&o.log_level, &agent.log_level, DEFAULT_LOG_LEVEL);
    let log_source_location = o.log_source_location == Some(true) || agent.log_source_location;
    let server_address = pick(&o.server_address, &agent.server_address, "");
    let (server_port, server_port_line) = match (o.server_port, &agent.server_port) {
        (Some(p), _) if p != 0 => (p, 0),
        (_, Some(p)) if p.value != 0 => (p.value, p.line),
        _ => (0, 0),
    };
    let socket_path = pick(&o.socket_path, &agent.socket_path, DEFAULT_SOCKET_PATH);
    let trust_domain = match (&o.trust_domain, nonempty(&agent.trust_domain)) {
        (Some(t), _) if !t.is_empty() => Spanned {
            line: 0,
            column: 0,
            value: t.clone(),
        },
        (_, Some(t)) => t.clone(),
        _ => Spanned::default(),
    };
    let trust_bundle_path = pick(&o.trust_bundle, &agent.trust_bundle_path, "");
    let trust_bundle_url = pick(&o.trust_bundle_url, &agent.trust_bundle_url, "");
    let trust_bundle_format = pick(&o.trust_bundle_format, &agent.trust_bundle_format, "pem");
    let allow_unauthenticated_verifiers =
        o.allow_unauthenticated_verifiers == Some(true) || agent.allow_unauthenticated_verifiers;
    let insecure_bootstrap = o.insecure_bootstrap == Some(true) || agent.insecure_bootstrap;
    let retry_bootstrap = o.retry_bootstrap.or(agent.retry_bootstrap);
    let rebootstrap_mode = pick(&o.rebootstrap_mode, &agent.rebootstrap_mode, "");
    let rebootstrap_delay = match (&o.rebootstrap_delay, nonempty(&agent.rebootstrap_delay)) {
        (Some(d), _) if !d.is_empty() => d.clone(),
        (_, Some(d)) => d.value.clone(),
        _ => String::new(),
    };
    let exp = &agent.experimental;

    feature_flags(&exp.feature_flags)?;

    // validateConfig / agentConfig.validate.
    let Some(plugins_node) = raw.plugins else {
        return Err(ConfigError::missing(
            "plugins",
            "plugins section must be configured",
        ));
    };
    if !join_token.is_empty() && !join_token_file.is_empty() {
        return Err(invalid(
            "join_token",
            "only one of join_token or join_token_file can be specified, not both",
        ));
    }
    if server_address.is_empty() {
        return Err(ConfigError::missing(
            "server_address",
            "server_address must be configured",
        ));
    }
    if server_port == 0 {
        return Err(ConfigError::missing(
            "server_port",
            "server_port must be configured",
        ));
    }
    if trust_domain.value.is_empty() {
        return Err(ConfigError::missing(
            "trust_domain",
            "trust_domain must be configured",
        ));
    }
    if insecure_bootstrap {
        match (!trust_bundle_url.is_empty(), !trust_bundle_path.is_empty()) {
            (true, true) => {
                return Err(invalid(
                    "insecure_bootstrap",
                    "only one of insecure_bootstrap, trust_bundle_url, or trust_bundle_path can be specified, not the three options",
                ));
            }
            (true, false) => {
                return Err(invalid(
                    "insecure_bootstrap",
                    "only one of insecure_bootstrap or trust_bundle_url can be specified, not both",
                ));
            }
            (false, true) => {
                return Err(invalid(
                    "insecure_bootstrap",
                    "only one of insecure_bootstrap or trust_bundle_path can be specified, not both",
                ));
            }
            (false, false) => {}
        }
    } else if trust_bundle_path.is_empty() && trust_bundle_url.is_empty() {
        return Err(ConfigError::missing(
            "trust_bundle_path",
            "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set",
        ));
    }
    if !trust_bundle_url.is_empty() && !trust_bundle_path.is_empty() {
        return Err(invalid(
            "trust_bundle_url",
            "only one of trust_bundle_url or trust_bundle_path can be specified, not both",
        ));
    }
    let trust_bundle_format = match trust_bundle_format.as_str() {
        "pem" => TrustBundleFormat::Pem,
        "spiffe" => TrustBundleFormat::Spiffe,
        _ => {
            return Err(invalid(
                "trust_bundle_format",
                "invalid value for trust_bundle_format, expected \"pem\" or \"spiffe\"",
            ));
        }
    };
    let unix_socket = &agent.trust_bundle_unix_socket;
    if !unix_socket.is_empty() && trust_bundle_url.is_empty() {
        return Err(invalid(
            "trust_bundle_unix_socket",
            "if trust_bundle_unix_socket is specified, so must be trust_bundle_url",
        ));
    }
    if !trust_bundle_url.is_empty() {
        let (scheme, keys) = url_parts(&trust_bundle_url).map_err(|e| {
            invalid(
                "trust_bundle_url",
                format!("unable to parse trust bundle URL: {e}"),
            )
        })?;
        if !unix_socket.is_empty() {
            if scheme != "http" {
                return Err(invalid(
                    "trust_bundle_url",
                    "trust bundle URL must start with http:// when used with trust bundle unix socket",
                ));
            }
            for key in &keys {
                if key.starts_with("spiffe-") {
                    return Err(invalid(
                        "trust_bundle_url",
                        "trust_bundle_url query params can not start with spiffe-",
                    ));
                }
                if key.starts_with("spire-") {
                    return Err(invalid(
                        "trust_bundle_url",
                        "trust_bundle_url query params can not start with spire-",
                    ));
                }
            }
        } else if scheme != "https" {
            return Err(invalid(
                "trust_bundle_url",
                "trust bundle URL must start with https://",
            ));
        }
    }
    if !exp.named_pipe_name.is_empty() {
        return Err(invalid(
            "named_pipe_name",
            "invalid configuration: named_pipe_name is not supported in this platform; please use socket_path instead",
        ));
    }
    if !exp.admin_named_pipe_name.is_empty() {
        return Err(invalid(
            "admin_named_pipe_name",
            "invalid configuration: admin_named_pipe_name is not supported in this platform; please use admin_socket_path instead",
        ));
    }

    // NewAgentConfig.
    let rebootstrap_mode = match rebootstrap_mode.as_str() {
        "" | "never" => RebootstrapMode::Never,
        "auto" => RebootstrapMode::Auto,
        "always" => RebootstrapMode::Always,
        other => {
            return Err(invalid(
                "rebootstrap_mode",
                format!("unknown rebootstrap mode specified: {other}"),
            ));
        }
    };
    if rebootstrap_mode != RebootstrapMode::Never && insecure_bootstrap {
        return Err(invalid(
            "rebootstrap_mode",
            "insecure_bootstrap option can not be used with rebootstrapping",
        ));
    }
    if rebootstrap_mode != RebootstrapMode::Never && retry_bootstrap.is_some() {
        return Err(invalid(
            "retry_bootstrap",
            "you can not set retry_bootstrap when using reboostrap_mode",
        ));
    }
    let delay_text = if rebootstrap_delay.is_empty() {
        DEFAULT_REBOOTSTRAP_DELAY.to_owned()
    } else {
        rebootstrap_delay
    };
    let rebootstrap_delay = parse_go_duration(&delay_text).map_err(|e| {
        ConfigError::invalid(
            "rebootstrap_delay",
            agent
                .rebootstrap_delay
                .as_ref()
                .map(|s| s.line)
                .unwrap_or(0),
            format!("error parsing rebootstrap delay duration: {e}"),
        )
    })?;
    let sync_interval = match nonempty(&exp.sync_interval) {
        Some(v) => parse_go_duration(&v.value).map_err(|e| {
            ConfigError::invalid(
                "sync_interval",
                v.line,
                format!("could not parse synchronization interval: {e}"),
            )
        })?,
        None => DEFAULT_SYNC_INTERVAL,
    };
    let server_port = u16::try_from(server_port).map_err(|_| {
        ConfigError::invalid(
            "server_port",
            server_port_line,
            format!("server_port {server_port} is not a valid port"),
        )
    })?;

    let log = log_config(&log_level, &log_format, &log_file, log_source_location)?;

    if retry_bootstrap.is_some() {
        warn(
            &mut warnings,
            "The 'retry_bootstrap' configuration is deprecated. It will be removed in SPIRE 1.14. Please test without the flag before upgrading.",
        );
    }
    if exp.use_sync_authorized_entries.is_some() {
        warn(
            &mut warnings,
            "The 'use_sync_authorized_entries' configuration is deprecated. The option to disable it will be removed in SPIRE 1.13.",
        );
    }
    if agent.x509_svid_cache_max_size < 0 {
        return Err(invalid(
            "x509_svid_cache_max_size",
            "x509_svid_cache_max_size should not be negative",
        ));
    }
    if agent.jwt_svid_cache_max_size < 0 {
        return Err(invalid(
            "jwt_svid_cache_max_size",
            "jwt_svid_cache_max_size should not be negative",
        ));
    }
    let cache_size = |v: i64| match usize::try_from(v) {
        Ok(0) | Err(_) => DEFAULT_SVID_CACHE_MAX_SIZE,
        Ok(n) => n,
    };

    let td = crate::ids::parse_trust_domain(&trust_domain.value).map_err(|e| {
        ConfigError::invalid(
            "trust_domain",
            trust_domain.line,
            format!(
                "could not parse trust_domain {}: {e}",
                go_quote(&trust_domain.value)
            ),
        )
    })?;
    if td.name().len() > 255 {
        warn(
            &mut warnings,
            "Configured trust domain name should be less than 255 characters to be SPIFFE compliant; a longer trust domain name may impact interoperability",
        );
    }

    let admin_socket_path = if agent.admin_socket_path.is_empty() {
        None
    } else {
        let socket_abs = crate::file::absolute(Path::new(&socket_path));
        let admin_abs = crate::file::absolute(Path::new(&agent.admin_socket_path));
        let socket_dir = socket_abs.parent().unwrap_or(Path::new("/"));
        let prefix = format!("{}/", socket_dir.display());
        if admin_abs.to_string_lossy().starts_with(&prefix) {
            return Err(invalid(
                "admin_socket_path",
                "admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket",
            ));
        }
        Some(admin_abs)
    };

    let join_token = if !join_token_file.is_empty() {
        let path = Path::new(&join_token_file);
        let bytes = std::fs::read(path).map_err(|e| {
            invalid(
                "join_token_file",
                format!(
                    "unable to read join token file {}: {}",
                    go_quote(&join_token_file),
                    crate::file::go_io_message("open", path, &e)
                ),
            )
        })?;
        let token = String::from_utf8_lossy(&bytes).trim().to_owned();
        if token.is_empty() {
            return Err(invalid("join_token_file", "join token file is empty"));
        }
        Some(token)
    } else {
        (!join_token.is_empty()).then_some(join_token)
    };

    let or = |s: &Option<String>, d: &str| s.clone().unwrap_or_else(|| d.to_owned());
    let sds = SdsConfig {
        default_svid_name: or(&agent.sds.default_svid_name, "default"),
        default_bundle_name: or(&agent.sds.default_bundle_name, "ROOTCA"),
        default_all_bundles_name: or(&agent.sds.default_all_bundles_name, "ALL"),
        disable_spiffe_cert_validation: agent.sds.disable_spiffe_cert_validation,
    };
    if sds.default_all_bundles_name == sds.default_bundle_name {
        warn(
            &mut warnings,
            "The \"default_bundle_name\" and \"default_all_bundles_name\" configurables have the same value. \"default_all_bundles_name\" will be ignored. Please configure distinct values or use the defaults. This will be a configuration error in a future release.",
        );
    }

    let trust_bundle = if insecure_bootstrap {
        TrustBundleSource::InsecureBootstrap
    } else if !trust_bundle_url.is_empty() {
        TrustBundleSource::Url {
            url: trust_bundle_url,
            unix_socket: (!unix_socket.is_empty()).then(|| PathBuf::from(unix_socket)),
        }
    } else {
        TrustBundleSource::Path(PathBuf::from(trust_bundle_path))
    };

    let workload_x509_svid_key_type = match nonempty(&agent.workload_x509_svid_key_type) {
        Some(v) => match v.value.to_lowercase().as_str() {
            "rsa-2048" => KeyType::Rsa2048,
            "ec-p256" => KeyType::EcP256,
            _ => {
                return Err(ConfigError::invalid(
                    "workload_x509_svid_key_type",
                    v.line,
                    format!(
                        "key type {} is unknown; must be one of [rsa-2048, ec-p256]",
                        go_quote(&v.value)
                    ),
                ));
            }
        },
        None => KeyType::EcP256,
    };

    let plugins = plugins_from_node(&plugins_node)?;

    if !allow_unknown && !unknown.is_empty() {
        return Err(ConfigError::UnknownKeys { keys: unknown });
    }
    if allow_unknown {
        ignored.extend(unknown);
    }

    let mut authorized_delegates = Vec::with_capacity(agent.authorized_delegates.len());
    for d in &agent.authorized_delegates {
        let id = crate::ids::parse_spiffe_id(&d.value).and_then(|id| {
            if id.is_member_of(&td) {
                Ok(id)
            } else {
                Err(format!(
                    "SPIFFE ID {} is not a member of trust domain {}",
                    go_quote(id.as_str()),
                    go_quote(td.name())
                ))
            }
        });
        match id {
            Ok(id) => authorized_delegates.push(id),
            Err(e) => {
                return Err(ConfigError::invalid(
                    "authorized_delegates",
                    d.line,
                    format!("error validating authorized delegate: {e}"),
                ));
            }
        }
    }

    let availability_target = match nonempty(&agent.availability_target) {
        Some(v) => {
            let t = parse_go_duration(&v.value).map_err(|e| {
                ConfigError::invalid(
                    "availability_target",
                    v.line,
                    format!("unable to parse availability_target: {e}"),
                )
            })?;
            if t < MINIMUM_AVAILABILITY_TARGET {
                return Err(ConfigError::invalid(
                    "availability_target",
                    v.line,
                    format!(
                        "availability_target must be at least {}",
                        format_go_duration(MINIMUM_AVAILABILITY_TARGET)
                    ),
                ));
            }
            Some(t)
        }
        None => None,
    };

    if exp.is_set() {
        warn(
            &mut warnings,
            "Experimental features have been enabled. Please see doc/upgrading.md for upgrade and compatibility considerations for experimental features.",
        );
    }
    for f in &exp.feature_flags {
        warnings.push(ConfigWarning {
            message: format!("Developer feature flag {} has been enabled", go_quote(f)),
        });
    }

    Ok(AgentConfig {
        data_dir: PathBuf::from(data_dir),
        socket_path: PathBuf::from(socket_path),
        admin_socket_path,
        trust_domain: td,
        server_address,
        server_port,
        trust_bundle,
        trust_bundle_format,
        join_token,
        retry_bootstrap: retry_bootstrap.unwrap_or(true),
        rebootstrap_mode,
        rebootstrap_delay,
        log,
        sds,
        workload_x509_svid_key_type,
        allow_unauthenticated_verifiers,
        allowed_foreign_jwt_claims: agent.allowed_foreign_jwt_claims.clone(),
        authorized_delegates,
        availability_target,
        x509_svid_cache_max_size: cache_size(agent.x509_svid_cache_max_size),
        jwt_svid_cache_max_size: cache_size(agent.jwt_svid_cache_max_size),
        profiling: ProfilingConfig {
            enabled: agent.profiling_enabled,
            port: agent.profiling_port,
            freq: agent.profiling_freq,
            names: agent.profiling_names.clone(),
        },
        experimental: AgentExperimental {
            sync_interval,
            use_sync_authorized_entries: exp.use_sync_authorized_entries.unwrap_or(true),
            require_pq_kem: exp.require_pq_kem,
            feature_flags: exp.feature_flags.clone(),
        },
        plugins,
        telemetry: raw.telemetry.into_config(),
        health_checks: raw.health_checks.into_config(),
        warnings,
        ignored_unknown_keys: ignored,
    })
}
