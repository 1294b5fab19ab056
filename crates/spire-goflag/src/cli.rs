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
#[path = "cli_tests.rs"]
mod tests;
