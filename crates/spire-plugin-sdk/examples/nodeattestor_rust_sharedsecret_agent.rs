//! An example agent NodeAttestor written with spire-plugin-sdk, the agent half of the
//! `sharedsecret` pair (the Rust twin of `conformance/goplugins/agent-nodeattestor-sharedsecret`,
//! wire-compatible with it): it sends `{"node":"<node_name>"}` and answers the server's
//! nonce with hex(HMAC-SHA256(shared_secret, nonce)).
//!
//! ```hcl
//! NodeAttestor "sharedsecret" {
//!     plugin_cmd = "/path/to/nodeattestor_rust_sharedsecret_agent"
//!     plugin_data { node_name = "node1"  shared_secret = "..." }
//! }
//! ```

use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use spire_plugin::{AgentNodeAttestor, AttestationExchange, PluginError, PluginResult};
use spire_plugin_sdk::{Configure, CoreConfig, Plugin, decode_config};

#[derive(Debug, Default, Clone, serde::Deserialize)]
struct Config {
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    shared_secret: String,
}

#[derive(Debug, Default)]
struct SharedSecret {
    config: RwLock<Option<Config>>,
}

#[async_trait::async_trait]
impl AgentNodeAttestor for SharedSecret {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let config = self
            .config
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| {
                PluginError::new(spire_plugin::Code::FailedPrecondition, "not configured")
            })?;
        let payload = serde_json::json!({ "node": config.node_name }).to_string();
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            config.shared_secret.as_bytes(),
        );
        let mut challenge = exchange.send(payload.into_bytes()).await?;
        while let Some(nonce) = challenge {
            let tag = aws_lc_rs::hmac::sign(&key, &nonce);
            challenge = exchange
                .send(hex::encode(tag.as_ref()).into_bytes())
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Configure for SharedSecret {
    async fn configure(&self, _core: &CoreConfig, plugin_data: &str) -> PluginResult<()> {
        let config: Config = decode_config(plugin_data)?;
        if config.node_name.is_empty() || config.shared_secret.is_empty() {
            return Err(PluginError::invalid_argument(
                "node_name and shared_secret are required",
            ));
        }
        if let Ok(mut c) = self.config.write() {
            *c = Some(config);
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let plugin = Arc::new(SharedSecret::default());
    spire_plugin_sdk::serve(Plugin::agent_node_attestor(plugin.clone()).with_configure(plugin))
        .await
}
