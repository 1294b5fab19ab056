//! `oidc-discovery-provider`: SPIRE 1.13.3's OIDC discovery provider. It serves an OpenID
//! Connect discovery document (`/.well-known/openid-configuration`) and the JWT-SVID signing
//! keys (`/keys`) of a trust domain, so that OIDC relying parties can verify JWT-SVIDs.
//!
//! - `config`: the HCL configuration, SPIRE's defaults and errors.
//! - `keys`: the JWKS document (go-jose's member order, `alg`, `use`).
//! - `handler`: the HTTP answers, a pure function of the request and the key set (domain
//!   checks, forwarded headers, path prefix, caching headers).
//! - `source`: polling the server's bundle API, an agent's Workload API or a bundle file.
//! - `serve`: listeners (TCP, UNIX socket, HTTPS with a certificate reloaded from disk)
//!   and the health checks.
//! - `acme`: HTTPS with certificates from an ACME CA (autocert's behaviour: TLS-ALPN-01 on
//!   the serving listener, host policy, `DirCache` layout, renewal).
//! - `run`: the program.

pub mod acme;
pub mod config;
pub mod handler;
pub mod keys;
pub mod run;
pub mod serve;
pub mod source;
