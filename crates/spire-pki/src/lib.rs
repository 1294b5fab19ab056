//! Certificates as SPIRE issues them: self-signed and intermediate X.509 CAs, X509-SVIDs for
//! the server, agents and workloads, CSRs, serial numbers and key identifiers.
//!
//! Facts reproduced from SPIRE 1.13's credential templates: serial numbers are random in
//! [1, 2^128 - 1]; `notBefore` is ten seconds in the past; `notAfter` is capped at the
//! issuer's `notAfter`; the subject key ID is the SHA-1 of the public key bits and the
//! authority key ID is the issuer's subject key ID; CA subjects default to `C=US, O=SPIFFE`
//! plus `serialNumber=<serial>`, SVID subjects to `C=US, O=SPIRE`; CA key usage is
//! keyCertSign|cRLSign with a URI SAN of the trust domain ID; leaves carry
//! digitalSignature|keyEncipherment|keyAgreement and serverAuth+clientAuth, and the first DNS
//! name also becomes the common name.
//!
//! Time is an argument everywhere; this crate never reads the clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber, SignatureAlgorithm, SigningKey,
};
use spiffe_core::keys::{Curve, PublicKeyKind};
use spiffe_core::{PrivateKey, PublicKey, SpiffeId, TrustDomain};
use spire_plugin::{LocalSigner, SignatureKind, Signer};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// `notBefore` is backdated by this much to absorb clock skew.
pub const NOT_BEFORE_CUSHION: Duration = Duration::from_secs(10);

/// Errors from building or reading certificates and CSRs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The CSR is not DER PKCS#10.
    #[error("malformed CSR: {0}")]
    MalformedCsr(String),
    /// The CSR's self-signature does not verify.
    #[error("failed to verify CSR signature")]
    CsrSignature,
    /// A certificate (the issuer's, usually) is malformed.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// The key type cannot be used for signing certificates.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The signer failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// Certificate assembly failed.
    #[error("failed to create certificate: {0}")]
    Build(String),
    /// The CSR is well formed but asks for what may not be signed.
    #[error("{0}")]
    InvalidCsr(String),
    /// The SPIFFE ID does not belong to the issuer's trust domain.
    #[error("invalid X509-SVID ID: {id} is not a member of trust domain {trust_domain}")]
    WrongTrustDomain {
        /// The offending ID.
        id: SpiffeId,
        /// The issuer's trust domain.
        trust_domain: TrustDomain,
    },
}

/// A random serial number in [1, 2^128 - 1], as SPIRE draws them.
pub fn new_serial_number() -> u128 {
    loop {
        let n: u128 = rand::random();
        if n != 0 {
            return n;
        }
    }
}

/// The subject key identifier SPIRE uses: SHA-1 of the subjectPublicKey bits.
pub fn subject_key_id(spki_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let bits = public_key_bits(spki_der)?;
    Ok(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &bits)
            .as_ref()
            .to_vec(),
    )
}

fn public_key_bits(spki_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
    Ok(spki.subject_public_key.data.to_vec())
}

fn rcgen_algorithm(key: &PublicKey) -> Result<&'static SignatureAlgorithm, PkiError> {
    match key.kind() {
        PublicKeyKind::Ec(Curve::P256) => Ok(&rcgen::PKCS_ECDSA_P256_SHA256),
        PublicKeyKind::Ec(Curve::P384) => Ok(&rcgen::PKCS_ECDSA_P384_SHA384),
        PublicKeyKind::Rsa { .. } => Ok(&rcgen::PKCS_RSA_SHA256),
        other => Err(PkiError::UnsupportedKey(other.to_string())),
    }
}

/// Adapts a [`Signer`] (and its public key bits) to rcgen.
struct RcgenSigner {
    signer: Arc<dyn Signer>,
    bits: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl RcgenSigner {
    fn new(signer: Arc<dyn Signer>) -> Result<Self, PkiError> {
        let bits = public_key_bits(signer.public_key().spki_der())?;
        let algorithm = rcgen_algorithm(signer.public_key())?;
        Ok(Self {
            signer,
            bits,
            algorithm,
        })
    }
}

impl PublicKeyData for RcgenSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for RcgenSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer
            .sign(msg, SignatureKind::X509)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

thread_local! {
    /// What [`CaptureSigner`] was last asked to sign on this thread.
    static CAPTURED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Stands in for a remote signer while a certificate is assembled: it records the bytes to
/// be signed (the TBSCertificate) and returns an empty signature, which is replaced once the
/// real one is made without blocking (see [`X509Authority::issue_x509_svid_template_async`]).
struct CaptureSigner(RcgenSigner);

impl PublicKeyData for CaptureSigner {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for CaptureSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        CAPTURED.with(|c| *c.borrow_mut() = Some(msg.to_vec()));
        Ok(Vec::new())
    }
}

/// Reads one DER TLV at the start of `b`: (header length, whole length).
fn der_tlv_len(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (2 + n, len)
    };
    let total = header.checked_add(len)?;
    (total <= b.len()).then_some((header, total))
}

/// Replaces the signature of a DER certificate (SEQUENCE { tbs, algorithm, BIT STRING }).
fn with_signature(cert: &[u8], signature: &[u8]) -> Result<Vec<u8>, PkiError> {
    let bad = || PkiError::Build("unexpected certificate encoding".into());
    let (outer_header, outer_total) = der_tlv_len(cert).ok_or_else(bad)?;
    if cert.first() != Some(&0x30) || outer_total != cert.len() {
        return Err(bad());
    }
    let body = &cert[outer_header..];
    let (_, tbs_len) = der_tlv_len(body).ok_or_else(bad)?;
    let (_, alg_len) = der_tlv_len(&body[tbs_len..]).ok_or_else(bad)?;
    let mut content = body[..tbs_len + alg_len].to_vec();
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0);
    bits.extend_from_slice(signature);
    der_tlv(0x03, &bits, &mut content);
    let mut out = Vec::with_capacity(content.len() + 6);
    der_tlv(0x30, &content, &mut out);
    Ok(out)
}

/// A public key that will go into a certificate.
struct SubjectKey {
    bits: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
    spki: Vec<u8>,
}

impl SubjectKey {
    fn new(key: &PublicKey) -> Result<Self, PkiError> {
        Ok(Self {
            bits: public_key_bits(key.spki_der())?,
            algorithm: rcgen_algorithm(key)?,
            spki: key.spki_der().to_vec(),
        })
    }
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// A distinguished name as SPIRE's configuration describes it (`ca_subject`), written in Go's
/// attribute order (C, O, OU, CN, serialNumber).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// `C` values.
    pub country: Vec<String>,
    /// `O` values.
    pub organization: Vec<String>,
    /// `OU` values.
    pub organizational_unit: Vec<String>,
    /// `L` values.
    pub locality: Vec<String>,
    /// `ST` values.
    pub province: Vec<String>,
    /// `street` values.
    pub street_address: Vec<String>,
    /// `postalCode` values.
    pub postal_code: Vec<String>,
    /// `CN`.
    pub common_name: String,
    /// `serialNumber`.
    pub serial_number: String,
    /// Other attributes, (dotted OID, value), written after the others.
    pub extra_names: Vec<(String, String)>,
}

impl Subject {
    /// SPIRE's default CA subject: `C=US, O=SPIFFE`.
    pub fn default_ca() -> Self {
        Self {
            country: vec!["US".into()],
            organization: vec!["SPIFFE".into()],
            ..Self::default()
        }
    }

    /// SPIRE's default X509-SVID subject: `C=US, O=SPIRE`.
    pub fn default_svid() -> Self {
        Self {
            country: vec!["US".into()],
            organization: vec!["SPIRE".into()],
            ..Self::default()
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.country.is_empty()
            && self.organization.is_empty()
            && self.organizational_unit.is_empty()
            && self.locality.is_empty()
            && self.province.is_empty()
            && self.street_address.is_empty()
            && self.postal_code.is_empty()
            && self.common_name.is_empty()
            && self.serial_number.is_empty()
            && self.extra_names.is_empty()
    }

    /// In Go's `pkix.Name.ToRDNSequence` order: C, ST, L, street, postalCode, O, OU, CN,
    /// serialNumber, then the extra names.
    fn to_rcgen(&self) -> Result<DistinguishedName, PkiError> {
        let mut dn = DistinguishedName::new();
        let custom = |arcs: &[u64]| DnType::CustomDnType(arcs.to_vec());
        for c in &self.country {
            dn.push(DnType::CountryName, go_string(c));
        }
        for v in &self.province {
            dn.push(DnType::StateOrProvinceName, go_string(v));
        }
        for v in &self.locality {
            dn.push(DnType::LocalityName, go_string(v));
        }
        for v in &self.street_address {
            dn.push(custom(&[2, 5, 4, 9]), go_string(v));
        }
        for v in &self.postal_code {
            dn.push(custom(&[2, 5, 4, 17]), go_string(v));
        }
        for o in &self.organization {
            dn.push(DnType::OrganizationName, go_string(o));
        }
        for ou in &self.organizational_unit {
            dn.push(DnType::OrganizationalUnitName, go_string(ou));
        }
        if !self.common_name.is_empty() {
            dn.push(DnType::CommonName, go_string(&self.common_name));
        }
        if !self.serial_number.is_empty() {
            dn.push(custom(&[2, 5, 4, 5]), go_string(&self.serial_number));
        }
        for (oid, v) in &self.extra_names {
            dn.push(DnType::CustomDnType(parse_oid(oid)?), go_string(v));
        }
        Ok(dn)
    }
}

/// An extra certificate extension (a CredentialComposer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Dotted OID.
    pub oid: String,
    /// Critical flag.
    pub critical: bool,
    /// DER extension value.
    pub value: Vec<u8>,
}

/// A dotted OID as its arcs; at least two arcs, the first 0–2.
pub fn parse_oid(oid: &str) -> Result<Vec<u64>, PkiError> {
    let bad = || PkiError::Build(format!("invalid OID {oid:?}"));
    let arcs = oid
        .split('.')
        .map(|a| a.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39) || arcs[1] > u64::MAX - 80 {
        return Err(bad());
    }
    Ok(arcs)
}

fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der_tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    der_len(content.len(), out);
    out.extend_from_slice(content);
}

fn der_oid(arcs: &[u64], out: &mut Vec<u8>) {
    let mut body = Vec::new();
    let mut put = |mut v: u64| {
        let mut chunk = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    };
    // parse_oid keeps the first arc at most 2; the second may be large (under 2.*).
    put(arcs[0].saturating_mul(40).saturating_add(arcs[1]));
    for a in &arcs[2..] {
        put(*a);
    }
    der_tlv(0x06, &body, out);
}

/// The certificatePolicies extension (2.5.29.32) naming `policies` (dotted OIDs), without
/// qualifiers, as Go writes `PolicyIdentifiers`.
pub fn certificate_policies(policies: &[String]) -> Result<Extension, PkiError> {
    let mut infos = Vec::new();
    for p in policies {
        let mut oid = Vec::new();
        der_oid(&parse_oid(p)?, &mut oid);
        der_tlv(0x30, &oid, &mut infos);
    }
    let mut value = Vec::new();
    der_tlv(0x30, &infos, &mut value);
    Ok(Extension {
        oid: "2.5.29.32".into(),
        critical: false,
        value,
    })
}

/// Extensions the CA writes itself: an extra one with the same OID would make the
/// certificate carry it twice, which X.509 parsers (Go's among them) refuse.
const MANAGED_EXTENSIONS: &[&str] = &[
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName
    "2.5.29.19", // basicConstraints
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.37", // extKeyUsage
];

fn add_extensions(p: &mut CertificateParams, extensions: &[Extension]) -> Result<(), PkiError> {
    let mut seen = std::collections::HashSet::new();
    for e in extensions {
        if MANAGED_EXTENSIONS.contains(&e.oid.as_str()) {
            return Err(PkiError::Build(format!(
                "extension {} is written by the CA and cannot be set as an extra extension",
                e.oid
            )));
        }
        if !seen.insert(e.oid.as_str()) {
            return Err(PkiError::Build(format!("extension {} given twice", e.oid)));
        }
        let mut ext = CustomExtension::from_oid_content(&parse_oid(&e.oid)?, e.value.clone());
        ext.set_criticality(e.critical);
        p.custom_extensions.push(ext);
    }
    Ok(())
}

/// Go encodes a name attribute as PrintableString when it can, else UTF8String.
fn go_string(s: &str) -> DnValue {
    match rcgen::string::PrintableString::try_from(s) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(s.to_string()),
    }
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A certificate as issued, with what the issuer chose for it, so that callers need not
/// parse the DER they were just handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub der: Vec<u8>,
    /// Its serial number.
    pub serial: u128,
    /// Its `notAfter`, in seconds since the epoch (certificates keep whole seconds).
    pub not_after: i64,
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `(notBefore, notAfter)` for a credential issued at `now` for `ttl`, capped at `cap`.
pub fn capped_lifetime(
    now: SystemTime,
    ttl: Duration,
    cap: Option<SystemTime>,
) -> (SystemTime, SystemTime) {
    let not_before = now.checked_sub(NOT_BEFORE_CUSHION).unwrap_or(UNIX_EPOCH);
    let mut not_after = now + ttl;
    if let Some(cap) = cap
        && not_after > cap
    {
        not_after = cap;
    }
    (not_before, not_after)
}

fn base_params(
    id: &SpiffeId,
    subject_key: &SubjectKey,
    serial: u128,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    let uri = id
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::Build(e.to_string()))?;
    p.subject_alt_names = vec![SanType::URI(uri)];
    p.key_identifier_method = KeyIdMethod::PreSpecified(subject_key_id(&subject_key.spki)?);
    p.not_before = to_offset(not_before);
    p.not_after = to_offset(not_after);
    Ok(p)
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[start..]
}

/// A CA that signs certificates: its certificate and a signer for its key.
pub struct X509Authority {
    cert_der: Vec<u8>,
    trust_domain: TrustDomain,
    not_after: SystemTime,
    subject_key_id: Vec<u8>,
    issuer: Issuer<'static, RcgenSigner>,
    signer: Arc<dyn Signer>,
    /// For a remote signer: the same issuer, assembling certificates to be signed later.
    capture: Option<Issuer<'static, CaptureSigner>>,
}

impl std::fmt::Debug for X509Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Authority")
            .field("trust_domain", &self.trust_domain)
            .field("subject_key_id", &hex(&self.subject_key_id))
            .finish_non_exhaustive()
    }
}

/// Lower-case hex, as SPIRE prints authority IDs.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl X509Authority {
    /// Wraps a CA certificate and the signer of its key. The key must match the certificate.
    pub fn new(
        cert_der: Vec<u8>,
        signer: Arc<dyn Signer>,
        trust_domain: TrustDomain,
    ) -> Result<Self, PkiError> {
        let (_, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        if cert.public_key().raw != signer.public_key().spki_der() {
            return Err(PkiError::UnsupportedKey(
                "CA key does not match the certificate".into(),
            ));
        }
        let not_after =
            UNIX_EPOCH + Duration::from_secs(cert.validity().not_after.timestamp().max(0) as u64);
        let subject_key_id = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .map_or_else(|| subject_key_id(cert.public_key().raw), Ok)?;
        let rcgen_cert = rustls_pki_types::CertificateDer::from(cert_der.clone());
        let issuer = Issuer::from_ca_cert_der(&rcgen_cert, RcgenSigner::new(signer.clone())?)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let capture = if signer.is_remote() {
            let key = CaptureSigner(RcgenSigner::new(signer.clone())?);
            Some(
                Issuer::from_ca_cert_der(&rcgen_cert, key)
                    .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Self {
            cert_der,
            trust_domain,
            not_after,
            subject_key_id,
            issuer,
            signer,
            capture,
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The subject key ID, which SPIRE uses as the local authority ID (in hex).
    pub fn subject_key_id(&self) -> &[u8] {
        &self.subject_key_id
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Signs an X509-SVID for `public_key`. `ttl` is capped at the CA's expiry.
    pub fn sign_x509_svid(&self, req: &SvidRequest<'_>) -> Result<Vec<u8>, PkiError> {
        self.issue_x509_svid(req).map(|i| i.der)
    }

    /// [`Self::sign_x509_svid`], returning what was issued.
    pub fn issue_x509_svid(&self, req: &SvidRequest<'_>) -> Result<Issued, PkiError> {
        let mut subject = req.subject.cloned().unwrap_or_else(Subject::default_svid);
        if let Some(first) = req.dns_names.first() {
            subject.common_name = first.clone();
        }
        self.issue_x509_svid_template(&SvidTemplate {
            id: req.id,
            public_key: req.public_key,
            subject: &subject,
            dns_names: req.dns_names,
            extensions: &[],
            ttl: req.ttl,
            now: req.now,
        })
    }

    /// Issues an X509-SVID exactly as `t` describes it (subject, DNS SANs and extra
    /// extensions as given; a CredentialComposer may have changed them).
    pub fn issue_x509_svid_template(&self, t: &SvidTemplate<'_>) -> Result<Issued, PkiError> {
        let (p, key, serial, not_after) = self.svid_params(t)?;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        Ok(Issued {
            der: cert.der().to_vec(),
            serial,
            not_after: unix_secs(not_after),
        })
    }

    /// Whether the CA key is signed with in another process (a KeyManager plugin): then
    /// [`X509Authority::issue_x509_svid_template_async`] does not block a thread.
    pub fn is_remote(&self) -> bool {
        self.capture.is_some()
    }

    /// [`X509Authority::issue_x509_svid_template`] with the signature made by
    /// [`Signer::sign_async`]: the certificate is assembled first, its TBSCertificate signed
    /// without blocking, and the signature put in place.
    pub async fn issue_x509_svid_template_async(
        &self,
        t: &SvidTemplate<'_>,
    ) -> Result<Issued, PkiError> {
        let Some(capture) = &self.capture else {
            return self.issue_x509_svid_template(t);
        };
        CAPTURED.with(|c| c.borrow_mut().take());
        let (p, key, serial, not_after) = self.svid_params(t)?;
        let unsigned = p
            .signed_by(&key, capture)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        let tbs = CAPTURED
            .with(|c| c.borrow_mut().take())
            .ok_or_else(|| PkiError::Signing("the certificate was not signed".into()))?;
        let signature = self
            .signer
            .sign_async(&tbs, SignatureKind::X509)
            .await
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        // What another process signed is checked before it is handed out (Go's
        // CreateCertificate checks its signer too).
        if !self.signer.public_key().verify_x509(&tbs, &signature) {
            return Err(PkiError::Signing(
                "signature returned by signer is invalid".into(),
            ));
        }
        let der = with_signature(unsigned.der(), &signature)?;
        Ok(Issued {
            der,
            serial,
            not_after: unix_secs(not_after),
        })
    }

    /// The certificate parameters of an X509-SVID: (parameters, subject key, serial,
    /// notAfter).
    fn svid_params(
        &self,
        t: &SvidTemplate<'_>,
    ) -> Result<(CertificateParams, SubjectKey, u128, SystemTime), PkiError> {
        if !t.id.is_member_of(&self.trust_domain) {
            return Err(PkiError::WrongTrustDomain {
                id: t.id.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        let key = SubjectKey::new(t.public_key)?;
        let (nb, na) = capped_lifetime(t.now, t.ttl, Some(self.not_after));
        let serial = new_serial_number();
        let mut p = base_params(t.id, &key, serial, nb, na)?;
        for dns in t.dns_names {
            let name = dns
                .clone()
                .try_into()
                .map_err(|e: rcgen::Error| PkiError::Build(e.to_string()))?;
            p.subject_alt_names.push(SanType::DnsName(name));
        }
        p.distinguished_name = t.subject.to_rcgen()?;
        add_extensions(&mut p, t.extensions)?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        Ok((p, key, serial, na))
    }

    /// Signs an intermediate CA for `public_key` (a downstream server, or our own CA under an
    /// upstream). SPIRE gives downstream CAs the parent's subject plus `OU=DOWNSTREAM-<n>`.
    pub fn sign_x509_ca(&self, req: &CaRequest<'_>) -> Result<Vec<u8>, PkiError> {
        let key = SubjectKey::new(req.public_key)?;
        let (nb, na) = capped_lifetime(req.now, req.ttl, Some(self.not_after));
        let serial = new_serial_number();
        let mut p = base_params(&self.trust_domain.id(), &key, serial, nb, na)?;
        let mut subject = req.subject.clone();
        if subject.serial_number.is_empty() {
            subject.serial_number = serial.to_string();
        }
        p.distinguished_name = subject.to_rcgen()?;
        add_extensions(&mut p, &req.extensions)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        Ok(cert.der().to_vec())
    }
}

impl X509Authority {
    /// Signs a server's CA CSR as an upstream CA does (SPIRE's `x509svid.UpstreamCA`, behind
    /// the `disk` UpstreamAuthority): the CSR's signature checked, exactly one URI SAN, the
    /// trust domain's ID; the CSR's subject and extensions kept; a CA certificate valid
    /// from ten seconds before `now` for `preferred_ttl` (an hour when zero), never past
    /// this authority's own `notAfter`.
    pub fn sign_upstream_ca_csr(
        &self,
        csr_der: &[u8],
        trust_domain: &TrustDomain,
        preferred_ttl: Duration,
        now: SystemTime,
    ) -> Result<Vec<u8>, PkiError> {
        let (rest, req) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| PkiError::MalformedCsr(format!("unable to parse CSR: {e}")))?;
        if !rest.is_empty() {
            return Err(PkiError::MalformedCsr(
                "unable to parse CSR: trailing data".into(),
            ));
        }
        let csr = parse_csr(csr_der)?;
        let [uri] = csr.uris.as_slice() else {
            return Err(PkiError::InvalidCsr(
                "CSR must have exactly one URI SAN".into(),
            ));
        };
        let want = trust_domain.id();
        if *uri != want.to_string() {
            return Err(PkiError::InvalidCsr(format!(
                "CSR with SPIFFE ID \"{uri}\" is invalid: must use the trust domain ID for trust domain \"{}\"",
                trust_domain.name()
            )));
        }
        let info = &req.certification_request_info;
        let subject = subject_from_name(&info.subject);
        // The template sets these itself; the CSR's other extensions carry over.
        const OWN: [&str; 5] = [
            "2.5.29.17",
            "2.5.29.19",
            "2.5.29.15",
            "2.5.29.14",
            "2.5.29.35",
        ];
        let extensions: Vec<Extension> = csr_raw_extensions(&req)
            .into_iter()
            .filter(|e| !OWN.contains(&e.oid.as_str()))
            .collect();
        let ttl = if preferred_ttl.is_zero() {
            Duration::from_secs(3600)
        } else {
            preferred_ttl
        };
        let key = SubjectKey::new(&csr.public_key)?;
        let (nb, na) = capped_lifetime(now, ttl, Some(self.not_after));
        let serial = new_serial_number();
        let mut p = base_params(&want, &key, serial, nb, na)?;
        p.distinguished_name = subject.to_rcgen()?;
        add_extensions(&mut p, &extensions)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        Ok(cert.der().to_vec())
    }
}

/// The CSR's requested extensions as written (OID, critical flag, DER value), in order.
fn csr_raw_extensions(req: &X509CertificationRequest<'_>) -> Vec<Extension> {
    let mut out = Vec::new();
    for attr in req.certification_request_info.iter_attributes() {
        if let x509_parser::cri_attributes::ParsedCriAttribute::ExtensionRequest(er) =
            attr.parsed_attribute()
        {
            for ext in &er.extensions {
                out.push(Extension {
                    oid: ext.oid.to_id_string(),
                    critical: ext.critical,
                    value: ext.value.to_vec(),
                });
            }
        }
    }
    out
}

/// What goes into an X509-SVID.
#[derive(Debug, Clone)]
pub struct SvidRequest<'a> {
    /// The SVID's SPIFFE ID.
    pub id: &'a SpiffeId,
    /// The subject's public key.
    pub public_key: &'a PublicKey,
    /// DNS SANs; the first also becomes the CN.
    pub dns_names: &'a [String],
    /// Subject override (SPIRE's `C=US, O=SPIRE` when `None`).
    pub subject: Option<&'a Subject>,
    /// Requested lifetime.
    pub ttl: Duration,
    /// Issuance time.
    pub now: SystemTime,
}

/// An X509-SVID exactly as it is to be issued.
#[derive(Debug, Clone)]
pub struct SvidTemplate<'a> {
    /// The SVID's SPIFFE ID.
    pub id: &'a SpiffeId,
    /// The subject's public key.
    pub public_key: &'a PublicKey,
    /// The subject, as written.
    pub subject: &'a Subject,
    /// DNS SANs.
    pub dns_names: &'a [String],
    /// Extra extensions.
    pub extensions: &'a [Extension],
    /// Requested lifetime.
    pub ttl: Duration,
    /// Issuance time.
    pub now: SystemTime,
}

/// What goes into an intermediate CA.
#[derive(Debug, Clone)]
pub struct CaRequest<'a> {
    /// The CA's public key.
    pub public_key: &'a PublicKey,
    /// Its subject.
    pub subject: Subject,
    /// Extra extensions (a CredentialComposer's, and its certificate policies).
    pub extensions: Vec<Extension>,
    /// Requested lifetime.
    pub ttl: Duration,
    /// Issuance time.
    pub now: SystemTime,
}

/// Builds a self-signed CA certificate for `trust_domain` as SPIRE's CA manager does.
pub fn self_signed_x509_ca(
    signer: Arc<dyn Signer>,
    trust_domain: &TrustDomain,
    subject: &Subject,
    extensions: &[Extension],
    ttl: Duration,
    now: SystemTime,
) -> Result<Vec<u8>, PkiError> {
    let key = SubjectKey::new(signer.public_key())?;
    let (nb, na) = capped_lifetime(now, ttl, None);
    let serial = new_serial_number();
    let mut p = base_params(&trust_domain.id(), &key, serial, nb, na)?;
    let mut subject = subject.clone();
    if subject.serial_number.is_empty() {
        subject.serial_number = serial.to_string();
    }
    p.distinguished_name = subject.to_rcgen()?;
    add_extensions(&mut p, extensions)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let rc = RcgenSigner::new(signer)?;
    let cert = p
        .self_signed(&rc)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    Ok(cert.der().to_vec())
}

/// What a CSR asks for, after its signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    /// The requested public key.
    pub public_key: PublicKey,
    /// URI SANs in the CSR's extension request.
    pub uris: Vec<String>,
    /// DNS SANs in the CSR's extension request.
    pub dns_names: Vec<String>,
}

/// Parses a DER PKCS#10 CSR and verifies its self-signature.
pub fn parse_csr(der: &[u8]) -> Result<Csr, PkiError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::MalformedCsr("trailing data".into()));
    }
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let info = &csr.certification_request_info;
    let public_key = PublicKey::from_parsed_spki(&info.subject_pki)
        .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
    let mut uris = Vec::new();
    let mut dns_names = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::URI(u) => uris.push((*u).to_string()),
                        GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(Csr {
        public_key,
        uris,
        dns_names,
    })
}

/// Makes a CSR for `key`; with `id`, the CSR carries it as a URI SAN (SPIRE's agent sends
/// none, workloads' CSRs carry theirs).
pub fn make_csr(key: PrivateKey, id: Option<&SpiffeId>) -> Result<Vec<u8>, PkiError> {
    make_csr_with_signer(Arc::new(LocalSigner::new("csr", key)), id)
}

/// Makes a CSR signed by `signer` (a KeyManager key that never leaves its KeyManager); with
/// `id`, the CSR carries it as a URI SAN.
pub fn make_csr_with_signer(
    signer: Arc<dyn Signer>,
    id: Option<&SpiffeId>,
) -> Result<Vec<u8>, PkiError> {
    let rc = RcgenSigner::new(signer)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    if let Some(id) = id {
        let uri = id
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Build(e.to_string()))?;
        p.subject_alt_names = vec![SanType::URI(uri)];
    }
    let csr = p
        .serialize_request(&rc)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// The CSR an ACME client sends for a TLS certificate (Go's autocert `certRequest`): the
/// DNS name as common name and as the only SAN, signed by `signer`.
pub fn make_dns_csr(signer: Arc<dyn Signer>, dns_name: &str) -> Result<Vec<u8>, PkiError> {
    let rc = RcgenSigner::new(signer)?;
    let mut p = CertificateParams::new(vec![dns_name.to_string()])
        .map_err(|e| PkiError::Build(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, dns_name);
    p.distinguished_name = dn;
    let csr = p
        .serialize_request(&rc)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// The CSR SPIRE's CA manager sends its UpstreamAuthority: `subject`, the trust domain's
/// ID as URI SAN and `extensions`, signed by the new CA key `signer`.
pub fn make_ca_csr(
    signer: Arc<dyn Signer>,
    trust_domain: &TrustDomain,
    subject: &Subject,
    extensions: &[Extension],
) -> Result<Vec<u8>, PkiError> {
    let rc = RcgenSigner::new(signer)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = subject.to_rcgen()?;
    let uri = trust_domain
        .id()
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::Build(e.to_string()))?;
    p.subject_alt_names = vec![SanType::URI(uri)];
    add_extensions(&mut p, extensions)?;
    let csr = p
        .serialize_request(&rc)
        .map_err(|e| PkiError::Signing(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// Whether a DER certificate is a CA that may sign certificates (basic constraints CA, and
/// certificate signing in its key usage when it has one).
pub fn is_ca_certificate(der: &[u8]) -> Result<bool, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    let ku_ok = match cert.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(e) => return Err(PkiError::MalformedCertificate(e.to_string())),
    };
    Ok(cert.is_ca() && ku_ok)
}

/// The URI SANs of a DER certificate.
pub fn certificate_uris(der: &[u8]) -> Result<Vec<String>, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    let mut uris = Vec::new();
    for ext in cert.iter_extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(u) = name {
                    uris.push((*u).to_string());
                }
            }
        }
    }
    Ok(uris)
}

/// The authority key identifier of a DER certificate, if it has one.
pub fn authority_key_id(der: &[u8]) -> Result<Option<Vec<u8>>, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    Ok(cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(k) => {
                k.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        }))
}

/// Facts about a certificate that SPIRE APIs report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Serial number in decimal, as SPIRE stores agent serials.
    pub serial_decimal: String,
    /// `notBefore`, seconds since the epoch.
    pub not_before: i64,
    /// `notAfter`, seconds since the epoch.
    pub not_after: i64,
    /// Subject key ID (hex), empty when absent.
    pub subject_key_id: String,
    /// Subject as an RFC 4514-ish string (Go's `pkix.Name.String()` form).
    pub subject: String,
}

/// Reads the facts above from a DER certificate.
pub fn certificate_facts(der: &[u8]) -> Result<CertificateFacts, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    let serial = strip_leading_zeros(cert.raw_serial());
    let serial_decimal = decimal_from_be(serial);
    let subject_key_id = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(hex(k.0)),
            _ => None,
        })
        .unwrap_or_default();
    Ok(CertificateFacts {
        serial_decimal,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject_key_id,
        subject: go_name_string(cert.subject()),
    })
}

/// The subject of a DER certificate, in the attributes [`Subject`] models.
pub fn subject_of(der: &[u8]) -> Result<Subject, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    Ok(subject_from_name(cert.subject()))
}

fn subject_from_name(name: &x509_parser::x509::X509Name<'_>) -> Subject {
    let mut s = Subject::default();
    for rdn in name.iter() {
        for atv in rdn.iter() {
            let v = atv.as_str().unwrap_or_default().to_string();
            match atv.attr_type().to_id_string().as_str() {
                "2.5.4.6" => s.country.push(v),
                "2.5.4.10" => s.organization.push(v),
                "2.5.4.11" => s.organizational_unit.push(v),
                "2.5.4.7" => s.locality.push(v),
                "2.5.4.8" => s.province.push(v),
                "2.5.4.9" => s.street_address.push(v),
                "2.5.4.17" => s.postal_code.push(v),
                "2.5.4.3" => s.common_name = v,
                "2.5.4.5" => s.serial_number = v,
                other => s.extra_names.push((other.to_string(), v)),
            }
        }
    }
    s
}

/// Go's `pkix.Name.String()`: RDNs in reverse order, comma separated, with short names.
fn go_name_string(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.iter() {
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.6" => "C".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.5" => "SERIALNUMBER".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.9" => "STREET".to_string(),
                "2.5.4.17" => "POSTALCODE".to_string(),
                other => other.to_string(),
            };
            let value = atv.as_str().unwrap_or_default();
            parts.push(format!("{key}={}", escape_rdn(value)));
        }
    }
    parts.reverse();
    parts.join(",")
}

fn escape_rdn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Big-endian unsigned bytes to decimal.
pub fn decimal_from_be(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "0".into();
    }
    if bytes.len() <= 16 {
        let mut buf = [0u8; 16];
        buf[16 - bytes.len()..].copy_from_slice(bytes);
        return u128::from_be_bytes(buf).to_string();
    }
    // Long serials: schoolbook base conversion.
    let mut digits: Vec<u8> = vec![0];
    for &b in bytes {
        let mut carry = b as u32;
        for d in digits.iter_mut() {
            let v = (*d as u32) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

#[cfg(test)]
mod tests;
