//! Test PKI for x509pop (made with rcgen, an implementation independent of both SPIREs)
//! and X.509 facts read with x509-parser.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::TD;

/// A node identity for x509pop: key and certificate files and the agent ID they yield.
#[derive(Debug, Clone)]
pub struct NodeCert {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// SHA-1 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
}

impl NodeCert {
    /// `spiffe://example.org/spire/agent/x509pop/<fingerprint>` (external_pki mode).
    pub fn agent_id(&self) -> String {
        format!("spiffe://{TD}/spire/agent/x509pop/{}", self.fingerprint)
    }

    pub fn attestor(&self) -> super::Attestor {
        super::Attestor::X509Pop {
            key: self.key.clone(),
            cert: self.cert.clone(),
        }
    }
}

/// A CA (written to `<dir>/ca.pem`) that issues node certificates.
pub struct NodeCa {
    pub ca_path: PathBuf,
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for NodeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCa")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl NodeCa {
    pub fn new(dir: &Path) -> NodeCa {
        std::fs::create_dir_all(dir).expect("mkdir pki");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "conformance node CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ca key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, issuer.pem()).expect("write ca.pem");
        NodeCa {
            ca_path,
            dir: dir.to_path_buf(),
            issuer,
        }
    }

    /// Writes the CA's private key (PKCS#8 PEM) to `<dir>/ca.key.pem`, for plugins that sign
    /// with this CA (an UpstreamAuthority).
    pub fn write_key(&self) -> PathBuf {
        let path = self.dir.join("ca.key.pem");
        std::fs::write(&path, self.issuer.key().serialize_pem()).expect("write ca key");
        path
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// An intermediate CA under this one, CN `cn`: its certificate and key files
    /// (`<cn>.crt.pem`, `<cn>.key.pem`) and its DER.
    pub fn intermediate(&self, cn: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("intermediate key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign intermediate");
        let key_path = self.dir.join(format!("{cn}.key.pem"));
        let cert_path = self.dir.join(format!("{cn}.crt.pem"));
        std::fs::write(&key_path, key.serialize_pem()).expect("write intermediate key");
        std::fs::write(&cert_path, cert.pem()).expect("write intermediate cert");
        (cert_path, key_path, cert.der().to_vec())
    }

    /// A node certificate with subject CN `cn` and the x509pop SAN
    /// `x509pop://example.org/cluster/<cluster>` (selector `x509pop:san:cluster:<cluster>`).
    pub fn node(&self, cn: &str, cluster: &str) -> NodeCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("node params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("x509pop://{TD}/cluster/{cluster}")
                .try_into()
                .expect("uri san"),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("node key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign node");
        let key_path = self.dir.join(format!("{cn}.key.pem"));
        let cert_path = self.dir.join(format!("{cn}.crt.pem"));
        std::fs::write(&key_path, key.serialize_pem()).expect("write node key");
        std::fs::write(&cert_path, cert.pem()).expect("write node cert");
        NodeCert {
            key: key_path,
            cert: cert_path,
            fingerprint: sha1_hex(cert.der()),
        }
    }
}

pub fn sha1_hex(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the suite checks of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub serial: String,
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    /// Subject key identifier, lowercase hex.
    pub skid: String,
    /// Authority key identifier, lowercase hex.
    pub akid: String,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
}

/// Parses one DER certificate.
pub fn facts(der: &[u8]) -> CertFacts {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("parse certificate");
    let mut f = CertFacts {
        serial: hex(c.raw_serial()),
        uris: vec![],
        dns: vec![],
        skid: String::new(),
        akid: String::new(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        is_ca: c.is_ca(),
    };
    for ext in c.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) => f.uris.push((*u).to_string()),
                        GeneralName::DNSName(d) => f.dns.push((*d).to_string()),
                        _ => {}
                    }
                }
            }
            ParsedExtension::SubjectKeyIdentifier(k) => f.skid = hex(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                if let Some(k) = &a.key_identifier {
                    f.akid = hex(k.0);
                }
            }
            _ => {}
        }
    }
    f
}

/// Splits concatenated DER certificates (as the Workload API sends chains and bundles).
pub fn split_der(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    while !b.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(b).expect("parse DER chain");
        let n = b.len() - rest.len();
        out.push(b[..n].to_vec());
        b = rest;
    }
    out
}

/// Every certificate of a PEM text, as DER.
pub fn pem_certs(text: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// Base64 (standard) as protojson encodes bytes.
pub fn b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
