//! The index's form of a registration entry: what the datastore's [`RegistrationEntry`]
//! holds, in about a third of the memory.
//!
//! A server keeps every entry in memory (as SPIRE's entry cache does), so the per-entry
//! cost decides how many entries one machine can serve. Here:
//! - the entry ID and SPIFFE ID share one string allocation;
//! - the parent ID is shared with every sibling (the key of the index's by-parent map);
//! - each selector is one interned `type:value` string, shared by every entry that has it
//!   (in real deployments namespaces, service accounts and images repeat);
//! - shared strings are `ArcStr`s: one pointer each, where an `Arc<str>` takes two;
//! - the fields most entries leave empty (DNS names, hint, federated trust domains) sit
//!   behind one optional box.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arcstr::ArcStr;

use spiffe_core::TrustDomain;
#[cfg(test)]
use spiffe_core::{IdError, SpiffeId};
use spire_datastore::EntryFields;
#[cfg(test)]
use spire_datastore::RegistrationEntry;
#[cfg(test)]
use spire_plugin::{Selector, SelectorError};

/// Why [`IndexedEntry::to_entry`] could not rebuild an entry (a broken invariant: both were
/// parsed when the entry was stored).
#[cfg(test)]
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// A stored ID no longer parses.
    #[error("stored SPIFFE ID: {0}")]
    Id(#[from] IdError),
    /// A stored selector no longer parses.
    #[error("stored selector: {0}")]
    Selector(#[from] SelectorError),
}

use spire_plugin::split_selector_key;
pub(super) use spire_plugin::{Interner, SelectorKey};

const ADMIN: u8 = 1;
const DOWNSTREAM: u8 = 2;
const STORE_SVID: u8 = 4;

/// What most entries leave empty.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extras {
    dns_names: Vec<String>,
    hint: String,
    federates_with: Vec<TrustDomain>,
}

/// One registration entry as the index holds it. See the module docs.
#[derive(Debug)]
pub struct IndexedEntry {
    /// The entry ID followed by the SPIFFE ID.
    ids: Box<str>,
    id_len: u32,
    x509_svid_ttl: i32,
    jwt_svid_ttl: i32,
    flags: u8,
    revision_number: i64,
    created_at: i64,
    entry_expiry: i64,
    parent_id: ArcStr,
    selectors: Box<[SelectorKey]>,
    extras: Option<Box<Extras>>,
}

impl IndexedEntry {
    /// The compact form of `e`; `parent_id` is the shared copy of its parent ID and
    /// `intern` gives the shared copy of each selector key.
    pub fn new(
        e: &(impl EntryFields + ?Sized),
        parent_id: ArcStr,
        mut intern: impl FnMut(&str) -> SelectorKey,
    ) -> Self {
        let (entry_id, spiffe_id) = (e.entry_id(), e.spiffe_id());
        let mut ids = String::with_capacity(entry_id.len() + spiffe_id.len());
        ids.push_str(entry_id);
        ids.push_str(spiffe_id);
        let mut selectors = Vec::with_capacity(e.selector_count());
        e.for_each_selector_key(&mut |k| selectors.push(intern(k)));
        let (hint, federates_with) = (e.hint(), e.federated());
        let dns_names = e.dns_name_list();
        let extras = (!dns_names.is_empty() || !hint.is_empty() || !federates_with.is_empty())
            .then(|| {
                Box::new(Extras {
                    dns_names,
                    hint: hint.to_string(),
                    federates_with: federates_with.to_vec(),
                })
            });
        let flags = (u8::from(e.admin()) * ADMIN)
            | (u8::from(e.downstream()) * DOWNSTREAM)
            | (u8::from(e.store_svid()) * STORE_SVID);
        Self {
            ids: ids.into_boxed_str(),
            // Entry IDs are at most 255 bytes (the API refuses longer ones) and SPIFFE
            // IDs at most 2048, so this never saturates.
            id_len: u32::try_from(entry_id.len()).unwrap_or(u32::MAX),
            x509_svid_ttl: e.x509_svid_ttl(),
            jwt_svid_ttl: e.jwt_svid_ttl(),
            flags,
            revision_number: e.revision_number(),
            created_at: e.created_at(),
            entry_expiry: e.entry_expiry(),
            parent_id,
            selectors: selectors.into_boxed_slice(),
            extras,
        }
    }

    /// The entry ID.
    pub fn entry_id(&self) -> &str {
        self.ids.get(..self.id_len as usize).unwrap_or_default()
    }

    /// The SPIFFE ID, as a string.
    pub fn spiffe_id(&self) -> &str {
        self.ids.get(self.id_len as usize..).unwrap_or_default()
    }

    /// The parent ID, as a string.
    pub fn parent_id(&self) -> &str {
        &self.parent_id
    }

    /// The selectors as `type:value` keys, in stored order.
    pub fn selector_keys(&self) -> &[SelectorKey] {
        &self.selectors
    }

    /// The selectors as `(type, value)`, in stored order.
    pub fn selectors(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.selectors.iter().map(|k| split_selector_key(k))
    }

    /// X509-SVID TTL in seconds (0: the server default).
    pub fn x509_svid_ttl(&self) -> i32 {
        self.x509_svid_ttl
    }

    /// JWT-SVID TTL in seconds (0: the server default).
    pub fn jwt_svid_ttl(&self) -> i32 {
        self.jwt_svid_ttl
    }

    /// Whether the entry is marked admin.
    pub fn admin(&self) -> bool {
        self.flags & ADMIN != 0
    }

    /// Whether the entry is marked downstream.
    pub fn downstream(&self) -> bool {
        self.flags & DOWNSTREAM != 0
    }

    /// Whether the SVID is exported to an SVIDStore.
    pub fn store_svid(&self) -> bool {
        self.flags & STORE_SVID != 0
    }

    /// Revision number.
    pub fn revision_number(&self) -> i64 {
        self.revision_number
    }

    /// Creation time, Unix seconds.
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// Expiry, Unix seconds (0: never).
    pub fn entry_expiry(&self) -> i64 {
        self.entry_expiry
    }

    /// DNS names, in stored order.
    pub fn dns_names(&self) -> &[String] {
        self.extras.as_ref().map_or(&[], |x| &x.dns_names)
    }

    /// The hint.
    pub fn hint(&self) -> &str {
        self.extras.as_ref().map_or("", |x| &x.hint)
    }

    /// Federated trust domains.
    pub fn federates_with(&self) -> &[TrustDomain] {
        self.extras.as_ref().map_or(&[], |x| &x.federates_with)
    }

    /// The datastore's form again (for the round-trip tests: serving paths read the fields
    /// they need). The IDs and selectors were parsed when the entry was stored, so the
    /// errors only guard against a broken invariant.
    #[cfg(test)]
    pub fn to_entry(&self) -> Result<RegistrationEntry, RebuildError> {
        let selectors = self
            .selectors()
            .map(|(t, v)| Selector::new(t, v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut e = RegistrationEntry::new(
            SpiffeId::parse(self.spiffe_id())?,
            SpiffeId::parse(self.parent_id())?,
            selectors,
        );
        e.entry_id = self.entry_id().to_string();
        e.x509_svid_ttl = self.x509_svid_ttl;
        e.jwt_svid_ttl = self.jwt_svid_ttl;
        e.admin = self.admin();
        e.downstream = self.downstream();
        e.store_svid = self.store_svid();
        e.revision_number = self.revision_number;
        e.created_at = self.created_at;
        e.entry_expiry = self.entry_expiry;
        e.dns_names = self.dns_names().to_vec();
        e.hint = self.hint().to_string();
        e.federates_with = self.federates_with().to_vec();
        Ok(e)
    }
}

/// The API's entry conversion reads both forms through this.
impl EntryFields for IndexedEntry {
    fn entry_id(&self) -> &str {
        IndexedEntry::entry_id(self)
    }
    fn spiffe_id(&self) -> &str {
        IndexedEntry::spiffe_id(self)
    }
    fn parent_id(&self) -> &str {
        IndexedEntry::parent_id(self)
    }
    fn hint(&self) -> &str {
        IndexedEntry::hint(self)
    }
    fn selector_count(&self) -> usize {
        self.selectors.len()
    }
    fn for_each_selector_key(&self, f: &mut dyn FnMut(&str)) {
        for k in self.selectors.iter() {
            f(k);
        }
    }
    fn dns_name_list(&self) -> Vec<String> {
        self.dns_names().to_vec()
    }
    fn federated(&self) -> &[TrustDomain] {
        self.federates_with()
    }
    fn x509_svid_ttl(&self) -> i32 {
        self.x509_svid_ttl
    }
    fn jwt_svid_ttl(&self) -> i32 {
        self.jwt_svid_ttl
    }
    fn admin(&self) -> bool {
        IndexedEntry::admin(self)
    }
    fn downstream(&self) -> bool {
        IndexedEntry::downstream(self)
    }
    fn store_svid(&self) -> bool {
        IndexedEntry::store_svid(self)
    }
    fn entry_expiry(&self) -> i64 {
        self.entry_expiry
    }
    fn revision_number(&self) -> i64 {
        self.revision_number
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
}

/// `spiffe://td/path` → `("td", "/path")`.
pub fn split_id(id: &str) -> (&str, &str) {
    let rest = id.strip_prefix("spiffe://").unwrap_or(id);
    match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    }
}

/// A shared entry.
pub type EntryRef = Arc<IndexedEntry>;

/// An entry in a set keyed by its entry ID.
#[derive(Debug, Clone)]
pub(super) struct ById(pub EntryRef);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.entry_id() == other.0.entry_id()
    }
}
impl Eq for ById {}
impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.entry_id().hash(state);
    }
}
impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.entry_id()
    }
}

/// The entries sharing one SPIFFE ID, in a set keyed by it. Nearly always one, so one
/// pointer, and a boxed vector for the rare rest.
#[derive(Debug)]
pub(super) enum BySpiffeId {
    /// One entry.
    One(EntryRef),
    /// Several (never empty). Boxed so that a slot stays two words: the set holds one
    /// slot per distinct SPIFFE ID, a million of them at a million entries.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<EntryRef>>),
}

impl BySpiffeId {
    fn first(&self) -> &EntryRef {
        match self {
            Self::One(e) => e,
            // Never empty: `remove` turns a one-element vector back into `One`.
            Self::Many(v) => &v[0],
        }
    }

    /// The entries.
    pub(super) fn as_slice(&self) -> &[EntryRef] {
        match self {
            Self::One(e) => std::slice::from_ref(e),
            Self::Many(v) => v,
        }
    }

    /// Adds `e`.
    pub(super) fn add(self, e: EntryRef) -> Self {
        match self {
            Self::One(f) => Self::Many(Box::new(vec![f, e])),
            Self::Many(mut v) => {
                v.push(e);
                Self::Many(v)
            }
        }
    }

    /// Removes the entry with ID `entry_id`; `None` when none is left.
    pub(super) fn remove(self, entry_id: &str) -> Option<Self> {
        match self {
            Self::One(e) if e.entry_id() == entry_id => None,
            Self::One(e) => Some(Self::One(e)),
            Self::Many(mut v) => {
                v.retain(|e| e.entry_id() != entry_id);
                match v.len() {
                    0 => None,
                    1 => v.pop().map(Self::One),
                    _ => Some(Self::Many(v)),
                }
            }
        }
    }
}

impl PartialEq for BySpiffeId {
    fn eq(&self, other: &Self) -> bool {
        self.first().spiffe_id() == other.first().spiffe_id()
    }
}
impl Eq for BySpiffeId {}
impl Hash for BySpiffeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.first().spiffe_id().hash(state);
    }
}
impl std::borrow::Borrow<str> for BySpiffeId {
    fn borrow(&self) -> &str {
        self.first().spiffe_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> RegistrationEntry {
        let mut e = RegistrationEntry::new(
            SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap(),
            SpiffeId::parse("spiffe://example.org/spire/agent/x").unwrap(),
            vec![
                Selector::parse("k8s:ns:a").unwrap(),
                Selector::parse("k8s:pod-label:app:web").unwrap(),
            ],
        );
        e.entry_id = "0b3a8e0c-7f1e-4a36-9d6b-8a1f6c1f0e11".into();
        e.x509_svid_ttl = 3600;
        e.jwt_svid_ttl = 300;
        e.admin = true;
        e.store_svid = true;
        e.revision_number = 7;
        e.created_at = 1_700_000_000;
        e.entry_expiry = 1_800_000_000;
        e.dns_names = vec!["a.example.org".into(), "b.example.org".into()];
        e.hint = "web".into();
        e.federates_with = vec![TrustDomain::new("other.org").unwrap()];
        e
    }

    #[test]
    fn round_trips_every_field() {
        let mut interner = Interner::default();
        for e in [full(), {
            let mut e = full();
            e.dns_names.clear();
            e.hint.clear();
            e.federates_with.clear();
            e.admin = false;
            e.downstream = true;
            e
        }] {
            let ix = IndexedEntry::new(&e, ArcStr::from(e.parent_id.as_str()), |k| {
                interner.intern(k)
            });
            assert_eq!(ix.to_entry().unwrap(), e);
            assert_eq!(ix.entry_id(), e.entry_id);
            assert_eq!(ix.spiffe_id(), e.spiffe_id.as_str());
            assert_eq!(
                ix.selectors().collect::<Vec<_>>(),
                [("k8s", "ns:a"), ("k8s", "pod-label:app:web")]
            );
        }
        // The two entries share their selectors.
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn ids_split() {
        assert_eq!(
            split_id("spiffe://example.org/a/b"),
            ("example.org", "/a/b")
        );
        assert_eq!(split_id("spiffe://example.org"), ("example.org", ""));
    }

    /// The point of this form: a typical entry's fixed part stays small.
    #[test]
    fn stays_small() {
        assert!(
            std::mem::size_of::<IndexedEntry>() <= 88,
            "{}",
            std::mem::size_of::<IndexedEntry>()
        );
        assert_eq!(std::mem::size_of::<BySpiffeId>(), 16);
    }
}
