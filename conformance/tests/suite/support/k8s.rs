//! A real Kubernetes control plane for a scenario: etcd and kube-apiserver on loopback,
//! started by `conformance/k8s/cluster.sh` in the scenario's directory and stopped (by PID)
//! when dropped. The binaries come from `conformance/k8s/build.sh` (cached per machine);
//! `run.sh` and `scripts/test.sh` build them and set `SPIRE_RS_K8S_BIN_DIR`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Cmd, Scenario, client_unavailable, run, workspace_root};

/// Whether a missing cluster fails the scenario instead of skipping it.
pub fn k8s_required() -> bool {
    std::env::var("SPIRE_RS_REQUIRE_K8S").is_ok_and(|v| v == "1")
}

/// A running loopback cluster.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    kubectl: PathBuf,
}

fn script() -> PathBuf {
    workspace_root().join("conformance/k8s/cluster.sh")
}

impl Cluster {
    /// Starts a cluster in the scenario's `k8s` directory, or reports it unavailable (a
    /// visible skip, or a failure with `SPIRE_RS_REQUIRE_K8S=1`) and returns `None`.
    pub fn start(sc: &Scenario) -> Option<Cluster> {
        Self::start_with_node(sc, "node-1")
    }

    /// [`Cluster::start`] with the node (and the kubelet's host name) called `node`.
    pub fn start_with_node(sc: &Scenario, node: &str) -> Option<Cluster> {
        let why = match std::env::var("SPIRE_RS_K8S_BIN_DIR") {
            Ok(d) if Path::new(&d).join("kube-apiserver").exists() => None,
            Ok(d) => Some(format!("no kube-apiserver in SPIRE_RS_K8S_BIN_DIR={d}")),
            Err(_) => Some(
                "SPIRE_RS_K8S_BIN_DIR is not set (conformance/k8s/build.sh prints it)".to_string(),
            ),
        };
        let why = why.or_else(|| {
            Command::new("etcd")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
                .then(|| "etcd is not installed (Debian: etcd-server)".to_string())
        });
        if let Some(why) = why {
            assert!(
                !k8s_required(),
                "a Kubernetes cluster is unavailable and SPIRE_RS_REQUIRE_K8S=1: {why}"
            );
            client_unavailable(sc, "a Kubernetes cluster", &why);
            return None;
        }
        let dir = sc.subdir("k8s");
        let dir_s = dir.display().to_string();
        let out = Command::new(script())
            .args(["start", &dir_s])
            .env("K8S_NODE_NAME", node)
            .stdin(Stdio::null())
            .output()
            .map(|o| Cmd {
                status: o.status,
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            })
            .expect("run cluster.sh");
        let env = super::parse_env_file(&dir.join("cluster.env"));
        let cluster = Cluster {
            kubeconfig: dir.join("admin.kubeconfig"),
            server: env.get("K8S_SERVER").cloned().unwrap_or_default(),
            kubectl: PathBuf::from(env.get("K8S_BIN").cloned().unwrap_or_default()).join("kubectl"),
            dir,
        };
        assert!(out.ok(), "cluster.sh start failed: {out}");
        Some(cluster)
    }

    /// Starts containerd and a kubelet for the node (`cluster.sh start-node`; one kubelet per
    /// machine, so this waits for any other scenario's node to stop). Returns the
    /// kubelet's secure port and containerd's socket.
    pub fn start_node(&self) -> Node {
        let out = run(
            &script(),
            &["start-node", &self.dir.display().to_string()],
            None,
        );
        assert!(out.ok(), "cluster.sh start-node failed: {out}");
        let env = super::parse_env_file(&self.dir.join("cluster.env"));
        Node {
            kubelet_port: env
                .get("K8S_KUBELET_PORT")
                .and_then(|p| p.parse().ok())
                .expect("K8S_KUBELET_PORT in cluster.env"),
            containerd_sock: PathBuf::from(
                env.get("K8S_CONTAINERD_SOCK")
                    .cloned()
                    .expect("K8S_CONTAINERD_SOCK in cluster.env"),
            ),
            name: env.get("K8S_NODE_NAME").cloned().unwrap_or_default(),
        }
    }

    /// The cluster CA (it also signs the kubelet's serving certificate).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Cmd {
        let kc = self.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kc.as_str()];
        all.extend_from_slice(args);
        run(&self.kubectl, &all, None)
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.ok(), "kubectl {args:?}: {out}");
        out.stdout
    }

    /// `kubectl apply` of a YAML document.
    pub fn apply(&self, yaml: &str) {
        let file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile_in(&self.dir)
            .expect("temp yaml");
        std::fs::write(file.path(), yaml).expect("write yaml");
        self.kubectl_ok(&["apply", "-f", &file.path().display().to_string()]);
    }

    /// A projected service-account token bound to a pod (what the kubelet mounts for a
    /// `serviceAccountToken` volume), written to a file in the cluster directory.
    pub fn pod_token(&self, ns: &str, sa: &str, pod: &str, audience: &str) -> PathBuf {
        let token = self.kubectl_ok(&[
            "-n",
            ns,
            "create",
            "token",
            sa,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            pod,
            "--audience",
            audience,
        ]);
        let path = self.dir.join(format!("token-{ns}-{sa}-{pod}-{audience}"));
        std::fs::write(&path, token.trim()).expect("write token");
        path
    }

    /// A field of an object (`kubectl get -o jsonpath`).
    pub fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let jp = format!("jsonpath={path}");
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", &jp]);
        self.kubectl_ok(&all)
    }
}

/// The node's kubelet and container runtime.
#[derive(Debug)]
pub struct Node {
    pub kubelet_port: u16,
    pub containerd_sock: PathBuf,
    pub name: String,
}

impl Node {
    /// Runs a command in a running container (`ctr tasks exec`): the process joins the
    /// container's cgroups, as a workload started inside the pod would.
    pub fn exec(&self, container_id: &str, args: &[&str]) -> Cmd {
        let sock = self.containerd_sock.display().to_string();
        static EXECS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = EXECS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let exec_id = format!("spcf-{}-{n}", std::process::id());
        let mut all = vec![
            "-a",
            sock.as_str(),
            "-n",
            "k8s.io",
            "tasks",
            "exec",
            "--exec-id",
            exec_id.as_str(),
            container_id,
        ];
        all.extend_from_slice(args);
        run(Path::new("ctr"), &all, None)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run(&script(), &["stop", &self.dir.display().to_string()], None);
    }
}
