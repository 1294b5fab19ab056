//! The plugins built into spire-server and spire-agent.
//!
//! - [`catalog`]: the catalog rules both programs share (built-ins by type and name, SPIRE's
//!   built-ins not here yet, external plugins, count constraints, `plugin_data` decoding).
//! - [`credentialcomposer`]: `uniqueid` (server).
//! - [`keymanager`]: `memory` and `disk` (server and agent; the disk format is SPIRE's
//!   `keys.json`, so key files move between SPIRE and spire-rs).
//!
//! Architecture invariant: plugins depend on `spire-plugin` (the traits), `spiffe-core` and
//! `spire-pki`, never on the server or agent crates.

pub mod catalog;
pub mod credentialcomposer;
pub mod keymanager;
pub mod nodeattestor;
pub mod upstreamauthority;
pub mod workloadattestor;
