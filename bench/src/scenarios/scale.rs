//! Scenario 4, scale: creating many entries through the batch API, counting and listing them, and
//! fresh agents authorized for many entries completing their first sync.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server};
use crate::relay::Relay;
use crate::report::{Metrics, Section, Unit, count, row};

/// Entries per BatchCreateEntry call.
const CREATE_BATCH: usize = 500;
/// Pause between the last entry created and the first agent started.
const SETTLE: Duration = Duration::from_secs(6);
/// ListEntries page size.
const PAGE: i32 = 500;

/// Children per parent in the large agent's tree.
const FANOUT: usize = 1_000;

/// `n` entries the agent at `agent` is authorized for, the last of them matching this
/// process as a workload. With `fanout`, they form a tree: entries directly under the agent,
/// each the parent of `fanout - 1` more (the agent is authorized for all descendants);
/// without, they all share the agent as parent.
fn agent_entries(
    agent: &str,
    tag: &str,
    n: usize,
    fanout: Option<usize>,
) -> Result<Vec<spire_proto::spire::api::types::Entry>> {
    let mut out = Vec::with_capacity(n);
    match fanout {
        None => {
            for i in 0..n {
                let path = format!("/bench/scale/{tag}/{i}");
                out.push(clients::entry(agent, &path, clients::unmatched_selector(i)));
            }
        }
        Some(f) => {
            let mut k = 0;
            while out.len() < n {
                let group = format!("/bench/scale/{tag}/g{k}");
                out.push(clients::entry(
                    agent,
                    &group,
                    clients::unmatched_selector(out.len()),
                ));
                for i in 0..f.saturating_sub(1) {
                    if out.len() == n {
                        break;
                    }
                    let path = format!("{group}/{i}");
                    out.push(clients::entry(
                        &group,
                        &path,
                        clients::unmatched_selector(out.len()),
                    ));
                }
                k += 1;
            }
        }
    }
    if let Some(last) = out.last_mut() {
        last.selectors = vec![clients::workload_selector()?];
    }
    Ok(out)
}

/// Creates `entries` in batches; returns the seconds taken and the SPIFFE ID path of the
/// last (the workload's).
async fn create(
    admin: &Admin,
    entries: Vec<spire_proto::spire::api::types::Entry>,
) -> Result<(f64, String)> {
    let n = entries.len();
    let workload = entries
        .last()
        .and_then(|e| e.spiffe_id.as_ref())
        .map(|id| id.path.clone())
        .unwrap_or_default();
    let t = Instant::now();
    let ids = admin.create_entries_batched(entries, CREATE_BATCH).await?;
    let secs = t.elapsed().as_secs_f64();
    if ids.len() != n {
        bail!("created {} of {n} entries", ids.len());
    }
    Ok((secs, workload))
}

/// Starts a fresh agent through a counting relay and records its first sync.
async fn fresh_agent(
    imp: &Implementation,
    server: &Server,
    token: &str,
    workload: &str,
    key: &str,
    m: &mut Metrics,
) -> Result<()> {
    let relay = Relay::start(server.port).await?;
    server.proc.reset_peak()?;
    let mut agent = Agent::spawn(imp, relay.port, token)?;
    let ready = agent.wait_ready(Duration::from_secs(900)).await?;
    let (up_ready, down_ready) = (relay.up(), relay.down());
    let want = clients::id_string(workload);
    clients::wait_for_svids(&agent.socket, Duration::from_secs(900), |ids| {
        ids.contains(&want)
    })
    .await?;
    let served = agent.proc.started.elapsed().as_secs_f64();
    m.set(format!("{key}.ready"), ready.as_secs_f64());
    m.set(format!("{key}.served"), served);
    m.set(format!("{key}.bytes_down"), down_ready as f64);
    m.set(format!("{key}.bytes_up"), up_ready as f64);
    m.set(format!("{key}.server_peak"), server.proc.memory()?.peak);
    m.set(format!("{key}.agent_rss"), agent.proc.memory()?.rss);
    agent.proc.stop().await;
    Ok(())
}

async fn measure(imp: Implementation, big: usize, small: usize) -> Result<Metrics> {
    let server = Server::start(&imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let big_token = admin.join_token().await?;
    let small_token = admin.join_token().await?;
    let mut m = Metrics::default();

    server.proc.reset_peak()?;
    let entries = agent_entries(
        &clients::join_token_agent_path(&big_token),
        "big",
        big,
        Some(FANOUT),
    )?;
    let (secs, big_workload) = create(&admin, entries).await?;
    m.set("create.secs", secs);
    m.set("create.rate", big as f64 / secs);
    m.set("create.peak", server.proc.memory()?.peak);
    let entries = agent_entries(
        &clients::join_token_agent_path(&small_token),
        "small",
        small,
        None,
    )?;
    let (secs, small_workload) = create(&admin, entries).await?;
    m.set("flat.secs", secs);
    m.set("flat.rate", small as f64 / secs);
    let total = big + small;

    server.proc.reset_peak()?;
    let t = Instant::now();
    let counted = admin.count_entries().await?;
    m.set("count.secs", t.elapsed().as_secs_f64());
    if counted != total {
        bail!("CountEntries said {counted}, expected {total}");
    }
    let t = Instant::now();
    let (listed, bytes) = admin.list_all(PAGE).await?;
    m.set("list.secs", t.elapsed().as_secs_f64());
    m.set("list.bytes", bytes as f64);
    if listed != total {
        bail!("ListEntries listed {listed}, expected {total}");
    }
    m.set("list.peak", server.proc.memory()?.peak);

    // SPIRE's server sees new entries when its entry cache next refreshes (every 5 s); the
    // agents start after that, so that their first sync has all their entries.
    tokio::time::sleep(SETTLE).await;
    fresh_agent(
        &imp,
        &server,
        &small_token,
        &small_workload,
        "small",
        &mut m,
    )
    .await?;
    fresh_agent(&imp, &server, &big_token, &big_workload, "big", &mut m).await?;
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let (big, small) = (ctx.sizes.scale_entries, ctx.sizes.scale_small_agent);
    let mut rows = vec![
        row(
            "create.secs",
            format!(
                "create {} entries ({} per parent; BatchCreateEntry, {CREATE_BATCH} per call)",
                count(big),
                count(FANOUT)
            ),
            Unit::Secs,
        ),
        row(
            "create.rate",
            "… entries per second",
            Unit::Rate("entries/s"),
        ),
        row("create.peak", "… server peak RSS", Unit::Bytes),
        row(
            "flat.secs",
            format!("create {} entries, all under one parent", count(small)),
            Unit::Secs,
        ),
        row("flat.rate", "… entries per second", Unit::Rate("entries/s")),
        row(
            "count.secs",
            format!("CountEntries ({} entries)", count(big + small)),
            Unit::Secs,
        ),
        row(
            "list.secs",
            format!("ListEntries, all {} in pages of {PAGE}", count(big + small)),
            Unit::Secs,
        ),
        row("list.bytes", "… response bytes (protobuf)", Unit::Bytes),
        row(
            "list.peak",
            "… server peak RSS while counting and listing",
            Unit::Bytes,
        ),
    ];
    for (key, n) in [("small", small), ("big", big)] {
        rows.extend([
            row(
                format!("{key}.ready"),
                format!(
                    "fresh agent with {} entries: start → ready (attested, first sync done)",
                    count(n)
                ),
                Unit::Secs,
            ),
            row(
                format!("{key}.served"),
                "… start → workload receives the SVID of its entry",
                Unit::Secs,
            ),
            row(
                format!("{key}.bytes_down"),
                "… bytes server → agent until ready (TLS, on the wire)",
                Unit::Bytes,
            ),
            row(
                format!("{key}.bytes_up"),
                "… bytes agent → server until ready",
                Unit::Bytes,
            ),
            row(
                format!("{key}.server_peak"),
                "… server peak RSS during the sync",
                Unit::Bytes,
            ),
            row(
                format!("{key}.agent_rss"),
                "… agent RSS after the sync",
                Unit::Bytes,
            ),
        ]);
    }
    super::section(
        ctx,
        "4. Scale",
        format!(
            "One server. {} entries for one (not yet attested) join-token agent are created \
             through the batch API as a tree: {} entries under the agent, each the parent of \
             {} more (the agent is authorized for all descendants). Then {} entries for a \
             second agent, all directly under it: SPIRE's duplicate check on create looks \
             entries up by parent and SPIFFE ID, so the cost of a create grows with the \
             entries already under the same parent, and this row shows it. Then \
             CountEntries and a full ListEntries. Then, 6 s later (SPIRE's server refreshes \
             its entry cache every 5 s), each agent is started fresh, through a loopback \
             relay that counts the bytes on the wire. Peak RSS is VmHWM, reset \
             (`clear_refs`) at the start of each phase. The last entry of each agent matches \
             the harness as a workload, so \"workload receives\" includes signing that SVID \
             (agents also pre-sign SVIDs up to their cache size, 1 000, during or after the \
             first sync).",
            count(big),
            count(big.div_ceil(FANOUT)),
            count(FANOUT - 1),
            count(small)
        ),
        rows,
        Vec::new(),
        |imp| measure(imp, big, small),
    )
    .await
}
