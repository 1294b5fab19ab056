//! [`FlagSet`]: Go's `flag.FlagSet` with `ContinueOnError` handling.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::duration::GoDuration;
use crate::error::FlagError;
use crate::strconv::quote;
use crate::value::{StringsFlag, Value};

static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

/// A custom usage printer (Go's `FlagSet.Usage`); it receives the set and
/// the output given to [`FlagSet::parse`].
pub type UsageFn = dyn Fn(&FlagSet, &mut dyn Write) + Send + Sync;

/// A typed handle to a flag defined in a [`FlagSet`], used to read its
/// value from the [`Parsed`] result.
pub struct Flag<T> {
    slot: usize,
    set_id: u64,
    default: T,
    _marker: PhantomData<fn() -> T>,
}

impl<T: Clone> Clone for Flag<T> {
    fn clone(&self) -> Self {
        Flag {
            slot: self.slot,
            set_id: self.set_id,
            default: self.default.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Flag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flag")
            .field("slot", &self.slot)
            .field("default", &self.default)
            .finish()
    }
}

impl<T> Flag<T> {
    /// The value the flag had when defined.
    pub fn default_value(&self) -> &T {
        &self.default
    }
}

/// What Go's `flag.Flag` records about a defined flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagInfo {
    /// The name as it appears on the command line (without `-`).
    pub name: String,
    /// The help message.
    pub usage: String,
    /// The default value as text (the value's `String()` at definition).
    pub def_value: String,
    slot: usize,
}

/// A set of flags, parsed the way Go's `flag.FlagSet` parses with
/// `ContinueOnError`.
///
/// Define flags with the typed methods ([`FlagSet::string`],
/// [`FlagSet::bool`], [`FlagSet::int`], [`FlagSet::duration`],
/// [`FlagSet::strings`], [`FlagSet::var`], ...), each of which returns a
/// [`Flag`] handle; then [`FlagSet::parse`] the arguments and read the
/// values from the [`Parsed`] result with [`Parsed::get`]. A set can be
/// parsed any number of times; each parse starts from the defaults.
pub struct FlagSet {
    name: String,
    id: u64,
    values: Vec<Box<dyn Value>>,
    formal: BTreeMap<String, FlagInfo>,
    usage: Option<Arc<UsageFn>>,
    definition_errors: Vec<String>,
}

impl fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagSet")
            .field("name", &self.name)
            .field("flags", &self.formal.keys().collect::<Vec<_>>())
            .field("custom_usage", &self.usage.is_some())
            .finish()
    }
}

impl Clone for FlagSet {
    fn clone(&self) -> Self {
        FlagSet {
            name: self.name.clone(),
            id: self.id,
            values: self.values.clone(),
            formal: self.formal.clone(),
            usage: self.usage.clone(),
            definition_errors: self.definition_errors.clone(),
        }
    }
}

impl FlagSet {
    /// An empty set; `name` is used in `Usage of <name>:` (an empty name
    /// prints `Usage:`) and in redefinition messages. SPIRE names a
    /// command's set after the command, e.g. `entry create`.
    pub fn new(name: impl Into<String>) -> FlagSet {
        FlagSet {
            name: name.into(),
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            values: Vec::new(),
            formal: BTreeMap::new(),
            usage: None,
            definition_errors: Vec::new(),
        }
    }

    /// The set's name (Go's `FlagSet.Name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the usage printer called on errors and on `-h` (Go's
    /// `FlagSet.Usage = ...`).
    pub fn set_usage(&mut self, usage: impl Fn(&FlagSet, &mut dyn Write) + Send + Sync + 'static) {
        self.usage = Some(Arc::new(usage));
    }

    /// Defines a string flag (Go's `FlagSet.String`).
    pub fn string(&mut self, name: &str, default: impl Into<String>, usage: &str) -> Flag<String> {
        self.var(name, default.into(), usage)
    }

    /// Defines a bool flag (Go's `FlagSet.Bool`): `-name` or `-name=value`,
    /// never `-name value`.
    pub fn bool(&mut self, name: &str, default: bool, usage: &str) -> Flag<bool> {
        self.var(name, default, usage)
    }

    /// Defines an int flag (Go's `FlagSet.Int`; 64 bits as on SPIRE's
    /// platforms). Values use Go integer syntax: `0x1F`, `0o17`, `017`,
    /// `0b101`, `1_000`, sign allowed.
    pub fn int(&mut self, name: &str, default: i64, usage: &str) -> Flag<i64> {
        self.var(name, default, usage)
    }

    /// Defines an int64 flag (Go's `FlagSet.Int64`); same as [`FlagSet::int`].
    pub fn int64(&mut self, name: &str, default: i64, usage: &str) -> Flag<i64> {
        self.var(name, default, usage)
    }

    /// Defines a uint flag (Go's `FlagSet.Uint`): like [`FlagSet::int`]
    /// without a sign.
    pub fn uint(&mut self, name: &str, default: u64, usage: &str) -> Flag<u64> {
        self.var(name, default, usage)
    }

    /// Defines a uint64 flag (Go's `FlagSet.Uint64`); same as [`FlagSet::uint`].
    pub fn uint64(&mut self, name: &str, default: u64, usage: &str) -> Flag<u64> {
        self.var(name, default, usage)
    }

    /// Defines a duration flag (Go's `FlagSet.Duration`), parsed with
    /// [`crate::parse_go_duration`].
    pub fn duration(&mut self, name: &str, default: GoDuration, usage: &str) -> Flag<GoDuration> {
        self.var(name, default, usage)
    }

    /// Defines a repeatable string flag (SPIRE's `StringsFlag` registered
    /// with `FlagSet.Var`): each occurrence appends.
    pub fn strings(&mut self, name: &str, usage: &str) -> Flag<StringsFlag> {
        self.var(name, StringsFlag::default(), usage)
    }

    /// Defines a flag with a custom [`Value`] (Go's `FlagSet.Var`); `initial`
    /// is the default.
    pub fn var<V: Value + Clone>(&mut self, name: &str, initial: V, usage: &str) -> Flag<V> {
        let slot = self.values.len();
        let def_value = initial.to_go_string();
        let handle = Flag {
            slot,
            set_id: self.id,
            default: initial.clone(),
            _marker: PhantomData,
        };
        self.values.push(Box::new(initial));
        self.define(name, usage, def_value, slot);
        handle
    }

    /// Defines a second name for an existing flag's value, as Go code does
    /// by passing one `Value` to `FlagSet.Var` twice (SPIRE's deprecated
    /// `-format` alias of `-output`): setting either name sets the value.
    pub fn alias<V: Clone>(&mut self, name: &str, usage: &str, target: &Flag<V>) -> Flag<V> {
        if target.set_id == self.id
            && let Some(value) = self.values.get(target.slot)
        {
            let def_value = value.to_go_string();
            self.define(name, usage, def_value, target.slot);
        } else {
            self.definition_errors.push(format!(
                "flag {} aliases a flag of another set",
                quote(name)
            ));
        }
        target.clone()
    }

    fn define(&mut self, name: &str, usage: &str, def_value: String, slot: usize) {
        if name.starts_with('-') {
            self.definition_errors
                .push(format!("flag {} begins with -", quote(name)));
            return;
        }
        if name.contains('=') {
            self.definition_errors
                .push(format!("flag {} contains =", quote(name)));
            return;
        }
        if self.formal.contains_key(name) {
            let msg = if self.name.is_empty() {
                format!("flag redefined: {name}")
            } else {
                format!("{} flag redefined: {name}", self.name)
            };
            self.definition_errors.push(msg);
            return;
        }
        self.formal.insert(
            name.to_owned(),
            FlagInfo {
                name: name.to_owned(),
                usage: usage.to_owned(),
                def_value,
                slot,
            },
        );
    }

    /// The definition mistakes made so far (Go panics on each); every parse
    /// fails with the first of them.
    pub fn definition_errors(&self) -> &[String] {
        &self.definition_errors
    }

    /// Go's `FlagSet.Lookup`.
    pub fn lookup(&self, name: &str) -> Option<&FlagInfo> {
        self.formal.get(name)
    }

    /// All defined flags in lexicographical order (Go's `VisitAll`).
    pub fn flags(&self) -> impl Iterator<Item = &FlagInfo> {
        self.formal.values()
    }

    /// Parses `args` (the arguments after the command name): flags up to
    /// the first non-flag argument, `-` or `--`; the rest are positional.
    ///
    /// On failure Go's message and then the usage message are written to
    /// `out` (for `-h`/`-help`, only the usage), exactly as Go's `flag`
    /// package writes them to the set's output.
    pub fn parse<S: AsRef<str>>(
        &self,
        args: &[S],
        out: &mut dyn Write,
    ) -> Result<Parsed, FlagError> {
        if let Some(msg) = self.definition_errors.first() {
            let _ = writeln!(out, "{msg}");
            return Err(FlagError::Definition(msg.clone()));
        }
        let mut values = self.values.clone();
        let mut actual = BTreeSet::new();
        let mut rest: &[S] = args;
        loop {
            match self.parse_one(&mut rest, &mut values) {
                Ok(Some(name)) => {
                    actual.insert(name);
                }
                Ok(None) => break,
                Err(err) => {
                    if !err.is_help() {
                        let _ = writeln!(out, "{err}");
                    }
                    self.usage(out);
                    return Err(err);
                }
            }
        }
        Ok(Parsed {
            set_id: self.id,
            values,
            slots: self
                .formal
                .iter()
                .map(|(name, info)| (name.clone(), info.slot))
                .collect(),
            actual,
            args: rest.iter().map(|s| s.as_ref().to_owned()).collect(),
        })
    }

    /// Go's `FlagSet.parseOne`: `Ok(Some(name))` after setting a flag,
    /// `Ok(None)` when flags end.
    fn parse_one<S: AsRef<str>>(
        &self,
        rest: &mut &[S],
        values: &mut [Box<dyn Value>],
    ) -> Result<Option<String>, FlagError> {
        let Some((first, tail)) = rest.split_first() else {
            return Ok(None);
        };
        let s = first.as_ref();
        let bytes = s.as_bytes();
        if bytes.len() < 2 || bytes[0] != b'-' {
            return Ok(None);
        }
        let mut num_minuses = 1;
        if bytes[1] == b'-' {
            num_minuses += 1;
            if bytes.len() == 2 {
                // "--" terminates the flags.
                *rest = tail;
                return Ok(None);
            }
        }
        let name = &s[num_minuses..];
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(FlagError::BadSyntax(s.to_owned()));
        }
        *rest = tail;

        // The '=' cannot be first.
        let eq = name.bytes().skip(1).position(|b| b == b'=').map(|p| p + 1);
        let (name, value) = match eq {
            Some(i) => (&name[..i], Some(&name[i + 1..])),
            None => (name, None),
        };

        let Some(info) = self.formal.get(name) else {
            if name == "help" || name == "h" {
                return Err(FlagError::Help);
            }
            return Err(FlagError::NotDefined(name.to_owned()));
        };
        let Some(target) = values.get_mut(info.slot) else {
            return Err(FlagError::NotDefined(name.to_owned()));
        };

        if target.is_bool_flag() {
            match value {
                Some(v) => target.set(v).map_err(|source| FlagError::InvalidBoolean {
                    value: v.to_owned(),
                    name: name.to_owned(),
                    source,
                })?,
                None => target
                    .set("true")
                    .map_err(|source| FlagError::InvalidBooleanFlag {
                        name: name.to_owned(),
                        source,
                    })?,
            }
        } else {
            let value = match value {
                Some(v) => v.to_owned(),
                None => match rest.split_first() {
                    Some((next, tail)) => {
                        *rest = tail;
                        next.as_ref().to_owned()
                    }
                    None => return Err(FlagError::NeedsArgument(name.to_owned())),
                },
            };
            target
                .set(&value)
                .map_err(|source| FlagError::InvalidValue {
                    value,
                    name: name.to_owned(),
                    source,
                })?;
        }
        Ok(Some(name.to_owned()))
    }

    /// Writes the usage message: the custom one if set, else
    /// `Usage of <name>:` and [`FlagSet::print_defaults`].
    pub fn usage(&self, out: &mut dyn Write) {
        match &self.usage {
            Some(f) => f(self, out),
            None => self.default_usage(out),
        }
    }

    /// Go's default usage: `Usage of <name>:` (or `Usage:` for an unnamed
    /// set) followed by [`FlagSet::print_defaults`].
    pub fn default_usage(&self, out: &mut dyn Write) {
        if self.name.is_empty() {
            let _ = writeln!(out, "Usage:");
        } else {
            let _ = writeln!(out, "Usage of {}:", self.name);
        }
        self.print_defaults(out);
    }

    /// Go's `FlagSet.PrintDefaults`: one entry per flag in sorted order,
    /// `  -name type` then the usage on the next line after four spaces and
    /// a tab (on the same line, after a tab, for a one-letter bool flag),
    /// then ` (default x)` unless the default is the type's zero value.
    pub fn print_defaults(&self, out: &mut dyn Write) {
        for info in self.formal.values() {
            let Some(value) = self.values.get(info.slot) else {
                continue;
            };
            let mut b = format!("  -{}", info.name);
            let (type_name, usage) = unquote_usage(&info.usage, value.as_ref());
            if !type_name.is_empty() {
                b.push(' ');
                b.push_str(&type_name);
            }
            // Boolean flags of one ASCII letter share the line.
            if b.len() <= 4 {
                b.push('\t');
            } else {
                // Four spaces before the tab align for 4- and 8-space tab stops.
                b.push_str("\n    \t");
            }
            b.push_str(&usage.replace('\n', "\n    \t"));
            if info.def_value != value.zero_string() {
                if value.quote_default() {
                    b.push_str(&format!(" (default {})", quote(&info.def_value)));
                } else {
                    b.push_str(&format!(" (default {})", info.def_value));
                }
            }
            let _ = writeln!(out, "{b}");
        }
    }

    /// The usage message as a string (see [`FlagSet::usage`]).
    pub fn usage_string(&self) -> String {
        let mut buf = Vec::new();
        self.usage(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// What SPIRE's command adapters return from `Help()`:
    /// `flags.Parse([]string{"-h"}).Error()`. The usage message is written
    /// to `out` and `flag: help requested` is returned.
    pub fn help_text(&self, out: &mut dyn Write) -> String {
        match self.parse(&["-h"], out) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }
}

/// Go's `flag.UnquoteUsage`: the first back-quoted word of the usage names
/// the value (and loses its quotes); otherwise the value type's name.
pub fn unquote_usage(usage: &str, value: &dyn Value) -> (String, String) {
    if let Some(i) = usage.find('`')
        && let Some(len) = usage[i + 1..].find('`')
    {
        let j = i + 1 + len;
        let name = &usage[i + 1..j];
        let unquoted = format!("{}{}{}", &usage[..i], name, &usage[j + 1..]);
        return (name.to_owned(), unquoted);
    }
    (value.type_name().to_owned(), usage.to_owned())
}

/// The result of a successful [`FlagSet::parse`]: the flag values and the
/// remaining positional arguments.
#[derive(Debug, Clone)]
pub struct Parsed {
    set_id: u64,
    values: Vec<Box<dyn Value>>,
    slots: BTreeMap<String, usize>,
    actual: BTreeSet<String>,
    args: Vec<String>,
}

impl Parsed {
    /// The flag's value after parsing (its default if not given). A handle
    /// from another set yields that handle's default.
    pub fn get<'a, T: Value>(&'a self, flag: &'a Flag<T>) -> &'a T {
        if flag.set_id == self.set_id
            && let Some(v) = self.values.get(flag.slot)
            && let Some(t) = v.as_any().downcast_ref::<T>()
        {
            return t;
        }
        &flag.default
    }

    /// Whether the flag (under any of its names) was given on the command
    /// line.
    pub fn is_set<T>(&self, flag: &Flag<T>) -> bool {
        flag.set_id == self.set_id
            && self
                .actual
                .iter()
                .any(|name| self.slots.get(name) == Some(&flag.slot))
    }

    /// Whether the flag of this name was given (Go's `Visit` sees it).
    pub fn is_set_name(&self, name: &str) -> bool {
        self.actual.contains(name)
    }

    /// The names of the flags given, in lexicographical order (Go's `Visit`).
    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        self.actual.iter().map(String::as_str)
    }

    /// The number of flags given (Go's `NFlag`).
    pub fn nflag(&self) -> usize {
        self.actual.len()
    }

    /// The value of the flag of this name, if defined.
    pub fn value(&self, name: &str) -> Option<&dyn Value> {
        let slot = *self.slots.get(name)?;
        self.values.get(slot).map(|v| v.as_ref())
    }

    /// Go's `FlagSet.Set`: sets a flag by name as if given on the command
    /// line (the value's own error, unwrapped, on failure).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FlagError> {
        let Some(slot) = self.slots.get(name).copied() else {
            return Err(FlagError::NoSuchFlag(name.to_owned()));
        };
        let Some(target) = self.values.get_mut(slot) else {
            return Err(FlagError::NoSuchFlag(name.to_owned()));
        };
        target.set(value).map_err(FlagError::Set)?;
        self.actual.insert(name.to_owned());
        Ok(())
    }

    /// The arguments after the flags (Go's `Args`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The i'th remaining argument, or `""` (Go's `Arg`).
    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).map(String::as_str).unwrap_or("")
    }

    /// The number of remaining arguments (Go's `NArg`).
    pub fn narg(&self) -> usize {
        self.args.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{DurationFlag, ValueError};

    struct Demo {
        fs: FlagSet,
        b: Flag<bool>,
        verbose: Flag<bool>,
        socket: Flag<String>,
        empty: Flag<String>,
        ttl_int: Flag<i64>,
        n: Flag<i64>,
        expiry: Flag<i64>,
        u: Flag<u64>,
        ttl: Flag<GoDuration>,
        selector: Flag<StringsFlag>,
        pre: Flag<StringsFlag>,
        timeout: Flag<DurationFlag>,
    }

    /// The same flag set as the throwaway Go program the expected output
    /// was captured from (testdata/go_demo_*.txt).
    fn demo(name: &str) -> Demo {
        let mut fs = FlagSet::new(name);
        let b = fs.bool("b", false, "single-letter bool");
        let verbose = fs.bool("verbose", true, "a bool defaulting true");
        let socket = fs.string(
            "socketPath",
            "/tmp/spire-server/private/api.sock",
            "Path to the SPIRE Server API socket",
        );
        let empty = fs.string("empty", "", "empty string `file` name");
        fs.string("q", "a\"b\tc\\ é\u{1}", "quoted default");
        let ttl_int = fs.int("x509SVIDTTL", 0, "The lifetime, in seconds");
        let n = fs.int("n", 7, "an int\nwith two lines");
        let expiry = fs.int64("entryExpiry", -5, "An expiry");
        let u = fs.uint("u", 3, "a uint");
        let ttl = fs.duration(
            "ttl",
            GoDuration::from_nanos(90 * 60_000_000_000),
            "a duration",
        );
        fs.duration("d0", GoDuration::ZERO, "zero duration");
        let selector = fs.strings(
            "selector",
            "A colon-delimited type:value selector. Can be used more than once",
        );
        let pre = fs.var(
            "pre",
            StringsFlag(vec!["x".into(), "y".into()]),
            "prefilled strings",
        );
        let timeout = fs.var(
            "timeout",
            DurationFlag(GoDuration::from_secs(5)),
            "Time to wait for a response",
        );
        Demo {
            fs,
            b,
            verbose,
            socket,
            empty,
            ttl_int,
            n,
            expiry,
            u,
            ttl,
            selector,
            pre,
            timeout,
        }
    }

    fn parse(d: &Demo, args: &[&str]) -> (Result<Parsed, FlagError>, String) {
        let mut out = Vec::new();
        let r = d.fs.parse(args, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    fn ok(d: &Demo, args: &[&str]) -> Parsed {
        let (r, out) = parse(d, args);
        assert_eq!(out, "", "no output expected for {args:?}");
        r.unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// The first line Go printed, and the error it returned (same text).
    fn err(d: &Demo, args: &[&str]) -> String {
        let (r, out) = parse(d, args);
        let e = r.err().unwrap_or_else(|| panic!("{args:?} should fail"));
        let usage = d.fs.usage_string();
        assert_eq!(out, format!("{e}\n{usage}"), "{args:?}");
        e.to_string()
    }

    const GO_DEMO_USAGE: &str = include_str!("../testdata/go_demo_usage.txt");
    const GO_DEMO_BOGUS: &str = include_str!("../testdata/go_demo_bogus.txt");

    #[test]
    fn help_prints_go_usage() {
        let d = demo("demo");
        for args in [
            &["-h"][..],
            &["-help"],
            &["--help"],
            &["--h"],
            &["-h=1"],
            &["-b", "-help", "x"],
        ] {
            let (r, out) = parse(&d, args);
            assert_eq!(r.err(), Some(FlagError::Help), "{args:?}");
            assert_eq!(out, GO_DEMO_USAGE, "{args:?}");
        }
        assert_eq!(FlagError::Help.to_string(), "flag: help requested");
        assert_eq!(FlagError::Help.exit_code(), 0);
        assert_eq!(d.fs.usage_string(), GO_DEMO_USAGE);
    }

    #[test]
    fn unknown_flag_prints_message_and_usage() {
        let d = demo("demo");
        let (r, out) = parse(&d, &["-bogus"]);
        let e = r.unwrap_err();
        assert_eq!(e, FlagError::NotDefined("bogus".into()));
        assert_eq!(e.exit_code(), 2);
        assert_eq!(out, GO_DEMO_BOGUS);
    }

    #[test]
    fn defaults_when_no_args() {
        let d = demo("demo");
        let m = ok(&d, &[]);
        assert!(!*m.get(&d.b));
        assert!(*m.get(&d.verbose));
        assert_eq!(m.get(&d.socket), "/tmp/spire-server/private/api.sock");
        assert_eq!(m.get(&d.empty), "");
        assert_eq!(*m.get(&d.n), 7);
        assert_eq!(*m.get(&d.expiry), -5);
        assert_eq!(*m.get(&d.u), 3);
        assert_eq!(m.get(&d.ttl).to_string(), "1h30m0s");
        assert!(m.get(&d.selector).is_empty());
        assert_eq!(m.get(&d.pre).as_slice(), ["x", "y"]);
        assert_eq!(m.get(&d.timeout).0, GoDuration::from_secs(5));
        assert_eq!(m.nflag(), 0);
        assert!(m.args().is_empty());
    }

    // Expected values and messages below were observed with the Go program.
    #[test]
    fn value_errors_match_go() {
        let d = demo("demo");
        let cases: &[(&[&str], &str)] = &[
            (
                &["-x509SVIDTTL", "abc"],
                "invalid value \"abc\" for flag -x509SVIDTTL: parse error",
            ),
            (
                &["-x509SVIDTTL", "99999999999999999999"],
                "invalid value \"99999999999999999999\" for flag -x509SVIDTTL: value out of range",
            ),
            (&["-x509SVIDTTL"], "flag needs an argument: -x509SVIDTTL"),
            (
                &["-b=maybe"],
                "invalid boolean value \"maybe\" for -b: parse error",
            ),
            (
                &["-b=tRUE"],
                "invalid boolean value \"tRUE\" for -b: parse error",
            ),
            (&["-b="], "invalid boolean value \"\" for -b: parse error"),
            (&["---x"], "bad flag syntax: ---x"),
            (&["-=x"], "bad flag syntax: -=x"),
            (&["--=x"], "bad flag syntax: --=x"),
            (
                &["-ttl", "x"],
                "invalid value \"x\" for flag -ttl: parse error",
            ),
            (
                &["-ttl", ""],
                "invalid value \"\" for flag -ttl: parse error",
            ),
            (
                &["-ttl", "9223372036854775808ns"],
                "invalid value \"9223372036854775808ns\" for flag -ttl: parse error",
            ),
            (
                &["-timeout", "x"],
                "invalid value \"x\" for flag -timeout: time: invalid duration \"x\"",
            ),
            (
                &["-u", "-1"],
                "invalid value \"-1\" for flag -u: parse error",
            ),
            (
                &["-u", "18446744073709551616"],
                "invalid value \"18446744073709551616\" for flag -u: value out of range",
            ),
            (
                &["-entryExpiry", "9223372036854775808"],
                "invalid value \"9223372036854775808\" for flag -entryExpiry: value out of range",
            ),
            (
                &["-socketPath=", "-e=a=b"],
                "flag provided but not defined: -e",
            ),
            (&["-b", "--nope=1"], "flag provided but not defined: -nope"),
            (
                &["-x509SVIDTTL", "\"q\"\n"],
                "invalid value \"\\\"q\\\"\\n\" for flag -x509SVIDTTL: parse error",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(err(&d, args), *want, "{args:?}");
        }
    }

    #[test]
    fn flag_syntax_matches_go() {
        let d = demo("demo");

        let m = ok(&d, &["-b=false"]);
        assert!(!*m.get(&d.b));
        assert_eq!(m.nflag(), 1);
        assert!(m.is_set(&d.b));

        let m = ok(&d, &["--b", "-verbose=0"]);
        assert!(*m.get(&d.b));
        assert!(!*m.get(&d.verbose));
        assert_eq!(m.set_names().collect::<Vec<_>>(), ["b", "verbose"]);

        // A bool flag never takes the next argument.
        let m = ok(&d, &["-b", "false"]);
        assert!(*m.get(&d.b));
        assert_eq!(m.args(), ["false"]);

        let m = ok(&d, &["-b=T", "-verbose=F"]);
        assert!(*m.get(&d.b) && !*m.get(&d.verbose));
        let m = ok(&d, &["-b=TRUE"]);
        assert!(*m.get(&d.b));
        let m = ok(&d, &["-b=1", "-verbose=0"]);
        assert!(*m.get(&d.b) && !*m.get(&d.verbose));

        // "--" ends the flags and is dropped; "-" is positional.
        let m = ok(&d, &["--", "-b"]);
        assert!(!*m.get(&d.b));
        assert_eq!(m.args(), ["-b"]);
        let m = ok(&d, &["-", "-b"]);
        assert_eq!(m.args(), ["-", "-b"]);

        // Parsing stops at the first non-flag argument.
        let m = ok(&d, &["pos", "-b"]);
        assert!(!*m.get(&d.b));
        assert_eq!(m.args(), ["pos", "-b"]);
        assert_eq!(m.arg(0), "pos");
        assert_eq!(m.arg(5), "");
        assert_eq!(m.narg(), 2);

        let m = ok(&d, &[""]);
        assert_eq!(m.args(), [""]);
        let m = ok(&d, &["-b", "", "-b"]);
        assert_eq!(m.args(), ["", "-b"]);

        // A flag's value may look like a flag.
        let m = ok(&d, &["-empty", "-b"]);
        assert_eq!(m.get(&d.empty), "-b");
        assert!(!*m.get(&d.b));

        let m = ok(&d, &["-socketPath="]);
        assert_eq!(m.get(&d.socket), "");
        assert!(m.is_set_name("socketPath"));

        let m = ok(&d, &["-empty=a=b"]);
        assert_eq!(m.get(&d.empty), "a=b");

        let m = ok(&d, &["-ttl", "1.5h", "-timeout", "1h", "--u", "0x10"]);
        assert_eq!(*m.get(&d.ttl), GoDuration::from_secs(5400));
        assert_eq!(m.get(&d.timeout).0.to_string(), "1h0m0s");
        assert_eq!(*m.get(&d.u), 16);

        let m = ok(&d, &["-ttl=-1m"]);
        assert_eq!(m.get(&d.ttl).to_string(), "-1m0s");

        let m = ok(&d, &["-selector", "a", "-selector", "b", "--selector=c"]);
        assert_eq!(m.get(&d.selector).as_slice(), ["a", "b", "c"]);
        assert_eq!(m.nflag(), 1);

        // A repeatable flag with a non-empty default keeps appending to it.
        let m = ok(&d, &["-pre", "z"]);
        assert_eq!(m.get(&d.pre).as_slice(), ["x", "y", "z"]);

        let m = ok(&d, &["-entryExpiry", "-9223372036854775808"]);
        assert_eq!(*m.get(&d.expiry), i64::MIN);
        let m = ok(&d, &["-u", "18446744073709551615"]);
        assert_eq!(*m.get(&d.u), u64::MAX);
        let m = ok(&d, &["-ttl", "9223372036854775807ns"]);
        assert_eq!(m.get(&d.ttl).to_string(), "2562047h47m16.854775807s");

        for (text, want) in [
            ("0x1F", 31),
            ("0o17", 15),
            ("017", 15),
            ("0b101", 5),
            ("1_000", 1000),
            ("-0x10", -16),
            ("+5", 5),
        ] {
            let m = ok(&d, &["-x509SVIDTTL", text]);
            assert_eq!(*m.get(&d.ttl_int), want, "{text}");
        }
        // The last occurrence wins for scalar flags.
        let m = ok(&d, &["-n", "1", "-n=2"]);
        assert_eq!(*m.get(&d.n), 2);
    }

    #[test]
    fn each_parse_starts_from_defaults() {
        let d = demo("demo");
        let first = ok(&d, &["-selector", "a", "-n", "9"]);
        let second = ok(&d, &[]);
        assert_eq!(first.get(&d.selector).as_slice(), ["a"]);
        assert!(second.get(&d.selector).is_empty());
        assert_eq!(*second.get(&d.n), 7);
    }

    #[test]
    fn unnamed_set_and_print_defaults_rules() {
        #[derive(Debug, Clone, Default)]
        struct OnlyTrue(bool);
        impl Value for OnlyTrue {
            fn set(&mut self, raw: &str) -> Result<(), ValueError> {
                if raw == "true" {
                    self.0 = true;
                    Ok(())
                } else {
                    Err(ValueError::new("only true allowed"))
                }
            }
            fn to_go_string(&self) -> String {
                self.0.to_string()
            }
            fn zero_string(&self) -> String {
                "false".into()
            }
            fn is_bool_flag(&self) -> bool {
                true
            }
        }

        let mut fs = FlagSet::new("");
        fs.bool("é", false, "multibyte one-letter bool");
        fs.bool("k", false, "a `thing` here");
        fs.string("one", "", "single ` quote");
        fs.int("z", 0, "");
        let cb = fs.var("cb", OnlyTrue::default(), "custom bool");
        fs.string("two", "x", "``empty name");
        // Observed with Go 1.26 (PrintDefaults of the same set).
        let want = "Usage:\n  -cb\n    \tcustom bool\n  -k thing\n    \ta thing here\n  \
                    -one string\n    \tsingle ` quote\n  -two\n    \tempty name (default \"x\")\n  \
                    -z int\n    \t\n  -é\n    \tmultibyte one-letter bool\n";
        assert_eq!(fs.usage_string(), want);

        let mut out = Vec::new();
        let e = fs.parse(&["-cb=false"], &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid boolean value \"false\" for -cb: only true allowed"
        );
        assert_eq!(String::from_utf8(out).unwrap(), format!("{e}\n{want}"));

        let mut out = Vec::new();
        let m = fs.parse(&["-cb", "-é", "x"], &mut out).unwrap();
        assert!(m.get(&cb).0);
        assert_eq!(m.args(), ["x"]);
        assert!(m.is_set_name("é"));

        let m = fs
            .parse(&["-é=1", "-k=0", "-one=", "--", "a"], &mut out)
            .unwrap();
        assert_eq!(m.args(), ["a"]);
        assert_eq!(m.nflag(), 3);
    }

    #[test]
    fn implicit_true_rejected_by_custom_bool() {
        #[derive(Debug, Clone, Default)]
        struct Never;
        impl Value for Never {
            fn set(&mut self, _raw: &str) -> Result<(), ValueError> {
                Err(ValueError::new("never"))
            }
            fn to_go_string(&self) -> String {
                String::new()
            }
            fn is_bool_flag(&self) -> bool {
                true
            }
        }
        let mut fs = FlagSet::new("x");
        fs.var("nv", Never, "never settable");
        let mut out = Vec::new();
        let e = fs.parse(&["-nv"], &mut out).unwrap_err();
        assert_eq!(e.to_string(), "invalid boolean flag nv: never");
    }

    #[test]
    fn custom_usage_replaces_default() {
        let mut fs = FlagSet::new("cmd");
        fs.bool("v", false, "verbose");
        fs.set_usage(|set, out| {
            let _ = writeln!(out, "custom usage for {}", set.name());
            set.print_defaults(out);
        });
        let mut out = Vec::new();
        assert_eq!(
            fs.parse(&["-x"], &mut out).unwrap_err(),
            FlagError::NotDefined("x".into())
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "flag provided but not defined: -x\ncustom usage for cmd\n  -v\tverbose\n"
        );
    }

    #[test]
    fn defining_help_flags_disables_help() {
        let mut fs = FlagSet::new("cmd");
        let h = fs.bool("h", false, "my own h");
        let mut out = Vec::new();
        let m = fs.parse(&["-h"], &mut out).unwrap();
        assert!(*m.get(&h));
        // -help is still the built-in.
        assert_eq!(fs.parse(&["-help"], &mut out).unwrap_err(), FlagError::Help);
    }

    #[test]
    fn definition_errors_are_reported_like_go_panics() {
        let mut fs = FlagSet::new("entry create");
        fs.string("a", "", "");
        fs.string("a", "", "");
        fs.bool("-b", false, "");
        fs.bool("c=d", false, "");
        assert_eq!(
            fs.definition_errors(),
            [
                "entry create flag redefined: a",
                "flag \"-b\" begins with -",
                "flag \"c=d\" contains =",
            ]
        );
        let mut out = Vec::new();
        let e = fs.parse(&[] as &[&str], &mut out).unwrap_err();
        assert_eq!(e.to_string(), "entry create flag redefined: a");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "entry create flag redefined: a\n"
        );

        let mut unnamed = FlagSet::new("");
        unnamed.int("n", 0, "");
        unnamed.int("n", 0, "");
        assert_eq!(unnamed.definition_errors(), ["flag redefined: n"]);
    }

    #[test]
    fn aliases_share_one_value() {
        // SPIRE's `fetch jwt` registers its -output value a second time as -format.
        let mut fs = FlagSet::new("fetch jwt");
        let output = fs.var("output", StringsFlag::default(), "Desired output format");
        let format = fs.alias("format", "deprecated; use -output", &output);
        let mut out = Vec::new();
        let m = fs
            .parse(&["-format", "json", "-output", "pretty"], &mut out)
            .unwrap();
        assert_eq!(m.get(&output).as_slice(), ["json", "pretty"]);
        assert_eq!(m.get(&format).as_slice(), ["json", "pretty"]);
        assert!(m.is_set(&output));
        assert_eq!(m.set_names().collect::<Vec<_>>(), ["format", "output"]);
        assert_eq!(
            fs.usage_string(),
            "Usage of fetch jwt:\n  -format value\n    \tdeprecated; use -output\n  \
             -output value\n    \tDesired output format\n"
        );

        let other = FlagSet::new("other").var("o", 0i64, "");
        fs.alias("x", "", &other);
        assert_eq!(
            fs.definition_errors(),
            ["flag \"x\" aliases a flag of another set"]
        );
    }

    #[test]
    fn handles_from_other_sets_yield_their_default() {
        let mut a = FlagSet::new("a");
        let mut b = FlagSet::new("b");
        let fa = a.int("n", 1, "");
        let fb = b.int("n", 2, "");
        let mut out = Vec::new();
        let m = a.parse(&["-n", "5"], &mut out).unwrap();
        assert_eq!(*m.get(&fa), 5);
        assert_eq!(*m.get(&fb), 2);
        assert!(!m.is_set(&fb));
        assert_eq!(*fb.default_value(), 2);
    }

    #[test]
    fn set_lookup_and_value_access() {
        let d = demo("demo");
        let mut m = ok(&d, &[]);
        assert!(m.set("n", "0x20").is_ok());
        assert_eq!(*m.get(&d.n), 32);
        assert!(m.is_set_name("n"));
        assert_eq!(
            m.set("nope", "1").unwrap_err().to_string(),
            "no such flag -nope"
        );
        assert_eq!(m.set("n", "x").unwrap_err().to_string(), "parse error");
        assert_eq!(
            m.value("ttl").map(|v| v.to_go_string()),
            Some("1h30m0s".into())
        );
        assert!(m.value("nope").is_none());

        let info = d.fs.lookup("socketPath").unwrap();
        assert_eq!(info.def_value, "/tmp/spire-server/private/api.sock");
        assert_eq!(info.usage, "Path to the SPIRE Server API socket");
        assert!(d.fs.lookup("nope").is_none());
        let names: Vec<_> = d.fs.flags().map(|f| f.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(d.fs.name(), "demo");
        let cloned = d.fs.clone();
        assert_eq!(cloned.usage_string(), GO_DEMO_USAGE);
    }

    #[test]
    fn help_text_is_spire_adapter_help() {
        let d = demo("demo");
        let mut out = Vec::new();
        assert_eq!(d.fs.help_text(&mut out), "flag: help requested");
        assert_eq!(String::from_utf8(out).unwrap(), GO_DEMO_USAGE);
    }

    #[test]
    fn unquote_usage_rules() {
        assert_eq!(
            unquote_usage("search `directory` for include files", &String::new()),
            (
                "directory".into(),
                "search directory for include files".into()
            )
        );
        assert_eq!(
            unquote_usage("a `b` and `c`", &0i64),
            ("b".into(), "a b and `c`".into())
        );
        assert_eq!(
            unquote_usage("one ` only", &0i64),
            ("int".into(), "one ` only".into())
        );
        assert_eq!(unquote_usage("x", &false), (String::new(), "x".into()));
        assert_eq!(unquote_usage("x", &0u64), ("uint".into(), "x".into()));
        assert_eq!(
            unquote_usage("x", &GoDuration::ZERO),
            ("duration".into(), "x".into())
        );
        assert_eq!(
            unquote_usage("x", &StringsFlag::default()),
            ("value".into(), "x".into())
        );
    }

    #[test]
    fn non_ascii_flag_names_do_not_panic() {
        let d = demo("demo");
        assert_eq!(err(&d, &["-é=1"]), "flag provided but not defined: -é");
        assert_eq!(err(&d, &["--日本"]), "flag provided but not defined: -日本");
    }
}
