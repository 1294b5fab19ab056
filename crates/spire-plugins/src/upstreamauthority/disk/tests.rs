//! The `disk` UpstreamAuthority against CA files made by rcgen in temporary directories.

use super::*;
use spiffe_core::keys::KeyType;
use spire_pki::Subject;
use spire_plugin::{Code, X509Authority as PluginAuthority};

#[derive(Debug)]
struct Ignore;

impl UpstreamUpdates for Ignore {
    fn x509_roots(&self, _roots: Vec<PluginAuthority>) {}
    fn jwt_keys(&self, _keys: Vec<JwtKey>) {}
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn fixed(now: SystemTime) -> NowFn {
    Arc::new(move || now)
}

/// A CA made by rcgen: its certificate, key and issuer handle.
struct Ca {
    der: Vec<u8>,
    pem: String,
    key_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(cn: &str, parent: Option<&Ca>, not_after: Option<SystemTime>) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let key_pem = key.serialize_pem();
    let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    if let Some(t) = not_after {
        p.not_after = t.into();
    }
    let cert = match parent {
        Some(parent) => p.signed_by(&key, &parent.issuer).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    Ca {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key_pem,
        issuer: rcgen::Issuer::new(p, key),
    }
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
    /// A configuration whose files live in a subdirectory of their own (`ca.crt`, `ca.key`
    /// and `bundle.crt` directly in the directory for the first one).
    fn config(&self, cert: &str, key: &str, bundle: Option<&str>) -> Config {
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        let sub = if n == 0 {
            String::new()
        } else {
            format!("c{n}/")
        };
        if !sub.is_empty() {
            std::fs::create_dir_all(self.dir.path().join(&sub)).unwrap();
        }
        Config {
            cert_file_path: self.write(&format!("{sub}ca.crt"), cert),
            key_file_path: self.write(&format!("{sub}ca.key"), key),
            bundle_file_path: bundle
                .map(|b| self.write(&format!("{sub}bundle.crt"), b))
                .unwrap_or_default(),
        }
    }
}

/// A CA CSR as our CA manager sends it: SPIRE's CA subject, the trust domain's ID, and a
/// certificate policy extension (a CredentialComposer's) that must carry over.
fn server_csr(id_td: &TrustDomain) -> (Vec<u8>, Vec<u8>) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let spki = key.public_key().spki_der().to_vec();
    let signer = Arc::new(LocalSigner::new("x509-CA-A", key));
    let policy = spire_pki::certificate_policies(&["1.2.3.4".to_string()]).unwrap();
    let csr = spire_pki::make_ca_csr(signer, id_td, &Subject::default_ca(), &[policy]).unwrap();
    (csr, spki)
}

fn parse(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
    use x509_parser::prelude::FromDer as _;
    x509_parser::certificate::X509Certificate::from_der(der)
        .unwrap()
        .1
}

#[tokio::test]
async fn a_self_signed_root_signs_the_servers_ca_as_spire_does() {
    let now = SystemTime::now();
    let root = ca("upstream root", None, None);
    let files = Files::new();
    let plugin = DiskUpstreamAuthority::new(
        &files.config(&root.pem, &root.key_pem, None),
        td(),
        fixed(now),
    )
    .unwrap();
    let (csr, spki) = server_csr(&td());
    let got = plugin
        .mint_x509_ca(&csr, 0, Arc::new(Ignore))
        .await
        .unwrap();
    assert_eq!(
        got.x509_ca_chain.len(),
        1,
        "no chain above a self-signed root"
    );
    assert_eq!(got.upstream_x509_roots, vec![root.der.clone()]);

    let minted = &got.x509_ca_chain[0];
    spiffe_core::x509svid::verify_x509_path(minted, &[], std::slice::from_ref(&root.der), now)
        .unwrap();
    let cert = parse(minted);
    assert_eq!(cert.public_key().raw, spki.as_slice());
    assert!(cert.is_ca());
    assert_eq!(cert.subject().to_string(), "C=US, O=SPIFFE");
    assert_eq!(
        spire_pki::certificate_uris(minted).unwrap(),
        vec!["spiffe://example.org"]
    );
    let secs = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // SPIRE's upstream CA: ten seconds of backdating, an hour when no TTL is asked for.
    assert_eq!(cert.validity().not_before.timestamp(), secs(now) - 10);
    assert_eq!(cert.validity().not_after.timestamp(), secs(now) + 3600);
    let oids: Vec<String> = cert
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    assert!(
        oids.contains(&"2.5.29.32".to_string()),
        "the CSR's policy carries over: {oids:?}"
    );
    assert_eq!(
        oids.iter().filter(|o| *o == "2.5.29.17").count(),
        1,
        "{oids:?}"
    );

    let asked = plugin
        .mint_x509_ca(&csr, 7200, Arc::new(Ignore))
        .await
        .unwrap();
    let cert = parse(&asked.x509_ca_chain[0]);
    assert_eq!(cert.validity().not_after.timestamp(), secs(now) + 7200);
}

#[tokio::test]
async fn an_intermediate_with_a_bundle_returns_the_chain_and_caps_the_lifetime() {
    let now = SystemTime::now();
    let root = ca("root", None, None);
    let ends = now + Duration::from_secs(1800);
    let inter = ca("intermediate", Some(&root), Some(ends));
    let files = Files::new();
    let plugin = DiskUpstreamAuthority::new(
        &files.config(&inter.pem, &inter.key_pem, Some(&root.pem)),
        td(),
        fixed(now),
    )
    .unwrap();
    let (csr, _) = server_csr(&td());
    let got = plugin
        .mint_x509_ca(&csr, 86400, Arc::new(Ignore))
        .await
        .unwrap();
    // SPIRE answers the minted CA, then the whole certificate file (the intermediate).
    assert_eq!(got.x509_ca_chain.len(), 2);
    assert_eq!(got.x509_ca_chain[1], inter.der);
    assert_eq!(got.upstream_x509_roots, vec![root.der.clone()]);
    spiffe_core::x509svid::verify_x509_path(
        &got.x509_ca_chain[0],
        &got.x509_ca_chain[1..],
        &got.upstream_x509_roots,
        now,
    )
    .unwrap();
    let cert = parse(&got.x509_ca_chain[0]);
    assert_eq!(
        cert.validity().not_after.timestamp(),
        parse(&inter.der).validity().not_after.timestamp(),
        "never past the upstream CA's notAfter"
    );
}

#[test]
fn unusable_files_refuse_the_configuration_with_spires_messages() {
    let now = SystemTime::now();
    let root = ca("root", None, None);
    let other = ca("other", None, None);
    let inter = ca("intermediate", Some(&root), None);
    let files = Files::new();
    let two = format!("{}{}", inter.pem, root.pem);
    let cases: Vec<(Config, &str)> = vec![
        (
            files.config(&root.pem, &other.key_pem, None),
            "unable to load upstream CA: certificate and private key do not match",
        ),
        (
            files.config(&two, &inter.key_pem, None),
            "with no bundle_file_path configured only self-signed CAs are supported",
        ),
        (
            files.config(&inter.pem, &inter.key_pem, Some(&other.pem)),
            "unable to load upstream CA: certificate cannot be validated with the provided bundle or is not self-signed",
        ),
        (
            files.config(&inter.pem, &inter.key_pem, None),
            "unable to load upstream CA: certificate cannot be validated with the provided bundle or is not self-signed",
        ),
        (
            files.config(&root.pem, "not a key", None),
            "unable to load upstream CA key: ",
        ),
        (
            files.config("garbage", &root.key_pem, None),
            "unable to load upstream CA cert: ",
        ),
        (
            Config {
                bundle_file_path: files.dir.path().join("missing").display().to_string(),
                ..files.config(&root.pem, &root.key_pem, None)
            },
            "unable to load upstream CA bundle: open ",
        ),
    ];
    for (config, want) in cases {
        let Err(err) = DiskUpstreamAuthority::new(&config, td(), fixed(now)) else {
            panic!("accepted: {config:?}, wanted {want}");
        };
        assert_eq!(err.code, Code::InvalidArgument, "{err}");
        assert!(
            err.message.starts_with(want),
            "{} does not start with {want}",
            err.message
        );
    }
}

#[tokio::test]
async fn a_csr_for_another_identity_is_not_signed() {
    let root = ca("root", None, None);
    let files = Files::new();
    let plugin = DiskUpstreamAuthority::new(
        &files.config(&root.pem, &root.key_pem, None),
        td(),
        fixed(SystemTime::now()),
    )
    .unwrap();
    let (csr, _) = server_csr(&TrustDomain::new("evil.test").unwrap());
    let err = plugin
        .mint_x509_ca(&csr, 0, Arc::new(Ignore))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Internal);
    assert_eq!(
        err.message,
        "unable to sign CSR: CSR with SPIFFE ID \"spiffe://evil.test\" is invalid: must use the trust domain ID for trust domain \"example.org\""
    );
    let err = plugin
        .mint_x509_ca(b"not a csr", 0, Arc::new(Ignore))
        .await
        .unwrap_err();
    assert!(err.message.starts_with("unable to sign CSR: "), "{err}");
}

#[tokio::test]
async fn replaced_files_are_used_at_the_next_mint_and_broken_ones_fall_back() {
    let now = SystemTime::now();
    let first = ca("first", None, None);
    let second = ca("second", None, None);
    let files = Files::new();
    let config = files.config(&first.pem, &first.key_pem, None);
    let plugin = DiskUpstreamAuthority::new(&config, td(), fixed(now)).unwrap();
    let (csr, _) = server_csr(&td());

    files.write("ca.crt", &second.pem);
    files.write("ca.key", &second.key_pem);
    let got = plugin
        .mint_x509_ca(&csr, 0, Arc::new(Ignore))
        .await
        .unwrap();
    assert_eq!(got.upstream_x509_roots, vec![second.der.clone()]);

    files.write("ca.crt", "garbage");
    let got = plugin
        .mint_x509_ca(&csr, 0, Arc::new(Ignore))
        .await
        .unwrap();
    assert_eq!(
        got.upstream_x509_roots,
        vec![second.der.clone()],
        "the last good files"
    );
    spiffe_core::x509svid::verify_x509_path(&got.x509_ca_chain[0], &[], &[second.der], now)
        .unwrap();
}

#[tokio::test]
async fn jwt_keys_are_not_published_upstream() {
    let root = ca("root", None, None);
    let files = Files::new();
    let plugin = DiskUpstreamAuthority::new(
        &files.config(&root.pem, &root.key_pem, None),
        td(),
        fixed(SystemTime::now()),
    )
    .unwrap();
    let key = JwtKey {
        public_key: vec![1],
        key_id: "k".into(),
        expires_at: 0,
        tainted: false,
    };
    let err = plugin
        .publish_jwt_key(&key, Arc::new(Ignore))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unimplemented);
    assert_eq!(err.message, "publishing upstream is unsupported");
}
