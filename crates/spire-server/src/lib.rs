//! spire-server as a library; the binary is a thin shell over it.
//!
//! - [`run`]: assembles everything and runs until a signal.
//! - [`catalog`]: plugins from `plugins {}`.
//! - [`ca`]: signing, the CA manager (slots A/B, journal) and the pure rotation rules.
//! - [`index`]: the in-memory index of entries and agents (authorization, sync).
//! - [`registry`]: the datastore handle, the index and change notices behind every write;
//!   following other servers' writes through the event tables.
//! - [`auth`]: caller identification and SPIRE's authorization policy.
//! - [`api`]: the gRPC services.
//! - [`endpoints`]: the UNIX socket and TLS listeners.
//! - [`federation`]: the bundle endpoint and federated bundle refresh.
//! - [`cli`]: the `run` and `validate` commands.

pub mod api;
pub mod auth;
pub mod bundleplugins;
pub mod ca;
pub mod catalog;
pub mod cli;
pub mod ds_metrics;
pub mod endpoints;
pub mod federation;
pub mod health_http;
pub mod index;
pub mod ratelimit;
pub mod registry;
pub mod run;
pub mod state;
pub mod upstream_spire;

#[cfg(test)]
mod clock_tests;
#[cfg(test)]
mod shared_db_tests;
