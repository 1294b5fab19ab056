//! An external Notifier behind the trait the built-ins implement
//! (`spire.plugin.server.notifier.v1.Notifier`): "bundle loaded" goes through
//! NotifyAndAdvise (its error stops the server), "bundle updated" through Notify.

use std::sync::Arc;

use async_trait::async_trait;
use spire_plugin::{Notifier, PluginBundle, PluginResult};
use spire_proto::spire::plugin::server::notifier::v1 as nv1;

use crate::conn::PluginChannel;
use crate::{ExternalPlugin, HostError};
use spire_plugin_wire::bundle::bundle_to_proto;

/// The gRPC service a Notifier plugin serves.
pub const SERVICE: &str = "spire.plugin.server.notifier.v1.Notifier";

/// An external plugin serving the Notifier interface.
#[derive(Debug, Clone)]
pub struct ExternalNotifier {
    plugin: Arc<ExternalPlugin>,
    client: nv1::notifier_client::NotifierClient<PluginChannel>,
}

impl ExternalNotifier {
    /// Binds a loaded plugin.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVICE)?;
        Ok(Self {
            plugin,
            client: nv1::notifier_client::NotifierClient::new(channel),
        })
    }
}

#[async_trait]
impl Notifier for ExternalNotifier {
    async fn bundle_loaded(&self, bundle: &PluginBundle) -> PluginResult<()> {
        let mut client = self.client.clone();
        let request = nv1::NotifyAndAdviseRequest {
            event: Some(nv1::notify_and_advise_request::Event::BundleLoaded(
                nv1::BundleLoaded {
                    bundle: Some(bundle_to_proto(bundle)),
                },
            )),
        };
        self.plugin.call(client.notify_and_advise(request)).await?;
        Ok(())
    }

    async fn bundle_updated(&self, bundle: &PluginBundle) -> PluginResult<()> {
        let mut client = self.client.clone();
        let request = nv1::NotifyRequest {
            event: Some(nv1::notify_request::Event::BundleUpdated(
                nv1::BundleUpdated {
                    bundle: Some(bundle_to_proto(bundle)),
                },
            )),
        };
        self.plugin.call(client.notify(request)).await?;
        Ok(())
    }
}
