//! Unit tests of the command tree.
use super::*;
use crate::FlagSet;

/// Records its arguments on stdout and returns a fixed code.
struct Echo {
    name: &'static str,
    synopsis: &'static str,
    help: &'static str,
    code: i32,
}

impl Command for Echo {
    fn synopsis(&self) -> String {
        self.synopsis.to_owned()
    }

    fn help(&self, _io: &mut Io<'_>) -> String {
        self.help.to_owned()
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        let _ = writeln!(io.stdout, "RUN {} {args:?}", self.name);
        self.code
    }
}

fn echo(name: &'static str, synopsis: &'static str, help: &'static str) -> Echo {
    Echo {
        name,
        synopsis,
        help,
        code: 3,
    }
}

/// Mirrors the throwaway Go program the expectations were observed with.
fn demo_cli() -> Cli {
    let mut cli = Cli::new("spire-server", "1.13.3-dev-unk");
    cli.command(&["run"], echo("run", "Runs the server", "run help"));
    cli.command(
        &["healthcheck"],
        echo("healthcheck", "Determines server health status", ""),
    );
    cli.command(
        &["localauthority", "x509", "show"],
        echo(
            "localauthority x509 show",
            "Shows the local authority",
            "la help",
        ),
    );
    cli.command(
        &["localauthority", "jwt", "show"],
        echo("localauthority jwt show", "Shows jwt", "la jwt help"),
    );
    cli.command(
        &["api", "fetch"],
        echo("api fetch", "Fetches an x509-SVID", "fetch help"),
    );
    cli.command(
        &["api", "fetch", "x509"],
        echo("api fetch x509", "Fetches an x509-SVID", "fetch x509 help"),
    );
    cli.command(
        &["api", "fetch", "jwt"],
        echo("api fetch jwt", "Fetches a JWT-SVID", "fetch jwt help"),
    );
    cli
}

struct Ran {
    code: i32,
    error: Option<CliError>,
    stdout: String,
    stderr: String,
}

fn run(cli: &Cli, args: &[&str]) -> Ran {
    let mut stdin: &[u8] = b"";
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let outcome = cli.run(
        args,
        &mut Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    Ran {
        code: outcome.code,
        error: outcome.error,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

const TOP: &str = "Usage: spire-server [--version] [--help] <command> [<args>]\n\n\
                   Available commands are:\n    \
                   api               \n    \
                   healthcheck       Determines server health status\n    \
                   localauthority    \n    \
                   run               Runs the server\n\n";

#[test]
fn top_level_help_and_unknown_commands() {
    let cli = demo_cli();
    for (args, code) in [
        (&[][..], 127),
        (&["-h"], 0),
        (&["--help"], 0),
        (&["entr"], 127),
        (&["entr", "-h"], 127),
        // A word containing a space ends argument processing.
        (&["localauthority x509"], 127),
        (&["-bogus"], 127),
        (&["--", "run"], 127),
    ] {
        let r = run(&cli, args);
        assert_eq!(r.stderr, TOP, "{args:?}");
        assert_eq!(r.stdout, "", "{args:?}");
        assert_eq!(r.code, code, "{args:?}");
    }
}

#[test]
fn routing_quirks_match_mitchellh_cli() {
    let cli = demo_cli();
    let cases: &[(&[&str], &str, i32)] = &[
        (&["api", "fetch"], "RUN api fetch []\n", 3),
        (
            &["api", "fetch", "x509", "a", "b"],
            "RUN api fetch x509 [\"a\", \"b\"]\n",
            3,
        ),
        (&["run", "-v"], "RUN run [\"-v\"]\n", 3),
        (&["run", "--", "-h"], "RUN run [\"--\", \"-h\"]\n", 3),
        (&["", "run"], "RUN run []\n", 3),
        // The word-boundary check is an unanchored regexp: "run" is
        // found at the end of "runx run".
        (&["runx", "run"], "RUN run [\"run\"]\n", 3),
    ];
    for (args, stdout, code) in cases {
        let r = run(&cli, args);
        assert_eq!(r.stdout, *stdout, "{args:?}");
        assert_eq!(r.stderr, "", "{args:?}");
        assert_eq!(r.code, *code, "{args:?}");
    }
}

#[test]
fn command_help_lists_subcommands() {
    let cli = demo_cli();
    let r = run(&cli, &["api", "fetch", "-h"]);
    assert_eq!(
        r.stderr,
        "fetch help\n\nSubcommands:\n    jwt     Fetches a JWT-SVID\n    x509    Fetches an x509-SVID\n"
    );
    assert_eq!(r.code, 0);

    let r = run(&cli, &["-h", "run"]);
    assert_eq!(r.stderr, "run help\n");
    assert_eq!(r.code, 0);

    let r = run(&cli, &["api"]);
    assert_eq!(
        r.stderr,
        format!("{PARENT_HELP}\n\nSubcommands:\n    fetch    Fetches an x509-SVID\n")
    );
    assert_eq!(r.code, 1);

    let r = run(&cli, &["localauthority", "x509", "bogus"]);
    assert_eq!(
        r.stderr,
        format!("{PARENT_HELP}\n\nSubcommands:\n    show    Shows the local authority\n")
    );
    assert_eq!(r.code, 1);

    // The longest prefix "api fetch x509" fails the word-boundary check,
    // so mitchellh/cli falls back to the first word, not to "api fetch".
    let r = run(&cli, &["api", "fetch", "x509x"]);
    assert_eq!(
        r.stderr,
        format!("{PARENT_HELP}\n\nSubcommands:\n    fetch    Fetches an x509-SVID\n")
    );
    assert_eq!(r.code, 1);

    for args in [&["localauthority"][..], &["localauthority", "x509 show"]] {
        let r = run(&cli, args);
        assert_eq!(
            r.stderr,
            format!("{PARENT_HELP}\n\nSubcommands:\n    jwt     \n    x509    \n")
        );
        assert_eq!(r.code, 1);
    }

    let r = run(&cli, &["localauthority"]);
    assert_eq!(
        r.stderr,
        format!("{PARENT_HELP}\n\nSubcommands:\n    jwt     \n    x509    \n")
    );

    let r = run(&cli, &["healthcheck", "-h"]);
    assert_eq!(r.stderr, "\n");
}

#[test]
fn flags_before_the_subcommand() {
    let cli = demo_cli();
    let r = run(&cli, &["-x", "run"]);
    assert_eq!(
        r.stderr,
        "Invalid flags before the subcommand. If these flags are for\n\
         the subcommand, please put them after the subcommand.\n\nrun help\n"
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
}

#[test]
fn version_flags() {
    let cli = demo_cli();
    for args in [&["-v"][..], &["--version"], &["-version"], &["-v", "run"]] {
        let r = run(&cli, args);
        assert_eq!(r.stderr, "1.13.3-dev-unk\n", "{args:?}");
        assert_eq!(r.code, 0);
    }
    // Without a version the flag is still consumed, and ignored.
    let mut cli = Cli::new("app", "");
    cli.command(&["run"], echo("run", "Runs", "run help"));
    let r = run(&cli, &["-v", "run"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (3, "RUN run []\n", "")
    );
}

#[test]
fn run_result_help_prints_help_and_exits_1() {
    let mut cli = Cli::new("app", "1");
    cli.command(
        &["x"],
        Echo {
            name: "x",
            synopsis: "X",
            help: "x help",
            code: RUN_RESULT_HELP,
        },
    );
    let r = run(&cli, &["x", "a"]);
    assert_eq!(r.stdout, "RUN x [\"a\"]\n");
    assert_eq!(r.stderr, "x help\n");
    assert_eq!(r.code, 1);
}

#[test]
fn hidden_commands_run_but_are_not_listed() {
    let mut cli = Cli::new("app", "1");
    cli.command(&["visible"], echo("visible", "Shown", ""));
    cli.command(&["secret"], echo("secret", "Hidden", ""));
    cli.hide(&["secret"]);
    let r = run(&cli, &["-h"]);
    assert_eq!(
        r.stderr,
        "Usage: app [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n    visible    Shown\n\n"
    );
    let r = run(&cli, &["secret"]);
    assert_eq!(r.stdout, "RUN secret []\n");
    assert_eq!(cli.command_paths(), ["secret", "visible"]);
}

#[test]
fn non_nested_cli_does_not_list_subcommands() {
    let mut cli = Cli::new("app", "1");
    cli.command(&["a"], echo("a", "A", "a help"));
    let r = run(&cli, &["a", "b", "-h"]);
    assert_eq!(r.stderr, "a help\n");
    let r = run(&cli, &["a", "b"]);
    assert_eq!(r.stdout, "RUN a [\"b\"]\n");
}

#[test]
fn root_command_receives_top_flags() {
    let mut cli = Cli::new("app", "1");
    cli.command(&[], echo("root", "Root", ""));
    cli.command(&["sub"], echo("sub", "Sub", ""));
    let r = run(&cli, &["-x", "--y"]);
    assert_eq!(r.stdout, "RUN root [\"-x\", \"--y\"]\n");
    let r = run(&cli, &["sub", "1"]);
    assert_eq!(r.stdout, "RUN sub [\"1\"]\n");
}

struct Recorder;

impl AutocompleteInstaller for Recorder {
    fn install(&self, name: &str) -> Result<(), String> {
        Err(format!("install {name}"))
    }

    fn uninstall(&self, _name: &str) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn autocomplete_flags() {
    let mut cli = demo_cli();
    let r = run(&cli, &["-autocomplete-install", "--autocomplete-uninstall"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.error, Some(CliError::AutocompleteConflict));
    assert_eq!(
        CliError::AutocompleteConflict.to_string(),
        "Either the autocomplete install or uninstall flag may be specified, but not both."
    );
    assert_eq!(r.stderr, "");

    let r = run(&cli, &["-autocomplete-install"]);
    assert_eq!(r.code, 1);
    assert!(matches!(r.error, Some(CliError::Autocomplete(_))));

    cli.set_autocomplete_installer(Recorder);
    let r = run(&cli, &["-autocomplete-install"]);
    assert_eq!(
        r.error,
        Some(CliError::Autocomplete("install spire-server".into()))
    );
    let r = run(&cli, &["--autocomplete-uninstall"]);
    assert_eq!((r.code, r.error), (0, None));

    // Help and version take precedence.
    let r = run(&cli, &["-autocomplete-install", "-v"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, "1.13.3-dev-unk\n"));
    let r = run(&cli, &["-h", "-autocomplete-install"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, TOP));

    cli.set_autocomplete(false);
    let r = run(&cli, &["-autocomplete-install"]);
    assert_eq!(r.code, 127);
    assert_eq!(r.stderr, TOP);
}

#[test]
fn flagset_backed_command() {
    struct Create {
        flags: FlagSet,
    }
    impl Command for Create {
        fn synopsis(&self) -> String {
            "Creates registration entries".into()
        }
        fn help(&self, io: &mut Io<'_>) -> String {
            self.flags.help_text(io.stderr)
        }
        fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
            match self.flags.parse(args, io.stderr) {
                Ok(m) => {
                    let _ = writeln!(io.stdout, "{:?}", m.args());
                    0
                }
                Err(_) => 1,
            }
        }
    }
    let mut flags = FlagSet::new("entry create");
    flags.bool("node", false, "If set, node");
    let mut cli = Cli::new("spire-server", "1");
    cli.command(&["entry", "create"], Create { flags });
    let usage = "Usage of entry create:\n  -node\n    \tIf set, node\n";

    // Observed with mitchellh/cli: -h anywhere before "--" is the router's.
    let r = run(&cli, &["entry", "create", "-node", "pos", "-h"]);
    assert_eq!(
        (r.code, r.stderr),
        (0, format!("{usage}flag: help requested\n"))
    );
    // "--h" reaches the flag parser, which prints usage; Run returns 1.
    let r = run(&cli, &["entry", "create", "--h"]);
    assert_eq!((r.code, r.stderr), (1, usage.to_owned()));
    let r = run(&cli, &["entry", "create", "--", "-h"]);
    assert_eq!((r.code, r.stdout), (0, "[\"-h\"]\n".to_owned()));
}

#[test]
fn helpers() {
    assert_eq!(subcommand_parent(""), "");
    assert_eq!(subcommand_parent("entry"), "");
    assert_eq!(
        subcommand_parent("localauthority x509 show"),
        "localauthority x509"
    );
    assert!(followed_by_space_or_end("entry create", "entry"));
    assert!(!followed_by_space_or_end("entry createx", "entry create"));
    assert!(followed_by_space_or_end("runx run", "run"));
    assert!(followed_by_space_or_end("anything", ""));
    assert_eq!(path_key(&["entry", "create"]), "entry create");
    assert_eq!(path_key(&[]), "");
    let cli = demo_cli();
    assert!(format!("{cli:?}").contains("spire-server"));
    assert_eq!(cli.name(), "spire-server");
}
