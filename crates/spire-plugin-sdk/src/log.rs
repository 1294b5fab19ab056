//! hclog JSON lines on stderr (`{"@level":"info","@message":"…","@timestamp":"…",…}`), the
//! format SPIRE's plugin SDK logs in; both hosts relay them into their own logs, fields
//! included, under the plugin's name.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(now.as_secs()).unwrap_or_default();
    let rfc = spire_gocompat::time::rfc3339_utc(secs);
    // hclog writes microseconds: 2026-01-01T00:00:00.000000Z.
    match rfc.strip_suffix('Z') {
        Some(base) => format!("{base}.{:06}Z", now.subsec_micros()),
        None => rfc,
    }
}

/// One line at `level` (`trace`, `debug`, `info`, `warn`, `error`).
pub fn line(level: &str, message: &str, fields: &[(&str, &str)]) {
    let mut map = serde_json::Map::new();
    for (k, v) in fields {
        map.insert((*k).to_owned(), serde_json::Value::String((*v).to_owned()));
    }
    map.insert("@level".into(), level.into());
    map.insert("@message".into(), message.into());
    map.insert("@timestamp".into(), timestamp().into());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", serde_json::Value::Object(map));
}

/// A debug line.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    line("debug", message, fields);
}

/// An info line.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    line("info", message, fields);
}

/// A warning.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    line("warn", message, fields);
}

/// An error.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    line("error", message, fields);
}
