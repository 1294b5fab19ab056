//! The SDK's example plugins, started by our own host exactly as `plugin_cmd` would start
//! them (the conformance suite also loads them into reference SPIRE).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spire_plugin::{Code, WorkloadAttestor as _};
use spire_plugin_host::broker::HostServices;
use spire_plugin_host::workloadattestor::ExternalWorkloadAttestor;
use spire_plugin_host::{CoreConfig, ExternalPlugin, HostOptions, LaunchSpec};

/// `cargo test` builds the examples next to the test binaries' `deps` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let path = debug.join("examples").join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn core() -> CoreConfig {
    CoreConfig {
        trust_domain: "example.org".into(),
    }
}

#[tokio::test]
async fn the_rust_workload_attestor_example_loads_configures_and_attests() {
    let spec = LaunchSpec::new(
        "rustpid",
        "WorkloadAttestor",
        &example("workloadattestor_rust_pidinfo")
            .display()
            .to_string(),
        &[],
        None,
        Path::new("/"),
    )
    .unwrap();
    let plugin = Arc::new(
        ExternalPlugin::load(&spec, &HostOptions::default(), HostServices::none())
            .await
            .unwrap(),
    );
    assert_eq!(
        plugin.service_names(),
        [
            "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor".to_owned(),
            "spire.service.common.config.v1.Config".to_owned()
        ]
    );
    let attestor = ExternalWorkloadAttestor::bind(plugin.clone()).unwrap();
    // Not configured yet: the plugin's own refusal.
    let err = attestor
        .attest(std::process::id() as i32)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::FailedPrecondition);

    assert_eq!(
        plugin
            .configure(&core(), Some("tag = \"two words\""))
            .await
            .unwrap_err()
            .to_string(),
        "failed to configure plugin \"rustpid\": rpc error: code = InvalidArgument desc = tag must not contain white space"
    );
    plugin
        .configure(&core(), Some("tag = \"green\""))
        .await
        .unwrap();
    let selectors = attestor.attest(std::process::id() as i32).await.unwrap();
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(selectors.contains(&format!("uid:{uid}")), "{selectors:?}");
    assert_eq!(selectors.last().map(String::as_str), Some("tag:green"));

    let pid = plugin.pid().unwrap();
    drop(attestor);
    Arc::try_unwrap(plugin).unwrap().shutdown().await;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the example plugin outlived its shutdown"
    );
}

#[test]
fn run_by_hand_the_example_refuses_to_start() {
    let out = std::process::Command::new(example("workloadattestor_rust_pidinfo"))
        .env_remove("WorkloadAttestor")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"@level\":\"error\""), "{err}");
    assert!(err.contains("it is not run by hand"), "{err}");
}

#[tokio::test]
async fn the_rust_credential_composer_example_adds_its_claim_and_passes_the_rest() {
    use spire_plugin::CredentialComposer as _;
    use spire_plugin_host::credentialcomposer::ExternalCredentialComposer;
    let spec = LaunchSpec::new(
        "rustclaim",
        "CredentialComposer",
        &example("credentialcomposer_rust_addclaim")
            .display()
            .to_string(),
        &[],
        None,
        Path::new("/"),
    )
    .unwrap();
    // Configuration is checked by the plugin.
    let err = ExternalPlugin::start(
        &spec,
        &core(),
        Some("claim_name = \"x\""),
        HostServices::none(),
        ExternalCredentialComposer::bind,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("code = InvalidArgument desc = claim_name and claim_value are required"),
        "{err}"
    );
    let cc = ExternalPlugin::start(
        &spec,
        &core(),
        Some(
            "claim_name = \"department\"\nclaim_value = \"payments\"\ndns_name = \"x.example.org\"",
        ),
        HostServices::none(),
        ExternalCredentialComposer::bind,
    )
    .await
    .unwrap();
    let id = spiffe_core::SpiffeId::parse("spiffe://example.org/w").unwrap();
    let claims: spire_plugin::JwtClaims =
        serde_json::from_str(r#"{"aud":["a"],"exp":1900000000,"sub":"spiffe://example.org/w"}"#)
            .unwrap();
    let out = cc.compose_workload_jwt_svid(&id, claims).await.unwrap();
    assert_eq!(
        serde_json::Value::Object(out).to_string(),
        r#"{"aud":["a"],"department":"payments","exp":1900000000,"sub":"spiffe://example.org/w"}"#
    );
    let key = spiffe_core::PrivateKey::generate(spiffe_core::KeyType::EcP256).unwrap();
    let attrs = spire_plugin::X509SvidAttributes {
        subject: spire_plugin::DistinguishedName {
            country: vec!["US".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let workload = cc
        .compose_workload_x509_svid(&id, key.public_key(), attrs.clone())
        .await
        .unwrap();
    assert_eq!(workload.dns_sans, vec!["x.example.org".to_owned()]);
    assert_eq!(workload.subject, attrs.subject);
    // What the example does not implement passes through (the trait's defaults).
    assert_eq!(
        cc.compose_agent_x509_svid(&id, key.public_key(), attrs.clone())
            .await
            .unwrap(),
        attrs
    );
}
