//! TLS for spire-rs: the only crate that builds rustls configurations.
//!
//! - Crypto provider: aws-lc-rs, installed once by [`provider`].
//! - Certificates presented: [`SvidResolver`] holds the current X509-SVID and key and can be
//!   swapped at any time (rotation without restarting listeners).
//! - Peer verification: SPIFFE rules via `spiffe-core` (X509-SVID structure, path to the
//!   bundle of the peer's trust domain), never web-PKI host names. [`PeerVerifier`] checks
//!   the peer against a bundle source and, optionally, an expected SPIFFE ID.
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
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use spiffe_core::{BundleSet, SpiffeId, TrustDomain, X509BundleSource, x509svid};

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

/// Verifies peers by SPIFFE rules against a [`BundleProvider`], with an optional clock
/// override for tests.
#[derive(Debug)]
pub struct PeerVerifier {
    bundles: Arc<dyn BundleProvider>,
    authorize: Authorize,
    client_auth_required: bool,
    insecure: bool,
}

impl PeerVerifier {
    /// Verifies against `bundles` and authorizes per `authorize`.
    pub fn new(bundles: Arc<dyn BundleProvider>, authorize: Authorize) -> Arc<Self> {
        Arc::new(Self {
            bundles,
            authorize,
            client_auth_required: false,
            insecure: false,
        })
    }

    /// A server verifier that accepts any certificate (SPIRE's `insecure_bootstrap`).
    pub fn insecure() -> Arc<Self> {
        Arc::new(Self {
            bundles: SharedBundles::new(BundleSet::new()),
            authorize: Authorize::Any,
            client_auth_required: false,
            insecure: true,
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
        if self.insecure {
            return Ok(());
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

fn verify_with(
    chain: &[Vec<u8>],
    bundles: &dyn X509BundleSource,
    now: SystemTime,
) -> Result<SpiffeId, rustls::Error> {
    x509svid::verify_chain(chain, bundles, now).map_err(|e| {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(e),
        )))
    })
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

/// Client configuration: verifies the server with `server`, presents `svid` when set,
/// negotiates `h2`.
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
        Some(r) => builder.with_client_cert_resolver(r),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
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
