//! Restarts of either side: the agent keeps serving while its server is down and
//! reconnects when it is back; a restarted agent resumes from its data directory without
//! attesting again, and its used join token stays refused.

use crate::support::{
    Agent, AgentOpts, Attestor, Scenario, Server, ServerOpts, agent_subject, id, join_token_pair,
    server::agent_id as listed_id, server_subject, uid_selector, wait_agent_listed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn server_restart() {
    let sc = Scenario::new("restarts::server_restart");
    let (mut server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let before = id("/before-restart");
    server.workload_entry(&agent_id, &before, &uid_selector());
    agent.wait_x509(&before, 60).await;

    server.stop();
    // The agent serves from its cache while the server is away.
    agent.wait_x509(&before, 10).await;

    server.start().await;
    let after = id("/after-restart");
    server.workload_entry(&agent_id, &after, &uid_selector());
    agent.wait_x509(&after, 90).await;
    agent.wait_x509(&before, 10).await;
    assert_eq!(server.agent_ids(), vec![agent_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn agent_restart() {
    let sc = Scenario::new("restarts::agent_restart");
    let (server, mut agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;
    wait_agent_listed(&server, &agent_id, 30).await;

    // Restart: the join token is spent, so only the stored SVID can bring the agent back.
    agent.stop();
    agent.start();
    agent.wait_healthy().await;
    agent.wait_x509(&wl, 60).await;
    let ids: Vec<String> = server.agents().iter().map(listed_id).collect();
    assert_eq!(
        ids,
        vec![agent_id.clone()],
        "still exactly one agent, the same one"
    );
    let wl2 = id("/after-agent-restart");
    server.workload_entry(&agent_id, &wl2, &uid_selector());
    agent.wait_x509(&wl2, 60).await;

    // The used token is refused to a fresh agent.
    let token = agent_id.rsplit('/').next().unwrap().to_string();
    let mut fresh = Agent::new(
        &sc,
        "fresh-agent",
        agent_subject(),
        &server,
        &Attestor::JoinToken(token),
        AgentOpts::default(),
    );
    fresh.start();
    fresh
        .wait_log("join token does not exist or has already been used", 60)
        .await;
    assert_eq!(server.agents().len(), 1);
}

/// An agent attested with `-joinToken` restarts from the same `agent.conf` without the flag
/// (as systemd or Kubernetes restart it), after SIGTERM and after SIGKILL: it loads its SVID
/// from the data directory and needs no token. An agent with nothing stored and no token
/// fails only when it must attest, with SPIRE's "join token was not provided".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn agent_restart_without_join_token() {
    let sc = Scenario::new("restarts::agent_restart_without_join_token");
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let token = server.token(None);
    let agent_id = id(&format!("/spire/agent/join_token/{token}"));
    let mut agent = Agent::new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &Attestor::JoinTokenFlag,
        AgentOpts::default(),
    );
    agent.start_with(&["-joinToken", &token]);
    agent.wait_healthy().await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;

    // SIGTERM, then SIGKILL; each time a start with no token at all.
    for (kill, path) in [(false, "/after-sigterm"), (true, "/after-sigkill")] {
        if kill {
            agent.kill();
        } else {
            agent.stop();
        }
        agent.start();
        agent.wait_healthy().await;
        let wl = id(path);
        server.workload_entry(&agent_id, &wl, &uid_selector());
        agent.wait_x509(&wl, 60).await;
    }
    assert_eq!(
        server.agent_ids(),
        vec![agent_id],
        "the same agent, never re-attested"
    );

    // Nothing stored and no token: the attestor says what is missing.
    let mut fresh = Agent::new(
        &sc,
        "fresh-agent",
        agent_subject(),
        &server,
        &Attestor::JoinTokenFlag,
        AgentOpts::default(),
    );
    fresh.start();
    fresh.wait_log("join token was not provided", 60).await;
    assert!(!agent.log().contains("join token was not provided"));
    fresh.kill();
}
