//! External plugins (`plugin_cmd`) built with SPIRE's Go plugin SDK
//! (`conformance/goplugins`, built by its `build.sh`; `run.sh` sets `SPIRE_RS_GOPLUGINS_DIR`)
//! and with our Rust SDK (`crates/spire-plugin-sdk/examples`; `run.sh` sets
//! `SPIRE_RS_SDK_EXAMPLES_DIR`): the same executables and the same configuration give the
//! same agent identity, selectors and workload SVIDs whichever implementation hosts them.

use std::path::PathBuf;

use crate::support::{
    Agent, AgentOpts, Attestor, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, id, join_token_pair, server_subject, uid, uid_selector, wait_agent_listed,
    workload,
};

fn plugin_in(var: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os(var)
        .unwrap_or_else(|| panic!("{var} is unset: conformance/run.sh builds the test plugins"));
    PathBuf::from(dir).join(name)
}

fn goplugin(name: &str) -> PathBuf {
    plugin_in("SPIRE_RS_GOPLUGINS_DIR", name)
}

fn rust_example(name: &str) -> PathBuf {
    plugin_in("SPIRE_RS_SDK_EXAMPLES_DIR", name)
}

/// The three attestor plugins of one SDK: the agent and server halves of `sharedsecret` and
/// a pidinfo WorkloadAttestor.
struct Attestors {
    agent: PathBuf,
    server: PathBuf,
    workload: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn go_sdk_node_and_workload_attestors() {
    node_and_workload_attestors(
        "external_plugins::go_sdk_node_and_workload_attestors",
        Attestors {
            agent: goplugin("agent-nodeattestor-sharedsecret"),
            server: goplugin("server-nodeattestor-sharedsecret"),
            workload: goplugin("workloadattestor-pidinfo"),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn rust_sdk_node_and_workload_attestors() {
    node_and_workload_attestors(
        "external_plugins::rust_sdk_node_and_workload_attestors",
        Attestors {
            agent: rust_example("nodeattestor_rust_sharedsecret_agent"),
            server: rust_example("nodeattestor_rust_sharedsecret_server"),
            workload: rust_example("workloadattestor_rust_pidinfo"),
        },
    )
    .await;
}

async fn node_and_workload_attestors(name: &str, plugins: Attestors) {
    let sc = Scenario::new(name);
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: format!(
                "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            shared_secret = \"correct horse\"\n        }}\n    }}",
                plugins.server.display()
            ),
            ..Default::default()
        },
    )
    .await;
    let agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &Attestor::Block(format!(
            "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            node_name = \"node1\"\n            shared_secret = \"correct horse\"\n        }}\n    }}",
            plugins.agent.display()
        )),
        AgentOpts {
            extra_plugins: format!(
                "WorkloadAttestor \"pidinfo\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            tag = \"blue\"\n        }}\n    }}",
                plugins.workload.display()
            ),
            ..Default::default()
        },
    )
    .await;

    // The server plugin names the agent (from the trust domain it was configured with) and
    // gives its selectors; the challenge round trip went through both hosts.
    let agent_id = id("/spire/agent/sharedsecret/node1");
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "sharedsecret", "{listed}");
    assert_eq!(listed["can_reattest"], true, "{listed}");
    let selectors = agent_selectors(&listed);
    assert_eq!(selectors, vec!["sharedsecret:node:node1".to_owned()]);

    // The workload attestor plugin's selectors, together with the built-in unix ones.
    let workload = id("/go-plugin-workload");
    server.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &workload,
        "-selector",
        &format!("pidinfo:uid:{}", uid()),
        "-selector",
        "pidinfo:tag:blue",
        "-selector",
        &format!("unix:uid:{}", uid()),
    ]);
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn go_sdk_key_managers_hold_the_signing_keys() {
    let sc = Scenario::new("external_plugins::go_sdk_key_managers_hold_the_signing_keys");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            key_manager: Some(format!(
                "KeyManager \"memkeys\" {{\n        plugin_cmd = \"{}\"\n    }}",
                goplugin("server-keymanager-memkeys").display()
            )),
            ..Default::default()
        },
        AgentOpts {
            // The agent's own SVID key in the agent-side plugin.
            key_manager: Some(format!(
                "KeyManager \"memkeys\" {{\n        plugin_cmd = \"{}\"\n    }}",
                goplugin("agent-keymanager-memkeys").display()
            )),
            ..Default::default()
        },
    )
    .await;
    // The CA's key lives in the plugin: the agent and the workload hold certificates it
    // signed, and the X.509 authority the server publishes is the plugin's key.
    let workload = id("/signed-by-plugin");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let context = workload::wait_context(&agent, &workload, 30).await;
    assert!(context.default_svid().is_some());

    // JWT-SVIDs are signed through the plugin too (ES256, r||s) and validate.
    let jwt = workload::wait_jwt(&agent, "memkeys", 30).await;
    let client = workload::client(&agent).await.unwrap();
    let validated = client
        .validate_jwt_token("memkeys", jwt.token())
        .await
        .expect("ValidateJWTSVID");
    assert_eq!(validated.spiffe_id().to_string(), workload);

    // Both say they loaded the external plugin.
    for log in [server.log(), agent.log()] {
        assert!(
            log.contains("plugin_name=memkeys") && log.contains("Plugin loaded"),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn a_plugin_asks_the_agent_store_host_service() {
    let sc = Scenario::new("external_plugins::a_plugin_asks_the_agent_store_host_service");
    // single_use: the Go plugin asks the server's AgentStore whether the agent ID it is
    // about to hand out is already attested.
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: format!(
                "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            shared_secret = \"s\"\n            single_use = true\n        }}\n    }}",
                goplugin("server-nodeattestor-sharedsecret").display()
            ),
            ..Default::default()
        },
    )
    .await;
    let attestor = Attestor::Block(format!(
        "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            node_name = \"node1\"\n            shared_secret = \"s\"\n        }}\n    }}",
        goplugin("agent-nodeattestor-sharedsecret").display()
    ));
    let _first = Agent::start_new(
        &sc,
        "first",
        agent_subject(),
        &server,
        &attestor,
        AgentOpts::default(),
    )
    .await;
    wait_agent_listed(&server, &id("/spire/agent/sharedsecret/node1"), 30).await;

    // A second agent with the same node name: the plugin finds the ID in the store.
    let mut second = Agent::new(
        &sc,
        "second",
        agent_subject(),
        &server,
        &attestor,
        AgentOpts::default(),
    );
    second.start();
    let status = second.wait_exit(60).await;
    assert!(
        !status.success(),
        "the second agent attested:\n{}",
        second.log()
    );
    let log = second.log();
    assert!(
        log.contains("attestation data has already been used to attest an agent"),
        "{log}"
    );
}
