//! Scenario 10, Envoy SDS latency with a warm cache: `StreamSecrets` timed from opening the
//! stream to its first response (every secret of the workload: its SVID and the bundle),
//! and `FetchSecrets` for the default SVID and bundle names, p50/p90/p99 with one client
//! on its own connection to the agent's socket.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use spire_proto::envoy::service::discovery::v3::DiscoveryRequest;
use spire_proto::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server};
use crate::report::{Goal, Metrics, Section, Unit, count, percentile, row};

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

type Client = SecretDiscoveryServiceClient<tonic::transport::Channel>;

#[derive(Debug, Clone, Copy)]
enum Call {
    Stream,
    Fetch,
}

impl Call {
    fn key(self) -> &'static str {
        match self {
            Call::Stream => "stream",
            Call::Fetch => "fetch",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Call::Stream => "StreamSecrets (first response, all secrets)",
            Call::Fetch => "FetchSecrets (`default`, `ROOTCA`)",
        }
    }
}

fn request(names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: SECRET_TYPE.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn call(client: &mut Client, kind: Call) -> Result<()> {
    let resources = match kind {
        Call::Stream => {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(request(&[]))
                .await
                .context("StreamSecrets request")?;
            let mut stream = clients::timed(
                "StreamSecrets",
                client.stream_secrets(tokio_stream::wrappers::ReceiverStream::new(rx)),
            )
            .await?
            .into_inner();
            let first = clients::timed("StreamSecrets", stream.message())
                .await?
                .context("StreamSecrets: stream ended")?;
            first.resources.len()
        }
        Call::Fetch => clients::timed(
            "FetchSecrets",
            client.fetch_secrets(request(&["default", "ROOTCA"])),
        )
        .await?
        .into_inner()
        .resources
        .len(),
    };
    if resources < 2 {
        bail!(
            "{}: {resources} secrets, expected the SVID and the bundle",
            kind.label()
        );
    }
    Ok(())
}

/// Latencies in seconds, sorted: `calls` timed calls after `warmup` untimed ones.
async fn measure_latency(
    socket: &Path,
    calls: usize,
    warmup: usize,
    kind: Call,
) -> Result<Vec<f64>> {
    let mut client = SecretDiscoveryServiceClient::new(clients::uds_channel(socket).await?);
    for _ in 0..warmup {
        call(&mut client, kind).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        call(&mut client, kind).await?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

async fn measure(imp: Implementation, calls: usize, warmup: usize) -> Result<Metrics> {
    let server = Server::start(&imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let token = admin.join_token().await?;
    let parent = clients::join_token_agent_path(&token);
    admin
        .create_entries(vec![clients::entry(
            &parent,
            "/bench/sds",
            clients::workload_selector()?,
        )])
        .await?;
    let agent = Agent::start(&imp, server.port, &token).await?;
    clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
        !ids.is_empty()
    })
    .await?;
    let mut m = Metrics::default();
    for kind in [Call::Stream, Call::Fetch] {
        let samples = measure_latency(&agent.socket, calls, warmup, kind).await?;
        for p in [50.0, 90.0, 99.0] {
            m.set(format!("{}.p{p}", kind.key()), percentile(&samples, p));
        }
    }
    agent.proc.stop().await;
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let mut rows = Vec::new();
    for kind in [Call::Stream, Call::Fetch] {
        for p in [50.0, 90.0, 99.0] {
            let mut r = row(
                format!("{}.p{p}", kind.key()),
                format!("{} p{p}", kind.label()),
                Unit::Secs,
            );
            if p == 99.0 {
                r = r.goal(Goal::RatioAtMost(0.5));
            }
            rows.push(r);
        }
    }
    // A tenth of the Workload API scenario's calls: each stream is a new RPC with a PEM
    // encoding of every secret.
    let calls = (s.latency_calls / 10).max(50);
    let warmup = s.latency_warmup;
    super::section(
        ctx,
        "10. Envoy SDS latency (warm cache)",
        format!(
            "One server and one agent of the same implementation; the harness process is the \
             workload (unix attestor, one registration entry) and talks SDS v3 on the agent's \
             Workload API socket with one connection. {} timed calls per row after {warmup} \
             untimed ones; StreamSecrets is timed from opening the stream (a request naming \
             no resource: all of them) to its first response, FetchSecrets to its response.",
            count(calls)
        ),
        rows,
        Vec::new(),
        |imp| measure(imp, calls, warmup),
    )
    .await
}
