//! Scenario 6, cold start at scale: server start-to-ready on a datastore that already holds many
//! entries. The datastore is written once, straight into a SQLite file in SPIRE's schema
//! (the same file serves both implementations), and kept in the cache directory; every
//! start runs on a fresh copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use spiffe_core::SpiffeId;
use spire_datastore::{DataStore as _, DatabaseType, RegistrationEntry, SqlConfig, SqlStore};
use spire_plugin::Selector;

use super::Ctx;
use crate::procs::{Implementation, Server, ServerOptions};
use crate::report::{Goal, Metrics, Section, Unit, count, row};

/// Agents the entries are spread over.
const NODES: usize = 5_000;

fn entry(i: usize) -> Result<RegistrationEntry> {
    let mut e = RegistrationEntry::new(
        SpiffeId::parse(&format!(
            "spiffe://example.org/ns/ns{}/sa/workload{i}",
            i % 1000
        ))?,
        SpiffeId::parse(&format!(
            "spiffe://example.org/spire/agent/k8s_psat/c1/node{}",
            i % NODES
        ))?,
        vec![
            Selector::new("k8s", &format!("ns:ns{}", i % 1000))?,
            Selector::new("k8s", &format!("sa:workload{i}"))?,
            Selector::new("k8s", "container-name:app")?,
        ],
    );
    e.entry_id = format!("bench-{i:08}");
    if i.is_multiple_of(10) {
        e.dns_names = vec![format!("workload{i}.example.org")];
    }
    e.x509_svid_ttl = 3600;
    Ok(e)
}

/// The datastore with `n` entries, built on first use.
pub(crate) async fn datastore(cache: &Path, n: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    let path = cache.join(format!("coldstart-{n}.sqlite3"));
    let ready = cache.join(format!("coldstart-{n}.ready"));
    if ready.exists() && path.exists() {
        return Ok(path);
    }
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    crate::log(&format!(
        "building a datastore with {n} entries in {}",
        path.display()
    ));
    let t = Instant::now();
    let store = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        path.to_string_lossy().to_string(),
    ))
    .await?;
    let batch = 10_000;
    for start in (0..n).step_by(batch) {
        let entries = (start..(start + batch).min(n))
            .map(entry)
            .collect::<Result<Vec<_>>>()?;
        for r in store.create_or_return_registration_entries(entries).await? {
            r.context("creating a cold-start entry")?;
        }
    }
    // A datastore at rest: SPIRE prunes event rows after 12 h, so a long-running
    // deployment does not carry one event per entry.
    store
        .raw_execute("DELETE FROM registered_entries_events")
        .await?;
    store.close().await;
    std::fs::write(&ready, b"ok")?;
    crate::log(&format!("built in {:.0} s", t.elapsed().as_secs_f64()));
    Ok(path)
}

async fn measure(imp: Implementation, db: PathBuf, timeout: Duration) -> Result<Metrics> {
    let mut m = Metrics::default();
    let mut server = Server::spawn(
        &imp,
        &ServerOptions {
            datastore: Some(db),
            ..ServerOptions::default()
        },
    )?;
    match server.wait_ready(timeout).await {
        Ok(d) => {
            m.set("ready", d.as_secs_f64());
            let mem = server.proc.memory()?;
            m.set("peak", mem.peak);
            m.set("rss", mem.rss);
        }
        Err(e) if server.proc.started.elapsed() >= timeout => {
            let why = format!(
                "did not finish in {} min (not ready when stopped)",
                timeout.as_secs() / 60
            );
            crate::log(&format!("{}: {why}: {e:#}", imp.name));
            let mem = server.proc.memory()?;
            m.missing("ready", why);
            m.set("peak", mem.peak);
            m.set("rss", mem.rss);
        }
        Err(e) => return Err(e),
    }
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let n = ctx.sizes.cold_entries;
    let timeout = ctx.sizes.cold_timeout;
    let db = datastore(&ctx.cache_dir, n).await;
    let description = format!(
        "A SQLite datastore with {} entries (3 selectors each, one DNS name on every tenth, \
         spread over {NODES} agents; no pending event rows, as after SPIRE's 12 h event \
         pruning), written once through spire-datastore in SPIRE's schema and copied fresh \
         for each start. Start-to-ready as in the footprint scenario (gRPC health SERVING); \
         a start is given {} min.",
        count(n),
        timeout.as_secs() / 60
    );
    let rows = vec![
        row(
            "ready",
            format!("server start → ready, {} entries", count(n)),
            Unit::Secs,
        )
        .goal(Goal::AtMost(60.0)),
        row("peak", "… server peak RSS", Unit::Bytes).goal(Goal::RatioAtMost(1.0 / 3.0)),
        row("rss", "… server RSS when ready", Unit::Bytes),
    ];
    match db {
        Ok(db) => {
            super::section(
                ctx,
                "6. Cold start at scale",
                description,
                rows,
                Vec::new(),
                |imp| measure(imp, db.clone(), timeout),
            )
            .await
        }
        Err(e) => {
            let why = format!("building the datastore failed: {e:#}");
            super::section(
                ctx,
                "6. Cold start at scale",
                description,
                rows,
                Vec::new(),
                |_| {
                    let why = why.clone();
                    async move { bail!(why) }
                },
            )
            .await
        }
    }
}
