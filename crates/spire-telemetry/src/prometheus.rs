//! The Prometheus sink: the recorder shaped as go-metrics' Prometheus sink (summaries with
//! the 0.5/0.9/0.99 quantiles over a 10 s window of five 2 s buckets, as client_golang's
//! `MaxAge` and `AgeBuckets`) and the HTTP listener, which answers every path with the
//! exposition as SPIRE's `promhttp.HandlerFor` does, followed by client_golang's
//! `process_*` families.

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::net::TcpListener;

/// How often buffered samples are folded into their summaries between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";

pub(crate) fn recorder() -> Result<PrometheusRecorder, metrics_exporter_prometheus::BuildError> {
    Ok(PrometheusBuilder::new()
        .set_quantiles(&[0.5, 0.9, 0.99])?
        .set_bucket_duration(Duration::from_secs(2))?
        .set_bucket_count(NonZeroU32::MIN.saturating_add(4))
        .build_recorder())
}

/// `Prometheus { host, port }`, not yet listening.
#[derive(Debug)]
pub struct PrometheusListener {
    host: String,
    port: u16,
    handle: PrometheusHandle,
}

impl PrometheusListener {
    pub(crate) fn new(host: String, port: u16, handle: PrometheusHandle) -> Self {
        PrometheusListener { host, port, handle }
    }

    /// `host:port` as SPIRE formats it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host` as configured (`localhost` by default).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Binds and serves in the background. As in SPIRE a listener that cannot bind does not
    /// stop the program: the error comes back for the caller to log
    /// (`Prometheus listener stopped unexpectedly: ...`). Returns the bound address.
    pub async fn start(self) -> Result<std::net::SocketAddr, std::io::Error> {
        let listener = TcpListener::bind(self.address()).await?;
        let local = listener.local_addr()?;
        let handle = self.handle;
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let mut body = handle.render();
                        body.push_str(&crate::process::render());
                        async move {
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            resp.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static(CONTENT_TYPE),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(local)
    }
}
