//! SPIFFE identity core: SPIFFE IDs and trust domains, X509-SVIDs, JWT-SVIDs, trust bundles
//! and keys.
//!
//! This crate performs no I/O and never reads the clock: every check that depends on time
//! takes `now` as an argument. Every type that carries a guarantee (a [`SpiffeId`] is valid,
//! an [`X509Svid`] follows the X509-SVID rules) can only be built by parsing.
//!
//! Module map:
//! - [`id`]: [`SpiffeId`], [`TrustDomain`] and their parse errors.
//! - [`keys`]: [`KeyType`], [`PrivateKey`], [`PublicKey`], JWS algorithms (aws-lc-rs).
//! - [`x509svid`]: X509-SVID structure rules and chain verification.
//! - [`jwt`]: JWT-SVID signing and validation.
//! - [`jwk`]: JSON Web Keys in go-jose's member order.
//! - [`bundle`]: the SPIFFE bundle format, PEM bundles and bundle sets.

pub mod bundle;
pub mod id;
pub mod jwk;
pub mod jwt;
pub mod keys;
pub mod x509svid;

pub use bundle::{Bundle, BundleError, BundleSet, JwtBundleSource, X509BundleSource};
pub use id::{IdError, SpiffeId, TrustDomain};
pub use jwt::{JwtSvid, JwtSvidError};
pub use keys::{JwsAlgorithm, KeyError, KeyType, PrivateKey, PublicKey};
pub use x509svid::{X509Svid, X509SvidError};

#[cfg(test)]
pub(crate) mod testpki;

/// PEM-encodes one block with `\n` line endings, as Go's `pem.Encode` writes.
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), config)
}
