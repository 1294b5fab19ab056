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
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
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

/// A public key as rcgen needs it. It also stands in for the signing key while rcgen
/// assembles a certificate or CSR: rcgen's signature is left empty, and the real one is made
/// over the to-be-signed bytes once our names are in them (see [`Draft`]).
struct KeyInfo {
    bits: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
    spki: Vec<u8>,
}

impl KeyInfo {
    fn new(key: &PublicKey) -> Result<Self, PkiError> {
        Ok(Self {
            bits: public_key_bits(key.spki_der())?,
            algorithm: rcgen_algorithm(key)?,
            spki: key.spki_der().to_vec(),
        })
    }
}

impl PublicKeyData for KeyInfo {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for KeyInfo {
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
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

/// The elements (whole TLVs) inside the constructed DER value `b`, which must span all of `b`.
fn der_elements(b: &[u8]) -> Option<Vec<&[u8]>> {
    let (header, total) = der_tlv_len(b)?;
    if total != b.len() {
        return None;
    }
    let mut rest = &b[header..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (_, len) = der_tlv_len(rest)?;
        let (element, tail) = rest.split_at(len);
        out.push(element);
        rest = tail;
    }
    Some(out)
}

/// Where the names sit among the TBSCertificate's elements: version, serial, signature
/// algorithm, issuer, validity, subject, public key, extensions.
const TBS_ISSUER: usize = 3;
const TBS_SUBJECT: usize = 5;
/// Where the subject sits in a CertificationRequestInfo: version, subject, public key,
/// attributes.
const CSR_SUBJECT: usize = 1;
/// An empty Name: SEQUENCE {}.
const EMPTY_NAME: &[u8] = &[0x30, 0x00];

/// A certificate or CSR that rcgen assembled around placeholder names, taken apart: the
/// to-be-signed part (TBSCertificate or CertificationRequestInfo) with the real names put
/// in, and the signature algorithm, waiting for a signature.
struct Draft {
    tbs: Vec<u8>,
    algorithm: Vec<u8>,
}

impl Draft {
    /// `der` is SEQUENCE { to-be-signed, algorithm, signature }; each of `names` is the
    /// position of an element of the to-be-signed part and the DER that replaces it.
    fn new(der: &[u8], names: &[(usize, &[u8])]) -> Result<Self, PkiError> {
        let bad = || PkiError::Build("unexpected encoding from the certificate builder".into());
        let outer = der_elements(der).ok_or_else(bad)?;
        let [tbs, algorithm, _signature] = outer.as_slice() else {
            return Err(bad());
        };
        let mut fields = der_elements(tbs).ok_or_else(bad)?;
        for &(at, name) in names {
            *fields.get_mut(at).ok_or_else(bad)? = name;
        }
        let mut tbs = Vec::with_capacity(tbs.len() + 64);
        der_tlv(0x30, &fields.concat(), &mut tbs);
        Ok(Self {
            tbs,
            algorithm: algorithm.to_vec(),
        })
    }

    /// Signs the draft with `signer` and assembles it.
    fn signed_by(&self, signer: &dyn Signer) -> Result<Vec<u8>, PkiError> {
        let signature = signer
            .sign(&self.tbs, SignatureKind::X509)
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        Ok(self.with_signature(&signature))
    }

    /// The certificate or CSR: SEQUENCE { to-be-signed, algorithm, BIT STRING signature }.
    fn with_signature(&self, signature: &[u8]) -> Vec<u8> {
        let mut content = Vec::with_capacity(self.tbs.len() + self.algorithm.len() + 80);
        content.extend_from_slice(&self.tbs);
        content.extend_from_slice(&self.algorithm);
        let mut bits = Vec::with_capacity(signature.len() + 1);
        bits.push(0); // no unused bits
        bits.extend_from_slice(signature);
        der_tlv(0x03, &bits, &mut content);
        let mut out = Vec::with_capacity(content.len() + 6);
        der_tlv(0x30, &content, &mut out);
        out
    }
}

/// The name rcgen writes where ours will go. rcgen, like Go's `CreateCertificate`, marks the
/// subjectAltName extension critical when the subject is empty, so the placeholder must be
/// empty exactly when our subject is.
fn placeholder_name(empty: bool) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if !empty {
        dn.push(DnType::CommonName, "placeholder");
    }
    dn
}

/// A distinguished name as SPIRE's configuration describes it (`ca_subject`), written as Go
/// writes a `pkix.Name` (see [`Subject::to_der`]).
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

    /// The DER X.509 Name Go's `x509.CreateCertificate` and `CreateCertificateRequest` write
    /// for this subject (`asn1.Marshal(name.ToRDNSequence())`): one RDN per attribute type,
    /// in the order C, ST, L, street, postalCode, O, OU, CN, serialNumber, holding all of its
    /// values (a multi-valued RDN, whose members DER sorts by their encoding); then one RDN
    /// per extra name, in order. A type that also appears among the extra names is left out.
    fn to_der(&self) -> Result<Vec<u8>, PkiError> {
        let extra = self
            .extra_names
            .iter()
            .map(|(oid, v)| Ok((parse_oid(oid)?, v.as_str())))
            .collect::<Result<Vec<_>, PkiError>>()?;
        // The common name and serial number are written only when set.
        fn one(s: &String) -> &[String] {
            if s.is_empty() {
                &[]
            } else {
                std::slice::from_ref(s)
            }
        }
        let standard: [(&[u64], &[String]); 9] = [
            (&[2, 5, 4, 6], &self.country),
            (&[2, 5, 4, 8], &self.province),
            (&[2, 5, 4, 7], &self.locality),
            (&[2, 5, 4, 9], &self.street_address),
            (&[2, 5, 4, 17], &self.postal_code),
            (&[2, 5, 4, 10], &self.organization),
            (&[2, 5, 4, 11], &self.organizational_unit),
            (&[2, 5, 4, 3], one(&self.common_name)),
            (&[2, 5, 4, 5], one(&self.serial_number)),
        ];
        let mut rdns = Vec::new();
        for (oid, values) in standard {
            if values.is_empty() || extra.iter().any(|(o, _)| o == oid) {
                continue;
            }
            let mut members: Vec<Vec<u8>> = values.iter().map(|v| attribute(oid, v)).collect();
            // DER orders a SET OF by the members' encodings, compared byte by byte (Go's
            // encoding/asn1 sorts with bytes.Compare); Vec<u8> orders the same way.
            members.sort();
            der_tlv(0x31, &members.concat(), &mut rdns);
        }
        for (oid, v) in &extra {
            der_tlv(0x31, &attribute(oid, v), &mut rdns);
        }
        let mut out = Vec::with_capacity(rdns.len() + 4);
        der_tlv(0x30, &rdns, &mut out);
        Ok(out)
    }
}

/// An AttributeTypeAndValue: SEQUENCE { OID, string }. Go writes a string as PrintableString
/// when every character is in that set, else as UTF8String.
fn attribute(oid: &[u64], value: &str) -> Vec<u8> {
    let printable = value.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b' ' | b'\'' | b'(' | b')' | b'+' | b',' | b'-' | b'.' | b'/' | b':' | b'=' | b'?'
            )
    });
    let mut content = Vec::new();
    der_oid(oid, &mut content);
    der_tlv(
        if printable { 0x13 } else { 0x0c },
        value.as_bytes(),
        &mut content,
    );
    let mut out = Vec::with_capacity(content.len() + 2);
    der_tlv(0x30, &content, &mut out);
    out
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
    subject_key: &KeyInfo,
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
    /// The CA's subject exactly as its certificate has it, which becomes the issuer of what
    /// it signs: chain building matches the bytes.
    subject: Vec<u8>,
    /// rcgen's view of this CA: its key identifier (written as the authority key ID) and key
    /// usages. Its name is a placeholder; `subject` replaces it.
    issuer: Issuer<'static, KeyInfo>,
    signer: Arc<dyn Signer>,
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

/// A certificate's key usages in rcgen's terms.
fn key_usages(cert: &X509Certificate<'_>) -> Vec<KeyUsagePurpose> {
    let Ok(Some(ku)) = cert.key_usage() else {
        return Vec::new();
    };
    let ku = ku.value;
    [
        (ku.digital_signature(), KeyUsagePurpose::DigitalSignature),
        (ku.non_repudiation(), KeyUsagePurpose::ContentCommitment),
        (ku.key_encipherment(), KeyUsagePurpose::KeyEncipherment),
        (ku.data_encipherment(), KeyUsagePurpose::DataEncipherment),
        (ku.key_agreement(), KeyUsagePurpose::KeyAgreement),
        (ku.key_cert_sign(), KeyUsagePurpose::KeyCertSign),
        (ku.crl_sign(), KeyUsagePurpose::CrlSign),
        (ku.encipher_only(), KeyUsagePurpose::EncipherOnly),
        (ku.decipher_only(), KeyUsagePurpose::DecipherOnly),
    ]
    .into_iter()
    .filter_map(|(set, usage)| set.then_some(usage))
    .collect()
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
        let written_key_id = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let subject_key_id = match &written_key_id {
            Some(id) => id.clone(),
            None => subject_key_id(cert.public_key().raw)?,
        };
        let mut params = CertificateParams::default();
        // As rcgen's `Issuer::from_ca_cert_der` has it: children's authority key ID is the
        // CA's subject key ID, or a SHA-256 one when the CA certificate has none.
        params.key_identifier_method =
            written_key_id.map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified);
        params.key_usages = key_usages(&cert);
        let issuer = Issuer::new(params, KeyInfo::new(signer.public_key())?);
        let subject = cert.subject().as_raw().to_vec();
        Ok(Self {
            cert_der,
            trust_domain,
            not_after,
            subject_key_id,
            subject,
            issuer,
            signer,
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

    /// Assembles a certificate signed by this CA for `key`, with `subject`, and returns it
    /// unsigned: its issuer is this CA's subject, byte for byte.
    fn draft(
        &self,
        mut p: CertificateParams,
        key: &KeyInfo,
        subject: &Subject,
    ) -> Result<Draft, PkiError> {
        let name = subject.to_der()?;
        p.distinguished_name = placeholder_name(name == EMPTY_NAME);
        let unsigned = p
            .signed_by(key, &self.issuer)
            .map_err(|e| PkiError::Build(e.to_string()))?;
        Draft::new(
            unsigned.der(),
            &[(TBS_ISSUER, &self.subject), (TBS_SUBJECT, &name)],
        )
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
        let (draft, serial, not_after) = self.svid_draft(t)?;
        Ok(Issued {
            der: draft.signed_by(&*self.signer)?,
            serial,
            not_after: unix_secs(not_after),
        })
    }

    /// Whether the CA key is signed with in another process (a KeyManager plugin): then
    /// [`X509Authority::issue_x509_svid_template_async`] does not block a thread.
    pub fn is_remote(&self) -> bool {
        self.signer.is_remote()
    }

    /// [`X509Authority::issue_x509_svid_template`] with the signature made by
    /// [`Signer::sign_async`]: the certificate is assembled first, its TBSCertificate signed
    /// without blocking, and the signature put in place.
    pub async fn issue_x509_svid_template_async(
        &self,
        t: &SvidTemplate<'_>,
    ) -> Result<Issued, PkiError> {
        if !self.is_remote() {
            return self.issue_x509_svid_template(t);
        }
        let (draft, serial, not_after) = self.svid_draft(t)?;
        let signature = self
            .signer
            .sign_async(&draft.tbs, SignatureKind::X509)
            .await
            .map_err(|e| PkiError::Signing(e.to_string()))?;
        // What another process signed is checked before it is handed out (Go's
        // CreateCertificate checks its signer too).
        if !self.signer.public_key().verify_x509(&draft.tbs, &signature) {
            return Err(PkiError::Signing(
                "signature returned by signer is invalid".into(),
            ));
        }
        Ok(Issued {
            der: draft.with_signature(&signature),
            serial,
            not_after: unix_secs(not_after),
        })
    }

    /// An X509-SVID assembled and waiting for its signature: (draft, serial, notAfter).
    fn svid_draft(&self, t: &SvidTemplate<'_>) -> Result<(Draft, u128, SystemTime), PkiError> {
        if !t.id.is_member_of(&self.trust_domain) {
            return Err(PkiError::WrongTrustDomain {
                id: t.id.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        let key = KeyInfo::new(t.public_key)?;
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
        Ok((self.draft(p, &key, t.subject)?, serial, na))
    }

    /// Signs an intermediate CA for `public_key` (a downstream server, or our own CA under an
    /// upstream). SPIRE gives downstream CAs the parent's subject plus `OU=DOWNSTREAM-<n>`.
    pub fn sign_x509_ca(&self, req: &CaRequest<'_>) -> Result<Vec<u8>, PkiError> {
        let key = KeyInfo::new(req.public_key)?;
        let (nb, na) = capped_lifetime(req.now, req.ttl, Some(self.not_after));
        let serial = new_serial_number();
        let mut p = base_params(&self.trust_domain.id(), &key, serial, nb, na)?;
        let mut subject = req.subject.clone();
        if subject.serial_number.is_empty() {
            subject.serial_number = serial.to_string();
        }
        add_extensions(&mut p, &req.extensions)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        self.draft(p, &key, &subject)?.signed_by(&*self.signer)
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
        let key = KeyInfo::new(&csr.public_key)?;
        let (nb, na) = capped_lifetime(now, ttl, Some(self.not_after));
        let serial = new_serial_number();
        let mut p = base_params(&want, &key, serial, nb, na)?;
        add_extensions(&mut p, &extensions)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        self.draft(p, &key, &subject)?.signed_by(&*self.signer)
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
    let key = KeyInfo::new(signer.public_key())?;
    let (nb, na) = capped_lifetime(now, ttl, None);
    let serial = new_serial_number();
    let mut p = base_params(&trust_domain.id(), &key, serial, nb, na)?;
    let mut subject = subject.clone();
    if subject.serial_number.is_empty() {
        subject.serial_number = serial.to_string();
    }
    add_extensions(&mut p, extensions)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let name = subject.to_der()?;
    p.distinguished_name = placeholder_name(name == EMPTY_NAME);
    let unsigned = p
        .self_signed(&key)
        .map_err(|e| PkiError::Build(e.to_string()))?;
    Draft::new(unsigned.der(), &[(TBS_ISSUER, &name), (TBS_SUBJECT, &name)])?.signed_by(&*signer)
}

/// Assembles the CSR `p` describes for `signer`'s key with `subject`, and signs it.
fn signed_csr(
    mut p: CertificateParams,
    signer: &dyn Signer,
    subject: &Subject,
) -> Result<Vec<u8>, PkiError> {
    let name = subject.to_der()?;
    // Go never marks the subjectAltName of a CSR critical, so the placeholder is never empty.
    p.distinguished_name = placeholder_name(false);
    let unsigned = p
        .serialize_request(&KeyInfo::new(signer.public_key())?)
        .map_err(|e| PkiError::Build(e.to_string()))?;
    Draft::new(unsigned.der(), &[(CSR_SUBJECT, &name)])?.signed_by(signer)
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
    let mut p = CertificateParams::default();
    if let Some(id) = id {
        let uri = id
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Build(e.to_string()))?;
        p.subject_alt_names = vec![SanType::URI(uri)];
    }
    signed_csr(p, &*signer, &Subject::default())
}

/// The CSR an ACME client sends for a TLS certificate (Go's autocert `certRequest`): the
/// DNS name as common name and as the only SAN, signed by `signer`.
pub fn make_dns_csr(signer: Arc<dyn Signer>, dns_name: &str) -> Result<Vec<u8>, PkiError> {
    let p = CertificateParams::new(vec![dns_name.to_string()])
        .map_err(|e| PkiError::Build(e.to_string()))?;
    let subject = Subject {
        common_name: dns_name.to_string(),
        ..Subject::default()
    };
    signed_csr(p, &*signer, &subject)
}

/// The CSR SPIRE's CA manager sends its UpstreamAuthority: `subject`, the trust domain's
/// ID as URI SAN and `extensions`, signed by the new CA key `signer`.
pub fn make_ca_csr(
    signer: Arc<dyn Signer>,
    trust_domain: &TrustDomain,
    subject: &Subject,
    extensions: &[Extension],
) -> Result<Vec<u8>, PkiError> {
    let mut p = CertificateParams::default();
    let uri = trust_domain
        .id()
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::Build(e.to_string()))?;
    p.subject_alt_names = vec![SanType::URI(uri)];
    add_extensions(&mut p, extensions)?;
    signed_csr(p, &*signer, subject)
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

/// The subject of a DER certificate as Go parses it into a `pkix.Name`: attributes without
/// a field of their own (`DC`, `emailAddress`, …) are left out, since Go keeps them in
/// `Names` and never writes them again from a parsed name. SPIRE builds the subjects of
/// downstream and upstream-signed CAs from parsed names, so those attributes are dropped
/// there too.
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
                _ => {}
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
