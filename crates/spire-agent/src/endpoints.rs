//! The agent's sockets: the public Workload API socket (with gRPC health) and the optional
//! admin socket (`spire.agent.debug.v1.Debug`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use spire_proto::grpc::health::v1::health_server::HealthServer;
use spire_proto::spire::agent::debug::v1 as debugv1;
use spire_proto::spire::api::types;
use spire_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tonic::{Request, Response, Status};

use crate::manager::Manager;
use crate::peertracker::{ProcFs, incoming};
use crate::workload::{HealthService, WorkloadApi};

/// Endpoint failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The socket could not be created.
    #[error("create UDS listener: {0}")]
    Listen(std::io::Error),
    /// Permissions could not be set.
    #[error("unable to change UDS permissions: {0}")]
    Chmod(std::io::Error),
    /// Serving failed.
    #[error("{0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Creates the parent directories, removes a stale socket, binds and sets `mode`.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, EndpointError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(EndpointError::Listen)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(EndpointError::Listen)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(EndpointError::Chmod)?;
    Ok(listener)
}

/// Serves the Workload API and health on `listener` until `shutdown` completes.
pub async fn serve_workload_api(
    listener: UnixListener,
    api: WorkloadApi,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), EndpointError> {
    tonic::transport::Server::builder()
        .add_service(SpiffeWorkloadApiServer::new(api))
        .add_service(HealthServer::new(HealthService))
        .serve_with_incoming_shutdown(incoming(listener, ProcFs::default()), shutdown)
        .await?;
    Ok(())
}

/// `spire.agent.debug.v1.Debug`.
#[derive(Debug, Clone)]
pub struct DebugService {
    manager: Arc<Manager>,
}

impl DebugService {
    /// Reports on `manager`.
    pub fn new(manager: Arc<Manager>) -> Self {
        Self { manager }
    }
}

#[tonic::async_trait]
impl debugv1::debug_server::Debug for DebugService {
    async fn get_info(
        &self,
        _req: Request<debugv1::GetInfoRequest>,
    ) -> Result<Response<debugv1::GetInfoResponse>, Status> {
        let mut svid_chain = Vec::new();
        for der in self.manager.agent_svid() {
            let facts =
                spire_pki::certificate_facts(&der).map_err(|e| Status::internal(e.to_string()))?;
            let id = spiffe_core::x509svid::id_from_der(&der)
                .ok()
                .map(|id| types::Spiffeid {
                    trust_domain: id.trust_domain_name().to_string(),
                    path: id.path().to_string(),
                });
            svid_chain.push(debugv1::get_info_response::Cert {
                id,
                expires_at: facts.not_after,
                subject: facts.subject,
            });
        }
        let x509 = i32::try_from(self.manager.x509_svid_count()).unwrap_or(i32::MAX);
        #[allow(deprecated, reason = "SPIRE still fills the deprecated svids_count")]
        let resp = debugv1::GetInfoResponse {
            svid_chain,
            uptime: i32::try_from(self.manager.uptime().as_secs()).unwrap_or(i32::MAX),
            svids_count: x509,
            last_sync_success: self
                .manager
                .last_sync()
                .map(crate::core::entry::to_unix)
                .unwrap_or(0),
            cached_x509_svids_count: x509,
            cached_jwt_svids_count: i32::try_from(self.manager.jwt_svid_count())
                .unwrap_or(i32::MAX),
            cached_svidstore_x509_svids_count: 0,
        };
        Ok(Response::new(resp))
    }
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve_admin_api(
    listener: UnixListener,
    manager: Arc<Manager>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), EndpointError> {
    tonic::transport::Server::builder()
        .add_service(debugv1::debug_server::DebugServer::new(DebugService::new(
            manager,
        )))
        .serve_with_incoming_shutdown(incoming(listener, ProcFs::default()), shutdown)
        .await?;
    Ok(())
}
