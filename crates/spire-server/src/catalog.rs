//! Builds the server's plugins from `plugins {}`: exactly one DataStore (`sql`) and one
//! KeyManager, any number of NodeAttestors. Built-in plugins are chosen by name; SPIRE's
//! other built-ins and external plugins (`plugin_cmd`) are reported as not available here
//! with a clear message, at start-up and by `validate`.

use std::collections::HashMap;
use std::sync::Arc;

use spiffe_core::TrustDomain;
use spire_config::{PluginConfig, ServerConfig};
use spire_datastore::{DataStore, SqlConfig, SqlStore};
use spire_plugin::{KeyManager, ServerNodeAttestor};
use spire_plugins::keymanager::{LocalKeyManager, ServerDiskConfig};
use spire_plugins::nodeattestor::x509pop::{self, X509PopServer};

/// Why the catalog could not be built; the messages are SPIRE's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A plugin name that no built-in has.
    #[error("failed to load plugin {name:?}: no built-in plugin {name:?} for type {plugin_type:?}")]
    Unknown {
        /// Plugin name.
        name: String,
        /// Plugin type.
        plugin_type: String,
    },
    /// A SPIRE built-in that this build does not include.
    #[error(
        "failed to load plugin {name:?}: plugin {name:?} of type {plugin_type:?} is not available in spire-rs yet"
    )]
    NotAvailable {
        /// Plugin name.
        name: String,
        /// Plugin type.
        plugin_type: String,
    },
    /// External plugins are not supported yet.
    #[error(
        "failed to load plugin {name:?}: external plugins (plugin_cmd) are not supported by spire-rs yet"
    )]
    External {
        /// Plugin name.
        name: String,
    },
    /// Too many or too few plugins of a type.
    #[error(
        "plugin type {plugin_type:?} constraint not satisfied: expected {expected} but got {got}"
    )]
    Constraint {
        /// Plugin type.
        plugin_type: String,
        /// What is required.
        expected: &'static str,
        /// How many there are.
        got: usize,
    },
    /// A plugin rejected its configuration.
    #[error(
        "failed to configure plugin {name:?}: rpc error: code = InvalidArgument desc = {message}"
    )]
    Configure {
        /// Plugin name.
        name: String,
        /// Why.
        message: String,
    },
    /// The datastore could not be opened.
    #[error("{0}")]
    Datastore(#[from] spire_datastore::DataStoreError),
}

/// SPIRE 1.13's built-in server plugins, by type, that spire-rs does not implement yet.
const SPIRE_BUILTINS: &[(&str, &[&str])] = &[
    ("KeyManager", &["aws_kms", "gcp_kms", "azure_key_vault"]),
    (
        "NodeAttestor",
        &[
            "aws_iid",
            "azure_msi",
            "gcp_iit",
            "http_challenge",
            "k8s_psat",
            "sshpop",
            "tpm_devid",
        ],
    ),
    (
        "UpstreamAuthority",
        &[
            "disk",
            "awssecret",
            "aws_pca",
            "gcp_cas",
            "vault",
            "spire",
            "cert-manager",
            "ejbca",
        ],
    ),
    ("Notifier", &["gcs_bundle", "k8sbundle"]),
    (
        "BundlePublisher",
        &[
            "aws_s3",
            "gcp_cloudstorage",
            "aws_rolesanywhere_trustanchor",
            "k8s_configmap",
        ],
    ),
    ("CredentialComposer", &["uniqueid"]),
];

fn not_available(p: &PluginConfig) -> CatalogError {
    let known = SPIRE_BUILTINS
        .iter()
        .any(|(t, names)| *t == p.plugin_type && names.contains(&p.name.as_str()));
    if known {
        CatalogError::NotAvailable {
            name: p.name.clone(),
            plugin_type: p.plugin_type.clone(),
        }
    } else {
        CatalogError::Unknown {
            name: p.name.clone(),
            plugin_type: p.plugin_type.clone(),
        }
    }
}

fn configure_err(p: &PluginConfig, e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Configure {
        name: p.name.clone(),
        message: e.to_string(),
    }
}

fn decode<T: serde::de::DeserializeOwned + Default>(p: &PluginConfig) -> Result<T, CatalogError> {
    match p.data.load().map_err(|e| configure_err(p, e))? {
        Some(data) => {
            let (value, unknown) = data
                .decode_lenient::<T>()
                .map_err(|e| configure_err(p, e))?;
            for k in unknown {
                tracing::warn!(plugin_name = %p.name, plugin_type = %p.plugin_type, key = %k, "Unknown plugin configuration key");
            }
            Ok(value)
        }
        None => Ok(T::default()),
    }
}

/// Checks every plugin block without opening anything: types, names, counts.
pub fn check(config: &ServerConfig) -> Result<(), CatalogError> {
    let enabled: Vec<&PluginConfig> = config
        .plugins
        .plugins
        .iter()
        .filter(|p| p.enabled)
        .collect();
    for p in &enabled {
        if p.is_external() && p.name != "join_token" {
            return Err(CatalogError::External {
                name: p.name.clone(),
            });
        }
        let ok = match p.plugin_type.as_str() {
            "DataStore" => p.name == "sql",
            "KeyManager" => matches!(p.name.as_str(), "disk" | "memory"),
            "NodeAttestor" => matches!(p.name.as_str(), "join_token" | "x509pop"),
            _ => false,
        };
        if !ok {
            return Err(not_available(p));
        }
    }
    for (t, expected) in [("DataStore", "exactly 1"), ("KeyManager", "exactly 1")] {
        let got = enabled.iter().filter(|p| p.plugin_type == t).count();
        if got != 1 {
            return Err(CatalogError::Constraint {
                plugin_type: t.to_string(),
                expected,
                got,
            });
        }
    }
    Ok(())
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

/// Loads every plugin. `own_bundle` gives x509pop's spiffe mode our X.509 authorities.
pub async fn load(
    config: &ServerConfig,
    trust_domain: &TrustDomain,
    own_bundle: x509pop::TrustBundleFn,
) -> Result<Catalog, CatalogError> {
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
    for p in enabled {
        match (p.plugin_type.as_str(), p.name.as_str()) {
            ("DataStore", _) => {
                let cfg: SqlConfig = match p.data.load().map_err(|e| configure_err(p, e))? {
                    Some(data) => data
                        .decode_lenient::<SqlConfig>()
                        .map(|(c, _)| c)
                        .map_err(|e| configure_err(p, e))?,
                    None => return Err(configure_err(p, "database_type must be set")),
                };
                tracing::info!(db_type = ?cfg.database_type, subsystem_name = "sql", "Opening SQL database");
                let store = SqlStore::open(&cfg).await?;
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
            _ => return Err(not_available(p)),
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
        }),
        (_, None) => Err(CatalogError::Constraint {
            plugin_type: "KeyManager".into(),
            expected: "exactly 1",
            got: 0,
        }),
    }
}
