//! An external CredentialComposer behind the trait the built-ins implement
//! (`spire.plugin.server.credentialcomposer.v1.CredentialComposer`). A method the plugin
//! does not implement (`Unimplemented`) leaves its input unchanged, as in SPIRE. The
//! attributes and claims are converted by `spire-plugin-wire`.

use std::sync::Arc;

use async_trait::async_trait;
use spiffe_core::{PublicKey, SpiffeId};
use spire_plugin::{
    Code, CredentialComposer, JwtClaims, PluginResult, X509CaAttributes, X509SvidAttributes,
};
use spire_plugin_wire::composer::{
    ca_from_proto, ca_to_proto, from_struct, svid_from_proto, svid_to_proto, to_struct,
};
use spire_proto::spire::plugin::server::credentialcomposer::v1 as ccv1;

use crate::conn::PluginChannel;
use crate::{ExternalPlugin, HostError};

/// The gRPC service a CredentialComposer plugin serves.
pub const SERVICE: &str = "spire.plugin.server.credentialcomposer.v1.CredentialComposer";

type Client = ccv1::credential_composer_client::CredentialComposerClient<PluginChannel>;

/// An external plugin serving the CredentialComposer interface.
#[derive(Debug, Clone)]
pub struct ExternalCredentialComposer {
    plugin: Arc<ExternalPlugin>,
    client: Client,
}

impl ExternalCredentialComposer {
    /// Binds a loaded plugin.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVICE)?;
        Ok(Self {
            plugin,
            client: Client::new(channel),
        })
    }

    /// Runs one Compose call: `None` when the plugin does not implement it.
    async fn compose<T>(
        &self,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> PluginResult<Option<T>> {
        match self.plugin.call(fut).await {
            Ok(response) => Ok(Some(response)),
            Err(e) if e.code == Code::Unimplemented => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The composed attributes, or the input when the plugin answered without any (SPIRE reads
/// an empty answer as "unchanged").
fn svid_or_input(
    answer: Option<ccv1::X509svidAttributes>,
    input: X509SvidAttributes,
) -> PluginResult<X509SvidAttributes> {
    match answer {
        Some(composed) => svid_from_proto(Some(composed)),
        None => Ok(input),
    }
}

#[async_trait]
impl CredentialComposer for ExternalCredentialComposer {
    async fn compose_server_x509_ca(&self, a: X509CaAttributes) -> PluginResult<X509CaAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeServerX509caRequest {
            attributes: Some(ca_to_proto(a.clone())),
        };
        match self.compose(client.compose_server_x509ca(request)).await? {
            // No attributes in the answer: unchanged, as SPIRE reads it.
            Some(response) if response.attributes.is_some() => ca_from_proto(response.attributes),
            _ => Ok(a),
        }
    }

    async fn compose_server_x509_svid(
        &self,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeServerX509svidRequest {
            attributes: Some(svid_to_proto(a.clone())),
        };
        let answer = self
            .compose(client.compose_server_x509svid(request))
            .await?;
        svid_or_input(answer.and_then(|r| r.attributes), a)
    }

    async fn compose_agent_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &PublicKey,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeAgentX509svidRequest {
            attributes: Some(svid_to_proto(a.clone())),
            spiffe_id: id.to_string(),
            public_key: public_key.spki_der().to_vec(),
        };
        let answer = self.compose(client.compose_agent_x509svid(request)).await?;
        svid_or_input(answer.and_then(|r| r.attributes), a)
    }

    async fn compose_workload_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &PublicKey,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeWorkloadX509svidRequest {
            attributes: Some(svid_to_proto(a.clone())),
            spiffe_id: id.to_string(),
            public_key: public_key.spki_der().to_vec(),
        };
        let answer = self
            .compose(client.compose_workload_x509svid(request))
            .await?;
        svid_or_input(answer.and_then(|r| r.attributes), a)
    }

    async fn compose_workload_jwt_svid(
        &self,
        id: &SpiffeId,
        claims: JwtClaims,
    ) -> PluginResult<JwtClaims> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeWorkloadJwtsvidRequest {
            attributes: Some(ccv1::JwtsvidAttributes {
                claims: Some(to_struct(claims.clone())),
            }),
            spiffe_id: id.to_string(),
        };
        let Some(response) = self
            .compose(client.compose_workload_jwtsvid(request))
            .await?
        else {
            return Ok(claims);
        };
        match response.attributes {
            Some(out) => Ok(out.claims.map(from_struct).unwrap_or_default()),
            None => Ok(claims),
        }
    }
}
