//! Both halves against the IMDS fixture and a fake AWS API.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use spiffe_core::TrustDomain;
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, Challenger, Code, PluginResult, ServerNodeAttestor,
};
use spire_plugin_host::hostservices::{AgentLookup, AgentLookupCell};

use crate::agent::{AgentConfig, AwsIidAgent};
use crate::cacerts::Trust;
use crate::server::{
    AwsApi, AwsIidServer, BlockDevice, Instance, NetworkInterface, ServerConfig, Session,
    check_block_device, instance_profile_name, validate_payload,
};
use crate::testsupport::{ImdsContent, ImdsMode, ImdsServer, TestCa, document};
use crate::{IidAttestationData, PLUGIN_NAME};

fn doc() -> String {
    document(
        "123456789012",
        "us-west-2",
        "i-0abc",
        "us-west-2a",
        "ami-1234",
    )
}

fn over(ca: &TestCa) -> Trust {
    Trust::TestOverride {
        path: "test".into(),
        der: ca.cert_der.clone(),
    }
}

fn payload(ca: &TestCa, doc: &str) -> IidAttestationData {
    IidAttestationData {
        document: doc.to_string(),
        signature: ca.sign_rsa1024_style(doc).unwrap(),
        signature_rsa2048: ca.sign_pkcs7(doc.as_bytes()).unwrap(),
    }
}

fn bytes(d: &IidAttestationData) -> Vec<u8> {
    serde_json::to_vec(d).unwrap()
}

#[test]
fn payload_json_is_spires() {
    let d = IidAttestationData {
        document: "d".into(),
        signature: "s".into(),
        signature_rsa2048: "r".into(),
    };
    assert_eq!(
        serde_json::to_string(&d).unwrap(),
        r#"{"document":"d","signature":"s","rsa2048":"r"}"#
    );
}

#[test]
fn both_signatures_verify_and_rsa2048_is_preferred() {
    let ca = TestCa::new("test").unwrap();
    let p = payload(&ca, &doc());
    let (_, d) = validate_payload(&bytes(&p), &over(&ca)).unwrap();
    assert_eq!(d.instance_id, "i-0abc");
    assert_eq!(d.region, "us-west-2");
    // RSA-1024 alone.
    let mut only1024 = p.clone();
    only1024.signature_rsa2048.clear();
    validate_payload(&bytes(&only1024), &over(&ca)).unwrap();
    // A broken RSA-1024 signature is not looked at when RSA-2048 is there.
    let mut bad1024 = p.clone();
    bad1024.signature = "AAAA".into();
    validate_payload(&bytes(&bad1024), &over(&ca)).unwrap();
}

#[test]
fn rejections_carry_spires_messages() {
    let ca = TestCa::new("test").unwrap();
    let other = TestCa::new("other").unwrap();
    let p = payload(&ca, &doc());
    let err = |b: &[u8], t: &Trust| validate_payload(b, t).unwrap_err();

    let e = err(b"malformed payload", &over(&ca));
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(
        e.message
            .starts_with("failed to unmarshal the attestation data:"),
        "{}",
        e.message
    );

    let mut none = p.clone();
    none.signature.clear();
    none.signature_rsa2048.clear();
    let e = err(&bytes(&none), &over(&ca));
    assert_eq!(
        e.message,
        "instance identity cryptographic signature is required"
    );

    let mut bad = p.clone();
    bad.signature_rsa2048 = "bad signature".into();
    let e = err(&bytes(&bad), &over(&ca));
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(
        e.message
            .starts_with("failed to decode the instance identity cryptographic signature")
            || e.message
                .starts_with("failed to parse the instance identity cryptographic signature"),
        "{}",
        e.message
    );

    let mut garbage = p.clone();
    garbage.signature_rsa2048 = "AAAAAAAA".into();
    let e = err(&bytes(&garbage), &over(&ca));
    assert!(
        e.message
            .starts_with("failed to parse the instance identity cryptographic signature"),
        "{}",
        e.message
    );

    // Another authority's certificate (another region's).
    let e = err(&bytes(&p), &over(&other));
    assert_eq!(e.code, Code::InvalidArgument);
    assert_eq!(
        e.message,
        "failed verification of instance identity cryptographic signature: pkcs7: No certificate for signer"
    );
    let mut only1024 = p.clone();
    only1024.signature_rsa2048.clear();
    let e = err(&bytes(&only1024), &over(&other));
    assert_eq!(
        e.message,
        "failed to verify the cryptographic signature: crypto/rsa: verification error"
    );

    // AWS's real certificates do not trust the test authority.
    let e = err(&bytes(&p), &Trust::Embedded);
    assert!(
        e.message
            .starts_with("failed verification of instance identity cryptographic signature"),
        "{}",
        e.message
    );

    // An unknown region has no RSA-2048 certificate.
    let mars = document("1", "mars-1", "i-1", "mars-1a", "ami-1");
    let e = err(&bytes(&payload(&ca, &mars)), &Trust::Embedded);
    assert_eq!(e.code, Code::Internal);
    assert_eq!(
        e.message,
        "failed to load the AWS CA certificate for region \"mars-1\": unsupported region \"mars-1\""
    );
}

#[test]
fn tampered_documents_are_refused() {
    let ca = TestCa::new("test").unwrap();
    let p = payload(&ca, &doc());
    let forged = document(
        "123456789012",
        "us-west-2",
        "i-0evil",
        "us-west-2a",
        "ami-1234",
    );
    // The document swapped under a valid PKCS #7 signature of the original.
    let mut swapped = p.clone();
    swapped.document = forged.clone();
    let e = validate_payload(&bytes(&swapped), &over(&ca)).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(
        e.message
            .starts_with("failed verification of instance identity cryptographic signature"),
        "{}",
        e.message
    );
    // And under the RSA-1024 signature.
    swapped.signature_rsa2048.clear();
    let e = validate_payload(&bytes(&swapped), &over(&ca)).unwrap_err();
    assert_eq!(
        e.message,
        "failed to verify the cryptographic signature: crypto/rsa: verification error"
    );
    // The PKCS #7 content changed after signing: the message digest no longer matches.
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &p.signature_rsa2048,
    )
    .unwrap();
    let mut der2 = der.clone();
    let at = der2.windows(8).position(|w| w == b"i-0abc\",").unwrap();
    der2[at + 4] = b'x';
    let sd = crate::pkcs7::SignedData::parse(&der2).unwrap();
    let e = sd.verify(&ca.cert_der).unwrap_err();
    assert!(
        e.to_string().starts_with("pkcs7: Message digest mismatch"),
        "{e}"
    );
}

#[test]
fn ber_indefinite_lengths_are_read() {
    let ca = TestCa::new("test").unwrap();
    let d = doc();
    let p = payload(&ca, &d);
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &p.signature_rsa2048,
    )
    .unwrap();
    // Re-wrap the outer ContentInfo with an indefinite length, as AWS's encoder does.
    let (hdr, body) = match der[1] {
        0x82 => (4, &der[4..]),
        0x81 => (3, &der[3..]),
        _ => (2, &der[2..]),
    };
    assert!(hdr > 1);
    let mut ber = vec![0x30, 0x80];
    ber.extend_from_slice(body);
    ber.extend_from_slice(&[0, 0]);
    let sd = crate::pkcs7::SignedData::parse(&ber).unwrap();
    assert_eq!(sd.content(), d.as_bytes());
    sd.verify(&ca.cert_der).unwrap();
}

#[test]
fn instance_profile_names_as_spire_parses_them() {
    assert_eq!(
        instance_profile_name("arn:aws:iam::123:instance-profile/web").unwrap(),
        "web"
    );
    assert_eq!(
        instance_profile_name("arn:aws:iam::123:instance-profile/path/to/web").unwrap(),
        "web"
    );
    assert_eq!(
        instance_profile_name("arn:aws:iam::123:role/web")
            .unwrap_err()
            .message,
        "arn is not for an instance profile"
    );
    assert_eq!(
        instance_profile_name("nope").unwrap_err().message,
        "failed to parse arn: invalid prefix"
    );
}

fn instance(attach_nic: i64, attach_root: i64) -> Instance {
    Instance {
        tags: vec![
            ("Name".into(), "web-1".into()),
            ("env".into(), "prod".into()),
        ],
        security_groups: vec![("sg-1".into(), "default".into())],
        iam_instance_profile_arn: Some("arn:aws:iam::123456789012:instance-profile/web".into()),
        network_interfaces: vec![NetworkInterface {
            device_index: Some(0),
            attach_time: Some(attach_nic),
        }],
        root_device_type: "ebs".into(),
        root_device_name: "/dev/xvda".into(),
        block_devices: vec![BlockDevice {
            device_name: "/dev/xvda".into(),
            ebs_attach_time: Some(attach_root),
        }],
    }
}

#[test]
fn block_device_check_as_spire() {
    check_block_device(&instance(1000, 1060)).unwrap();
    assert_eq!(
        check_block_device(&instance(1000, 1061)).unwrap_err(),
        "failed checking the disparity device attach times, root BlockDeviceMapping and NetworkInterface[0] attach times differ by 61 seconds"
    );
    let mut i = instance(0, 0);
    i.network_interfaces[0].device_index = Some(1);
    assert_eq!(
        check_block_device(&i).unwrap_err(),
        "the EC2 instance network interface with device index 0 is inaccessible"
    );
    let mut i = instance(0, 500);
    i.root_device_name = "/dev/sda1".into();
    assert_eq!(
        check_block_device(&i).unwrap_err(),
        "failed to locate the root device block mapping with name \"/dev/sda1\""
    );
    i.root_device_type = "instance-store".into();
    check_block_device(&i).unwrap();
}

#[derive(Debug, Default)]
struct FakeApi {
    reservations: Vec<Vec<Instance>>,
    fail: Option<String>,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl AwsApi for FakeApi {
    async fn describe_instances(
        &self,
        _: &Session,
        region: &str,
        account: &str,
        id: &str,
    ) -> Result<Vec<Vec<Instance>>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("describe {account}@{region} {id}"));
        match &self.fail {
            Some(e) => Err(e.clone()),
            None => Ok(self.reservations.clone()),
        }
    }
    async fn instance_profile_roles(
        &self,
        _: &Session,
        _: &str,
        _: &str,
        name: &str,
    ) -> Result<Vec<String>, String> {
        self.calls.lock().unwrap().push(format!("profile {name}"));
        Ok(vec![format!("arn:aws:iam::123456789012:role/{name}-role")])
    }
    async fn list_accounts(
        &self,
        _: &Session,
        region: &str,
        role: &str,
        next: Option<&str>,
    ) -> Result<crate::api::AccountsPage, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("accounts {role}@{region} {next:?}"));
        // Two pages: an ACTIVE and a SUSPENDED account, then the node's account.
        Ok(match next {
            None => (
                vec![
                    ("111111111111".into(), "ACTIVE".into()),
                    ("222222222222".into(), "SUSPENDED".into()),
                ],
                Some("page2".into()),
            ),
            Some(_) => (vec![("123456789012".into(), "ACTIVE".into())], None),
        })
    }
    async fn list_nodegroups(
        &self,
        _: &Session,
        region: &str,
        account: &str,
        cluster: &str,
        _: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("nodegroups {cluster} {account}@{region}"));
        if cluster == "missing" {
            return Err(
                "api error ResourceNotFoundException: No cluster found for name: missing.".into(),
            );
        }
        Ok((vec![format!("{cluster}-ng")], None))
    }
    async fn nodegroup_auto_scaling_groups(
        &self,
        _: &Session,
        _: &str,
        _: &str,
        _: &str,
        nodegroup: &str,
    ) -> Result<Vec<Option<String>>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("nodegroup {nodegroup}"));
        Ok(vec![None, Some(format!("{nodegroup}-asg"))])
    }
    async fn auto_scaling_group_instances(
        &self,
        _: &Session,
        _: &str,
        _: &str,
        group: &str,
        _: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), String> {
        self.calls.lock().unwrap().push(format!("asg {group}"));
        Ok((
            if group == "prod-ng-asg" {
                vec!["i-0abc".into()]
            } else {
                vec!["i-other".into()]
            },
            None,
        ))
    }
}

struct Known(BTreeSet<String>);

#[async_trait]
impl AgentLookup for Known {
    async fn is_attested(&self, id: &str) -> Result<bool, String> {
        Ok(self.0.contains(id))
    }
}

fn lookup(known: &[&str]) -> AgentLookupCell {
    let cell: AgentLookupCell = Arc::default();
    let _ = cell.set(Arc::new(Known(
        known.iter().map(|s| s.to_string()).collect(),
    )));
    cell
}

struct NoChallenge;

#[async_trait]
impl Challenger for NoChallenge {
    async fn challenge(&mut self, _: Vec<u8>) -> PluginResult<Vec<u8>> {
        panic!("aws_iid never challenges")
    }
}

fn server(cfg: &str, api: Arc<FakeApi>, known: &[&str], ca: &TestCa) -> PluginResult<AwsIidServer> {
    let cfg: ServerConfig = serde_json::from_str(cfg).unwrap();
    AwsIidServer::new(
        &cfg,
        TrustDomain::new("example.org").unwrap(),
        lookup(known),
        api,
        &|_| None,
        over(ca),
    )
}

const ID: &str = "spiffe://example.org/spire/agent/aws_iid/123456789012/us-west-2/i-0abc";

#[tokio::test]
async fn attests_with_spires_agent_id_and_selectors() {
    let ca = TestCa::new("test").unwrap();
    let api = Arc::new(FakeApi {
        reservations: vec![vec![instance(100, 110)]],
        ..Default::default()
    });
    let s = server("{}", api.clone(), &[], &ca).unwrap();
    let a = s
        .attest(bytes(&payload(&ca, &doc())), &mut NoChallenge)
        .await
        .unwrap();
    assert_eq!(a.agent_id.as_str(), ID);
    assert!(!a.can_reattest);
    assert_eq!(
        a.selector_values,
        [
            "az:us-west-2a",
            "iamrole:arn:aws:iam::123456789012:role/web-role",
            "image:id:ami-1234",
            "instance:id:i-0abc",
            "region:us-west-2",
            "sg:id:sg-1",
            "sg:name:default",
            "tag:Name:web-1",
            "tag:env:prod",
        ]
    );
    assert_eq!(
        *api.calls.lock().unwrap(),
        ["describe 123456789012@us-west-2 i-0abc", "profile web"]
    );

    // Trust on first use: the same instance again is refused.
    let s = server("{}", api.clone(), &[ID], &ca).unwrap();
    let e = s
        .attest(bytes(&payload(&ca, &doc())), &mut NoChallenge)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::PermissionDenied);
    assert_eq!(
        e.message,
        "attestation data has already been used to attest an agent"
    );
}

#[tokio::test]
async fn configuration_shapes_the_result() {
    let ca = TestCa::new("test").unwrap();
    let p = bytes(&payload(&ca, &doc()));
    // Block device check failing, then skipped by skip_block_device or a local account.
    let api = Arc::new(FakeApi {
        reservations: vec![vec![instance(100, 500)]],
        ..Default::default()
    });
    let e = server("{}", api.clone(), &[], &ca)
        .unwrap()
        .attest(p.clone(), &mut NoChallenge)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Internal);
    assert!(
        e.message
            .starts_with("failed aws ec2 attestation: failed checking the disparity"),
        "{}",
        e.message
    );
    server(r#"{"skip_block_device": true}"#, api.clone(), &[], &ca)
        .unwrap()
        .attest(p.clone(), &mut NoChallenge)
        .await
        .unwrap();
    server(
        r#"{"account_ids_for_local_validation": ["123456789012"]}"#,
        api.clone(),
        &[],
        &ca,
    )
    .unwrap()
    .attest(p.clone(), &mut NoChallenge)
    .await
    .unwrap();

    // Tags in the template; instance profile selectors off.
    let api = Arc::new(FakeApi {
        reservations: vec![vec![instance(100, 100)]],
        ..Default::default()
    });
    let s = server(r#"{"agent_path_template": "/{{ .PluginName }}/{{ .Tags.Name }}/{{ .InstanceID }}", "disable_instance_profile_selectors": true}"#, api.clone(), &[], &ca).unwrap();
    let a = s.attest(p.clone(), &mut NoChallenge).await.unwrap();
    assert_eq!(
        a.agent_id.as_str(),
        "spiffe://example.org/spire/agent/aws_iid/web-1/i-0abc"
    );
    assert!(a.selector_values.iter().all(|v| !v.starts_with("iamrole:")));
    assert_eq!(api.calls.lock().unwrap().len(), 1);

    // Sprig functions and pipelines over the tags; a tag the instance lacks is Go's
    // missing map key error (SPIRE parses with missingkey=error).
    let api = Arc::new(FakeApi {
        reservations: vec![vec![instance(100, 100)]],
        ..Default::default()
    });
    let s = server(
        r#"{"agent_path_template": "/{{ .Region | upper }}/{{ .Tags.Name | replace \"-\" \"_\" }}/{{ trimPrefix \"i-\" .InstanceID }}", "disable_instance_profile_selectors": true}"#,
        api.clone(),
        &[],
        &ca,
    )
    .unwrap();
    let a = s.attest(p.clone(), &mut NoChallenge).await.unwrap();
    assert_eq!(
        a.agent_id.as_str(),
        "spiffe://example.org/spire/agent/US-WEST-2/web_1/0abc"
    );
    let s = server(
        r#"{"agent_path_template": "/{{ .Tags.Missing }}", "disable_instance_profile_selectors": true}"#,
        api,
        &[],
        &ca,
    )
    .unwrap();
    let e = s.attest(p.clone(), &mut NoChallenge).await.unwrap_err();
    assert_eq!(
        e.message,
        "failed to create spiffe ID: template: agent-path:1:9: executing \"agent-path\" at <.Tags.Missing>: map has no entry for key \"Missing\""
    );

    // DescribeInstances failing or finding nothing.
    let api = Arc::new(FakeApi {
        fail: Some("oh no".into()),
        ..Default::default()
    });
    let e = server("{}", api, &[], &ca)
        .unwrap()
        .attest(p.clone(), &mut NoChallenge)
        .await
        .unwrap_err();
    assert_eq!(e.message, "failed to describe instance: oh no");
    let api = Arc::new(FakeApi::default());
    let e = server("{}", api, &[], &ca)
        .unwrap()
        .attest(p.clone(), &mut NoChallenge)
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "failed to query AWS via describe-instances: returned no reservations"
    );
    let api = Arc::new(FakeApi {
        reservations: vec![vec![]],
        ..Default::default()
    });
    let e = server("{}", api, &[], &ca)
        .unwrap()
        .attest(p, &mut NoChallenge)
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "failed to query AWS via describe-instances: returned no instances"
    );
}

#[test]
fn configuration_errors_are_spires() {
    let ca = TestCa::new("test").unwrap();
    let api = Arc::new(FakeApi::default());
    let e = server(r#"{"partition": "aws-mars"}"#, api.clone(), &[], &ca).unwrap_err();
    assert_eq!(
        e.message,
        "invalid partition \"aws-mars\", must be one of: [aws aws-cn aws-us-gov]"
    );
    let e = server(r#"{"access_key_id": "AKIA"}"#, api.clone(), &[], &ca).unwrap_err();
    assert_eq!(
        e.message,
        "configuration missing secret access key, but has access key id"
    );
    let e = server(r#"{"secret_access_key": "s"}"#, api.clone(), &[], &ca).unwrap_err();
    assert_eq!(
        e.message,
        "configuration missing access key id, but has secret access key"
    );
    let e = server(
        r#"{"agent_path_template": "/{{ .InstanceID "}"#,
        api,
        &[],
        &ca,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "failed to parse agent svid template: \"/{{ .InstanceID \""
    );
}

#[tokio::test]
async fn organization_membership_gates_attestation() {
    let ca = TestCa::new("test").unwrap();
    let p = bytes(&payload(&ca, &doc()));
    let api = Arc::new(FakeApi {
        reservations: vec![vec![instance(100, 100)]],
        ..Default::default()
    });
    let cfg = r#"{"verify_organization": {"management_account_id": "999999999999", "assume_org_role": "spire-org", "management_account_region": "eu-west-1"}, "disable_instance_profile_selectors": true}"#;
    let s = server(cfg, api.clone(), &[], &ca).unwrap();
    s.attest(p.clone(), &mut NoChallenge).await.unwrap();
    // Both pages read with the organization role; the list is cached for the next node.
    s.attest(p.clone(), &mut NoChallenge).await.unwrap();
    assert_eq!(
        *api.calls.lock().unwrap(),
        [
            "accounts arn:aws:iam::999999999999:role/spire-org@eu-west-1 None",
            "accounts arn:aws:iam::999999999999:role/spire-org@eu-west-1 Some(\"page2\")",
            "describe 123456789012@us-west-2 i-0abc",
            "describe 123456789012@us-west-2 i-0abc",
        ]
    );
    // A node of a suspended account is refused before any EC2 call.
    let other = doc().replace("123456789012", "222222222222");
    let api = Arc::new(FakeApi::default());
    let e = server(cfg, api.clone(), &[], &ca)
        .unwrap()
        .attest(bytes(&payload(&ca, &other)), &mut NoChallenge)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Internal);
    assert_eq!(
        e.message,
        "failed aws ec2 attestation, nodes account id: 222222222222 is not part of configured organization or doesn't have ACTIVE status"
    );
    assert!(
        api.calls
            .lock()
            .unwrap()
            .iter()
            .all(|c| c.starts_with("accounts"))
    );
    // The block's required keys and TTL bounds, with SPIRE's words.
    let e = server(
        r#"{"verify_organization": {"management_account_id": "1"}}"#,
        api.clone(),
        &[],
        &ca,
    )
    .unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(
        e.message
            .contains("\"management_account_id\" & \"assume_org_role\"")
    );
    let e = server(r#"{"verify_organization": {"management_account_id": "1", "assume_org_role": "r", "org_account_map_ttl": "10s"}}"#, api, &[], &ca).unwrap_err();
    assert!(
        e.message.contains("greater than or equal to \"1m\""),
        "{}",
        e.message
    );
}

#[test]
fn membership_blocks_decode_from_hcl() {
    let text = r#"plugins {
  NodeAttestor "aws_iid" {
    plugin_data {
      skip_block_device = true
      verify_organization {
        management_account_id = "999999999999"
        assume_org_role = "spire-org"
        org_account_map_ttl = "5m"
      }
      validate_eks_cluster_membership {
        eks_cluster_names = ["prod", "dev"]
      }
    }
  }
}"#;
    let p =
        spire_config::PluginsConfig::from_config_text(text, spire_config::Format::Auto).unwrap();
    let spire_config::PluginData::Inline(data) = &p.plugins[0].data else {
        panic!("inline data expected");
    };
    let (cfg, unknown) = data.decode_lenient::<ServerConfig>().unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    let org = cfg.verify_organization.unwrap().check().unwrap();
    assert_eq!(org.account_id, "999999999999");
    assert_eq!(org.role, "spire-org");
    assert_eq!(org.ttl, Duration::from_secs(300));
    assert_eq!(
        cfg.validate_eks_cluster_membership
            .unwrap()
            .eks_cluster_names,
        ["prod", "dev"]
    );
}

#[tokio::test]
async fn eks_membership_gates_attestation() {
    let ca = TestCa::new("test").unwrap();
    let p = bytes(&payload(&ca, &doc()));
    let api = Arc::new(FakeApi {
        reservations: vec![vec![instance(100, 100)]],
        ..Default::default()
    });
    let cfg = r#"{"validate_eks_cluster_membership": {"eks_cluster_names": ["dev", "prod"]}, "disable_instance_profile_selectors": true}"#;
    let s = server(cfg, api.clone(), &[], &ca).unwrap();
    let a = s.attest(p.clone(), &mut NoChallenge).await.unwrap();
    assert_eq!(a.agent_id.as_str(), ID);
    assert_eq!(
        api.calls.lock().unwrap()[..6],
        [
            "nodegroups dev 123456789012@us-west-2",
            "nodegroup dev-ng",
            "asg dev-ng-asg",
            "nodegroups prod 123456789012@us-west-2",
            "nodegroup prod-ng",
            "asg prod-ng-asg",
        ]
    );
    // An instance outside the clusters is refused.
    let s = server(
        r#"{"validate_eks_cluster_membership": {"eks_cluster_names": ["dev"]}}"#,
        api.clone(),
        &[],
        &ca,
    )
    .unwrap();
    let e = s.attest(p.clone(), &mut NoChallenge).await.unwrap_err();
    assert_eq!(
        e.message,
        "failed aws eks attestation, nodes id: i-0abc is not part of configured EKS cluster"
    );
    // An API failure names the step.
    let s = server(
        r#"{"validate_eks_cluster_membership": {"eks_cluster_names": ["missing"]}}"#,
        api,
        &[],
        &ca,
    )
    .unwrap();
    let e = s.attest(p, &mut NoChallenge).await.unwrap_err();
    assert_eq!(e.code, Code::Internal);
    assert_eq!(
        e.message,
        "failed aws eks attestation, issue while verifying if nodes id: i-0abc belong to cluster: issue while getting list of EKS Nodegroups: api error ResourceNotFoundException: No cluster found for name: missing."
    );
}

struct Capture(Vec<Vec<u8>>);

#[async_trait]
impl AttestationExchange for Capture {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        self.0.push(data);
        Ok(None)
    }
}

async fn fixture(mode: ImdsMode) -> (TestCa, ImdsServer) {
    let ca = TestCa::new("test").unwrap();
    let content = ImdsContent::signed(&ca, doc()).unwrap();
    let imds = ImdsServer::start(content, mode).await.unwrap();
    (ca, imds)
}

fn agent(imds: &ImdsServer) -> AwsIidAgent {
    AwsIidAgent::new(&AgentConfig {
        ec2_metadata_endpoint: imds.endpoint(),
    })
}

#[tokio::test]
async fn agent_reads_imdsv2_and_the_server_accepts_it() {
    let (ca, imds) = fixture(ImdsMode::V2).await;
    let mut cap = Capture(Vec::new());
    agent(&imds).attest(&mut cap).await.unwrap();
    assert_eq!(cap.0.len(), 1);
    // One token, three reads.
    assert_eq!(imds.requests.load(std::sync::atomic::Ordering::SeqCst), 4);
    let data: IidAttestationData = serde_json::from_slice(&cap.0[0]).unwrap();
    assert_eq!(data.document, doc());
    let api = Arc::new(FakeApi {
        reservations: vec![vec![instance(1, 1)]],
        ..Default::default()
    });
    let a = server("{}", api, &[], &ca)
        .unwrap()
        .attest(cap.0.remove(0), &mut NoChallenge)
        .await
        .unwrap();
    assert_eq!(a.agent_id.as_str(), ID);
}

#[tokio::test]
async fn agent_falls_back_to_imdsv1() {
    let (_ca, imds) = fixture(ImdsMode::V1).await;
    let data = agent(&imds).fetch().await.unwrap();
    assert_eq!(data.document, doc());
}

#[tokio::test]
async fn agent_reports_imds_failures() {
    let (_ca, imds) = fixture(ImdsMode::Broken).await;
    let e = agent(&imds).fetch().await.unwrap_err();
    assert_eq!(
        e.message,
        "operation error ec2imds: GetDynamicData, failed to get API token, https response error StatusCode: 500, RequestID: , request to EC2 IMDS failed"
    );

    let (_ca, imds) = fixture(ImdsMode::Silent).await;
    let started = std::time::Instant::now();
    let e = agent(&imds)
        .with_timeout(Duration::from_millis(300))
        .fetch()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        e.message.contains("request send failed, GET"),
        "{}",
        e.message
    );

    // Nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = AwsIidAgent::new(&AgentConfig {
        ec2_metadata_endpoint: format!("http://127.0.0.1:{port}"),
    });
    let e = a.fetch().await.unwrap_err();
    assert!(
        e.message.starts_with(
            "operation error ec2imds: GetDynamicData, request send failed, GET \"http://127.0.0.1:"
        ),
        "{}",
        e.message
    );
    assert_eq!(PLUGIN_NAME, "aws_iid");
}
