//! Conversions between the API's protobuf types and the datastore's records, with SPIRE's
//! validation rules and messages (`pkg/server/api/{id,entry,agent,bundle}.go`).

use spiffe_core::id::go_compat;
use spiffe_core::{PublicKey, SpiffeId, TrustDomain};
use spire_datastore::{
    AttestedNode, BundleEndpointProfile, EntryFields, EntryMask, FederationRelationship,
    JwtSigningKey, RegistrationEntry, RootCa, StoredBundle,
};
use spire_plugin::{Selector, split_selector_key};
use spire_proto::spire::api::types;

/// SPIRE's limit on entry hints.
pub const HINT_MAX_LEN: usize = 1024;

/// The datastore page a list request asks for: none unless `page_size` is positive.
pub fn pagination(page_size: i32, page_token: &str) -> Option<spire_datastore::Pagination> {
    let page_size = u32::try_from(page_size).ok().filter(|&n| n > 0)?;
    Some(spire_datastore::Pagination {
        token: page_token.to_owned(),
        page_size,
    })
}

/// `spiffe://td/path` → `{trust_domain, path}`.
pub fn proto_id(id: &SpiffeId) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: id.trust_domain_name().to_string(),
        path: id.path().to_string(),
    }
}

/// `{trust_domain, path}` → a SPIFFE ID, with go-spiffe's error wording.
pub fn id_from_proto(p: Option<&types::Spiffeid>) -> Result<SpiffeId, String> {
    let p = p.ok_or_else(|| "request must specify SPIFFE ID".to_string())?;
    if let Some(msg) = go_compat::trust_domain_error(&p.trust_domain) {
        return Err(msg.to_string());
    }
    let td = TrustDomain::from_name_or_id(&p.trust_domain).map_err(|e| e.to_string())?;
    if let Some(msg) = go_compat::path_error(&p.path) {
        return Err(msg.to_string());
    }
    td.id_with_path(&p.path).map_err(|e| e.to_string())
}

/// Parses a SPIFFE ID string with go-spiffe's error wording.
pub fn parse_id(s: &str) -> Result<SpiffeId, String> {
    if let Some(msg) = go_compat::id_error(s) {
        return Err(msg.to_string());
    }
    SpiffeId::parse(s).map_err(|e| e.to_string())
}

/// Parses a trust domain name or ID with go-spiffe's error wording.
pub fn parse_td(s: &str) -> Result<TrustDomain, String> {
    if let Some(msg) = go_compat::trust_domain_error(s) {
        return Err(msg.to_string());
    }
    TrustDomain::from_name_or_id(s).map_err(|e| e.to_string())
}

/// SPIRE's `VerifyTrustDomainMemberID`.
pub fn verify_member(td: &TrustDomain, id: &SpiffeId) -> Result<(), String> {
    if !id.is_member_of(td) {
        return Err(format!(
            "{:?} is not a member of trust domain {:?}",
            id.as_str(),
            td.name()
        ));
    }
    if id.path().is_empty() {
        return Err(format!(
            "{:?} is not a member of trust domain {:?}; path is empty",
            id.as_str(),
            td.name()
        ));
    }
    Ok(())
}

/// SPIRE's `IsReservedPath`: the `/spire` namespace.
pub fn is_reserved_path(path: &str) -> bool {
    path == "/spire" || path.starts_with("/spire/")
}

/// SPIRE's `VerifyTrustDomainWorkloadID`.
pub fn verify_workload(td: &TrustDomain, id: &SpiffeId) -> Result<(), String> {
    if !id.is_member_of(td) {
        return Err(format!(
            "{:?} is not a member of trust domain {:?}",
            id.as_str(),
            td.name()
        ));
    }
    if id.path().is_empty() {
        return Err(format!(
            "{:?} is not a workload in trust domain {:?}; path is empty",
            id.as_str(),
            td.name()
        ));
    }
    if is_reserved_path(id.path()) {
        return Err(format!(
            "{:?} is not a workload in trust domain {:?}; path is in the reserved namespace",
            id.as_str(),
            td.name()
        ));
    }
    Ok(())
}

/// SPIRE's `VerifyTrustDomainAgentID`.
pub fn verify_agent(td: &TrustDomain, id: &SpiffeId) -> Result<(), String> {
    if !id.is_member_of(td) {
        return Err(format!(
            "{:?} is not a member of trust domain {:?}",
            id.as_str(),
            td.name()
        ));
    }
    if id.path().is_empty() {
        return Err(format!(
            "{:?} is not an agent in trust domain {:?}; path is empty",
            id.as_str(),
            td.name()
        ));
    }
    if !id.path().starts_with("/spire/agent/") {
        return Err(format!(
            "{:?} is not an agent in trust domain {:?}; path is not in the agent namespace",
            id.as_str(),
            td.name()
        ));
    }
    Ok(())
}

/// SPIRE's `x509util.ValidateLabel` for entry and CSR DNS names, with its messages.
///
/// SPIRE checks the name with an IDNA profile whose only mapping is an NFC check, so on
/// ASCII input only label emptiness, hyphen placement, lengths and punycode (`xn--`)
/// labels are checked: underscores, spaces and upper-case letters pass. Decoded punycode
/// labels are not checked against the IDNA tables (disallowed code points, bidi and joiner
/// rules) as SPIRE does.
pub fn validate_dns_name(name: &str) -> Result<(), String> {
    if !name.is_ascii() {
        return Err("name must be ascii".into());
    }
    let rest = match name.matches('*').count() {
        0 => name,
        1 => name
            .strip_prefix("*.")
            .ok_or("wildcard must be first label")?,
        _ => return Err("too many wildcards".into()),
    };
    // Go's strings.TrimSpace, on ASCII.
    let domain =
        rest.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    if domain.is_empty() {
        return Err("empty or only whitespace".into());
    }
    if domain.ends_with('.') {
        return Err("domain ends with dot".into());
    }
    idna_to_ascii(domain)
}

/// x/net/idna's `ToASCII` under SPIRE's profile (DNS lengths and hyphens checked) for an
/// ASCII domain that does not end with a dot; the first problem found wins.
fn idna_to_ascii(domain: &str) -> Result<(), String> {
    use spire_gocompat::strconv::quote;
    fn label_problem(label: &str) -> bool {
        let b = label.as_bytes();
        b.is_empty() || (b.len() > 4 && &b[2..4] == b"--") || b[0] == b'-' || b[b.len() - 1] == b'-'
    }
    let mut bad: Option<String> = None;
    let mut labels = Vec::new();
    for label in domain.split('.') {
        if label.is_empty() {
            bad.get_or_insert_with(|| domain.to_string());
            labels.push(String::new());
            continue;
        }
        let checked = match label.strip_prefix("xn--") {
            Some(encoded) => match super::punycode::decode(encoded) {
                Some(u) => u,
                None => {
                    bad.get_or_insert_with(|| encoded.to_string());
                    labels.push(label.to_string());
                    continue;
                }
            },
            None => label.to_string(),
        };
        if bad.is_none() && label_problem(&checked) {
            bad = Some(checked.clone());
        }
        labels.push(checked);
    }
    for label in &mut labels {
        if !label.is_ascii() {
            match super::punycode::encode(label) {
                Some(e) => *label = format!("xn--{e}"),
                None => {
                    bad.get_or_insert_with(|| label.clone());
                }
            }
        }
        if bad.is_none() && (label.is_empty() || label.len() > 63) {
            bad = Some(label.clone());
        }
    }
    let result = labels.join(".");
    if bad.is_none() && result.len() > 253 {
        bad = Some(result.clone());
    }
    if let Some(label) = bad {
        return Err(format!("idna error\nidna: invalid label {}", quote(&label)));
    }
    if result != domain {
        return Err(format!(
            "input domain name {} does not match idna output {}: label mismatch after idna",
            quote(domain),
            quote(&result)
        ));
    }
    Ok(())
}

/// Selectors from the API, with SPIRE's checks and messages.
pub fn selectors_from_proto(s: &[types::Selector]) -> Result<Vec<Selector>, String> {
    s.iter()
        .map(|p| Selector::new(&p.r#type, &p.value).map_err(|e| e.to_string()))
        .collect()
}

/// Selectors to the API.
pub fn proto_selectors(s: &[Selector]) -> Vec<types::Selector> {
    s.iter()
        .map(|s| types::Selector {
            r#type: s.selector_type().to_string(),
            value: s.value().to_string(),
        })
        .collect()
}

fn full_entry_mask() -> types::EntryMask {
    types::EntryMask {
        spiffe_id: true,
        parent_id: true,
        selectors: true,
        x509_svid_ttl: true,
        federates_with: true,
        admin: true,
        downstream: true,
        expires_at: true,
        dns_names: true,
        revision_number: true,
        store_svid: true,
        jwt_svid_ttl: true,
        hint: true,
        created_at: true,
    }
}

/// SPIRE's `ProtoToRegistrationEntryWithMask`: validates the masked fields of `e`.
/// Unmasked fields are left at their zero values (the caller only uses masked ones).
pub fn entry_from_proto(
    td: &TrustDomain,
    e: &types::Entry,
    mask: Option<&types::EntryMask>,
) -> Result<(RegistrationEntry, EntryMask), String> {
    let full = full_entry_mask();
    let mask = mask.unwrap_or(&full);
    let placeholder = td.id();
    let parent_id = if mask.parent_id {
        let id =
            id_from_proto(e.parent_id.as_ref()).map_err(|m| format!("invalid parent ID: {m}"))?;
        verify_member(td, &id).map_err(|m| format!("invalid parent ID: {m}"))?;
        id
    } else {
        placeholder.clone()
    };
    let spiffe_id = if mask.spiffe_id {
        let id =
            id_from_proto(e.spiffe_id.as_ref()).map_err(|m| format!("invalid spiffe ID: {m}"))?;
        verify_workload(td, &id).map_err(|m| format!("invalid spiffe ID: {m}"))?;
        id
    } else {
        placeholder
    };
    let mut dns_names = Vec::new();
    if mask.dns_names {
        for d in &e.dns_names {
            validate_dns_name(d).map_err(|m| format!("invalid DNS name: {m}"))?;
            dns_names.push(d.clone());
        }
    }
    let mut federates_with = Vec::new();
    if mask.federates_with {
        for t in &e.federates_with {
            federates_with
                .push(parse_td(t).map_err(|m| format!("invalid federated trust domain: {m}"))?);
        }
    }
    let mut selectors = Vec::new();
    if mask.selectors {
        if e.selectors.is_empty() {
            return Err("selector list is empty".into());
        }
        selectors = selectors_from_proto(&e.selectors)?;
    }
    if mask.hint && e.hint.len() > HINT_MAX_LEN {
        return Err(format!(
            "hint is too long, max length is {HINT_MAX_LEN} characters"
        ));
    }
    let mut out = RegistrationEntry::new(spiffe_id, parent_id, selectors);
    out.entry_id = e.id.clone();
    out.admin = mask.admin && e.admin;
    out.downstream = mask.downstream && e.downstream;
    out.entry_expiry = if mask.expires_at { e.expires_at } else { 0 };
    out.dns_names = dns_names;
    out.federates_with = federates_with;
    out.revision_number = if mask.revision_number {
        e.revision_number
    } else {
        0
    };
    out.store_svid = mask.store_svid && e.store_svid;
    out.x509_svid_ttl = if mask.x509_svid_ttl {
        e.x509_svid_ttl
    } else {
        0
    };
    out.jwt_svid_ttl = if mask.jwt_svid_ttl { e.jwt_svid_ttl } else { 0 };
    out.hint = if mask.hint {
        e.hint.clone()
    } else {
        String::new()
    };
    let ds_mask = EntryMask {
        selectors: mask.selectors,
        parent_id: mask.parent_id,
        spiffe_id: mask.spiffe_id,
        x509_svid_ttl: mask.x509_svid_ttl,
        jwt_svid_ttl: mask.jwt_svid_ttl,
        federates_with: mask.federates_with,
        admin: mask.admin,
        downstream: mask.downstream,
        entry_expiry: mask.expires_at,
        dns_names: mask.dns_names,
        store_svid: mask.store_svid,
        hint: mask.hint,
    };
    Ok((out, ds_mask))
}

/// An entry for the API, from the datastore's form or the in-memory index's (what agents'
/// syncs send), keeping only the fields in `mask` (the ID always).
pub fn entry_to_proto(
    e: &(impl EntryFields + ?Sized),
    mask: Option<&types::EntryMask>,
) -> types::Entry {
    let full = full_entry_mask();
    let m = mask.unwrap_or(&full);
    let mut selectors = Vec::new();
    if m.selectors {
        selectors.reserve(e.selector_count());
        e.for_each_selector_key(&mut |k| {
            let (t, v) = split_selector_key(k);
            selectors.push(types::Selector {
                r#type: t.to_string(),
                value: v.to_string(),
            });
        });
    }
    types::Entry {
        id: e.entry_id().to_string(),
        spiffe_id: m.spiffe_id.then(|| proto_id_str(e.spiffe_id())),
        parent_id: m.parent_id.then(|| proto_id_str(e.parent_id())),
        selectors,
        x509_svid_ttl: if m.x509_svid_ttl {
            e.x509_svid_ttl()
        } else {
            0
        },
        federates_with: if m.federates_with {
            e.federated().iter().map(|t| t.name().to_string()).collect()
        } else {
            vec![]
        },
        admin: m.admin && e.admin(),
        downstream: m.downstream && e.downstream(),
        expires_at: if m.expires_at { e.entry_expiry() } else { 0 },
        dns_names: if m.dns_names {
            e.dns_name_list()
        } else {
            vec![]
        },
        revision_number: if m.revision_number {
            e.revision_number()
        } else {
            0
        },
        store_svid: m.store_svid && e.store_svid(),
        jwt_svid_ttl: if m.jwt_svid_ttl { e.jwt_svid_ttl() } else { 0 },
        hint: if m.hint {
            e.hint().to_string()
        } else {
            String::new()
        },
        created_at: if m.created_at { e.created_at() } else { 0 },
    }
}

/// `spiffe://td/path` as the API's `{trust_domain, path}`.
fn proto_id_str(id: &str) -> types::Spiffeid {
    let (trust_domain, path) = crate::index::split_id(id);
    types::Spiffeid {
        trust_domain: trust_domain.to_string(),
        path: path.to_string(),
    }
}

/// An agent for the API, keeping only the fields in `mask` (the ID always).
pub fn agent_to_proto(n: &AttestedNode, mask: Option<&types::AgentMask>) -> types::Agent {
    let all = types::AgentMask {
        attestation_type: true,
        x509svid_serial_number: true,
        x509svid_expires_at: true,
        selectors: true,
        banned: true,
        can_reattest: true,
    };
    let m = mask.unwrap_or(&all);
    types::Agent {
        id: Some(proto_id(&n.spiffe_id)),
        attestation_type: if m.attestation_type {
            n.attestation_data_type.clone()
        } else {
            String::new()
        },
        x509svid_serial_number: if m.x509svid_serial_number {
            n.cert_serial_number.clone()
        } else {
            String::new()
        },
        x509svid_expires_at: if m.x509svid_expires_at {
            n.cert_not_after
        } else {
            0
        },
        selectors: if m.selectors {
            proto_selectors(&n.selectors)
        } else {
            vec![]
        },
        banned: m.banned && n.is_banned(),
        can_reattest: m.can_reattest && n.can_reattest,
    }
}

/// A stored bundle for the API.
pub fn bundle_to_proto(b: &StoredBundle) -> types::Bundle {
    types::Bundle {
        trust_domain: b.trust_domain.name().to_string(),
        x509_authorities: b
            .root_cas
            .iter()
            .map(|r| types::X509Certificate {
                asn1: r.der.clone(),
                tainted: r.tainted,
            })
            .collect(),
        jwt_authorities: b
            .jwt_signing_keys
            .iter()
            .map(|k| types::JwtKey {
                public_key: k.pkix.clone(),
                key_id: k.kid.clone(),
                expires_at: k.not_after,
                tainted: k.tainted,
            })
            .collect(),
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    }
}

/// Applies an output mask to an API bundle (the trust domain always stays).
pub fn mask_bundle(mut b: types::Bundle, mask: Option<&types::BundleMask>) -> types::Bundle {
    if let Some(m) = mask {
        if !m.x509_authorities {
            b.x509_authorities.clear();
        }
        if !m.jwt_authorities {
            b.jwt_authorities.clear();
        }
        if !m.refresh_hint {
            b.refresh_hint = 0;
        }
        if !m.sequence_number {
            b.sequence_number = 0;
        }
    }
    b
}

/// SPIRE's `ParseX509Authorities` (the tainted flag is not taken from input).
pub fn x509_authorities_from_proto(
    certs: &[types::X509Certificate],
) -> Result<Vec<RootCa>, String> {
    certs
        .iter()
        .map(|a| {
            spiffe_core::x509svid::split_der_certificates(&a.asn1).map_err(|e| e.to_string())?;
            Ok(RootCa {
                der: a.asn1.clone(),
                tainted: false,
            })
        })
        .collect()
}

/// SPIRE's `ParseJWTAuthorities` (the tainted flag is not taken from input).
pub fn jwt_authorities_from_proto(keys: &[types::JwtKey]) -> Result<Vec<JwtSigningKey>, String> {
    keys.iter()
        .map(|k| {
            PublicKey::from_spki_der(&k.public_key).map_err(|e| e.to_string())?;
            if k.key_id.is_empty() {
                return Err("missing key ID".to_string());
            }
            Ok(JwtSigningKey {
                kid: k.key_id.clone(),
                pkix: k.public_key.clone(),
                not_after: k.expires_at,
                tainted: false,
            })
        })
        .collect()
}

/// An API bundle to a stored bundle, with SPIRE's `ProtoToBundle` checks and messages.
pub fn bundle_from_proto(b: &types::Bundle) -> Result<StoredBundle, String> {
    let td = parse_td(&b.trust_domain).map_err(|m| format!("invalid trust domain: {m}"))?;
    let mut out = StoredBundle::new(td);
    out.root_cas = x509_authorities_from_proto(&b.x509_authorities)
        .map_err(|m| format!("unable to parse X.509 authority: {m}"))?;
    out.jwt_signing_keys = jwt_authorities_from_proto(&b.jwt_authorities)
        .map_err(|m| format!("unable to parse JWT authority: {m}"))?;
    out.refresh_hint = b.refresh_hint;
    out.sequence_number = b.sequence_number;
    Ok(out)
}

/// A stored bundle as a SPIFFE bundle (for TLS verification and the Workload API).
pub fn bundle_to_spiffe(b: &StoredBundle) -> spiffe_core::Bundle {
    let mut out = spiffe_core::Bundle::new(b.trust_domain.clone());
    for r in &b.root_cas {
        if let Ok(certs) = spiffe_core::x509svid::split_der_certificates(&r.der) {
            for c in certs {
                out.add_x509_authority(c);
                if let Some(last) = out.x509_authorities.last_mut() {
                    last.tainted = r.tainted;
                }
            }
        }
    }
    for k in &b.jwt_signing_keys {
        if let Ok(public_key) = PublicKey::from_spki_der(&k.pkix) {
            out.jwt_authorities.push(spiffe_core::bundle::JwtAuthority {
                key_id: k.kid.clone(),
                public_key,
                expires_at: k.not_after,
                tainted: k.tainted,
            });
        }
    }
    out.refresh_hint = (b.refresh_hint > 0).then_some(b.refresh_hint);
    out.sequence_number = Some(b.sequence_number);
    out
}

/// A SPIFFE bundle (parsed from `bundle set` / federation) as a stored bundle.
pub fn stored_from_spiffe(b: &spiffe_core::Bundle) -> StoredBundle {
    let mut out = StoredBundle::new(b.trust_domain().clone());
    out.root_cas = b
        .x509_authorities
        .iter()
        .map(|a| RootCa {
            der: a.der.clone(),
            tainted: a.tainted,
        })
        .collect();
    out.jwt_signing_keys = b
        .jwt_authorities
        .iter()
        .map(|a| JwtSigningKey {
            kid: a.key_id.clone(),
            pkix: a.public_key.spki_der().to_vec(),
            not_after: a.expires_at,
            tainted: a.tainted,
        })
        .collect();
    out.refresh_hint = b.refresh_hint.unwrap_or(0);
    out.sequence_number = b.sequence_number.unwrap_or(0);
    out
}

/// A federation relationship for the API.
pub fn relationship_to_proto(fr: &FederationRelationship) -> types::FederationRelationship {
    use types::federation_relationship::BundleEndpointProfile as P;
    types::FederationRelationship {
        trust_domain: fr.trust_domain.name().to_string(),
        bundle_endpoint_url: fr.bundle_endpoint_url.to_string(),
        trust_domain_bundle: fr.trust_domain_bundle.as_ref().map(bundle_to_proto),
        bundle_endpoint_profile: Some(match &fr.bundle_endpoint_profile {
            BundleEndpointProfile::HttpsWeb => P::HttpsWeb(types::HttpsWebProfile {}),
            BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                P::HttpsSpiffe(types::HttpsspiffeProfile {
                    endpoint_spiffe_id: endpoint_spiffe_id.to_string(),
                })
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn pid(path: &str) -> Option<types::Spiffeid> {
        Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: path.into(),
        })
    }

    #[test]
    fn entry_validation_messages_are_spires() {
        let mut e = types::Entry {
            parent_id: pid("/spire/agent/x"),
            spiffe_id: pid("/workload"),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1".into(),
            }],
            ..Default::default()
        };
        assert!(entry_from_proto(&td(), &e, None).is_ok());
        e.spiffe_id = pid("/spire/thing");
        assert_eq!(
            entry_from_proto(&td(), &e, None).unwrap_err(),
            "invalid spiffe ID: \"spiffe://example.org/spire/thing\" is not a workload in trust domain \"example.org\"; path is in the reserved namespace"
        );
        e.spiffe_id = pid("/w");
        e.parent_id = Some(types::Spiffeid {
            trust_domain: "other.org".into(),
            path: "/x".into(),
        });
        assert_eq!(
            entry_from_proto(&td(), &e, None).unwrap_err(),
            "invalid parent ID: \"spiffe://other.org/x\" is not a member of trust domain \"example.org\""
        );
        e.parent_id = pid("/p");
        e.selectors.clear();
        assert_eq!(
            entry_from_proto(&td(), &e, None).unwrap_err(),
            "selector list is empty"
        );
        e.selectors = vec![types::Selector {
            r#type: "".into(),
            value: "x".into(),
        }];
        assert_eq!(
            entry_from_proto(&td(), &e, None).unwrap_err(),
            "missing selector type"
        );
        e.selectors = vec![types::Selector {
            r#type: "a".into(),
            value: "x".into(),
        }];
        e.dns_names = vec!["-bad-label".into()];
        assert!(
            entry_from_proto(&td(), &e, None)
                .unwrap_err()
                .starts_with("invalid DNS name: ")
        );
        e.dns_names = vec!["*.example.org".into()];
        e.hint = "h".repeat(1025);
        assert_eq!(
            entry_from_proto(&td(), &e, None).unwrap_err(),
            "hint is too long, max length is 1024 characters"
        );
        e.hint.clear();
        e.spiffe_id = Some(types::Spiffeid {
            trust_domain: "Example.org".into(),
            path: "/w".into(),
        });
        assert_eq!(
            entry_from_proto(&td(), &e, None).unwrap_err(),
            "invalid spiffe ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
        );
        e.spiffe_id = None;
        assert_eq!(
            entry_from_proto(&td(), &e, None).unwrap_err(),
            "invalid spiffe ID: request must specify SPIFFE ID"
        );
    }

    #[test]
    fn entries_round_trip_with_masks() {
        let e = types::Entry {
            id: "abc".into(),
            parent_id: pid("/spire/agent/x"),
            spiffe_id: pid("/workload"),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1".into(),
            }],
            x509_svid_ttl: 60,
            jwt_svid_ttl: 30,
            federates_with: vec!["other.org".into()],
            dns_names: vec!["a.example.org".into()],
            hint: "h".into(),
            admin: true,
            ..Default::default()
        };
        let (r, _) = entry_from_proto(&td(), &e, None).unwrap();
        let back = entry_to_proto(&r, None);
        assert_eq!(back, e);
        let only_ids = types::EntryMask {
            spiffe_id: true,
            ..Default::default()
        };
        let masked = entry_to_proto(&r, Some(&only_ids));
        assert_eq!(masked.id, "abc");
        assert!(masked.parent_id.is_none() && masked.selectors.is_empty() && !masked.admin);
    }

    #[test]
    fn dns_labels() {
        for ok in [
            "a",
            "a.b",
            "*.a.b",
            "a-b.c",
            "xn--80ak6aa92e.com",
            "a_b",
            "A.B",
            " a.b ",
            "a b.c",
            "a\tb",
        ] {
            assert!(validate_dns_name(ok).is_ok(), "{ok}");
        }
        for (bad, msg) in [
            ("", "empty or only whitespace"),
            ("  ", "empty or only whitespace"),
            ("a.", "domain ends with dot"),
            ("a*.b", "wildcard must be first label"),
            ("*.*.b", "too many wildcards"),
            ("é.com", "name must be ascii"),
            ("a..b", "idna error\nidna: invalid label \"a..b\""),
            (".a", "idna error\nidna: invalid label \".a\""),
            ("-a.b", "idna error\nidna: invalid label \"-a\""),
            ("a.b-", "idna error\nidna: invalid label \"b-\""),
            ("ab--c.d", "idna error\nidna: invalid label \"ab--c\""),
            (
                "XN--80ak6aa92e.com",
                "idna error\nidna: invalid label \"XN--80ak6aa92e\"",
            ),
            ("xn--zz", "idna error\nidna: invalid label \"zz\""),
            ("xn---abc.com", "idna error\nidna: invalid label \"-abc\""),
            ("a.xn--.com", "idna error\nidna: invalid label \"\""),
            ("*", "wildcard must be first label"),
            ("*.", "empty or only whitespace"),
            (
                "xn--a-",
                "input domain name \"xn--a-\" does not match idna output \"a\": label mismatch after idna",
            ),
            (
                "xn--80AK6AA92E.com",
                "input domain name \"xn--80AK6AA92E.com\" does not match idna output \"xn--80ak6aa92e.com\": label mismatch after idna",
            ),
        ] {
            assert_eq!(validate_dns_name(bad).unwrap_err(), msg, "{bad:?}");
        }
        let long = "a".repeat(64);
        assert_eq!(
            validate_dns_name(&format!("{long}.b")).unwrap_err(),
            format!("idna error\nidna: invalid label \"{long}\"")
        );
    }
}
