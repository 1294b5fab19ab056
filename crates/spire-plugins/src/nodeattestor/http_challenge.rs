//! `http_challenge`: the agent proves it controls a host name by serving a nonce over HTTP,
//! wire-compatible with SPIRE's plugin (`pkg/common/plugin/httpchallenge`).
//!
//! The agent binds its listener (`port`, 0 for any), sends `{"hostname", "agentname",
//! "port"}` (`advertised_port` if set); the server checks the port (`required_port`,
//! `allow_non_root_ports`), the agent name and the host name (never `localhost`; one of
//! `allowed_dns_patterns` when any is set), answers `{"nonce": <url-safe base64>}`, and once
//! the agent replies (a bare newline) fetches
//! `http://<hostname>:<port>/.well-known/spiffe/nodeattestor/http_challenge/<agentname>/challenge`
//! within 10 s, reading at most 64 bytes, which must be the nonce. The agent ID is
//! `/spire/agent/http_challenge/<hostname>`, the selector `hostname:<hostname>`. With `tofu`
//! (the default) an agent ID that is already attested is refused and the agent cannot
//! re-attest. Unlike SPIRE's Go client, the server never follows a redirect.

use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::rand::SecureRandom as _;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::rt::TokioIo;
use regex::Regex;
use serde::{Deserialize, Serialize};
use spiffe_core::TrustDomain;
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};
use spire_plugin_host::hostservices::AgentLookupCell;

/// The plugin name, also the selector type.
pub const PLUGIN_NAME: &str = "http_challenge";
const NONCE_LEN: usize = 32;
/// How long the server waits for the agent's answer, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of the agent's answer the server reads.
const MAX_BODY: usize = 64;
/// The agent's read and write timeouts on its challenge listener.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The attestation payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttestationData {
    /// The host name the server connects to.
    #[serde(rename = "hostname", default)]
    pub host_name: String,
    /// The agent name (a path segment of the challenge URL).
    #[serde(rename = "agentname", default)]
    pub agent_name: String,
    /// The port the server connects to.
    #[serde(default)]
    pub port: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Challenge {
    #[serde(default)]
    nonce: String,
}

/// The path the agent serves its nonce on.
pub fn challenge_path(agent_name: &str) -> String {
    // Escaped as Go's url.URL escapes a path, so both sides agree on odd names.
    let mut escaped = String::new();
    for b in agent_name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$&+,/:;=@".contains(&b) {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/.well-known/spiffe/nodeattestor/http_challenge/{escaped}/challenge")
}

fn internal(msg: impl Into<String>) -> PluginError {
    PluginError::internal(msg)
}

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::invalid_argument(msg)
}

fn denied(msg: impl Into<String>) -> PluginError {
    PluginError::permission_denied(msg)
}

// === server ===

/// `plugin_data` of the server's `http_challenge` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerConfig {
    /// Regular expressions; a host name must match one (any host name when empty).
    #[serde(default)]
    pub allowed_dns_patterns: Vec<String>,
    /// The only port agents may advertise.
    #[serde(default)]
    pub required_port: Option<i64>,
    /// Whether ports from 1024 up are allowed (default true).
    #[serde(default)]
    pub allow_non_root_ports: Option<bool>,
    /// Trust on first use (default true): an attested agent ID cannot attest again.
    #[serde(default)]
    pub tofu: Option<bool>,
}

/// The server half of `http_challenge`.
pub struct HttpChallengeServer {
    trust_domain: TrustDomain,
    required_port: Option<i64>,
    allow_non_root_ports: bool,
    dns_patterns: Vec<Regex>,
    tofu: bool,
    agents: AgentLookupCell,
    timeout: Duration,
}

impl std::fmt::Debug for HttpChallengeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpChallengeServer")
            .field("required_port", &self.required_port)
            .field("allow_non_root_ports", &self.allow_non_root_ports)
            .field("tofu", &self.tofu)
            .finish_non_exhaustive()
    }
}

impl HttpChallengeServer {
    /// Builds the plugin; `agents` answers whether an agent ID is attested (for `tofu`).
    pub fn new(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        agents: AgentLookupCell,
    ) -> PluginResult<Self> {
        let mut dns_patterns = Vec::new();
        for p in &config.allowed_dns_patterns {
            let re = Regex::new(p)
                .map_err(|e| invalid(format!("cannot compile allowed_dns_pattern: {p:?}, {e}")))?;
            dns_patterns.push(re);
        }
        let allow_non_root_ports = config.allow_non_root_ports.unwrap_or(true);
        let tofu = config.tofu.unwrap_or(true);
        let must_use_tofu = match (config.required_port, config.allow_non_root_ports) {
            // An explicitly required port that anyone on the host may bind.
            (Some(port), _) => port >= 1024,
            // The defaults (any port) or non-root ports explicitly allowed.
            (None, None) | (None, Some(true)) => true,
            (None, Some(false)) => false,
        };
        if !tofu && must_use_tofu {
            return Err(invalid(
                "you can not turn off trust on first use (TOFU) when non-root ports are allowed",
            ));
        }
        Ok(Self {
            trust_domain,
            required_port: config.required_port,
            allow_non_root_ports,
            dns_patterns,
            tofu,
            agents,
            timeout: FETCH_TIMEOUT,
        })
    }

    /// The same plugin with another fetch timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn validate_host_name(&self, host: &str) -> PluginResult<()> {
        if host == "localhost" {
            return Err(denied("you can not use localhost as a hostname"));
        }
        if self.dns_patterns.is_empty() || self.dns_patterns.iter().any(|re| re.is_match(host)) {
            return Ok(());
        }
        Err(denied("the requested hostname is not allowed to connect"))
    }

    async fn assess_tofu(&self, agent_id: &str) -> PluginResult<()> {
        let Some(lookup) = self.agents.get() else {
            return Err(PluginError::new(
                spire_plugin::Code::FailedPrecondition,
                "unable to get agent info: AgentStore host service has not been initialized",
            ));
        };
        match lookup.is_attested(agent_id).await {
            Ok(false) => Ok(()),
            Ok(true) => {
                tracing::error!(
                    spiffe_id = %agent_id,
                    "Attestation data has already been used to attest an agent"
                );
                Err(denied(
                    "attestation data has already been used to attest an agent",
                ))
            }
            Err(e) => Err(internal(format!("unable to get agent info: {e}"))),
        }
    }
}

/// Go's `^[a-zA-z]+[a-zA-Z0-9-]$` (the `A-z` range, `[\]^_` and the backtick included, is
/// SPIRE's) and at most 32 bytes.
fn valid_agent_name(name: &str) -> bool {
    let first = |c: char| c.is_ascii_alphabetic() || ('['..='`').contains(&c);
    let last = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let mut chars = name.chars();
    let Some(end) = chars.next_back() else {
        return false;
    };
    let head = chars.as_str();
    name.len() <= 32 && !head.is_empty() && head.chars().all(first) && last(end)
}

/// SPIRE's checks of the payload before fetching, in its order.
fn check_fetch_target(data: &AttestationData) -> Result<u16, String> {
    if data.host_name.is_empty() {
        return Err("hostname must be set".into());
    }
    if data.agent_name.is_empty() {
        return Err("agentname must be set".into());
    }
    if data.port <= 0 {
        return Err("port is invalid".into());
    }
    if data.host_name.contains('/') {
        return Err("hostname can not contain a slash".into());
    }
    if data.host_name.contains(':') {
        return Err("hostname can not contain a colon".into());
    }
    if data.agent_name.contains('.') {
        return Err("agentname can not contain a dot".into());
    }
    u16::try_from(data.port).map_err(|_| format!("dial tcp: address {}: invalid port", data.port))
}

/// Fetches the agent's answer: at most [`MAX_BODY`] bytes of the body, redirects refused,
/// everything within `timeout`.
pub async fn fetch_answer(
    host: &str,
    port: u16,
    agent_name: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let path = challenge_path(agent_name);
    let url = format!("http://{host}:{port}{path}");
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| {
                format!(
                    "dial tcp {host}:{port}: connect: {}",
                    spire_gocompat::os::errno_text(&e)
                )
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = http::Request::get(path.as_str())
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::USER_AGENT, "Go-http-client/1.1")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_redirection() {
            driver.abort();
            let to = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            return Err(format!(
                "redirects are not followed (\"{status}\" to {to:?})"
            ));
        }
        let mut body = response.into_body();
        let mut out = Vec::new();
        while out.len() < MAX_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = MAX_BODY - out.len();
                        out.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(e)) => {
                    driver.abort();
                    return Err(e.to_string());
                }
                None => break,
            }
        }
        driver.abort();
        Ok(out)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
        Err(_) => Err(format!("Get {url:?}: context deadline exceeded")),
    }
}

#[async_trait]
impl ServerNodeAttestor for HttpChallengeServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        if payload.is_empty() {
            return Err(invalid("missing attestation payload"));
        }
        let data: AttestationData = serde_json::from_slice(&payload)
            .map_err(|e| invalid(format!("failed to unmarshal data: {e}")))?;
        if let Some(port) = self.required_port
            && data.port != port
        {
            return Err(invalid(format!(
                "port {} is not allowed to be used by this server",
                data.port
            )));
        }
        if !self.allow_non_root_ports && data.port >= 1024 {
            return Err(invalid(format!(
                "port {} is not allowed to be >= 1024",
                data.port
            )));
        }
        if !valid_agent_name(&data.agent_name) {
            return Err(invalid("agent name is not valid"));
        }
        self.validate_host_name(&data.host_name)?;

        let mut raw = [0u8; NONCE_LEN];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| internal("unable to generate challenge: random source failed"))?;
        let nonce = base64::engine::general_purpose::URL_SAFE.encode(raw);
        let challenge = serde_json::to_vec(&Challenge {
            nonce: nonce.clone(),
        })
        .map_err(|e| internal(format!("unable to marshal challenge: {e}")))?;
        // The answer carries nothing; the agent serves the nonce once it has sent it.
        challenger.challenge(challenge).await?;

        tracing::debug!("Verifying challenge");
        let verify = async {
            let port = check_fetch_target(&data)?;
            let body = fetch_answer(&data.host_name, port, &data.agent_name, self.timeout).await?;
            let got = String::from_utf8_lossy(&body);
            if got.trim() != nonce {
                return Err(format!("expected nonce {nonce:?} but got {got:?}"));
            }
            Ok(())
        };
        verify
            .await
            .map_err(|e: String| denied(format!("challenge verification failed: {e}")))?;

        let path = format!("/spire/agent/{PLUGIN_NAME}/{}", data.host_name);
        let agent_id = self.trust_domain.id_with_path(&path).map_err(|e| {
            internal(format!(
                "failed to make spiffe id: invalid agent path suffix \"/{PLUGIN_NAME}/{}\": {e}",
                data.host_name
            ))
        })?;
        if self.tofu {
            self.assess_tofu(&agent_id.to_string()).await?;
        }
        Ok(AttestedAgent {
            agent_id,
            selector_values: vec![format!("hostname:{}", data.host_name)],
            can_reattest: !self.tofu,
        })
    }
}

// === agent ===

/// `plugin_data` of the agent's `http_challenge` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentConfig {
    /// The host name the server connects to (default: this host's name).
    #[serde(default)]
    pub hostname: String,
    /// The agent name in the challenge path (default `default`).
    #[serde(default)]
    pub agentname: String,
    /// The port to listen on (0: any free port).
    #[serde(default)]
    pub port: i64,
    /// The port the server is told to connect to (default: the listener's).
    #[serde(default)]
    pub advertised_port: i64,
}

/// The agent half of `http_challenge`.
#[derive(Debug, Clone)]
pub struct HttpChallengeAgent {
    host_name: String,
    agent_name: String,
    port: i64,
    advertised_port: i64,
    bind_host: String,
}

impl HttpChallengeAgent {
    /// Builds the plugin; `hostname` defaults to this host's name.
    pub fn new(config: &AgentConfig) -> PluginResult<Self> {
        let host_name = if config.hostname.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .map_err(|e| invalid(format!("unable to fetch hostname: {e}")))?
        } else {
            config.hostname.clone()
        };
        let agent_name = if config.agentname.is_empty() {
            "default".to_string()
        } else {
            config.agentname.clone()
        };
        let advertised_port = if config.advertised_port == 0 {
            config.port
        } else {
            config.advertised_port
        };
        Ok(Self {
            host_name,
            agent_name,
            port: config.port,
            advertised_port,
            bind_host: String::new(),
        })
    }

    /// Binds the listener on `host` instead of every interface (tests).
    pub fn with_bind_host(mut self, host: &str) -> Self {
        self.bind_host = host.to_string();
        self
    }

    async fn listen(&self) -> PluginResult<tokio::net::TcpListener> {
        let fail = |e: String| internal(format!("could not listen on port {}: {e}", self.port));
        let port = u16::try_from(self.port)
            .map_err(|_| fail(format!("listen tcp: address {}: invalid port", self.port)))?;
        if !self.bind_host.is_empty() {
            return tokio::net::TcpListener::bind((self.bind_host.as_str(), port))
                .await
                .map_err(|e| fail(format!("listen tcp {}:{port}: {e}", self.bind_host)));
        }
        // Every interface, as Go's `:<port>`: dual-stack where IPv6 exists.
        match tokio::net::TcpListener::bind(("::", port)).await {
            Ok(l) => Ok(l),
            Err(_) => tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .map_err(|e| {
                    fail(format!(
                        "listen tcp :{port}: bind: {}",
                        spire_gocompat::os::errno_text(&e)
                    ))
                }),
        }
    }
}

/// Serves `nonce` on the challenge path until dropped; other paths get Go's 404.
async fn serve_nonce(listener: tokio::net::TcpListener, path: String, nonce: String) {
    let path = std::sync::Arc::new(path);
    let body = Bytes::from(format!("{nonce}\n"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let path = path.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                let response = if req.uri().path() == path.as_str() {
                    http::Response::builder()
                        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                        .body(Full::new(body.clone()))
                } else {
                    http::Response::builder()
                        .status(http::StatusCode::NOT_FOUND)
                        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                        .body(Full::new(Bytes::from_static(b"404 page not found\n")))
                };
                async move { response }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(SERVE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(SERVE_TIMEOUT * 2, conn).await;
        });
    }
}

#[async_trait]
impl AgentNodeAttestor for HttpChallengeAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let listener = self.listen().await?;
        let advertised_port = if self.advertised_port == 0 {
            listener
                .local_addr()
                .map(|a| i64::from(a.port()))
                .map_err(|e| internal(format!("could not listen on port {}: {e}", self.port)))?
        } else {
            self.advertised_port
        };
        let payload = serde_json::to_vec(&AttestationData {
            host_name: self.host_name.clone(),
            agent_name: self.agent_name.clone(),
            port: advertised_port,
        })
        .map_err(|e| internal(format!("unable to marshal attestation data: {e}")))?;
        let Some(challenge) = exchange.send(payload).await? else {
            return Err(internal("expected a challenge"));
        };
        let challenge: Challenge = serde_json::from_slice(&challenge)
            .map_err(|e| internal(format!("unable to unmarshal challenge: {e}")))?;
        tracing::debug!(path = %challenge_path(&self.agent_name), "Setting up nonce handler");
        let server = tokio::spawn(serve_nonce(
            listener,
            challenge_path(&self.agent_name),
            challenge.nonce,
        ));
        // SPIRE's agent answers with a bare newline, then serves until attestation ends.
        let result = exchange.send(b"\n".to_vec()).await;
        server.abort();
        match result? {
            None => Ok(()),
            Some(_) => Err(internal("unexpected second challenge")),
        }
    }
}

#[cfg(test)]
mod tests;
