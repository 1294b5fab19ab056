//! One small outbound HTTP/1.1 client for the plugins that call HTTP APIs (cloud metadata
//! services, cloud provider APIs, Vault, bundle endpoints).
//!
//! Each request opens its own connection (these callers make a handful of calls per
//! attestation or refresh, never a stream of them), and the whole exchange, from the
//! TCP connect to the last byte of the body, is bounded by the client's timeout. Response
//! bodies are bounded in size too, so a misbehaving endpoint can neither hold a caller nor
//! fill its memory. `https://` URLs verify the server against the system's roots unless the
//! caller hands in its own rustls configuration (built by `spire-tls`, the only crate that
//! builds them).
//!
//! Errors never carry request headers or bodies: callers put tokens in both.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

/// What Go's `net/http` puts in `User-Agent` when the caller sets none; SPIRE's plugins set
/// none, so this is what the services they call see.
const DEFAULT_USER_AGENT: &str = "Go-http-client/1.1";

/// Responses larger than this are refused unless the request says otherwise.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

/// Why a request did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL or a header could not be used.
    #[error("invalid request: {0}")]
    Url(String),
    /// No TCP connection to the server.
    #[error("dial tcp {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The exchange did not finish within the client's timeout.
    #[error("request to {0} timed out after {1:?}")]
    Timeout(String, Duration),
    /// The TLS handshake failed (untrusted or mismatched certificate, ...).
    #[error("tls: {0}")]
    Tls(String),
    /// The server broke HTTP/1.1 or the connection dropped mid-exchange.
    #[error("http: {0}")]
    Protocol(String),
    /// The response body went beyond the request's limit.
    #[error("response body exceeds {0} bytes")]
    TooLarge(usize),
    /// The body is not what the caller expected (JSON of that shape, UTF-8).
    #[error("decoding response body: {0}")]
    Decode(String),
}

/// One request, built step by step.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: url::Url,
    headers: HeaderMap,
    body: Bytes,
    max_body: usize,
}

impl Request {
    /// A request with `method` to `url`; only `http` and `https` URLs with a host are taken.
    pub fn new(method: Method, url: &str) -> Result<Self, HttpError> {
        let url = url::Url::parse(url).map_err(|e| HttpError::Url(format!("{url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Url(format!(
                "unsupported protocol scheme {:?}",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(HttpError::Url(format!("no host in {url:?}")));
        }
        Ok(Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            max_body: DEFAULT_MAX_BODY,
        })
    }

    pub fn get(url: &str) -> Result<Self, HttpError> {
        Self::new(Method::GET, url)
    }

    pub fn post(url: &str) -> Result<Self, HttpError> {
        Self::new(Method::POST, url)
    }

    pub fn put(url: &str) -> Result<Self, HttpError> {
        Self::new(Method::PUT, url)
    }

    pub fn delete(url: &str) -> Result<Self, HttpError> {
        Self::new(Method::DELETE, url)
    }

    /// Adds a header (a second one with the same name is added, not replaced). The value
    /// is never echoed in the error: it may be a token.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HttpError> {
        let n = HeaderName::try_from(name)
            .map_err(|_| HttpError::Url(format!("invalid header name {name:?}")))?;
        let mut v = HeaderValue::try_from(value)
            .map_err(|_| HttpError::Url(format!("invalid value for header {name:?}")))?;
        if n == http::header::AUTHORIZATION {
            v.set_sensitive(true);
        }
        self.headers.append(n, v);
        Ok(self)
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, with `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError::Url(e.to_string()))?;
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.body = body.into();
        Ok(self)
    }

    /// The largest response body accepted (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn body_bytes(&self) -> &Bytes {
        &self.body
    }

    /// `host[:port]` as it goes in the `Host` header: the port only when the URL names one.
    fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    /// The URL without scheme and authority, for the request line.
    fn target(&self) -> &str {
        let t = &self.url[url::Position::BeforePath..url::Position::AfterQuery];
        if t.is_empty() { "/" } else { t }
    }

    /// The URL without its query (which may hold secrets), for errors and logs.
    fn redacted(&self) -> String {
        let mut u = self.url.clone();
        u.set_query(None);
        let _ = u.set_password(None);
        u.to_string()
    }
}

/// A whole response: status, headers, the body read to its end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode(e.to_string()))
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body).map_err(|e| HttpError::Decode(e.to_string()))
    }

    /// The first value of header `name`, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The client: a timeout and, for `https`, a rustls configuration. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field("custom_tls", &self.tls.is_some())
            .finish()
    }
}

/// The system-roots configuration, built once per process on first `https` use.
fn system_tls() -> Result<Arc<rustls::ClientConfig>, HttpError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = spire_tls::system_roots().map_err(|e| e.to_string())?;
            spire_tls::web_client_config(&roots).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(HttpError::Tls)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl Client {
    /// A client whose every call, connect to last body byte, is bounded by `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, tls: None }
    }

    /// Verifies `https` servers with `config` instead of the system's roots.
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The same client with every call bounded by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bound of every call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `req` and reads the whole response. Any status is a response; judging it is
    /// the caller's business.
    pub async fn send(&self, req: Request) -> Result<Response, HttpError> {
        let shown = req.redacted();
        match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(shown, self.timeout)),
        }
    }

    async fn exchange(&self, req: Request) -> Result<Response, HttpError> {
        let host = req.url.host_str().unwrap_or_default();
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = req
            .url
            .port_or_known_default()
            .ok_or_else(|| HttpError::Url(format!("no port for {:?}", req.url.scheme())))?;
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect {
                addr: format!("{host}:{port}"),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if req.url.scheme() == "https" {
            let config = match &self.tls {
                Some(c) => c.clone(),
                None => system_tls()?,
            };
            let name = ServerName::try_from(bare)
                .map_err(|e| HttpError::Url(format!("server name {host:?}: {e}")))?;
            Box::new(
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| HttpError::Tls(e.to_string()))?,
            )
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });

        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(req.target())
            .header(HOST, req.authority());
        if !req.headers.contains_key(USER_AGENT) {
            builder = builder.header(USER_AGENT, DEFAULT_USER_AGENT);
        }
        let mut http_req = builder
            .body(Full::new(req.body.clone()))
            .map_err(|e| HttpError::Url(e.to_string()))?;
        for (name, value) in &req.headers {
            http_req.headers_mut().append(name, value.clone());
        }

        let result = async {
            let resp = sender
                .send_request(http_req)
                .await
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, req.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge(req.max_body)
                    } else {
                        HttpError::Protocol(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests;
