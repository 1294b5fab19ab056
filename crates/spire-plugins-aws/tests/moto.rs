//! The server half's AWS calls against moto (an AWS API mock server, built by
//! `conformance/moto/setup.sh`): DescribeInstances and GetInstanceProfile signed with our
//! SigV4, the block device check on moto's instance, and SPIRE's selector set for it.
//! Skipped (visibly) without moto unless SPIRE_RS_REQUIRE_AWS=1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe_core::TrustDomain;
use spire_plugin::{Challenger, PluginResult, ServerNodeAttestor};
use spire_plugin_host::hostservices::{AgentLookup, AgentLookupCell};
use spire_plugins_aws::IidAttestationData;
use spire_plugins_aws::api::AwsClient;
use spire_plugins_aws::cacerts::Trust;
use spire_plugins_aws::server::{AwsIidServer, ServerConfig, Session};
use spire_plugins_aws::testsupport::{TestCa, document};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_python() -> Option<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("conformance/moto/setup.sh"))
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn required() -> bool {
    std::env::var("SPIRE_RS_REQUIRE_AWS").is_ok_and(|v| v == "1")
}

/// Starts moto on a free loopback port; `None` (after saying so) when it cannot be had.
async fn start_moto() -> Option<(Moto, String)> {
    let Some(python) = moto_python() else {
        assert!(
            !required(),
            "SPIRE_RS_REQUIRE_AWS=1 but conformance/moto/setup.sh failed"
        );
        eprintln!("SKIPPED: moto is not available (conformance/moto/setup.sh failed)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&python)
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
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some((moto, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto did not start on {url}");
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

struct Nobody;

#[async_trait::async_trait]
impl AgentLookup for Nobody {
    async fn is_attested(&self, _: &str) -> Result<bool, String> {
        Ok(false)
    }
}

struct NoChallenge;

#[async_trait::async_trait]
impl Challenger for NoChallenge {
    async fn challenge(&mut self, _: Vec<u8>) -> PluginResult<Vec<u8>> {
        panic!("aws_iid never challenges")
    }
}

#[tokio::test]
#[ignore = "needs moto (conformance/moto/setup.sh); scripts/test.sh runs it with SPIRE_RS_REQUIRE_AWS=1"]
async fn selectors_from_moto_match_spires() {
    let Some((_moto, url)) = start_moto().await else {
        return;
    };
    let env_url = url.clone();
    let env: spire_plugins_aws::api::EnvFn = Arc::new(move |k| match k {
        "AWS_ENDPOINT_URL" => Some(env_url.clone()),
        _ => None,
    });
    let client = AwsClient::with_env(Duration::from_secs(10), Arc::new(SystemTime::now), env);
    let session = Session {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        assume_role: String::new(),
        partition: "aws".into(),
    };
    let region = "us-east-1";
    // A security group, an instance profile with a role, an instance with tags.
    let sg = client
        .query(
            &session,
            "ec2",
            region,
            "2016-11-15",
            "CreateSecurityGroup",
            &[("GroupName", "web-sg"), ("GroupDescription", "web")],
        )
        .await
        .unwrap();
    let sg_id = tag(&sg, "groupId").to_string();
    let iam = |action: &'static str, params: Vec<(&'static str, &'static str)>| {
        let client = &client;
        let session = &session;
        async move {
            client
                .query(session, "iam", "us-east-1", "2010-05-08", action, &params)
                .await
                .unwrap()
        }
    };
    iam(
        "CreateRole",
        vec![("RoleName", "web-role"), ("AssumeRolePolicyDocument", "{}")],
    )
    .await;
    iam(
        "CreateInstanceProfile",
        vec![("InstanceProfileName", "web-profile")],
    )
    .await;
    iam(
        "AddRoleToInstanceProfile",
        vec![
            ("InstanceProfileName", "web-profile"),
            ("RoleName", "web-role"),
        ],
    )
    .await;
    let run = client
        .query(
            &session,
            "ec2",
            region,
            "2016-11-15",
            "RunInstances",
            &[
                ("ImageId", "ami-12c6146b"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("InstanceType", "t2.micro"),
                ("SecurityGroupId.1", &sg_id),
                ("IamInstanceProfile.Name", "web-profile"),
                ("TagSpecification.1.ResourceType", "instance"),
                ("TagSpecification.1.Tag.1.Key", "Name"),
                ("TagSpecification.1.Tag.1.Value", "web-1"),
                ("TagSpecification.1.Tag.2.Key", "env"),
                ("TagSpecification.1.Tag.2.Value", "prod"),
            ],
        )
        .await
        .unwrap();
    let instance_id = tag(&run, "instanceId").to_string();
    let account = "123456789012";

    let ca = TestCa::new("test").unwrap();
    let doc = document(account, region, &instance_id, "us-east-1a", "ami-12c6146b");
    let payload = IidAttestationData {
        signature: ca.sign_rsa1024_style(&doc).unwrap(),
        signature_rsa2048: ca.sign_pkcs7(doc.as_bytes()).unwrap(),
        document: doc,
    };
    let server = |cfg: &str, client: AwsClient| {
        let cell: AgentLookupCell = Arc::default();
        let _ = cell.set(Arc::new(Nobody));
        let cfg: ServerConfig = serde_json::from_str(cfg).unwrap();
        AwsIidServer::new(
            &cfg,
            TrustDomain::new("example.org").unwrap(),
            cell,
            Arc::new(client),
            &|_| None,
            Trust::TestOverride {
                path: "test".into(),
                der: ca.cert_der.clone(),
            },
        )
        .unwrap()
    };
    let attested = server(
        r#"{"access_key_id": "testing", "secret_access_key": "testing", "skip_block_device": true}"#,
        client,
    )
    .attest(serde_json::to_vec(&payload).unwrap(), &mut NoChallenge)
    .await
    .unwrap();
    // The same through a role assumed in the instance's account (sts:AssumeRole, then calls
    // signed with the session credentials and token).
    let env_url = url.clone();
    let env: spire_plugins_aws::api::EnvFn =
        Arc::new(move |k| (k == "AWS_ENDPOINT_URL").then(|| env_url.clone()));
    let assumed = server(
        r#"{"access_key_id": "testing", "secret_access_key": "testing", "skip_block_device": true, "assume_role": "web-role"}"#,
        AwsClient::with_env(Duration::from_secs(10), Arc::new(SystemTime::now), env),
    )
    .attest(serde_json::to_vec(&payload).unwrap(), &mut NoChallenge)
    .await
    .unwrap();
    assert_eq!(assumed, attested);
    // SPIRE's default block device check on moto's instance (root EBS volume and network
    // interface 0 attached together).
    let env_url = url.clone();
    let env: spire_plugins_aws::api::EnvFn =
        Arc::new(move |k| (k == "AWS_ENDPOINT_URL").then(|| env_url.clone()));
    let checked = server(
        r#"{"access_key_id": "testing", "secret_access_key": "testing"}"#,
        AwsClient::with_env(Duration::from_secs(10), Arc::new(SystemTime::now), env),
    )
    .attest(serde_json::to_vec(&payload).unwrap(), &mut NoChallenge)
    .await
    .unwrap();
    assert_eq!(checked, attested);
    assert_eq!(
        attested.agent_id.as_str(),
        format!("spiffe://example.org/spire/agent/aws_iid/{account}/{region}/{instance_id}")
    );
    // What SPIRE's resolveSelectors gives for this instance: tags, the security group by id
    // and name, the profile's role ARN, and the document's four.
    let want: BTreeSet<String> = [
        "az:us-east-1a".to_string(),
        format!("iamrole:arn:aws:iam::{account}:role/web-role"),
        "image:id:ami-12c6146b".to_string(),
        format!("instance:id:{instance_id}"),
        format!("region:{region}"),
        format!("sg:id:{sg_id}"),
        "sg:name:web-sg".to_string(),
        "tag:Name:web-1".to_string(),
        "tag:env:prod".to_string(),
    ]
    .into_iter()
    .collect();
    let got: BTreeSet<String> = attested.selector_values.iter().cloned().collect();
    assert_eq!(got, want);
    assert!(
        attested.selector_values.windows(2).all(|w| w[0] < w[1]),
        "sorted"
    );
}
