//! The SPIRE agent: attests to a SPIRE server, keeps the entries it is authorized for in
//! sync, gets workload SVIDs signed, caches and rotates them, and serves the SPIFFE Workload
//! API on a Unix socket. Wire compatible with SPIRE 1.13 servers; with a spire-rs server it
//! also takes pushed change notices (`spirers.sync.v1`) so new entries reach workloads at
//! once.
//!
//! Module map:
//! - [`core`]: the sans-IO decisions (rotation, sync protocol, entry/SVID cache with LRU
//!   eviction, JWT cache, attestation cache, backoff, bootstrap bookkeeping and the
//!   rebootstrap decision, tainted authorities). Takes `now` and random draws as arguments;
//!   no I/O.
//! - [`client`]: the gRPC client to the server (mutual TLS via `spire-tls`).
//! - [`attest`]: node attestation (`Agent/AttestAgent` + `Bundle/GetBundle`).
//! - [`manager`]: the async shell: sync loop, push stream, SVID issuance, agent SVID
//!   rotation, subscriptions.
//! - [`workload`], [`sds`] (Envoy SDS v3), [`workload_attestor`], [`peertracker`],
//!   [`endpoints`]: the Workload API and SDS on the public socket, the admin socket, caller
//!   identification and the PID-reuse guard.
//! - [`delegated`]: the Delegated Identity API on the admin socket (identities for
//!   workloads named by an authorized delegate).
//! - [`storage`], [`keys`], [`trustbundle`]: the data directory (`agent-data.json`), the
//!   agent SVID key slots (signers into the KeyManager; keys never leave it), the bootstrap
//!   bundle (file, or `trust_bundle_url` over https or a UNIX socket).
//! - [`health`]: the HTTP health listener (`health_checks`), checking the agent's own
//!   Workload API.
//! - [`agent`]: start-up and the run loop; [`plugins`]: external plugins (`plugin_cmd`)
//!   started before attesting; [`logging`]: logrus-format logs; [`cli`]: the
//!   `run` and `validate` commands; [`catalog`]: which plugins this build has (checked by
//!   both).
//!
//! Architecture invariant: only [`core`] decides; the other modules carry out its decisions
//! and never hold rotation, staleness or retry policy of their own.

pub mod agent;
pub mod attest;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod core;
pub mod delegated;
pub mod endpoints;
pub mod health;
pub mod keys;
pub mod logging;
pub mod manager;
pub mod peertracker;
pub mod plugins;
pub mod sds;
pub mod storage;
pub mod trustbundle;
pub mod workload;
pub mod workload_attestor;
