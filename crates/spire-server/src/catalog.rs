//! Builds the server's plugins from `plugins {}`: exactly one DataStore (`sql`) and one
//! KeyManager, any number of NodeAttestors, at most one UpstreamAuthority, any number of
//! Notifiers, BundlePublishers and CredentialComposers. Built-in plugins are chosen by name;
//! external plugins (`plugin_cmd`) of every type but DataStore are started through
//! `spire-plugin-host`; SPIRE's built-ins that spire-rs does not have yet are reported as
//! not available here with a clear message, at start-up and by `validate`.

use spire_clock::SharedClock;
use std::collections::HashMap;
use std::sync::Arc;

use spiffe_core::TrustDomain;
use spire_config::{PluginConfig, ServerConfig};
use spire_datastore::{DataStore, SqlConfig, SqlStore};
use spire_plugin::{
    BundlePublisher, CredentialComposer, KeyManager, Notifier, ServerNodeAttestor,
    UpstreamAuthority,
};
use spire_plugin_host::hostservices::{self, AgentLookupCell, IdentityFetcherCell};
use spire_plugin_host::{CoreConfig, ExternalPlugin, HostError, LaunchSpec};
use spire_plugins::credentialcomposer::uniqueid;
use spire_plugins::keymanager::{LocalKeyManager, ServerDiskConfig};
use spire_plugins::nodeattestor::x509pop::{self, X509PopServer};
use spire_plugins::nodeattestor::{http_challenge, sshpop};
use spire_plugins::upstreamauthority::disk as disk_upstream;
use spire_plugins::upstreamauthority::vault as vault_upstream;
use spire_plugins_k8s::bundle as k8s_bundle;
use spire_plugins_k8s::psat;

/// How often `k8sbundle` looks for labelled webhooks and APIServices that lack the bundle.
const K8S_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

pub use spire_plugins::catalog::CatalogError;
use spire_plugins::catalog::{SERVER, configure_err, decode, decode_checked, refuse_data};

/// Why the plugins could not be loaded; the messages are SPIRE's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The catalog rules or a plugin's configuration.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The datastore could not be opened.
    #[error("{0}")]
    Datastore(#[from] spire_datastore::DataStoreError),
}

/// Checks every plugin block without opening anything: types, names, counts.
pub fn check(config: &ServerConfig) -> Result<(), CatalogError> {
    SERVER.check(&config.plugins.plugins)
}

/// The loaded plugins.
pub struct Catalog {
    /// The datastore.
    pub ds: Arc<dyn DataStore>,
    /// The key manager.
    pub km: Arc<dyn KeyManager>,
    /// Node attestors by name (`join_token` is handled by the server without a plugin).
    pub node_attestors: HashMap<String, Arc<dyn ServerNodeAttestor>>,
    /// The UpstreamAuthority, if any.
    pub upstream_authority: Option<Arc<dyn UpstreamAuthority>>,
    /// Notifiers with their names, in configuration order.
    pub notifiers: Vec<(String, Arc<dyn Notifier>)>,
    /// BundlePublishers with their names, in configuration order.
    pub bundle_publishers: Vec<(String, Arc<dyn BundlePublisher>)>,
    /// CredentialComposers, in configuration order.
    pub credential_composers: Vec<Arc<dyn CredentialComposer>>,
    /// Where the server puts its identity for the IdentityProvider host service.
    pub identity: IdentityFetcherCell,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("node_attestors", &self.node_attestors.keys())
            .finish_non_exhaustive()
    }
}

/// The AgentStore host service's view of the attested agents: the datastore.
struct DataStoreAgents(Arc<dyn DataStore>);

#[async_trait::async_trait]
impl hostservices::AgentLookup for DataStoreAgents {
    async fn is_attested(&self, agent_id: &str) -> Result<bool, String> {
        let Ok(id) = spiffe_core::SpiffeId::parse(agent_id) else {
            return Ok(false);
        };
        self.0
            .fetch_attested_node(&id)
            .await
            .map(|n| n.is_some())
            .map_err(|e| e.to_string())
    }
}

/// Starts one external plugin and binds it with `bind`.
async fn start_external<T>(
    spec: &LaunchSpec,
    core: &CoreConfig,
    p: &PluginConfig,
    services: (
        &AgentLookupCell,
        &IdentityFetcherCell,
        &spire_telemetry::Metrics,
    ),
    bind: impl FnOnce(Arc<ExternalPlugin>) -> Result<T, HostError>,
) -> Result<T, CatalogError> {
    let data = p.data.load().map_err(|e| configure_err(p, e))?;
    let data = data.as_ref().map(|d| d.text());
    let host_services = hostservices::server_with_metrics(
        services.0.clone(),
        services.1.clone(),
        services.2.clone(),
    );
    Ok(ExternalPlugin::start(spec, core, data, host_services, bind).await?)
}

/// Loads every plugin. `own_bundle` gives x509pop's spiffe mode our X.509 authorities.
pub async fn load(
    config: &ServerConfig,
    trust_domain: &TrustDomain,
    own_bundle: x509pop::TrustBundleFn,
    clock: &SharedClock,
    metrics: &spire_telemetry::Metrics,
) -> Result<Catalog, LoadError> {
    check(config)?;
    let enabled: Vec<&PluginConfig> = config
        .plugins
        .plugins
        .iter()
        .filter(|p| p.enabled)
        .collect();
    let mut ds: Option<Arc<dyn DataStore>> = None;
    let mut km: Option<Arc<dyn KeyManager>> = None;
    let mut node_attestors: HashMap<String, Arc<dyn ServerNodeAttestor>> = HashMap::new();
    let mut upstream_authority: Option<Arc<dyn UpstreamAuthority>> = None;
    let mut notifiers: Vec<(String, Arc<dyn Notifier>)> = Vec::new();
    let mut bundle_publishers: Vec<(String, Arc<dyn BundlePublisher>)> = Vec::new();
    let mut credential_composers: Vec<Arc<dyn CredentialComposer>> = Vec::new();
    let identity: IdentityFetcherCell = Arc::default();
    let core = CoreConfig {
        trust_domain: trust_domain.name().to_string(),
    };
    // External plugins may ask the AgentStore host service from their start; it answers
    // once the datastore is open.
    let agents: AgentLookupCell = Arc::default();
    for p in enabled {
        if let Some(spec) = SERVER.external_spec(p)? {
            use spire_plugin_host::{
                bundlepublisher::ExternalBundlePublisher,
                credentialcomposer::ExternalCredentialComposer, keymanager::ExternalKeyManager,
                nodeattestor::ExternalServerNodeAttestor, notifier::ExternalNotifier,
                upstreamauthority::ExternalUpstreamAuthority,
            };
            let services = (&agents, &identity, metrics);
            match p.plugin_type.as_str() {
                "KeyManager" => {
                    let plugin =
                        start_external(&spec, &core, p, services, ExternalKeyManager::bind).await?;
                    km = Some(Arc::new(plugin));
                }
                "NodeAttestor" => {
                    let plugin =
                        start_external(&spec, &core, p, services, ExternalServerNodeAttestor::bind)
                            .await?;
                    node_attestors.insert(p.name.clone(), Arc::new(plugin));
                }
                "UpstreamAuthority" => {
                    let plugin =
                        start_external(&spec, &core, p, services, ExternalUpstreamAuthority::bind)
                            .await?;
                    upstream_authority = Some(Arc::new(plugin));
                }
                "Notifier" => {
                    let plugin =
                        start_external(&spec, &core, p, services, ExternalNotifier::bind).await?;
                    notifiers.push((p.name.clone(), Arc::new(plugin)));
                }
                "BundlePublisher" => {
                    let plugin =
                        start_external(&spec, &core, p, services, ExternalBundlePublisher::bind)
                            .await?;
                    bundle_publishers.push((p.name.clone(), Arc::new(plugin)));
                }
                "CredentialComposer" => {
                    let plugin =
                        start_external(&spec, &core, p, services, ExternalCredentialComposer::bind)
                            .await?;
                    credential_composers.push(Arc::new(plugin));
                }
                _ => return Err(SERVER.not_available(p).into()),
            }
            continue;
        }
        match (p.plugin_type.as_str(), p.name.as_str()) {
            ("DataStore", _) => {
                let cfg: SqlConfig = match p.data.load().map_err(|e| configure_err(p, e))? {
                    Some(data) => data
                        .decode_lenient::<SqlConfig>()
                        .map(|(c, _)| c)
                        .map_err(|e| configure_err(p, e))?,
                    None => return Err(configure_err(p, "database_type must be set").into()),
                };
                tracing::info!(db_type = ?cfg.database_type, subsystem_name = "sql", "Opening SQL database");
                let store = SqlStore::open_with_clock(&cfg, clock.clone()).await?;
                tracing::info!(
                    reconfigurable = false,
                    subsystem_name = "catalog",
                    "Configured DataStore"
                );
                ds = Some(crate::ds_metrics::MetricsDataStore::wrap(
                    Arc::new(store),
                    metrics,
                ));
            }
            ("KeyManager", "memory") => km = Some(Arc::new(LocalKeyManager::memory())),
            ("KeyManager", "disk") => {
                let cfg: ServerDiskConfig = decode(p)?;
                km = Some(Arc::new(
                    LocalKeyManager::server_disk(&cfg).map_err(|e| configure_err(p, e))?,
                ));
            }
            ("KeyManager", spire_plugins_pkcs11::PLUGIN_NAME) => {
                use spire_plugins_pkcs11::{Config, Pkcs11KeyManager, Side};
                let cfg: Config = decode_checked(p)?;
                let settings = cfg.parse(Side::Server).map_err(|e| configure_err(p, e))?;
                km = Some(Arc::new(
                    Pkcs11KeyManager::start(settings)
                        .await
                        .map_err(|e| configure_err(p, e))?,
                ));
            }
            ("NodeAttestor", "join_token") => {}
            ("NodeAttestor", "x509pop") => {
                let cfg: x509pop::ServerConfig = decode(p)?;
                let plugin =
                    X509PopServer::new(&cfg, trust_domain.clone(), Some(own_bundle.clone()))
                        .map_err(|e| configure_err(p, e))?;
                node_attestors.insert("x509pop".into(), Arc::new(plugin));
            }
            ("NodeAttestor", sshpop::PLUGIN_NAME) => {
                let cfg: sshpop::ServerConfig = decode(p)?;
                let now_clock = clock.clone();
                let now: sshpop::NowFn = Arc::new(move || now_clock.now());
                let plugin = sshpop::SshPopServer::new(&cfg, trust_domain.clone(), now)
                    .map_err(|e| configure_err(p, e))?;
                node_attestors.insert(sshpop::PLUGIN_NAME.into(), Arc::new(plugin));
            }
            ("NodeAttestor", spire_plugins_aws::PLUGIN_NAME) => {
                let cfg: spire_plugins_aws::server::ServerConfig = decode(p)?;
                let trust = spire_plugins_aws::cacerts::Trust::from_env()
                    .map_err(|e| configure_err(p, e))?;
                let now_clock = clock.clone();
                let now: spire_plugins_aws::api::NowFn = Arc::new(move || now_clock.now());
                let api = spire_plugins_aws::api::AwsClient::new(
                    spire_plugins_aws::server::AWS_TIMEOUT,
                    now.clone(),
                );
                let env = |k: &str| std::env::var(k).ok();
                let plugin = spire_plugins_aws::server::AwsIidServer::new(
                    &cfg,
                    trust_domain.clone(),
                    agents.clone(),
                    Arc::new(api),
                    &env,
                    trust,
                )
                .map_err(|e| configure_err(p, e))?
                .with_clock(now);
                node_attestors.insert(spire_plugins_aws::PLUGIN_NAME.into(), Arc::new(plugin));
            }
            ("NodeAttestor", http_challenge::PLUGIN_NAME) => {
                let cfg: http_challenge::ServerConfig = decode(p)?;
                let plugin = http_challenge::HttpChallengeServer::new(
                    &cfg,
                    trust_domain.clone(),
                    agents.clone(),
                )
                .map_err(|e| configure_err(p, e))?;
                node_attestors.insert(http_challenge::PLUGIN_NAME.into(), Arc::new(plugin));
            }
            ("Notifier", k8s_bundle::NOTIFIER_NAME) => {
                let cfg: k8s_bundle::NotifierConfig = decode(p)?;
                let plugin = Arc::new(
                    k8s_bundle::K8sBundleNotifier::new(&cfg).map_err(|e| configure_err(p, e))?,
                );
                plugin.spawn_watchers(K8S_WATCH_INTERVAL);
                notifiers.push((p.name.clone(), plugin));
            }
            ("BundlePublisher", k8s_bundle::PUBLISHER_NAME) => {
                let cfg: k8s_bundle::PublisherConfig = decode(p)?;
                let plugin = k8s_bundle::K8sConfigMapPublisher::new(&cfg)
                    .map_err(|e| configure_err(p, e))?;
                bundle_publishers.push((p.name.clone(), Arc::new(plugin)));
            }
            ("CredentialComposer", uniqueid::PLUGIN_NAME) => {
                // SPIRE's uniqueid composer has no configuration service: configuration
                // given to it (a non-empty `plugin_data`, or `plugin_data_file`) fails to
                // load, as in SPIRE's catalog.
                refuse_data(p)?;
                credential_composers.push(Arc::new(uniqueid::UniqueId));
            }
            ("NodeAttestor", spire_plugins_tpm::PLUGIN_NAME) => {
                let cfg: spire_plugins_tpm::ServerConfig = decode(p)?;
                let plugin = spire_plugins_tpm::TpmDevIdServer::new(&cfg, trust_domain.clone())
                    .map_err(|e| configure_err(p, e))?;
                node_attestors.insert(spire_plugins_tpm::PLUGIN_NAME.into(), Arc::new(plugin));
            }
            ("UpstreamAuthority", disk_upstream::PLUGIN_NAME) => {
                let cfg: disk_upstream::Config = decode_checked(p)?;
                let now_clock = clock.clone();
                let now: disk_upstream::NowFn = Arc::new(move || now_clock.now());
                let plugin =
                    disk_upstream::DiskUpstreamAuthority::new(&cfg, trust_domain.clone(), now)
                        .map_err(|e| configure_err(p, e))?;
                upstream_authority = Some(Arc::new(plugin));
            }
            ("UpstreamAuthority", vault_upstream::PLUGIN_NAME) => {
                let cfg: vault_upstream::Config = decode_checked(p)?;
                let now_clock = clock.clone();
                let now: vault_upstream::NowFn = Arc::new(move || now_clock.now());
                let env: vault_upstream::EnvFn = Arc::new(|k| std::env::var(k).ok());
                let plugin = vault_upstream::VaultUpstreamAuthority::new(&cfg, env, now)
                    .map_err(|e| configure_err(p, e))?;
                upstream_authority = Some(Arc::new(plugin));
            }
            ("UpstreamAuthority", spire_plugins_k8s::certmanager::PLUGIN_NAME) => {
                use spire_plugins_k8s::certmanager::{CertManagerUpstreamAuthority, Config};
                let cfg: Config = decode_checked(p)?;
                let plugin = CertManagerUpstreamAuthority::new(&cfg, trust_domain.name())
                    .map_err(|e| configure_err(p, e))?;
                upstream_authority = Some(Arc::new(plugin));
            }
            ("UpstreamAuthority", crate::upstream_spire::PLUGIN_NAME) => {
                use crate::upstream_spire::{Config, Shared, SpireUpstreamAuthority};
                let cfg: Config = decode_checked(p)?;
                let plugin = SpireUpstreamAuthority::new(&cfg, trust_domain.clone())
                    .map_err(|e| configure_err(p, e))?;
                upstream_authority = Some(Arc::new(Shared(Arc::new(plugin))));
            }
            ("NodeAttestor", spire_plugins_gcp_azure::gcp::PLUGIN_NAME) => {
                use spire_plugins_gcp_azure::gcp;
                let cfg: gcp::ServerConfig = decode(p)?;
                let plugin = gcp::GcpIitServer::new(&cfg, trust_domain.clone(), agents.clone())
                    .map_err(|e| configure_err(p, e))?;
                node_attestors.insert(gcp::PLUGIN_NAME.into(), Arc::new(plugin));
            }
            ("NodeAttestor", spire_plugins_gcp_azure::azure::PLUGIN_NAME) => {
                use spire_plugins_gcp_azure::azure;
                let cfg: azure::ServerConfig = decode(p)?;
                let plugin = azure::AzureMsiServer::new(&cfg, trust_domain.clone(), agents.clone())
                    .await
                    .map_err(|e| configure_err(p, e))?;
                node_attestors.insert(azure::PLUGIN_NAME.into(), Arc::new(plugin));
            }
            ("NodeAttestor", psat::PLUGIN_NAME) => {
                let cfg: psat::ServerConfig = decode(p)?;
                let plugin = psat::PsatServer::new(&cfg, trust_domain.clone())
                    .map_err(|e| configure_err(p, e))?;
                node_attestors.insert(psat::PLUGIN_NAME.into(), Arc::new(plugin));
            }
            _ => return Err(SERVER.not_available(p).into()),
        }
        if p.plugin_type != "DataStore" {
            tracing::info!(
                external = false,
                plugin_name = %p.name,
                plugin_type = %p.plugin_type,
                subsystem_name = "catalog",
                "Plugin loaded"
            );
        }
    }
    if let Some(ds) = &ds {
        let _ = agents.set(Arc::new(DataStoreAgents(ds.clone())));
    }
    match (ds, km) {
        (Some(ds), Some(km)) => Ok(Catalog {
            ds,
            km,
            node_attestors,
            upstream_authority,
            notifiers,
            bundle_publishers,
            credential_composers,
            identity,
        }),
        (None, _) => Err(CatalogError::Constraint {
            plugin_type: "DataStore".into(),
            expected: "exactly 1",
            got: 0,
        }
        .into()),
        (_, None) => Err(CatalogError::Constraint {
            plugin_type: "KeyManager".into(),
            expected: "exactly 1",
            got: 0,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(plugins: &str) -> ServerConfig {
        let text = format!(
            r#"
server {{
    data_dir = "/tmp/spire-server"
    trust_domain = "example.org"
}}
plugins {{
    DataStore "sql" {{ plugin_data {{ database_type = "sqlite3" connection_string = "x" }} }}
    KeyManager "memory" {{ plugin_data {{}} }}
{plugins}
}}
"#
        );
        spire_config::load_server_config(
            &text,
            spire_config::Format::Hcl,
            &Default::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn every_server_type_but_the_datastore_can_be_external() {
        for t in [
            "NodeAttestor",
            "UpstreamAuthority",
            "Notifier",
            "BundlePublisher",
            "CredentialComposer",
        ] {
            let block = format!("    {t} \"mine\" {{ plugin_cmd = \"/bin/sh\" }}\n");
            assert_eq!(check(&config(&block)), Ok(()), "{t}");
        }
        let ds = config("").plugins.plugins[0].clone();
        let external_ds = spire_config::PluginConfig {
            plugin_cmd: Some("/bin/sh".into()),
            ..ds
        };
        assert_eq!(
            SERVER.external_spec(&external_ds).unwrap_err().to_string(),
            "pluggability for the DataStore is deprecated; only the built-in \"sql\" plugin is supported"
        );
    }

    #[test]
    fn join_token_cannot_be_external_and_upstream_authorities_are_at_most_one() {
        let jt = "    NodeAttestor \"join_token\" { plugin_cmd = \"/bin/sh\" }\n";
        assert_eq!(
            check(&config(jt)).unwrap_err().to_string(),
            "the built-in join_token node attestor cannot be overridden by an external plugin"
        );
        let two = "    UpstreamAuthority \"a\" { plugin_cmd = \"/bin/sh\" }\n    UpstreamAuthority \"b\" { plugin_cmd = \"/bin/sh\" }\n";
        assert_eq!(
            check(&config(two)).unwrap_err().to_string(),
            "plugin type \"UpstreamAuthority\" constraint not satisfied: expected at most 1 but got 2"
        );
        let builtin = "    UpstreamAuthority \"ejbca\" { plugin_data {} }\n";
        assert_eq!(
            check(&config(builtin)).unwrap_err().to_string(),
            "failed to load plugin \"ejbca\": plugin \"ejbca\" of type \"UpstreamAuthority\" is not available in spire-rs yet"
        );
    }

    fn config_in(dir: &std::path::Path, plugins: &str) -> ServerConfig {
        let db = dir.join("datastore.sqlite3");
        let text = format!(
            r#"
server {{
    data_dir = "{dir}"
    trust_domain = "example.org"
}}
plugins {{
    DataStore "sql" {{ plugin_data {{ database_type = "sqlite3" connection_string = "{db}" }} }}
    KeyManager "memory" {{ plugin_data {{}} }}
{plugins}
}}
"#,
            dir = dir.display(),
            db = db.display(),
        );
        spire_config::load_server_config(
            &text,
            spire_config::Format::Hcl,
            &Default::default(),
            None,
        )
        .unwrap()
    }

    /// `CredentialComposer "uniqueid"` is built in and takes no configuration: an empty
    /// `plugin_data {}` is fine, any data fails as SPIRE's catalog fails it.
    #[tokio::test]
    async fn uniqueid_is_built_in_and_refuses_plugin_data() {
        let td = TrustDomain::new("example.org").unwrap();
        let clock: SharedClock = Arc::new(spire_clock::SystemClock);
        let own: x509pop::TrustBundleFn = Arc::new(Vec::new);
        for block in [
            "    CredentialComposer \"uniqueid\" {}\n",
            "    CredentialComposer \"uniqueid\" { plugin_data {} }\n",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config_in(dir.path(), block);
            assert_eq!(check(&cfg), Ok(()));
            let cat = load(
                &cfg,
                &td,
                own.clone(),
                &clock,
                &spire_telemetry::Metrics::disabled(),
            )
            .await
            .unwrap();
            assert_eq!(cat.credential_composers.len(), 1);
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(
            dir.path(),
            "    CredentialComposer \"uniqueid\" { plugin_data { foo = \"bar\" } }\n",
        );
        assert_eq!(
            load(
                &cfg,
                &td,
                own,
                &clock,
                &spire_telemetry::Metrics::disabled()
            )
            .await
            .unwrap_err()
            .to_string(),
            "failed to configure plugin \"uniqueid\": no supported configuration interface found"
        );
    }

    /// KeyManager "pkcs11" (ours): its configuration is checked before the token is
    /// opened, unknown keys refused; opening a token is tested against SoftHSM in
    /// `spire-plugins-pkcs11` and the conformance suite.
    #[tokio::test]
    async fn pkcs11_configuration_errors() {
        let td = TrustDomain::new("example.org").unwrap();
        let clock: SharedClock = Arc::new(spire_clock::SystemClock);
        let own: x509pop::TrustBundleFn = Arc::new(Vec::new);
        let dir = tempfile::tempdir().unwrap();
        let load_err = |data: &str| {
            let text = format!(
                r#"
server {{
    data_dir = "{dir}"
    trust_domain = "example.org"
}}
plugins {{
    DataStore "sql" {{ plugin_data {{ database_type = "sqlite3" connection_string = "{dir}/ds.sqlite3" }} }}
    KeyManager "pkcs11" {{ plugin_data {{ {data} }} }}
}}
"#,
                dir = dir.path().display(),
            );
            let cfg = spire_config::load_server_config(
                &text,
                spire_config::Format::Hcl,
                &Default::default(),
                None,
            )
            .unwrap();
            assert_eq!(check(&cfg), Ok(()));
            let (td, own, clock) = (td.clone(), own.clone(), clock.clone());
            async move {
                load(
                    &cfg,
                    &td,
                    own,
                    &clock,
                    &spire_telemetry::Metrics::disabled(),
                )
                .await
                .unwrap_err()
                .to_string()
            }
        };
        assert_eq!(
            load_err(r#"module_path = "/m.so" token_label = "t" user_pin = "1" colour = "red""#)
                .await,
            "failed to configure plugin \"pkcs11\": rpc error: code = InvalidArgument desc = unknown configurations detected: colour"
        );
        assert_eq!(
            load_err(r#"module_path = "/m.so" user_pin = "1""#).await,
            "failed to configure plugin \"pkcs11\": rpc error: code = InvalidArgument desc = one of token_label or slot_id is required"
        );
        let e = load_err(
            r#"module_path = "/nonexistent/libpkcs11.so" token_label = "t" user_pin = "1""#,
        )
        .await;
        assert!(
            e.starts_with("failed to configure plugin \"pkcs11\": rpc error: code = InvalidArgument desc = unable to load PKCS#11 module /nonexistent/libpkcs11.so: "),
            "{e}"
        );
    }
}
