//! The catalog rules both programs share: which plugins of `plugins {}` are built in, which
//! SPIRE built-ins this build lacks, external plugins, SPIRE's per-type count constraints,
//! and decoding a built-in's `plugin_data` — with SPIRE's catalog error messages. A plugin is
//! looked up by (type, name); the server and the agent each pass their own [`Side`].

use spire_config::PluginConfig;

/// Why the plugins cannot be used; the messages follow SPIRE's catalog errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// An external DataStore: SPIRE only has its built-in `sql`.
    #[error(
        "pluggability for the DataStore is deprecated; only the built-in \"sql\" plugin is supported"
    )]
    ExternalDataStore,
    /// An external plugin named like a built-in that cannot be replaced (`join_token`).
    #[error("the built-in {name} node attestor cannot be overridden by an external plugin")]
    BuiltinOverride {
        /// Plugin name.
        name: String,
    },
    /// A plugin type SPIRE does not have on this side.
    #[error("unsupported plugin type {plugin_type:?}")]
    UnsupportedType {
        /// Plugin type.
        plugin_type: String,
    },
    /// An external plugin whose executable is missing or fails its checksum.
    #[error(transparent)]
    Host(#[from] spire_plugin_host::HostError),
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
    /// Configuration given to a built-in that takes none (SPIRE's plugins without a
    /// configuration service, such as `uniqueid`).
    #[error("failed to configure plugin {name:?}: no supported configuration interface found")]
    NoConfigInterface {
        /// Plugin name.
        name: String,
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
}

/// How many plugins of a type SPIRE requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Exactly one (DataStore, KeyManager; the agent's NodeAttestor).
    ExactlyOne,
    /// At least one (the agent's WorkloadAttestor).
    AtLeastOne,
    /// At most one (the server's UpstreamAuthority).
    AtMostOne,
}

impl Count {
    fn words(self) -> &'static str {
        match self {
            Count::ExactlyOne => "exactly 1",
            Count::AtLeastOne => "at least 1",
            Count::AtMostOne => "at most 1",
        }
    }

    fn holds(self, n: usize) -> bool {
        match self {
            Count::ExactlyOne => n == 1,
            Count::AtLeastOne => n >= 1,
            Count::AtMostOne => n <= 1,
        }
    }
}

/// One program's catalog: (type, names) tables and constraints.
#[derive(Debug)]
pub struct Side {
    /// The built-ins this build has.
    pub builtins: &'static [(&'static str, &'static [&'static str])],
    /// SPIRE 1.13's built-ins this build does not have yet.
    pub spire_only: &'static [(&'static str, &'static [&'static str])],
    /// Count constraints per type.
    pub counts: &'static [(&'static str, Count)],
    /// The plugin types that may be external plugins (`plugin_cmd`).
    pub external_types: &'static [&'static str],
    /// Built-ins whose block may carry a `plugin_cmd` that is ignored (the server's
    /// `join_token` is part of the server, never a plugin process).
    pub always_builtin: &'static [&'static str],
}

/// The server's catalog.
pub const SERVER: Side = Side {
    builtins: &[
        ("DataStore", &["sql"]),
        ("KeyManager", &["disk", "memory", "pkcs11"]),
        (
            "NodeAttestor",
            &[
                "aws_iid",
                "azure_msi",
                "gcp_iit",
                "http_challenge",
                "join_token",
                "k8s_psat",
                "sshpop",
                "tpm_devid",
                "x509pop",
            ],
        ),
        (
            "UpstreamAuthority",
            &["cert-manager", "disk", "spire", "vault"],
        ),
        ("Notifier", &["k8sbundle"]),
        ("BundlePublisher", &["k8s_configmap"]),
        ("CredentialComposer", &["uniqueid"]),
    ],
    spire_only: &[
        ("KeyManager", &["aws_kms", "gcp_kms", "azure_key_vault"]),
        (
            "UpstreamAuthority",
            &["awssecret", "aws_pca", "gcp_cas", "ejbca"],
        ),
        ("Notifier", &["gcs_bundle"]),
        (
            "BundlePublisher",
            &[
                "aws_s3",
                "gcp_cloudstorage",
                "aws_rolesanywhere_trustanchor",
            ],
        ),
    ],
    counts: &[
        ("DataStore", Count::ExactlyOne),
        ("KeyManager", Count::ExactlyOne),
        ("UpstreamAuthority", Count::AtMostOne),
    ],
    external_types: &[
        "KeyManager",
        "NodeAttestor",
        "UpstreamAuthority",
        "Notifier",
        "BundlePublisher",
        "CredentialComposer",
    ],
    always_builtin: &["join_token"],
};

/// The agent's catalog.
pub const AGENT: Side = Side {
    builtins: &[
        ("KeyManager", &["disk", "memory", "pkcs11"]),
        (
            "NodeAttestor",
            &[
                "aws_iid",
                "azure_msi",
                "gcp_iit",
                "http_challenge",
                "join_token",
                "k8s_psat",
                "sshpop",
                "tpm_devid",
                "x509pop",
            ],
        ),
        ("WorkloadAttestor", &["docker", "k8s", "systemd", "unix"]),
    ],
    spire_only: &[
        ("SVIDStore", &["aws_secretsmanager", "gcp_secretmanager"]),
        ("WorkloadAttestor", &["windows"]),
    ],
    counts: &[
        ("KeyManager", Count::ExactlyOne),
        ("NodeAttestor", Count::ExactlyOne),
        ("WorkloadAttestor", Count::AtLeastOne),
    ],
    external_types: &[
        "KeyManager",
        "NodeAttestor",
        "WorkloadAttestor",
        "SVIDStore",
    ],
    always_builtin: &[],
};

fn listed(table: &[(&str, &[&str])], p: &PluginConfig) -> bool {
    table
        .iter()
        .any(|(t, names)| *t == p.plugin_type && names.contains(&p.name.as_str()))
}

impl Side {
    /// The error for a plugin this build cannot load: a SPIRE built-in we lack, or a name no
    /// built-in has.
    pub fn not_available(&self, p: &PluginConfig) -> CatalogError {
        if listed(self.spire_only, p) {
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

    /// Checks every enabled plugin block without starting anything: external plugins (their
    /// type, their executable and its checksum) and names first (in file order), then the
    /// count constraints.
    pub fn check(&self, plugins: &[PluginConfig]) -> Result<(), CatalogError> {
        let enabled: Vec<&PluginConfig> = plugins.iter().filter(|p| p.enabled).collect();
        for p in &enabled {
            if let Some(spec) = self.external_spec(p)? {
                spec.check_executable()?;
                continue;
            }
            if !listed(self.builtins, p) {
                return Err(self.not_available(p));
            }
        }
        for (t, count) in self.counts {
            let got = enabled.iter().filter(|p| p.plugin_type == *t).count();
            if !count.holds(got) {
                return Err(CatalogError::Constraint {
                    plugin_type: (*t).to_string(),
                    expected: count.words(),
                    got,
                });
            }
        }
        Ok(())
    }

    /// What to launch for `p` when it is an external plugin (`None` for a built-in), with
    /// `plugin_cmd` made absolute against the working directory.
    pub fn external_spec(
        &self,
        p: &PluginConfig,
    ) -> Result<Option<spire_plugin_host::LaunchSpec>, CatalogError> {
        let Some(cmd) = p.plugin_cmd.as_deref() else {
            return Ok(None);
        };
        if self.always_builtin.contains(&p.name.as_str()) {
            return Err(CatalogError::BuiltinOverride {
                name: p.name.clone(),
            });
        }
        if p.plugin_type == "DataStore" {
            return Err(CatalogError::ExternalDataStore);
        }
        if !self.external_types.contains(&p.plugin_type.as_str()) {
            return Err(CatalogError::UnsupportedType {
                plugin_type: p.plugin_type.clone(),
            });
        }
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        spire_plugin_host::LaunchSpec::new(
            &p.name,
            &p.plugin_type,
            cmd,
            &p.plugin_args,
            p.plugin_checksum.as_deref(),
            &cwd,
        )
        .map(Some)
        .map_err(|source| {
            CatalogError::Host(spire_plugin_host::HostError::Load {
                name: p.name.clone(),
                source,
            })
        })
    }
}

/// A plugin's configuration error, as SPIRE reports it.
pub fn configure_err(p: &PluginConfig, e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Configure {
        name: p.name.clone(),
        message: e.to_string(),
    }
}

/// For a built-in without a configuration service: no data (or an empty `plugin_data {}`)
/// is fine, anything else fails as SPIRE's catalog fails it.
pub fn refuse_data(p: &PluginConfig) -> Result<(), CatalogError> {
    if matches!(p.data, spire_config::PluginData::None) {
        Ok(())
    } else {
        Err(CatalogError::NoConfigInterface {
            name: p.name.clone(),
        })
    }
}

/// Decodes a built-in's `plugin_data` (or `plugin_data_file`); unknown keys are warned
/// about, as SPIRE's HCL decoding ignores them; no data is the default configuration.
pub fn decode<T: serde::de::DeserializeOwned + Default>(
    p: &PluginConfig,
) -> Result<T, CatalogError> {
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

/// Decodes a built-in's `plugin_data`, refusing keys `T` has no field for with the words of
/// SPIRE plugins that check them (`unknown configurations detected: a,b`).
pub fn decode_checked<T: serde::de::DeserializeOwned + Default>(
    p: &PluginConfig,
) -> Result<T, CatalogError> {
    let Some(data) = p.data.load().map_err(|e| configure_err(p, e))? else {
        return Ok(T::default());
    };
    let (value, unknown) = data
        .decode_lenient::<T>()
        .map_err(|e| configure_err(p, format!("unable to decode configuration: {e}")))?;
    if !unknown.is_empty() {
        let mut keys: Vec<String> = unknown.into_iter().map(|k| k.key).collect();
        keys.sort();
        keys.dedup();
        return Err(configure_err(
            p,
            format!("unknown configurations detected: {}", keys.join(",")),
        ));
    }
    Ok(value)
}
