//! The bootstrap trust bundle: the X.509 authorities the agent trusts the server with before
//! its first attestation (`trust_bundle_path`, `trust_bundle_url`, in PEM or SPIFFE bundle
//! format).
//!
//! `trust_bundle_url` is fetched as Go's default HTTP client would: over https verified by
//! host name against the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), or over
//! plain HTTP on `trust_bundle_unix_socket`, following up to ten redirects. With a socket,
//! SPIRE adds the bootstrap state to the query (`spire-attest-mode`, …) so that the
//! service behind it can tell bootstraps from rebootstraps.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use spiffe_core::{Bundle, TrustDomain};
use spire_tls::{CertificateDer, ServerName, TlsConnector};
use tokio::io::{AsyncRead, AsyncWrite};

/// Bundle formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Concatenated PEM certificates.
    Pem,
    /// A SPIFFE bundle (JWKS).
    Spiffe,
}

/// Bootstrap bundle failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustBundleError {
    /// The file could not be read.
    #[error("unable to read trust bundle {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The contents are not a bundle.
    #[error("unable to parse trust bundle: {0}")]
    Parse(String),
    /// The URL could not be parsed.
    #[error("unable to parse trust bundle URL: {0}")]
    Url(String),
    /// The request failed.
    #[error("unable to fetch trust bundle URL {url}: Get \"{url}\": {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with another status than 200.
    #[error("error downloading trust bundle: {0}")]
    Status(String),
    /// No certificates.
    #[error("no certificates found in trust bundle")]
    Empty,
}

/// Parses bundle contents into DER certificates.
pub fn parse(
    td: &TrustDomain,
    data: &[u8],
    format: Format,
) -> Result<Vec<Vec<u8>>, TrustBundleError> {
    let certs = match format {
        Format::Pem => {
            let text =
                std::str::from_utf8(data).map_err(|e| TrustBundleError::Parse(e.to_string()))?;
            spiffe_core::x509svid::parse_pem_certificates(text)
                .map_err(|e| TrustBundleError::Parse(e.to_string()))?
        }
        Format::Spiffe => Bundle::parse_spiffe_json(td.clone(), data)
            .map_err(|e| {
                TrustBundleError::Parse(format!("unable to parse SPIFFE trust bundle: {e}"))
            })?
            .x509_ders(),
    };
    if certs.is_empty() {
        return Err(TrustBundleError::Empty);
    }
    Ok(certs)
}

/// Reads a bundle file.
pub fn from_path(
    td: &TrustDomain,
    path: &Path,
    format: Format,
) -> Result<Vec<Vec<u8>>, TrustBundleError> {
    let data = std::fs::read(path).map_err(|source| TrustBundleError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(td, &data, format)
}

/// Which roots verify https servers.
#[derive(Debug, Clone)]
pub enum Roots {
    /// The system's (`spire_tls::system_roots`).
    System,
    /// Only these (tests).
    Only(Vec<CertificateDer<'static>>),
}

/// How long one fetch (all redirects included) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Go's default redirect limit.
const MAX_REDIRECTS: usize = 10;

/// Sets `params` on `url`'s query, replacing values of the same keys, and sorts the query
/// by key as Go's `url.Values.Encode` does.
pub fn with_query(url: &str, params: &[(&str, String)]) -> Result<String, TrustBundleError> {
    let mut u = url::Url::parse(url).map_err(|e| TrustBundleError::Url(e.to_string()))?;
    let mut pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(p, _)| p == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.extend(params.iter().map(|(k, v)| ((*k).to_string(), v.clone())));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Ok(u.to_string())
}

/// Fetches a bundle from `url` (over `unix_socket` when given) and parses it.
pub async fn from_url(
    td: &TrustDomain,
    url: &str,
    unix_socket: Option<&Path>,
    format: Format,
    roots: &Roots,
) -> Result<Vec<Vec<u8>>, TrustBundleError> {
    let body = match tokio::time::timeout(FETCH_TIMEOUT, download(url, unix_socket, roots)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(TrustBundleError::Fetch {
                url: url.to_string(),
                reason: "timed out".into(),
            });
        }
    };
    parse(td, &body, format)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// GETs `url`, following redirects; the body of the final 200 answer.
async fn download(
    url: &str,
    unix_socket: Option<&Path>,
    roots: &Roots,
) -> Result<Bytes, TrustBundleError> {
    let fail = |reason: String| TrustBundleError::Fetch {
        url: url.to_string(),
        reason,
    };
    let mut current = url::Url::parse(url).map_err(|e| fail(e.to_string()))?;
    for _ in 0..=MAX_REDIRECTS {
        let resp = get_once(&current, unix_socket, roots)
            .await
            .map_err(&fail)?;
        let status = resp.status();
        if status.is_redirection()
            && let Some(location) = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
        {
            current = current
                .join(location)
                .map_err(|e| fail(format!("failed to parse Location header {location:?}: {e}")))?;
            continue;
        }
        if status != http::StatusCode::OK {
            return Err(TrustBundleError::Status(format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            )));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?;
        return Ok(body.to_bytes());
    }
    Err(fail("stopped after 10 redirects".into()))
}

/// One request on a new connection.
async fn get_once(
    url: &url::Url,
    unix_socket: Option<&Path>,
    roots: &Roots,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let host = url
        .host_str()
        .ok_or_else(|| "no host in URL".to_string())?
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("unsupported protocol scheme {:?}", url.scheme()))?;
    let io: Box<dyn Io> = match (unix_socket, url.scheme()) {
        (Some(socket), _) => Box::new(
            tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("dial unix {}: {e}", socket.display()))?,
        ),
        (None, "https") => {
            let tcp = tcp_connect(&host, port).await?;
            let roots = match roots {
                Roots::System => spire_tls::system_roots().map_err(|e| e.to_string())?,
                Roots::Only(r) => r.clone(),
            };
            let config = spire_tls::web_client_config(&roots).map_err(|e| e.to_string())?;
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = ServerName::try_from(bare).map_err(|e| e.to_string())?;
            Box::new(
                TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls: {e}"))?,
            )
        }
        (None, "http") => Box::new(tcp_connect(&host, port).await?),
        (None, other) => return Err(format!("unsupported protocol scheme {other:?}")),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let req = http::Request::get(if target.is_empty() { "/" } else { target })
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "Go-http-client/1.1")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    sender.send_request(req).await.map_err(|e| e.to_string())
}

async fn tcp_connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn ca_pem() -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    /// Answers each connection with the next of `responses` (a connection whose accept
    /// failed uses up its response); returns the requests seen.
    async fn serve<S>(
        accept: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<S>> + Send>>
        + Send
        + 'static,
        responses: Vec<String>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for resp in responses {
                let Some(mut s) = accept().await else {
                    continue;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(String::from_utf8_lossy(&req).to_string());
                s.write_all(resp.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
            }
        });
        rx
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn fetches_over_a_unix_socket_with_redirects_and_statuses() {
        let (pem, der) = ca_pem();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("h.sock");
        let listener = Arc::new(tokio::net::UnixListener::bind(&sock).unwrap());
        let accept = move || {
            let l = listener.clone();
            Box::pin(async move { Some(l.accept().await.unwrap().0) })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        };
        let mut seen = serve(
            accept,
            vec![
                "HTTP/1.1 302 Found\r\nLocation: /moved?x=1\r\nContent-Length: 0\r\n\r\n".into(),
                ok(&pem),
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            ],
        )
        .await;
        let url = with_query(
            "http://localhost/bundle?a=b",
            &[
                ("spire-attest-mode", "bootstrap".into()),
                ("spiffe-trust-domain", "example.org".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            url,
            "http://localhost/bundle?a=b&spiffe-trust-domain=example.org&spire-attest-mode=bootstrap"
        );
        let certs = from_url(&td(), &url, Some(&sock), Format::Pem, &Roots::System)
            .await
            .unwrap();
        assert_eq!(certs, vec![der]);
        let first = seen.recv().await.unwrap();
        assert!(
            first.starts_with(
                "GET /bundle?a=b&spiffe-trust-domain=example.org&spire-attest-mode=bootstrap HTTP/1.1\r\n"
            ),
            "{first}"
        );
        assert!(
            first.to_ascii_lowercase().contains("host: localhost\r\n"),
            "{first}"
        );
        assert!(
            seen.recv()
                .await
                .unwrap()
                .starts_with("GET /moved?x=1 HTTP/1.1")
        );
        let err = from_url(
            &td(),
            "http://localhost/b",
            Some(&sock),
            Format::Pem,
            &Roots::System,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "error downloading trust bundle: 404 Not Found"
        );
        // Nothing listening any more.
        drop(seen);
        let gone = dir.path().join("gone.sock");
        let err = from_url(
            &td(),
            "http://localhost/b",
            Some(&gone),
            Format::Pem,
            &Roots::System,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unable to fetch trust bundle URL http://localhost/b: Get \"http://localhost/b\": dial unix"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn fetches_over_https_with_the_given_roots_in_both_formats() {
        // A private web PKI: CA, and a server certificate for localhost.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let web_ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let resolver = spire_tls::SvidResolver::new();
        resolver
            .set(&[leaf.der().to_vec()], &leaf_key.serialize_der())
            .unwrap();
        let acceptor =
            spire_tls::TlsAcceptor::from(spire_tls::server_config(resolver, None).unwrap());
        let listener = Arc::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let port = listener.local_addr().unwrap().port();
        let accept = move || {
            let l = listener.clone();
            let acceptor = acceptor.clone();
            Box::pin(async move {
                let (tcp, _) = l.accept().await.unwrap();
                acceptor.accept(tcp).await.ok()
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        };
        // The bundle served: a SPIFFE CA.
        let (pem, der) = ca_pem();
        let mut bundle = Bundle::new(td());
        bundle.add_x509_authority(der.clone());
        let _seen = serve(
            accept,
            vec![ok(&pem), ok(&bundle.to_spiffe_json()), ok(&pem)],
        )
        .await;
        let roots = Roots::Only(vec![web_ca.der().clone()]);
        let url = format!("https://localhost:{port}/bundle");
        let certs = from_url(&td(), &url, None, Format::Pem, &roots)
            .await
            .unwrap();
        assert_eq!(certs, vec![der.clone()]);
        let certs = from_url(&td(), &url, None, Format::Spiffe, &roots)
            .await
            .unwrap();
        assert_eq!(certs, vec![der]);
        // Roots that do not vouch for the server: the handshake fails, and the error names
        // the URL as SPIRE's does.
        let (other_pem, _) = ca_pem();
        let other = rustls_pemfile_free_der(&other_pem);
        let err = from_url(&td(), &url, None, Format::Pem, &Roots::Only(vec![other]))
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "unable to fetch trust bundle URL {url}: Get \"{url}\": tls: "
            )),
            "{err}"
        );
    }

    fn rustls_pemfile_free_der(pem: &str) -> CertificateDer<'static> {
        let ders = spiffe_core::x509svid::parse_pem_certificates(pem).unwrap();
        CertificateDer::from(ders[0].clone())
    }

    #[test]
    fn parsing_and_files() {
        let (pem, der) = ca_pem();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.pem");
        std::fs::write(&f, &pem).unwrap();
        assert_eq!(from_path(&td(), &f, Format::Pem).unwrap(), vec![der]);
        assert!(matches!(
            parse(&td(), b"", Format::Pem),
            Err(TrustBundleError::Empty)
        ));
        let err = parse(&td(), b"[}", Format::Spiffe).unwrap_err();
        assert!(
            err.to_string()
                .contains("unable to parse SPIFFE trust bundle"),
            "{err}"
        );
        assert!(from_path(&td(), &dir.path().join("none"), Format::Pem).is_err());
        assert!(with_query("not a url", &[]).is_err());
        assert_eq!(
            with_query(
                "https://h/p?spire-attest-mode=x",
                &[("spire-attest-mode", "y".into())]
            )
            .unwrap(),
            "https://h/p?spire-attest-mode=y"
        );
    }
}
