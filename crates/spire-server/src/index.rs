//! The in-memory index of registration entries and attested agents.
//!
//! It answers, without touching the database, the questions asked on every agent call:
//! which entries may agent X see (descendants of its ID and of the node aliases its node
//! selectors satisfy), is this caller a current agent, does this ID have an admin or
//! downstream entry. It is built once at start-up by streaming the tables and then kept
//! current from our own writes and from the `*_events` tables (writes of other servers).
//!
//! No I/O and no clock: callers pass `now` where expiry matters.

mod entry;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arcstr::ArcStr;

use spiffe_core::SpiffeId;
use spire_datastore::{AttestedNode, EntryFields};
use spire_plugin::Selector;

#[cfg(test)]
pub use entry::RebuildError;
use entry::{ById, BySpiffeId, Interner};
pub use entry::{EntryRef, IndexedEntry, split_id};

/// The index's maps hash with foldhash: keyed by IDs the admin API accepts, hashed several
/// times per entry at start-up (a tenth of the cold-start time with SipHash).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<T> = HashSet<T, foldhash::fast::RandomState>;

/// An agent's selectors, as `type:value` strings.
pub type AgentSelectors = Arc<HashSet<Box<str>>>;

/// What the index knows of an attested agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// Serial number (decimal) of the current agent SVID; empty when banned.
    pub cert_serial_number: String,
    /// Serial number of an SVID issued by RenewAgent and not used yet.
    pub new_cert_serial_number: String,
    /// NotAfter of the current SVID, Unix seconds.
    pub cert_not_after: i64,
    /// NotAfter of the new SVID.
    pub new_cert_not_after: i64,
    /// Whether the agent re-attests instead of renewing.
    pub can_reattest: bool,
    /// Node attestor name.
    pub attestation_type: String,
    /// Node selectors.
    pub selectors: AgentSelectors,
}

impl AgentRecord {
    /// From a datastore node (its selectors field is ignored; see [`EntryIndex::set_agent_selectors`]).
    pub fn from_node(node: &AttestedNode, selectors: AgentSelectors) -> Self {
        Self {
            cert_serial_number: node.cert_serial_number.clone(),
            new_cert_serial_number: node.new_cert_serial_number.clone(),
            cert_not_after: node.cert_not_after,
            new_cert_not_after: node.new_cert_not_after,
            can_reattest: node.can_reattest,
            attestation_type: node.attestation_data_type.clone(),
            selectors,
        }
    }

    /// Banned agents have no current serial number.
    pub fn is_banned(&self) -> bool {
        self.cert_serial_number.is_empty()
    }
}

fn agent_selectors(selectors: Vec<Selector>) -> AgentSelectors {
    Arc::new(
        selectors
            .iter()
            .map(|s| spire_plugin::selector_key(s.selector_type(), s.value()).into_boxed_str())
            .collect(),
    )
}

/// See [`EntryIndex::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Agents (SPIRE's `AgentsByID` and `AgentsByExpiresAt`).
    pub agents: usize,
    /// Node-alias records (`AliasesByEntryID` and `AliasesBySelector`).
    pub alias_records: usize,
    /// Entries that are not node aliases (`EntriesByEntryID` and `EntriesByParentID`).
    pub entries: usize,
}

/// The index. Not synchronised: the server wraps it in a lock.
///
/// Every map holds the same shared [`IndexedEntry`]; see its module for what one costs.
#[derive(Debug)]
pub struct EntryIndex {
    server_id: String,
    entries: Set<ById>,
    /// Keyed by the shared copy of each parent ID, which the entries point to.
    by_parent: Map<ArcStr, Set<ById>>,
    by_spiffe_id: Set<BySpiffeId>,
    aliases_by_selector: Map<ArcStr, Set<ById>>,
    selectors: Interner,
    agents: HashMap<String, AgentRecord>,
    revision: u64,
}

fn remove_from(map: &mut Map<ArcStr, Set<ById>>, key: &str, id: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl EntryIndex {
    /// An empty index for the trust domain whose server ID is `server_id`
    /// (`spiffe://<td>/spire/server`, the parent of node aliases).
    pub fn new(server_id: &SpiffeId) -> Self {
        Self {
            server_id: server_id.to_string(),
            entries: Set::default(),
            by_parent: Map::default(),
            by_spiffe_id: Set::default(),
            aliases_by_selector: Map::default(),
            selectors: Interner::default(),
            agents: HashMap::new(),
            revision: 0,
        }
    }

    /// Makes room for `entries` entries at once. Loading a million entries into maps that
    /// double as they fill leaves each map's earlier tables behind as free but resident
    /// heap (about 80 MiB at a million entries); sizing them first does not.
    pub fn reserve(&mut self, entries: usize) {
        self.entries.reserve(entries);
        self.by_spiffe_id.reserve(entries);
        self.selectors.reserve(entries);
    }

    /// A counter that grows with every change; agents watching for changes compare it.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of entries.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Number of agents.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// The sizes SPIRE's events-based cache reports (`authorizedentries.CacheStats`):
    /// agents, node-alias records (one per alias entry and selector) and the other entries.
    pub fn stats(&self) -> CacheStats {
        let alias_entries = self
            .by_parent
            .get(self.server_id.as_str())
            .map_or(0, Set::len);
        CacheStats {
            agents: self.agents.len(),
            alias_records: self.aliases_by_selector.values().map(Set::len).sum(),
            entries: self.entries.len().saturating_sub(alias_entries),
        }
    }

    /// Inserts or replaces an entry.
    pub fn upsert_entry(&mut self, entry: &(impl EntryFields + ?Sized)) {
        self.remove_entry(entry.entry_id());
        let parent = entry.parent_id();
        let parent_key = match self.by_parent.get_key_value(parent) {
            Some((k, _)) => k.clone(),
            None => ArcStr::from(parent),
        };
        let interner = &mut self.selectors;
        let e: EntryRef = Arc::new(IndexedEntry::new(entry, parent_key.clone(), |k| {
            interner.intern(k)
        }));
        if parent == self.server_id {
            for s in e.selector_keys() {
                self.aliases_by_selector
                    .entry(s.clone())
                    .or_default()
                    .insert(ById(e.clone()));
            }
        }
        self.by_parent
            .entry(parent_key)
            .or_default()
            .insert(ById(e.clone()));
        let same_id = match self.by_spiffe_id.take(e.spiffe_id()) {
            Some(others) => others.add(e.clone()),
            None => BySpiffeId::One(e.clone()),
        };
        self.by_spiffe_id.insert(same_id);
        self.entries.insert(ById(e));
        self.revision += 1;
    }

    /// Removes an entry; returns it if it was there.
    pub fn remove_entry(&mut self, entry_id: &str) -> Option<EntryRef> {
        let old = self.entries.take(entry_id)?.0;
        if old.parent_id() == self.server_id {
            for s in old.selector_keys() {
                remove_from(&mut self.aliases_by_selector, s, entry_id);
            }
        }
        remove_from(&mut self.by_parent, old.parent_id(), entry_id);
        if let Some(rest) = self
            .by_spiffe_id
            .take(old.spiffe_id())
            .and_then(|same_id| same_id.remove(entry_id))
        {
            self.by_spiffe_id.insert(rest);
        }
        self.revision += 1;
        Some(old)
    }

    /// An entry by ID.
    pub fn entry(&self, entry_id: &str) -> Option<&EntryRef> {
        self.entries.get(entry_id).map(|e| &e.0)
    }

    /// Entries whose SPIFFE ID is `id`.
    fn entries_by_spiffe_id(&self, id: &str) -> &[EntryRef] {
        self.by_spiffe_id.get(id).map_or(&[], BySpiffeId::as_slice)
    }

    /// Whether some entry for `id` has `admin` set.
    pub fn is_admin(&self, id: &str) -> bool {
        self.entries_by_spiffe_id(id).iter().any(|e| e.admin())
    }

    /// Whether some entry for `id` has `downstream` set.
    pub fn is_downstream(&self, id: &str) -> bool {
        self.entries_by_spiffe_id(id).iter().any(|e| e.downstream())
    }

    /// Inserts or replaces an agent, keeping its selectors if `selectors` is `None`.
    pub fn upsert_agent(&mut self, node: &AttestedNode, selectors: Option<Vec<Selector>>) {
        let id = node.spiffe_id.to_string();
        let selectors = match selectors {
            Some(s) => agent_selectors(s),
            None => self
                .agents
                .get(&id)
                .map(|a| a.selectors.clone())
                .unwrap_or_default(),
        };
        self.agents
            .insert(id, AgentRecord::from_node(node, selectors));
        self.revision += 1;
    }

    /// Replaces an agent's selectors (no-op for unknown agents).
    pub fn set_agent_selectors(&mut self, agent_id: &str, selectors: Vec<Selector>) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.selectors = agent_selectors(selectors);
            self.revision += 1;
        }
    }

    /// Removes an agent.
    pub fn remove_agent(&mut self, agent_id: &str) -> Option<AgentRecord> {
        let old = self.agents.remove(agent_id);
        if old.is_some() {
            self.revision += 1;
        }
        old
    }

    /// An agent by SPIFFE ID.
    pub fn agent(&self, agent_id: &str) -> Option<&AgentRecord> {
        self.agents.get(agent_id)
    }

    /// Mutable access to an agent (e.g. to promote a new serial number).
    pub fn agent_mut(&mut self, agent_id: &str) -> Option<&mut AgentRecord> {
        self.revision += 1;
        self.agents.get_mut(agent_id)
    }

    /// The node aliases whose selectors are all among `selectors`.
    fn aliases_for(&self, selectors: &HashSet<Box<str>>) -> Vec<&EntryRef> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for s in selectors {
            let Some(ids) = self.aliases_by_selector.get(&**s) else {
                continue;
            };
            for ById(e) in ids {
                if seen.insert(e.entry_id())
                    && e.selector_keys().iter().all(|k| selectors.contains(&**k))
                {
                    out.push(e);
                }
            }
        }
        out
    }

    fn push_descendants<'a>(
        &'a self,
        parent: &str,
        seen_parents: &mut HashSet<&'a str>,
        out: &mut Vec<EntryRef>,
    ) {
        let mut stack: Vec<&'a str> = Vec::new();
        if let Some((k, _)) = self.by_parent.get_key_value(parent) {
            stack.push(&**k);
        } else {
            return;
        }
        while let Some(p) = stack.pop() {
            if !seen_parents.insert(p) {
                continue;
            }
            let Some(children) = self.by_parent.get(p) else {
                continue;
            };
            for ById(e) in children {
                out.push(e.clone());
                if let Some((k, _)) = self.by_parent.get_key_value(e.spiffe_id()) {
                    stack.push(&**k);
                }
            }
        }
    }

    /// The entries agent `agent_id` is authorized for: the descendants of its own ID and of
    /// every node alias its selectors satisfy (aliases themselves excluded), each once, sorted
    /// by entry ID.
    pub fn authorized_entries(&self, agent_id: &str) -> Vec<EntryRef> {
        let mut seen_parents: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        self.push_descendants(agent_id, &mut seen_parents, &mut out);
        if let Some(agent) = self.agents.get(agent_id) {
            for alias in self.aliases_for(&agent.selectors) {
                self.push_descendants(alias.spiffe_id(), &mut seen_parents, &mut out);
            }
        }
        out.sort_by(|a, b| a.entry_id().cmp(b.entry_id()));
        out.dedup_by(|a, b| a.entry_id() == b.entry_id());
        out
    }

    /// Those of `entry_ids` that agent `agent_id` is authorized for (the same rule as
    /// [`Self::authorized_entries`]), in the order asked, unknown IDs skipped. Walks up from
    /// each entry instead of down from the agent, so the cost follows the depth of the
    /// entry tree and not the number of entries the agent may see: this is the check of
    /// every SVID signing call.
    pub fn authorized_subset(&self, agent_id: &str, entry_ids: &[&str]) -> Vec<EntryRef> {
        let agent_selectors = self.agents.get(agent_id).map(|a| &a.selectors);
        let is_root = |parent: &str| -> bool {
            if parent == agent_id {
                return true;
            }
            let Some(selectors) = agent_selectors else {
                return false;
            };
            self.entries_by_spiffe_id(parent).iter().any(|a| {
                a.parent_id() == self.server_id
                    && !a.selector_keys().is_empty()
                    && a.selector_keys().iter().all(|s| selectors.contains(&**s))
            })
        };
        let mut out = Vec::with_capacity(entry_ids.len());
        let mut visited: Vec<&str> = Vec::new();
        let mut frontier: Vec<&str> = Vec::new();
        for &entry_id in entry_ids {
            let Some(entry) = self.entry(entry_id) else {
                continue;
            };
            visited.clear();
            frontier.clear();
            frontier.push(entry.parent_id());
            while let Some(parent) = frontier.pop() {
                if visited.contains(&parent) {
                    continue;
                }
                visited.push(parent);
                if is_root(parent) {
                    out.push(entry.clone());
                    break;
                }
                frontier.extend(
                    self.entries_by_spiffe_id(parent)
                        .iter()
                        .map(|e| e.parent_id()),
                );
            }
        }
        out
    }

    /// Drops agents whose SVID (current and new) expired before `now`; returns how many.
    pub fn prune_expired_agents(&mut self, now: i64) -> usize {
        let before = self.agents.len();
        self.agents
            .retain(|_, a| a.cert_not_after >= now || a.new_cert_not_after >= now);
        let pruned = before - self.agents.len();
        if pruned > 0 {
            self.revision += 1;
        }
        pruned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spire_datastore::RegistrationEntry;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://example.org{s}")).unwrap()
    }

    fn entry(eid: &str, spiffe: &str, parent: &str, sel: &[&str]) -> RegistrationEntry {
        let mut e = RegistrationEntry::new(
            id(spiffe),
            id(parent),
            sel.iter().map(|s| Selector::parse(s).unwrap()).collect(),
        );
        e.entry_id = eid.to_string();
        e
    }

    fn node(agent: &str) -> AttestedNode {
        AttestedNode {
            spiffe_id: id(agent),
            attestation_data_type: "join_token".into(),
            cert_serial_number: "1".into(),
            cert_not_after: 100,
            new_cert_serial_number: String::new(),
            new_cert_not_after: 0,
            selectors: vec![],
            can_reattest: false,
        }
    }

    #[test]
    fn stats_count_as_spires_events_based_cache() {
        let mut ix = EntryIndex::new(&id("/spire/server"));
        assert_eq!(ix.stats(), CacheStats::default());
        ix.upsert_agent(&node("/spire/agent/a"), None);
        ix.upsert_entry(&entry("1", "/web", "/spire/agent/a", &["unix:uid:1"]));
        // Node aliases: one record per alias entry and selector.
        ix.upsert_entry(&entry(
            "2",
            "/cluster",
            "/spire/server",
            &["k8s:ns:x", "k8s:c:1"],
        ));
        ix.upsert_entry(&entry("3", "/cluster2", "/spire/server", &["k8s:ns:x"]));
        assert_eq!(
            ix.stats(),
            CacheStats {
                agents: 1,
                alias_records: 3,
                entries: 1
            }
        );
        ix.remove_entry("2");
        assert_eq!(ix.stats().alias_records, 1);
    }

    fn ids(v: &[EntryRef]) -> Vec<&str> {
        v.iter().map(|e| e.entry_id()).collect()
    }

    #[test]
    fn descendants_and_aliases() {
        let mut ix = EntryIndex::new(&id("/spire/server"));
        ix.upsert_agent(
            &node("/spire/agent/a"),
            Some(vec![
                Selector::parse("k8s:ns:x").unwrap(),
                Selector::parse("k8s:c:1").unwrap(),
            ]),
        );
        ix.upsert_entry(&entry("1", "/web", "/spire/agent/a", &["unix:uid:1"]));
        ix.upsert_entry(&entry("2", "/web/child", "/web", &["unix:uid:2"]));
        // An alias that the agent satisfies, and one it does not.
        ix.upsert_entry(&entry("3", "/cluster", "/spire/server", &["k8s:ns:x"]));
        ix.upsert_entry(&entry(
            "4",
            "/other-cluster",
            "/spire/server",
            &["k8s:ns:x", "k8s:c:2"],
        ));
        ix.upsert_entry(&entry("5", "/via-alias", "/cluster", &["unix:uid:3"]));
        ix.upsert_entry(&entry("6", "/via-other", "/other-cluster", &["unix:uid:4"]));
        ix.upsert_entry(&entry("7", "/elsewhere", "/spire/agent/b", &["unix:uid:5"]));
        assert_eq!(
            ids(&ix.authorized_entries(&id("/spire/agent/a").to_string())),
            ["1", "2", "5"]
        );
        // An agent the index does not know gets only its direct descendants.
        assert_eq!(
            ids(&ix.authorized_entries(&id("/spire/agent/b").to_string())),
            ["7"]
        );
        // Removing the alias removes what hung below it.
        ix.remove_entry("3");
        assert_eq!(
            ids(&ix.authorized_entries(&id("/spire/agent/a").to_string())),
            ["1", "2"]
        );
    }

    /// The upward check agrees with the downward walk on many random entry graphs
    /// (chains, aliases satisfied or not, cycles, entries of other agents).
    #[test]
    fn authorized_subset_agrees_with_the_full_walk() {
        let mut seed: u64 = 0x5eed;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let names = [
            "/spire/agent/a",
            "/spire/agent/b",
            "/spire/server",
            "/x",
            "/y",
            "/z",
            "/w",
        ];
        let sels = ["k:1", "k:2", "k:3"];
        let (mut some, mut via_alias) = (0, 0);
        for _ in 0..500 {
            let mut ix = EntryIndex::new(&id("/spire/server"));
            let agent_sel: Vec<Selector> = sels
                .iter()
                .filter(|_| next(2) == 0)
                .map(|s| Selector::parse(s).unwrap())
                .collect();
            ix.upsert_agent(&node("/spire/agent/a"), Some(agent_sel));
            let n = 1 + next(10);
            for i in 0..n {
                let spiffe = names[next(names.len() as u64) as usize];
                let parent = names[next(names.len() as u64) as usize];
                let sel: Vec<&str> = sels.iter().copied().filter(|_| next(2) == 0).collect();
                ix.upsert_entry(&entry(&i.to_string(), spiffe, parent, &sel));
            }
            let agent = id("/spire/agent/a").to_string();
            let all: Vec<String> = (0..n + 2).map(|i| i.to_string()).collect();
            let asked: Vec<&str> = all.iter().map(String::as_str).collect();
            let mut fast = ids(&ix.authorized_subset(&agent, &asked))
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>();
            fast.sort();
            let slow = ids(&ix.authorized_entries(&agent))
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>();
            assert_eq!(fast, slow);
            some += usize::from(!slow.is_empty());
            via_alias += usize::from(
                slow.iter()
                    .any(|e| ix.entry(e).is_some_and(|e| e.parent_id() != agent)),
            );
        }
        // The graphs exercise both answers and entries below the first level.
        assert!(some > 100 && some < 500, "{some}");
        assert!(via_alias > 20, "{via_alias}");
    }

    #[test]
    fn cycles_do_not_loop() {
        let mut ix = EntryIndex::new(&id("/spire/server"));
        ix.upsert_entry(&entry("1", "/b", "/a", &["x:1"]));
        ix.upsert_entry(&entry("2", "/a", "/b", &["x:2"]));
        assert_eq!(
            ids(&ix.authorized_entries(&id("/a").to_string())),
            ["1", "2"]
        );
    }

    #[test]
    fn updates_move_entries_between_parents() {
        let mut ix = EntryIndex::new(&id("/spire/server"));
        ix.upsert_entry(&entry("1", "/w", "/spire/agent/a", &["x:1"]));
        let r = ix.revision();
        ix.upsert_entry(&entry("1", "/w", "/spire/agent/b", &["x:1"]));
        assert!(ix.revision() > r);
        assert!(
            ix.authorized_entries(&id("/spire/agent/a").to_string())
                .is_empty()
        );
        assert_eq!(
            ids(&ix.authorized_entries(&id("/spire/agent/b").to_string())),
            ["1"]
        );
        assert_eq!(ix.entry_count(), 1);
    }

    #[test]
    fn admin_and_downstream_lookups() {
        let mut ix = EntryIndex::new(&id("/spire/server"));
        let mut e = entry("1", "/admin", "/spire/agent/a", &["x:1"]);
        e.admin = true;
        ix.upsert_entry(&e);
        let mut d = entry("2", "/down", "/spire/agent/a", &["x:1"]);
        d.downstream = true;
        ix.upsert_entry(&d);
        assert!(ix.is_admin(id("/admin").as_str()));
        assert!(!ix.is_admin(id("/down").as_str()));
        assert!(ix.is_downstream(id("/down").as_str()));
    }

    #[test]
    fn agents_expire() {
        let mut ix = EntryIndex::new(&id("/spire/server"));
        ix.upsert_agent(&node("/spire/agent/a"), None);
        assert!(ix.agent(id("/spire/agent/a").as_str()).is_some());
        assert_eq!(ix.prune_expired_agents(50), 0);
        assert_eq!(ix.prune_expired_agents(101), 1);
        assert_eq!(ix.agent_count(), 0);
    }
}
