//! The two listeners: the UNIX socket (every service; every caller is local; served through
//! `spire_uds` so that gRPC C-core clients are accepted too) and the TCP port (agent-facing
//! services over TLS with the server's SVID, client certificates optional and verified
//! against our bundles when given).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spire_proto::grpc::health::v1::health_server::HealthServer;
use spire_proto::spire::api::server::agent::v1::agent_server::AgentServer;
use spire_proto::spire::api::server::bundle::v1::bundle_server::BundleServer;
use spire_proto::spire::api::server::debug::v1::debug_server::DebugServer;
use spire_proto::spire::api::server::entry::v1::entry_server::EntryServer;
use spire_proto::spire::api::server::localauthority::v1::local_authority_server::LocalAuthorityServer;
use spire_proto::spire::api::server::logger::v1::logger_server::LoggerServer;
use spire_proto::spire::api::server::svid::v1::svid_server::SvidServer;
use spire_proto::spire::api::server::trustdomain::v1::trust_domain_server::TrustDomainServer;
use spire_proto::spirers::sync::v1::sync_server::SyncServer;
use spire_tls::{Authorize, PeerVerifier, TlsAcceptor};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use spire_uds::limits::{MAX_RECV_MESSAGE, OversizeLayer};

use crate::api;
use crate::auth::AuthLayer;
use crate::ratelimit::RateLimits;
use crate::state::Server;
use spire_telemetry::rpc::RpcMetricsLayer;

/// Errors starting the listeners.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointsError {
    /// The socket path or TCP address could not be bound.
    #[error("{0}")]
    Listen(String),
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] spire_tls::TlsError),
    /// A server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Binds the UNIX socket as SPIRE does: parent directory 0750, socket 0770, a stale socket
/// replaced.
fn bind_unix(path: &Path) -> Result<UnixListener, EndpointsError> {
    spire_uds::bind(path, 0o750, 0o770).map_err(|e| {
        EndpointsError::Listen(match e {
            spire_uds::BindError::Listen(e) => format!("error creating UDS listener: {e}"),
            other => other.to_string(),
        })
    })
}

/// Serves both listeners until `shutdown` resolves.
pub async fn serve(
    server: Arc<Server>,
    tcp_addr: SocketAddr,
    socket_path: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EndpointsError> {
    let limits = Arc::new(
        RateLimits::new(
            server.settings().rate_limit_attestation,
            server.settings().rate_limit_signing,
        )
        .with_metrics(server.metrics().clone()),
    );
    let agent = AgentServer::new(api::agent::AgentService::new(
        server.clone(),
        limits.clone(),
    ))
    .max_decoding_message_size(MAX_RECV_MESSAGE);
    let entry = EntryServer::new(api::entry::EntryService::new(server.clone()))
        .max_decoding_message_size(MAX_RECV_MESSAGE);
    let svid = SvidServer::new(api::svid::SvidService::new(server.clone(), limits.clone()))
        .max_decoding_message_size(MAX_RECV_MESSAGE);
    let bundle = BundleServer::new(api::bundle::BundleService::new(server.clone()));
    let trustdomain =
        TrustDomainServer::new(api::trustdomain::TrustDomainService::new(server.clone()));
    let localauthority = LocalAuthorityServer::new(
        api::localauthority::LocalAuthorityService::new(server.clone()),
    );
    let sync = SyncServer::new(api::sync::SyncService::new(server.clone()));

    // UNIX socket: everything.
    let uds = bind_unix(&socket_path)?;
    tracing::info!(
        address = %socket_path.display(),
        network = "unix",
        subsystem_name = "endpoints",
        "Starting Server APIs"
    );
    // Message limits as grpc-go's defaults (receive 4 MiB, send any size; tonic's defaults
    // for every service not set above), refused with grpc-go's code.
    let uds_router = tonic::transport::Server::builder()
        .layer(OversizeLayer)
        .layer(RpcMetricsLayer::new(server.metrics().clone()))
        .layer(AuthLayer::new(server.clone()))
        .add_service(agent.clone())
        .add_service(bundle.clone())
        .add_service(entry.clone())
        .add_service(svid.clone())
        .add_service(trustdomain.clone())
        .add_service(localauthority.clone())
        .add_service(LoggerServer::new(api::logger::LoggerService::new(
            server.clone(),
        )))
        .add_service(DebugServer::new(api::debug::DebugService::new(
            server.clone(),
        )))
        .add_service(HealthServer::new(api::health::HealthService::new(
            server.clone(),
        )));

    // TCP: agent-facing services over TLS.
    let verifier = PeerVerifier::new(server.tls_bundles().clone(), Authorize::Any);
    let tls = spire_tls::server_config(server.svid().clone(), Some(verifier))?;
    let acceptor = TlsAcceptor::from(tls);
    let tcp = TcpListener::bind(tcp_addr)
        .await
        .map_err(|e| EndpointsError::Listen(format!("could not bind {tcp_addr}: {e}")))?;
    tracing::info!(
        address = %tcp_addr,
        network = "tcp",
        subsystem_name = "endpoints",
        "Starting Server APIs"
    );
    let (conn_tx, conn_rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let conn_tx = conn_tx.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = conn_tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(address = %peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(address = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    let tcp_router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .layer(OversizeLayer)
        .layer(RpcMetricsLayer::new(server.metrics().clone()))
        .layer(AuthLayer::new(server.clone()))
        .add_service(agent)
        .add_service(bundle)
        .add_service(entry)
        .add_service(svid)
        .add_service(trustdomain)
        .add_service(localauthority)
        .add_service(sync);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = server.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.begin_stopping();
        let _ = stop_tx.send(true);
    });
    let mut stop_uds = stop_rx.clone();
    let mut stop_tcp = stop_rx;
    let uds_fut = uds_router.serve_with_incoming_shutdown(spire_uds::incoming(uds), async move {
        let _ = stop_uds.wait_for(|s| *s).await;
    });
    let tcp_fut =
        tcp_router.serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
            let _ = stop_tcp.wait_for(|s| *s).await;
        });
    let (a, b) = tokio::join!(uds_fut, tcp_fut);
    let _ = std::fs::remove_file(&socket_path);
    a?;
    b?;
    Ok(())
}
