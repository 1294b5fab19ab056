//! Unit tests: bundle JSON and PEM round trips, and what parsing refuses.

use super::*;
use crate::keys::{KeyType, PrivateKey};
use crate::testpki;

const SPIRE_BUNDLE: &str = include_str!("../../testdata/spire-1.13.3-bundle.json");
const SPIRE_BUNDLE_PEM: &str = include_str!("../../testdata/spire-1.13.3-bundle.pem");

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

#[test]
fn parses_a_bundle_printed_by_reference_spire() {
    let bundle = Bundle::parse_spiffe_json(td(), SPIRE_BUNDLE.as_bytes()).unwrap();
    assert_eq!(bundle.sequence_number, Some(1));
    assert_eq!(bundle.refresh_hint, None);
    assert_eq!(bundle.x509_authorities.len(), 1);
    assert_eq!(bundle.jwt_authorities.len(), 1);
    assert_eq!(
        bundle.jwt_authorities[0].key_id,
        "sQUTQRubfHW3vo6ZqXWeSABW76c4JNqM"
    );
    let ca = crate::x509svid::id_from_der(&bundle.x509_authorities[0].der).unwrap();
    assert_eq!(ca.to_string(), "spiffe://example.org");
    // Writing it back gives SPIRE's bytes exactly (SPIRE ends the CLI output with a newline).
    assert_eq!(format!("{}\n", bundle.to_spiffe_json()), SPIRE_BUNDLE);
    // And the PEM form matches `bundle show -format pem`.
    assert_eq!(bundle.x509_authorities_pem(), SPIRE_BUNDLE_PEM);
    let from_pem = Bundle::parse_pem(td(), SPIRE_BUNDLE_PEM).unwrap();
    assert_eq!(from_pem.x509_authorities, bundle.x509_authorities);
}

fn sample_bundle() -> Bundle {
    let ca = testpki::root("example.org");
    let mut b = Bundle::new(td());
    b.add_x509_authority(ca.der.clone());
    b.add_x509_authority(ca.der.clone());
    for (kid, kt) in [
        ("a", KeyType::EcP256),
        ("b", KeyType::EcP384),
        ("c", KeyType::Rsa2048),
    ] {
        let key = PrivateKey::generate(kt).unwrap();
        b.jwt_authorities.push(JwtAuthority {
            key_id: kid.into(),
            public_key: key.public_key().clone(),
            expires_at: 0,
            tainted: false,
        });
    }
    b.refresh_hint = Some(300);
    b.sequence_number = Some(42);
    b
}

#[test]
fn json_round_trip() {
    let b = sample_bundle();
    assert_eq!(b.x509_authorities.len(), 1, "duplicates are dropped");
    let json = b.to_spiffe_json();
    assert!(json.contains("\"spiffe_refresh_hint\": 300"));
    assert!(json.contains("\"spiffe_sequence\": 42"));
    let back = Bundle::parse_spiffe_json(td(), json.as_bytes()).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.to_spiffe_json(), json);
}

#[test]
fn jwks_for_the_workload_api_has_no_use_and_no_x509() {
    let b = sample_bundle();
    let jwks = b.to_jwt_jwks_json();
    assert!(!jwks.contains("\"use\""));
    assert!(!jwks.contains("x5c"));
    let back = Bundle::parse_jwt_jwks(td(), jwks.as_bytes()).unwrap();
    assert_eq!(back.jwt_authorities, b.jwt_authorities);
    // SPIRE's bytes: `json.MarshalIndent` with four spaces.
    assert!(
        jwks.starts_with("{\n    \"keys\": [\n        {\n            \"kty\": "),
        "{jwks}"
    );
    assert_eq!(
        Bundle::new(td()).to_jwt_jwks_json(),
        "{\n    \"keys\": []\n}"
    );
}

#[test]
fn keys_member_is_required() {
    assert_eq!(
        Bundle::parse_spiffe_json(td(), br#"{"spiffe_sequence": 1}"#),
        Err(BundleError::MissingKeys)
    );
    let empty = Bundle::parse_spiffe_json(td(), br#"{"keys": []}"#).unwrap();
    assert!(empty.x509_authorities.is_empty() && empty.jwt_authorities.is_empty());
}

#[test]
fn unknown_use_and_kty_are_ignored() {
    let json = br#"{"keys": [
        {"use": "wit-svid", "kty": "OKP", "crv": "Ed25519", "x": "AA"},
        {"kty": "EC"},
        {"use": "jwt-svid", "kty": "OKP", "kid": "x", "crv": "Ed25519", "x": "AA"},
        {"use": "x509-svid", "kty": "EC"}
    ]}"#;
    let b = Bundle::parse_spiffe_json(td(), json).unwrap();
    assert!(b.x509_authorities.is_empty() && b.jwt_authorities.is_empty());
}

#[test]
fn bad_documents_are_errors() {
    assert!(matches!(
        Bundle::parse_spiffe_json(td(), b"not json"),
        Err(BundleError::Json(_))
    ));
    assert!(matches!(
        Bundle::parse_spiffe_json(td(), br#"{"keys": [], "keys": []}"#),
        Err(BundleError::Json(_))
    ));
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut jwk = crate::jwk::Jwk::from_public_key(key.public_key());
    jwk.key_use = Some("jwt-svid".into());
    let doc = serde_json::json!({ "keys": [jwk] }).to_string();
    assert_eq!(
        Bundle::parse_spiffe_json(td(), doc.as_bytes()),
        Err(BundleError::MissingKeyId(0))
    );
    jwk.kid = Some("k".into());
    let doc = serde_json::json!({ "keys": [jwk.clone(), jwk] }).to_string();
    assert_eq!(
        Bundle::parse_spiffe_json(td(), doc.as_bytes()),
        Err(BundleError::DuplicateKeyId("k".into()))
    );
    let doc = br#"{"keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["AAAA"]}]}"#;
    assert!(matches!(
        Bundle::parse_spiffe_json(td(), doc),
        Err(BundleError::BadX509Authority { index: 0, .. })
    ));
    let doc = br#"{"keys": [{"use": "jwt-svid", "kty": "EC", "kid": "k", "crv": "P-256", "x": "AA", "y": "AA"}]}"#;
    assert!(matches!(
        Bundle::parse_spiffe_json(td(), doc),
        Err(BundleError::BadJwtAuthority { index: 0, .. })
    ));
}

#[test]
fn bundle_sets_and_maps() {
    let a = sample_bundle();
    let mut other = Bundle::new(TrustDomain::new("other.org").unwrap());
    other.add_x509_authority(testpki::root("other.org").der);
    let map = format!(
        r#"{{"trust_domains": {{"example.org": {}, "spiffe://other.org": {}}}}}"#,
        a.to_spiffe_json(),
        other.to_spiffe_json()
    );
    let set = BundleSet::parse_bundle_map(map.as_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(
        set.get(&td()).unwrap().refresh_hint,
        None,
        "per-bundle hints are dropped"
    );
    assert_eq!(set.get(&td()).unwrap().x509_authorities, a.x509_authorities);
    assert!(
        set.x509_authorities(&TrustDomain::new("other.org").unwrap())
            .is_some()
    );
    assert!(
        set.x509_authorities(&TrustDomain::new("third.org").unwrap())
            .is_none()
    );
    assert!(set.jwt_authority(&td(), "a").is_some());
    assert!(set.jwt_authority(&td(), "zzz").is_none());

    let dup = r#"{"trust_domains": {"example.org": {"keys": []}, "example.org": {"keys": []}}}"#;
    assert_eq!(
        BundleSet::parse_bundle_map(dup.as_bytes()),
        Err(BundleError::DuplicateTrustDomain("example.org".into()))
    );
    let bad = r#"{"trust_domains": {"Bad": {"keys": []}}}"#;
    assert!(matches!(
        BundleSet::parse_bundle_map(bad.as_bytes()),
        Err(BundleError::BadTrustDomain { .. })
    ));
}
