//! SPIRE's RPC metrics middleware as a tower layer over tonic: every call counted as
//! `rpc_<service>_<method>` with its gRPC `status`, and timed as `..._elapsed_time`, from the
//! request's arrival to the end of its response (a stream's trailers). A response whose
//! status is in its headers (trailers-only) ends the call there; a stream the client drops
//! before its trailers ends as OK, as SPIRE's streaming handlers return nil when their
//! context is cancelled; a request dropped before any response counts as Canceled.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use parking_lot::RwLock;
use tonic::body::Body;

use crate::{CallCounter, Metrics, names};

/// The layer; a disabled [`Metrics`] passes requests straight through.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: Metrics,
    keys: Arc<RwLock<HashMap<String, Arc<Vec<String>>>>>,
    /// The agent's per-service "connection" metrics: calls in progress per API.
    connections: Option<OpenCalls>,
}

/// The APIs SPIRE's agent counts "connections" (calls) for: the gRPC path prefix and the
/// metric key prefix (`<prefix>_connection` counter, `<prefix>_connections` gauge).
pub const CONNECTION_APIS: [(&str, &str); 3] = [
    ("/SpiffeWorkloadAPI/", "workload_api"),
    (
        "/envoy.service.secret.v3.SecretDiscoveryService/",
        "sds_api",
    ),
    (
        "/spire.api.agent.delegatedidentity.v1.DelegatedIdentity/",
        "delegated_identity_api",
    ),
];

/// Calls in progress per API of [`CONNECTION_APIS`].
type OpenCalls = Arc<parking_lot::Mutex<[i64; CONNECTION_APIS.len()]>>;

/// Changes API `i`'s count of calls in progress and sets its gauge, both under one lock:
/// with the count an atomic and the gauge set after it, two calls ending together could
/// set the gauge in the other order and leave it at 1 with nothing open.
fn open_calls_add(metrics: &Metrics, all: &OpenCalls, i: usize, by: i64) {
    let mut open = all.lock();
    open[i] += by;
    metrics.set_gauge(&[CONNECTION_APIS[i].1, "connections"], open[i] as f64, &[]);
}

impl RpcMetricsLayer {
    /// Counts calls into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        RpcMetricsLayer {
            metrics,
            keys: Arc::default(),
            connections: None,
        }
    }

    /// Also emits the agent's per-API `<api>_connection` counter and `<api>_connections`
    /// gauge for the Workload API, SDS and the Delegated Identity API (SPIRE counts calls
    /// there, not connections).
    pub fn with_connection_metrics(mut self) -> Self {
        self.connections = Some(Arc::new(Default::default()));
        self
    }

    fn start(&self, path: &str, traceparent: Option<&str>) -> Call {
        let api = CONNECTION_APIS
            .iter()
            .position(|(prefix, _)| path.starts_with(prefix));
        let open = match (&self.connections, api) {
            (Some(all), Some(i)) => {
                let name = CONNECTION_APIS[i].1;
                self.metrics.incr_counter(&[name, "connection"], 1.0, &[]);
                open_calls_add(&self.metrics, all, i, 1);
                Some((self.metrics.clone(), all.clone(), i))
            }
            _ => None,
        };
        Call {
            counter: self.counter(path),
            open,
            span: self.metrics.start_span(path, traceparent),
        }
    }

    fn counter(&self, path: &str) -> CallCounter {
        let cached = self.keys.read().get(path).cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                let k = Arc::new(names::rpc_key(path));
                self.keys.write().insert(path.to_owned(), k.clone());
                k
            }
        };
        let mut parts: Vec<&str> = Vec::with_capacity(key.len() + 1);
        parts.push("rpc");
        parts.extend(key.iter().map(String::as_str));
        self.metrics.start_call(&parts)
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] wraps around a router.
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    layer: RpcMetricsLayer,
}

impl<S, B> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !self.layer.metrics.enabled() {
            return Box::pin(self.inner.call(req));
        }
        let traceparent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok());
        let call = Pending(Some(self.layer.start(req.uri().path(), traceparent)));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut call = call;
            let resp = fut.await?;
            let Some(counter) = call.0.take() else {
                return Ok(resp);
            };
            if let Some(code) = status_of(resp.headers()) {
                counter.done(code);
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            Ok(http::Response::from_parts(
                parts,
                Body::new(Counted {
                    inner: body,
                    counter: Some(counter),
                }),
            ))
        })
    }
}

/// A call in progress: its counter and, for the counted APIs, the open-calls gauge.
struct Call {
    counter: CallCounter,
    open: Option<(Metrics, OpenCalls, usize)>,
    span: Option<crate::otlp::SpanStart>,
}

impl Call {
    fn done(self, code: tonic::Code) {
        if let Some(span) = self.span {
            self.counter.metrics().finish_span(span, code);
        }
        self.counter.done(code);
        if let Some((metrics, all, i)) = self.open {
            open_calls_add(&metrics, &all, i, -1);
        }
    }
}

/// A call whose response has not come: dropped, it ends as Canceled.
struct Pending(Option<Call>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.done(tonic::Code::Cancelled);
        }
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let v = headers.get("grpc-status")?;
    let n: i32 = v.to_str().ok()?.trim().parse().ok()?;
    Some(tonic::Code::from_i32(n))
}

struct Counted {
    inner: Body,
    counter: Option<Call>,
}

impl Counted {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(c) = self.counter.take() {
            c.done(code);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish(tonic::Code::Ok);
    }
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let code = e.code();
                self.finish(code);
            }
            Poll::Ready(None) => self.finish(tonic::Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Layer, Service, ServiceExt};

    fn enabled() -> Metrics {
        let cfg = spire_config::TelemetryConfig {
            prometheus: Some(spire_config::PrometheusConfig {
                host: "127.0.0.1".into(),
                port: 0,
            }),
            ..Default::default()
        };
        crate::Metrics::configure(
            &cfg,
            crate::Service::Server,
            "example.org",
            Some("h".into()),
        )
        .map(|t| t.metrics)
        .unwrap_or_default()
    }

    async fn call(
        metrics: &Metrics,
        path: &str,
        resp: http::Response<Body>,
    ) -> http::Response<Body> {
        let resp = std::sync::Mutex::new(Some(resp));
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            let r = resp.lock().ok().and_then(|mut r| r.take());
            async move { Ok::<_, Infallible>(r.unwrap_or_default()) }
        });
        let mut svc = RpcMetricsLayer::new(metrics.clone()).layer(inner);
        let req = http::Request::builder()
            .uri(path)
            .body(())
            .unwrap_or_default();
        match svc.ready().await {
            Ok(s) => s.call(req).await.unwrap_or_default(),
            Err(e) => match e {},
        }
    }

    #[tokio::test]
    async fn trailers_only_errors_count_with_their_code() {
        let m = enabled();
        let mut resp = http::Response::new(Body::empty());
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("7"));
        call(&m, "/spire.api.server.agent.v1.Agent/AttestAgent", resp).await;
        let out = m.render();
        assert!(
            out.contains(
                r#"spire_server_rpc_agent_v1_agent_attest_agent{host="h",status="PermissionDenied"} 1"#
            ),
            "{out}"
        );
        assert!(out.contains("spire_server_rpc_agent_v1_agent_attest_agent_elapsed_time_count"));
    }

    #[tokio::test]
    async fn streamed_bodies_count_at_their_trailers_or_when_dropped() {
        let m = enabled();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let body = http_body_util::StreamBody::new(futures::stream::iter(vec![
            Ok::<_, tonic::Status>(Frame::data(bytes::Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ]));
        let resp = call(
            &m,
            "/SpiffeWorkloadAPI/FetchX509SVID",
            http::Response::new(Body::new(body)),
        )
        .await;
        assert!(!m.render().contains("fetch_x509svid{"));
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert!(
            m.render().contains(
                r#"spire_server_rpc_workload_api_fetch_x509svid{host="h",status="OK"} 1"#
            )
        );

        let resp = call(
            &m,
            "/SpiffeWorkloadAPI/FetchJWTSVID",
            http::Response::new(Body::empty()),
        )
        .await;
        drop(resp);
        assert!(
            m.render()
                .contains(r#"spire_server_rpc_workload_api_fetch_jwtsvid{host="h",status="OK"} 1"#)
        );
    }
}
