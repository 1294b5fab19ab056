//! The agent's life: load or obtain an agent SVID (node attestation), start the cache manager
//! and the Workload API, run until a signal or a fatal error.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe_core::{Bundle, BundleSet, KeyType, TrustDomain};
use spire_config::{AgentConfig, RebootstrapMode, TrustBundleSource};
use spire_plugin::{AgentNodeAttestor, WorkloadAttestor};
use spire_plugins::catalog::configure_err;
use spire_plugins::nodeattestor::join_token::JoinTokenAgent;
use spire_plugins::nodeattestor::x509pop::{AgentConfig as X509PopConfig, X509PopAgent};
use spire_plugins::nodeattestor::{http_challenge, sshpop};
use spire_plugins::workloadattestor::unix::{UnixAttestor, UnixConfig};
use spire_plugins_docker as docker_wa;
use spire_plugins_k8s::psat;
use spire_plugins_k8s::workload as k8s_wa;
use spire_plugins_systemd as systemd_wa;
use spire_plugins_tpm as tpm_devid;
use spire_tls::SharedBundles;

use crate::attest::{AttestError, attest};
use crate::client::{self, ClientError};
use crate::core::backoff::Backoff;
use crate::core::bootstrap::{Disagreement, ModeCheck, check_mode, disagreement};
use crate::core::rotation::RotationStrategy;
use crate::endpoints::{self, EndpointError};
use crate::keys::{KeyStoreError, SvidKeyStore};
use crate::manager::{
    AgentCreds, Manager, ManagerConfig, ManagerError, bootstrap_succeeded, validity,
};
use crate::peertracker::ProcFs;
use crate::storage::{Storage, StorageError};
use crate::trustbundle::{self, Format, TrustBundleError};
use crate::workload::{WorkloadApi, WorkloadApiConfig};
use crate::workload_attestor::WorkloadAttestation;

/// The version reported in logs.
pub const VERSION: &str = "1.13.3";

const BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(5);
const BOOTSTRAP_MAX_ELAPSED: Duration = Duration::from_secs(60);
/// How long start-up retries go on when rebootstrapping is enabled.
const REBOOTSTRAP_MAX_ELAPSED: Duration = Duration::from_secs(24 * 60 * 60);

/// SPIRE's refusal of `rebootstrap_mode = "always"` for an agent that cannot re-attest.
const REBOOTSTRAP_NOT_ALLOWED: &str = "you have requested rebootstrap support but the NodeAttestor plugin or the spire server configuration is not allowing it";

/// Agent failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// The data directory or its file failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The key store failed.
    #[error("{0}")]
    Keys(#[from] KeyStoreError),
    /// The bootstrap bundle could not be had.
    #[error("{0}")]
    TrustBundle(#[from] TrustBundleError),
    /// Attestation failed.
    #[error("{0}")]
    Attest(#[from] AttestError),
    /// The manager failed.
    #[error("{0}")]
    Manager(#[from] ManagerError),
    /// A socket failed.
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// The stored state is inconsistent.
    #[error("{0}")]
    State(String),
    /// A client could not be set up.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// Rebootstrapping was requested but cannot be done, or is due now.
    #[error("{0}")]
    Rebootstrap(&'static str),
    /// An external plugin failed to start or to be configured.
    #[error("{0}")]
    Plugin(#[from] spire_plugin_host::HostError),
}

/// Which key store holds the agent SVID key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyManagerKind {
    /// `memory`.
    Memory,
    /// `disk` with its `directory`.
    Disk(String),
    /// `pkcs11` (spire-rs only): keys in a PKCS#11 token, opened by `run`.
    Pkcs11(spire_plugins_pkcs11::Settings),
    /// An external plugin (`external_key_manager`), started by `run`.
    External,
}

/// Everything the agent needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Trust domain.
    pub trust_domain: TrustDomain,
    /// `host:port`.
    pub server_address: String,
    /// `server_address` as configured.
    pub server_host: String,
    /// `server_port`.
    pub server_port: u16,
    /// `data_dir`.
    pub data_dir: PathBuf,
    /// `socket_path`.
    pub socket_path: PathBuf,
    /// `admin_socket_path`.
    pub admin_socket_path: Option<PathBuf>,
    /// `authorized_delegates`: who may use the Delegated Identity API.
    pub authorized_delegates: Vec<spiffe_core::SpiffeId>,
    /// Bootstrap trust.
    pub trust_bundle: TrustBundleSource,
    /// `trust_bundle_format`.
    pub trust_bundle_format: Format,
    /// `retry_bootstrap`.
    pub retry_bootstrap: bool,
    /// `rebootstrap_mode`.
    pub rebootstrap_mode: RebootstrapMode,
    /// `rebootstrap_delay`.
    pub rebootstrap_delay: Duration,
    /// Node attestor name and plugin.
    pub node_attestor: (String, Arc<dyn AgentNodeAttestor>),
    /// KeyManager.
    pub key_manager: KeyManagerKind,
    /// WorkloadAttestors.
    pub workload_attestors: Vec<(String, Arc<dyn WorkloadAttestor>)>,
    /// External WorkloadAttestors to start, each with its position among
    /// `workload_attestors` (file order).
    pub external_workload_attestors: Vec<(usize, crate::plugins::ExternalPluginSetting)>,
    /// An external NodeAttestor to start (then in `node_attestor`).
    pub external_node_attestor: Option<crate::plugins::ExternalPluginSetting>,
    /// An external KeyManager to start (`key_manager` is then `External`).
    pub external_key_manager: Option<crate::plugins::ExternalPluginSetting>,
    /// External SVIDStores to start (then in `manager.svid_stores`).
    pub external_svid_stores: Vec<crate::plugins::ExternalPluginSetting>,
    /// Manager settings.
    pub manager: ManagerConfig,
    /// Workload API settings.
    pub workload_api: WorkloadApiConfig,
    /// `sds { }`.
    pub sds: spire_config::SdsConfig,
    /// `telemetry { }`.
    pub telemetry: spire_config::TelemetryConfig,
    /// `health_checks { }`.
    pub health_checks: spire_config::HealthChecksConfig,
}

impl AgentSettings {
    /// Resolves a loaded `agent.conf` (external plugins are started by `run`).
    pub fn from_config(c: &AgentConfig) -> Result<Self, AgentError> {
        let mut node_attestor: Option<(String, Arc<dyn AgentNodeAttestor>)> = None;
        let mut key_manager = None;
        let mut workload_attestors: Vec<(String, Arc<dyn WorkloadAttestor>)> = Vec::new();
        let mut external_workload_attestors = Vec::new();
        let mut external_node_attestor = None;
        let mut external_key_manager = None;
        let mut external_svid_stores = Vec::new();
        for p in &c.plugins.plugins {
            if !p.enabled {
                continue;
            }
            if let Some(spec) = spire_plugins::catalog::AGENT
                .external_spec(p)
                .map_err(|e| AgentError::Config(e.to_string()))?
            {
                // Started by `run`; WorkloadAttestors keep their file order among the
                // built-ins.
                let ext = crate::plugins::ExternalPluginSetting {
                    spec,
                    data: p.data.clone(),
                };
                if p.plugin_type == "NodeAttestor" {
                    node_attestor = Some((
                        p.name.clone(),
                        Arc::new(crate::plugins::UnstartedNodeAttestor),
                    ));
                    external_node_attestor = Some(ext);
                } else if p.plugin_type == "KeyManager" {
                    key_manager = Some(KeyManagerKind::External);
                    external_key_manager = Some(ext);
                } else if p.plugin_type == "SVIDStore" {
                    external_svid_stores.push(ext);
                } else {
                    let position = workload_attestors.len() + external_workload_attestors.len();
                    external_workload_attestors.push((position, ext));
                }
                continue;
            }
            match (p.plugin_type.as_str(), p.name.as_str()) {
                ("KeyManager", "memory") => key_manager = Some(KeyManagerKind::Memory),
                ("KeyManager", "disk") => {
                    #[derive(serde::Deserialize, Default)]
                    struct Disk {
                        #[serde(default)]
                        directory: String,
                    }
                    let d: Disk = crate::plugins::builtin_data(p)?;
                    if d.directory.is_empty() {
                        return Err(AgentError::Config(
                            "failed to configure plugin \"disk\": directory must be configured"
                                .into(),
                        ));
                    }
                    key_manager = Some(KeyManagerKind::Disk(d.directory));
                }
                ("KeyManager", spire_plugins_pkcs11::PLUGIN_NAME) => {
                    let cfg: spire_plugins_pkcs11::Config =
                        crate::plugins::builtin_data_checked(p)?;
                    let settings = cfg
                        .parse(spire_plugins_pkcs11::Side::Agent)
                        .map_err(|e| AgentError::Config(configure_err(p, e).to_string()))?;
                    key_manager = Some(KeyManagerKind::Pkcs11(settings));
                }
                ("NodeAttestor", "join_token") => {
                    // Without a token the plugin is still configured, as SPIRE's is: a
                    // restart with the SVID on disk needs none (the token set in the
                    // agent section, if any, is used below).
                    node_attestor = Some((
                        "join_token".into(),
                        Arc::new(JoinTokenAgent::without_token()),
                    ));
                }
                ("NodeAttestor", "x509pop") => {
                    let cfg: X509PopConfig = crate::plugins::builtin_data(p)?;
                    let plugin = X509PopAgent::new(&cfg).map_err(|e| {
                        AgentError::Config(format!("failed to configure plugin \"x509pop\": {e}"))
                    })?;
                    node_attestor = Some(("x509pop".into(), Arc::new(plugin)));
                }
                ("NodeAttestor", tpm_devid::PLUGIN_NAME) => {
                    let cfg: tpm_devid::AgentConfig = crate::plugins::builtin_data(p)?;
                    let plugin = tpm_devid::TpmDevIdAgent::new(&cfg)
                        .map_err(|e| AgentError::Config(configure_err(p, e).to_string()))?;
                    node_attestor = Some((tpm_devid::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("NodeAttestor", sshpop::PLUGIN_NAME) => {
                    let cfg: sshpop::AgentConfig = crate::plugins::builtin_data(p)?;
                    let plugin = sshpop::SshPopAgent::new(&cfg)
                        .map_err(|e| AgentError::Config(configure_err(p, e).to_string()))?;
                    node_attestor = Some((sshpop::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("NodeAttestor", spire_plugins_aws::PLUGIN_NAME) => {
                    let cfg: spire_plugins_aws::agent::AgentConfig =
                        crate::plugins::builtin_data(p)?;
                    let plugin = spire_plugins_aws::agent::AwsIidAgent::new(&cfg);
                    node_attestor = Some((spire_plugins_aws::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("NodeAttestor", http_challenge::PLUGIN_NAME) => {
                    let cfg: http_challenge::AgentConfig = crate::plugins::builtin_data(p)?;
                    let plugin = http_challenge::HttpChallengeAgent::new(&cfg)
                        .map_err(|e| AgentError::Config(configure_err(p, e).to_string()))?;
                    node_attestor = Some((http_challenge::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("NodeAttestor", spire_plugins_gcp_azure::gcp::PLUGIN_NAME) => {
                    use spire_plugins_gcp_azure::gcp;
                    let cfg: gcp::AgentConfig = crate::plugins::builtin_data(p)?;
                    let plugin = gcp::GcpIitAgent::new(&cfg);
                    node_attestor = Some((gcp::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("NodeAttestor", spire_plugins_gcp_azure::azure::PLUGIN_NAME) => {
                    use spire_plugins_gcp_azure::azure;
                    let cfg: azure::AgentConfig = crate::plugins::builtin_data(p)?;
                    let plugin = azure::AzureMsiAgent::new(&cfg);
                    node_attestor = Some((azure::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("NodeAttestor", psat::PLUGIN_NAME) => {
                    let cfg: psat::AgentConfig = crate::plugins::builtin_data(p)?;
                    let plugin = psat::PsatAgent::new(&cfg)
                        .map_err(|e| AgentError::Config(configure_err(p, e).to_string()))?;
                    node_attestor = Some((psat::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("WorkloadAttestor", k8s_wa::PLUGIN_NAME) => {
                    let cfg: k8s_wa::Config = crate::plugins::builtin_data(p)?;
                    let plugin = k8s_wa::K8sAttestor::new(&cfg, |k| std::env::var(k).ok(), "/")
                        .map_err(|e| AgentError::Config(configure_err(p, e).to_string()))?;
                    workload_attestors.push((k8s_wa::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("WorkloadAttestor", docker_wa::PLUGIN_NAME) => {
                    let cfg: docker_wa::Config = crate::plugins::builtin_data_checked(p)?;
                    let plugin = docker_wa::DockerAttestor::new(&cfg, "/")
                        .map_err(|e| AgentError::Config(configure_err(p, e).to_string()))?;
                    workload_attestors.push((docker_wa::PLUGIN_NAME.into(), Arc::new(plugin)));
                }
                ("WorkloadAttestor", systemd_wa::PLUGIN_NAME) => {
                    // SPIRE's systemd attestor has no configuration service: configuration
                    // given to it (a non-empty `plugin_data`, or `plugin_data_file`) fails
                    // to load, as in SPIRE's catalog.
                    if !matches!(p.data, spire_config::PluginData::None) {
                        return Err(AgentError::Config(format!(
                            "failed to configure plugin {:?}: no supported configuration interface found",
                            p.name
                        )));
                    }
                    workload_attestors.push((
                        systemd_wa::PLUGIN_NAME.into(),
                        Arc::new(systemd_wa::SystemdAttestor::new()),
                    ));
                }
                ("WorkloadAttestor", "unix") => {
                    let cfg: UnixConfig = crate::plugins::builtin_data(p)?;
                    workload_attestors.push(("unix".into(), Arc::new(UnixAttestor::new(cfg))));
                }
                (t, n) => {
                    return Err(AgentError::Config(format!(
                        "unsupported built-in plugin {t} \"{n}\""
                    )));
                }
            }
        }
        // A join token given in the agent section implies the join_token attestor.
        if let Some(token) = c.join_token.as_ref().filter(|t| !t.is_empty()) {
            let plugin = JoinTokenAgent::new(token.clone())
                .map_err(|e| AgentError::Config(e.to_string()))?;
            node_attestor = Some(("join_token".into(), Arc::new(plugin)));
            external_node_attestor = None;
        }
        let node_attestor = node_attestor.ok_or_else(|| {
            AgentError::Config("a NodeAttestor plugin (or a join token) is required".into())
        })?;
        let key_manager = key_manager
            .ok_or_else(|| AgentError::Config("a KeyManager plugin is required".into()))?;
        if workload_attestors.is_empty() && external_workload_attestors.is_empty() {
            return Err(AgentError::Config(
                "at least one WorkloadAttestor plugin is required".into(),
            ));
        }
        let workload_key_type = match c.workload_x509_svid_key_type {
            KeyType::Rsa2048 => KeyType::Rsa2048,
            _ => KeyType::EcP256,
        };
        let server_address = if c.server_address.contains(':') && !c.server_address.starts_with('[')
        {
            format!("[{}]:{}", c.server_address, c.server_port)
        } else {
            format!("{}:{}", c.server_address, c.server_port)
        };
        Ok(Self {
            trust_domain: c.trust_domain.clone(),
            server_address: server_address.clone(),
            server_host: c.server_address.clone(),
            server_port: c.server_port,
            data_dir: c.data_dir.clone(),
            socket_path: c.socket_path.clone(),
            admin_socket_path: c.admin_socket_path.clone(),
            authorized_delegates: c.authorized_delegates.clone(),
            trust_bundle: c.trust_bundle.clone(),
            trust_bundle_format: match c.trust_bundle_format {
                spire_config::TrustBundleFormat::Spiffe => Format::Spiffe,
                _ => Format::Pem,
            },
            retry_bootstrap: c.retry_bootstrap,
            rebootstrap_mode: c.rebootstrap_mode,
            rebootstrap_delay: c.rebootstrap_delay,
            manager: ManagerConfig {
                trust_domain: c.trust_domain.clone(),
                server_address,
                sync_interval: if c.experimental.sync_interval.is_zero() {
                    Duration::from_secs(5)
                } else {
                    c.experimental.sync_interval
                },
                use_sync_authorized_entries: c.experimental.use_sync_authorized_entries,
                workload_key_type,
                rotation: RotationStrategy::new(c.availability_target),
                x509_svid_cache_max_size: c.x509_svid_cache_max_size,
                jwt_svid_cache_max_size: c.jwt_svid_cache_max_size,
                node_attestor_name: node_attestor.0.clone(),
                use_push: true,
                rebootstrap_mode: c.rebootstrap_mode,
                rebootstrap_delay: c.rebootstrap_delay,
                clock: spire_clock::system(),
                svid_stores: Vec::new(),
                metrics: spire_telemetry::Metrics::disabled(),
            },
            telemetry: c.telemetry.clone(),
            health_checks: c.health_checks.clone(),
            node_attestor,
            key_manager,
            workload_attestors,
            external_workload_attestors,
            external_node_attestor,
            external_key_manager,
            external_svid_stores,
            workload_api: WorkloadApiConfig {
                allow_unauthenticated_verifiers: c.allow_unauthenticated_verifiers,
                allowed_foreign_jwt_claims: c
                    .allowed_foreign_jwt_claims
                    .iter()
                    .cloned()
                    .collect::<HashSet<_>>(),
            },
            sds: c.sds.clone(),
        })
    }
}

fn bundle_from_ders(td: &TrustDomain, ders: &[Vec<u8>]) -> Bundle {
    let mut b = Bundle::new(td.clone());
    for d in ders {
        b.add_x509_authority(d.clone());
    }
    b
}

/// SPIRE's `GetBundle`: the bundle from the configured source (none with
/// `insecure_bootstrap`), counting the attempt in the bootstrap bookkeeping.
async fn bootstrap_bundle(
    s: &AgentSettings,
    storage: &Storage,
) -> Result<Option<Vec<Vec<u8>>>, AgentError> {
    let now = s.manager.clock.now();
    let state = storage.update_bootstrap(|st| {
        st.fetching_bundle(now);
        st.clone()
    })?;
    match &s.trust_bundle {
        TrustBundleSource::InsecureBootstrap => Ok(None),
        TrustBundleSource::Path(p) => Ok(Some(trustbundle::from_path(
            &s.trust_domain,
            p,
            s.trust_bundle_format,
        )?)),
        TrustBundleSource::Url { url, unix_socket } => {
            let started = time::OffsetDateTime::from(state.start_time.unwrap_or(now))
                .replace_nanosecond(0)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            let mut url = url.clone();
            if unix_socket.is_some() {
                let mode = if state.is_bootstrap() {
                    "bootstrap"
                } else {
                    "rebootstrap"
                };
                url = trustbundle::with_query(
                    &url,
                    &[
                        ("spire-attest-mode", mode.to_string()),
                        (
                            "spire-connection-attempts",
                            state.connection_attempts.to_string(),
                        ),
                        ("spire-attest-start-time", started.clone()),
                        ("spire-server-address", s.server_host.clone()),
                        ("spire-server-port", s.server_port.to_string()),
                        ("spiffe-trust-domain", s.trust_domain.name().to_string()),
                    ],
                )?;
            }
            let attempt = if state.is_bootstrap() {
                "attestation"
            } else {
                "reattestation"
            };
            tracing::info!(
                Logger = "TrustBundleSources",
                "Server {attempt} attempt {}. Started {started}.",
                state.connection_attempts
            );
            tracing::debug!(
                Logger = "TrustBundleSources",
                "Server attestation url: {url} from: {}",
                unix_socket
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            Ok(Some(
                trustbundle::from_url(
                    &s.trust_domain,
                    &url,
                    unix_socket.as_deref(),
                    s.trust_bundle_format,
                    &trustbundle::Roots::System,
                )
                .await?,
            ))
        }
    }
}

/// Loads the stored SVID or attests; returns the credentials and bundle.
async fn attest_or_load(
    s: &AgentSettings,
    storage: &Storage,
    keys: &SvidKeyStore,
) -> Result<(AgentCreds, Bundle), AgentError> {
    let data = storage.load();
    let insecure = matches!(s.trust_bundle, TrustBundleSource::InsecureBootstrap);
    let bundle_ders = if !data.bundle.is_empty() {
        Some(data.bundle.clone())
    } else {
        bootstrap_bundle(s, storage).await?
    };
    match &bundle_ders {
        None => tracing::info!(subsystem_name = "attestor", "Bundle is not found"),
        Some(_) => {
            tracing::info!(subsystem_name = "attestor", trust_domain_id = %s.trust_domain.id_string(), "Bundle loaded")
        }
    }
    let all_keys = keys.keys().await?;
    let svid = data.svid.clone();
    let svid_key = svid.first().and_then(|leaf| {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let spki = cert.public_key().raw.to_vec();
        all_keys.iter().find(|k| k.spki_der() == spki.as_slice())
    });
    let expired = svid
        .first()
        .and_then(|leaf| validity(leaf).ok())
        .is_some_and(|(_, na)| s.manager.clock.now() + Duration::from_secs(1) >= na);
    match (svid.is_empty(), svid_key, expired) {
        (false, Some(key), false) => {
            let Some(ders) = bundle_ders else {
                return Err(AgentError::State(
                    "SVID loaded but no bundle in cache".into(),
                ));
            };
            tracing::info!(subsystem_name = "attestor", spiffe_id = %leaf_id(&svid), "SVID loaded");
            return Ok((
                AgentCreds {
                    chain: svid,
                    key: key.clone(),
                    reattestable: data.reattestable,
                },
                bundle_from_ders(&s.trust_domain, &ders),
            ));
        }
        (false, Some(_), true) => {
            tracing::warn!(
                subsystem_name = "attestor",
                "SVID key recovered, but SVID is expired. Generating new keypair"
            )
        }
        (false, None, _) if all_keys.is_empty() => {
            tracing::warn!(
                subsystem_name = "attestor",
                "SVID recovered, but no keys found. Generating new keypair"
            )
        }
        (false, None, _) => {
            tracing::warn!(
                subsystem_name = "attestor",
                "SVID recovered, but no SVID key found. Generating new keypair"
            )
        }
        (true, _, _) if !all_keys.is_empty() => {
            tracing::warn!(
                subsystem_name = "attestor",
                "Keys recovered, but no SVID found. Generating new keypair"
            )
        }
        _ => {}
    }
    let key = keys.generate(None).await?;
    tracing::info!(
        subsystem_name = "attestor",
        "SVID is not found. Starting node attestation"
    );
    if insecure && bundle_ders.is_none() {
        tracing::warn!(
            subsystem_name = "attestor",
            "Insecure bootstrap enabled; skipping server certificate verification"
        );
    }
    let mut set = BundleSet::new();
    if let Some(ders) = &bundle_ders {
        set.insert(bundle_from_ders(&s.trust_domain, ders));
    }
    let connector = client::connector(
        &s.trust_domain,
        SharedBundles::new(set),
        None,
        bundle_ders.is_none(),
    )?;
    let csr = spire_pki::make_csr_with_signer(key.signer.clone(), None)
        .map_err(|e| AttestError::Csr(e.to_string()))?;
    let mut call = s
        .manager
        .metrics
        .start_call(&["node", "attestor", "new_svid"]);
    call.add_label("attestor", &s.node_attestor.0);
    let attested = attest(
        &s.server_address,
        connector,
        &s.node_attestor.0,
        s.node_attestor.1.as_ref(),
        csr,
    )
    .await;
    call.done(match &attested {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.status().map_or(tonic::Code::Unknown, tonic::Status::code),
    });
    let attested = attested?;
    tracing::info!(
        subsystem_name = "attestor",
        reattestable = attested.reattestable,
        spiffe_id = %leaf_id(&attested.svid),
        "Node attestation was successful"
    );
    Ok((
        AgentCreds {
            chain: attested.svid,
            key,
            reattestable: attested.reattestable,
        },
        attested.bundle,
    ))
}

fn leaf_id(chain: &[Vec<u8>]) -> String {
    chain
        .first()
        .and_then(|c| spiffe_core::x509svid::id_from_der(c).ok())
        .map(|id| id.to_string())
        .unwrap_or_default()
}

/// SPIRE's check of `rebootstrap_mode` against a stored SVID: `always` is refused and
/// `auto` disabled (with a warning) when the SVID cannot be re-attested.
fn check_rebootstrap_mode(storage: &Storage, mode: &mut RebootstrapMode) -> Result<(), AgentError> {
    let data = storage.load();
    if data.svid.is_empty() {
        return Ok(());
    }
    match check_mode(*mode, data.reattestable) {
        ModeCheck::Keep => Ok(()),
        ModeCheck::Disable => {
            tracing::warn!("{REBOOTSTRAP_NOT_ALLOWED}. Disabling");
            *mode = RebootstrapMode::Never;
            Ok(())
        }
        ModeCheck::Refuse => Err(AgentError::Rebootstrap(REBOOTSTRAP_NOT_ALLOWED)),
    }
}

/// Attestation failed because the server's certificate does not chain to the bundle used:
/// on a first bootstrap the agent simply tries again (fetching the bundle again); on a
/// rebootstrap it waits out `rebootstrap_delay` and then drops the stored bundle, so the
/// next attempt uses the configured trust bundle source.
fn attestation_disagrees(
    storage: &Storage,
    mode: RebootstrapMode,
    delay: Duration,
    now: SystemTime,
) -> Result<(), AgentError> {
    let state = storage.load().bootstrap_state();
    if state.is_bootstrap() {
        tracing::info!("Trust Bandle and Server dont agree.... bootstrapping again");
        return Ok(());
    }
    if mode == RebootstrapMode::Never {
        return Ok(());
    }
    let start = storage.update_bootstrap(|st| st.start_time(now))?;
    match disagreement(start, now, delay) {
        Disagreement::Wait { time_left } => tracing::info!(
            "time left" = %spire_config::format_go_duration(time_left),
            "Trust Bandle and Server dont agree.... Ignoring for now."
        ),
        Disagreement::Rebootstrap => {
            tracing::warn!("Trust Bandle and Server dont agree.... rebootstrapping");
            storage.store_bundle(&[])?;
        }
    }
    Ok(())
}

fn is_unknown_authority(e: &AgentError) -> bool {
    match e {
        AgentError::Attest(a) => a.is_unknown_authority(),
        AgentError::Client(c) => c.is_unknown_authority(),
        _ => false,
    }
}

fn is_permission_denied(e: &AgentError) -> bool {
    let status = match e {
        AgentError::Attest(a) => a.status(),
        AgentError::Client(c) => c.status(),
        _ => None,
    };
    status.is_some_and(|s| s.code() == tonic::Code::PermissionDenied)
}

/// Runs the agent until `shutdown` completes or a fatal error.
pub async fn run(
    mut s: AgentSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    tracing::info!(data_dir = %s.data_dir.display(), version = VERSION, "Starting agent");
    s.manager.metrics = spire_telemetry::start(
        &s.telemetry,
        spire_telemetry::Service::Agent,
        s.trust_domain.name(),
        VERSION,
    )
    .await
    .map_err(|e| AgentError::Config(e.to_string()))?;
    // The health checker (and its listener, when enabled) starts once the Workload API
    // listens, or after 8 s.
    let (listening_tx, listening_rx) = tokio::sync::watch::channel(false);
    let health = tokio::spawn(crate::health::run(
        s.health_checks.clone(),
        s.socket_path.clone(),
        listening_rx,
    ));
    let health = AbortOnDrop(health);
    let external_km = crate::plugins::start_external(&mut s).await?;
    std::fs::create_dir_all(&s.data_dir)
        .map_err(|e| AgentError::State(format!("failed to create data directory: {e}")))?;
    let storage = Arc::new(Storage::open(&s.data_dir)?);
    storage.set_metrics(s.manager.metrics.clone());
    let keys = Arc::new(
        match (&s.key_manager, external_km) {
            (_, Some(km)) => SvidKeyStore::new(km),
            (KeyManagerKind::Memory, None) => SvidKeyStore::memory(),
            (KeyManagerKind::Disk(dir), None) => SvidKeyStore::disk(dir)?,
            (KeyManagerKind::Pkcs11(settings), None) => SvidKeyStore::new(Arc::new(
                spire_plugins_pkcs11::Pkcs11KeyManager::start(settings.clone())
                    .await
                    .map_err(|e| {
                        AgentError::Config(
                            spire_plugins::catalog::CatalogError::Configure {
                                name: spire_plugins_pkcs11::PLUGIN_NAME.into(),
                                message: e.to_string(),
                            }
                            .to_string(),
                        )
                    })?,
            )),
            (KeyManagerKind::External, None) => {
                return Err(AgentError::Config(
                    "the external KeyManager was not started".into(),
                ));
            }
        }
        .with_metrics(s.manager.metrics.clone()),
    );
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));

    // SPIRE's `SetStorage`: settle the bootstrap use, then check the mode against the
    // stored SVID's re-attestability.
    storage.update_bootstrap(|_| ())?;
    let mut mode = s.rebootstrap_mode;
    check_rebootstrap_mode(&storage, &mut mode)?;
    let max_elapsed = if mode == RebootstrapMode::Never {
        BOOTSTRAP_MAX_ELAPSED
    } else {
        REBOOTSTRAP_MAX_ELAPSED
    };

    let mut backoff = Backoff::new(BOOTSTRAP_BACKOFF).with_max_elapsed(max_elapsed);
    let (creds, bundle) = loop {
        let r = attest_or_load(&s, &storage, &keys).await;
        match r {
            Ok(v) if !s.retry_bootstrap => break v,
            Ok(v) => {
                bootstrap_succeeded(&storage, false, s.manager.clock.now())?;
                check_rebootstrap_mode(&storage, &mut mode)?;
                break v;
            }
            Err(e) if !s.retry_bootstrap => return Err(e),
            Err(e) => {
                if is_unknown_authority(&e) {
                    attestation_disagrees(
                        &storage,
                        mode,
                        s.rebootstrap_delay,
                        s.manager.clock.now(),
                    )?;
                }
                if is_permission_denied(&e) {
                    return Err(e);
                }
                let Some(wait) = backoff.next(rand::random()) else {
                    return Err(e);
                };
                tracing::warn!(error = %e, retry_interval = ?wait, "Failed to retrieve attestation result");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.clone() => return Ok(()),
                }
            }
        }
    };

    let mut manager_config = s.manager.clone();
    manager_config.rebootstrap_mode = mode;
    manager_config.rebootstrap_delay = s.rebootstrap_delay;
    let manager = Manager::new(
        manager_config,
        storage.clone(),
        keys.clone(),
        s.node_attestor.1.clone(),
        creds,
        bundle,
    )?;
    let mut backoff = Backoff::new(BOOTSTRAP_BACKOFF).with_max_elapsed(max_elapsed);
    loop {
        match manager.initialize().await {
            Ok(()) => {
                if s.retry_bootstrap {
                    bootstrap_succeeded(&storage, true, s.manager.clock.now())?;
                }
                break;
            }
            Err(e) if !s.retry_bootstrap || e.should_reattest() || e.should_shutdown() => {
                return Err(e.into());
            }
            Err(e) => {
                if e.is_unknown_authority() && mode != RebootstrapMode::Never {
                    let now = s.manager.clock.now();
                    let start = storage.update_bootstrap(|st| st.start_time(now))?;
                    match disagreement(start, now, s.rebootstrap_delay) {
                        Disagreement::Wait { time_left } => tracing::info!(
                            "time left" = %spire_config::format_go_duration(time_left),
                            "Trust Bandle and Server dont agree.... Ignoring for now."
                        ),
                        Disagreement::Rebootstrap => {
                            tracing::info!(
                                "Trust Bandle and Server dont agree.... rebootstrapping"
                            );
                            storage.force_rebootstrap(now)?;
                            return Err(AgentError::Rebootstrap(
                                "Agent needs to rebootstrap. shutting down",
                            ));
                        }
                    }
                }
                let Some(wait) = backoff.next(rand::random()) else {
                    return Err(e.into());
                };
                tracing::warn!(error = %e, retry_interval = ?wait, "Failed to initialize manager");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.clone() => return Ok(()),
                }
            }
        }
    }

    let attestation = Arc::new(
        WorkloadAttestation::new(s.workload_attestors.clone(), ProcFs::default())
            .with_metrics(s.manager.metrics.clone()),
    );
    let delegated = crate::delegated::DelegatedIdentityService::new(
        manager.clone(),
        attestation.clone(),
        &s.authorized_delegates,
    );
    let sds = crate::sds::SdsService::new(manager.clone(), attestation.clone(), s.sds.clone());
    let api = WorkloadApi::new(manager.clone(), attestation, s.workload_api.clone());
    let listener = endpoints::bind_logged(&s.socket_path, 0o777, "spire agent UDS")?;
    tracing::info!(
        subsystem_name = "endpoints",
        address = %s.socket_path.display(),
        network = "unix",
        "Starting Workload and SDS APIs"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let workload = tokio::spawn(endpoints::serve_workload_api(
        listener,
        api,
        sds,
        s.manager.metrics.clone(),
        stopped(stop_rx.clone()),
    ));
    listening_tx.send_replace(true);
    let admin = match &s.admin_socket_path {
        Some(path) => {
            let l = endpoints::bind_logged(path, 0o770, "admin UDS")?;
            tracing::info!(subsystem_name = "endpoints", address = %path.display(), network = "unix", "Starting Admin APIs");
            Some(tokio::spawn(endpoints::serve_admin_api(
                l,
                manager.clone(),
                delegated,
                s.manager.metrics.clone(),
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };

    let result = tokio::select! {
        r = manager.run() => r.map_err(AgentError::from),
        _ = shutdown => Ok(()),
    };
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), workload).await;
    if let Some(a) = admin {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    let _ = std::fs::remove_file(&s.socket_path);
    drop(health);
    result
}

/// Aborts a background task when the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spire_clock::{Clock, ManualClock};

    fn cert() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// A disagreement with the server is waited out for `rebootstrap_delay` as measured by
    /// the agent's clock (here 2031, far from the machine's time), then the bundle goes.
    #[test]
    fn rebootstrap_waits_out_the_delay_on_the_agent_clock() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        storage.store_bundle(&[cert()]).unwrap();
        let clock = ManualClock::at_unix(1_924_992_000);
        bootstrap_succeeded(&storage, false, clock.now()).unwrap();
        let delay = Duration::from_secs(600);

        attestation_disagrees(&storage, RebootstrapMode::Auto, delay, clock.now()).unwrap();
        clock.advance(Duration::from_secs(599));
        attestation_disagrees(&storage, RebootstrapMode::Auto, delay, clock.now()).unwrap();
        assert!(!storage.load().bundle.is_empty(), "bundle dropped early");

        clock.advance(Duration::from_secs(1));
        attestation_disagrees(&storage, RebootstrapMode::Auto, delay, clock.now()).unwrap();
        assert!(
            storage.load().bundle.is_empty(),
            "bundle kept after the delay"
        );
    }

    fn settings(workload_attestor: &str) -> Result<AgentSettings, AgentError> {
        AgentSettings::from_config(&crate::catalog::tests::config(&format!(
            "NodeAttestor \"join_token\" {{ plugin_data {{}} }}\nKeyManager \"memory\" {{ plugin_data {{}} }}\n{workload_attestor}"
        )))
    }

    /// The docker and systemd attestors are built in; docker's configuration errors are
    /// SPIRE's (checked against reference SPIRE 1.13.3's agent).
    #[test]
    fn docker_and_systemd_attestors_configure_as_spire() {
        let s = settings(r#"WorkloadAttestor "docker" { plugin_data { docker_socket_path = "unix:///nonexistent.sock" } }"#).unwrap();
        assert_eq!(s.workload_attestors[0].0, "docker");
        let s = settings(r#"WorkloadAttestor "systemd" { plugin_data {} }"#).unwrap();
        assert_eq!(s.workload_attestors[0].0, "systemd");
        let s = settings(r#"WorkloadAttestor "systemd" {}"#).unwrap();
        assert_eq!(s.workload_attestors[0].0, "systemd");
        let err = |wa: &str| match settings(wa) {
            Err(AgentError::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(r#"WorkloadAttestor "systemd" { plugin_data { anything = 1 } }"#),
            "failed to configure plugin \"systemd\": no supported configuration interface found"
        );
        assert_eq!(
            err(r#"WorkloadAttestor "docker" { plugin_data { foo = 1
                bar = "x" } }"#),
            "failed to configure plugin \"docker\": rpc error: code = InvalidArgument desc = unknown configurations detected: bar,foo"
        );
        assert_eq!(
            err(
                r#"WorkloadAttestor "docker" { plugin_data { container_id_cgroup_matchers = ["/docker/<id>"] } }"#
            ),
            "failed to configure plugin \"docker\": rpc error: code = InvalidArgument desc = the new container locator and custom cgroup matchers cannot both be used; please open an issue if the new container locator fails to locate workload containers in your environment; to continue using custom matchers set use_new_container_locator=false"
        );
    }

    /// KeyManager "pkcs11" (ours) is parsed with the configuration; the token is opened by
    /// `run` (tested against SoftHSM in `spire-plugins-pkcs11` and the conformance suite).
    #[test]
    fn pkcs11_key_manager_configuration() {
        let with_km = |km: &str| {
            AgentSettings::from_config(&crate::catalog::tests::config(&format!(
                "NodeAttestor \"join_token\" {{ plugin_data {{}} }}\n{km}\nWorkloadAttestor \"unix\" {{ plugin_data {{}} }}"
            )))
        };
        let s = with_km(
            r#"KeyManager "pkcs11" { plugin_data { module_path = "/usr/lib/softhsm/libsofthsm2.so" token_label = "spire" user_pin_file = "/etc/spire/pin" } }"#,
        )
        .unwrap();
        match &s.key_manager {
            KeyManagerKind::Pkcs11(p) => {
                assert_eq!(p.key_label_prefix, "spire-agent-");
                assert_eq!(
                    p.token,
                    spire_plugins_pkcs11::TokenSelector::Label("spire".into())
                );
            }
            other => panic!("{other:?}"),
        }
        let err = |km: &str| match with_km(km) {
            Err(AgentError::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(r#"KeyManager "pkcs11" { plugin_data { token_label = "spire" user_pin = "1" } }"#),
            "failed to configure plugin \"pkcs11\": rpc error: code = InvalidArgument desc = module_path is required"
        );
        assert_eq!(
            err(
                r#"KeyManager "pkcs11" { plugin_data { module_path = "/m.so" slot_id = 1 user_pin = "1" pin = "2" } }"#
            ),
            "failed to configure plugin \"pkcs11\": rpc error: code = InvalidArgument desc = unknown configurations detected: pin"
        );
        let e = err(
            r#"KeyManager "pkcs11" { plugin_data { module_path = "/m.so" token_label = "a" slot_id = 1 user_pin = "secret-pin" } }"#,
        );
        assert!(
            e.ends_with("token_label and slot_id are mutually exclusive"),
            "{e}"
        );
        assert!(!e.contains("secret-pin"));
    }
}
