//! The Kubernetes plugin family of spire-server and spire-agent, in its own crate so the
//! core stays free of it: `k8s_psat` node attestation (both halves) and the small Kubernetes
//! API client it uses ([`client`]).

pub mod client;
pub mod psat;
