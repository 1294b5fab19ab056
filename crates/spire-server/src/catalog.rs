//! Builds the server's plugins from `plugins {}`: exactly one DataStore (`sql`) and one
//! KeyManager, any number of NodeAttestors. Built-in plugins are chosen by name; external
//! KeyManagers and NodeAttestors (`plugin_cmd`) are started through `spire-plugin-host`
//! (the catalog allows no other external type yet); SPIRE's other
//! built-ins and external plugins of other types are reported as not available here with a
//! clear message, at start-up and by `validate`.

use spire_clock::SharedClock;
use std::collections::HashMap;
use std::sync::Arc;

use spiffe_core::TrustDomain;
use spire_config::{PluginConfig, ServerConfig};
use spire_datastore::{DataStore, SqlConfig, SqlStore};
use spire_plugin::{KeyManager, ServerNodeAttestor};
use spire_plugins::keymanager::{LocalKeyManager, ServerDiskConfig};
use spire_plugins::nodeattestor::x509pop::{self, X509PopServer};

pub use spire_plugins::catalog::CatalogError;
use spire_plugins::catalog::{SERVER, configure_err, decode};

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
impl spire_plugin_host::hostservices::AgentLookup for DataStoreAgents {
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

/// Loads every plugin. `own_bundle` gives x509pop's spiffe mode our X.509 authorities.
pub async fn load(
    config: &ServerConfig,
    trust_domain: &TrustDomain,
    own_bundle: x509pop::TrustBundleFn,
    clock: &SharedClock,
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
    let core = spire_plugin_host::CoreConfig {
        trust_domain: trust_domain.name().to_string(),
    };
    // External plugins may ask the AgentStore host service from their start; it answers
    // once the datastore is open.
    let agents: spire_plugin_host::hostservices::AgentLookupCell = Arc::default();
    for p in enabled {
        if let Some(spec) = SERVER.external_spec(p)? {
            use spire_plugin_host::{ExternalPlugin, hostservices};
            let data = p.data.load().map_err(|e| configure_err(p, e))?;
            let data = data.as_ref().map(|d| d.text());
            if p.plugin_type == "KeyManager" {
                let manager = ExternalPlugin::start(
                    &spec,
                    &core,
                    data,
                    hostservices::server(agents.clone()),
                    spire_plugin_host::keymanager::ExternalKeyManager::bind,
                )
                .await
                .map_err(CatalogError::from)?;
                km = Some(Arc::new(manager));
            } else {
                let attestor = ExternalPlugin::start(
                    &spec,
                    &core,
                    data,
                    hostservices::server(agents.clone()),
                    spire_plugin_host::nodeattestor::ExternalServerNodeAttestor::bind,
                )
                .await
                .map_err(CatalogError::from)?;
                node_attestors.insert(p.name.clone(), Arc::new(attestor));
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
                ds = Some(Arc::new(store));
            }
            ("KeyManager", "memory") => km = Some(Arc::new(LocalKeyManager::memory())),
            ("KeyManager", "disk") => {
                let cfg: ServerDiskConfig = decode(p)?;
                km = Some(Arc::new(
                    LocalKeyManager::server_disk(&cfg).map_err(|e| configure_err(p, e))?,
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
