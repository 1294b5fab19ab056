//! The host against real plugin processes: the Go plugins under `conformance/goplugins`,
//! built with SPIRE's plugin SDK by `conformance/goplugins/build.sh` (scripts/test.sh sets
//! `SPIRE_RS_GOPLUGINS_DIR`), and small shell scripts that misbehave.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spire_plugin::{Code, WorkloadAttestor as _};
use spire_plugin_host::broker::HostServices;
use spire_plugin_host::workloadattestor::ExternalWorkloadAttestor;
use spire_plugin_host::{ExternalPlugin, HostOptions, LaunchSpec};

mod common;
use common::{core, plugins_dir, spec};

async fn load(spec: &LaunchSpec) -> Result<ExternalPlugin, String> {
    ExternalPlugin::load(spec, &HostOptions::default(), HostServices::none())
        .await
        .map_err(|e| e.to_string())
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn process_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_go_sdk_workload_attestor_attests_through_the_host() {
    let pidinfo = plugins_dir().join("workloadattestor-pidinfo");
    let plugin = Arc::new(
        load(&spec("pidinfo", "WorkloadAttestor", &pidinfo, None))
            .await
            .unwrap(),
    );
    assert!(
        plugin
            .service_names()
            .iter()
            .any(|s| s == "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor"),
        "{:?}",
        plugin.service_names()
    );
    plugin
        .configure(&core(), Some("tag = \"blue\"\nfail_pid = 1"))
        .await
        .unwrap();
    let attestor = ExternalWorkloadAttestor::bind(plugin.clone()).unwrap();

    let me = std::process::id() as i32;
    let selectors = attestor.attest(me).await.unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        selectors,
        vec![
            format!("comm:{}", field("Name:")),
            format!("uid:{}", field("Uid:")),
            format!("gid:{}", field("Gid:")),
            "tag:blue".to_owned(),
        ]
    );

    // The plugin's own refusal comes back with its code and message.
    let err = attestor.attest(1).await.unwrap_err();
    assert_eq!(err.code, Code::PermissionDenied);
    assert_eq!(err.message, "pid 1 is refused by configuration");

    // A process that does not exist: the plugin's error, not a host failure.
    let err = attestor.attest(i32::MAX).await.unwrap_err();
    assert_eq!(err.code, Code::Internal, "{err:?}");

    let pid = plugin.pid().unwrap();
    drop(attestor);
    let plugin = Arc::try_unwrap(plugin).unwrap();
    plugin.shutdown().await;
    assert!(process_gone(pid), "plugin process {pid} outlived shutdown");
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn configuration_errors_and_a_missing_interface_use_spires_messages() {
    let pidinfo = plugins_dir().join("workloadattestor-pidinfo");
    let plugin = load(&spec("pidinfo", "WorkloadAttestor", &pidinfo, None))
        .await
        .unwrap();
    assert_eq!(
        plugin
            .configure(&core(), Some("tag = \"two words\""))
            .await
            .unwrap_err()
            .to_string(),
        "failed to configure plugin \"pidinfo\": rpc error: code = InvalidArgument desc = tag must not contain white space"
    );
    let err = plugin
        .bind("spire.plugin.agent.nodeattestor.v1.NodeAttestor")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("failed to bind plugin \"pidinfo\": no supported plugin interface found in: [\"spire.plugin.agent.workloadattestor.v1.WorkloadAttestor\" "),
        "{err}"
    );
    plugin.shutdown().await;

    // The same executable launched as another type does not pass go-plugin's magic cookie:
    // it prints a notice on stderr and exits without a handshake.
    let err = load(&spec("pidinfo", "NodeAttestor", &pidinfo, None))
        .await
        .unwrap_err();
    assert!(
        err.starts_with(
            "failed to load plugin \"pidinfo\": failed to launch plugin: Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout"
        ),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn checksums_are_checked_before_start() {
    let pidinfo = plugins_dir().join("workloadattestor-pidinfo");
    let digest = {
        let bytes = std::fs::read(&pidinfo).unwrap();
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &bytes,
        ))
    };
    let plugin = load(&spec(
        "pidinfo",
        "WorkloadAttestor",
        &pidinfo,
        Some(&digest),
    ))
    .await
    .unwrap();
    plugin.shutdown().await;
    let wrong = "0".repeat(64);
    assert_eq!(
        load(&spec("pidinfo", "WorkloadAttestor", &pidinfo, Some(&wrong)))
            .await
            .unwrap_err(),
        "failed to load plugin \"pidinfo\": failed to launch plugin: checksums did not match"
    );
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_plugin_that_dies_fails_its_calls_naming_it() {
    let pidinfo = plugins_dir().join("workloadattestor-pidinfo");
    let plugin = Arc::new(
        load(&spec("pidinfo", "WorkloadAttestor", &pidinfo, None))
            .await
            .unwrap(),
    );
    plugin.configure(&core(), None).await.unwrap();
    let attestor = ExternalWorkloadAttestor::bind(plugin.clone()).unwrap();
    attestor.attest(std::process::id() as i32).await.unwrap();
    let pid = plugin.pid().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let err = attestor
        .attest(std::process::id() as i32)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err:?}");
    assert!(
        err.message
            .starts_with("plugin \"pidinfo\" has exited: rpc error: "),
        "{}",
        err.message
    );
    assert!(process_gone(pid), "the dead plugin {pid} was not reaped");
}

#[tokio::test]
async fn missing_and_unexecutable_files_fail_to_launch() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert_eq!(
        load(&spec("mine", "WorkloadAttestor", &missing, None))
            .await
            .unwrap_err(),
        format!(
            "failed to load plugin \"mine\": failed to launch plugin: fork/exec {}: no such file or directory",
            missing.display()
        )
    );
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a program").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        load(&spec("mine", "WorkloadAttestor", &plain, None))
            .await
            .unwrap_err(),
        format!(
            "failed to load plugin \"mine\": failed to launch plugin: fork/exec {}: permission denied",
            plain.display()
        )
    );
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let chatty = script(
        dir.path(),
        "chatty",
        "echo 'hello from a shell'\nexec sleep 30",
    );
    let err = load(&spec("chatty", "WorkloadAttestor", &chatty, None))
        .await
        .unwrap_err();
    assert!(
        err.starts_with(
            "failed to load plugin \"chatty\": failed to launch plugin: Unrecognized remote plugin message: hello from a shell\n"
        ),
        "{err}"
    );
    let netrpc = script(
        dir.path(),
        "netrpc",
        "echo '1|1|unix|/tmp/x|netrpc'\nexec sleep 30",
    );
    assert_eq!(
        load(&spec("old", "WorkloadAttestor", &netrpc, None))
            .await
            .unwrap_err(),
        "failed to load plugin \"old\": failed to launch plugin: unsupported plugin protocol \"netrpc\". Supported: [grpc]"
    );
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let mute = script(dir.path(), "mute", "exec sleep 600");
    let options = HostOptions {
        start_timeout: Duration::from_secs(60),
        ..HostOptions::default()
    };
    let err = ExternalPlugin::load(
        &spec("mute", "WorkloadAttestor", &mute, None),
        &options,
        HostServices::none(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "failed to load plugin \"mute\": failed to launch plugin: timeout while waiting for plugin to start"
    );
}

/// Bridges an agent-side attestor and a server-side attestor in one process, as the agent's
/// AttestAgent stream and the server's handler would.
mod bridge {
    use spire_plugin::{AttestationExchange, Challenger, PluginError, PluginResult};
    use tokio::sync::mpsc;

    /// The agent's end: data goes to the server, challenges (or the end) come back.
    pub(super) struct AgentEnd {
        pub(super) to_server: mpsc::Sender<Vec<u8>>,
        pub(super) from_server: mpsc::Receiver<Option<Vec<u8>>>,
    }

    #[async_trait::async_trait]
    impl AttestationExchange for AgentEnd {
        async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
            self.to_server
                .send(data)
                .await
                .map_err(|_| PluginError::internal("server side gone"))?;
            self.from_server
                .recv()
                .await
                .ok_or_else(|| PluginError::internal("server side gone"))
        }
    }

    /// The server's end: challenges go to the agent, responses come back.
    pub(super) struct ServerEnd {
        pub(super) to_agent: mpsc::Sender<Option<Vec<u8>>>,
        pub(super) from_agent: mpsc::Receiver<Vec<u8>>,
    }

    #[async_trait::async_trait]
    impl Challenger for ServerEnd {
        async fn challenge(&mut self, challenge: Vec<u8>) -> PluginResult<Vec<u8>> {
            self.to_agent
                .send(Some(challenge))
                .await
                .map_err(|_| PluginError::internal("agent side gone"))?;
            self.from_agent
                .recv()
                .await
                .ok_or_else(|| PluginError::internal("agent side gone"))
        }
    }
}

/// Runs one attestation between the two Go sharedsecret plugins, configured with the given
/// secrets; returns the server's verdict.
async fn sharedsecret_attestation(
    agent_secret: &str,
    server_secret: &str,
) -> Result<spire_plugin::AttestedAgent, spire_plugin::PluginError> {
    sharedsecret_attestation_with(
        agent_secret,
        &format!("shared_secret = \"{server_secret}\""),
        HostServices::none(),
    )
    .await
}

/// [`sharedsecret_attestation`] with the server plugin's whole configuration and the host
/// services offered to it.
async fn sharedsecret_attestation_with(
    agent_secret: &str,
    server_conf: &str,
    host_services: HostServices,
) -> Result<spire_plugin::AttestedAgent, spire_plugin::PluginError> {
    use spire_plugin::{AgentNodeAttestor as _, ServerNodeAttestor as _};
    use spire_plugin_host::nodeattestor::{ExternalAgentNodeAttestor, ExternalServerNodeAttestor};
    let dir = plugins_dir();
    let agent = ExternalPlugin::start(
        &spec(
            "sharedsecret",
            "NodeAttestor",
            &dir.join("agent-nodeattestor-sharedsecret"),
            None,
        ),
        &core(),
        Some(&format!(
            "node_name = \"node1\"\nshared_secret = \"{agent_secret}\""
        )),
        HostServices::none(),
        ExternalAgentNodeAttestor::bind,
    )
    .await
    .unwrap();
    let server = ExternalPlugin::start(
        &spec(
            "sharedsecret",
            "NodeAttestor",
            &dir.join("server-nodeattestor-sharedsecret"),
            None,
        ),
        &core(),
        Some(server_conf),
        host_services,
        ExternalServerNodeAttestor::bind,
    )
    .await
    .unwrap();
    let (to_server, mut from_agent) = tokio::sync::mpsc::channel(1);
    let (to_agent, from_server) = tokio::sync::mpsc::channel(1);
    let agent_task = tokio::spawn(async move {
        let mut end = bridge::AgentEnd {
            to_server,
            from_server,
        };
        agent.attest(&mut end).await
    });
    let payload = from_agent.recv().await.unwrap();
    assert_eq!(payload, br#"{"node":"node1"}"#);
    let mut end = bridge::ServerEnd {
        to_agent,
        from_agent,
    };
    let verdict = server.attest(payload, &mut end).await;
    // Attested or not, the agent is told the exchange is over.
    let _ = end.to_agent.send(None).await;
    drop(end);
    let _ = agent_task.await.unwrap();
    verdict
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn go_sdk_node_attestors_run_a_challenge_through_both_hosts() {
    let attested = sharedsecret_attestation("correct horse", "correct horse")
        .await
        .unwrap();
    assert_eq!(
        attested.agent_id.to_string(),
        "spiffe://example.org/spire/agent/sharedsecret/node1"
    );
    assert_eq!(attested.selector_values, vec!["node:node1".to_owned()]);
    assert!(attested.can_reattest);

    let refused = sharedsecret_attestation("wrong", "correct horse")
        .await
        .unwrap_err();
    assert_eq!(refused.code, Code::PermissionDenied);
    assert_eq!(
        refused.message,
        "challenge response does not match the shared secret"
    );
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_server_node_attestor_refuses_an_empty_payload_before_calling_the_plugin() {
    use spire_plugin::ServerNodeAttestor as _;
    use spire_plugin_host::nodeattestor::ExternalServerNodeAttestor;
    let server = ExternalPlugin::start(
        &spec(
            "sharedsecret",
            "NodeAttestor",
            &plugins_dir().join("server-nodeattestor-sharedsecret"),
            None,
        ),
        &core(),
        Some("shared_secret = \"s\""),
        HostServices::none(),
        ExternalServerNodeAttestor::bind,
    )
    .await
    .unwrap();
    let (to_agent, _rx) = tokio::sync::mpsc::channel(1);
    let (_tx, from_agent) = tokio::sync::mpsc::channel(1);
    let mut end = bridge::ServerEnd {
        to_agent,
        from_agent,
    };
    let err = server.attest(Vec::new(), &mut end).await.unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
    assert_eq!(err.message, "payload cannot be empty");
    // A payload the plugin cannot read: its own InvalidArgument.
    let err = server
        .attest(b"not json".to_vec(), &mut end)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
    assert_eq!(err.message, "malformed payload");
}

fn x509_signature_verifies(key: &spiffe_core::PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use aws_lc_rs::signature::{self as sig_alg, UnparsedPublicKey};
    if let Some((curve, x, y)) = key.ec_coordinates() {
        let alg = match curve {
            spiffe_core::keys::Curve::P256 => &sig_alg::ECDSA_P256_SHA256_ASN1,
            _ => &sig_alg::ECDSA_P384_SHA384_ASN1,
        };
        let point: Vec<u8> = std::iter::once(4u8).chain(x).chain(y).collect();
        return UnparsedPublicKey::new(alg, point).verify(msg, sig).is_ok();
    }
    let (n, e) = key.rsa_components().unwrap();
    sig_alg::RsaPublicKeyComponents { n, e }
        .verify(&sig_alg::RSA_PKCS1_2048_8192_SHA256, msg, sig)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_go_sdk_key_manager_signs_x509_and_jws_through_the_host() {
    use spiffe_core::{JwsAlgorithm, KeyType};
    use spire_plugin::{KeyManager as _, SignatureKind};
    use spire_plugin_host::keymanager::ExternalKeyManager;
    let km = ExternalPlugin::start(
        &spec(
            "memkeys",
            "KeyManager",
            &plugins_dir().join("server-keymanager-memkeys"),
            None,
        ),
        &core(),
        None,
        HostServices::none(),
        ExternalKeyManager::bind,
    )
    .await
    .unwrap();
    assert!(km.get_public_keys().await.unwrap().is_empty());
    assert!(km.get_public_key("nope").await.unwrap().is_none());
    let err = km.signer("nope").await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);

    let cases = [
        (KeyType::EcP256, JwsAlgorithm::ES256),
        (KeyType::EcP384, JwsAlgorithm::ES384),
        (KeyType::Rsa2048, JwsAlgorithm::RS256),
        (KeyType::Rsa2048, JwsAlgorithm::PS256),
    ];
    for (i, (key_type, alg)) in cases.into_iter().enumerate() {
        let id = format!("key-{i}");
        let key = km.generate_key(&id, key_type).await.unwrap();
        assert_eq!(key.id, id);
        assert_eq!(key.key_type, key_type);
        assert_eq!(key.fingerprint.len(), 64);
        let signer = km.signer(&id).await.unwrap();
        let msg = b"signed through a go-plugin";
        let jws = signer.sign(msg, SignatureKind::Jws(alg)).unwrap();
        assert!(
            key.public_key.verify_jws(alg, msg, &jws),
            "{alg} signature from the plugin does not verify"
        );
        // X.509 signatures: DER ECDSA with the curve's hash, or PKCS#1 v1.5 with SHA-256.
        let x509 = signer.sign(msg, SignatureKind::X509).unwrap();
        let verified = x509_signature_verifies(&key.public_key, msg, &x509);
        assert!(verified, "X.509 signature of {key_type:?} does not verify");
    }
    assert_eq!(km.get_public_keys().await.unwrap().len(), 4);
    // An algorithm that does not fit the key is refused before the plugin is called.
    let ec = km.signer("key-0").await.unwrap();
    let err = ec
        .sign(b"x", SignatureKind::Jws(JwsAlgorithm::RS256))
        .unwrap_err();
    assert_eq!(err.code, Code::Internal);
}

/// An agent lookup with a fixed answer, standing in for the server's datastore.
struct Known(Vec<String>);

#[async_trait::async_trait]
impl spire_plugin_host::hostservices::AgentLookup for Known {
    async fn is_attested(&self, agent_id: &str) -> Result<bool, String> {
        Ok(self.0.iter().any(|a| a == agent_id))
    }
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_plugin_reaches_the_agent_store_host_service_through_the_broker() {
    use spire_plugin_host::hostservices::{self, AgentLookupCell};
    let conf = "shared_secret = \"s\"\nsingle_use = true";
    let node1 = "spiffe://example.org/spire/agent/sharedsecret/node1";

    // Before the server's datastore is open, SPIRE's message.
    let empty: AgentLookupCell = std::sync::Arc::default();
    let err = sharedsecret_attestation_with("s", conf, hostservices::server(empty, Arc::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.message,
        "unable to get agent info: AgentStore host service has not been initialized"
    );

    // An agent the store knows: refused by the plugin.
    let known: AgentLookupCell = std::sync::Arc::default();
    let _ = known.set(std::sync::Arc::new(Known(vec![node1.into()])));
    let err = sharedsecret_attestation_with("s", conf, hostservices::server(known, Arc::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::PermissionDenied);
    assert_eq!(
        err.message,
        "attestation data has already been used to attest an agent"
    );

    // A new one: attested.
    let fresh: AgentLookupCell = std::sync::Arc::default();
    let _ = fresh.set(std::sync::Arc::new(Known(Vec::new())));
    let attested =
        sharedsecret_attestation_with("s", conf, hostservices::server(fresh, Arc::default()))
            .await
            .unwrap();
    assert_eq!(attested.agent_id.to_string(), node1);

    // Without host services the plugin says what it misses.
    let err = sharedsecret_attestation_with("s", conf, HostServices::none())
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::FailedPrecondition);
    assert_eq!(err.message, "the AgentStore host service is not available");
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_reply_that_does_not_decode_fails_the_call_and_the_plugin_stays_usable() {
    let malformed = plugins_dir().join("workloadattestor-malformed");
    let plugin = Arc::new(
        load(&spec("malformed", "WorkloadAttestor", &malformed, None))
            .await
            .unwrap(),
    );
    // No configuration interface: a block without plugin_data is fine, one with it is not.
    plugin.configure(&core(), None).await.unwrap();
    assert_eq!(
        plugin
            .configure(&core(), Some("a = 1"))
            .await
            .unwrap_err()
            .to_string(),
        "failed to configure plugin \"malformed\": no supported configuration interface found"
    );
    let attestor = ExternalWorkloadAttestor::bind(plugin.clone()).unwrap();
    for _ in 0..2 {
        let err = attestor.attest(1).await.unwrap_err();
        assert_eq!(err.code, Code::Internal, "{err:?}");
        assert!(err.message.contains("decode"), "{}", err.message);
    }
    assert!(plugin.pid().is_some_and(|p| !process_gone(p)));
}
