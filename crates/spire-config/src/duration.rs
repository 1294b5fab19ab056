//! Durations in configuration files: Go's `time.ParseDuration` text (from
//! `spire-gocompat`) held in a [`Duration`], so negative values, which no
//! SPIRE setting accepts, are rejected at parse time.

use std::fmt;
use std::time::Duration;

use spire_gocompat::GoDuration;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Go rejects the text; `message` is Go's, such as `time: invalid duration "x"`.
    Invalid {
        /// Go's full message.
        message: String,
    },
    /// Go accepts the text but the duration is negative, which a [`Duration`] cannot hold.
    Negative {
        /// The text.
        input: String,
    },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Invalid { message } => f.write_str(message),
            DurationError::Negative { input } => write!(
                f,
                "time: negative duration {} is not supported",
                spire_gocompat::time::quote(input.as_bytes())
            ),
        }
    }
}

impl std::error::Error for DurationError {}

/// Go's `time.ParseDuration` into a [`Duration`]; negative durations are an error.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let d = spire_gocompat::parse_go_duration(s).map_err(|e| DurationError::Invalid {
        message: e.to_string(),
    })?;
    d.to_std().ok_or_else(|| DurationError::Negative {
        input: s.to_owned(),
    })
}

/// Go's `Duration.String()`, such as `24h0m0s`, `1m30s`, `1.5s`, `300ms`;
/// durations beyond Go's range print as its largest.
pub fn format_go_duration(d: Duration) -> String {
    let go = GoDuration::from_std(d).unwrap_or(GoDuration::from_nanos(i64::MAX));
    spire_gocompat::format_go_duration(go)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go_and_refuses_negatives() {
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_go_duration("1d").unwrap_err().to_string(),
            r#"time: unknown unit "d" in duration "1d""#
        );
        assert_eq!(
            parse_go_duration("-1h").unwrap_err().to_string(),
            r#"time: negative duration "-1h" is not supported"#
        );
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::from_secs(86400), "24h0m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_nanos(1500), "1.5\u{b5}s"),
            (Duration::MAX, "2562047h47m16.854775807s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(d), want);
        }
    }
}
