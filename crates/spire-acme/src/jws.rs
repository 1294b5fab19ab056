//! JSON Web Signatures as RFC 8555 §6.2 wants them: the flattened JSON serialization,
//! ES256 over an ECDSA P-256 account key that may live in a KeyManager (it is reached only
//! through a [`Signer`]), the key as `jwk` until the account exists and as `kid` after.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use spiffe_core::keys::{Curve, JwsAlgorithm, PublicKeyKind};
use spire_plugin::{SignatureKind, Signer};

/// An account key: the signer and its JWK members.
#[derive(Debug, Clone)]
pub struct AccountKey {
    signer: Arc<dyn Signer>,
    jwk: serde_json::Value,
    thumbprint: String,
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

impl AccountKey {
    /// Wraps `signer`, which must hold an ECDSA P-256 key (the only account key autocert
    /// makes).
    pub fn new(signer: Arc<dyn Signer>) -> Result<AccountKey, String> {
        let public = signer.public_key();
        if public.kind() != PublicKeyKind::Ec(Curve::P256) {
            return Err(format!(
                "acme: unsupported account key type {}",
                public.kind()
            ));
        }
        let (_, x, y) = public
            .ec_coordinates()
            .ok_or("acme: malformed account public key")?;
        let (x, y) = (b64(&x), b64(&y));
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = b64(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        )
        .as_ref());
        let jwk = serde_json::json!({"crv": "P-256", "kty": "EC", "x": x, "y": y});
        Ok(AccountKey {
            signer,
            jwk,
            thumbprint,
        })
    }

    /// The RFC 7638 thumbprint (base64url).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The key authorization of a challenge token (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    /// The signed request body for `url`: `payload` as JSON, or the empty payload of a
    /// POST-as-GET when `None`; `kid` once the account exists.
    pub async fn sign(
        &self,
        payload: Option<&serde_json::Value>,
        nonce: &str,
        url: &str,
        kid: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let mut protected = serde_json::json!({"alg": "ES256", "nonce": nonce, "url": url});
        match kid {
            Some(k) => protected["kid"] = serde_json::Value::from(k),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let protected = b64(protected.to_string().as_bytes());
        let payload = match payload {
            Some(p) => b64(p.to_string().as_bytes()),
            None => String::new(),
        };
        let input = format!("{protected}.{payload}");
        let sig = self
            .signer
            .sign_async(input.as_bytes(), SignatureKind::Jws(JwsAlgorithm::ES256))
            .await
            .map_err(|e| format!("acme: unable to sign the request: {e}"))?;
        let body = serde_json::json!({
            "protected": protected,
            "payload": payload,
            "signature": b64(&sig),
        });
        Ok(body.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spiffe_core::PrivateKey;
    use spire_plugin::LocalSigner;

    #[tokio::test]
    async fn signature_verifies_and_thumbprint_is_rfc7638() {
        let key = PrivateKey::generate_ec(Curve::P256).unwrap();
        let public = key.public_key().clone();
        let ak = AccountKey::new(Arc::new(LocalSigner::new("acct", key))).unwrap();
        let body = ak
            .sign(
                Some(&serde_json::json!({"a": 1})),
                "n0nce",
                "https://ca/new-order",
                Some("https://ca/acct/1"),
            )
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let protected: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(v["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(protected["alg"], "ES256");
        assert_eq!(protected["kid"], "https://ca/acct/1");
        assert_eq!(protected["nonce"], "n0nce");
        assert!(protected.get("jwk").is_none());
        let sig = URL_SAFE_NO_PAD
            .decode(v["signature"].as_str().unwrap())
            .unwrap();
        assert_eq!(sig.len(), 64);
        let (_, x, y) = public.ec_coordinates().unwrap();
        let mut point = vec![4u8];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        let input = format!(
            "{}.{}",
            v["protected"].as_str().unwrap(),
            v["payload"].as_str().unwrap()
        );
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &point,
        )
        .verify(input.as_bytes(), &sig)
        .unwrap();
        // The thumbprint is the digest of the canonical JWK.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64(&x),
            b64(&y)
        );
        assert_eq!(
            ak.thumbprint(),
            b64(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes())
                    .as_ref()
            )
        );
        assert_eq!(
            ak.key_authorization("tok"),
            format!("tok.{}", ak.thumbprint())
        );
        // A new account names its key in full; a POST-as-GET has an empty payload.
        let body = ak.sign(None, "n", "https://ca/x", None).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["payload"], "");
        let protected: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(v["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(protected["jwk"]["kty"], "EC");
        assert!(protected.get("kid").is_none());
    }

    #[test]
    fn only_p256_account_keys() {
        let key = PrivateKey::generate_ec(Curve::P384).unwrap();
        let err = AccountKey::new(Arc::new(LocalSigner::new("acct", key))).unwrap_err();
        assert!(err.contains("unsupported account key type"), "{err}");
    }
}
