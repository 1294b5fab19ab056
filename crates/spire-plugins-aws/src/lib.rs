//! NodeAttestor `aws_iid`, both halves, wire-compatible with SPIRE 1.13's
//! (`pkg/{agent,server}/plugin/nodeattestor/awsiid`, `pkg/common/plugin/aws`).
//!
//! The agent reads its instance identity document and both signatures from the instance
//! metadata service (IMDSv2 with SPIRE's SDK fallbacks, [`imds`]) and sends them as one
//! JSON payload ([`IidAttestationData`]). The server checks the signature against the
//! certificate AWS publishes for the document's region ([`cacerts`], [`pkcs7`]), builds the
//! agent ID from `agent_path_template`, refuses an instance that attested before (trust on
//! first use) and derives the selectors.

pub mod agent;
pub mod api;
pub mod cacerts;
pub mod creds;
pub mod imds;
pub mod membership;
#[cfg(any(test, feature = "test-support"))]
pub mod moto;
pub mod pkcs7;
pub mod server;
/// `agent_path_template` (Go's text/template with SPIRE's sprig functions, in `spire-gocompat`).
pub use spire_gocompat::template;
#[cfg(any(test, feature = "test-support"))]
pub mod testsupport;

use serde::{Deserialize, Serialize};

/// The plugin name, also the selector type.
pub const PLUGIN_NAME: &str = "aws_iid";

/// The attestation payload (`caws.IIDAttestationData`): the document as IMDS served it,
/// its RSA-1024 signature and its RSA-2048 PKCS #7 signature, both base64 as served.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IidAttestationData {
    /// The instance identity document (JSON text).
    #[serde(default)]
    pub document: String,
    /// `instance-identity/signature`: base64 of an RSA PKCS #1 v1.5 SHA-256 signature.
    #[serde(default)]
    pub signature: String,
    /// `instance-identity/rsa2048`: base64 of a PKCS #7 SignedData, no PEM armour.
    #[serde(rename = "rsa2048", default)]
    pub signature_rsa2048: String,
}

/// The fields of the instance identity document SPIRE uses (`imds.InstanceIdentityDocument`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIdentityDocument {
    /// The AWS account.
    #[serde(default)]
    pub account_id: String,
    /// The instance ID (`i-...`).
    #[serde(default)]
    pub instance_id: String,
    /// The region (`us-east-1`).
    #[serde(default)]
    pub region: String,
    /// The availability zone (`us-east-1a`).
    #[serde(default)]
    pub availability_zone: String,
    /// The AMI (`ami-...`).
    #[serde(default)]
    pub image_id: String,
}
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
