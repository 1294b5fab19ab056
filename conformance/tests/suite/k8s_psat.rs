//! `k8s_psat` node attestation against a real kube-apiserver (etcd + apiserver on loopback,
//! `support::k8s`): the agent presents a projected service-account token bound to its pod;
//! the server reviews it (TokenReview), reads the pod and the node, and names the agent
//! after the node's UID.

use std::path::Path;

use crate::support::k8s::Cluster;
use crate::support::{
    Agent, AgentOpts, Attestor, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, id, server_subject, uid_selector, wait_agent_listed,
};

/// Namespace, service accounts, the node and the agent's pod (no kubelet: pods are
/// objects only, which is all `k8s_psat` reads).
const OBJECTS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: spire}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: spire-agent, namespace: spire}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: intruder, namespace: spire}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {zone: zone-a, hidden: "yes"}}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: spire, labels: {app: spire-agent, hidden: "yes"}}
spec:
  nodeName: node-1
  serviceAccountName: spire-agent
  automountServiceAccountToken: false
  containers: [{name: agent, image: local/app:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: intruder-1, namespace: spire}
spec:
  nodeName: node-1
  serviceAccountName: intruder
  automountServiceAccountToken: false
  containers: [{name: agent, image: local/app:1}]
"#;

fn server_block(kubeconfig: &Path) -> String {
    format!(
        r#"NodeAttestor "k8s_psat" {{
        plugin_data {{
            clusters = {{
                "test" = {{
                    service_account_allow_list = ["spire:spire-agent"]
                    kube_config_file = "{}"
                    allowed_node_label_keys = ["zone"]
                    allowed_pod_label_keys = ["app"]
                }}
            }}
        }}
    }}"#,
        kubeconfig.display()
    )
}

fn agent_block(cluster: &str, token: &Path) -> Attestor {
    Attestor::Block(format!(
        "NodeAttestor \"k8s_psat\" {{\n        plugin_data {{\n            cluster = \"{cluster}\"\n            token_path = \"{}\"\n        }}\n    }}",
        token.display()
    ))
}

async fn server_for(sc: &Scenario, k8s: &Cluster) -> Server {
    Server::start_new(
        sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(&k8s.kubeconfig),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn attestation_selectors_and_reattestation() {
    let sc = Scenario::new("k8s_psat::attestation_selectors_and_reattestation");
    let Some(k8s) = Cluster::start(&sc) else {
        return;
    };
    k8s.apply(OBJECTS);
    let node_uid = k8s.jsonpath(&["node", "node-1"], "{.metadata.uid}");
    let pod_uid = k8s.jsonpath(&["-n", "spire", "pod", "agent-1"], "{.metadata.uid}");
    let token = k8s.pod_token("spire", "spire-agent", "agent-1", "spire-server");

    let server = server_for(&sc, &k8s).await;
    let attestor = agent_block("test", &token);
    let mut agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &attestor,
        AgentOpts::default(),
    )
    .await;
    let agent_id = id(&format!("/spire/agent/k8s_psat/test/{node_uid}"));
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "k8s_psat", "{listed}");
    assert_eq!(
        listed["can_reattest"], true,
        "k8s_psat agents can re-attest"
    );
    let mut selectors = agent_selectors(&listed);
    selectors.sort();
    let mut want = vec![
        "k8s_psat:agent_node_ip:".to_string(),
        "k8s_psat:agent_node_label:zone:zone-a".to_string(),
        "k8s_psat:agent_node_name:node-1".to_string(),
        format!("k8s_psat:agent_node_uid:{node_uid}"),
        "k8s_psat:agent_ns:spire".to_string(),
        "k8s_psat:agent_pod_label:app:spire-agent".to_string(),
        "k8s_psat:agent_pod_name:agent-1".to_string(),
        format!("k8s_psat:agent_pod_uid:{pod_uid}"),
        "k8s_psat:agent_sa:spire-agent".to_string(),
        "k8s_psat:cluster:test".to_string(),
    ];
    want.sort();
    assert_eq!(selectors, want, "agent selectors");

    // A node alias on the attested selectors, and a workload under it.
    let alias = id("/k8s/cluster/test");
    server.entry_create(&[
        "-node",
        "-spiffeID",
        &alias,
        "-selector",
        "k8s_psat:agent_pod_label:app:spire-agent",
        "-selector",
        "k8s_psat:cluster:test",
    ]);
    let workload = id("/k8s-workload");
    server.workload_entry(&alias, &workload, &uid_selector());
    check_svid_json(&agent.wait_x509(&workload, 60).await, &workload);

    // The agent's pod is replaced: a new agent with no SVID on disk attests again with the
    // new pod's token and gets the same ID (the node's UID), not a second agent.
    agent.stop();
    k8s.kubectl_ok(&[
        "-n",
        "spire",
        "delete",
        "pod",
        "agent-1",
        "--grace-period=0",
        "--force",
    ]);
    k8s.apply(OBJECTS);
    let token = k8s.pod_token("spire", "spire-agent", "agent-1", "spire-server");
    let again = Agent::start_new(
        &sc,
        "agent-again",
        agent_subject(),
        &server,
        &agent_block("test", &token),
        AgentOpts::default(),
    )
    .await;
    check_svid_json(&again.wait_x509(&workload, 60).await, &workload);
    let agents = server.agents();
    assert_eq!(agents.len(), 1, "one node, one agent: {agents:?}");
    let new_pod_uid = k8s.jsonpath(&["-n", "spire", "pod", "agent-1"], "{.metadata.uid}");
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert!(
        agent_selectors(&listed).contains(&format!("k8s_psat:agent_pod_uid:{new_pod_uid}")),
        "re-attestation replaces the selectors: {listed}"
    );
}

/// `token` with `exp` (and `iat`, `nbf`) an hour in the past, re-signed (RS256) with the
/// service-account key the API server trusts.
fn expire(token: &str, sa_key: &Path) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.trim().split('.');
    let (header, payload) = (parts.next().unwrap(), parts.next().unwrap());
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["iat"] = serde_json::json!(now - 7200);
    claims["nbf"] = serde_json::json!(now - 7200);
    claims["exp"] = serde_json::json!(now - 3600);
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let mut openssl = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(sa_key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    use std::io::Write as _;
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signed.as_bytes())
        .unwrap();
    let sig = openssl.wait_with_output().unwrap();
    assert!(sig.status.success(), "openssl dgst -sign failed");
    format!("{signed}.{}", b64.encode(sig.stdout))
}

/// Starts an agent that must be refused, waits for `why` in its log and checks it never
/// becomes healthy.
async fn refused(sc: &Scenario, server: &Server, label: &str, attestor: &Attestor, why: &[&str]) {
    let mut bad = Agent::new(
        sc,
        label,
        agent_subject(),
        server,
        attestor,
        AgentOpts::default(),
    );
    bad.start();
    let d = crate::support::Deadline::new(format!("{label}: refusal {why:?}"), 60);
    while !why.iter().any(|w| bad.log().contains(w)) {
        d.tick(crate::support::tail(&bad.log(), 1500)).await;
    }
    assert!(
        !bad.cli_socket(&["healthcheck"]).ok(),
        "{label}: a refused agent must not be healthy"
    );
    bad.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn refusals() {
    let sc = Scenario::new("k8s_psat::refusals");
    let Some(k8s) = Cluster::start(&sc) else {
        return;
    };
    k8s.apply(OBJECTS);
    let server = server_for(&sc, &k8s).await;

    // A token for another audience: the API server's review says why.
    let other_aud = k8s.pod_token("spire", "spire-agent", "agent-1", "not-spire");
    refused(
        &sc,
        &server,
        "wrong-audience",
        &agent_block("test", &other_aud),
        &["nodeattestor(k8s_psat): unable to validate token with TokenReview API: token review API response contains an error"],
    )
    .await;

    // A service account that is not allowed.
    let intruder = k8s.pod_token("spire", "intruder", "intruder-1", "spire-server");
    refused(
        &sc,
        &server,
        "not-allowed",
        &agent_block("test", &intruder),
        &[
            "nodeattestor(k8s_psat): \\\"spire:intruder\\\" is not an allowed service account",
            "nodeattestor(k8s_psat): \"spire:intruder\" is not an allowed service account",
        ],
    )
    .await;

    // A cluster the server does not know.
    let good = k8s.pod_token("spire", "spire-agent", "agent-1", "spire-server");
    refused(
        &sc,
        &server,
        "wrong-cluster",
        &agent_block("elsewhere", &good),
        &[
            "nodeattestor(k8s_psat): not configured for cluster \\\"elsewhere\\\"",
            "nodeattestor(k8s_psat): not configured for cluster \"elsewhere\"",
        ],
    )
    .await;

    // An expired token, signed by the cluster's own service-account key (a real one with its
    // expiry moved into the past).
    let expired = sc.path().join("expired-token");
    let expired_token = expire(
        &std::fs::read_to_string(&good).unwrap(),
        &k8s.dir.join("pki/sa.key"),
    );
    std::fs::write(&expired, expired_token).unwrap();
    refused(
        &sc,
        &server,
        "expired",
        &agent_block("test", &expired),
        &["nodeattestor(k8s_psat): unable to validate token with TokenReview API: token review API response contains an error"],
    )
    .await;

    // A token that is not a token at all.
    let garbage = sc.path().join("garbage-token");
    std::fs::write(&garbage, "not-a-jwt").unwrap();
    refused(
        &sc,
        &server,
        "garbage",
        &agent_block("test", &garbage),
        &[
            "nodeattestor(k8s_psat): unable to validate token with TokenReview API: token review API response contains an error",
            "nodeattestor(k8s_psat): token not authenticated",
        ],
    )
    .await;

    // The token's pod is deleted: the token is invalidated (or, inside the API server's
    // cache window, the pod is not found), and attestation is refused either way.
    k8s.kubectl_ok(&[
        "-n",
        "spire",
        "delete",
        "pod",
        "agent-1",
        "--grace-period=0",
        "--force",
    ]);
    refused(
        &sc,
        &server,
        "deleted-pod",
        &agent_block("test", &good),
        &[
            "nodeattestor(k8s_psat): unable to validate token with TokenReview API: token review API response contains an error: [invalid bearer token, service account token has been invalidated]",
            "nodeattestor(k8s_psat): fail to get pod from k8s API server: unable to query pods API: pods",
        ],
    )
    .await;
    assert!(server.agents().is_empty(), "nothing was attested");
}
