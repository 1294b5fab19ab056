//! WorkloadAttestor `k8s` against a real kubelet and containerd (`support::k8s`): a process
//! started inside a running pod asks the agent's Workload API (its socket shared into the
//! pod through a hostPath volume) with go-spiffe, and gets the SVID of an entry whose
//! selectors name the pod's namespace, service account, label and container.

use crate::clients::go_client;
use crate::support::k8s::Cluster;
use crate::support::{
    AgentOpts, Deadline, Scenario, ServerOpts, agent_subject, id, join_token_pair, server_subject,
    tail,
};

fn objects(agent_public: &str, client_dir: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: spire}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: spire-agent, namespace: spire}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: spire-agent-kubelet}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubelet-pods-reader}}
subjects: [{{kind: ServiceAccount, name: spire-agent, namespace: spire}}]
---
apiVersion: v1
kind: Namespace
metadata: {{name: work}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: default, namespace: work}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: wl-sa, namespace: work}}
---
apiVersion: v1
kind: Pod
metadata: {{name: wl, namespace: work, labels: {{app: wl}}}}
spec:
  nodeName: {node}
  hostNetwork: true
  serviceAccountName: wl-sa
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: docker.io/local/app:1
    imagePullPolicy: Never
    volumeMounts:
    - {{name: agent, mountPath: /spire-agent}}
    - {{name: client, mountPath: /client, readOnly: true}}
  volumes:
  - {{name: agent, hostPath: {{path: {agent_public}, type: Directory}}}}
  - {{name: client, hostPath: {{path: {client_dir}, type: Directory}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: other, namespace: work, labels: {{app: other}}}}
spec:
  nodeName: {node}
  hostNetwork: true
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: docker.io/local/app:1
    imagePullPolicy: Never
    volumeMounts:
    - {{name: agent, mountPath: /spire-agent}}
    - {{name: client, mountPath: /client, readOnly: true}}
  volumes:
  - {{name: agent, hostPath: {{path: {agent_public}, type: Directory}}}}
  - {{name: client, hostPath: {{path: {client_dir}, type: Directory}}}}
"#
    )
}

/// The running container's ID (without the `containerd://` scheme).
async fn running_container(k8s: &Cluster, pod: &str) -> String {
    let d = Deadline::new(format!("pod work/{pod} running"), 90);
    loop {
        let id = k8s.jsonpath(
            &["-n", "work", "pod", pod],
            "{.status.containerStatuses[0].containerID}",
        );
        let phase = k8s.jsonpath(&["-n", "work", "pod", pod], "{.status.phase}");
        if phase == "Running"
            && let Some(id) = id.strip_prefix("containerd://")
        {
            return id.to_string();
        }
        d.tick(format!("phase={phase:?} container={id:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn pod_workload_gets_its_svid() {
    let sc = Scenario::new("k8s_workload::pod_workload_gets_its_svid");
    let Some(client) = go_client(&sc) else {
        return;
    };
    let Some(k8s) = Cluster::start(&sc) else {
        return;
    };
    let node = k8s.start_node();
    let agent_token = sc.path().join("agent-sa-token");
    let attestor = format!(
        r#"WorkloadAttestor "k8s" {{
        plugin_data {{
            kubelet_secure_port = {port}
            kubelet_ca_path = "{ca}"
            token_path = "{token}"
            poll_retry_interval = "200ms"
            max_poll_attempts = 20
        }}
    }}"#,
        port = node.kubelet_port,
        ca = k8s.ca().display(),
        token = agent_token.display(),
    );
    // The agent's service-account token, as the pod of a DaemonSet would have it.
    k8s.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: spire}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: spire-agent, namespace: spire}\n",
    );
    let token = k8s.kubectl_ok(&["-n", "spire", "create", "token", "spire-agent"]);
    std::fs::write(&agent_token, token.trim()).unwrap();

    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts {
            extra_plugins: attestor,
            ..Default::default()
        },
    )
    .await;
    let public = agent.socket.parent().unwrap().display().to_string();
    let client_dir = client.parent().unwrap().display().to_string();
    let client_name = client.file_name().unwrap().to_str().unwrap().to_string();
    k8s.apply(&objects(&public, &client_dir, &node.name));
    let wl_container = running_container(&k8s, "wl").await;
    let other_container = running_container(&k8s, "other").await;

    // Every kind of selector the attestor gives, so the entry matches only if all of them
    // are exactly what SPIRE's attestor says.
    let pod_uid = k8s.jsonpath(&["-n", "work", "pod", "wl"], "{.metadata.uid}");
    let image = k8s.jsonpath(
        &["-n", "work", "pod", "wl"],
        "{.status.containerStatuses[0].image}",
    );
    let image_id = k8s.jsonpath(
        &["-n", "work", "pod", "wl"],
        "{.status.containerStatuses[0].imageID}",
    );
    let workload = id("/k8s/work/wl");
    let selectors = [
        "k8s:ns:work".to_string(),
        "k8s:sa:wl-sa".to_string(),
        "k8s:pod-label:app:wl".to_string(),
        "k8s:pod-name:wl".to_string(),
        format!("k8s:pod-uid:{pod_uid}"),
        format!("k8s:node-name:{}", node.name),
        "k8s:pod-image-count:1".to_string(),
        "k8s:pod-init-image-count:0".to_string(),
        format!("k8s:pod-image:{image}"),
        format!("k8s:pod-image:{image_id}"),
        "k8s:container-name:app".to_string(),
        format!("k8s:container-image:{image}"),
        format!("k8s:container-image:{image_id}"),
    ];
    let mut args = vec![
        "-parentID",
        agent_id.as_str(),
        "-spiffeID",
        workload.as_str(),
    ];
    for s in &selectors {
        args.extend_from_slice(&["-selector", s.as_str()]);
    }
    server.entry_create(&args);

    let socket = format!(
        "unix:///spire-agent/{}",
        agent.socket.file_name().unwrap().to_str().unwrap()
    );
    let fetch = |container: &str| {
        node.exec(
            container,
            &[
                &format!("/client/{client_name}"),
                "x509",
                "-socket",
                &socket,
                "-timeout",
                "5s",
            ],
        )
    };
    let d = Deadline::new("the pod's process gets its SVID", 90);
    loop {
        let out = fetch(&wl_container);
        if out.ok() && out.stdout.contains(&format!("spiffe_id={workload}")) {
            break;
        }
        d.tick(format!("{out}\nagent log: {}", tail(&agent.log(), 1500)))
            .await;
    }

    // Another pod on the same node (other labels, the default service account) is not
    // given it; nor is a process outside any pod.
    let out = fetch(&other_container);
    assert!(
        !out.stdout.contains(&format!("spiffe_id={workload}")),
        "a pod without the selectors got the SVID: {out}"
    );
    let ids = agent.fetch_x509_ids().unwrap_or_default();
    assert!(
        !ids.contains(&workload),
        "a host process got the pod's SVID: {ids:?}"
    );
}
