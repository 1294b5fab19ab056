//! Unit tests of the server half against a TPM played in software: the EK, AK and DevID
//! keys are ordinary keys here, the certification and the credential activation are done
//! the way a TPM does them. Covers the happy path and the bad input SPIRE refuses.

use std::path::Path;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use spire_plugin::Code;

use super::*;
use crate::tpm2::{Writer, alg, attr};

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

fn ca(cn: &str) -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
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

fn issue(ca: &Ca, cn: &str, key: &KeyPair) -> Vec<u8> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    p.signed_by(key, &issuer).unwrap().der().to_vec()
}

fn rsa_key() -> KeyPair {
    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
}

fn modulus(key: &KeyPair) -> Vec<u8> {
    let der = rcgen::PublicKeyData::subject_public_key_info(key);
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
    match spki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => strip(rsa.modulus).to_vec(),
        _ => unreachable!("an RSA key"),
    }
}

/// A `TPMT_PUBLIC` of an RSA key.
fn rsa_public(attrs: u32, sym: bool, scheme: u16, modulus: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(alg::RSA).u16(alg::SHA256).u32(attrs).tpm2b(&[]);
    if sym {
        w.u16(alg::AES).u16(128).u16(alg::CFB);
    } else {
        w.u16(alg::NULL);
    }
    w.u16(scheme);
    if scheme != alg::NULL {
        w.u16(alg::SHA256);
    }
    w.u16(2048).u32(0).tpm2b(modulus);
    w.0
}

/// The software TPM and the evidence it produces.
struct Node {
    devid_cert: Vec<u8>,
    devid_key: EcdsaKeyPair,
    ek: OaepPrivateDecryptingKey,
    request: AttestationRequest,
}

fn certify(ak: &RsaKeyPair, devid_pub: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let name = Public::decode(devid_pub).unwrap().name().unwrap();
    let mut attest = Writer::default();
    attest
        .u32(0xff54_4347)
        .u16(0x8017)
        .tpm2b(b"ak-name")
        .tpm2b(&[])
        .raw(&[0u8; 17])
        .raw(&[0u8; 8])
        .tpm2b(&name)
        .tpm2b(b"qualified");
    let mut sig = vec![0u8; ak.public_modulus_len()];
    ak.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        &attest.0,
        &mut sig,
    )
    .unwrap();
    let mut s = Writer::default();
    s.u16(alg::RSASSA).u16(alg::SHA256).tpm2b(&sig);
    (attest.0, s.0)
}

fn node(devid_ca: &Ca, ek_ca: &Ca) -> Node {
    let devid_rc = KeyPair::generate().unwrap();
    let devid_cert = issue(devid_ca, "devid-node", &devid_rc);
    let devid_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &devid_rc.serialize_der())
            .unwrap();
    // The DevID key's public area (only its name matters to the server).
    let devid_pub = rsa_public(
        attr::SIGN | attr::USER_WITH_AUTH,
        false,
        alg::RSASSA,
        &[0x42; 256],
    );
    let ek_rc = rsa_key();
    let ek_cert = issue(ek_ca, "ek", &ek_rc);
    let ek_pub = rsa_public(
        attr::DECRYPT | attr::RESTRICTED,
        true,
        alg::NULL,
        &modulus(&ek_rc),
    );
    let ek = OaepPrivateDecryptingKey::new(
        PrivateDecryptingKey::from_pkcs8(&ek_rc.serialize_der()).unwrap(),
    )
    .unwrap();
    let ak_rc = rsa_key();
    let ak = RsaKeyPair::from_pkcs8(&ak_rc.serialize_der()).unwrap();
    let ak_pub = rsa_public(
        attr::SIGN | attr::RESTRICTED,
        false,
        alg::RSASSA,
        &modulus(&ak_rc),
    );
    let (certified_devid, certification_signature) = certify(&ak, &devid_pub);
    Node {
        devid_cert: devid_cert.clone(),
        devid_key,
        ek,
        request: AttestationRequest {
            devid_cert: vec![devid_cert],
            devid_pub,
            ek_cert,
            ek_pub,
            ak_pub,
            certified_devid,
            certification_signature,
        },
    }
}

impl Node {
    /// ActivateCredential as the TPM does it, with the EK private key and the AK's name.
    fn activate(&self, cred: &CredActivation) -> Vec<u8> {
        let mut out = vec![0u8; self.ek.min_output_size()];
        let seed = self
            .ek
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                &cred.secret,
                &mut out,
                Some(b"IDENTITY\0"),
            )
            .unwrap()
            .to_vec();
        let ak_name = Public::decode(&self.request.ak_pub)
            .unwrap()
            .name()
            .unwrap();
        let mut r = Reader::new(&cred.credential);
        r.tpm2b().unwrap(); // integrity HMAC, checked by the tpm2 unit tests
        let mut enc = r.rest().to_vec();
        let sym = tpm2::kdfa(alg::SHA256, &seed, "STORAGE", &ak_name, &[], 128).unwrap();
        tpm2::aes_cfb(&sym, &mut enc, false).unwrap();
        Reader::new(&enc).tpm2b().unwrap().to_vec()
    }

    fn answer(&self, challenge: &[u8]) -> ChallengeResponse {
        let c: ChallengeRequest = serde_json::from_slice(challenge).unwrap();
        let sig = self
            .devid_key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), &c.devid)
            .unwrap();
        ChallengeResponse {
            devid: sig.as_ref().to_vec(),
            cred_activation: self.activate(&c.cred_activation.unwrap()),
        }
    }
}

enum Behaviour {
    Honest,
    WrongActivation,
    Replay(Vec<u8>),
}

struct Agent<'a> {
    node: &'a Node,
    behaviour: Behaviour,
    sent: Option<Vec<u8>>,
}

#[async_trait]
impl Challenger for Agent<'_> {
    async fn challenge(&mut self, challenge: Vec<u8>) -> PluginResult<Vec<u8>> {
        let mut answer = self.node.answer(&challenge);
        let bytes = match &self.behaviour {
            Behaviour::Honest => serde_json::to_vec(&answer).unwrap(),
            Behaviour::WrongActivation => {
                answer.cred_activation[0] ^= 1;
                serde_json::to_vec(&answer).unwrap()
            }
            Behaviour::Replay(old) => old.clone(),
        };
        self.sent = Some(bytes.clone());
        Ok(bytes)
    }
}

fn write_pem(dir: &Path, name: &str, ders: &[&[u8]]) -> String {
    let text: String = ders
        .iter()
        .map(|d| spiffe_core::pem_encode("CERTIFICATE", d))
        .collect();
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn server(dir: &Path, devid_ca: &Ca, ek_ca: &Ca) -> TpmDevIdServer {
    let cfg = ServerConfig {
        devid_ca_path: write_pem(dir, "devid-ca.pem", &[&devid_ca.der]),
        endorsement_ca_path: write_pem(dir, "ek-ca.pem", &[&ek_ca.der]),
    };
    TpmDevIdServer::new(&cfg, TrustDomain::new("example.org").unwrap()).unwrap()
}

async fn attest(
    server: &TpmDevIdServer,
    node: &Node,
    request: &AttestationRequest,
    behaviour: Behaviour,
) -> (PluginResult<AttestedAgent>, Option<Vec<u8>>) {
    let mut agent = Agent {
        node,
        behaviour,
        sent: None,
    };
    let result = server
        .attest(serde_json::to_vec(request).unwrap(), &mut agent)
        .await;
    (result, agent.sent)
}

struct Fixture {
    _dir: tempfile::TempDir,
    devid_ca: Ca,
    node: Node,
    server: TpmDevIdServer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let devid_ca = ca("devid root");
    let ek_ca = ca("ek root");
    let node = node(&devid_ca, &ek_ca);
    let server = server(dir.path(), &devid_ca, &ek_ca);
    Fixture {
        _dir: dir,
        devid_ca,
        node,
        server,
    }
}

fn expect_err(result: PluginResult<AttestedAgent>, code: Code, needle: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.code, code, "{err}");
    assert!(err.message.contains(needle), "{err} lacks {needle:?}");
}

#[tokio::test]
async fn attests_with_spire_agent_id_and_selectors() {
    let f = fixture();
    let (result, _) = attest(&f.server, &f.node, &f.node.request, Behaviour::Honest).await;
    let agent = result.unwrap();
    assert_eq!(
        agent.agent_id.to_string(),
        format!(
            "spiffe://example.org/spire/agent/tpm_devid/{}",
            fingerprint(&f.node.devid_cert)
        )
    );
    assert_eq!(
        agent.selector_values,
        vec![
            "subject:cn:devid-node".to_string(),
            "issuer:cn:devid root".to_string(),
            format!("ca:fingerprint:{}", fingerprint(&f.devid_ca.der)),
        ]
    );
    assert!(agent.can_reattest);
}

#[tokio::test]
async fn wrong_ek_ca_is_refused_before_any_challenge() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let other = ca("other ek root");
    let server = server(dir.path(), &f.devid_ca, &other);
    let (result, sent) = attest(&server, &f.node, &f.node.request, Behaviour::Honest).await;
    expect_err(result, Code::InvalidArgument, "cannot verify EK signature");
    assert!(sent.is_none(), "no challenge for untrusted evidence");
}

#[tokio::test]
async fn devid_from_another_ca_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let other = ca("other devid root");
    let ek_ca = ca("ek root 2");
    let node = node(&other, &ek_ca);
    let server = server(dir.path(), &f.devid_ca, &ek_ca);
    let (result, sent) = attest(&server, &node, &node.request, Behaviour::Honest).await;
    expect_err(
        result,
        Code::InvalidArgument,
        "unable to verify DevID signature",
    );
    assert!(sent.is_none());
}

#[tokio::test]
async fn failed_activation_is_refused() {
    let f = fixture();
    let (result, sent) = attest(
        &f.server,
        &f.node,
        &f.node.request,
        Behaviour::WrongActivation,
    )
    .await;
    assert!(sent.is_some());
    expect_err(
        result,
        Code::InvalidArgument,
        "credential activation failed: nonces are different",
    );
}

#[tokio::test]
async fn replayed_challenge_response_is_refused() {
    let f = fixture();
    let (first, sent) = attest(&f.server, &f.node, &f.node.request, Behaviour::Honest).await;
    first.unwrap();
    let (second, _) = attest(
        &f.server,
        &f.node,
        &f.node.request,
        Behaviour::Replay(sent.unwrap()),
    )
    .await;
    expect_err(
        second,
        Code::InvalidArgument,
        "devID challenge verification failed",
    );
}

#[tokio::test]
async fn certification_by_another_key_or_of_another_key_is_refused() {
    let f = fixture();
    // Signed by a key that is not the AK.
    let mut forged = f.node.request.clone();
    let stranger = RsaKeyPair::from_pkcs8(&rsa_key().serialize_der()).unwrap();
    let (attest_data, sig) = certify(&stranger, &forged.devid_pub);
    forged.certified_devid = attest_data;
    forged.certification_signature = sig;
    let (result, _) = attest(&f.server, &f.node, &forged, Behaviour::Honest).await;
    expect_err(
        result,
        Code::InvalidArgument,
        "cannot verify that DevID is in the same TPM than AK",
    );
    // The AK certified some other key than the DevID key claimed.
    let mut other = f.node.request.clone();
    other.devid_pub = rsa_public(attr::SIGN, false, alg::RSASSA, &[0x43; 256]);
    let (result, _) = attest(&f.server, &f.node, &other, Behaviour::Honest).await;
    expect_err(result, Code::InvalidArgument, "certify failed");
}

#[tokio::test]
async fn ek_public_must_be_the_certified_ek() {
    let f = fixture();
    let mut swapped = f.node.request.clone();
    swapped.ek_pub = rsa_public(
        attr::DECRYPT | attr::RESTRICTED,
        true,
        alg::NULL,
        &[0x11; 256],
    );
    let (result, _) = attest(&f.server, &f.node, &swapped, Behaviour::Honest).await;
    expect_err(
        result,
        Code::InvalidArgument,
        "public key in EK certificate differs from public key created via EK template: modulus mismatch",
    );
}

#[tokio::test]
async fn malformed_payloads_are_invalid_arguments() {
    let f = fixture();
    let mut agent = Agent {
        node: &f.node,
        behaviour: Behaviour::Honest,
        sent: None,
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "missing attestation payload"),
        (b"{".to_vec(), "unable to unmarshall attestation data"),
        (b"{}".to_vec(), "no DevID certificate to attest"),
        (
            br#"{"DevIDCert":["AAAA"]}"#.to_vec(),
            "unable to parse DevID certificate",
        ),
    ];
    for (payload, needle) in cases {
        let result = f.server.attest(payload, &mut agent).await;
        expect_err(result, Code::InvalidArgument, needle);
    }
    for (field, needle) in [
        ("AKPub", "missing attestation key public blob"),
        ("DevIDPub", "missing DevID key public blob"),
        ("EKCert", "missing endorsement certificate"),
        ("EKPub", "missing endorsement key public blob"),
    ] {
        let mut v: serde_json::Value = serde_json::to_value(&f.node.request).unwrap();
        v[field] = serde_json::Value::Null;
        let result = f
            .server
            .attest(serde_json::to_vec(&v).unwrap(), &mut agent)
            .await;
        expect_err(result, Code::InvalidArgument, needle);
    }
    let mut bad = f.node.request.clone();
    bad.ak_pub = vec![0, 1, 2];
    let (result, _) = attest(&f.server, &f.node, &bad, Behaviour::Honest).await;
    expect_err(
        result,
        Code::InvalidArgument,
        "cannot decode attestation key public blob",
    );
    assert!(agent.sent.is_none(), "no challenge for malformed payloads");
}

#[test]
fn configuration_errors_are_spires() {
    let td = TrustDomain::new("example.org").unwrap();
    let err = TpmDevIdServer::new(&ServerConfig::default(), td.clone()).unwrap_err();
    assert_eq!(err.message, "devid_ca_path is required");
    let err = TpmDevIdServer::new(
        &ServerConfig {
            devid_ca_path: "/nonexistent/devid.pem".into(),
            endorsement_ca_path: "/nonexistent/ek.pem".into(),
        },
        td,
    )
    .unwrap_err();
    assert!(
        err.message.starts_with("unable to load DevID trust bundle"),
        "{err}"
    );
}
