//! End-to-end checks against output captured from reference SPIRE 1.13.3
//! binaries (`testdata/server_*.txt`, `testdata/agent_*.txt`: the standard
//! error of the command line named in each test; standard output was empty
//! in every case).

use crate::{
    Cli, CommaStringsFlag, Command, DurationFlag, FlagSet, GoDuration, Io, Outcome, Value,
    ValueError,
};

const SERVER_SOCKET: &str = "/tmp/spire-server/private/api.sock";
const AGENT_SOCKET: &str = "/tmp/spire-agent/public/api.sock";

/// SPIRE's `cliprinter.FormatterFlag`: prints as `pretty` by default, which
/// is also its zero value's text, so usage shows no default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Formatter(Option<String>);

impl Value for Formatter {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        match (&self.0, raw) {
            (Some(prev), _) if prev != raw => Err(ValueError::new(format!(
                "the output format has already been set to {}",
                spire_gocompat::strconv::quote(prev)
            ))),
            (_, "pretty" | "json") => {
                self.0 = Some(raw.to_owned());
                Ok(())
            }
            _ => Err(ValueError::new(format!(
                "bad formatter flag: unknown format: {}",
                spire_gocompat::strconv::quote(raw)
            ))),
        }
    }

    fn to_go_string(&self) -> String {
        self.0.clone().unwrap_or_else(|| "pretty".to_owned())
    }

    fn zero_string(&self) -> String {
        "pretty".to_owned()
    }
}

const OUTPUT_USAGE: &str = "Desired output format (pretty, json); default: pretty.";

/// SPIRE's server `util.Adapter`: `Help()` returns
/// `Parse(["-h"]).Error()`, `Run` returns 1 on a parse error.
struct ServerAdapter {
    synopsis: &'static str,
    flags: FlagSet,
}

impl ServerAdapter {
    fn new(name: &str, synopsis: &'static str, append: impl FnOnce(&mut FlagSet)) -> ServerAdapter {
        let mut flags = FlagSet::new(name);
        flags.string(
            "socketPath",
            SERVER_SOCKET,
            "Path to the SPIRE Server API socket",
        );
        append(&mut flags);
        ServerAdapter { synopsis, flags }
    }
}

impl Command for ServerAdapter {
    fn synopsis(&self) -> String {
        self.synopsis.to_owned()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        self.flags.help_text(io.stderr)
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        match self.flags.parse(args, io.stderr) {
            Err(_) => 1,
            Ok(m) => {
                let _ = writeln!(io.stdout, "ran {} {:?}", self.flags.name(), m.args());
                0
            }
        }
    }
}

/// SPIRE's agent `api` adapter: `Help()` prints usage and returns "".
struct AgentAdapter {
    synopsis: &'static str,
    flags: FlagSet,
}

impl AgentAdapter {
    fn new(name: &str, synopsis: &'static str, append: impl FnOnce(&mut FlagSet)) -> AgentAdapter {
        let mut flags = FlagSet::new(name);
        flags.var(
            "timeout",
            DurationFlag(GoDuration::from_secs(5)),
            "Time to wait for a response",
        );
        flags.string(
            "socketPath",
            AGENT_SOCKET,
            "Path to the SPIRE Agent API Unix domain socket",
        );
        append(&mut flags);
        AgentAdapter { synopsis, flags }
    }
}

impl Command for AgentAdapter {
    fn synopsis(&self) -> String {
        self.synopsis.to_owned()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        let _ = self.flags.help_text(io.stderr);
        String::new()
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        match self.flags.parse(args, io.stderr) {
            Err(e) => {
                let _ = writeln!(io.stderr, "{e}");
                1
            }
            Ok(_) => 0,
        }
    }
}

/// A command whose flags do not matter here.
struct Plain(&'static str);

impl Command for Plain {
    fn synopsis(&self) -> String {
        self.0.to_owned()
    }

    fn help(&self, _io: &mut Io<'_>) -> String {
        String::new()
    }

    fn run(&self, _args: &[String], _io: &mut Io<'_>) -> i32 {
        0
    }
}

fn entry_filter_flags(f: &mut FlagSet, what: &str) {
    f.string(
        "parentID",
        "",
        &format!("The Parent ID of the records to {what}"),
    );
    f.string(
        "spiffeID",
        "",
        &format!("The SPIFFE ID of the records to {what}"),
    );
    f.bool(
        "downstream",
        false,
        "A boolean value that, when set, indicates that the entry describes a downstream SPIRE server",
    );
    f.strings(
        "selector",
        "A colon-delimited type:value selector. Can be used more than once",
    );
    f.strings(
        "federatesWith",
        "SPIFFE ID of a trust domain an entry is federate with. Can be used more than once",
    );
    f.string(
        "matchFederatesWithOn",
        "superset",
        "The match mode used when filtering by federates with. Options: exact, any, superset and subset",
    );
    f.string(
        "matchSelectorsOn",
        "superset",
        "The match mode used when filtering by selectors. Options: exact, any, superset and subset",
    );
    f.string(
        "hint",
        "",
        &format!("The Hint of the records to {what} (optional)"),
    );
    f.var("output", Formatter::default(), OUTPUT_USAGE);
}

/// The flags of `entry create` and (with another -entryID text and no
/// -node) `entry update`, in SPIRE's registration order.
fn entry_write_flags(f: &mut FlagSet, entry_id_usage: &str, node: bool) {
    f.string("entryID", "", entry_id_usage);
    f.string("parentID", "", "The SPIFFE ID of this record's parent");
    f.string("spiffeID", "", "The SPIFFE ID that this record represents");
    f.int(
        "x509SVIDTTL",
        0,
        "The lifetime, in seconds, for x509-SVIDs issued based on this registration entry.",
    );
    f.int(
        "jwtSVIDTTL",
        0,
        "The lifetime, in seconds, for JWT-SVIDs issued based on this registration entry.",
    );
    f.string(
        "data",
        "",
        "Path to a file containing registration JSON (optional). If set to '-', read the JSON from stdin.",
    );
    f.strings(
        "selector",
        "A colon-delimited type:value selector. Can be used more than once",
    );
    f.strings(
        "federatesWith",
        "SPIFFE ID of a trust domain to federate with. Can be used more than once",
    );
    if node {
        f.bool(
            "node",
            false,
            "If set, this entry will be applied to matching nodes rather than workloads",
        );
    }
    f.bool(
        "admin",
        false,
        "If set, the SPIFFE ID in this entry will be granted access to the SPIRE Server's management APIs",
    );
    f.bool(
        "storeSVID",
        false,
        "A boolean value that, when set, indicates that the resulting issued SVID from this entry must be stored through an SVIDStore plugin",
    );
    f.bool(
        "downstream",
        false,
        "A boolean value that, when set, indicates that the entry describes a downstream SPIRE server",
    );
    f.int64(
        "entryExpiry",
        0,
        "An expiry, from epoch in seconds, for the resulting registration entry to be pruned",
    );
    f.strings(
        "dns",
        "A DNS name that will be included in SVIDs issued based on this entry, where appropriate. Can be used more than once",
    );
    f.string(
        "hint",
        "",
        "The entry hint, used to disambiguate entries with the same SPIFFE ID",
    );
    f.var("output", Formatter::default(), OUTPUT_USAGE);
}

fn server_cli() -> Cli {
    let mut cli = Cli::new("spire-server", "1.13.3-dev-unk");
    for path in [
        &["agent", "ban"][..],
        &["agent", "count"],
        &["agent", "evict"],
        &["agent", "list"],
        &["agent", "show"],
        &["agent", "purge"],
        &["bundle", "count"],
        &["bundle", "show"],
        &["bundle", "list"],
        &["bundle", "set"],
        &["bundle", "delete"],
        &["federation", "create"],
        &["federation", "delete"],
        &["federation", "list"],
        &["federation", "show"],
        &["federation", "refresh"],
        &["federation", "update"],
        &["logger", "get"],
        &["logger", "set"],
        &["logger", "reset"],
        &["token", "generate"],
        &["x509", "mint"],
        &["jwt", "mint"],
        &["localauthority", "x509", "show"],
        &["localauthority", "x509", "prepare"],
        &["localauthority", "x509", "activate"],
        &["localauthority", "x509", "taint"],
        &["localauthority", "x509", "revoke"],
        &["localauthority", "jwt", "show"],
        &["localauthority", "jwt", "prepare"],
        &["localauthority", "jwt", "activate"],
        &["localauthority", "jwt", "taint"],
        &["localauthority", "jwt", "revoke"],
        &["upstreamauthority", "taint"],
        &["upstreamauthority", "revoke"],
    ] {
        cli.command(path, Plain("irrelevant"));
    }
    cli.command(&["run"], Plain("Runs the server"));
    cli.command(&["healthcheck"], Plain("Determines server health status"));
    cli.command(
        &["validate"],
        Plain("Validates a SPIRE server configuration file"),
    );
    cli.command(
        &["entry", "count"],
        ServerAdapter::new("entry count", "Count registration entries", |f| {
            entry_filter_flags(f, "count");
        }),
    );
    cli.command(
        &["entry", "create"],
        ServerAdapter::new("entry create", "Creates registration entries", |f| {
            entry_write_flags(
                f,
                "A custom ID for this registration entry (optional). If not set, a new entry ID will be generated",
                true,
            );
        }),
    );
    cli.command(
        &["entry", "delete"],
        ServerAdapter::new("entry delete", "Deletes registration entries", |f| {
            f.string("entryID", "", "The Registration Entry ID of the record to delete.");
            f.string(
                "file",
                "",
                "Path to a file containing a JSON structure for batch deletion (optional). If set to '-', read from stdin.",
            );
            f.var("output", Formatter::default(), OUTPUT_USAGE);
        }),
    );
    cli.command(
        &["entry", "show"],
        ServerAdapter::new(
            "entry show",
            "Displays configured registration entries",
            |f| {
                f.string("entryID", "", "The Entry ID of the records to show");
                entry_filter_flags(f, "show");
            },
        ),
    );
    cli.command(
        &["entry", "update"],
        ServerAdapter::new("entry update", "Updates registration entries", |f| {
            entry_write_flags(
                f,
                "The Registration Entry ID of the record to update",
                false,
            );
        }),
    );
    cli
}

fn fetch_x509() -> AgentAdapter {
    AgentAdapter::new(
        "fetch x509",
        "Fetches X509 SVIDs from the Workload API",
        |f| {
            f.bool("silent", false, "Suppress stdout");
            f.string(
                "write",
                "",
                "Write SVID data to the specified path (optional; only available for pretty output format)",
            );
            f.var("output", Formatter::default(), OUTPUT_USAGE);
        },
    )
}

/// SPIRE's `WatchCLI`: its help parses `-h` with a set holding only the
/// socket flag.
struct Watch;

impl Command for Watch {
    fn synopsis(&self) -> String {
        "Attaches to the Workload API and prints updates as they're received".to_owned()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        let mut fs = FlagSet::new("watch");
        fs.string(
            "socketPath",
            AGENT_SOCKET,
            "Path to the SPIRE Agent API Unix domain socket",
        );
        fs.help_text(io.stderr)
    }

    fn run(&self, _args: &[String], _io: &mut Io<'_>) -> i32 {
        0
    }
}

fn agent_cli() -> Cli {
    let mut cli = Cli::new("spire-agent", "1.13.3-dev-unk");
    cli.command(&["api", "fetch"], fetch_x509());
    cli.command(&["api", "fetch", "x509"], fetch_x509());
    cli.command(
        &["api", "fetch", "jwt"],
        AgentAdapter::new(
            "fetch jwt",
            "Fetches a JWT SVID from the Workload API",
            |f| {
                f.var(
                    "audience",
                    CommaStringsFlag::default(),
                    "comma separated list of audience values",
                );
                f.string("spiffeID", "", "SPIFFE ID subject (optional)");
                let output = f.var("output", Formatter::default(), OUTPUT_USAGE);
                f.alias("format", "deprecated; use -output", &output);
            },
        ),
    );
    cli.command(
        &["api", "validate", "jwt"],
        AgentAdapter::new("validate jwt", "Validates a JWT SVID", |_| {}),
    );
    cli.command(&["api", "watch"], Watch);
    cli.command(&["run"], Plain("Runs the agent"));
    cli.command(&["healthcheck"], Plain("Determines agent health status"));
    cli.command(
        &["validate"],
        Plain("Validates a SPIRE agent configuration file"),
    );
    cli
}

struct Run {
    outcome: Outcome,
    stdout: String,
    stderr: String,
}

fn run(cli: &Cli, args: &[&str]) -> Run {
    let mut stdin: &[u8] = b"";
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let outcome = {
        let mut io = Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        cli.run(args, &mut io)
    };
    Run {
        outcome,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

#[track_caller]
fn check(cli: &Cli, args: &[&str], code: i32, want_stderr: &str) {
    let r = run(cli, args);
    assert_eq!(r.stderr, want_stderr, "stderr of {args:?}");
    assert_eq!(r.stdout, "", "stdout of {args:?}");
    assert_eq!(r.outcome.code, code, "exit code of {args:?}");
    assert_eq!(r.outcome.error, None);
}

const SERVER_NOARGS: &str = include_str!("../testdata/server_noargs.txt");
const SERVER_ENTRY: &str = include_str!("../testdata/server_entry.txt");
const SERVER_ENTRY_CREATE_H: &str = include_str!("../testdata/server_entry_create_h.txt");
const SERVER_ENTRY_CREATE_BOGUS: &str = include_str!("../testdata/server_entry_create_bogus.txt");
const SERVER_ENTRY_CREATE_TTL_ABC: &str =
    include_str!("../testdata/server_entry_create_ttl_abc.txt");
const SERVER_LOCALAUTHORITY: &str = include_str!("../testdata/server_localauthority.txt");
const SERVER_FLAGS_BEFORE: &str = include_str!("../testdata/server_flags_before.txt");
const SERVER_VERSION: &str = include_str!("../testdata/server_version.txt");
const AGENT_NOARGS: &str = include_str!("../testdata/agent_noargs.txt");
const AGENT_API: &str = include_str!("../testdata/agent_api.txt");
const AGENT_API_FETCH_H: &str = include_str!("../testdata/agent_api_fetch_h.txt");

#[test]
fn server_command_list() {
    let cli = server_cli();
    // `spire-server`, `spire-server entr`: exit 127; `-h`: exit 0.
    check(&cli, &[], 127, SERVER_NOARGS);
    check(&cli, &["entr"], 127, SERVER_NOARGS);
    check(&cli, &["-h"], 0, SERVER_NOARGS);
    check(&cli, &["--help"], 0, SERVER_NOARGS);
    check(&cli, &["-help"], 0, SERVER_NOARGS);
}

#[test]
fn server_version() {
    let cli = server_cli();
    for v in ["-v", "-version", "--version"] {
        check(&cli, &[v], 0, SERVER_VERSION);
    }
}

#[test]
fn server_entry_create_help_and_errors() {
    let cli = server_cli();
    check(&cli, &["entry", "create", "-h"], 0, SERVER_ENTRY_CREATE_H);
    check(
        &cli,
        &["entry", "create", "-bogus"],
        1,
        SERVER_ENTRY_CREATE_BOGUS,
    );
    check(
        &cli,
        &["entry", "create", "-x509SVIDTTL", "abc"],
        1,
        SERVER_ENTRY_CREATE_TTL_ABC,
    );
    check(&cli, &["-x", "entry", "create"], 1, SERVER_FLAGS_BEFORE);
}

#[test]
fn server_parent_commands_list_subcommands() {
    let cli = server_cli();
    check(&cli, &["entry"], 1, SERVER_ENTRY);
    check(&cli, &["entry", "bogus"], 1, SERVER_ENTRY);
    check(&cli, &["localauthority"], 1, SERVER_LOCALAUTHORITY);
    // The longest registered prefix "localauthority x509 show" fails the
    // word-boundary check, and mitchellh/cli then falls back to the first
    // word rather than to "localauthority x509".
    check(
        &cli,
        &["localauthority", "x509", "showx"],
        1,
        SERVER_LOCALAUTHORITY,
    );
}

#[test]
fn server_entry_create_runs() {
    let cli = server_cli();
    let r = run(
        &cli,
        &[
            "entry",
            "create",
            "-spiffeID",
            "spiffe://x/y",
            "-node",
            "rest",
            "-z",
        ],
    );
    assert_eq!(r.outcome.code, 0);
    assert_eq!(r.stderr, "");
    assert_eq!(r.stdout, "ran entry create [\"rest\", \"-z\"]\n");
}

#[test]
fn agent_command_lists() {
    let cli = agent_cli();
    check(&cli, &[], 127, AGENT_NOARGS);
    check(&cli, &["api"], 1, AGENT_API);
    check(&cli, &["api", "fetch", "-h"], 0, AGENT_API_FETCH_H);
}
