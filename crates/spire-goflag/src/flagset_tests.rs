//! Unit tests of the flag set.
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
