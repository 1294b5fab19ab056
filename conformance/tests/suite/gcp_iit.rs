//! gcp_iit attestation against a loopback stand-in for Google (the crate's fixture, run in
//! this test process): a GCE metadata server issuing identity tokens signed by a test key,
//! the `oauth2/v1/certs` map listing that key, the Compute API and an OAuth2 token endpoint.
//! Agents reach the metadata server through `identity_token_host`; our server is pointed at
//! the fixture with its test-only variables. Reference SPIRE's server trusts only Google's
//! certificate URL, compiled in, so pairings with it are skipped. Both agents (ours and
//! SPIRE's) must send the same request and end up with the same agent ID and selectors.

use spire_plugins_gcp_azure::fixtures::gcp as fx;
use spire_plugins_gcp_azure::fixtures::{HttpFixture, TestKey};

use crate::support::{
    Agent, AgentOpts, Attestor, Impl, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, id, server_subject, skip, uid_selector, wait_agent_listed,
};

const REFERENCE_SERVER: &str = "reference SPIRE's gcp_iit server fetches Google's certificates from https://www.googleapis.com/oauth2/v1/certs, compiled in, so it cannot trust a loopback fixture";

const AGENT_ID_PATH: &str = "/spire/agent/gcp_iit/test-project/1234567890123456789";

fn agent_block(f: &HttpFixture) -> Attestor {
    Attestor::Block(format!(
        "NodeAttestor \"gcp_iit\" {{\n        plugin_data {{\n            identity_token_host = \"{}\"\n        }}\n    }}",
        f.host()
    ))
}

fn server_block(data: &str) -> String {
    format!(
        "NodeAttestor \"gcp_iit\" {{\n        plugin_data {{\n            projectid_allow_list = [\"test-project\"]\n            {data}\n        }}\n    }}"
    )
}

fn server_env(f: &HttpFixture) -> Vec<(String, String)> {
    vec![
        (
            "SPIRE_RS_TEST_GCP_IIT_CERTS_URL".into(),
            format!("{}/oauth2/v1/certs", f.url()),
        ),
        ("SPIRE_RS_TEST_GCP_COMPUTE_URL".into(), f.url()),
    ]
}

/// The identity request every agent must make, byte for byte SPIRE's.
fn check_identity_request(f: &HttpFixture) {
    let reqs = f.requests();
    let r = reqs
        .iter()
        .find(|r| r.path().ends_with("/identity"))
        .expect("the agent asked the metadata server for an identity token");
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.target,
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=spire-gcp-node-attestor&format=full"
    );
    assert_eq!(r.header("metadata-flavor"), Some("Google"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn attests_with_the_metadata_server_token() {
    let sc = Scenario::new("gcp_iit::attests_with_the_metadata_server_token");
    if server_subject() == Impl::Reference {
        skip(&sc, REFERENCE_SERVER);
        return;
    }
    let (_google, f) = fx::start(fx::Instance::default()).await;
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(""),
            env: server_env(&f),
            ..Default::default()
        },
    )
    .await;
    let agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(&f),
        AgentOpts::default(),
    )
    .await;
    let agent_id = id(AGENT_ID_PATH);
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "gcp_iit", "{listed}");
    assert_eq!(listed["can_reattest"], false, "{listed}");
    assert_eq!(
        agent_selectors(&listed),
        vec![
            "gcp_iit:instance-name:test-instance".to_string(),
            "gcp_iit:project-id:test-project".to_string(),
            "gcp_iit:zone:us-west1-b".to_string(),
        ]
    );
    check_identity_request(&f);
    let log = server.log();
    assert!(
        log.contains("TEST OVERRIDE IN USE") && log.contains("SPIRE_RS_TEST_GCP_IIT_CERTS_URL"),
        "the test override must be logged loudly"
    );

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn instance_metadata_selectors_from_the_compute_api() {
    let sc = Scenario::new("gcp_iit::instance_metadata_selectors_from_the_compute_api");
    if server_subject() == Impl::Reference {
        skip(&sc, REFERENCE_SERVER);
        return;
    }
    let (_google, f) = fx::start(fx::Instance::default()).await;
    let sa_key = TestKey::generate("sa-key");
    let sa_file = sc.path().join("sa.json");
    std::fs::write(
        &sa_file,
        serde_json::json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "sa-key",
            "private_key": sa_key.private_key_pem(),
            "client_email": "attestor@test-project.iam.gserviceaccount.com",
            "token_uri": format!("{}/token", f.url()),
        })
        .to_string(),
    )
    .unwrap();
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(&format!(
                "use_instance_metadata = true\n            allowed_label_keys = [\"allowed\"]\n            allowed_metadata_keys = [\"allowed\"]\n            service_account_file = \"{}\"",
                sa_file.display()
            )),
            env: server_env(&f),
            ..Default::default()
        },
    )
    .await;
    let _agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(&f),
        AgentOpts::default(),
    )
    .await;
    let listed = wait_agent_listed(&server, &id(AGENT_ID_PATH), 30).await;
    let mut want: Vec<String> = [
        "instance-name:test-instance",
        "project-id:test-project",
        "zone:us-west1-b",
        "tag:tag-1",
        "tag:tag-2",
        "sa:sa1@test-project.iam.gserviceaccount.com",
        "label:allowed:ok",
        "metadata:allowed:ok",
    ]
    .iter()
    .map(|s| format!("gcp_iit:{s}"))
    .collect();
    want.sort();
    assert_eq!(agent_selectors(&listed), want);
    check_identity_request(&f);
    assert!(
        f.requests().iter().any(|r| r.path()
            == "/compute/v1/projects/test-project/zones/us-west1-b/instances/test-instance"
            && r.header("authorization") == Some("Bearer fixture-access-token-from-sa-file")),
        "the server asked the Compute API with the service account's token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn project_outside_the_allow_list_is_refused() {
    let sc = Scenario::new("gcp_iit::project_outside_the_allow_list_is_refused");
    if server_subject() == Impl::Reference {
        skip(&sc, REFERENCE_SERVER);
        return;
    }
    let (_google, f) = fx::start(fx::Instance {
        project_id: "other-project".into(),
        ..Default::default()
    })
    .await;
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(""),
            env: server_env(&f),
            ..Default::default()
        },
    )
    .await;
    let mut agent = Agent::new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(&f),
        AgentOpts::default(),
    );
    agent.start();
    let status = agent.wait_exit(60).await;
    assert!(!status.success(), "the agent attested:\n{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains("identity token project ID \\\"other-project\\\" is not in the allow list")
            || log.contains("identity token project ID \"other-project\" is not in the allow list"),
        "{log}"
    );
    assert!(server.agent_ids().is_empty(), "{:?}", server.agent_ids());
}
