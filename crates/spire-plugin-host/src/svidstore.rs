//! An external SVIDStore behind the trait the built-ins implement
//! (`spire.plugin.agent.svidstore.v1.SVIDStore`). Federated bundles travel as one DER
//! blob per trust domain (the certificates concatenated), as SPIRE sends them.

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
        let request = ssv1::PutX509svidRequest {
            svid: Some(ssv1::X509svid {
                spiffe_id: svid.spiffe_id.to_string(),
                cert_chain: svid.cert_chain.clone(),
                private_key: svid.private_key.clone(),
                bundle: svid.bundle.clone(),
                expires_at: svid.expires_at,
            }),
            metadata: metadata.to_vec(),
            federated_bundles: svid
                .federated_bundles
                .iter()
                .map(|(td, certs)| (td.id_string(), certs.concat()))
                .collect(),
        };
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
