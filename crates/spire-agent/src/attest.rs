//! Node attestation over `Agent/AttestAgent`: the first message carries the attestation
//! payload and a CSR without URI SAN; the server's challenges are relayed to the NodeAttestor
//! plugin through [`AttestationExchange`]; the final message carries the agent SVID. Then
//! `Bundle/GetBundle` on the same connection.

use async_trait::async_trait;
use spiffe_core::Bundle;
use spire_plugin::{AgentNodeAttestor, AttestationExchange, PluginError, PluginResult};
use spire_proto::spire::api::server::agent::v1 as agentv1;
use spire_proto::spire::api::server::bundle::v1 as bundlev1;
use spire_proto::spire::api::types;
use spire_tls::TlsConnector;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::client::{ClientError, RPC_TIMEOUT, bundle_from_proto, channel};

/// What attestation yields.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The agent SVID chain, leaf first.
    pub svid: Vec<Vec<u8>>,
    /// Whether the agent may re-attest instead of renewing.
    pub reattestable: bool,
    /// The trust domain bundle fetched right after.
    pub bundle: Bundle,
}

/// Attestation failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The server refused or failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The plugin failed; shown as SPIRE's plugin facade prefixes it.
    #[error("nodeattestor({name}): {error}")]
    Plugin {
        /// The plugin's name.
        name: String,
        /// What it said.
        error: PluginError,
    },
    /// The CSR could not be made.
    #[error("failed to generate CSR for attestation: {0}")]
    Csr(String),
}

impl AttestError {
    /// The gRPC status behind the failure, if the server answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            AttestError::Client(c) => c.status(),
            _ => None,
        }
    }

    /// Whether the server's certificate does not chain to the bundle used.
    pub fn is_unknown_authority(&self) -> bool {
        match self {
            AttestError::Client(c) => c.is_unknown_authority(),
            _ => false,
        }
    }
}

struct Exchange {
    client: agentv1::agent_client::AgentClient<Channel>,
    plugin_name: String,
    csr: Vec<u8>,
    tx: Option<mpsc::Sender<agentv1::AttestAgentRequest>>,
    stream: Option<tonic::Streaming<agentv1::AttestAgentResponse>>,
    result: Option<(Vec<Vec<u8>>, bool)>,
    error: Option<ClientError>,
}

impl Exchange {
    fn fail(&mut self, e: ClientError) -> PluginError {
        let msg = e.to_string();
        self.error = Some(e);
        PluginError::internal(msg)
    }
}

#[async_trait]
impl AttestationExchange for Exchange {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        let req = if self.stream.is_none() {
            agentv1::AttestAgentRequest {
                step: Some(agentv1::attest_agent_request::Step::Params(
                    agentv1::attest_agent_request::Params {
                        data: Some(types::AttestationData {
                            r#type: self.plugin_name.clone(),
                            payload: data,
                        }),
                        params: Some(agentv1::AgentX509svidParams {
                            csr: self.csr.clone(),
                        }),
                    },
                )),
            }
        } else {
            agentv1::AttestAgentRequest {
                step: Some(agentv1::attest_agent_request::Step::ChallengeResponse(data)),
            }
        };
        if self.stream.is_none() {
            let (tx, rx) = mpsc::channel(4);
            // The request must be queued before the call: the server answers (and so sends
            // headers) only after reading it.
            if tx.send(req).await.is_err() {
                return Err(PluginError::internal("attestation stream closed"));
            }
            self.tx = Some(tx);
            let call = self
                .client
                .attest_agent(tokio_stream::wrappers::ReceiverStream::new(rx));
            let stream = match tokio::time::timeout(RPC_TIMEOUT, call).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => {
                    return Err(self.fail(ClientError::Status {
                        context: "failed to attest",
                        status,
                    }));
                }
                Err(_) => return Err(self.fail(ClientError::Timeout("failed to attest"))),
            };
            self.stream = Some(stream);
        } else if let Some(tx) = &self.tx
            && tx.send(req).await.is_err()
        {
            return Err(PluginError::internal("attestation stream closed"));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(PluginError::internal("attestation stream missing"));
        };
        let resp = match tokio::time::timeout(RPC_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => {
                return Err(self.fail(ClientError::Protocol(
                    "failed to receive attestation response: stream ended".into(),
                )));
            }
            Ok(Err(status)) => {
                return Err(self.fail(ClientError::Status {
                    context: "failed to receive attestation response",
                    status,
                }));
            }
            Err(_) => return Err(self.fail(ClientError::Timeout("failed to attest"))),
        };
        match resp.step {
            Some(agentv1::attest_agent_response::Step::Challenge(c)) => Ok(Some(c)),
            Some(agentv1::attest_agent_response::Step::Result(r)) => {
                let chain = r.svid.map(|s| s.cert_chain).unwrap_or_default();
                if chain.is_empty() {
                    return Err(self.fail(ClientError::Protocol(
                        "failed to parse attestation response: attest response is missing SVID"
                            .into(),
                    )));
                }
                self.result = Some((chain, r.reattestable));
                // CloseSend.
                self.tx = None;
                Ok(None)
            }
            None => Err(self.fail(ClientError::Protocol(
                "failed to parse attestation response: empty response".into(),
            ))),
        }
    }
}

/// Attests with `attestor` (named `plugin_name` on the wire) over a fresh connection built
/// with `connector`, sending `csr`; then fetches the bundle.
pub async fn attest(
    address: &str,
    connector: TlsConnector,
    plugin_name: &str,
    attestor: &dyn AgentNodeAttestor,
    csr: Vec<u8>,
) -> Result<Attested, AttestError> {
    let ch = channel(address, connector)?;
    let mut exchange = Exchange {
        client: agentv1::agent_client::AgentClient::new(ch.clone()),
        plugin_name: plugin_name.to_string(),
        csr,
        tx: None,
        stream: None,
        result: None,
        error: None,
    };
    let outcome = attestor.attest(&mut exchange).await;
    if let Err(e) = outcome {
        return Err(match exchange.error.take() {
            Some(c) => AttestError::Client(c),
            None => AttestError::Plugin {
                name: plugin_name.to_string(),
                error: e,
            },
        });
    }
    let Some((svid, reattestable)) = exchange.result.take() else {
        return Err(AttestError::Client(ClientError::Protocol(
            "attestation finished without an SVID".into(),
        )));
    };
    let mut bundles = bundlev1::bundle_client::BundleClient::new(ch);
    let resp = tokio::time::timeout(
        RPC_TIMEOUT,
        bundles.get_bundle(bundlev1::GetBundleRequest::default()),
    )
    .await
    .map_err(|_| ClientError::Timeout("failed to get updated bundle"))?
    .map_err(|status| ClientError::Status {
        context: "failed to get updated bundle",
        status,
    })?;
    let bundle = bundle_from_proto(resp.get_ref())?;
    Ok(Attested {
        svid,
        reattestable,
        bundle,
    })
}
