//! The client half of `Entry/SyncAuthorizedEntries` (SPIRE 1.13 §5.4) as a state machine.
//!
//! The agent keeps a mirror of the entries it is authorized for. A sync starts by sending the
//! output mask; the server answers either with every entry at once (500 or fewer) or with
//! pages of `{id, revision_number, created_at}`. In the second case the agent asks for the
//! full entries it lacks or holds stale copies of, a page at a time, and finally drops every
//! cached entry the server did not mention.
//!
//! [`EntrySync`] consumes server responses and tells the shell what to do next; it never
//! touches the network.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;

use arcstr::ArcStr;
use spire_proto::spire::api::server::entry::v1::{
    EntryRevision, SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use spire_proto::spire::api::types;

use crate::core::entry::{Entry, EntryError, Interner};

/// Entries by ID; the key is the entry's own `id`, shared.
pub type EntryMap = HashMap<ArcStr, Arc<Entry>, foldhash::fast::RandomState>;

/// The agent's copy of the entries it is authorized for, with the interner that lets
/// entries with the same selector share it. Read it as an [`EntryMap`].
#[derive(Debug, Default)]
pub struct Mirror {
    entries: EntryMap,
    selectors: Interner,
}

impl Deref for Mirror {
    type Target = EntryMap;

    fn deref(&self) -> &EntryMap {
        &self.entries
    }
}

impl Mirror {
    /// An empty mirror.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts a server entry, sharing selectors with the entries held.
    fn convert(&mut self, e: &types::Entry) -> Result<Entry, EntryError> {
        Entry::from_proto_interned(e, &mut self.selectors)
    }

    /// Stores `entry`, keeping the allocation already there when nothing changed: the
    /// cache shares the mirror's `Arc`s, so an unchanged entry stays stored once. A changed
    /// entry takes over the ID string already shared with the cache.
    pub fn insert(&mut self, mut entry: Entry) {
        if let Some(cached) = self.entries.get(entry.id.as_str()) {
            entry.id = cached.id.clone();
            if **cached == entry {
                return;
            }
        }
        self.entries.insert(entry.id.clone(), Arc::new(entry));
    }

    /// Removes the entry with ID `id`.
    pub fn remove(&mut self, id: &str) -> Option<Arc<Entry>> {
        self.entries.remove(id)
    }

    /// Drops interned selectors no entry uses any more.
    fn sweep(&mut self) {
        self.selectors.sweep();
    }
}

/// The output mask SPIRE's agent sends (`client.go` `entryOutputMask`).
pub fn entry_output_mask() -> types::EntryMask {
    types::EntryMask {
        spiffe_id: true,
        selectors: true,
        federates_with: true,
        admin: true,
        downstream: true,
        revision_number: true,
        store_svid: true,
        hint: true,
        created_at: true,
        ..Default::default()
    }
}

/// The first message of a sync.
pub fn first_request() -> SyncAuthorizedEntriesRequest {
    SyncAuthorizedEntriesRequest {
        output_mask: Some(entry_output_mask()),
        ids: vec![],
    }
}

/// Counters SPIRE reports after a sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Entries held after the sync.
    pub total: usize,
    /// Entries that were not cached before.
    pub missing: usize,
    /// Entries whose cached copy was stale.
    pub stale: usize,
    /// Cached entries the server no longer lists.
    pub dropped: usize,
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// Receive another response.
    Receive,
    /// Send `SyncAuthorizedEntriesRequest{ids}` then receive.
    Request(SyncAuthorizedEntriesRequest),
    /// The sync is complete; close the stream. The mirror has been updated.
    Done(SyncStats),
}

/// A protocol violation by the server; the sync failed and the mirror is left as it was
/// before the removal step (entries received so far are kept, as SPIRE does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Full entries arrived while revisions were being paged.
    #[error("unexpected entry in response receiving entry revisions")]
    UnexpectedEntries,
    /// Revisions arrived while full entries were requested.
    #[error("unexpected entry revisions in response while requesting entries")]
    UnexpectedRevisions,
    /// A response arrived after the sync was complete.
    #[error("unexpected response after the sync completed")]
    AlreadyDone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    First,
    Revisions,
    Entries,
    Done,
}

/// Entries the server sent that the agent could not use, for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The entry ID (may be empty).
    pub id: String,
    /// Why.
    pub error: EntryError,
}

/// One run of the sync protocol over a mirror of authorized entries.
#[derive(Debug)]
pub struct EntrySync {
    phase: Phase,
    to_remove: HashSet<ArcStr, foldhash::fast::RandomState>,
    need_full: Vec<String>,
    page_size: usize,
    stats: SyncStats,
    malformed: Vec<Malformed>,
}

fn is_stale(cached: &Entry, revision: i64, created_at: i64) -> bool {
    if cached.revision_number != revision {
        return true;
    }
    created_at != 0 && cached.created_at != created_at
}

impl EntrySync {
    /// Starts a sync over `mirror`; send [`first_request`] next.
    pub fn new(mirror: &Mirror) -> Self {
        Self {
            phase: Phase::First,
            to_remove: mirror.keys().cloned().collect(),
            need_full: Vec::new(),
            page_size: 0,
            stats: SyncStats::default(),
            malformed: Vec::new(),
        }
    }

    /// Entries skipped because they were malformed.
    pub fn malformed(&self) -> &[Malformed] {
        &self.malformed
    }

    /// Feeds one server response; updates `mirror` and says what to do next.
    pub fn on_response(
        &mut self,
        mirror: &mut Mirror,
        resp: SyncAuthorizedEntriesResponse,
    ) -> Result<SyncStep, SyncError> {
        match self.phase {
            Phase::Done => Err(SyncError::AlreadyDone),
            Phase::First => {
                if resp.entry_revisions.is_empty() {
                    self.process_entries(mirror, &resp.entries);
                    return Ok(self.finish(mirror));
                }
                self.page_size = resp.entry_revisions.len();
                self.phase = Phase::Revisions;
                self.process_revisions(mirror, &resp.entry_revisions);
                self.after_revisions(mirror, resp.more)
            }
            Phase::Revisions => {
                if !resp.entries.is_empty() {
                    return Err(SyncError::UnexpectedEntries);
                }
                self.process_revisions(mirror, &resp.entry_revisions);
                self.after_revisions(mirror, resp.more)
            }
            Phase::Entries => {
                if !resp.entry_revisions.is_empty() {
                    return Err(SyncError::UnexpectedRevisions);
                }
                self.process_entries(mirror, &resp.entries);
                if resp.more {
                    return Ok(SyncStep::Receive);
                }
                Ok(self.next_request(mirror))
            }
        }
    }

    fn after_revisions(&mut self, mirror: &mut Mirror, more: bool) -> Result<SyncStep, SyncError> {
        if more {
            return Ok(SyncStep::Receive);
        }
        self.need_full.sort();
        self.need_full.dedup();
        // Request from the end of a reversed list so that pages go out in sorted order.
        self.need_full.reverse();
        self.phase = Phase::Entries;
        Ok(self.next_request(mirror))
    }

    fn next_request(&mut self, mirror: &mut Mirror) -> SyncStep {
        if self.need_full.is_empty() {
            return self.finish(mirror);
        }
        let n = self.need_full.len().min(self.page_size.max(1));
        let split = self.need_full.len() - n;
        let mut ids = self.need_full.split_off(split);
        ids.reverse();
        SyncStep::Request(SyncAuthorizedEntriesRequest {
            output_mask: None,
            ids,
        })
    }

    fn process_revisions(&mut self, mirror: &Mirror, revs: &[EntryRevision]) {
        for rev in revs {
            if rev.id.is_empty() || rev.revision_number < 0 {
                self.malformed.push(Malformed {
                    id: rev.id.clone(),
                    error: EntryError::MissingId,
                });
                continue;
            }
            self.to_remove.remove(rev.id.as_str());
            match mirror.get(rev.id.as_str()) {
                Some(cached) if !is_stale(cached, rev.revision_number, rev.created_at) => {}
                _ => self.need_full.push(rev.id.clone()),
            }
        }
    }

    fn process_entries(&mut self, mirror: &mut Mirror, entries: &[types::Entry]) {
        for e in entries {
            let entry = match mirror.convert(e) {
                Ok(entry) => entry,
                Err(error) => {
                    self.malformed.push(Malformed {
                        id: e.id.clone(),
                        error,
                    });
                    continue;
                }
            };
            self.to_remove.remove(entry.id.as_str());
            match mirror.get(entry.id.as_str()) {
                None => self.stats.missing += 1,
                Some(cached) if is_stale(cached, entry.revision_number, entry.created_at) => {
                    self.stats.stale += 1
                }
                Some(_) => {}
            }
            mirror.insert(entry);
        }
    }

    fn finish(&mut self, mirror: &mut Mirror) -> SyncStep {
        self.phase = Phase::Done;
        self.stats.dropped = self.to_remove.len();
        for id in self.to_remove.drain() {
            mirror.remove(&id);
        }
        mirror.sweep();
        self.stats.total = mirror.len();
        SyncStep::Done(self.stats)
    }
}

/// Replaces the mirror with a full `GetAuthorizedEntries` answer (the pre-1.10 path, used
/// with `use_sync_authorized_entries = false`). Returns the malformed entries skipped.
pub fn replace_all(mirror: &mut Mirror, entries: &[types::Entry]) -> Vec<Malformed> {
    let mut malformed = Vec::new();
    let mut seen: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    for e in entries {
        match mirror.convert(e) {
            Ok(entry) => {
                seen.insert(e.id.as_str());
                mirror.insert(entry);
            }
            Err(error) => malformed.push(Malformed {
                id: e.id.clone(),
                error,
            }),
        }
    }
    mirror.entries.retain(|id, _| seen.contains(id.as_str()));
    mirror.sweep();
    malformed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pe(id: &str, rev: i64) -> types::Entry {
        types::Entry {
            id: id.into(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: format!("/{id}"),
            }),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1".into(),
            }],
            revision_number: rev,
            created_at: 100,
            ..Default::default()
        }
    }

    fn rev(id: &str, rev: i64) -> EntryRevision {
        EntryRevision {
            id: id.into(),
            revision_number: rev,
            created_at: 100,
        }
    }

    #[test]
    fn full_response_replaces_the_mirror() {
        let mut mirror = Mirror::new();
        replace_all(&mut mirror, &[pe("old", 1), pe("keep", 1)]);
        let mut s = EntrySync::new(&mirror);
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entries: vec![pe("keep", 2), pe("new", 1)],
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            step,
            SyncStep::Done(SyncStats {
                total: 2,
                missing: 1,
                stale: 1,
                dropped: 1
            })
        );
        let mut ids: Vec<_> = mirror.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["keep", "new"]);
        assert_eq!(mirror["keep"].revision_number, 2);
        assert!(s.on_response(&mut mirror, Default::default()).is_err());
    }

    /// The cache holds the mirror's `Arc`s; an entry that comes back unchanged keeps its
    /// allocation so it is not stored twice, a changed one gets a new one.
    #[test]
    fn unchanged_entries_keep_their_allocation() {
        let mut mirror = Mirror::new();
        replace_all(&mut mirror, &[pe("same", 1), pe("changed", 1)]);
        let (same, changed) = (mirror["same"].clone(), mirror["changed"].clone());
        replace_all(&mut mirror, &[pe("same", 1), pe("changed", 2)]);
        assert!(Arc::ptr_eq(&same, &mirror["same"]));
        assert!(!Arc::ptr_eq(&changed, &mirror["changed"]));
        let same = mirror["same"].clone();
        let mut s = EntrySync::new(&mirror);
        s.on_response(
            &mut mirror,
            SyncAuthorizedEntriesResponse {
                entries: vec![pe("same", 1), pe("changed", 3)],
                ..Default::default()
            },
        )
        .unwrap();
        assert!(Arc::ptr_eq(&same, &mirror["same"]));
        assert_eq!(mirror["changed"].revision_number, 3);
    }

    #[test]
    fn sparse_paging_requests_only_missing_and_stale() {
        let mut mirror = Mirror::new();
        replace_all(&mut mirror, &[pe("a", 1), pe("b", 1), pe("gone", 1)]);
        let mut s = EntrySync::new(&mirror);
        // Page size 2 (the server's first page), two revision pages.
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entry_revisions: vec![rev("a", 1), rev("b", 2)],
                    more: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(step, SyncStep::Receive);
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entry_revisions: vec![rev("d", 1), rev("c", 1)],
                    more: false,
                    ..Default::default()
                },
            )
            .unwrap();
        // b (stale), c, d (missing): first page of two in sorted order.
        let SyncStep::Request(req) = step else {
            panic!("{step:?}")
        };
        assert_eq!(req.ids, ["b", "c"]);
        assert!(req.output_mask.is_none());
        // The server may split the answer.
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entries: vec![pe("b", 2)],
                    more: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(step, SyncStep::Receive);
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entries: vec![pe("c", 1)],
                    ..Default::default()
                },
            )
            .unwrap();
        let SyncStep::Request(req) = step else {
            panic!("{step:?}")
        };
        assert_eq!(req.ids, ["d"]);
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entries: vec![pe("d", 1)],
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            step,
            SyncStep::Done(SyncStats {
                total: 4,
                missing: 2,
                stale: 1,
                dropped: 1
            })
        );
        assert!(!mirror.contains_key("gone"));
        assert_eq!(mirror["b"].revision_number, 2);
    }

    #[test]
    fn recreated_entry_with_same_revision_is_stale() {
        let mut mirror = Mirror::new();
        replace_all(&mut mirror, &[pe("a", 1)]);
        let mut s = EntrySync::new(&mirror);
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entry_revisions: vec![EntryRevision {
                        id: "a".into(),
                        revision_number: 1,
                        created_at: 200,
                    }],
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(matches!(step, SyncStep::Request(r) if r.ids == ["a"]));
    }

    #[test]
    fn nothing_to_fetch_finishes_after_revisions() {
        let mut mirror = Mirror::new();
        replace_all(&mut mirror, &[pe("a", 1)]);
        let mut s = EntrySync::new(&mirror);
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entry_revisions: vec![rev("a", 1)],
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(matches!(step, SyncStep::Done(st) if st.total == 1 && st.dropped == 0));
    }

    #[test]
    fn protocol_violations() {
        let mut mirror = Mirror::new();
        let mut s = EntrySync::new(&mirror);
        s.on_response(
            &mut mirror,
            SyncAuthorizedEntriesResponse {
                entry_revisions: vec![rev("a", 1)],
                more: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            s.on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entries: vec![pe("a", 1)],
                    ..Default::default()
                },
            ),
            Err(SyncError::UnexpectedEntries)
        );
        let mut s = EntrySync::new(&mirror);
        let step = s
            .on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entry_revisions: vec![rev("a", 1)],
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(matches!(step, SyncStep::Request(_)));
        assert_eq!(
            s.on_response(
                &mut mirror,
                SyncAuthorizedEntriesResponse {
                    entry_revisions: vec![rev("a", 1)],
                    ..Default::default()
                },
            ),
            Err(SyncError::UnexpectedRevisions)
        );
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let mut mirror = Mirror::new();
        let mut s = EntrySync::new(&mirror);
        let mut bad = pe("x", 1);
        bad.selectors.clear();
        s.on_response(
            &mut mirror,
            SyncAuthorizedEntriesResponse {
                entries: vec![bad, pe("a", 1)],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.malformed().len(), 1);
        assert_eq!(mirror.len(), 1);
        let m = replace_all(&mut mirror, &[pe("", 1)]);
        assert_eq!(m.len(), 1);
        assert!(mirror.is_empty());
    }
}
