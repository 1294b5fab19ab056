//! Scenario 15, an agent fleet: thousands of simulated agents speaking the real protocol to
//! one server over its TLS port: `AttestAgent` (join token), then, on each agent's own
//! mutual-TLS connection, `SyncAuthorizedEntries` and `BatchNewX509SVID` for the agent's
//! entries; then the server is restarted and every agent reconnects at once (sync, SVIDs,
//! `RenewAgent`), while an operator's admin call (`ListEntries`, one page) is timed
//! throughout the storm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use spiffe_core::{KeyType, PrivateKey};
use spire_proto::spire::api::server::agent::v1 as agentv1;
use spire_proto::spire::api::server::entry::v1 as entryv1;
use spire_proto::spire::api::server::svid::v1 as svidv1;
use tonic::transport::Channel;

use super::Ctx;
use crate::clients::{self, Admin, AgentSvid, timed};
use crate::procs::{Implementation, Server, ServerOptions};
use crate::report::{Metrics, Unit, percentile, row};

/// Entries under each agent.
const ENTRIES_PER_AGENT: usize = 2;
/// Agents attesting or syncing at once in the set-up phases (the storm has no limit).
const CONCURRENCY: usize = 64;
/// How long one agent keeps retrying in the storm.
const STORM_DEADLINE: Duration = Duration::from_secs(300);

/// The IDs of the entries the server authorizes for the agent of `ch`
/// (`SyncAuthorizedEntries` as SPIRE's agent drives it: revisions first when the server
/// sends them, then the entries asked for).
async fn sync(ch: Channel) -> Result<Vec<String>> {
    let mut c =
        entryv1::entry_client::EntryClient::new(ch).max_decoding_message_size(clients::MAX_MESSAGE);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(entryv1::SyncAuthorizedEntriesRequest::default())
        .await
        .context("SyncAuthorizedEntries: request")?;
    let mut stream = timed(
        "SyncAuthorizedEntries",
        c.sync_authorized_entries(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await?
    .into_inner();
    let mut ids = Vec::new();
    let mut revisions = Vec::new();
    loop {
        let msg = timed("SyncAuthorizedEntries", stream.message())
            .await?
            .context("SyncAuthorizedEntries: stream ended")?;
        ids.extend(msg.entries.into_iter().map(|e| e.id));
        revisions.extend(msg.entry_revisions.into_iter().map(|r| r.id));
        if !msg.more {
            break;
        }
    }
    if !revisions.is_empty() {
        tx.send(entryv1::SyncAuthorizedEntriesRequest {
            output_mask: None,
            ids: revisions,
        })
        .await
        .context("SyncAuthorizedEntries: request")?;
        loop {
            let msg = timed("SyncAuthorizedEntries", stream.message())
                .await?
                .context("SyncAuthorizedEntries: stream ended")?;
            ids.extend(msg.entries.into_iter().map(|e| e.id));
            if !msg.more {
                break;
            }
        }
    }
    drop(tx);
    Ok(ids)
}

/// X509-SVIDs for `ids`, one call; how many came back.
async fn svids(ch: Channel, ids: &[String], csr: &[u8]) -> Result<usize> {
    let mut c =
        svidv1::svid_client::SvidClient::new(ch).max_decoding_message_size(clients::MAX_MESSAGE);
    let params = ids
        .iter()
        .map(|id| svidv1::NewX509svidParams {
            entry_id: id.clone(),
            csr: csr.to_vec(),
        })
        .collect();
    let resp = timed(
        "BatchNewX509SVID",
        c.batch_new_x509svid(svidv1::BatchNewX509svidRequest { params }),
    )
    .await?
    .into_inner();
    let mut n = 0;
    for r in resp.results {
        if let Some(s) = r.status
            && s.code != 0
        {
            bail!("BatchNewX509SVID: {} {}", s.code, s.message);
        }
        n += usize::from(r.svid.is_some());
    }
    Ok(n)
}

/// One agent's full round: sync, SVIDs for everything authorized, and (in the storm)
/// `RenewAgent`.
async fn round(
    address: &str,
    bundle: &spiffe_core::Bundle,
    agent: &AgentSvid,
    csr: &[u8],
    renew: bool,
) -> Result<usize> {
    let ch = clients::agent_channel(address, bundle, agent)?;
    let ids = sync(ch.clone()).await?;
    if ids.len() != ENTRIES_PER_AGENT {
        bail!(
            "SyncAuthorizedEntries: {} entries, {ENTRIES_PER_AGENT} expected",
            ids.len()
        );
    }
    let n = svids(ch.clone(), &ids, csr).await?;
    if renew {
        let mut c = agentv1::agent_client::AgentClient::new(ch);
        let resp = timed(
            "RenewAgent",
            c.renew_agent(agentv1::RenewAgentRequest {
                params: Some(agentv1::AgentX509svidParams { csr: csr.to_vec() }),
            }),
        )
        .await?;
        if resp.get_ref().svid.is_none() {
            bail!("RenewAgent: no SVID");
        }
    }
    Ok(n)
}

async fn measure(imp: Implementation, agents: usize) -> Result<Metrics> {
    let mut m = Metrics::default();
    let mut server = Server::spawn(&imp, &ServerOptions::default())?;
    server.wait_ready(Duration::from_secs(60)).await?;
    let admin = Admin::connect(&server.socket).await?;
    let address = server.address();

    // Tokens and entries.
    let tokens: Vec<String> = futures::stream::iter(0..agents)
        .map(|_| admin.join_token())
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let selector = clients::unmatched_selector(0);
    let entries = tokens.iter().enumerate().flat_map(|(i, t)| {
        let parent = clients::join_token_agent_path(t);
        let selector = selector.clone();
        (0..ENTRIES_PER_AGENT)
            .map(move |j| clients::entry(&parent, &format!("/fleet/{i}/{j}"), selector.clone()))
    });
    admin.create_entries_batched(entries, 500).await?;
    let bundle = admin.bundle().await?;
    let csr = Arc::new(spire_pki::make_csr(
        PrivateKey::generate(KeyType::EcP256)?,
        None,
    )?);

    // Every agent attests.
    let t = Instant::now();
    let fleet: Vec<AgentSvid> = futures::stream::iter(tokens.iter())
        .map(|token| clients::attest(&address, &bundle, token))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let attest = t.elapsed().as_secs_f64();
    m.set("attest.all", attest);
    m.set("attest.rate", agents as f64 / attest);

    // SPIRE's server learns new entries on its cache refresh (every 5 s): wait until the
    // last agent's entries are served before timing the sync.
    if let Some(last) = fleet.last() {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ch = clients::agent_channel(&address, &bundle, last)?;
            if sync(ch).await?.len() == ENTRIES_PER_AGENT {
                break;
            }
            if Instant::now() > deadline {
                bail!("the server did not serve the new entries within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Every agent syncs and gets its SVIDs.
    let t = Instant::now();
    let signed: usize = futures::stream::iter(fleet.iter())
        .map(|a| round(&address, &bundle, a, &csr, false))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<Result<usize>>()?;
    if signed != agents * ENTRIES_PER_AGENT {
        bail!(
            "{signed} SVIDs signed, {} expected",
            agents * ENTRIES_PER_AGENT
        );
    }
    m.set("sync.all", t.elapsed().as_secs_f64());

    // Restart; then the storm: every agent at once.
    server.proc.restart().await?;
    server.wait_ready(Duration::from_secs(120)).await?;
    let cpu0 = server.proc.cpu_seconds()?;
    let admin = Admin::connect(&server.socket).await?;
    let storm_start = Instant::now();
    let done = Arc::new(tokio::sync::Notify::new());
    let probe = {
        let admin = admin.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let t = Instant::now();
                admin.list_page(100).await?;
                lat.push(t.elapsed().as_secs_f64());
                tokio::select! {
                    _ = done.notified() => break,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            Ok::<_, anyhow::Error>(lat)
        })
    };
    let mut tasks = Vec::with_capacity(agents);
    for a in fleet {
        let (address, bundle, csr) = (address.clone(), bundle.clone(), csr.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + STORM_DEADLINE;
            let mut failures = 0u64;
            loop {
                match round(&address, &bundle, &a, &csr, true).await {
                    Ok(_) => return Ok((Instant::now(), failures)),
                    Err(e) if Instant::now() > deadline => {
                        return Err(e.context(format!("after {failures} retries")));
                    }
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }));
    }
    let mut last = storm_start;
    let mut retries = 0u64;
    for t in tasks {
        let (at, failures) = t.await.context("storm task")??;
        last = last.max(at);
        retries += failures;
    }
    done.notify_one();
    let mut lat = probe.await.context("admin probe")??;
    lat.sort_by(f64::total_cmp);
    m.set("storm.all", (last - storm_start).as_secs_f64());
    m.set("storm.retries", retries as f64);
    m.set("storm.cpu", server.proc.cpu_seconds()? - cpu0);
    m.set("storm.peak", server.proc.memory()?.peak);
    m.set("storm.admin.p50", percentile(&lat, 50.0));
    m.set("storm.admin.p99", percentile(&lat, 99.0));
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> super::Section {
    let agents = ctx.sizes.fleet_agents.max(1);
    let rows = vec![
        row(
            "attest.all",
            format!("{agents} agents attest (join token)"),
            Unit::Secs,
        ),
        row(
            "attest.rate",
            "… attestations per second",
            Unit::Rate("agents/s"),
        ),
        row(
            "sync.all",
            format!(
                "{agents} agents sync and get their {} X509-SVIDs",
                agents * ENTRIES_PER_AGENT
            ),
            Unit::Secs,
        ),
        row(
            "storm.all",
            "after a server restart, all reconnecting at once: until the last has synced, its SVIDs and a renewed agent SVID",
            Unit::Secs,
        ),
        row("storm.retries", "… agent rounds retried", Unit::Count),
        row("storm.cpu", "… server CPU time", Unit::Secs),
        row(
            "storm.peak",
            "… server peak RSS (since its restart)",
            Unit::Bytes,
        ),
        row(
            "storm.admin.p50",
            "… admin ListEntries (100) p50 during the storm",
            Unit::Secs,
        ),
        row(
            "storm.admin.p99",
            "… admin ListEntries (100) p99 during the storm",
            Unit::Secs,
        ),
    ];
    let description = format!(
        "{agents} simulated agents in the harness, each with {ENTRIES_PER_AGENT} entries, \
         against one server (rate limits off in both, as SPIRE's per-IP limits would \
         throttle a fleet that all comes from 127.0.0.1). Attestation: join tokens over the \
         TLS port, {CONCURRENCY} at a time. Sync: each agent on its own mutual-TLS \
         connection runs `SyncAuthorizedEntries` as SPIRE's agent does, then one \
         `BatchNewX509SVID` for its entries, {CONCURRENCY} agents at a time. Storm: the \
         server is killed and started again on the same data; once it is ready, every agent \
         at once opens a new connection and runs the round plus `RenewAgent`, retrying \
         every 200 ms on any error; meanwhile an admin client pages `ListEntries` (100 \
         entries) every 20 ms."
    );
    super::section(
        ctx,
        "15. Agent fleet: attestation, sync and a reconnect storm",
        description,
        rows,
        Vec::new(),
        |imp| measure(imp, agents),
    )
    .await
}
