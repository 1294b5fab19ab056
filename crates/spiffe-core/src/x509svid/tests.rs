//! Unit tests: every X509-SVID rule, each rejection with its own error.

use rcgen::{BasicConstraints, IsCa, KeyUsagePurpose};

use super::*;
use crate::bundle::Bundle;
use crate::testpki::{self, Issued, at, ca_params, issue, leaf, leaf_params, now, root};

const TD: &str = "example.org";

fn bundle_of(cas: &[&Issued]) -> Bundle {
    let mut b = Bundle::new(TrustDomain::new(TD).unwrap());
    for ca in cas {
        b.add_x509_authority(ca.der.clone());
    }
    b
}

fn verify(chain: &[&Issued], cas: &[&Issued]) -> Result<SpiffeId, X509SvidError> {
    let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.der.clone()).collect();
    verify_chain(&chain, &bundle_of(cas), now())
}

#[test]
fn leaf_signed_by_root_verifies() {
    let ca = root(TD);
    let l = leaf(&ca, "spiffe://example.org/web");
    assert_eq!(
        verify(&[&l], &[&ca]).unwrap().to_string(),
        "spiffe://example.org/web"
    );
}

#[test]
fn leaf_through_intermediates_verifies_in_any_order() {
    let ca = root(TD);
    let i1 = testpki::intermediate(&ca, TD);
    let i2 = testpki::intermediate(&i1, TD);
    let l = leaf(&i2, "spiffe://example.org/web");
    assert!(verify(&[&l, &i2, &i1], &[&ca]).is_ok());
    assert!(verify(&[&l, &i1, &i2], &[&ca]).is_ok());
    // The intermediate itself may be an anchor.
    assert!(verify(&[&l], &[&i2]).is_ok());
}

#[test]
fn svid_with_key_parses_and_checks_the_key() {
    let ca = root(TD);
    let l = leaf(&ca, "spiffe://example.org/web");
    let svid = X509Svid::parse(vec![l.der.clone()], &l.key.serialize_der()).unwrap();
    assert_eq!(svid.id().path(), "/web");
    assert!(svid.verify(&bundle_of(&[&ca]), now()).is_ok());
    assert_eq!(svid.expires_at(), at(3600).unix_timestamp());
    let other = leaf(&ca, "spiffe://example.org/other");
    assert_eq!(
        X509Svid::parse(vec![l.der.clone()], &other.key.serialize_der()).unwrap_err(),
        X509SvidError::KeyMismatch
    );
    assert!(matches!(
        X509Svid::parse(vec![l.der.clone()], b"bad").unwrap_err(),
        X509SvidError::Key(_)
    ));
    let concatenated: Vec<u8> = [l.der.clone(), ca.der.clone()].concat();
    let svid = X509Svid::parse_concatenated(&concatenated, &l.key.serialize_der()).unwrap();
    assert_eq!(svid.chain().len(), 2);
    assert_eq!(svid.leaf(), l.der.as_slice());
}

#[test]
fn empty_chain() {
    assert_eq!(
        verify_chain(&[], &bundle_of(&[]), now()),
        Err(X509SvidError::NoCertificates)
    );
}

#[test]
fn malformed_certificate() {
    let err = verify_chain(&[b"garbage".to_vec()], &bundle_of(&[]), now()).unwrap_err();
    assert!(
        matches!(err, X509SvidError::MalformedCertificate { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn no_uri_san() {
    let ca = root(TD);
    let l = issue(leaf_params(&[]), Some(&ca));
    assert_eq!(verify(&[&l], &[&ca]), Err(X509SvidError::NoUriSan));
}

#[test]
fn two_uri_sans() {
    let ca = root(TD);
    let l = issue(
        leaf_params(&["spiffe://example.org/a", "spiffe://example.org/b"]),
        Some(&ca),
    );
    assert_eq!(
        verify(&[&l], &[&ca]),
        Err(X509SvidError::MultipleUriSans(2))
    );
}

#[test]
fn uri_sans_are_listed_in_order() {
    let ca = root(TD);
    let l = issue(
        leaf_params(&["spiffe://example.org/a", "https://example.org/b"]),
        Some(&ca),
    );
    assert_eq!(
        uri_sans_from_der(&l.der).unwrap(),
        vec![
            "spiffe://example.org/a".to_string(),
            "https://example.org/b".to_string()
        ]
    );
    let none = issue(leaf_params(&[]), Some(&ca));
    assert!(uri_sans_from_der(&none.der).unwrap().is_empty());
    assert!(uri_sans_from_der(b"junk").is_err());
}

#[test]
fn uri_san_not_a_spiffe_id() {
    let ca = root(TD);
    let l = leaf(&ca, "https://example.org/a");
    assert_eq!(
        verify(&[&l], &[&ca]),
        Err(X509SvidError::InvalidSpiffeId(IdError::WrongScheme))
    );
}

#[test]
fn leaf_id_without_path() {
    let ca = root(TD);
    let l = leaf(&ca, "spiffe://example.org");
    assert!(matches!(
        verify(&[&l], &[&ca]),
        Err(X509SvidError::LeafIdIsTrustDomain(_))
    ));
}

#[test]
fn leaf_is_ca() {
    let ca = root(TD);
    let mut p = leaf_params(&["spiffe://example.org/a"]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let l = issue(p, Some(&ca));
    assert_eq!(verify(&[&l], &[&ca]), Err(X509SvidError::LeafIsCa));
}

#[test]
fn leaf_key_usage_rules() {
    let ca = root(TD);
    let cases: [(Vec<KeyUsagePurpose>, X509SvidError); 4] = [
        (vec![], X509SvidError::LeafMissingKeyUsage),
        (
            vec![KeyUsagePurpose::KeyEncipherment],
            X509SvidError::LeafMissingDigitalSignature,
        ),
        (
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
            ],
            X509SvidError::LeafHasKeyCertSign,
        ),
        (
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign],
            X509SvidError::LeafHasCrlSign,
        ),
    ];
    for (usages, want) in cases {
        let mut p = leaf_params(&["spiffe://example.org/a"]);
        p.key_usages = usages;
        let l = issue(p, Some(&ca));
        assert_eq!(verify(&[&l], &[&ca]), Err(want));
    }
}

#[test]
fn signing_certificate_rules() {
    let ca = root(TD);
    let mut p = ca_params(TD, "not-a-ca");
    p.is_ca = IsCa::ExplicitNoCa;
    let bad = issue(p, Some(&ca));
    let l = leaf(&bad, "spiffe://example.org/a");
    assert_eq!(
        verify(&[&l, &bad], &[&ca]),
        Err(X509SvidError::SigningCertNotCa { index: 1 })
    );

    let mut p = ca_params(TD, "no-keycertsign");
    p.key_usages = vec![KeyUsagePurpose::CrlSign];
    let bad = issue(p, Some(&ca));
    let l = leaf(&bad, "spiffe://example.org/a");
    assert_eq!(
        verify(&[&l, &bad], &[&ca]),
        Err(X509SvidError::SigningCertMissingKeyCertSign { index: 1 })
    );
}

#[test]
fn no_bundle_for_trust_domain() {
    let ca = root("other.org");
    let l = leaf(&ca, "spiffe://other.org/a");
    assert!(matches!(
        verify(&[&l], &[&ca]),
        Err(X509SvidError::NoBundle(_))
    ));
}

#[test]
fn unknown_authority() {
    let ca = root(TD);
    // Same name and key identifier as the real root, different key.
    let mut p = ca_params(TD, "root");
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(ca.params.key_identifier(&ca.key));
    let stranger = issue(p, None);
    let mut p = ca_params(TD, "elsewhere");
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "x");
    let other_named = issue(p, None);
    let l = leaf(&ca, "spiffe://example.org/a");
    // Same subject name, different key: the signature check fails.
    assert!(matches!(
        verify(&[&l], &[&stranger]),
        Err(X509SvidError::BadSignature { .. })
    ));
    // Nothing with the right name at all.
    assert_eq!(
        verify(&[&l], &[&other_named]),
        Err(X509SvidError::UnknownAuthority)
    );
    assert_eq!(verify(&[&l], &[]), Err(X509SvidError::UnknownAuthority));
}

#[test]
fn expired_and_not_yet_valid() {
    let ca = root(TD);
    let mut p = leaf_params(&["spiffe://example.org/a"]);
    p.not_before = at(-7200);
    p.not_after = at(-3600);
    let l = issue(p, Some(&ca));
    assert!(matches!(
        verify(&[&l], &[&ca]),
        Err(X509SvidError::Expired { .. })
    ));

    let mut p = leaf_params(&["spiffe://example.org/a"]);
    p.not_before = at(3600);
    p.not_after = at(7200);
    let l = issue(p, Some(&ca));
    assert!(matches!(
        verify(&[&l], &[&ca]),
        Err(X509SvidError::NotYetValid { .. })
    ));

    let mut p = ca_params(TD, "old-root");
    p.not_before = at(-7200);
    p.not_after = at(-10);
    let old = issue(p, None);
    let l = leaf(&old, "spiffe://example.org/a");
    assert!(matches!(
        verify(&[&l], &[&old]),
        Err(X509SvidError::Expired { .. })
    ));
}

#[test]
fn anchor_must_be_a_ca() {
    let mut p = ca_params(TD, "anchor");
    p.is_ca = IsCa::ExplicitNoCa;
    let anchor = issue(p, None);
    let l = leaf(&anchor, "spiffe://example.org/a");
    assert!(matches!(
        verify(&[&l], &[&anchor]),
        Err(X509SvidError::AuthorityNotCa { .. })
    ));
}

#[test]
fn path_length_constraint() {
    let mut p = ca_params(TD, "root");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = issue(p, None);
    let i = testpki::intermediate(&ca, TD);
    let l = leaf(&i, "spiffe://example.org/a");
    assert!(matches!(
        verify(&[&l, &i], &[&ca]),
        Err(X509SvidError::PathLenExceeded { .. })
    ));
    let direct = leaf(&ca, "spiffe://example.org/a");
    assert!(verify(&[&direct], &[&ca]).is_ok());
}

#[test]
fn pem_round_trip() {
    let ca = root(TD);
    let l = leaf(&ca, "spiffe://example.org/a");
    let pem_text = certificates_to_pem(&[l.der.clone(), ca.der.clone()]);
    assert_eq!(
        parse_pem_certificates(&pem_text).unwrap(),
        vec![l.der.clone(), ca.der.clone()]
    );
    assert_eq!(
        split_der_certificates(&[l.der.clone(), ca.der.clone()].concat())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(id_from_der(&l.der).unwrap().path(), "/a");
}

#[test]
fn plain_x509_paths_report_the_chain() {
    let ca = root(TD);
    let i1 = testpki::intermediate(&ca, TD);
    let mut p = leaf_params(&[]);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "node-1");
    let l = issue(p, Some(&i1));
    let path = verify_x509_path(
        &l.der,
        std::slice::from_ref(&i1.der),
        std::slice::from_ref(&ca.der),
        now(),
    )
    .unwrap();
    assert_eq!(path, vec![i1.der.clone(), ca.der.clone()]);
    let stranger = root("other.org");
    assert!(
        verify_x509_path(
            &l.der,
            std::slice::from_ref(&i1.der),
            std::slice::from_ref(&stranger.der),
            now()
        )
        .is_err()
    );
    assert!(verify_x509_path(&l.der, &[], std::slice::from_ref(&ca.der), now()).is_err());
}
