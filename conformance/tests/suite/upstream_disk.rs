//! UpstreamAuthority `disk`: the server's X.509 CA is an intermediate signed by a CA whose
//! files the test made (rcgen), either a self-signed root or an intermediate with a bundle
//! file. Workload SVIDs chain through the server's CA (and the upstream intermediate) to the
//! upstream root, which is the only X.509 authority in the bundle. Unusable files stop the
//! server with SPIRE's message. Reference SPIRE has the same plugin, so every pairing runs.

use crate::support::{
    AgentOpts, Scenario, Server, ServerOpts, agent_subject, check_svid_json, id, join_token_pair,
    pki, server_subject, uid_selector,
};

fn block(
    cert: &std::path::Path,
    key: &std::path::Path,
    bundle: Option<&std::path::Path>,
) -> String {
    let bundle = bundle
        .map(|b| format!("\n            bundle_file_path = \"{}\"", b.display()))
        .unwrap_or_default();
    format!(
        "UpstreamAuthority \"disk\" {{\n        plugin_data {{\n            cert_file_path = \"{}\"\n            key_file_path = \"{}\"{bundle}\n        }}\n    }}",
        cert.display(),
        key.display()
    )
}

/// The bundle's X.509 authorities, DER.
fn bundle_roots(server: &Server) -> Vec<Vec<u8>> {
    pki::pem_certs(&server.bundle_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn self_signed_root() {
    let sc = Scenario::new("upstream_disk::self_signed_root");
    let upstream = pki::NodeCa::new(&sc.subdir("upstream"));
    let key = upstream.write_key();
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_plugins: block(&upstream.ca_path, &key, None),
            ..Default::default()
        },
        AgentOpts::default(),
    )
    .await;
    let root = upstream.der();
    assert_eq!(
        bundle_roots(&server),
        vec![root.clone()],
        "only the upstream root"
    );

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    assert_eq!(chain.len(), 2, "leaf and the upstream-signed CA");
    let ca = pki::facts(&chain[1]);
    assert!(ca.is_ca);
    assert_eq!(
        ca.akid,
        pki::facts(&root).skid,
        "our CA is signed by the upstream root"
    );
    assert_eq!(ca.uris, vec![id("")], "the CA names the trust domain");
    let bundle = pki::split_der(&pki::b64(svid["bundle"].as_str().unwrap_or_default()));
    assert_eq!(
        bundle,
        vec![root],
        "the workload's bundle is the upstream root"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn intermediate_with_bundle() {
    let sc = Scenario::new("upstream_disk::intermediate_with_bundle");
    let upstream = pki::NodeCa::new(&sc.subdir("upstream"));
    let (cert, key, inter) = upstream.intermediate("upstream-intermediate");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_plugins: block(&cert, &key, Some(&upstream.ca_path)),
            ..Default::default()
        },
        AgentOpts::default(),
    )
    .await;
    let root = upstream.der();
    assert_eq!(
        bundle_roots(&server),
        vec![root.clone()],
        "only the upstream root"
    );

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    assert_eq!(chain.len(), 3, "leaf, our CA, the upstream intermediate");
    assert_eq!(
        chain[2], inter,
        "the upstream intermediate travels with the SVID"
    );
    assert_eq!(pki::facts(&chain[1]).akid, pki::facts(&inter).skid);
    assert_eq!(pki::facts(&inter).akid, pki::facts(&root).skid);
}

/// A key that is not the certificate's: the server does not start, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn mismatched_key_stops_the_server() {
    let sc = Scenario::new("upstream_disk::mismatched_key_stops_the_server");
    let upstream = pki::NodeCa::new(&sc.subdir("upstream"));
    let other = pki::NodeCa::new(&sc.subdir("other"));
    let mut server = Server::new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: block(&upstream.ca_path, &other.write_key(), None),
            ..Default::default()
        },
    );
    let status = server.run_expecting_exit(60).await;
    assert!(!status.success(), "{status}");
    let log = server.log();
    assert!(
        log.contains("unable to load upstream CA: certificate and private key do not match"),
        "{log}"
    );
}
