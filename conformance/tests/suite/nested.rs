//! Nested SPIRE: UpstreamAuthority `spire`. An upstream server and its agent; an entry
//! marked `downstream` for the downstream server's process; a downstream server whose CA is
//! signed by the upstream through `SVID/NewDownstreamX509CA`, reached with the SVID the
//! upstream agent's Workload API gives it; a downstream agent and a workload under it.
//!
//! The tiers mix implementations: the upstream server and the downstream agent are the
//! pairing's server subject, the upstream agent and the downstream server its agent subject,
//! so the mixed pairings put reference SPIRE on one tier and spire-rs on the other.

use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Scenario, Server, ServerOpts, agent_subject,
    check_svid_json, id, join_token_pair, pki, server_subject, uid_selector, wait_until,
};

/// The downstream server's UpstreamAuthority: `upstream` through `agent`'s Workload API.
fn spire_block(upstream: &Server, agent: &Agent) -> String {
    format!(
        "UpstreamAuthority \"spire\" {{\n        plugin_data {{\n            server_address = \"127.0.0.1\"\n            server_port = \"{}\"\n            workload_api_socket = \"{}\"\n        }}\n    }}",
        upstream.port,
        agent.socket.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn downstream_server_chains_to_the_upstream_root() {
    let sc = Scenario::new("nested::downstream_server_chains_to_the_upstream_root");
    let (upstream, upstream_agent, upstream_agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let downstream_id = id("/downstream-server");
    upstream.entry_create(&[
        "-parentID",
        &upstream_agent_id,
        "-spiffeID",
        &downstream_id,
        "-selector",
        &uid_selector(),
        "-downstream",
    ]);
    upstream_agent.wait_x509(&downstream_id, 60).await;

    let downstream = Server::start_new(
        &sc,
        "downstream",
        agent_subject(),
        ServerOpts {
            extra_plugins: spire_block(&upstream, &upstream_agent),
            ..Default::default()
        },
    )
    .await;
    let token = downstream.token(None);
    let agent = Agent::start_new(
        &sc,
        "downstream-agent",
        server_subject(),
        &downstream,
        &Attestor::JoinToken(token.clone()),
        AgentOpts::default(),
    )
    .await;
    let agent_id = id(&format!("/spire/agent/join_token/{token}"));

    // The downstream bundle holds the upstream's roots, not its own CA.
    let upstream_roots = pki::pem_certs(&upstream.bundle_pem());
    assert_eq!(pki::pem_certs(&downstream.bundle_pem()), upstream_roots);

    let workload = id("/nested-workload");
    downstream.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 90).await;
    check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    assert_eq!(chain.len(), 2, "leaf and the downstream CA");
    let ca = pki::facts(&chain[1]);
    assert!(ca.is_ca);
    assert!(
        upstream_roots.iter().any(|r| pki::facts(r).skid == ca.akid),
        "the downstream CA is signed by an upstream root"
    );
    let bundle = pki::split_der(&pki::b64(svid["bundle"].as_str().unwrap_or_default()));
    assert_eq!(bundle, upstream_roots, "workloads trust the upstream roots");

    // The downstream server published its JWT key upstream: the upstream bundle has it,
    // and the downstream bundle is the upstream's JWT key set.
    let up = upstream.cli_json(&["bundle", "show"]);
    let down = downstream.cli_json(&["bundle", "show"]);
    let kids = |b: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = b["jwt_authorities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|k| k["key_id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(kids(&up).len(), 2, "upstream JWT keys: {up}");
    assert_eq!(kids(&down), kids(&up), "downstream bundle: {down}");

    // A new upstream root (prepared upstream) reaches the downstream bundle, and the
    // downstream agent's workloads, with nothing restarted.
    upstream.cli_ok(&["localauthority", "x509", "prepare"]);
    let roots = pki::pem_certs(&upstream.bundle_pem());
    assert_eq!(roots.len(), 2, "the upstream bundle has a second root");
    wait_until(
        "the downstream bundle to hold the new upstream root",
        60,
        || {
            let now = pki::pem_certs(&downstream.bundle_pem());
            (now == roots)
                .then_some(())
                .ok_or(format!("{} roots", now.len()))
        },
    )
    .await;
    let d = Deadline::new("the workload's bundle to hold both upstream roots", 90);
    loop {
        let svid = agent.wait_x509(&workload, 30).await;
        let bundle = pki::split_der(&pki::b64(svid["bundle"].as_str().unwrap_or_default()));
        if bundle.len() == 2 && roots.iter().all(|r| bundle.contains(r)) {
            break;
        }
        d.tick(format!("{} roots", bundle.len())).await;
    }
}

/// An entry that is not marked `downstream`: the upstream refuses to sign, and the
/// downstream server does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn an_entry_not_marked_downstream_is_refused() {
    let sc = Scenario::new("nested::an_entry_not_marked_downstream_is_refused");
    let (upstream, upstream_agent, upstream_agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let plain = id("/not-downstream");
    upstream.workload_entry(&upstream_agent_id, &plain, &uid_selector());
    upstream_agent.wait_x509(&plain, 60).await;
    let mut downstream = Server::new(
        &sc,
        "downstream",
        agent_subject(),
        ServerOpts {
            extra_plugins: spire_block(&upstream, &upstream_agent),
            ..Default::default()
        },
    );
    let status = downstream.run_expecting_exit(60).await;
    assert!(!status.success(), "{status}");
    let log = downstream.log();
    assert!(
        log.contains("unable to request a new Downstream X509CA"),
        "{log}"
    );
}
