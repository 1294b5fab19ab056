//! Scenario 3, propagation: from the BatchCreateEntry call (what `entry create` sends) returning to
//! the workload's already open FetchX509SVID stream delivering the new SVID.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rand::Rng as _;
use spire_proto::spire::api::types;
use spire_proto::workload;

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server};
use crate::report::{Goal, Metrics, Section, Unit, median, percentile, row};

async fn measure(imp: Implementation, samples: usize) -> Result<Metrics> {
    let server = Server::start(&imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let (token, parent, selector) = admin
        .token_with_workload_entry("/bench/prop/initial")
        .await?;
    let agent = Agent::start(&imp, server.port, &token).await?;
    clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
        !ids.is_empty()
    })
    .await?;

    let m = entry_delays(
        &admin,
        &parent,
        &selector,
        &agent.socket,
        "/bench/prop",
        samples,
    )
    .await?;
    agent.proc.stop().await;
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let n = ctx.sizes.propagation_samples;
    super::section(
        ctx,
        "3. Propagation of a new entry",
        format!(
            "A workload keeps a FetchX509SVID stream open; {n} times, after a random pause of \
             0.2–1.2 s, an entry matching it is created with BatchCreateEntry on the admin \
             socket, and the time from that call returning to the stream delivering a \
             message with the new SPIFFE ID is recorded. Both implementations run with \
             their default sync settings (SPIRE: agent sync every 5 s, server entry cache \
             refreshed from the events tables every 5 s)."
        ),
        vec![
            row(
                "median",
                "entry create → SVID on the stream, median",
                Unit::Secs,
            )
            .goal(Goal::AtMost(1.0)),
            row("p90", "… p90", Unit::Secs),
            row("min", "… min", Unit::Secs),
            row("max", "… max", Unit::Secs),
        ],
        Vec::new(),
        |imp| measure(imp, n),
    )
    .await
}

/// The delays of `samples` entries created through `writer` (one at a time, at random
/// moments, under `parent` with `selector`) until the workload's FetchX509SVID stream on
/// `socket` delivers each: median, p90, max and min.
pub(super) async fn entry_delays(
    writer: &Admin,
    parent: &str,
    selector: &types::Selector,
    socket: &std::path::Path,
    prefix: &str,
    samples: usize,
) -> Result<Metrics> {
    // The workload's stream; a reader task stamps every message on arrival.
    let mut client = clients::workload_client(socket).await?;
    let mut stream = clients::timed(
        "FetchX509SVID",
        client.fetch_x509svid(workload::X509svidRequest {}),
    )
    .await?
    .into_inner();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<String>)>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(msg)) = stream.message().await {
            let ids = msg.svids.into_iter().map(|s| s.spiffe_id).collect();
            if tx.send((Instant::now(), ids)).is_err() {
                break;
            }
        }
    });

    let mut delays = Vec::with_capacity(samples);
    for k in 0..samples {
        // Not in step with either side's timers.
        let pause = rand::rng().random_range(200..1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        while rx.try_recv().is_ok() {}
        let path = format!("{prefix}/{k}");
        let want = clients::id_string(&path);
        writer
            .create_entries(vec![clients::entry(parent, &path, selector.clone())])
            .await?;
        let created = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (at, ids) = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .with_context(|| format!("{want} not delivered within 120 s"))?
                .context("the FetchX509SVID stream ended")?;
            if ids.contains(&want) {
                delays.push(at.saturating_duration_since(created).as_secs_f64());
                break;
            }
        }
    }
    reader.abort();
    if delays.is_empty() {
        bail!("no samples");
    }
    let mut sorted = delays.clone();
    sorted.sort_by(f64::total_cmp);
    let mut m = Metrics::default();
    m.set("median", median(&delays));
    m.set("p90", percentile(&sorted, 90.0));
    m.set("max", percentile(&sorted, 100.0));
    m.set("min", percentile(&sorted, 0.0));
    Ok(m)
}
