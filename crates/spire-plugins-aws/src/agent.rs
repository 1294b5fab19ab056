//! The agent half: the document and both signatures from IMDS, sent as the payload.

use async_trait::async_trait;
use serde::Deserialize;
use spire_plugin::{AgentNodeAttestor, AttestationExchange, PluginError, PluginResult};

use crate::IidAttestationData;
use crate::imds::Imds;

const DOC_PATH: &str = "instance-identity/document";
const SIG_PATH: &str = "instance-identity/signature";
const SIG_RSA2048_PATH: &str = "instance-identity/rsa2048";

/// `plugin_data` of the agent's `aws_iid` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentConfig {
    /// The IMDS endpoint (`http://169.254.169.254` when empty).
    #[serde(default)]
    pub ec2_metadata_endpoint: String,
}

/// The agent half of `aws_iid`.
#[derive(Debug, Clone)]
pub struct AwsIidAgent {
    endpoint: String,
    timeout: std::time::Duration,
}

impl AwsIidAgent {
    /// Builds the plugin.
    pub fn new(config: &AgentConfig) -> Self {
        Self {
            endpoint: config.ec2_metadata_endpoint.clone(),
            timeout: crate::imds::OPERATION_TIMEOUT,
        }
    }

    /// The same plugin with another IMDS operation bound (tests).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads the payload from IMDS.
    pub async fn fetch(&self) -> PluginResult<IidAttestationData> {
        let mut imds = Imds::with_timeout(&self.endpoint, self.timeout);
        let err = |e: crate::imds::ImdsError| PluginError::internal(e.to_string());
        let document = imds.dynamic_data(DOC_PATH).await.map_err(err)?;
        let signature = imds.dynamic_data(SIG_PATH).await.map_err(err)?;
        let signature_rsa2048 = imds.dynamic_data(SIG_RSA2048_PATH).await.map_err(err)?;
        Ok(IidAttestationData {
            document,
            signature,
            signature_rsa2048,
        })
    }
}

#[async_trait]
impl AgentNodeAttestor for AwsIidAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let data = self.fetch().await?;
        let payload = serde_json::to_vec(&data).map_err(|e| {
            PluginError::internal(format!("unable to marshal attestation data: {e}"))
        })?;
        if exchange.send(payload).await?.is_some() {
            return Err(PluginError::internal(
                "aws_iid: unexpected challenge from the server",
            ));
        }
        Ok(())
    }
}
