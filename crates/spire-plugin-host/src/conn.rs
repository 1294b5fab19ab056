//! The host's connection to a plugin: one HTTP/2 connection on the plugin's socket, driven
//! with `h2` directly. A call queues its request from the caller's own task: when the
//! request body is already complete (a unary call's is: one encoded message, then its end),
//! its HEADERS and its one DATA frame (END_STREAM) are queued together, so the connection
//! task writes them in one `writev`; only streaming bodies get a task of their own to pump
//! them. tonic's `Channel` would add a buffer task, and hyper's client a dispatch task and
//! a separate write of the HEADERS (its body pipe queues the DATA only after the HEADERS
//! went out), each a thread hop or a syscall per call; on the KeyManager's signing path,
//! where a call blocks a worker, they are measurable.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame};
use tokio::sync::oneshot;
use tonic::body::Body;

/// The transport's errors, boxed as tonic takes them: the `h2` error itself, or the request
/// body's (a `tonic::Status`), so that tonic maps them to a status as for its own channel.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How much of a request body that is ready at once goes out with its HEADERS; the rest is
/// pumped as flow control allows.
const GATHER_LIMIT: usize = 1024 * 1024;

/// Connection settings, hyper's HTTP/2 client defaults (what the host used before).
const CONN_WINDOW: u32 = 5 * 1024 * 1024;
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const INITIAL_MAX_SEND_STREAMS: usize = 100;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// A cloneable gRPC transport to one plugin (what the generated clients are built on).
#[derive(Debug, Clone)]
pub struct PluginChannel {
    send: h2::client::SendRequest<Bytes>,
}

impl tower::Service<http::Request<Body>> for PluginChannel {
    type Response = http::Response<ResponseBody>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.start(request) {
            Ok((response, cancel)) => ResponseFuture {
                state: State::Waiting { response, cancel },
            },
            Err(e) => ResponseFuture {
                state: State::Failed(Some(e)),
            },
        }
    }
}

impl PluginChannel {
    /// Queues the request's HEADERS and what its body has ready; a body still to come is
    /// pumped by a task of its own, which the returned sender cancels.
    fn start(
        &mut self,
        request: http::Request<Body>,
    ) -> Result<(h2::client::ResponseFuture, Option<oneshot::Sender<()>>), Error> {
        // The generated clients send only the path; HTTP/2 needs a scheme and an authority.
        let (mut parts, mut body) = request.into_parts();
        let mut uri = parts.uri.into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(http::uri::Authority::from_static("plugin"));
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
        strip_connection_headers(&mut parts.headers);
        let head = http::Request::from_parts(parts, ());

        let (data, rest) = gather(&mut body)?;
        match rest {
            Rest::Ended if data.is_empty() => {
                let (response, _) = self.send.send_request(head, true)?;
                Ok((response, None))
            }
            Rest::Ended => {
                let (response, mut tx) = self.send.send_request(head, false)?;
                tx.send_data(data, true)?;
                Ok((response, None))
            }
            Rest::Trailers(trailers) => {
                let (response, mut tx) = self.send.send_request(head, false)?;
                if !data.is_empty() {
                    tx.send_data(data, false)?;
                }
                tx.send_trailers(trailers)?;
                Ok((response, None))
            }
            Rest::ToCome => {
                let (response, mut tx) = self.send.send_request(head, false)?;
                if !data.is_empty() {
                    tx.send_data(data, false)?;
                }
                let (cancel, cancelled) = oneshot::channel();
                tokio::spawn(Pump {
                    body,
                    tx,
                    waiting: None,
                    cancelled: Some(cancelled),
                });
                Ok((response, Some(cancel)))
            }
        }
    }
}

/// Removes the headers HTTP/2 forbids (`h2` refuses a request that has them), as hyper does.
fn strip_connection_headers(headers: &mut http::HeaderMap) {
    use http::header;
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// Request data gathered so far: kept as is while it is one chunk.
enum Gathered {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Gathered {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(b) => b.len(),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        *self = match std::mem::replace(self, Self::Empty) {
            Self::Empty => Self::One(chunk),
            Self::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + chunk.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                Self::Many(joined)
            }
            Self::Many(mut joined) => {
                joined.extend_from_slice(&chunk);
                Self::Many(joined)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::One(b) => b,
            Self::Many(b) => b.freeze(),
        }
    }
}

/// What follows the data a request body had ready.
enum Rest {
    /// Nothing: the body has ended.
    Ended,
    /// The body's trailers, which end it.
    Trailers(http::HeaderMap),
    /// More of the body, not ready yet (or beyond [`GATHER_LIMIT`]).
    ToCome,
}

/// Takes what the request body has ready now, up to [`GATHER_LIMIT`].
fn gather(body: &mut Body) -> Result<(Bytes, Rest), Error> {
    // A body that is not ready is polled again, with the pump's waker, by the pump.
    let mut cx = Context::from_waker(Waker::noop());
    let mut data = Gathered::Empty;
    let rest = loop {
        if body.is_end_stream() {
            break Rest::Ended;
        }
        if data.len() >= GATHER_LIMIT {
            break Rest::ToCome;
        }
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(chunk) => data.push(chunk),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        break Rest::Trailers(trailers);
                    }
                }
            },
            Poll::Ready(Some(Err(e))) => return Err(e.into()),
            Poll::Ready(None) => break Rest::Ended,
            Poll::Pending => break Rest::ToCome,
        }
    };
    Ok((data.into_bytes(), rest))
}

/// Sends the rest of a streaming request body as it comes and as flow control allows
/// (hyper's `PipeToSendStream`); resets the stream if the body fails, or with CANCEL if the
/// call is dropped before its response arrived.
struct Pump {
    body: Body,
    tx: h2::SendStream<Bytes>,
    /// A chunk taken from the body, waiting for send capacity, and whether it ends the body.
    waiting: Option<(Bytes, bool)>,
    cancelled: Option<oneshot::Receiver<()>>,
}

impl Future for Pump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(cancelled) = &mut this.cancelled {
            match Pin::new(cancelled).poll(cx) {
                Poll::Ready(Ok(())) => {
                    this.tx.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(());
                }
                // The response arrived: the call is the caller's to end now.
                Poll::Ready(Err(_)) => this.cancelled = None,
                Poll::Pending => {}
            }
        }
        loop {
            // The peer reset the stream, or the connection failed.
            if this.tx.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            if let Some((chunk, end)) = this.waiting.take() {
                while this.tx.capacity() == 0 {
                    match this.tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                        Poll::Pending => {
                            this.waiting = Some((chunk, end));
                            return Poll::Pending;
                        }
                    }
                }
                if this.tx.send_data(chunk, end).is_err() || end {
                    return Poll::Ready(());
                }
                continue;
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        let end = this.body.is_end_stream();
                        if chunk.is_empty() {
                            if end {
                                let _ = this.tx.send_data(chunk, true);
                                return Poll::Ready(());
                            }
                            continue;
                        }
                        // A minimal claim, as hyper makes: send_data raises it to the
                        // chunk's length.
                        this.tx.reserve_capacity(1);
                        this.waiting = Some((chunk, end));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.tx.reserve_capacity(0);
                            let _ = this.tx.send_trailers(trailers);
                            return Poll::Ready(());
                        }
                    }
                },
                Some(Err(e)) => {
                    let e: Error = e.into();
                    this.tx.send_reset(reset_reason(&*e));
                    return Poll::Ready(());
                }
                None => {
                    let _ = this.tx.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// The reason to reset a stream whose request body failed: the one in the error's chain
/// (tonic puts CANCEL there for a cancelled call), else INTERNAL_ERROR.
fn reset_reason(e: &(dyn std::error::Error + 'static)) -> h2::Reason {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(reason) = e.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            return reason;
        }
        source = e.source();
    }
    h2::Reason::INTERNAL_ERROR
}

/// The response to a call on a [`PluginChannel`].
#[derive(Debug)]
pub struct ResponseFuture {
    state: State,
}

#[derive(Debug)]
enum State {
    Failed(Option<Error>),
    Waiting {
        response: h2::client::ResponseFuture,
        /// Resets a streaming request if dropped with a send, i.e. before the response.
        cancel: Option<oneshot::Sender<()>>,
    },
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Failed(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| "response polled after completion".into()))),
            State::Waiting { response, cancel } => {
                let result = ready!(Pin::new(response).poll(cx));
                // Dropped without a send: the pump goes on with the request body.
                cancel.take();
                Poll::Ready(match result {
                    Ok(response) => Ok(response.map(|recv| ResponseBody {
                        recv,
                        data_done: false,
                    })),
                    Err(e) => Err(e.into()),
                })
            }
        }
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if let State::Waiting { cancel, .. } = &mut self.state
            && let Some(cancel) = cancel.take()
        {
            let _ = cancel.send(());
        }
    }
}

/// A response body: its DATA frames (their flow-control capacity released as they are
/// read), then its trailers, where gRPC's status is.
#[derive(Debug)]
pub struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RST_STREAM(NO_ERROR) ends the body early without failing it (RFC 9113
                // section 8.1), as in hyper.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// Opens the connection over `stream` and runs it on the current runtime (until the plugin
/// closes it, or every channel and call on it is dropped).
pub(crate) async fn handshake<S>(stream: S) -> Result<PluginChannel, h2::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false)
        .handshake::<_, Bytes>(stream)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(PluginChannel { send })
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use spire_proto::plugin::{
        ConnInfo, StdioData, grpc_broker_client::GrpcBrokerClient, grpc_broker_server,
        grpc_stdio_client::GrpcStdioClient, grpc_stdio_server,
    };
    use spire_proto::spire::plugin::server::keymanager::v1 as km;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::UnixStream;
    use tokio_stream::StreamExt as _;
    use tonic::{Request, Response, Status};

    use super::*;

    /// A plugin's services, in process: SignData echoes, GetPublicKey fails, the broker
    /// stream echoes each message (its ID plus one), the stdio stream sends three messages
    /// and ends with a status. A broker call with `x-wait-first` answers only once the first
    /// message came, and notifies `dropped` when the server drops it.
    #[derive(Clone, Default)]
    struct Fake {
        dropped: Arc<tokio::sync::Notify>,
    }

    struct NotifyOnDrop(Arc<tokio::sync::Notify>);

    impl Drop for NotifyOnDrop {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }

    #[async_trait::async_trait]
    impl km::key_manager_server::KeyManager for Fake {
        async fn generate_key(
            &self,
            _: Request<km::GenerateKeyRequest>,
        ) -> Result<Response<km::GenerateKeyResponse>, Status> {
            Err(Status::unimplemented("generate_key"))
        }
        async fn get_public_key(
            &self,
            request: Request<km::GetPublicKeyRequest>,
        ) -> Result<Response<km::GetPublicKeyResponse>, Status> {
            Err(Status::not_found(format!(
                "no such key \"{}\"",
                request.into_inner().key_id
            )))
        }
        async fn get_public_keys(
            &self,
            _: Request<km::GetPublicKeysRequest>,
        ) -> Result<Response<km::GetPublicKeysResponse>, Status> {
            Err(Status::unimplemented("get_public_keys"))
        }
        async fn sign_data(
            &self,
            request: Request<km::SignDataRequest>,
        ) -> Result<Response<km::SignDataResponse>, Status> {
            let request = request.into_inner();
            Ok(Response::new(km::SignDataResponse {
                signature: request.data,
                key_fingerprint: request.key_id,
            }))
        }
    }

    type InfoStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ConnInfo, Status>> + Send>>;
    type StdioStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<StdioData, Status>> + Send>>;

    #[async_trait::async_trait]
    impl grpc_broker_server::GrpcBroker for Fake {
        type StartStreamStream = InfoStream;
        async fn start_stream(
            &self,
            request: Request<tonic::Streaming<ConnInfo>>,
        ) -> Result<Response<InfoStream>, Status> {
            if request.metadata().contains_key("x-wait-first") {
                let _guard = NotifyOnDrop(self.dropped.clone());
                let first = request.into_inner().message().await?;
                return Err(Status::internal(format!("unexpected message {first:?}")));
            }
            let echoed = request.into_inner().map(|info| {
                info.map(|mut info| {
                    info.service_id += 1;
                    info
                })
            });
            Ok(Response::new(Box::pin(echoed)))
        }
    }

    #[async_trait::async_trait]
    impl grpc_stdio_server::GrpcStdio for Fake {
        type StreamStdioStream = StdioStream;
        async fn stream_stdio(
            &self,
            _: Request<pbjson_types::Empty>,
        ) -> Result<Response<StdioStream>, Status> {
            let items = (1..=3u8)
                .map(|i| {
                    Ok(StdioData {
                        channel: 1,
                        data: vec![i; 100],
                    })
                })
                .chain([Err(Status::aborted("stdio closed"))]);
            Ok(Response::new(Box::pin(tokio_stream::iter(items))))
        }
    }

    /// Serves `fake` on a UNIX socket in `dir`; its path.
    fn serve(dir: &tempfile::TempDir, fake: Fake) -> std::path::PathBuf {
        let path = dir.path().join("plugin.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(km::key_manager_server::KeyManagerServer::new(fake.clone()))
            .add_service(grpc_broker_server::GrpcBrokerServer::new(fake.clone()))
            .add_service(grpc_stdio_server::GrpcStdioServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
        tokio::spawn(server);
        path
    }

    /// A socket that records what each write call wrote.
    struct Recorder {
        inner: UnixStream,
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
            self.writes.lock().unwrap().push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
            let written: Vec<u8> = bufs
                .iter()
                .flat_map(|b| b.iter().copied())
                .take(n)
                .collect();
            self.writes.lock().unwrap().push(written);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const END_STREAM: u8 = 1;

    /// The frames the client wrote, `(write call, type, flags, stream ID)`, after the preface.
    fn frames(writes: &[Vec<u8>]) -> Vec<(usize, u8, u8, u32)> {
        let mut at = Vec::new();
        let mut bytes = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            at.extend(std::iter::repeat_n(i, w.len()));
            bytes.extend_from_slice(w);
        }
        let mut frames = Vec::new();
        let mut pos = 24;
        while pos + 9 <= bytes.len() {
            let len = u32::from_be_bytes([0, bytes[pos], bytes[pos + 1], bytes[pos + 2]]) as usize;
            let id = u32::from_be_bytes([
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
                bytes[pos + 8],
            ]) & 0x7fff_ffff;
            frames.push((at[pos], bytes[pos + 3], bytes[pos + 4], id));
            pos += 9 + len;
        }
        frames
    }

    #[tokio::test]
    async fn unary_call_goes_out_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = serve(&dir, Fake::default());
        let writes = Arc::new(Mutex::new(Vec::new()));
        let socket = Recorder {
            inner: UnixStream::connect(&path).await.unwrap(),
            writes: writes.clone(),
        };
        let mut client =
            km::key_manager_client::KeyManagerClient::new(handshake(socket).await.unwrap());
        // Up to a frame's worth: h2 writes a larger DATA payload's frames one per write.
        for n in [0, 1, 400, 16_000] {
            let response = client
                .sign_data(km::SignDataRequest {
                    key_id: "k".into(),
                    data: vec![7; n],
                    signer_opts: None,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(response.signature, vec![7; n]);
            assert_eq!(response.key_fingerprint, "k");
        }

        let frames = frames(&writes.lock().unwrap());
        let streams: Vec<u32> = frames
            .iter()
            .filter(|f| f.1 == HEADERS)
            .map(|f| f.3)
            .collect();
        assert_eq!(streams.len(), 4, "{frames:?}");
        for id in streams {
            let of_stream: Vec<_> = frames.iter().filter(|f| f.3 == id).collect();
            let (headers_write, ..) = of_stream[0];
            assert_eq!(of_stream[0].1, HEADERS, "{of_stream:?}");
            assert_eq!(of_stream[0].2 & END_STREAM, 0, "{of_stream:?}");
            // Every frame of the request, the last DATA with END_STREAM, in the HEADERS' write.
            assert!(
                of_stream.iter().all(|f| f.0 == *headers_write),
                "{of_stream:?}"
            );
            let last = of_stream[of_stream.len() - 1];
            assert_eq!(
                (last.1, last.2 & END_STREAM),
                (DATA, END_STREAM),
                "{of_stream:?}"
            );
        }
    }

    #[tokio::test]
    async fn trailers_only_error_is_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = serve(&dir, Fake::default());
        let channel = handshake(UnixStream::connect(&path).await.unwrap())
            .await
            .unwrap();
        let mut client = km::key_manager_client::KeyManagerClient::new(channel);
        let status = client
            .get_public_key(km::GetPublicKeyRequest {
                key_id: "missing".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "no such key \"missing\"");

        // The request body's own error is the call's status; the connection stays usable.
        let status = client
            .clone()
            .max_encoding_message_size(10)
            .sign_data(km::SignDataRequest {
                key_id: "k".into(),
                data: vec![1; 100],
                signer_opts: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        let signed = client
            .sign_data(km::SignDataRequest {
                key_id: "k".into(),
                data: vec![1; 100],
                signer_opts: None,
            })
            .await
            .unwrap();
        assert_eq!(signed.into_inner().signature, vec![1; 100]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_and_large_and_concurrent_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = serve(&dir, Fake::default());
        let channel = handshake(UnixStream::connect(&path).await.unwrap())
            .await
            .unwrap();

        // Bidirectional, the request body pending at first: messages go one at a time.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut broker = GrpcBrokerClient::new(channel.clone());
        let mut echoes = broker
            .start_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for id in 1..=3 {
            tx.send(ConnInfo {
                service_id: id,
                network: "unix".into(),
                address: "x".repeat(id as usize * 1000),
                knock: None,
            })
            .await
            .unwrap();
            let echo = echoes.message().await.unwrap().unwrap();
            assert_eq!(echo.service_id, id + 1);
            assert_eq!(echo.address.len(), id as usize * 1000);
        }
        drop(tx);
        assert!(echoes.message().await.unwrap().is_none());

        // Server streaming, its status in trailers after the data.
        let mut stdio = GrpcStdioClient::new(channel.clone())
            .stream_stdio(pbjson_types::Empty {})
            .await
            .unwrap()
            .into_inner();
        for i in 1..=3u8 {
            assert_eq!(stdio.message().await.unwrap().unwrap().data, vec![i; 100]);
        }
        let status = stdio.message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Aborted);
        assert_eq!(status.message(), "stdio closed");

        // More than is sent with the HEADERS, beyond the peer's initial windows.
        let client = km::key_manager_client::KeyManagerClient::new(channel.clone());
        let large = vec![9u8; 3 * 1024 * 1024];
        let signed = client
            .clone()
            .max_decoding_message_size(4 * 1024 * 1024)
            .sign_data(km::SignDataRequest {
                key_id: "k".into(),
                data: large.clone(),
                signer_opts: None,
            })
            .await
            .unwrap();
        assert!(signed.into_inner().signature == large);

        // Concurrent calls on clones of the channel.
        let calls: Vec<_> = (0..32u8)
            .map(|i| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    client
                        .sign_data(km::SignDataRequest {
                            key_id: format!("k{i}"),
                            data: vec![i; 1000],
                            signer_opts: None,
                        })
                        .await
                        .map(|r| r.into_inner())
                })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let signed = call.await.unwrap().unwrap();
            assert_eq!(signed.key_fingerprint, format!("k{i}"));
            assert_eq!(signed.signature, vec![i as u8; 1000]);
        }
    }

    #[tokio::test]
    async fn dropping_every_channel_closes_the_connection() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let mut connection = h2::server::handshake(theirs).await.unwrap();
            while let Some(request) = connection.accept().await {
                drop(request);
            }
        });
        let channel = handshake(ours).await.unwrap();
        let clone = channel.clone();
        drop(channel);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!server.is_finished(), "closed while a channel remained");
        drop(clone);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_streaming_call_dropped_before_its_response_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        let dropped = fake.dropped.clone();
        let path = serve(&dir, fake);
        let channel = handshake(UnixStream::connect(&path).await.unwrap())
            .await
            .unwrap();
        let mut broker = GrpcBrokerClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel::<ConnInfo>(1);
        let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request.metadata_mut().insert(
            "x-wait-first",
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let call = broker.start_stream(request);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), call)
                .await
                .is_err()
        );
        // The request body is still open, but the stream was reset: the server dropped
        // the call.
        tokio::time::timeout(Duration::from_secs(5), dropped.notified())
            .await
            .unwrap();
        drop(tx);
    }
}
