//! Unit tests: JWT-SVID signing and validation for every algorithm, and each rejection.

use serde_json::json;

use super::*;
use crate::bundle::{Bundle, JwtAuthority};
use crate::keys::Curve;
use crate::testpki::{NOW_SECS, now};

const TD: &str = "example.org";

fn subject() -> SpiffeId {
    SpiffeId::parse("spiffe://example.org/web").unwrap()
}

fn bundle_with(key: &PrivateKey, kid: &str) -> Bundle {
    let mut b = Bundle::new(TrustDomain::new(TD).unwrap());
    b.jwt_authorities.push(JwtAuthority {
        key_id: kid.into(),
        public_key: key.public_key().clone(),
        expires_at: 0,
        tainted: false,
    });
    b
}

fn good_claims() -> serde_json::Map<String, Value> {
    let Value::Object(m) = json!({
        "sub": "spiffe://example.org/web",
        "aud": ["svc"],
        "exp": NOW_SECS as i64 + 300,
        "iat": NOW_SECS as i64,
    }) else {
        unreachable!()
    };
    m
}

fn key_for(alg: JwsAlgorithm) -> PrivateKey {
    match alg {
        JwsAlgorithm::ES256 => PrivateKey::generate_ec(Curve::P256).unwrap(),
        JwsAlgorithm::ES384 => PrivateKey::generate_ec(Curve::P384).unwrap(),
        JwsAlgorithm::ES512 => PrivateKey::generate_ec(Curve::P521).unwrap(),
        _ => PrivateKey::generate(crate::keys::KeyType::Rsa2048).unwrap(),
    }
}

/// Builds a token from raw header and claims JSON and a signature over them.
fn raw_token(header: Value, claims: Value, key: &PrivateKey, alg: JwsAlgorithm) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = key.sign_jws(alg, format!("{h}.{c}").as_bytes()).unwrap();
    format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[test]
fn round_trip_every_algorithm() {
    let rsa = PrivateKey::generate(crate::keys::KeyType::Rsa2048).unwrap();
    for alg in JwsAlgorithm::ALL {
        let key = if alg.as_str().starts_with('E') {
            key_for(alg)
        } else {
            rsa_clone(&rsa)
        };
        let aud = vec!["svc".to_string(), "other".to_string()];
        let token = sign(
            &JwtSvidClaims {
                subject: &subject(),
                audience: &aud,
                expires_at: NOW_SECS as i64 + 300,
                issued_at: NOW_SECS as i64,
                issuer: Some("https://issuer"),
            },
            &key,
            "kid-1",
            alg,
        )
        .unwrap();
        let svid =
            JwtSvid::parse_and_validate(&token, &bundle_with(&key, "kid-1"), &["svc"], now())
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(svid.id(), &subject());
        assert_eq!(svid.algorithm(), alg);
        assert_eq!(svid.audience(), aud.as_slice());
        assert_eq!(svid.expiry(), NOW_SECS as i64 + 300);
        assert_eq!(svid.issued_at(), Some(NOW_SECS as i64));
        assert_eq!(svid.claims()["iss"], "https://issuer");
        assert_eq!(svid.key_id(), Some("kid-1"));
    }
}

fn rsa_clone(k: &PrivateKey) -> PrivateKey {
    PrivateKey::from_pkcs8_der(k.pkcs8_der()).unwrap()
}

#[test]
fn header_and_claims_are_laid_out_as_spire_does() {
    let key = key_for(JwsAlgorithm::ES256);
    let token = sign(
        &JwtSvidClaims {
            subject: &subject(),
            audience: &["a".to_string()],
            expires_at: 10,
            issued_at: 5,
            issuer: None,
        },
        &key,
        "k",
        JwsAlgorithm::ES256,
    )
    .unwrap();
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(header).unwrap(),
        r#"{"alg":"ES256","kid":"k","typ":"JWT"}"#
    );
    let claims = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(claims).unwrap(),
        r#"{"aud":["a"],"exp":10,"iat":5,"sub":"spiffe://example.org/web"}"#
    );
}

fn validate(token: &str, key: &PrivateKey) -> Result<JwtSvid, JwtSvidError> {
    JwtSvid::parse_and_validate(token, &bundle_with(key, "kid"), &["svc"], now())
}

#[test]
fn alg_none_is_rejected() {
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"kid"}"#);
    let c = URL_SAFE_NO_PAD.encode(Value::Object(good_claims()).to_string());
    let token = format!("{h}.{c}.");
    let key = key_for(JwsAlgorithm::ES256);
    assert_eq!(
        validate(&token, &key),
        Err(JwtSvidError::UnsupportedAlgorithm("none".into()))
    );
}

#[test]
fn hmac_is_rejected() {
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"kid","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(Value::Object(good_claims()).to_string());
    let token = format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
    let key = key_for(JwsAlgorithm::ES256);
    assert_eq!(
        validate(&token, &key),
        Err(JwtSvidError::UnsupportedAlgorithm("HS256".into()))
    );
}

#[test]
fn missing_kid_is_rejected() {
    let key = key_for(JwsAlgorithm::ES256);
    let token = raw_token(
        json!({"alg": "ES256", "typ": "JWT"}),
        Value::Object(good_claims()),
        &key,
        JwsAlgorithm::ES256,
    );
    assert_eq!(validate(&token, &key), Err(JwtSvidError::MissingKeyId));
    // Parsing alone tolerates it (the standard makes kid optional).
    assert!(JwtSvid::parse_insecure(&token).is_ok());
}

#[test]
fn unknown_kid_is_rejected() {
    let key = key_for(JwsAlgorithm::ES256);
    let token = sign_raw(&good_claims(), &key, "other", JwsAlgorithm::ES256).unwrap();
    assert!(matches!(
        validate(&token, &key),
        Err(JwtSvidError::UnknownKeyId { .. })
    ));
}

#[test]
fn no_bundle_for_trust_domain() {
    let key = key_for(JwsAlgorithm::ES256);
    let mut claims = good_claims();
    claims.insert("sub".into(), "spiffe://elsewhere.org/web".into());
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert!(matches!(
        validate(&token, &key),
        Err(JwtSvidError::NoBundle(_))
    ));
}

#[test]
fn wrong_audience_is_rejected() {
    let key = key_for(JwsAlgorithm::ES256);
    let mut claims = good_claims();
    claims.insert("aud".into(), json!("not-svc"));
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(
        validate(&token, &key),
        Err(JwtSvidError::AudienceMismatch {
            expected: vec!["svc".into()],
            actual: vec!["not-svc".into()]
        })
    );
}

#[test]
fn missing_or_empty_audience_is_rejected() {
    let key = key_for(JwsAlgorithm::ES256);
    for aud in [None, Some(json!([]))] {
        let mut claims = good_claims();
        match aud {
            None => {
                claims.remove("aud");
            }
            Some(v) => {
                claims.insert("aud".into(), v);
            }
        }
        let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
        assert_eq!(validate(&token, &key), Err(JwtSvidError::MissingAudience));
    }
}

#[test]
fn expired_is_rejected_beyond_the_leeway() {
    let key = key_for(JwsAlgorithm::ES256);
    let mut claims = good_claims();
    claims.insert("exp".into(), json!(NOW_SECS as i64 - 30));
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert!(
        validate(&token, &key).is_ok(),
        "inside the one-minute leeway"
    );
    claims.insert("exp".into(), json!(NOW_SECS as i64 - 120));
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(validate(&token, &key), Err(JwtSvidError::Expired));
}

#[test]
fn missing_exp_is_rejected() {
    let key = key_for(JwsAlgorithm::ES256);
    let mut claims = good_claims();
    claims.remove("exp");
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(validate(&token, &key), Err(JwtSvidError::MissingExpiry));
}

#[test]
fn future_nbf_and_iat_are_rejected() {
    let key = key_for(JwsAlgorithm::ES256);
    let mut claims = good_claims();
    claims.insert("nbf".into(), json!(NOW_SECS as i64 + 600));
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(validate(&token, &key), Err(JwtSvidError::NotYetValid));
    let mut claims = good_claims();
    claims.insert("iat".into(), json!(NOW_SECS as i64 + 600));
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(validate(&token, &key), Err(JwtSvidError::IssuedInFuture));
}

#[test]
fn bad_signature_is_rejected() {
    let key = key_for(JwsAlgorithm::ES256);
    let other = key_for(JwsAlgorithm::ES256);
    let token = sign_raw(&good_claims(), &other, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(validate(&token, &key), Err(JwtSvidError::BadSignature));
    // Tampered claims under a genuine signature.
    let token = sign_raw(&good_claims(), &key, "kid", JwsAlgorithm::ES256).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims = good_claims();
    claims.insert("sub".into(), "spiffe://example.org/admin".into());
    parts[1] = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
    assert_eq!(
        validate(&parts.join("."), &key),
        Err(JwtSvidError::BadSignature)
    );
    // An algorithm that does not fit the key.
    let rsa = key_for(JwsAlgorithm::RS256);
    let token = sign_raw(&good_claims(), &rsa, "kid", JwsAlgorithm::RS256).unwrap();
    assert_eq!(validate(&token, &key), Err(JwtSvidError::BadSignature));
}

#[test]
fn subject_must_be_a_spiffe_id() {
    let key = key_for(JwsAlgorithm::ES256);
    let mut claims = good_claims();
    claims.insert("sub".into(), "https://example.org/web".into());
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(
        validate(&token, &key),
        Err(JwtSvidError::InvalidSubject(IdError::WrongScheme))
    );
    claims.remove("sub");
    let token = sign_raw(&claims, &key, "kid", JwsAlgorithm::ES256).unwrap();
    assert_eq!(validate(&token, &key), Err(JwtSvidError::MissingSubject));
}

#[test]
fn typ_must_be_jwt_or_jose() {
    let key = key_for(JwsAlgorithm::ES256);
    for (typ, ok) in [("JWT", true), ("JOSE", true), ("at+jwt", false)] {
        let token = raw_token(
            json!({"alg": "ES256", "kid": "kid", "typ": typ}),
            Value::Object(good_claims()),
            &key,
            JwsAlgorithm::ES256,
        );
        assert_eq!(validate(&token, &key).is_ok(), ok, "{typ}");
    }
    let token = raw_token(
        json!({"alg": "ES256", "kid": "kid"}),
        Value::Object(good_claims()),
        &key,
        JwsAlgorithm::ES256,
    );
    assert!(validate(&token, &key).is_ok(), "typ may be absent");
    let token = raw_token(
        json!({"alg": "ES256", "kid": "kid", "crit": ["exp"]}),
        Value::Object(good_claims()),
        &key,
        JwsAlgorithm::ES256,
    );
    assert_eq!(validate(&token, &key), Err(JwtSvidError::CriticalHeader));
}

#[test]
fn malformed_tokens() {
    let key = key_for(JwsAlgorithm::ES256);
    for token in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.e30.",
        "e30.!!.",
        "W10.e30.",
        "e30.e30.!!",
    ] {
        assert!(
            matches!(validate(token, &key), Err(JwtSvidError::Malformed(_))),
            "{token}: {:?}",
            validate(token, &key)
        );
    }
}
