//! Compact JWS tokens signed with RSA (RS*, PS*) or ECDSA (ES*), checked as go-jose v4 (SPIRE's JOSE library)
//! checks them: parsing, the key picked by `kid` from a key set, the signature, then the
//! registered claims with go-jose's one-minute leeway. Error texts are go-jose's, since
//! SPIRE puts them in its messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// go-jose's `jwt.DefaultLeeway`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// An RSA public key (big-endian modulus and exponent).
#[derive(Clone, PartialEq, Eq)]
pub struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits)", self.n.len() * 8)
    }
}

impl RsaKey {
    /// The key from its modulus and exponent (leading zero bytes are dropped).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let strip = |b: &[u8]| {
            let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
            b[start..].to_vec()
        };
        let (n, e) = (strip(n), strip(e));
        if n.is_empty() || e.is_empty() {
            return Err("empty RSA modulus or exponent".into());
        }
        Ok(Self { n, e })
    }

    /// The RSA key of a certificate in PEM.
    pub fn from_certificate_pem(pem: &str) -> Result<Self, CertError> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| CertError::Pem)?;
        if block.label != "CERTIFICATE" {
            return Err(CertError::Pem);
        }
        let cert = block.parse_x509().map_err(|_| CertError::Certificate)?;
        match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                Self::from_components(rsa.modulus, rsa.exponent).map_err(|_| CertError::NotRsa)
            }
            _ => Err(CertError::NotRsa),
        }
    }

    /// The key of a JWK of type `RSA` (`n` and `e` in base64url).
    pub fn from_jwk(n: &str, e: &str) -> Result<Self, String> {
        let n = URL_SAFE_NO_PAD
            .decode(n.trim_end_matches('='))
            .map_err(|e| format!("invalid RSA modulus: {e}"))?;
        let e = URL_SAFE_NO_PAD
            .decode(e.trim_end_matches('='))
            .map_err(|e| format!("invalid RSA exponent: {e}"))?;
        Self::from_components(&n, &e)
    }

    fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature as sig;
        let params: &sig::RsaParameters = match alg {
            "RS256" => &RSA_PKCS1_2048_8192_SHA256,
            "RS384" => &sig::RSA_PKCS1_2048_8192_SHA384,
            "RS512" => &sig::RSA_PKCS1_2048_8192_SHA512,
            "PS256" => &sig::RSA_PSS_2048_8192_SHA256,
            "PS384" => &sig::RSA_PSS_2048_8192_SHA384,
            "PS512" => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return false,
        };
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(params, message, signature)
        .is_ok()
    }
}

/// The curves of ECDSA JWKs (`crv`), with their JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    P256,
    P384,
    P521,
}

impl EcCurve {
    /// The curve a JWK's `crv` names.
    pub fn from_crv(crv: &str) -> Option<Self> {
        match crv {
            "P-256" => Some(Self::P256),
            "P-384" => Some(Self::P384),
            "P-521" => Some(Self::P521),
            _ => None,
        }
    }

    /// Bytes of a coordinate (and of each of `r` and `s` in a JWS signature).
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    fn alg(self) -> &'static str {
        match self {
            Self::P256 => "ES256",
            Self::P384 => "ES384",
            Self::P521 => "ES512",
        }
    }
}

/// An ECDSA public key (the uncompressed point).
#[derive(Clone, PartialEq, Eq)]
pub struct EcKey {
    curve: EcCurve,
    point: Vec<u8>,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcKey({:?})", self.curve)
    }
}

impl EcKey {
    /// The key from its big-endian coordinates, each exactly the curve's size (go-jose
    /// refuses a JWK whose `x` or `y` has another length).
    pub fn from_coordinates(curve: EcCurve, x: &[u8], y: &[u8]) -> Result<Self, String> {
        let len = curve.coordinate_len();
        if x.is_empty() || y.is_empty() {
            return Err("go-jose/go-jose: invalid EC key, missing x/y values".into());
        }
        if x.len() != len {
            return Err("go-jose/go-jose: invalid EC public key, wrong length for x".into());
        }
        if y.len() != len {
            return Err("go-jose/go-jose: invalid EC public key, wrong length for y".into());
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Ok(Self { curve, point })
    }

    /// The key of a JWK of type `EC` (`crv`, and `x`, `y` in base64url).
    pub fn from_jwk(crv: &str, x: &str, y: &str) -> Result<Self, String> {
        let curve = EcCurve::from_crv(crv)
            .ok_or_else(|| format!("go-jose/go-jose: unsupported elliptic curve '{crv}'"))?;
        let x = URL_SAFE_NO_PAD
            .decode(x.trim_end_matches('='))
            .map_err(|e| format!("invalid EC x coordinate: {e}"))?;
        let y = URL_SAFE_NO_PAD
            .decode(y.trim_end_matches('='))
            .map_err(|e| format!("invalid EC y coordinate: {e}"))?;
        Self::from_coordinates(curve, &x, &y)
    }

    /// go-jose: the algorithm must match the curve and the signature be `r || s` of the
    /// curve's size.
    fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature as sig;
        if alg != self.curve.alg() || signature.len() != 2 * self.curve.coordinate_len() {
            return false;
        }
        let params: &sig::EcdsaVerificationAlgorithm = match self.curve {
            EcCurve::P256 => &sig::ECDSA_P256_SHA256_FIXED,
            EcCurve::P384 => &sig::ECDSA_P384_SHA384_FIXED,
            EcCurve::P521 => &sig::ECDSA_P521_SHA512_FIXED,
        };
        sig::UnparsedPublicKey::new(params, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

/// A verification key of a key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa(RsaKey),
    Ec(EcKey),
}

impl From<RsaKey> for PublicKey {
    fn from(k: RsaKey) -> Self {
        Self::Rsa(k)
    }
}

impl From<EcKey> for PublicKey {
    fn from(k: EcKey) -> Self {
        Self::Ec(k)
    }
}

impl PublicKey {
    /// Whether `signature` over `message` is valid for `alg` with this key; an algorithm
    /// of the other key type fails, as in go-jose.
    pub fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Rsa(k) => k.verify(alg, message, signature),
            Self::Ec(k) => k.verify(alg, message, signature),
        }
    }
}

/// Why a PEM certificate gave no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("malformed PEM block")]
    Pem,
    #[error("malformed certificate PEM")]
    Certificate,
    #[error("certificate key is not RSA")]
    NotRsa,
}

/// Keys by key ID, as a JWK set holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<(String, PublicKey)>,
}

impl KeySet {
    pub fn new(keys: Vec<(String, PublicKey)>) -> Self {
        Self { keys }
    }

    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct ParsedJws {
    alg: String,
    signing_input: String,
    signature: Vec<u8>,
    kid: Option<String>,
    payload: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

const COMPACT: &str = "go-jose/go-jose: compact JWS format must have three parts";

/// Parses a compact JWS, accepting only RS256 (go-jose's `jwt.ParseSigned` with
/// `[RS256]`).
pub fn parse_rs256(token: &str) -> Result<ParsedJws, String> {
    parse(token, &["RS256"])
}

/// Parses a compact JWS whose `alg` is one of `allowed` (go-jose's `jwt.ParseSigned`).
pub fn parse(token: &str, allowed: &[&str]) -> Result<ParsedJws, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err(COMPACT.into());
    };
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|e| format!("go-jose/go-jose: invalid header: {e}"))?;
    let alg = header.alg.unwrap_or_default();
    if !allowed.contains(&alg.as_str()) {
        let expected: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        return Err(format!(
            "unexpected signature algorithm {alg:?}; expected [{}]",
            expected.join(" ")
        ));
    }
    if header.crit.is_some() {
        return Err("go-jose/go-jose: unsupported crit header".into());
    }
    Ok(ParsedJws {
        alg,
        signing_input: format!("{h}.{p}"),
        signature,
        kid: header.kid.filter(|k| !k.is_empty()),
        payload,
    })
}

impl ParsedJws {
    /// Verifies the signature with the key `kid` names in `keys` and returns the payload.
    pub fn verify(&self, keys: &KeySet) -> Result<&[u8], String> {
        let key = self
            .kid
            .as_deref()
            .and_then(|kid| keys.get(kid))
            .ok_or("go-jose/go-jose: JWK with matching kid not found in JWK Set")?;
        self.verify_with(key)
    }

    /// Verifies the signature with `key` and returns the payload.
    pub fn verify_with(&self, key: &PublicKey) -> Result<&[u8], String> {
        if !key.verify(&self.alg, self.signing_input.as_bytes(), &self.signature) {
            return Err("go-jose/go-jose: error in cryptographic primitive".into());
        }
        Ok(&self.payload)
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The payload without any check (tests, error reports).
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }
}

/// The registered claims go-jose checks.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "audience")]
    pub aud: Vec<String>,
    #[serde(default)]
    pub exp: Option<f64>,
    #[serde(default)]
    pub nbf: Option<f64>,
    #[serde(default)]
    pub iat: Option<f64>,
}

fn audience<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => Vec::new(),
        Some(Aud::One(s)) => vec![s],
        Some(Aud::Many(v)) => v,
    })
}

/// What the claims must satisfy (go-jose's `jwt.Expected`).
#[derive(Debug, Clone, Default)]
pub struct Expected<'a> {
    pub issuer: Option<&'a str>,
    pub any_audience: &'a [&'a str],
    pub now: Option<SystemTime>,
}

fn secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Claims {
    /// go-jose's `Claims.ValidateWithLeeway` with [`LEEWAY`]. NumericDates are whole
    /// seconds in go-jose, so fractions are dropped as it does.
    pub fn validate(&self, e: &Expected<'_>) -> Result<(), &'static str> {
        self.validate_with_leeway(e, LEEWAY)
    }

    /// go-jose's `Claims.ValidateWithLeeway`.
    pub fn validate_with_leeway(
        &self,
        e: &Expected<'_>,
        leeway: Duration,
    ) -> Result<(), &'static str> {
        if let Some(iss) = e.issuer
            && self.iss.as_deref() != Some(iss)
        {
            return Err("go-jose/go-jose/jwt: validation failed, invalid issuer claim (iss)");
        }
        if !e.any_audience.is_empty()
            && !e
                .any_audience
                .iter()
                .any(|a| self.aud.iter().any(|x| x == a))
        {
            return Err("go-jose/go-jose/jwt: validation failed, invalid audience claim (aud)");
        }
        let now = secs(e.now.unwrap_or_else(SystemTime::now));
        let leeway = leeway.as_secs_f64();
        if let Some(nbf) = self.nbf
            && now + leeway < nbf.trunc()
        {
            return Err("go-jose/go-jose/jwt: validation failed, token not valid yet (nbf)");
        }
        if let Some(exp) = self.exp
            && now - leeway > exp.trunc()
        {
            return Err("go-jose/go-jose/jwt: validation failed, token is expired (exp)");
        }
        if let Some(iat) = self.iat
            && now + leeway < iat.trunc()
        {
            return Err("go-jose/go-jose/jwt: validation field, token issued in the future (iat)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestKey;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn valid_token_verifies_and_claims_pass() {
        let key = TestKey::generate("kid1");
        let token =
            key.sign(&serde_json::json!({"aud": "a", "exp": 1_700_000_100, "iat": 1_700_000_000}));
        let parsed = parse_rs256(&token).unwrap();
        let payload = parsed.verify(&key.key_set()).unwrap();
        let claims: Claims = serde_json::from_slice(payload).unwrap();
        let e = Expected {
            any_audience: &["a"],
            now: Some(now()),
            ..Default::default()
        };
        claims.validate(&e).unwrap();
    }

    #[test]
    fn tampered_unknown_kid_and_alg_are_refused_with_go_jose_texts() {
        let key = TestKey::generate("kid1");
        let token = key.sign(&serde_json::json!({"aud": "a"}));
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"aud":"b"}"#);
        let tampered = parts.join(".");
        assert_eq!(
            parse_rs256(&tampered)
                .unwrap()
                .verify(&key.key_set())
                .unwrap_err(),
            "go-jose/go-jose: error in cryptographic primitive"
        );
        let other = TestKey::generate("kid2");
        assert_eq!(
            parse_rs256(&token)
                .unwrap()
                .verify(&other.key_set())
                .unwrap_err(),
            "go-jose/go-jose: JWK with matching kid not found in JWK Set"
        );
        assert_eq!(parse_rs256("a.b").unwrap_err(), COMPACT);
        let hs = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(b"{}"),
            URL_SAFE_NO_PAD.encode(b"x")
        );
        assert_eq!(
            parse_rs256(&hs).unwrap_err(),
            "unexpected signature algorithm \"HS256\"; expected [\"RS256\"]"
        );
    }

    #[test]
    fn claims_follow_go_jose_leeway() {
        let at = |exp: f64| Claims {
            aud: vec!["a".into()],
            exp: Some(exp),
            ..Default::default()
        };
        let e = Expected {
            any_audience: &["a"],
            now: Some(now()),
            ..Default::default()
        };
        // Expired 59 s ago: within the minute of leeway.
        at(1_700_000_000.0 - 59.0).validate(&e).unwrap();
        assert_eq!(
            at(1_700_000_000.0 - 61.0).validate(&e).unwrap_err(),
            "go-jose/go-jose/jwt: validation failed, token is expired (exp)"
        );
        let wrong = Expected {
            any_audience: &["b"],
            now: Some(now()),
            ..Default::default()
        };
        assert_eq!(
            at(1_800_000_000.0).validate(&wrong).unwrap_err(),
            "go-jose/go-jose/jwt: validation failed, invalid audience claim (aud)"
        );
        let future = Claims {
            iat: Some(1_700_000_000.0 + 61.0),
            ..Default::default()
        };
        assert!(future.validate(&e).is_err());
    }

    fn signing_input(alg: &str, kid: &str) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#)),
            URL_SAFE_NO_PAD.encode(br#"{"aud":"a"}"#)
        )
    }

    const ALL: &[&str] = &[
        "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
    ];

    /// A token of every RSA algorithm verifies with the RSA key, and not under another
    /// algorithm's name or with an EC key.
    #[test]
    fn rsa_pkcs1_and_pss_tokens_verify() {
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::{self as sig, KeyPair as _};
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let c: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let key: PublicKey = RsaKey::from_components(&c.n, &c.e).unwrap().into();
        let keys = KeySet::new(vec![("k".into(), key)]);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let algs: [(&str, &'static dyn sig::RsaEncoding); 6] = [
            ("RS256", &sig::RSA_PKCS1_SHA256),
            ("RS384", &sig::RSA_PKCS1_SHA384),
            ("RS512", &sig::RSA_PKCS1_SHA512),
            ("PS256", &sig::RSA_PSS_SHA256),
            ("PS384", &sig::RSA_PSS_SHA384),
            ("PS512", &sig::RSA_PSS_SHA512),
        ];
        for (alg, enc) in algs {
            let input = signing_input(alg, "k");
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(enc, &rng, input.as_bytes(), &mut signature)
                .unwrap();
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
            let parsed = parse(&token, ALL).unwrap();
            assert_eq!(parsed.verify(&keys).unwrap(), br#"{"aud":"a"}"#, "{alg}");
            // The same signature under another algorithm's name fails.
            let other = if alg.starts_with("RS") {
                "PS256"
            } else {
                "RS256"
            };
            let relabelled = format!(
                "{}.{}",
                signing_input(other, "k"),
                URL_SAFE_NO_PAD.encode(&signature)
            );
            assert_eq!(
                parse(&relabelled, ALL).unwrap().verify(&keys).unwrap_err(),
                "go-jose/go-jose: error in cryptographic primitive"
            );
        }
    }

    /// ES256/384/512 tokens verify with a P-256/P-384/P-521 JWK; a curve that does not
    /// match the algorithm, a wrong-sized or tampered signature, or an RSA key fail.
    #[test]
    fn ecdsa_tokens_verify_on_their_curve_only() {
        use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let curves: [(&str, &str, &'static sig::EcdsaSigningAlgorithm); 3] = [
            ("ES256", "P-256", &sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            ("ES384", "P-384", &sig::ECDSA_P384_SHA384_FIXED_SIGNING),
            ("ES512", "P-521", &sig::ECDSA_P521_SHA512_FIXED_SIGNING),
        ];
        let mut tokens = Vec::new();
        let mut jwks = Vec::new();
        for (alg, crv, signing) in curves {
            let pair = EcdsaKeyPair::generate(signing).unwrap();
            let point = pair.public_key().as_ref().to_vec();
            let len = (point.len() - 1) / 2;
            let (x, y) = (&point[1..1 + len], &point[1 + len..]);
            let key = EcKey::from_jwk(crv, &URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
                .unwrap();
            let input = signing_input(alg, crv);
            let signature = pair.sign(&rng, input.as_bytes()).unwrap();
            assert_eq!(signature.as_ref().len(), 2 * len);
            tokens.push((alg, input, signature.as_ref().to_vec()));
            jwks.push((crv.to_string(), PublicKey::from(key)));
        }
        let keys = KeySet::new(jwks.clone());
        // The same keys through Azure's JWKS parser (EC next to an RSA key and an
        // unknown type, which is left out).
        let rsa = crate::fixtures::TestKey::generate("rsa");
        let mut listed = vec![rsa.jwk(), serde_json::json!({"kty": "oct", "kid": "o"})];
        for (kid, key) in &jwks {
            let PublicKey::Ec(ec) = key else { continue };
            let len = ec.curve.coordinate_len();
            listed.push(serde_json::json!({
                "kty": "EC", "kid": kid, "crv": kid,
                "x": URL_SAFE_NO_PAD.encode(&ec.point[1..1 + len]),
                "y": URL_SAFE_NO_PAD.encode(&ec.point[1 + len..]),
            }));
        }
        let body = serde_json::json!({ "keys": listed }).to_string();
        let parsed_set = crate::azure::parse_jwks(body.as_bytes()).unwrap();
        assert_eq!(parsed_set.len(), 4);
        for (kid, key) in &jwks {
            assert_eq!(parsed_set.get(kid), Some(key));
        }
        for (alg, input, signature) in &tokens {
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
            let parsed = parse(&token, ALL).unwrap();
            assert_eq!(parsed.verify(&keys).unwrap(), br#"{"aud":"a"}"#, "{alg}");
            // Every other key (other curves, an RSA key) refuses it.
            for (kid, key) in &jwks {
                if Some(kid.as_str()) != parsed.kid() {
                    assert!(parsed.verify_with(key).is_err(), "{alg} with {kid}");
                }
            }
            let mut short = signature.clone();
            short.pop();
            let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&short));
            assert!(parse(&bad, ALL).unwrap().verify(&keys).is_err());
            let mut flipped = signature.clone();
            flipped[3] ^= 1;
            let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&flipped));
            assert_eq!(
                parse(&bad, ALL).unwrap().verify(&keys).unwrap_err(),
                "go-jose/go-jose: error in cryptographic primitive"
            );
        }
        let rsa = crate::fixtures::TestKey::generate("r").rsa_key();
        let (_, input, signature) = &tokens[0];
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
        assert!(
            parse(&token, ALL)
                .unwrap()
                .verify_with(&rsa.into())
                .is_err()
        );
    }

    #[test]
    fn ec_jwks_are_checked_like_go_jose() {
        let b = |n: usize| URL_SAFE_NO_PAD.encode(vec![1u8; n]);
        assert!(EcKey::from_jwk("P-256", &b(32), &b(32)).is_ok());
        assert_eq!(
            EcKey::from_jwk("P-256", &b(31), &b(32)).unwrap_err(),
            "go-jose/go-jose: invalid EC public key, wrong length for x"
        );
        assert_eq!(
            EcKey::from_jwk("P-521", &b(66), &b(65)).unwrap_err(),
            "go-jose/go-jose: invalid EC public key, wrong length for y"
        );
        assert_eq!(
            EcKey::from_jwk("P-256", "", &b(32)).unwrap_err(),
            "go-jose/go-jose: invalid EC key, missing x/y values"
        );
        assert_eq!(
            EcKey::from_jwk("secp256k1", &b(32), &b(32)).unwrap_err(),
            "go-jose/go-jose: unsupported elliptic curve 'secp256k1'"
        );
    }
}
