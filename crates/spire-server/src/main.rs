//! The `spire-server` binary.

use std::io;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cli = spire_goflag::Cli::new("spire-server", env!("CARGO_PKG_VERSION"));
    cli.command(&["run"], spire_server::cli::RunCommand);
    cli.command(&["validate"], spire_server::cli::ValidateCommand);
    let (mut stdin, mut stdout, mut stderr) = (io::stdin(), io::stdout(), io::stderr());
    let outcome = cli.run(
        &args,
        &mut spire_goflag::Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    std::process::exit(outcome.code);
}
