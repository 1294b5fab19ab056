//! Unit tests of the SDS resources and stream state (`sds.rs`): names, PEM forms, the SPIFFE
//! validator choice, SPIRE's error messages and the ACK/NACK rules.

use std::time::UNIX_EPOCH;

use super::*;
use crate::core::entry::{X509SvidRecord, testing::entry};
use pbjson_types::Value;
use prost::Message as _;
use spire_proto::envoy::r#type::v3::SemanticVersion;

fn cfg() -> SdsConfig {
    SdsConfig {
        default_svid_name: "default".into(),
        default_bundle_name: "ROOTCA".into(),
        default_all_bundles_name: "ALL".into(),
        disable_spiffe_cert_validation: false,
    }
}

fn identity(id: &str, path: &str, leaf: u8) -> Identity {
    Identity {
        entry: Arc::new(entry(id, path, &["unix:uid:1"], 1)),
        svid: Arc::new(X509SvidRecord {
            chain: vec![vec![leaf], vec![0xCA]],
            key_pkcs8: vec![0x4B],
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
        }),
    }
}

fn bundle(td: &str, der: u8) -> (TrustDomain, Arc<Bundle>) {
    let td = TrustDomain::new(td).unwrap();
    let mut b = Bundle::new(td.clone());
    b.add_x509_authority(vec![der]);
    (td, Arc::new(b))
}

fn update() -> WorkloadUpdate {
    let (_, own) = bundle("example.org", 1);
    let mut fed = BTreeMap::new();
    for (name, der) in [("zeta.org", 3), ("alpha.org", 2)] {
        let (td, b) = bundle(name, der);
        fed.insert(td, b);
    }
    WorkloadUpdate {
        identities: vec![identity("1", "/a", 0xA), identity("2", "/b", 0xB)],
        bundle: Some(own),
        federated_bundles: fed,
    }
}

fn request(names: &[&str]) -> discovery::DiscoveryRequest {
    discovery::DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn secrets(resp: &discovery::DiscoveryResponse) -> Vec<tls::Secret> {
    resp.resources
        .iter()
        .map(|a| {
            assert_eq!(
                a.type_url,
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            );
            tls::Secret::decode(a.value.as_ref()).unwrap()
        })
        .collect()
}

fn names(resp: &discovery::DiscoveryResponse) -> Vec<String> {
    secrets(resp).into_iter().map(|s| s.name).collect()
}

fn inline_bytes(ds: &Option<core::DataSource>) -> Vec<u8> {
    match ds.as_ref().and_then(|d| d.specifier.clone()) {
        Some(core::data_source::Specifier::InlineBytes(b)) => b,
        other => panic!("not inline bytes: {other:?}"),
    }
}

fn spiffe_config(s: &tls::Secret) -> tls::SpiffeCertValidatorConfig {
    let Some(tls::secret::Type::ValidationContext(ctx)) = &s.r#type else {
        panic!("not a validation context: {s:?}");
    };
    assert!(ctx.trusted_ca.is_none());
    let ext = ctx.custom_validator_config.as_ref().unwrap();
    assert_eq!(ext.name, "envoy.tls.cert_validator.spiffe");
    let any = ext.typed_config.as_ref().unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
    );
    tls::SpiffeCertValidatorConfig::decode(any.value.as_ref()).unwrap()
}

#[test]
fn empty_names_give_every_svid_and_bundle() {
    let resp = build_response(&cfg(), "3", "n".into(), &request(&[]), &update()).unwrap();
    assert_eq!(resp.version_info, "3");
    assert_eq!(resp.nonce, "n");
    assert_eq!(resp.type_url, request(&[]).type_url);
    assert_eq!(
        names(&resp),
        [
            "spiffe://example.org",
            "spiffe://alpha.org",
            "spiffe://zeta.org",
            "spiffe://example.org/a",
            "spiffe://example.org/b",
        ]
    );
    // Empty names are ignored.
    let again = build_response(&cfg(), "3", "n".into(), &request(&[""]), &update()).unwrap();
    assert_eq!(names(&again), names(&resp));
}

#[test]
fn tls_certificate_is_pem_chain_and_pkcs8_key() {
    let resp = build_response(
        &cfg(),
        "",
        String::new(),
        &request(&["spiffe://example.org/b"]),
        &update(),
    )
    .unwrap();
    let s = &secrets(&resp)[0];
    assert_eq!(s.name, "spiffe://example.org/b");
    let Some(tls::secret::Type::TlsCertificate(c)) = &s.r#type else {
        panic!("not a certificate");
    };
    let chain = String::from_utf8(inline_bytes(&c.certificate_chain)).unwrap();
    assert_eq!(
        chain,
        format!(
            "{}{}",
            spiffe_core::pem_encode("CERTIFICATE", &[0xB]),
            spiffe_core::pem_encode("CERTIFICATE", &[0xCA])
        )
    );
    let key = String::from_utf8(inline_bytes(&c.private_key)).unwrap();
    assert_eq!(key, spiffe_core::pem_encode("PRIVATE KEY", &[0x4B]));
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"));
}

#[test]
fn default_names() {
    let resp = build_response(
        &cfg(),
        "1",
        "n".into(),
        &request(&["default", "ROOTCA"]),
        &update(),
    )
    .unwrap();
    let s = secrets(&resp);
    assert_eq!(s[0].name, "ROOTCA");
    assert_eq!(s[1].name, "default");
    // The default SVID is the first identity.
    let Some(tls::secret::Type::TlsCertificate(c)) = &s[1].r#type else {
        panic!()
    };
    assert!(
        String::from_utf8(inline_bytes(&c.certificate_chain))
            .unwrap()
            .starts_with(&spiffe_core::pem_encode("CERTIFICATE", &[0xA]))
    );
    // SPIFFE validator for the default bundle: only its own trust domain.
    let conf = spiffe_config(&s[0]);
    assert_eq!(conf.trust_domains.len(), 1);
    assert_eq!(conf.trust_domains[0].name, "example.org");
    assert_eq!(
        inline_bytes(&conf.trust_domains[0].trust_bundle),
        spiffe_core::pem_encode("CERTIFICATE", &[1]).into_bytes()
    );
}

#[test]
fn all_bundles_holds_every_trust_domain_sorted() {
    let resp = build_response(&cfg(), "1", "n".into(), &request(&["ALL"]), &update()).unwrap();
    let s = secrets(&resp);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].name, "ALL");
    let tds: Vec<_> = spiffe_config(&s[0])
        .trust_domains
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(tds, ["alpha.org", "example.org", "zeta.org"]);
}

#[test]
fn only_one_own_bundle_form_per_response() {
    // SPIRE picks one of the trust domain ID, ROOTCA and ALL; the others stay unmatched.
    let err = build_response(
        &cfg(),
        "1",
        "n".into(),
        &request(&["ROOTCA", "ALL"]),
        &update(),
    )
    .unwrap_err();
    assert_eq!(
        Status::from(err).message(),
        "workload is not authorized for the requested identities [\"ALL\"]"
    );
    // Likewise the default SVID name is not served when the first SVID is asked by ID.
    let err = build_response(
        &cfg(),
        "1",
        "n".into(),
        &request(&["spiffe://example.org/a", "default"]),
        &update(),
    )
    .unwrap_err();
    assert!(matches!(err, SdsError::NotAuthorized(ref n) if n == &["default".to_string()]));
}

#[test]
fn disabled_validation_uses_trusted_ca() {
    let mut c = cfg();
    c.disable_spiffe_cert_validation = true;
    let resp = build_response(&c, "1", "n".into(), &request(&["ROOTCA"]), &update()).unwrap();
    let s = &secrets(&resp)[0];
    let Some(tls::secret::Type::ValidationContext(ctx)) = &s.r#type else {
        panic!()
    };
    assert!(ctx.custom_validator_config.is_none());
    assert_eq!(
        inline_bytes(&ctx.trusted_ca),
        spiffe_core::pem_encode("CERTIFICATE", &[1]).into_bytes()
    );
    // The all-bundles context needs the SPIFFE validator.
    let err = build_response(&c, "1", "n".into(), &request(&["ALL"]), &update()).unwrap_err();
    let st = Status::from(err);
    assert_eq!(st.code(), tonic::Code::Internal);
    assert_eq!(
        st.message(),
        "unable to use \"SPIFFE validator\" on Envoy below 1.17"
    );
}

fn node_with(meta: Option<Kind>, version: Option<(u32, u32)>) -> core::Node {
    let metadata = meta.map(|k| Struct {
        fields: [(
            DISABLE_SPIFFE_CERT_VALIDATION_KEY.to_string(),
            Value { kind: Some(k) },
        )]
        .into(),
    });
    core::Node {
        id: "envoy".into(),
        metadata,
        user_agent_version_type: version.map(|(major, minor)| {
            core::node::UserAgentVersionType::UserAgentBuildVersion(core::BuildVersion {
                version: Some(SemanticVersion {
                    major_number: major,
                    minor_number: minor,
                    patch: 0,
                }),
                metadata: None,
            })
        }),
        ..Default::default()
    }
}

#[test]
fn node_metadata_and_version_choose_the_validator() {
    let mut req = request(&[]);
    assert!(use_spiffe_validator(&cfg(), &req));
    req.node = Some(node_with(Some(Kind::BoolValue(true)), None));
    assert!(!use_spiffe_validator(&cfg(), &req));
    req.node = Some(node_with(Some(Kind::StringValue("T".into())), None));
    assert!(!use_spiffe_validator(&cfg(), &req));
    // An unparsable value is ignored.
    req.node = Some(node_with(Some(Kind::StringValue("yes".into())), None));
    assert!(use_spiffe_validator(&cfg(), &req));
    req.node = Some(node_with(Some(Kind::NumberValue(1.0)), None));
    assert!(use_spiffe_validator(&cfg(), &req));
    // The metadata can re-enable what the configuration disables.
    let mut c = cfg();
    c.disable_spiffe_cert_validation = true;
    req.node = Some(node_with(Some(Kind::StringValue("false".into())), None));
    assert!(use_spiffe_validator(&c, &req));
    // Envoy 1.17 and older cannot take it.
    req.node = Some(node_with(None, Some((1, 17))));
    assert!(!use_spiffe_validator(&cfg(), &req));
    req.node = Some(node_with(None, Some((1, 18))));
    assert!(use_spiffe_validator(&cfg(), &req));
    req.node = Some(node_with(None, Some((2, 0))));
    assert!(use_spiffe_validator(&cfg(), &req));
}

#[test]
fn unknown_names_are_refused_sorted_and_quoted() {
    let err = build_response(
        &cfg(),
        "",
        String::new(),
        &request(&[
            "spiffe://example.org/nope",
            "b\"q",
            "spiffe://example.org/a",
        ]),
        &update(),
    )
    .unwrap_err();
    let st = Status::from(err);
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        st.message(),
        "workload is not authorized for the requested identities [\"b\\\"q\" \"spiffe://example.org/nope\"]"
    );
    // A caller with no identity still gets the bundles, but not the default SVID.
    let mut upd = update();
    upd.identities.clear();
    upd.federated_bundles.clear();
    let resp = build_response(&cfg(), "1", "n".into(), &request(&[]), &upd).unwrap();
    assert_eq!(names(&resp), ["spiffe://example.org"]);
    let err = build_response(&cfg(), "1", "n".into(), &request(&["default"]), &upd).unwrap_err();
    assert_eq!(
        Status::from(err).message(),
        "workload is not authorized for the requested identities [\"default\"]"
    );
}

#[test]
fn stream_state_follows_spire() {
    let upd = update();
    let c = cfg();
    let mut st = StreamState {
        version: 1,
        ..Default::default()
    };
    // First request: due.
    let mut first = request(&[]);
    first.node = Some(node_with(None, None));
    assert!(st.on_request(first));
    let r1 = st.respond(&c, &upd).unwrap().unwrap();
    assert_eq!(r1.version_info, "1");
    assert_eq!(r1.nonce.len(), 8);
    // ACK with the same names: nothing to send.
    let mut ack = request(&[]);
    ack.version_info = "1".into();
    ack.response_nonce = r1.nonce.clone();
    assert!(!st.on_request(ack));
    // The node of earlier requests is kept for requests without one.
    assert_eq!(
        st.last_req.as_ref().unwrap().node.as_ref().unwrap().id,
        "envoy"
    );
    // A stale nonce is ignored, even with new names.
    let mut stale = request(&["ROOTCA"]);
    stale.response_nonce = "00000000".into();
    assert!(!st.on_request(stale));
    assert!(st.last_req.as_ref().unwrap().resource_names.is_empty());
    // A NACK that changes the names is answered.
    let mut nack = request(&["ROOTCA"]);
    nack.response_nonce = r1.nonce.clone();
    nack.error_detail = Some(spire_proto::google::rpc::Status {
        code: 3,
        message: "bad".into(),
        details: vec![],
    });
    assert!(st.on_request(nack));
    let r2 = st.respond(&c, &upd).unwrap().unwrap();
    assert_eq!(names(&r2), ["ROOTCA"]);
    assert_ne!(r2.nonce, r1.nonce);
    // An update bumps the version.
    st.version += 1;
    let r3 = st.respond(&c, &upd).unwrap().unwrap();
    assert_eq!(r3.version_info, "2");
}

#[test]
fn names_changed_is_set_like() {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(!names_changed(&v(&["a", "b"]), &v(&["b", "a"])));
    assert!(names_changed(&v(&["a"]), &v(&["a", "b"])));
    assert!(names_changed(&v(&["a", "b"]), &v(&["a", "c"])));
    assert!(!names_changed(&v(&[]), &v(&[])));
}

#[test]
fn errors_map_to_spire_codes() {
    let st = Status::from(SdsError::DeltaUnimplemented);
    assert_eq!(st.code(), tonic::Code::Unimplemented);
    assert_eq!(st.message(), "Method is not implemented");
    let st = Status::from(SdsError::NoBundleSpiffe("spiffe://x".into()));
    assert_eq!(st.code(), tonic::Code::NotFound);
    assert_eq!(
        st.message(),
        "no bundle found for trust domain: \"spiffe://x\""
    );
    let st = Status::from(SdsError::NoCaller);
    assert_eq!(st.code(), tonic::Code::Internal);
}
