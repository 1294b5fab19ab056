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
    let insecure = client_config(PeerVerifier::insecure(), None).unwrap();
    assert!(handshake(server, insecure).await.is_ok());
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
