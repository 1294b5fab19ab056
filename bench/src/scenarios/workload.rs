//! Scenario 1, workload API latency with a warm cache: FetchX509SVID (until the first message of the
//! stream) and FetchJWTSVID, p50/p90/p99, with 1 and 16 concurrent clients each on its own
//! connection to the agent's socket.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use spire_proto::workload;

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server};
use crate::report::{Goal, Metrics, Section, Unit, count, percentile, row};

const CLIENTS: [usize; 2] = [1, 16];

#[derive(Debug, Clone, Copy)]
enum Call {
    X509,
    Jwt,
}

impl Call {
    fn key(self) -> &'static str {
        match self {
            Call::X509 => "x509",
            Call::Jwt => "jwt",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Call::X509 => "FetchX509SVID (first message)",
            Call::Jwt => "FetchJWTSVID",
        }
    }
}

async fn call(client: &mut clients::WorkloadClient, kind: Call) -> Result<()> {
    match kind {
        Call::X509 => {
            if clients::fetch_x509_ids(client).await?.is_empty() {
                bail!("FetchX509SVID: no SVIDs");
            }
        }
        Call::Jwt => {
            let resp = clients::timed(
                "FetchJWTSVID",
                client.fetch_jwtsvid(workload::JwtsvidRequest {
                    audience: vec!["bench".into()],
                    spiffe_id: String::new(),
                }),
            )
            .await?;
            if resp.get_ref().svids.is_empty() {
                bail!("FetchJWTSVID: no SVIDs");
            }
        }
    }
    Ok(())
}

/// Latencies in seconds, sorted: `calls` timed calls split over `n` clients that run at the
/// same time, each after `warmup` untimed calls.
pub(crate) async fn measure_latency_x509(
    socket: &Path,
    n: usize,
    calls: usize,
    warmup: usize,
) -> Result<Vec<f64>> {
    measure_latency(socket, n, calls, warmup, Call::X509).await
}

async fn measure_latency(
    socket: &Path,
    n: usize,
    calls: usize,
    warmup: usize,
    kind: Call,
) -> Result<Vec<f64>> {
    let per_client = calls.div_ceil(n);
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut client = clients::workload_client(socket).await?;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..warmup {
                call(&mut client, kind).await?;
            }
            barrier.wait().await;
            let mut samples = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                call(&mut client, kind).await?;
                samples.push(t.elapsed().as_secs_f64());
            }
            anyhow::Ok(samples)
        }));
    }
    let mut all = Vec::with_capacity(per_client * n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

async fn measure(imp: Implementation, calls: usize, warmup: usize) -> Result<Metrics> {
    let server = Server::start(&imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let token = admin.join_token().await?;
    let parent = clients::join_token_agent_path(&token);
    admin
        .create_entries(vec![clients::entry(
            &parent,
            "/bench/workload",
            clients::workload_selector()?,
        )])
        .await?;
    let agent = Agent::start(&imp, server.port, &token).await?;
    clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
        !ids.is_empty()
    })
    .await?;
    let mut m = Metrics::default();
    for kind in [Call::X509, Call::Jwt] {
        for n in CLIENTS {
            let samples = measure_latency(&agent.socket, n, calls, warmup, kind).await?;
            for p in [50.0, 90.0, 99.0] {
                m.set(format!("{}.c{n}.p{p}", kind.key()), percentile(&samples, p));
            }
            m.set(
                format!("{}.c{n}.rate", kind.key()),
                samples.len() as f64 / samples.iter().sum::<f64>() * n as f64,
            );
        }
    }
    agent.proc.stop().await;
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let mut rows = Vec::new();
    for kind in [Call::X509, Call::Jwt] {
        for n in CLIENTS {
            for p in [50.0, 90.0, 99.0] {
                let mut r = row(
                    format!("{}.c{n}.p{p}", kind.key()),
                    format!(
                        "{} p{p}, {n} client{}",
                        kind.label(),
                        if n == 1 { "" } else { "s" }
                    ),
                    Unit::Secs,
                );
                if p == 99.0 {
                    r = r.goal(Goal::RatioAtMost(0.5));
                }
                rows.push(r);
            }
            rows.push(row(
                format!("{}.c{n}.rate", kind.key()),
                format!(
                    "{} calls/s, {n} client{}",
                    kind.label(),
                    if n == 1 { "" } else { "s" }
                ),
                Unit::Rate("calls/s"),
            ));
        }
    }
    let (calls, warmup) = (s.latency_calls, s.latency_warmup);
    super::section(
        ctx,
        "1. Workload API latency (warm cache)",
        format!(
            "One server and one agent of the same implementation; the harness process is the \
             workload (unix attestor, one registration entry). {} timed calls per row, \
             split evenly over the concurrent clients (each on its own connection), after \
             {warmup} untimed calls per client; FetchX509SVID is timed to the first message \
             of the stream, FetchJWTSVID (audience `bench`) to its response.",
            count(calls)
        ),
        rows,
        Vec::new(),
        |imp| measure(imp, calls, warmup),
    )
    .await
}
