//! Start-up scan of a large SQLite datastore: every registration entry with
//! its selectors, DNS names and federated trust domains, and every attested
//! node with its selectors, as a server does to build its in-memory index.
//!
//! The database is built once (batch creates, which also measures write
//! throughput) and cached under `$SPIRE_DS_BENCH_DIR` (default
//! `/tmp/spire-datastore-bench`). Sizes: `SPIRE_DS_BENCH_ENTRIES` (default
//! 1,000,000) and `SPIRE_DS_BENCH_NODES` (default 100,000).
//!
//! `cargo bench -p spire-datastore --bench scan`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::TryStreamExt;
use spiffe_core::{SpiffeId, TrustDomain};
use spire_datastore::*;
use spire_plugin::Selector;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn entry(i: usize) -> RegistrationEntry {
    let mut e = RegistrationEntry::new(
        SpiffeId::parse(&format!(
            "spiffe://example.org/ns/ns{}/sa/workload{i}",
            i % 1000
        ))
        .unwrap(),
        SpiffeId::parse(&format!(
            "spiffe://example.org/spire/agent/k8s_psat/c1/node{}",
            i % 5000
        ))
        .unwrap(),
        vec![
            Selector::new("k8s", &format!("ns:ns{}", i % 1000)).unwrap(),
            Selector::new("k8s", &format!("sa:workload{i}")).unwrap(),
            Selector::new("k8s", "container-name:app").unwrap(),
        ],
    );
    e.entry_id = format!("bench-{i:08}");
    if i.is_multiple_of(10) {
        e.dns_names = vec![format!("workload{i}.example.org")];
    }
    if i.is_multiple_of(20) {
        e.federates_with = vec![TrustDomain::new("partner.org").unwrap()];
    }
    e.x509_svid_ttl = 3600;
    e
}

async fn open_or_build(entries: usize, nodes: usize) -> SqlStore {
    let dir = std::env::var_os("SPIRE_DS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/spire-datastore-bench"));
    let path = dir.join(format!("scan-{entries}-{nodes}.sqlite3"));
    let ready = dir.join(format!("scan-{entries}-{nodes}.ready"));
    if !ready.exists() {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("sqlite3-wal"));
        let _ = std::fs::remove_file(path.with_extension("sqlite3-shm"));
    }
    let store = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        path.to_string_lossy().to_string(),
    ))
    .await
    .unwrap();
    if ready.exists() {
        return store;
    }
    store
        .create_bundle(StoredBundle::new(TrustDomain::new("partner.org").unwrap()))
        .await
        .unwrap();
    let start = Instant::now();
    let batch = 10_000;
    for chunk_start in (0..entries).step_by(batch) {
        let batch: Vec<RegistrationEntry> = (chunk_start..(chunk_start + batch).min(entries))
            .map(entry)
            .collect();
        for r in store
            .create_or_return_registration_entries(batch)
            .await
            .unwrap()
        {
            r.unwrap();
        }
    }
    let took = start.elapsed();
    println!(
        "built {entries} entries in {:.1}s ({:.0} entries/s, batches of {batch} in one transaction each)",
        took.as_secs_f64(),
        entries as f64 / took.as_secs_f64()
    );
    let start = Instant::now();
    for i in 0..nodes {
        let id = SpiffeId::parse(&format!(
            "spiffe://example.org/spire/agent/k8s_psat/c1/node{i}"
        ))
        .unwrap();
        store
            .create_attested_node(AttestedNode {
                spiffe_id: id.clone(),
                attestation_data_type: "k8s_psat".into(),
                cert_serial_number: format!("{i}"),
                cert_not_after: 4_102_444_800,
                new_cert_serial_number: String::new(),
                new_cert_not_after: 0,
                selectors: Vec::new(),
                can_reattest: true,
            })
            .await
            .unwrap();
        store
            .set_node_selectors(
                &id,
                vec![
                    Selector::new("k8s_psat", "cluster:c1").unwrap(),
                    Selector::new("k8s_psat", &format!("agent_node_name:node{i}")).unwrap(),
                    Selector::new("k8s_psat", &format!("agent_node_uid:{i}")).unwrap(),
                ],
            )
            .await
            .unwrap();
    }
    println!(
        "built {nodes} nodes (one transaction per write) in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    std::fs::write(&ready, b"ok").unwrap();
    store
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entries = env_usize("SPIRE_DS_BENCH_ENTRIES", 1_000_000);
    let nodes = env_usize("SPIRE_DS_BENCH_NODES", 100_000);
    let store = rt.block_on(open_or_build(entries, nodes));

    let mut g = c.benchmark_group("sqlite_startup_scan");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function(format!("stream_all_registration_entries/{entries}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut n = 0usize;
                let mut selectors = 0usize;
                let mut s = store.stream_all_registration_entries(10_000);
                while let Some(page) = s.try_next().await.unwrap() {
                    n += page.len();
                    selectors += page.iter().map(|e| e.selector_keys().len()).sum::<usize>();
                }
                assert_eq!(n, entries);
                assert_eq!(selectors, entries * 3);
            })
        })
    });
    g.bench_function(format!("stream_all_attested_nodes/{nodes}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let pages: Vec<Vec<AttestedNode>> = store
                    .stream_all_attested_nodes(1000)
                    .try_collect()
                    .await
                    .unwrap();
                assert_eq!(pages.iter().map(Vec::len).sum::<usize>(), nodes);
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sqlite_queries");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("list_entries_by_selector_superset_page", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = store
                    .list_registration_entries(ListEntriesRequest {
                        by_selectors: Some(BySelectors {
                            selectors: vec![Selector::new("k8s", "ns:ns7").unwrap()],
                            match_behavior: MatchBehavior::Superset,
                        }),
                        pagination: Some(Pagination {
                            token: String::new(),
                            page_size: 500,
                        }),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert!(!resp.entries.is_empty());
            })
        })
    });
    g.bench_function("list_entries_by_parent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = store
                    .list_registration_entries(ListEntriesRequest {
                        by_parent_id: Some(
                            SpiffeId::parse("spiffe://example.org/spire/agent/k8s_psat/c1/node42")
                                .unwrap(),
                        ),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert_eq!(resp.entries.len(), entries / 5000);
            })
        })
    });
    let mut next = entries;
    g.bench_function("batch_create_1000_entries", |b| {
        b.iter(|| {
            let batch: Vec<RegistrationEntry> = (next..next + 1000).map(entry).collect();
            next += 1000;
            rt.block_on(async {
                for r in store
                    .create_or_return_registration_entries(batch)
                    .await
                    .unwrap()
                {
                    r.unwrap();
                }
            })
        })
    });
    g.finish();
    // The batch benchmark added rows: drop them so the cached database keeps its size.
    rt.block_on(async {
        let added =
            format!("SELECT id FROM registered_entries WHERE entry_id >= 'bench-{entries:08}'");
        for table in ["selectors", "dns_names", "federated_registration_entries"] {
            store
                .raw_execute(&format!(
                    "DELETE FROM {table} WHERE registered_entry_id IN ({added})"
                ))
                .await
                .unwrap();
        }
        store
            .raw_execute(&format!(
                "DELETE FROM registered_entries WHERE entry_id >= 'bench-{entries:08}'"
            ))
            .await
            .unwrap();
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
