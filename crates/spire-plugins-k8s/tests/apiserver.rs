//! The Kubernetes client and `k8s_psat` against a real kube-apiserver on loopback
//! (`conformance/k8s/cluster.sh`; binaries from `conformance/k8s/build.sh`, found through
//! `SPIRE_RS_K8S_BIN_DIR`). Ignored by a plain `cargo test`; `scripts/test.sh` runs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use spiffe_core::TrustDomain;
use spire_plugin::{Challenger, PluginResult, ServerNodeAttestor};
use spire_plugins_k8s::client::{ConfigSource, K8sError, KubeClient};
use spire_plugins_k8s::psat::{AttestationData, ClusterConfig, PsatServer, ServerConfig};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Cluster {
    dir: tempfile::TempDir,
    kubectl: PathBuf,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let Ok(bin) = std::env::var("SPIRE_RS_K8S_BIN_DIR") else {
            assert!(
                std::env::var("SPIRE_RS_REQUIRE_K8S").as_deref() != Ok("1"),
                "SPIRE_RS_REQUIRE_K8S=1 but SPIRE_RS_K8S_BIN_DIR is not set"
            );
            eprintln!(
                "SKIPPED: no Kubernetes binaries (set SPIRE_RS_K8S_BIN_DIR from conformance/k8s/build.sh)"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("spk8s-")
            .tempdir_in("/tmp")
            .unwrap();
        let out = Command::new(root().join("conformance/k8s/cluster.sh"))
            .args(["start", &dir.path().display().to_string()])
            .output()
            .unwrap();
        let c = Cluster {
            kubectl: PathBuf::from(bin).join("kubectl"),
            dir,
        };
        assert!(
            out.status.success(),
            "cluster.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(c)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn apply(&self, yaml: &str) {
        let f = self.dir.path().join("objects.yaml");
        std::fs::write(&f, yaml).unwrap();
        self.kubectl(&["apply", "-f", &f.display().to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("conformance/k8s/cluster.sh"))
            .args(["stop", &self.dir.path().display().to_string()])
            .status();
    }
}

const OBJECTS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: spire}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: spire-agent, namespace: spire}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: spire}
spec:
  nodeName: node-1
  serviceAccountName: spire-agent
  automountServiceAccountToken: false
  containers: [{name: agent, image: local/app:1}]
"#;

struct NoChallenge;
#[async_trait::async_trait]
impl Challenger for NoChallenge {
    async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
        panic!("no challenge expected")
    }
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver: scripts/test.sh runs it"]
async fn client_and_psat_against_a_real_api_server() {
    let Some(k8s) = Cluster::start() else {
        return;
    };
    k8s.apply(OBJECTS);
    let client = KubeClient::new(ConfigSource::File(k8s.kubeconfig()));

    // Reads, and the API server's own wording for a missing object.
    let node = client.get_node("node-1").await.unwrap();
    assert!(!node.metadata.uid.is_empty());
    let pod = client.get_pod("spire", "agent-1").await.unwrap();
    assert_eq!(pod.spec.node_name, "node-1");
    assert_eq!(pod.spec.service_account_name, "spire-agent");
    let err = client.get_pod("spire", "nope").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "pods \"nope\" not found");

    // A real token review.
    let token = k8s.kubectl(&[
        "-n",
        "spire",
        "create",
        "token",
        "spire-agent",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "agent-1",
        "--audience",
        "spire-server",
    ]);
    let token = token.trim();
    let status = client
        .token_review(token, &["spire-server".to_string()])
        .await
        .unwrap();
    assert!(status.authenticated, "{status:?}");
    assert_eq!(
        status.user.username,
        "system:serviceaccount:spire:spire-agent"
    );
    assert_eq!(
        status.user.extra["authentication.kubernetes.io/pod-name"],
        vec!["agent-1".to_string()]
    );

    // The plugin end to end.
    let mut clusters = BTreeMap::new();
    clusters.insert(
        "test".to_string(),
        ClusterConfig {
            service_account_allow_list: vec!["spire:spire-agent".into()],
            kube_config_file: k8s.kubeconfig().display().to_string(),
            ..Default::default()
        },
    );
    let psat = PsatServer::new(
        &ServerConfig { clusters },
        TrustDomain::new("example.org").unwrap(),
    )
    .unwrap();
    let payload = serde_json::to_vec(&AttestationData {
        cluster: "test".into(),
        token: token.into(),
    })
    .unwrap();
    let attested = psat.attest(payload, &mut NoChallenge).await.unwrap();
    assert_eq!(
        attested.agent_id.to_string(),
        format!(
            "spiffe://example.org/spire/agent/k8s_psat/test/{}",
            node.metadata.uid
        )
    );

    // Without credentials the caller is anonymous, and the API server's refusal reads as
    // client-go's.
    let kc = std::fs::read_to_string(k8s.kubeconfig()).unwrap();
    let anon = k8s.dir.path().join("anon.kubeconfig");
    let without_user: String = kc
        .lines()
        .filter(|l| !l.contains("client-certificate") && !l.contains("client-key"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&anon, without_user).unwrap();
    let err = KubeClient::new(ConfigSource::File(anon))
        .get_node("node-1")
        .await
        .unwrap_err();
    assert!(matches!(err, K8sError::Status { code: 403, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "nodes \"node-1\" is forbidden: User \"system:anonymous\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
    );

    // A server certificate from another CA fails the handshake.
    let other_ca = k8s.dir.path().join("other-ca.crt");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let wrong_ca = k8s.dir.path().join("wrong-ca.kubeconfig");
    let ca_path = k8s.dir.path().join("pki/ca.crt").display().to_string();
    std::fs::write(
        &wrong_ca,
        kc.replace(&ca_path, &other_ca.display().to_string()),
    )
    .unwrap();
    let err = KubeClient::new(ConfigSource::File(wrong_ca))
        .get_node("node-1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Get \"https://127.0.0.1:"), "{err}");
    assert!(err.contains("tls:"), "{err}");

    // The pod goes away: the token is invalidated.
    k8s.kubectl(&[
        "-n",
        "spire",
        "delete",
        "pod",
        "agent-1",
        "--grace-period=0",
        "--force",
    ]);
    let d = std::time::Instant::now();
    loop {
        let s = client
            .token_review(token, &["spire-server".to_string()])
            .await
            .unwrap();
        if !s.authenticated {
            assert!(
                s.error.contains("invalidated") || s.error.contains("not found"),
                "{s:?}"
            );
            break;
        }
        assert!(
            d.elapsed().as_secs() < 30,
            "token still valid 30 s after its pod went"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The `k8s` WorkloadAttestor against a real kubelet (containerd, a running pod), over the
/// kubelet's secure port with a client certificate, and refused with a token the kubelet
/// does not authorize.
#[tokio::test]
#[ignore = "needs a real kubelet: scripts/test.sh runs it"]
async fn workload_attestor_against_a_real_kubelet() {
    use spire_plugin::WorkloadAttestor as _;
    use spire_plugins_k8s::workload::{Config, K8sAttestor};

    let Some(k8s) = Cluster::start() else {
        return;
    };
    let out = Command::new(root().join("conformance/k8s/cluster.sh"))
        .args(["start-node", &k8s.dir.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start-node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(k8s.dir.path().join("cluster.env")).unwrap();
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let port: i64 = get("K8S_KUBELET_PORT").parse().unwrap();
    let sock = get("K8S_CONTAINERD_SOCK");
    k8s.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: work}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: work}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: wl, namespace: work, labels: {app: wl}}\nspec:\n  nodeName: node-1\n  hostNetwork: true\n  automountServiceAccountToken: false\n  terminationGracePeriodSeconds: 0\n  containers: [{name: app, image: docker.io/local/app:1, imagePullPolicy: Never}]\n",
    );
    // The container's process, as containerd lists it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let pid = loop {
        let cid = k8s.kubectl(&[
            "-n",
            "work",
            "get",
            "pod",
            "wl",
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ]);
        if let Some(cid) = cid.strip_prefix("containerd://") {
            let tasks = Command::new("ctr")
                .args(["-a", &sock, "-n", "k8s.io", "tasks", "ls"])
                .output()
                .unwrap();
            let tasks = String::from_utf8_lossy(&tasks.stdout).into_owned();
            if let Some(pid) = tasks
                .lines()
                .find(|l| l.starts_with(cid))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok())
            {
                break pid;
            }
        }
        assert!(std::time::Instant::now() < deadline, "pod never ran");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };

    let pki = k8s.dir.path().join("pki");
    let cert_auth = Config {
        kubelet_secure_port: port,
        kubelet_ca_path: pki.join("ca.crt").display().to_string(),
        certificate_path: pki.join("admin.crt").display().to_string(),
        private_key_path: pki.join("admin.key").display().to_string(),
        poll_retry_interval: "100ms".into(),
        max_poll_attempts: 50,
        ..Default::default()
    };
    let a = K8sAttestor::new(&cert_auth, |_| None, "/").unwrap();
    let selectors = a.attest(pid).await.unwrap();
    for want in [
        "ns:work",
        "sa:default",
        "pod-name:wl",
        "pod-label:app:wl",
        "container-name:app",
        "node-name:node-1",
    ] {
        assert!(
            selectors.iter().any(|s| s == want),
            "{want} missing from {selectors:?}"
        );
    }
    // This test's own process is in no pod: no selectors, no error.
    assert!(
        a.attest(std::process::id() as i32)
            .await
            .unwrap()
            .is_empty()
    );

    // A token the kubelet authenticates but does not authorize: the kubelet's refusal.
    k8s.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: nobody, namespace: work}\n");
    let token = k8s.kubectl(&["-n", "work", "create", "token", "nobody"]);
    let token_path = k8s.dir.path().join("nobody-token");
    std::fs::write(&token_path, token.trim()).unwrap();
    let refused = K8sAttestor::new(
        &Config {
            token_path: token_path.display().to_string(),
            certificate_path: String::new(),
            private_key_path: String::new(),
            ..cert_auth
        },
        |_| None,
        "/",
    )
    .unwrap();
    let err = refused.attest(pid).await.unwrap_err();
    assert!(
        err.message
            .starts_with("unexpected status code on pods response: 403 Forbidden"),
        "{err}"
    );
}
