//! Private and public keys: generation, PKCS#8 / PKIX encoding, signing and verification.
//!
//! Everything runs on aws-lc-rs. SPIRE's key types are [`KeyType`]; P-521 keys exist only so
//! that ES512 JWTs from other issuers can be verified (and tested).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Errors from key parsing, generation and signing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key type name that SPIRE does not know.
    #[error("unsupported key type {0:?}: expected one of ec-p256, ec-p384, rsa-2048, rsa-4096")]
    UnknownKeyType(String),
    /// The private key bytes are not PKCS#8, SEC1 or PKCS#1 DER of a supported key.
    #[error("malformed or unsupported private key: {0}")]
    MalformedPrivateKey(String),
    /// The public key bytes are not a PKIX SubjectPublicKeyInfo of a supported key.
    #[error("malformed or unsupported public key: {0}")]
    MalformedPublicKey(String),
    /// Key generation failed inside the crypto library.
    #[error("key generation failed")]
    Generation,
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Signing,
    /// The key cannot produce signatures of the requested algorithm.
    #[error("key of type {key} cannot sign with {alg}")]
    AlgorithmMismatch {
        /// The key's type.
        key: String,
        /// The requested algorithm.
        alg: String,
    },
    /// The PEM text is malformed or has no block of an expected type.
    #[error("invalid PEM: {0}")]
    Pem(String),
}

/// The key types SPIRE accepts for CAs, JWT signers, agents and workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (SPIRE's default).
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
}

impl KeyType {
    /// The name used in SPIRE configuration files (`ec-p256`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// Every key type, in SPIRE's documentation order.
    pub const ALL: [KeyType; 4] = [
        KeyType::Rsa2048,
        KeyType::Rsa4096,
        KeyType::EcP256,
        KeyType::EcP384,
    ];
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ec-p256" => Ok(KeyType::EcP256),
            "ec-p384" => Ok(KeyType::EcP384),
            "rsa-2048" => Ok(KeyType::Rsa2048),
            "rsa-4096" => Ok(KeyType::Rsa4096),
            other => Err(KeyError::UnknownKeyType(other.to_string())),
        }
    }
}

/// The NIST curves we handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// P-256 (secp256r1).
    P256,
    /// P-384 (secp384r1).
    P384,
    /// P-521 (secp521r1); verification of foreign JWTs only.
    P521,
}

impl Curve {
    /// The JWK `crv` name.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Byte length of one coordinate.
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    fn asn1_signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }

    fn fixed_signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        }
    }

    fn from_oid(oid: &x509_parser::der_parser::oid::Oid<'_>) -> Option<Curve> {
        use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521};
        if *oid == OID_EC_P256 {
            Some(Curve::P256)
        } else if *oid == OID_NIST_EC_P384 {
            Some(Curve::P384)
        } else if *oid == OID_NIST_EC_P521 {
            Some(Curve::P521)
        } else {
            None
        }
    }
}

/// JWS signature algorithms allowed for JWT-SVIDs by the JWT-SVID standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// ECDSA P-521 with SHA-512.
    ES512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
}

impl JwsAlgorithm {
    /// Every allowed algorithm.
    pub const ALL: [JwsAlgorithm; 9] = [
        JwsAlgorithm::ES256,
        JwsAlgorithm::ES384,
        JwsAlgorithm::ES512,
        JwsAlgorithm::RS256,
        JwsAlgorithm::RS384,
        JwsAlgorithm::RS512,
        JwsAlgorithm::PS256,
        JwsAlgorithm::PS384,
        JwsAlgorithm::PS512,
    ];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlgorithm::ES256 => "ES256",
            JwsAlgorithm::ES384 => "ES384",
            JwsAlgorithm::ES512 => "ES512",
            JwsAlgorithm::RS256 => "RS256",
            JwsAlgorithm::RS384 => "RS384",
            JwsAlgorithm::RS512 => "RS512",
            JwsAlgorithm::PS256 => "PS256",
            JwsAlgorithm::PS384 => "PS384",
            JwsAlgorithm::PS512 => "PS512",
        }
    }

    /// Parses an `alg` header value; anything outside the allowed set is `None`.
    pub fn parse(s: &str) -> Option<JwsAlgorithm> {
        JwsAlgorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn curve(self) -> Option<Curve> {
        match self {
            JwsAlgorithm::ES256 => Some(Curve::P256),
            JwsAlgorithm::ES384 => Some(Curve::P384),
            JwsAlgorithm::ES512 => Some(Curve::P521),
            _ => None,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            JwsAlgorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            JwsAlgorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            JwsAlgorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
            JwsAlgorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            JwsAlgorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            JwsAlgorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            JwsAlgorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            JwsAlgorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            JwsAlgorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }

    fn rsa_encoding(self) -> Option<&'static dyn signature::RsaEncoding> {
        match self {
            JwsAlgorithm::RS256 => Some(&signature::RSA_PKCS1_SHA256),
            JwsAlgorithm::RS384 => Some(&signature::RSA_PKCS1_SHA384),
            JwsAlgorithm::RS512 => Some(&signature::RSA_PKCS1_SHA512),
            JwsAlgorithm::PS256 => Some(&signature::RSA_PSS_SHA256),
            JwsAlgorithm::PS384 => Some(&signature::RSA_PSS_SHA384),
            JwsAlgorithm::PS512 => Some(&signature::RSA_PSS_SHA512),
            _ => None,
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

enum Inner {
    Ec {
        curve: Curve,
        asn1: EcdsaKeyPair,
        fixed: EcdsaKeyPair,
    },
    Rsa(RsaKeyPair),
}

/// A private key that can sign certificates, CSRs and JWTs.
///
/// Its `Debug` output never shows key material.
pub struct PrivateKey {
    inner: Inner,
    pkcs8: Vec<u8>,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kind", &self.public.kind)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a new key of a SPIRE key type.
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        match key_type {
            KeyType::EcP256 => Self::generate_ec(Curve::P256),
            KeyType::EcP384 => Self::generate_ec(Curve::P384),
            KeyType::Rsa2048 => Self::generate_rsa(KeySize::Rsa2048),
            KeyType::Rsa4096 => Self::generate_rsa(KeySize::Rsa4096),
        }
    }

    /// Generates a new ECDSA key on any supported curve, P-521 included.
    pub fn generate_ec(curve: Curve) -> Result<Self, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(curve.asn1_signing(), &SystemRandom::new())
            .map_err(|_| KeyError::Generation)?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    fn generate_rsa(size: KeySize) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(size).map_err(|_| KeyError::Generation)?;
        let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::Generation)?;
        Self::from_pkcs8_der(der.as_ref())
    }

    /// Parses a PKCS#8 DER private key (EC or RSA).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            if let Ok(asn1) = EcdsaKeyPair::from_pkcs8(curve.asn1_signing(), der) {
                let fixed = EcdsaKeyPair::from_pkcs8(curve.fixed_signing(), der)
                    .map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
                return Self::from_ec(curve, asn1, fixed, der.to_vec());
            }
        }
        let rsa = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
        Self::from_rsa(rsa, der.to_vec())
    }

    /// Parses DER of any of: PKCS#8, SEC1 (`EC PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_any_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(key) = Self::from_pkcs8_der(der) {
            return Ok(key);
        }
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            if let Ok(asn1) = EcdsaKeyPair::from_private_key_der(curve.asn1_signing(), der) {
                let pkcs8 = asn1
                    .to_pkcs8v1()
                    .map_err(|_| KeyError::MalformedPrivateKey("cannot re-encode".into()))?;
                return Self::from_pkcs8_der(pkcs8.as_ref());
            }
        }
        let rsa =
            RsaKeyPair::from_der(der).map_err(|e| KeyError::MalformedPrivateKey(e.to_string()))?;
        let pkcs8: Pkcs8V1Der<'static> = rsa
            .as_der()
            .map_err(|_| KeyError::MalformedPrivateKey("cannot re-encode".into()))?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// Parses the first private key block of a PEM text (`PRIVATE KEY`, `EC PRIVATE KEY`,
    /// or `RSA PRIVATE KEY`).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(text).map_err(|e| KeyError::Pem(e.to_string()))?;
        let block = blocks
            .iter()
            .find(|b| {
                matches!(
                    b.tag(),
                    "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY"
                )
            })
            .ok_or_else(|| KeyError::Pem("no private key block found".into()))?;
        Self::from_any_der(block.contents())
    }

    fn from_ec(
        curve: Curve,
        asn1: EcdsaKeyPair,
        fixed: EcdsaKeyPair,
        pkcs8: Vec<u8>,
    ) -> Result<Self, KeyError> {
        let spki = asn1
            .public_key()
            .as_der()
            .map_err(|_| KeyError::MalformedPrivateKey("cannot encode public key".into()))?;
        let public = PublicKey {
            spki: spki.as_ref().to_vec(),
            kind: PublicKeyKind::Ec(curve),
        };
        Ok(Self {
            inner: Inner::Ec { curve, asn1, fixed },
            pkcs8,
            public,
        })
    }

    fn from_rsa(rsa: RsaKeyPair, pkcs8: Vec<u8>) -> Result<Self, KeyError> {
        let spki = rsa
            .public_key()
            .as_der()
            .map_err(|_| KeyError::MalformedPrivateKey("cannot encode public key".into()))?;
        let bits = rsa.public_modulus_len() * 8;
        let public = PublicKey {
            spki: spki.as_ref().to_vec(),
            kind: PublicKeyKind::Rsa { bits },
        };
        Ok(Self {
            inner: Inner::Rsa(rsa),
            pkcs8,
            public,
        })
    }

    /// The PKCS#8 DER encoding. Treat it as a secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// PEM `PRIVATE KEY` (PKCS#8). Treat it as a secret.
    pub fn to_pkcs8_pem(&self) -> String {
        crate::pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The SPIRE key type, if this key is one (P-521 and odd RSA sizes are not).
    pub fn key_type(&self) -> Option<KeyType> {
        self.public.key_type()
    }

    /// The curve, for EC keys.
    pub fn curve(&self) -> Option<Curve> {
        match &self.inner {
            Inner::Ec { curve, .. } => Some(*curve),
            Inner::Rsa(_) => None,
        }
    }

    /// Signs `msg` as X.509 signatures are made: DER ECDSA with the curve's hash, or
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    pub fn sign_x509(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Ec { asn1, .. } => Ok(asn1
                .sign(&rng, msg)
                .map_err(|_| KeyError::Signing)?
                .as_ref()
                .to_vec()),
            Inner::Rsa(rsa) => {
                let mut sig = vec![0; rsa.public_modulus_len()];
                rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| KeyError::Signing)?;
                Ok(sig)
            }
        }
    }

    /// The JWS algorithm SPIRE uses for this key: ES256/ES384 (ES512 for P-521) or RS256.
    pub fn default_jws_algorithm(&self) -> JwsAlgorithm {
        match &self.inner {
            Inner::Ec {
                curve: Curve::P256, ..
            } => JwsAlgorithm::ES256,
            Inner::Ec {
                curve: Curve::P384, ..
            } => JwsAlgorithm::ES384,
            Inner::Ec {
                curve: Curve::P521, ..
            } => JwsAlgorithm::ES512,
            Inner::Rsa(_) => JwsAlgorithm::RS256,
        }
    }

    /// Signs `msg` with a JWS algorithm (fixed-length r||s for ECDSA).
    pub fn sign_jws(&self, alg: JwsAlgorithm, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        let mismatch = || KeyError::AlgorithmMismatch {
            key: self.public.kind.to_string(),
            alg: alg.to_string(),
        };
        match &self.inner {
            Inner::Ec { curve, fixed, .. } => {
                if alg.curve() != Some(*curve) {
                    return Err(mismatch());
                }
                Ok(fixed
                    .sign(&rng, msg)
                    .map_err(|_| KeyError::Signing)?
                    .as_ref()
                    .to_vec())
            }
            Inner::Rsa(rsa) => {
                let encoding = alg.rsa_encoding().ok_or_else(mismatch)?;
                let mut sig = vec![0; rsa.public_modulus_len()];
                rsa.sign(encoding, &rng, msg, &mut sig)
                    .map_err(|_| KeyError::Signing)?;
                Ok(sig)
            }
        }
    }
}

/// What kind of public key a [`PublicKey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicKeyKind {
    /// An ECDSA key on a curve.
    Ec(Curve),
    /// An RSA key with this modulus length.
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
}

impl fmt::Display for PublicKeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKeyKind::Ec(c) => write!(f, "EC {}", c.jwk_name()),
            PublicKeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

/// A public key held as its PKIX SubjectPublicKeyInfo DER.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    spki: Vec<u8>,
    kind: PublicKeyKind,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.kind)
    }
}

impl PublicKey {
    /// Parses a PKIX SubjectPublicKeyInfo (EC on P-256/384/521, or RSA).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| KeyError::MalformedPublicKey(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::MalformedPublicKey("trailing data".into()));
        }
        Self::from_parsed_spki(&spki)
    }

    /// Builds from an already parsed SubjectPublicKeyInfo.
    pub fn from_parsed_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        let parsed = spki
            .parsed()
            .map_err(|e| KeyError::MalformedPublicKey(e.to_string()))?;
        let kind = match parsed {
            ParsedKey::EC(point) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .and_then(|oid| Curve::from_oid(&oid))
                    .ok_or_else(|| KeyError::MalformedPublicKey("unsupported curve".into()))?;
                if point.data().len() != 1 + 2 * curve.coordinate_len() {
                    return Err(KeyError::MalformedPublicKey("bad EC point length".into()));
                }
                PublicKeyKind::Ec(curve)
            }
            ParsedKey::RSA(rsa) => PublicKeyKind::Rsa {
                bits: rsa.key_size(),
            },
            _ => {
                return Err(KeyError::MalformedPublicKey(
                    "unsupported key algorithm".into(),
                ));
            }
        };
        Ok(Self {
            spki: spki.raw.to_vec(),
            kind,
        })
    }

    /// Builds an EC key from its JWK coordinates.
    pub fn from_ec_coordinates(curve: Curve, x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        let len = curve.coordinate_len();
        if x.len() != len || y.len() != len {
            return Err(KeyError::MalformedPublicKey(format!(
                "{} coordinates must be {len} bytes",
                curve.jwk_name()
            )));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let alg = match curve {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1,
            Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1,
        };
        let parsed = signature::ParsedPublicKey::new(alg, &point)
            .map_err(|e| KeyError::MalformedPublicKey(e.to_string()))?;
        let spki = der_spki_from_parsed(&parsed)?;
        Ok(Self {
            spki,
            kind: PublicKeyKind::Ec(curve),
        })
    }

    /// Builds an RSA key from its JWK modulus and exponent (big-endian, unsigned).
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let components = signature::RsaPublicKeyComponents { n, e };
        let der: aws_lc_rs::encoding::PublicKeyX509Der<'static> = components
            .as_der()
            .map_err(|_| KeyError::MalformedPublicKey("bad RSA key".into()))?;
        Self::from_spki_der(der.as_ref())
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The kind of key.
    pub fn kind(&self) -> PublicKeyKind {
        self.kind
    }

    /// The SPIRE key type, if it is one.
    pub fn key_type(&self) -> Option<KeyType> {
        match self.kind {
            PublicKeyKind::Ec(Curve::P256) => Some(KeyType::EcP256),
            PublicKeyKind::Ec(Curve::P384) => Some(KeyType::EcP384),
            PublicKeyKind::Rsa { bits: 2048 } => Some(KeyType::Rsa2048),
            PublicKeyKind::Rsa { bits: 4096 } => Some(KeyType::Rsa4096),
            _ => None,
        }
    }

    /// Verifies a JWS signature. Fails on a key/algorithm mismatch or a bad signature.
    pub fn verify_jws(&self, alg: JwsAlgorithm, msg: &[u8], sig: &[u8]) -> bool {
        let kind_ok = match self.kind {
            PublicKeyKind::Ec(curve) => alg.curve() == Some(curve),
            PublicKeyKind::Rsa { .. } => alg.curve().is_none(),
        };
        kind_ok
            && signature::UnparsedPublicKey::new(alg.verification(), &self.spki)
                .verify(msg, sig)
                .is_ok()
    }

    /// Verifies an X.509 certificate signature as SPIRE's CAs make them: ECDSA (ASN.1) with
    /// SHA-256 on P-256 and SHA-384 on P-384, RSA PKCS#1 v1.5 with SHA-256.
    pub fn verify_x509(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &'static dyn signature::VerificationAlgorithm = match self.kind {
            PublicKeyKind::Ec(Curve::P256) => &signature::ECDSA_P256_SHA256_ASN1,
            PublicKeyKind::Ec(Curve::P384) => &signature::ECDSA_P384_SHA384_ASN1,
            PublicKeyKind::Ec(_) => return false,
            PublicKeyKind::Rsa { .. } => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        signature::UnparsedPublicKey::new(alg, &self.spki)
            .verify(msg, sig)
            .is_ok()
    }

    /// EC coordinates (x, y), for JWK encoding.
    pub fn ec_coordinates(&self) -> Option<(Curve, Vec<u8>, Vec<u8>)> {
        let PublicKeyKind::Ec(curve) = self.kind else {
            return None;
        };
        let (_, spki) = SubjectPublicKeyInfo::from_der(&self.spki).ok()?;
        let point: &[u8] = spki.subject_public_key.data.as_ref();
        let len = curve.coordinate_len();
        if point.len() != 1 + 2 * len || point[0] != 4 {
            return None;
        }
        Some((curve, point[1..=len].to_vec(), point[len + 1..].to_vec()))
    }

    /// RSA modulus and exponent (minimal big-endian), for JWK encoding.
    pub fn rsa_components(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(&self.spki).ok()?;
        match spki.parsed().ok()? {
            ParsedKey::RSA(rsa) => Some((trim_zeros(rsa.modulus), trim_zeros(rsa.exponent))),
            _ => None,
        }
    }

    /// PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        crate::pem_encode("PUBLIC KEY", &self.spki)
    }
}

fn trim_zeros(b: &[u8]) -> Vec<u8> {
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    b[start..].to_vec()
}

fn der_spki_from_parsed(parsed: &signature::ParsedPublicKey) -> Result<Vec<u8>, KeyError> {
    let der: aws_lc_rs::encoding::PublicKeyX509Der<'static> = parsed
        .as_der()
        .map_err(|_| KeyError::MalformedPublicKey("cannot encode".into()))?;
    Ok(der.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_round_trip() {
        for kt in KeyType::ALL {
            assert_eq!(kt.as_str().parse::<KeyType>().unwrap(), kt);
        }
        assert_eq!(
            "ec-p521".parse::<KeyType>(),
            Err(KeyError::UnknownKeyType("ec-p521".into()))
        );
    }

    #[test]
    fn generate_encode_parse_every_key_type() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let key = PrivateKey::generate(kt).unwrap();
            assert_eq!(key.key_type(), Some(kt));
            let again = PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
            assert_eq!(again.public_key(), key.public_key());
            let pem_again = PrivateKey::from_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(pem_again.public_key(), key.public_key());
            let public = PublicKey::from_spki_der(key.public_key().spki_der()).unwrap();
            assert_eq!(&public, key.public_key());
            assert_eq!(public.key_type(), Some(kt));
        }
    }

    #[test]
    fn rsa_4096_generates() {
        let key = PrivateKey::generate(KeyType::Rsa4096).unwrap();
        assert_eq!(key.public_key().kind(), PublicKeyKind::Rsa { bits: 4096 });
    }

    #[test]
    fn jwk_components_rebuild_the_key() {
        let ec = PrivateKey::generate(KeyType::EcP384).unwrap();
        let (curve, x, y) = ec.public_key().ec_coordinates().unwrap();
        assert_eq!(
            &PublicKey::from_ec_coordinates(curve, &x, &y).unwrap(),
            ec.public_key()
        );
        let rsa = PrivateKey::generate(KeyType::Rsa2048).unwrap();
        let (n, e) = rsa.public_key().rsa_components().unwrap();
        assert_eq!(e, vec![1, 0, 1]);
        assert_eq!(
            &PublicKey::from_rsa_components(&n, &e).unwrap(),
            rsa.public_key()
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            PrivateKey::from_pkcs8_der(b"nope"),
            Err(KeyError::MalformedPrivateKey(_))
        ));
        assert!(matches!(
            PublicKey::from_spki_der(b"nope"),
            Err(KeyError::MalformedPublicKey(_))
        ));
        assert!(matches!(
            PrivateKey::from_pem("junk"),
            Err(KeyError::Pem(_))
        ));
        assert!(PublicKey::from_ec_coordinates(Curve::P256, &[1; 31], &[1; 32]).is_err());
        // A point that is not on the curve.
        assert!(PublicKey::from_ec_coordinates(Curve::P256, &[1; 32], &[1; 32]).is_err());
    }

    #[test]
    fn jws_signatures_verify_only_with_matching_algorithm() {
        let ec = PrivateKey::generate(KeyType::EcP256).unwrap();
        let sig = ec.sign_jws(JwsAlgorithm::ES256, b"msg").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(
            ec.public_key()
                .verify_jws(JwsAlgorithm::ES256, b"msg", &sig)
        );
        assert!(
            !ec.public_key()
                .verify_jws(JwsAlgorithm::ES256, b"msh", &sig)
        );
        assert!(
            !ec.public_key()
                .verify_jws(JwsAlgorithm::ES384, b"msg", &sig)
        );
        assert!(
            !ec.public_key()
                .verify_jws(JwsAlgorithm::RS256, b"msg", &sig)
        );
        assert!(matches!(
            ec.sign_jws(JwsAlgorithm::RS256, b"msg"),
            Err(KeyError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn sec1_and_pkcs1_keys_parse() {
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'static> =
            ec.private_key().as_der().unwrap();
        let key = PrivateKey::from_any_der(sec1.as_ref()).unwrap();
        assert_eq!(key.key_type(), Some(KeyType::EcP256));
        let pem_text = crate::pem_encode("EC PRIVATE KEY", sec1.as_ref());
        assert_eq!(
            PrivateKey::from_pem(&pem_text).unwrap().public_key(),
            key.public_key()
        );
    }
}
