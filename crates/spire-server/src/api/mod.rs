//! The gRPC services.

pub mod agent;
pub mod bundle;
pub mod convert;
pub mod debug;
pub mod entry;
pub mod error;
pub mod health;
pub mod localauthority;
pub mod logger;
mod punycode;
pub mod svid;
pub mod sync;
pub mod trustdomain;
