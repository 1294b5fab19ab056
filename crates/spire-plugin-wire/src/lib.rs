//! The `spire-plugin` types on the wire: conversions to and from the protobuf messages of
//! SPIRE's plugin services, shared by the host (`spire-plugin-host`, which calls plugins) and
//! the SDK (`spire-plugin-sdk`, which serves them), so both sides read and write the same.
//!
//! - [`bundle`]: `spire.plugin.types.Bundle`, `X509Certificate` and `JWTKey`.
//! - [`composer`]: CredentialComposer attributes, and JWT claims as a `google.protobuf.Struct`
//!   (whose numbers are doubles: integral numbers come back as JSON integers, as Go's encoder
//!   writes them).
//! - [`svidstore`]: the SVIDStore's `X509SVID` and federated bundles (one DER blob per trust
//!   domain, the certificates concatenated, as SPIRE sends them).

pub mod bundle;
pub mod composer;
pub mod keymanager;
pub mod svidstore;
