//! Built-in CredentialComposers (server).

pub mod uniqueid;
