//! Minted SVIDs verify with spiffe-core and with openssl against `bundle show`.

use std::time::SystemTime;

use spiffe_core::{Bundle, JwtSvid, KeyType, PrivateKey, SpiffeId, TrustDomain, x509svid};
use spire_proto::spire::api::server::svid::v1::{MintJwtsvidRequest, MintX509svidRequest};
use spire_proto::spire::api::types;

use spire_proto::spire::api::server::bundle::v1::GetBundleRequest;

use crate::support::*;

fn spiffe_bundle(b: &types::Bundle) -> Bundle {
    let mut out = Bundle::new(TrustDomain::new(&b.trust_domain).unwrap());
    for a in &b.x509_authorities {
        out.add_x509_authority(a.asn1.clone());
    }
    for k in &b.jwt_authorities {
        out.jwt_authorities.push(spiffe_core::bundle::JwtAuthority {
            key_id: k.key_id.clone(),
            public_key: spiffe_core::PublicKey::from_spki_der(&k.public_key).unwrap(),
            expires_at: k.expires_at,
            tainted: k.tainted,
        });
    }
    out
}

pub(crate) async fn mint_scenario(mut server: TestServer) {
    server.start().await;
    let id = SpiffeId::parse("spiffe://example.org/minted").unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let csr = spire_pki::make_csr(
        PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap(),
        Some(&id),
    )
    .unwrap();
    let svid = server
        .svids()
        .await
        .mint_x509svid(MintX509svidRequest { csr, ttl: 120 })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let bundle = server
        .bundles()
        .await
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    let sb = spiffe_bundle(&bundle);
    assert_eq!(
        x509svid::verify_chain(&svid.cert_chain, &sb, SystemTime::now()).unwrap(),
        id
    );
    let facts = spire_pki::certificate_facts(&svid.cert_chain[0]).unwrap();
    assert!(facts.not_after - facts.not_before <= 130, "ttl honoured");

    // openssl, an independent verifier.
    let dir = server.dir.path();
    std::fs::write(
        dir.join("svid.pem"),
        x509svid::certificates_to_pem(&svid.cert_chain),
    )
    .unwrap();
    std::fs::write(dir.join("bundle.pem"), sb.x509_authorities_pem()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("bundle.pem"))
        .arg(dir.join("svid.pem"))
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let jwt = server
        .svids()
        .await
        .mint_jwtsvid(MintJwtsvidRequest {
            id: pid("/minted"),
            audience: vec!["aud-1".into()],
            ttl: 60,
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let validated =
        JwtSvid::parse_and_validate(&jwt.token, &sb, &["aud-1"], SystemTime::now()).unwrap();
    assert_eq!(validated.id(), &id);
    assert_eq!(
        validated.issued_at(),
        Some(jwt.issued_at),
        "issued_at is the token's iat"
    );
    assert_eq!(validated.expiry(), jwt.expires_at);
    assert!(JwtSvid::parse_and_validate(&jwt.token, &sb, &["other"], SystemTime::now()).is_err());
}

#[tokio::test]
async fn minted_svids_verify_on_sqlite() {
    mint_scenario(TestServer::new(None, "")).await;
}
