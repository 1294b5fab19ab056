//! x509pop attestation in both modes: `external_pki` (a CA and node certificate made
//! with rcgen) and `spiffe` (a node X509-SVID minted by the server under /spire-exchange).

use crate::support::{
    Agent, AgentOpts, Attestor, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, id, server_subject, uid_selector, wait_agent_listed, x509pop_pair,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn external_pki() {
    let sc = Scenario::new("x509pop::external_pki");
    let (server, agent, node) = x509pop_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let listed = wait_agent_listed(&server, &node.agent_id(), 30).await;
    assert_eq!(listed["attestation_type"], "x509pop", "{listed}");
    assert_eq!(listed["can_reattest"], true, "x509pop agents can re-attest");
    let selectors = agent_selectors(&listed);
    for want in ["x509pop:subject:cn:node1", "x509pop:san:cluster:test"] {
        assert!(
            selectors.iter().any(|s| s == want),
            "agent selectors {selectors:?} lack {want}"
        );
    }

    let workload = id("/workload");
    server.workload_entry(&node.agent_id(), &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn spiffe_mode() {
    let sc = Scenario::new("x509pop::spiffe_mode");
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: "NodeAttestor \"x509pop\" {\n        plugin_data {\n            mode = \"spiffe\"\n        }\n    }".into(),
            ..Default::default()
        },
    )
    .await;
    // The node's identity is an X509-SVID of the trust domain under /spire-exchange.
    let creds = sc.subdir("node-svid");
    server.cli_ok(&[
        "x509",
        "mint",
        "-spiffeID",
        &id("/spire-exchange/node1"),
        "-write",
        &creds.display().to_string(),
    ]);
    let agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &Attestor::X509Pop {
            key: creds.join("key.pem"),
            cert: creds.join("svid.pem"),
        },
        AgentOpts::default(),
    )
    .await;
    let agent_id = id("/spire/agent/x509pop/node1");
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "x509pop", "{listed}");

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}
