//! The server's bundle in Kubernetes objects: Notifier `k8sbundle` (the X.509 authorities as
//! PEM into an existing ConfigMap, and optionally into the `caBundle` of admission webhook
//! configurations and APIServices carrying a label) and BundlePublisher `k8s_configmap`
//! (the bundle in a chosen format, server-side applied to a ConfigMap per cluster). Both
//! as SPIRE 1.13's: keys, defaults, patches and messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use spiffe_core::bundle::{Bundle, JwtAuthority, X509Authority};
use spiffe_core::{PublicKey, TrustDomain};
use spire_plugin::{BundlePublisher, Code, Notifier, PluginBundle, PluginError, PluginResult};

use crate::client::types::ObjectMeta;
use crate::client::{ConfigSource, K8sError, KubeClient, path_segment};

/// The Notifier's name.
pub const NOTIFIER_NAME: &str = "k8sbundle";
/// The BundlePublisher's name.
pub const PUBLISHER_NAME: &str = "k8s_configmap";

const DEFAULT_NAMESPACE: &str = "spire";
const DEFAULT_CONFIG_MAP: &str = "spire-bundle";
const DEFAULT_CONFIG_MAP_KEY: &str = "bundle.crt";
/// client-go's `retry.DefaultRetry`: attempts on a write conflict.
const CONFLICT_ATTEMPTS: u32 = 5;
/// The first wait after a write conflict.
const CONFLICT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// The X.509 authorities as concatenated PEM blocks (SPIRE's `bundleData`).
pub fn x509_pem(bundle: &PluginBundle) -> String {
    let mut out = String::new();
    for a in &bundle.x509_authorities {
        out.push_str(&spiffe_core::pem_encode("CERTIFICATE", &a.der));
    }
    out
}

// === Notifier k8sbundle ===

/// One cluster of the notifier's `plugin_data` (the top level is one too).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NotifierCluster {
    /// Namespace of the ConfigMap (default `spire`).
    pub namespace: String,
    /// ConfigMap name (default `spire-bundle`).
    pub config_map: String,
    /// Key in the ConfigMap (default `bundle.crt`).
    pub config_map_key: String,
    /// Webhook configurations labelled `<label>=true` get the bundle as `caBundle`.
    pub webhook_label: String,
    /// APIServices labelled `<label>=true` get the bundle as `caBundle`.
    pub api_service_label: String,
    /// A kubeconfig; empty means in-cluster.
    pub kube_config_file_path: String,
}

/// The notifier's `plugin_data`: the top-level cluster's keys, and more clusters.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NotifierConfig {
    /// See [`NotifierCluster::namespace`].
    pub namespace: String,
    /// See [`NotifierCluster::config_map`].
    pub config_map: String,
    /// See [`NotifierCluster::config_map_key`].
    pub config_map_key: String,
    /// See [`NotifierCluster::webhook_label`].
    pub webhook_label: String,
    /// See [`NotifierCluster::api_service_label`].
    pub api_service_label: String,
    /// See [`NotifierCluster::kube_config_file_path`].
    pub kube_config_file_path: String,
    /// More clusters, each with its own kubeconfig.
    pub clusters: Vec<NotifierCluster>,
}

impl NotifierConfig {
    fn root(&self) -> NotifierCluster {
        NotifierCluster {
            namespace: self.namespace.clone(),
            config_map: self.config_map.clone(),
            config_map_key: self.config_map_key.clone(),
            webhook_label: self.webhook_label.clone(),
            api_service_label: self.api_service_label.clone(),
            kube_config_file_path: self.kube_config_file_path.clone(),
        }
    }
}

fn is_root_set(c: &NotifierCluster) -> bool {
    !c.namespace.is_empty()
        || !c.config_map.is_empty()
        || !c.config_map_key.is_empty()
        || !c.webhook_label.is_empty()
        || !c.api_service_label.is_empty()
        || !c.kube_config_file_path.is_empty()
}

fn with_defaults(mut c: NotifierCluster) -> NotifierCluster {
    if c.namespace.is_empty() {
        c.namespace = DEFAULT_NAMESPACE.into();
    }
    if c.config_map.is_empty() {
        c.config_map = DEFAULT_CONFIG_MAP.into();
    }
    if c.config_map_key.is_empty() {
        c.config_map_key = DEFAULT_CONFIG_MAP_KEY.into();
    }
    c
}

/// What kind of object carries the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    MutatingWebhook,
    ValidatingWebhook,
    ApiService,
}

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Kind::ConfigMap => "/api/v1/namespaces/{ns}/configmaps",
            Kind::MutatingWebhook => {
                "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
            }
            Kind::ValidatingWebhook => {
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
            }
            Kind::ApiService => "/apis/apiregistration.k8s.io/v1/apiservices",
        }
    }

    fn object_path(self, namespace: &str, name: &str) -> String {
        format!(
            "{}/{}",
            self.collection().replace("{ns}", &path_segment(namespace)),
            path_segment(name)
        )
    }
}

#[derive(Debug)]
struct Target {
    client: Arc<KubeClient>,
    cluster: NotifierCluster,
}

/// Notifier `k8sbundle`.
#[derive(Debug)]
pub struct K8sBundleNotifier {
    targets: Vec<Target>,
    /// The last bundle PEM, for the watchers' patches of new labelled objects.
    current: Arc<Mutex<Option<String>>>,
}

impl K8sBundleNotifier {
    /// Configures the plugin (SPIRE's rules: the top-level cluster gets the defaults when it
    /// has any key set or when there is no `clusters` list; every listed cluster needs a
    /// kubeconfig).
    pub fn new(config: &NotifierConfig) -> Result<K8sBundleNotifier, String> {
        let mut clusters = Vec::new();
        let root = config.root();
        if is_root_set(&root) || config.clusters.is_empty() {
            clusters.push(with_defaults(root));
        }
        for c in &config.clusters {
            if c.kube_config_file_path.is_empty() {
                return Err("cluster configuration is missing kube_config_file_path".into());
            }
            clusters.push(with_defaults(c.clone()));
        }
        let mut targets = Vec::new();
        for cluster in clusters {
            let client = KubeClient::new(ConfigSource::from_path(&cluster.kube_config_file_path));
            // SPIRE builds its clients when configured: a bad kubeconfig stops the start.
            client
                .http()
                .map_err(|e| format!("unable to create new kubeClients: {e}"))?;
            targets.push(Target {
                client: Arc::new(client),
                cluster,
            });
        }
        Ok(K8sBundleNotifier {
            targets,
            current: Arc::new(Mutex::new(None)),
        })
    }

    /// The kinds of object a cluster's bundle goes into: its ConfigMap, then the labelled
    /// webhook configurations and APIServices.
    fn kinds(t: &Target) -> Vec<Kind> {
        let mut kinds = vec![Kind::ConfigMap];
        if !t.cluster.webhook_label.is_empty() {
            kinds.extend([Kind::MutatingWebhook, Kind::ValidatingWebhook]);
        }
        if !t.cluster.api_service_label.is_empty() {
            kinds.push(Kind::ApiService);
        }
        kinds
    }

    /// The objects of one kind to write, as (namespace, name); each kind is listed on its own,
    /// as SPIRE's clients are, so one failing does not hold the others back.
    async fn list(&self, t: &Target, kind: Kind) -> Result<Vec<(String, String)>, String> {
        let label = match kind {
            Kind::ConfigMap => {
                // SPIRE reads the ConfigMap to list it: a missing one is an error here.
                t.client
                    .get::<Value>(
                        &Kind::ConfigMap.object_path(&t.cluster.namespace, &t.cluster.config_map),
                    )
                    .await
                    .map_err(|e| format!("unable to get list: {e}"))?;
                return Ok(vec![(
                    t.cluster.namespace.clone(),
                    t.cluster.config_map.clone(),
                )]);
            }
            Kind::MutatingWebhook | Kind::ValidatingWebhook => &t.cluster.webhook_label,
            Kind::ApiService => &t.cluster.api_service_label,
        };
        let selector = path_segment(&format!("{label}=true"));
        let list: Value = t
            .client
            .get(&format!("{}?labelSelector={selector}", kind.collection()))
            .await
            .map_err(|e| format!("unable to get list: {e}"))?;
        Ok(list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item["metadata"]["name"].as_str())
            .map(|name| (String::new(), name.to_string()))
            .collect())
    }

    async fn update_all(&self, pem: &str) -> PluginResult<()> {
        *self.current.lock() = Some(pem.to_string());
        let mut errors = Vec::new();
        for t in &self.targets {
            for kind in Self::kinds(t) {
                let objects = match self.list(t, kind).await {
                    Ok(o) => o,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                for (ns, name) in objects {
                    match update_object(&t.client, &t.cluster, kind, &ns, &name, pem).await {
                        Ok(()) | Err(Update::UpToDate) => {}
                        Err(Update::Failed(e)) => {
                            let shown = if ns.is_empty() {
                                name.clone()
                            } else {
                                format!("{ns}/{name}")
                            };
                            errors.push(format!("{shown}: {e}"));
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PluginError::internal(format!(
                "unable to update: {}",
                errors.join(", ")
            )))
        }
    }
}

enum Update {
    UpToDate,
    Failed(String),
}

/// One object's patch with its `resourceVersion`, retried on a write conflict.
async fn update_object(
    client: &KubeClient,
    cluster: &NotifierCluster,
    kind: Kind,
    namespace: &str,
    name: &str,
    pem: &str,
) -> Result<(), Update> {
    let path = kind.object_path(namespace, name);
    let mut last = String::new();
    for attempt in 0..CONFLICT_ATTEMPTS {
        let obj: Value = client.get(&path).await.map_err(|e| {
            Update::Failed(format!(
                "rpc error: code = Internal desc = unable to get object {namespace}/{name}: {e}"
            ))
        })?;
        let Some(patch) = patch_for(kind, cluster, &obj, pem) else {
            return Err(Update::UpToDate);
        };
        match client
            .strategic_merge_patch::<Value, _>(&path, &patch)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => {
                last = e.to_string();
                // client-go's DefaultRetry: 10 ms, growing.
                tokio::time::sleep(CONFLICT_BACKOFF * (attempt + 1)).await;
            }
            Err(e) => return Err(Update::Failed(e.to_string())),
        }
    }
    Err(Update::Failed(last))
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// SPIRE's `CreatePatch` for each kind; `None` when the object already has the bundle.
fn patch_for(kind: Kind, cluster: &NotifierCluster, obj: &Value, pem: &str) -> Option<Value> {
    let meta: ObjectMeta = serde_json::from_value(obj["metadata"].clone()).unwrap_or_default();
    let rv = meta.resource_version;
    let ca = b64(pem);
    match kind {
        Kind::ConfigMap => {
            let mut data = serde_json::Map::new();
            data.insert(cluster.config_map_key.clone(), Value::String(pem.into()));
            Some(json!({"metadata": {"resourceVersion": rv}, "data": data}))
        }
        Kind::MutatingWebhook | Kind::ValidatingWebhook => {
            let hooks = obj["webhooks"].as_array().cloned().unwrap_or_default();
            if hooks
                .iter()
                .all(|h| h["clientConfig"]["caBundle"].as_str() == Some(ca.as_str()))
            {
                return None;
            }
            let patched: Vec<Value> = hooks
                .iter()
                .map(|h| {
                    let mut client_config = serde_json::Map::new();
                    if !ca.is_empty() {
                        client_config.insert("caBundle".into(), json!(ca));
                    }
                    json!({
                        "name": h["name"],
                        "admissionReviewVersions": h["admissionReviewVersions"],
                        "sideEffects": h["sideEffects"],
                        "clientConfig": client_config,
                    })
                })
                .collect();
            Some(json!({"metadata": {"resourceVersion": rv}, "webhooks": patched}))
        }
        Kind::ApiService => {
            if obj["spec"]["caBundle"].as_str() == Some(ca.as_str()) {
                return None;
            }
            Some(json!({
                "metadata": {"resourceVersion": rv},
                "spec": {
                    "caBundle": ca,
                    "groupPriorityMinimum": obj["spec"]["groupPriorityMinimum"],
                    "versionPriority": obj["spec"]["versionPriority"],
                }
            }))
        }
    }
}

#[async_trait]
impl Notifier for K8sBundleNotifier {
    async fn bundle_loaded(&self, bundle: &PluginBundle) -> PluginResult<()> {
        self.update_all(&x509_pem(bundle)).await
    }

    async fn bundle_updated(&self, bundle: &PluginBundle) -> PluginResult<()> {
        self.update_all(&x509_pem(bundle)).await
    }
}

impl K8sBundleNotifier {
    /// Patches labelled webhook configurations and APIServices created or changed between
    /// bundle updates (SPIRE's informers): lists them every `every` and writes the current
    /// bundle into any that lack it. Runs until the notifier is dropped.
    pub fn spawn_watchers(self: &Arc<Self>, every: std::time::Duration) {
        if !self.targets.iter().any(|t| Self::kinds(t).len() > 1) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else {
                    return;
                };
                let Some(pem) = me.current.lock().clone() else {
                    continue;
                };
                for t in &me.targets {
                    for kind in Self::kinds(t).into_iter().skip(1) {
                        me.watch_pass(t, kind, &pem).await;
                    }
                }
            }
        });
    }

    /// One pass of the watcher over the labelled objects of one kind.
    async fn watch_pass(&self, t: &Target, kind: Kind, pem: &str) {
        let Ok(objects) = self.list(t, kind).await else {
            return;
        };
        for (ns, name) in objects {
            match update_object(&t.client, &t.cluster, kind, &ns, &name, pem).await {
                Ok(()) => {
                    tracing::debug!(plugin_name = NOTIFIER_NAME, name = %name, "Set bundle for object");
                }
                Err(Update::UpToDate) => {}
                Err(Update::Failed(e)) => {
                    tracing::error!(plugin_name = NOTIFIER_NAME, name = %name, error = %e, "Unable to set bundle for object");
                }
            }
        }
    }
}

// === BundlePublisher k8s_configmap ===

/// One cluster of the publisher's `plugin_data`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PublisherCluster {
    /// `spiffe`, `jwks` or `pem`.
    pub format: String,
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// ConfigMap name.
    pub configmap_name: String,
    /// Key in the ConfigMap.
    pub configmap_key: String,
    /// A kubeconfig; empty means in-cluster.
    pub kubeconfig_path: String,
    /// `spiffe_refresh_hint` to publish (a Go duration).
    pub refresh_hint: String,
}

/// The publisher's `plugin_data`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PublisherConfig {
    /// Clusters by ID.
    pub clusters: BTreeMap<String, PublisherCluster>,
}

/// The bundle formats SPIRE's bundle publishers write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The SPIFFE bundle format.
    Spiffe,
    /// A plain JWKS.
    Jwks,
    /// The X.509 authorities as PEM.
    Pem,
}

impl Format {
    /// SPIRE's `bundleformat.FromString`.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "spiffe" => Ok(Format::Spiffe),
            "jwks" => Ok(Format::Jwks),
            "pem" => Ok(Format::Pem),
            _ => Err(format!(
                "unknown bundle format: {}",
                spire_gocompat::strconv::quote(s)
            )),
        }
    }

    /// The bundle in this format (SPIRE's formatter: authorities must parse).
    pub fn render(self, b: &PluginBundle, refresh_hint: i64) -> Result<String, String> {
        let spiffe_err = |e: String| {
            format!("could not convert bundle to spiffe format: failed to convert bundle: {e}")
        };
        match self {
            Format::Pem => Ok(x509_pem(b)),
            Format::Jwks => authorities(b, None)
                .map(|bundle| bundle.to_jwks_json())
                .map_err(|e| format!("could not convert bundle to jwks format: {e}")),
            Format::Spiffe => {
                let td =
                    TrustDomain::new(&b.trust_domain).map_err(|e| spiffe_err(e.to_string()))?;
                let mut bundle = authorities(b, Some(td)).map_err(spiffe_err)?;
                let hint = if refresh_hint != 0 {
                    refresh_hint
                } else {
                    b.refresh_hint
                };
                bundle.refresh_hint = (hint > 0).then_some(hint);
                bundle.sequence_number = (b.sequence_number > 0).then_some(b.sequence_number);
                Ok(bundle.to_spiffe_json_compact())
            }
        }
    }
}

/// The plugin bundle's authorities, parsed (SPIRE's `getAuthorities`): JWT keys with the
/// same key ID collapse to the last one, as in Go's map. The trust domain only names the
/// bundle (the JWKS format has none).
fn authorities(b: &PluginBundle, td: Option<TrustDomain>) -> Result<Bundle, String> {
    let td = match td {
        Some(td) => td,
        None => TrustDomain::new("jwks.invalid").map_err(|e| e.to_string())?,
    };
    let mut bundle = Bundle::new(td);
    for (i, a) in b.x509_authorities.iter().enumerate() {
        x509_parser::parse_x509_certificate(&a.der)
            .map_err(|e| format!("unable to parse root CA {i}: {e}"))?;
        bundle.x509_authorities.push(X509Authority {
            der: a.der.clone(),
            tainted: a.tainted,
        });
    }
    for (i, k) in b.jwt_authorities.iter().enumerate() {
        let public_key = PublicKey::from_spki_der(&k.public_key)
            .map_err(|e| format!("unable to parse JWT signing key {i}: {e}"))?;
        bundle.jwt_authorities.retain(|a| a.key_id != k.key_id);
        bundle.jwt_authorities.push(JwtAuthority {
            key_id: k.key_id.clone(),
            public_key,
            expires_at: k.expires_at,
            tainted: k.tainted,
        });
    }
    Ok(bundle)
}

#[derive(Debug)]
struct PublishTarget {
    id: String,
    cluster: PublisherCluster,
    format: Format,
    refresh_hint: i64,
    client: KubeClient,
}

/// BundlePublisher `k8s_configmap`.
#[derive(Debug)]
pub struct K8sConfigMapPublisher {
    targets: Vec<PublishTarget>,
    last: Mutex<Option<PluginBundle>>,
}

impl K8sConfigMapPublisher {
    /// Configures the plugin (SPIRE's errors).
    pub fn new(config: &PublisherConfig) -> Result<K8sConfigMapPublisher, String> {
        if config.clusters.is_empty() {
            tracing::warn!(
                plugin_name = PUBLISHER_NAME,
                "No clusters configured, bundle will not be published"
            );
        }
        let mut targets = Vec::new();
        for (id, c) in &config.clusters {
            let q = spire_gocompat::strconv::quote(id);
            if c.format.is_empty() {
                return Err(format!("missing bundle format in cluster {q}"));
            }
            if c.namespace.is_empty() {
                return Err(format!("missing namespace in cluster {q}"));
            }
            if c.configmap_name.is_empty() {
                return Err(format!("missing configmap name in cluster {q}"));
            }
            if c.configmap_key.is_empty() {
                return Err(format!("missing configmap key in cluster {q}"));
            }
            let format = Format::parse(&c.format)
                .map_err(|e| format!("could not parse bundle format from cluster {q}: {e}"))?;
            let refresh_hint = if c.refresh_hint.is_empty() {
                0
            } else {
                let d = spire_gocompat::parse_go_duration(&c.refresh_hint).map_err(|e| {
                    format!(
                        "could not parse refresh_hint from cluster {q}: could not parse refresh hint {}: {e}",
                        spire_gocompat::strconv::quote(&c.refresh_hint)
                    )
                })?;
                d.as_secs()
            };
            let client = KubeClient::new(ConfigSource::from_path(&c.kubeconfig_path));
            client.http().map_err(|e| {
                format!(
                    "failed to create Kubernetes client for cluster {q}: error getting kubeconfig: {e}"
                )
            })?;
            targets.push(PublishTarget {
                id: id.clone(),
                cluster: c.clone(),
                format,
                refresh_hint,
                client,
            });
        }
        Ok(K8sConfigMapPublisher {
            targets,
            last: Mutex::new(None),
        })
    }
}

#[async_trait]
impl BundlePublisher for K8sConfigMapPublisher {
    async fn publish_bundle(&self, bundle: &PluginBundle) -> PluginResult<()> {
        if self.last.lock().as_ref() == Some(bundle) {
            return Ok(());
        }
        let mut errors = Vec::new();
        for t in &self.targets {
            let q = spire_gocompat::strconv::quote(&t.id);
            let data = match t.format.render(bundle, t.refresh_hint) {
                Ok(d) => d,
                Err(e) => {
                    errors.push(format!(
                        "could not format bundle when publishing to cluster {q}: {e}"
                    ));
                    continue;
                }
            };
            let path = format!(
                "{}?fieldManager={}",
                Kind::ConfigMap.object_path(&t.cluster.namespace, &t.cluster.configmap_name),
                path_segment(&format!("spire-bundlepublisher-{PUBLISHER_NAME}"))
            );
            let mut map = serde_json::Map::new();
            map.insert(t.cluster.configmap_key.clone(), Value::String(data));
            let body = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": t.cluster.configmap_name, "namespace": t.cluster.namespace},
                "data": map,
            });
            match t.client.apply::<Value, _>(&path, &body).await {
                Ok(_) => tracing::debug!(
                    plugin_name = PUBLISHER_NAME,
                    cluster_id = %t.id,
                    namespace = %t.cluster.namespace,
                    configmap = %t.cluster.configmap_name,
                    key = %t.cluster.configmap_key,
                    "Bundle published to Kubernetes ConfigMap"
                ),
                Err(e) => errors.push(format!(
                    "failed to apply ConfigMap for cluster {q}: {}",
                    apply_err(e)
                )),
            }
        }
        if !errors.is_empty() {
            return Err(PluginError::new(Code::Internal, errors.join("\n")));
        }
        *self.last.lock() = Some(bundle.clone());
        Ok(())
    }
}

fn apply_err(e: K8sError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests;
