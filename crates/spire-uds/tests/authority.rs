//! A gRPC C-core style request (percent-encoded socket path as `:authority`) sent with raw
//! HTTP/2 frames to a tonic server on a UNIX socket: served through `spire_uds::incoming`,
//! reset by h2 without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Ready;
use std::path::Path;
use std::task::{Context, Poll};
use std::time::Duration;

use hpack::{Decoder, Encoder};
use spire_uds::UdsConnectInfo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// A gRPC service answering every call with OK, echoing what it saw in headers.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let pid = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
            .and_then(|c| c.pid())
            .unwrap_or(0);
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "0")
            .header("x-peer-pid", pid.to_string())
            .header("x-authority", authority)
            .body(tonic::body::Body::empty())
            .unwrap();
        std::future::ready(Ok(resp))
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// What the server answered on stream 1.
#[derive(Debug)]
enum Answer {
    Headers(Vec<(String, String)>),
    Reset(u32),
    GoAway(u32),
}

/// Sends one unary call the way grpcio does on a UNIX socket and reads the answer.
async fn raw_call(socket: &Path, authority: &str) -> Answer {
    let mut s = UnixStream::connect(socket).await.unwrap();
    let mut enc = Encoder::new();
    let block = enc.encode(vec![
        (&b":method"[..], &b"POST"[..]),
        (&b":scheme"[..], &b"http"[..]),
        (&b":path"[..], &b"/test.Echo/Ping"[..]),
        (&b":authority"[..], authority.as_bytes()),
        (&b"te"[..], &b"trailers"[..]),
        (&b"content-type"[..], &b"application/grpc"[..]),
        (&b"user-agent"[..], &b"grpc-python/1.0 grpc-c/1.0"[..]),
    ]);
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    frame(&mut out, HEADERS, END_HEADERS, 1, &block);
    // An empty gRPC message: uncompressed flag and zero length.
    frame(&mut out, DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]);
    s.write_all(&out).await.unwrap();

    let mut dec = Decoder::new();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let flags = buf[4];
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    let mut ack = Vec::new();
                    frame(&mut ack, SETTINGS, ACK, 0, &[]);
                    s.write_all(&ack).await.unwrap();
                }
                HEADERS if stream == 1 => {
                    assert_ne!(flags & END_HEADERS, 0, "test server headers fit one frame");
                    let headers = dec
                        .decode(&payload)
                        .unwrap()
                        .into_iter()
                        .map(|(n, v)| {
                            (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                        })
                        .collect();
                    return Answer::Headers(headers);
                }
                RST_STREAM if stream == 1 => {
                    return Answer::Reset(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                }
                GOAWAY => {
                    return Answer::GoAway(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
                _ => {}
            }
        }
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut tmp))
            .await
            .expect("no answer from the server")
            .unwrap();
        assert!(n > 0, "server closed the connection without answering");
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn percent_encoded_authority_is_served_with_peer_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/api.sock");
    let listener = spire_uds::bind(&socket, 0o750, 0o770).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .serve_with_incoming_shutdown(spire_uds::incoming(listener), async {
                let _ = stop_rx.await;
            }),
    );

    let encoded = socket.display().to_string().replace('/', "%2F");
    match raw_call(&socket, &encoded).await {
        Answer::Headers(h) => {
            assert_eq!(header(&h, ":status"), Some("200"), "{h:?}");
            assert_eq!(header(&h, "grpc-status"), Some("0"), "{h:?}");
            assert_eq!(header(&h, "x-authority"), Some("localhost"), "{h:?}");
            assert_eq!(
                header(&h, "x-peer-pid"),
                Some(std::process::id().to_string().as_str()),
                "{h:?}"
            );
        }
        other => panic!("percent-encoded :authority was not served: {other:?}"),
    }
    // Ordinary clients are unaffected.
    match raw_call(&socket, "localhost").await {
        Answer::Headers(h) => assert_eq!(header(&h, "x-authority"), Some("localhost")),
        other => panic!("{other:?}"),
    }

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

/// The same request on a plain tonic UNIX listener is refused: the test above would notice
/// if the fix stopped working.
#[tokio::test]
async fn without_the_fix_h2_refuses_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .serve_with_incoming_shutdown(
                futures::stream::unfold(listener, |l| async move {
                    let r = l.accept().await.map(|(s, _)| s);
                    Some((r, l))
                }),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );
    let encoded = socket.display().to_string().replace('/', "%2F");
    match raw_call(&socket, &encoded).await {
        // PROTOCOL_ERROR.
        Answer::Reset(code) | Answer::GoAway(code) => assert_eq!(code, 1),
        Answer::Headers(h) => panic!("h2 accepted a percent-encoded :authority: {h:?}"),
    }
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
