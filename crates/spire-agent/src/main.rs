//! `spire-agent`: `run`, `validate`, and the client commands of `spire-cli`.

fn main() {
    // As every Go program does at start-up (SPIRE's included).
    let _ = spire_gocompat::os::raise_open_files_limit();
    let cli = spire_cli::agent_cli(spire_agent::cli::commands());
    let mut stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut io = spire_cli::Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = cli.run(&args, &mut io);
    std::process::exit(outcome.code);
}
