//! X509-SVIDs: parsing per the X509-SVID standard and chain verification against bundles.
//!
//! Time is always an argument; nothing here reads the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::bundle::X509BundleSource;
use crate::id::{IdError, SpiffeId, TrustDomain};
use crate::keys::{KeyError, PrivateKey};

/// Longest certificate path we will try to build (leaf and anchor included).
const MAX_PATH_LEN: usize = 10;

/// Why a certificate chain is not a valid X509-SVID, or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X509SvidError {
    /// No certificate at all.
    #[error("no certificates found")]
    NoCertificates,
    /// A certificate is not well-formed DER X.509.
    #[error("certificate {index} is malformed: {reason}")]
    MalformedCertificate {
        /// Position in the chain (0 = leaf).
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// PEM text could not be read.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The leaf has no URI SAN.
    #[error("certificate contains no URI SAN")]
    NoUriSan,
    /// The leaf has more than one URI SAN.
    #[error("certificate contains more than one URI SAN ({0})")]
    MultipleUriSans(usize),
    /// The URI SAN is not a SPIFFE ID.
    #[error("unable to parse ID from URI SAN: {0}")]
    InvalidSpiffeId(IdError),
    /// The leaf's SPIFFE ID is a trust domain ID; leaf IDs need a path.
    #[error("leaf certificate SPIFFE ID {0} has no path")]
    LeafIdIsTrustDomain(SpiffeId),
    /// The leaf has CA=true.
    #[error("leaf certificate must not have CA flag set to true")]
    LeafIsCa,
    /// The leaf has no key usage extension.
    #[error("leaf certificate must have a key usage extension")]
    LeafMissingKeyUsage,
    /// The leaf's key usage lacks digitalSignature.
    #[error("leaf certificate must have 'digitalSignature' set as key usage")]
    LeafMissingDigitalSignature,
    /// The leaf's key usage has keyCertSign.
    #[error("leaf certificate must not have 'keyCertSign' set as key usage")]
    LeafHasKeyCertSign,
    /// The leaf's key usage has cRLSign.
    #[error("leaf certificate must not have 'cRLSign' set as key usage")]
    LeafHasCrlSign,
    /// A signing certificate in the chain is not a CA.
    #[error("signing certificate {index} must have CA flag set to true")]
    SigningCertNotCa {
        /// Position in the chain.
        index: usize,
    },
    /// A signing certificate in the chain lacks keyCertSign.
    #[error("signing certificate {index} must have 'keyCertSign' set as key usage")]
    SigningCertMissingKeyCertSign {
        /// Position in the chain.
        index: usize,
    },
    /// The private key is malformed.
    #[error("private key: {0}")]
    Key(KeyError),
    /// The private key is not the leaf's key.
    #[error("leaf certificate public key does not match the private key")]
    KeyMismatch,
    /// No X.509 bundle is known for the leaf's trust domain.
    #[error("no X.509 bundle found for trust domain {0:?}")]
    NoBundle(TrustDomain),
    /// A certificate on the path is not valid yet.
    #[error("certificate {subject:?} is not valid yet")]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
    },
    /// A certificate on the path has expired.
    #[error("certificate {subject:?} has expired")]
    Expired {
        /// Subject of the certificate.
        subject: String,
    },
    /// A candidate issuer's signature over a certificate does not verify.
    #[error("signature of certificate {subject:?} does not verify with its issuer's key")]
    BadSignature {
        /// Subject of the certificate whose signature failed.
        subject: String,
    },
    /// A trust anchor that issued the chain is not a CA.
    #[error("authority {subject:?} is not a CA")]
    AuthorityNotCa {
        /// Subject of the authority.
        subject: String,
    },
    /// An issuing CA's pathLenConstraint is exceeded.
    #[error("path length constraint of {subject:?} exceeded")]
    PathLenExceeded {
        /// Subject of the CA.
        subject: String,
    },
    /// No issuer for some certificate is in the chain or the bundle.
    #[error("x509svid: could not verify leaf certificate: certificate signed by unknown authority")]
    UnknownAuthority,
}

/// Splits concatenated DER certificates (the Workload API's wire form) into one DER per cert.
pub fn split_der_certificates(mut data: &[u8]) -> Result<Vec<Vec<u8>>, X509SvidError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let index = out.len();
        let (rest, _) =
            X509Certificate::from_der(data).map_err(|e| X509SvidError::MalformedCertificate {
                index,
                reason: e.to_string(),
            })?;
        let used = data.len() - rest.len();
        out.push(data[..used].to_vec());
        data = rest;
    }
    Ok(out)
}

/// Reads every `CERTIFICATE` block of a PEM text.
pub fn parse_pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, X509SvidError> {
    let blocks = pem::parse_many(text).map_err(|e| X509SvidError::Pem(e.to_string()))?;
    let mut out = Vec::new();
    for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
        let index = out.len();
        let der = block.into_contents();
        parse_one(&der, index)?;
        out.push(der);
    }
    Ok(out)
}

/// Encodes certificates as PEM `CERTIFICATE` blocks.
pub fn certificates_to_pem(certs: &[Vec<u8>]) -> String {
    certs
        .iter()
        .map(|c| crate::pem_encode("CERTIFICATE", c))
        .collect()
}

fn parse_one(der: &[u8], index: usize) -> Result<X509Certificate<'_>, X509SvidError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| X509SvidError::MalformedCertificate {
            index,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(X509SvidError::MalformedCertificate {
            index,
            reason: "trailing data after certificate".into(),
        });
    }
    Ok(cert)
}

fn malformed(index: usize, e: impl std::fmt::Display) -> X509SvidError {
    X509SvidError::MalformedCertificate {
        index,
        reason: e.to_string(),
    }
}

/// Every URI SAN of a DER certificate, in order (no SPIFFE rules applied).
pub fn uri_sans_from_der(der: &[u8]) -> Result<Vec<String>, X509SvidError> {
    let cert = parse_one(der, 0)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| malformed(0, e))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The SPIFFE ID of a certificate's single URI SAN.
pub fn id_from_certificate(cert: &X509Certificate<'_>) -> Result<SpiffeId, X509SvidError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| malformed(0, e))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [] => Err(X509SvidError::NoUriSan),
        [one] => SpiffeId::parse(one).map_err(X509SvidError::InvalidSpiffeId),
        many => Err(X509SvidError::MultipleUriSans(many.len())),
    }
}

/// The SPIFFE ID of a DER certificate's single URI SAN.
pub fn id_from_der(der: &[u8]) -> Result<SpiffeId, X509SvidError> {
    id_from_certificate(&parse_one(der, 0)?)
}

/// Applies the X509-SVID standard's rules to a leaf and its signing certificates; returns
/// the leaf's SPIFFE ID. Does not verify signatures (see [`verify_chain`]).
fn check_structure(certs: &[X509Certificate<'_>]) -> Result<SpiffeId, X509SvidError> {
    let leaf = certs.first().ok_or(X509SvidError::NoCertificates)?;
    let id = id_from_certificate(leaf)?;
    if id.is_trust_domain_id() {
        return Err(X509SvidError::LeafIdIsTrustDomain(id));
    }
    let bc = leaf.basic_constraints().map_err(|e| malformed(0, e))?;
    if bc.is_some_and(|b| b.value.ca) {
        return Err(X509SvidError::LeafIsCa);
    }
    let ku = leaf
        .key_usage()
        .map_err(|e| malformed(0, e))?
        .ok_or(X509SvidError::LeafMissingKeyUsage)?;
    if ku.value.key_cert_sign() {
        return Err(X509SvidError::LeafHasKeyCertSign);
    }
    if ku.value.crl_sign() {
        return Err(X509SvidError::LeafHasCrlSign);
    }
    if !ku.value.digital_signature() {
        return Err(X509SvidError::LeafMissingDigitalSignature);
    }
    for (index, cert) in certs.iter().enumerate().skip(1) {
        check_signing_cert(cert, index)?;
    }
    Ok(id)
}

fn check_signing_cert(cert: &X509Certificate<'_>, index: usize) -> Result<(), X509SvidError> {
    let bc = cert.basic_constraints().map_err(|e| malformed(index, e))?;
    if !bc.is_some_and(|b| b.value.ca) {
        return Err(X509SvidError::SigningCertNotCa { index });
    }
    let ku = cert.key_usage().map_err(|e| malformed(index, e))?;
    if !ku.is_some_and(|k| k.value.key_cert_sign()) {
        return Err(X509SvidError::SigningCertMissingKeyCertSign { index });
    }
    Ok(())
}

/// An X509-SVID with its private key, as the Workload API delivers it.
#[derive(Debug)]
pub struct X509Svid {
    id: SpiffeId,
    chain: Vec<Vec<u8>>,
    key: PrivateKey,
}

impl X509Svid {
    /// Parses a chain (one DER per certificate, leaf first) and a PKCS#8 key, checking every
    /// structural rule of the X509-SVID standard and that the key matches the leaf.
    pub fn parse(chain: Vec<Vec<u8>>, key_pkcs8: &[u8]) -> Result<Self, X509SvidError> {
        let key = PrivateKey::from_pkcs8_der(key_pkcs8).map_err(X509SvidError::Key)?;
        Self::from_parts(chain, key)
    }

    /// Like [`X509Svid::parse`] with an already parsed key.
    pub fn from_parts(chain: Vec<Vec<u8>>, key: PrivateKey) -> Result<Self, X509SvidError> {
        let id = {
            let parsed = parse_chain(&chain)?;
            let id = check_structure(&parsed)?;
            if parsed[0].public_key().raw != key.public_key().spki_der() {
                return Err(X509SvidError::KeyMismatch);
            }
            id
        };
        Ok(Self { id, chain, key })
    }

    /// Parses the Workload API form: concatenated DER certificates and a PKCS#8 key.
    pub fn parse_concatenated(chain: &[u8], key_pkcs8: &[u8]) -> Result<Self, X509SvidError> {
        Self::parse(split_der_certificates(chain)?, key_pkcs8)
    }

    /// The SPIFFE ID of the leaf.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// Leaf first, then intermediates, each DER.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The leaf certificate DER.
    pub fn leaf(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The private key.
    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// The leaf's notAfter, as seconds since the Unix epoch.
    pub fn expires_at(&self) -> i64 {
        parse_one(&self.chain[0], 0)
            .map(|c| c.validity().not_after.timestamp())
            .unwrap_or(0)
    }

    /// Verifies this SVID's chain against `bundles` at time `now`.
    pub fn verify(
        &self,
        bundles: &dyn X509BundleSource,
        now: SystemTime,
    ) -> Result<SpiffeId, X509SvidError> {
        verify_chain(&self.chain, bundles, now)
    }
}

fn parse_chain(chain: &[Vec<u8>]) -> Result<Vec<X509Certificate<'_>>, X509SvidError> {
    if chain.is_empty() {
        return Err(X509SvidError::NoCertificates);
    }
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse_one(der, i))
        .collect()
}

/// Verifies an X509-SVID chain (leaf first, then intermediates in any order): the leaf and
/// signing certificates follow the X509-SVID standard, and a path of valid signatures leads
/// to an authority in the bundle of the leaf's trust domain, with every certificate on the
/// path valid at `now`. Returns the leaf's SPIFFE ID.
pub fn verify_chain(
    chain: &[Vec<u8>],
    bundles: &dyn X509BundleSource,
    now: SystemTime,
) -> Result<SpiffeId, X509SvidError> {
    let parsed = parse_chain(chain)?;
    let id = check_structure(&parsed)?;
    let td = id.trust_domain();
    let authorities = bundles
        .x509_authorities(&td)
        .ok_or(X509SvidError::NoBundle(td))?;
    let anchors: Vec<X509Certificate<'_>> = authorities
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .collect();
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    check_time(&parsed[0], now)?;
    let mut path = PathSearch {
        intermediates: &parsed[1..],
        anchors: &anchors,
        now,
        used: vec![],
        anchor: None,
    };
    path.extend(&parsed[0], 0)?;
    Ok(id)
}

/// Verifies a plain X.509 path (no SPIFFE rules): `leaf`, then `intermediates` in any order,
/// up to one of `anchors`, with signatures, CA flags, path length and validity at `now`
/// checked. Returns the path above the leaf, anchor last (DER). Used by attestors that
/// accept certificates from an external PKI, such as x509pop.
pub fn verify_x509_path(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    anchors: &[Vec<u8>],
    now: SystemTime,
) -> Result<Vec<Vec<u8>>, X509SvidError> {
    let leaf_cert = parse_one(leaf, 0)?;
    let inters: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .enumerate()
        .map(|(i, der)| parse_one(der, i + 1))
        .collect::<Result<_, _>>()?;
    let anchor_certs: Vec<X509Certificate<'_>> = anchors
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .collect();
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    check_time(&leaf_cert, now)?;
    let mut path = PathSearch {
        intermediates: &inters,
        anchors: &anchor_certs,
        now,
        used: vec![],
        anchor: None,
    };
    path.extend(&leaf_cert, 0)?;
    let mut out: Vec<Vec<u8>> = path
        .used
        .iter()
        .map(|&i| intermediates[i].clone())
        .collect();
    if let Some(a) = path.anchor {
        out.push(anchor_certs[a].as_raw().to_vec());
    }
    Ok(out)
}

fn subject_of(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

fn check_time(cert: &X509Certificate<'_>, now: i64) -> Result<(), X509SvidError> {
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(X509SvidError::NotYetValid {
            subject: subject_of(cert),
        });
    }
    if now > validity.not_after.timestamp() {
        return Err(X509SvidError::Expired {
            subject: subject_of(cert),
        });
    }
    Ok(())
}

/// Whether `issuer` may have issued `cert`, judged by names and key identifiers only.
fn names_match(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return false;
    }
    let akid = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    let skid = issuer
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        });
    match (akid, skid) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

struct PathSearch<'c, 'a> {
    intermediates: &'c [X509Certificate<'a>],
    anchors: &'c [X509Certificate<'a>],
    now: i64,
    used: Vec<usize>,
    anchor: Option<usize>,
}

impl PathSearch<'_, '_> {
    /// Finds an issuer for `cert`; `cas_below` counts the CA certificates already on the path
    /// between the leaf and `cert` (for pathLenConstraint).
    fn extend(
        &mut self,
        cert: &X509Certificate<'_>,
        cas_below: usize,
    ) -> Result<(), X509SvidError> {
        if self.used.len() + 2 > MAX_PATH_LEN {
            return Err(X509SvidError::UnknownAuthority);
        }
        let mut best: Option<X509SvidError> = None;
        let note = |err: X509SvidError, best: &mut Option<X509SvidError>| {
            if best.is_none() {
                *best = Some(err);
            }
        };
        for (ai, anchor) in self.anchors.iter().enumerate() {
            if !names_match(cert, anchor) {
                continue;
            }
            if cert.verify_signature(Some(anchor.public_key())).is_err() {
                note(
                    X509SvidError::BadSignature {
                        subject: subject_of(cert),
                    },
                    &mut best,
                );
                continue;
            }
            match check_issuer(anchor, cas_below, self.now) {
                Ok(()) => {
                    self.anchor = Some(ai);
                    return Ok(());
                }
                Err(e) => note(e, &mut best),
            }
        }
        for (i, inter) in self.intermediates.iter().enumerate() {
            if self.used.contains(&i) || !names_match(cert, inter) {
                continue;
            }
            if cert.verify_signature(Some(inter.public_key())).is_err() {
                note(
                    X509SvidError::BadSignature {
                        subject: subject_of(cert),
                    },
                    &mut best,
                );
                continue;
            }
            if let Err(e) = check_issuer(inter, cas_below, self.now) {
                note(e, &mut best);
                continue;
            }
            self.used.push(i);
            match self.extend(inter, cas_below + 1) {
                Ok(()) => return Ok(()),
                Err(e) => note(e, &mut best),
            }
            self.used.pop();
        }
        Err(best.unwrap_or(X509SvidError::UnknownAuthority))
    }
}

fn check_issuer(
    issuer: &X509Certificate<'_>,
    cas_below: usize,
    now: i64,
) -> Result<(), X509SvidError> {
    let subject = subject_of(issuer);
    let bc = issuer
        .basic_constraints()
        .ok()
        .flatten()
        .filter(|b| b.value.ca)
        .ok_or_else(|| X509SvidError::AuthorityNotCa {
            subject: subject.clone(),
        })?;
    if let Ok(Some(ku)) = issuer.key_usage()
        && !ku.value.key_cert_sign()
    {
        return Err(X509SvidError::AuthorityNotCa { subject });
    }
    if let Some(max) = bc.value.path_len_constraint
        && cas_below > max as usize
    {
        return Err(X509SvidError::PathLenExceeded { subject });
    }
    check_time(issuer, now)
}

#[cfg(test)]
mod tests;
