//! NodeAttestor `azure_msi`: the agent sends the managed identity token Azure's instance
//! metadata service (IMDS) issues for `resource_id`; the server checks it against the keys
//! Microsoft's OIDC discovery publishes, requires a configured tenant, names the agent by
//! tenant and principal, and reads the VM and its network from the ARM APIs for selectors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};
use spire_plugin_host::hostservices::AgentLookupCell;

use crate::jws::{self, EcKey, KeySet, RsaKey};
use crate::template::{PathTemplate, Value};
use crate::{NowFn, assess_tofu, query_escape, test_override};

pub const PLUGIN_NAME: &str = "azure_msi";
/// SPIRE's default `resource_id`: the Resource Manager API.
pub const DEFAULT_RESOURCE_ID: &str = "https://management.azure.com/";
const DEFAULT_AGENT_PATH_TEMPLATE: &str = "/{{ .PluginName }}/{{ .TenantID }}/{{ .PrincipalID }}";
const IMDS_URL: &str = "http://169.254.169.254";
const AUTHORITY: &str = "https://login.microsoftonline.com/";
const ARM_URL: &str = "https://management.azure.com";
/// Environment variables replacing Azure's endpoints, for tests only.
pub const IMDS_URL_ENV: &str = "SPIRE_RS_TEST_AZURE_IMDS_URL";
pub const AUTHORITY_ENV: &str = "SPIRE_RS_TEST_AZURE_MSI_AUTHORITY";
pub const ARM_URL_ENV: &str = "SPIRE_RS_TEST_AZURE_ARM_URL";
/// Every outbound call is bounded by this (SPIRE sets no limit).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN_LEEWAY: Duration = Duration::from_secs(5 * 60);
const KEY_SET_REFRESH: Duration = Duration::from_secs(3600);
const ALLOWED_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
];

fn internal(m: impl Into<String>) -> PluginError {
    PluginError::internal(m)
}

fn invalid(m: impl Into<String>) -> PluginError {
    PluginError::invalid_argument(m)
}

/// How a gRPC status error nested in another message prints in Go.
fn rpc_internal(m: &str) -> String {
    format!("rpc error: code = Internal desc = {m}")
}

/// The agent's payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttestationData {
    #[serde(default)]
    pub token: String,
}

fn imds_url() -> String {
    test_override(IMDS_URL_ENV, "Azure's instance metadata service")
        .unwrap_or_else(|| IMDS_URL.into())
        .trim_end_matches('/')
        .to_string()
}

/// The first KiB of a body, as SPIRE's `tryRead` quotes it.
fn try_read(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned()
}

/// SPIRE's `FetchMSIToken`: IMDS's managed identity token for `resource`.
async fn fetch_msi_token(
    http: &spire_http::Client,
    base: &str,
    resource: &str,
) -> Result<String, String> {
    let url = format!(
        "{base}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
        query_escape(resource)
    );
    let req = spire_http::Request::get(&url)
        .and_then(|r| r.header("Metadata", "true"))
        .map_err(|e| e.to_string())?;
    let resp = http
        .send(req)
        .await
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    if resp.status != http::StatusCode::OK {
        return Err(format!(
            "unexpected status code {}: {}",
            resp.status.as_u16(),
            try_read(&resp.body)
        ));
    }
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        access_token: String,
    }
    let t: Token = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("unable to decode response: {e}"))?;
    if t.access_token.is_empty() {
        return Err("response missing access token".into());
    }
    Ok(t.access_token)
}

/// SPIRE's `FetchInstanceMetadata`: the VM's subscription, from IMDS.
async fn fetch_subscription(http: &spire_http::Client, base: &str) -> Result<String, String> {
    let url = format!("{base}/metadata/instance?api-version=2017-08-01&format=json");
    let req = spire_http::Request::get(&url)
        .and_then(|r| r.header("Metadata", "true"))
        .map_err(|e| e.to_string())?;
    let resp = http
        .send(req)
        .await
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    if resp.status != http::StatusCode::OK {
        return Err(format!(
            "unexpected status code {}: {}",
            resp.status.as_u16(),
            try_read(&resp.body)
        ));
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Compute {
        #[serde(default)]
        name: String,
        #[serde(default)]
        subscription_id: String,
        #[serde(default)]
        resource_group_name: String,
    }
    #[derive(Deserialize)]
    struct Md {
        #[serde(default)]
        compute: Compute,
    }
    let md: Md = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("unable to decode response: {e}"))?;
    if md.compute.name.is_empty() {
        return Err("response missing instance name".into());
    }
    if md.compute.subscription_id.is_empty() {
        return Err("response missing instance subscription id".into());
    }
    if md.compute.resource_group_name.is_empty() {
        return Err("response missing instance resource group name".into());
    }
    Ok(md.compute.subscription_id)
}

// === agent ===

/// `plugin_data` of the agent's `azure_msi`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentConfig {
    #[serde(default)]
    pub resource_id: String,
}

/// The agent half.
#[derive(Debug)]
pub struct AzureMsiAgent {
    resource_id: String,
    /// IMDS's base URL when set by a test; otherwise chosen (and any override logged) at
    /// each attestation.
    imds: Option<String>,
    http: spire_http::Client,
}

impl AzureMsiAgent {
    pub fn new(config: &AgentConfig) -> Self {
        Self {
            resource_id: if config.resource_id.is_empty() {
                DEFAULT_RESOURCE_ID.into()
            } else {
                config.resource_id.clone()
            },
            imds: None,
            http: spire_http::Client::new(HTTP_TIMEOUT),
        }
    }

    /// The same plugin asking the IMDS at `base` within `timeout` (tests).
    pub fn with_imds(mut self, base: &str, timeout: Duration) -> Self {
        self.imds = Some(base.trim_end_matches('/').into());
        self.http = spire_http::Client::new(timeout);
        self
    }
}

#[async_trait]
impl AgentNodeAttestor for AzureMsiAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let imds = self.imds.clone().unwrap_or_else(imds_url);
        let token = fetch_msi_token(&self.http, &imds, &self.resource_id)
            .await
            .map_err(|e| internal(format!("unable to fetch token: {e}")))?;
        let payload = serde_json::to_vec(&AttestationData { token })
            .map_err(|e| internal(format!("failed to marshal payload: {e}")))?;
        match exchange.send(payload).await? {
            None => Ok(()),
            Some(_) => Err(internal("unexpected challenge")),
        }
    }
}

// === server ===

/// One entry of `tenants`.
#[derive(Clone, Default, Deserialize)]
pub struct TenantConfig {
    #[serde(default)]
    pub resource_id: String,
    #[serde(default)]
    pub subscription_id: String,
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub app_secret: String,
}

impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("resource_id", &self.resource_id)
            .field("subscription_id", &self.subscription_id)
            .field("app_id", &self.app_id)
            .field(
                "app_secret",
                &(!self.app_secret.is_empty()).then_some("<redacted>"),
            )
            .finish()
    }
}

/// `plugin_data` of the server's `azure_msi`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerConfig {
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    #[serde(default)]
    pub agent_path_template: String,
}

mod credential;

pub use crate::{EnvFn, process_env};
pub use credential::Credential;

struct Tenant {
    resource_id: String,
    subscription_id: String,
    /// How the ARM APIs are called for the tenant.
    credential: Credential,
}

#[derive(Default)]
struct KeyCache {
    keys: KeySet,
    updated: Option<SystemTime>,
}

/// The server half.
pub struct AzureMsiServer {
    trust_domain: TrustDomain,
    template: PathTemplate,
    tenants: BTreeMap<String, Tenant>,
    agents: AgentLookupCell,
    authority: String,
    arm: String,
    imds: String,
    keys: tokio::sync::Mutex<KeyCache>,
    http: spire_http::Client,
    now: NowFn,
    /// The login authority for tokens (`AZURE_AUTHORITY_HOST`, else `authority`).
    token_authority: String,
}

impl std::fmt::Debug for AzureMsiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureMsiServer")
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The service endpoints the server half uses.
#[derive(Clone)]
pub struct Endpoints {
    /// Replaces `https://login.microsoftonline.com/` (OIDC discovery and app tokens).
    pub authority: String,
    /// Replaces `https://management.azure.com`.
    pub arm: String,
    /// Replaces `http://169.254.169.254`.
    pub imds: String,
    /// The environment `DefaultAzureCredential` and `AZURE_AUTHORITY_HOST` are read from.
    pub env: EnvFn,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("authority", &self.authority)
            .field("arm", &self.arm)
            .field("imds", &self.imds)
            .finish_non_exhaustive()
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            authority: test_override(AUTHORITY_ENV, "Microsoft's login authority")
                .unwrap_or_else(|| AUTHORITY.into()),
            arm: test_override(ARM_URL_ENV, "the Azure Resource Manager URL")
                .unwrap_or_else(|| ARM_URL.into()),
            imds: imds_url(),
            env: process_env(),
        }
    }
}

impl AzureMsiServer {
    /// Builds the plugin with SPIRE's checks and messages (tenants without app
    /// credentials ask IMDS for the server VM's subscription now, as SPIRE does).
    pub async fn new(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        agents: AgentLookupCell,
    ) -> PluginResult<Self> {
        Self::with_env(
            config,
            trust_domain,
            agents,
            Endpoints::default(),
            Arc::new(SystemTime::now),
            HTTP_TIMEOUT,
        )
        .await
    }

    /// As [`AzureMsiServer::new`] with explicit endpoints, clock and timeout.
    pub async fn with_env(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        agents: AgentLookupCell,
        endpoints: Endpoints,
        now: NowFn,
        timeout: Duration,
    ) -> PluginResult<Self> {
        let http = spire_http::Client::new(timeout);
        if config.tenants.is_empty() {
            return Err(invalid("configuration must have at least one tenant"));
        }
        let imds = endpoints.imds.trim_end_matches('/').to_string();
        let mut tenants = BTreeMap::new();
        for (id, t) in &config.tenants {
            let resource_id = if t.resource_id.is_empty() {
                DEFAULT_RESOURCE_ID.to_string()
            } else {
                t.resource_id.clone()
            };
            let (subscription_id, credential) = if !t.subscription_id.is_empty()
                || !t.app_id.is_empty()
                || !t.app_secret.is_empty()
            {
                if t.subscription_id.is_empty() {
                    return Err(invalid(format!(
                        "misconfigured tenant {id:?}: missing subscription id"
                    )));
                }
                if t.app_id.is_empty() {
                    return Err(invalid(format!(
                        "misconfigured tenant {id:?}: missing app id"
                    )));
                }
                if t.app_secret.is_empty() {
                    return Err(invalid(format!(
                        "misconfigured tenant {id:?}: missing app secret"
                    )));
                }
                (
                    t.subscription_id.clone(),
                    Credential::client_secret(id, &t.app_id, &t.app_secret),
                )
            } else {
                let sub = fetch_subscription(&http, &imds).await.map_err(invalid)?;
                let cred = Credential::default_chain(id, &endpoints.env)
                    .map_err(|e| invalid(format!("unable to fetch client credential: {e}")))?;
                (sub, cred)
            };
            tenants.insert(
                id.clone(),
                Tenant {
                    resource_id,
                    subscription_id,
                    credential,
                },
            );
        }
        let template = if config.agent_path_template.is_empty() {
            PathTemplate::parse(DEFAULT_AGENT_PATH_TEMPLATE).map_err(internal)?
        } else {
            PathTemplate::parse(&config.agent_path_template).map_err(|_| {
                invalid(format!(
                    "failed to parse agent path template: {:?}",
                    config.agent_path_template
                ))
            })?
        };
        let with_slash = |mut a: String| {
            if !a.ends_with('/') {
                a.push('/');
            }
            a
        };
        let authority = with_slash(endpoints.authority);
        let token_authority = (endpoints.env)("AZURE_AUTHORITY_HOST")
            .filter(|h| !h.is_empty())
            .map_or_else(|| authority.clone(), with_slash);
        Ok(Self {
            trust_domain,
            template,
            tenants,
            agents,
            authority,
            arm: endpoints.arm.trim_end_matches('/').to_string(),
            imds,
            keys: tokio::sync::Mutex::default(),
            http,
            now,
            token_authority,
        })
    }

    /// Microsoft's signing keys through OIDC discovery of the `common` issuer, kept an
    /// hour as SPIRE's caching provider keeps them.
    async fn key_set(&self) -> Result<KeySet, String> {
        let mut cache = self.keys.lock().await;
        let now = (self.now)();
        if let Some(updated) = cache.updated
            && now.duration_since(updated).unwrap_or_default() < KEY_SET_REFRESH
        {
            return Ok(cache.keys.clone());
        }
        let keys = self.download_keys().await?;
        *cache = KeyCache {
            keys: keys.clone(),
            updated: Some(now),
        };
        Ok(keys)
    }

    async fn get(&self, url: &str) -> Result<spire_http::Response, String> {
        let req = spire_http::Request::get(url).map_err(|e| e.to_string())?;
        self.http
            .send(req)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))
    }

    async fn download_keys(&self) -> Result<KeySet, String> {
        let url = format!("{}common/.well-known/openid-configuration", self.authority);
        let resp = self.get(&url).await?;
        if resp.status != http::StatusCode::OK {
            return Err(format!("unexpected status code: {}", resp.status.as_u16()));
        }
        #[derive(Deserialize)]
        struct Discovery {
            #[serde(default)]
            jwks_uri: String,
        }
        let d: Discovery = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("failed to decode configuration: {e}"))?;
        if d.jwks_uri.is_empty() {
            return Err("configuration missing JWKS URI".into());
        }
        let resp = self.get(&d.jwks_uri).await?;
        if resp.status != http::StatusCode::OK {
            return Err(format!("unexpected status code: {}", resp.status.as_u16()));
        }
        parse_jwks(&resp.body).map_err(|e| format!("failed to decode key set: {e}"))
    }

    async fn access_token(&self, t: &Tenant) -> Result<String, String> {
        let ep = credential::TokenEndpoints {
            authority: self.token_authority.clone(),
            imds: self.imds.clone(),
            http: self.http.clone(),
            now: self.now.clone(),
        };
        t.credential.token(&ep).await
    }

    async fn arm_get(&self, token: &str, url: &str) -> Result<serde_json::Value, String> {
        let req = spire_http::Request::get(url)
            .and_then(|r| r.header("Authorization", &format!("Bearer {token}")))
            .and_then(|r| r.header("Accept", "application/json"))
            .map_err(|e| e.to_string())?;
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        if !resp.status.is_success() {
            return Err(arm_error(&resp, url));
        }
        resp.json().map_err(|e| e.to_string())
    }

    async fn resolve(&self, t: &Tenant, principal: &str) -> PluginResult<Vec<String>> {
        let token = self.access_token(t).await.map_err(|e| {
            internal(format!(
                "unable to get resource for principal {principal:?}: {}",
                rpc_internal(&format!("unable to list virtual machine by principal: {e}"))
            ))
        })?;
        let sub = &t.subscription_id;
        let vm_id = self
            .vm_resource_id(&token, sub, principal)
            .await
            .map_err(|e| {
                internal(format!(
                    "unable to get resource for principal {principal:?}: {}",
                    rpc_internal(&e)
                ))
            })?;
        let (vm_rg, vm_name) = parse_id(&vm_id, "Microsoft.Compute/virtualMachines")
            .ok_or_else(|| internal(format!("malformed virtual machine ID {vm_id:?}")))?;
        let mut selectors = BTreeSet::new();
        selectors.insert(format!("subscription-id:{sub}"));
        selectors.insert(format!("vm-name:{vm_rg}:{vm_name}"));
        let url = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}?api-version=2022-03-01",
            self.arm,
            seg(sub),
            seg(&vm_rg),
            seg(&vm_name)
        );
        let vm: VirtualMachine = self
            .arm_get(&token, &url)
            .await
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
            .map_err(|e| {
                internal(format!(
                    "unable to get virtual machine \"{vm_rg}:{vm_name}\": {}",
                    rpc_internal(&format!("unable to get virtual machine: {e}"))
                ))
            })?;
        let nics = vm
            .properties
            .and_then(|p| p.network_profile)
            .map(|n| n.network_interfaces)
            .unwrap_or_default();
        for nic_ref in nics {
            let Some(nic_id) = nic_ref.id else { continue };
            let (rg, name) = parse_id(&nic_id, "Microsoft.Network/networkInterfaces")
                .ok_or_else(|| internal(format!("malformed network interface ID {nic_id:?}")))?;
            let url = format!(
                "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkInterfaces/{}?api-version=2022-01-01",
                self.arm,
                seg(sub),
                seg(&rg),
                seg(&name)
            );
            let nic: NetworkInterface = self
                .arm_get(&token, &url)
                .await
                .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
                .map_err(|e| {
                    internal(format!(
                        "unable to get network interface \"{rg}:{name}\": {}",
                        rpc_internal(&format!("unable to get network interface: {e}"))
                    ))
                })?;
            let props = nic.properties.unwrap_or_default();
            if let Some(id) = props.network_security_group.and_then(|n| n.id) {
                let (rg, name) = parse_id(&id, "Microsoft.Network/networkSecurityGroups")
                    .ok_or_else(|| {
                        internal(format!("malformed network security group ID {id:?}"))
                    })?;
                selectors.insert(format!("network-security-group:{rg}:{name}"));
            }
            for ipc in props.ip_configurations {
                let Some(id) = ipc.properties.and_then(|p| p.subnet).and_then(|s| s.id) else {
                    continue;
                };
                let (rg, vnet, subnet) = parse_subnet_id(&id).ok_or_else(|| {
                    internal(format!("malformed virtual network subnet ID {id:?}"))
                })?;
                selectors.insert(format!("virtual-network:{rg}:{vnet}"));
                selectors.insert(format!("virtual-network-subnet:{rg}:{vnet}:{subnet}"));
            }
        }
        Ok(selectors.into_iter().collect())
    }

    async fn vm_resource_id(
        &self,
        token: &str,
        sub: &str,
        principal: &str,
    ) -> Result<String, String> {
        let filter = format!(
            "resourceType eq 'Microsoft.Compute/virtualMachines' and identity/principalId eq '{principal}'"
        );
        let mut url = format!(
            "{}/subscriptions/{}/resources?%24filter={}&api-version=2021-04-01",
            self.arm,
            seg(sub),
            query_escape(&filter)
        );
        let mut values: Vec<Resource> = Vec::new();
        // Follow `nextLink` as the SDK's pager does, bounded.
        for _ in 0..100 {
            let page: ResourceList = self
                .arm_get(token, &url)
                .await
                .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
                .map_err(|e| format!("unable to list virtual machine by principal: {e}"))?;
            values.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => break,
            }
        }
        match values.as_slice() {
            [] => Err(format!("principal {principal:?} not found")),
            [one] => one
                .id
                .clone()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| "virtual machine resource missing ID".to_string()),
            _ => Err(format!(
                "expected one result for principal {principal:?} at most"
            )),
        }
    }
}

/// An ARM error answer as the Go SDK's `ResponseError` summarizes it.
fn arm_error(resp: &spire_http::Response, url: &str) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
    }
    let code = serde_json::from_slice::<Body>(&resp.body)
        .ok()
        .and_then(|b| b.error)
        .map(|e| e.code)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "UNAVAILABLE".into());
    let path = url.split('?').next().unwrap_or(url);
    format!(
        "GET {path}\n--------------------------------------------------------------------------------\nRESPONSE {}\nERROR CODE: {code}\n--------------------------------------------------------------------------------\n{}\n--------------------------------------------------------------------------------\n",
        resp.status,
        try_read(&resp.body)
    )
}

fn seg(s: &str) -> String {
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

/// `^/subscriptions/[^/]+/resourceGroups/([^/]+)/providers/<kind>/([^/]+)$`.
fn parse_id(id: &str, kind: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = id.split('/').collect();
    let kind_parts: Vec<&str> = kind.split('/').collect();
    match (parts.as_slice(), kind_parts.as_slice()) {
        (
            [
                "",
                "subscriptions",
                s,
                "resourceGroups",
                rg,
                "providers",
                ns,
                ty,
                name,
            ],
            [kns, kty],
        ) if !s.is_empty()
            && !rg.is_empty()
            && !name.is_empty()
            && kind_matches(ns, kns)
            && ty == kty =>
        {
            Some((rg.to_string(), name.to_string()))
        }
        _ => None,
    }
}

/// SPIRE's patterns leave the `.` of `Microsoft.X` unescaped, so any byte matches there.
fn kind_matches(ns: &str, want: &str) -> bool {
    ns.len() == want.len()
        && ns
            .bytes()
            .zip(want.bytes())
            .all(|(a, b)| a == b || b == b'.')
}

fn parse_subnet_id(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        [
            "",
            "subscriptions",
            s,
            "resourceGroups",
            rg,
            "providers",
            ns,
            "virtualNetworks",
            vnet,
            "subnets",
            subnet,
        ] if !s.is_empty()
            && !rg.is_empty()
            && !vnet.is_empty()
            && !subnet.is_empty()
            && kind_matches(ns, "Microsoft.Network") =>
        {
            Some((rg.to_string(), vnet.to_string(), subnet.to_string()))
        }
        _ => None,
    }
}

/// A JWK set: RSA and EC keys by `kid` (other key types are left out).
pub fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Jwk {
        #[serde(default)]
        kty: String,
        #[serde(default)]
        kid: String,
        #[serde(default)]
        n: String,
        #[serde(default)]
        e: String,
        #[serde(default)]
        crv: String,
        #[serde(default)]
        x: String,
        #[serde(default)]
        y: String,
    }
    #[derive(Deserialize)]
    struct Jwks {
        #[serde(default)]
        keys: Vec<Jwk>,
    }
    let set: Jwks = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for k in set.keys {
        let key: jws::PublicKey = match k.kty.as_str() {
            "RSA" => RsaKey::from_jwk(&k.n, &k.e)?.into(),
            "EC" => EcKey::from_jwk(&k.crv, &k.x, &k.y)?.into(),
            _ => continue,
        };
        keys.push((k.kid, key));
    }
    Ok(KeySet::new(keys))
}

#[derive(Deserialize, Default)]
struct ResourceList {
    #[serde(default)]
    value: Vec<Resource>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize, Default)]
struct Resource {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize, Default)]
struct VirtualMachine {
    #[serde(default)]
    properties: Option<VmProperties>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct VmProperties {
    #[serde(default)]
    network_profile: Option<NetworkProfile>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NetworkProfile {
    #[serde(default)]
    network_interfaces: Vec<IdRef>,
}

#[derive(Deserialize, Default)]
struct IdRef {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize, Default)]
struct NetworkInterface {
    #[serde(default)]
    properties: Option<NicProperties>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NicProperties {
    #[serde(default)]
    network_security_group: Option<IdRef>,
    #[serde(default)]
    ip_configurations: Vec<IpConfiguration>,
}

#[derive(Deserialize, Default)]
struct IpConfiguration {
    #[serde(default)]
    properties: Option<IpConfigurationProperties>,
}

#[derive(Deserialize, Default)]
struct IpConfigurationProperties {
    #[serde(default)]
    subnet: Option<IdRef>,
}

#[derive(Debug, Default, Deserialize)]
struct MsiClaims {
    #[serde(flatten)]
    claims: jws::Claims,
    #[serde(default)]
    tid: String,
    #[serde(default)]
    jti: String,
}

impl AzureMsiServer {
    fn agent_id(&self, c: &MsiClaims) -> PluginResult<SpiffeId> {
        // azure.agentPathTemplateData: the embedded MSITokenClaims (go-jose's
        // jwt.Claims, then TenantID and PrincipalID), then PluginName. MSITokenClaims'
        // PrincipalID takes the token's `sub`, shadowing the embedded Claims.Subject,
        // which stays empty, as encoding/json decodes it in SPIRE.
        let data = Value::structure(
            "azure.agentPathTemplateData",
            [
                (
                    "Issuer",
                    Value::from(c.claims.iss.clone().unwrap_or_default()),
                ),
                ("Subject", Value::from("")),
                ("Audience", Value::StrList(c.claims.aud.clone())),
                ("ID", Value::from(c.jti.as_str())),
                ("TenantID", Value::from(c.tid.as_str())),
                (
                    "PrincipalID",
                    Value::from(c.claims.sub.clone().unwrap_or_default()),
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
            .map_err(|e| internal(format!("unable to make agent ID: {e}")))?;
        crate::agent_id(&self.trust_domain, &path)
            .map_err(|e| internal(format!("unable to make agent ID: {e}")))
    }
}

#[async_trait]
impl ServerNodeAttestor for AzureMsiServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        _challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        if payload.is_empty() {
            return Err(invalid("missing attestation payload"));
        }
        let data: AttestationData = serde_json::from_slice(&payload)
            .map_err(|e| invalid(format!("failed to unmarshal data payload: {e}")))?;
        if data.token.is_empty() {
            return Err(invalid("missing token from attestation data"));
        }
        let keys = self
            .key_set()
            .await
            .map_err(|e| internal(format!("unable to obtain JWKS: {e}")))?;
        let token = jws::parse(&data.token, ALLOWED_ALGS)
            .map_err(|e| invalid(format!("unable to parse token: {e}")))?;
        let kid = token
            .kid()
            .ok_or_else(|| invalid("token missing key id"))?
            .to_string();
        let key = keys
            .get(&kid)
            .ok_or_else(|| invalid(format!("key id {kid:?} not found")))?;
        let claims_json = token
            .verify_with(key)
            .map_err(|e| invalid(format!("unable to verify token: {e}")))?;
        let claims: MsiClaims = serde_json::from_slice(claims_json)
            .map_err(|e| invalid(format!("unable to verify token: {e}")))?;
        if claims.tid.is_empty() {
            return Err(internal("token missing tenant ID claim"));
        }
        let principal = claims.claims.sub.clone().unwrap_or_default();
        if principal.is_empty() {
            return Err(internal("token missing subject claim"));
        }
        let agent_id = self.agent_id(&claims)?;
        assess_tofu(&self.agents, agent_id.as_str()).await?;
        let Some(tenant) = self.tenants.get(&claims.tid) else {
            return Err(PluginError::permission_denied(format!(
                "tenant {:?} is not authorized",
                claims.tid
            )));
        };
        claims
            .claims
            .validate_with_leeway(
                &jws::Expected {
                    any_audience: &[tenant.resource_id.as_str()],
                    now: Some((self.now)()),
                    ..Default::default()
                },
                TOKEN_LEEWAY,
            )
            .map_err(|e| internal(format!("unable to validate token claims: {e}")))?;
        let selector_values = self.resolve(tenant, &principal).await?;
        Ok(AttestedAgent {
            agent_id,
            selector_values,
            can_reattest: false,
        })
    }
}

#[cfg(test)]
mod tests;
