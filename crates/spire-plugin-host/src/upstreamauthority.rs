//! An external UpstreamAuthority behind the trait the built-ins implement
//! (`spire.plugin.server.upstreamauthority.v1.UpstreamAuthority`).
//!
//! Both calls are server streams. As SPIRE does, the first answer is the result and the
//! stream then stays open, until the next call of the same kind replaces it or the plugin
//! is dropped; later answers (new upstream roots, new upstream JWT keys) go to the caller's
//! [`UpstreamUpdates`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use spire_plugin::{
    Code, JwtKey, PluginError, PluginResult, UpstreamAuthority, UpstreamLocalBundle,
    UpstreamUpdates, UpstreamX509Ca, X509Authority,
};
use spire_proto::spire::plugin::server::upstreamauthority::v1 as uav1;
use tokio::task::AbortHandle;

use crate::conn::PluginChannel;
use crate::{ExternalPlugin, HostError};
use spire_plugin_wire::bundle::{jwt_key_from_proto, jwt_key_to_proto};

/// The gRPC service an UpstreamAuthority plugin serves.
pub const SERVICE: &str = "spire.plugin.server.upstreamauthority.v1.UpstreamAuthority";

type Client = uav1::upstream_authority_client::UpstreamAuthorityClient<PluginChannel>;

/// An external plugin serving the UpstreamAuthority interface.
#[derive(Debug)]
pub struct ExternalUpstreamAuthority {
    plugin: Arc<ExternalPlugin>,
    client: Client,
    mint_stream: Mutex<Option<AbortHandle>>,
    publish_stream: Mutex<Option<AbortHandle>>,
    local_bundle_stream: Mutex<Option<AbortHandle>>,
}

impl ExternalUpstreamAuthority {
    /// Binds a loaded plugin.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVICE)?;
        Ok(Self {
            plugin,
            client: Client::new(channel),
            mint_stream: Mutex::new(None),
            publish_stream: Mutex::new(None),
            local_bundle_stream: Mutex::new(None),
        })
    }

    /// Keeps `stream` open in the background, handing each later answer to `deliver`,
    /// replacing the stream kept in `slot`.
    fn keep<T: Send + 'static>(
        &self,
        slot: &Mutex<Option<AbortHandle>>,
        mut stream: tonic::Streaming<T>,
        what: &'static str,
        deliver: impl Fn(T) + Send + 'static,
    ) {
        let name = self.plugin.name().to_owned();
        let plugin = self.plugin.clone();
        let task = tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(update)) => {
                        tracing::debug!(
                            plugin_name = %name,
                            subsystem_name = "ca_manager",
                            "Upstream authority sent a {what} update"
                        );
                        deliver(update);
                    }
                    Ok(None) => return,
                    Err(status) if status.code() == tonic::Code::Cancelled => return,
                    // The plugin is shutting down (or gone): its streams end with it.
                    Err(_) if plugin.is_stopping() => return,
                    Err(status) => {
                        tracing::error!(
                            plugin_name = %name,
                            error = %crate::status_text(&status),
                            subsystem_name = "ca_manager",
                            "The upstream authority plugin stopped streaming {what} updates prematurely. Please report this bug. Will retry later."
                        );
                        return;
                    }
                }
            }
        });
        let old = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Ends the stream kept in `slot` (SPIRE stops the previous stream before a new call).
    fn stop(slot: &Mutex<Option<AbortHandle>>) {
        if let Some(old) = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            old.abort();
        }
    }

    /// The first answer of a stream, or SPIRE's error when the stream ends first.
    async fn first<T>(&self, stream: &mut tonic::Streaming<T>) -> PluginResult<T> {
        match self
            .plugin
            .call(async { stream.message().await.map(tonic::Response::new) })
            .await?
        {
            Some(first) => Ok(first),
            None => Err(internal("plugin closed stream unexpectedly")),
        }
    }
}

impl Drop for ExternalUpstreamAuthority {
    fn drop(&mut self) {
        Self::stop(&self.mint_stream);
        Self::stop(&self.publish_stream);
        Self::stop(&self.local_bundle_stream);
    }
}

fn authorities(
    certs: Vec<spire_proto::spire::plugin::types::X509Certificate>,
) -> Vec<X509Authority> {
    certs
        .into_iter()
        .map(|c| X509Authority {
            der: c.asn1,
            tainted: c.tainted,
        })
        .collect()
}

fn internal(message: &str) -> PluginError {
    PluginError::new(Code::Internal, message.to_owned())
}

#[async_trait]
impl UpstreamAuthority for ExternalUpstreamAuthority {
    async fn mint_x509_ca(
        &self,
        csr: &[u8],
        preferred_ttl_secs: i32,
        updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamX509Ca> {
        Self::stop(&self.mint_stream);
        let mut client = self.client.clone();
        let request = uav1::MintX509caRequest {
            csr: csr.to_vec(),
            preferred_ttl: preferred_ttl_secs,
        };
        let mut stream = self
            .plugin
            .call(client.mint_x509ca_and_subscribe(request))
            .await?;
        let first = self.first(&mut stream).await?;
        if first.x509_ca_chain.is_empty() {
            return Err(internal("plugin response missing X.509 CA chain"));
        }
        if first.upstream_x509_roots.is_empty() {
            return Err(internal("plugin response missing upstream X.509 roots"));
        }
        let name = self.plugin.name().to_owned();
        self.keep(&self.mint_stream, stream, "X.509 root", move |update| {
            if !update.x509_ca_chain.is_empty() {
                tracing::error!(plugin_name = %name, error = "plugin response has an X.509 CA chain after the first response", subsystem_name = "ca_manager", "The upstream authority plugin sent a malformed update");
                return;
            }
            if update.upstream_x509_roots.is_empty() {
                tracing::error!(plugin_name = %name, error = "plugin response missing upstream X.509 roots", subsystem_name = "ca_manager", "The upstream authority plugin sent a malformed update");
                return;
            }
            updates.x509_roots(authorities(update.upstream_x509_roots));
        });
        Ok(UpstreamX509Ca {
            x509_ca_chain: first.x509_ca_chain.into_iter().map(|c| c.asn1).collect(),
            upstream_x509_roots: first
                .upstream_x509_roots
                .into_iter()
                .map(|c| c.asn1)
                .collect(),
        })
    }

    async fn publish_jwt_key(
        &self,
        key: &JwtKey,
        updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<Vec<JwtKey>> {
        Self::stop(&self.publish_stream);
        let mut client = self.client.clone();
        let request = uav1::PublishJwtKeyRequest {
            jwt_key: Some(jwt_key_to_proto(key)),
        };
        let mut stream = self
            .plugin
            .call(client.publish_jwt_key_and_subscribe(request))
            .await?;
        let first = self.first(&mut stream).await?;
        self.keep(&self.publish_stream, stream, "JWT key", move |update| {
            updates.jwt_keys(
                update
                    .upstream_jwt_keys
                    .into_iter()
                    .map(jwt_key_from_proto)
                    .collect(),
            );
        });
        Ok(first
            .upstream_jwt_keys
            .into_iter()
            .map(jwt_key_from_proto)
            .collect())
    }

    async fn subscribe_to_local_bundle(
        &self,
        updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamLocalBundle> {
        Self::stop(&self.local_bundle_stream);
        let mut client = self.client.clone();
        let mut stream = self
            .plugin
            .call(client.subscribe_to_local_bundle(uav1::SubscribeToLocalBundleRequest {}))
            .await?;
        let first = self.first(&mut stream).await?;
        // Later answers carry what changed: roots, keys or both.
        self.keep(
            &self.local_bundle_stream,
            stream,
            "local bundle",
            move |update| {
                if !update.upstream_x509_roots.is_empty() {
                    updates.x509_roots(authorities(update.upstream_x509_roots));
                }
                if !update.upstream_jwt_keys.is_empty() {
                    updates.jwt_keys(
                        update
                            .upstream_jwt_keys
                            .into_iter()
                            .map(jwt_key_from_proto)
                            .collect(),
                    );
                }
            },
        );
        Ok(UpstreamLocalBundle {
            x509_roots: authorities(first.upstream_x509_roots),
            jwt_keys: first
                .upstream_jwt_keys
                .into_iter()
                .map(jwt_key_from_proto)
                .collect(),
        })
    }
}
