//! NodeAttestor plugins, server and agent halves.
//!
//! `join_token` is special on the server (SPIRE's server validates the token itself, without
//! calling the plugin); here only the agent half exists.

pub mod http_challenge;
pub mod join_token;
pub mod sshpop;
pub use spire_gocompat::template;
#[cfg(test)]
mod testexchange;
pub mod x509pop;
