//! NodeAttestor `gcp_iit`: the agent sends the instance identity token the GCE metadata
//! server issues for audience `spire-gcp-node-attestor`; the server checks it against
//! Google's certificates and names the agent by project and instance.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};
use spire_plugin_host::hostservices::AgentLookupCell;

use crate::jws::{self, KeySet, RsaKey};
use crate::template::{PathTemplate, Value};
use crate::{EnvFn, NowFn, assess_tofu, test_override};

mod adc;

pub const PLUGIN_NAME: &str = "gcp_iit";
/// The audience SPIRE asks the metadata server for and requires on the server.
pub const TOKEN_AUDIENCE: &str = "spire-gcp-node-attestor";
const DEFAULT_IDENTITY_TOKEN_HOST: &str = "metadata.google.internal";
const DEFAULT_SERVICE_ACCOUNT: &str = "default";
const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v1/certs";
const COMPUTE_URL: &str = "https://compute.googleapis.com";
const DEFAULT_AGENT_PATH_TEMPLATE: &str = "/{{ .PluginName }}/{{ .ProjectID }}/{{ .InstanceID }}";
const DEFAULT_MAX_METADATA_VALUE_SIZE: usize = 128;
/// Environment variables replacing Google's endpoints, for tests only.
pub const CERTS_URL_ENV: &str = "SPIRE_RS_TEST_GCP_IIT_CERTS_URL";
pub const COMPUTE_URL_ENV: &str = "SPIRE_RS_TEST_GCP_COMPUTE_URL";
/// Every outbound call is bounded by this (SPIRE sets no limit).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn internal(m: impl Into<String>) -> PluginError {
    PluginError::internal(m)
}

// === agent ===

/// `plugin_data` of the agent's `gcp_iit`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentConfig {
    #[serde(default)]
    pub identity_token_host: String,
    #[serde(default)]
    pub service_account: String,
}

/// The agent half.
#[derive(Debug)]
pub struct GcpIitAgent {
    url: String,
    http: spire_http::Client,
}

/// Go's `url.PathEscape`-free path encoding of `url.URL.String()`: bytes outside the
/// unreserved set and `$&+,/:;=@` are percent-encoded.
fn escape_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The metadata server URL SPIRE's agent asks (`format=full`, query keys sorted as Go's
/// `url.Values.Encode` does).
pub fn identity_token_url(host: &str, service_account: &str) -> String {
    format!(
        "http://{host}{}?audience={TOKEN_AUDIENCE}&format=full",
        escape_path(&format!(
            "/computeMetadata/v1/instance/service-accounts/{service_account}/identity"
        ))
    )
}

impl GcpIitAgent {
    pub fn new(config: &AgentConfig) -> Self {
        let host = if config.identity_token_host.is_empty() {
            DEFAULT_IDENTITY_TOKEN_HOST
        } else {
            &config.identity_token_host
        };
        let sa = if config.service_account.is_empty() {
            DEFAULT_SERVICE_ACCOUNT
        } else {
            &config.service_account
        };
        Self {
            url: identity_token_url(host, sa),
            http: spire_http::Client::new(HTTP_TIMEOUT),
        }
    }

    /// The same plugin with another bound on the metadata request (tests).
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.http = spire_http::Client::new(t);
        self
    }

    async fn fetch_token(&self) -> Result<Vec<u8>, String> {
        let req = spire_http::Request::get(&self.url)
            .and_then(|r| r.header("Metadata-Flavor", "Google"))
            .map_err(|e| e.to_string())?;
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|e| format!("Get {:?}: {e}", self.url))?;
        if resp.status != http::StatusCode::OK {
            return Err(format!("unexpected status code: {}", resp.status.as_u16()));
        }
        Ok(resp.body.to_vec())
    }
}

#[async_trait]
impl AgentNodeAttestor for GcpIitAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let token = self
            .fetch_token()
            .await
            .map_err(|e| internal(format!("unable to retrieve valid identity token: {e}")))?;
        match exchange.send(token).await? {
            None => Ok(()),
            Some(_) => Err(internal("unexpected challenge")),
        }
    }
}

// === server ===

/// `plugin_data` of the server's `gcp_iit`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerConfig {
    #[serde(default)]
    pub projectid_allow_list: Vec<String>,
    #[serde(default)]
    pub agent_path_template: String,
    #[serde(default)]
    pub use_instance_metadata: bool,
    #[serde(default)]
    pub allowed_label_keys: Vec<String>,
    #[serde(default)]
    pub allowed_metadata_keys: Vec<String>,
    #[serde(default)]
    pub max_metadata_value_size: i64,
    #[serde(default)]
    pub service_account_file: String,
}

/// The `google.compute_engine` claims of an identity token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ComputeEngine {
    #[serde(default)]
    pub project_id: String,
    #[serde(default)]
    pub project_number: i64,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub instance_name: String,
    #[serde(default)]
    pub instance_creation_timestamp: i64,
}

#[derive(Debug, Default, Deserialize)]
struct IdentityToken {
    #[serde(flatten)]
    claims: jws::Claims,
    #[serde(default)]
    google: GoogleClaims,
}

#[derive(Debug, Default, Deserialize)]
struct GoogleClaims {
    #[serde(default)]
    compute_engine: ComputeEngine,
}

/// The parts of the Compute API's `Instance` that selectors use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub service_accounts: Vec<ServiceAccount>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Tags {
    #[serde(default)]
    pub items: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceAccount {
    #[serde(default)]
    pub email: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub items: Vec<MetadataItem>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetadataItem {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// Google's certificates as last fetched, and until when they may be used.
#[derive(Debug, Default)]
struct CertCache {
    keys: KeySet,
    expiry: Option<SystemTime>,
}

/// The server half.
pub struct GcpIitServer {
    trust_domain: TrustDomain,
    template: PathTemplate,
    allow_list: Vec<String>,
    use_instance_metadata: bool,
    allowed_label_keys: BTreeSet<String>,
    allowed_metadata_keys: BTreeSet<String>,
    max_metadata_value_size: usize,
    credentials: adc::Credentials,
    agents: AgentLookupCell,
    certs_url: String,
    compute_url: String,
    certs: tokio::sync::Mutex<CertCache>,
    http: spire_http::Client,
    now: NowFn,
}

impl std::fmt::Debug for GcpIitServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpIitServer")
            .field("allow_list", &self.allow_list)
            .field("use_instance_metadata", &self.use_instance_metadata)
            .finish_non_exhaustive()
    }
}

impl GcpIitServer {
    /// Builds the plugin from its configuration, with SPIRE's checks and messages.
    pub fn new(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        agents: AgentLookupCell,
    ) -> PluginResult<Self> {
        Self::with_env(
            config,
            trust_domain,
            agents,
            Arc::new(SystemTime::now),
            crate::process_env(),
        )
    }

    /// As [`GcpIitServer::new`] with an explicit clock and environment.
    pub fn with_env(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        agents: AgentLookupCell,
        now: NowFn,
        env: EnvFn,
    ) -> PluginResult<Self> {
        if config.projectid_allow_list.is_empty() {
            return Err(PluginError::invalid_argument(
                "projectid_allow_list is required",
            ));
        }
        let template = if config.agent_path_template.is_empty() {
            PathTemplate::parse(DEFAULT_AGENT_PATH_TEMPLATE).map_err(internal)?
        } else {
            PathTemplate::parse(&config.agent_path_template).map_err(|_| {
                PluginError::invalid_argument(format!(
                    "failed to parse agent path template: {:?}",
                    config.agent_path_template
                ))
            })?
        };
        let max = match config.max_metadata_value_size {
            0 => DEFAULT_MAX_METADATA_VALUE_SIZE,
            n => usize::try_from(n).unwrap_or(0),
        };
        Ok(Self {
            trust_domain,
            template,
            allow_list: config.projectid_allow_list.clone(),
            use_instance_metadata: config.use_instance_metadata,
            allowed_label_keys: config.allowed_label_keys.iter().cloned().collect(),
            allowed_metadata_keys: config.allowed_metadata_keys.iter().cloned().collect(),
            max_metadata_value_size: max,
            credentials: adc::Credentials::new(adc::find(
                (!config.service_account_file.is_empty())
                    .then(|| PathBuf::from(&config.service_account_file)),
                &env,
            )),
            agents,
            certs_url: test_override(CERTS_URL_ENV, "Google's certificate URL")
                .unwrap_or_else(|| GOOGLE_CERTS_URL.into()),
            compute_url: test_override(COMPUTE_URL_ENV, "the Compute Engine API URL")
                .unwrap_or_else(|| COMPUTE_URL.into())
                .trim_end_matches('/')
                .to_string(),
            certs: tokio::sync::Mutex::default(),
            http: spire_http::Client::new(HTTP_TIMEOUT),
            now,
        })
    }

    /// The same plugin fetching Google's certificates and the Compute API from
    /// `certs_url` and `compute_url` (tests).
    pub fn with_endpoints(mut self, certs_url: &str, compute_url: &str) -> Self {
        self.certs_url = certs_url.into();
        self.compute_url = compute_url.trim_end_matches('/').into();
        self
    }

    /// The same plugin with another bound on outbound calls (tests).
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.http = spire_http::Client::new(t);
        self
    }

    /// Google's certificates, fetched again once their `Expires` has passed (every time
    /// when the answer has none), as SPIRE's retriever does.
    async fn key_set(&self) -> PluginResult<KeySet> {
        let mut cache = self.certs.lock().await;
        let now = (self.now)();
        if cache.expiry.is_none_or(|e| now > e) {
            let (keys, expiry) = self.download_certs().await.map_err(internal)?;
            *cache = CertCache { keys, expiry };
        }
        Ok(cache.keys.clone())
    }

    async fn download_certs(&self) -> Result<(KeySet, Option<SystemTime>), String> {
        let req = spire_http::Request::get(&self.certs_url).map_err(|e| e.to_string())?;
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|e| format!("Get {:?}: {e}", self.certs_url))?;
        if resp.status != http::StatusCode::OK {
            return Err(format!("unexpected status code: {}", resp.status.as_u16()));
        }
        let keys = parse_cert_map(&resp.body)?;
        let expiry = resp.header("expires").and_then(parse_http_date);
        Ok((keys, expiry))
    }

    fn agent_id(&self, ce: &ComputeEngine) -> PluginResult<SpiffeId> {
        // gcp.agentPathTemplateData: the embedded ComputeEngine, then PluginName.
        let data = Value::structure(
            "gcp.agentPathTemplateData",
            [
                ("ProjectID", Value::from(ce.project_id.as_str())),
                ("ProjectNumber", Value::Int64(ce.project_number)),
                ("Zone", Value::from(ce.zone.as_str())),
                ("InstanceID", Value::from(ce.instance_id.as_str())),
                ("InstanceName", Value::from(ce.instance_name.as_str())),
                (
                    "InstanceCreationTimestamp",
                    Value::Int64(ce.instance_creation_timestamp),
                ),
                ("PluginName", Value::from(PLUGIN_NAME)),
            ],
        );
        let path = self
            .template
            .execute(&data, &mut |b: &mut [u8]| {
                // uuidv4's randomness; a failing system RNG leaves zeros (no secret).
                let _ = aws_lc_rs::rand::fill(b);
            })
            .map_err(|e| internal(format!("failed to create agent ID: {e}")))?;
        crate::agent_id(&self.trust_domain, &path)
            .map_err(|e| internal(format!("failed to create agent ID: {e}")))
    }

    async fn fetch_instance(&self, ce: &ComputeEngine) -> Result<Instance, String> {
        let token = self
            .access_token()
            .await
            .map_err(|e| format!("failed to create compute service client: {e}"))?;
        let url = format!(
            "{}/compute/v1/projects/{}/zones/{}/instances/{}?alt=json&prettyPrint=false",
            self.compute_url,
            escape_segment(&ce.project_id),
            escape_segment(&ce.zone),
            escape_segment(&ce.instance_name)
        );
        let req = spire_http::Request::get(&url)
            .and_then(|r| r.header("Authorization", &format!("Bearer {token}")))
            .map_err(|e| e.to_string())?;
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|e| format!("failed to fetch instance metadata: Get {url:?}: {e}"))?;
        if !resp.status.is_success() {
            return Err(format!(
                "failed to fetch instance metadata: {}",
                googleapi_error(resp.status.as_u16(), &resp.body)
            ));
        }
        resp.json::<Instance>()
            .map_err(|e| format!("failed to fetch instance metadata: {e}"))
    }

    /// An OAuth2 access token for the Compute API, from Application Default Credentials
    /// ([`adc`]).
    async fn access_token(&self) -> Result<String, String> {
        self.credentials.token(&self.http, &self.now).await
    }
}

/// `googleapi: Error <code>: <message>` from an API error body, as the Go client words it.
fn googleapi_error(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.error)
        .filter(|e| !e.message.is_empty())
    {
        Some(e) => format!("googleapi: Error {status}: {}", e.message),
        None => format!("googleapi: got HTTP response code {status}"),
    }
}

fn escape_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Google's `oauth2/v1/certs` answer: key ID to certificate PEM.
pub fn parse_cert_map(body: &[u8]) -> Result<KeySet, String> {
    let map: BTreeMap<String, String> = serde_json::from_slice(body)
        .map_err(|e| format!("unable to unmarshal certificate response: {e}"))?;
    let mut keys = Vec::new();
    for (kid, pem) in map {
        let key = RsaKey::from_certificate_pem(&pem)
            .map_err(|e| format!("unable to unmarshal certificate response: {e}"))?;
        keys.push((kid, key.into()));
    }
    Ok(KeySet::new(keys))
}

/// Go's `time.Parse("Mon, 2 Jan 2006 15:04:05 MST", v)` for the `Expires` header (zone
/// abbreviations taken as UTC, as Go does for zones it does not know).
pub fn parse_http_date(v: &str) -> Option<SystemTime> {
    let mut it = v.split_whitespace();
    let _dow = it.next()?.strip_suffix(',')?;
    let day: u64 = it.next()?.parse().ok()?;
    let month_name = it.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month_name)? as u64
        + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let _zone = it.next()?;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 59 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

fn selector(key: &str, values: &[&str]) -> String {
    format!("{key}:{}", values.join(":"))
}

impl GcpIitServer {
    fn instance_selectors(&self, inst: &Instance) -> PluginResult<Vec<String>> {
        let mut metadata = Vec::new();
        if let Some(md) = &inst.metadata {
            for item in &md.items {
                if !self.allowed_metadata_keys.contains(&item.key) {
                    continue;
                }
                let value = item.value.clone().unwrap_or_default();
                if value.len() > self.max_metadata_value_size {
                    return Err(internal(format!(
                        "metadata {:?} exceeded value limit ({} > {})",
                        item.key,
                        value.len(),
                        self.max_metadata_value_size
                    )));
                }
                metadata.push((item.key.clone(), value));
            }
        }
        let mut out = Vec::new();
        for tag in inst.tags.iter().flat_map(|t| &t.items) {
            out.push(selector("tag", &[tag]));
        }
        for sa in &inst.service_accounts {
            out.push(selector("sa", &[&sa.email]));
        }
        for (k, v) in &inst.labels {
            if self.allowed_label_keys.contains(k) {
                out.push(selector("label", &[k, v]));
            }
        }
        for (k, v) in &metadata {
            out.push(selector("metadata", &[k, v]));
        }
        Ok(out)
    }

    fn validate_token(&self, payload: &[u8], keys: &KeySet) -> PluginResult<ComputeEngine> {
        let text = std::str::from_utf8(payload).map_err(|_| {
            PluginError::invalid_argument(
                "unable to parse the identity token: go-jose/go-jose: compact JWS format must have three parts",
            )
        })?;
        let parsed = jws::parse_rs256(text).map_err(|e| {
            PluginError::invalid_argument(format!("unable to parse the identity token: {e}"))
        })?;
        let invalid_sig = |e: String| {
            PluginError::invalid_argument(format!(
                "failed to validate the identity token signature: {e}"
            ))
        };
        let claims = parsed.verify(keys).map_err(invalid_sig)?;
        let token: IdentityToken =
            serde_json::from_slice(claims).map_err(|e| invalid_sig(e.to_string()))?;
        token
            .claims
            .validate(&jws::Expected {
                any_audience: &[TOKEN_AUDIENCE],
                now: Some((self.now)()),
                ..Default::default()
            })
            .map_err(|e| {
                PluginError::permission_denied(format!(
                    "failed to validate the identity token claims: {e}"
                ))
            })?;
        Ok(token.google.compute_engine)
    }
}

#[async_trait]
impl ServerNodeAttestor for GcpIitServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        _challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        let keys = self.key_set().await?;
        if payload.is_empty() {
            return Err(PluginError::invalid_argument("missing attestation payload"));
        }
        let ce = self.validate_token(&payload, &keys)?;
        if !self.allow_list.contains(&ce.project_id) {
            return Err(PluginError::permission_denied(format!(
                "identity token project ID {:?} is not in the allow list",
                ce.project_id
            )));
        }
        let agent_id = self.agent_id(&ce)?;
        assess_tofu(&self.agents, agent_id.as_str()).await?;
        let instance = if self.use_instance_metadata {
            Some(
                self.fetch_instance(&ce)
                    .await
                    .map_err(|e| internal(format!("failed to fetch instance metadata: {e}")))?,
            )
        } else {
            None
        };
        let mut selector_values = vec![
            selector("project-id", &[&ce.project_id]),
            selector("zone", &[&ce.zone]),
            selector("instance-name", &[&ce.instance_name]),
        ];
        if let Some(inst) = &instance {
            selector_values.extend(self.instance_selectors(inst)?);
        }
        Ok(AttestedAgent {
            agent_id,
            selector_values,
            can_reattest: false,
        })
    }
}

#[cfg(test)]
mod tests;
