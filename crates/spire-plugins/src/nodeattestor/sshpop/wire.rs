//! The small part of the SSH wire format `sshpop` needs (RFC 4251 §5, RFC 4253 §6.6, RFC
//! 5656, RFC 8709, OpenSSH's PROTOCOL.certkeys and PROTOCOL.key): public keys, certificates,
//! signatures and unencrypted OpenSSH private keys, parsed into types; signatures are checked
//! and made with aws-lc-rs. Error texts follow golang.org/x/crypto/ssh, which SPIRE uses.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use x509_parser::der_parser::num_bigint::BigUint;

/// Why SSH data could not be used; the text is what x/crypto/ssh says where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

const SHORT: &str = "ssh: short read";

/// Reads SSH wire values from a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, WireError> {
        let (head, rest) = self.0.split_first_chunk::<4>().ok_or_else(|| err(SHORT))?;
        self.0 = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let (head, rest) = self.0.split_first_chunk::<8>().ok_or_else(|| err(SHORT))?;
        self.0 = rest;
        Ok(u64::from_be_bytes(*head))
    }

    fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        if self.0.len() < len {
            return Err(err(SHORT));
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(s)
    }

    fn text(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.string()?.to_vec()).map_err(|_| err("ssh: invalid UTF-8 string"))
    }

    /// An mpint as unsigned big-endian bytes without leading zeros; negative values fail.
    fn mpint(&mut self) -> Result<Vec<u8>, WireError> {
        let raw = self.string()?;
        if raw.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(err("ssh: negative mpint"));
        }
        let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
        Ok(raw[start..].to_vec())
    }

    fn rest(&self) -> &'a [u8] {
        self.0
    }
}

pub(super) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

pub(super) fn put_mpint(out: &mut Vec<u8>, v: &[u8]) {
    let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    let v = &v[start..];
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(v.len() + 1);
        padded.push(0);
        padded.extend_from_slice(v);
        put_string(out, &padded);
    } else {
        put_string(out, v);
    }
}

/// The NIST curves of `ecdsa-sha2-*` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    /// nistp256, signatures over SHA-256.
    P256,
    /// nistp384, signatures over SHA-384.
    P384,
    /// nistp521, signatures over SHA-512.
    P521,
}

impl EcCurve {
    fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"nistp256" => Some(Self::P256),
            b"nistp384" => Some(Self::P384),
            b"nistp521" => Some(Self::P521),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::P256 => "nistp256",
            Self::P384 => "nistp384",
            Self::P521 => "nistp521",
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            Self::P256 => "ecdsa-sha2-nistp256",
            Self::P384 => "ecdsa-sha2-nistp384",
            Self::P521 => "ecdsa-sha2-nistp521",
        }
    }

    fn scalar_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    fn verify_alg(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    fn sign_alg(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            Self::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        }
    }
}

/// A plain (not certificate) SSH public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `ssh-rsa`: exponent and modulus, big-endian without leading zeros.
    Rsa {
        /// Public exponent.
        e: Vec<u8>,
        /// Modulus.
        n: Vec<u8>,
    },
    /// `ecdsa-sha2-<curve>`: the uncompressed point.
    Ecdsa {
        /// The curve.
        curve: EcCurve,
        /// SEC1 uncompressed point.
        point: Vec<u8>,
    },
    /// `ssh-ed25519`.
    Ed25519([u8; 32]),
}

const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

impl PublicKey {
    /// The key's SSH type name.
    pub fn key_type(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "ssh-rsa",
            Self::Ecdsa { curve, .. } => curve.key_type(),
            Self::Ed25519(_) => "ssh-ed25519",
        }
    }

    /// Reads the key fields that follow the type name `algo` (shared by plain keys and
    /// certificates).
    fn read_fields(algo: &str, r: &mut Reader<'_>) -> Result<Self, WireError> {
        match algo {
            "ssh-rsa" => {
                let e = r.mpint()?;
                let n = r.mpint()?;
                if e.len() > 4 {
                    return Err(err("ssh: exponent too large"));
                }
                Ok(Self::Rsa { e, n })
            }
            "ssh-ed25519" => {
                let k = r.string()?;
                let k: [u8; 32] = k.try_into().map_err(|_| {
                    err(format!(
                        "ssh: invalid size {} for Ed25519 public key",
                        k.len()
                    ))
                })?;
                Ok(Self::Ed25519(k))
            }
            _ => {
                let Some(curve) = algo
                    .strip_prefix("ecdsa-sha2-")
                    .and_then(|c| EcCurve::from_name(c.as_bytes()))
                else {
                    return Err(err(format!("ssh: unknown key algorithm: {algo}")));
                };
                let name = r.string()?;
                if name != curve.name().as_bytes() {
                    return Err(err("ssh: curve name mismatch"));
                }
                let point = r.string()?.to_vec();
                if point.len() != 1 + 2 * curve.scalar_len() || point[0] != 4 {
                    return Err(err("ssh: invalid curve point"));
                }
                Ok(Self::Ecdsa { curve, point })
            }
        }
    }

    /// Parses a public key blob; a certificate is not a plain key.
    pub fn parse(blob: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(blob);
        let algo = r.text()?;
        if algo.ends_with(CERT_SUFFIX) {
            return Err(err("ssh: signature key cannot be a cert"));
        }
        let key = Self::read_fields(&algo, &mut r)?;
        if !r.rest().is_empty() {
            return Err(err("ssh: junk at end of public key"));
        }
        Ok(key)
    }

    pub(super) fn put_fields(&self, out: &mut Vec<u8>) {
        match self {
            Self::Rsa { e, n } => {
                put_mpint(out, e);
                put_mpint(out, n);
            }
            Self::Ecdsa { curve, point } => {
                put_string(out, curve.name().as_bytes());
                put_string(out, point);
            }
            Self::Ed25519(k) => put_string(out, k),
        }
    }

    /// The key's wire blob.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, self.key_type().as_bytes());
        self.put_fields(&mut out);
        out
    }

    /// Checks `sig` over `data`, as x/crypto/ssh's `PublicKey.Verify`.
    pub fn verify(&self, data: &[u8], sig: &Signature) -> Result<(), WireError> {
        let wrong_type = || {
            err(format!(
                "ssh: signature type {} for key type {}",
                sig.format,
                self.key_type()
            ))
        };
        let bad = || err("ssh: signature did not verify");
        match self {
            Self::Ed25519(k) => {
                if sig.format != "ssh-ed25519" {
                    return Err(wrong_type());
                }
                signature::UnparsedPublicKey::new(&signature::ED25519, k)
                    .verify(data, &sig.blob)
                    .map_err(|_| bad())
            }
            Self::Ecdsa { curve, point } => {
                if sig.format != curve.key_type() {
                    return Err(wrong_type());
                }
                let mut r = Reader(&sig.blob);
                let (sr, ss) = (r.mpint()?, r.mpint()?);
                let n = curve.scalar_len();
                if sr.len() > n || ss.len() > n {
                    return Err(bad());
                }
                let mut fixed = vec![0u8; 2 * n];
                fixed[n - sr.len()..n].copy_from_slice(&sr);
                fixed[2 * n - ss.len()..].copy_from_slice(&ss);
                signature::UnparsedPublicKey::new(curve.verify_alg(), point)
                    .verify(data, &fixed)
                    .map_err(|_| bad())
            }
            Self::Rsa { e, n } => {
                let params: &signature::RsaParameters = match sig.format.as_str() {
                    "ssh-rsa" => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    "rsa-sha2-256" => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                    "rsa-sha2-512" => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
                    _ => return Err(wrong_type()),
                };
                // Signatures may be shorter than the modulus; pad them as OpenSSH does.
                let mut blob = sig.blob.clone();
                if blob.len() < n.len() {
                    let mut padded = vec![0u8; n.len() - blob.len()];
                    padded.extend_from_slice(&blob);
                    blob = padded;
                }
                RsaPublicKeyComponents { n, e }
                    .verify(params, data, &blob)
                    .map_err(|_| bad())
            }
        }
    }
}

/// An SSH signature: its format (algorithm) and blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The algorithm name (`ssh-ed25519`, `rsa-sha2-512`, ...).
    pub format: String,
    /// The algorithm's signature bytes.
    pub blob: Vec<u8>,
    /// Bytes after the blob (only security-key signatures have any).
    pub rest: Vec<u8>,
}

impl Signature {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let body = r.string()?;
        let mut b = Reader(body);
        let format = b.text()?;
        let blob = b.string()?.to_vec();
        Ok(Self {
            format,
            blob,
            rest: b.rest().to_vec(),
        })
    }
}

/// Certificate types (PROTOCOL.certkeys).
pub const USER_CERT: u32 = 1;
/// A host certificate.
pub const HOST_CERT: u32 = 2;
/// `valid before` of a certificate that never expires.
pub const CERT_TIME_INFINITY: u64 = u64::MAX;

/// An OpenSSH certificate (`*-cert-v01@openssh.com`).
#[derive(Debug, Clone)]
pub struct Certificate {
    raw: Vec<u8>,
    signed_len: usize,
    /// The certified key.
    pub key: PublicKey,
    /// Serial number.
    pub serial: u64,
    /// [`USER_CERT`] or [`HOST_CERT`].
    pub cert_type: u32,
    /// Key ID.
    pub key_id: String,
    /// Principals (host names for a host certificate).
    pub valid_principals: Vec<String>,
    /// Seconds since the epoch.
    pub valid_after: u64,
    /// Seconds since the epoch, or [`CERT_TIME_INFINITY`].
    pub valid_before: u64,
    /// Critical option names.
    pub critical_options: Vec<String>,
    /// The CA key, as a wire blob.
    pub signature_key: Vec<u8>,
    /// The CA's signature.
    pub signature: Signature,
}

fn name_list(data: &[u8]) -> Result<Vec<String>, WireError> {
    let mut r = Reader(data);
    let mut out = Vec::new();
    while !r.rest().is_empty() {
        out.push(r.text()?);
    }
    Ok(out)
}

fn option_names(data: &[u8]) -> Result<Vec<String>, WireError> {
    let mut r = Reader(data);
    let mut out = Vec::new();
    while !r.rest().is_empty() {
        out.push(r.text()?);
        r.string()?;
    }
    Ok(out)
}

impl Certificate {
    /// Parses a public key blob that must be a certificate: `Err` for malformed data,
    /// `Ok(None)` for a well-formed plain key.
    pub fn parse(blob: &[u8]) -> Result<Option<Self>, WireError> {
        let mut r = Reader(blob);
        let algo = r.text()?;
        let Some(base) = algo.strip_suffix(CERT_SUFFIX) else {
            PublicKey::parse(blob)?;
            return Ok(None);
        };
        let _nonce = r.string()?;
        let key = PublicKey::read_fields(base, &mut r)?;
        let serial = r.u64()?;
        let cert_type = r.u32()?;
        let key_id = r.text()?;
        let valid_principals = name_list(r.string()?)?;
        let valid_after = r.u64()?;
        let valid_before = r.u64()?;
        let critical_options = option_names(r.string()?)?;
        option_names(r.string()?)?;
        let _reserved = r.string()?;
        let signature_key = r.string()?.to_vec();
        PublicKey::parse(&signature_key)?;
        let signed_len = blob.len() - r.rest().len();
        let signature = Signature::read(&mut r)?;
        if !r.rest().is_empty() {
            return Err(err("ssh: trailing junk after certificate"));
        }
        Ok(Some(Self {
            raw: blob.to_vec(),
            signed_len,
            key,
            serial,
            cert_type,
            key_id,
            valid_principals,
            valid_after,
            valid_before,
            critical_options,
            signature_key,
            signature,
        }))
    }

    /// The whole certificate blob.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The bytes the CA signed (everything before the signature).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..self.signed_len]
    }

    /// The certificate's type name.
    pub fn key_type(&self) -> String {
        format!("{}{CERT_SUFFIX}", self.key.key_type())
    }
}

/// Splits one `authorized_keys`-style line (`[options] type base64 [comment]`) and
/// returns the decoded key blob, as x/crypto/ssh's `ParseAuthorizedKey`.
pub fn parse_authorized_key(text: &str) -> Result<Vec<u8>, WireError> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(blob) = key_fields(line) {
            return Ok(blob);
        }
        // Options come first: skip them (respecting quotes) and try again.
        let mut in_quote = false;
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            match c {
                '"' => in_quote = !in_quote,
                ' ' | '\t' if !in_quote => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        if let Some(blob) = key_fields(line[end..].trim_start()) {
            return Ok(blob);
        }
    }
    Err(err("ssh: no key found"))
}

fn key_fields(line: &str) -> Option<Vec<u8>> {
    let mut fields = line.split_whitespace();
    let algo = fields.next()?;
    let blob = STANDARD.decode(fields.next()?).ok()?;
    let mut r = Reader(&blob);
    let inner = r.text().ok()?;
    (inner == algo).then_some(blob)
}

/// A host private key that signs challenges.
pub enum PrivateKey {
    /// Ed25519.
    Ed25519(Ed25519KeyPair),
    /// ECDSA on a NIST curve.
    Ecdsa(EcCurve, EcdsaKeyPair),
    /// RSA (signs `rsa-sha2-512`).
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Ed25519(_) => "ssh-ed25519",
            Self::Ecdsa(c, _) => c.key_type(),
            Self::Rsa(_) => "ssh-rsa",
        };
        f.debug_tuple("PrivateKey").field(&kind).finish()
    }
}

const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

impl PrivateKey {
    /// Parses a private key file: OpenSSH's own format (what `ssh-keygen` writes) or PEM
    /// (PKCS#1, SEC1, PKCS#8) RSA and ECDSA keys.
    pub fn parse(text: &str) -> Result<Self, WireError> {
        const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
        const END: &str = "-----END OPENSSH PRIVATE KEY-----";
        let Some(start) = text.find(BEGIN) else {
            return Self::from_pem(text);
        };
        let body = &text[start + BEGIN.len()..];
        let body = body
            .find(END)
            .map(|e| &body[..e])
            .ok_or_else(|| err("ssh: no key found"))?;
        let b64: String = body.split_whitespace().collect();
        let raw = STANDARD
            .decode(b64)
            .map_err(|e| err(format!("ssh: invalid openssh private key format: {e}")))?;
        Self::from_openssh(&raw)
    }

    fn from_pem(text: &str) -> Result<Self, WireError> {
        if !text.contains("-----BEGIN") {
            return Err(err("ssh: no key found"));
        }
        let key = spiffe_core::PrivateKey::from_pem(text).map_err(|e| err(e.to_string()))?;
        let pkcs8 = key.pkcs8_der();
        match key.curve() {
            Some(c) => {
                let curve = match c {
                    spiffe_core::keys::Curve::P256 => EcCurve::P256,
                    spiffe_core::keys::Curve::P384 => EcCurve::P384,
                    spiffe_core::keys::Curve::P521 => EcCurve::P521,
                };
                let pair = EcdsaKeyPair::from_pkcs8(curve.sign_alg(), pkcs8)
                    .map_err(|e| err(e.to_string()))?;
                Ok(Self::Ecdsa(curve, pair))
            }
            None => Ok(Self::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| err(e.to_string()))?,
            )),
        }
    }

    fn from_openssh(raw: &[u8]) -> Result<Self, WireError> {
        let rest = raw
            .strip_prefix(OPENSSH_MAGIC)
            .ok_or_else(|| err("ssh: invalid openssh private key format"))?;
        let mut r = Reader(rest);
        let cipher = r.text()?;
        let _kdf = r.text()?;
        let _kdf_opts = r.string()?;
        let nkeys = r.u32()?;
        if nkeys != 1 {
            return Err(err("ssh: multi-key files are not supported"));
        }
        let _public = r.string()?;
        let private = r.string()?;
        if cipher != "none" {
            return Err(err("ssh: this private key is passphrase protected"));
        }
        let mut p = Reader(private);
        if p.u32()? != p.u32()? {
            return Err(err("ssh: malformed OpenSSH key"));
        }
        let algo = p.text()?;
        match algo.as_str() {
            "ssh-ed25519" => {
                let public = p.string()?;
                let private = p.string()?;
                if public.len() != 32 || private.len() != 64 {
                    return Err(err("ssh: private key unexpected length"));
                }
                Ed25519KeyPair::from_seed_and_public_key(&private[..32], public)
                    .map(Self::Ed25519)
                    .map_err(|_| err("ssh: malformed OpenSSH key"))
            }
            "ssh-rsa" => {
                let n = p.mpint()?;
                let e = p.mpint()?;
                let d = p.mpint()?;
                let iqmp = p.mpint()?;
                let pp = p.mpint()?;
                let q = p.mpint()?;
                let der = pkcs1_der(&n, &e, &d, &pp, &q, &iqmp)?;
                RsaKeyPair::from_der(&der)
                    .map(Self::Rsa)
                    .map_err(|e| err(format!("ssh: malformed OpenSSH key: {e}")))
            }
            other => {
                let Some(curve) = other
                    .strip_prefix("ecdsa-sha2-")
                    .and_then(|c| EcCurve::from_name(c.as_bytes()))
                else {
                    return Err(err(format!("ssh: unhandled key type {other:?}")));
                };
                let _name = p.string()?;
                let point = p.string()?;
                let d = p.mpint()?;
                let n = curve.scalar_len();
                if d.len() > n {
                    return Err(err("ssh: malformed OpenSSH key"));
                }
                let mut scalar = vec![0u8; n];
                scalar[n - d.len()..].copy_from_slice(&d);
                EcdsaKeyPair::from_private_key_and_public_key(curve.sign_alg(), &scalar, point)
                    .map(|k| Self::Ecdsa(curve, k))
                    .map_err(|e| err(format!("ssh: malformed OpenSSH key: {e}")))
            }
        }
    }

    /// The public half, as SSH encodes it.
    pub fn public_key(&self) -> Result<PublicKey, WireError> {
        match self {
            Self::Ed25519(k) => {
                let bytes: [u8; 32] = k
                    .public_key()
                    .as_ref()
                    .try_into()
                    .map_err(|_| err("ssh: bad Ed25519 public key"))?;
                Ok(PublicKey::Ed25519(bytes))
            }
            Self::Ecdsa(curve, k) => Ok(PublicKey::Ecdsa {
                curve: *curve,
                point: k.public_key().as_ref().to_vec(),
            }),
            Self::Rsa(k) => {
                let c = k.public_key();
                let n = c.modulus().big_endian_without_leading_zero().to_vec();
                let e = c.exponent().big_endian_without_leading_zero().to_vec();
                Ok(PublicKey::Rsa { e, n })
            }
        }
    }

    /// Signs `data`: Ed25519, ECDSA over the curve's hash, RSA as `rsa-sha2-512`.
    pub fn sign(&self, data: &[u8]) -> Result<Signature, WireError> {
        let rng = SystemRandom::new();
        let failed = || err("ssh: signing failed");
        let (format, blob) = match self {
            Self::Ed25519(k) => ("ssh-ed25519".to_string(), k.sign(data).as_ref().to_vec()),
            Self::Ecdsa(curve, k) => {
                let sig = k.sign(&rng, data).map_err(|_| failed())?;
                let (r, s) = sig.as_ref().split_at(curve.scalar_len());
                let mut blob = Vec::new();
                put_mpint(&mut blob, r);
                put_mpint(&mut blob, s);
                (curve.key_type().to_string(), blob)
            }
            Self::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA512, &rng, data, &mut sig)
                    .map_err(|_| failed())?;
                ("rsa-sha2-512".to_string(), sig)
            }
        };
        Ok(Signature {
            format,
            blob,
            rest: Vec::new(),
        })
    }
}

/// PKCS#1 `RSAPrivateKey` from OpenSSH's RSA fields (which lack the CRT exponents).
fn pkcs1_der(
    n: &[u8],
    e: &[u8],
    d: &[u8],
    p: &[u8],
    q: &[u8],
    iqmp: &[u8],
) -> Result<Vec<u8>, WireError> {
    let big = BigUint::from_bytes_be;
    let one = BigUint::from(1u8);
    let (bd, bp, bq) = (big(d), big(p), big(q));
    if bp <= one || bq <= one {
        return Err(err("ssh: malformed OpenSSH key"));
    }
    let dp = (&bd % (&bp - &one)).to_bytes_be();
    let dq = (&bd % (&bq - &one)).to_bytes_be();
    let mut body = Vec::new();
    for v in [&[0u8][..], n, e, d, p, q, &dp, &dq, iqmp] {
        der_integer(&mut body, v);
    }
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend(body);
    Ok(out)
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - start) as u8);
        out.extend_from_slice(&bytes[start..]);
    }
}

fn der_integer(out: &mut Vec<u8>, v: &[u8]) {
    let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    let mut body = v[start..].to_vec();
    if body.first().is_none_or(|b| b & 0x80 != 0) {
        body.insert(0, 0);
    }
    out.push(0x02);
    der_len(out, body.len());
    out.extend(body);
}
