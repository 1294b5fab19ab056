//! The listeners: plain HTTP on TCP (`insecure_addr`) or a UNIX socket
//! (`listen_socket_path`, mode 0777 as SPIRE leaves it), HTTPS with a certificate read from
//! disk and re-read every `file_sync_interval` (`serving_cert_file`), and the health
//! checks' own HTTP listener. Every connection is HTTP/1.1 served by hyper.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use spire_clock::SharedClock;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::handler::{Handler, Request, Response};
use crate::source::State;

/// What a connection needs.
#[derive(Debug, Clone)]
pub struct App {
    /// The handler's settings.
    pub handler: Arc<Handler>,
    /// The key source's state.
    pub state: Arc<State>,
    /// `log_requests`.
    pub log_requests: bool,
}

fn to_request(r: &hyper::Request<Incoming>, tls: bool) -> Request {
    let host = r
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| r.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    Request {
        method: r.method().as_str().to_string(),
        path: r.uri().path().to_string(),
        host,
        tls,
        headers: r
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
    }
}

fn to_response(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder().status(r.status);
    for (k, v) in r.headers {
        b = b.header(k, v);
    }
    b.body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

/// Serves one connection.
pub(crate) async fn serve_conn<S, F, Fut>(io: S, f: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<Incoming>) -> Fut + Send + Sync + 'static + Clone,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let f = f.clone();
        async move { Ok::<_, Infallible>(f(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

pub(crate) fn app_fn(
    app: App,
    tls: bool,
) -> impl Fn(hyper::Request<Incoming>) -> std::future::Ready<hyper::Response<Full<Bytes>>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |req| {
        let r = to_request(&req, tls);
        if app.log_requests {
            tracing::debug!(method = %r.method, url = %req.uri(), "Incoming request");
        }
        let keys = app.state.key_set();
        std::future::ready(to_response(app.handler.handle(&r, keys.as_ref())))
    }
}

/// Serves plain HTTP on a TCP listener until the process stops.
pub async fn serve_tcp(listener: tokio::net::TcpListener, app: App) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_conn(stream, app_fn(app.clone(), false)));
            }
            Err(e) => tracing::warn!(error = %e, "Accept failed"),
        }
    }
}

/// Serves plain HTTP on a UNIX socket.
pub async fn serve_unix(listener: tokio::net::UnixListener, app: App) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_conn(stream, app_fn(app.clone(), false)));
            }
            Err(e) => tracing::warn!(error = %e, "Accept failed"),
        }
    }
}

/// Binds `listen_socket_path` as SPIRE does: an old file removed first, the socket left
/// world-accessible.
pub fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
    Ok(l)
}

/// The serving certificate on disk and what was last loaded from it.
pub struct DiskCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<spire_tls::SvidResolver>,
    loaded: parking_lot::Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl std::fmt::Debug for DiskCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl DiskCert {
    /// Loads the certificate and key once (failing when they cannot be used).
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Arc<Self>, String> {
        let d = Arc::new(DiskCert {
            cert_path,
            key_path,
            resolver: spire_tls::SvidResolver::new(),
            loaded: parking_lot::Mutex::new(None),
        });
        d.reload()?;
        Ok(d)
    }

    /// Re-reads the files; a change that cannot be used is reported and the old pair kept.
    pub fn reload(&self) -> Result<bool, String> {
        let cert = std::fs::read(&self.cert_path).map_err(|e| {
            format!(
                "failed to load certificate: {}",
                spire_gocompat::os::path_error("open", &self.cert_path.display().to_string(), &e)
            )
        })?;
        let key = std::fs::read(&self.key_path).map_err(|e| {
            format!(
                "failed to load certificate: {}",
                spire_gocompat::os::path_error("open", &self.key_path.display().to_string(), &e)
            )
        })?;
        let mut loaded = self.loaded.lock();
        if loaded.as_ref() == Some(&(cert.clone(), key.clone())) {
            return Ok(false);
        }
        self.resolver
            .set_pem(&cert, &key)
            .map_err(|e| format!("failed to load certificate: {e}"))?;
        *loaded = Some((cert, key));
        Ok(true)
    }

    /// Re-reads the files every `interval`.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            match self.reload() {
                Ok(true) => tracing::info!(
                    cert_file_path = %self.cert_path.display(),
                    "Loaded provided certificate with success"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "Failed to load certificate"),
            }
        }
    }
}

/// Serves HTTPS on a TCP listener with the certificate `cert` holds.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    cert: Arc<DiskCert>,
    app: App,
) -> Result<(), String> {
    let config =
        spire_tls::https_server_config(cert.resolver.clone()).map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => serve_conn(tls, app_fn(app, true)).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "Accept failed"),
        }
    }
}

/// SPIRE's readiness and liveness rules.
#[derive(Debug, Clone)]
pub struct Health {
    /// `ready_path`.
    pub ready_path: String,
    /// `live_path`.
    pub live_path: String,
    /// How long since the last successful poll the provider stays healthy: five poll
    /// intervals, at least three minutes.
    pub threshold: Duration,
    /// When the provider started.
    pub started: SystemTime,
}

/// Five poll intervals, at least three minutes.
pub fn health_threshold(poll_interval: Duration) -> Duration {
    let d = poll_interval * 5;
    if d < Duration::from_secs(180) {
        Duration::from_secs(180)
    } else {
        poll_interval
    }
}

impl Health {
    /// The status for a health request.
    pub fn answer(
        &self,
        method: &str,
        path: &str,
        last_poll: Option<SystemTime>,
        now: SystemTime,
    ) -> Response {
        let ready = path == self.ready_path;
        let live = path == self.live_path;
        if !ready && !live {
            return Response {
                status: 404,
                headers: vec![
                    ("Content-Type", "text/plain; charset=utf-8".into()),
                    ("X-Content-Type-Options", "nosniff".into()),
                ],
                body: b"404 page not found\n".to_vec(),
            };
        }
        if method != "GET" {
            return Response {
                status: 405,
                headers: vec![
                    ("Content-Type", "text/plain; charset=utf-8".into()),
                    ("X-Content-Type-Options", "nosniff".into()),
                ],
                body: b"method not allowed\n".to_vec(),
            };
        }
        let fresh = |t: SystemTime| now.duration_since(t).unwrap_or_default() < self.threshold;
        let ok = if ready {
            last_poll.is_some_and(fresh)
        } else {
            match last_poll {
                None => now.duration_since(self.started).unwrap_or_default() < self.threshold,
                Some(t) => fresh(t),
            }
        };
        Response {
            status: if ok { 200 } else { 500 },
            headers: vec![],
            body: vec![],
        }
    }
}

/// Serves the health checks.
pub async fn serve_health(
    listener: tokio::net::TcpListener,
    health: Health,
    state: Arc<State>,
    clock: SharedClock,
) {
    let health = Arc::new(health);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (health, state, clock) = (health.clone(), state.clone(), clock.clone());
        let f = move |req: hyper::Request<Incoming>| {
            let r = health.answer(
                req.method().as_str(),
                req.uri().path(),
                state.last_poll(),
                clock.now(),
            );
            std::future::ready(to_response(r))
        };
        tokio::spawn(serve_conn(stream, f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_as_spire() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let h = Health {
            ready_path: "/ready".into(),
            live_path: "/live".into(),
            threshold: health_threshold(Duration::from_secs(10)),
            started: t0,
        };
        assert_eq!(h.threshold, Duration::from_secs(180));
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Never polled: not ready; live for the threshold after start.
        assert_eq!(h.answer("GET", "/ready", None, at(1)).status, 500);
        assert_eq!(h.answer("GET", "/live", None, at(1)).status, 200);
        assert_eq!(h.answer("GET", "/live", None, at(180)).status, 500);
        // Polled recently: both fine; stale: both fail.
        assert_eq!(h.answer("GET", "/ready", Some(at(10)), at(20)).status, 200);
        assert_eq!(h.answer("GET", "/live", Some(at(10)), at(20)).status, 200);
        assert_eq!(h.answer("GET", "/ready", Some(at(10)), at(190)).status, 500);
        assert_eq!(h.answer("GET", "/live", Some(at(10)), at(190)).status, 500);
        assert_eq!(h.answer("POST", "/live", None, at(1)).status, 405);
        assert_eq!(h.answer("GET", "/x", None, at(1)).status, 404);
        // SPIRE's quirk: a long poll interval is the threshold itself, not five of it.
        assert_eq!(
            health_threshold(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }
}
