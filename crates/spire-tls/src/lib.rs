//! TLS for spire-rs: the only crate that builds rustls configurations.
//!
//! - Crypto provider: aws-lc-rs, installed once by [`provider`].
//! - Certificates presented: [`SvidResolver`] holds the current X509-SVID and key and can be
//!   swapped at any time (rotation without restarting listeners). The key is either a PKCS#8
//!   key in this process or a `spire_plugin::Signer`, so that keys held by a KeyManager are
//!   used without ever leaving it.
//! - Peer verification: SPIFFE rules via `spiffe-core` (X509-SVID structure, path to the
//!   bundle of the peer's trust domain), never web-PKI host names. [`PeerVerifier`] checks
//!   the peer against a bundle source and, optionally, an expected SPIFFE ID.
//!
//! - Web PKI (only for fetching `trust_bundle_url` over https): [`web_client_config`] over
//!   [`system_roots`], the platform's roots as Go finds them (`SSL_CERT_FILE`,
//!   `SSL_CERT_DIR`, then the usual files).
//! - Other HTTPS APIs (the Kubernetes API server, kubelets): [`https_client_config`] with
//!   the roots, or the skipped verification, and the client certificate their configuration
//!   names.
//!
//! Architecture invariant: no other crate constructs a `rustls::ServerConfig` or
//! `rustls::ClientConfig`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer, UnixTime};
use spiffe_core::keys::{Curve, JwsAlgorithm, PublicKeyKind};
use spiffe_core::{BundleSet, SpiffeId, TrustDomain, X509BundleSource, x509svid};
use spire_plugin::{SignatureKind, Signer};

pub use rustls_pki_types::{CertificateDer, ServerName};
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Errors building TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The private key cannot be used by rustls.
    #[error("unsupported private key: {0}")]
    Key(String),
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The process-wide crypto provider (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

/// A certificate chain and private key to present.
pub fn certified_key(chain: &[Vec<u8>], pkcs8: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()));
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// A certificate chain to present whose private key is reachable only through `signer`
/// (a KeyManager key). The leaf's public key must be the signer's.
pub fn certified_key_with_signer(
    chain: &[Vec<u8>],
    signer: Arc<dyn Signer>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = SignerKey::new(signer)?;
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let certified = CertifiedKey::new(certs, Arc::new(key));
    certified
        .keys_match()
        .map_err(|e| TlsError::Key(format!("certificate does not match the signer: {e}")))?;
    Ok(Arc::new(certified))
}

/// The TLS signature schemes a key can make, most preferred first, with what to ask its
/// signer for. ECDSA signatures in TLS are DER, as in X.509; RSA ones are the raw
/// signature, as in JWS.
fn schemes_for(kind: PublicKeyKind) -> &'static [(SignatureScheme, SignatureKind)] {
    match kind {
        PublicKeyKind::Ec(Curve::P256) => {
            &[(SignatureScheme::ECDSA_NISTP256_SHA256, SignatureKind::X509)]
        }
        PublicKeyKind::Ec(Curve::P384) => {
            &[(SignatureScheme::ECDSA_NISTP384_SHA384, SignatureKind::X509)]
        }
        PublicKeyKind::Ec(_) => &[],
        PublicKeyKind::Rsa { .. } => &[
            (
                SignatureScheme::RSA_PSS_SHA256,
                SignatureKind::Jws(JwsAlgorithm::PS256),
            ),
            (
                SignatureScheme::RSA_PSS_SHA384,
                SignatureKind::Jws(JwsAlgorithm::PS384),
            ),
            (
                SignatureScheme::RSA_PSS_SHA512,
                SignatureKind::Jws(JwsAlgorithm::PS512),
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA256,
                SignatureKind::Jws(JwsAlgorithm::RS256),
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA384,
                SignatureKind::Jws(JwsAlgorithm::RS384),
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA512,
                SignatureKind::Jws(JwsAlgorithm::RS512),
            ),
        ],
    }
}

/// A rustls signing key over a `spire_plugin::Signer`.
#[derive(Debug)]
struct SignerKey {
    signer: Arc<dyn Signer>,
    algorithm: SignatureAlgorithm,
    schemes: &'static [(SignatureScheme, SignatureKind)],
}

impl SignerKey {
    fn new(signer: Arc<dyn Signer>) -> Result<Self, TlsError> {
        let kind = signer.public_key().kind();
        let schemes = schemes_for(kind);
        if schemes.is_empty() {
            return Err(TlsError::Key(format!(
                "{kind} keys cannot sign TLS handshakes"
            )));
        }
        let algorithm = match kind {
            PublicKeyKind::Rsa { .. } => SignatureAlgorithm::RSA,
            PublicKeyKind::Ec(_) => SignatureAlgorithm::ECDSA,
        };
        Ok(Self {
            signer,
            algorithm,
            schemes,
        })
    }
}

impl rustls::sign::SigningKey for SignerKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        self.schemes
            .iter()
            .find(|(scheme, _)| offered.contains(scheme))
            .map(|&(scheme, kind)| {
                Box::new(SchemeSigner {
                    signer: self.signer.clone(),
                    scheme,
                    kind,
                }) as Box<dyn rustls::sign::Signer>
            })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(
            self.signer.public_key().spki_der(),
        ))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }
}

/// One handshake's signer: a scheme chosen for a [`SignerKey`].
#[derive(Debug)]
struct SchemeSigner {
    signer: Arc<dyn Signer>,
    scheme: SignatureScheme,
    kind: SignatureKind,
}

impl rustls::sign::Signer for SchemeSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.signer.sign(message, self.kind).map_err(|e| {
            rustls::Error::General(format!(
                "unable to sign with key {:?}: {e}",
                self.signer.key_id()
            ))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// The X509-SVID this process presents, swappable while connections are served.
#[derive(Debug)]
pub struct SvidResolver {
    current: ArcSwap<Option<Arc<CertifiedKey>>>,
}

impl Default for SvidResolver {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(None),
        }
    }
}

impl SvidResolver {
    /// A resolver presenting nothing until [`SvidResolver::set`] is called.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the presented SVID.
    pub fn set(&self, chain: &[Vec<u8>], pkcs8: &[u8]) -> Result<(), TlsError> {
        let key = certified_key(chain, pkcs8)?;
        self.current.store(Arc::new(Some(key)));
        Ok(())
    }

    /// Replaces the presented SVID with one whose key is reachable only through `signer`.
    pub fn set_signer(&self, chain: &[Vec<u8>], signer: Arc<dyn Signer>) -> Result<(), TlsError> {
        let key = certified_key_with_signer(chain, signer)?;
        self.current.store(Arc::new(Some(key)));
        Ok(())
    }

    /// Replaces the presented certificate with a PEM chain (leaf first) and its PEM private
    /// key (PKCS#8, PKCS#1 or SEC1), as serving certificate files hold them.
    pub fn set_pem(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        use rustls_pki_types::pem::PemObject as _;
        let certs = certs_from_pem(chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Key(format!("no private key found in PEM data: {e}")))?;
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let ck = CertifiedKey::new(certs, signing);
        ck.keys_match().map_err(|e| TlsError::Key(e.to_string()))?;
        self.current.store(Arc::new(Some(Arc::new(ck))));
        Ok(())
    }

    /// Stops presenting a certificate.
    pub fn clear(&self) {
        self.current.store(Arc::new(None));
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().clone()
    }
}

impl rustls::server::ResolvesServerCert for SvidResolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

impl rustls::client::ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.get()
    }

    fn has_certs(&self) -> bool {
        self.get().is_some()
    }
}

/// Where a verifier gets the bundles it trusts; read at every handshake.
pub trait BundleProvider: Send + Sync + fmt::Debug {
    /// The current bundles (own and federated).
    fn bundles(&self) -> Arc<BundleSet>;
}

/// A [`BundleProvider`] that is simply swapped when bundles change.
#[derive(Debug, Default)]
pub struct SharedBundles {
    inner: ArcSwap<BundleSet>,
}

impl SharedBundles {
    /// Starts with `set`.
    pub fn new(set: BundleSet) -> Arc<Self> {
        Arc::new(Self {
            inner: ArcSwap::from_pointee(set),
        })
    }

    /// Replaces the bundles.
    pub fn store(&self, set: BundleSet) {
        self.inner.store(Arc::new(set));
    }
}

impl BundleProvider for SharedBundles {
    fn bundles(&self) -> Arc<BundleSet> {
        self.inner.load_full()
    }
}

/// Which peers to accept.
#[derive(Debug, Clone)]
pub enum Authorize {
    /// Any peer with a valid X509-SVID.
    Any,
    /// Only this SPIFFE ID.
    Id(SpiffeId),
    /// Any member of this trust domain.
    MemberOf(TrustDomain),
}

/// Verifies peers by SPIFFE rules against a [`BundleProvider`].
#[derive(Debug)]
pub struct PeerVerifier {
    bundles: Arc<dyn BundleProvider>,
    authorize: Authorize,
    client_auth_required: bool,
    /// `insecure_bootstrap`: no chain verification, only this URI SAN is required.
    insecure_expecting: Option<SpiffeId>,
}

impl PeerVerifier {
    /// Verifies against `bundles` and authorizes per `authorize`.
    pub fn new(bundles: Arc<dyn BundleProvider>, authorize: Authorize) -> Arc<Self> {
        Arc::new(Self {
            bundles,
            authorize,
            client_auth_required: false,
            insecure_expecting: None,
        })
    }

    /// A server verifier for SPIRE's `insecure_bootstrap`: the chain is not verified, but
    /// the leaf must carry exactly one URI SAN, `expected` (a soft check that the agent
    /// reached its trust domain's server, not a security feature).
    pub fn insecure_bootstrap(expected: SpiffeId) -> Arc<Self> {
        Arc::new(Self {
            bundles: SharedBundles::new(BundleSet::new()),
            authorize: Authorize::Id(expected.clone()),
            client_auth_required: false,
            insecure_expecting: Some(expected),
        })
    }

    /// As a client verifier, reject clients without a certificate.
    pub fn require_client_auth(mut self: Arc<Self>) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.client_auth_required = true;
        }
        self
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if let Some(expected) = &self.insecure_expecting {
            return check_insecure_bootstrap_peer(end_entity, expected);
        }
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.to_vec());
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        let now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let bundles = self.bundles.bundles();
        let id = verify_with(&chain, bundles.as_ref(), now)?;
        let ok = match &self.authorize {
            Authorize::Any => true,
            Authorize::Id(want) => &id == want,
            Authorize::MemberOf(td) => id.is_member_of(td),
        };
        if !ok {
            return Err(rustls::Error::General(format!("unexpected peer ID {id:?}")));
        }
        Ok(())
    }
}

/// Whether `err`, or an error it wraps, says that the peer's certificate does not chain to
/// the trusted bundle: what Go reports as "x509: certificate signed by unknown authority"
/// and SPIRE's agent reacts to (`x509util.IsUnknownAuthorityError`, rebootstrapping). A
/// signature that does not verify with a same-named authority counts too, as in Go.
pub fn is_unknown_authority(err: &(dyn std::error::Error + 'static)) -> bool {
    const MAX_DEPTH: usize = 32;
    let mut current = Some(err);
    let mut depth = 0;
    while let Some(e) = current {
        if depth >= MAX_DEPTH {
            return false;
        }
        depth += 1;
        if names_unknown_authority(e) {
            return true;
        }
        // `io::Error::source` skips the error it wraps; look at that one too.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && names_unknown_authority(inner)
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn names_unknown_authority(e: &(dyn std::error::Error + 'static)) -> bool {
    let svid_error = |e: &(dyn std::error::Error + 'static)| {
        let inner = e
            .downcast_ref::<VerifyError>()
            .map(|v| &v.0)
            .or_else(|| e.downcast_ref::<x509svid::X509SvidError>());
        matches!(
            inner,
            Some(
                x509svid::X509SvidError::UnknownAuthority
                    | x509svid::X509SvidError::BadSignature { .. }
            )
        )
    };
    if svid_error(e) {
        return true;
    }
    if let Some(rustls::Error::InvalidCertificate(cert_error)) = e.downcast_ref::<rustls::Error>() {
        return match cert_error {
            rustls::CertificateError::UnknownIssuer => true,
            rustls::CertificateError::Other(rustls::OtherError(inner)) => svid_error(&**inner),
            _ => false,
        };
    }
    e.to_string()
        .contains("certificate signed by unknown authority")
}

/// SPIRE's insecure bootstrap check: exactly one URI SAN, the expected server ID.
fn check_insecure_bootstrap_peer(
    end_entity: &CertificateDer<'_>,
    expected: &SpiffeId,
) -> Result<(), rustls::Error> {
    let uris = x509svid::uri_sans_from_der(end_entity).map_err(invalid_certificate)?;
    let want = expected.to_string();
    if uris.len() == 1 && uris[0] == want {
        return Ok(());
    }
    let got: Vec<String> = uris.iter().map(|u| format!("{u:?}")).collect();
    Err(rustls::Error::General(format!(
        "expected server SPIFFE ID {want:?}; got [{}]",
        got.join(" ")
    )))
}

/// A verification failure carried inside a rustls error. rustls prints the errors it carries
/// with `Debug`; this one prints its message, so that logs read
/// "invalid peer certificate: Other(OtherError(x509svid: could not verify leaf certificate:
/// certificate signed by unknown authority))".
#[derive(thiserror::Error)]
#[error(transparent)]
struct VerifyError(x509svid::X509SvidError);

impl fmt::Debug for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

fn invalid_certificate(e: x509svid::X509SvidError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(VerifyError(e)),
    )))
}

fn verify_with(
    chain: &[Vec<u8>],
    bundles: &dyn X509BundleSource,
    now: SystemTime,
) -> Result<SpiffeId, rustls::Error> {
    x509svid::verify_chain(chain, bundles, now).map_err(invalid_certificate)
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_auth_required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// Server configuration: presents `svid`, asks for (and verifies, when given) a client
/// certificate with `clients`, negotiates `h2`.
pub fn server_config(
    svid: Arc<SvidResolver>,
    clients: Option<Arc<PeerVerifier>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(svid);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Server configuration for plain HTTPS (a web server such as the OIDC discovery
/// provider): presents what `cert` holds, asks for no client certificate, negotiates
/// HTTP/1.1.
pub fn https_server_config(cert: Arc<SvidResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Server configuration presenting exactly `key` and offering exactly the `alpn`
/// protocols, for a listener that picks the certificate itself once it has read the
/// ClientHello (the OIDC discovery provider's ACME listener, which may have to obtain the
/// certificate first, and answers TLS-ALPN-01 challenges with `acme-tls/1`). TLS 1.2 and
/// 1.3; no client certificate.
pub fn fixed_cert_server_config(
    key: Arc<CertifiedKey>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(key)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Client configuration: verifies the server with `server`, presents `svid` when set,
/// negotiates `h2`.
///
/// A client presenting an SVID never resumes TLS sessions: a resumed session carries the
/// client identity of the handshake it came from, so after the SVID is swapped (rotation,
/// re-attestation) the server would go on seeing the old one. SPIRE's agent (Go, no
/// `ClientSessionCache`) never resumes either.
pub fn client_config(
    server: Arc<PeerVerifier>,
    svid: Option<Arc<SvidResolver>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(server);
    let mut config = match svid {
        Some(r) => {
            let mut c = builder.with_client_cert_resolver(r);
            c.resumption = rustls::client::Resumption::disabled();
            c
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The platform's trusted roots for web PKI, found as Go's `crypto/x509` finds them on
/// Linux: `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the distribution's bundle files
/// and directories. Unreadable or malformed entries are skipped; no roots at all is an
/// error.
pub fn system_roots() -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(TlsError::Config(format!(
            "no trusted root certificates found on this system{}{why}",
            if why.is_empty() { "" } else { ": " }
        )));
    }
    Ok(found.certs)
}

/// Client configuration for ordinary HTTPS servers (`trust_bundle_url`): server
/// certificates are verified by host name against `roots` (see [`system_roots`]); no
/// client certificate. No ALPN is offered: the caller speaks HTTP/1.1, which every server
/// accepts without negotiation.
pub fn web_client_config(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err(TlsError::Config(
            "none of the trusted root certificates could be used".into(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How an [`https_client_config`] client checks the server's certificate.
#[derive(Clone)]
pub enum ServerTrust {
    /// Web-PKI verification (chain and host name) against these roots.
    Roots(Vec<CertificateDer<'static>>),
    /// The chain is verified against these roots, the host name is not (SPIRE's kubelet
    /// client when it does not know the node's name and dials 127.0.0.1).
    RootsAnyName(Vec<CertificateDer<'static>>),
    /// No verification of the server's certificate at all (Go's `InsecureSkipVerify`:
    /// kubeconfig's `insecure-skip-tls-verify`, SPIRE's `skip_kubelet_verification`). The
    /// handshake signature is still checked against the presented certificate.
    SkipVerification,
}

impl fmt::Debug for ServerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerTrust::Roots(r) => write!(f, "Roots({} certificates)", r.len()),
            ServerTrust::RootsAnyName(r) => write!(f, "RootsAnyName({} certificates)", r.len()),
            ServerTrust::SkipVerification => f.write_str("SkipVerification"),
        }
    }
}

/// A client certificate chain and its key, presented by an [`https_client_config`] client.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ClientIdentity {
    /// A certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or
    /// SEC1), as kubeconfig files hold them.
    pub fn from_pem(certs: &[u8], key: &[u8]) -> Result<ClientIdentity, TlsError> {
        use rustls_pki_types::pem::PemObject as _;
        let chain = certs_from_pem(certs)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| TlsError::Key(format!("no private key found in PEM data: {e}")))?;
        Ok(ClientIdentity { chain, key })
    }
}

/// Every certificate in PEM data; none is an error.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls_pki_types::pem::PemObject as _;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("unable to parse PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Config("no certificates found in PEM data".into()));
    }
    Ok(certs)
}

/// Server verification for [`ServerTrust::RootsAnyName`] (with roots: the chain to them,
/// validity and the serverAuth usage are checked, the name is not) and
/// [`ServerTrust::SkipVerification`] (without: any certificate). Either way the handshake
/// must be signed by the key the presented certificate names.
#[derive(Debug)]
struct NameFreeVerification {
    roots: Option<Arc<rustls::RootCertStore>>,
}

impl ServerCertVerifier for NameFreeVerification {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                algorithms().all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn root_store(roots: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err(TlsError::Config(
            "none of the trusted root certificates could be used".into(),
        ));
    }
    Ok(store)
}

/// Client configuration for HTTPS APIs outside SPIFFE (the Kubernetes API server, a
/// kubelet): the server is checked as `trust` says, `identity` is presented when the
/// server asks for a client certificate. HTTP/1.1 only (no ALPN), as client-go speaks to
/// a kubelet; sessions are not resumed.
pub fn https_client_config(
    trust: &ServerTrust,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder =
        match trust {
            ServerTrust::Roots(roots) => builder.with_root_certificates(root_store(roots)?),
            ServerTrust::RootsAnyName(roots) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NameFreeVerification {
                    roots: Some(Arc::new(root_store(roots)?)),
                })),
            ServerTrust::SkipVerification => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NameFreeVerification { roots: None })),
        };
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| TlsError::Key(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name clients send in SNI; SPIFFE verification ignores it.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("spire-server").unwrap_or(ServerName::IpAddress(
        rustls_pki_types::IpAddr::V4(rustls_pki_types::Ipv4Addr::from([127, 0, 0, 1])),
    ))
}

/// The SPIFFE IDs of a peer's leaf certificate, if it has one.
pub fn peer_id(certs: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    certs.first().and_then(|c| x509svid::id_from_der(c).ok())
}

#[cfg(test)]
mod tests;
