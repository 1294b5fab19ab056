//! The optional HTTP health listener (`health_checks { listener_enabled = true ... }`):
//! `GET <live_path>` and `GET <ready_path>` answer 200 or 500 with a JSON body of details
//! per subsystem, as SPIRE's health checker does.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use spire_config::HealthChecksConfig;
use tokio::net::TcpListener;

use crate::state::Server;

/// (live, ready, details). As in SPIRE, the datastore check counts for both live and
/// ready (a database that does not answer makes the server neither), the CA for ready.
async fn state(server: &Server) -> (bool, bool, serde_json::Value) {
    let ca_ready = server.ca().x509_ca().is_some() && server.ca().jwt_key().is_some();
    let ds = server.registry().ds().check_health().await;
    let ds_ok = ds.is_ok();
    let ds_details = match ds {
        Ok(()) => serde_json::json!({ "live": true, "ready": true }),
        Err(e) => serde_json::json!({
            "live": false,
            "ready": false,
            "list_bundle_err": e.to_string(),
        }),
    };
    let details = serde_json::json!({
        "server.ca": { "live": true, "ready": ca_ready },
        "catalog.datastore": ds_details,
    });
    (ds_ok, ca_ready && ds_ok, details)
}

fn respond(ok: bool, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves the health endpoints until the process exits.
pub async fn serve(server: Arc<Server>, config: HealthChecksConfig) -> Result<(), String> {
    let addr = format!("{}:{}", config.bind_address, config.bind_port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("unable to bind health listener {addr}: {e}"))?;
    tracing::info!(address = %addr, subsystem_name = "health", "Serving health checks");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let server = server.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let server = server.clone();
                let config = config.clone();
                async move {
                    let path = req.uri().path();
                    let resp = if path == config.live_path {
                        let (live, _, details) = state(&server).await;
                        respond(live, &details)
                    } else if path == config.ready_path {
                        let (_, ready, details) = state(&server).await;
                        respond(ready, &details)
                    } else {
                        let mut r =
                            Response::new(Full::new(Bytes::from_static(b"404 page not found\n")));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
