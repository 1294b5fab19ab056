//! Logs as SPIRE writes them: logrus's text format
//! (`time="2026-01-01T00:00:00Z" level=info msg="X509 CA activated" key=value ...`, fields
//! sorted by key, values quoted with Go's `%q` when they need it) or its JSON format, to
//! stdout (as SPIRE) or a file, with a level that the Logger API can change at run time.
//!
//! Events use `tracing`; the `message` becomes `msg` and every other field is printed as a
//! logrus field (for example `subsystem_name`, `spiffe_id`, `error`). Fields whose names
//! are only known at run time (an external plugin's log lines) travel in one field named
//! [`EXTRA_FIELDS`], built with [`extra_fields`], and are printed as fields of their own.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The level name is not one of SPIRE's.
    #[error("unknown log level {0:?}")]
    UnknownLevel(String),
    /// The format is neither `text` nor `json`.
    #[error("unknown log format {0:?}")]
    UnknownFormat(String),
    /// The log file cannot be opened.
    #[error("could not open log file {path:?}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A global subscriber was already installed.
    #[error("logging already initialised")]
    AlreadyInitialised,
}

/// SPIRE's log levels, most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `panic`.
    Panic,
    /// `fatal`.
    Fatal,
    /// `error`.
    Error,
    /// `warning` (configured as `warn`).
    Warn,
    /// `info`.
    Info,
    /// `debug`.
    Debug,
    /// `trace`.
    Trace,
}

impl LogLevel {
    /// Parses a level name as SPIRE's configuration and Logger API accept them
    /// (case-insensitive; `warning` and `warn` both work).
    pub fn parse(s: &str) -> Result<Self, LogError> {
        match s.to_ascii_lowercase().as_str() {
            "panic" => Ok(LogLevel::Panic),
            "fatal" => Ok(LogLevel::Fatal),
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(LogError::UnknownLevel(s.to_string())),
        }
    }

    /// The name logrus prints.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Panic => "panic",
            LogLevel::Fatal => "fatal",
            LogLevel::Error => "error",
            LogLevel::Warn => "warning",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Panic | LogLevel::Fatal | LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

/// logrus's name of a level (`warning`, not `warn`).
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// logrus's text formatter.
    Text,
    /// logrus's JSON formatter.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json` (empty means text), case-insensitive as SPIRE does.
    pub fn parse(s: &str) -> Result<Self, LogError> {
        match s.to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(LogError::UnknownFormat(s.to_string())),
        }
    }
}

/// Changes the level of a running logger; cheap to clone.
#[derive(Clone)]
pub struct LogHandle {
    reload: Option<reload::Handle<LevelFilter, tracing_subscriber::Registry>>,
    state: Arc<Mutex<(LogLevel, LogLevel)>>,
}

impl fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHandle")
            .field("levels", &*self.state.lock())
            .finish()
    }
}

impl LogHandle {
    /// A handle not attached to any subscriber (tests).
    pub fn detached(level: LogLevel) -> Self {
        Self {
            reload: None,
            state: Arc::new(Mutex::new((level, level))),
        }
    }

    /// The current level.
    pub fn level(&self) -> LogLevel {
        self.state.lock().0
    }

    /// The level set at start-up.
    pub fn launch_level(&self) -> LogLevel {
        self.state.lock().1
    }

    /// Changes the level.
    pub fn set_level(&self, level: LogLevel) {
        if let Some(h) = &self.reload {
            let _ = h.modify(|f| *f = level.filter());
        }
        self.state.lock().0 = level;
    }

    /// Back to the launch level.
    pub fn reset(&self) {
        let launch = self.launch_level();
        self.set_level(launch);
    }
}

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Starting level.
    pub level: LogLevel,
    /// Format.
    pub format: LogFormat,
    /// A file to append to instead of stdout.
    pub file: Option<PathBuf>,
}

/// Installs the global logger.
pub fn init(config: &LogConfig) -> Result<LogHandle, LogError> {
    let writer: Box<dyn io::Write + Send> = match &config.file {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogError::File {
                    path: path.clone(),
                    source,
                })?,
        ),
        // SPIRE's logger writes to stdout unless a log file is set.
        None => Box::new(io::stdout()),
    };
    let (filter, handle) = reload::Layer::new(config.level.filter());
    // Dependencies (hyper, h2, rustls, sqlx, ...) speak at warn and above only: their debug
    // chatter is not what SPIRE's debug level shows.
    let ours = tracing_subscriber::filter::filter_fn(|m| {
        *m.level() <= tracing::Level::WARN
            || m.target().starts_with("spire")
            || m.target().starts_with("spiffe")
    });
    let layer = LogrusLayer::new(config.format, writer);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::Layer::with_filter(layer, ours))
        .try_init()
        .map_err(|_| LogError::AlreadyInitialised)?;
    Ok(LogHandle {
        reload: Some(handle),
        state: Arc::new(Mutex::new((config.level, config.level))),
    })
}

/// The tracing layer writing logrus lines; [`init`] installs it for the server, and the
/// agent puts it under its own filter and output.
pub struct LogrusLayer {
    format: LogFormat,
    out: Mutex<Box<dyn io::Write + Send>>,
}

impl fmt::Debug for LogrusLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogrusLayer")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl LogrusLayer {
    /// A layer writing `format` lines to `out`, one write and flush per event.
    pub fn new(format: LogFormat, out: Box<dyn io::Write + Send>) -> Self {
        Self {
            format,
            out: Mutex::new(out),
        }
    }
}

/// The field that carries run-time named fields (see [`extra_fields`]).
pub const EXTRA_FIELDS: &str = "extra_fields";

/// Encodes run-time named fields for the [`EXTRA_FIELDS`] field of an event:
/// `tracing::info!(extra_fields = %spire_log::extra_fields(&pairs), "msg")`. Each pair is
/// printed as a field of its own; a name that is also a static field of the event loses.
pub fn extra_fields<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&k.as_ref().replace(['\x1e', '\x1f'], " "));
        out.push('\x1f');
        out.push_str(&v.as_ref().replace(['\x1e', '\x1f'], " "));
        out.push('\x1e');
    }
    out
}

#[derive(Default)]
struct Fields {
    msg: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == EXTRA_FIELDS {
            self.record_extra(value);
        } else if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.fields
                .insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        if field.name() == EXTRA_FIELDS {
            // `%value` (Display) arrives here.
            self.record_extra(&s);
        } else if field.name() == "message" {
            self.msg = s;
        } else {
            self.fields.insert(field.name().to_string(), s);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.fields
            .insert(field.name().to_string(), value.to_string());
    }
}

impl Fields {
    fn record_extra(&mut self, encoded: &str) {
        for record in encoded.split('\x1e').filter(|r| !r.is_empty()) {
            if let Some((k, v)) = record.split_once('\x1f') {
                self.fields
                    .entry(k.to_owned())
                    .or_insert_with(|| v.to_owned());
            }
        }
    }
}

fn needs_quoting(s: &str) -> bool {
    s.chars().any(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+'))
    })
}

fn push_value(out: &mut String, v: &str) {
    if needs_quoting(v) {
        out.push_str(&spire_gocompat::strconv::quote(v));
    } else {
        out.push_str(v);
    }
}

/// Formats one line of logrus text output (without the newline).
pub fn format_text(
    time: &str,
    level: &str,
    msg: &str,
    fields: &BTreeMap<String, String>,
) -> String {
    let mut out = String::with_capacity(64 + msg.len());
    out.push_str("time=");
    push_value(&mut out, time);
    out.push_str(" level=");
    out.push_str(level);
    out.push_str(" msg=");
    push_value(&mut out, msg);
    for (k, v) in fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        push_value(&mut out, v);
    }
    out
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_default()
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for LogrusLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let time = now_rfc3339();
        let level = level_name(event.metadata().level());
        let line = match self.format {
            LogFormat::Text => format_text(&time, level, &f.msg, &f.fields),
            LogFormat::Json => {
                let mut map = serde_json::Map::new();
                for (k, v) in f.fields {
                    map.insert(k, serde_json::Value::String(v));
                }
                map.insert("level".into(), level.into());
                map.insert("msg".into(), f.msg.into());
                map.insert("time".into(), time.into());
                serde_json::Value::Object(map).to_string()
            }
        };
        let mut out = self.out.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_match_logrus() {
        let mut fields = BTreeMap::new();
        fields.insert("subsystem_name".to_string(), "ca_manager".to_string());
        fields.insert("slot".to_string(), "A".to_string());
        fields.insert(
            "expiration".to_string(),
            "2026-11-29 17:10:01 +0000 UTC".to_string(),
        );
        let line = format_text("2026-11-28T17:10:01Z", "info", "X509 CA prepared", &fields);
        assert_eq!(
            line,
            "time=\"2026-11-28T17:10:01Z\" level=info msg=\"X509 CA prepared\" \
             expiration=\"2026-11-29 17:10:01 +0000 UTC\" slot=A subsystem_name=ca_manager"
        );
        let line = format_text("t", "debug", "Configured", &BTreeMap::new());
        assert_eq!(line, "time=t level=debug msg=Configured");
        // Empty values stay bare; URIs and spaces are quoted.
        let mut f = BTreeMap::new();
        f.insert(
            "spiffe_id".to_string(),
            "spiffe://example.org/w".to_string(),
        );
        f.insert("a".to_string(), "has space".to_string());
        f.insert("empty".to_string(), String::new());
        let line = format_text(
            "2024-01-01T00:00:00Z",
            "info",
            "Node attestation was successful",
            &f,
        );
        assert_eq!(
            line,
            "time=\"2024-01-01T00:00:00Z\" level=info msg=\"Node attestation was successful\" a=\"has space\" empty= spiffe_id=\"spiffe://example.org/w\""
        );
        assert_eq!(level_name(&Level::WARN), "warning");
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn extra_fields_print_as_fields_of_their_own() {
        let buf = Buf::default();
        let layer = LogrusLayer::new(LogFormat::Json, Box::new(buf.clone()));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let extra = extra_fields(&[("pid", "42"), ("plugin_name", "spoofed"), ("a\x1fb", "c")]);
            tracing::info!(plugin_name = "mine", extra_fields = %extra, "Attested");
        });
        let text = String::from_utf8(buf.0.lock().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["msg"], "Attested");
        assert_eq!(v["pid"], "42");
        assert_eq!(v["plugin_name"], "mine");
        assert_eq!(v["a b"], "c");
        assert!(v.get(EXTRA_FIELDS).is_none());
    }

    #[test]
    fn levels() {
        assert_eq!(LogLevel::parse("WARN").unwrap().as_str(), "warning");
        assert_eq!(LogLevel::parse("Debug").unwrap(), LogLevel::Debug);
        assert!(LogLevel::parse("loud").is_err());
        let h = LogHandle::detached(LogLevel::Info);
        h.set_level(LogLevel::Debug);
        assert_eq!(h.level(), LogLevel::Debug);
        h.reset();
        assert_eq!(h.level(), LogLevel::Info);
        assert_eq!(LogFormat::parse("JSON").unwrap(), LogFormat::Json);
        assert!(LogFormat::parse("xml").is_err());
    }
}
