//! The client-side commands of `spire-server` and `spire-agent`, compatible
//! with SPIRE 1.13 byte for byte: flags, help, pretty and JSON output, error
//! texts and exit codes.
//!
//! [`server_cli`] builds the `spire-server` router with `entry`, `agent`,
//! `bundle`, `federation`, `token`, `x509`, `jwt`, `healthcheck`,
//! `localauthority`, `upstreamauthority` and `logger` commands, talking to
//! the server API over its UNIX socket (`-socketPath`). [`agent_cli`] builds
//! the `spire-agent` router with `api fetch [x509|jwt]`, `api validate jwt`,
//! `api watch` and `healthcheck`, talking to the Workload API. Both take the
//! binary's own commands (`run`, `validate`) as `extra`.
//!
//! ```no_run
//! use spire_goflag::Io;
//!
//! let cli = spire_cli::server_cli(Vec::new());
//! let (mut stdin, mut stdout, mut stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
//! let mut io = Io { stdin: &mut stdin, stdout: &mut stdout, stderr: &mut stderr };
//! let outcome = cli.run(&["entry", "show", "-socketPath", "/tmp/api.sock"], &mut io);
//! std::process::exit(outcome.code);
//! ```
//!
//! Every command creates its own current-thread Tokio runtime, so the
//! routers must not be run from inside an async context.

mod agent;
mod bundleutil;
mod gofmt;
mod goid;
mod gojson;
mod gotz;
mod grpc;
mod pemutil;
mod printer;
mod server;
mod sort;

pub use agent::DEFAULT_SOCKET_PATH as AGENT_DEFAULT_SOCKET_PATH;
pub use server::DEFAULT_SOCKET_PATH as SERVER_DEFAULT_SOCKET_PATH;
pub use spire_goflag::{Cli, Command, Io, Outcome};

/// The version SPIRE reports (`-v`).
pub const VERSION: &str = "1.13.3";

/// Extra commands a binary adds to a router: command path and command.
pub type ExtraCommands = Vec<(Vec<String>, Box<dyn Command>)>;

fn build(
    name: &str,
    version: &str,
    builtin: Vec<(Vec<&'static str>, Box<dyn Command>)>,
    extra: ExtraCommands,
) -> Cli {
    let mut cli = Cli::new(name, version);
    for (path, cmd) in builtin {
        cli.boxed_command(&path, cmd);
    }
    for (path, cmd) in extra {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        cli.boxed_command(&path, cmd);
    }
    cli
}

/// The `spire-server` router with every client command; `extra` adds (or
/// replaces) commands such as `run` and `validate`. The version is
/// [`VERSION`].
pub fn server_cli(extra: ExtraCommands) -> Cli {
    server_cli_with_version(VERSION, extra)
}

/// [`server_cli`] reporting `version` for `-v`.
pub fn server_cli_with_version(version: &str, extra: ExtraCommands) -> Cli {
    build("spire-server", version, server::commands(), extra)
}

/// The `spire-agent` router with every client command; `extra` adds (or
/// replaces) commands such as `run` and `validate`.
pub fn agent_cli(extra: ExtraCommands) -> Cli {
    agent_cli_with_version(VERSION, extra)
}

/// [`agent_cli`] reporting `version` for `-v`.
pub fn agent_cli_with_version(version: &str, extra: ExtraCommands) -> Cli {
    build("spire-agent", version, agent::commands(), extra)
}
