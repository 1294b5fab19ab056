//! An example server NodeAttestor written with spire-plugin-sdk, the server half of the
//! `sharedsecret` pair (wire-compatible with the Go test plugin of the same name): it reads
//! `{"node": ...}`, challenges the agent with a random nonce, checks
//! hex(HMAC-SHA256(shared_secret, nonce)) in constant time, and attests the agent as
//! `spiffe://<trust domain>/spire/agent/sharedsecret/<node>` with the selector `node:<node>`.
//!
//! ```hcl
//! NodeAttestor "sharedsecret" {
//!     plugin_cmd = "/path/to/nodeattestor_rust_sharedsecret_server"
//!     plugin_data { shared_secret = "..." }
//! }
//! ```

use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use spire_plugin::{AttestedAgent, Challenger, PluginError, PluginResult, ServerNodeAttestor};
use spire_plugin_sdk::{Configure, CoreConfig, Plugin, decode_config, log};

#[derive(Debug, Default, Clone, serde::Deserialize)]
struct Config {
    #[serde(default)]
    shared_secret: String,
}

#[derive(Debug, Default)]
struct SharedSecret {
    state: RwLock<Option<(Config, String)>>,
}

#[derive(serde::Deserialize)]
struct Payload {
    #[serde(default)]
    node: String,
}

#[async_trait::async_trait]
impl ServerNodeAttestor for SharedSecret {
    async fn attest(
        &self,
        payload: Vec<u8>,
        challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        let (config, trust_domain) =
            self.state
                .read()
                .ok()
                .and_then(|s| s.clone())
                .ok_or_else(|| {
                    PluginError::new(spire_plugin::Code::FailedPrecondition, "not configured")
                })?;
        let payload: Payload = serde_json::from_slice(&payload)
            .ok()
            .filter(|p: &Payload| !p.node.is_empty())
            .ok_or_else(|| PluginError::invalid_argument("malformed payload"))?;
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| PluginError::internal("unable to generate challenge"))?;
        let answer = challenger.challenge(nonce.to_vec()).await?;
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            config.shared_secret.as_bytes(),
        );
        let answer = hex::decode(answer).unwrap_or_default();
        if aws_lc_rs::hmac::verify(&key, &nonce, &answer).is_err() {
            return Err(PluginError::permission_denied(
                "challenge response does not match the shared secret",
            ));
        }
        let agent_id = spiffe_core::SpiffeId::parse(&format!(
            "spiffe://{trust_domain}/spire/agent/sharedsecret/{}",
            payload.node
        ))
        .map_err(|e| PluginError::invalid_argument(format!("invalid node name: {e}")))?;
        log::info("Attested node", &[("node", &payload.node)]);
        Ok(AttestedAgent {
            agent_id,
            selector_values: vec![format!("node:{}", payload.node)],
            can_reattest: true,
        })
    }
}

#[async_trait::async_trait]
impl Configure for SharedSecret {
    async fn configure(&self, core: &CoreConfig, plugin_data: &str) -> PluginResult<()> {
        let config: Config = decode_config(plugin_data)?;
        if config.shared_secret.is_empty() {
            return Err(PluginError::invalid_argument("shared_secret is required"));
        }
        if let Ok(mut s) = self.state.write() {
            *s = Some((config, core.trust_domain.clone()));
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let plugin = Arc::new(SharedSecret::default());
    spire_plugin_sdk::serve(Plugin::server_node_attestor(plugin.clone()).with_configure(plugin))
        .await
}
