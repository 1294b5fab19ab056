//! JWT-SVIDs: JWS compact serialization, signing and validation per the JWT-SVID standard,
//! with SPIRE's stricter rule that the `kid` header is required.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::bundle::JwtBundleSource;
use crate::id::{IdError, SpiffeId, TrustDomain};
use crate::keys::{JwsAlgorithm, KeyError, PrivateKey};

/// Clock skew tolerated on `exp`, `nbf` and `iat`, as go-jose (and so SPIRE) allows.
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

/// Why a token is not a valid JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtSvidError {
    /// Not three base64url parts of JSON.
    #[error("unable to parse JWT token: {0}")]
    Malformed(String),
    /// `alg` is missing or not an allowed asymmetric algorithm (`none` and HMAC included).
    #[error("unable to parse JWT token: unexpected signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No `kid` header.
    #[error("token header missing key id")]
    MissingKeyId,
    /// `typ` present but neither `JWT` nor `JOSE`.
    #[error("token header has unsupported type {0:?}")]
    UnsupportedType(String),
    /// A `crit` header, which we never understand.
    #[error("token header has unsupported critical extensions")]
    CriticalHeader,
    /// No `sub` claim.
    #[error("token missing subject claim")]
    MissingSubject,
    /// `sub` is not a SPIFFE ID.
    #[error("token has in invalid subject claim: {0}")]
    InvalidSubject(IdError),
    /// No `exp` claim.
    #[error("token missing exp claim")]
    MissingExpiry,
    /// No `aud` claim, or an empty one.
    #[error("token missing audience claim")]
    MissingAudience,
    /// A claim has the wrong JSON type.
    #[error("token claim {0:?} has an invalid type")]
    BadClaimType(&'static str),
    /// No bundle for the subject's trust domain.
    #[error("no keys found for trust domain {0:?}")]
    NoBundle(TrustDomain),
    /// The bundle has no key with this `kid`.
    #[error("public key {key_id:?} not found in trust domain {trust_domain:?}")]
    UnknownKeyId {
        /// The `kid` header.
        key_id: String,
        /// The subject's trust domain.
        trust_domain: TrustDomain,
    },
    /// The signature does not verify.
    #[error("go-jose/go-jose: error in cryptographic primitive")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("go-jose/go-jose/jwt: validation failed, token not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("go-jose/go-jose/jwt: validation field, token issued in the future (iat)")]
    IssuedInFuture,
    /// None of the expected audiences is in `aud`.
    #[error("expected audience in {expected:?} (audience={actual:?})")]
    AudienceMismatch {
        /// What the validator wanted.
        expected: Vec<String>,
        /// What the token carries.
        actual: Vec<String>,
    },
    /// Signing failed.
    #[error("failed to sign JWT SVID: {0}")]
    Signing(KeyError),
}

/// A JWT-SVID whose header and claims have been parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSvid {
    token: String,
    id: SpiffeId,
    audience: Vec<String>,
    expiry: i64,
    key_id: Option<String>,
    algorithm: JwsAlgorithm,
    claims: Map<String, Value>,
}

struct Parts<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

fn decode_json(part: &str, what: &str) -> Result<Map<String, Value>, JwtSvidError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtSvidError::Malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JwtSvidError::Malformed(format!(
            "{what} is not a JSON object"
        ))),
        Err(e) => Err(JwtSvidError::Malformed(format!("{what}: {e}"))),
    }
}

fn split(token: &str) -> Result<Parts<'_>, JwtSvidError> {
    let mut it = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JwtSvidError::Malformed(
            "compact JWS format must have three parts".into(),
        ));
    };
    let header = decode_json(h, "header")?;
    let claims = decode_json(c, "claims")?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtSvidError::Malformed("signature is not base64url".into()))?;
    Ok(Parts {
        signing_input: &token[..h.len() + 1 + c.len()],
        signature,
        header,
        claims,
    })
}

fn string_list(v: &Value, name: &'static str) -> Result<Vec<String>, JwtSvidError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or(JwtSvidError::BadClaimType(name))
            })
            .collect(),
        _ => Err(JwtSvidError::BadClaimType(name)),
    }
}

fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, JwtSvidError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(JwtSvidError::BadClaimType(name)),
        Some(_) => Err(JwtSvidError::BadClaimType(name)),
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl JwtSvid {
    /// Parses the header and claims without checking the signature or time. The header
    /// rules (allowed `alg`, `kid` present, `typ`) and the required claims are checked.
    pub fn parse_insecure(token: &str) -> Result<Self, JwtSvidError> {
        let parts = split(token)?;
        Self::from_parts(token, &parts)
    }

    fn from_parts(token: &str, parts: &Parts<'_>) -> Result<Self, JwtSvidError> {
        let alg = parts
            .header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or("");
        let algorithm = JwsAlgorithm::parse(alg)
            .ok_or_else(|| JwtSvidError::UnsupportedAlgorithm(alg.to_string()))?;
        if parts.header.contains_key("crit") {
            return Err(JwtSvidError::CriticalHeader);
        }
        match parts.header.get("typ") {
            None => {}
            Some(Value::String(t)) if t == "JWT" || t == "JOSE" => {}
            Some(other) => {
                let t = other
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string());
                return Err(JwtSvidError::UnsupportedType(t));
            }
        }
        let key_id = match parts.header.get("kid") {
            None => None,
            Some(Value::String(k)) if !k.is_empty() => Some(k.clone()),
            Some(_) => return Err(JwtSvidError::MissingKeyId),
        };
        let sub = match parts.claims.get("sub") {
            None => return Err(JwtSvidError::MissingSubject),
            Some(Value::String(s)) if s.is_empty() => return Err(JwtSvidError::MissingSubject),
            Some(Value::String(s)) => s,
            Some(_) => return Err(JwtSvidError::BadClaimType("sub")),
        };
        let expiry = numeric_date(&parts.claims, "exp")?.ok_or(JwtSvidError::MissingExpiry)?;
        let id = SpiffeId::parse(sub).map_err(JwtSvidError::InvalidSubject)?;
        let audience = match parts.claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => string_list(v, "aud")?,
        };
        if audience.is_empty() {
            return Err(JwtSvidError::MissingAudience);
        }
        Ok(Self {
            token: token.to_string(),
            id,
            audience,
            expiry,
            key_id,
            algorithm,
            claims: parts.claims.clone(),
        })
    }

    /// Parses and fully validates a JWT-SVID: header rules, `kid` required, signature by the
    /// `kid` key of the subject's trust domain bundle, `exp`/`nbf`/`iat` against `now` (with
    /// [`DEFAULT_LEEWAY_SECS`]), and `aud` containing one of `audience` (skipped when
    /// `audience` is empty).
    pub fn parse_and_validate(
        token: &str,
        bundles: &dyn JwtBundleSource,
        audience: &[&str],
        now: SystemTime,
    ) -> Result<Self, JwtSvidError> {
        let parts = split(token)?;
        let svid = Self::from_parts(token, &parts)?;
        let key_id = svid.key_id.clone().ok_or(JwtSvidError::MissingKeyId)?;
        let td = svid.id.trust_domain();
        if !bundles.has_jwt_bundle(&td) {
            return Err(JwtSvidError::NoBundle(td));
        }
        let key = bundles
            .jwt_authority(&td, &key_id)
            .ok_or(JwtSvidError::UnknownKeyId {
                key_id,
                trust_domain: td,
            })?;
        if !key.verify_jws(
            svid.algorithm,
            parts.signing_input.as_bytes(),
            &parts.signature,
        ) {
            return Err(JwtSvidError::BadSignature);
        }
        let now = unix_secs(now);
        if let Some(nbf) = numeric_date(&parts.claims, "nbf")?
            && now + DEFAULT_LEEWAY_SECS < nbf
        {
            return Err(JwtSvidError::NotYetValid);
        }
        if let Some(iat) = numeric_date(&parts.claims, "iat")?
            && now + DEFAULT_LEEWAY_SECS < iat
        {
            return Err(JwtSvidError::IssuedInFuture);
        }
        if now - DEFAULT_LEEWAY_SECS > svid.expiry {
            return Err(JwtSvidError::Expired);
        }
        if !audience.is_empty()
            && !audience
                .iter()
                .any(|a| svid.audience.iter().any(|t| t == a))
        {
            return Err(JwtSvidError::AudienceMismatch {
                expected: audience.iter().map(|s| s.to_string()).collect(),
                actual: svid.audience.clone(),
            });
        }
        Ok(svid)
    }

    /// The token as given.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The subject.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The `aud` values.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// `exp`, seconds since the epoch.
    pub fn expiry(&self) -> i64 {
        self.expiry
    }

    /// `iat` if present.
    pub fn issued_at(&self) -> Option<i64> {
        numeric_date(&self.claims, "iat").ok().flatten()
    }

    /// The `kid` header.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The `alg` header.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.algorithm
    }

    /// Every claim.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// What goes into a JWT-SVID that SPIRE signs.
#[derive(Debug, Clone)]
pub struct JwtSvidClaims<'a> {
    /// `sub`.
    pub subject: &'a SpiffeId,
    /// `aud` (always written as an array, as SPIRE does).
    pub audience: &'a [String],
    /// `exp`.
    pub expires_at: i64,
    /// `iat`.
    pub issued_at: i64,
    /// `iss`, only when set.
    pub issuer: Option<&'a str>,
}

/// Signs a JWT-SVID as SPIRE does: header `{"alg","kid","typ":"JWT"}`, claims `aud`, `exp`,
/// `iat`, `sub` (and `iss` when set) in sorted order.
pub fn sign(
    claims: &JwtSvidClaims<'_>,
    key: &PrivateKey,
    key_id: &str,
    algorithm: JwsAlgorithm,
) -> Result<String, JwtSvidError> {
    sign_raw(&claims_map(claims), key, key_id, algorithm)
}

/// Signs arbitrary claims with the JWT-SVID header. Used by [`sign`] and by tests that need
/// tokens SPIRE would never issue.
pub fn sign_raw(
    claims: &Map<String, Value>,
    key: &PrivateKey,
    key_id: &str,
    algorithm: JwsAlgorithm,
) -> Result<String, JwtSvidError> {
    sign_claims_with(claims, key_id, algorithm, |alg, msg| key.sign_jws(alg, msg))
}

/// Like [`sign`], with the signature made by `sign` (for keys held by a KeyManager). The
/// closure receives the algorithm and the JWS signing input and returns the JWS signature.
pub fn sign_with(
    claims: &JwtSvidClaims<'_>,
    key_id: &str,
    algorithm: JwsAlgorithm,
    sign: impl FnOnce(JwsAlgorithm, &[u8]) -> Result<Vec<u8>, KeyError>,
) -> Result<String, JwtSvidError> {
    sign_claims_with(&claims_map(claims), key_id, algorithm, sign)
}

/// The claims as the JSON object SPIRE signs (`aud`, `exp`, `iat`, `sub`, and `iss` when
/// set); a CredentialComposer may change it before [`sign_claims_with`] signs it.
pub fn claims_map(claims: &JwtSvidClaims<'_>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("aud".into(), Value::from(claims.audience.to_vec()));
    body.insert("exp".into(), Value::from(claims.expires_at));
    body.insert("iat".into(), Value::from(claims.issued_at));
    body.insert("sub".into(), Value::from(claims.subject.as_str()));
    if let Some(iss) = claims.issuer {
        body.insert("iss".into(), Value::from(iss));
    }
    body
}

/// Signs an arbitrary claims object as a JWT-SVID (header as [`sign`] writes it).
pub fn sign_claims_with(
    claims: &Map<String, Value>,
    key_id: &str,
    algorithm: JwsAlgorithm,
    sign: impl FnOnce(JwsAlgorithm, &[u8]) -> Result<Vec<u8>, KeyError>,
) -> Result<String, JwtSvidError> {
    let input = signing_input(claims, key_id, algorithm);
    let sig = sign(algorithm, input.as_bytes()).map_err(JwtSvidError::Signing)?;
    Ok(with_signature(input, &sig))
}

/// The JWS signing input (`header.claims`, base64url) of a JWT-SVID, for signers that
/// cannot be called from [`sign_claims_with`]'s closure; [`with_signature`] completes it.
pub fn signing_input(claims: &Map<String, Value>, key_id: &str, algorithm: JwsAlgorithm) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(algorithm.as_str()));
    header.insert("kid".into(), Value::from(key_id));
    header.insert("typ".into(), Value::from("JWT"));
    let h = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    let c = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    format!("{h}.{c}")
}

/// The token: the signing input and its JWS signature.
pub fn with_signature(input: String, signature: &[u8]) -> String {
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
mod tests;
