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

use arcstr::ArcStr;

use crate::core::entry::{Entry, SelectorKey, X509SvidRecord, selector_key};
use crate::core::sync::EntryMap;
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

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<T> = HashSet<T, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Record {
    entry: Arc<Entry>,
    last_access_ms: i64,
}

/// The entries that have one selector. Nearly always one (an entry's own selector), so
/// one pointer, and a boxed set for a selector many entries share.
#[derive(Debug)]
enum Holders {
    /// One entry.
    One(ArcStr),
    /// Several (never fewer than two).
    Many(Box<Set<ArcStr>>),
}

impl Holders {
    fn add(&mut self, id: &ArcStr) {
        match self {
            Self::One(first) if first == id => {}
            Self::One(first) => {
                let mut set = Set::default();
                set.insert(first.clone());
                set.insert(id.clone());
                *self = Self::Many(Box::new(set));
            }
            Self::Many(set) => {
                set.insert(id.clone());
            }
        }
    }

    /// Removes `id`; whether none is left.
    fn remove(&mut self, id: &str) -> bool {
        match self {
            Self::One(only) => only.as_str() == id,
            Self::Many(set) => {
                set.remove(id);
                if set.len() > 1 {
                    return false;
                }
                match set.iter().next().cloned() {
                    Some(last) => {
                        *self = Self::One(last);
                        false
                    }
                    None => true,
                }
            }
        }
    }

    fn ids(&self) -> impl Iterator<Item = &ArcStr> {
        let (one, many) = match self {
            Self::One(id) => (Some(id), None),
            Self::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// A workload's selectors as the cache matches entries against them: `type:value` keys.
/// Built once per request, before the cache's lock is taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorKeys(Set<String>);

impl SelectorKeys {
    /// The keys of `selectors`.
    pub fn new<'a>(selectors: impl IntoIterator<Item = &'a Selector>) -> Self {
        Self(
            selectors
                .into_iter()
                .map(|s| selector_key(s.selector_type(), s.value()))
                .collect(),
        )
    }

    fn contains(&self, key: &str) -> bool {
        self.0.contains(key)
    }

    fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

/// A subscriber's selectors, also as keys for matching against entries.
#[derive(Debug)]
struct Subscriber {
    selectors: SelectorSet,
    keys: SelectorKeys,
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    trust_domain: TrustDomain,
    max_svids: usize,
    /// Entries by ID; the key is the entry's `id`.
    records: Map<ArcStr, Record>,
    /// Entries by selector; the key is the entries' own (interned) selector.
    index: Map<SelectorKey, Holders>,
    /// Subscribers by selector (`type:value`).
    sub_index: Map<String, Set<SubscriberId>>,
    subs: Map<SubscriberId, Subscriber>,
    next_sub: SubscriberId,
    svids: Map<String, Arc<X509SvidRecord>>,
    stale: Set<String>,
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
            records: Map::default(),
            index: Map::default(),
            sub_index: Map::default(),
            subs: Map::default(),
            next_sub: 1,
            svids: Map::default(),
            stale: Set::default(),
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
                self.svids.get(id.as_str()).map(|s| Identity {
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
    /// due for rotation at this point (the caller applies the rotation strategy and `now`).
    pub fn update_entries(
        &mut self,
        entries: &EntryMap,
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

        // Subscribers to notify, collected as entries change (no subscriber changes here).
        let mut notify: BTreeSet<SubscriberId> = BTreeSet::new();

        // Entries no longer authorized.
        let gone: Vec<ArcStr> = self
            .records
            .keys()
            .filter(|id| !entries.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(record) = self.records.remove(id.as_str()) {
                for s in record.entry.selector_keys() {
                    self.del_index_record(s, &id);
                }
                self.add_subscribers(record.entry.selector_keys(), &mut notify);
                out.removed.push(record.entry);
            }
            self.svids.remove(id.as_str());
            self.stale.remove(id.as_str());
        }

        // New and changed entries.
        let mut outdated: Set<ArcStr> = Set::default();
        let mut ids: Vec<&ArcStr> = entries.keys().collect();
        ids.sort();
        for id in ids {
            let Some(new_entry) = entries.get(id.as_str()) else {
                continue;
            };
            let existing = self.records.get(id.as_str()).map(|r| r.entry.clone());
            if existing.as_ref() == Some(new_entry) {
                // Unchanged, but a federated bundle it uses may have changed.
                if new_entry
                    .federates_with()
                    .iter()
                    .any(|td| changed_tds.contains(td))
                {
                    self.add_subscribers(new_entry.selector_keys(), &mut notify);
                }
                continue;
            }
            // The mirror's allocation, shared rather than copied.
            let new_entry = new_entry.clone();
            let old_sel: &[SelectorKey] = existing.as_ref().map_or(&[], |e| e.selector_keys());
            let new_sel = new_entry.selector_keys();
            for s in new_sel {
                if !old_sel.contains(s) {
                    self.add_index_record(s, id);
                }
            }
            for s in old_sel {
                if !new_sel.contains(s) {
                    self.del_index_record(s, id);
                }
            }
            // Both are sorted and without duplicates.
            let selectors_changed = old_sel != new_sel;
            let old_fed: BTreeSet<&TrustDomain> = existing
                .as_ref()
                .map(|e| e.federates_with().iter().collect())
                .unwrap_or_default();
            let new_fed: BTreeSet<&TrustDomain> = new_entry.federates_with().iter().collect();
            let federation_changed = old_fed != new_fed
                || new_entry
                    .federates_with()
                    .iter()
                    .any(|td| changed_tds.contains(td));
            if selectors_changed && existing.is_some() {
                self.add_subscribers(old_sel, &mut notify);
            }
            // Any change of an entry (hint, revision, ...) can change what a workload sees.
            self.add_subscribers(new_sel, &mut notify);
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
            match self.records.get_mut(id.as_str()) {
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

        let active = self.sync_svids_with_subscribers();

        // Soft size limit: drop SVIDs of the least recently used entries without an active
        // subscriber.
        let mut extra = self.svids.len().saturating_sub(self.max_svids);
        if extra > 0 {
            let mut by_access: Vec<(i64, &ArcStr)> = self
                .records
                .iter()
                .map(|(id, r)| (r.last_access_ms, id))
                .collect();
            by_access.sort();
            let mut evict = Vec::new();
            for (_, id) in by_access {
                if extra == 0 {
                    break;
                }
                if self.svids.contains_key(id.as_str()) && !active.contains(id.as_str()) {
                    evict.push(id.to_string());
                    extra -= 1;
                }
            }
            for id in evict {
                self.svids.remove(&id);
                out.evicted.push(id);
            }
        }

        for (id, svid) in &self.svids {
            // Counted as SPIRE counts them: due for rotation first, else changed.
            let due = self
                .records
                .get(id.as_str())
                .is_some_and(|r| should_rotate(&r.entry, svid));
            let changed = outdated.contains(id.as_str());
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
            notify.into_iter().collect()
        };
        out.created.sort_by(|a, b| a.id.cmp(&b.id));
        out.updated.sort_by(|a, b| a.id.cmp(&b.id));
        out.removed.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Marks for issuance the entries that active subscribers need and, while the size limit
    /// allows, any entry without an SVID. Returns the entries with an active subscriber.
    fn sync_svids_with_subscribers(&mut self) -> Set<ArcStr> {
        let mut active = Set::default();
        if !self.sub_index.is_empty() {
            for (id, record) in &self.records {
                let has_sub = record
                    .entry
                    .selector_keys()
                    .iter()
                    .any(|s| self.sub_index.contains_key(s.as_str()));
                if has_sub {
                    if !self.svids.contains_key(id.as_str()) {
                        self.stale.insert(id.to_string());
                    }
                    active.insert(id.clone());
                }
            }
        }
        let remainder = self.max_svids.saturating_sub(self.svids.len());
        if self.stale.len() < remainder {
            let mut ids: Vec<&ArcStr> = self.records.keys().collect();
            ids.sort();
            for id in ids {
                if self.stale.len() >= remainder {
                    break;
                }
                if !self.svids.contains_key(id.as_str()) && !self.stale.contains(id.as_str()) {
                    self.stale.insert(id.to_string());
                }
            }
        }
        active
    }

    /// The periodic SVID check (SPIRE's `SyncSVIDsWithSubscribers`, every 500ms).
    pub fn refresh_stale_for_subscribers(&mut self) {
        let _ = self.sync_svids_with_subscribers();
    }

    /// Entries whose SVID must be issued, ordered by entry ID.
    pub fn stale_entries(&mut self) -> Vec<StaleEntry> {
        let records = &self.records;
        self.stale.retain(|id| records.contains_key(id.as_str()));
        let mut out: Vec<StaleEntry> = self
            .stale
            .iter()
            .filter_map(|id| {
                self.records.get(id.as_str()).map(|r| StaleEntry {
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
        let mut notify = BTreeSet::new();
        let mut unknown = Vec::new();
        for (id, svid) in svids {
            let Some(record) = self.records.get(id.as_str()) else {
                unknown.push(id);
                continue;
            };
            self.add_subscribers(record.entry.selector_keys(), &mut notify);
            self.stale.remove(&id);
            self.svids.insert(id, Arc::new(svid));
        }
        (notify.into_iter().collect(), unknown)
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
            if self.records.contains_key(id.as_str()) {
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
        let keys = SelectorKeys::new(&set);
        for k in keys.iter() {
            self.sub_index.entry(k.clone()).or_default().insert(id);
        }
        self.touch(&keys, now_ms);
        self.subs.insert(
            id,
            Subscriber {
                selectors: set,
                keys,
            },
        );
        id
    }

    /// Removes a subscriber.
    pub fn unsubscribe(&mut self, id: SubscriberId) {
        if let Some(sub) = self.subs.remove(&id) {
            for k in sub.keys.iter() {
                if let Some(subs) = self.sub_index.get_mut(k) {
                    subs.remove(&id);
                    if subs.is_empty() {
                        self.sub_index.remove(k);
                    }
                }
            }
        }
    }

    /// Stamps the access time of the entries matching `keys` (a one-shot fetch).
    pub fn touch(&mut self, keys: &SelectorKeys, now_ms: i64) {
        for rid in self.records_for(keys) {
            if let Some(r) = self.records.get_mut(rid.as_str()) {
                r.last_access_ms = now_ms;
            }
        }
    }

    /// The selectors of a subscriber.
    pub fn subscriber_selectors(&self, id: SubscriberId) -> Option<&SelectorSet> {
        self.subs.get(&id).map(|s| &s.selectors)
    }

    /// Whether some entry matching `keys` has no SVID yet.
    pub fn missing_svids(&self, keys: &SelectorKeys) -> bool {
        self.records_for(keys)
            .iter()
            .any(|id| !self.svids.contains_key(id.as_str()))
    }

    /// Entries matching `keys` (entry selectors ⊆ workload selectors), by ID.
    pub fn matching_entries(&self, keys: &SelectorKeys) -> Vec<Arc<Entry>> {
        let mut ids = self.records_for(keys);
        ids.sort();
        ids.iter()
            .filter_map(|id| self.records.get(id.as_str()).map(|r| r.entry.clone()))
            .collect()
    }

    /// What a workload with `keys` gets now.
    pub fn workload_update(&self, keys: &SelectorKeys) -> WorkloadUpdate {
        let mut ids = self.records_for(keys);
        ids.sort();
        let identities: Vec<Identity> = ids
            .iter()
            .filter_map(|id| {
                let r = self.records.get(id.as_str())?;
                let svid = self.svids.get(id.as_str())?;
                Some(Identity {
                    entry: r.entry.clone(),
                    svid: svid.clone(),
                })
            })
            .collect();
        let mut federated_bundles = BTreeMap::new();
        for identity in &identities {
            for td in identity.entry.federates_with() {
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

    /// The entries whose selectors are all among `keys` (`type:value`).
    fn records_for(&self, keys: &SelectorKeys) -> Vec<ArcStr> {
        let mut candidates: Set<&ArcStr> = Set::default();
        for k in keys.iter() {
            if let Some(holders) = self.index.get(k.as_str()) {
                candidates.extend(holders.ids());
            }
        }
        candidates
            .into_iter()
            .filter(|id| {
                self.records.get(id.as_str()).is_some_and(|r| {
                    r.entry
                        .selector_keys()
                        .iter()
                        .all(|s| keys.contains(s.as_str()))
                })
            })
            .cloned()
            .collect()
    }

    /// Adds to `out` the subscribers an entry with selectors `keys` matches (its
    /// selectors ⊆ the subscriber's).
    fn add_subscribers(&self, keys: &[SelectorKey], out: &mut BTreeSet<SubscriberId>) {
        for k in keys {
            let Some(subs) = self.sub_index.get(k.as_str()) else {
                continue;
            };
            for sub in subs {
                if out.contains(sub) {
                    continue;
                }
                if self
                    .subs
                    .get(sub)
                    .is_some_and(|s| keys.iter().all(|k| s.keys.contains(k.as_str())))
                {
                    out.insert(*sub);
                }
            }
        }
    }

    fn add_index_record(&mut self, s: &SelectorKey, id: &ArcStr) {
        match self.index.get_mut(s.as_str()) {
            Some(holders) => holders.add(id),
            None => {
                self.index.insert(s.clone(), Holders::One(id.clone()));
            }
        }
    }

    fn del_index_record(&mut self, s: &str, id: &str) {
        if let Some(holders) = self.index.get_mut(s)
            && holders.remove(id)
        {
            self.index.remove(s);
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
