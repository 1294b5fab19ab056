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
            let rotate = outdated.contains(id)
                || self
                    .records
                    .get(id)
                    .is_some_and(|r| should_rotate(&r.entry, svid));
            if rotate {
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
mod tests {
    use super::*;
    use crate::core::entry::testing::entry;
    use std::time::{Duration, UNIX_EPOCH};

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn svid(tag: u8) -> X509SvidRecord {
        X509SvidRecord {
            chain: vec![vec![tag]],
            key_pkcs8: vec![tag],
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH + Duration::from_secs(100),
        }
    }

    fn sel(s: &[&str]) -> Vec<Selector> {
        s.iter().map(|x| Selector::parse(x).unwrap()).collect()
    }

    fn set(s: &[&str]) -> SelectorSet {
        sel(s).into_iter().collect()
    }

    fn entries(list: &[Entry]) -> HashMap<String, Arc<Entry>> {
        list.iter()
            .map(|e| (e.id.clone(), Arc::new(e.clone())))
            .collect()
    }

    fn own_bundles() -> BTreeMap<TrustDomain, Bundle> {
        let mut m = BTreeMap::new();
        m.insert(td(), Bundle::new(td()));
        m
    }

    fn never(_: &Entry, _: &X509SvidRecord) -> bool {
        false
    }

    #[test]
    fn matching_is_subset_and_svids_flow() {
        let mut c = Cache::new(td(), Bundle::new(td()), 0);
        let es = entries(&[
            entry("a", "/a", &["unix:uid:1"], 1),
            entry("b", "/b", &["unix:uid:1", "unix:gid:2"], 1),
            entry("c", "/c", &["unix:uid:3"], 1),
        ]);
        let out = c.update_entries(&es, own_bundles(), &mut never);
        assert_eq!(out.created.len(), 3);
        // Room in the cache: everything is stale (to be minted).
        let stale: Vec<_> = c
            .stale_entries()
            .into_iter()
            .map(|s| s.entry.id.clone())
            .collect();
        assert_eq!(stale, ["a", "b", "c"]);

        let w = set(&["unix:uid:1", "unix:gid:2", "unix:user:x"]);
        let m: Vec<_> = c
            .matching_entries(&w)
            .iter()
            .map(|e| e.id.clone())
            .collect();
        assert_eq!(m, ["a", "b"]);
        assert!(c.missing_svids(&w));
        assert!(!c.workload_update(&w).has_identity());

        let sub = c.subscribe(&sel(&["unix:uid:1", "unix:gid:2"]), 5);
        let other = c.subscribe(&sel(&["unix:uid:3"]), 5);
        let (notify, unknown) = c.update_svids(vec![
            ("a".into(), svid(1)),
            ("b".into(), svid(2)),
            ("zzz".into(), svid(9)),
        ]);
        assert_eq!(notify, [sub]);
        assert_eq!(unknown, ["zzz"]);
        assert!(!c.missing_svids(&w));
        let u = c.workload_update(&set(&["unix:uid:1", "unix:gid:2"]));
        assert_eq!(u.identities.len(), 2);
        assert_eq!(u.identities[0].entry.id, "a");
        assert!(u.bundle.is_some());
        let stale: Vec<_> = c
            .stale_entries()
            .into_iter()
            .map(|s| s.entry.id.clone())
            .collect();
        assert_eq!(stale, ["c"]);

        // Deleting b notifies only the subscriber whose selectors cover b's.
        let es2 = entries(&[
            entry("a", "/a", &["unix:uid:1"], 1),
            entry("c", "/c", &["unix:uid:3"], 1),
        ]);
        let out = c.update_entries(&es2, own_bundles(), &mut never);
        assert_eq!(out.removed.len(), 1);
        assert_eq!(out.notify, [sub]);
        assert_eq!(c.svid_count(), 1);
        c.unsubscribe(sub);
        c.unsubscribe(other);
        assert!(c.subscriber_selectors(sub).is_none());
    }

    #[test]
    fn revision_change_and_rotation_mark_stale() {
        let mut c = Cache::new(td(), Bundle::new(td()), 0);
        c.update_entries(
            &entries(&[
                entry("a", "/a", &["unix:uid:1"], 1),
                entry("b", "/b", &["unix:uid:2"], 1),
            ]),
            own_bundles(),
            &mut never,
        );
        c.update_svids(vec![("a".into(), svid(1)), ("b".into(), svid(2))]);
        assert!(c.stale_entries().is_empty());
        let out = c.update_entries(
            &entries(&[
                entry("a", "/a", &["unix:uid:1"], 2),
                entry("b", "/b", &["unix:uid:2"], 1),
            ]),
            own_bundles(),
            &mut |e: &Entry, _: &X509SvidRecord| e.id == "b",
        );
        assert_eq!(out.updated.len(), 1);
        let stale = c.stale_entries();
        assert_eq!(stale.len(), 2);
        assert_eq!(
            stale[0].svid_expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(100))
        );
    }

    #[test]
    fn own_bundle_change_notifies_everyone() {
        let mut c = Cache::new(td(), Bundle::new(td()), 0);
        c.update_entries(
            &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
            own_bundles(),
            &mut never,
        );
        let s1 = c.subscribe(&sel(&["unix:uid:1"]), 0);
        let s2 = c.subscribe(&sel(&["unix:uid:9"]), 0);
        let mut b = Bundle::new(td());
        b.refresh_hint = Some(5);
        let mut bundles = BTreeMap::new();
        bundles.insert(td(), b);
        let out = c.update_entries(
            &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
            bundles.clone(),
            &mut never,
        );
        assert_eq!(out.notify, [s1, s2]);
        assert_eq!(out.bundles_changed, [td()]);
        // Unchanged: nobody.
        let out = c.update_entries(
            &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
            bundles,
            &mut never,
        );
        assert!(out.notify.is_empty());
        assert!(out.bundles_changed.is_empty());
    }

    #[test]
    fn federated_bundles_only_for_federates_with() {
        let fed = TrustDomain::new("other.org").unwrap();
        let mut c = Cache::new(td(), Bundle::new(td()), 0);
        let mut a = entry("a", "/a", &["unix:uid:1"], 1);
        a.federates_with = vec![fed.clone()];
        let b = entry("b", "/b", &["unix:uid:2"], 1);
        let mut bundles = own_bundles();
        bundles.insert(fed.clone(), Bundle::new(fed.clone()));
        c.update_entries(
            &entries(&[a.clone(), b.clone()]),
            bundles.clone(),
            &mut never,
        );
        c.update_svids(vec![("a".into(), svid(1)), ("b".into(), svid(2))]);
        assert_eq!(
            c.workload_update(&set(&["unix:uid:1"]))
                .federated_bundles
                .len(),
            1
        );
        assert!(
            c.workload_update(&set(&["unix:uid:2"]))
                .federated_bundles
                .is_empty()
        );
        // A federated bundle change notifies the federating subscriber only.
        let s1 = c.subscribe(&sel(&["unix:uid:1"]), 0);
        let _s2 = c.subscribe(&sel(&["unix:uid:2"]), 0);
        let mut fb = Bundle::new(fed.clone());
        fb.sequence_number = Some(2);
        bundles.insert(fed.clone(), fb);
        let out = c.update_entries(&entries(&[a, b]), bundles, &mut never);
        assert_eq!(out.notify, [s1]);
        // Removal of the federated bundle.
        let out = c.update_entries(
            &entries(&[entry("b", "/b", &["unix:uid:2"], 1)]),
            own_bundles(),
            &mut never,
        );
        assert_eq!(out.bundles_changed, [fed]);
    }

    #[test]
    fn lru_eviction_spares_active_subscribers() {
        let mut c = Cache::new(td(), Bundle::new(td()), 2);
        let es = entries(&[
            entry("a", "/a", &["unix:uid:1"], 1),
            entry("b", "/b", &["unix:uid:2"], 1),
            entry("c", "/c", &["unix:uid:3"], 1),
        ]);
        c.update_entries(&es, own_bundles(), &mut never);
        // Only two fit: a and b are stale, c waits.
        let stale: Vec<_> = c
            .stale_entries()
            .into_iter()
            .map(|s| s.entry.id.clone())
            .collect();
        assert_eq!(stale, ["a", "b"]);
        c.update_svids(vec![("a".into(), svid(1)), ("b".into(), svid(2))]);
        // a was used recently, b not; a subscriber for c arrives.
        c.touch(&sel(&["unix:uid:1"]), 100);
        let sub = c.subscribe(&sel(&["unix:uid:3"]), 200);
        c.refresh_stale_for_subscribers();
        let stale: Vec<_> = c
            .stale_entries()
            .into_iter()
            .map(|s| s.entry.id.clone())
            .collect();
        assert_eq!(stale, ["c"]);
        c.update_svids(vec![("c".into(), svid(3))]);
        assert_eq!(c.svid_count(), 3);
        // Next sync evicts the least recently used SVID without a subscriber: b.
        let out = c.update_entries(&es, own_bundles(), &mut never);
        assert_eq!(out.evicted, ["b"]);
        assert_eq!(c.svid_count(), 2);
        assert!(c.workload_update(&set(&["unix:uid:3"])).has_identity());
        c.unsubscribe(sub);
        assert_eq!(c.entry_count(), 3);
        assert_eq!(c.entries().len(), 3);
        assert_eq!(c.identities().len(), 2);
    }

    #[test]
    fn svids_of_a_tainted_authority_are_dropped_and_minted_again() {
        use crate::core::taint::testing::{ca, svid as chain, t};
        let old = ca(t(0));
        let new = ca(t(0));
        let record = |chain: Vec<Vec<u8>>| X509SvidRecord {
            chain,
            key_pkcs8: vec![],
            not_before: t(10),
            not_after: t(610),
        };
        let mut c = Cache::new(td(), Bundle::new(td()), 0);
        c.update_entries(
            &entries(&[
                entry("a", "/a", &["unix:uid:1"], 1),
                entry("b", "/b", &["unix:uid:1"], 1),
            ]),
            own_bundles(),
            &mut never,
        );
        c.update_svids(vec![
            ("a".into(), record(chain(&old, t(10)))),
            ("b".into(), record(chain(&new, t(10)))),
        ]);
        let sub = c.subscribe(&sel(&["unix:uid:1"]), 0);
        assert!(c.stale_entries().is_empty());
        assert_eq!(c.svid_entry_ids(), ["a", "b"]);

        let out = c.drop_tainted_svids(
            &["a".into(), "b".into(), "gone".into()],
            &[old.certificate().to_vec()],
            t(20),
        );
        assert_eq!(out.dropped, ["a"]);
        assert!(out.errors.is_empty());
        assert_eq!(c.svid_entry_ids(), ["b"]);
        // The next SVID sync mints it again, as a creation.
        c.refresh_stale_for_subscribers();
        let stale = c.stale_entries();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].entry.id, "a");
        assert_eq!(stale[0].svid_expires_at, None);
        // An SVID that cannot be judged (expired) is kept and reported.
        let out = c.drop_tainted_svids(&["b".into()], &[new.certificate().to_vec()], t(5000));
        assert!(out.dropped.is_empty());
        assert_eq!(out.errors.len(), 1);
        c.unsubscribe(sub);
    }

    #[test]
    fn selector_change_moves_the_entry() {
        let mut c = Cache::new(td(), Bundle::new(td()), 0);
        c.update_entries(
            &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
            own_bundles(),
            &mut never,
        );
        c.update_svids(vec![("a".into(), svid(1))]);
        let s1 = c.subscribe(&sel(&["unix:uid:1"]), 0);
        let s2 = c.subscribe(&sel(&["unix:uid:2"]), 0);
        let out = c.update_entries(
            &entries(&[entry("a", "/a", &["unix:uid:2"], 2)]),
            own_bundles(),
            &mut never,
        );
        assert_eq!(out.notify, [s1, s2]);
        assert!(!c.workload_update(&set(&["unix:uid:1"])).has_identity());
        assert!(c.workload_update(&set(&["unix:uid:2"])).has_identity());
        c.mark_stale(&["a".into(), "nope".into()]);
        assert_eq!(c.stale_entries().len(), 1);
    }
}
