//! `k8s_psat`: node attestation with a projected service-account token, wire-compatible with
//! SPIRE's plugin.
//!
//! The agent sends `{"cluster": <name>, "token": <PSAT>}`; the server has the cluster's API
//! server review the token (TokenReview, audience `spire-server` unless configured), checks
//! the service account against the cluster's allow list, reads the agent's Pod and its Node,
//! and names the agent `spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node UID>`, so a
//! re-deployed agent pod on the same node keeps its ID (agents may re-attest).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};

use crate::client::types::TokenReviewStatus;
use crate::client::{ConfigSource, K8sError, KubeClient};

/// The plugin name, also the selector type.
pub const PLUGIN_NAME: &str = "k8s_psat";
/// Where the agent reads its token unless `token_path` says otherwise.
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/tokens/spire-agent";
/// The audience tokens must carry unless a cluster's `audience` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "spire-server";

const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";

/// The attestation payload (SPIRE's `k8s.PSATAttestationData`).
#[derive(Default, Serialize, Deserialize)]
pub struct AttestationData {
    /// The agent's cluster name.
    #[serde(default)]
    pub cluster: String,
    /// The projected service-account token.
    #[serde(default)]
    pub token: String,
}

impl std::fmt::Debug for AttestationData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationData")
            .field("cluster", &self.cluster)
            .field("token", &"(redacted)")
            .finish()
    }
}

fn q(s: &str) -> String {
    spire_gocompat::strconv::quote(s)
}

// === Agent ===

/// The agent half's `plugin_data`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    /// The cluster this agent runs in (must match a server `clusters` key).
    pub cluster: String,
    /// Where the projected token is mounted.
    pub token_path: String,
}

/// The agent half: reads the token file on every attestation (the kubelet rotates it).
#[derive(Debug)]
pub struct PsatAgent {
    cluster: String,
    token_path: PathBuf,
}

impl PsatAgent {
    /// Configures the plugin (SPIRE's errors).
    pub fn new(config: &AgentConfig) -> Result<PsatAgent, String> {
        if config.cluster.is_empty() {
            return Err("missing required cluster block".into());
        }
        let token_path = if config.token_path.is_empty() {
            DEFAULT_TOKEN_PATH
        } else {
            &config.token_path
        };
        Ok(PsatAgent {
            cluster: config.cluster.clone(),
            token_path: PathBuf::from(token_path),
        })
    }

    fn load_token(&self) -> PluginResult<String> {
        let shown = self.token_path.display().to_string();
        let fail = |why: String| {
            PluginError::invalid_argument(format!("unable to load token from {shown}: {why}"))
        };
        let data = crate::read_file(&self.token_path).map_err(fail)?;
        if data.is_empty() {
            return Err(fail(format!("{} is empty", q(&shown))));
        }
        String::from_utf8(data).map_err(|_| fail(format!("{} is not UTF-8 text", q(&shown))))
    }
}

#[async_trait]
impl AgentNodeAttestor for PsatAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let token = self.load_token()?;
        let payload = serde_json::to_vec(&AttestationData {
            cluster: self.cluster.clone(),
            token,
        })
        .map_err(|e| PluginError::internal(format!("unable to marshal PSAT token data: {e}")))?;
        match exchange.send(payload).await? {
            None => Ok(()),
            Some(_) => Err(PluginError::internal(
                "k8s_psat does not expect a challenge",
            )),
        }
    }
}

// === Server ===

/// One `clusters` entry of the server half's `plugin_data`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// `<namespace>:<service account>` names allowed to attest.
    pub service_account_allow_list: Vec<String>,
    /// Audiences for the TokenReview; unset means `["spire-server"]`, empty means the API
    /// server's own audience.
    pub audience: Option<Vec<String>>,
    /// A kubeconfig file; empty means the in-cluster configuration.
    pub kube_config_file: String,
    /// Node labels that become `agent_node_label` selectors.
    pub allowed_node_label_keys: Vec<String>,
    /// Pod labels that become `agent_pod_label` selectors.
    pub allowed_pod_label_keys: Vec<String>,
}

/// The server half's `plugin_data`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
}

/// The checks a token review status must pass, and where the agent's objects are read.
#[async_trait]
pub trait ClusterApi: Send + Sync + std::fmt::Debug {
    /// TokenReview.
    async fn token_review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<TokenReviewStatus, K8sError>;
    /// The Pod.
    async fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<crate::client::types::Pod, K8sError>;
    /// The Node.
    async fn get_node(&self, name: &str) -> Result<crate::client::types::Node, K8sError>;
}

#[async_trait]
impl ClusterApi for KubeClient {
    async fn token_review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<TokenReviewStatus, K8sError> {
        KubeClient::token_review(self, token, audiences).await
    }
    async fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<crate::client::types::Pod, K8sError> {
        KubeClient::get_pod(self, namespace, name).await
    }
    async fn get_node(&self, name: &str) -> Result<crate::client::types::Node, K8sError> {
        KubeClient::get_node(self, name).await
    }
}

#[derive(Debug)]
struct Cluster {
    service_accounts: BTreeSet<String>,
    audience: Vec<String>,
    api: Arc<dyn ClusterApi>,
    node_label_keys: BTreeSet<String>,
    pod_label_keys: BTreeSet<String>,
}

/// The server half.
#[derive(Debug)]
pub struct PsatServer {
    trust_domain: TrustDomain,
    clusters: BTreeMap<String, Cluster>,
}

impl PsatServer {
    /// Configures the plugin (SPIRE's errors); each cluster talks to its API server through
    /// its kubeconfig or the in-cluster configuration.
    pub fn new(config: &ServerConfig, trust_domain: TrustDomain) -> Result<PsatServer, String> {
        Self::with_api(config, trust_domain, |c| {
            Arc::new(KubeClient::new(ConfigSource::from_path(
                &c.kube_config_file,
            )))
        })
    }

    /// Configures the plugin with the API each cluster is reached through.
    pub fn with_api(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        api: impl Fn(&ClusterConfig) -> Arc<dyn ClusterApi>,
    ) -> Result<PsatServer, String> {
        if config.clusters.is_empty() {
            tracing::info!(
                plugin_name = PLUGIN_NAME,
                "No clusters configured, PSAT attestation is effectively disabled"
            );
        }
        let mut clusters = BTreeMap::new();
        for (name, c) in &config.clusters {
            if c.service_account_allow_list.is_empty() {
                return Err(format!(
                    "cluster {} configuration must have at least one service account allowed",
                    q(name)
                ));
            }
            clusters.insert(
                name.clone(),
                Cluster {
                    service_accounts: c.service_account_allow_list.iter().cloned().collect(),
                    audience: c
                        .audience
                        .clone()
                        .unwrap_or_else(|| vec![DEFAULT_AUDIENCE.to_string()]),
                    api: api(c),
                    node_label_keys: c.allowed_node_label_keys.iter().cloned().collect(),
                    pod_label_keys: c.allowed_pod_label_keys.iter().cloned().collect(),
                },
            );
        }
        Ok(PsatServer {
            trust_domain,
            clusters,
        })
    }
}

/// SPIRE's `ValidateToken` on top of the review: an error in the status fails, and an
/// authenticated token must be valid for one of the audiences asked for.
async fn validate_token(
    api: &dyn ClusterApi,
    token: &str,
    audiences: &[String],
) -> Result<TokenReviewStatus, String> {
    let status = api
        .token_review(token, audiences)
        .await
        .map_err(|e| match e {
            K8sError::Config(c) => format!("unable to get clientset: {c}"),
            other => format!("unable to query token review API: {other}"),
        })?;
    if !status.error.is_empty() {
        return Err(format!(
            "token review API response contains an error: {}",
            status.error
        ));
    }
    if status.authenticated
        && !audiences.is_empty()
        && !audiences.iter().any(|a| status.audiences.contains(a))
    {
        return Err(format!(
            "token review API did not validate audience: wanted one of {} but got {}",
            go_quoted_list(audiences),
            go_quoted_list(&status.audiences)
        ));
    }
    Ok(status)
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| spire_gocompat::strconv::quote(s))
        .collect();
    format!("[{}]", items.join(" "))
}

/// `system:serviceaccount:<ns>:<name>` → (ns, name), with SPIRE's errors.
fn names_from_status(status: &TokenReviewStatus) -> Result<(String, String), String> {
    let username = &status.user.username;
    if username.is_empty() {
        return Err("empty username".into());
    }
    let names: Vec<&str> = username.split(':').collect();
    if names.len() != 4 {
        return Err(format!("unexpected username format: {username}"));
    }
    if names[2].is_empty() {
        return Err("missing namespace".into());
    }
    if names[3].is_empty() {
        return Err("missing service account name".into());
    }
    Ok((names[2].to_string(), names[3].to_string()))
}

fn single_extra(status: &TokenReviewStatus, key: &str, what: &str) -> Result<String, String> {
    let v = status
        .user
        .extra
        .get(key)
        .ok_or_else(|| format!("missing pod {what}"))?;
    if v.len() != 1 {
        let noun = if what == "UID" { "UID" } else { "name" };
        return Err(format!("expected 1 {noun} but got: {}", v.len()));
    }
    if v[0].is_empty() {
        return Err(format!("pod {what} is empty"));
    }
    Ok(v[0].clone())
}

/// Go's `path.Join("spire", "agent", plugin, cluster, uid)`: empty elements dropped, `.`
/// and `..` resolved lexically.
fn clean_join(parts: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in parts.iter().flat_map(|p| p.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// SPIRE's agent ID for a Kubernetes node attestor.
pub fn agent_id(
    plugin: &str,
    trust_domain: &TrustDomain,
    cluster: &str,
    node_uid: &str,
) -> PluginResult<SpiffeId> {
    let path = clean_join(&["spire", "agent", plugin, cluster, node_uid]);
    let s = format!("spiffe://{trust_domain}/{path}");
    SpiffeId::parse(&s)
        .map_err(|e| PluginError::internal(format!("invalid agent ID {}: {e}", q(&s))))
}

#[async_trait]
impl ServerNodeAttestor for PsatServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        _challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        if payload.is_empty() {
            return Err(PluginError::invalid_argument("missing attestation payload"));
        }
        let data: AttestationData = serde_json::from_slice(&payload).map_err(|e| {
            PluginError::invalid_argument(format!("failed to unmarshal data payload: {e}"))
        })?;
        if data.cluster.is_empty() {
            return Err(PluginError::invalid_argument(
                "missing cluster in attestation data",
            ));
        }
        if data.token.is_empty() {
            return Err(PluginError::invalid_argument(
                "missing token in attestation data",
            ));
        }
        let Some(cluster) = self.clusters.get(&data.cluster) else {
            return Err(PluginError::invalid_argument(format!(
                "not configured for cluster {}",
                q(&data.cluster)
            )));
        };
        let status = validate_token(cluster.api.as_ref(), &data.token, &cluster.audience)
            .await
            .map_err(|e| {
                PluginError::internal(format!(
                    "unable to validate token with TokenReview API: {e}"
                ))
            })?;
        if !status.authenticated {
            return Err(PluginError::permission_denied(
                "token not authenticated according to TokenReview API",
            ));
        }
        let (namespace, service_account) = names_from_status(&status).map_err(|e| {
            PluginError::internal(format!(
                "fail to parse username from token review status: {e}"
            ))
        })?;
        let full = format!("{namespace}:{service_account}");
        if !cluster.service_accounts.contains(&full) {
            return Err(PluginError::permission_denied(format!(
                "{} is not an allowed service account",
                q(&full)
            )));
        }
        let pod_name = single_extra(&status, POD_NAME_KEY, "name").map_err(|e| {
            PluginError::internal(format!(
                "fail to get pod name from token review status: {e}"
            ))
        })?;
        let pod_uid = single_extra(&status, POD_UID_KEY, "UID").map_err(|e| {
            PluginError::internal(format!("fail to get pod UID from token review status: {e}"))
        })?;
        let pod = cluster
            .api
            .get_pod(&namespace, &pod_name)
            .await
            .map_err(|e| {
                PluginError::internal(format!(
                    "fail to get pod from k8s API server: {}",
                    api_err("pods", e)
                ))
            })?;
        if pod.spec.node_name.is_empty() {
            return Err(PluginError::internal(
                "fail to get node from k8s API server: empty node name",
            ));
        }
        let node = cluster
            .api
            .get_node(&pod.spec.node_name)
            .await
            .map_err(|e| {
                PluginError::internal(format!(
                    "fail to get node from k8s API server: {}",
                    api_err("nodes", e)
                ))
            })?;
        let node_uid = node.metadata.uid;
        if node_uid.is_empty() {
            return Err(PluginError::internal("node UID is empty"));
        }
        let mut selector_values = vec![
            format!("cluster:{}", data.cluster),
            format!("agent_ns:{namespace}"),
            format!("agent_sa:{service_account}"),
            format!("agent_pod_name:{pod_name}"),
            format!("agent_pod_uid:{pod_uid}"),
            format!("agent_node_ip:{}", pod.status.host_ip),
            format!("agent_node_name:{}", pod.spec.node_name),
            format!("agent_node_uid:{node_uid}"),
        ];
        for (k, v) in &node.metadata.labels {
            if cluster.node_label_keys.contains(k) {
                selector_values.push(format!("agent_node_label:{k}:{v}"));
            }
        }
        for (k, v) in &pod.metadata.labels {
            if cluster.pod_label_keys.contains(k) {
                selector_values.push(format!("agent_pod_label:{k}:{v}"));
            }
        }
        Ok(AttestedAgent {
            agent_id: agent_id(PLUGIN_NAME, &self.trust_domain, &data.cluster, &node_uid)?,
            selector_values,
            can_reattest: true,
        })
    }
}

/// client-go's wording for a failed get: `unable to query <kind> API: <why>`, or the
/// configuration error.
fn api_err(kind: &str, e: K8sError) -> String {
    match e {
        K8sError::Config(c) => format!("unable to get clientset: {c}"),
        other => format!("unable to query {kind} API: {other}"),
    }
}

#[cfg(test)]
mod tests;
