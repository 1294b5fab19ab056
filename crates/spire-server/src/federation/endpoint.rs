//! The bundle endpoint (`federation.bundle_endpoint`): our trust domain's bundle in the
//! SPIFFE bundle format over HTTPS, for servers of other trust domains that federate with
//! us. `https_spiffe` presents the server's own X509-SVID; `https_web` with
//! `serving_cert_file` presents a certificate read from files and re-read when their
//! modification times change (checked every `file_sync_interval`); `https_web` with `acme`
//! presents a certificate for `domain_name` from the ACME CA, obtained on the first
//! ClientHello (TLS-ALPN-01 answered on this listener) and renewed 30 days before expiry,
//! its keys in the server's KeyManager and its chain in `<data_dir>/bundle-acme`, as
//! SPIRE's fork of autocert keeps them.
//!
//! As SPIRE's endpoint: `GET /` only (other methods 405, other paths 404), the bundle as
//! stored with `spiffe_refresh_hint` set to the configured hint (seconds), indented JSON.
//!
//! Our extension, between spire-rs servers only: every bundle is answered with an `ETag`
//! and [`WATCH_HEADER`]; a request carrying `If-None-Match` with that tag and
//! [`WAIT_HEADER`] (seconds, at most [`MAX_WAIT`]) is held until our bundle changes, then
//! answered with the new bundle, or answered `304 Not Modified` when the wait ends first.
//! SPIRE's clients send neither header and get SPIRE's answer; our client, seeing no
//! [`WATCH_HEADER`] from a reference server, polls on the refresh hint as SPIRE does.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use spire_config::{AcmeConfig, BundleEndpointConfig, BundleEndpointProfile, ServingCertFile};
use spire_datastore::StoredBundle;
use spire_gocompat::{GoDuration, format_go_duration};
use spire_plugin::KeyManager;
use spire_tls::SvidResolver;
use tokio::net::TcpListener;

use crate::api::convert;
use crate::state::Server;

const SUBSYSTEM: &str = "bundle_endpoint";
/// The `subsystem_name` of the ACME manager's log lines, as SPIRE's.
const ACME_SUBSYSTEM: &str = "bundle_acme";

/// Request header: how long (seconds) to hold a request whose `If-None-Match` is current.
pub const WAIT_HEADER: &str = "x-spire-rs-bundle-wait";
/// Response header: this endpoint holds requests that carry [`WAIT_HEADER`].
pub const WATCH_HEADER: &str = "x-spire-rs-bundle-watch";
/// The longest a request is held.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Requests held at once; more are answered at once.
pub const MAX_WAITERS: usize = 1024;

/// The entity tag of a bundle document: a digest of its bytes, quoted.
pub fn etag(body: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// The wait a request asks for: its `If-None-Match` tag and the duration (capped).
fn requested_wait<B>(req: &Request<B>) -> Option<(String, Duration)> {
    let h = req.headers();
    let tag = h.get(hyper::header::IF_NONE_MATCH)?.to_str().ok()?.trim();
    let secs: u64 = h.get(WAIT_HEADER)?.to_str().ok()?.trim().parse().ok()?;
    if tag.is_empty() || secs == 0 {
        return None;
    }
    Some((tag.to_owned(), Duration::from_secs(secs).min(MAX_WAIT)))
}

fn etag_of(resp: &Response<Full<Bytes>>) -> Option<&str> {
    resp.headers()
        .get(hyper::header::ETAG)
        .and_then(|v| v.to_str().ok())
}

fn not_modified(tag: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    if let Ok(v) = hyper::header::HeaderValue::from_str(tag) {
        resp.headers_mut().insert(hyper::header::ETAG, v);
    }
    resp.headers_mut()
        .insert(WATCH_HEADER, hyper::header::HeaderValue::from_static("1"));
    resp
}

/// The answer to `req`, given our bundle as `current` reads it: at once, or, for a wait on
/// the current tag, when `changes` (subscribed before the call) reports a change of the
/// bundle or the wait ends.
pub async fn answer<B>(
    req: &Request<B>,
    current: &(dyn Fn() -> Option<StoredBundle> + Send + Sync),
    mut changes: tokio::sync::watch::Receiver<u64>,
    waiters: &tokio::sync::Semaphore,
    refresh_hint: Duration,
) -> Response<Full<Bytes>> {
    let now = || {
        respond(
            req.method(),
            req.uri().path(),
            current().as_ref(),
            refresh_hint,
        )
    };
    let Some((tag, wait)) = requested_wait(req) else {
        return now();
    };
    let Ok(_permit) = waiters.try_acquire() else {
        return now();
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let resp = now();
        if resp.status() != StatusCode::OK || etag_of(&resp) != Some(tag.as_str()) {
            return resp;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return not_modified(&tag),
        }
    }
}

/// Why the bundle endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The listener could not be bound.
    #[error("listen tcp {addr}: {source}")]
    Bind {
        /// `address:port`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The serving certificate could not be loaded.
    #[error("failed to load certificate: {0}")]
    ServingCert(String),
    /// The TLS configuration could not be built.
    #[error("{0}")]
    Tls(#[from] spire_tls::TlsError),
    /// The ACME client could not be set up.
    #[error("{0}")]
    Acme(String),
}

/// Go's `time.Duration.String()` of a duration.
pub fn go_duration(d: Duration) -> String {
    GoDuration::from_std(d).map_or_else(|| format!("{d:?}"), format_go_duration)
}

/// Go's `net.TCPAddr.String()` of the configured address: `:<port>` when no IP is set.
pub fn display_addr(address: Option<IpAddr>, port: u16) -> String {
    match address {
        None => format!(":{port}"),
        Some(ip) => SocketAddr::new(ip, port).to_string(),
    }
}

fn text_response(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The answer to one request, given our bundle as currently stored.
pub fn respond(
    method: &Method,
    path: &str,
    bundle: Option<&StoredBundle>,
    refresh_hint: Duration,
) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed");
    }
    if path != "/" {
        return text_response(StatusCode::NOT_FOUND, "404 page not found");
    }
    let Some(stored) = bundle else {
        tracing::error!(
            error = "trust domain bundle not found",
            subsystem_name = SUBSYSTEM,
            "Unable to retrieve local bundle"
        );
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 unable to retrieve local bundle",
        );
    };
    let mut bundle = convert::bundle_to_spiffe(stored);
    let hint = i64::try_from(refresh_hint.as_secs()).unwrap_or(i64::MAX);
    bundle.refresh_hint = Some(hint);
    let body = bundle.to_spiffe_json();
    let tag = etag(body.as_bytes());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&tag) {
        h.insert(hyper::header::ETAG, v);
    }
    h.insert(WATCH_HEADER, hyper::header::HeaderValue::from_static("1"));
    resp
}

/// A serving certificate read from files, re-read when they change.
#[derive(Debug)]
pub struct ServingCert {
    config: ServingCertFile,
    resolver: Arc<SvidResolver>,
    modified: parking_lot::Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    /// The leaf certificate presented (DER).
    leaf: parking_lot::Mutex<Vec<u8>>,
}

fn mtime(path: &Path) -> Result<SystemTime, std::io::Error> {
    std::fs::metadata(path)?.modified()
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("open {}: {e}", path.display()))
}

impl ServingCert {
    /// Loads the certificate and key; an error when either cannot be used.
    pub fn load(config: ServingCertFile) -> Result<Arc<Self>, EndpointError> {
        let me = Arc::new(Self {
            config,
            resolver: SvidResolver::new(),
            modified: parking_lot::Mutex::new((None, None)),
            leaf: parking_lot::Mutex::new(Vec::new()),
        });
        me.reload().map_err(EndpointError::ServingCert)?;
        let times = (
            mtime(&me.config.cert_file_path).ok(),
            mtime(&me.config.key_file_path).ok(),
        );
        *me.modified.lock() = times;
        Ok(me)
    }

    fn reload(&self) -> Result<(), String> {
        let cert = read(&self.config.cert_file_path)?;
        let key = read(&self.config.key_file_path)?;
        self.resolver
            .set_pem(&cert, &key)
            .map_err(|e| e.to_string())?;
        if let Some(leaf) = spire_tls::certs_from_pem(&cert)
            .ok()
            .and_then(|c| c.into_iter().next())
        {
            *self.leaf.lock() = leaf.to_vec();
        }
        Ok(())
    }

    /// The leaf certificate presented now (DER).
    pub fn leaf_der(&self) -> Vec<u8> {
        self.leaf.lock().clone()
    }

    /// What TLS presents.
    pub fn resolver(&self) -> Arc<SvidResolver> {
        self.resolver.clone()
    }

    /// One check of the files: reloads when a modification time changed. A failed reload
    /// keeps the certificate served so far (and is tried again at the next check).
    pub fn sync(&self) {
        let stat = |p: &Path| match mtime(p) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(
                    subsystem_name = SUBSYSTEM,
                    "Failed to get file info, file path {} does not exist anymore; please check if the path is correct",
                    spire_gocompat::strconv::quote(&p.display().to_string())
                );
                None
            }
            Err(e) => {
                tracing::error!(subsystem_name = SUBSYSTEM, "Failed to get file info: {e}");
                None
            }
        };
        let Some(cert_t) = stat(&self.config.cert_file_path) else {
            return;
        };
        let Some(key_t) = stat(&self.config.key_file_path) else {
            return;
        };
        let mut last = self.modified.lock();
        if last.0 == Some(cert_t) && last.1 == Some(key_t) {
            return;
        }
        tracing::info!(
            subsystem_name = SUBSYSTEM,
            "File change detected, reloading certificate and key..."
        );
        match self.reload() {
            Ok(()) => {
                *last = (Some(cert_t), Some(key_t));
                tracing::info!(
                    subsystem_name = SUBSYSTEM,
                    "Loaded provided certificate with success"
                );
            }
            Err(e) => {
                tracing::error!(
                    subsystem_name = SUBSYSTEM,
                    "Failed to load certificate: {e}"
                );
            }
        }
    }

    /// Checks the files every `file_sync_interval`, forever.
    pub async fn watch(self: Arc<Self>) {
        tracing::info!(
            interval = %go_duration(self.config.file_sync_interval),
            subsystem_name = SUBSYSTEM,
            "Started watching certificate files"
        );
        let mut tick = tokio::time::interval(self.config.file_sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.sync();
        }
    }
}

/// Binds the listener: the configured IP, or every address (IPv6 and IPv4 when the
/// system allows one socket for both, else IPv4) when none is set.
async fn bind(config: &BundleEndpointConfig) -> Result<TcpListener, EndpointError> {
    let err = |source| EndpointError::Bind {
        addr: display_addr(config.address, config.port),
        source,
    };
    match config.address {
        Some(ip) => TcpListener::bind(SocketAddr::new(ip, config.port))
            .await
            .map_err(err),
        None => {
            match TcpListener::bind(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                config.port,
            ))
            .await
            {
                Ok(l) => Ok(l),
                Err(_) => TcpListener::bind(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    config.port,
                ))
                .await
                .map_err(err),
            }
        }
    }
}

/// How connections are secured.
enum Tls {
    /// One rustls configuration (the server's SVID, or the serving certificate files).
    Fixed(Arc<rustls::ServerConfig>),
    /// Certificates from an ACME CA, chosen once the ClientHello is read.
    Acme(Arc<spire_acme::Manager>),
}

/// The User-Agent the server sends its ACME CA (`SPIRE-<version>`, as SPIRE's).
pub fn acme_user_agent() -> String {
    format!("SPIRE-{}", spire_cli::VERSION)
}

/// The ACME manager for `https_web { acme { } }`: keys in `km` (SPIRE's `bundle-acme-`
/// key IDs), certificates in `<data_dir>/bundle-acme`, only `domain_name` served, and the
/// terms of service accepted only with `tos_accepted` (logged as SPIRE logs it).
pub fn acme_manager(
    acme: &AcmeConfig,
    km: Arc<dyn KeyManager>,
    http: spire_acme::AcmeHttp,
    clock: spire_clock::SharedClock,
) -> Arc<spire_acme::Manager> {
    if !acme.tos_accepted {
        tracing::warn!(
            subsystem_name = ACME_SUBSYSTEM,
            "ACME Terms of Service have not been accepted. See the `tos_accepted` configurable"
        );
    }
    let (directory_url, email, accepted) = (
        acme.directory_url.clone(),
        acme.email.clone(),
        acme.tos_accepted,
    );
    let prompt = move |tos_url: &str| {
        if accepted {
            tracing::info!(
                directory_url = %directory_url,
                tos_url = %tos_url,
                email = %email,
                subsystem_name = ACME_SUBSYSTEM,
                "ACME Terms of Service accepted"
            );
        } else {
            tracing::warn!(
                directory_url = %directory_url,
                tos_url = %tos_url,
                email = %email,
                subsystem_name = ACME_SUBSYSTEM,
                "ACME Terms of Service have not been accepted. See the `tos_accepted` configurable"
            );
        }
        accepted
    };
    spire_acme::Manager::new(
        spire_acme::Settings {
            domains: vec![acme.domain_name.clone()],
            directory_url: acme.directory_url.clone(),
            email: acme.email.clone(),
            prompt: Box::new(prompt),
        },
        Arc::new(spire_acme::KeyManagerStore::new(
            km,
            acme.cache_dir.clone(),
            ACME_SUBSYSTEM,
        )),
        http,
        clock,
        spire_acme::random_jitter,
    )
}

/// Binds the bundle endpoint and returns the task serving it (and, for a serving
/// certificate file, watching it). `km` holds the ACME keys of `https_web { acme }`.
pub async fn start(
    server: Arc<Server>,
    config: BundleEndpointConfig,
    km: Arc<dyn KeyManager>,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send), EndpointError> {
    let tls = match &config.profile {
        BundleEndpointProfile::HttpsSpiffe => {
            Tls::Fixed(spire_tls::https_server_config(server.svid().clone())?)
        }
        BundleEndpointProfile::HttpsWebServingCert(files) => {
            let cert = ServingCert::load(files.clone())?;
            let resolver = cert.resolver();
            tokio::spawn(cert.watch());
            Tls::Fixed(spire_tls::https_server_config(resolver)?)
        }
        BundleEndpointProfile::HttpsWebAcme(acme) => {
            let http =
                spire_acme::AcmeHttp::new(&acme_user_agent()).map_err(EndpointError::Acme)?;
            Tls::Acme(acme_manager(acme, km, http, server.clock().clone()))
        }
    };
    let listener = bind(&config).await?;
    let local = listener
        .local_addr()
        .map_err(|source| EndpointError::Bind {
            addr: display_addr(config.address, config.port),
            source,
        })?;
    tracing::info!(
        addr = %display_addr(config.address, config.port),
        refresh_hint = %go_duration(config.refresh_hint),
        "Serving bundle endpoint"
    );
    Ok((local, serve(server, listener, tls, config.refresh_hint)))
}

async fn serve(server: Arc<Server>, listener: TcpListener, tls: Tls, refresh_hint: Duration) {
    let waiters = Arc::new(tokio::sync::Semaphore::new(MAX_WAITERS));
    let tls = Arc::new(tls);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        let server = server.clone();
        let waiters = waiters.clone();
        tokio::spawn(async move {
            let stream = match &*tls {
                Tls::Fixed(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        _ => return,
                    }
                }
                Tls::Acme(manager) => {
                    match spire_acme::accept(stream, manager, &[b"http/1.1"]).await {
                        Ok(Some(s)) => s,
                        Ok(None) => return,
                        Err(e) => {
                            // SPIRE's Go HTTP server prints these (unleveled) to stderr;
                            // they are how an operator sees a certificate not obtained.
                            tracing::info!(
                                subsystem_name = ACME_SUBSYSTEM,
                                "http: TLS handshake error from {peer}: {e}"
                            );
                            return;
                        }
                    }
                }
            };
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let server = server.clone();
                let waiters = waiters.clone();
                async move {
                    let changes = server.bundles_watch();
                    let current = || server.own_bundle();
                    Ok::<_, Infallible>(
                        answer(&req, &current, changes, &waiters, refresh_hint).await,
                    )
                }
            });
            let _ = http1::Builder::new()
                .header_read_timeout(Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
