//! Ban and evict (after SPIRE's `evict-agent` and `node-re-attestation` suites): a banned
//! agent removes its SVID and shuts down; an evicted x509pop agent re-attests by itself.

use crate::support::{
    AgentOpts, Deadline, Scenario, ServerOpts, agent_subject, id, join_token_pair,
    server::agent_id as listed_id, server_subject, uid_selector, wait_agent_listed, x509pop_pair,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn ban_shuts_agent_down() {
    let sc = Scenario::new("evict_ban::ban_shuts_agent_down");
    let (server, mut agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    wait_agent_listed(&server, &agent_id, 30).await;
    server.cli_ok(&["agent", "ban", "-spiffeID", &agent_id]);
    agent
        .wait_log("Agent is banned: removing SVID and shutting down", 60)
        .await;
    agent.wait_exit(30).await;
    let shown = server.cli_json(&["agent", "show", "-spiffeID", &agent_id]);
    assert_eq!(shown["banned"], true, "agent show after ban: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn evict_x509pop_reattests() {
    let sc = Scenario::new("evict_ban::evict_x509pop_reattests");
    let (server, mut agent, node) = x509pop_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let agent_id = node.agent_id();
    let before = wait_agent_listed(&server, &agent_id, 30).await;
    let serial = before["x509svid_serial_number"].clone();
    server.cli_ok(&["agent", "evict", "-spiffeID", &agent_id]);

    // The running agent notices and attests again: it is listed anew, with a new SVID.
    let d = Deadline::new("the evicted agent to re-attest", 90);
    loop {
        let agents = server.agents();
        if let Some(a) = agents.iter().find(|a| listed_id(a) == agent_id)
            && a["x509svid_serial_number"] != serial
        {
            break;
        }
        d.tick(format!("{agents:?}")).await;
    }
    assert!(
        agent.is_running(),
        "the agent must keep running after eviction"
    );
    // And it works: a workload registered now gets its SVID.
    let workload = id("/after-evict");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    agent.wait_x509(&workload, 60).await;
}
