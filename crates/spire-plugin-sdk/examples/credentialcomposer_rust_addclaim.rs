//! An example CredentialComposer written with spire-plugin-sdk: the Rust twin of the Go test
//! plugin `conformance/goplugins/credentialcomposer-addclaim`. It adds the claim
//! `claim_name` = `claim_value` to every workload JWT-SVID and, when `dns_name` is set, that
//! DNS name to every workload X509-SVID; everything else passes through unchanged.
//!
//! ```hcl
//! CredentialComposer "rustclaim" {
//!     plugin_cmd = "/path/to/credentialcomposer_rust_addclaim"
//!     plugin_data {
//!         claim_name = "department"
//!         claim_value = "payments"
//!     }
//! }
//! ```

use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use spiffe_core::{PublicKey, SpiffeId};
use spire_plugin::{CredentialComposer, JwtClaims, PluginError, PluginResult, X509SvidAttributes};
use spire_plugin_sdk::{Configure, CoreConfig, Plugin, decode_config, log};

#[derive(Debug, Default, Clone, serde::Deserialize)]
struct Config {
    #[serde(default)]
    claim_name: String,
    #[serde(default)]
    claim_value: String,
    #[serde(default)]
    dns_name: String,
}

#[derive(Debug, Default)]
struct AddClaim {
    config: RwLock<Option<Config>>,
}

impl AddClaim {
    fn config(&self) -> PluginResult<Config> {
        self.config
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| {
                PluginError::new(spire_plugin::Code::FailedPrecondition, "not configured")
            })
    }
}

#[async_trait::async_trait]
impl CredentialComposer for AddClaim {
    async fn compose_workload_x509_svid(
        &self,
        _id: &SpiffeId,
        _public_key: &PublicKey,
        mut a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let config = self.config()?;
        if !config.dns_name.is_empty() {
            a.dns_sans.push(config.dns_name);
        }
        Ok(a)
    }

    async fn compose_workload_jwt_svid(
        &self,
        id: &SpiffeId,
        mut claims: JwtClaims,
    ) -> PluginResult<JwtClaims> {
        let config = self.config()?;
        claims.insert(config.claim_name, config.claim_value.into());
        log::debug("Added claim", &[("spiffe_id", id.as_str())]);
        Ok(claims)
    }
}

#[async_trait::async_trait]
impl Configure for AddClaim {
    async fn configure(&self, _core: &CoreConfig, plugin_data: &str) -> PluginResult<()> {
        let config: Config = decode_config(plugin_data)?;
        if config.claim_name.is_empty() || config.claim_value.is_empty() {
            return Err(PluginError::invalid_argument(
                "claim_name and claim_value are required",
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
    let plugin = Arc::new(AddClaim::default());
    spire_plugin_sdk::serve(Plugin::credential_composer(plugin.clone()).with_configure(plugin))
        .await
}
