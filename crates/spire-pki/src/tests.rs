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

/// An X509-SVID for `spiffe://example.org/w` from `ca` (a fresh P-256 key, one minute, no
/// DNS names).
fn svid_w(ca: &X509Authority, subject: Option<&Subject>) -> (SpiffeId, Vec<u8>) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let der = ca
        .sign_x509_svid(&SvidRequest {
            id: &id,
            public_key: key.public_key(),
            dns_names: &[],
            subject,
            ttl: Duration::from_secs(60),
            now: now(),
        })
        .unwrap();
    (id, der)
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
    let (id, leaf) = svid_w(&inter, None);
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
    let replaced = Draft::new(cert, &[]).unwrap().with_signature(&[7; 200]);
    let (_, parsed) = X509Certificate::from_der(&replaced).unwrap();
    assert_eq!(parsed.signature_value.data.as_ref(), &[7; 200][..]);
    let (_, original) = X509Certificate::from_der(cert).unwrap();
    assert_eq!(
        parsed.tbs_certificate.as_ref(),
        original.tbs_certificate.as_ref()
    );
    assert!(Draft::new(&cert[..cert.len() - 1], &[]).is_err());
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

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// Fixtures: `asn1.Marshal(name.ToRDNSequence())` as printed by Go 1.26's encoding/asn1 for
// the pkix.Name in each comment, which is what x509.CreateCertificate and
// CreateCertificateRequest write as the subject.

/// pkix.Name{Country: {"US"}, Organization: {"Zeta", "Alpha", "Mid"}}
const GO_SEVERAL_O: &str = "3036310b30090603550406130255533127300a060355040a13034d6964300b060355040a13045a657461300c060355040a1305416c706861";
/// pkix.Name{Country: {"US"}, Organization: {"Zeta", "Alpha", "Mid"}, SerialNumber: "42"}
const GO_SEVERAL_O_SERIAL: &str = "3043310b30090603550406130255533127300a060355040a13034d6964300b060355040a13045a657461300c060355040a1305416c706861310b3009060355040513023432";
/// pkix.Name{SerialNumber: "7", ExtraNames: {DC=example, DC=com, OU=a, OU=b}}
/// (DC is 0.9.2342.19200300.100.1.25, OU 2.5.4.11)
const GO_DC_OU: &str = "3052310a3008060355040513013731173015060a0992268993f22c64011913076578616d706c6531133011060a0992268993f22c6401191303636f6d310a3008060355040b130161310a3008060355040b130162";

fn several_o() -> Subject {
    Subject {
        country: strings(&["US"]),
        organization: strings(&["Zeta", "Alpha", "Mid"]),
        ..Subject::default()
    }
}

fn dc_ou() -> Subject {
    let dc = "0.9.2342.19200300.100.1.25";
    Subject {
        serial_number: "7".into(),
        extra_names: vec![
            (dc.into(), "example".into()),
            (dc.into(), "com".into()),
            ("2.5.4.11".into(), "a".into()),
            ("2.5.4.11".into(), "b".into()),
        ],
        ..Subject::default()
    }
}

#[test]
fn names_are_encoded_byte_for_byte_as_go_encodes_them() {
    let cases: Vec<(Subject, &str)> = vec![
        (several_o(), GO_SEVERAL_O),
        (
            Subject {
                serial_number: "42".into(),
                ..several_o()
            },
            GO_SEVERAL_O_SERIAL,
        ),
        // pkix.Name{Organization: {"Ünïcode", "Plain"}, OrganizationalUnit: {"a*b", "x&y", "ok"}}
        // ('*' and '&' are not PrintableString characters: UTF8String).
        (
            Subject {
                organization: strings(&["Ünïcode", "Plain"]),
                organizational_unit: strings(&["a*b", "x&y", "ok"]),
                ..Subject::default()
            },
            "30473120300c060355040a1305506c61696e3010060355040a0c09c39c6ec3af636f646531233009060355040b13026f6b300a060355040b0c03612a62300a060355040b0c03782679",
        ),
        // pkix.Name{Country: {"US"}, Organization: {"SPIFFE"}, CommonName: "example",
        // SerialNumber: "12345"}
        (
            Subject {
                common_name: "example".into(),
                serial_number: "12345".into(),
                ..Subject::default_ca()
            },
            "3040310b3009060355040613025553310f300d060355040a13065350494646453110300e060355040313076578616d706c65310e300c060355040513053132333435",
        ),
        // pkix.Name{Country: {"US"}, Province: {"CA"}, Locality: {"SF"},
        // StreetAddress: {"1 Main St"}, PostalCode: {"94105"}, Organization: {"O"},
        // OrganizationalUnit: {"OU"}, CommonName: "CN", SerialNumber: "7"}
        (
            Subject {
                country: strings(&["US"]),
                province: strings(&["CA"]),
                locality: strings(&["SF"]),
                street_address: strings(&["1 Main St"]),
                postal_code: strings(&["94105"]),
                organization: strings(&["O"]),
                organizational_unit: strings(&["OU"]),
                common_name: "CN".into(),
                serial_number: "7".into(),
                extra_names: vec![],
            },
            "307d310b3009060355040613025553310b3009060355040813024341310b3009060355040713025346311230100603550409130931204d61696e205374310e300c060355041113053934313035310a3008060355040a13014f310b3009060355040b13024f55310b300906035504031302434e310a30080603550405130137",
        ),
        // pkix.Name{Organization: {"SPIFFE"}, CommonName: "cn", ExtraNames: {1.2.3.4.200000=custom,
        // 0.9.2342.19200300.100.1.25=example, 0.9.2342.19200300.100.1.25=com}}
        (
            Subject {
                organization: strings(&["SPIFFE"]),
                common_name: "cn".into(),
                extra_names: vec![
                    ("1.2.3.4.200000".into(), "custom".into()),
                    ("0.9.2342.19200300.100.1.25".into(), "example".into()),
                    ("0.9.2342.19200300.100.1.25".into(), "com".into()),
                ],
                ..Subject::default()
            },
            "3060310f300d060355040a1306535049464645310b300906035504031302636e3112301006062a03048c9a401306637573746f6d31173015060a0992268993f22c64011913076578616d706c6531133011060a0992268993f22c6401191303636f6d",
        ),
        // pkix.Name{Country: {"US"}, Organization: {"Dropped", "Also"},
        // ExtraNames: {2.5.4.10=Kept}}: an extra name replaces the field of its type.
        (
            Subject {
                country: strings(&["US"]),
                organization: strings(&["Dropped", "Also"]),
                extra_names: vec![("2.5.4.10".into(), "Kept".into())],
                ..Subject::default()
            },
            "301c310b3009060355040613025553310d300b060355040a13044b657074",
        ),
        (dc_ou(), GO_DC_OU),
        // pkix.Name{}
        (Subject::default(), "3000"),
    ];
    for (subject, go) in cases {
        assert_eq!(hex(&subject.to_der().unwrap()), go, "{subject:?}");
    }
    let bad = Subject {
        extra_names: vec![("not.an.oid".into(), "x".into())],
        ..Subject::default()
    };
    assert!(bad.to_der().is_err());
}

/// The (type, value) pairs of each RDN of a name, in order.
fn rdns(name: &x509_parser::x509::X509Name<'_>) -> Vec<Vec<(String, String)>> {
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    (
                        atv.attr_type().to_id_string(),
                        atv.as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

fn signer(kt: KeyType) -> Arc<dyn Signer> {
    Arc::new(LocalSigner::new("k", PrivateKey::generate(kt).unwrap()))
}

#[test]
fn several_values_of_one_attribute_survive_everywhere() {
    let o = |v: &str| ("2.5.4.10".to_string(), v.to_string());
    let want_rdns = vec![
        vec![("2.5.4.6".to_string(), "US".to_string())],
        vec![o("Mid"), o("Zeta"), o("Alpha")],
        vec![("2.5.4.5".to_string(), "42".to_string())],
    ];
    let with_serial = Subject {
        serial_number: "42".into(),
        ..several_o()
    };

    // A self-signed CA.
    let root_signer = signer(KeyType::EcP256);
    let root_der = self_signed_x509_ca(
        root_signer.clone(),
        &td(),
        &with_serial,
        &[],
        Duration::from_secs(86_400),
        now(),
    )
    .unwrap();
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    assert_eq!(hex(root.subject().as_raw()), GO_SEVERAL_O_SERIAL);
    assert_eq!(root.issuer().as_raw(), root.subject().as_raw());
    assert_eq!(rdns(root.subject()), want_rdns);
    root.verify_signature(None).unwrap();
    let ca = X509Authority::new(root_der.clone(), root_signer, td()).unwrap();

    // An X509-SVID.
    let (id, svid) = svid_w(&ca, Some(&several_o()));
    let (_, leaf) = X509Certificate::from_der(&svid).unwrap();
    assert_eq!(hex(leaf.subject().as_raw()), GO_SEVERAL_O);
    assert_eq!(leaf.issuer().as_raw(), root.subject().as_raw());
    assert_eq!(
        subject_of(&svid).unwrap().organization,
        ["Mid", "Zeta", "Alpha"]
    );
    assert_eq!(
        x509svid::verify_chain(std::slice::from_ref(&svid), &bundle(&ca), now()).unwrap(),
        id
    );

    // A downstream CA.
    let down_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let down = ca
        .sign_x509_ca(&CaRequest {
            public_key: down_key.public_key(),
            subject: with_serial.clone(),
            extensions: vec![],
            ttl: Duration::from_secs(600),
            now: now(),
        })
        .unwrap();
    let (_, down) = X509Certificate::from_der(&down).unwrap();
    assert_eq!(hex(down.subject().as_raw()), GO_SEVERAL_O_SERIAL);
    down.verify_signature(Some(root.public_key())).unwrap();

    // A CA CSR, and the CA an upstream signs from it.
    let csr_signer = signer(KeyType::EcP384);
    let csr = make_ca_csr(csr_signer.clone(), &td(), &with_serial, &[]).unwrap();
    let (_, req) = X509CertificationRequest::from_der(&csr).unwrap();
    assert_eq!(
        hex(req.certification_request_info.subject.as_raw()),
        GO_SEVERAL_O_SERIAL
    );
    req.verify_signature().unwrap();
    let upstream_signed = ca
        .sign_upstream_ca_csr(&csr, &td(), Duration::ZERO, now())
        .unwrap();
    let (_, up) = X509Certificate::from_der(&upstream_signed).unwrap();
    assert_eq!(hex(up.subject().as_raw()), GO_SEVERAL_O_SERIAL);
    assert_eq!(rdns(up.subject()), want_rdns);
    assert_eq!(up.issuer().as_raw(), root.subject().as_raw());
    up.verify_signature(Some(root.public_key())).unwrap();
    assert_eq!(
        up.public_key().raw,
        csr_signer.public_key().spki_der(),
        "the CSR's key"
    );
}

/// The authority key ID a certificate carries.
fn akid(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// Checks that `child` was issued by `ca`: its issuer is the CA's subject byte for byte,
/// the CA's key signed it, and it names the CA's key ID.
fn assert_issued_by(child: &[u8], ca: &X509Authority) {
    let (_, parent) = X509Certificate::from_der(ca.certificate()).unwrap();
    let (_, child) = X509Certificate::from_der(child).unwrap();
    assert_eq!(child.issuer().as_raw(), parent.subject().as_raw());
    child.verify_signature(Some(parent.public_key())).unwrap();
    assert_eq!(akid(&child).as_deref(), Some(ca.subject_key_id()));
}

#[test]
fn a_ca_whose_subject_repeats_attribute_types_issues_children_that_chain() {
    for kt in [KeyType::EcP256, KeyType::Rsa2048] {
        let s = signer(kt);
        let der = self_signed_x509_ca(
            s.clone(),
            &td(),
            &dc_ou(),
            &[],
            Duration::from_secs(86_400),
            now(),
        )
        .unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(hex(cert.subject().as_raw()), GO_DC_OU);
        assert_eq!(rdns(cert.subject()).len(), 5, "one RDN per attribute");
        let ca = X509Authority::new(der, s, td()).unwrap();

        let (id, svid) = svid_w(&ca, None);
        assert_issued_by(&svid, &ca);
        assert_eq!(
            x509svid::verify_chain(std::slice::from_ref(&svid), &bundle(&ca), now()).unwrap(),
            id
        );

        let mut subject = subject_of(ca.certificate()).unwrap();
        subject.organizational_unit.push("DOWNSTREAM-1".into());
        let down_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let down = ca
            .sign_x509_ca(&CaRequest {
                public_key: down_key.public_key(),
                subject,
                extensions: vec![],
                ttl: Duration::from_secs(600),
                now: now(),
            })
            .unwrap();
        assert_issued_by(&down, &ca);
    }
}

#[test]
fn a_ca_whose_subject_has_a_multi_valued_rdn_is_an_issuer() {
    let s = Arc::new(RemoteLike {
        inner: LocalSigner::new("k", PrivateKey::generate(KeyType::EcP256).unwrap()),
        sync_calls: Default::default(),
        async_calls: Default::default(),
    });
    let der = self_signed_x509_ca(
        s.clone(),
        &td(),
        &several_o(),
        &[],
        Duration::from_secs(86_400),
        now(),
    )
    .unwrap();
    let ca = X509Authority::new(der, s, td()).unwrap();
    let leaf_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let subject = Subject::default_svid();
    let template = SvidTemplate {
        id: &id,
        public_key: leaf_key.public_key(),
        subject: &subject,
        dns_names: &[],
        extensions: &[],
        ttl: Duration::from_secs(60),
        now: now(),
    };
    let sync = ca.issue_x509_svid_template(&template).unwrap();
    let remote = ready(ca.issue_x509_svid_template_async(&template)).unwrap();
    for der in [sync.der, remote.der] {
        assert_issued_by(&der, &ca);
        assert_eq!(
            x509svid::verify_chain(std::slice::from_ref(&der), &bundle(&ca), now()).unwrap(),
            id
        );
    }
}

#[test]
fn the_subject_alt_name_is_critical_as_go_marks_it() {
    // Certificates: critical exactly when the subject is empty.
    let ca = ca(KeyType::EcP256, Duration::from_secs(86_400));
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    for (subject, critical) in [(Subject::default(), true), (Subject::default_svid(), false)] {
        let der = ca
            .sign_x509_svid(&SvidRequest {
                id: &id,
                public_key: key.public_key(),
                dns_names: &[],
                subject: Some(&subject),
                ttl: Duration::from_secs(60),
                now: now(),
            })
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().as_raw(), subject.to_der().unwrap());
        let san = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.5.29.17")
            .unwrap();
        assert_eq!(san.critical, critical);
        assert_issued_by(&der, &ca);
    }
    // CSRs: never (Go's CreateCertificateRequest does not mark it).
    let csr = make_csr(PrivateKey::generate(KeyType::EcP256).unwrap(), Some(&id)).unwrap();
    let (_, req) = X509CertificationRequest::from_der(&csr).unwrap();
    assert_eq!(req.certification_request_info.subject.as_raw(), [0x30, 0]);
    let san = csr_raw_extensions(&req)
        .into_iter()
        .find(|e| e.oid == "2.5.29.17")
        .unwrap();
    assert!(!san.critical);
    assert_eq!(parse_csr(&csr).unwrap().uris, vec![id.to_string()]);
    let dns = make_dns_csr(signer(KeyType::EcP256), "web.example.org").unwrap();
    let (_, req) = X509CertificationRequest::from_der(&dns).unwrap();
    assert_eq!(
        req.certification_request_info.subject.as_raw(),
        Subject {
            common_name: "web.example.org".into(),
            ..Subject::default()
        }
        .to_der()
        .unwrap()
    );
    assert_eq!(parse_csr(&dns).unwrap().dns_names, ["web.example.org"]);
}
