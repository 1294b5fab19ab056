//! Go's text conventions, reproduced where SPIRE's users see them: in flag
//! values, configuration files, log lines and CLI output.
//!
//! * [`duration`]: `time.ParseDuration` and `Duration.String` ([`GoDuration`]).
//! * [`strconv`]: `ParseInt`/`ParseUint` with base 0, `ParseBool`, `Quote`.
//! * [`grpc`]: status code names and the `rpc error: …` text of a status error.
//! * [`os`]: `syscall.Errno` and `*os.PathError` texts.
//! * [`time`]: `time.Time.String`, RFC 3339 in UTC, civil-date arithmetic and
//!   the `time` package's own quoting.
//!
//! Nothing here reads a clock or does I/O: times come in as Unix seconds.
//!
//! ```
//! use spire_gocompat::{GoDuration, strconv, time};
//!
//! let d: GoDuration = "1h30m".parse().unwrap();
//! assert_eq!(d.to_string(), "1h30m0s");
//! assert_eq!(strconv::quote("a\tb"), r#""a\tb""#);
//! assert_eq!(time::utc_string(0), "1970-01-01 00:00:00 +0000 UTC");
//! ```

pub mod duration;
pub mod grpc;
pub mod os;
pub mod path;
pub mod strconv;
pub mod template;
pub mod time;

pub use duration::{DurationError, GoDuration, format_go_duration, parse_go_duration};
