//! UpstreamAuthority `vault`: the server's CA is signed by a Vault (or OpenBao) PKI secrets
//! engine through `<pki_mount_point>/root/sign-intermediate`, as SPIRE 1.13's plugin does.
//!
//! - Authentication: one of `token_auth` (checked with `auth/token/lookup-self`),
//!   `cert_auth` (TLS client certificate, `auth/<mount>/login`), `approle_auth` and
//!   `k8s_auth` (service account token file), with SPIRE's defaults for the mount points
//!   and its `VAULT_*` environment variables taking precedence over the file.
//! - The client logs in at the first mint and keeps the token. A renewable token with a
//!   lease is renewed (`auth/token/renew-self`) once two thirds of the lease have passed;
//!   when renewal fails, or a non-renewable token's lease has run out, the next mint logs in
//!   again (SPIRE drops its client when its renewer stops).
//! - JWT keys are not published upstream.
//!
//! Calls go over `spire-http` with a 30 s bound; Vault's own error texts are passed on.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use spire_plugin::{
    Code, JwtKey, PluginError, PluginResult, UpstreamAuthority, UpstreamUpdates, UpstreamX509Ca,
};

/// The plugin's name in SPIRE's catalog.
pub const PLUGIN_NAME: &str = "vault";

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `plugin_data` of the `vault` UpstreamAuthority.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub vault_addr: String,
    #[serde(default)]
    pub pki_mount_point: String,
    #[serde(default)]
    pub token_auth: Option<TokenAuth>,
    #[serde(default)]
    pub cert_auth: Option<CertAuth>,
    #[serde(default)]
    pub approle_auth: Option<AppRoleAuth>,
    #[serde(default)]
    pub k8s_auth: Option<K8sAuth>,
    #[serde(default)]
    pub ca_cert_path: String,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub namespace: String,
}

/// `token_auth { token }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenAuth {
    #[serde(default)]
    pub token: String,
}

/// `cert_auth { … }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertAuth {
    #[serde(default)]
    pub cert_auth_mount_point: String,
    #[serde(default)]
    pub cert_auth_role_name: String,
    #[serde(default)]
    pub client_cert_path: String,
    #[serde(default)]
    pub client_key_path: String,
}

/// `approle_auth { … }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppRoleAuth {
    #[serde(default)]
    pub approle_auth_mount_point: String,
    #[serde(default)]
    pub approle_id: String,
    #[serde(default)]
    pub approle_secret_id: String,
}

/// `k8s_auth { … }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct K8sAuth {
    #[serde(default)]
    pub k8s_auth_mount_point: String,
    #[serde(default)]
    pub k8s_auth_role_name: String,
    #[serde(default)]
    pub token_path: String,
}

/// How the plugin logs in, with every setting resolved.
#[derive(Clone)]
enum Login {
    Token(String),
    Cert {
        mount: String,
        role: String,
    },
    AppRole {
        mount: String,
        role_id: String,
        secret_id: String,
    },
    K8s {
        mount: String,
        role: String,
        token_path: String,
    },
}

/// Reads an environment variable (the process's in the server, a map in tests).
pub type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;
/// Reads the wall clock.
pub type NowFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A token and when to renew or replace it.
#[derive(Clone)]
struct Session {
    token: String,
    /// When two thirds of the lease have passed (None: never expires).
    renew_at: Option<SystemTime>,
    /// When the lease runs out.
    expires_at: Option<SystemTime>,
    renewable: bool,
}

/// The `vault` UpstreamAuthority.
pub struct VaultUpstreamAuthority {
    inner: Arc<Inner>,
    /// The background renewal of the current token, if it has a renewable lease.
    renewer: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for VaultUpstreamAuthority {
    fn drop(&mut self) {
        if let Some(t) = self.renewer.lock().take() {
            t.abort();
        }
    }
}

struct Inner {
    base: String,
    pki: String,
    namespace: String,
    login: Login,
    client: spire_http::Client,
    now: NowFn,
    session: tokio::sync::Mutex<Option<Session>>,
}

impl std::fmt::Debug for VaultUpstreamAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultUpstreamAuthority")
            .field("vault_addr", &self.inner.base)
            .field("pki_mount_point", &self.inner.pki)
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::invalid_argument(message)
}

fn internal(message: impl Into<String>) -> PluginError {
    PluginError::internal(message)
}

fn or_default(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_string()
}

impl VaultUpstreamAuthority {
    /// Checks the configuration and prepares the HTTP client (nothing is dialled yet).
    pub fn new(config: &Config, env: EnvFn, now: NowFn) -> PluginResult<Self> {
        let pick = |key: &str, file: &str| env(key).unwrap_or_else(|| file.to_string());
        let methods = [
            config.token_auth.is_some(),
            config.cert_auth.is_some(),
            config.approle_auth.is_some(),
            config.k8s_auth.is_some(),
        ];
        match methods.iter().filter(|m| **m).count() {
            0 => {
                return Err(invalid(
                    "must be configured one of these authentication method 'Token, Client Certificate, AppRole or Kubernetes",
                ));
            }
            1 => {}
            _ => return Err(invalid("only one authentication method can be configured")),
        }
        let (mut cert_path, mut key_path) = (String::new(), String::new());
        let login = if let Some(t) = &config.token_auth {
            Login::Token(pick("VAULT_TOKEN", &t.token))
        } else if let Some(c) = &config.cert_auth {
            cert_path = pick("VAULT_CLIENT_CERT", &c.client_cert_path);
            key_path = pick("VAULT_CLIENT_KEY", &c.client_key_path);
            Login::Cert {
                mount: or_default(&c.cert_auth_mount_point, "cert"),
                role: c.cert_auth_role_name.clone(),
            }
        } else if let Some(a) = &config.approle_auth {
            Login::AppRole {
                mount: or_default(&a.approle_auth_mount_point, "approle"),
                role_id: pick("VAULT_APPROLE_ID", &a.approle_id),
                secret_id: pick("VAULT_APPROLE_SECRET_ID", &a.approle_secret_id),
            }
        } else if let Some(k) = &config.k8s_auth {
            if k.k8s_auth_role_name.is_empty() {
                return Err(invalid("k8s_auth_role_name is required"));
            }
            if k.token_path.is_empty() {
                return Err(invalid("token_path is required"));
            }
            Login::K8s {
                mount: or_default(&k.k8s_auth_mount_point, "kubernetes"),
                role: k.k8s_auth_role_name.clone(),
                token_path: k.token_path.clone(),
            }
        } else {
            return Err(invalid(
                "must be configured one of these authentication method 'Token, Client Certificate, AppRole or Kubernetes",
            ));
        };

        let identity = match (cert_path.is_empty(), key_path.is_empty()) {
            (true, true) => None,
            (false, false) => {
                let read = |p: &str| std::fs::read(p).map_err(|e| format!("open {p}: {e}"));
                let id = read(&cert_path)
                    .and_then(|c| Ok((c, read(&key_path)?)))
                    .and_then(|(c, k)| {
                        spire_tls::ClientIdentity::from_pem(&c, &k).map_err(|e| e.to_string())
                    })
                    .map_err(|e| {
                        invalid(format!("failed to parse client cert and private-key: {e}"))
                    })?;
                Some(id)
            }
            _ => return Err(invalid("both client cert and client key are required")),
        };
        let addr = pick("VAULT_ADDR", &config.vault_addr);
        let base = addr.trim_end_matches('/').to_string();
        let mut client = spire_http::Client::new(CALL_TIMEOUT);
        if base.starts_with("https://") {
            let ca_cert_path = pick("VAULT_CACERT", &config.ca_cert_path);
            let trust = if config.insecure_skip_verify {
                spire_tls::ServerTrust::SkipVerification
            } else if !ca_cert_path.is_empty() {
                let pem = std::fs::read(&ca_cert_path).map_err(|e| {
                    invalid(format!(
                        "failed to load CA certificate: open {ca_cert_path}: {e}"
                    ))
                })?;
                let roots = spire_tls::certs_from_pem(&pem)
                    .map_err(|e| invalid(format!("failed to load CA certificate: {e}")))?;
                spire_tls::ServerTrust::Roots(roots)
            } else {
                let roots = spire_tls::system_roots()
                    .map_err(|e| invalid(format!("failed to load CA certificate: {e}")))?;
                spire_tls::ServerTrust::Roots(roots)
            };
            let tls = spire_tls::https_client_config(&trust, identity.as_ref())
                .map_err(|e| invalid(format!("failed to configure TLS: {e}")))?;
            client = client.with_tls(tls);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                pki: or_default(&config.pki_mount_point, "pki"),
                namespace: pick("VAULT_NAMESPACE", &config.namespace),
                login,
                client,
                now,
                session: tokio::sync::Mutex::new(None),
            }),
            renewer: parking_lot::Mutex::new(None),
        })
    }

    /// The token to sign with; a fresh login starts a background renewal when its lease
    /// is renewable (SPIRE's lifetime watcher).
    async fn token(&self) -> PluginResult<String> {
        let (token, fresh) = self.inner.token().await?;
        if let Some(lease) = fresh {
            let inner = Arc::downgrade(&self.inner);
            let task = tokio::spawn(renew_in_background(inner, token.clone(), lease));
            if let Some(old) = self.renewer.lock().replace(task.abort_handle()) {
                old.abort();
            }
        }
        Ok(token)
    }
}

/// Renews `token` each time two thirds of its lease have passed, until renewal fails or
/// the session holds another token; a failure drops the session, so the next mint logs in.
async fn renew_in_background(inner: std::sync::Weak<Inner>, token: String, mut lease: u64) {
    loop {
        tokio::time::sleep(Duration::from_secs(lease.saturating_mul(2) / 3)).await;
        let Some(inner) = inner.upgrade() else { return };
        let mut guard = inner.session.lock().await;
        if guard.as_ref().map(|s| s.token.as_str()) != Some(token.as_str()) {
            return;
        }
        match inner.renew(&token).await {
            Ok(renewed) => {
                lease = renewed;
                *guard = Some(inner.session_from(token.clone(), lease, true));
                if lease == 0 {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(err = %e, plugin_name = PLUGIN_NAME, "Failed to renew auth token");
                *guard = None;
                return;
            }
        }
    }
}

impl Inner {
    /// `auth/token/renew-self`: the new lease, in seconds.
    async fn renew(&self, token: &str) -> Result<u64, String> {
        let v = self
            .call(
                http::Method::PUT,
                "auth/token/renew-self",
                Some(token),
                Some(json!({})),
            )
            .await?;
        let lease = v["auth"]["lease_duration"].as_u64().unwrap_or(0);
        tracing::debug!(
            lease_duration = lease,
            plugin_name = PLUGIN_NAME,
            "Successfully renew auth token"
        );
        Ok(lease)
    }
}

impl Inner {
    /// One Vault API call; `Err` carries Vault's error text as the Go client prints it.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let mut req = spire_http::Request::new(method.clone(), &url).map_err(|e| e.to_string())?;
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t).map_err(|e| e.to_string())?;
        }
        if !self.namespace.is_empty() {
            req = req
                .header("X-Vault-Namespace", &self.namespace)
                .map_err(|e| e.to_string())?;
        }
        // Vault's Go client sends JSON bodies without a Content-Type.
        if let Some(b) = body {
            req = req.body(serde_json::to_vec(&b).map_err(|e| e.to_string())?);
        }
        req = req
            .header("X-Vault-Request", "true")
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        if !resp.status.is_success() {
            let errors: Vec<String> = resp
                .json::<Value>()
                .ok()
                .and_then(|v| {
                    v["errors"].as_array().map(|a| {
                        a.iter()
                            .map(|e| format!("* {}", e.as_str().unwrap_or_default()))
                            .collect()
                    })
                })
                .unwrap_or_default();
            return Err(format!(
                "Error making API request.\n\nURL: {method} {url}\nCode: {}. Errors:\n\n{}",
                resp.status.as_u16(),
                errors.join("\n")
            ));
        }
        if resp.body.is_empty() {
            return Ok(Value::Null);
        }
        resp.json::<Value>().map_err(|e| e.to_string())
    }

    fn session_from(&self, token: String, lease_secs: u64, renewable: bool) -> Session {
        let now = (self.now)();
        let (renew_at, expires_at) = if lease_secs == 0 {
            (None, None)
        } else {
            (
                Some(now + Duration::from_secs(lease_secs * 2 / 3)),
                Some(now + Duration::from_secs(lease_secs)),
            )
        };
        Session {
            token,
            renew_at,
            expires_at,
            renewable,
        }
    }

    /// Logs in as configured.
    async fn authenticate(&self) -> PluginResult<Session> {
        let fail = |e: String| internal(format!("failed to prepare authenticated client: {e}"));
        let (path, body, what) = match &self.login {
            Login::Token(token) => {
                if token.is_empty() {
                    return Err(PluginError::new(
                        Code::Internal,
                        "failed to prepare authenticated client: token is empty",
                    ));
                }
                let v = self
                    .call(
                        http::Method::GET,
                        "auth/token/lookup-self",
                        Some(token),
                        None,
                    )
                    .await
                    .map_err(|e| fail(format!("token lookup failed: {e}")))?;
                let ttl = v["data"]["ttl"].as_u64().unwrap_or(0);
                let renewable = v["data"]["renewable"].as_bool().unwrap_or(false);
                return Ok(self.session_from(token.clone(), ttl, renewable));
            }
            Login::Cert { mount, role } => (
                format!("auth/{mount}/login"),
                json!({ "name": role }),
                "tls cert authentication",
            ),
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => (
                format!("auth/{mount}/login"),
                json!({ "role_id": role_id, "secret_id": secret_id }),
                "approle authentication",
            ),
            Login::K8s {
                mount,
                role,
                token_path,
            } => {
                let jwt = std::fs::read_to_string(token_path).map_err(|e| {
                    fail(format!(
                        "failed to read k8s service account token: open {token_path}: {e}"
                    ))
                })?;
                (
                    format!("auth/{mount}/login"),
                    json!({ "role": role, "jwt": jwt }),
                    "k8s authentication",
                )
            }
        };
        let v = self
            .call(http::Method::PUT, &path, None, Some(body))
            .await
            .map_err(|e| {
                PluginError::new(
                    Code::Internal,
                    format!(
                        "failed to prepare authenticated client: authentication failed {path}: {e}"
                    ),
                )
            })?;
        let auth = &v["auth"];
        if auth.is_null() {
            return Err(fail(format!("{what} response is nil")));
        }
        let token = auth["client_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            return Err(fail(
                "authentication is successful, but could not get token".to_string(),
            ));
        }
        Ok(self.session_from(
            token,
            auth["lease_duration"].as_u64().unwrap_or(0),
            auth["renewable"].as_bool().unwrap_or(false),
        ))
    }

    /// The token to sign with: the kept one, renewed when due, or a fresh login (then with
    /// its lease when that is renewable).
    async fn token(&self) -> PluginResult<(String, Option<u64>)> {
        let mut guard = self.session.lock().await;
        let now = (self.now)();
        if let Some(s) = guard.clone() {
            let expired = s.expires_at.is_some_and(|t| now >= t);
            let due = s.renew_at.is_some_and(|t| now >= t);
            if !due && !expired {
                return Ok((s.token, None));
            }
            if s.renewable && !expired {
                match self.renew(&s.token).await {
                    Ok(lease) => {
                        *guard = Some(self.session_from(s.token.clone(), lease, s.renewable));
                        return Ok((s.token, None));
                    }
                    Err(e) => {
                        tracing::error!(err = %e, plugin_name = PLUGIN_NAME, "Failed to renew auth token");
                    }
                }
            }
            tracing::debug!(
                plugin_name = PLUGIN_NAME,
                "Going to re-authenticate to the Vault at the next signing request time"
            );
            *guard = None;
        }
        let s = self.authenticate().await?;
        let token = s.token.clone();
        let lease = match (&s.expires_at, s.renewable) {
            (Some(at), true) => at
                .duration_since(now)
                .ok()
                .map(|d| d.as_secs())
                .filter(|l| *l > 0),
            _ => None,
        };
        *guard = Some(s);
        Ok((token, lease))
    }
}

/// The request SPIRE sends to `sign-intermediate` for `csr`.
fn sign_request(csr_der: &[u8], ttl_secs: i32) -> PluginResult<Value> {
    use x509_parser::prelude::FromDer as _;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|e| invalid(format!("failed to parse CSR data: {e}")))?;
    let subject = &csr.certification_request_info.subject;
    let values = |oid: &x509_parser::der_parser::oid::Oid<'_>| -> Vec<String> {
        subject
            .iter_by_oid(oid)
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect()
    };
    use x509_parser::oid_registry::{
        OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_ORGANIZATION_NAME,
    };
    let mut uris = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                if let x509_parser::extensions::GeneralName::URI(u) = name {
                    uris.push((*u).to_string());
                }
            }
        }
    }
    if uris.is_empty() {
        return Err(invalid("CSR must have at least one URI"));
    }
    let pem = spiffe_core::pem_encode("CERTIFICATE REQUEST", csr_der);
    Ok(json!({
        "common_name": values(&OID_X509_COMMON_NAME).into_iter().next().unwrap_or_default(),
        "organization": values(&OID_X509_ORGANIZATION_NAME).join(","),
        "country": values(&OID_X509_COUNTRY_NAME).join(","),
        "uri_sans": uris.join(","),
        "csr": pem,
        "ttl": if ttl_secs == 0 { String::new() } else { ttl_secs.to_string() },
    }))
}

fn one_pem(text: &str, what: &str) -> PluginResult<Vec<u8>> {
    spiffe_core::x509svid::parse_pem_certificates(text)
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| internal(format!("failed to parse {what}: no PEM data found")))
}

/// SPIRE's reading of the `sign-intermediate` answer: the root is the last of `ca_chain`
/// (or `issuing_ca` when there is no chain); the chain is the new CA, then every `ca_chain`
/// entry but the root and the new CA.
fn sign_response(v: &Value) -> PluginResult<UpstreamX509Ca> {
    let data = &v["data"];
    let cert = match data.get("certificate") {
        None => {
            return Err(internal(
                "request is successful, but certificate data is empty",
            ));
        }
        Some(c) => c.as_str().ok_or_else(|| {
            internal(format!("expected certificate data type string but got {c}"))
        })?,
    };
    let issuing = match data.get("issuing_ca") {
        None => {
            return Err(internal(
                "request is successful, but issuing_ca data is empty",
            ));
        }
        Some(c) => c
            .as_str()
            .ok_or_else(|| internal(format!("expected issuing_ca data type string but got {c}")))?,
    };
    let chain: Vec<&str> = match data.get("ca_chain") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|e| {
                e.as_str().ok_or_else(|| {
                    internal(format!(
                        "expected ca_chain element data type string but got {e}"
                    ))
                })
            })
            .collect::<PluginResult<_>>()?,
        Some(other) => {
            return Err(internal(format!(
                "expected ca_chain data type []interface {{}} but got {other}"
            )));
        }
    };
    let root_pem = chain.last().copied().unwrap_or(issuing);
    let root = one_pem(root_pem, "Root CA certificate")?;
    let mut x509_ca_chain = vec![one_pem(cert, "certificate")?];
    for c in &chain {
        if *c == root_pem || *c == cert {
            continue;
        }
        x509_ca_chain.push(one_pem(c, "upstream bundle certificates")?);
    }
    Ok(UpstreamX509Ca {
        x509_ca_chain,
        upstream_x509_roots: vec![root],
    })
}

#[async_trait]
impl UpstreamAuthority for VaultUpstreamAuthority {
    async fn mint_x509_ca(
        &self,
        csr: &[u8],
        preferred_ttl_secs: i32,
        _updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamX509Ca> {
        let body = sign_request(csr, preferred_ttl_secs)?;
        let token = self.token().await?;
        let path = format!("{}/root/sign-intermediate", self.inner.pki);
        let v = self
            .inner
            .call(http::Method::PUT, &path, Some(&token), Some(body))
            .await
            .map_err(|e| internal(format!("failed to sign intermediate: {e}")))?;
        if v.is_null() {
            return Err(internal("unexpected empty response from UpstreamAuthority"));
        }
        sign_response(&v)
    }

    async fn publish_jwt_key(
        &self,
        _key: &JwtKey,
        _updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<Vec<JwtKey>> {
        Err(PluginError::unimplemented(
            "publishing upstream is unsupported",
        ))
    }
}

#[cfg(test)]
mod tests;
