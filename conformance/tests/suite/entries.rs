//! Entry propagation (after SPIRE's `entries` suite): create, update and delete reach the
//! workload; node aliases (`entry create -node -selector ...`) and join-token vanity
//! aliases parent workloads on every matching agent.

use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Scenario, Server, ServerOpts, agent_subject,
    check_svid_json, id, join_token_pair, pki, server_subject, uid_selector, x509pop_server_plugin,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn create_update_delete_propagation() {
    let sc = Scenario::new("entries::create_update_delete_propagation");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let sel = uid_selector();
    let keep = id("/workload-keep");
    let dns = id("/workload-with-dns");
    server.workload_entry(&agent_id, &keep, &sel);
    server.entry_create(&[
        "-entryID",
        "with-dns",
        "-parentID",
        &agent_id,
        "-spiffeID",
        &dns,
        "-selector",
        &sel,
        "-dns",
        "example.org",
    ]);

    // Create: both SVIDs arrive; the DNS name is in the SVID.
    agent.wait_x509(&keep, 60).await;
    let svid = agent.wait_x509(&dns, 60).await;
    let leaf = check_svid_json(&svid, &dns);
    assert_eq!(leaf.dns, vec!["example.org".to_string()]);

    // Update: the new DNS name reaches the workload.
    server.cli_ok(&[
        "entry",
        "update",
        "-entryID",
        "with-dns",
        "-parentID",
        &agent_id,
        "-spiffeID",
        &dns,
        "-selector",
        &sel,
        "-dns",
        "example.com",
    ]);
    let d = Deadline::new("entry update to reach the workload", 60);
    loop {
        let svid = agent.wait_x509(&dns, 30).await;
        let leaf = check_svid_json(&svid, &dns);
        if leaf.dns == vec!["example.com".to_string()] {
            break;
        }
        d.tick(format!("DNS names {:?}", leaf.dns)).await;
    }

    // Delete: the SVID goes away, the other one stays.
    server.cli_ok(&["entry", "delete", "-entryID", "with-dns"]);
    let d = Deadline::new("entry delete to reach the workload", 60);
    loop {
        match agent.fetch_x509_ids() {
            Ok(ids) if ids == vec![keep.clone()] => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn node_alias() {
    let sc = Scenario::new("entries::node_alias");
    let ca = pki::NodeCa::new(&sc.subdir("pki"));
    let node1 = ca.node("node1", "test");
    let node2 = ca.node("node2", "test");
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: x509pop_server_plugin(&ca.ca_path),
            ..Default::default()
        },
    )
    .await;
    let cluster = id("/cluster/test");
    // A third agent joins the same alias through a join-token vanity ID.
    let token = server.token(Some(&cluster));
    let a1 = Agent::start_new(
        &sc,
        "agent1",
        agent_subject(),
        &server,
        &node1.attestor(),
        AgentOpts::default(),
    )
    .await;
    let a2 = Agent::start_new(
        &sc,
        "agent2",
        agent_subject(),
        &server,
        &node2.attestor(),
        AgentOpts::default(),
    )
    .await;
    let a3 = Agent::start_new(
        &sc,
        "agent3",
        agent_subject(),
        &server,
        &Attestor::JoinToken(token),
        AgentOpts::default(),
    )
    .await;

    server.entry_create(&[
        "-node",
        "-spiffeID",
        &cluster,
        "-selector",
        "x509pop:san:cluster:test",
    ]);
    let sel = uid_selector();
    let own1 = id("/workload-agent-1");
    let shared = id("/workload-shared");
    server.workload_entry(&node1.agent_id(), &own1, &sel);
    server.workload_entry(&cluster, &shared, &sel);

    for a in [&a1, &a2, &a3] {
        let svid = a.wait_x509(&shared, 60).await;
        check_svid_json(&svid, &shared);
    }
    check_svid_json(&a1.wait_x509(&own1, 60).await, &own1);
    // Agent 2 is not the parent of agent 1's workload and must not serve it.
    let ids = a2.fetch_x509_ids().expect("agent2 fetch");
    assert!(
        !ids.contains(&own1),
        "agent2 serves agent1's workload: {ids:?}"
    );
}
