//! azure_msi attestation against a loopback stand-in for Azure (the crate's fixture, run
//! in this test process): IMDS issuing managed identity tokens signed by a test key, the
//! login authority's OIDC discovery and JWKS, client-credential tokens, and the ARM
//! resources, VM and network interface APIs. Only spire-rs pairs can run it: reference
//! SPIRE's agent asks IMDS at 169.254.169.254, compiled in, and its server trusts only
//! login.microsoftonline.com; those pairings are skipped.

use spire_plugins_gcp_azure::fixtures::HttpFixture;
use spire_plugins_gcp_azure::fixtures::azure::{self as fx, PRINCIPAL, TENANT};

use crate::support::{
    Agent, AgentOpts, Attestor, Impl, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, id, server_subject, skip, uid_selector, wait_agent_listed,
};

const REFERENCE_SERVER: &str = "reference SPIRE's azure_msi server trusts only https://login.microsoftonline.com/ and the real ARM endpoints, compiled in";
const REFERENCE_AGENT: &str = "reference SPIRE's azure_msi agent asks IMDS at http://169.254.169.254, compiled in, so it cannot reach a loopback fixture";

fn skipped(sc: &Scenario) -> bool {
    if server_subject() == Impl::Reference {
        skip(sc, REFERENCE_SERVER);
        return true;
    }
    if agent_subject() == Impl::Reference {
        skip(sc, REFERENCE_AGENT);
        return true;
    }
    false
}

fn agent_block() -> Attestor {
    Attestor::Block(
        "NodeAttestor \"azure_msi\" {\n        plugin_data {\n        }\n    }".to_string(),
    )
}

fn server_block(tenant: &str) -> String {
    format!(
        "NodeAttestor \"azure_msi\" {{\n        plugin_data {{\n            tenants {{\n                \"{tenant}\" {{\n                    subscription_id = \"sub-1\"\n                    app_id = \"app\"\n                    app_secret = \"s3cret\"\n                }}\n            }}\n        }}\n    }}"
    )
}

fn server_env(f: &HttpFixture) -> Vec<(String, String)> {
    vec![
        (
            "SPIRE_RS_TEST_AZURE_MSI_AUTHORITY".into(),
            format!("{}/", f.url()),
        ),
        ("SPIRE_RS_TEST_AZURE_ARM_URL".into(), f.url()),
        ("SPIRE_RS_TEST_AZURE_IMDS_URL".into(), f.url()),
    ]
}

fn agent_opts(f: &HttpFixture) -> AgentOpts {
    AgentOpts {
        env: vec![("SPIRE_RS_TEST_AZURE_IMDS_URL".into(), f.url())],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn attests_with_the_imds_token_and_arm_selectors() {
    let sc = Scenario::new("azure_msi::attests_with_the_imds_token_and_arm_selectors");
    if skipped(&sc) {
        return;
    }
    let (_azure, f) = fx::start().await;
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(TENANT),
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
        &agent_block(),
        agent_opts(&f),
    )
    .await;
    let agent_id = id(&format!("/spire/agent/azure_msi/{TENANT}/{PRINCIPAL}"));
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "azure_msi", "{listed}");
    assert_eq!(listed["can_reattest"], false, "{listed}");
    let want: Vec<String> = [
        "network-security-group:rg-1:nsg-1",
        "subscription-id:sub-1",
        "virtual-network-subnet:rg-net:vnet-1:default",
        "virtual-network:rg-net:vnet-1",
        "vm-name:rg-1:vm-1",
    ]
    .iter()
    .map(|s| format!("azure_msi:{s}"))
    .collect();
    assert_eq!(agent_selectors(&listed), want);
    let reqs = f.requests();
    let imds = reqs
        .iter()
        .find(|r| r.path() == "/metadata/identity/oauth2/token")
        .expect("the agent asked IMDS");
    assert_eq!(
        imds.target,
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
    );
    assert_eq!(imds.header("metadata"), Some("true"));
    assert!(
        server.log().contains("TEST OVERRIDE IN USE"),
        "the server's test overrides must be logged loudly"
    );
    assert!(
        agent.log().contains("TEST OVERRIDE IN USE"),
        "the agent's test override must be logged loudly:\n{}",
        agent.log()
    );
    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn unknown_tenant_is_refused() {
    let sc = Scenario::new("azure_msi::unknown_tenant_is_refused");
    if skipped(&sc) {
        return;
    }
    let (_azure, f) = fx::start().await;
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block("another-tenant"),
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
        &agent_block(),
        agent_opts(&f),
    );
    agent.start();
    let status = agent.wait_exit(60).await;
    assert!(!status.success(), "the agent attested:\n{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains(&format!("tenant \\\"{TENANT}\\\" is not authorized"))
            || log.contains(&format!("tenant \"{TENANT}\" is not authorized")),
        "{log}"
    );
    assert!(server.agent_ids().is_empty(), "{:?}", server.agent_ids());
}
