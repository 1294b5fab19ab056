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

/// Entries written through spire-datastore; a larger datastore repeats this block with
/// shifted numbers in SQL, which gives the same rows as writing every entry (see
/// [`replicate`]) in a fraction of the time.
const BLOCK: usize = 1_000_000;

/// The datastore with `n` entries, built on first use.
pub(crate) async fn datastore(cache: &Path, n: usize) -> Result<PathBuf> {
    datastore_in_blocks(cache, n, BLOCK).await
}

async fn datastore_in_blocks(cache: &Path, n: usize, block: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    let path = cache.join(format!("coldstart-{n}.sqlite3"));
    let ready = cache.join(format!("coldstart-{n}.ready"));
    if ready.exists() && path.exists() {
        return Ok(path);
    }
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    if n > block && n.is_multiple_of(block) {
        let base = Box::pin(datastore_in_blocks(cache, block, block)).await?;
        crate::log(&format!(
            "building a datastore with {n} entries in {} from {}",
            path.display(),
            base.display()
        ));
        let t = Instant::now();
        std::fs::copy(&base, &path)?;
        let store = open(&path).await?;
        let r = replicate(&store, block, n / block).await;
        store.close().await;
        r?;
        std::fs::write(&ready, b"ok")?;
        crate::log(&format!("built in {:.0} s", t.elapsed().as_secs_f64()));
        return Ok(path);
    }
    crate::log(&format!(
        "building a datastore with {n} entries in {}",
        path.display()
    ));
    let t = Instant::now();
    let store = open(&path).await?;
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

async fn open(path: &Path) -> Result<SqlStore> {
    Ok(SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        path.to_string_lossy().to_string(),
    ))
    .await?)
}

/// Turns a copy of the `block`-entry datastore into one of `blocks` blocks: block k holds
/// entries `k*block ..` as [`entry`] makes them. Only the parts of an entry that carry its
/// number (entry ID, the SPIFFE ID's and one selector's `workload<i>`, the DNS name) change
/// from block to block; the others repeat with periods that divide the block size.
async fn replicate(store: &SqlStore, block: usize, blocks: usize) -> Result<()> {
    if !(block.is_multiple_of(1000) && block.is_multiple_of(NODES)) {
        bail!("a block of {block} entries does not repeat the namespaces and agents");
    }
    // The block's rows must be entry i at row ID i+1, as writing them in order gives.
    let off = store
        .raw_query(
            "SELECT CAST(COUNT(*) AS TEXT), CAST(MAX(id) AS TEXT) FROM registered_entries \
             WHERE entry_id = printf('bench-%08d', id - 1)",
            2,
        )
        .await?;
    let want = Some(block.to_string());
    if off.first().map(|r| (&r[0], &r[1])) != Some((&want, &want)) {
        bail!("the {block}-entry datastore is not in row order: {off:?}");
    }
    for k in 1..blocks {
        let j = k * block;
        crate::log(&format!("… entries {j} to {}", j + block - 1));
        store
            .raw_execute(&format!(
                "INSERT INTO registered_entries (id, created_at, updated_at, entry_id, spiffe_id, \
                 parent_id, ttl, admin, downstream, expiry, revision_number, store_svid, hint, \
                 jwt_svid_ttl) \
                 SELECT id + {j}, created_at, updated_at, printf('bench-%08d', id - 1 + {j}), \
                 substr(spiffe_id, 1, instr(spiffe_id, '/sa/workload') + 11) || (id - 1 + {j}), \
                 parent_id, ttl, admin, downstream, expiry, revision_number, store_svid, hint, \
                 jwt_svid_ttl FROM registered_entries WHERE id <= {block} ORDER BY id"
            ))
            .await?;
        store
            .raw_execute(&format!(
                "INSERT INTO selectors (created_at, updated_at, registered_entry_id, type, value) \
                 SELECT created_at, updated_at, registered_entry_id + {j}, type, \
                 CASE WHEN value LIKE 'sa:workload%' \
                 THEN 'sa:workload' || (registered_entry_id - 1 + {j}) ELSE value END \
                 FROM selectors WHERE registered_entry_id <= {block} ORDER BY id"
            ))
            .await?;
        store
            .raw_execute(&format!(
                "INSERT INTO dns_names (created_at, updated_at, registered_entry_id, value) \
                 SELECT created_at, updated_at, registered_entry_id + {j}, \
                 'workload' || (registered_entry_id - 1 + {j}) || '.example.org' \
                 FROM dns_names WHERE registered_entry_id <= {block} ORDER BY id"
            ))
            .await?;
    }
    Ok(())
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
    let written = if n > BLOCK && n.is_multiple_of(BLOCK) {
        format!(
            "the first {} written once through spire-datastore in SPIRE's schema, the rest \
             repeated from them in SQL with their numbers shifted (the same rows writing each \
             entry gives)",
            count(BLOCK)
        )
    } else {
        "written once through spire-datastore in SPIRE's schema".to_string()
    };
    let description = format!(
        "A SQLite datastore with {} entries (3 selectors each, one DNS name on every tenth, \
         spread over {NODES} agents; no pending event rows, as after SPIRE's 12 h event \
         pruning), {written}, and copied fresh for each start. Start-to-ready as in the \
         footprint scenario (gRPC health SERVING); a start is given {} min.",
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    async fn all(path: &Path) -> Vec<RegistrationEntry> {
        let store = open(path).await.unwrap();
        let mut out = Vec::new();
        let mut pages = store.stream_all_registration_entries(5_000);
        while let Some(page) = pages.next().await {
            out.extend(page.unwrap().to_entries().unwrap());
        }
        drop(pages);
        store.close().await;
        for e in &mut out {
            e.created_at = 0;
        }
        out.sort_by(|a, b| a.entry_id.cmp(&b.entry_id));
        out
    }

    /// Repeating a block in SQL gives the entries that writing each one gives.
    #[tokio::test]
    async fn replicated_blocks_hold_the_written_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (written, copied) = (dir.path().join("w"), dir.path().join("c"));
        let n = 3 * 5_000;
        let w = datastore_in_blocks(&written, n, n).await.unwrap();
        let c = datastore_in_blocks(&copied, n, 5_000).await.unwrap();
        let (w, c) = (all(&w).await, all(&c).await);
        assert_eq!(w.len(), n);
        assert_eq!(w, c);
        let last = &c[n - 1];
        assert_eq!(last.entry_id, format!("bench-{:08}", n - 1));
        assert!(
            last.spiffe_id
                .as_str()
                .ends_with(&format!("/sa/workload{}", n - 1))
        );
        assert_eq!(
            c[n - 10].dns_names,
            [format!("workload{}.example.org", n - 10)]
        );
    }
}
