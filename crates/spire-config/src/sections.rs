//! Parsing a whole configuration file into the raw (SPIRE-shaped) structs, and sorting the
//! keys no field took into the sections SPIRE rejects and those it silently ignores.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::decode::{DecodeCtx, Parent, UnusedKey, decode_nodes};
use crate::env::EnvLookup;
use crate::error::{ConfigError, UnknownKey};
use crate::hcl::ast::Node;
use crate::hcl::{self, Format};

/// A decoded file: the raw struct and the unknown keys, split by whether SPIRE rejects them.
#[derive(Debug)]
pub(crate) struct Parsed<T> {
    pub(crate) raw: T,
    pub(crate) unknown: Vec<UnknownKey>,
    pub(crate) ignored: Vec<UnknownKey>,
}

/// SPIRE's `ParseFile` after reading: parse, then decode into `T`.
pub(crate) fn parse_into<T: DeserializeOwned>(
    text: &str,
    format: Format,
    path: Option<&Path>,
) -> Result<Parsed<T>, ConfigError> {
    let with_path = |e: ConfigError| match path {
        Some(p) => e.with_path(p),
        None => e,
    };
    let doc = hcl::parse(text, format).map_err(|e| with_path(crate::syntax_error(e)))?;
    let ctx = DecodeCtx {
        json: doc.json,
        ..DecodeCtx::default()
    };
    let raw: T = decode_nodes(
        "root",
        vec![Node::ObjectList(doc.root)],
        Parent::Other,
        &ctx,
    )
    .map_err(|e| crate::decode_error(e, path))?;
    let (unknown, ignored) = classify(ctx.unused.into_inner());
    Ok(Parsed {
        raw,
        unknown,
        ignored,
    })
}

/// SPIRE's section name for a decoder path, whether SPIRE checks it, and its place in
/// SPIRE's reporting order.
fn section(path: &str) -> (String, bool, usize) {
    let rest = path.strip_prefix("root").unwrap_or(path);
    // Drop list indexes: `.telemetry.DogStatsd[1]` -> `.telemetry.DogStatsd`.
    let mut norm = String::with_capacity(rest.len());
    let mut in_index = false;
    for c in rest.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => norm.push(c),
            _ => {}
        }
    }
    let checked = |name: &str, order| (name.to_owned(), true, order);
    match norm.as_str() {
        "" => checked("top-level", 0),
        ".server" => checked("server", 1),
        ".agent" => checked("agent", 1),
        ".server.ca_subject" => checked("ca_subject", 2),
        ".server.ratelimit" => checked("ratelimit", 3),
        ".server.federation.bundle_endpoint" => checked("bundle endpoint", 4),
        ".server.federation.bundle_endpoint.acme" => checked("bundle endpoint ACME", 5),
        ".telemetry.Prometheus" => checked("Prometheus", 6),
        ".telemetry.DogStatsd" => checked("DogStatsd", 7),
        ".telemetry.Statsd" => checked("Statsd", 8),
        ".telemetry.M3" => checked("M3", 9),
        ".telemetry.InMem" => checked("InMem", 10),
        ".telemetry.OpenTelemetry" => checked("OpenTelemetry", 10),
        ".health_checks" => checked("health check", 11),
        other => {
            let name = other.trim_start_matches('.');
            let name = match name.strip_prefix("server.federation.federates_with.") {
                Some(td) => format!("federates_with {}", crate::go_quote(td)),
                None => name.rsplit('.').next().unwrap_or(name).to_owned(),
            };
            (name, false, 12)
        }
    }
}

fn classify(unused: Vec<UnusedKey>) -> (Vec<UnknownKey>, Vec<UnknownKey>) {
    let mut checked = Vec::new();
    let mut ignored = Vec::new();
    for u in unused {
        let (name, is_checked, order) = section(&u.path);
        let key = UnknownKey {
            section: name,
            key: u.key,
            line: u.pos.line,
            column: u.pos.column,
        };
        if is_checked {
            checked.push((order, key));
        } else {
            ignored.push((order, key));
        }
    }
    let sort = |v: &mut Vec<(usize, UnknownKey)>| {
        v.sort_by(|(oa, a), (ob, b)| {
            (oa, &a.section, &a.key, a.line).cmp(&(ob, &b.section, &b.key, b.line))
        });
    };
    sort(&mut checked);
    sort(&mut ignored);
    (
        checked.into_iter().map(|(_, k)| k).collect(),
        ignored.into_iter().map(|(_, k)| k).collect(),
    )
}

/// A parsed configuration file (`server.conf` as [`crate::ServerFile`], `agent.conf` as
/// [`crate::AgentFile`]) before flags are merged and values validated (SPIRE's
/// `ParseFile`).
#[derive(Debug)]
pub struct ConfigFile<T> {
    pub(crate) parsed: Parsed<T>,
}

impl<T: DeserializeOwned> ConfigFile<T> {
    /// Parses configuration text.
    pub fn parse(text: &str, format: Format) -> Result<Self, ConfigError> {
        Ok(Self {
            parsed: parse_into(text, format, None)?,
        })
    }

    /// Reads and parses a file (format detected as SPIRE does), expanding `$VAR`s first
    /// when `expand_env` is given (`-expandEnv`).
    pub fn read(path: &Path, expand_env: Option<&dyn EnvLookup>) -> Result<Self, ConfigError> {
        let text = crate::file::read_config_file(path, expand_env)?;
        Ok(Self {
            parsed: parse_into(&text, Format::Auto, Some(path))?,
        })
    }

    /// Parses text as `run` does with `-expandEnv` (`expand_env`) or without.
    pub(crate) fn parse_expanded(
        text: &str,
        format: Format,
        expand_env: Option<&dyn EnvLookup>,
    ) -> Result<Self, ConfigError> {
        match expand_env {
            Some(env) => Self::parse(&crate::env::expand_env(text, env), format),
            None => Self::parse(text, format),
        }
    }

    /// Unknown keys in the sections where SPIRE rejects them.
    pub fn unknown_keys(&self) -> &[UnknownKey] {
        &self.parsed.unknown
    }

    /// Unknown keys in sections SPIRE does not check.
    pub fn ignored_unknown_keys(&self) -> &[UnknownKey] {
        &self.parsed.ignored
    }

    /// SPIRE's `checkForUnknownConfig`.
    pub fn check_unknown_keys(&self) -> Result<(), ConfigError> {
        if self.parsed.unknown.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::UnknownKeys {
                keys: self.parsed.unknown.clone(),
            })
        }
    }
}

/// A flag's value when given and not empty, else the file's when not empty, else `default`.
pub(crate) fn pick(flag: &Option<String>, file: &str, default: &str) -> String {
    match flag {
        Some(f) if !f.is_empty() => f.clone(),
        _ if !file.is_empty() => file.to_owned(),
        _ => default.to_owned(),
    }
}
