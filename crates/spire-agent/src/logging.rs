//! The agent's logging: logrus lines (text or JSON, formatted by `spire-log`) written to
//! stdout or the `log_file`, our crates at the configured level and dependencies at warn
//! at most.

use spire_log::{LogFormat, LogrusLayer};
use tracing_subscriber::Layer as _;

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
        .with_target("spire_plugin_host", level)
        .with_target("spire_telemetry", level)
        .with_default(deps);
    let _ = tracing_subscriber::registry()
        .with(LogrusLayer::new(format, sink).with_filter(targets))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_map_to_filters() {
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
