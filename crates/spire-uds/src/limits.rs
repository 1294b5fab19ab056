//! gRPC message-size limits as SPIRE's servers apply them, on every listener of both
//! programs (UNIX sockets and the server's TLS port alike).
//!
//! SPIRE sets no size options, so grpc-go's defaults hold: a server receives messages up to
//! 4 MiB ([`MAX_RECV_MESSAGE`]) and sends any size. tonic enforces the same receive limit
//! while reading the 5-byte message header, before buffering the body, but reports it as
//! `OUT_OF_RANGE` ("Error, decoded message length too large: …"). grpc-go answers
//! `RESOURCE_EXHAUSTED` ("grpc: received message larger than max (N vs. M)"), and clients
//! (SPIRE's among them) look at that code. [`OversizeLayer`] rewrites tonic's status into
//! grpc-go's, whether it travels in the response headers (a trailers-only answer) or in
//! the trailers of a streaming answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

/// The largest message a server accepts: grpc-go's default, which SPIRE keeps.
pub const MAX_RECV_MESSAGE: usize = 4 * 1024 * 1024;

/// Finds tonic's over-limit message, alone or wrapped by a handler that read a stream
/// ("failed to receive request from stream: …"), and parses it into (found, limit).
fn tonic_oversize(msg: &str) -> Option<(u64, u64)> {
    const HEAD: &str = "Error, decoded message length too large: found ";
    let at = msg.find(HEAD)?;
    let rest = &msg[at + HEAD.len()..];
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let (limit, _) = rest.split_once(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

/// grpc-go's status for a received message over the limit.
pub fn oversize_status(found: u64, limit: u64) -> Status {
    Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ))
}

/// Rewrites a tonic over-limit status in `headers` (status headers or trailers) in place.
/// grpc-go answers the size violation itself, whatever the handler then returns, so a
/// handler's wrapping of the receive error (any code) is replaced as well.
fn rewrite(headers: &mut http::HeaderMap) {
    let Some(st) = Status::from_header_map(headers) else {
        return;
    };
    if st.code() == tonic::Code::Ok {
        return;
    }
    let Some((found, limit)) = tonic_oversize(st.message()) else {
        return;
    };
    headers.remove("grpc-status-details-bin");
    let _ = oversize_status(found, limit).add_header(headers);
}

/// A tower layer applying [`rewrite`] to every response; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeLayer;

impl<S> tower::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Oversize { inner }
    }
}

/// See [`OversizeLayer`].
#[derive(Debug, Clone)]
pub struct Oversize<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Oversize<S>
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
        let fut = self.inner.call(req);
        Box::pin(async move {
            let (mut parts, body) = fut.await?.into_parts();
            rewrite(&mut parts.headers);
            Ok(http::Response::from_parts(
                parts,
                Body::new(RewriteTrailers { inner: body }),
            ))
        })
    }
}

/// A response body whose trailers pass through [`rewrite`].
struct RewriteTrailers {
    inner: Body,
}

impl http_body::Body for RewriteTrailers {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_trailers() {
                    Ok(mut t) => {
                        rewrite(&mut t);
                        Frame::trailers(t)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
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

    #[test]
    fn tonic_s_oversize_status_becomes_grpc_go_s_alone_or_wrapped_by_a_handler() {
        for (tonic_status, found) in [
            (
                Status::out_of_range(
                    "Error, decoded message length too large: found 5000005 bytes, the limit is: 4194304 bytes",
                ),
                5_000_005,
            ),
            (
                Status::invalid_argument(
                    "failed to receive request from stream: Error, decoded message length too large: found 60000027 bytes, the limit is: 4194304 bytes",
                ),
                60_000_027,
            ),
        ] {
            let mut h = http::HeaderMap::new();
            tonic_status.add_header(&mut h).unwrap();
            rewrite(&mut h);
            let st = Status::from_header_map(&h).unwrap();
            assert_eq!(st.code(), tonic::Code::ResourceExhausted);
            assert_eq!(
                st.message(),
                format!("grpc: received message larger than max ({found} vs. 4194304)")
            );
        }
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for st in [
            Status::out_of_range("page token out of range"),
            Status::invalid_argument("Error, decoded message length too large"),
        ] {
            let mut h = http::HeaderMap::new();
            st.add_header(&mut h).unwrap();
            let before = h.clone();
            rewrite(&mut h);
            assert_eq!(h, before);
        }
    }
}
