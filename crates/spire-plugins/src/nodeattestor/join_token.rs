//! The agent half of `join_token`: the payload is the token itself.

use async_trait::async_trait;
use spire_plugin::{AgentNodeAttestor, AttestationExchange, PluginError, PluginResult};

/// Sends a join token as the attestation payload.
pub struct JoinTokenAgent {
    token: String,
}

impl std::fmt::Debug for JoinTokenAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: never printed.
        f.write_str("JoinTokenAgent")
    }
}

impl JoinTokenAgent {
    /// A token from `join_token`, `join_token_file` or `-joinToken`.
    pub fn new(token: impl Into<String>) -> PluginResult<Self> {
        let token = token.into().trim().to_string();
        if token.is_empty() {
            return Err(PluginError::invalid_argument("join token is required"));
        }
        Ok(Self { token })
    }
}

#[async_trait]
impl AgentNodeAttestor for JoinTokenAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        match exchange.send(self.token.as_bytes().to_vec()).await? {
            None => Ok(()),
            Some(_) => Err(PluginError::internal(
                "join_token does not expect a challenge",
            )),
        }
    }
}
