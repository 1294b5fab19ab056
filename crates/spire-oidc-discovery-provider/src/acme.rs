//! HTTPS with certificates obtained from an ACME CA (the `acme` section), as SPIRE's
//! provider does with Go's `autocert.Manager`:
//!
//! - only the configured `domains` get certificates; a ClientHello without a server name,
//!   with a single-label name or for another host is refused with autocert's errors;
//! - the certificate for a name is obtained on the first ClientHello for it (ECDSA P-256
//!   key, TLS-ALPN-01 challenge answered on the same listener: a ClientHello offering only
//!   `acme-tls/1` gets the challenge certificate with the `acmeIdentifier` extension), then
//!   renewed 30 days (minus up to an hour of jitter) before it expires;
//! - with a `cache_dir`, the account key and the certificates live in autocert's
//!   `DirCache` layout, so a directory written by SPIRE's provider is read by ours and the
//!   other way round: `acme_account+key` (an `EC PRIVATE KEY` PEM block) and one file per
//!   domain named after it (the key's PEM block followed by the chain's `CERTIFICATE`
//!   blocks), directory 0700, files 0600;
//! - every HTTP request to the CA is bounded by [`HTTP_TIMEOUT`], an issuance by
//!   [`ISSUE_TIMEOUT`] (autocert's five minutes), and a failed issuance is not retried for
//!   a minute.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};
use spire_clock::SharedClock;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::serve::App;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Let's Encrypt's production directory: Go's `acme.LetsEncryptURL`, used when
/// `directory_url` is empty.
pub const LETS_ENCRYPT_URL: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The account key's cache entry.
pub const ACCOUNT_KEY_NAME: &str = "acme_account+key";
/// The name older autocert versions stored the account key under (still read).
pub const LEGACY_ACCOUNT_KEY_NAME: &str = "acme_account.key";
/// How long before expiry a certificate is renewed (autocert's default).
pub const RENEW_BEFORE: Duration = Duration::from_secs(720 * 3600);
/// Up to this much earlier still, at random, so that many servers do not renew at once.
pub const RENEW_JITTER: Duration = Duration::from_secs(3600);
/// The bound on one HTTP request to the CA.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on obtaining one certificate (account, order, challenge, finalization).
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a failed issuance is remembered before a new ClientHello tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// The User-Agent SPIRE's provider sends to the CA.
pub const USER_AGENT: &str = "SPIRE OIDC Discovery Provider";
/// The environment variable that moves the listener off SPIRE's fixed port 443 (tests).
pub const PORT_ENV: &str = "SPIRE_RS_OIDC_ACME_PORT";

/// Why a ClientHello got no certificate (autocert's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// No SNI.
    #[error("acme/autocert: missing server name")]
    MissingServerName,
    /// A name without a dot (`localhost`).
    #[error("acme/autocert: server name component count invalid")]
    ComponentCount,
    /// A name IDNA lookup refuses.
    #[error("acme/autocert: server name contains invalid character")]
    InvalidCharacter,
    /// A TLS-ALPN-01 probe for a name with no challenge in progress.
    #[error("acme/autocert: no token cert for {0}")]
    NoTokenCert(String),
    /// A name outside `domains`.
    #[error("acme/autocert: host {0} not configured in HostWhitelist")]
    NotAllowed(String),
    /// Obtaining the certificate failed.
    #[error("{0}")]
    Issue(String),
}

/// Checks the SNI as autocert does and returns the name to look up (lowercase).
pub fn server_name(sni: Option<&str>) -> Result<String, HelloError> {
    let name = match sni {
        None | Some("") => return Err(HelloError::MissingServerName),
        Some(n) => n,
    };
    if !name.trim_matches('.').contains('.') {
        return Err(HelloError::ComponentCount);
    }
    // SNI is ASCII on the wire; IDNA lookup (STD3 rules, hyphen checks) lowercases it and
    // refuses other characters and labels that begin or end with a hyphen.
    let bad_label = |l: &str| l.starts_with('-') || l.ends_with('-');
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || name.split('.').any(bad_label)
    {
        return Err(HelloError::InvalidCharacter);
    }
    Ok(name.to_ascii_lowercase())
}

/// A ClientHello from a CA validating TLS-ALPN-01 offers exactly `acme-tls/1`.
pub fn wants_token_cert(alpn: &[Vec<u8>]) -> bool {
    alpn.len() == 1 && alpn[0] == ACME_TLS_ALPN
}

/// autocert's `HostWhitelist` of the configured domains.
#[derive(Debug, Clone)]
pub struct HostPolicy(Vec<String>);

impl HostPolicy {
    /// The allowed names (already validated lowercase punycode by the configuration).
    pub fn new(domains: &[String]) -> HostPolicy {
        HostPolicy(domains.iter().map(|d| d.to_ascii_lowercase()).collect())
    }

    /// Whether `host` (as returned by [`server_name`]) may get a certificate.
    pub fn check(&self, host: &str) -> Result<(), HelloError> {
        if self.0.iter().any(|d| d == host) {
            Ok(())
        } else {
            Err(HelloError::NotAllowed(spire_gocompat::strconv::quote(host)))
        }
    }
}

/// An ECDSA P-256 private key (PKCS#8 DER inside).
#[derive(Clone)]
pub struct EcKey {
    pkcs8: Arc<Vec<u8>>,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcKey(..)")
    }
}

impl EcKey {
    /// A fresh key.
    pub fn generate() -> Result<EcKey, String> {
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| "failed to generate an ECDSA P-256 key".to_string())?;
        let doc = kp
            .to_pkcs8v1()
            .map_err(|_| "failed to encode an ECDSA key".to_string())?;
        Ok(EcKey {
            pkcs8: Arc::new(doc.as_ref().to_vec()),
        })
    }

    /// A key from a PEM block's DER: SEC1 (`EC PRIVATE KEY`, what autocert writes) or
    /// PKCS#8 (`PRIVATE KEY`). Other keys (RSA) are refused.
    pub fn from_der(der: &[u8]) -> Result<EcKey, String> {
        let kp = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .or_else(|_| EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der))
            .map_err(|_| "acme/autocert: failed to parse private key".to_string())?;
        let doc = kp
            .to_pkcs8v1()
            .map_err(|_| "failed to encode an ECDSA key".to_string())?;
        Ok(EcKey {
            pkcs8: Arc::new(doc.as_ref().to_vec()),
        })
    }

    fn pair(&self) -> Result<EcdsaKeyPair, String> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8)
            .map_err(|_| "invalid ECDSA key".to_string())
    }

    /// PKCS#8 DER.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The uncompressed public point.
    pub fn public_point(&self) -> Result<Vec<u8>, String> {
        Ok(self.pair()?.public_key().as_ref().to_vec())
    }

    /// The `EC PRIVATE KEY` PEM block autocert writes (SEC1, as Go's
    /// `x509.MarshalECPrivateKey`).
    pub fn to_sec1_pem(&self) -> Result<String, String> {
        let kp = self.pair()?;
        use aws_lc_rs::encoding::{AsDer as _, EcPrivateKeyRfc5915Der};
        let sec1: EcPrivateKeyRfc5915Der<'static> = kp
            .private_key()
            .as_der()
            .map_err(|_| "failed to encode an ECDSA key".to_string())?;
        Ok(pem_block("EC PRIVATE KEY", sec1.as_ref()))
    }
}

/// A certificate ready to present.
#[derive(Clone)]
pub struct Issued {
    /// The key and chain for rustls.
    pub certified: Arc<CertifiedKey>,
    /// The private key.
    pub key: EcKey,
    /// The chain, leaf first (DER).
    pub chain: Vec<Vec<u8>>,
    /// The leaf's expiry.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// autocert's `validCert`: the leaf is valid at `now`, names `domain` and holds `key`'s
/// public key.
pub fn valid_cert(
    domain: &str,
    chain: Vec<Vec<u8>>,
    key: EcKey,
    now: SystemTime,
) -> Result<Issued, String> {
    use x509_parser::prelude::*;
    let leaf_der = chain
        .first()
        .ok_or("acme/autocert: no public key found")?
        .clone();
    let (_, leaf) = X509Certificate::from_der(&leaf_der)
        .map_err(|_| "acme/autocert: no public key found".to_string())?;
    let secs = |t: &ASN1Time| t.timestamp();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    if now_s < secs(&leaf.validity().not_before) {
        return Err("acme/autocert: certificate is not valid yet".into());
    }
    let not_after = secs(&leaf.validity().not_after);
    if now_s > not_after {
        return Err("acme/autocert: expired certificate".into());
    }
    let names: Vec<String> = match leaf.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !names.iter().any(|n| host_matches(n, domain)) {
        return Err(format!(
            "x509: certificate is valid for {}, not {domain}",
            names.join(", ")
        ));
    }
    if leaf.public_key().subject_public_key.data.as_ref() != key.public_point()?.as_slice() {
        return Err("acme/autocert: private key does not match public key".into());
    }
    let certified = spire_tls::certified_key(&chain, key.pkcs8()).map_err(|e| e.to_string())?;
    Ok(Issued {
        certified,
        key,
        chain,
        not_after: SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(not_after).unwrap_or(0)),
    })
}

/// A certificate name matching a host, with a wildcard allowed as the whole first label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let pattern = pattern.trim_end_matches('.');
    if pattern == host {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(rest), Some((first, tail))) => !first.is_empty() && rest == tail,
        _ => false,
    }
}

/// A PEM block as Go's `pem.Encode` writes it (LF line ends, 64 columns).
fn pem_block(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A domain's cache entry: the key's PEM block, then the chain's.
pub fn encode_cert(key: &EcKey, chain: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut out = key.to_sec1_pem()?;
    for c in chain {
        out.push_str(&pem_block("CERTIFICATE", c));
    }
    Ok(out.into_bytes())
}

/// Reads a domain's cache entry (autocert's `cacheGet`): `None` when it cannot be used.
pub fn decode_cert(data: &[u8], domain: &str, now: SystemTime) -> Option<Issued> {
    let blocks = pem::parse_many(data).ok()?;
    let (first, rest) = blocks.split_first()?;
    if !first.tag().contains("PRIVATE") {
        return None;
    }
    let key = EcKey::from_der(first.contents()).ok()?;
    let chain: Vec<Vec<u8>> = rest.iter().map(|b| b.contents().to_vec()).collect();
    valid_cert(domain, chain, key, now).ok()
}

/// The TLS-ALPN-01 challenge certificate (RFC 8737) for `domain`: self-signed, fresh
/// P-256 key, the name as CN and SAN, valid 24 hours from `now`, and the critical
/// `id-pe-acmeIdentifier` extension holding the SHA-256 digest of the key authorization.
/// Returns the certificate's DER and the key's PKCS#8.
pub fn challenge_cert(
    domain: &str,
    digest: &[u8],
    now: SystemTime,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    if digest.len() != 32 {
        return Err("the key authorization digest must be 32 bytes".into());
    }
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut p =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, domain);
    p.distinguished_name = dn;
    p.serial_number = Some(rcgen::SerialNumber::from(vec![1u8]));
    let start = time::OffsetDateTime::from(now);
    p.not_before = start;
    p.not_after = start + time::Duration::hours(24);
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// The certificate request autocert sends: CN and SAN `domain`, signed by `key`.
fn cert_request(domain: &str, key: &EcKey) -> Result<Vec<u8>, String> {
    let kp = rcgen::KeyPair::try_from(key.pkcs8()).map_err(|e| e.to_string())?;
    let mut p =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, domain);
    p.distinguished_name = dn;
    let csr = p.serialize_request(&kp).map_err(|e| e.to_string())?;
    Ok(csr.der().to_vec())
}

/// autocert's `DirCache`.
#[derive(Debug, Clone)]
pub struct DirCache(pub PathBuf);

impl DirCache {
    /// The entry `name`, `None` when absent.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(self.0.join(name)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(spire_gocompat::os::path_error(
                "open",
                &self.0.join(name).display().to_string(),
                &e,
            )),
        }
    }

    /// Writes the entry `name` (0600, through a temporary file renamed into place; the
    /// directory is created 0700).
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), String> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .map_err(|e| {
                spire_gocompat::os::path_error("mkdir", &self.0.display().to_string(), &e)
            })?;
        let tmp = self.0.join(format!(".{name}.tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.0.join(name))
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            spire_gocompat::os::path_error("write", &self.0.join(name).display().to_string(), &e)
        })
    }
}

/// The HTTP client for the CA: HTTP/1.1, one connection per request, server verified
/// against the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured, as Go does),
/// each request bounded by [`HTTP_TIMEOUT`].
#[derive(Clone)]
pub struct AcmeHttp {
    tls: Arc<rustls::ClientConfig>,
}

impl AcmeHttp {
    /// A client trusting the system's roots.
    pub fn new() -> Result<AcmeHttp, String> {
        let roots = spire_tls::system_roots().map_err(|e| e.to_string())?;
        let tls = spire_tls::web_client_config(&roots).map_err(|e| e.to_string())?;
        Ok(AcmeHttp { tls })
    }

    async fn send(
        tls: Arc<rustls::ClientConfig>,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Result<http::Response<Full<Bytes>>, String> {
        let (mut parts, body) = req.into_parts();
        let uri = parts.uri.clone();
        let host = uri.host().ok_or("the ACME URL has no host")?.to_string();
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(format!("unsupported protocol scheme {other:?}")),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
        let io: Box<dyn Io> = if https {
            let name =
                rustls::pki_types::ServerName::try_from(bare.clone()).map_err(|e| e.to_string())?;
            Box::new(
                tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls: {e}"))?,
            )
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or(host);
        parts.uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&authority).map_err(|e| e.to_string())?,
        );
        parts.headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(USER_AGENT),
        );
        let rsp = sender
            .send_request(http::Request::from_parts(parts, body))
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = rsp.into_parts();
        let body = Limited::new(body, 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(http::Response::from_parts(parts, Full::new(body)))
    }

    /// GET `url`, the body.
    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let req = http::Request::get(url)
            .body(BodyWrapper::from(Vec::new()))
            .map_err(|e| e.to_string())?;
        let rsp = tokio::time::timeout(HTTP_TIMEOUT, Self::send(self.tls.clone(), req))
            .await
            .map_err(|_| format!("Get {url:?}: timed out"))??;
        if !rsp.status().is_success() {
            return Err(format!("Get {url:?}: {}", rsp.status()));
        }
        Ok(rsp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default())
    }
}

impl std::fmt::Debug for AcmeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcmeHttp")
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl instant_acme::HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            match tokio::time::timeout(HTTP_TIMEOUT, Self::send(tls, req)).await {
                Ok(Ok(rsp)) => Ok(BytesResponse::from(rsp)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(e.into())),
                Err(_) => Err(instant_acme::Error::Str("ACME request timed out")),
            }
        })
    }
}

/// What a ClientHello gets.
#[derive(Debug, Clone)]
pub enum HelloCert {
    /// The domain's certificate: the connection goes on with HTTP/1.1.
    Site(Arc<CertifiedKey>),
    /// A TLS-ALPN-01 challenge certificate: the handshake completes with `acme-tls/1`
    /// and the connection is closed.
    Token(Arc<CertifiedKey>),
}

#[derive(Default)]
struct Slot {
    current: Option<Issued>,
    failed: Option<SystemTime>,
    renewing: bool,
}

/// The `acme` settings the manager needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `domains`.
    pub domains: Vec<String>,
    /// `directory_url` (empty: Let's Encrypt).
    pub directory_url: String,
    /// `email`.
    pub email: String,
    /// `cache_dir` (empty: no cache).
    pub cache_dir: String,
}

/// autocert's `Manager`.
pub struct Manager {
    policy: HostPolicy,
    cache: Option<DirCache>,
    directory_url: String,
    email: String,
    http: AcmeHttp,
    clock: SharedClock,
    jitter: fn(Duration) -> Duration,
    account: tokio::sync::Mutex<Option<Account>>,
    slots: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    tokens: parking_lot::Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("policy", &self.policy)
            .field("cache", &self.cache)
            .field("directory_url", &self.directory_url)
            .finish_non_exhaustive()
    }
}

/// A random duration in `[0, max)`.
pub fn random_jitter(max: Duration) -> Duration {
    let n = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::random_range(0..n))
}

fn quote(s: &str) -> String {
    spire_gocompat::strconv::quote(s)
}

impl Manager {
    /// A manager for `s`; `jitter(max)` draws the renewal jitter.
    pub fn new(
        s: &Settings,
        http: AcmeHttp,
        clock: SharedClock,
        jitter: fn(Duration) -> Duration,
    ) -> Arc<Manager> {
        Arc::new(Manager {
            policy: HostPolicy::new(&s.domains),
            cache: (!s.cache_dir.is_empty()).then(|| DirCache(PathBuf::from(&s.cache_dir))),
            directory_url: if s.directory_url.is_empty() {
                LETS_ENCRYPT_URL.to_string()
            } else {
                s.directory_url.clone()
            },
            email: s.email.clone(),
            http,
            clock,
            jitter,
            account: tokio::sync::Mutex::new(None),
            slots: parking_lot::Mutex::new(HashMap::new()),
            tokens: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// autocert's `GetCertificate`: the certificate a ClientHello with this SNI and these
    /// ALPN protocols gets, obtaining it first when needed.
    pub async fn get_certificate(
        self: &Arc<Self>,
        sni: Option<&str>,
        alpn: &[Vec<u8>],
    ) -> Result<HelloCert, HelloError> {
        let name = server_name(sni)?;
        if wants_token_cert(alpn) {
            return match self.tokens.lock().get(&name) {
                Some(c) => Ok(HelloCert::Token(c.clone())),
                None => Err(HelloError::NoTokenCert(quote(&name))),
            };
        }
        self.policy.check(&name)?;
        let domain = name.trim_end_matches('.').to_string();
        let slot = self.slots.lock().entry(domain.clone()).or_default().clone();
        let mut s = slot.lock().await;
        if let Some(i) = &s.current {
            return Ok(HelloCert::Site(i.certified.clone()));
        }
        let now = self.clock.now();
        if let Some(at) = s.failed
            && now < at + RETRY_AFTER
        {
            // autocert keeps the failed state for a minute: hellos meanwhile get this.
            return Err(HelloError::Issue(
                "acme/autocert: missing certificate".to_string(),
            ));
        }
        if let Some(i) = self.cache_get(&domain) {
            s.current = Some(i.clone());
            self.start_renew(&domain, &mut s, slot.clone());
            return Ok(HelloCert::Site(i.certified));
        }
        let key = EcKey::generate().map_err(HelloError::Issue)?;
        match tokio::time::timeout(ISSUE_TIMEOUT, self.issue(&domain, &key)).await {
            Ok(Ok(i)) => {
                self.cache_put(&domain, &i);
                s.current = Some(i.clone());
                s.failed = None;
                self.start_renew(&domain, &mut s, slot.clone());
                Ok(HelloCert::Site(i.certified))
            }
            Ok(Err(e)) => {
                s.failed = Some(now);
                Err(HelloError::Issue(e))
            }
            Err(_) => {
                let e = "acme/autocert: context deadline exceeded".to_string();
                s.failed = Some(now);
                Err(HelloError::Issue(e))
            }
        }
    }

    fn cache_get(&self, domain: &str) -> Option<Issued> {
        let cache = self.cache.as_ref()?;
        match cache.get(domain) {
            Ok(Some(data)) => decode_cert(&data, domain, self.clock.now()),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "Failed to read the ACME cache");
                None
            }
        }
    }

    fn cache_put(&self, domain: &str, i: &Issued) {
        let Some(cache) = &self.cache else { return };
        let r = encode_cert(&i.key, &i.chain).and_then(|d| cache.put(domain, &d));
        if let Err(e) = r {
            tracing::warn!(error = %e, "Failed to write the ACME cache");
        }
    }

    fn start_renew(
        self: &Arc<Self>,
        domain: &str,
        s: &mut Slot,
        slot: Arc<tokio::sync::Mutex<Slot>>,
    ) {
        if s.renewing {
            return;
        }
        s.renewing = true;
        let me = self.clone();
        let domain = domain.to_string();
        tokio::spawn(async move { me.renew_loop(domain, slot).await });
    }

    /// How long to wait before renewing a certificate expiring at `not_after`.
    pub fn renew_in(&self, not_after: SystemTime) -> Duration {
        let left = not_after
            .duration_since(self.clock.now())
            .unwrap_or_default();
        left.saturating_sub(RENEW_BEFORE)
            .saturating_sub((self.jitter)(RENEW_JITTER))
    }

    async fn renew_loop(self: Arc<Self>, domain: String, slot: Arc<tokio::sync::Mutex<Slot>>) {
        let mut wait = match &slot.lock().await.current {
            Some(i) => self.renew_in(i.not_after),
            None => return,
        };
        loop {
            tokio::time::sleep(wait).await;
            wait = match tokio::time::timeout(2 * ISSUE_TIMEOUT, self.renew_once(&domain, &slot))
                .await
            {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    tracing::error!(domain = %domain, error = %e, "Failed to renew the ACME certificate");
                    RENEW_JITTER / 2 + (self.jitter)(RENEW_JITTER / 2)
                }
                Err(_) => {
                    tracing::error!(domain = %domain, "Renewing the ACME certificate timed out");
                    RENEW_JITTER / 2 + (self.jitter)(RENEW_JITTER / 2)
                }
            };
        }
    }

    /// One renewal: a fresher certificate from the cache (another instance renewed it) or
    /// a new one for the same key. Returns the wait before the next renewal.
    async fn renew_once(
        &self,
        domain: &str,
        slot: &tokio::sync::Mutex<Slot>,
    ) -> Result<Duration, String> {
        if let Some(i) = self.cache_get(domain) {
            let next = self.renew_in(i.not_after);
            if next > RENEW_BEFORE + RENEW_JITTER {
                slot.lock().await.current = Some(i);
                return Ok(next);
            }
        }
        let key = match &slot.lock().await.current {
            Some(i) => i.key.clone(),
            None => EcKey::generate()?,
        };
        let i = self.issue(domain, &key).await?;
        self.cache_put(domain, &i);
        let next = self.renew_in(i.not_after);
        tracing::info!(domain = %domain, "Renewed the ACME certificate");
        slot.lock().await.current = Some(i);
        Ok(next)
    }

    async fn account_key(&self) -> Result<EcKey, String> {
        let Some(cache) = &self.cache else {
            return EcKey::generate();
        };
        let data = match cache.get(ACCOUNT_KEY_NAME)? {
            Some(d) => Some(d),
            None => cache.get(LEGACY_ACCOUNT_KEY_NAME)?,
        };
        match data {
            None => {
                let key = EcKey::generate()?;
                cache.put(ACCOUNT_KEY_NAME, key.to_sec1_pem()?.as_bytes())?;
                Ok(key)
            }
            Some(d) => {
                let block = pem::parse(&d)
                    .ok()
                    .filter(|b| b.tag().contains("PRIVATE"))
                    .ok_or("acme/autocert: invalid account key found in cache")?;
                EcKey::from_der(block.contents())
            }
        }
    }

    async fn account(&self) -> Result<Account, String> {
        let mut g = self.account.lock().await;
        if let Some(a) = &*g {
            return Ok(a.clone());
        }
        let key = self.account_key().await?;
        let dir: serde_json::Value =
            serde_json::from_slice(&self.http.get(&self.directory_url).await?)
                .map_err(|e| format!("acme: invalid directory: {e}"))?;
        if let Some(tos) = dir
            .get("meta")
            .and_then(|m| m.get("termsOfService"))
            .and_then(|t| t.as_str())
        {
            tracing::info!(url = %tos, "ACME Terms Of Service accepted");
        }
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(key.pkcs8().to_vec());
        let signer = instant_acme::Key::from_pkcs8_der(pkcs8.clone_key()).map_err(acme_err)?;
        let (account, _) = Account::builder_with_http(Box::new(self.http.clone()))
            .create_from_key(
                (signer, rustls::pki_types::PrivateKeyDer::Pkcs8(pkcs8)),
                self.directory_url.clone(),
            )
            .await
            .map_err(acme_err)?;
        if !self.email.is_empty() {
            let contact = format!("mailto:{}", self.email);
            if let Err(e) = account.update_contacts(&[contact.as_str()]).await {
                tracing::warn!(error = %acme_err(e), "Failed to set the ACME account's contact");
            }
        }
        *g = Some(account.clone());
        Ok(account)
    }

    /// Obtains a certificate for `domain` with `key` (autocert's `authorizedCert`).
    async fn issue(&self, domain: &str, key: &EcKey) -> Result<Issued, String> {
        let csr = cert_request(domain, key)?;
        let account = self.account().await?;
        let ids = [Identifier::Dns(domain.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(acme_err)?;
        let authorized = self.authorize(&mut order, domain).await;
        self.tokens.lock().remove(domain);
        authorized?;
        order.finalize_csr(&csr).await.map_err(acme_err)?;
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(Duration::from_secs(120));
        let chain_pem = order.poll_certificate(&retry).await.map_err(acme_err)?;
        let chain: Vec<Vec<u8>> = pem::parse_many(chain_pem.as_bytes())
            .map_err(|e| format!("acme: invalid certificate chain: {e}"))?
            .into_iter()
            .map(|b| b.into_contents())
            .collect();
        valid_cert(domain, chain, key.clone(), self.clock.now())
    }

    async fn authorize(&self, order: &mut instant_acme::Order, domain: &str) -> Result<(), String> {
        let url = order.url().to_string();
        match order.state().status {
            OrderStatus::Ready => return Ok(()),
            OrderStatus::Pending => {}
            other => {
                return Err(format!(
                    "acme/autocert: invalid new order status {}; order URL: {}",
                    quote(order_status(other)),
                    quote(&url)
                ));
            }
        }
        {
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(acme_err)?;
                if a.status != AuthorizationStatus::Pending {
                    continue;
                }
                let zurl = a.url().to_string();
                let Some(mut ch) = a.challenge(ChallengeType::TlsAlpn01) else {
                    return Err(format!(
                        "acme/autocert: unable to satisfy {} for domain {}: no viable challenge type found",
                        quote(&zurl),
                        quote(domain)
                    ));
                };
                let digest = ch.key_authorization().digest();
                let (der, pkcs8) = challenge_cert(domain, digest.as_ref(), self.clock.now())?;
                let ck = spire_tls::certified_key(&[der], &pkcs8).map_err(|e| e.to_string())?;
                self.tokens.lock().insert(domain.to_string(), ck);
                ch.set_ready().await.map_err(acme_err)?;
            }
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(Duration::from_secs(120));
        match order.poll_ready(&retry).await.map_err(acme_err)? {
            OrderStatus::Ready => Ok(()),
            other => Err(format!(
                "acme/autocert: order {} ended {}",
                quote(&url),
                quote(order_status(other))
            )),
        }
    }
}

fn order_status(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Pending => "pending",
        OrderStatus::Ready => "ready",
        OrderStatus::Processing => "processing",
        OrderStatus::Valid => "valid",
        OrderStatus::Invalid => "invalid",
    }
}

fn acme_err(e: instant_acme::Error) -> String {
    format!("acme: {e}")
}

/// The port the ACME listener binds: 443 as SPIRE, or [`PORT_ENV`] when set (tests).
pub fn listen_port() -> Result<u16, String> {
    match std::env::var(PORT_ENV) {
        Ok(v) => {
            let p: u16 = v
                .parse()
                .map_err(|_| format!("{PORT_ENV}={v:?} is not a port number"))?;
            tracing::warn!(
                port = p,
                "{PORT_ENV} is set: the ACME listener uses this port instead of 443 (for tests only)"
            );
            Ok(p)
        }
        Err(_) => Ok(443),
    }
}

/// Serves HTTPS with the manager's certificates until the process stops.
pub async fn serve(listener: tokio::net::TcpListener, manager: Arc<Manager>, app: App) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let manager = manager.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    if let Err(e) = conn(stream, manager, app).await {
                        tracing::debug!(error = %e, "http: TLS handshake error from {peer}");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "Accept failed"),
        }
    }
}

async fn conn(
    stream: tokio::net::TcpStream,
    manager: Arc<Manager>,
    app: App,
) -> Result<(), String> {
    let start = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let alpn: Vec<Vec<u8>> = hello
        .alpn()
        .map(|it| it.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    let (key, protos, token): (_, &[&[u8]], bool) = match manager
        .get_certificate(sni.as_deref(), &alpn)
        .await
        .map_err(|e| e.to_string())?
    {
        HelloCert::Site(k) => (k, &[b"http/1.1"], false),
        HelloCert::Token(k) => (k, &[ACME_TLS_ALPN], true),
    };
    let config = spire_tls::fixed_cert_server_config(key, protos).map_err(|e| e.to_string())?;
    let mut tls = tokio::time::timeout(Duration::from_secs(10), start.into_stream(config))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if token {
        use tokio::io::AsyncWriteExt as _;
        let _ = tls.shutdown().await;
        return Ok(());
    }
    crate::serve::serve_conn(tls, crate::serve::app_fn(app, true)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_as_autocert() {
        assert_eq!(server_name(None), Err(HelloError::MissingServerName));
        assert_eq!(server_name(Some("")), Err(HelloError::MissingServerName));
        assert_eq!(
            server_name(Some("localhost")),
            Err(HelloError::ComponentCount)
        );
        assert_eq!(
            server_name(Some(".localhost.")),
            Err(HelloError::ComponentCount)
        );
        assert_eq!(
            server_name(Some("a b.c")),
            Err(HelloError::InvalidCharacter)
        );
        assert_eq!(
            server_name(Some("OIDC.Example.org")).unwrap(),
            "oidc.example.org"
        );
        assert_eq!(
            HelloError::ComponentCount.to_string(),
            "acme/autocert: server name component count invalid"
        );
        let p = HostPolicy::new(&["oidc.example.org".into()]);
        assert!(p.check("oidc.example.org").is_ok());
        assert_eq!(
            p.check("other.example.org").unwrap_err().to_string(),
            "acme/autocert: host \"other.example.org\" not configured in HostWhitelist"
        );
        assert!(wants_token_cert(&[b"acme-tls/1".to_vec()]));
        assert!(!wants_token_cert(&[
            b"acme-tls/1".to_vec(),
            b"http/1.1".to_vec()
        ]));
        assert!(!wants_token_cert(&[]));
    }

    #[test]
    fn challenge_cert_carries_the_acme_identifier() {
        use x509_parser::prelude::*;
        let digest = [7u8; 32];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (der, pkcs8) = challenge_cert("oidc.example.org", &digest, now).unwrap();
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        let ext = c
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // DER OCTET STRING of the digest.
        let mut want = vec![0x04, 32];
        want.extend_from_slice(&digest);
        assert_eq!(ext.value, want.as_slice());
        let san = c.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::DNSName("oidc.example.org")]
        );
        assert_eq!(c.validity().not_before.timestamp(), 1_800_000_000);
        assert_eq!(c.validity().not_after.timestamp(), 1_800_000_000 + 86_400);
        assert!(EcKey::from_der(&pkcs8).is_ok());
        assert!(challenge_cert("oidc.example.org", &[1, 2], now).is_err());
    }

    fn leaf(domain: &str, key: &EcKey, not_after_days: i64) -> Vec<u8> {
        let kp = rcgen::KeyPair::try_from(key.pkcs8()).unwrap();
        let mut p = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        p.not_after = p.not_before + time::Duration::days(not_after_days);
        p.self_signed(&kp).unwrap().der().to_vec()
    }

    #[test]
    fn cache_entry_round_trip_in_autocert_format() {
        let key = EcKey::generate().unwrap();
        let chain = vec![leaf("oidc.example.org", &key, 90)];
        let data = encode_cert(&key, &chain).unwrap();
        let text = String::from_utf8(data.clone()).unwrap();
        assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 1);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 86_400);
        let got = decode_cert(&data, "oidc.example.org", now).unwrap();
        assert_eq!(got.chain, chain);
        assert_eq!(got.key.pkcs8(), key.pkcs8());
        assert_eq!(
            got.not_after,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 90 * 86_400)
        );
        // Another name, an expired leaf, a key that is not the leaf's: cache misses.
        assert!(decode_cert(&data, "other.example.org", now).is_none());
        let late = now + Duration::from_secs(100 * 86_400);
        assert!(decode_cert(&data, "oidc.example.org", late).is_none());
        let other = EcKey::generate().unwrap();
        let wrong = encode_cert(&other, &chain).unwrap();
        assert!(decode_cert(&wrong, "oidc.example.org", now).is_none());
        assert!(decode_cert(b"garbage", "oidc.example.org", now).is_none());
    }

    #[test]
    fn dir_cache_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let c = DirCache(d.path().join("cache"));
        assert_eq!(c.get(ACCOUNT_KEY_NAME).unwrap(), None);
        let key = EcKey::generate().unwrap();
        c.put(ACCOUNT_KEY_NAME, key.to_sec1_pem().unwrap().as_bytes())
            .unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.path().join("cache")), 0o700);
        assert_eq!(mode(&d.path().join("cache").join(ACCOUNT_KEY_NAME)), 0o600);
        let back = c.get(ACCOUNT_KEY_NAME).unwrap().unwrap();
        let block = pem::parse(&back).unwrap();
        assert_eq!(block.tag(), "EC PRIVATE KEY");
        assert_eq!(
            EcKey::from_der(block.contents()).unwrap().pkcs8(),
            key.pkcs8()
        );
    }

    /// A throwaway key written by Go's `x509.MarshalECPrivateKey` + `pem.Encode`, as
    /// autocert stores keys.
    const GO_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEICrK6rOKuAlspMzDZ7aaK/4G5WNbNFAEQdKU9gwziviooAoGCCqGSM49
AwEHoUQDQgAE4uHs6T85bT2CE2dlHawfxtcro8+90sJ8X5vJStwBm3Ks25RazInN
kR7stty054CzdVREZUJZcWoeCodfsCY+Dg==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn keys_written_by_go_are_read_and_written_back_byte_for_byte() {
        let block = pem::parse(GO_SEC1_PEM).unwrap();
        let key = EcKey::from_der(block.contents()).unwrap();
        assert_eq!(key.to_sec1_pem().unwrap(), GO_SEC1_PEM);
    }

    #[derive(Debug)]
    struct Fixed(SystemTime);
    impl spire_clock::Clock for Fixed {
        fn now(&self) -> SystemTime {
            self.0
        }
    }

    #[tokio::test]
    async fn cached_certificate_is_served_and_renewal_is_scheduled_30_days_ahead() {
        let d = tempfile::tempdir().unwrap();
        let key = EcKey::generate().unwrap();
        let chain = vec![leaf("oidc.example.org", &key, 90)];
        DirCache(d.path().to_path_buf())
            .put("oidc.example.org", &encode_cert(&key, &chain).unwrap())
            .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 86_400);
        let m = Manager::new(
            &Settings {
                domains: vec!["oidc.example.org".into()],
                directory_url: "https://127.0.0.1:1/dir".into(),
                email: "a@example.org".into(),
                cache_dir: d.path().display().to_string(),
            },
            AcmeHttp {
                tls: spire_tls::web_client_config(&[]).unwrap_or_else(|_| {
                    let k = EcKey::generate().unwrap();
                    let c = leaf("x.example.org", &k, 1);
                    spire_tls::web_client_config(&[c.into()]).unwrap()
                }),
            },
            Arc::new(Fixed(now)),
            |_| Duration::ZERO,
        );
        match m
            .get_certificate(Some("oidc.example.org"), &[b"http/1.1".to_vec()])
            .await
        {
            Ok(HelloCert::Site(ck)) => assert_eq!(ck.cert[0].as_ref(), chain[0].as_slice()),
            other => panic!("{other:?}"),
        }
        // 89 days left, renewed 30 days before expiry.
        assert_eq!(
            m.renew_in(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 90 * 86_400)),
            Duration::from_secs(59 * 86_400)
        );
        assert!(matches!(
            m.get_certificate(Some("oidc.example.org"), &[ACME_TLS_ALPN.to_vec()])
                .await,
            Err(HelloError::NoTokenCert(_))
        ));
        assert!(matches!(
            m.get_certificate(Some("x.example.org"), &[]).await,
            Err(HelloError::NotAllowed(_))
        ));
    }
}
