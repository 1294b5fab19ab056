//! An external BundlePublisher behind the trait the built-ins implement
//! (`spire.plugin.server.bundlepublisher.v1.BundlePublisher`).

use std::sync::Arc;

use async_trait::async_trait;
use spire_plugin::{BundlePublisher, PluginBundle, PluginResult};
use spire_proto::spire::plugin::server::bundlepublisher::v1 as bpv1;

use crate::conn::PluginChannel;
use crate::{ExternalPlugin, HostError};
use spire_plugin_wire::bundle::bundle_to_proto;

/// The gRPC service a BundlePublisher plugin serves.
pub const SERVICE: &str = "spire.plugin.server.bundlepublisher.v1.BundlePublisher";

/// An external plugin serving the BundlePublisher interface.
#[derive(Debug, Clone)]
pub struct ExternalBundlePublisher {
    plugin: Arc<ExternalPlugin>,
    client: bpv1::bundle_publisher_client::BundlePublisherClient<PluginChannel>,
}

impl ExternalBundlePublisher {
    /// Binds a loaded plugin.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVICE)?;
        Ok(Self {
            plugin,
            client: bpv1::bundle_publisher_client::BundlePublisherClient::new(channel),
        })
    }
}

#[async_trait]
impl BundlePublisher for ExternalBundlePublisher {
    async fn publish_bundle(&self, bundle: &PluginBundle) -> PluginResult<()> {
        let mut client = self.client.clone();
        let request = bpv1::PublishBundleRequest {
            bundle: Some(bundle_to_proto(bundle)),
        };
        self.plugin.call(client.publish_bundle(request)).await?;
        Ok(())
    }
}
