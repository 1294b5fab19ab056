//! The key set the provider serves, as SPIRE builds it: one JWK per JWT authority of the
//! trust domain's bundle (`kty`, `kid`, curve and coordinates or modulus and exponent), in
//! go-jose's member order, with `alg` from the key type and `use: "sig"` only when
//! `set_key_use` is on.

use std::time::SystemTime;

use serde::Serialize;
use spiffe_core::PublicKey;
use spiffe_core::jwk::Jwk;
use spiffe_core::keys::{Curve, PublicKeyKind};

/// One key of the set: its ID and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `kid`.
    pub kid: String,
    /// The public key.
    pub key: PublicKey,
}

/// A key set and when it last changed (what `Last-Modified` says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// Keys in the source's order; `None` when the source had no key list at all (go-jose
    /// writes `"keys": null` for it).
    pub keys: Option<Vec<Key>>,
    /// When the set last changed.
    pub modified: SystemTime,
}

/// SPIRE's `cryptoutil.JoseAlgFromPublicKey`: RS256 for RSA, ES256/ES384 for P-256/P-384,
/// nothing for other keys.
pub fn jose_alg(key: &PublicKey) -> Option<&'static str> {
    match key.kind() {
        PublicKeyKind::Rsa { .. } => Some("RS256"),
        PublicKeyKind::Ec(Curve::P256) => Some("ES256"),
        PublicKeyKind::Ec(Curve::P384) => Some("ES384"),
        PublicKeyKind::Ec(_) => None,
    }
}

#[derive(Serialize)]
struct Jwks {
    keys: Option<Vec<Jwk>>,
}

/// The JWKS document: `json.MarshalIndent(jwks, "", "  ")` of SPIRE's handler.
pub fn jwks_document(set: &KeySet, set_key_use: bool) -> Vec<u8> {
    let keys = set.keys.as_ref().map(|keys| {
        keys.iter()
            .map(|k| {
                let mut jwk = Jwk::from_public_key(&k.key);
                jwk.kid = (!k.kid.is_empty()).then(|| k.kid.clone());
                jwk.alg = jose_alg(&k.key).map(str::to_string);
                if jwk.alg.is_none() {
                    tracing::error!(kid = %k.kid, "Failed to get public key algorithm");
                }
                if set_key_use {
                    jwk.key_use = Some("sig".into());
                }
                jwk
            })
            .collect()
    });
    go_json_indent(&Jwks { keys })
}

/// `json.MarshalIndent(v, "", "  ")`: serde's pretty form is Go's indented form; Go also
/// escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings.
pub fn go_json_indent<T: Serialize>(v: &T) -> Vec<u8> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spiffe_core::{KeyType, PrivateKey};

    fn key(kid: &str, t: KeyType) -> Key {
        Key {
            kid: kid.into(),
            key: PrivateKey::generate(t).unwrap().public_key().clone(),
        }
    }

    #[test]
    fn members_in_go_jose_order_with_alg() {
        let set = KeySet {
            keys: Some(vec![key("a", KeyType::EcP256), key("b", KeyType::EcP384)]),
            modified: SystemTime::UNIX_EPOCH,
        };
        let doc = String::from_utf8(jwks_document(&set, false)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["keys"][0]["alg"], "ES256");
        assert_eq!(v["keys"][1]["alg"], "ES384");
        assert!(v["keys"][0].get("use").is_none());
        let first = doc.find("\"kty\"").unwrap();
        assert!(first < doc.find("\"kid\"").unwrap());
        assert!(doc.find("\"kid\"").unwrap() < doc.find("\"crv\"").unwrap());
        assert!(doc.find("\"crv\"").unwrap() < doc.find("\"alg\"").unwrap());
        assert!(doc.find("\"alg\"").unwrap() < doc.find("\"x\"").unwrap());
        assert!(doc.starts_with("{\n  \"keys\": [\n    {\n      \"kty\": \"EC\",\n"));

        let with_use = String::from_utf8(jwks_document(&set, true)).unwrap();
        assert!(with_use.starts_with("{\n  \"keys\": [\n    {\n      \"use\": \"sig\",\n"));
    }

    #[test]
    fn rsa_and_no_keys() {
        let set = KeySet {
            keys: Some(vec![key("r", KeyType::Rsa2048)]),
            modified: SystemTime::UNIX_EPOCH,
        };
        let v: serde_json::Value = serde_json::from_slice(&jwks_document(&set, false)).unwrap();
        assert_eq!(v["keys"][0]["alg"], "RS256");
        assert_eq!(v["keys"][0]["e"], "AQAB");
        let none = KeySet {
            keys: None,
            modified: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(jwks_document(&none, false), b"{\n  \"keys\": null\n}");
        let empty = KeySet {
            keys: Some(vec![]),
            modified: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(jwks_document(&empty, false), b"{\n  \"keys\": []\n}");
    }

    #[test]
    fn go_escapes() {
        assert_eq!(go_json_indent(&"a<b>&"), b"\"a\\u003cb\\u003e\\u0026\"");
    }
}
