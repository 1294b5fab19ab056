//! Test certificate factory: CA chains and leaves with every property under test control.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// The instant tests treat as "now": 2026-01-01T00:00:00Z.
pub(crate) const NOW_SECS: u64 = 1_767_225_600;

pub(crate) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

pub(crate) fn at(offset_secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW_SECS as i64 + offset_secs).unwrap()
}

/// A certificate with its key and the parameters it was built from.
pub(crate) struct Issued {
    pub(crate) der: Vec<u8>,
    pub(crate) key: KeyPair,
    pub(crate) params: CertificateParams,
}

pub(crate) fn ca_params(td: &str, cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
    p.not_before = at(-86_400);
    p.not_after = at(86_400);
    p.use_authority_key_identifier_extension = true;
    p
}

pub(crate) fn leaf_params(uris: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, "SPIRE");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    p.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).to_string().try_into().unwrap()))
        .collect();
    p.not_before = at(-60);
    p.not_after = at(3600);
    p.use_authority_key_identifier_extension = true;
    p
}

/// Signs `params` with `parent` (self-signed when `None`).
pub(crate) fn issue(params: CertificateParams, parent: Option<&Issued>) -> Issued {
    let key = KeyPair::generate().unwrap();
    let cert = match parent {
        None => params.self_signed(&key).unwrap(),
        Some(p) => {
            let issuer = Issuer::from_params(&p.params, &p.key);
            params.signed_by(&key, &issuer).unwrap()
        }
    };
    Issued {
        der: cert.der().to_vec(),
        key,
        params,
    }
}

pub(crate) fn root(td: &str) -> Issued {
    issue(ca_params(td, "root"), None)
}

pub(crate) fn intermediate(parent: &Issued, td: &str) -> Issued {
    issue(ca_params(td, "intermediate"), Some(parent))
}

pub(crate) fn leaf(parent: &Issued, uri: &str) -> Issued {
    issue(leaf_params(&[uri]), Some(parent))
}
