//! Logs in logrus' formats, as SPIRE writes them: text lines
//! `time="2024-01-01T00:00:00Z" level=info msg="Starting agent" data_dir=. version=1.13.3`
//! (fields sorted by key, values quoted only when needed) or JSON objects with `level`,
//! `msg`, `time` and the fields.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// logrus' text formatter.
    #[default]
    Text,
    /// logrus' JSON formatter.
    Json,
}

/// A logrus-compatible tracing layer writing to a shared sink.
pub struct LogrusLayer {
    format: LogFormat,
    sink: Arc<Mutex<Box<dyn std::io::Write + Send>>>,
}

impl std::fmt::Debug for LogrusLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogrusLayer")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl LogrusLayer {
    /// A layer writing `format` lines to `sink`.
    pub fn new(format: LogFormat, sink: Box<dyn std::io::Write + Send>) -> Self {
        Self {
            format,
            sink: Arc::new(Mutex::new(sink)),
        }
    }
}

#[derive(Default)]
struct Fields {
    msg: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.msg = v;
        } else {
            self.fields.insert(field.name().to_string(), v);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.fields
                .insert(field.name().to_string(), value.to_string());
        }
    }
}

/// logrus' level names.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Whether logrus' text formatter quotes `s`.
fn needs_quoting(s: &str) -> bool {
    !s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+'))
}

fn text_value(out: &mut String, s: &str) {
    if needs_quoting(s) {
        let _ = write!(out, "{s:?}");
    } else {
        out.push_str(s);
    }
}

/// Formats one text line (without the newline).
pub fn format_text(
    time: &str,
    level: &str,
    msg: &str,
    fields: &BTreeMap<String, String>,
) -> String {
    let mut out = String::with_capacity(64 + msg.len());
    out.push_str("time=");
    text_value(&mut out, time);
    out.push_str(" level=");
    out.push_str(level);
    out.push_str(" msg=");
    text_value(&mut out, msg);
    for (k, v) in fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        text_value(&mut out, v);
    }
    out
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_default()
}

impl<S: Subscriber> Layer<S> for LogrusLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = level_name(event.metadata().level());
        let time = now_rfc3339();
        let line = match self.format {
            LogFormat::Text => format_text(&time, level, &f.msg, &f.fields),
            LogFormat::Json => {
                let mut m = serde_json::Map::new();
                for (k, v) in f.fields {
                    m.insert(k, serde_json::Value::String(v));
                }
                m.insert("level".into(), level.into());
                m.insert("msg".into(), f.msg.into());
                m.insert("time".into(), time.into());
                serde_json::Value::Object(m).to_string()
            }
        };
        let mut sink = self.sink.lock();
        let _ = writeln!(sink, "{line}");
        let _ = sink.flush();
    }
}

/// Maps a logrus level to a tracing level filter.
pub fn level_filter(level: &str) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match level.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "warn" | "warning" => LevelFilter::WARN,
        "error" | "fatal" | "panic" => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    }
}

/// Installs the global subscriber: our crates at `level`, dependencies at warn at most.
pub fn init(
    format: LogFormat,
    level: tracing::level_filters::LevelFilter,
    sink: Box<dyn std::io::Write + Send>,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let deps = level.min(tracing::level_filters::LevelFilter::WARN);
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target("spire_agent", level)
        .with_target("spire_plugins", level)
        .with_target("spire_plugin", level)
        .with_default(deps);
    let _ = tracing_subscriber::registry()
        .with(LogrusLayer::new(format, sink).with_filter(targets))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_matches_logrus() {
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
        let line = format_text("t", "debug", "Configured", &BTreeMap::new());
        assert_eq!(line, "time=t level=debug msg=Configured");
        assert_eq!(level_name(&Level::WARN), "warning");
        assert_eq!(
            level_filter("DEBUG"),
            tracing::level_filters::LevelFilter::DEBUG
        );
        assert_eq!(
            level_filter("warning"),
            tracing::level_filters::LevelFilter::WARN
        );
    }
}
