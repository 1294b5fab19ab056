//! JSON Web Keys as SPIFFE bundles use them (RFC 7517), with members in the order go-jose
//! writes them so our JSON matches SPIRE's output.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::keys::{Curve, KeyError, PublicKey, PublicKeyKind};

/// One JWK as it appears in a SPIFFE bundle or a JWKS. Unknown members are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Public key use: `x509-svid` or `jwt-svid` in SPIFFE bundles.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// Key type: `EC` or `RSA`.
    #[serde(default)]
    pub kty: String,
    /// Key ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// EC curve name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Algorithm (not written by SPIRE; accepted on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// EC x coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Certificate chain, standard base64 DER.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x5c: Vec<String>,
}

/// Why a JWK cannot be turned into a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// The `kty` is neither `EC` nor `RSA`.
    #[error("unsupported key type {0:?}")]
    UnsupportedKeyType(String),
    /// The `crv` is not P-256, P-384 or P-521.
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(String),
    /// A required member is absent.
    #[error("missing member {0:?}")]
    MissingMember(&'static str),
    /// A member is not valid base64.
    #[error("member {0:?} is not valid base64")]
    BadBase64(&'static str),
    /// The key material is invalid.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn b64url(member: &'static str, v: &Option<String>) -> Result<Vec<u8>, JwkError> {
    let s = v.as_deref().ok_or(JwkError::MissingMember(member))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| JwkError::BadBase64(member))
}

impl Jwk {
    /// Builds the public-key members (`kty`, `crv`, `x`, `y` or `n`, `e`) for a key.
    pub fn from_public_key(key: &PublicKey) -> Self {
        let mut jwk = Jwk::default();
        match key.kind() {
            PublicKeyKind::Ec(_) => {
                if let Some((curve, x, y)) = key.ec_coordinates() {
                    jwk.kty = "EC".into();
                    jwk.crv = Some(curve.jwk_name().into());
                    jwk.x = Some(URL_SAFE_NO_PAD.encode(x));
                    jwk.y = Some(URL_SAFE_NO_PAD.encode(y));
                }
            }
            PublicKeyKind::Rsa { .. } => {
                if let Some((n, e)) = key.rsa_components() {
                    jwk.kty = "RSA".into();
                    jwk.n = Some(URL_SAFE_NO_PAD.encode(n));
                    jwk.e = Some(URL_SAFE_NO_PAD.encode(e));
                }
            }
        }
        jwk
    }

    /// Whether the `kty` is one we understand.
    pub fn has_known_key_type(&self) -> bool {
        matches!(self.kty.as_str(), "EC" | "RSA")
    }

    /// The public key these members describe.
    pub fn public_key(&self) -> Result<PublicKey, JwkError> {
        match self.kty.as_str() {
            "EC" => {
                let crv = self.crv.as_deref().ok_or(JwkError::MissingMember("crv"))?;
                let curve = match crv {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    "P-521" => Curve::P521,
                    other => return Err(JwkError::UnsupportedCurve(other.into())),
                };
                let x = b64url("x", &self.x)?;
                let y = b64url("y", &self.y)?;
                Ok(PublicKey::from_ec_coordinates(curve, &x, &y)?)
            }
            "RSA" => {
                let n = b64url("n", &self.n)?;
                let e = b64url("e", &self.e)?;
                Ok(PublicKey::from_rsa_components(&n, &e)?)
            }
            other => Err(JwkError::UnsupportedKeyType(other.into())),
        }
    }

    /// The DER certificates of `x5c`.
    pub fn certificates(&self) -> Result<Vec<Vec<u8>>, JwkError> {
        self.x5c
            .iter()
            .map(|c| STANDARD.decode(c).map_err(|_| JwkError::BadBase64("x5c")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyType, PrivateKey};

    #[test]
    fn public_keys_round_trip_through_jwk() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let key = PrivateKey::generate(kt).unwrap();
            let jwk = Jwk::from_public_key(key.public_key());
            assert_eq!(&jwk.public_key().unwrap(), key.public_key());
            let json = serde_json::to_string(&jwk).unwrap();
            let back: Jwk = serde_json::from_str(&json).unwrap();
            assert_eq!(back, jwk);
        }
    }

    #[test]
    fn member_order_matches_go_jose() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut jwk = Jwk::from_public_key(key.public_key());
        jwk.key_use = Some("jwt-svid".into());
        jwk.kid = Some("k".into());
        let json = serde_json::to_string(&jwk).unwrap();
        let order: Vec<usize> = ["\"use\"", "\"kty\"", "\"kid\"", "\"crv\"", "\"x\"", "\"y\""]
            .iter()
            .map(|m| json.find(m).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
    }

    #[test]
    fn bad_members_are_errors() {
        let jwk = Jwk {
            kty: "oct".into(),
            ..Default::default()
        };
        assert_eq!(
            jwk.public_key(),
            Err(JwkError::UnsupportedKeyType("oct".into()))
        );
        let jwk = Jwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            ..Default::default()
        };
        assert_eq!(jwk.public_key(), Err(JwkError::MissingMember("x")));
        let jwk = Jwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            x: Some("!!".into()),
            y: Some("AA".into()),
            ..Default::default()
        };
        assert_eq!(jwk.public_key(), Err(JwkError::BadBase64("x")));
        let jwk = Jwk {
            kty: "EC".into(),
            crv: Some("secp256k1".into()),
            ..Default::default()
        };
        assert_eq!(
            jwk.public_key(),
            Err(JwkError::UnsupportedCurve("secp256k1".into()))
        );
    }
}
