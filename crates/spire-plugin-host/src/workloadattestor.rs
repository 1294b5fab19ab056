//! An external WorkloadAttestor behind the same trait as the built-ins
//! (`spire.plugin.agent.workloadattestor.v1.WorkloadAttestor`).

use std::sync::Arc;

use async_trait::async_trait;
use spire_plugin::{PluginResult, WorkloadAttestor};
use spire_proto::spire::plugin::agent::workloadattestor::v1 as wav1;

use crate::conn::PluginChannel;
use crate::{ExternalPlugin, HostError};

/// The gRPC service a WorkloadAttestor plugin serves.
pub const SERVICE: &str = "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor";

/// An external plugin serving the WorkloadAttestor interface.
#[derive(Debug, Clone)]
pub struct ExternalWorkloadAttestor {
    plugin: Arc<ExternalPlugin>,
    client: wav1::workload_attestor_client::WorkloadAttestorClient<PluginChannel>,
}

impl ExternalWorkloadAttestor {
    /// Binds a loaded plugin (SPIRE: "failed to bind plugin" when it lacks the interface).
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVICE)?;
        Ok(Self {
            plugin,
            client: wav1::workload_attestor_client::WorkloadAttestorClient::new(channel),
        })
    }
}

#[async_trait]
impl WorkloadAttestor for ExternalWorkloadAttestor {
    async fn attest(&self, pid: i32) -> PluginResult<Vec<String>> {
        let mut client = self.client.clone();
        let call = client.attest(wav1::AttestRequest { pid });
        Ok(self.plugin.call(call).await?.selector_values)
    }
}
