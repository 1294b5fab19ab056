//! A small typed client for the Kubernetes API (and, with the same transport, a kubelet's
//! read-only HTTPS API): JSON over HTTP/1.1 and TLS, connections kept alive and reused.
//!
//! Why not `kube` + `k8s-openapi`: the plugins call five endpoints (TokenReview, get Pod, get
//! Node, ConfigMaps and admission webhook/APIService patches, a kubelet's `/pods`); the typed
//! fields they read are a few dozen. A thin client keeps the agent small (no OpenAPI type
//! tree, no second HTTP stack, TLS through `spire-tls` like everything else) and lets the
//! errors read as client-go's do, which is what SPIRE users see in SPIRE's messages.

pub mod kubeconfig;
pub mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spire_tls::{ServerName, TlsConnector};

pub use kubeconfig::{ClientConfig, Credentials};

/// How long one request (connect, TLS, request and whole response) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per client.
const POOL_SIZE: usize = 8;
/// Largest response body read (a kubelet's pod list on a busy node is a few MB).
const MAX_BODY: usize = 64 << 20;

/// Errors talking to Kubernetes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum K8sError {
    /// The client configuration could not be loaded.
    #[error("{0}")]
    Config(String),
    /// The request did not complete (Go's `url.Error` text: `Get "url": why`).
    #[error("{method} {url:?}: {why}")]
    Transport {
        /// Go's method name (`Get`, `Post`, …).
        method: String,
        /// The full URL.
        url: String,
        /// What failed.
        why: String,
    },
    /// The server answered with an error status (client-go's `StatusError`: the Status
    /// object's message).
    #[error("{message}")]
    Status {
        /// HTTP status code.
        code: u16,
        /// The Status object's `reason`, if any.
        reason: String,
        /// The Status object's `message` (or client-go's generic text).
        message: String,
    },
    /// The response could not be decoded.
    #[error("{0}")]
    Decode(String),
}

impl K8sError {
    /// Whether the server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, K8sError::Status { code: 404, .. })
    }

    /// Whether the server said the object already exists or was changed concurrently.
    pub fn is_conflict(&self) -> bool {
        matches!(self, K8sError::Status { code: 409, .. })
    }
}

fn go_method(m: &Method) -> String {
    let s = m.as_str();
    let mut out = s[..1].to_string();
    out.push_str(&s[1..].to_ascii_lowercase());
    out
}

/// An HTTPS (or HTTP) endpoint with a small pool of kept-alive HTTP/1.1 connections.
pub struct HttpClient {
    config: ClientConfig,
    tls: Option<TlsConnector>,
    server_name: Option<ServerName<'static>>,
    host: String,
    port: u16,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("server", &self.config.server.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for `config`'s server.
    pub fn new(config: ClientConfig) -> Result<HttpClient, K8sError> {
        let host = config
            .server
            .host_str()
            .ok_or_else(|| K8sError::Config(format!("no host in {:?}", config.server.as_str())))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = config
            .server
            .port_or_known_default()
            .ok_or_else(|| K8sError::Config(format!("no port in {:?}", config.server.as_str())))?;
        let (tls, server_name) = if config.server.scheme() == "https" {
            let tls = spire_tls::https_client_config(&config.trust, config.identity.as_ref())
                .map_err(|e| K8sError::Config(e.to_string()))?;
            let name = config
                .tls_server_name
                .clone()
                .unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(name.clone())
                .map_err(|e| K8sError::Config(format!("server name {name:?}: {e}")))?;
            (Some(TlsConnector::from(tls)), Some(name))
        } else {
            (None, None)
        };
        Ok(HttpClient {
            config,
            tls,
            server_name,
            host,
            port,
            pool: Mutex::new(Vec::new()),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    /// The full URL of `path_and_query` on this server.
    pub fn url(&self, path_and_query: &str) -> String {
        let base = self.config.server.as_str().trim_end_matches('/');
        format!("{base}{path_and_query}")
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                let addr = if self.host.contains(':') {
                    format!("[{}]:{}", self.host, self.port)
                } else {
                    format!("{}:{}", self.host, self.port)
                };
                format!(
                    "dial tcp {addr}: connect: {}",
                    spire_gocompat::os::errno_text(&e)
                )
            })?;
        let _ = tcp.set_nodelay(true);
        let sender = match (&self.tls, &self.server_name) {
            (Some(tls), Some(name)) => {
                let stream = tls
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
            _ => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        Ok(sender)
    }

    fn pooled(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut pool = self.pool.lock();
        while let Some(s) = pool.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn authorization(&self) -> Result<Option<String>, String> {
        use base64::Engine as _;
        Ok(match &self.config.credentials {
            Credentials::None => None,
            Credentials::Token(t) => Some(format!("Bearer {t}")),
            Credentials::TokenFile(p) => {
                let t = crate::read_file(p)?;
                Some(format!("Bearer {}", String::from_utf8_lossy(&t).trim()))
            }
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
        })
    }

    /// One attempt. An error says whether the request may be sent again: only when it went
    /// to a kept-alive connection that turned out closed before the request was written, or
    /// when it is a GET (as Go's transport replays).
    async fn send_once(
        &self,
        method: &Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: &Bytes,
    ) -> Result<(StatusCode, Bytes), (String, bool)> {
        let authorization = self.authorization().map_err(|e| (e, false))?;
        let (mut sender, pooled) = match self.pooled() {
            Some(s) => (s, true),
            None => (self.connect().await.map_err(|e| (e, false))?, false),
        };
        let replayable = |e: &hyper::Error| pooled && (e.is_canceled() || *method == Method::GET);
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let prefix = self.config.server.path().trim_end_matches('/');
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(format!("{prefix}{path_and_query}"))
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "spire-rs");
        if let Some(a) = authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(body.clone()))
            .map_err(|e| (e.to_string(), false))?;
        // Not ready: the kept-alive connection closed; nothing was sent on it.
        sender.ready().await.map_err(|e| (e.to_string(), pooled))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| (e.to_string(), replayable(&e)))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| (format!("reading response body: {e}"), false))?
            .to_bytes();
        let mut pool = self.pool.lock();
        if pool.len() < POOL_SIZE {
            pool.push(sender);
        }
        Ok((status, body))
    }

    /// Sends one request and returns the status and body. A pooled connection that the
    /// server closed meanwhile is retried once on a new connection.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), K8sError> {
        let fail = |why: String| K8sError::Transport {
            method: go_method(&method),
            url: self.url(path_and_query),
            why,
        };
        let attempt = async {
            match self
                .send_once(&method, path_and_query, content_type, &body)
                .await
            {
                Ok(r) => Ok(r),
                Err((_, true)) => {
                    self.pool.lock().clear();
                    self.send_once(&method, path_and_query, content_type, &body)
                        .await
                        .map_err(|(e, _)| e)
                }
                Err((e, false)) => Err(e),
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r.map_err(fail),
            Err(_) => Err(fail(
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into(),
            )),
        }
    }

    /// A JSON request; a non-2xx answer becomes [`K8sError::Status`].
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<T, K8sError> {
        let (ct, bytes) = match body {
            Some((ct, b)) => (Some(ct), Bytes::from(b)),
            None => (None, Bytes::new()),
        };
        let (status, body) = self.send(method, path_and_query, ct, bytes).await?;
        if !status.is_success() {
            return Err(status_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| {
            K8sError::Decode(format!(
                "unable to decode the response from {}: {e}",
                self.url(path_and_query)
            ))
        })
    }
}

/// client-go's error for a non-2xx answer: the `Status` object's message when the body is
/// one, else its generic text for the code.
fn status_error(status: StatusCode, body: &[u8]) -> K8sError {
    if let Ok(s) = serde_json::from_slice::<types::Status>(body)
        && s.kind == "Status"
        && !s.message.is_empty()
    {
        return K8sError::Status {
            code: status.as_u16(),
            reason: s.reason,
            message: s.message,
        };
    }
    let text = String::from_utf8_lossy(body);
    let message = match status.as_u16() {
        401 => "Unauthorized".to_string(),
        403 => format!("forbidden: {}", text.trim()),
        404 => "the server could not find the requested resource".to_string(),
        _ => format!(
            "an error on the server ({:?}) has prevented the request from succeeding",
            text.trim()
        ),
    };
    K8sError::Status {
        code: status.as_u16(),
        reason: String::new(),
        message,
    }
}

/// Where a [`KubeClient`] gets its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A kubeconfig file, re-read when it changes.
    File(PathBuf),
    /// The pod's in-cluster configuration.
    InCluster,
}

impl ConfigSource {
    /// SPIRE's rule: an empty `kube_config_file` means in-cluster.
    pub fn from_path(path: &str) -> ConfigSource {
        if path.is_empty() {
            ConfigSource::InCluster
        } else {
            ConfigSource::File(PathBuf::from(path))
        }
    }
}

/// A Kubernetes API client. SPIRE's plugins load their configuration on every call; this
/// client loads it once and again only when the kubeconfig file changes, and keeps its
/// connections.
#[derive(Debug)]
pub struct KubeClient {
    source: ConfigSource,
    current: Mutex<Option<Loaded>>,
}

/// A client and the modification times of the files it was made from.
#[derive(Debug)]
struct Loaded {
    stamp: Vec<Option<SystemTime>>,
    files: Vec<PathBuf>,
    client: Arc<HttpClient>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn escape(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl KubeClient {
    /// A client whose configuration comes from `source` (loaded on first use).
    pub fn new(source: ConfigSource) -> KubeClient {
        KubeClient {
            source,
            current: Mutex::new(None),
        }
    }

    /// The HTTP client for the current configuration.
    pub fn http(&self) -> Result<Arc<HttpClient>, K8sError> {
        let kubeconfig = match &self.source {
            ConfigSource::File(p) => Some(p.clone()),
            ConfigSource::InCluster => None,
        };
        let stamp_of = |files: &[PathBuf]| -> Vec<Option<SystemTime>> {
            kubeconfig
                .iter()
                .chain(files.iter())
                .map(|f| modified(f))
                .collect()
        };
        if let Some(loaded) = self.current.lock().as_ref()
            && stamp_of(&loaded.files) == loaded.stamp
        {
            return Ok(loaded.client.clone());
        }
        let config = match &self.source {
            ConfigSource::File(p) => kubeconfig::from_kubeconfig(p),
            ConfigSource::InCluster => kubeconfig::in_cluster_from_env(),
        }
        .map_err(|e| K8sError::Config(format!("unable to create client config: {e}")))?;
        let files = config.files.clone();
        let client = Arc::new(HttpClient::new(config)?);
        *self.current.lock() = Some(Loaded {
            stamp: stamp_of(&files),
            files,
            client: client.clone(),
        });
        Ok(client)
    }

    /// `GET /api/v1/namespaces/{ns}/pods/{name}`.
    pub async fn get_pod(&self, namespace: &str, name: &str) -> Result<types::Pod, K8sError> {
        self.http()?
            .json(
                Method::GET,
                &format!(
                    "/api/v1/namespaces/{}/pods/{}",
                    escape(namespace),
                    escape(name)
                ),
                None,
            )
            .await
    }

    /// `GET /api/v1/nodes/{name}`.
    pub async fn get_node(&self, name: &str) -> Result<types::Node, K8sError> {
        self.http()?
            .json(
                Method::GET,
                &format!("/api/v1/nodes/{}", escape(name)),
                None,
            )
            .await
    }

    /// `POST /apis/authentication.k8s.io/v1/tokenreviews`: the review's status.
    pub async fn token_review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<types::TokenReviewStatus, K8sError> {
        let review = types::TokenReview {
            api_version: "authentication.k8s.io/v1".into(),
            kind: "TokenReview".into(),
            spec: types::TokenReviewSpec {
                token: token.to_string(),
                audiences: audiences.to_vec(),
            },
            status: types::TokenReviewStatus::default(),
        };
        let answer: types::TokenReview = self
            .write(
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                "application/json",
                &review,
            )
            .await?;
        Ok(answer.status)
    }

    /// `GET` of any object as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, K8sError> {
        self.http()?.json(Method::GET, path, None).await
    }

    /// A write of `body` as JSON with `content_type`.
    async fn write<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &B,
    ) -> Result<T, K8sError> {
        let body = to_json(body)?;
        self.http()?
            .json(method, path, Some((content_type, body)))
            .await
    }

    /// `POST` of a new object (client-go's `Create`).
    pub async fn create<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        object: &B,
    ) -> Result<T, K8sError> {
        self.write(Method::POST, path, "application/json", object)
            .await
    }

    /// `DELETE` of an object.
    pub async fn delete(&self, path: &str) -> Result<(), K8sError> {
        self.http()?
            .json::<serde_json::Value>(Method::DELETE, path, None)
            .await
            .map(|_| ())
    }

    /// `PATCH` with a strategic merge patch (what client-go's typed `Patch` calls send).
    pub async fn strategic_merge_patch<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        patch: &B,
    ) -> Result<T, K8sError> {
        self.write(
            Method::PATCH,
            path,
            "application/strategic-merge-patch+json",
            patch,
        )
        .await
    }

    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`; JSON is YAML). The
    /// path carries `fieldManager`.
    pub async fn apply<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        object: &B,
    ) -> Result<T, K8sError> {
        self.write(Method::PATCH, path, "application/apply-patch+yaml", object)
            .await
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, K8sError> {
    serde_json::to_vec(v).map_err(|e| K8sError::Decode(e.to_string()))
}

/// A path segment escaped for a URL path.
pub fn path_segment(s: &str) -> String {
    escape(s)
}
