//! HTTPS with certificates obtained from an ACME CA (the `acme` section), as SPIRE's
//! provider does with Go's `autocert.Manager` (see the `spire-acme` crate): only the
//! configured `domains` get certificates, TLS-ALPN-01 is answered on the same listener,
//! and with a `cache_dir` the account key and certificates live in autocert's `DirCache`
//! layout, so a directory written by SPIRE's provider is read by ours and the other way
//! round.

use std::path::PathBuf;
use std::sync::Arc;

use spire_acme::{AcmeHttp, FileStore, Manager, Settings};
use spire_clock::SharedClock;

use crate::serve::App;

/// The User-Agent SPIRE's provider sends to the CA.
pub const USER_AGENT: &str = "SPIRE OIDC Discovery Provider";
/// The environment variable that moves the listener off SPIRE's fixed port 443 (tests).
pub const PORT_ENV: &str = "SPIRE_RS_OIDC_ACME_PORT";

/// The manager for the `acme` section: `tos_accepted` is checked by the configuration, so
/// the terms are accepted here (and logged, as SPIRE's provider does).
pub fn manager(
    domains: &[String],
    directory_url: &str,
    email: &str,
    cache_dir: &str,
    clock: SharedClock,
) -> Result<Arc<Manager>, String> {
    let store = FileStore::new((!cache_dir.is_empty()).then(|| PathBuf::from(cache_dir)));
    Ok(Manager::new(
        Settings {
            domains: domains.to_vec(),
            directory_url: directory_url.to_string(),
            email: email.to_string(),
            prompt: Box::new(|tos: &str| {
                tracing::info!(url = %tos, "ACME Terms Of Service accepted");
                true
            }),
        },
        Arc::new(store),
        AcmeHttp::new(USER_AGENT)?,
        clock,
        spire_acme::random_jitter,
    ))
}

/// The port the ACME listener binds: 443 as SPIRE, or [`PORT_ENV`] when set (tests).
pub fn listen_port() -> Result<u16, String> {
    match std::env::var(PORT_ENV) {
        Ok(v) => {
            let p: u16 = v
                .parse()
                .map_err(|_| format!("{PORT_ENV}={v:?} is not a port number"))?;
            tracing::warn!(
                port = p,
                "{PORT_ENV} is set: the ACME listener uses this port instead of 443 (for tests only)"
            );
            Ok(p)
        }
        Err(_) => Ok(443),
    }
}

/// Serves HTTPS with the manager's certificates until the process stops.
pub async fn serve(listener: tokio::net::TcpListener, manager: Arc<Manager>, app: App) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let manager = manager.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    match spire_acme::accept(stream, &manager, &[b"http/1.1"]).await {
                        Ok(Some(tls)) => {
                            crate::serve::serve_conn(tls, crate::serve::app_fn(app, true)).await;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "http: TLS handshake error from {peer}");
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "Accept failed"),
        }
    }
}
