//! Unit tests: both halves of x509pop over a generated PKI, in both modes.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::*;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

fn ca() -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "x509pop root");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().unwrap();
    let der = p.self_signed(&key).unwrap().der().to_vec();
    Ca {
        params: p,
        key,
        der,
    }
}

fn leaf(ca: &Ca, alg: &'static rcgen::SignatureAlgorithm, dir: &Path) -> (AgentConfig, Vec<u8>) {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "node-1");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.subject_alt_names = vec![SanType::URI(
        "x509pop://example.org/datacenter/us-east-1"
            .try_into()
            .unwrap(),
    )];
    let key = if alg == &rcgen::PKCS_RSA_SHA256 {
        KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048).unwrap()
    } else {
        KeyPair::generate_for(alg).unwrap()
    };
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = p.signed_by(&key, &issuer).unwrap();
    fs::write(dir.join("leaf.pem"), cert.pem()).unwrap();
    fs::write(dir.join("leaf.key"), key.serialize_pem()).unwrap();
    let cfg = AgentConfig {
        private_key_path: dir.join("leaf.key").to_string_lossy().into(),
        certificate_path: dir.join("leaf.pem").to_string_lossy().into(),
        intermediates_path: String::new(),
    };
    (cfg, cert.der().to_vec())
}

fn server(ca: &Ca, dir: &Path) -> X509PopServer {
    fs::write(
        dir.join("ca.pem"),
        spiffe_core::pem_encode("CERTIFICATE", &ca.der),
    )
    .unwrap();
    let cfg = ServerConfig {
        ca_bundle_path: dir.join("ca.pem").to_string_lossy().into(),
        ..Default::default()
    };
    X509PopServer::new(&cfg, TrustDomain::new("example.org").unwrap(), None).unwrap()
}

async fn run(agent: &dyn AgentNodeAttestor, server: &X509PopServer) -> PluginResult<AttestedAgent> {
    crate::nodeattestor::testexchange::run(agent, server).await
}

#[tokio::test]
async fn attests_with_every_key_type() {
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_RSA_SHA256,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let (cfg, leaf_der) = leaf(&ca, alg, dir.path());
        let agent = X509PopAgent::new(&cfg).unwrap();
        let attested = run(&agent, &server(&ca, dir.path())).await.unwrap();
        let fp = fingerprint(&leaf_der);
        assert_eq!(
            attested.agent_id.to_string(),
            format!("spiffe://example.org/spire/agent/x509pop/{fp}")
        );
        assert!(attested.can_reattest);
        let sel = &attested.selector_values;
        assert_eq!(sel[0], "subject:cn:node-1");
        assert_eq!(sel[1], format!("ca:fingerprint:{}", fingerprint(&ca.der)));
        assert!(sel[2].starts_with("serialnumber:"));
        assert_eq!(sel[3], "san:datacenter:us-east-1");
        assert_eq!(agent.fingerprint(), fp);
    }
}

#[tokio::test]
async fn untrusted_certificates_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = leaf(&ca(), &rcgen::PKCS_ECDSA_P256_SHA256, dir.path());
    let agent = X509PopAgent::new(&cfg).unwrap();
    let err = run(&agent, &server(&ca(), dir.path())).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::PermissionDenied);
    assert!(
        err.message.starts_with("certificate verification failed"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_signature_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (cfg, _) = leaf(&ca, &rcgen::PKCS_ECDSA_P256_SHA256, dir.path());
    let agent = X509PopAgent::new(&cfg).unwrap();
    let srv = server(&ca, dir.path());
    struct Forger(Vec<u8>);
    #[async_trait]
    impl Challenger for Forger {
        async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
            Ok(self.0.clone())
        }
    }
    // A response signed over another challenge.
    let other = Challenge {
        ecdsa_signature: Some(NonceChallenge { nonce: vec![7; 32] }),
        rsa_signature: None,
    };
    let forged = serde_json::to_vec(&agent.respond(&other).unwrap()).unwrap();
    let payload = serde_json::to_vec(&AttestationData {
        certificates: agent.certificates.clone(),
    })
    .unwrap();
    let err = srv.attest(payload, &mut Forger(forged)).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::PermissionDenied);
    assert!(
        err.message.contains("ECDSA signature verify failed"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_payloads_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let srv = server(&ca, dir.path());
    struct Never;
    #[async_trait]
    impl Challenger for Never {
        async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
            Err(PluginError::internal("unexpected"))
        }
    }
    let e = srv.attest(vec![], &mut Never).await.unwrap_err();
    assert_eq!(e.message, "missing attestation payload");
    let e = srv.attest(b"{".to_vec(), &mut Never).await.unwrap_err();
    assert!(e.message.starts_with("failed to unmarshal data"));
    let e = srv
        .attest(br#"{"certificates": []}"#.to_vec(), &mut Never)
        .await
        .unwrap_err();
    assert_eq!(e.message, "no certificate to attest");
    let many = AttestationData {
        certificates: vec![ca.der.clone(); 6],
    };
    let e = srv
        .attest(serde_json::to_vec(&many).unwrap(), &mut Never)
        .await
        .unwrap_err();
    assert!(e.message.starts_with("too many intermediates"));

    let td = TrustDomain::new("example.org").unwrap();
    let e = X509PopServer::new(&ServerConfig::default(), td.clone(), None).unwrap_err();
    assert_eq!(
        e.message,
        "one of ca_bundle_path or ca_bundle_paths must be configured"
    );
    let cfg = ServerConfig {
        mode: "bogus".into(),
        ..Default::default()
    };
    assert!(X509PopServer::new(&cfg, td.clone(), None).is_err());
    let cfg = ServerConfig {
        mode: "spiffe".into(),
        ca_bundle_path: "x".into(),
        ..Default::default()
    };
    assert!(X509PopServer::new(&cfg, td, None).is_err());
    assert!(X509PopAgent::new(&AgentConfig::default()).is_err());
}

#[test]
fn wire_format_matches_spire() {
    let c = Challenge {
        ecdsa_signature: Some(NonceChallenge { nonce: vec![1; 32] }),
        rsa_signature: None,
    };
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(
        json,
        r#"{"rsa_signature":null,"ecdsa_signature":{"nonce":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}"#
    );
    let d = AttestationData {
        certificates: vec![vec![1, 2]],
    };
    assert_eq!(
        serde_json::to_string(&d).unwrap(),
        r#"{"certificates":["AQI="]}"#
    );
}

/// A template over the certificate's subject, SANs and SAN selectors, with sprig.
#[tokio::test]
async fn templates_see_the_certificate_as_spires_data() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (cfg, _) = leaf(&ca, &rcgen::PKCS_ECDSA_P256_SHA256, dir.path());
    let agent = X509PopAgent::new(&cfg).unwrap();
    let mut server_cfg = ServerConfig {
        ca_bundle_path: dir.path().join("ca.pem").to_string_lossy().into(),
        agent_path_template: r#"/{{ .Subject.CommonName | upper }}/{{ index .URISanSelectors "datacenter" | replace "-" "_" }}/v{{ .Version }}{{ range .Subject.Organization }}/{{ . }}{{ end }}"#.into(),
        ..Default::default()
    };
    fs::write(
        dir.path().join("ca.pem"),
        spiffe_core::pem_encode("CERTIFICATE", &ca.der),
    )
    .unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let server = X509PopServer::new(&server_cfg, td.clone(), None).unwrap();
    let attested = run(&agent, &server).await.unwrap();
    assert_eq!(
        attested.agent_id.to_string(),
        "spiffe://example.org/spire/agent/NODE-1/us_east_1/v3"
    );
    // A field Go's x509.Certificate has but the data here does not: Go's error.
    server_cfg.agent_path_template = "/{{ .Subject.Nope }}".into();
    let server = X509PopServer::new(&server_cfg, td, None).unwrap();
    let e = run(&agent, &server).await.unwrap_err();
    assert!(
        e.message
            .contains("can't evaluate field Nope in type pkix.Name"),
        "{}",
        e.message
    );
}
