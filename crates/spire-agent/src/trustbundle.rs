//! The bootstrap trust bundle: the X.509 authorities the agent trusts the server with before
//! its first attestation (`trust_bundle_path`, `trust_bundle_url`, in PEM or SPIFFE bundle
//! format).

use std::path::Path;

use spiffe_core::{Bundle, TrustDomain};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
    /// The URL could not be fetched.
    #[error("error fetching trust bundle from {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
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
            .map_err(|e| TrustBundleError::Parse(e.to_string()))?
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

/// Fetches a bundle over HTTP on a Unix socket (`trust_bundle_unix_socket`); https URLs
/// without a socket are not supported by this build.
pub async fn from_url(
    td: &TrustDomain,
    url: &str,
    unix_socket: Option<&Path>,
    format: Format,
) -> Result<Vec<Vec<u8>>, TrustBundleError> {
    let fail = |reason: String| TrustBundleError::Fetch {
        url: url.to_string(),
        reason,
    };
    let Some(socket) = unix_socket else {
        return Err(fail(
            "fetching over https needs web PKI roots, which this build does not have; use trust_bundle_path or trust_bundle_unix_socket".into(),
        ));
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("URL must use http with trust_bundle_unix_socket".into()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: spire-agent\r\nAccept: */*\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut buf),
    )
    .await
    .map_err(|_| fail("timed out".into()))?
    .map_err(|e| fail(e.to_string()))?;
    let body = http_body(&buf).map_err(fail)?;
    parse(td, body, format)
}

/// The body of an HTTP/1.x response with status 200.
fn http_body(resp: &[u8]) -> Result<&[u8], String> {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|e| e.to_string())?;
    let status = head.lines().next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("unexpected status: {status}"));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err("chunked responses are not supported".into());
    }
    Ok(&resp[end + 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_parsing() {
        assert_eq!(
            http_body(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody").unwrap(),
            b"body"
        );
        assert!(http_body(b"HTTP/1.0 404 Not Found\r\n\r\n").is_err());
        assert!(http_body(b"junk").is_err());
    }

    #[tokio::test]
    async fn fetches_over_a_unix_socket() {
        let td = TrustDomain::new("example.org").unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = cert.pem();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("h.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let body = pem.clone();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                body
            );
            s.write_all(resp.as_bytes()).await.unwrap();
        });
        let certs = from_url(&td, "http://localhost/bundle", Some(&sock), Format::Pem)
            .await
            .unwrap();
        assert_eq!(certs, vec![cert.der().to_vec()]);
        assert!(
            from_url(&td, "https://x/b", None, Format::Pem)
                .await
                .is_err()
        );
        let f = dir.path().join("b.pem");
        std::fs::write(&f, &pem).unwrap();
        assert_eq!(from_path(&td, &f, Format::Pem).unwrap().len(), 1);
        assert!(matches!(
            parse(&td, b"", Format::Pem),
            Err(TrustBundleError::Empty)
        ));
        assert!(
            parse(&td, b"{}", Format::Spiffe).is_err() || parse(&td, b"{}", Format::Spiffe).is_ok()
        );
    }
}
