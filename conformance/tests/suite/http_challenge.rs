//! http_challenge attestation on loopback: the agent serves the server's nonce on its own
//! port (a free one, so parallel scenarios never collide) for host name `127.0.0.1`; the
//! server fetches it. Every pairing must list the same agent ID and selector.

use crate::support::{
    Agent, AgentOpts, Attestor, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, free_port, id, server_subject, uid_selector, wait_agent_listed,
};

fn agent_block(port: u16) -> Attestor {
    Attestor::Block(format!(
        "NodeAttestor \"http_challenge\" {{\n        plugin_data {{\n            hostname = \"127.0.0.1\"\n            agentname = \"node1\"\n            port = {port}\n        }}\n    }}"
    ))
}

fn server_block(data: &str) -> String {
    format!(
        "NodeAttestor \"http_challenge\" {{\n        plugin_data {{\n            {data}\n        }}\n    }}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn loopback() {
    let sc = Scenario::new("http_challenge::loopback");
    let port = free_port();
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(&format!("required_port = {port}")),
            ..Default::default()
        },
    )
    .await;
    let agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(port),
        AgentOpts::default(),
    )
    .await;
    let agent_id = id("/spire/agent/http_challenge/127.0.0.1");
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "http_challenge", "{listed}");
    assert_eq!(
        listed["can_reattest"], false,
        "trust on first use: the agent cannot re-attest"
    );
    assert_eq!(
        agent_selectors(&listed),
        vec!["http_challenge:hostname:127.0.0.1".to_string()]
    );
    assert_eq!(server.agent_ids(), vec![agent_id.clone()]);

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

/// A host name outside `allowed_dns_patterns`: refused before any request is made, so the
/// agent stops (PermissionDenied) and nothing is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn disallowed_host_is_refused() {
    let sc = Scenario::new("http_challenge::disallowed_host_is_refused");
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(
                r#"allowed_dns_patterns = ["^node[0-9]+\\.example\\.org$"]"#,
            ),
            ..Default::default()
        },
    )
    .await;
    let mut agent = Agent::new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(free_port()),
        AgentOpts::default(),
    );
    agent.start();
    let status = agent.wait_exit(60).await;
    assert!(!status.success(), "the agent attested:\n{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains("the requested hostname is not allowed to connect"),
        "{log}"
    );
    assert!(server.agent_ids().is_empty(), "{:?}", server.agent_ids());
}

/// Trust on first use cannot be turned off while agents may use any port: the server stops
/// with SPIRE's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn tofu_cannot_be_turned_off_for_non_root_ports() {
    let sc = Scenario::new("http_challenge::tofu_cannot_be_turned_off_for_non_root_ports");
    let mut server = Server::new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block("tofu = false"),
            ..Default::default()
        },
    );
    let status = server.run_expecting_exit(60).await;
    assert!(!status.success());
    let log = server.log();
    assert!(
        log.contains(
            "you can not turn off trust on first use (TOFU) when non-root ports are allowed"
        ) && log.contains("InvalidArgument"),
        "{}",
        crate::support::tail(&log, 3000)
    );
}
