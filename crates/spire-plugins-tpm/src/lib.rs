//! `tpm_devid`: node attestation with a DevID certificate whose key lives in a TPM 2.0,
//! wire- and configuration-compatible with SPIRE 1.13.3's plugin of that name.
//!
//! - [`server`]: the server half (chain checks, certification check, credential-activation
//!   challenge, agent ID and selectors).
//! - [`agent`]: the agent half, talking to the TPM itself over a device file or a unix socket
//!   (`device`), with the handful of TPM 2.0 commands it needs marshalled here (`tpm2`).

pub mod agent;
mod device;
pub mod server;
mod tpm2;
mod wire;

pub use agent::{AgentConfig, TpmDevIdAgent};
pub use server::{ServerConfig, TpmDevIdServer};

/// The plugin name, also the selector type.
pub const PLUGIN_NAME: &str = "tpm_devid";

/// SHA-1 fingerprint of a DER certificate, lower-case hex (the agent ID suffix).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der,
    ))
}
