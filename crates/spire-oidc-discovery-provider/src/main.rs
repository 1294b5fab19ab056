//! `oidc-discovery-provider`: see the library's documentation.

use std::io::Write as _;
use std::sync::Arc;

use spire_oidc_discovery_provider::{config, run};

fn main() {
    let all: Vec<String> = std::env::args().collect();
    let prog = all
        .first()
        .cloned()
        .unwrap_or_else(|| "oidc-discovery-provider".into());
    let flags = match run::parse_flags(&all[1.min(all.len())..], &prog) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::io::stderr().write_all(e.message.as_bytes());
            std::process::exit(e.code);
        }
    };
    if flags.version {
        let _ = std::io::stdout().write_all(b"1.13.3\n");
        return;
    }
    let code = match main_inner(&flags) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            1
        }
    };
    std::process::exit(code);
}

fn main_inner(flags: &run::Flags) -> Result<(), String> {
    let cfg = config::load(&flags.config, flags.expand_env).map_err(|e| e.to_string())?;
    let level = spire_log::LogLevel::parse(&cfg.log_level).map_err(|_| {
        format!(
            "not a valid logrus Level: {}",
            spire_gocompat::strconv::quote(&cfg.log_level)
        )
    })?;
    let format = spire_log::LogFormat::parse(&cfg.log_format).map_err(|_| {
        format!(
            "unknown logger format: {}",
            spire_gocompat::strconv::quote(&cfg.log_format)
        )
    })?;
    if !cfg.log_path.is_empty() {
        // SPIRE's logger opens the file itself; its error reads as Go's.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.log_path)
            .map_err(|e| spire_gocompat::os::path_error("open", &cfg.log_path, &e))?;
    }
    let _log = spire_log::init(&spire_log::LogConfig {
        level,
        format,
        file: (!cfg.log_path.is_empty()).then(|| cfg.log_path.clone().into()),
    })
    .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let clock: spire_clock::SharedClock = Arc::new(spire_clock::SystemClock);
    rt.block_on(run::run(cfg, clock))
}
