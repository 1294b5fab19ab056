//! Join-token attestation (after SPIRE's `join-token` suite): an agent attests with a
//! token, a vanity alias entry made by `token generate -spiffeID` parents a workload, and
//! a token cannot be used twice.

use crate::support::{
    Agent, AgentOpts, Attestor, Scenario, Server, ServerOpts, agent_subject, check_svid_json, id,
    json_id, server_subject, uid_selector, wait_agent_listed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn attest_with_vanity_alias() {
    let sc = Scenario::new("join_token::attest_with_vanity_alias");
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let node = id("/node");
    let token = server.token(Some(&node));
    let agent_id = id(&format!("/spire/agent/join_token/{token}"));

    // The vanity entry exists before the agent attests: /node, parented to the agent ID.
    let alias = server.cli_json(&["entry", "show", "-spiffeID", &node]);
    let alias = &alias["entries"][0];
    assert_eq!(
        json_id(&alias["parent_id"]),
        agent_id,
        "vanity entry: {alias}"
    );

    let agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &Attestor::JoinToken(token.clone()),
        AgentOpts::default(),
    )
    .await;
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "join_token", "{listed}");
    assert_eq!(
        listed["can_reattest"], false,
        "join_token agents cannot re-attest"
    );
    assert!(
        agent.log().contains("Node attestation was successful"),
        "agent log lacks \"Node attestation was successful\""
    );

    // A workload registered under the vanity ID gets its SVID.
    let workload = id("/workload");
    server.workload_entry(&node, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn token_reuse_refused() {
    let sc = Scenario::new("join_token::token_reuse_refused");
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let token = server.token(None);
    let attestor = Attestor::JoinToken(token.clone());
    let _good = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &attestor,
        AgentOpts::default(),
    )
    .await;
    wait_agent_listed(
        &server,
        &id(&format!("/spire/agent/join_token/{token}")),
        30,
    )
    .await;

    // A second agent presenting the same token is refused, and says why.
    let mut bad = Agent::new(
        &sc,
        "bad-agent",
        agent_subject(),
        &server,
        &attestor,
        AgentOpts::default(),
    );
    bad.start();
    bad.wait_log("join token does not exist or has already been used", 60)
        .await;
    assert!(
        !bad.cli_socket(&["healthcheck"]).ok(),
        "an agent whose token was refused must not be healthy"
    );
    assert_eq!(server.agents().len(), 1, "only the first agent is attested");
}
