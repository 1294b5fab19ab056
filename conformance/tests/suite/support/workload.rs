//! Clients that are not the implementation under test: the crates.io `spiffe` crate on the
//! Workload API, and tonic clients (from `spire-proto`) on the admin sockets.

use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use spiffe::WorkloadApiClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Agent, Deadline};

/// A gRPC channel over a UNIX socket.
pub async fn uds_channel(path: &Path) -> Result<Channel, String> {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| e.to_string())
}

/// A Workload API client of the `spiffe` crate on the agent's socket.
pub async fn client(agent: &Agent) -> Result<WorkloadApiClient, String> {
    WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .map_err(|e| e.to_string())
}

/// The X509 context (all SVIDs and bundles) once it has an SVID for `spiffe_id`.
pub async fn wait_context(agent: &Agent, spiffe_id: &str, secs: u64) -> spiffe::X509Context {
    let d = Deadline::new(format!("spiffe crate: X509-SVID for {spiffe_id}"), secs);
    loop {
        let last = match client(agent).await {
            Ok(c) => match c.fetch_x509_context().await {
                Ok(ctx) => {
                    if ctx
                        .svids()
                        .iter()
                        .any(|s| s.spiffe_id().to_string() == spiffe_id)
                    {
                        return ctx;
                    }
                    format!("{} SVIDs", ctx.svids().len())
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        d.tick(last).await;
    }
}

/// A JWT-SVID for `audience` via the `spiffe` crate, retried until the deadline.
pub async fn wait_jwt(agent: &Agent, audience: &str, secs: u64) -> spiffe::JwtSvid {
    let d = Deadline::new(format!("spiffe crate: JWT-SVID for {audience}"), secs);
    loop {
        let last = match client(agent).await {
            Ok(c) => match c.fetch_jwt_svid([audience], None).await {
                Ok(s) => return s,
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        d.tick(last).await;
    }
}

/// Runs `fut` with a timeout, failing the scenario if it does not finish.
pub async fn timeout<T>(what: &str, secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs}s"))
}
