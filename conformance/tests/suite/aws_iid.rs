//! aws_iid attestation without AWS: the agent reads an instance identity document from an
//! IMDS fixture on loopback (IMDSv2, signed as AWS signs it by a test authority), and the
//! server looks the instance up in moto (an AWS API mock, `conformance/moto/setup.sh`),
//! trusting the test authority through `SPIRE_RS_TEST_AWS_IID_CA`.
//!
//! Only pairings with our server run: reference SPIRE hard-codes AWS's certificates, so it
//! cannot be made to trust a test document (skipped visibly). With our server, our agent
//! and SPIRE's agent must send the same payload and so get the same agent ID and selectors,
//! which are asserted exactly as SPIRE's `resolveSelectors` derives them for the moto
//! instance.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spire_plugins_aws::api::{AwsClient, EnvFn};
use spire_plugins_aws::server::Session;
use spire_plugins_aws::testsupport::{ImdsContent, ImdsMode, ImdsServer, TestCa, document};

use crate::support::{
    Agent, AgentOpts, Attestor, Impl, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, free_port, id, server_subject, skip, uid_selector, wait_agent_listed,
};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tag<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    &xml[start..end]
}

/// moto on a free port, or `None` (skipped) when it cannot be built and is not required.
async fn start_moto(sc: &Scenario) -> Option<(Moto, String)> {
    let root = spire_testsupport::workspace_root();
    let out = Command::new("bash")
        .arg(root.join("conformance/moto/setup.sh"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    if !out.status.success() {
        assert!(
            std::env::var("SPIRE_RS_REQUIRE_AWS").as_deref() != Ok("1"),
            "SPIRE_RS_REQUIRE_AWS=1 but conformance/moto/setup.sh failed"
        );
        skip(
            sc,
            "moto is not available (conformance/moto/setup.sh failed)",
        );
        return None;
    }
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = free_port();
    let child = Command::new(python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto(child);
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some((moto, format!("http://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto did not start on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn imds_fixture_and_moto() {
    let sc = Scenario::new("aws_iid::imds_fixture_and_moto");
    if server_subject() == Impl::Reference {
        skip(
            &sc,
            "reference SPIRE's server trusts only AWS's embedded region certificates; a test document cannot attest to it",
        );
        return;
    }
    let Some((_moto, moto_url)) = start_moto(&sc).await else {
        return;
    };
    let env_url = moto_url.clone();
    let env: EnvFn = Arc::new(move |k| (k == "AWS_ENDPOINT_URL").then(|| env_url.clone()));
    let client = AwsClient::with_env(Duration::from_secs(10), Arc::new(SystemTime::now), env);
    let session = Session {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        assume_role: String::new(),
        partition: "aws".into(),
    };
    let region = "us-east-1";
    let ec2 = |action: &'static str, params: Vec<(&'static str, String)>| {
        let client = &client;
        let session = &session;
        async move {
            let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client
                .query(session, "ec2", region, "2016-11-15", action, &p)
                .await
                .unwrap()
        }
    };
    let sg = ec2(
        "CreateSecurityGroup",
        vec![
            ("GroupName", "node-sg".into()),
            ("GroupDescription", "nodes".into()),
        ],
    )
    .await;
    let sg_id = tag(&sg, "groupId").to_string();
    for (action, params) in [
        (
            "CreateRole",
            vec![
                ("RoleName", "node-role"),
                ("AssumeRolePolicyDocument", "{}"),
            ],
        ),
        (
            "CreateInstanceProfile",
            vec![("InstanceProfileName", "node-profile")],
        ),
        (
            "AddRoleToInstanceProfile",
            vec![
                ("InstanceProfileName", "node-profile"),
                ("RoleName", "node-role"),
            ],
        ),
    ] {
        client
            .query(&session, "iam", region, "2010-05-08", action, &params)
            .await
            .unwrap();
    }
    let run = ec2(
        "RunInstances",
        vec![
            ("ImageId", "ami-12c6146b".into()),
            ("MinCount", "1".into()),
            ("MaxCount", "1".into()),
            ("InstanceType", "t2.micro".into()),
            ("SecurityGroupId.1", sg_id.clone()),
            ("IamInstanceProfile.Name", "node-profile".into()),
            ("TagSpecification.1.ResourceType", "instance".into()),
            ("TagSpecification.1.Tag.1.Key", "Name".into()),
            ("TagSpecification.1.Tag.1.Value", "node-1".into()),
        ],
    )
    .await;
    let instance_id = tag(&run, "instanceId").to_string();
    let account = "123456789012";

    let ca = TestCa::new("test aws region").unwrap();
    let ca_path = sc.path().join("aws-test-ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let doc = document(account, region, &instance_id, "us-east-1a", "ami-12c6146b");
    let imds = ImdsServer::start(ImdsContent::signed(&ca, doc).unwrap(), ImdsMode::V2)
        .await
        .unwrap();

    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: "NodeAttestor \"aws_iid\" {\n        plugin_data {\n            skip_block_device = true\n        }\n    }".into(),
            env: vec![
                ("SPIRE_RS_TEST_AWS_IID_CA".into(), ca_path.display().to_string()),
                ("AWS_ENDPOINT_URL".into(), moto_url.clone()),
                ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ],
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

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}
