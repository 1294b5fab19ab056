//! Checks the agent's `plugins {}` without loading anything: every enabled plugin must be
//! one of our built-ins, and the counts must satisfy SPIRE's catalog constraints (exactly one
//! KeyManager and one NodeAttestor, at least one WorkloadAttestor). External plugins
//! (`plugin_cmd`, of any agent type) must name an executable (matching `plugin_checksum`
//! when given); they are started by `run`. SPIRE's built-ins that spire-rs lacks are
//! reported as not available here, by `validate` and at start-up, in the same words as the
//! server's catalog.

use spire_config::AgentConfig;
pub use spire_plugins::catalog::CatalogError;

/// Checks every enabled plugin block: names first (in file order), then SPIRE's
/// constraints per type.
pub fn check(config: &AgentConfig) -> Result<(), CatalogError> {
    spire_plugins::catalog::AGENT.check(&config.plugins.plugins)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An agent configuration with these plugin blocks.
    pub(crate) fn config(plugins: &str) -> AgentConfig {
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
        let with_windows =
            format!("{OURS}    WorkloadAttestor \"windows\" {{ plugin_data {{}} }}\n");
        let err = check(&config(&with_windows)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load plugin \"windows\": plugin \"windows\" of type \"WorkloadAttestor\" is not available in spire-rs yet"
        );
        let store = format!("{OURS}    SVIDStore \"aws_secretsmanager\" {{ plugin_data {{}} }}\n");
        assert!(matches!(
            check(&config(&store)),
            Err(CatalogError::NotAvailable { .. })
        ));
        // Every SPIRE 1.13 node attestor is built in now.
        for name in ["aws_iid", "azure_msi", "gcp_iit"] {
            let na = OURS.replace("join_token", name);
            assert_eq!(check(&config(&na)), Ok(()), "{name}");
        }
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
        // External WorkloadAttestors are checked for their executable (and checksum).
        let missing = format!(
            "{OURS}    WorkloadAttestor \"mine\" {{ plugin_cmd = \"/nonexistent/mine\" }}\n"
        );
        assert_eq!(
            check(&config(&missing)).unwrap_err().to_string(),
            "failed to load plugin \"mine\": failed to launch plugin: fork/exec /nonexistent/mine: no such file or directory"
        );
        let present =
            format!("{OURS}    WorkloadAttestor \"mine\" {{ plugin_cmd = \"/bin/sh\" }}\n");
        assert_eq!(check(&config(&present)), Ok(()));
        let bad_sum = format!(
            "{OURS}    WorkloadAttestor \"mine\" {{\n plugin_cmd = \"/bin/sh\"\n plugin_checksum = \"{}\"\n }}\n",
            "0".repeat(64)
        );
        assert_eq!(
            check(&config(&bad_sum)).unwrap_err().to_string(),
            "failed to load plugin \"mine\": failed to launch plugin: checksums did not match"
        );
        // Every agent plugin type can be external.
        let store = format!("{OURS}    SVIDStore \"mine\" {{ plugin_cmd = \"/bin/sh\" }}\n");
        assert_eq!(check(&config(&store)), Ok(()));
        let unknown = format!("{OURS}    Quz \"mine\" {{ plugin_cmd = \"/bin/sh\" }}\n");
        assert_eq!(
            check(&config(&unknown)).unwrap_err().to_string(),
            "unsupported plugin type \"Quz\""
        );
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
