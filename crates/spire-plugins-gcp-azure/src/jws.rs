//! Compact JWS tokens signed with RS256, checked as go-jose v4 (SPIRE's JOSE library)
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
    keys: Vec<(String, RsaKey)>,
}

impl KeySet {
    pub fn new(keys: Vec<(String, RsaKey)>) -> Self {
        Self { keys }
    }

    pub fn get(&self, kid: &str) -> Option<&RsaKey> {
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
    pub fn verify_with(&self, key: &RsaKey) -> Result<&[u8], String> {
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
}
