//! The program: flags, configuration, logging, the source and the listeners.

use std::path::PathBuf;
use std::sync::Arc;

use spire_clock::SharedClock;

use crate::config::{self, Listen, Source};
use crate::handler::Handler;
use crate::serve::{self, App, DiskCert, Health};
use crate::source::{self, State};

/// The command line (Go `flag`: `-config`, `-expandEnv`, `-version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `-config` (default `oidc-discovery-provider.conf`).
    pub config: PathBuf,
    /// `-expandEnv`.
    pub expand_env: bool,
    /// `-version`.
    pub version: bool,
}

/// The usage text Go's `flag.PrintDefaults` prints.
pub const USAGE: &str = "  -config string\n    \tconfiguration file (default \"oidc-discovery-provider.conf\")\n  -expandEnv\n    \texpand environment variables in config file\n  -version\n    \tprint version\n";

/// Why the command line was refused: the message and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    /// What to print on stderr.
    pub message: String,
    /// Exit code (2 for Go's flag errors, 1 for stray arguments).
    pub code: i32,
}

fn parse_bool(v: &str) -> Option<bool> {
    spire_gocompat::strconv::parse_bool(v).ok()
}

/// Parses the arguments (without the program name) as Go's `flag` package does.
pub fn parse_flags(args: &[String], prog: &str) -> Result<Flags, FlagError> {
    let mut f = Flags {
        config: PathBuf::from("oidc-discovery-provider.conf"),
        expand_env: false,
        version: false,
    };
    let usage = format!("Usage of {prog}:\n{USAGE}");
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        let Some(name) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            break;
        };
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(FlagError {
                message: format!("bad flag syntax: {a}\n{usage}"),
                code: 2,
            });
        }
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        match name {
            "config" => {
                let v = match value {
                    Some(v) => v,
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => {
                                return Err(FlagError {
                                    message: format!("flag needs an argument: -config\n{usage}"),
                                    code: 2,
                                });
                            }
                        }
                    }
                };
                f.config = PathBuf::from(v);
            }
            "expandEnv" | "version" => {
                let b = match value {
                    None => true,
                    Some(v) => parse_bool(&v).ok_or_else(|| FlagError {
                        message: format!(
                            "invalid boolean value {} for -{name}: parse error\n{usage}",
                            spire_gocompat::strconv::quote(&v)
                        ),
                        code: 2,
                    })?,
                };
                if name == "version" {
                    f.version = b;
                } else {
                    f.expand_env = b;
                }
            }
            "h" | "help" => {
                return Err(FlagError {
                    message: usage,
                    code: 0,
                });
            }
            other => {
                return Err(FlagError {
                    message: format!("flag provided but not defined: -{other}\n{usage}"),
                    code: 2,
                });
            }
        }
        i += 1;
    }
    let rest = &args[i.min(args.len())..];
    if !rest.is_empty() && !f.version {
        return Err(FlagError {
            message: format!("Error: unexpected arguments: [{}]\n{usage}", rest.join(" ")),
            code: 1,
        });
    }
    Ok(f)
}

/// Runs the provider until SIGINT or SIGTERM (which end it with SPIRE's error).
pub async fn run(cfg: config::Config, clock: SharedClock) -> Result<(), String> {
    if let Source::WorkloadApi { trust_domain, .. } = &cfg.source {
        if let Some(e) = spiffe_core::id::go_compat::trust_domain_error(trust_domain) {
            return Err(e.to_string());
        }
        spiffe_core::TrustDomain::from_name_or_id(trust_domain).map_err(|e| e.to_string())?;
    }
    for d in &cfg.domains {
        crate::handler::check_domain(std::slice::from_ref(d), d)?;
    }

    let state = Arc::new(State::default());
    let poll_interval = cfg.source.poll_interval();
    tokio::spawn(source::run(
        cfg.source.clone(),
        state.clone(),
        clock.clone(),
    ));

    let app = App {
        handler: Arc::new(Handler {
            domains: cfg.domains.clone(),
            allow_insecure_scheme: cfg.allow_insecure_scheme,
            set_key_use: cfg.set_key_use,
            jwt_issuer: cfg.jwt_issuer.clone(),
            jwks_uri: cfg.jwks_uri.clone(),
            server_path_prefix: cfg.server_path_prefix.clone(),
        }),
        state: state.clone(),
        log_requests: cfg.log_requests,
    };
    if cfg.log_requests {
        tracing::info!("Logging all requests");
    }

    let serving = match &cfg.listen {
        Listen::Insecure(addr) => {
            let sa = config::resolve_tcp_addr(addr).map_err(|e| format!("listen tcp: {e}"))?;
            let l = tokio::net::TcpListener::bind(sa).await.map_err(|e| {
                format!(
                    "listen tcp {addr}: bind: {}",
                    spire_gocompat::os::errno_text(&e)
                )
            })?;
            tracing::warn!(address = %addr, "Serving HTTP (insecure)");
            tokio::spawn(serve::serve_tcp(l, app))
        }
        Listen::Socket(path) => {
            let l = serve::bind_unix(path).map_err(|e| {
                format!(
                    "listen unix {}: bind: {}",
                    path.display(),
                    spire_gocompat::os::errno_text(&e)
                )
            })?;
            tracing::info!(network = "unix", address = %path.display(), "Serving HTTP");
            tokio::spawn(serve::serve_unix(l, app))
        }
        Listen::ServingCert(s) => {
            let cert = DiskCert::load(s.cert_file_path.clone(), s.key_file_path.clone())?;
            tokio::spawn(cert.clone().watch(s.file_sync_interval));
            let l = tokio::net::TcpListener::bind(s.addr).await.map_err(|e| {
                format!(
                    "failed to create listener using certificate from disk: listen tcp {}: {}",
                    s.addr,
                    spire_gocompat::os::errno_text(&e)
                )
            })?;
            tracing::info!(
                cert_file_path = %s.cert_file_path.display(),
                address = %s.key_file_path.display(),
                "Serving HTTPS using certificate loaded from disk"
            );
            tokio::spawn(async move {
                if let Err(e) = serve::serve_tls(l, cert, app).await {
                    tracing::error!(error = %e, "HTTPS listener stopped");
                }
            })
        }
        Listen::Acme(a) => {
            let manager = crate::acme::manager(
                &cfg.domains,
                &a.directory_url,
                &a.email,
                &a.cache_dir,
                clock.clone(),
            )?;
            let port = crate::acme::listen_port()?;
            let l = match tokio::net::TcpListener::bind(("::", port)).await {
                Ok(l) => l,
                Err(_) => tokio::net::TcpListener::bind(("0.0.0.0", port))
                    .await
                    .map_err(|e| {
                        format!(
                            "failed to create an ACME listener: listen tcp :{port}: bind: {}",
                            spire_gocompat::os::errno_text(&e)
                        )
                    })?,
            };
            tracing::info!("Serving HTTPS via ACME");
            tokio::spawn(crate::acme::serve(l, manager, app))
        }
    };

    if let Some(h) = &cfg.health_checks {
        let health = Health {
            ready_path: h.ready_path.clone(),
            live_path: h.live_path.clone(),
            threshold: serve::health_threshold(poll_interval),
            started: clock.now(),
        };
        let bound = match u16::try_from(h.bind_port) {
            Ok(port) => tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .map_err(|e| {
                    format!(
                        "listen tcp :{}: bind: {}",
                        h.bind_port,
                        spire_gocompat::os::errno_text(&e)
                    )
                }),
            Err(_) => Err(format!("listen tcp: address {}: invalid port", h.bind_port)),
        };
        match bound {
            Ok(l) => {
                tokio::spawn(serve::serve_health(l, health, state.clone(), clock.clone()));
            }
            Err(e) => tracing::error!(error = %e, "Health checks listener failed"),
        }
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    serving.abort();
    if let Listen::Socket(path) = &cfg.listen {
        let _ = std::fs::remove_file(path);
    }
    // SPIRE's provider returns Go's `http.ErrServerClosed` from a graceful stop, so it ends
    // with this message and exit code 1; supervisors see the same.
    Err("http: Server closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_as_go() {
        let f = parse_flags(&args(&["-config", "x.conf", "-expandEnv"]), "p").unwrap();
        assert_eq!(f.config, PathBuf::from("x.conf"));
        assert!(f.expand_env);
        let f = parse_flags(&args(&["--config=y.conf"]), "p").unwrap();
        assert_eq!(f.config, PathBuf::from("y.conf"));
        let e = parse_flags(&args(&["-nope"]), "p").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message
                .starts_with("flag provided but not defined: -nope\nUsage of p:\n")
        );
        let e = parse_flags(&args(&["extra"]), "p").unwrap_err();
        assert_eq!(e.code, 1);
        assert!(
            e.message
                .starts_with("Error: unexpected arguments: [extra]\n")
        );
    }
}
