//! The agent's sockets: the public Workload API socket (with Envoy SDS and gRPC health) and
//! the optional admin socket (`spire.agent.debug.v1.Debug` and
//! `spire.api.agent.delegatedidentity.v1.DelegatedIdentity`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use spire_proto::grpc::health::v1::health_server::HealthServer;
use spire_proto::spire::agent::debug::v1 as debugv1;
use spire_proto::spire::api::types;
use spire_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tonic::{Request, Response, Status};

use crate::delegated::DelegatedIdentityService;
use crate::manager::Manager;
use crate::peertracker::{ProcFs, incoming};
use crate::sds::SdsService;
use crate::workload::{HealthService, WorkloadApi};
use spire_proto::spire::api::agent::delegatedidentity::v1::delegated_identity_server::DelegatedIdentityServer;

/// Endpoint failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The socket could not be set up.
    #[error(transparent)]
    Bind(#[from] spire_uds::BindError),
    /// Serving failed.
    #[error("{0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Mode of directories created for the agent's sockets (SPIRE's `prepareEndpoints`).
pub const SOCKET_DIR_MODE: u32 = 0o755;

/// Creates the parent directories (0755, as SPIRE), removes a stale socket, binds and sets
/// `mode`; `what` names the directory in the log line SPIRE prints when it creates it
/// (`spire agent UDS` or `admin UDS`).
pub fn bind_logged(path: &Path, mode: u32, what: &str) -> Result<UnixListener, EndpointError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        tracing::info!(dir = %dir.display(), "Creating {what} directory");
    }
    Ok(spire_uds::bind(path, SOCKET_DIR_MODE, mode)?)
}

/// Creates the parent directories, removes a stale socket, binds and sets `mode`.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, EndpointError> {
    Ok(spire_uds::bind(path, SOCKET_DIR_MODE, mode)?)
}

/// Serves the Workload API, SDS and health on `listener` until `shutdown` completes.
pub async fn serve_workload_api(
    listener: UnixListener,
    api: WorkloadApi,
    sds: SdsService,
    metrics: spire_telemetry::Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), EndpointError> {
    // grpc-go's 4 MiB receive limit (tonic's default too), refused with grpc-go's code.
    tonic::transport::Server::builder()
        .layer(spire_uds::limits::OversizeLayer)
        .layer(spire_telemetry::rpc::RpcMetricsLayer::new(metrics).with_connection_metrics())
        .add_service(SpiffeWorkloadApiServer::new(api))
        .add_service(
            spire_proto::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer::new(sds),
        )
        .add_service(HealthServer::new(HealthService))
        .serve_with_incoming_shutdown(incoming(listener, ProcFs::default()), shutdown)
        .await?;
    Ok(())
}

/// How long a `GetInfo` answer is reused (SPIRE's `cacheExpiry`).
pub const GET_INFO_CACHE: Duration = Duration::from_secs(5);

/// Go's zero `time.Time` as Unix seconds: what SPIRE reports as the last sync before any.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// `spire.agent.debug.v1.Debug`.
#[derive(Debug, Clone)]
pub struct DebugService {
    manager: Arc<Manager>,
    cached: Arc<Mutex<Option<(Instant, debugv1::GetInfoResponse)>>>,
}

impl DebugService {
    /// Reports on `manager`.
    pub fn new(manager: Arc<Manager>) -> Self {
        Self {
            manager,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// The agent SVID's verified chain, leaf first and the bundle's authority last, as
    /// SPIRE reports it.
    fn svid_chain(&self) -> Result<Vec<debugv1::get_info_response::Cert>, DebugError> {
        let chain = self.manager.agent_svid();
        let leaf = chain.first().ok_or(DebugError::NoAgentSvid)?;
        let authorities = self
            .manager
            .bundle()
            .map(|b| b.x509_ders())
            .unwrap_or_default();
        let above = spiffe_core::x509svid::verify_x509_path(
            leaf,
            &chain[1..],
            &authorities,
            self.manager.now(),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "Failed to verify agent SVID");
            DebugError::VerifyAgentSvid(e.to_string())
        })?;
        let mut out = Vec::with_capacity(1 + above.len());
        for der in std::iter::once(leaf).chain(above.iter()) {
            let facts = spire_pki::certificate_facts(der)
                .map_err(|e| DebugError::Certificate(e.to_string()))?;
            let id = spiffe_core::x509svid::id_from_der(der)
                .ok()
                .map(|id| types::Spiffeid {
                    trust_domain: id.trust_domain_name().to_string(),
                    path: id.path().to_string(),
                });
            out.push(debugv1::get_info_response::Cert {
                id,
                expires_at: facts.not_after,
                subject: facts.subject,
            });
        }
        Ok(out)
    }
}

/// Why the admin Debug API could not answer; all are `Internal`, with SPIRE's messages.
#[derive(Debug, thiserror::Error)]
enum DebugError {
    /// The agent holds no SVID.
    #[error("failed to verify agent SVID: no certificates found")]
    NoAgentSvid,
    /// The agent SVID does not chain to the bundle.
    #[error("failed to verify agent SVID: {0}")]
    VerifyAgentSvid(String),
    /// A certificate of the chain could not be read.
    #[error("{0}")]
    Certificate(String),
    /// A count does not fit the response's field.
    #[error("{0}")]
    OutOfRange(&'static str),
}

impl From<DebugError> for Status {
    fn from(e: DebugError) -> Status {
        Status::internal(e.to_string())
    }
}

#[tonic::async_trait]
impl debugv1::debug_server::Debug for DebugService {
    async fn get_info(
        &self,
        _req: Request<debugv1::GetInfoRequest>,
    ) -> Result<Response<debugv1::GetInfoResponse>, Status> {
        if let Some((at, resp)) = self.cached.lock().as_ref()
            && at.elapsed() < GET_INFO_CACHE
        {
            return Ok(Response::new(resp.clone()));
        }
        let svid_chain = self.svid_chain()?;
        let x509 = i32::try_from(self.manager.x509_svid_count())
            .map_err(|_| DebugError::OutOfRange("out of range value for X.509 SVIDs count"))?;
        #[allow(deprecated, reason = "SPIRE still fills the deprecated svids_count")]
        let resp = debugv1::GetInfoResponse {
            svid_chain,
            uptime: i32::try_from(self.manager.uptime().as_secs())
                .map_err(|_| DebugError::OutOfRange("invalid value for uptime"))?,
            svids_count: x509,
            last_sync_success: self
                .manager
                .last_sync()
                .map(crate::core::entry::to_unix)
                .unwrap_or(GO_ZERO_UNIX),
            cached_x509_svids_count: x509,
            cached_jwt_svids_count: i32::try_from(self.manager.jwt_svid_count())
                .map_err(|_| DebugError::OutOfRange("out of range value for JWT SVIDs count"))?,
            cached_svidstore_x509_svids_count: i32::try_from(self.manager.svid_store_count().await)
                .map_err(|_| {
                    DebugError::OutOfRange("out of range value for SVIDStore X.509 SVIDs count")
                })?,
        };
        *self.cached.lock() = Some((Instant::now(), resp.clone()));
        Ok(Response::new(resp))
    }
}

/// Serves the admin APIs (Debug and Delegated Identity) on `listener` until `shutdown`
/// completes.
pub async fn serve_admin_api(
    listener: UnixListener,
    manager: Arc<Manager>,
    delegated: DelegatedIdentityService,
    metrics: spire_telemetry::Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), EndpointError> {
    // SPIRE's admin endpoints run the same middleware as the Workload API's: RPC metrics,
    // and the Delegated Identity API's "connection" metrics.
    tonic::transport::Server::builder()
        .layer(spire_uds::limits::OversizeLayer)
        .layer(spire_telemetry::rpc::RpcMetricsLayer::new(metrics).with_connection_metrics())
        .add_service(debugv1::debug_server::DebugServer::new(DebugService::new(
            manager,
        )))
        .add_service(DelegatedIdentityServer::new(delegated))
        .serve_with_incoming_shutdown(incoming(listener, ProcFs::default()), shutdown)
        .await?;
    Ok(())
}
