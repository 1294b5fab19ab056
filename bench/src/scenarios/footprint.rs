//! Scenario 5, footprint: RSS of an idle server and an idle agent, of an agent holding many SVIDs,
//! and start-to-ready times (the gRPC health check `healthcheck` uses).

use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server, ServerOptions};
use crate::report::{Goal, Metrics, Section, Unit, count, median, row};

async fn measure(imp: Implementation, svids: usize, starts: usize, idle: u64) -> Result<Metrics> {
    let mut m = Metrics::default();
    // Server start-to-ready, fresh data directory each time (includes creating the
    // datastore and the CA and JWT keys).
    let mut server_ready = Vec::new();
    for _ in 0..starts.saturating_sub(1) {
        let mut s = Server::spawn(&imp, &ServerOptions::default())?;
        server_ready.push(s.wait_ready(Duration::from_secs(60)).await?.as_secs_f64());
        s.proc.stop().await;
    }
    let mut server = Server::spawn(&imp, &ServerOptions::default())?;
    server_ready.push(
        server
            .wait_ready(Duration::from_secs(60))
            .await?
            .as_secs_f64(),
    );
    m.set("server.ready", median(&server_ready));

    tokio::time::sleep(Duration::from_secs(idle)).await;
    m.set("server.idle", server.proc.memory()?.rss);

    let admin = Admin::connect(&server.socket).await?;
    // Agent start-to-ready: attestation and first sync of one entry.
    let mut agent_ready = Vec::new();
    for _ in 0..starts.saturating_sub(1) {
        let token = admin.join_token().await?;
        let mut a = Agent::spawn(&imp, server.port, &token)?;
        agent_ready.push(a.wait_ready(Duration::from_secs(60)).await?.as_secs_f64());
        a.proc.stop().await;
    }
    let (token, parent, selector) = admin.token_with_workload_entry("/bench/fp/0").await?;
    let mut agent = Agent::spawn(&imp, server.port, &token)?;
    agent_ready.push(
        agent
            .wait_ready(Duration::from_secs(60))
            .await?
            .as_secs_f64(),
    );
    m.set("agent.ready", median(&agent_ready));
    clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
        !ids.is_empty()
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(idle)).await;
    m.set("agent.idle", agent.proc.memory()?.rss);

    // The agent holding `svids` SVIDs, all for this workload.
    let entries =
        (1..svids).map(|i| clients::entry(&parent, &format!("/bench/fp/{i}"), selector.clone()));
    admin.create_entries_batched(entries, 500).await?;
    clients::wait_for_svids(&agent.socket, Duration::from_secs(300), |ids| {
        ids.len() >= svids
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(idle)).await;
    m.set("agent.svids", agent.proc.memory()?.rss);
    m.set("server.after", server.proc.memory()?.rss);
    agent.proc.stop().await;
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let (svids, starts, idle) = (s.footprint_svids, s.starts, s.idle_secs);
    super::section(
        ctx,
        "5. Footprint",
        format!(
            "RSS is VmRSS after {idle} s idle. Start-to-ready is from spawning the process to \
             the gRPC health check on its socket reporting SERVING (what `healthcheck` \
             checks), median of {starts} start{}: the server on a fresh data directory \
             (creates the SQLite schema, CA and JWT keys), the agent with a fresh join token \
             (attests, first sync, then serves).",
            if starts == 1 { "" } else { "s" }
        ),
        vec![
            row("server.idle", "server RSS, idle", Unit::Bytes).goal(Goal::RatioAtMost(1.0 / 3.0)),
            row("agent.idle", "agent RSS, idle (1 entry)", Unit::Bytes)
                .goal(Goal::RatioAtMost(1.0 / 3.0)),
            row(
                "agent.svids",
                format!(
                    "agent RSS with {} cached X509-SVIDs (one workload holds all)",
                    count(svids)
                ),
                Unit::Bytes,
            )
            .goal(Goal::RatioAtMost(1.0 / 3.0)),
            row(
                "server.after",
                format!("server RSS after signing them ({} entries)", count(svids)),
                Unit::Bytes,
            )
            .goal(Goal::RatioAtMost(1.0 / 3.0)),
            row("server.ready", "server start → ready", Unit::Secs),
            row("agent.ready", "agent start → ready", Unit::Secs),
        ],
        Vec::new(),
        |imp| measure(imp, svids, starts, idle),
    )
    .await
}
