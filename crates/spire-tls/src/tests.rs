//! Unit tests: handshakes over in-memory pipes with SVIDs issued on the spot.

use std::time::Duration;

use spiffe_core::{Bundle, KeyType, PrivateKey};
use spire_pki::{Subject, SvidRequest, X509Authority, self_signed_x509_ca};
use spire_plugin::{LocalSigner, Signer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

struct Pki {
    ca: X509Authority,
    bundles: Arc<SharedBundles>,
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn pki() -> Pki {
    let signer: Arc<dyn Signer> = Arc::new(LocalSigner::new(
        "ca",
        PrivateKey::generate(KeyType::EcP256).unwrap(),
    ));
    let der = self_signed_x509_ca(
        signer.clone(),
        &td(),
        &Subject::default_ca(),
        &[],
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .unwrap();
    let ca = X509Authority::new(der.clone(), signer, td()).unwrap();
    let mut b = Bundle::new(td());
    b.add_x509_authority(der);
    let mut set = BundleSet::new();
    set.insert(b);
    Pki {
        ca,
        bundles: SharedBundles::new(set),
    }
}

fn svid(pki: &Pki, path: &str) -> Arc<SvidResolver> {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let id = td().id_with_path(path).unwrap();
    let cert = pki
        .ca
        .sign_x509_svid(&SvidRequest {
            id: &id,
            public_key: key.public_key(),
            dns_names: &[],
            subject: None,
            ttl: Duration::from_secs(600),
            now: SystemTime::now(),
        })
        .unwrap();
    let r = SvidResolver::new();
    r.set(&[cert], key.pkcs8_der()).unwrap();
    r
}

/// Runs one handshake; returns the client's SPIFFE ID as the server saw it, or the error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<Option<SpiffeId>, String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    let connector = TlsConnector::from(client);
    let srv = tokio::spawn(async move {
        let mut s = acceptor.accept(a).await.map_err(|e| e.to_string())?;
        let peer = s.get_ref().1.peer_certificates().and_then(peer_id);
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        s.write_all(&buf).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let cli = async move {
        let mut c = connector
            .connect(server_name(), b)
            .await
            .map_err(|e| e.to_string())?;
        c.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let client_result = cli.await;
    let server_result = srv.await.map_err(|e| e.to_string())?;
    client_result?;
    server_result
}

fn server_id() -> SpiffeId {
    td().id_with_path("/spire/server").unwrap()
}

#[tokio::test]
async fn mutual_tls_with_spiffe_ids() {
    let p = pki();
    let server = server_config(
        svid(&p, "/spire/server"),
        Some(PeerVerifier::new(
            p.bundles.clone(),
            Authorize::MemberOf(td()),
        )),
    )
    .unwrap();
    let client = client_config(
        PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id())),
        Some(svid(&p, "/spire/agent/join_token/abc")),
    )
    .unwrap();
    let peer = handshake(server, client).await.unwrap();
    assert_eq!(peer.unwrap().path(), "/spire/agent/join_token/abc");
}

#[tokio::test]
async fn client_certificate_is_optional() {
    let p = pki();
    let server = server_config(
        svid(&p, "/spire/server"),
        Some(PeerVerifier::new(p.bundles.clone(), Authorize::Any)),
    )
    .unwrap();
    let client = client_config(
        PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id())),
        None,
    )
    .unwrap();
    assert_eq!(handshake(server, client).await.unwrap(), None);
}

#[tokio::test]
async fn wrong_server_id_is_refused() {
    let p = pki();
    let server = server_config(svid(&p, "/not/the/server"), None).unwrap();
    let client = client_config(
        PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id())),
        None,
    )
    .unwrap();
    let err = handshake(server, client).await.unwrap_err();
    assert!(err.contains("unexpected peer ID"), "{err}");
}

#[tokio::test]
async fn untrusted_ca_is_refused_unless_insecure() {
    let p = pki();
    let other = pki();
    let server = server_config(svid(&p, "/spire/server"), None).unwrap();
    let client = client_config(
        PeerVerifier::new(other.bundles.clone(), Authorize::Id(server_id())),
        None,
    )
    .unwrap();
    assert!(handshake(server.clone(), client).await.is_err());
    let insecure = client_config(PeerVerifier::insecure_bootstrap(server_id()), None).unwrap();
    assert!(handshake(server, insecure).await.is_ok());
}

#[tokio::test]
async fn insecure_bootstrap_still_requires_the_server_id() {
    let p = pki();
    let insecure = client_config(PeerVerifier::insecure_bootstrap(server_id()), None).unwrap();
    let impostor = server_config(svid(&p, "/not/the/server"), None).unwrap();
    let err = handshake(impostor, insecure.clone()).await.unwrap_err();
    assert!(
        err.contains(
            r#"expected server SPIFFE ID "spiffe://example.org/spire/server"; got ["spiffe://example.org/not/the/server"]"#
        ),
        "{err}"
    );
    // Another trust domain's server.
    let other_td = TrustDomain::new("other.org").unwrap();
    let other_insecure = client_config(
        PeerVerifier::insecure_bootstrap(other_td.id_with_path("/spire/server").unwrap()),
        None,
    )
    .unwrap();
    let server = server_config(svid(&p, "/spire/server"), None).unwrap();
    let err = handshake(server.clone(), other_insecure).await.unwrap_err();
    assert!(
        err.contains(r#"expected server SPIFFE ID "spiffe://other.org/spire/server""#),
        "{err}"
    );
    assert!(handshake(server, insecure).await.is_ok());
}

/// An SVID whose key is only reachable through a `Signer`.
fn signer_svid(pki: &Pki, path: &str, key_type: KeyType) -> (Vec<u8>, Arc<dyn Signer>) {
    let key = PrivateKey::generate(key_type).unwrap();
    let id = td().id_with_path(path).unwrap();
    let cert = pki
        .ca
        .sign_x509_svid(&SvidRequest {
            id: &id,
            public_key: key.public_key(),
            dns_names: &[],
            subject: None,
            ttl: Duration::from_secs(600),
            now: SystemTime::now(),
        })
        .unwrap();
    (cert, Arc::new(LocalSigner::new("svid", key)))
}

#[tokio::test]
async fn keys_behind_a_signer_are_presented_on_both_sides() {
    for key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let p = pki();
        let (server_cert, server_signer) = signer_svid(&p, "/spire/server", key_type);
        let server_resolver = SvidResolver::new();
        server_resolver
            .set_signer(&[server_cert], server_signer)
            .unwrap();
        let (client_cert, client_signer) = signer_svid(&p, "/spire/agent/x", key_type);
        let client_resolver = SvidResolver::new();
        client_resolver
            .set_signer(&[client_cert], client_signer)
            .unwrap();
        let server = server_config(
            server_resolver,
            Some(PeerVerifier::new(p.bundles.clone(), Authorize::Any).require_client_auth()),
        )
        .unwrap();
        let client = client_config(
            PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id())),
            Some(client_resolver),
        )
        .unwrap();
        let peer = handshake(server, client).await.unwrap();
        assert_eq!(peer.unwrap().path(), "/spire/agent/x", "{key_type:?}");
    }
}

#[test]
fn a_signer_must_match_the_certificate() {
    let p = pki();
    let (cert, _) = signer_svid(&p, "/spire/server", KeyType::EcP256);
    let (_, other) = signer_svid(&p, "/spire/server", KeyType::EcP256);
    let r = SvidResolver::new();
    assert!(matches!(
        r.set_signer(&[cert], other),
        Err(TlsError::Key(_))
    ));
    assert!(r.get().is_none());
}

/// A failing KeyManager signer fails the handshake instead of panicking.
#[derive(Debug)]
struct BrokenSigner(Arc<dyn Signer>);

impl Signer for BrokenSigner {
    fn key_id(&self) -> &str {
        "broken"
    }
    fn public_key(&self) -> &spiffe_core::PublicKey {
        self.0.public_key()
    }
    fn sign(
        &self,
        _: &[u8],
        _: spire_plugin::SignatureKind,
    ) -> spire_plugin::PluginResult<Vec<u8>> {
        Err(spire_plugin::PluginError::internal(
            "KeyManager unavailable",
        ))
    }
}

#[tokio::test]
async fn a_failing_signer_fails_the_handshake() {
    let p = pki();
    let (cert, signer) = signer_svid(&p, "/spire/server", KeyType::EcP256);
    let r = SvidResolver::new();
    r.set_signer(&[cert], Arc::new(BrokenSigner(signer)))
        .unwrap();
    let server = server_config(r, None).unwrap();
    let client = client_config(
        PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id())),
        None,
    )
    .unwrap();
    assert!(handshake(server, client).await.is_err());
}

/// A private web PKI: a CA and a `localhost` server certificate.
fn web_pki() -> (CertificateDer<'static>, Vec<u8>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (
        ca.der().clone(),
        leaf.der().to_vec(),
        leaf_key.serialize_der(),
    )
}

#[tokio::test]
async fn web_pki_verifies_host_names_against_the_given_roots() {
    let (ca, leaf, key) = web_pki();
    let resolver = SvidResolver::new();
    resolver.set(&[leaf], &key).unwrap();
    let server = server_config(resolver, None).unwrap();
    let client = web_client_config(&[ca]).unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server.clone());
    let srv = tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
    let name = ServerName::try_from("localhost").unwrap();
    let ok = TlsConnector::from(client.clone()).connect(name, b).await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    srv.await.unwrap().unwrap();

    // Wrong name.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server.clone());
    tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
    let name = ServerName::try_from("example.com").unwrap();
    assert!(TlsConnector::from(client).connect(name, b).await.is_err());

    // Roots that did not issue it.
    let (other_ca, _, _) = web_pki();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
    let name = ServerName::try_from("localhost").unwrap();
    let client = web_client_config(&[other_ca]).unwrap();
    assert!(TlsConnector::from(client).connect(name, b).await.is_err());

    assert!(web_client_config(&[]).is_err());
}

/// The client's error from a handshake.
async fn client_error(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> std::io::Error {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
    match TlsConnector::from(client).connect(server_name(), b).await {
        Ok(_) => panic!("handshake should fail"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn unknown_authority_is_recognised_through_wrappers() {
    let p = pki();
    let other = pki();
    let server = server_config(svid(&p, "/spire/server"), None).unwrap();
    let untrusting = client_config(
        PeerVerifier::new(other.bundles.clone(), Authorize::Id(server_id())),
        None,
    )
    .unwrap();
    let err = client_error(server.clone(), untrusting).await;
    assert!(is_unknown_authority(&err), "{err:?}");
    // Logs show the reason, not a Debug dump of it.
    assert!(
        err.to_string().contains(
            "x509svid: could not verify leaf certificate: certificate signed by unknown authority"
        ),
        "{err}"
    );
    // Wrapped the way a gRPC client reports it.
    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Wrapper(#[source] std::io::Error);
    assert!(is_unknown_authority(&Wrapper(err)));

    // Trusted CA but the wrong server: not an authority problem.
    let wrong_id = client_config(
        PeerVerifier::new(
            p.bundles.clone(),
            Authorize::Id(td().id_with_path("/other").unwrap()),
        ),
        None,
    )
    .unwrap();
    let err = client_error(server, wrong_id).await;
    assert!(!is_unknown_authority(&err), "{err:?}");
    let plain = std::io::Error::other("connection refused");
    assert!(!is_unknown_authority(&plain));
    let go_style = std::io::Error::other("x509: certificate signed by unknown authority");
    assert!(is_unknown_authority(&go_style));
}

#[tokio::test]
async fn untrusted_client_is_refused() {
    let p = pki();
    let other = pki();
    let server = server_config(
        svid(&p, "/spire/server"),
        Some(PeerVerifier::new(p.bundles.clone(), Authorize::Any)),
    )
    .unwrap();
    let client = client_config(
        PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id())),
        Some(svid(&other, "/spire/agent/x")),
    )
    .unwrap();
    assert!(handshake(server, client).await.is_err());
}

#[tokio::test]
async fn rotation_takes_effect_for_new_handshakes() {
    let p = pki();
    let resolver = svid(&p, "/spire/server");
    let server = server_config(resolver.clone(), None).unwrap();
    let verifier = PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id()));
    let client = client_config(verifier, None).unwrap();
    assert!(handshake(server.clone(), client.clone()).await.is_ok());
    resolver.clear();
    assert!(handshake(server.clone(), client.clone()).await.is_err());
    let k2 = PrivateKey::generate(KeyType::EcP256).unwrap();
    let id = server_id();
    let cert =
        p.ca.sign_x509_svid(&SvidRequest {
            id: &id,
            public_key: k2.public_key(),
            dns_names: &[],
            subject: None,
            ttl: Duration::from_secs(60),
            now: SystemTime::now(),
        })
        .unwrap();
    resolver.set(&[cert], k2.pkcs8_der()).unwrap();
    assert!(handshake(server, client).await.is_ok());
}

/// A client whose SVID was swapped presents the new one on its next connection, even to a
/// server that offers session resumption (a resumed TLS 1.3 session carries the identity of
/// the connection it came from, so the server would still see the old SVID).
#[tokio::test]
async fn a_swapped_client_svid_is_presented_on_the_next_connection() {
    let p = pki();
    let server = server_config(
        svid(&p, "/spire/server"),
        Some(PeerVerifier::new(p.bundles.clone(), Authorize::Any).require_client_auth()),
    )
    .unwrap();
    let (first_cert, first_signer) = signer_svid(&p, "/spire/agent/first", KeyType::EcP256);
    let resolver = SvidResolver::new();
    resolver.set_signer(&[first_cert], first_signer).unwrap();
    let client = client_config(
        PeerVerifier::new(p.bundles.clone(), Authorize::Id(server_id())),
        Some(resolver.clone()),
    )
    .unwrap();
    let peer = handshake(server.clone(), client.clone()).await.unwrap();
    assert_eq!(peer.unwrap().path(), "/spire/agent/first");

    let (second_cert, second_signer) = signer_svid(&p, "/spire/agent/second", KeyType::EcP256);
    resolver.set_signer(&[second_cert], second_signer).unwrap();
    let peer = handshake(server, client).await.unwrap();
    assert_eq!(peer.unwrap().path(), "/spire/agent/second");
}

/// A web-PKI server: a CA and a serverAuth leaf for `name`, as a kubelet has.
fn web_server(name: &str) -> (Vec<CertificateDer<'static>>, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (vec![ca_cert.der().clone()], Arc::new(config))
}

/// One handshake to `server` as `name`.
async fn web_handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<(), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let srv = tokio::spawn(async move { TlsAcceptor::from(server).accept(a).await.map(|_| ()) });
    let name = ServerName::try_from(name.to_string()).unwrap();
    let result = TlsConnector::from(client)
        .connect(name, b)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    drop(srv);
    result
}

#[tokio::test]
async fn https_trust_modes() {
    let (roots, server) = web_server("node-1");
    let (other_roots, _) = web_server("node-1");
    let cfg = |t: ServerTrust| https_client_config(&t, None).unwrap();

    // Full web PKI: the name must match.
    web_handshake(
        server.clone(),
        cfg(ServerTrust::Roots(roots.clone())),
        "node-1",
    )
    .await
    .unwrap();
    let err = web_handshake(
        server.clone(),
        cfg(ServerTrust::Roots(roots.clone())),
        "127.0.0.1",
    )
    .await
    .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");

    // Chain only: any name, but still the right CA.
    web_handshake(
        server.clone(),
        cfg(ServerTrust::RootsAnyName(roots.clone())),
        "127.0.0.1",
    )
    .await
    .unwrap();
    let err = web_handshake(
        server.clone(),
        cfg(ServerTrust::RootsAnyName(other_roots)),
        "127.0.0.1",
    )
    .await
    .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");

    // Skipped verification: anything.
    web_handshake(server, cfg(ServerTrust::SkipVerification), "127.0.0.1")
        .await
        .unwrap();
}
