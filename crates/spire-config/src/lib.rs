//! Loads SPIRE 1.13's `server.conf` and `agent.conf` (HCL as SPIRE reads it with
//! hashicorp/hcl v1, or the JSON form) into validated, typed configuration, with SPIRE's
//! defaults and SPIRE's error messages, so that existing configuration files work unchanged.
//!
//! Entry points:
//! - [`load_server_config_file`] / [`load_agent_config_file`]: what `spire-server run
//!   -config FILE` / `spire-agent run` do with the file and the command-line overrides;
//! - [`load_server_config`] / [`load_agent_config`]: the same from text;
//! - [`ServerFile`] / [`AgentFile`]: the parsed file before merging and validation (SPIRE's
//!   `ParseFile`), with the unknown-key check on its own;
//! - [`LoadedPluginData::decode`]: how built-in plugins read their `plugin_data`.
//!
//! ```
//! use spire_config::{Format, ServerOverrides, load_server_config};
//! use serde::Deserialize;
//!
//! let text = r#"
//! server {
//!   trust_domain = "example.org"
//!   data_dir = "/var/lib/spire"
//!   bind_port = "8081"
//! }
//! plugins {
//!   KeyManager "disk" {
//!     plugin_data { directory = "/var/lib/spire/keys" }
//!   }
//! }
//! "#;
//! let flags = ServerOverrides { log_level: Some("debug".into()), ..Default::default() };
//! let config = load_server_config(text, Format::Auto, &flags, None)?;
//! assert_eq!(config.default_x509_svid_ttl.as_secs(), 3600);
//!
//! // A built-in plugin decodes its plugin_data with SPIRE's (hcl's) rules.
//! #[derive(Deserialize, Default)]
//! #[serde(default)]
//! struct DiskKeyManager { directory: String }
//! let plugin = config.plugins.find("KeyManager", "disk").expect("configured");
//! let data = plugin.data.load()?.expect("has plugin_data");
//! let disk: DiskKeyManager = data.decode()?;
//! assert_eq!(disk.directory, "/var/lib/spire/keys");
//! assert_eq!(data.text(), "directory = \"/var/lib/spire/keys\"");
//! # Ok::<(), spire_config::ConfigError>(())
//! ```
//!
//! Module map: [`hcl`] (parser, JSON form, printer), `decode` (hcl's decoding rules as a
//! serde `Deserializer`), [`env`] (`-expandEnv`), [`duration`] (Go durations), `server`,
//! `agent`, `plugins`, `telemetry`, `error`.

pub mod duration;
pub mod env;
pub mod hcl;

mod agent;
mod decode;
mod error;
mod file;
mod ids;
mod plugins;
mod sections;
pub use sections::ConfigFile;
mod server;
mod telemetry;

pub use agent::{
    AgentConfig, AgentExperimental, AgentFile, AgentOverrides, RebootstrapMode, SdsConfig,
    TrustBundleFormat, TrustBundleSource, WorkloadKeyType, load_agent_config,
    load_agent_config_file,
};
pub use decode::{DecodeError, Spanned};
pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use env::{EnvLookup, ProcessEnv, expand_env};
pub use error::{ConfigError, UnknownKey};
pub use file::read_config_file;
pub use hcl::Format;
pub use hcl::strconv::go_quote;
pub use plugins::{LoadedPluginData, PluginConfig, PluginData, PluginsConfig};
pub use server::{
    AcmeConfig, BundleEndpointConfig, BundleEndpointProfile, CaSubject, FederatesWithConfig,
    FederatesWithProfile, FederationConfig, LETS_ENCRYPT_DIRECTORY_URL, OpaEngineConfig,
    ProfilingConfig, RateLimitConfig, ServerConfig, ServerExperimental, ServerFile,
    ServerOverrides, ServingCertFile, load_server_config, load_server_config_file,
};
pub use telemetry::{
    HealthChecksConfig, M3Config, OpenTelemetryConfig, PrometheusConfig, StatsdConfig,
    TelemetryConfig,
};

use std::str::FromStr;

/// Logging options shared by server and agent (`log_level`, `log_format`, `log_file`,
/// `log_source_location`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `log_level` (default `INFO`).
    pub level: LogLevel,
    /// `log_format` (default: logrus' default text format).
    pub format: LogFormat,
    /// `log_file` (default: standard output).
    pub file: Option<std::path::PathBuf>,
    /// `log_source_location`.
    pub source_location: bool,
}

/// A logrus level, parsed as `logrus.ParseLevel` does (case-insensitive; `warning` is
/// `warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `panic`
    Panic,
    /// `fatal`
    Fatal,
    /// `error`
    Error,
    /// `warn` / `warning`
    Warn,
    /// `info`
    Info,
    /// `debug`
    Debug,
    /// `trace`
    Trace,
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_lowercase().as_str() {
            "panic" => LogLevel::Panic,
            "fatal" => LogLevel::Fatal,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return Err(format!("not a valid logrus Level: {}", go_quote(s))),
        })
    }
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogFormat {
    /// Unset: logrus' default text formatter.
    #[default]
    Default,
    /// `text` (RFC 3339 timestamps with nanoseconds).
    Text,
    /// `json`.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_uppercase().as_str() {
            "" => LogFormat::Default,
            "TEXT" => LogFormat::Text,
            "JSON" => LogFormat::Json,
            _ => return Err(format!("unknown logger format: {}", go_quote(s))),
        })
    }
}

/// Builds the [`LogConfig`] as SPIRE's `log.NewLogger` validates it.
pub(crate) fn log_config(
    level: &str,
    format: &str,
    file: &str,
    source_location: bool,
) -> Result<LogConfig, ConfigError> {
    let level = level.parse::<LogLevel>().map_err(|e| {
        ConfigError::invalid("log_level", 0, format!("could not start logger: {e}"))
    })?;
    let format = format.parse::<LogFormat>().map_err(|e| {
        ConfigError::invalid("log_format", 0, format!("could not start logger: {e}"))
    })?;
    Ok(LogConfig {
        level,
        format,
        file: (!file.is_empty()).then(|| std::path::PathBuf::from(file)),
        source_location,
    })
}

/// Converts a syntax error into a [`ConfigError::Parse`].
pub(crate) fn syntax_error(e: hcl::SyntaxError) -> ConfigError {
    ConfigError::Parse {
        path: None,
        line: e.pos.line,
        column: e.pos.column,
        message: e.message,
    }
}

/// Converts a decoding error into a [`ConfigError::WrongType`].
pub(crate) fn decode_error(e: DecodeError, path: Option<&std::path::Path>) -> ConfigError {
    ConfigError::WrongType {
        path: path.map(std::path::Path::to_owned),
        key: e
            .key_path()
            .map(|k| {
                k.trim_start_matches("root")
                    .trim_start_matches('.')
                    .to_owned()
            })
            .unwrap_or_default(),
        line: e.pos().map(|p| p.line).unwrap_or(0),
        column: e.pos().map(|p| p.column).unwrap_or(0),
        message: e.to_string(),
    }
}

/// A non-fatal observation SPIRE would log as a warning while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// SPIRE's log message.
    pub message: String,
}
