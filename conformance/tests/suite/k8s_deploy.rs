//! The shipped deployment (`deploy/`) tried on the loopback cluster: the image built from the
//! agent under test (`deploy/build-image.py`), the RBAC, ConfigMaps and the agent DaemonSet's
//! pod from `deploy/k8s/*.yaml` as written. The agent pod gets its `k8s_psat` token from the
//! kubelet (a real projected token bound to the pod), attests to the server, and serves a
//! workload pod through the hostPath socket with `k8s` selectors.
//!
//! What the loopback cluster lacks is substituted, and only that: there are no workload
//! controllers, so the DaemonSet's pod template runs as a Pod on the node; no cluster DNS or
//! Service routing, so the agent dials the server (running beside the cluster, with the
//! manifest's plugin configuration and an admin kubeconfig) on 127.0.0.1; the Workload API
//! socket's hostPath is the scenario's own directory; the kubelet's port is the node's.

use serde_json::{Value, json};

use crate::clients::go_client;
use crate::support::k8s::Cluster;
use crate::support::{
    Deadline, Scenario, Server, ServerOpts, agent_subject, id, run, server_subject, tail,
    wait_agent_listed, workspace_root,
};

/// The manifests as JSON objects (`kubectl create --dry-run=client -o json`).
fn manifest(k8s: &Cluster, file: &str) -> Vec<Value> {
    let path = workspace_root().join("deploy/k8s").join(file);
    let out = k8s.kubectl_ok(&[
        "create",
        "--dry-run=client",
        "-o",
        "json",
        "-f",
        &path.display().to_string(),
    ]);
    // One JSON document per object, one after the other.
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .map(|v| v.expect("manifest JSON"))
        .flat_map(|v| match v["kind"].as_str() {
            Some("List") => v["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![v],
        })
        .collect()
}

fn apply_json(k8s: &Cluster, objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    k8s.apply(&list.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn agent_daemonset_serves_a_pod() {
    let sc = Scenario::new("k8s_deploy::agent_daemonset_serves_a_pod");
    let Some(client) = go_client(&sc) else {
        return;
    };
    // SPIRE's k8s attestor dials the kubelet at the node's name: call the node localhost.
    let Some(k8s) = Cluster::start_with_node(&sc, "localhost") else {
        return;
    };
    let node = k8s.start_node();

    // The image, from the agent under test.
    let image = sc.path().join("spire-image.tar");
    let bin_dir = agent_subject().bin("spire-agent");
    let bin_dir = bin_dir.parent().unwrap();
    let built = run(
        &workspace_root().join("deploy/build-image.py"),
        &[&image.display().to_string(), &bin_dir.display().to_string()],
        None,
    );
    assert!(built.ok(), "build-image.py: {built}");
    let sock = node.containerd_sock.display().to_string();
    let imported = run(
        std::path::Path::new("ctr"),
        &[
            "-a",
            &sock,
            "-n",
            "k8s.io",
            "images",
            "import",
            &image.display().to_string(),
        ],
        None,
    );
    assert!(imported.ok(), "ctr import: {imported}");

    // The server side's objects as shipped (the StatefulSet has no controller here and
    // stays without pods; the server runs beside the cluster instead).
    apply_json(&k8s, &manifest(&k8s, "spire-server.yaml"));
    let server_conf = manifest(&k8s, "spire-server.yaml")
        .into_iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "spire-server")
        .expect("server ConfigMap")["data"]["server.conf"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        server_conf.contains("NodeAttestor \"k8s_psat\""),
        "{server_conf}"
    );
    let kubeconfig = k8s.kubeconfig.display().to_string();
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: format!(
                r#"NodeAttestor "k8s_psat" {{
        plugin_data {{
            clusters = {{
                "demo-cluster" = {{
                    service_account_allow_list = ["spire:spire-agent"]
                    kube_config_file = "{kubeconfig}"
                }}
            }}
        }}
    }}
    Notifier "k8sbundle" {{
        plugin_data {{
            namespace = "spire"
            kube_config_file_path = "{kubeconfig}"
        }}
    }}"#
            ),
            ..Default::default()
        },
    )
    .await;

    // The agent's objects: RBAC and configuration as shipped, the DaemonSet's pod template
    // as a Pod on the node.
    let sockets = sc.subdir("agent-sockets");
    let mut objects = Vec::new();
    let mut pod = None;
    for mut o in manifest(&k8s, "spire-agent.yaml") {
        match o["kind"].as_str() {
            Some("ConfigMap") => {
                let conf = o["data"]["agent.conf"].as_str().unwrap().to_string();
                let conf = conf
                    .replace(
                        "server_address = \"spire-server\"",
                        "server_address = \"127.0.0.1\"",
                    )
                    .replace(
                        "server_port = \"8081\"",
                        &format!("server_port = \"{}\"", server.port),
                    )
                    .replace(
                        "skip_kubelet_verification = true",
                        &format!(
                            "skip_kubelet_verification = true\n                kubelet_secure_port = {}",
                            node.kubelet_port
                        ),
                    )
                    .replace("bind_port = \"8080\"", "bind_port = \"0\"");
                o["data"]["agent.conf"] = Value::String(conf);
                objects.push(o);
            }
            Some("DaemonSet") => {
                let mut spec = o["spec"]["template"]["spec"].clone();
                spec["nodeName"] = json!(node.name);
                for v in spec["volumes"].as_array_mut().unwrap() {
                    if v["name"] == "spire-agent-socket" {
                        v["hostPath"]["path"] = json!(sockets.display().to_string());
                    }
                }
                pod = Some(json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": "spire-agent-localhost",
                        "namespace": "spire",
                        "labels": o["spec"]["template"]["metadata"]["labels"],
                    },
                    "spec": spec,
                }));
            }
            _ => objects.push(o),
        }
    }
    apply_json(&k8s, &objects);
    // The bundle the agent bootstraps from is in spire-bundle (k8sbundle) before it starts.
    let d = Deadline::new("k8sbundle fills spire-bundle", 60);
    while !k8s
        .jsonpath(
            &["-n", "spire", "configmap", "spire-bundle"],
            "{.data.bundle\\.crt}",
        )
        .contains("BEGIN CERTIFICATE")
    {
        d.tick(tail(&server.log(), 1500)).await;
    }
    apply_json(&k8s, &[pod.expect("DaemonSet in spire-agent.yaml")]);

    let node_uid = k8s.jsonpath(&["node", &node.name], "{.metadata.uid}");
    let agent_id = id(&format!("/spire/agent/k8s_psat/demo-cluster/{node_uid}"));
    let d = Deadline::new("the agent pod attests", 120);
    while !server.agent_ids().contains(&agent_id) {
        let phase = k8s.jsonpath(
            &["-n", "spire", "pod", "spire-agent-localhost"],
            "{.status}",
        );
        let logs = std::fs::read_dir(k8s.dir.join("pod-logs"))
            .map(|_| {
                run(
                    std::path::Path::new("sh"),
                    &["-c", &format!("cat {}/pod-logs/spire_spire-agent-localhost_*/*/*.log 2>/dev/null | tail -c 1500", k8s.dir.display())],
                    None,
                )
                .stdout
            })
            .unwrap_or_default();
        d.tick(format!("pod status {phase}\nagent log: {logs}"))
            .await;
    }
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "k8s_psat", "{listed}");

    // A workload pod, the agent's socket directory shared in.
    let client_dir = client.parent().unwrap().display().to_string();
    let client_name = client.file_name().unwrap().to_str().unwrap().to_string();
    k8s.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: work}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: default, namespace: work}}
---
apiVersion: v1
kind: Pod
metadata: {{name: wl, namespace: work, labels: {{app: wl}}}}
spec:
  nodeName: {node_name}
  hostNetwork: true
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: docker.io/local/app:1
    imagePullPolicy: Never
    volumeMounts:
    - {{name: sockets, mountPath: /run/spire/sockets}}
    - {{name: client, mountPath: /client, readOnly: true}}
  volumes:
  - {{name: sockets, hostPath: {{path: {sockets}, type: Directory}}}}
  - {{name: client, hostPath: {{path: {client_dir}, type: Directory}}}}
"#,
        node_name = node.name,
        sockets = sockets.display(),
    ));
    let workload = id("/k8s/work/wl");
    server.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &workload,
        "-selector",
        "k8s:ns:work",
        "-selector",
        "k8s:pod-label:app:wl",
    ]);
    let d = Deadline::new("the workload pod gets its SVID from the agent pod", 120);
    loop {
        let container = k8s.jsonpath(
            &["-n", "work", "pod", "wl"],
            "{.status.containerStatuses[0].containerID}",
        );
        if let Some(cid) = container.strip_prefix("containerd://") {
            let out = node.exec(
                cid,
                &[
                    &format!("/client/{client_name}"),
                    "x509",
                    "-socket",
                    "unix:///run/spire/sockets/agent.sock",
                    "-timeout",
                    "5s",
                ],
            );
            if out.ok() && out.stdout.contains(&format!("spiffe_id={workload}")) {
                break;
            }
            d.tick(format!("{out}")).await;
        } else {
            d.tick(format!("workload container {container:?}")).await;
        }
    }
}
