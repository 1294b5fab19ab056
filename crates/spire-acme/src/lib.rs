//! Certificates from an ACME CA (RFC 8555), obtained and renewed as Go's
//! `golang.org/x/crypto/acme/autocert` does, for the two SPIRE programs that serve HTTPS
//! with them: the OIDC discovery provider (`acme { }`, keys in autocert's cache files) and
//! the server's bundle endpoint (`https_web { acme { } }`, keys in the server's KeyManager,
//! as SPIRE's fork of autocert keeps them).
//!
//! - [`client`]: the protocol (directory, nonces, account, order, TLS-ALPN-01, finalize);
//! - [`jws`]: request signing through a [`spire_plugin::Signer`], so an account key held by
//!   a KeyManager never leaves it;
//! - [`autocert`]: the manager (host policy, first-hello issuance, renewal) and the
//!   ClientHello-driven TLS accept;
//! - [`store`]: the two key/certificate layouts;
//! - [`http`]: the CA's HTTP/1.1 client, every request bounded.

pub mod autocert;
pub mod client;
pub mod http;
pub mod jws;
pub mod store;

pub use autocert::{
    ACME_TLS_ALPN, HelloCert, HelloError, LETS_ENCRYPT_URL, Manager, Prompt, Settings, accept,
    random_jitter,
};
pub use http::AcmeHttp;
pub use store::{FileStore, KeyManagerStore, Store};
