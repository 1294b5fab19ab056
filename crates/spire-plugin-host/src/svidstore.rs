//! An external SVIDStore behind the trait the built-ins implement
//! (`spire.plugin.agent.svidstore.v1.SVIDStore`), its messages made by
//! `spire-plugin-wire`.

use std::sync::Arc;

use async_trait::async_trait;
use spire_plugin::{PluginResult, StoredSvid, SvidStore};
use spire_proto::spire::plugin::agent::svidstore::v1 as ssv1;

use crate::conn::PluginChannel;
use crate::{ExternalPlugin, HostError};

/// The gRPC service an SVIDStore plugin serves.
pub const SERVICE: &str = "spire.plugin.agent.svidstore.v1.SVIDStore";

type Client = ssv1::svid_store_client::SvidStoreClient<PluginChannel>;

/// An external plugin serving the SVIDStore interface.
#[derive(Debug, Clone)]
pub struct ExternalSvidStore {
    plugin: Arc<ExternalPlugin>,
    client: Client,
}

impl ExternalSvidStore {
    /// Binds a loaded plugin.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVICE)?;
        Ok(Self {
            plugin,
            client: Client::new(channel),
        })
    }
}

#[async_trait]
impl SvidStore for ExternalSvidStore {
    async fn put_x509_svid(&self, svid: &StoredSvid, metadata: &[String]) -> PluginResult<()> {
        let mut client = self.client.clone();
        let request = spire_plugin_wire::svidstore::put_request(svid, metadata);
        self.plugin.call(client.put_x509svid(request)).await?;
        Ok(())
    }

    async fn delete_x509_svid(&self, metadata: &[String]) -> PluginResult<()> {
        let mut client = self.client.clone();
        let request = ssv1::DeleteX509svidRequest {
            metadata: metadata.to_vec(),
        };
        self.plugin.call(client.delete_x509svid(request)).await?;
        Ok(())
    }
}
