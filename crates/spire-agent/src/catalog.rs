//! Checks the agent's `plugins {}` without loading anything: every enabled plugin must be
//! one of our built-ins, and the counts must satisfy SPIRE's catalog constraints (exactly one
//! KeyManager and one NodeAttestor, at least one WorkloadAttestor). SPIRE's other built-ins
//! and external plugins (`plugin_cmd`) are reported as not available here, by `validate` and
//! at start-up, in the same words as the server's catalog.

use spire_config::{AgentConfig, PluginConfig};

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
}

/// The built-in agent plugins spire-rs has, by type.
pub const BUILTINS: &[(&str, &[&str])] = &[
    ("KeyManager", &["disk", "memory"]),
    ("NodeAttestor", &["join_token", "x509pop"]),
    ("WorkloadAttestor", &["unix"]),
];

/// SPIRE 1.13's built-in agent plugins, by type, that spire-rs does not implement yet.
const SPIRE_BUILTINS: &[(&str, &[&str])] = &[
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
    ("SVIDStore", &["aws_secretsmanager", "gcp_secretmanager"]),
    ("WorkloadAttestor", &["docker", "k8s", "systemd", "windows"]),
];

fn listed(table: &[(&str, &[&str])], p: &PluginConfig) -> bool {
    table
        .iter()
        .any(|(t, names)| *t == p.plugin_type && names.contains(&p.name.as_str()))
}

fn not_available(p: &PluginConfig) -> CatalogError {
    if listed(SPIRE_BUILTINS, p) {
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

/// Checks every enabled plugin block: names first (in file order), then SPIRE's
/// constraints per type.
pub fn check(config: &AgentConfig) -> Result<(), CatalogError> {
    let enabled: Vec<&PluginConfig> = config
        .plugins
        .plugins
        .iter()
        .filter(|p| p.enabled)
        .collect();
    for p in &enabled {
        if p.is_external() {
            return Err(CatalogError::External {
                name: p.name.clone(),
            });
        }
        if !listed(BUILTINS, p) {
            return Err(not_available(p));
        }
    }
    let count = |t: &str| enabled.iter().filter(|p| p.plugin_type == t).count();
    for t in ["KeyManager", "NodeAttestor"] {
        let got = count(t);
        if got != 1 {
            return Err(CatalogError::Constraint {
                plugin_type: t.to_string(),
                expected: "exactly 1",
                got,
            });
        }
    }
    let got = count("WorkloadAttestor");
    if got < 1 {
        return Err(CatalogError::Constraint {
            plugin_type: "WorkloadAttestor".to_string(),
            expected: "at least 1",
            got,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(plugins: &str) -> AgentConfig {
        let text = format!(
            r#"
agent {{
    data_dir = "/tmp/spire-agent"
    server_address = "127.0.0.1"
    server_port = "8081"
    trust_domain = "example.org"
    insecure_bootstrap = true
}}
plugins {{
{plugins}
}}
"#
        );
        spire_config::load_agent_config(&text, spire_config::Format::Hcl, &Default::default(), None)
            .unwrap()
    }

    const OURS: &str = r#"
    NodeAttestor "join_token" { plugin_data {} }
    KeyManager "disk" { plugin_data { directory = "/tmp/keys" } }
    WorkloadAttestor "unix" { plugin_data {} }
"#;

    #[test]
    fn our_builtins_pass() {
        assert_eq!(check(&config(OURS)), Ok(()));
        let x509pop = OURS.replace("join_token", "x509pop");
        assert_eq!(check(&config(&x509pop)), Ok(()));
    }

    #[test]
    fn spire_builtins_we_lack_are_not_available() {
        let with_docker = format!("{OURS}    WorkloadAttestor \"docker\" {{ plugin_data {{}} }}\n");
        let err = check(&config(&with_docker)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load plugin \"docker\": plugin \"docker\" of type \"WorkloadAttestor\" is not available in spire-rs yet"
        );
        let store = format!("{OURS}    SVIDStore \"aws_secretsmanager\" {{ plugin_data {{}} }}\n");
        assert!(matches!(
            check(&config(&store)),
            Err(CatalogError::NotAvailable { .. })
        ));
        let aws = OURS.replace("join_token", "aws_iid");
        assert!(matches!(
            check(&config(&aws)),
            Err(CatalogError::NotAvailable { name, .. }) if name == "aws_iid"
        ));
    }

    #[test]
    fn unknown_disabled_and_external_plugins() {
        let unknown = OURS.replace("\"unix\"", "\"nope\"");
        assert_eq!(
            check(&config(&unknown)).unwrap_err().to_string(),
            "failed to load plugin \"nope\": no built-in plugin \"nope\" for type \"WorkloadAttestor\""
        );
        let disabled = format!(
            "{OURS}    WorkloadAttestor \"k8s\" {{ enabled = false\n plugin_data {{}} }}\n"
        );
        assert_eq!(check(&config(&disabled)), Ok(()));
        let external =
            format!("{OURS}    WorkloadAttestor \"mine\" {{ plugin_cmd = \"/bin/mine\" }}\n");
        assert!(matches!(
            check(&config(&external)),
            Err(CatalogError::External { .. })
        ));
    }

    #[test]
    fn constraints() {
        let no_unix = OURS.replace("WorkloadAttestor \"unix\" { plugin_data {} }", "");
        assert_eq!(
            check(&config(&no_unix)).unwrap_err().to_string(),
            "plugin type \"WorkloadAttestor\" constraint not satisfied: expected at least 1 but got 0"
        );
        let two_km = format!("{OURS}    KeyManager \"memory\" {{ plugin_data {{}} }}\n");
        assert_eq!(
            check(&config(&two_km)).unwrap_err().to_string(),
            "plugin type \"KeyManager\" constraint not satisfied: expected exactly 1 but got 2"
        );
    }
}
