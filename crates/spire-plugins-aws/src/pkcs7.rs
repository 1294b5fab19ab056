//! PKCS #7 SignedData as AWS signs instance identity documents (`instance-identity/rsa2048`)
//! and as fullsailor/pkcs7 (SPIRE's parser) verifies it: BER accepted (indefinite lengths,
//! constructed strings), the signer named by issuer and serial number must be the region
//! certificate, the message digest attribute must match the content, and the signature is
//! RSA PKCS #1 v1.5 over the DER `SET OF` the signed attributes (or over the content when
//! there are none) with the signer's digest algorithm.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, UnparsedPublicKey};

/// Why a signature is not accepted; the text is the reason after SPIRE's prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs7Error {
    /// Not a SignedData we can read.
    #[error("{0}")]
    Parse(String),
    /// Read, but it does not verify.
    #[error("{0}")]
    Verify(String),
}

/// One BER element: tag byte(s), whether constructed, its content (children or bytes).
#[derive(Debug, Clone)]
struct Tlv {
    class_tag: u8,
    tag_number: u32,
    constructed: bool,
    /// Primitive content, or for constructed the concatenation of the children's DER.
    value: Vec<u8>,
    children: Vec<Tlv>,
}

fn perr(s: &str) -> Pkcs7Error {
    Pkcs7Error::Parse(format!("asn1: {s}"))
}

const MAX_DEPTH: usize = 32;

fn parse_one(data: &[u8], depth: usize) -> Result<(Tlv, usize), Pkcs7Error> {
    if depth > MAX_DEPTH {
        return Err(perr("nesting too deep"));
    }
    let first = *data.first().ok_or_else(|| perr("truncated tag"))?;
    let class_tag = first & 0xc0;
    let constructed = first & 0x20 != 0;
    let mut pos = 1;
    let mut tag_number = u32::from(first & 0x1f);
    if tag_number == 0x1f {
        tag_number = 0;
        loop {
            let b = *data.get(pos).ok_or_else(|| perr("truncated tag"))?;
            pos += 1;
            if tag_number > (u32::MAX >> 7) {
                return Err(perr("tag too large"));
            }
            tag_number = (tag_number << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let lb = *data.get(pos).ok_or_else(|| perr("truncated length"))?;
    pos += 1;
    let length: Option<usize> = if lb == 0x80 {
        None
    } else if lb & 0x80 == 0 {
        Some(usize::from(lb))
    } else {
        let n = usize::from(lb & 0x7f);
        if n > 4 {
            return Err(perr("length too large"));
        }
        let mut l = 0usize;
        for _ in 0..n {
            let b = *data.get(pos).ok_or_else(|| perr("truncated length"))?;
            pos += 1;
            l = (l << 8) | usize::from(b);
        }
        Some(l)
    };
    let mut tlv = Tlv {
        class_tag,
        tag_number,
        constructed,
        value: Vec::new(),
        children: Vec::new(),
    };
    match length {
        Some(len) => {
            let end = pos
                .checked_add(len)
                .filter(|e| *e <= data.len())
                .ok_or_else(|| perr("data truncated"))?;
            if constructed {
                let mut p = pos;
                while p < end {
                    let (child, used) = parse_one(&data[p..end], depth + 1)?;
                    tlv.children.push(child);
                    p += used;
                }
            } else {
                tlv.value = data[pos..end].to_vec();
            }
            Ok((tlv, end))
        }
        None => {
            if !constructed {
                return Err(perr("indefinite length on a primitive"));
            }
            let mut p = pos;
            loop {
                if data.get(p..p + 2) == Some(&[0, 0]) {
                    return Ok((tlv, p + 2));
                }
                if p >= data.len() {
                    return Err(perr("missing end-of-contents"));
                }
                let (child, used) = parse_one(&data[p..], depth + 1)?;
                tlv.children.push(child);
                p += used;
            }
        }
    }
}

fn parse(data: &[u8]) -> Result<Tlv, Pkcs7Error> {
    let (tlv, used) = parse_one(data, 0)?;
    if used != data.len() {
        return Err(perr("trailing data"));
    }
    Ok(tlv)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

impl Tlv {
    fn is(&self, class_tag: u8, number: u32) -> bool {
        self.class_tag == class_tag && self.tag_number == number
    }

    /// DER re-encoding (definite lengths), with `first` as the identifier byte when given.
    fn der_with(&self, first: Option<u8>) -> Vec<u8> {
        let mut content = Vec::new();
        if self.constructed {
            for c in &self.children {
                content.extend(c.der_with(None));
            }
        } else {
            content.extend_from_slice(&self.value);
        }
        let mut out = Vec::new();
        match first {
            Some(b) => out.push(b),
            None => {
                let cons = if self.constructed { 0x20 } else { 0 };
                if self.tag_number < 0x1f {
                    out.push(self.class_tag | cons | self.tag_number as u8);
                } else {
                    out.push(self.class_tag | cons | 0x1f);
                    let mut groups = Vec::new();
                    let mut n = self.tag_number;
                    loop {
                        groups.push((n & 0x7f) as u8);
                        n >>= 7;
                        if n == 0 {
                            break;
                        }
                    }
                    for (i, g) in groups.iter().rev().enumerate() {
                        out.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
                    }
                }
            }
        }
        push_len(&mut out, content.len());
        out.extend(content);
        out
    }

    fn der(&self) -> Vec<u8> {
        self.der_with(None)
    }

    /// The bytes of an OCTET STRING, primitive or constructed.
    fn octets(&self) -> Vec<u8> {
        if self.constructed {
            self.children.iter().flat_map(Tlv::octets).collect()
        } else {
            self.value.clone()
        }
    }

    fn child(&self, i: usize, what: &str) -> Result<&Tlv, Pkcs7Error> {
        self.children
            .get(i)
            .ok_or_else(|| Pkcs7Error::Parse(format!("asn1: missing {what}")))
    }
}

const UNIVERSAL: u8 = 0x00;
const CONTEXT: u8 = 0x80;

const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// A signer of the SignedData.
#[derive(Debug, Clone)]
struct SignerInfo {
    issuer_der: Vec<u8>,
    serial: Vec<u8>,
    digest_oid: Vec<u8>,
    signed_attrs: Option<Tlv>,
    signature: Vec<u8>,
}

/// A parsed SignedData.
#[derive(Debug, Clone)]
pub struct SignedData {
    content: Vec<u8>,
    signers: Vec<SignerInfo>,
}

impl SignedData {
    /// Parses DER or BER `ContentInfo` holding a SignedData.
    pub fn parse(der: &[u8]) -> Result<Self, Pkcs7Error> {
        let ci = parse(der)?;
        let oid = ci.child(0, "content type")?;
        if !oid.is(UNIVERSAL, 6) || oid.value != OID_SIGNED_DATA {
            return Err(Pkcs7Error::Parse(
                "pkcs7: cannot parse data: unimplemented content type".into(),
            ));
        }
        let explicit = ci.child(1, "content")?;
        let sd = explicit.child(0, "signed data")?;
        // version, digestAlgorithms, contentInfo, [0] certificates?, [1] crls?, signerInfos
        let inner = sd.child(2, "content info")?;
        let content = match inner.children.get(1) {
            Some(e) => e.child(0, "content")?.octets(),
            None => Vec::new(),
        };
        let signer_set = sd
            .children
            .last()
            .filter(|s| s.is(UNIVERSAL, 17))
            .ok_or_else(|| perr("missing signer infos"))?;
        let mut signers = Vec::new();
        for si in &signer_set.children {
            let ias = si.child(1, "issuer and serial")?;
            let issuer_der = ias.child(0, "issuer")?.der();
            let serial = ias.child(1, "serial")?.value.clone();
            let digest_oid = si
                .child(2, "digest algorithm")?
                .child(0, "oid")?
                .value
                .clone();
            let mut i = 3;
            let signed_attrs = match si.children.get(3) {
                Some(t) if t.is(CONTEXT, 0) => {
                    i += 1;
                    Some(t.clone())
                }
                _ => None,
            };
            // digestEncryptionAlgorithm, then the signature.
            let signature = si.child(i + 1, "signature")?.octets();
            signers.push(SignerInfo {
                issuer_der,
                serial,
                digest_oid,
                signed_attrs,
                signature,
            });
        }
        Ok(Self { content, signers })
    }

    /// The signed content.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// fullsailor/pkcs7's `Verify` with `cert` (DER) as the only certificate.
    pub fn verify(&self, cert_der: &[u8]) -> Result<(), Pkcs7Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| Pkcs7Error::Verify(format!("x509: {e}")))?;
        if self.signers.is_empty() {
            return Err(Pkcs7Error::Verify("pkcs7: Message has no signers".into()));
        }
        for s in &self.signers {
            let (alg, sha): (&'static digest::Algorithm, _) = match s.digest_oid.as_slice() {
                OID_SHA1 => (
                    &digest::SHA1_FOR_LEGACY_USE_ONLY,
                    &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
                ),
                OID_SHA256 => (
                    &digest::SHA256,
                    &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                ),
                OID_SHA384 => (&digest::SHA384, &signature::RSA_PKCS1_2048_8192_SHA384),
                OID_SHA512 => (
                    &digest::SHA512,
                    &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
                ),
                _ => {
                    return Err(Pkcs7Error::Verify(
                        "pkcs7: cannot parse data: unimplemented digest algorithm".into(),
                    ));
                }
            };
            let signed = match &s.signed_attrs {
                Some(attrs) => {
                    let mut digest_attr = None;
                    for a in &attrs.children {
                        if a.child(0, "attribute type")?.value == OID_MESSAGE_DIGEST {
                            digest_attr = Some(
                                a.child(1, "attribute values")?
                                    .child(0, "message digest")?
                                    .octets(),
                            );
                        }
                    }
                    let want = digest_attr.ok_or_else(|| {
                        Pkcs7Error::Verify("pkcs7: missing attribute for messageDigest".into())
                    })?;
                    let got = digest::digest(alg, &self.content);
                    if want != got.as_ref() {
                        return Err(Pkcs7Error::Verify(format!(
                            "pkcs7: Message digest mismatch\n\tExpected: {}\n\tActual  : {}",
                            upper_hex(&want),
                            upper_hex(got.as_ref())
                        )));
                    }
                    attrs.der_with(Some(0x31))
                }
                None => self.content.clone(),
            };
            let serial = cert.raw_serial();
            let strip = |b: &[u8]| -> Vec<u8> {
                let skip = b.iter().take_while(|x| **x == 0).count();
                b[skip.min(b.len().saturating_sub(1))..].to_vec()
            };
            if cert.tbs_certificate.issuer.as_raw() != s.issuer_der.as_slice()
                || strip(serial) != strip(&s.serial)
            {
                return Err(Pkcs7Error::Verify(
                    "pkcs7: No certificate for signer".into(),
                ));
            }
            let spki = cert
                .tbs_certificate
                .subject_pki
                .subject_public_key
                .data
                .as_ref();
            UnparsedPublicKey::new(sha, spki)
                .verify(&signed, &s.signature)
                .map_err(|_| Pkcs7Error::Verify("crypto/rsa: verification error".into()))?;
        }
        Ok(())
    }
}

fn upper_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}
