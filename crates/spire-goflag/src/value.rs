//! Flag values: Go's `flag.Value` interface and the built-in value types.

use std::any::Any;
use std::fmt;

use spire_gocompat::strconv::{NumError, format_bool, parse_bool, parse_int, parse_uint};
use spire_gocompat::{GoDuration, parse_go_duration};

/// The error a [`Value::set`] returns; its text follows `: ` in
/// `invalid value "x" for flag -name: <text>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl ValueError {
    /// An error with the given text.
    pub fn new(message: impl Into<String>) -> ValueError {
        ValueError(message.into())
    }

    /// Go's `flag` `errParse`: `parse error`.
    pub fn parse() -> ValueError {
        ValueError::new("parse error")
    }

    /// Go's `flag` `errRange`: `value out of range`.
    pub fn range() -> ValueError {
        ValueError::new("value out of range")
    }

    /// The text of the error.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<NumError> for ValueError {
    /// Go's `numError`: syntax errors become `parse error`, range errors
    /// `value out of range`.
    fn from(e: NumError) -> ValueError {
        match e {
            NumError::Syntax => ValueError::parse(),
            NumError::Range => ValueError::range(),
        }
    }
}

/// The dynamic value of a flag: Go's `flag.Value`, plus what Go's `flag`
/// package finds out by reflection.
///
/// Implement this for custom flag types (the equivalent of Go's
/// `FlagSet.Var`). A registered value is the flag's default; every parse
/// starts from a clone of it and calls [`Value::set`] once for each
/// occurrence on the command line, in order.
pub trait Value: ValueClone + fmt::Debug + Send + Sync + 'static {
    /// Go's `Set(string) error`.
    fn set(&mut self, raw: &str) -> Result<(), ValueError>;

    /// Go's `String() string`; at registration it becomes the default text
    /// printed by [`crate::FlagSet::print_defaults`].
    fn to_go_string(&self) -> String;

    /// What `String()` returns for the zero value of the Go type
    /// (e.g. `""`, `"0"`, `"[]"`, `"0s"`). Go prints `(default ...)` only
    /// when the default text differs from this.
    fn zero_string(&self) -> String {
        String::new()
    }

    /// Go's optional `IsBoolFlag() bool`: `-name` alone means
    /// `-name=true`, and a following argument is never taken as the value.
    fn is_bool_flag(&self) -> bool {
        false
    }

    /// The type shown after the flag name in usage output when the usage
    /// text has no back-quoted name: Go shows `value` for custom types and
    /// nothing for bool flags.
    fn type_name(&self) -> &'static str {
        if self.is_bool_flag() { "" } else { "value" }
    }

    /// Whether the default is printed with `%q` (Go does so only for its
    /// own string flags).
    fn quote_default(&self) -> bool {
        false
    }
}

/// Cloning and downcasting for boxed [`Value`]s; implemented for every
/// `Value + Clone` type, so never implement it by hand.
pub trait ValueClone {
    /// A boxed copy of this value.
    fn clone_value(&self) -> Box<dyn Value>;
    /// This value as [`Any`], for downcasting to its concrete type.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Value + Clone> ValueClone for T {
    fn clone_value(&self) -> Box<dyn Value> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Clone for Box<dyn Value> {
    fn clone(&self) -> Self {
        self.as_ref().clone_value()
    }
}

/// Go's `flag.Bool`.
impl Value for bool {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        // Like Go, a rejected value still stores what the parser returned.
        let parsed = parse_bool(raw);
        *self = parsed.unwrap_or(false);
        parsed.map(|_| ()).map_err(|_| ValueError::parse())
    }

    fn to_go_string(&self) -> String {
        format_bool(*self).to_owned()
    }

    fn zero_string(&self) -> String {
        "false".to_owned()
    }

    fn is_bool_flag(&self) -> bool {
        true
    }
}

/// Go's `flag.Int` and `flag.Int64` (Go's `int` is 64 bits on the
/// platforms SPIRE supports): `strconv.ParseInt(s, 0, 64)`.
impl Value for i64 {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        // Like Go, a rejected value still stores what ParseInt returned.
        let parsed = parse_int(raw);
        *self = match parsed {
            Ok(v) => v,
            Err(NumError::Range) if raw.starts_with('-') => i64::MIN,
            Err(NumError::Range) => i64::MAX,
            Err(NumError::Syntax) => 0,
        };
        parsed.map(|_| ()).map_err(ValueError::from)
    }

    fn to_go_string(&self) -> String {
        self.to_string()
    }

    fn zero_string(&self) -> String {
        "0".to_owned()
    }

    fn type_name(&self) -> &'static str {
        "int"
    }
}

/// Go's `flag.Uint` and `flag.Uint64`: `strconv.ParseUint(s, 0, 64)`.
impl Value for u64 {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        // Like Go, a rejected value still stores what ParseUint returned.
        let parsed = parse_uint(raw);
        *self = match parsed {
            Ok(v) => v,
            Err(NumError::Range) => u64::MAX,
            Err(NumError::Syntax) => 0,
        };
        parsed.map(|_| ()).map_err(ValueError::from)
    }

    fn to_go_string(&self) -> String {
        self.to_string()
    }

    fn zero_string(&self) -> String {
        "0".to_owned()
    }

    fn type_name(&self) -> &'static str {
        "uint"
    }
}

/// Go's `flag.String`.
impl Value for String {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        raw.clone_into(self);
        Ok(())
    }

    fn to_go_string(&self) -> String {
        self.clone()
    }

    fn type_name(&self) -> &'static str {
        "string"
    }

    fn quote_default(&self) -> bool {
        true
    }
}

/// Go's `flag.Duration`: `time.ParseDuration`, with any failure reported as
/// `parse error`.
impl Value for GoDuration {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        // Like Go, a rejected value still stores zero.
        let parsed = parse_go_duration(raw);
        *self = parsed.clone().unwrap_or_default();
        parsed.map(|_| ()).map_err(|_| ValueError::parse())
    }

    fn to_go_string(&self) -> String {
        self.to_string()
    }

    fn zero_string(&self) -> String {
        "0s".to_owned()
    }

    fn type_name(&self) -> &'static str {
        "duration"
    }
}

/// A repeatable string flag: each occurrence appends. This is SPIRE's
/// `StringsFlag` (`cmd/spire-server/cli/entry.StringsFlag` and
/// `pkg/common/cli.StringsFlag`); its text is Go's `fmt.Sprint` of a
/// `[]string`, e.g. `[a b]`, and usage shows it as `value`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringsFlag(pub Vec<String>);

impl StringsFlag {
    /// The collected values, in command-line order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The collected values, in command-line order.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

impl std::ops::Deref for StringsFlag {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl Value for StringsFlag {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        self.0.push(raw.to_owned());
        Ok(())
    }

    fn to_go_string(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }

    fn zero_string(&self) -> String {
        "[]".to_owned()
    }
}

/// SPIRE's `pkg/common/cli.CommaStringsFlag`: each occurrence replaces the
/// list with the comma-separated parts of its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommaStringsFlag(pub Vec<String>);

impl std::ops::Deref for CommaStringsFlag {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl Value for CommaStringsFlag {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        // Go's strings.Split: "" gives [""].
        self.0 = raw.split(',').map(str::to_owned).collect();
        Ok(())
    }

    fn to_go_string(&self) -> String {
        self.0.join(",")
    }
}

/// SPIRE's `pkg/common/cli.DurationFlag`: a duration shown as `value` in
/// usage whose errors carry the `time` package's text
/// (`invalid value "x" for flag -timeout: time: invalid duration "x"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationFlag(pub GoDuration);

impl Value for DurationFlag {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        self.0 = parse_go_duration(raw).map_err(|e| ValueError::new(e.to_string()))?;
        Ok(())
    }

    fn to_go_string(&self) -> String {
        self.0.to_string()
    }

    fn zero_string(&self) -> String {
        "0s".to_owned()
    }
}

/// SPIRE's `pkg/common/cli.BoolFlag`: a tri-state filter taking a value.
/// `true` and `false` select; anything else (including a later
/// unrecognised value) means "all". Its text is always empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BoolFlag {
    /// Neither filter (Go's `BoolFlagAll`, the zero value).
    #[default]
    All,
    /// `false` was given.
    False,
    /// `true` was given.
    True,
}

impl Value for BoolFlag {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        *self = match raw {
            "false" => BoolFlag::False,
            "true" => BoolFlag::True,
            _ => BoolFlag::All,
        };
        Ok(())
    }

    fn to_go_string(&self) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_set_and_text() {
        let mut b = false;
        assert!(b.set("T").is_ok());
        assert!(b);
        assert_eq!(b.set("yes"), Err(ValueError::parse()));
        // Go stores the parser's result even on failure.
        assert!(!b);
        assert_eq!(b.to_go_string(), "false");
        assert_eq!(b.type_name(), "");

        let mut i = 0i64;
        assert!(i.set("-0x10").is_ok());
        assert_eq!(i, -16);
        assert_eq!(
            i.set("abc").map_err(|e| e.to_string()),
            Err("parse error".into())
        );
        assert_eq!(i, 0);
        assert_eq!(
            i.set("9223372036854775808").map_err(|e| e.to_string()),
            Err("value out of range".into())
        );
        assert_eq!(i, i64::MAX);
        assert_eq!(i.set("-9223372036854775809"), Err(ValueError::range()));
        assert_eq!(i, i64::MIN);

        let mut u = 0u64;
        assert_eq!(u.set("-1"), Err(ValueError::parse()));
        assert!(u.set("0b11").is_ok());
        assert_eq!(u, 3);

        let mut d = GoDuration::ZERO;
        assert_eq!(d.set("x"), Err(ValueError::parse()));
        assert!(d.set("1.5h").is_ok());
        assert_eq!(d.to_go_string(), "1h30m0s");
    }

    #[test]
    fn spire_flag_types() {
        let mut s = StringsFlag::default();
        assert_eq!(s.to_go_string(), "[]");
        assert!(s.set("a").is_ok());
        assert!(s.set("b c").is_ok());
        assert_eq!(s.to_go_string(), "[a b c]");
        assert_eq!(s.as_slice(), ["a", "b c"]);
        assert_eq!(s.len(), 2);

        let mut c = CommaStringsFlag::default();
        assert!(c.set("a,b").is_ok());
        assert!(c.set("x,,y").is_ok());
        assert_eq!(&*c, ["x", "", "y"]);
        assert_eq!(c.to_go_string(), "x,,y");
        assert!(c.set("").is_ok());
        assert_eq!(&*c, [""]);

        let mut t = DurationFlag::default();
        assert_eq!(
            t.set("x").map_err(|e| e.to_string()),
            Err("time: invalid duration \"x\"".into())
        );
        assert!(t.set("5s").is_ok());
        assert_eq!(t.to_go_string(), "5s");
        assert_eq!(t.type_name(), "value");

        let mut b = BoolFlag::default();
        assert!(b.set("true").is_ok());
        assert_eq!(b, BoolFlag::True);
        assert!(b.set("false").is_ok());
        assert_eq!(b, BoolFlag::False);
        assert!(b.set("TRUE").is_ok());
        assert_eq!(b, BoolFlag::All);
        assert_eq!(b.to_go_string(), "");
        assert!(!b.is_bool_flag());
    }

    #[test]
    fn boxed_values_clone_and_downcast() {
        let v: Box<dyn Value> = Box::new(StringsFlag(vec!["a".into()]));
        let c = v.clone();
        assert_eq!(
            c.as_any().downcast_ref::<StringsFlag>(),
            Some(&StringsFlag(vec!["a".into()]))
        );
    }
}
