//! SPIFFE federation: the bundle endpoint we serve ([`endpoint`]) and the bundle
//! endpoints of the trust domains we federate with, fetched and refreshed ([`client`]).

pub mod client;
pub mod endpoint;
pub mod manager;
