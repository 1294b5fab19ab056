//! `k8s` WorkloadAttestor unit tests: a process tree under a fixture `/proc`, and a kubelet
//! read-only port served from this test that answers `/pods` as a real kubelet does.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

const CID: &str = "6ee5fd6a1a57a0d2e71d7d06e7d9ad1a6b2bdd1a2a0e1a4a3d0c40e5c9ad2d3b";
const UID: &str = "5a3f0c63-7e5b-4c3e-9c1f-0b8e4f6a2d11";

/// A kubelet `/pods` answer, trimmed from one the loopback cluster's kubelet v1.37.2 gave
/// (fields the attestor ignores removed).
fn pods_json(with_container: bool) -> String {
    let status = if with_container {
        format!(
            r#""containerStatuses":[{{"name":"app","image":"docker.io/local/app:1","imageID":"sha256:4b1e","containerID":"containerd://{CID}","ready":true}}]"#
        )
    } else {
        r#""containerStatuses":[]"#.to_string()
    };
    format!(
        r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{}},"items":[
        {{"metadata":{{"name":"other","namespace":"work","uid":"11111111-2222-3333-4444-555555555555"}},"spec":{{"nodeName":"node-1","serviceAccountName":"default","containers":[{{"name":"c","image":"x"}}]}},"status":{{"containerStatuses":[{{"name":"c","image":"x","imageID":"sha256:aa","containerID":"containerd://{}"}}]}}}},
        {{"metadata":{{"name":"wl","namespace":"work","uid":"{UID}","labels":{{"app":"wl"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"wl-5d","uid":"rs-uid","controller":true}}]}},"spec":{{"nodeName":"node-1","serviceAccountName":"wl-sa","containers":[{{"name":"app","image":"docker.io/local/app:1"}}]}},"status":{{"phase":"Running","hostIP":"10.0.0.5",{status},"initContainerStatuses":[{{"name":"init","image":"busybox","imageID":"sha256:bb","containerID":"containerd://{}"}}]}}}},
        {{"metadata":{{"name":"no-uid","namespace":"work"}}}}
        ]}}"#,
        "a".repeat(64),
        "b".repeat(64)
    )
}

/// A kubelet read-only port: answers every `GET /pods` with `body()` and counts them.
struct FakeKubelet {
    port: u16,
    calls: Arc<AtomicUsize>,
    body: Arc<Mutex<(u16, String)>>,
}

impl FakeKubelet {
    async fn start(status: u16, body: String) -> FakeKubelet {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new((status, body)));
        let (c, b) = (calls.clone(), body.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (c, b) = (c.clone(), b.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let Ok(n) = conn.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            c.fetch_add(1, Ordering::SeqCst);
                            let (status, body) = b.lock().clone();
                            let resp = format!(
                                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if conn.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeKubelet { port, calls, body }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn proc_tree(pid: i32, cgroup_path: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("proc").join(pid.to_string());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("cgroup"),
        format!("12:memory:{cgroup_path}\n1:name=systemd:{cgroup_path}\n0::{cgroup_path}\n"),
    )
    .unwrap();
    dir
}

fn config(port: u16) -> Config {
    Config {
        kubelet_read_only_port: i64::from(port),
        poll_retry_interval: "20ms".into(),
        max_poll_attempts: 3,
        ..Default::default()
    }
}

fn attestor(cfg: &Config, root: &std::path::Path) -> K8sAttestor {
    K8sAttestor::new(cfg, |_| None, root).unwrap()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn selectors_of_the_callers_pod_and_container() {
    let kubelet = FakeKubelet::start(200, pods_json(true)).await;
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    let a = attestor(&config(kubelet.port), root.path());
    let got = sorted(a.attest(100).await.unwrap());
    let want = sorted(
        [
            "sa:wl-sa",
            "ns:work",
            "node-name:node-1",
            &format!("pod-uid:{UID}"),
            "pod-name:wl",
            "pod-image-count:1",
            "pod-init-image-count:1",
            "pod-image:docker.io/local/app:1",
            "pod-image:sha256:4b1e",
            "pod-init-image:busybox",
            "pod-init-image:sha256:bb",
            "pod-label:app:wl",
            "pod-owner:ReplicaSet:wl-5d",
            "pod-owner-uid:ReplicaSet:rs-uid",
            "container-name:app",
            "container-image:docker.io/local/app:1",
            "container-image:sha256:4b1e",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    assert_eq!(got, want);

    let mut cfg = config(kubelet.port);
    cfg.disable_container_selectors = true;
    let got = attestor(&cfg, root.path()).attest(100).await.unwrap();
    assert!(got.iter().all(|s| !s.starts_with("container-")), "{got:?}");
    assert!(got.contains(&"pod-name:wl".to_string()));
}

#[tokio::test]
async fn a_process_outside_containers_gets_no_selectors_and_no_kubelet_call() {
    let kubelet = FakeKubelet::start(200, pods_json(true)).await;
    let root = proc_tree(5, "/user.slice/user-0.slice/session-3.scope");
    let a = attestor(&config(kubelet.port), root.path());
    assert!(a.attest(5).await.unwrap().is_empty());
    assert_eq!(kubelet.calls(), 0);
}

#[tokio::test]
async fn a_container_not_yet_listed_is_polled_then_refused() {
    let kubelet = FakeKubelet::start(200, pods_json(false)).await;
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    let a = attestor(&config(kubelet.port), root.path());
    let err = a.attest(100).await.unwrap_err();
    assert_eq!(err.code, Code::DeadlineExceeded);
    assert_eq!(err.message, "no selectors found after max poll attempts");
    assert_eq!(kubelet.calls(), 3, "one kubelet call per attempt");

    // It shows up during the polls: attested.
    let a = Arc::new(attestor(
        &Config {
            max_poll_attempts: 200,
            ..config(kubelet.port)
        },
        root.path(),
    ));
    let task = tokio::spawn({
        let a = a.clone();
        async move { a.attest(100).await }
    });
    while kubelet.calls() < 5 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    *kubelet.body.lock() = (200, pods_json(true));
    let got = task.await.unwrap().unwrap();
    assert!(got.contains(&"container-name:app".to_string()), "{got:?}");
}

#[tokio::test]
async fn a_burst_costs_one_kubelet_call() {
    let kubelet = FakeKubelet::start(200, pods_json(true)).await;
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    let mut cfg = config(kubelet.port);
    cfg.poll_retry_interval = "10s".into();
    let a = Arc::new(attestor(&cfg, root.path()));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.attest(100).await })
        })
        .collect();
    for t in tasks {
        assert!(!t.await.unwrap().unwrap().is_empty());
    }
    assert_eq!(kubelet.calls(), 1);
    assert_eq!(a.kubelet_calls(), 1);
}

#[tokio::test]
async fn kubelet_failures_are_errors() {
    let kubelet = FakeKubelet::start(500, "boom".into()).await;
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    let a = attestor(&config(kubelet.port), root.path());
    let err = a.attest(100).await.unwrap_err();
    assert_eq!(
        err.message,
        "unexpected status code on pods response: 500 boom"
    );

    *kubelet.body.lock() = (200, "{not json".into());
    let err = a.attest(100).await.unwrap_err();
    assert!(
        err.message.starts_with("unable to parse kubelet response:"),
        "{err}"
    );

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let a = attestor(&config(port), root.path());
    let err = a.attest(100).await.unwrap_err();
    assert!(
        err.message.starts_with(&format!(
            "unable to perform request: Get \"http://127.0.0.1:{port}/pods\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_kubelet_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    let a = attestor(&config(port), root.path()).with_kubelet_timeout(Duration::from_millis(200));
    let err = a.attest(100).await.unwrap_err();
    assert_eq!(err.code, Code::Internal);
    assert_eq!(
        err.message,
        format!(
            "unable to perform request: Get \"http://127.0.0.1:{port}/pods\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )
    );
    hold.abort();
}

#[tokio::test]
async fn a_failed_fetch_is_shared_by_the_callers_that_waited_for_it() {
    let kubelet = FakeKubelet::start(500, "down".into()).await;
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    let a = Arc::new(attestor(&config(kubelet.port), root.path()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.attest(100).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    assert!(
        kubelet.calls() < 5,
        "{} kubelet calls for one burst against a failing kubelet",
        kubelet.calls()
    );
}

#[tokio::test]
async fn init_containers_and_pod_only_selectors() {
    // The process runs in the pod's init container.
    let init = "b".repeat(64);
    let kubelet = FakeKubelet::start(200, pods_json(false)).await;
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{init}"));
    let got = attestor(&config(kubelet.port), root.path())
        .attest(100)
        .await
        .unwrap();
    assert!(got.contains(&"container-name:init".to_string()), "{got:?}");
    assert!(got.contains(&"pod-name:wl".to_string()), "{got:?}");

    // Container selectors off and the container not listed yet: the pod is known from the
    // cgroups, so its selectors are given at once.
    let root = proc_tree(100, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    let mut cfg = config(kubelet.port);
    cfg.disable_container_selectors = true;
    let got = attestor(&cfg, root.path()).attest(100).await.unwrap();
    assert!(got.contains(&"pod-name:wl".to_string()), "{got:?}");
    assert!(got.iter().all(|s| !s.starts_with("container-")), "{got:?}");

    // A pod UID the kubelet does not list: polled, then refused.
    let root = proc_tree(
        100,
        &format!(
            "/kubepods/besteffort/pod{}/{CID}",
            "99999999-9999-9999-9999-999999999999"
        ),
    );
    let err = attestor(&config(kubelet.port), root.path())
        .attest(100)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::DeadlineExceeded);
}

#[tokio::test]
async fn two_pods_with_the_same_container_are_refused() {
    let twice = pods_json(true).replace(&"a".repeat(64), CID);
    let kubelet = FakeKubelet::start(200, twice).await;
    // No pod UID in the path: every pod is searched.
    let root = proc_tree(100, &format!("/system.slice/crio-{CID}.scope"));
    let a = attestor(&config(kubelet.port), root.path());
    let err = a.attest(100).await.unwrap_err();
    assert_eq!(err.message, "two pods found with same container Id");
}

#[test]
fn configuration_errors_as_spire_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |c: Config| {
        K8sAttestor::new(&c, |_| None, dir.path())
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        mk(Config {
            kubelet_read_only_port: 1,
            kubelet_secure_port: 2,
            ..Default::default()
        }),
        "cannot use both the read-only and secure port"
    );
    assert!(
        mk(Config {
            poll_retry_interval: "soon".into(),
            ..Default::default()
        })
        .starts_with("unable to parse poll retry interval:")
    );
    assert_eq!(
        mk(Config {
            certificate_path: "/c".into(),
            ..Default::default()
        }),
        "the private key path is required with the certificate path"
    );
    // The read-only port needs no credentials, so none are checked.
    K8sAttestor::new(
        &Config {
            kubelet_read_only_port: 10255,
            certificate_path: "/c".into(),
            experimental: Some(serde_json::json!({})),
            ..Default::default()
        },
        |_| None,
        dir.path(),
    )
    .unwrap();
    assert!(
        mk(Config {
            kubelet_read_only_port: 10255,
            experimental: Some(serde_json::json!({"sigstore": {}})),
            ..Default::default()
        })
        .contains("sigstore")
    );
    // Secure port by default: the service account's CA and token must be readable.
    let missing = dir.path().join("ca.crt");
    assert_eq!(
        mk(Config {
            kubelet_ca_path: missing.display().to_string(),
            ..Default::default()
        }),
        format!(
            "unable to load kubelet CA: open {}: no such file or directory",
            missing.display()
        )
    );
    assert_eq!(
        mk(Config {
            skip_kubelet_verification: true,
            token_path: missing.display().to_string(),
            ..Default::default()
        }),
        format!(
            "unable to load token: open {}: no such file or directory",
            missing.display()
        )
    );
}

#[test]
fn node_name_from_config_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").unwrap();
    let base = Config {
        skip_kubelet_verification: true,
        token_path: token.display().to_string(),
        ..Default::default()
    };
    let a = K8sAttestor::new(
        &base,
        |k| (k == "MY_NODE_NAME").then(|| "n1".into()),
        dir.path(),
    )
    .unwrap();
    assert_eq!(a.settings.node_name, "n1");
    let a = K8sAttestor::new(
        &Config {
            node_name_env: "NODE".into(),
            ..base.clone()
        },
        |k| (k == "NODE").then(|| "n2".into()),
        dir.path(),
    )
    .unwrap();
    assert_eq!(a.settings.node_name, "n2");
    let a = K8sAttestor::new(
        &Config {
            node_name: "n3".into(),
            ..base
        },
        |_| Some("ignored".into()),
        dir.path(),
    )
    .unwrap();
    assert_eq!(a.settings.node_name, "n3");
    assert_eq!(a.kubelet().url("/pods"), "https://n3:10250/pods");
}
