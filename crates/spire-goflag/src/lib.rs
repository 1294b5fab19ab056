//! Command-line parsing that behaves exactly like Go's standard `flag`
//! package combined with `github.com/mitchellh/cli`, so that `spire-server`
//! and `spire-agent` accept the same command lines as reference SPIRE and
//! print the same help, usage and error text.
//!
//! * [`FlagSet`] is Go's `flag.FlagSet` (with `ContinueOnError`): typed flag
//!   definitions returning [`Flag`] handles, [`FlagSet::parse`] returning a
//!   [`Parsed`] result, Go's error messages and `PrintDefaults` layout.
//! * [`Cli`] is mitchellh/cli's `CLI`: nested commands found by longest
//!   prefix, `-h`/`-v` handling, command lists and exit codes.
//! * Flag values use Go's text conventions from `spire-gocompat`
//!   ([`GoDuration`] is re-exported for `-timeout`-style flags).
//!
//! All output goes to writers the caller passes in.
//!
//! ```
//! use spire_goflag::{FlagSet, GoDuration};
//!
//! let mut fs = FlagSet::new("entry create");
//! let spiffe_id = fs.string("spiffeID", "", "The SPIFFE ID that this record represents");
//! let ttl = fs.int("x509SVIDTTL", 0, "The lifetime, in seconds, for x509-SVIDs");
//! let selectors = fs.strings("selector", "A colon-delimited type:value selector");
//! let node = fs.bool("node", false, "If set, this entry will be applied to matching nodes");
//! let timeout = fs.duration("timeout", GoDuration::from_secs(5), "Time to wait");
//!
//! let mut stderr = Vec::new();
//! let args = ["-spiffeID", "spiffe://example.org/w", "-selector", "unix:uid:0",
//!             "-selector=unix:gid:0", "-node", "-x509SVIDTTL=0x10", "extra"];
//! let m = fs.parse(&args, &mut stderr).unwrap();
//! assert_eq!(m.get(&spiffe_id), "spiffe://example.org/w");
//! assert_eq!(*m.get(&ttl), 16);
//! assert_eq!(m.get(&selectors).as_slice(), ["unix:uid:0", "unix:gid:0"]);
//! assert!(*m.get(&node));
//! assert_eq!(m.get(&timeout).to_string(), "5s");
//! assert_eq!(m.args(), ["extra"]);
//!
//! let err = fs.parse(&["-bogus"], &mut stderr).unwrap_err();
//! assert_eq!(err.to_string(), "flag provided but not defined: -bogus");
//! ```

mod cli;
mod error;
mod flagset;
mod value;

pub use cli::{
    AutocompleteInstaller, Cli, CliError, Command, Io, Outcome, PARENT_HELP, RUN_RESULT_HELP,
};
pub use error::FlagError;
pub use flagset::{Flag, FlagInfo, FlagSet, Parsed, UsageFn, unquote_usage};
pub use spire_gocompat::{DurationError, GoDuration};
pub use value::{
    BoolFlag, CommaStringsFlag, DurationFlag, StringsFlag, Value, ValueClone, ValueError,
};

#[cfg(test)]
mod spire_fixture_tests;
