//! A test root CA (rcgen) that signs CA CSRs the way an upstream PKI does for a SPIRE
//! server: the CSR's subject and SANs, a CA certificate for the requested lifetime. Used by
//! the fake Vault and by the cert-manager test issuer.

use std::time::{Duration, SystemTime};

/// A self-signed root that signs intermediate CAs.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The root, PEM.
    pub pem: String,
    /// The root, DER.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new root with common name `cn`.
    pub fn new(cn: &str) -> Result<TestCa, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let root = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(TestCa {
            pem: root.pem(),
            der: root.der().to_vec(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// Signs the DER CSR `csr` as a CA valid for `ttl`; the certificate in PEM.
    pub fn sign_ca_csr(&self, csr: &[u8], ttl: Duration) -> Result<String, String> {
        let csr = rcgen::CertificateSigningRequestParams::from_der(&csr.to_vec().into())
            .map_err(|e| format!("error parsing CSR: {e}"))?;
        let mut params = csr.params;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(30)).into();
        params.not_after = (now + ttl).into();
        rcgen::CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)
        .map(|c| c.pem())
        .map_err(|e| e.to_string())
    }
}

/// The DER inside the first PEM block of `text`.
pub fn pem_body(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start..];
    let body_start = rest.find('\n')? + 1;
    let body_end = rest.find("-----END ")?;
    let b64: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}
