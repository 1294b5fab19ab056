//! Unit tests: the certificates we issue, checked against SPIRE's templates and the SPIFFE rules.

use std::time::{Duration, UNIX_EPOCH};

use spiffe_core::{Bundle, KeyType, X509BundleSource, x509svid};

use super::*;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn ca(kt: KeyType, ttl: Duration) -> X509Authority {
    let key = PrivateKey::generate(kt).unwrap();
    let signer: Arc<dyn Signer> = Arc::new(LocalSigner::new("x509-CA-A", key));
    let der = self_signed_x509_ca(
        signer.clone(),
        &td(),
        &Subject::default_ca(),
        &[],
        ttl,
        now(),
    )
    .unwrap();
    X509Authority::new(der, signer, td()).unwrap()
}

fn bundle(ca: &X509Authority) -> Bundle {
    let mut b = Bundle::new(td());
    b.add_x509_authority(ca.certificate().to_vec());
    b
}

#[test]
fn self_signed_ca_looks_like_spires() {
    let ca = ca(KeyType::EcP256, Duration::from_secs(86_400));
    let (_, cert) = X509Certificate::from_der(ca.certificate()).unwrap();
    assert!(cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let facts = certificate_facts(ca.certificate()).unwrap();
    assert_eq!(
        facts.subject,
        format!("SERIALNUMBER={},O=SPIFFE,C=US", facts.serial_decimal)
    );
    assert_eq!(facts.not_before, 1_767_225_600 - 10);
    assert_eq!(facts.not_after, 1_767_225_600 + 86_400);
    let skid = subject_key_id(cert.public_key().raw).unwrap();
    assert_eq!(facts.subject_key_id, hex(&skid));
    assert_eq!(ca.subject_key_id(), skid.as_slice());
    assert_eq!(
        x509svid::id_from_der(ca.certificate()).unwrap().to_string(),
        "spiffe://example.org"
    );
    // Self-signed: no authority key identifier, as Go leaves it out.
    assert!(!cert.iter_extensions().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::AuthorityKeyIdentifier(_)
    )));
}

#[test]
fn what_is_issued_is_what_the_certificate_says() {
    let ca = ca(KeyType::EcP256, Duration::from_secs(86_400));
    let id = SpiffeId::parse("spiffe://example.org/workload").unwrap();
    for ttl in [Duration::from_secs(3600), Duration::from_secs(10 * 86_400)] {
        for _ in 0..50 {
            let key = PrivateKey::generate(KeyType::EcP256).unwrap();
            let issued = ca
                .issue_x509_svid(&SvidRequest {
                    id: &id,
                    public_key: key.public_key(),
                    dns_names: &[],
                    subject: None,
                    ttl,
                    now: now() + Duration::from_millis(250),
                })
                .unwrap();
            let facts = certificate_facts(&issued.der).unwrap();
            assert_eq!(facts.serial_decimal, issued.serial.to_string());
            assert_eq!(
                facts.not_after, issued.not_after,
                "capped at the CA's expiry too"
            );
        }
    }
}

#[test]
fn svids_verify_against_the_ca_for_every_key_type() {
    for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let ca = ca(kt, Duration::from_secs(86_400));
        let leaf_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let id = SpiffeId::parse("spiffe://example.org/workload").unwrap();
        let dns = vec!["web.example.org".to_string(), "alt.example.org".to_string()];
        let der = ca
            .sign_x509_svid(&SvidRequest {
                id: &id,
                public_key: leaf_key.public_key(),
                dns_names: &dns,
                subject: None,
                ttl: Duration::from_secs(3600),
                now: now(),
            })
            .unwrap();
        let got = x509svid::verify_chain(std::slice::from_ref(&der), &bundle(&ca), now()).unwrap();
        assert_eq!(got, id);
        let facts = certificate_facts(&der).unwrap();
        assert_eq!(facts.subject, "CN=web.example.org,O=SPIRE,C=US");
        assert_eq!(facts.not_after, 1_767_225_600 + 3600);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && ku.key_agreement());
        let akid = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(akid, ca.subject_key_id());
        assert!(bundle(&ca).x509_authorities(&td()).is_some());
    }
}

#[test]
fn svid_lifetime_is_capped_at_the_ca() {
    let ca = ca(KeyType::EcP256, Duration::from_secs(600));
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let der = ca
        .sign_x509_svid(&SvidRequest {
            id: &id,
            public_key: key.public_key(),
            dns_names: &[],
            subject: None,
            ttl: Duration::from_secs(3600),
            now: now(),
        })
        .unwrap();
    assert_eq!(
        certificate_facts(&der).unwrap().not_after,
        1_767_225_600 + 600
    );
}

#[test]
fn svid_outside_the_trust_domain_is_refused() {
    let ca = ca(KeyType::EcP256, Duration::from_secs(600));
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let id = SpiffeId::parse("spiffe://other.org/w").unwrap();
    let err = ca
        .sign_x509_svid(&SvidRequest {
            id: &id,
            public_key: key.public_key(),
            dns_names: &[],
            subject: None,
            ttl: Duration::from_secs(60),
            now: now(),
        })
        .unwrap_err();
    assert!(matches!(err, PkiError::WrongTrustDomain { .. }));
}

#[test]
fn intermediate_ca_chains_to_the_root() {
    let root = ca(KeyType::EcP256, Duration::from_secs(86_400));
    let ikey = PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut subject = Subject::default_ca();
    subject.organizational_unit = vec!["DOWNSTREAM-1".into()];
    let ider = root
        .sign_x509_ca(&CaRequest {
            public_key: ikey.public_key(),
            subject,
            extensions: vec![],
            ttl: Duration::from_secs(7200),
            now: now(),
        })
        .unwrap();
    let isigner: Arc<dyn Signer> = Arc::new(LocalSigner::new("i", ikey));
    let inter = X509Authority::new(ider.clone(), isigner, td()).unwrap();
    let leaf_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let leaf = inter
        .sign_x509_svid(&SvidRequest {
            id: &id,
            public_key: leaf_key.public_key(),
            dns_names: &[],
            subject: None,
            ttl: Duration::from_secs(60),
            now: now(),
        })
        .unwrap();
    assert_eq!(
        x509svid::verify_chain(&[leaf, ider.clone()], &bundle(&root), now()).unwrap(),
        id
    );
    assert!(
        certificate_facts(&ider)
            .unwrap()
            .subject
            .contains("OU=DOWNSTREAM-1")
    );
}

#[test]
fn csr_round_trip_and_tamper_detection() {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let public = key.public_key().clone();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let der = make_csr(key, Some(&id)).unwrap();
    let csr = parse_csr(&der).unwrap();
    assert_eq!(csr.public_key, public);
    assert_eq!(csr.uris, vec![id.to_string()]);
    let no_uri =
        parse_csr(&make_csr(PrivateKey::generate(KeyType::Rsa2048).unwrap(), None).unwrap())
            .unwrap();
    assert!(no_uri.uris.is_empty());
    let mut bad = der.clone();
    let last = bad.len() - 5;
    bad[last] ^= 0xff;
    assert!(matches!(
        parse_csr(&bad),
        Err(PkiError::CsrSignature) | Err(PkiError::MalformedCsr(_))
    ));
    assert!(matches!(parse_csr(b"junk"), Err(PkiError::MalformedCsr(_))));
}

#[test]
fn ca_key_must_match_certificate() {
    let root = ca(KeyType::EcP256, Duration::from_secs(600));
    let other: Arc<dyn Signer> = Arc::new(LocalSigner::new(
        "x",
        PrivateKey::generate(KeyType::EcP256).unwrap(),
    ));
    assert!(X509Authority::new(root.certificate().to_vec(), other, td()).is_err());
}

#[test]
fn decimal_conversion() {
    assert_eq!(decimal_from_be(&[]), "0");
    assert_eq!(decimal_from_be(&[1, 0]), "256");
    assert_eq!(decimal_from_be(&[0xff; 16]), u128::MAX.to_string());
    // 2^128 = 340282366920938463463374607431768211456
    let mut big = vec![1u8];
    big.extend([0u8; 16]);
    assert_eq!(
        decimal_from_be(&big),
        "340282366920938463463374607431768211456"
    );
}

#[test]
fn serial_numbers_are_never_zero_and_vary() {
    let a = new_serial_number();
    let b = new_serial_number();
    assert!(a != 0 && b != 0 && a != b);
}

/// A signer that says it is remote (as a KeyManager plugin's is), signing locally and
/// counting how it was asked.
#[derive(Debug)]
struct RemoteLike {
    inner: LocalSigner,
    sync_calls: std::sync::atomic::AtomicUsize,
    async_calls: std::sync::atomic::AtomicUsize,
}

impl Signer for RemoteLike {
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }
    fn sign(&self, message: &[u8], kind: SignatureKind) -> spire_plugin::PluginResult<Vec<u8>> {
        self.sync_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.sign(message, kind)
    }
    fn is_remote(&self) -> bool {
        true
    }
    fn sign_async<'a>(
        &'a self,
        message: &'a [u8],
        kind: SignatureKind,
    ) -> spire_plugin::SignFuture<'a> {
        self.async_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(std::future::ready(self.inner.sign(message, kind)))
    }
}

/// Polls a future that is ready at once.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the test signer answers at once"),
    }
}

#[test]
fn a_remote_signer_signs_the_assembled_certificate_without_blocking() {
    use std::sync::atomic::Ordering::Relaxed;
    for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let signer = Arc::new(RemoteLike {
            inner: LocalSigner::new("x509-CA-A", PrivateKey::generate(kt).unwrap()),
            sync_calls: Default::default(),
            async_calls: Default::default(),
        });
        let der = self_signed_x509_ca(
            signer.clone(),
            &td(),
            &Subject::default_ca(),
            &[],
            Duration::from_secs(86_400),
            now(),
        )
        .unwrap();
        let ca = X509Authority::new(der, signer.clone(), td()).unwrap();
        assert!(ca.is_remote());
        let before = signer.sync_calls.load(Relaxed);
        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        let leaf_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let dns = vec!["w.example.org".to_owned()];
        let subject = Subject::default_svid();
        let issued = ready(ca.issue_x509_svid_template_async(&SvidTemplate {
            id: &id,
            public_key: leaf_key.public_key(),
            subject: &subject,
            dns_names: &dns,
            extensions: &[],
            ttl: Duration::from_secs(3600),
            now: now(),
        }))
        .unwrap();
        assert_eq!(signer.sync_calls.load(Relaxed), before, "{kt:?}");
        assert_eq!(signer.async_calls.load(Relaxed), 1, "{kt:?}");
        // The spliced signature verifies, and the certificate is what was asked for.
        let got =
            x509svid::verify_chain(std::slice::from_ref(&issued.der), &bundle(&ca), now()).unwrap();
        assert_eq!(got.to_string(), "spiffe://example.org/w");
        let facts = certificate_facts(&issued.der).unwrap();
        assert_eq!(facts.not_after, issued.not_after);
    }
}

#[test]
fn a_signature_is_replaced_in_a_der_certificate() {
    let ca = ca(KeyType::EcP256, Duration::from_secs(86_400));
    let cert = ca.certificate();
    let replaced = with_signature(cert, &[7; 200]).unwrap();
    let (_, parsed) = X509Certificate::from_der(&replaced).unwrap();
    assert_eq!(parsed.signature_value.data.as_ref(), &[7; 200][..]);
    let (_, original) = X509Certificate::from_der(cert).unwrap();
    assert_eq!(
        parsed.tbs_certificate.as_ref(),
        original.tbs_certificate.as_ref()
    );
    assert!(with_signature(&cert[..cert.len() - 1], &[1]).is_err());
}

#[test]
fn extra_extensions_the_ca_writes_itself_or_twice_are_refused() {
    let ca = ca(KeyType::EcP256, Duration::from_secs(86_400));
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = Subject::default_svid();
    let issue = |extensions: &[Extension]| {
        ca.issue_x509_svid_template(&SvidTemplate {
            id: &id,
            public_key: key.public_key(),
            subject: &subject,
            dns_names: &[],
            extensions,
            ttl: Duration::from_secs(60),
            now: now(),
        })
    };
    let ext = |oid: &str| Extension {
        oid: oid.into(),
        critical: false,
        value: vec![0x05, 0x00],
    };
    assert!(
        issue(&[ext("2.5.29.17")]).is_err(),
        "a second SAN extension"
    );
    assert!(issue(&[ext("1.2.3.4"), ext("1.2.3.4")]).is_err());
    assert!(issue(&[ext("2.99999999999999999")]).is_ok());
    let issued = issue(&[ext("1.2.3.4")]).unwrap();
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    assert!(
        cert.iter_extensions()
            .any(|e| e.oid.to_id_string() == "1.2.3.4")
    );
}
