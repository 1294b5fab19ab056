//! A plugin's stderr, relayed into our log as SPIRE relays it: hclog JSON lines keep their
//! level, message and fields (plus `timestamp`); text lines with an hclog `[LEVEL]` prefix
//! keep that level; a Go panic is logged as errors; anything else at debug. Trace lines are
//! dropped, as SPIRE's logger has no trace level. Every line carries the plugin's
//! `plugin_name`, `plugin_type`, `external=true` and, as SPIRE names the plugin's logger,
//! `subsystem_name=<name>.<executable's base name>`; hclog's timestamp is kept in hclog's
//! own millisecond format.

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

/// A log level of a relayed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One relayed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) level: Level,
    pub(crate) message: String,
    pub(crate) fields: Vec<(String, String)>,
}

fn hclog_level(s: &str) -> Option<Level> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Some(Level::Trace),
        "debug" => Some(Level::Debug),
        "info" => Some(Level::Info),
        "warn" | "warning" => Some(Level::Warn),
        "error" => Some(Level::Error),
        _ => None,
    }
}

/// hclog's `TimeFormat` (`2006-01-02T15:04:05.000Z0700`) of an RFC 3339 timestamp: the
/// fraction cut to milliseconds, the offset without its colon.
fn hclog_time(ts: &str) -> String {
    let Some(t) = ts.find('T') else {
        return ts.to_owned();
    };
    let zone_at = ts
        .get(t..)
        .and_then(|rest| rest.find(['Z', '+', '-']))
        .map(|i| t + i);
    let Some(zone_at) = zone_at else {
        return ts.to_owned();
    };
    let (clock, zone) = ts.split_at(zone_at);
    let (secs, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let millis: String = frac.chars().chain("000".chars()).take(3).collect();
    format!("{secs}.{millis}{}", zone.replace(':', ""))
}

/// Reads one stderr line; `in_panic` carries "a Go panic started" from line to line.
pub(crate) fn parse_line(raw: &str, in_panic: &mut bool) -> Line {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(raw) {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let level = map.get("@level").map(text).and_then(|l| hclog_level(&l));
        let Some(level) = level else {
            // JSON that hclog did not write: shown as it is.
            return Line {
                level: Level::Debug,
                message: raw.to_owned(),
                fields: Vec::new(),
            };
        };
        let message = map.get("@message").map(text).unwrap_or_default();
        let mut fields: Vec<(String, String)> = map
            .iter()
            .filter(|(k, _)| !k.starts_with('@'))
            .map(|(k, v)| (k.clone(), text(v)))
            .collect();
        if let Some(ts) = map.get("@timestamp") {
            fields.push(("timestamp".into(), hclog_time(&text(ts))));
        }
        return Line {
            level,
            message,
            fields,
        };
    }
    let prefixed = [
        ("[TRACE]", Level::Trace),
        ("[DEBUG]", Level::Debug),
        ("[INFO]", Level::Info),
        ("[WARN]", Level::Warn),
        ("[ERROR]", Level::Error),
    ];
    let level = if let Some((_, l)) = prefixed.iter().find(|(p, _)| raw.starts_with(p)) {
        *l
    } else if raw.starts_with("panic: ") || raw.starts_with("fatal error: ") {
        *in_panic = true;
        Level::Error
    } else if *in_panic {
        Level::Error
    } else {
        Level::Debug
    };
    Line {
        level,
        message: raw.to_owned(),
        fields: Vec::new(),
    }
}

/// Logs one line with the plugin's fields.
pub(crate) fn emit(name: &str, plugin_type: &str, subsystem: &str, line: &Line) {
    let extra = spire_log::extra_fields(&line.fields);
    let msg = line.message.as_str();
    macro_rules! log_at {
        ($mac:ident) => {
            tracing::$mac!(
                external = true,
                plugin_name = name,
                plugin_type = plugin_type,
                subsystem_name = subsystem,
                extra_fields = %extra,
                "{msg}"
            )
        };
    }
    match line.level {
        Level::Trace => {}
        Level::Debug => log_at!(debug),
        Level::Info => log_at!(info),
        Level::Warn => log_at!(warn),
        Level::Error => log_at!(error),
    }
}

/// Relays `stderr` until it closes; `executable` names the plugin's logger.
pub(crate) async fn relay(
    stderr: impl AsyncRead + Unpin,
    name: String,
    plugin_type: String,
    executable: &std::path::Path,
) {
    let base = executable
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let subsystem = format!("{name}.{base}");
    let mut lines = BufReader::new(stderr).lines();
    let mut in_panic = false;
    loop {
        match lines.next_line().await {
            Ok(Some(raw)) => emit(
                &name,
                &plugin_type,
                &subsystem,
                &parse_line(&raw, &mut in_panic),
            ),
            Ok(None) => return,
            Err(e) => {
                tracing::error!(
                    external = true,
                    plugin_name = %name,
                    plugin_type = %plugin_type,
                    subsystem_name = %subsystem,
                    error = %e,
                    "reading plugin stderr"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hclog_json_keeps_level_message_and_fields() {
        let mut p = false;
        let l = parse_line(
            r#"{"@level":"info","@message":"Configured","@timestamp":"2026-12-04T01:51:40.293021Z","tag":"blue","n":3}"#,
            &mut p,
        );
        assert_eq!(l.level, Level::Info);
        assert_eq!(l.message, "Configured");
        assert_eq!(
            l.fields,
            vec![
                ("n".to_owned(), "3".to_owned()),
                ("tag".to_owned(), "blue".to_owned()),
                (
                    "timestamp".to_owned(),
                    "2026-12-04T01:51:40.293Z".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn timestamps_take_hclogs_format() {
        assert_eq!(
            hclog_time("2026-12-04T01:51:40.293021Z"),
            "2026-12-04T01:51:40.293Z"
        );
        assert_eq!(
            hclog_time("2026-12-04T01:51:40Z"),
            "2026-12-04T01:51:40.000Z"
        );
        assert_eq!(
            hclog_time("2026-12-04T01:51:40.5+02:00"),
            "2026-12-04T01:51:40.500+0200"
        );
        assert_eq!(hclog_time("not a time"), "not a time");
    }

    #[test]
    fn text_lines_prefixes_and_panics() {
        let mut p = false;
        assert_eq!(parse_line("[WARN] careful", &mut p).level, Level::Warn);
        assert_eq!(parse_line("plain words", &mut p).level, Level::Debug);
        assert_eq!(parse_line(r#"{"no":"level"}"#, &mut p).level, Level::Debug);
        assert_eq!(parse_line("panic: boom", &mut p).level, Level::Error);
        assert!(p);
        assert_eq!(
            parse_line("goroutine 1 [running]:", &mut p).level,
            Level::Error
        );
    }
}
