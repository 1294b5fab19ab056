//! Following the writes of other servers sharing the database, through SPIRE's event
//! tables (`registered_entries_events`, `attested_node_entries_events`).
//!
//! Event IDs are handed out when a row is inserted but become visible when its transaction
//! commits, so with several writers an event can appear after events with higher IDs: "read
//! everything above the highest ID seen" would skip it for ever. A [`Cursor`] therefore
//! keeps, beside the highest ID read, the IDs below it not seen yet (gaps) and when each
//! was noticed; every poll reads the new events and then the gap range again, and a gap is
//! given up only after [`GAP_TTL`] (longer than any transaction should stay open: a gap that
//! old is an ID that was never committed, as a rolled-back insert leaves). A change that
//! cannot be applied (the database went away while re-reading it) is not marked read: the
//! next poll tries it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use spire_datastore::{DataConsistency, DataStoreError, ListEventsRequest};
use tokio::time::Instant;

use super::Registry;

/// How often the event tables are polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a gap is polled for before it is taken to be an ID never committed.
pub const GAP_TTL: Duration = Duration::from_secs(10 * 60);
/// The most gaps tracked per table (a larger jump is a sign of IDs burnt by rollbacks, not
/// of that many open transactions).
pub const MAX_GAPS: usize = 10_000;

/// What has been read of one event table. Pure: time is passed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    last: u64,
    gaps: BTreeMap<u64, Instant>,
}

impl Cursor {
    /// Everything up to `last` has been read (the table's highest ID at start-up).
    pub fn new(last: u64) -> Self {
        Self {
            last,
            gaps: BTreeMap::new(),
        }
    }

    /// The highest event ID read.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Whether `id` is a gap still waited for.
    pub fn is_gap(&self, id: u64) -> bool {
        self.gaps.contains_key(&id)
    }

    /// The gaps still waited for, lowest first.
    pub fn gaps(&self) -> impl Iterator<Item = u64> + '_ {
        self.gaps.keys().copied()
    }

    /// Marks `id` read at `now`; IDs skipped on the way up become gaps.
    pub fn read(&mut self, id: u64, now: Instant) {
        if id > self.last {
            let first = self.last + 1;
            let room = MAX_GAPS.saturating_sub(self.gaps.len()) as u64;
            // The gaps nearest to `id` are the likeliest to be open transactions.
            let from = first.max(id.saturating_sub(room));
            for gap in from..id {
                self.gaps.insert(gap, now);
            }
            self.last = id;
        } else {
            self.gaps.remove(&id);
        }
    }

    /// The `(greater_than, less_than)` bounds that list every gap, if there is one.
    pub fn gap_range(&self) -> Option<(u64, u64)> {
        let lo = *self.gaps.first_key_value()?.0;
        let hi = *self.gaps.last_key_value()?.0;
        Some((lo - 1, hi + 1))
    }

    /// Gives up the gaps noticed more than `ttl` before `now`; returns how many.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let before = self.gaps.len();
        self.gaps
            .retain(|_, noticed| now.saturating_duration_since(*noticed) < ttl);
        before - self.gaps.len()
    }
}

/// One event table as the follower sees it.
trait Table: Send + Sync {
    /// `entry` or `node`, for logs.
    fn kind(&self) -> &'static str;
    /// Where the scan for new events reads: SPIRE reads new node events from the read
    /// replica (`ro_connection_string`) and new entry events from the primary.
    fn scan_consistency(&self) -> DataConsistency {
        DataConsistency::RequireCurrent
    }
    /// Events in the bounds, as (event ID, key), lowest ID first.
    fn list(
        &self,
        req: ListEventsRequest,
    ) -> BoxFuture<'_, Result<Vec<(u64, String)>, DataStoreError>>;
    /// Re-reads what `key` names into the index.
    fn apply<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), DataStoreError>>;
}

struct Entries(Arc<Registry>);
struct Nodes(Arc<Registry>);

impl Table for Entries {
    fn kind(&self) -> &'static str {
        "entry"
    }
    fn list(
        &self,
        req: ListEventsRequest,
    ) -> BoxFuture<'_, Result<Vec<(u64, String)>, DataStoreError>> {
        Box::pin(async move {
            Ok(self
                .0
                .ds()
                .list_registration_entry_events(req)
                .await?
                .into_iter()
                .map(|e| (e.event_id, e.entry_id))
                .collect())
        })
    }
    fn apply<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), DataStoreError>> {
        Box::pin(self.0.reload_entry(key))
    }
}

impl Table for Nodes {
    fn kind(&self) -> &'static str {
        "node"
    }
    fn scan_consistency(&self) -> DataConsistency {
        DataConsistency::TolerateStale
    }
    fn list(
        &self,
        req: ListEventsRequest,
    ) -> BoxFuture<'_, Result<Vec<(u64, String)>, DataStoreError>> {
        Box::pin(async move {
            Ok(self
                .0
                .ds()
                .list_attested_node_events(req)
                .await?
                .into_iter()
                .map(|e| (e.event_id, e.spiffe_id))
                .collect())
        })
    }
    fn apply<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), DataStoreError>> {
        Box::pin(async move {
            match spiffe_core::SpiffeId::parse(key) {
                Ok(id) => self.0.reload_agent(&id).await,
                // Nothing of ours can be named by it: read, and nothing to apply.
                Err(_) => Ok(()),
            }
        })
    }
}

/// One poll of one table: the new events, then the gaps.
async fn poll(table: &dyn Table, cur: &mut Cursor, now: Instant) {
    let kind = table.kind();
    match table
        .list(ListEventsRequest {
            greater_than_event_id: cur.last(),
            data_consistency: table.scan_consistency(),
            ..Default::default()
        })
        .await
    {
        Ok(events) => {
            for (id, key) in events {
                if let Err(e) = table.apply(&key).await {
                    // Not read: the next poll starts again here.
                    tracing::warn!(error = %e, event_id = id, kind, "Failed to follow a change; retrying");
                    break;
                }
                cur.read(id, now);
            }
        }
        Err(e) => tracing::warn!(error = %e, kind, "Failed to list events"),
    }
    if let Some((gt, lt)) = cur.gap_range() {
        let req = ListEventsRequest {
            greater_than_event_id: gt,
            less_than_event_id: lt,
            ..Default::default()
        };
        match table.list(req).await {
            Ok(events) => {
                for (id, key) in events {
                    if !cur.is_gap(id) {
                        continue;
                    }
                    match table.apply(&key).await {
                        Ok(()) => cur.read(id, now),
                        Err(e) => {
                            tracing::warn!(error = %e, event_id = id, kind, "Failed to follow a change; retrying")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, kind, "Failed to list skipped events"),
        }
    }
    let given_up = cur.expire(now, GAP_TTL);
    if given_up > 0 {
        tracing::debug!(count = given_up, kind, "Gave up waiting for skipped events");
    }
}

/// The gauges SPIRE's events-based cache emits, each set when its value changes
/// (`node_agents_by_id_cache_count`, `entry_skipped_entry_event_ids_count`, ...).
#[derive(Debug, Default)]
pub struct CacheGauges {
    last: Option<([usize; 2], crate::index::CacheStats)>,
}

impl CacheGauges {
    /// Sets every gauge on the first call (zeros included, as SPIRE's cache build does),
    /// then those whose value differs from the last call's.
    pub fn emit(
        &mut self,
        metrics: &spire_telemetry::Metrics,
        skipped: [usize; 2],
        stats: crate::index::CacheStats,
    ) {
        let first = self.last.is_none();
        let (last_skipped, last) = self.last.unwrap_or_default();
        let set = |key: &[&str], now: usize, before: usize| {
            if first || now != before {
                metrics.set_gauge(key, now as f64, &[]);
            }
        };
        set(
            &["node", "skipped_node_event_ids", "count"],
            skipped[1],
            last_skipped[1],
        );
        set(
            &["node", "agents_by_id_cache", "count"],
            stats.agents,
            last.agents,
        );
        set(
            &["node", "agents_by_expiresat_cache", "count"],
            stats.agents,
            last.agents,
        );
        set(
            &["entry", "skipped_entry_event_ids", "count"],
            skipped[0],
            last_skipped[0],
        );
        set(
            &["entry", "nodealiases_by_entryid_cache", "count"],
            stats.alias_records,
            last.alias_records,
        );
        set(
            &["entry", "nodealiases_by_selector_cache", "count"],
            stats.alias_records,
            last.alias_records,
        );
        set(
            &["entry", "entries_by_entryid_cache", "count"],
            stats.entries,
            last.entries,
        );
        set(
            &["entry", "entries_by_parentid_cache", "count"],
            stats.entries,
            last.entries,
        );
        self.last = Some((skipped, stats));
    }
}

/// Follows both tables from the cursors given, for ever. With `gauges` (SPIRE's
/// `events_based_cache`), the cache gauges are emitted after every poll.
pub async fn follow(
    registry: Arc<Registry>,
    mut entries: Cursor,
    mut nodes: Cursor,
    gauges: Option<spire_telemetry::Metrics>,
) {
    let entry_table = Entries(registry.clone());
    let node_table = Nodes(registry.clone());
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    let mut emitted = CacheGauges::default();
    loop {
        tick.tick().await;
        let now = Instant::now();
        poll(&entry_table, &mut entries, now).await;
        poll(&node_table, &mut nodes, now).await;
        if let Some(m) = &gauges
            && m.enabled()
        {
            let skipped = [entries.gaps().count(), nodes.gaps().count()];
            emitted.emit(m, skipped, registry.cache_stats());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_gauges_start_with_every_value_then_follow_changes() {
        let cfg = spire_config::TelemetryConfig {
            prometheus: Some(spire_config::PrometheusConfig {
                host: "127.0.0.1".into(),
                port: 0,
            }),
            ..Default::default()
        };
        let m = spire_telemetry::Metrics::configure(
            &cfg,
            spire_telemetry::Service::Server,
            "example.org",
            None,
        )
        .unwrap()
        .metrics;
        let mut g = CacheGauges::default();
        g.emit(&m, [0, 0], crate::index::CacheStats::default());
        let out = m.render();
        for family in [
            "spire_server_node_agents_by_id_cache_count 0",
            "spire_server_entry_skipped_entry_event_ids_count 0",
            "spire_server_entry_nodealiases_by_selector_cache_count 0",
            "spire_server_entry_entries_by_parentid_cache_count 0",
        ] {
            assert!(out.contains(family), "{family}: {out}");
        }
        g.emit(
            &m,
            [2, 0],
            crate::index::CacheStats {
                agents: 1,
                alias_records: 0,
                entries: 5,
            },
        );
        let out = m.render();
        for family in [
            "spire_server_node_agents_by_expiresat_cache_count 1",
            "spire_server_entry_skipped_entry_event_ids_count 2",
            "spire_server_entry_entries_by_entryid_cache_count 5",
        ] {
            assert!(out.contains(family), "{family}: {out}");
        }
    }

    #[test]
    fn in_order_events_leave_no_gaps() {
        let now = Instant::now();
        let mut c = Cursor::new(10);
        for id in 11..=15 {
            c.read(id, now);
        }
        assert_eq!(c.last(), 15);
        assert_eq!(c.gap_range(), None);
    }

    #[test]
    fn an_event_committed_out_of_order_is_a_gap_until_read() {
        let now = Instant::now();
        let mut c = Cursor::new(10);
        // 12 and 14 commit before 11 and 13.
        c.read(12, now);
        c.read(14, now);
        assert_eq!(c.gaps().collect::<Vec<_>>(), vec![11, 13]);
        assert_eq!(c.gap_range(), Some((10, 14)));
        c.read(13, now);
        assert!(!c.is_gap(13));
        assert_eq!(c.gap_range(), Some((10, 12)));
        c.read(11, now);
        assert_eq!(c.gap_range(), None);
        assert_eq!(c.last(), 14);
    }

    #[test]
    fn gaps_are_given_up_after_the_ttl_only() {
        let t0 = Instant::now();
        let mut c = Cursor::new(0);
        c.read(3, t0); // gaps 1, 2
        c.read(5, t0 + Duration::from_secs(60)); // gap 4
        assert_eq!(c.expire(t0 + GAP_TTL - Duration::from_secs(1), GAP_TTL), 0);
        assert_eq!(c.expire(t0 + GAP_TTL, GAP_TTL), 2);
        assert_eq!(c.gaps().collect::<Vec<_>>(), vec![4]);
        assert_eq!(c.expire(t0 + GAP_TTL + Duration::from_secs(60), GAP_TTL), 1);
        assert_eq!(c.gap_range(), None);
    }

    #[test]
    fn a_huge_jump_keeps_the_nearest_gaps_only() {
        let now = Instant::now();
        let mut c = Cursor::new(0);
        c.read(1_000_000, now);
        assert_eq!(c.gaps().count(), MAX_GAPS);
        assert_eq!(c.gaps().next(), Some(1_000_000 - MAX_GAPS as u64));
        assert_eq!(c.last(), 1_000_000);
    }
}
