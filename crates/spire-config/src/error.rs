//! [`ConfigError`]: every way loading a configuration can fail, displayed with SPIRE's
//! message where SPIRE has one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::hcl::strconv::go_quote;

/// A key that SPIRE does not know, where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// SPIRE's name for the section (`top-level`, `server`, `ca_subject`, `ratelimit`,
    /// `bundle endpoint`, `bundle endpoint ACME`, `Prometheus`, `DogStatsd`, `Statsd`, `M3`,
    /// `InMem`, `health check`, `agent`, ...), as SPIRE logs it in its `section` field.
    pub section: String,
    /// The key as written.
    pub key: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown configuration key {} in section {}",
            go_quote(&self.key),
            go_quote(&self.section)
        )?;
        if self.line > 0 {
            write!(f, " at line {}", self.line)?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
///
/// `Display` prints SPIRE's own message for the same failure (what `spire-server run`
/// prints, without `validate`'s "configuration file is invalid: " prefix). Unknown keys,
/// which SPIRE only logs one section at a time, are listed with their lines after SPIRE's
/// "unknown configuration detected".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file does not exist (`path` is absolute, as SPIRE prints it).
    #[error("could not find config file {}: please use the -config flag", path.display())]
    NotFound {
        /// Absolute path of the missing file.
        path: PathBuf,
    },
    /// The configuration (or a `plugin_data_file`) could not be read.
    #[error("unable to read configuration at {}: {message}", quote_path(path))]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The operating system's reason, worded like Go's.
        message: String,
    },
    /// The text is not valid HCL or JSON.
    #[error("{}", decode_message(path.as_deref(), message))]
    Parse {
        /// The file, when loading from a file.
        path: Option<PathBuf>,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// hcl's message, including its `At L:C:` prefix for HCL.
        message: String,
    },
    /// Keys SPIRE does not know, in sections where SPIRE rejects them.
    #[error("unknown configuration detected: {}", join_keys(keys))]
    UnknownKeys {
        /// Every unknown key, in SPIRE's section order and then by key.
        keys: Vec<UnknownKey>,
    },
    /// A required key (or section) is missing.
    #[error("{message}")]
    MissingKey {
        /// The key, such as `trust_domain` or `plugins`.
        key: String,
        /// SPIRE's message, such as "trust_domain must be configured".
        message: String,
    },
    /// A value has a type the key cannot take (found while decoding).
    #[error("{}", decode_message(path.as_deref(), message))]
    WrongType {
        /// The file, when loading from a file.
        path: Option<PathBuf>,
        /// The key's decoder path, such as `server.bind_port` (empty when hcl did not say).
        key: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// hcl's message, such as `At 4:23: root.server.audit_log_enabled: unknown type
        /// *ast.LiteralType`.
        message: String,
    },
    /// A value was read but is not acceptable (bad duration, trust domain, key type, URL,
    /// conflicting options, ...).
    #[error("{message}")]
    InvalidValue {
        /// The key (or keys) concerned, such as `default_x509_svid_ttl`.
        key: String,
        /// 1-based line of the value (0 when unknown, for example for command-line values).
        line: usize,
        /// SPIRE's message.
        message: String,
    },
}

impl ConfigError {
    /// The line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        let line = match self {
            ConfigError::Parse { line, .. }
            | ConfigError::WrongType { line, .. }
            | ConfigError::InvalidValue { line, .. } => *line,
            ConfigError::UnknownKeys { keys } => keys.first().map(|k| k.line).unwrap_or(0),
            _ => 0,
        };
        (line > 0).then_some(line)
    }

    /// The key the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::MissingKey { key, .. } | ConfigError::InvalidValue { key, .. } => {
                Some(key)
            }
            ConfigError::WrongType { key, .. } if !key.is_empty() => Some(key),
            ConfigError::UnknownKeys { keys } => keys.first().map(|k| k.key.as_str()),
            _ => None,
        }
    }

    pub(crate) fn missing(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::MissingKey {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(key: &str, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            line,
            message: message.into(),
        }
    }

    /// Attaches the file path to parse and decode errors.
    pub(crate) fn with_path(self, file: &Path) -> ConfigError {
        match self {
            ConfigError::Parse {
                line,
                column,
                message,
                ..
            } => ConfigError::Parse {
                path: Some(file.to_owned()),
                line,
                column,
                message,
            },
            ConfigError::WrongType {
                key,
                line,
                column,
                message,
                ..
            } => ConfigError::WrongType {
                path: Some(file.to_owned()),
                key,
                line,
                column,
                message,
            },
            other => other,
        }
    }
}

fn quote_path(path: &Path) -> String {
    go_quote(&path.to_string_lossy())
}

fn decode_message(path: Option<&Path>, message: &str) -> String {
    match path {
        Some(p) => format!(
            "unable to decode configuration at {}: {message}",
            quote_path(p)
        ),
        None => format!("unable to decode configuration: {message}"),
    }
}

fn join_keys(keys: &[UnknownKey]) -> String {
    keys.iter()
        .map(UnknownKey::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
