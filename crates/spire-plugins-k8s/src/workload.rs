//! WorkloadAttestor `k8s`, as SPIRE 1.13's: the caller's pod UID and container ID come from
//! its cgroups ([`spire_containerinfo`]); the kubelet's `/pods` (secure port with the service
//! account token or a client certificate, or the read-only port) says which pod and
//! container those are, and the selectors describe them.
//!
//! The pod list is cached for half the poll interval and fetched by one caller at a time,
//! so a burst of attestations costs one kubelet call; only the fields the selectors need
//! are kept (`client::types::Pod`), so memory follows the pod count, not the kubelet's
//! answer size.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;
use spire_gocompat::parse_go_duration;
use spire_plugin::{Code, PluginError, PluginResult, WorkloadAttestor};
use spire_tls::{ClientIdentity, ServerTrust};
use tokio::time::Instant;

use crate::client::types::{ContainerStatus, Pod, PodList};
use crate::client::{ClientConfig, Credentials, HttpClient, K8sError};
use spire_containerinfo::Locator;

/// The plugin name, also the selector type.
pub const PLUGIN_NAME: &str = "k8s";
const DEFAULT_MAX_POLL_ATTEMPTS: u32 = 60;
const DEFAULT_POLL_RETRY_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_SECURE_KUBELET_PORT: u16 = 10250;
const DEFAULT_KUBELET_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const DEFAULT_NODE_NAME_ENV: &str = "MY_NODE_NAME";
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// How long one kubelet `/pods` request may take (SPIRE's 10 s).
const KUBELET_TIMEOUT: Duration = Duration::from_secs(10);

/// `plugin_data`, SPIRE's keys.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The kubelet's read-only (plain HTTP) port.
    pub kubelet_read_only_port: i64,
    /// The kubelet's secure port (default 10250).
    pub kubelet_secure_port: i64,
    /// Pod list polls before giving up on a container not yet listed (default 60).
    pub max_poll_attempts: i64,
    /// Time between polls (default 500ms).
    pub poll_retry_interval: String,
    /// CA of the kubelet's serving certificate (default: the service account's CA).
    pub kubelet_ca_path: String,
    /// Do not verify the kubelet's certificate.
    pub skip_kubelet_verification: bool,
    /// Bearer token for the kubelet (default: the service account token).
    pub token_path: String,
    /// Client certificate for the kubelet.
    pub certificate_path: String,
    /// Its key.
    pub private_key_path: String,
    /// Neither a token nor a client certificate.
    pub use_anonymous_authentication: bool,
    /// The environment variable holding the node name (default `MY_NODE_NAME`).
    pub node_name_env: String,
    /// The node name (the kubelet's host name).
    pub node_name: String,
    /// How often credentials are re-read (default 1m).
    pub reload_interval: String,
    /// Pod selectors only.
    pub disable_container_selectors: bool,
    /// The new container locator (default) or the legacy one.
    pub use_new_container_locator: Option<bool>,
    /// Log every cgroup and mount the locator reads.
    pub verbose_container_locator_logs: bool,
    /// `experimental { sigstore { … } }`.
    pub experimental: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
enum Auth {
    Anonymous,
    Token(PathBuf),
    Certificate { cert: PathBuf, key: PathBuf },
}

#[derive(Debug, Clone)]
enum Verify {
    Skip,
    Ca(PathBuf),
}

#[derive(Debug)]
struct KubeletSettings {
    timeout: Duration,
    secure: bool,
    port: u16,
    node_name: String,
    verify: Verify,
    auth: Auth,
}

use crate::read_file as read;

fn q(s: &str) -> String {
    spire_gocompat::strconv::quote(s)
}

impl KubeletSettings {
    /// A kubelet client with the credentials as they are on disk now (SPIRE's
    /// `reloadKubeletClient`, with its errors).
    fn client(&self) -> PluginResult<HttpClient> {
        let bad = |m: String| PluginError::invalid_argument(m);
        let connect = |server: String, trust, identity, credentials| {
            let server = url::Url::parse(&server)
                .map_err(|e| bad(format!("invalid kubelet address {}: {e}", q(&server))))?;
            HttpClient::new(ClientConfig {
                server,
                trust,
                tls_server_name: None,
                identity,
                credentials,
                files: Vec::new(),
            })
            .map(|c| c.with_timeout(self.timeout))
            .map_err(|e| bad(e.to_string()))
        };
        if !self.secure {
            return connect(
                format!("http://127.0.0.1:{}", self.port),
                ServerTrust::SkipVerification,
                None,
                Credentials::None,
            );
        }
        let trust = match &self.verify {
            Verify::Skip => ServerTrust::SkipVerification,
            Verify::Ca(path) => {
                let pem = read(path).map_err(|e| bad(format!("unable to load kubelet CA: {e}")))?;
                let roots = spire_tls::certs_from_pem(&pem)
                    .map_err(|e| bad(format!("unable to parse kubelet CA: {e}")))?;
                if self.node_name.is_empty() {
                    ServerTrust::RootsAnyName(roots)
                } else {
                    ServerTrust::Roots(roots)
                }
            }
        };
        let (identity, credentials) = match &self.auth {
            Auth::Anonymous => (None, Credentials::None),
            Auth::Certificate { cert, key } => {
                let c = read(cert).map_err(|e| bad(format!("unable to load certificate: {e}")))?;
                let k = read(key).map_err(|e| bad(format!("unable to load private key: {e}")))?;
                let id = ClientIdentity::from_pem(&c, &k)
                    .map_err(|e| bad(format!("unable to load keypair: {e}")))?;
                (Some(id), Credentials::None)
            }
            Auth::Token(path) => {
                let t = read(path).map_err(|e| bad(format!("unable to load token: {e}")))?;
                let t = String::from_utf8_lossy(&t).trim().to_string();
                (None, Credentials::Token(t))
            }
        };
        let host = if self.node_name.is_empty() {
            "127.0.0.1"
        } else {
            &self.node_name
        };
        connect(
            format!("https://{host}:{}", self.port),
            trust,
            identity,
            credentials,
        )
    }
}

/// The pods a kubelet listed, by UID.
#[derive(Debug, Default)]
pub struct PodIndex {
    pods: Vec<Pod>,
    by_uid: HashMap<String, usize>,
}

impl PodIndex {
    /// Indexes a kubelet `/pods` answer; pods without a UID are skipped, as SPIRE does.
    pub fn parse(body: &[u8]) -> PluginResult<PodIndex> {
        let list: PodList = serde_json::from_slice(body)
            .map_err(|e| PluginError::internal(format!("unable to parse kubelet response: {e}")))?;
        let mut index = PodIndex::default();
        for pod in list.items {
            if pod.metadata.uid.is_empty() {
                tracing::warn!(plugin_name = PLUGIN_NAME, pod = %pod.metadata.name, "Pod has no UID");
                continue;
            }
            index
                .by_uid
                .insert(pod.metadata.uid.clone(), index.pods.len());
            index.pods.push(pod);
        }
        Ok(index)
    }

    /// How many pods.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

struct Cached {
    until: Instant,
    pods: Arc<PodIndex>,
}

struct ClientSlot {
    client: Arc<HttpClient>,
    loaded: Instant,
}

/// The `k8s` WorkloadAttestor.
pub struct K8sAttestor {
    settings: KubeletSettings,
    locator: Locator,
    max_poll_attempts: u32,
    poll_retry_interval: Duration,
    reload_interval: Duration,
    disable_container_selectors: bool,
    client: Mutex<ClientSlot>,
    cache: Mutex<Option<Cached>>,
    /// Held by the one caller fetching; holds the outcome of the last fetch and when it
    /// ended, so callers that waited through it share it, error included.
    fetch: tokio::sync::Mutex<Option<(Instant, PluginResult<Arc<PodIndex>>)>>,
    kubelet_calls: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for K8sAttestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sAttestor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn duration(text: &str, what: &str, default: Duration) -> Result<Duration, String> {
    if text.is_empty() {
        return Ok(default);
    }
    let d = parse_go_duration(text).map_err(|e| format!("unable to parse {what}: {e}"))?;
    Ok(d.to_std().filter(|d| !d.is_zero()).unwrap_or(default))
}

impl K8sAttestor {
    /// Configures the plugin as SPIRE does (its errors); `getenv` reads the node name's
    /// environment variable; `root` is where `/proc` is read (`/`).
    pub fn new(
        config: &Config,
        getenv: impl Fn(&str) -> Option<String>,
        root: impl Into<PathBuf>,
    ) -> Result<K8sAttestor, String> {
        spire_containerinfo::refuse_sigstore(config.experimental.as_ref())?;
        let max_poll_attempts = u32::try_from(config.max_poll_attempts)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_POLL_ATTEMPTS);
        let poll_retry_interval = duration(
            &config.poll_retry_interval,
            "poll retry interval",
            DEFAULT_POLL_RETRY_INTERVAL,
        )?;
        let reload_interval = duration(
            &config.reload_interval,
            "reload interval",
            DEFAULT_RELOAD_INTERVAL,
        )?;
        if config.kubelet_secure_port > 0 && config.kubelet_read_only_port > 0 {
            return Err("cannot use both the read-only and secure port".into());
        }
        let port_of = |p: i64| u16::try_from(p).map_err(|_| format!("invalid kubelet port {p}"));
        let (secure, port) = if config.kubelet_read_only_port > 0 {
            (false, port_of(config.kubelet_read_only_port)?)
        } else if config.kubelet_secure_port > 0 {
            (true, port_of(config.kubelet_secure_port)?)
        } else {
            (true, DEFAULT_SECURE_KUBELET_PORT)
        };
        let legacy = config.use_new_container_locator == Some(false);
        if legacy {
            tracing::warn!(
                plugin_name = PLUGIN_NAME,
                "Using the legacy container locator. This option will removed in a future release."
            );
        } else {
            tracing::info!(plugin_name = PLUGIN_NAME, "Using the new container locator");
        }
        let node_name = if !config.node_name.is_empty() {
            config.node_name.clone()
        } else if !config.node_name_env.is_empty() {
            getenv(&config.node_name_env).unwrap_or_default()
        } else {
            getenv(DEFAULT_NODE_NAME_ENV).unwrap_or_default()
        };
        let or_default = |p: &str, d: &str| PathBuf::from(if p.is_empty() { d } else { p });
        let verify = if config.skip_kubelet_verification {
            Verify::Skip
        } else {
            Verify::Ca(or_default(&config.kubelet_ca_path, DEFAULT_KUBELET_CA_PATH))
        };
        // SPIRE checks the credentials only for the secure port.
        let auth = match (
            config.use_anonymous_authentication || !secure,
            config.certificate_path.is_empty(),
            config.private_key_path.is_empty(),
        ) {
            (true, _, _) => Auth::Anonymous,
            (false, false, false) => Auth::Certificate {
                cert: config.certificate_path.clone().into(),
                key: config.private_key_path.clone().into(),
            },
            (false, false, true) => {
                return Err("the private key path is required with the certificate path".into());
            }
            (false, true, false) => {
                return Err("the certificate path is required with the private key path".into());
            }
            (false, true, true) => Auth::Token(or_default(&config.token_path, DEFAULT_TOKEN_PATH)),
        };
        let settings = KubeletSettings {
            timeout: KUBELET_TIMEOUT,
            secure,
            port,
            node_name,
            verify,
            auth,
        };
        let client = settings.client().map_err(|e| e.message)?;
        Ok(K8sAttestor {
            settings,
            locator: Locator::new(root, legacy).verbose(config.verbose_container_locator_logs),
            max_poll_attempts,
            poll_retry_interval,
            reload_interval,
            disable_container_selectors: config.disable_container_selectors,
            client: Mutex::new(ClientSlot {
                client: Arc::new(client),
                loaded: Instant::now(),
            }),
            cache: Mutex::new(None),
            fetch: tokio::sync::Mutex::new(None),
            kubelet_calls: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The same attestor with another bound on each kubelet request (tests).
    #[cfg(test)]
    fn with_kubelet_timeout(mut self, timeout: Duration) -> K8sAttestor {
        self.settings.timeout = timeout;
        if let Ok(c) = self.settings.client() {
            self.client.lock().client = Arc::new(c);
        }
        self
    }

    /// How many times the kubelet was asked for its pods.
    pub fn kubelet_calls(&self) -> u64 {
        self.kubelet_calls
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The kubelet client, re-read from disk once `reload_interval` has passed (a failed
    /// reload keeps the old one, with SPIRE's warning).
    fn kubelet(&self) -> Arc<HttpClient> {
        let mut slot = self.client.lock();
        if self.settings.secure && slot.loaded.elapsed() >= self.reload_interval {
            match self.settings.client() {
                Ok(c) => {
                    slot.client = Arc::new(c);
                    slot.loaded = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(plugin_name = PLUGIN_NAME, err = %e.message, "Unable to load kubelet client");
                }
            }
        }
        slot.client.clone()
    }

    fn cached(&self) -> Option<Arc<PodIndex>> {
        let cache = self.cache.lock();
        cache
            .as_ref()
            .filter(|c| Instant::now() < c.until)
            .map(|c| c.pods.clone())
    }

    async fn pod_list(&self) -> PluginResult<Arc<PodIndex>> {
        if let Some(p) = self.cached() {
            return Ok(p);
        }
        let asked = Instant::now();
        let mut last = self.fetch.lock().await;
        if let Some((ended, outcome)) = last.as_ref()
            && *ended >= asked
        {
            return outcome.clone();
        }
        if let Some(p) = self.cached() {
            return Ok(p);
        }
        let outcome = self.fetch_pods().await;
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }

    /// One `/pods` request; a good answer is cached for half the poll interval.
    async fn fetch_pods(&self) -> PluginResult<Arc<PodIndex>> {
        let client = self.kubelet();
        self.kubelet_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (status, body) = client
            .send(http::Method::GET, "/pods", None, bytes::Bytes::new())
            .await
            .map_err(|e| match e {
                K8sError::Transport { .. } => {
                    PluginError::internal(format!("unable to perform request: {e}"))
                }
                other => PluginError::internal(format!("unable to read pods response: {other}")),
            })?;
        if status != http::StatusCode::OK {
            let head = &body[..body.len().min(1024)];
            return Err(PluginError::internal(format!(
                "unexpected status code on pods response: {} {}",
                status.as_u16(),
                String::from_utf8_lossy(head)
            )));
        }
        let pods = Arc::new(PodIndex::parse(&body)?);
        *self.cache.lock() = Some(Cached {
            until: Instant::now() + self.poll_retry_interval / 2,
            pods: pods.clone(),
        });
        Ok(pods)
    }

    /// One pass over the pod list: the selectors of the pod running `container_id`.
    fn match_pods(
        &self,
        pods: &PodIndex,
        pod_uid: &str,
        container_id: &str,
    ) -> PluginResult<Option<Vec<String>>> {
        let candidates: Vec<&Pod> = if pod_uid.is_empty() {
            pods.pods.iter().collect()
        } else {
            pods.by_uid
                .get(pod_uid)
                .and_then(|i| pods.pods.get(*i))
                .into_iter()
                .collect()
        };
        let mut answer: Option<Vec<String>> = None;
        for pod in candidates {
            let mut values = Vec::new();
            match find_container(container_id, pod) {
                Some(status) => {
                    values.extend(pod_selectors(pod));
                    if !self.disable_container_selectors {
                        values.extend(container_selectors(status));
                    }
                }
                None if !pod_uid.is_empty() && self.disable_container_selectors => {
                    values.extend(pod_selectors(pod));
                }
                None => {}
            }
            if !values.is_empty() {
                if answer.is_some() {
                    tracing::warn!(
                        plugin_name = PLUGIN_NAME,
                        pod_uid,
                        container_id,
                        "Two pods found with same container Id"
                    );
                    return Err(PluginError::internal(
                        "two pods found with same container Id",
                    ));
                }
                answer = Some(values);
            }
        }
        Ok(answer)
    }
}

/// The container of `pod` whose ID (`<runtime>://<id>`) is `container_id`: regular
/// containers first, then init containers.
fn find_container<'a>(container_id: &str, pod: &'a Pod) -> Option<&'a ContainerStatus> {
    pod.status
        .container_statuses
        .iter()
        .chain(pod.status.init_container_statuses.iter())
        .find(|s| {
            !s.container_id.is_empty()
                && s.container_id
                    .split_once("://")
                    .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(rest))
                    == Some(container_id)
        })
}

fn images(statuses: &[ContainerStatus]) -> BTreeSet<&str> {
    statuses
        .iter()
        .flat_map(|s| [s.image_id.as_str(), s.image.as_str()])
        .collect()
}

/// SPIRE's pod selectors.
pub fn pod_selectors(pod: &Pod) -> Vec<String> {
    let mut v = vec![
        format!("sa:{}", pod.spec.service_account_name),
        format!("ns:{}", pod.metadata.namespace),
        format!("node-name:{}", pod.spec.node_name),
        format!("pod-uid:{}", pod.metadata.uid),
        format!("pod-name:{}", pod.metadata.name),
        format!("pod-image-count:{}", pod.status.container_statuses.len()),
        format!(
            "pod-init-image-count:{}",
            pod.status.init_container_statuses.len()
        ),
    ];
    for i in images(&pod.status.container_statuses) {
        v.push(format!("pod-image:{i}"));
    }
    for i in images(&pod.status.init_container_statuses) {
        v.push(format!("pod-init-image:{i}"));
    }
    for (k, val) in &pod.metadata.labels {
        v.push(format!("pod-label:{k}:{val}"));
    }
    for o in &pod.metadata.owner_references {
        v.push(format!("pod-owner:{}:{}", o.kind, o.name));
        v.push(format!("pod-owner-uid:{}:{}", o.kind, o.uid));
    }
    v
}

/// SPIRE's container selectors.
pub fn container_selectors(status: &ContainerStatus) -> Vec<String> {
    let mut v = vec![format!("container-name:{}", status.name)];
    for i in images(std::slice::from_ref(status)) {
        v.push(format!("container-image:{i}"));
    }
    v
}

#[async_trait]
impl WorkloadAttestor for K8sAttestor {
    async fn attest(&self, pid: i32) -> PluginResult<Vec<String>> {
        let location = self.locator.locate(pid)?;
        if location.container_id.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 1;
        loop {
            let pods = self.pod_list().await?;
            if let Some(values) =
                self.match_pods(&pods, &location.pod_uid, &location.container_id)?
            {
                return Ok(values);
            }
            if attempt >= self.max_poll_attempts {
                tracing::warn!(
                    plugin_name = PLUGIN_NAME,
                    pod_uid = %location.pod_uid,
                    container_id = %location.container_id,
                    attempt,
                    "Container id not found; giving up"
                );
                return Err(PluginError::new(
                    Code::DeadlineExceeded,
                    "no selectors found after max poll attempts",
                ));
            }
            tracing::debug!(
                plugin_name = PLUGIN_NAME,
                pod_uid = %location.pod_uid,
                container_id = %location.container_id,
                attempt,
                retry_interval = ?self.poll_retry_interval,
                "Container id not found"
            );
            attempt += 1;
            tokio::time::sleep(self.poll_retry_interval).await;
        }
    }
}

#[cfg(test)]
mod tests;
