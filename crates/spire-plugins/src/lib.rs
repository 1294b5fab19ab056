//! The plugins built into spire-server and spire-agent.
//!
//! - [`keymanager`]: `memory` and `disk` (server and agent; the disk format is SPIRE's
//!   `keys.json`, so key files move between SPIRE and spire-rs).
//!
//! Architecture invariant: plugins depend on `spire-plugin` (the traits), `spiffe-core` and
//! `spire-pki`, never on the server or agent crates.

pub mod keymanager;
pub mod nodeattestor;
pub mod workloadattestor;
