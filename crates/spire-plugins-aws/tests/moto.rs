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

/// The JSON value at `pointer` of a moto answer.
fn field(json: &str, pointer: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.pointer(pointer)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("no {pointer} in {json}"))
        .to_string()
}

#[tokio::test]
#[ignore = "needs moto (conformance/moto/setup.sh); scripts/test.sh runs it with SPIRE_RS_REQUIRE_AWS=1"]
async fn organization_eks_and_web_identity_against_moto() {
    use spire_plugins_aws::api::{eks_service, organizations_service};
    let Some(moto) = start_moto().await else {
        return;
    };
    let region = "us-east-1";
    let (client, session) = moto.client();
    let org = organizations_service("aws");
    // An organization managed by moto's account, a member account, and a closed one.
    client
        .json(
            &session,
            &org,
            "AWSOrganizationsV20161128.CreateOrganization",
            r#"{"FeatureSet": "ALL"}"#,
        )
        .await
        .unwrap();
    let mut members = Vec::new();
    for name in ["member", "closed"] {
        let created = client
            .json(
                &session,
                &org,
                "AWSOrganizationsV20161128.CreateAccount",
                &format!(r#"{{"AccountName": "{name}", "Email": "{name}@example.org"}}"#),
            )
            .await
            .unwrap();
        members.push(field(&created, "/CreateAccountStatus/AccountId"));
    }
    client
        .json(
            &session,
            &org,
            "AWSOrganizationsV20161128.CloseAccount",
            &format!(r#"{{"AccountId": "{}"}}"#, members[1]),
        )
        .await
        .unwrap();

    // An EKS cluster whose node group's Auto Scaling group runs one instance.
    let eks = eks_service(region, "aws");
    client
        .rest_json_post(
            &session,
            &eks,
            "/clusters",
            r#"{"name": "prod", "roleArn": "arn:aws:iam::123456789012:role/eks", "resourcesVpcConfig": {"subnetIds": ["subnet-1"]}}"#,
        )
        .await
        .unwrap();
    let ng = client
        .rest_json_post(
            &session,
            &eks,
            "/clusters/prod/node-groups",
            r#"{"nodegroupName": "workers", "nodeRole": "arn:aws:iam::123456789012:role/node", "subnets": ["subnet-1"]}"#,
        )
        .await
        .unwrap();
    let asg = field(&ng, "/nodegroup/resources/autoScalingGroups/0/name");
    for (action, params) in [
        (
            "CreateLaunchConfiguration",
            vec![
                ("LaunchConfigurationName", "workers-lc"),
                ("ImageId", spire_plugins_aws::moto::IMAGE),
                ("InstanceType", "t2.micro"),
            ],
        ),
        (
            "CreateAutoScalingGroup",
            vec![
                ("AutoScalingGroupName", asg.as_str()),
                ("LaunchConfigurationName", "workers-lc"),
                ("MinSize", "1"),
                ("MaxSize", "1"),
                ("DesiredCapacity", "1"),
                ("AvailabilityZones.member.1", "us-east-1a"),
            ],
        ),
    ] {
        client
            .query(
                &session,
                "autoscaling",
                region,
                "2011-01-01",
                action,
                &params,
            )
            .await
            .unwrap();
    }
    let groups = client
        .query(
            &session,
            "autoscaling",
            region,
            "2011-01-01",
            "DescribeAutoScalingGroups",
            &[("AutoScalingGroupNames.member.1", asg.as_str())],
        )
        .await
        .unwrap();
    let start = groups.find("<InstanceId>").unwrap() + "<InstanceId>".len();
    let node = groups[start..start + groups[start..].find('<').unwrap()].to_string();
    let outsider = moto
        .seed_instance(region, "other", &[("Name", "other")])
        .await
        .unwrap();

    let ca = TestCa::new("test").unwrap();
    let payload = |account: &str, instance: &str| {
        let doc = document(
            account,
            region,
            instance,
            "us-east-1a",
            spire_plugins_aws::moto::IMAGE,
        );
        serde_json::to_vec(&IidAttestationData {
            signature: ca.sign_rsa1024_style(&doc).unwrap(),
            signature_rsa2048: ca.sign_pkcs7(doc.as_bytes()).unwrap(),
            document: doc,
        })
        .unwrap()
    };
    let url = moto.url.clone();
    let server = |cfg: &str, env: Vec<(&'static str, String)>| {
        let cell: AgentLookupCell = Arc::default();
        let _ = cell.set(Arc::new(Nobody));
        let cfg: ServerConfig = serde_json::from_str(cfg).unwrap();
        let mut env = env;
        env.push(("AWS_ENDPOINT_URL", url.clone()));
        env.push(("AWS_EC2_METADATA_DISABLED", "true".into()));
        let env: spire_plugins_aws::api::EnvFn =
            Arc::new(move |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
        AwsIidServer::new(
            &cfg,
            TrustDomain::new("example.org").unwrap(),
            cell,
            Arc::new(AwsClient::with_env(
                Duration::from_secs(10),
                Arc::new(SystemTime::now),
                env,
            )),
            &|_| None,
            Trust::TestOverride {
                path: "test".into(),
                der: ca.cert_der.clone(),
            },
        )
        .unwrap()
    };
    let keys = || {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ]
    };

    // verify_organization: the management account's role lists the ACTIVE accounts.
    let org_cfg = r#"{"verify_organization": {"management_account_id": "123456789012", "assume_org_role": "org-reader"}, "skip_block_device": true, "disable_instance_profile_selectors": true}"#;
    let s = server(org_cfg, keys());
    // The management account is a member: its instance attests.
    s.attest(
        payload("123456789012", &outsider.instance_id),
        &mut NoChallenge,
    )
    .await
    .unwrap();
    // A member account passes the organization check and goes on to EC2 (where moto has
    // no such instance in it).
    let e = s
        .attest(payload(&members[0], "i-0member"), &mut NoChallenge)
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with("failed to describe instance:")
            && e.message.contains("InvalidInstanceID.NotFound"),
        "{}",
        e.message
    );
    let e = s
        .attest(payload(&members[1], "i-0closed"), &mut NoChallenge)
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "failed aws ec2 attestation, nodes account id: {} is not part of configured organization or doesn't have ACTIVE status",
            members[1]
        )
    );
    let e = s
        .attest(payload("555555555555", "i-0stranger"), &mut NoChallenge)
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("555555555555 is not part of configured organization")
    );

    // validate_eks_cluster_membership: the node group's instance attests, another is refused,
    // an unknown cluster is an API error.
    let eks_cfg = r#"{"validate_eks_cluster_membership": {"eks_cluster_names": ["prod"]}, "skip_block_device": true}"#;
    let s = server(eks_cfg, keys());
    let a = s
        .attest(payload("123456789012", &node), &mut NoChallenge)
        .await
        .unwrap();
    assert!(a.selector_values.contains(&format!("instance:id:{node}")));
    let e = s
        .attest(
            payload("123456789012", &outsider.instance_id),
            &mut NoChallenge,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "failed aws eks attestation, nodes id: {} is not part of configured EKS cluster",
            outsider.instance_id
        )
    );
    let e = server(
        r#"{"validate_eks_cluster_membership": {"eks_cluster_names": ["nope"]}}"#,
        keys(),
    )
    .attest(payload("123456789012", &node), &mut NoChallenge)
    .await
    .unwrap_err();
    assert!(
        // (AWS answers 404 ResourceNotFoundException; moto 5.2.5 a bare 500.)
        e.message.contains("issue while getting list of EKS Nodegroups: operation error EKS: ListNodegroups, https response error StatusCode: "),
        "{}",
        e.message
    );

    // No keys anywhere: the chain's web identity (EKS IRSA) gets credentials from STS and
    // the EC2 call is made with them.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzcGlyZSJ9.c2ln").unwrap();
    let irsa = vec![
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/spire-server".to_string(),
        ),
        ("HOME", dir.path().display().to_string()),
    ];
    let a = server(r#"{"skip_block_device": true}"#, irsa)
        .attest(
            payload("123456789012", &outsider.instance_id),
            &mut NoChallenge,
        )
        .await
        .unwrap();
    assert!(
        a.selector_values
            .contains(&format!("sg:id:{}", outsider.sg_id))
    );
    // And with nothing at all, a clear error naming the chain's last step.
    let e = server(r#"{}"#, vec![("HOME", dir.path().display().to_string())])
        .attest(
            payload("123456789012", &outsider.instance_id),
            &mut NoChallenge,
        )
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("failed to refresh cached credentials, no EC2 IMDS role found"),
        "{}",
        e.message
    );
}
