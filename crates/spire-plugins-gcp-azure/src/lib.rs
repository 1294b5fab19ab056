//! NodeAttestors `gcp_iit` and `azure_msi`, both halves, as SPIRE 1.13 has them: the agent
//! fetches an identity token from its cloud's instance metadata service, the server checks
//! its RS256 signature against the provider's published keys (aws-lc-rs), its claims, and
//! optionally asks the provider's API about the instance for more selectors.
//!
//! Production endpoints are the providers' own; environment variables named
//! `SPIRE_RS_TEST_*` replace them for tests only, and say so loudly in the log each time.

use std::sync::Arc;
use std::time::SystemTime;

use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::{PluginError, PluginResult};
use spire_plugin_host::hostservices::AgentLookupCell;

pub mod azure;
pub mod gcp;
pub mod jws;
/// `agent_path_template` (Go's text/template with SPIRE's sprig functions, in `spire-gocompat`).
pub use spire_gocompat::template;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;

/// The wall clock, passed in.
pub type NowFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The environment, passed in.
pub type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> EnvFn {
    Arc::new(|k| std::env::var(k).ok())
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The value of test-only override `var`, logged at warn level every time it is used.
fn test_override(var: &str, what: &str) -> Option<String> {
    let v = std::env::var(var).ok().filter(|v| !v.is_empty())?;
    tracing::warn!(
        variable = var,
        value = %v,
        "TEST OVERRIDE IN USE: {what} replaced by {var}; provider trust is NOT the real one. Never set this in production"
    );
    Some(v)
}

/// SPIRE's `idutil.AgentID`: `spiffe://<td>/spire/agent<path>`, the path checked.
fn agent_id(td: &TrustDomain, path: &str) -> Result<SpiffeId, String> {
    if let Err(e) = spiffe_core::id::validate_path(path) {
        return Err(format!("invalid agent path suffix {path:?}: {e}"));
    }
    SpiffeId::parse(&format!("spiffe://{td}/spire/agent{path}")).map_err(|e| e.to_string())
}

/// SPIRE's `AssessTOFU`: an agent ID already attested cannot attest again.
async fn assess_tofu(agents: &AgentLookupCell, agent_id: &str) -> PluginResult<()> {
    let Some(lookup) = agents.get() else {
        return Err(PluginError::new(
            spire_plugin::Code::FailedPrecondition,
            "unable to get agent info: AgentStore host service has not been initialized",
        ));
    };
    match lookup.is_attested(agent_id).await {
        Ok(false) => Ok(()),
        Ok(true) => {
            tracing::error!(
                spiffe_id = %agent_id,
                "Attestation data has already been used to attest an agent"
            );
            Err(PluginError::permission_denied(
                "attestation data has already been used to attest an agent",
            ))
        }
        Err(e) => Err(PluginError::internal(format!(
            "unable to get agent info: {e}"
        ))),
    }
}
