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
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe_core::TrustDomain;
use spire_plugin::{Challenger, PluginResult, ServerNodeAttestor};
use spire_plugin_host::hostservices::{AgentLookup, AgentLookupCell};
use spire_plugins_aws::IidAttestationData;
use spire_plugins_aws::api::AwsClient;
use spire_plugins_aws::cacerts::Trust;
use spire_plugins_aws::moto::Moto;
use spire_plugins_aws::server::{AwsIidServer, ServerConfig};
use spire_plugins_aws::testsupport::{TestCa, document};

fn required() -> bool {
    std::env::var("SPIRE_RS_REQUIRE_AWS").is_ok_and(|v| v == "1")
}

/// moto on a free loopback port; `None` (after saying so) when it cannot be had.
async fn start_moto() -> Option<Moto> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/moto/setup.sh");
    match Moto::start(&script).await {
        Ok(m) => Some(m),
        Err(e) => {
            assert!(
                !required(),
                "SPIRE_RS_REQUIRE_AWS=1 but moto is not available: {e}"
            );
            eprintln!("SKIPPED: moto is not available: {e}");
            None
        }
    }
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
    let Some(moto) = start_moto().await else {
        return;
    };
    let url = moto.url.clone();
    let region = "us-east-1";
    // A security group, an instance profile with a role, an instance with tags.
    let seeded = moto
        .seed_instance(region, "web", &[("Name", "web-1"), ("env", "prod")])
        .await
        .unwrap();
    let (client, _) = moto.client();
    let sg_id = seeded.sg_id.clone();
    let instance_id = seeded.instance_id.clone();
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
