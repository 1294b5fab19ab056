//! The `run` and `validate` commands (the other commands are clients, in `spire-cli`).

use std::path::PathBuf;

use spire_config::{ProcessEnv, ServerConfig, ServerOverrides};
use spire_goflag::{Command, Flag, FlagSet, Io};

/// Where SPIRE looks for the config when `-config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "conf/server/server.conf";

struct RunFlags {
    fs: FlagSet,
    bind_address: Flag<String>,
    config: Flag<String>,
    data_dir: Flag<String>,
    expand_env: Flag<bool>,
    log_file: Flag<String>,
    log_format: Flag<String>,
    log_level: Flag<String>,
    log_source_location: Flag<bool>,
    server_port: Flag<i64>,
    socket_path: Flag<String>,
    trust_domain: Flag<String>,
}

fn run_flags(name: &str) -> RunFlags {
    let mut fs = FlagSet::new(name);
    RunFlags {
        bind_address: fs.string(
            "bindAddress",
            "",
            "IP address or DNS name of the SPIRE server",
        ),
        config: fs.string("config", "", "Path to a SPIRE config file"),
        data_dir: fs.string("dataDir", "", "Directory to store runtime data to"),
        expand_env: fs.bool(
            "expandEnv",
            false,
            "Expand environment variables in SPIRE config file",
        ),
        log_file: fs.string("logFile", "", "File to write logs to"),
        log_format: fs.string("logFormat", "", "'text' or 'json'"),
        log_level: fs.string("logLevel", "", "'debug', 'info', 'warn', or 'error'"),
        log_source_location: fs.bool(
            "logSourceLocation",
            false,
            "Include source file, line number and function name in log lines",
        ),
        server_port: fs.int("serverPort", 0, "Port number of the SPIRE server"),
        socket_path: fs.string(
            "socketPath",
            "",
            "Path to bind the SPIRE Server API socket to",
        ),
        trust_domain: fs.string(
            "trustDomain",
            "",
            "The trust domain that this server belongs to",
        ),
        fs,
    }
}

fn non_empty(s: &String) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Parses the flags and loads the configuration they name.
fn load(
    flags: &RunFlags,
    args: &[String],
    io: &mut Io<'_>,
) -> Result<ServerConfig, Option<String>> {
    let m = flags.fs.parse(args, io.stderr).map_err(|_| None)?;
    let overrides = ServerOverrides {
        bind_address: non_empty(m.get(&flags.bind_address)),
        server_port: (*m.get(&flags.server_port) != 0).then(|| *m.get(&flags.server_port)),
        socket_path: non_empty(m.get(&flags.socket_path)),
        data_dir: non_empty(m.get(&flags.data_dir)),
        trust_domain: non_empty(m.get(&flags.trust_domain)),
        log_file: non_empty(m.get(&flags.log_file)),
        log_format: non_empty(m.get(&flags.log_format)),
        log_level: non_empty(m.get(&flags.log_level)),
        log_source_location: (*m.get(&flags.log_source_location)).then_some(true),
    };
    let path = match m.get(&flags.config).as_str() {
        "" => DEFAULT_CONFIG_PATH.to_string(),
        p => p.to_string(),
    };
    let env = ProcessEnv;
    let expand: Option<&dyn spire_config::EnvLookup> = if *m.get(&flags.expand_env) {
        Some(&env)
    } else {
        None
    };
    spire_config::load_server_config_file(&PathBuf::from(path), &overrides, expand)
        .map_err(|e| Some(e.to_string()))
}

/// `spire-server run`.
#[derive(Debug, Default)]
pub struct RunCommand;

impl Command for RunCommand {
    fn synopsis(&self) -> String {
        "Runs the server".into()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        run_flags("run").fs.help_text(io.stderr)
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        let flags = run_flags("run");
        let config = match load(&flags, args, io) {
            Ok(c) => c,
            Err(None) => return 1,
            Err(Some(e)) => {
                let _ = writeln!(io.stderr, "{e}");
                return 1;
            }
        };
        if let Err(e) = crate::catalog::check(&config) {
            let _ = writeln!(io.stderr, "{e}");
            return 1;
        }
        let log_level = log_level(config.log.level);
        let log_format = match config.log.format {
            spire_config::LogFormat::Json => spire_log::LogFormat::Json,
            _ => spire_log::LogFormat::Text,
        };
        let log = match spire_log::init(&spire_log::LogConfig {
            level: log_level,
            format: log_format,
            file: config.log.file.clone(),
        }) {
            Ok(h) => h,
            Err(e) => {
                let _ = writeln!(io.stderr, "could not start logger: {e}");
                return 1;
            }
        };
        for w in &config.warnings {
            tracing::warn!("{}", w.message);
        }
        tracing::info!(
            admin_ids = ?config.admin_ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            data_dir = %config.data_dir.display(),
            launch_log_level = log_level.as_str(),
            version = spire_cli::VERSION,
            "Configured"
        );
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(io.stderr, "unable to start runtime: {e}");
                return 1;
            }
        };
        match runtime.block_on(crate::run::run(config, log, spire_clock::system())) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "Fatal run error");
                tracing::error!(error = %e, "Server crashed");
                1
            }
        }
    }
}

/// `spire-server validate`.
#[derive(Debug, Default)]
pub struct ValidateCommand;

impl Command for ValidateCommand {
    fn synopsis(&self) -> String {
        "Validates a SPIRE server configuration file".into()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        run_flags("validate").fs.help_text(io.stderr)
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        let flags = run_flags("validate");
        let result = match load(&flags, args, io) {
            Err(None) => return 1,
            Err(Some(e)) => Err(e),
            Ok(c) => crate::catalog::check(&c).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => {
                let _ = writeln!(io.stdout, "SPIRE server configuration file is valid.");
                0
            }
            Err(e) => {
                let _ = writeln!(io.stderr, "SPIRE server configuration file is invalid: {e}");
                1
            }
        }
    }
}

fn log_level(l: spire_config::LogLevel) -> spire_log::LogLevel {
    use spire_config::LogLevel as C;
    use spire_log::LogLevel as L;
    match l {
        C::Panic => L::Panic,
        C::Fatal => L::Fatal,
        C::Error => L::Error,
        C::Warn => L::Warn,
        C::Info => L::Info,
        C::Debug => L::Debug,
        _ => L::Trace,
    }
}
