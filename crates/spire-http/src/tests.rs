//! Unit tests of the HTTP client against loopback servers speaking plain HTTP/1.1 and TLS.

use super::*;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Reads one request (head and a `Content-Length` body) from `io` as text.
async fn read_request<S: AsyncRead + Unpin>(io: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

/// A loopback server answering each connection with the next of `responses` (None: read the
/// request and never answer); sends each request it read on the channel.
async fn serve(responses: Vec<Option<String>>) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for resp in responses {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move { answer(&mut stream, resp, tx).await });
        }
    });
    (addr, rx)
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    resp: Option<String>,
    tx: mpsc::UnboundedSender<String>,
) {
    let req = read_request(stream).await;
    let _ = tx.send(req);
    match resp {
        Some(r) => {
            let _ = stream.write_all(r.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn ok(body: &str, content_type: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nX-Amz-Id: 7\r\n\r\n{body}",
        body.len()
    ))
}

#[tokio::test]
async fn get_sends_host_agent_headers_and_query_and_reads_the_body() {
    let (addr, mut seen) = serve(vec![ok(r#"{"region":"us-east-1"}"#, "application/json")]).await;
    let client = Client::new(Duration::from_secs(5));
    let req = Request::get(&format!("http://{addr}/latest/dynamic/doc?x=1&y=two"))
        .unwrap()
        .header("X-aws-ec2-metadata-token", "tok")
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("x-amz-id"), Some("7"));
    #[derive(serde::Deserialize)]
    struct Doc {
        region: String,
    }
    assert_eq!(resp.json::<Doc>().unwrap().region, "us-east-1");

    let raw = seen.recv().await.unwrap();
    let lower = raw.to_ascii_lowercase();
    assert!(
        raw.starts_with("GET /latest/dynamic/doc?x=1&y=two HTTP/1.1\r\n"),
        "{raw}"
    );
    assert!(lower.contains(&format!("host: {addr}\r\n")), "{raw}");
    assert!(
        lower.contains("user-agent: go-http-client/1.1\r\n"),
        "{raw}"
    );
    assert!(lower.contains("x-aws-ec2-metadata-token: tok\r\n"), "{raw}");
}

#[tokio::test]
async fn post_json_sets_type_and_length_and_a_status_is_not_an_error() {
    let (addr, mut seen) = serve(vec![Some(
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied".into(),
    )])
    .await;
    let client = Client::new(Duration::from_secs(5));
    let req = Request::post(&format!("http://{addr}/v1/auth/approle/login"))
        .unwrap()
        .header("User-Agent", "custom/1")
        .unwrap()
        .json(&serde_json::json!({"role_id": "r"}))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.text().unwrap(), "denied");
    let raw = seen.recv().await.unwrap().to_ascii_lowercase();
    assert!(
        raw.starts_with("post /v1/auth/approle/login http/1.1\r\n"),
        "{raw}"
    );
    assert!(raw.contains("content-type: application/json\r\n"), "{raw}");
    assert!(raw.contains("content-length: 15\r\n"), "{raw}");
    assert!(raw.contains("user-agent: custom/1\r\n"), "{raw}");
    assert!(!raw.contains("go-http-client"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n{\"role_id\":\"r\"}"), "{raw}");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out_and_the_error_hides_the_query() {
    let (addr, _seen) = serve(vec![None]).await;
    let client = Client::new(Duration::from_secs(3));
    let err = client
        .send(Request::get(&format!("http://{addr}/token?secret=s3cr3t")).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Timeout(_, d) if d == Duration::from_secs(3)),
        "{err}"
    );
    let shown = err.to_string();
    assert!(shown.contains(&format!("http://{addr}/token")), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let big = "x".repeat(100);
    let (addr, _seen) = serve(vec![ok(&big, "text/plain"), ok(&big, "text/plain")]).await;
    let client = Client::new(Duration::from_secs(5));
    let url = format!("http://{addr}/");
    let err = client
        .send(Request::get(&url).unwrap().max_body(10))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::TooLarge(10)), "{err}");
    let resp = client
        .send(Request::get(&url).unwrap().max_body(100))
        .await
        .unwrap();
    assert_eq!(resp.body.len(), 100);
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_protocol_error() {
    let (addr, _seen) = serve(vec![Some("SSH-2.0-OpenSSH_9.6\r\n\r\n".into())]).await;
    let err = Client::new(Duration::from_secs(5))
        .send(Request::get(&format!("http://{addr}/")).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Protocol(_)), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::new(Duration::from_secs(5))
        .send(Request::get(&format!("http://{addr}/")).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!("dial tcp {addr}: ")),
        "{err}"
    );
}

#[test]
fn requests_refuse_other_schemes_hostless_urls_and_bad_headers_without_echoing_values() {
    for bad in [
        "ftp://h/x",
        "unix:///run/x.sock",
        "not a url",
        "http://:8080/x",
    ] {
        assert!(matches!(Request::get(bad), Err(HttpError::Url(_))), "{bad}");
    }
    let err = Request::get("http://h/")
        .unwrap()
        .header("Authorization", "Bearer abc\r\nX-Injected: 1")
        .unwrap_err();
    assert!(matches!(err, HttpError::Url(_)));
    assert!(!err.to_string().contains("abc"), "{err}");
    assert!(
        Request::get("http://h/")
            .unwrap()
            .header("bad name", "v")
            .is_err()
    );
}

/// A TLS server on loopback with a certificate for 127.0.0.1 from a fresh CA; returns its
/// address and the CA certificate.
async fn tls_server(body: &'static str) -> (String, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = spire_tls::certified_key(&[leaf.der().to_vec()], &leaf_key.serialize_der()).unwrap();
    let config = spire_tls::fixed_cert_server_config(key, &[]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let (tx, _rx) = mpsc::unbounded_channel();
                    answer(&mut tls, ok(body, "text/plain"), tx).await;
                }
            });
        }
    });
    (addr, ca_cert.der().to_vec())
}

#[tokio::test]
async fn https_verifies_with_the_given_roots_and_refuses_an_unknown_issuer() {
    let (addr, ca) = tls_server("hello over tls").await;
    let url = format!("https://{addr}/bundle");
    let trusting = spire_tls::web_client_config(&[ca.into()]).unwrap();
    let resp = Client::new(Duration::from_secs(5))
        .with_tls(trusting)
        .send(Request::get(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.text().unwrap(), "hello over tls");

    // Another CA (or the system's roots, if the machine has any) does not vouch for it.
    let (_, other_ca) = tls_server("unused").await;
    let other = spire_tls::web_client_config(&[other_ca.into()]).unwrap();
    for client in [
        Client::new(Duration::from_secs(5)).with_tls(other),
        Client::new(Duration::from_secs(5)),
    ] {
        let err = client.send(Request::get(&url).unwrap()).await.unwrap_err();
        assert!(matches!(err, HttpError::Tls(_)), "{err}");
    }
}
