//! [`FlagSet`]: Go's `flag.FlagSet` with `ContinueOnError` handling.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::FlagError;
use crate::value::{StringsFlag, Value};
use spire_gocompat::GoDuration;
use spire_gocompat::strconv::quote;

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
    /// [`spire_gocompat::parse_go_duration`].
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
#[path = "flagset_tests.rs"]
mod tests;
