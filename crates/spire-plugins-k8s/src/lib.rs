//! The Kubernetes plugin family of spire-server and spire-agent, in its own crate so the
//! core stays free of it: `k8s_psat` node attestation (both halves), the `k8s` workload
//! attestor (with the cgroup [`locator`]) and the small Kubernetes API and kubelet client
//! they use ([`client`]).

pub mod bundle;
pub mod client;
pub mod locator;
pub mod psat;
pub mod workload;
