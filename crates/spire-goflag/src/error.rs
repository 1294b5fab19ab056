//! Errors of flag definition and parsing, worded exactly as Go's `flag`
//! package words them.

use crate::value::ValueError;
use spire_gocompat::strconv::quote;

/// A flag parsing (or definition) failure. `to_string()` is Go's error text,
/// which [`crate::FlagSet::parse`] has already written, followed by the
/// usage message, to the output it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// `-h`, `-help`, `--h` or `--help` (also with `=value`) was given and
    /// no flag of that name is defined: Go's `flag.ErrHelp`. The usage
    /// message was printed.
    #[error("flag: help requested")]
    Help,
    /// An argument such as `---x`, `-=x` or `--=x`.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// An undefined flag name.
    #[error("flag provided but not defined: -{0}")]
    NotDefined(String),
    /// A non-boolean flag was last on the command line, with no value.
    #[error("flag needs an argument: -{0}")]
    NeedsArgument(String),
    /// A boolean flag given `-name=value` with a value `ParseBool` rejects.
    #[error("invalid boolean value {} for -{}: {}", quote(.value), .name, .source)]
    InvalidBoolean {
        /// The text after `=`.
        value: String,
        /// The flag name.
        name: String,
        /// Why the value was rejected.
        source: ValueError,
    },
    /// A custom boolean flag (see [`crate::Value::is_bool_flag`]) rejected
    /// the implicit `true`.
    #[error("invalid boolean flag {name}: {source}")]
    InvalidBooleanFlag {
        /// The flag name.
        name: String,
        /// Why the value was rejected.
        source: ValueError,
    },
    /// A non-boolean flag's value was rejected by its [`crate::Value::set`].
    #[error("invalid value {} for flag -{}: {}", quote(.value), .name, .source)]
    InvalidValue {
        /// The value given.
        value: String,
        /// The flag name.
        name: String,
        /// Why the value was rejected.
        source: ValueError,
    },
    /// [`crate::Parsed::set`] named a flag that is not defined.
    #[error("no such flag -{0}")]
    NoSuchFlag(String),
    /// [`crate::Parsed::set`] was given a value the flag rejected; the text
    /// is the value's own error, as Go's `FlagSet.Set` returns it.
    #[error(transparent)]
    Set(ValueError),
    /// The flag set was defined wrongly (Go panics here): a name starting
    /// with `-`, a name containing `=`, or a name defined twice. Reported by
    /// every parse of that set.
    #[error("{0}")]
    Definition(String),
}

impl FlagError {
    /// The exit code Go's `flag.ExitOnError` uses for this error: 0 for a
    /// help request, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            FlagError::Help => 0,
            _ => 2,
        }
    }

    /// Whether this is the help request ([`FlagError::Help`]).
    pub fn is_help(&self) -> bool {
        matches!(self, FlagError::Help)
    }
}
