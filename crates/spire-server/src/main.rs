//! The `spire-server` binary: SPIRE's command set, with `run` and `validate` from this crate
//! and every client command from `spire-cli`.

use std::io;

fn main() {
    // As every Go program does at start-up (SPIRE's included).
    let _ = spire_gocompat::os::raise_open_files_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = spire_cli::server_cli(vec![
        (
            vec!["run".to_string()],
            Box::new(spire_server::cli::RunCommand),
        ),
        (
            vec!["validate".to_string()],
            Box::new(spire_server::cli::ValidateCommand),
        ),
    ]);
    let (mut stdin, mut stdout, mut stderr) = (io::stdin(), io::stdout(), io::stderr());
    let outcome = cli.run(
        &args,
        &mut spire_goflag::Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    if let Some(e) = outcome.error {
        use std::io::Write as _;
        let _ = writeln!(io::stderr(), "{e}");
    }
    std::process::exit(outcome.code);
}
