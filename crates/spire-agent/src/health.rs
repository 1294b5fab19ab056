//! The agent's HTTP health listener (`health_checks { listener_enabled = true ... }`):
//! started once the Workload API listens (or after 8 s), it checks the agent's own Workload
//! API with `FetchX509Bundles` on the schedule and with the rules of [`crate::core::health`],
//! and answers `GET <live_path>` / `GET <ready_path>` from the last check with 200 or 500
//! and SPIRE's JSON body (`{"agent":{}}`, or `{"agent":{"make_new_x509_err":"..."}}`).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use spire_config::HealthChecksConfig;
use spire_proto::workload::X509BundlesRequest;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tokio::net::TcpListener;
use tonic::transport::{Endpoint, Uri};

use crate::core::health::{Assessment, START_TIMEOUT};

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The last check's outcome, shared by the checker and the endpoints.
#[derive(Debug, Default)]
struct Shared {
    last: Mutex<Option<Assessment>>,
}

/// Waits for the Workload API to listen (`listening`, or [`START_TIMEOUT`]), then checks
/// and serves until the process exits. `started` tells whether it listens by now.
pub async fn run(
    config: HealthChecksConfig,
    socket_path: PathBuf,
    listening: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = listening.clone();
    let _ = tokio::time::timeout(START_TIMEOUT, wait.wait_for(|v| *v)).await;
    let shared = Arc::new(Shared::default());
    tracing::debug!(subsystem_name = "health", "Initializing health checkers");
    let checks = check_loop(&shared, &socket_path, &listening);
    let listener = async {
        if config.listener_enabled {
            let addr = config.listen_address();
            tracing::info!(address = %addr, subsystem_name = "health", "Serving health checks");
            match TcpListener::bind(&addr).await {
                Ok(listener) => serve(listener, config, shared.clone()).await,
                Err(e) => tracing::warn!(
                    error = %format!("listen tcp {addr}: bind: {}", spire_gocompat::os::errno_text(&e)),
                    subsystem_name = "health",
                    "Error serving health checks"
                ),
            }
        }
    };
    // Both run until the task is aborted; the checker goes on when the listener cannot.
    tokio::join!(checks, listener);
}

async fn check_loop(
    shared: &Shared,
    socket_path: &std::path::Path,
    listening: &tokio::sync::watch::Receiver<bool>,
) {
    let mut seen_startup_error: Option<&'static str> = None;
    let mut failing_since: Option<(tokio::time::Instant, u64, &'static str)> = None;
    loop {
        let started = *listening.borrow();
        let unavailable = workload_api_unavailable(socket_path).await;
        let a = Assessment::of(started, unavailable);
        match (a.error(), failing_since) {
            (Some(err), None) => {
                if a.started {
                    tracing::error!(
                        check = "agent",
                        error = err,
                        subsystem_name = "health",
                        "Health check has failed"
                    );
                } else if seen_startup_error != Some(err) {
                    tracing::warn!(
                        check = "agent",
                        error = err,
                        subsystem_name = "health",
                        "Health check has failed. Starting up still."
                    );
                    seen_startup_error = Some(err);
                }
                tracing::warn!(
                    check = "agent",
                    error = err,
                    subsystem_name = "health",
                    "Health check failed"
                );
                failing_since = Some((tokio::time::Instant::now(), 1, err));
            }
            (Some(err), Some((since, n, _))) => {
                if a.started {
                    tracing::error!(
                        check = "agent",
                        error = err,
                        subsystem_name = "health",
                        "Health check has failed"
                    );
                }
                failing_since = Some((since, n + 1, err));
            }
            (None, Some((since, n, err))) => {
                tracing::info!(
                    check = "agent",
                    error = err,
                    failures = n,
                    duration = since.elapsed().as_secs_f64(),
                    subsystem_name = "health",
                    "Health check recovered"
                );
                failing_since = None;
            }
            (None, None) => {}
        }
        let next = a.next_interval();
        *shared.last.lock() = Some(a);
        tokio::time::sleep(next).await;
    }
}

/// Whether `FetchX509Bundles` on the agent's own socket fails with `Unavailable` (any other
/// answer, `PermissionDenied` for an agent with no identity included, counts as reachable).
async fn workload_api_unavailable(socket_path: &std::path::Path) -> bool {
    let path = socket_path.to_path_buf();
    let call = async move {
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|_| tonic::Status::unavailable("connection failed"))?;
        let mut client = SpiffeWorkloadApiClient::new(channel);
        let mut req = tonic::Request::new(X509BundlesRequest {});
        req.metadata_mut().insert(
            "workload.spiffe.io",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        let mut stream = client.fetch_x509_bundles(req).await?.into_inner();
        stream.message().await.map(|_| ())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Err(status)) => status.code() == tonic::Code::Unavailable,
        Ok(Ok(())) | Err(_) => false,
    }
}

/// The JSON body: `{"agent": details}`, `null` before the first check.
fn body(a: Option<&Assessment>, live: bool) -> String {
    let details = match a {
        None => serde_json::Value::Null,
        Some(a) => {
            let err = if live { a.live_err } else { a.ready_err };
            match err {
                Some(e) => serde_json::json!({ "make_new_x509_err": e }),
                None => serde_json::json!({}),
            }
        }
    };
    format!("{}\n", serde_json::json!({ "agent": details }))
}

fn respond(shared: &Shared, config: &HealthChecksConfig, path: &str) -> Response<Full<Bytes>> {
    let last = shared.last.lock().clone();
    let (ok, text, json) = if path == config.live_path {
        (
            last.as_ref().is_some_and(|a| a.live),
            body(last.as_ref(), true),
            true,
        )
    } else if path == config.ready_path {
        (
            last.as_ref().is_some_and(|a| a.ready),
            body(last.as_ref(), false),
            true,
        )
    } else {
        (false, "404 page not found\n".to_owned(), false)
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = match (json, ok) {
        (false, _) => StatusCode::NOT_FOUND,
        (true, true) => StatusCode::OK,
        (true, false) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let headers = resp.headers_mut();
    if json {
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
    } else {
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            "x-content-type-options",
            hyper::header::HeaderValue::from_static("nosniff"),
        );
    }
    resp
}

async fn serve(listener: TcpListener, config: HealthChecksConfig, shared: Arc<Shared>) {
    let config = Arc::new(config);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (config, shared) = (config.clone(), shared.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(&shared, &config, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HealthChecksConfig {
        HealthChecksConfig::default()
    }

    async fn text(resp: Response<Full<Bytes>>) -> (u16, String) {
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn answers_as_spire_s_checker() {
        let shared = Shared::default();
        let c = config();
        assert_eq!(
            text(respond(&shared, &c, "/live")).await,
            (500, "{\"agent\":null}\n".into())
        );
        *shared.last.lock() = Some(Assessment::of(false, true));
        assert_eq!(
            text(respond(&shared, &c, "/live")).await,
            (200, "{\"agent\":{}}\n".into())
        );
        assert_eq!(
            text(respond(&shared, &c, "/ready")).await,
            (
                500,
                "{\"agent\":{\"make_new_x509_err\":\"workload api is unavailable\"}}\n".into()
            )
        );
        *shared.last.lock() = Some(Assessment::of(true, false));
        assert_eq!(
            text(respond(&shared, &c, "/ready")).await,
            (200, "{\"agent\":{}}\n".into())
        );
        assert_eq!(
            text(respond(&shared, &c, "/other")).await,
            (404, "404 page not found\n".into())
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable() {
        let dir = std::env::temp_dir().join(format!("spire-rs-health-{}", std::process::id()));
        assert!(workload_api_unavailable(&dir.join("none.sock")).await);
    }
}
