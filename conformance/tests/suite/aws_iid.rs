//! aws_iid attestation without AWS: the agent reads an instance identity document from an
//! IMDS fixture on loopback (IMDSv2, signed as AWS signs it by a test authority), and the
//! server looks the instance up in moto (an AWS API mock, `conformance/moto/setup.sh`),
//! trusting the test authority through `SPIRE_RS_TEST_AWS_IID_CA`.
//!
//! Only pairings with our server run: reference SPIRE hard-codes AWS's certificates, so it
//! cannot be made to trust a test document (skipped visibly). With our server, our agent
//! and SPIRE's agent must send the same payload and so get the same agent ID and selectors,
//! which are asserted exactly as SPIRE's `resolveSelectors` derives them for the moto
//! instance. A second scenario adds `verify_organization` and takes the server's AWS
//! credentials from a web identity token (no keys).

use spire_plugins_aws::moto::Moto;
use spire_plugins_aws::testsupport::{ImdsContent, ImdsMode, ImdsServer, TestCa, document};

use crate::support::{
    Agent, AgentOpts, Attestor, Impl, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, id, server_subject, skip, uid_selector, wait_agent_listed,
};

/// moto on a free port, or `None` (skipped) when it cannot be built and is not required.
async fn start_moto(sc: &Scenario) -> Option<Moto> {
    let root = spire_testsupport::workspace_root();
    match Moto::start(&root.join("conformance/moto/setup.sh")).await {
        Ok(m) => Some(m),
        Err(e) => {
            assert!(
                std::env::var("SPIRE_RS_REQUIRE_AWS").as_deref() != Ok("1"),
                "SPIRE_RS_REQUIRE_AWS=1 but moto is not available: {e}"
            );
            skip(sc, &format!("moto is not available ({e})"));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn imds_fixture_and_moto() {
    let sc = Scenario::new("aws_iid::imds_fixture_and_moto");
    attest_through_moto(sc, Setup::StaticKeys).await;
}

/// `verify_organization` in the server's HCL (moto's organization, listed under a role
/// assumed in the management account) and no keys at all: the server's AWS credentials come
/// from a web identity token file (EKS IRSA) through STS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn organization_and_web_identity() {
    let sc = Scenario::new("aws_iid::organization_and_web_identity");
    attest_through_moto(sc, Setup::OrganizationWebIdentity).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    StaticKeys,
    OrganizationWebIdentity,
}

async fn attest_through_moto(sc: Scenario, setup: Setup) {
    if server_subject() == Impl::Reference {
        skip(
            &sc,
            "reference SPIRE's server trusts only AWS's embedded region certificates; a test document cannot attest to it",
        );
        return;
    }
    let Some(moto) = start_moto(&sc).await else {
        return;
    };
    let region = "us-east-1";
    let seeded = moto
        .seed_instance(region, "node", &[("Name", "node-1")])
        .await
        .unwrap();
    let (sg_id, instance_id) = (seeded.sg_id.clone(), seeded.instance_id.clone());
    let account = "123456789012";

    let ca = TestCa::new("test aws region").unwrap();
    let ca_path = sc.path().join("aws-test-ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let doc = document(account, region, &instance_id, "us-east-1a", "ami-12c6146b");
    let imds = ImdsServer::start(ImdsContent::signed(&ca, doc).unwrap(), ImdsMode::V2)
        .await
        .unwrap();

    let mut env = vec![
        (
            "SPIRE_RS_TEST_AWS_IID_CA".to_string(),
            ca_path.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL".to_string(), moto.url.clone()),
    ];
    let mut data = "skip_block_device = true".to_string();
    match setup {
        Setup::StaticKeys => {
            env.push(("AWS_ACCESS_KEY_ID".into(), "testing".into()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), "testing".into()));
        }
        Setup::OrganizationWebIdentity => {
            let (client, session) = moto.client();
            let org = spire_plugins_aws::api::organizations_service("aws");
            client
                .json(
                    &session,
                    &org,
                    "AWSOrganizationsV20161128.CreateOrganization",
                    r#"{"FeatureSet": "ALL"}"#,
                )
                .await
                .unwrap();
            let token = sc.path().join("irsa-token");
            std::fs::write(
                &token,
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzcGlyZS1zZXJ2ZXIifQ.c2ln",
            )
            .unwrap();
            let missing = sc.path().join("no-aws-files");
            for (k, v) in [
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
                (
                    "AWS_ROLE_ARN",
                    format!("arn:aws:iam::{account}:role/spire-server"),
                ),
                ("AWS_ROLE_SESSION_NAME", "spire-server".to_string()),
                ("AWS_CONFIG_FILE", missing.display().to_string()),
                ("AWS_SHARED_CREDENTIALS_FILE", missing.display().to_string()),
                ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ] {
                env.push((k.to_string(), v));
            }
            data.push_str(&format!(
                "\n            verify_organization {{\n                management_account_id = \"{account}\"\n                assume_org_role = \"org-reader\"\n                org_account_map_ttl = \"5m\"\n            }}"
            ));
        }
    }
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: format!(
                "NodeAttestor \"aws_iid\" {{\n        plugin_data {{\n            {data}\n        }}\n    }}"
            ),
            env,
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
            "NodeAttestor \"aws_iid\" {{\n        plugin_data {{\n            ec2_metadata_endpoint = \"{}\"\n        }}\n    }}",
            imds.endpoint()
        )),
        AgentOpts::default(),
    )
    .await;
    let agent_id = id(&format!(
        "/spire/agent/aws_iid/{account}/{region}/{instance_id}"
    ));
    let listed = wait_agent_listed(&server, &agent_id, 60).await;
    assert_eq!(listed["attestation_type"], "aws_iid", "{listed}");
    assert_eq!(listed["can_reattest"], false, "{listed}");
    let mut got = agent_selectors(&listed);
    got.sort();
    let mut want: Vec<String> = [
        "aws_iid:az:us-east-1a".to_string(),
        format!("aws_iid:iamrole:arn:aws:iam::{account}:role/node-role"),
        "aws_iid:image:id:ami-12c6146b".to_string(),
        format!("aws_iid:instance:id:{instance_id}"),
        format!("aws_iid:region:{region}"),
        format!("aws_iid:sg:id:{sg_id}"),
        "aws_iid:sg:name:node-sg".to_string(),
        "aws_iid:tag:Name:node-1".to_string(),
    ]
    .into_iter()
    .collect();
    want.sort();
    assert_eq!(got, want);
    assert!(
        server.log().contains("SPIRE_RS_TEST_AWS_IID_CA"),
        "the test trust override must be logged"
    );
    // Every key of the plugin data (the verify_organization block included) was taken.
    assert!(
        !server.log().contains("Unknown plugin configuration key"),
        "{}",
        server.log()
    );

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}
