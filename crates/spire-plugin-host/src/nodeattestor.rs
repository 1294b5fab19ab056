//! External NodeAttestors, both halves, behind the traits the built-ins implement:
//! `spire.plugin.server.nodeattestor.v1.NodeAttestor/Attest` (the server: payload in,
//! challenges out until the agent's attributes) and
//! `spire.plugin.agent.nodeattestor.v1.NodeAttestor/AidAttestation` (the agent: payload out,
//! challenge responses for the server's challenges). The failures are SPIRE's facade's; the
//! program adds the `nodeattestor(<name>): ` prefix, as it does for built-ins.

use std::sync::Arc;

use crate::conn::PluginChannel;
use async_trait::async_trait;
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, Code, PluginError,
    PluginResult, ServerNodeAttestor,
};
use spire_proto::spire::plugin::agent::nodeattestor::v1 as agentv1;
use spire_proto::spire::plugin::server::nodeattestor::v1 as serverv1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{ExternalPlugin, HostError};

/// The gRPC service of a server NodeAttestor plugin.
pub const SERVER_SERVICE: &str = "spire.plugin.server.nodeattestor.v1.NodeAttestor";
/// The gRPC service of an agent NodeAttestor plugin.
pub const AGENT_SERVICE: &str = "spire.plugin.agent.nodeattestor.v1.NodeAttestor";

fn internal(message: &str) -> PluginError {
    PluginError::new(Code::Internal, message)
}

/// Reads the plugin's next stream message within the call timeout.
async fn next<T>(
    plugin: &ExternalPlugin,
    stream: &mut tonic::Streaming<T>,
) -> PluginResult<Option<T>> {
    match tokio::time::timeout(plugin.call_timeout(), stream.message()).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(status)) => Err(plugin.call_error(&status).await),
        Err(_) => Err(plugin.timeout_error()),
    }
}

/// An external server-side NodeAttestor.
#[derive(Debug, Clone)]
pub struct ExternalServerNodeAttestor {
    plugin: Arc<ExternalPlugin>,
    client: serverv1::node_attestor_client::NodeAttestorClient<PluginChannel>,
}

impl ExternalServerNodeAttestor {
    /// Binds a loaded plugin to the server NodeAttestor interface.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVER_SERVICE)?;
        Ok(Self {
            plugin,
            client: serverv1::node_attestor_client::NodeAttestorClient::new(channel),
        })
    }
}

#[async_trait]
impl ServerNodeAttestor for ExternalServerNodeAttestor {
    async fn attest(
        &self,
        payload: Vec<u8>,
        challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        use serverv1::attest_request::Request;
        use serverv1::attest_response::Response;
        if payload.is_empty() {
            return Err(PluginError::invalid_argument("payload cannot be empty"));
        }
        let (tx, rx) = mpsc::channel(2);
        let closed = || internal("plugin closed stream unexpectedly");
        tx.send(serverv1::AttestRequest {
            request: Some(Request::Payload(payload)),
        })
        .await
        .map_err(|_| closed())?;
        let mut client = self.client.clone();
        let call = client.attest(ReceiverStream::new(rx));
        let mut stream = match tokio::time::timeout(self.plugin.call_timeout(), call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return Err(self.plugin.call_error(&status).await),
            Err(_) => return Err(self.plugin.timeout_error()),
        };
        let attributes = loop {
            let Some(message) = next(&self.plugin, &mut stream).await? else {
                return Err(closed());
            };
            match message.response {
                Some(Response::AgentAttributes(a)) => break a,
                Some(Response::Challenge(challenge)) => {
                    let answer = challenger.challenge(challenge).await?;
                    tx.send(serverv1::AttestRequest {
                        request: Some(Request::ChallengeResponse(answer)),
                    })
                    .await
                    .map_err(|_| closed())?;
                }
                None => {
                    return Err(internal(
                        "plugin response missing challenge or agent attributes",
                    ));
                }
            }
        };
        if attributes.spiffe_id.is_empty() {
            return Err(internal("plugin response missing agent ID"));
        }
        let agent_id = spiffe_core::SpiffeId::parse(&attributes.spiffe_id).map_err(|e| {
            internal(&format!(
                "plugin returned an invalid agent ID {:?}: {e}",
                attributes.spiffe_id
            ))
        })?;
        Ok(AttestedAgent {
            agent_id,
            selector_values: attributes.selector_values,
            can_reattest: attributes.can_reattest,
        })
    }
}

/// An external agent-side NodeAttestor.
#[derive(Debug, Clone)]
pub struct ExternalAgentNodeAttestor {
    plugin: Arc<ExternalPlugin>,
    client: agentv1::node_attestor_client::NodeAttestorClient<PluginChannel>,
}

impl ExternalAgentNodeAttestor {
    /// Binds a loaded plugin to the agent NodeAttestor interface.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(AGENT_SERVICE)?;
        Ok(Self {
            plugin,
            client: agentv1::node_attestor_client::NodeAttestorClient::new(channel),
        })
    }
}

#[async_trait]
impl AgentNodeAttestor for ExternalAgentNodeAttestor {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        use agentv1::payload_or_challenge_response::Data;
        let (tx, rx) = mpsc::channel::<agentv1::Challenge>(2);
        let mut client = self.client.clone();
        let call = client.aid_attestation(ReceiverStream::new(rx));
        let mut stream = match tokio::time::timeout(self.plugin.call_timeout(), call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return Err(self.plugin.call_error(&status).await),
            Err(_) => return Err(self.plugin.timeout_error()),
        };
        let payload = match next(&self.plugin, &mut stream).await? {
            None => {
                return Err(internal(
                    "plugin closed stream before returning attestation data",
                ));
            }
            Some(agentv1::PayloadOrChallengeResponse {
                data: Some(Data::Payload(p)),
            }) if !p.is_empty() => p,
            Some(_) => return Err(internal("plugin response missing attestation payload")),
        };
        let before_challenge = || internal("plugin closed stream before handling the challenge");
        let mut challenge = exchange.send(payload).await?;
        while let Some(c) = challenge {
            tx.send(agentv1::Challenge { challenge: c })
                .await
                .map_err(|_| before_challenge())?;
            let answer = match next(&self.plugin, &mut stream).await? {
                None => return Err(before_challenge()),
                Some(agentv1::PayloadOrChallengeResponse {
                    data: Some(Data::ChallengeResponse(r)),
                }) if !r.is_empty() => r,
                Some(_) => return Err(internal("plugin response missing challenge response")),
            };
            challenge = exchange.send(answer).await?;
        }
        // Closing our side ends the plugin's handler.
        drop(tx);
        Ok(())
    }
}
