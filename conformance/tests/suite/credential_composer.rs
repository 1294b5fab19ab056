//! The built-in CredentialComposer `uniqueid`: workload X509-SVIDs carry an
//! `x500UniqueIdentifier` (2.5.4.45) subject attribute whose value is SPIRE's truncated
//! SHA-256 of the SPIFFE ID. The subject server's SVIDs (minted over its socket and issued
//! to the agent's workload) are compared byte for byte with reference SPIRE's, minted for
//! the same SPIFFE ID by a reference server with the same configuration.

use crate::support::*;

const UNIQUEID: &str = "CredentialComposer \"uniqueid\" {}";

/// The leaf's subject as DER, and the raw TLV (type and value, i.e. the
/// `AttributeTypeAndValue` SEQUENCE) of each RDN attribute.
fn subject_parts(leaf: &[u8]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let (_, c) = x509_parser::parse_x509_certificate(leaf).expect("parse leaf");
    let subject = c.subject();
    let attrs = subject
        .iter_attributes()
        .map(|a| {
            let value = a.attr_value();
            let mut tlv = vec![value.header.tag().0 as u8];
            let data = value.data;
            assert!(data.len() < 128, "short attribute values only");
            tlv.push(data.len() as u8);
            tlv.extend_from_slice(data);
            (a.attr_type().to_id_string(), tlv)
        })
        .collect();
    (subject.as_raw().to_vec(), attrs)
}

/// `x509 mint -write` for `spiffe_id`: the leaf's DER.
fn mint_leaf(sc: &Scenario, server: &Server, spiffe_id: &str) -> Vec<u8> {
    let out = sc.subdir(&format!("mint-{}", server.label));
    let dir = out.display().to_string();
    server.cli_ok(&["x509", "mint", "-spiffeID", spiffe_id, "-write", &dir]);
    let pem = std::fs::read_to_string(out.join("svid.pem")).expect("svid.pem");
    pki::pem_certs(&pem)
        .into_iter()
        .next()
        .expect("a minted leaf")
}

/// SPIRE's vector (`pkg/common/x509svid/uniqueid_test.go`) for spiffe://example.org/foo:
/// a PrintableString (0x13) of 32 hex digits.
fn expected_foo_attribute() -> Vec<u8> {
    let mut v = vec![0x13, 0x20];
    v.extend_from_slice(b"c3406f9b12ceb4f9c948318c579b905b");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn uniqueid_subject_attribute_matches_reference() {
    let sc = Scenario::new("credential_composer::uniqueid_subject_attribute_matches_reference");
    let opts = ServerOpts {
        extra_plugins: UNIQUEID.into(),
        ..Default::default()
    };
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        opts.clone(),
        AgentOpts::default(),
    )
    .await;
    let reference = Server::start_new(&sc, "reference", Impl::Reference, opts).await;

    let foo = id("/foo");
    let ours = mint_leaf(&sc, &server, &foo);
    let theirs = mint_leaf(&sc, &reference, &foo);
    let (ours_dn, ours_attrs) = subject_parts(&ours);
    let (theirs_dn, theirs_attrs) = subject_parts(&theirs);
    assert_eq!(
        ours_attrs.last(),
        Some(&("2.5.4.45".to_string(), expected_foo_attribute())),
        "{ours_attrs:?}"
    );
    assert_eq!(ours_attrs, theirs_attrs);
    assert_eq!(pki::hex(&ours_dn), pki::hex(&theirs_dn), "subject DER");

    // A workload SVID issued through the agent carries the same subject as the one the
    // reference server mints for that SPIFFE ID; SVIDs for other IDs differ.
    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    let (issued_dn, _) = subject_parts(&chain[0]);
    let (reference_dn, _) = subject_parts(&mint_leaf(&sc, &reference, &workload));
    assert_eq!(
        pki::hex(&issued_dn),
        pki::hex(&reference_dn),
        "workload subject DER"
    );
    assert_ne!(issued_dn, ours_dn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn uniqueid_refuses_plugin_data() {
    let sc = Scenario::new("credential_composer::uniqueid_refuses_plugin_data");
    let mut server = Server::new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: "CredentialComposer \"uniqueid\" {\n        plugin_data {\n            foo = \"bar\"\n        }\n    }".into(),
            ..Default::default()
        },
    );
    let status = server.run_expecting_exit(60).await;
    assert!(!status.success());
    let log = server.log();
    assert!(
        log.contains("failed to configure plugin \\\"uniqueid\\\": no supported configuration interface found")
            || log.contains("failed to configure plugin \"uniqueid\": no supported configuration interface found"),
        "{}",
        tail(&log, 3000)
    );
}

/// `ca_subject` with several values of one attribute: the CA's subject is written as Go
/// writes it (all values of a type in one multi-valued RDN, members in DER order), so the
/// subject server's CA has reference SPIRE's subject byte for byte, and every SVID it issues
/// (minted, or served by the agent) names that exact subject as its issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn ca_subject_with_several_values_matches_reference() {
    let sc = Scenario::new("credential_composer::ca_subject_with_several_values_matches_reference");
    let opts = ServerOpts {
        extra_server: "ca_subject {\n        country = [\"US\", \"DE\"]\n        organization = [\"Zeta\", \"Alpha Org\", \"Mid\"]\n        common_name = \"Several Values CA\"\n    }".into(),
        ..Default::default()
    };
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        opts.clone(),
        AgentOpts::default(),
    )
    .await;
    let reference = Server::start_new(&sc, "reference", Impl::Reference, opts).await;

    // The CA's subject: its raw DER, and each RDN as its members (type, string tag, value)
    // in encoded order, without the serialNumber SPIRE sets to the CA's random serial.
    let ca_subject = |s: &Server| {
        let certs = pki::pem_certs(&s.bundle_pem());
        let ca = certs.first().expect("a CA certificate");
        let (_, c) = x509_parser::parse_x509_certificate(ca).expect("parse CA");
        let rdns: Vec<Vec<(String, u32, Vec<u8>)>> = c
            .subject()
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|a| {
                        let v = a.attr_value();
                        (
                            a.attr_type().to_id_string(),
                            v.header.tag().0,
                            v.data.to_vec(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|rdn| rdn.iter().all(|(oid, _, _)| oid != "2.5.4.5"))
            .collect();
        (c.subject().as_raw().to_vec(), rdns)
    };
    let (ours, our_rdns) = ca_subject(&server);
    let (_, their_rdns) = ca_subject(&reference);
    assert_eq!(our_rdns, their_rdns, "CA subject RDNs");
    // C (two values), O (three values), CN; PrintableStrings (tag 19).
    let shape: Vec<(usize, u32)> = our_rdns.iter().map(|r| (r.len(), r[0].1)).collect();
    assert_eq!(shape, [(2, 19), (3, 19), (1, 19)]);

    let issuer_of = |leaf: &[u8]| {
        let (_, c) = x509_parser::parse_x509_certificate(leaf).expect("parse leaf");
        c.issuer().as_raw().to_vec()
    };
    let minted = mint_leaf(&sc, &server, &id("/minted"));
    assert_eq!(
        pki::hex(&issuer_of(&minted)),
        pki::hex(&ours),
        "minted issuer"
    );

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    assert_eq!(
        pki::hex(&issuer_of(&chain[0])),
        pki::hex(&ours),
        "served issuer"
    );
}
