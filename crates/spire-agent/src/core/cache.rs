//! The agent's entry and X509-SVID cache (SPIRE's `LRUCache`), without locks or I/O.
//!
//! It holds the entries the agent is authorized for, an index from selector to entries and to
//! subscribers (Workload API streams), the X509-SVIDs issued for entries, the set of entries
//! whose SVID must be (re)issued ("stale"), and the bundles. The number of SVIDs is a soft
//! limit: when it is exceeded, the SVIDs of the least recently used entries without an active
//! subscriber are dropped (and re-issued on demand).
//!
//! Every mutation returns the subscribers that must be told about it; the shell recomputes
//! their [`WorkloadUpdate`] and sends it if it differs from the last one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use spiffe_core::x509svid::X509SvidError;
use spiffe_core::{Bundle, TrustDomain};
use spire_plugin::Selector;

use crate::core::entry::{Entry, X509SvidRecord};
use crate::core::taint::signed_by_any;

/// SPIRE's default `x509_svid_cache_max_size`.
pub const DEFAULT_SVID_CACHE_MAX_SIZE: usize = 1000;

/// A subscriber (one Workload API stream).
pub type SubscriberId = u64;

/// A set of selectors.
pub type SelectorSet = BTreeSet<Selector>;

/// An identity handed to a workload: the entry and its SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The entry.
    pub entry: Arc<Entry>,
    /// Its SVID.
    pub svid: Arc<X509SvidRecord>,
}

/// What a workload with given selectors is entitled to right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadUpdate {
    /// Matching identities that have SVIDs, ordered by entry ID.
    pub identities: Vec<Identity>,
    /// The agent's own trust domain bundle.
    pub bundle: Option<Arc<Bundle>>,
    /// Bundles of the trust domains the identities federate with.
    pub federated_bundles: BTreeMap<TrustDomain, Arc<Bundle>>,
}

impl WorkloadUpdate {
    /// Whether any identity matched.
    pub fn has_identity(&self) -> bool {
        !self.identities.is_empty()
    }
}

/// An entry whose SVID must be minted or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleEntry {
    /// The entry.
    pub entry: Arc<Entry>,
    /// Expiry of the SVID currently held; `None` when there is none (a creation).
    pub svid_expires_at: Option<SystemTime>,
}

/// The result of [`Cache::drop_tainted_svids`].
#[derive(Debug, Default)]
pub struct TaintedSvids {
    /// Entries whose SVID was dropped.
    pub dropped: Vec<String>,
    /// Entries whose SVID could not be checked, and why.
    pub errors: Vec<(String, X509SvidError)>,
}

/// The result of [`Cache::update_entries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntriesOutcome {
    /// Subscribers to notify.
    pub notify: Vec<SubscriberId>,
    /// New entries.
    pub created: Vec<Arc<Entry>>,
    /// Entries whose selectors, federation or revision changed.
    pub updated: Vec<Arc<Entry>>,
    /// Entries no longer authorized.
    pub removed: Vec<Arc<Entry>>,
    /// Trust domains whose bundle was added, changed or removed.
    pub bundles_changed: Vec<TrustDomain>,
    /// Entries whose SVID was evicted to honour the size limit.
    pub evicted: Vec<String>,
    /// Held SVIDs due for rotation (SPIRE's "expiring").
    pub expiring: usize,
    /// Held SVIDs, not yet due, whose entry changed (SPIRE's "outdated").
    pub outdated: usize,
}

#[derive(Debug)]
struct Record {
    entry: Arc<Entry>,
    last_access_ms: i64,
}

#[derive(Debug, Default)]
struct Index {
    records: HashSet<String>,
    subs: HashSet<SubscriberId>,
}

impl Index {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.subs.is_empty()
    }
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    trust_domain: TrustDomain,
    max_svids: usize,
    records: HashMap<String, Record>,
    index: HashMap<Selector, Index>,
    subs: HashMap<SubscriberId, SelectorSet>,
    next_sub: SubscriberId,
    svids: HashMap<String, Arc<X509SvidRecord>>,
    stale: HashSet<String>,
    bundles: BTreeMap<TrustDomain, Arc<Bundle>>,
}

impl Cache {
    /// An empty cache for `trust_domain` holding its `bundle`; `max_svids` of 0 means the
    /// default.
    pub fn new(trust_domain: TrustDomain, bundle: Bundle, max_svids: usize) -> Self {
        let mut bundles = BTreeMap::new();
        bundles.insert(trust_domain.clone(), Arc::new(bundle));
        Self {
            trust_domain,
            max_svids: if max_svids == 0 {
                DEFAULT_SVID_CACHE_MAX_SIZE
            } else {
                max_svids
            },
            records: HashMap::new(),
            index: HashMap::new(),
            subs: HashMap::new(),
            next_sub: 1,
            svids: HashMap::new(),
            stale: HashSet::new(),
            bundles,
        }
    }

    /// The agent's own trust domain bundle.
    pub fn bundle(&self) -> Option<Arc<Bundle>> {
        self.bundles.get(&self.trust_domain).cloned()
    }

    /// Every bundle held.
    pub fn bundles(&self) -> &BTreeMap<TrustDomain, Arc<Bundle>> {
        &self.bundles
    }

    /// Number of SVIDs held.
    pub fn svid_count(&self) -> usize {
        self.svids.len()
    }

    /// Number of entries held.
    pub fn entry_count(&self) -> usize {
        self.records.len()
    }

    /// Every entry, ordered by ID.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut out: Vec<_> = self.records.values().map(|r| r.entry.clone()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Every SVID held with its entry, ordered by entry ID.
    pub fn identities(&self) -> Vec<Identity> {
        let mut out: Vec<_> = self
            .records
            .iter()
            .filter_map(|(id, r)| {
                self.svids.get(id).map(|s| Identity {
                    entry: r.entry.clone(),
                    svid: s.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
        out
    }

    /// Applies a sync: the complete set of authorized entries (SVIDStore entries already
    /// removed) and the complete set of bundles. `should_rotate` says whether a held SVID is
    /// due for rotation at this point (the caller applies the rotation strategy and `now`);
    /// `now_ms` stamps nothing here but keeps the signature uniform with subscriptions.
    pub fn update_entries(
        &mut self,
        entries: &HashMap<String, Arc<Entry>>,
        bundles: BTreeMap<TrustDomain, Bundle>,
        should_rotate: &mut dyn FnMut(&Entry, &X509SvidRecord) -> bool,
    ) -> EntriesOutcome {
        let mut out = EntriesOutcome::default();

        // Bundles: federated ones may disappear; the own one never does.
        let removed_tds: Vec<TrustDomain> = self
            .bundles
            .keys()
            .filter(|td| !bundles.contains_key(*td) && **td != self.trust_domain)
            .cloned()
            .collect();
        for td in removed_tds {
            self.bundles.remove(&td);
            out.bundles_changed.push(td);
        }
        let mut changed_tds: HashSet<TrustDomain> = HashSet::new();
        for (td, bundle) in bundles {
            let same = self.bundles.get(&td).is_some_and(|b| **b == bundle);
            if !same {
                changed_tds.insert(td.clone());
                out.bundles_changed.push(td.clone());
                self.bundles.insert(td, Arc::new(bundle));
            }
        }
        let own_bundle_changed = changed_tds.contains(&self.trust_domain);

        let mut notify_sets: Vec<SelectorSet> = Vec::new();

        // Entries no longer authorized.
        let gone: Vec<String> = self
            .records
            .keys()
            .filter(|id| !entries.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(record) = self.records.remove(&id) {
                for s in &record.entry.selectors {
                    self.del_index_record(s, &id);
                }
                notify_sets.push(record.entry.selectors.iter().cloned().collect());
                out.removed.push(record.entry);
            }
            self.svids.remove(&id);
            self.stale.remove(&id);
        }

        // New and changed entries.
        let mut outdated: HashSet<String> = HashSet::new();
        let mut ids: Vec<&String> = entries.keys().collect();
        ids.sort();
        for id in ids {
            let Some(new_entry) = entries.get(id) else {
                continue;
            };
            let existing = self.records.get(id).map(|r| r.entry.clone());
            if existing.as_ref() == Some(new_entry) {
                // Unchanged, but a federated bundle it uses may have changed.
                if new_entry
                    .federates_with
                    .iter()
                    .any(|td| changed_tds.contains(td))
                {
                    notify_sets.push(new_entry.selectors.iter().cloned().collect());
                }
                continue;
            }
            // The mirror's allocation, shared rather than copied.
            let new_entry = new_entry.clone();
            let old_sel: SelectorSet = existing
                .as_ref()
                .map(|e| e.selectors.iter().cloned().collect())
                .unwrap_or_default();
            let new_sel: SelectorSet = new_entry.selectors.iter().cloned().collect();
            for s in new_sel.difference(&old_sel) {
                self.index
                    .entry(s.clone())
                    .or_default()
                    .records
                    .insert(id.clone());
            }
            for s in old_sel.difference(&new_sel) {
                self.del_index_record(s, id);
            }
            let selectors_changed = old_sel != new_sel;
            let old_fed: BTreeSet<&TrustDomain> = existing
                .as_ref()
                .map(|e| e.federates_with.iter().collect())
                .unwrap_or_default();
            let new_fed: BTreeSet<&TrustDomain> = new_entry.federates_with.iter().collect();
            let federation_changed = old_fed != new_fed
                || new_entry
                    .federates_with
                    .iter()
                    .any(|td| changed_tds.contains(td));
            if selectors_changed && existing.is_some() {
                notify_sets.push(old_sel);
            }
            // Any change of an entry (hint, revision, ...) can change what a workload sees.
            notify_sets.push(new_sel);
            let revision_changed = existing
                .as_ref()
                .is_some_and(|e| e.revision_number != new_entry.revision_number);
            if revision_changed {
                outdated.insert(id.clone());
            }
            match &existing {
                None => out.created.push(new_entry.clone()),
                Some(_) if selectors_changed || federation_changed || revision_changed => {
                    out.updated.push(new_entry.clone())
                }
                Some(_) => {}
            }
            match self.records.get_mut(id) {
                Some(r) => r.entry = new_entry,
                None => {
                    self.records.insert(
                        id.clone(),
                        Record {
                            entry: new_entry,
                            last_access_ms: 0,
                        },
                    );
                }
            }
        }

        let (active, mut by_access) = self.sync_svids_with_subscribers();

        // Soft size limit: drop SVIDs of the least recently used entries without an active
        // subscriber.
        let mut extra = self.svids.len().saturating_sub(self.max_svids);
        if extra > 0 {
            by_access.sort();
            for (_, id) in by_access {
                if extra == 0 {
                    break;
                }
                if self.svids.contains_key(&id) && !active.contains(&id) {
                    self.svids.remove(&id);
                    out.evicted.push(id);
                    extra -= 1;
                }
            }
        }

        for (id, svid) in &self.svids {
            // Counted as SPIRE counts them: due for rotation first, else changed.
            let due = self
                .records
                .get(id)
                .is_some_and(|r| should_rotate(&r.entry, svid));
            let changed = outdated.contains(id);
            if due {
                out.expiring += 1;
            } else if changed {
                out.outdated += 1;
            }
            if due || changed {
                self.stale.insert(id.clone());
            }
        }

        out.notify = if own_bundle_changed {
            let mut all: Vec<_> = self.subs.keys().copied().collect();
            all.sort_unstable();
            all
        } else {
            self.subscribers_for(&notify_sets)
        };
        out.created.sort_by(|a, b| a.id.cmp(&b.id));
        out.updated.sort_by(|a, b| a.id.cmp(&b.id));
        out.removed.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Marks for issuance the entries that active subscribers need and, while the size limit
    /// allows, any entry without an SVID. Returns the entries with an active subscriber and
    /// every record's last access (for eviction).
    fn sync_svids_with_subscribers(&mut self) -> (HashSet<String>, Vec<(i64, String)>) {
        let mut active = HashSet::new();
        let mut by_access = Vec::with_capacity(self.records.len());
        for (id, record) in &self.records {
            let has_sub = record.entry.selectors.iter().any(|s| {
                self.index
                    .get(s)
                    .is_some_and(|index| !index.subs.is_empty())
            });
            if has_sub {
                if !self.svids.contains_key(id) {
                    self.stale.insert(id.clone());
                }
                active.insert(id.clone());
            }
            by_access.push((record.last_access_ms, id.clone()));
        }
        let remainder = self.max_svids.saturating_sub(self.svids.len());
        let mut ids: Vec<&String> = self.records.keys().collect();
        ids.sort();
        for id in ids {
            if self.stale.len() >= remainder {
                break;
            }
            if !self.svids.contains_key(id) {
                self.stale.insert(id.clone());
            }
        }
        (active, by_access)
    }

    /// The periodic SVID check (SPIRE's `SyncSVIDsWithSubscribers`, every 500ms).
    pub fn refresh_stale_for_subscribers(&mut self) {
        let _ = self.sync_svids_with_subscribers();
    }

    /// Entries whose SVID must be issued, ordered by entry ID.
    pub fn stale_entries(&mut self) -> Vec<StaleEntry> {
        let records = &self.records;
        self.stale.retain(|id| records.contains_key(id));
        let mut out: Vec<StaleEntry> = self
            .stale
            .iter()
            .filter_map(|id| {
                self.records.get(id).map(|r| StaleEntry {
                    entry: r.entry.clone(),
                    svid_expires_at: self.svids.get(id).map(|s| s.not_after),
                })
            })
            .collect();
        out.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
        out
    }

    /// Stores newly issued SVIDs; returns the subscribers to notify. SVIDs of entries that
    /// disappeared meanwhile are ignored.
    pub fn update_svids(
        &mut self,
        svids: Vec<(String, X509SvidRecord)>,
    ) -> (Vec<SubscriberId>, Vec<String>) {
        let mut sets = Vec::new();
        let mut unknown = Vec::new();
        for (id, svid) in svids {
            let Some(record) = self.records.get(&id) else {
                unknown.push(id);
                continue;
            };
            sets.push(record.entry.selectors.iter().cloned().collect());
            self.svids.insert(id.clone(), Arc::new(svid));
            self.stale.remove(&id);
        }
        (self.subscribers_for(&sets), unknown)
    }

    /// Entries that hold an SVID, ordered by ID.
    pub fn svid_entry_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = self.svids.keys().cloned().collect();
        out.sort();
        out
    }

    /// SPIRE's `processTaintedSVIDs`: drops the SVIDs of `ids` that chain to one of the
    /// tainted `authorities` at `now`, so that they are minted again (entries without an SVID
    /// become stale at the next [`Cache::refresh_stale_for_subscribers`]). Subscribers are
    /// not notified: they keep the SVID they have until its replacement arrives.
    pub fn drop_tainted_svids(
        &mut self,
        ids: &[String],
        authorities: &[Vec<u8>],
        now: SystemTime,
    ) -> TaintedSvids {
        let mut out = TaintedSvids::default();
        for id in ids {
            let Some(svid) = self.svids.get(id) else {
                continue;
            };
            match signed_by_any(&svid.chain, authorities, now) {
                Ok(true) => {
                    self.svids.remove(id);
                    out.dropped.push(id.clone());
                }
                Ok(false) => {}
                Err(e) => out.errors.push((id.clone(), e)),
            }
        }
        out
    }

    /// Marks the SVIDs of `ids` stale (forced rotation, e.g. a tainted authority).
    pub fn mark_stale(&mut self, ids: &[String]) {
        for id in ids {
            if self.records.contains_key(id) {
                self.stale.insert(id.clone());
            }
        }
    }

    /// Registers a subscriber for `selectors` and stamps the access time of the entries it
    /// matches.
    pub fn subscribe(&mut self, selectors: &[Selector], now_ms: i64) -> SubscriberId {
        let id = self.next_sub;
        self.next_sub += 1;
        let set: SelectorSet = selectors.iter().cloned().collect();
        for s in &set {
            self.index.entry(s.clone()).or_default().subs.insert(id);
        }
        for rid in self.records_for(&set) {
            if let Some(r) = self.records.get_mut(&rid) {
                r.last_access_ms = now_ms;
            }
        }
        self.subs.insert(id, set);
        id
    }

    /// Removes a subscriber.
    pub fn unsubscribe(&mut self, id: SubscriberId) {
        if let Some(set) = self.subs.remove(&id) {
            for s in set {
                if let Some(index) = self.index.get_mut(&s) {
                    index.subs.remove(&id);
                    if index.is_empty() {
                        self.index.remove(&s);
                    }
                }
            }
        }
    }

    /// Stamps the access time of the entries matching `selectors` (a one-shot fetch).
    pub fn touch(&mut self, selectors: &[Selector], now_ms: i64) {
        let set: SelectorSet = selectors.iter().cloned().collect();
        for rid in self.records_for(&set) {
            if let Some(r) = self.records.get_mut(&rid) {
                r.last_access_ms = now_ms;
            }
        }
    }

    /// The selectors of a subscriber.
    pub fn subscriber_selectors(&self, id: SubscriberId) -> Option<&SelectorSet> {
        self.subs.get(&id)
    }

    /// Whether some entry matching `selectors` has no SVID yet.
    pub fn missing_svids(&self, selectors: &SelectorSet) -> bool {
        self.records_for(selectors)
            .iter()
            .any(|id| !self.svids.contains_key(id))
    }

    /// Entries matching `selectors` (entry selectors ⊆ workload selectors), by ID.
    pub fn matching_entries(&self, selectors: &SelectorSet) -> Vec<Arc<Entry>> {
        let mut ids = self.records_for(selectors);
        ids.sort();
        ids.iter()
            .filter_map(|id| self.records.get(id).map(|r| r.entry.clone()))
            .collect()
    }

    /// What a workload with `selectors` gets now.
    pub fn workload_update(&self, selectors: &SelectorSet) -> WorkloadUpdate {
        let mut ids = self.records_for(selectors);
        ids.sort();
        let identities: Vec<Identity> = ids
            .iter()
            .filter_map(|id| {
                let r = self.records.get(id)?;
                let svid = self.svids.get(id)?;
                Some(Identity {
                    entry: r.entry.clone(),
                    svid: svid.clone(),
                })
            })
            .collect();
        let mut federated_bundles = BTreeMap::new();
        for identity in &identities {
            for td in &identity.entry.federates_with {
                if let Some(b) = self.bundles.get(td) {
                    federated_bundles.insert(td.clone(), b.clone());
                }
            }
        }
        WorkloadUpdate {
            identities,
            bundle: self.bundle(),
            federated_bundles,
        }
    }

    fn records_for(&self, set: &SelectorSet) -> Vec<String> {
        let mut candidates: HashSet<&String> = HashSet::new();
        for s in set {
            if let Some(index) = self.index.get(s) {
                candidates.extend(index.records.iter());
            }
        }
        candidates
            .into_iter()
            .filter(|id| {
                self.records
                    .get(*id)
                    .is_some_and(|r| r.entry.selectors.iter().all(|s| set.contains(s)))
            })
            .cloned()
            .collect()
    }

    fn subscribers_for(&self, sets: &[SelectorSet]) -> Vec<SubscriberId> {
        let mut out: BTreeSet<SubscriberId> = BTreeSet::new();
        for set in sets {
            for s in set {
                let Some(index) = self.index.get(s) else {
                    continue;
                };
                for sub in &index.subs {
                    if out.contains(sub) {
                        continue;
                    }
                    if self.subs.get(sub).is_some_and(|ss| set.is_subset(ss)) {
                        out.insert(*sub);
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    fn del_index_record(&mut self, s: &Selector, id: &str) {
        if let Some(index) = self.index.get_mut(s) {
            index.records.remove(id);
            if index.is_empty() {
                self.index.remove(s);
            }
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
