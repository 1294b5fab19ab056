//! The Kubernetes plugin family of spire-server and spire-agent, in its own crate so the
//! core stays free of it: `k8s_psat` node attestation (both halves), the `k8s` workload
//! attestor (containers located by `spire-containerinfo`) and the small Kubernetes API and kubelet client
//! they use ([`client`]).

pub mod bundle;
pub mod certmanager;
pub mod client;
pub mod psat;
pub mod workload;

/// A file's bytes, or Go's `*os.PathError` text (`open <path>: <errno text>`), the wording
/// every plugin here reports.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|e| spire_gocompat::os::path_error("open", &path.display().to_string(), &e))
}
