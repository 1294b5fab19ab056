//! [`Cli`]: the command router of `github.com/mitchellh/cli` (v1.1.5) as
//! SPIRE configures it (`cli.NewCLI(name, version)` with the default help
//! function, help and error output both going to standard error).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Read, Write};

/// What [`Command::run`] returns to have the router print the command's
/// help and exit with 1 (mitchellh/cli's `RunResultHelp`).
pub const RUN_RESULT_HELP: i32 = -18511;

/// The help text of the placeholder commands the router creates for
/// command-path prefixes that have no command of their own (`entry`,
/// `localauthority x509`).
pub const PARENT_HELP: &str = "This command is accessed by using one of the subcommands below.";

/// The standard streams a command uses; tests pass buffers.
pub struct Io<'a> {
    /// Standard input.
    pub stdin: &'a mut dyn Read,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error; the router writes all its own output here.
    pub stderr: &'a mut dyn Write,
}

impl fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Io { .. }")
    }
}

/// A command reachable through the router (mitchellh/cli's `Command`).
pub trait Command: Send + Sync {
    /// A one-line description shown in command lists.
    fn synopsis(&self) -> String;

    /// The long help text. It may also write to `io` as SPIRE's commands do
    /// (their `Help()` prints the flag usage to standard error and returns
    /// `flag: help requested`; see [`crate::FlagSet::help_text`]).
    fn help(&self, io: &mut Io<'_>) -> String;

    /// Runs the command with the arguments after the command path and
    /// returns the exit code; [`RUN_RESULT_HELP`] asks the router to print
    /// the help and exit with 1.
    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32;
}

/// Installs or removes shell completion for the program, for the
/// `-autocomplete-install` and `-autocomplete-uninstall` flags.
pub trait AutocompleteInstaller: Send + Sync {
    /// Installs completion for the program named `name`.
    fn install(&self, name: &str) -> Result<(), String>;
    /// Removes completion for the program named `name`.
    fn uninstall(&self, name: &str) -> Result<(), String>;
}

/// An error mitchellh/cli's `Run` returns besides the exit code (SPIRE logs
/// it with Go's `log.Println`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// Both autocomplete flags were given.
    #[error("Either the autocomplete install or uninstall flag may be specified, but not both.")]
    AutocompleteConflict,
    /// The autocomplete installer failed or none is configured.
    #[error("{0}")]
    Autocomplete(String),
}

/// The result of [`Cli::run`]: the process exit code and, rarely, an error
/// to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code.
    pub code: i32,
    /// An error to log (Go's second return value of `CLI.Run`).
    pub error: Option<CliError>,
}

impl Outcome {
    fn code(code: i32) -> Outcome {
        Outcome { code, error: None }
    }
}

/// The placeholder command for implicit parents.
struct ParentCommand;

impl Command for ParentCommand {
    fn synopsis(&self) -> String {
        String::new()
    }

    fn help(&self, _io: &mut Io<'_>) -> String {
        PARENT_HELP.to_owned()
    }

    fn run(&self, _args: &[String], _io: &mut Io<'_>) -> i32 {
        RUN_RESULT_HELP
    }
}

static PARENT: ParentCommand = ParentCommand;

/// A command-line router behaving like mitchellh/cli's `CLI` as created by
/// `cli.NewCLI(name, version)`.
///
/// Commands are registered under paths (`&["entry", "create"]`); the
/// command to run is found by longest prefix, `-h`/`-help`/`--help`
/// anywhere (before `--`) prints help, `-v`/`-version`/`--version` before
/// the command prints the version, an unknown command prints the command
/// list and exits with 127.
pub struct Cli {
    name: String,
    version: String,
    commands: BTreeMap<String, Box<dyn Command>>,
    hidden: BTreeSet<String>,
    autocomplete: bool,
    installer: Option<Box<dyn AutocompleteInstaller>>,
}

impl fmt::Debug for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cli")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("commands", &self.commands.keys().collect::<Vec<_>>())
            .field("hidden", &self.hidden)
            .field("autocomplete", &self.autocomplete)
            .finish()
    }
}

/// What the router learned from the arguments (mitchellh/cli's
/// `processArgs`).
#[derive(Debug, Default, PartialEq, Eq)]
struct ArgInfo {
    is_help: bool,
    is_version: bool,
    is_autocomplete_install: bool,
    is_autocomplete_uninstall: bool,
    subcommand: String,
    subcommand_args: Vec<String>,
    top_flags: Vec<String>,
}

impl Cli {
    /// A router for the program `name` (used in the usage line) reporting
    /// `version` for `-v` (an empty version disables the version flags).
    /// Autocomplete flags are recognised, as with `cli.NewCLI`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Cli {
        Cli {
            name: name.into(),
            version: version.into(),
            commands: BTreeMap::new(),
            hidden: BTreeSet::new(),
            autocomplete: true,
            installer: None,
        }
    }

    /// Registers `command` under `path` (e.g. `&["entry", "create"]`),
    /// replacing any command there. Missing parents (`entry`) become
    /// placeholder commands listing their subcommands.
    pub fn command(&mut self, path: &[&str], command: impl Command + 'static) -> &mut Cli {
        self.commands.insert(path_key(path), Box::new(command));
        self
    }

    /// Registers a boxed command (see [`Cli::command`]).
    pub fn boxed_command(&mut self, path: &[&str], command: Box<dyn Command>) -> &mut Cli {
        self.commands.insert(path_key(path), command);
        self
    }

    /// Leaves the command at `path` out of help listings
    /// (`HiddenCommands`); it still runs.
    pub fn hide(&mut self, path: &[&str]) -> &mut Cli {
        self.hidden.insert(path_key(path));
        self
    }

    /// Turns recognition of `-autocomplete-install` and
    /// `-autocomplete-uninstall` on or off (on by default, as `NewCLI` does).
    pub fn set_autocomplete(&mut self, enabled: bool) -> &mut Cli {
        self.autocomplete = enabled;
        self
    }

    /// Sets what the autocomplete flags do; without one they fail with an
    /// error.
    pub fn set_autocomplete_installer(
        &mut self,
        installer: impl AutocompleteInstaller + 'static,
    ) -> &mut Cli {
        self.installer = Some(Box::new(installer));
        self
    }

    /// The program name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All command keys (space-joined paths) including implicit parents,
    /// in sorted order.
    pub fn command_paths(&self) -> Vec<String> {
        self.tree().keys().map(|k| (*k).to_owned()).collect()
    }

    /// The command tree: registered commands plus implicit parents.
    fn tree(&self) -> BTreeMap<&str, &dyn Command> {
        let mut tree: BTreeMap<&str, &dyn Command> = BTreeMap::new();
        for (key, command) in &self.commands {
            tree.insert(key.as_str(), command.as_ref());
        }
        for key in self.commands.keys() {
            let mut k = key.as_str();
            while let Some(idx) = k.rfind(' ') {
                k = &k[..idx];
                tree.entry(k).or_insert(&PARENT);
            }
        }
        tree
    }

    fn is_nested(&self) -> bool {
        self.commands.keys().any(|k| k.contains(' '))
    }

    /// Runs the command line `args` (without the program name) and returns
    /// the exit code (Go's `CLI.Run`).
    pub fn run<S: AsRef<str>>(&self, args: &[S], io: &mut Io<'_>) -> Outcome {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let tree = self.tree();
        let nested = self.is_nested();
        let info = self.process_args(&args, &tree, nested);

        if info.is_version && !self.version.is_empty() {
            let _ = writeln!(io.stderr, "{}", self.version);
            return Outcome::code(0);
        }

        if info.is_help && info.subcommand.is_empty() {
            let list = self.help_commands(&tree, "");
            let text = self.basic_help(&list);
            let _ = writeln!(io.stderr, "{text}");
            return Outcome::code(0);
        }

        if self.autocomplete {
            if info.is_autocomplete_install && info.is_autocomplete_uninstall {
                return Outcome {
                    code: 1,
                    error: Some(CliError::AutocompleteConflict),
                };
            }
            if info.is_autocomplete_install || info.is_autocomplete_uninstall {
                let result = match &self.installer {
                    None => Err("shell autocompletion is not supported".to_owned()),
                    Some(i) if info.is_autocomplete_install => i.install(&self.name),
                    Some(i) => i.uninstall(&self.name),
                };
                return match result {
                    Ok(()) => Outcome::code(0),
                    Err(e) => Outcome {
                        code: 1,
                        error: Some(CliError::Autocomplete(e)),
                    },
                };
            }
        }

        let Some(command) = tree.get(info.subcommand.as_str()).copied() else {
            let parent = subcommand_parent(&info.subcommand);
            let list = self.help_commands(&tree, parent);
            let text = self.basic_help(&list);
            let _ = writeln!(io.stderr, "{text}");
            return Outcome::code(127);
        };

        if info.is_help {
            self.command_help(&tree, nested, &info.subcommand, command, io);
            return Outcome::code(0);
        }

        if !info.top_flags.is_empty() {
            let _ = write!(
                io.stderr,
                "Invalid flags before the subcommand. If these flags are for\n\
                 the subcommand, please put them after the subcommand.\n\n"
            );
            self.command_help(&tree, nested, &info.subcommand, command, io);
            return Outcome::code(1);
        }

        let code = command.run(&info.subcommand_args, io);
        if code == RUN_RESULT_HELP {
            self.command_help(&tree, nested, &info.subcommand, command, io);
            return Outcome::code(1);
        }
        Outcome::code(code)
    }

    /// mitchellh/cli's `processArgs`.
    fn process_args(
        &self,
        args: &[String],
        tree: &BTreeMap<&str, &dyn Command>,
        nested: bool,
    ) -> ArgInfo {
        let mut info = ArgInfo::default();
        for (i, arg) in args.iter().enumerate() {
            if arg == "--" {
                break;
            }
            if arg == "-h" || arg == "-help" || arg == "--help" {
                info.is_help = true;
                continue;
            }
            if self.autocomplete {
                if arg == "-autocomplete-install" || arg == "--autocomplete-install" {
                    info.is_autocomplete_install = true;
                    continue;
                }
                if arg == "-autocomplete-uninstall" || arg == "--autocomplete-uninstall" {
                    info.is_autocomplete_uninstall = true;
                    continue;
                }
            }
            if info.subcommand.is_empty() {
                if arg == "-v" || arg == "-version" || arg == "--version" {
                    info.is_version = true;
                    continue;
                }
                if arg.starts_with('-') {
                    info.top_flags.push(arg.clone());
                }
            }
            if info.subcommand.is_empty() && !arg.is_empty() && !arg.starts_with('-') {
                info.subcommand = arg.clone();
                let mut i = i;
                if nested {
                    if arg.contains(' ') {
                        // Go gives up on the whole command line here.
                        info.subcommand.clear();
                        return info;
                    }
                    // The run of plain words starting here.
                    let words: Vec<&str> = args[i..]
                        .iter()
                        .take_while(|v| !(v.contains(' ') || v.is_empty() || v.starts_with('-')))
                        .map(String::as_str)
                        .collect();
                    let search_key = words.join(" ");
                    if let Some(k) = longest_prefix(tree, &search_key)
                        && followed_by_space_or_end(&search_key, k)
                    {
                        info.subcommand = k.to_owned();
                        i += k.matches(' ').count();
                    }
                }
                info.subcommand_args = args.get(i + 1..).unwrap_or_default().to_vec();
            }
        }
        if info.subcommand.is_empty() && tree.contains_key("") {
            let mut all = std::mem::take(&mut info.top_flags);
            all.append(&mut info.subcommand_args);
            info.subcommand_args = all;
        }
        info
    }

    /// mitchellh/cli's `helpCommands`: the visible commands directly below
    /// `prefix`, with their synopses.
    fn help_commands<'t>(
        &self,
        tree: &BTreeMap<&'t str, &'t dyn Command>,
        prefix: &str,
    ) -> Vec<(&'t str, &'t dyn Command)> {
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with(' ') {
            prefix.push(' ');
        }
        tree.iter()
            .filter(|(k, _)| {
                k.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| !rest.contains(' '))
            })
            .filter(|(k, _)| !self.hidden.contains(**k))
            .map(|(k, c)| (*k, *c))
            .collect()
    }

    /// mitchellh/cli's `BasicHelpFunc`.
    fn basic_help(&self, commands: &[(&str, &dyn Command)]) -> String {
        let mut buf = format!(
            "Usage: {} [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n",
            self.name
        );
        let max_key_len = commands.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, command) in commands {
            let pad = " ".repeat(max_key_len - key.len());
            buf.push_str(&format!("    {key}{pad}    {}\n", command.synopsis()));
        }
        buf
    }

    /// mitchellh/cli's `commandHelp` with its default template.
    fn command_help(
        &self,
        tree: &BTreeMap<&str, &dyn Command>,
        nested: bool,
        subcommand: &str,
        command: &dyn Command,
        io: &mut Io<'_>,
    ) {
        let help = command.help(io);
        let mut text = help;
        if nested {
            let subs = self.help_commands(tree, subcommand);
            let longest = subs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            let mut lines = String::new();
            for (key, sub) in &subs {
                let name = key.rsplit(' ').next().unwrap_or(key);
                let pad = " ".repeat(longest - key.len());
                // Go evaluates Help() for every subcommand, with its side
                // effects, before rendering.
                let _ = sub.help(io);
                lines.push_str(&format!("\n    {name}{pad}    {}", sub.synopsis()));
            }
            if !subs.is_empty() {
                text.push_str("\n\nSubcommands:");
                text.push_str(&lines);
            }
        }
        text.push('\n');
        let _ = io.stderr.write_all(text.as_bytes());
    }
}

fn path_key(path: &[&str]) -> String {
    path.join(" ").trim().to_owned()
}

/// mitchellh/cli's `subcommandParent`.
fn subcommand_parent(sub: &str) -> &str {
    if sub.is_empty() {
        return sub;
    }
    let sub = sub.trim_end_matches(' ');
    match sub.rfind(' ') {
        Some(idx) => &sub[..idx],
        None => "",
    }
}

/// The radix tree's `LongestPrefix`: the longest key that is a byte prefix
/// of `s`.
fn longest_prefix<'t>(tree: &BTreeMap<&'t str, &dyn Command>, s: &str) -> Option<&'t str> {
    tree.keys()
        .filter(|k| s.starts_with(**k))
        .max_by_key(|k| k.len())
        .copied()
}

/// Go's unanchored `regexp.QuoteMeta(k) + "( |$)"` match against `s`.
fn followed_by_space_or_end(s: &str, k: &str) -> bool {
    let bytes = s.as_bytes();
    (0..=bytes.len()).any(|p| {
        bytes[p..].starts_with(k.as_bytes()) && matches!(bytes.get(p + k.len()), None | Some(b' '))
    })
}

#[cfg(test)]
mod tests {
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
}
