//! The agent's external plugins (`plugin_cmd`): resolved with the configuration, started by
//! `run` before the agent attests (SPIRE's catalog order), through `spire-plugin-host`.

use std::sync::Arc;

use spire_plugin::AgentNodeAttestor;
use spire_plugin_host::nodeattestor::ExternalAgentNodeAttestor;
use spire_plugin_host::workloadattestor::ExternalWorkloadAttestor;
use spire_plugin_host::{CoreConfig, ExternalPlugin, HostError, hostservices};

use crate::agent::{AgentError, AgentSettings};

/// An external plugin to start when the agent runs.
#[derive(Debug, Clone)]
pub struct ExternalPluginSetting {
    /// What to launch.
    pub spec: spire_plugin_host::LaunchSpec,
    /// Its `plugin_data` or `plugin_data_file` (read when it is configured).
    pub data: spire_config::PluginData,
}

impl ExternalPluginSetting {
    /// Starts, binds with `bind` and configures the plugin with its `plugin_data` as of now.
    async fn start<T>(
        &self,
        core: &CoreConfig,
        bind: impl FnOnce(Arc<ExternalPlugin>) -> Result<T, HostError>,
    ) -> Result<T, AgentError> {
        let data = self
            .data
            .load()
            .map_err(|e| {
                AgentError::Config(format!(
                    "failed to configure plugin \"{}\": {e}",
                    self.spec.name
                ))
            })?
            .map(|d| d.text().to_owned());
        Ok(ExternalPlugin::start(
            &self.spec,
            core,
            data.as_deref(),
            hostservices::agent(),
            bind,
        )
        .await?)
    }
}

/// The NodeAttestor in the settings until `run` starts the external one: it refuses to
/// attest.
#[derive(Debug)]
pub(crate) struct UnstartedNodeAttestor;

#[async_trait::async_trait]
impl AgentNodeAttestor for UnstartedNodeAttestor {
    async fn attest(
        &self,
        _exchange: &mut dyn spire_plugin::AttestationExchange,
    ) -> spire_plugin::PluginResult<()> {
        Err(spire_plugin::PluginError::internal(
            "the external plugin was not started",
        ))
    }
}

/// Starts the external plugins: the NodeAttestor, and each WorkloadAttestor in its place
/// among the built-ins.
pub(crate) async fn start_external(s: &mut AgentSettings) -> Result<(), AgentError> {
    let core = CoreConfig {
        trust_domain: s.trust_domain.name().to_string(),
    };
    for (position, ext) in std::mem::take(&mut s.external_workload_attestors) {
        let attestor = ext.start(&core, ExternalWorkloadAttestor::bind).await?;
        let at = position.min(s.workload_attestors.len());
        s.workload_attestors
            .insert(at, (ext.spec.name.clone(), Arc::new(attestor)));
    }
    if let Some(ext) = s.external_node_attestor.take() {
        let attestor = ext.start(&core, ExternalAgentNodeAttestor::bind).await?;
        s.node_attestor = (ext.spec.name.clone(), Arc::new(attestor));
    }
    Ok(())
}
