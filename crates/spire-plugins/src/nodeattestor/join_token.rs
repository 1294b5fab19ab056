//! The agent half of `join_token`: the payload is the token itself.

use async_trait::async_trait;
use spire_plugin::{AgentNodeAttestor, AttestationExchange, PluginError, PluginResult};

/// Sends a join token as the attestation payload.
///
/// As in SPIRE, the plugin may be configured without a token: an agent that restarts with
/// its SVID on disk never attests, so it needs none; only an attestation without a token
/// fails ("join token was not provided").
pub struct JoinTokenAgent {
    token: Option<String>,
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
        Ok(Self { token: Some(token) })
    }

    /// The plugin without a token (none given by flag, `join_token` or `join_token_file`).
    pub fn without_token() -> Self {
        Self { token: None }
    }
}

#[async_trait]
impl AgentNodeAttestor for JoinTokenAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let Some(token) = &self.token else {
            return Err(PluginError::invalid_argument("join token was not provided"));
        };
        match exchange.send(token.as_bytes().to_vec()).await? {
            None => Ok(()),
            Some(_) => Err(PluginError::internal(
                "join_token does not expect a challenge",
            )),
        }
    }
}
