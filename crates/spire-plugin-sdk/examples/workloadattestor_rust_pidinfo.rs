//! An example WorkloadAttestor written with spire-plugin-sdk: the Rust twin of the Go test
//! plugin `conformance/goplugins/workloadattestor-pidinfo`. Selectors: `uid:<real uid>`,
//! `gid:<real gid>` and `comm:<name>` from `/proc/<pid>/status`, and `tag:<tag>` when
//! `plugin_data` sets `tag`.
//!
//! ```hcl
//! WorkloadAttestor "rustpid" {
//!     plugin_cmd = "/path/to/workloadattestor_rust_pidinfo"
//!     plugin_data { tag = "blue" }
//! }
//! ```

use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use spire_plugin::{PluginError, PluginResult, WorkloadAttestor};
use spire_plugin_sdk::{Configure, CoreConfig, Plugin, decode_config, log};

#[derive(Debug, Default, Clone, serde::Deserialize)]
struct Config {
    #[serde(default)]
    tag: String,
}

#[derive(Debug, Default)]
struct PidInfo {
    config: RwLock<Option<Config>>,
}

#[async_trait::async_trait]
impl WorkloadAttestor for PidInfo {
    async fn attest(&self, pid: i32) -> PluginResult<Vec<String>> {
        let config = self
            .config
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| {
                PluginError::new(spire_plugin::Code::FailedPrecondition, "not configured")
            })?;
        let status = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
            .await
            .map_err(|e| PluginError::internal(format!("unable to read process status: {e}")))?;
        let mut values = Vec::new();
        for line in status.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let Some(first) = rest.split_whitespace().next() else {
                continue;
            };
            match key {
                "Name" => values.push(format!("comm:{first}")),
                "Uid" => values.push(format!("uid:{first}")),
                "Gid" => values.push(format!("gid:{first}")),
                _ => {}
            }
        }
        if !config.tag.is_empty() {
            values.push(format!("tag:{}", config.tag));
        }
        log::debug("Attested workload", &[("pid", &pid.to_string())]);
        Ok(values)
    }
}

#[async_trait::async_trait]
impl Configure for PidInfo {
    async fn configure(&self, core: &CoreConfig, plugin_data: &str) -> PluginResult<()> {
        let config: Config = decode_config(plugin_data)?;
        if config.tag.chars().any(char::is_whitespace) {
            return Err(PluginError::invalid_argument(
                "tag must not contain white space",
            ));
        }
        log::info(
            "Configured",
            &[("trust_domain", &core.trust_domain), ("tag", &config.tag)],
        );
        if let Ok(mut c) = self.config.write() {
            *c = Some(config);
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let plugin = Arc::new(PidInfo::default());
    spire_plugin_sdk::serve(Plugin::workload_attestor(plugin.clone()).with_configure(plugin)).await
}
