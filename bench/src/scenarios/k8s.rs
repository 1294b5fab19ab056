//! Scenario 8, Kubernetes workload attestation: the `k8s` WorkloadAttestor of each
//! implementation on the Workload API path, with 100 pods on the node.
//!
//! The node is made up of what each attestor reads, and nothing else: the harness moves
//! itself into a pod's cgroups (`kubepods/besteffort/pod<uid>/<container id>` on every
//! hierarchy, as a kubelet with the cgroupfs driver makes them; needs root), and a kubelet
//! read-only port served here answers `/pods` with 100 pods, one of them holding that
//! container, in the JSON a real kubelet writes. Both implementations get the same node.
//!
//! - Latency: sequential FetchX509SVID calls from the harness (one process), the entry
//!   matched by `k8s:pod-name`.
//! - Burst: N client processes (`spire-agent api fetch x509`, ours, the same client for
//!   both), started at once in the pod's cgroups: time until all hold their SVID, kubelet
//!   `/pods` calls made, and the agent's peak RSS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use spire_proto::spire::api::types;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server};
use crate::report::{Metrics, Section, Unit, percentile, row};

const PODS: usize = 100;
const TARGET: usize = 42;
const PERCENTILES: [f64; 2] = [50.0, 99.0];

fn pod_uid(i: usize) -> String {
    format!("8d3f{i:04x}-1c2b-4e5f-9a8b-7c6d5e4f{i:04x}")
}

fn container_id(i: usize) -> String {
    format!("{:0>64x}", 0xc0ffee_u64 * 1000 + i as u64)
}

/// A kubelet `/pods` answer with `n` pods (the shape kubelet v1.37 writes, trimmed of what
/// no attestor reads).
fn pods_json(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"metadata":{{"name":"bench-wl-{i}","namespace":"bench","uid":"{uid}","labels":{{"app":"bench","index":"{i}"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"bench-rs","uid":"rs-uid","controller":true}}]}},"spec":{{"nodeName":"node-1","serviceAccountName":"default","containers":[{{"name":"app","image":"docker.io/local/app:1"}}]}},"status":{{"phase":"Running","hostIP":"10.0.0.1","podIP":"10.1.0.{ip}","containerStatuses":[{{"name":"app","state":{{"running":{{"startedAt":"2026-12-01T00:00:00Z"}}}},"ready":true,"restartCount":0,"image":"docker.io/local/app:1","imageID":"sha256:4b1e9d0a","containerID":"containerd://{cid}","started":true}}]}}}}"#,
                uid = pod_uid(i),
                cid = container_id(i),
                ip = i % 250,
            )
        })
        .collect();
    format!(
        r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
}

/// A kubelet read-only port answering `GET /pods`; counts the calls.
struct FakeKubelet {
    port: u16,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKubelet {
    async fn start(body: String) -> Result<FakeKubelet> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let calls = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(body);
        let c = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (c, body) = (c.clone(), body.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            c.fetch_add(1, Ordering::SeqCst);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            if conn.write_all(head.as_bytes()).await.is_err()
                                || conn.write_all(body.as_bytes()).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Ok(FakeKubelet { port, calls, task })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// This process inside a cgroup path (a pod's container, or a docker container's), on every
/// hierarchy it could join, the missing directories made; moved back to its own cgroups and
/// the directories it made removed when dropped.
pub(super) struct InCgroup {
    made: Vec<PathBuf>,
    original: Vec<PathBuf>,
}

/// (mount point, super options, fstype) of the cgroup mounts.
fn cgroup_mounts() -> Result<Vec<(PathBuf, String, String)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(fstype), Some(opts)) = (f.get(sep + 1), f.get(sep + 3)) else {
            continue;
        };
        if *fstype == "cgroup" || *fstype == "cgroup2" {
            out.push((PathBuf::from(f[4]), opts.to_string(), fstype.to_string()));
        }
    }
    Ok(out)
}

fn write_pid(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
}

impl InCgroup {
    /// Joins `<hierarchy root>/<segments...>` on every hierarchy.
    pub(super) fn enter(segments: &[&str]) -> Result<InCgroup> {
        let mounts = cgroup_mounts()?;
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let mut made = Vec::new();
        let mut original = Vec::new();
        let mut joined = 0;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let mount = mounts.iter().find(|(_, opts, fstype)| {
                if ctrl.is_empty() {
                    fstype == "cgroup2"
                } else {
                    fstype == "cgroup" && ctrl.split(',').all(|c| opts.split(',').any(|o| o == c))
                }
            });
            let Some((root, _, _)) = mount else {
                continue;
            };
            let target = segments.iter().fold(root.clone(), |d, s| d.join(s));
            let mut dir = root.clone();
            for seg in segments {
                let parent = dir.clone();
                dir = dir.join(seg);
                if !dir.exists() {
                    if std::fs::create_dir(&dir).is_err() {
                        break;
                    }
                    made.push(dir.clone());
                    // cpuset needs its CPUs and memory nodes before a task may join.
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if let Ok(v) = std::fs::read_to_string(parent.join(f)) {
                            let _ = std::fs::write(dir.join(f), v.trim());
                        }
                    }
                }
            }
            original.push(root.join(path.trim_start_matches('/')));
            if write_pid(&target).is_ok() {
                joined += 1;
            }
        }
        let me = InCgroup { made, original };
        if joined == 0 {
            bail!(
                "could not join any cgroup {segments:?} (needs root and writable /sys/fs/cgroup)"
            );
        }
        Ok(me)
    }
}

impl Drop for InCgroup {
    fn drop(&mut self) {
        for dir in &self.original {
            let _ = write_pid(dir);
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A server with one entry (`path`, `selector`, parented to the agent) and a ready agent
/// attested with a join token, with `attestor` among its WorkloadAttestors.
pub(super) async fn pair_with_entry(
    imp: &Implementation,
    path: &str,
    selector: types::Selector,
    attestor: &str,
) -> Result<(Server, Agent)> {
    let server = Server::start(imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let token = admin.join_token().await?;
    let parent = clients::join_token_agent_path(&token);
    admin
        .create_entries(vec![clients::entry(&parent, path, selector)])
        .await?;
    let mut agent = Agent::spawn_with(imp, server.port, &token, attestor)?;
    agent.wait_ready(Duration::from_secs(120)).await?;
    Ok((server, agent))
}

/// `n` `spire-agent api fetch x509` processes started at once from this process (so in its
/// cgroups): seconds until all of them hold their SVID.
pub(super) async fn burst_fetch(client: &Path, socket: &Path, n: usize) -> Result<f64> {
    let socket = socket.display().to_string();
    let t = Instant::now();
    let children: Vec<_> = (0..n)
        .map(|_| {
            tokio::process::Command::new(client)
                .args([
                    "api",
                    "fetch",
                    "x509",
                    "-socketPath",
                    &socket,
                    "-timeout",
                    "60s",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut failed = 0;
    for mut c in children {
        if !c.wait().await?.success() {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {n} workloads got no SVID");
    }
    Ok(t.elapsed().as_secs_f64())
}

fn k8s_attestor(port: u16) -> String {
    format!(
        "WorkloadAttestor \"k8s\" {{\n        plugin_data {{\n            kubelet_read_only_port = {port}\n        }}\n    }}"
    )
}

async fn measure(
    imp: Implementation,
    client: PathBuf,
    calls: usize,
    warmup: usize,
    burst: usize,
) -> Result<Metrics> {
    let kubelet = FakeKubelet::start(pods_json(PODS)).await?;
    let (server, agent) = pair_with_entry(
        &imp,
        "/bench/k8s",
        types::Selector {
            r#type: "k8s".into(),
            value: format!("pod-name:bench-wl-{TARGET}"),
        },
        &k8s_attestor(kubelet.port),
    )
    .await?;

    let pod = format!("pod{}", pod_uid(TARGET));
    let cid = container_id(TARGET);
    let in_pod = InCgroup::enter(&["kubepods", "besteffort", &pod, &cid])?;
    let result = async {
        clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
            !ids.is_empty()
        })
        .await
        .context("the workload in the pod never got its SVID")?;
        let mut m = Metrics::default();
        let samples = super::plugins::fetch_latencies(&agent.socket, calls, warmup).await?;
        for p in PERCENTILES {
            m.set(format!("latency.p{p}"), percentile(&samples, p));
        }

        // The burst: distinct processes, each attested afresh.
        agent.proc.reset_peak()?;
        let before = kubelet.calls();
        let seconds = burst_fetch(&client, &agent.socket, burst).await?;
        m.set("burst.seconds", seconds);
        m.set("burst.kubelet_calls", (kubelet.calls() - before) as f64);
        m.set("burst.agent_peak_rss", agent.proc.memory()?.peak);
        Ok(m)
    }
    .await;
    drop(in_pod);
    agent.proc.stop().await;
    server.proc.stop().await;
    result
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let (calls, warmup) = (s.latency_calls.min(2_000), s.latency_warmup);
    let burst = if s.latency_calls < 1_000 { 20 } else { 200 };
    let mut rows = Vec::new();
    for p in PERCENTILES {
        rows.push(row(
            format!("latency.p{p}"),
            format!("FetchX509SVID p{p}, k8s attestor, {PODS} pods on the node"),
            Unit::Secs,
        ));
    }
    rows.push(row(
        "burst.seconds",
        format!("{burst} workload processes at once: all hold their SVID after"),
        Unit::Secs,
    ));
    rows.push(row(
        "burst.kubelet_calls",
        format!("… kubelet /pods calls for those {burst}"),
        Unit::Count,
    ));
    rows.push(row(
        "burst.agent_peak_rss",
        "… agent peak RSS during the burst",
        Unit::Bytes,
    ));
    let description = format!(
        "The `k8s` WorkloadAttestor (`kubelet_read_only_port`) of each implementation against \
         the same node: a kubelet `/pods` served by the harness listing {PODS} pods, and the \
         harness itself moved into the cgroups of one of them (root). Latency: {calls} \
         sequential FetchX509SVID calls on one connection after {warmup} untimed ones; \
         spire-rs caches a live process's selectors, SPIRE attests every call (its pod list \
         is cached for 250 ms). Burst: {burst} `spire-agent api fetch x509` processes (the \
         same client for both) started at once in the pod's cgroups, each attested afresh."
    );
    let client = ctx.ours.agent.clone();
    super::section(
        ctx,
        "8. Kubernetes workload attestation",
        description,
        rows,
        Vec::new(),
        |imp| measure(imp, client.clone(), calls, warmup, burst),
    )
    .await
}
