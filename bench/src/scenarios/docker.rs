//! Scenario 9, Docker workload attestation: the `docker` WorkloadAttestor of each
//! implementation on the Workload API path, against a real dockerd (Debian's, started on a
//! private root and socket by `conformance/containers/engines.sh`) running 50 containers.
//!
//! The harness moves itself into the cgroups of one of the containers (root), so the
//! attestor finds that container's ID and asks dockerd about it, as it would for a process
//! started inside it.
//!
//! - Latency: sequential FetchX509SVID calls from the harness (one process), the entry
//!   matched by `docker:label`.
//! - Burst: N client processes (`spire-agent api fetch x509`, ours, the same client for
//!   both), started at once in the container's cgroups: time until all hold their SVID, and
//!   the agent's peak RSS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use spire_proto::spire::api::types;

use super::Ctx;
use super::k8s::{InCgroup, burst_fetch, pair_with_entry};
use crate::clients;
use crate::procs::Implementation;
use crate::report::{Metrics, Section, Unit, percentile, row};

const PERCENTILES: [f64; 2] = [50.0, 99.0];

/// A dockerd of the harness's own, with its containers; stopped when dropped.
struct Dockerd {
    dir: tempfile::TempDir,
    host: String,
}

fn engines_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/containers/engines.sh")
}

impl Dockerd {
    fn start() -> Result<Dockerd> {
        let dir = tempfile::Builder::new()
            .prefix("spbd-")
            .tempdir_in("/tmp")?;
        let d = Dockerd {
            host: format!("unix://{}/docker.sock", dir.path().display()),
            dir,
        };
        let out = Command::new(engines_script())
            .arg("docker-start")
            .arg(d.dir.path())
            .output()
            .context("run conformance/containers/engines.sh")?;
        if !out.status.success() {
            bail!(
                "engines.sh docker-start failed (needs root and Debian's docker.io): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(d)
    }

    fn docker(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .output()
            .context("run docker")?;
        if !out.status.success() {
            bail!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new(engines_script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// How many calls of each kind.
#[derive(Debug, Clone, Copy)]
struct Plan {
    calls: usize,
    warmup: usize,
    fresh_calls: usize,
    burst: usize,
}

fn docker_attestor(host: &str) -> String {
    format!(
        "WorkloadAttestor \"docker\" {{\n        plugin_data {{\n            docker_socket_path = \"{host}\"\n        }}\n    }}"
    )
}

async fn measure(
    imp: Implementation,
    dockerd: &Dockerd,
    target: &str,
    client: PathBuf,
    plan: Plan,
) -> Result<Metrics> {
    let Plan {
        calls,
        warmup,
        fresh_calls,
        burst,
    } = plan;
    let (server, agent) = pair_with_entry(
        &imp,
        "/bench/docker",
        types::Selector {
            r#type: "docker".into(),
            value: "label:bench:target".into(),
        },
        &docker_attestor(&dockerd.host),
    )
    .await?;

    let inside = InCgroup::enter(&["docker", target])?;
    let result = async {
        clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
            !ids.is_empty()
        })
        .await
        .context("the workload in the container never got its SVID")?;
        let mut m = Metrics::default();
        let samples = super::plugins::fetch_latencies(&agent.socket, calls, warmup).await?;
        for p in PERCENTILES {
            m.set(format!("latency.p{p}"), percentile(&samples, p));
        }
        // Fresh attestations one after another: each a new client process, so each is
        // attested (and its container inspected) before it gets its SVID.
        let mut fresh = Vec::with_capacity(fresh_calls);
        for _ in 0..fresh_calls {
            fresh.push(burst_fetch(&client, &agent.socket, 1).await?);
        }
        fresh.sort_by(f64::total_cmp);
        for p in PERCENTILES {
            m.set(format!("fresh.p{p}"), percentile(&fresh, p));
        }
        agent.proc.reset_peak()?;
        m.set(
            "burst.seconds",
            burst_fetch(&client, &agent.socket, burst).await?,
        );
        m.set("burst.agent_peak_rss", agent.proc.memory()?.peak);
        Ok(m)
    }
    .await;
    drop(inside);
    agent.proc.stop().await;
    server.proc.stop().await;
    result
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let (calls, warmup) = (s.latency_calls.min(2_000), s.latency_warmup);
    let smoke = s.latency_calls < 1_000;
    let (containers, burst, fresh_calls) = if smoke { (5, 20, 10) } else { (50, 200, 200) };
    let mut rows = Vec::new();
    for p in PERCENTILES {
        rows.push(row(
            format!("latency.p{p}"),
            format!("FetchX509SVID p{p}, docker attestor, {containers} running containers"),
            Unit::Secs,
        ));
    }
    for p in PERCENTILES {
        rows.push(row(
            format!("fresh.p{p}"),
            format!(
                "a new workload process until it holds its SVID, p{p} of {fresh_calls} in turn"
            ),
            Unit::Secs,
        ));
    }
    rows.push(row(
        "burst.seconds",
        format!("{burst} workload processes at once: all hold their SVID after"),
        Unit::Secs,
    ));
    rows.push(row(
        "burst.agent_peak_rss",
        "… agent peak RSS during the burst",
        Unit::Bytes,
    ));
    let description = format!(
        "The `docker` WorkloadAttestor of each implementation against the same real dockerd \
         (Debian's docker.io 20.10, private root and socket) running {containers} busybox \
         containers; the harness moves itself into the cgroups of one of them (root). \
         Latency: {calls} sequential FetchX509SVID calls on one connection after {warmup} \
         untimed ones; spire-rs caches a live process's selectors, SPIRE inspects the \
         container on every call. Fresh: {fresh_calls} `spire-agent api fetch x509` processes \
         run one after another, each attested afresh (process start included, the same \
         client for both). Burst: {burst} `spire-agent api fetch x509` processes (the \
         same client for both) started at once in the container's cgroups, each attested \
         afresh (one container inspection each)."
    );
    let setup = (|| -> Result<(Dockerd, String)> {
        let dockerd = Dockerd::start()?;
        let mut target = String::new();
        for i in 0..containers {
            let label = if i == containers / 2 {
                "bench=target".to_string()
            } else {
                format!("bench={i}")
            };
            let id = dockerd.docker(&[
                "run",
                "-d",
                "--network",
                "none",
                "--label",
                &label,
                "local/busybox:1",
                "sleep",
                "86400",
            ])?;
            if i == containers / 2 {
                target = id;
            }
        }
        Ok((dockerd, target))
    })();
    let client = ctx.ours.agent.clone();
    let setup = setup.map_err(|e| format!("{e:#}"));
    super::section(
        ctx,
        "9. Docker workload attestation",
        description,
        rows,
        Vec::new(),
        |imp| {
            let client = client.clone();
            let setup = &setup;
            async move {
                let (dockerd, target) = setup.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let plan = Plan {
                    calls,
                    warmup,
                    fresh_calls,
                    burst,
                };
                measure(imp, dockerd, target, client, plan).await
            }
        },
    )
    .await
}
