//! The agent's plugin configuration helpers: built-ins' `plugin_data`, and external plugins
//! (`plugin_cmd`), resolved with the configuration and started by `run` before the agent
//! attests (SPIRE's catalog order), through `spire-plugin-host`.

use std::sync::Arc;

use spire_plugin::{AgentNodeAttestor, KeyManager};
use spire_plugin_host::keymanager::ExternalKeyManager;
use spire_plugin_host::nodeattestor::ExternalAgentNodeAttestor;
use spire_plugin_host::svidstore::ExternalSvidStore;
use spire_plugin_host::workloadattestor::ExternalWorkloadAttestor;
use spire_plugin_host::{CoreConfig, ExternalPlugin, HostError, hostservices};

use crate::agent::{AgentError, AgentSettings};

/// A built-in plugin's `plugin_data` decoded into `T` (its default without one).
pub(crate) fn builtin_data<T: serde::de::DeserializeOwned + Default>(
    p: &spire_config::PluginConfig,
) -> Result<T, AgentError> {
    let data = p
        .data
        .load()
        .map_err(|e| AgentError::Config(e.to_string()))?;
    match data {
        None => Ok(T::default()),
        Some(d) => d.decode().map_err(|e| {
            AgentError::Config(format!("failed to configure plugin \"{}\": {e}", p.name))
        }),
    }
}

/// A built-in's `plugin_data` decoded into `T`, refusing keys `T` does not have
/// (`unknown configurations detected: a,b`), as the server's catalog decodes them.
pub(crate) fn builtin_data_checked<T: serde::de::DeserializeOwned + Default>(
    p: &spire_config::PluginConfig,
) -> Result<T, AgentError> {
    spire_plugins::catalog::decode_checked(p).map_err(|e| AgentError::Config(e.to_string()))
}

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
        metrics: &spire_telemetry::Metrics,
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
            hostservices::agent_with_metrics(metrics.clone()),
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

/// Starts the external plugins: the KeyManager (returned, for the agent's key store), the
/// NodeAttestor, each WorkloadAttestor in its place among the built-ins, and the
/// SVIDStores.
pub(crate) async fn start_external(
    s: &mut AgentSettings,
) -> Result<Option<Arc<dyn KeyManager>>, AgentError> {
    let core = CoreConfig {
        trust_domain: s.trust_domain.name().to_string(),
    };
    let metrics = s.manager.metrics.clone();
    for (position, ext) in std::mem::take(&mut s.external_workload_attestors) {
        let attestor = ext
            .start(&core, &metrics, ExternalWorkloadAttestor::bind)
            .await?;
        let at = position.min(s.workload_attestors.len());
        s.workload_attestors
            .insert(at, (ext.spec.name.clone(), Arc::new(attestor)));
    }
    for ext in std::mem::take(&mut s.external_svid_stores) {
        let store = ext.start(&core, &metrics, ExternalSvidStore::bind).await?;
        s.manager
            .svid_stores
            .push((ext.spec.name.clone(), Arc::new(store)));
    }
    if let Some(ext) = s.external_node_attestor.take() {
        let attestor = ext
            .start(&core, &metrics, ExternalAgentNodeAttestor::bind)
            .await?;
        s.node_attestor = (ext.spec.name.clone(), Arc::new(attestor));
    }
    match s.external_key_manager.take() {
        Some(ext) => {
            let km = ext
                .start(&core, &metrics, ExternalKeyManager::bind_agent)
                .await?;
            Ok(Some(Arc::new(km)))
        }
        None => Ok(None),
    }
}
