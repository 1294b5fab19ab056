//! The host's connection to a plugin: one HTTP/2 connection on the plugin's socket, with
//! requests handed straight to hyper's connection task. tonic's `Channel` would add a
//! buffer task (one more thread hop per call); on the KeyManager's signing path, where a
//! call blocks a worker, that hop is measurable.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;

/// A cloneable gRPC transport to one plugin (what the generated clients are built on).
#[derive(Debug, Clone)]
pub struct PluginChannel {
    send: hyper::client::conn::http2::SendRequest<Body>,
}

type ResponseFuture = Pin<
    Box<dyn Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + Send>,
>;

impl tower::Service<http::Request<Body>> for PluginChannel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The generated clients send only the path; HTTP/2 needs a scheme and an authority.
        let (mut parts, body) = request.into_parts();
        let mut uri = parts.uri.into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(http::uri::Authority::from_static("plugin"));
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
        Box::pin(
            self.send
                .send_request(http::Request::from_parts(parts, body)),
        )
    }
}

/// Opens the connection over `stream` and runs it on the current runtime.
pub(crate) async fn handshake<S>(stream: S) -> Result<PluginChannel, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(PluginChannel { send })
}
