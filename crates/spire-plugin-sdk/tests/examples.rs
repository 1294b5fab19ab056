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

/// How `plugin_cmd` (with `plugin_args`) would start the example `exe` as plugin `name`.
fn example_spec(name: &str, plugin_type: &str, exe: &str, args: &[&str]) -> LaunchSpec {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    LaunchSpec::new(
        name,
        plugin_type,
        &example(exe).display().to_string(),
        &args,
        None,
        Path::new("/"),
    )
    .unwrap()
}

fn core() -> CoreConfig {
    CoreConfig {
        trust_domain: "example.org".into(),
    }
}

#[tokio::test]
async fn the_rust_workload_attestor_example_loads_configures_and_attests() {
    let spec = example_spec(
        "rustpid",
        "WorkloadAttestor",
        "workloadattestor_rust_pidinfo",
        &[],
    );
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
    let spec = example_spec(
        "rustclaim",
        "CredentialComposer",
        "credentialcomposer_rust_addclaim",
        &[],
    );
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

/// The KeyManager example, `side` (`server` or `agent`) as `plugin_args` chooses.
async fn key_manager(side: &str) -> spire_plugin_host::keymanager::ExternalKeyManager {
    use spire_plugin_host::keymanager::ExternalKeyManager;
    let spec = example_spec("rustkeys", "KeyManager", "keymanager_rust_memkeys", &[side]);
    type Bind = fn(Arc<ExternalPlugin>) -> Result<ExternalKeyManager, spire_plugin_host::HostError>;
    let bind: Bind = match side {
        "agent" => ExternalKeyManager::bind_agent,
        _ => ExternalKeyManager::bind,
    };
    ExternalPlugin::start(&spec, &core(), None, HostServices::none(), bind)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_key_manager_example_signs_digests_for_both_sides() {
    use spiffe_core::{JwsAlgorithm, KeyType};
    use spire_plugin::{KeyManager as _, SignatureKind};
    for side in ["server", "agent"] {
        let km = key_manager(side).await;
        assert!(km.get_public_keys().await.unwrap().is_empty());
        assert!(km.get_public_key("x509-CA-A").await.unwrap().is_none());
        let cases = [
            ("ec256", KeyType::EcP256, JwsAlgorithm::ES256),
            ("ec384", KeyType::EcP384, JwsAlgorithm::ES384),
            ("rsa", KeyType::Rsa2048, JwsAlgorithm::RS256),
        ];
        for (id, key_type, _) in cases {
            let key = km.generate_key(id, key_type).await.unwrap();
            assert_eq!((key.id.as_str(), key.key_type), (id, key_type));
            // The fingerprint is the hex SHA-256 of the PKIX key.
            let sum =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key.spki_der());
            assert_eq!(key.fingerprint, hex::encode(sum));
        }
        let listed: Vec<String> = km
            .get_public_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(listed, ["ec256", "ec384", "rsa"], "{side}");

        let message = b"the bytes a certificate or a token signs";
        for (id, _, jws) in cases {
            let signer = km.signer(id).await.unwrap();
            let x509 = signer
                .sign_async(message, SignatureKind::X509)
                .await
                .unwrap();
            assert!(
                signer.public_key().verify_x509(message, &x509),
                "{side} {id}"
            );
            let token = signer
                .sign_async(message, SignatureKind::Jws(jws))
                .await
                .unwrap();
            assert!(
                signer.public_key().verify_jws(jws, message, &token),
                "{side} {id}"
            );
        }
        // RSA-PSS and RS512 through the same key; a curve the key does not have is refused
        // by the host before any call.
        let rsa = km.signer("rsa").await.unwrap();
        for jws in [
            JwsAlgorithm::PS256,
            JwsAlgorithm::PS512,
            JwsAlgorithm::RS512,
        ] {
            let token = rsa
                .sign_async(message, SignatureKind::Jws(jws))
                .await
                .unwrap();
            assert!(
                rsa.public_key().verify_jws(jws, message, &token),
                "{side} {jws}"
            );
        }
        assert!(
            rsa.sign_async(message, SignatureKind::Jws(JwsAlgorithm::ES256))
                .await
                .is_err()
        );

        // A key replaced after its signer was made: the fingerprint no longer matches.
        let old = km.signer("ec256").await.unwrap();
        km.generate_key("ec256", KeyType::EcP256).await.unwrap();
        let err = old
            .sign_async(message, SignatureKind::X509)
            .await
            .unwrap_err();
        assert!(err.message.contains("does not match"), "{err}");
        // An unknown key: the plugin's NotFound.
        let err = km.signer("nope").await.unwrap_err();
        assert_eq!(err.code, Code::NotFound);
    }
}

/// The example's service refuses what the protocol forbids before the plugin sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_key_manager_example_refuses_malformed_requests() {
    use spire_proto::spire::plugin::server::keymanager::v1 as km;
    let spec = example_spec("rustkeys", "KeyManager", "keymanager_rust_memkeys", &[]);
    let plugin = Arc::new(
        ExternalPlugin::load(&spec, &HostOptions::default(), HostServices::none())
            .await
            .unwrap(),
    );
    let channel = plugin
        .bind("spire.plugin.server.keymanager.v1.KeyManager")
        .unwrap();
    let mut client = km::key_manager_client::KeyManagerClient::new(channel);
    let generated = client
        .generate_key(km::GenerateKeyRequest {
            key_id: "k".into(),
            key_type: km::KeyType::EcP256 as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .public_key
        .unwrap();
    let sign = |data: Vec<u8>, opts| km::SignDataRequest {
        key_id: "k".into(),
        data,
        signer_opts: opts,
    };
    use km::sign_data_request::SignerOpts as O;
    let sha256 = Some(O::HashAlgorithm(km::HashAlgorithm::Sha256 as i32));
    let cases = [
        (
            km::SignDataRequest {
                key_id: String::new(),
                ..sign(vec![0; 32], sha256)
            },
            "key id is required",
        ),
        (sign(vec![0; 32], None), "signer opts is required"),
        (
            sign(vec![0; 31], sha256),
            "digest is 31 bytes long, Sha256 digests are 32",
        ),
        (
            sign(
                vec![0; 32],
                Some(O::HashAlgorithm(
                    km::HashAlgorithm::UnspecifiedHashAlgorithm as i32,
                )),
            ),
            "unsupported hash algorithm 0",
        ),
        (
            sign(
                vec![0; 48],
                Some(O::HashAlgorithm(km::HashAlgorithm::Sha384 as i32)),
            ),
            "key \"k\" does not sign Sha384 digests",
        ),
    ];
    for (request, want) in cases {
        let err = client.sign_data(request).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{want}");
        assert_eq!(err.message(), want);
    }
    let err = client
        .generate_key(km::GenerateKeyRequest {
            key_id: "k2".into(),
            key_type: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "unable to generate key \"k2\" for unknown key type 0"
    );
    // A well-formed request still signs.
    let signed = client
        .sign_data(sign(vec![7; 32], sha256))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.key_fingerprint, generated.fingerprint);
    drop(client);
    Arc::try_unwrap(plugin).unwrap().shutdown().await;
}
