//! The agent's view of registration entries and of the SVIDs it holds for them.
//!
//! An agent keeps every entry it is authorized for, so the size of one entry decides how
//! much memory a large node needs (100 000 entries is not unusual for a shared node). Here:
//! - the entry ID is an `ArcStr`, shared with the keys of the mirror and of the cache;
//! - each selector is one `type:value` string, interned by the mirror so that every entry
//!   and every index slot with that selector share one allocation;
//! - the fields most entries leave empty (hint, federated trust domains) sit behind one
//!   optional box.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcstr::ArcStr;
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::Selector;
use spire_proto::spire::api::types;

pub use spire_plugin::{Interner, SelectorKey, selector_key, split_selector_key};

/// What most entries leave empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Extras {
    hint: String,
    federates_with: Vec<TrustDomain>,
}

/// A registration entry as the agent uses it (the fields of SPIRE's agent output mask).
/// See the module docs for its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Entry ID.
    pub id: ArcStr,
    /// The SPIFFE ID the entry issues.
    pub spiffe_id: SpiffeId,
    /// Selectors as `type:value`, sorted by type then value, without duplicates.
    selectors: Box<[SelectorKey]>,
    /// Bumped by the server on every change.
    pub revision_number: i64,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// `admin`.
    pub admin: bool,
    /// `downstream`.
    pub downstream: bool,
    /// `store_svid`: served to SVIDStore plugins, never over the Workload API.
    pub store_svid: bool,
    /// Hint and federated trust domains, when either is set.
    extras: Option<Box<Extras>>,
}

/// Why an entry from the server was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// No entry ID.
    #[error("missing entry ID")]
    MissingId,
    /// No or a bad SPIFFE ID.
    #[error("invalid SPIFFE ID: {0}")]
    SpiffeId(String),
    /// No selectors, or a bad one.
    #[error("invalid selectors: {0}")]
    Selectors(String),
    /// A bad federated trust domain.
    #[error("invalid federated trust domain: {0}")]
    FederatesWith(String),
}

/// Sorts `(type, value)` keys as [`Selector`]s sort (by type, then value) and drops
/// duplicates.
fn normalise(keys: &mut Vec<SelectorKey>) {
    keys.sort_by(|a, b| split_selector_key(a).cmp(&split_selector_key(b)));
    keys.dedup();
}

impl Entry {
    /// An entry with `selectors` and nothing else set (revision 0, no hint, no federation,
    /// no flags).
    pub fn new(id: &str, spiffe_id: SpiffeId, selectors: &[Selector]) -> Entry {
        let mut keys: Vec<SelectorKey> = selectors
            .iter()
            .map(|s| ArcStr::from(selector_key(s.selector_type(), s.value())))
            .collect();
        normalise(&mut keys);
        Entry {
            id: ArcStr::from(id),
            spiffe_id,
            selectors: keys.into_boxed_slice(),
            revision_number: 0,
            created_at: 0,
            admin: false,
            downstream: false,
            store_svid: false,
            extras: None,
        }
    }

    /// Converts a server entry (`spire.api.types.Entry`), each selector unshared.
    pub fn from_proto(e: &types::Entry) -> Result<Entry, EntryError> {
        Self::from_proto_interned(e, &mut Interner::default())
    }

    /// Converts a server entry (`spire.api.types.Entry`), taking each selector's shared
    /// copy from `interner`.
    pub fn from_proto_interned(
        e: &types::Entry,
        interner: &mut Interner,
    ) -> Result<Entry, EntryError> {
        if e.id.is_empty() {
            return Err(EntryError::MissingId);
        }
        let id = e
            .spiffe_id
            .as_ref()
            .ok_or_else(|| EntryError::SpiffeId("missing".into()))?;
        let spiffe_id = TrustDomain::new(&id.trust_domain)
            .and_then(|td| td.id_with_path(&id.path))
            .map_err(|err| EntryError::SpiffeId(err.to_string()))?;
        if e.selectors.is_empty() {
            return Err(EntryError::Selectors("no selectors".into()));
        }
        let mut key = String::new();
        let mut selectors = Vec::with_capacity(e.selectors.len());
        for s in &e.selectors {
            // The checks SPIRE applies to a selector.
            Selector::new(&s.r#type, &s.value)
                .map_err(|err| EntryError::Selectors(err.to_string()))?;
            spire_plugin::write_selector_key(&mut key, &s.r#type, &s.value);
            selectors.push(interner.intern(&key));
        }
        normalise(&mut selectors);
        let federates_with = e
            .federates_with
            .iter()
            .map(|td| {
                TrustDomain::from_name_or_id(td)
                    .map_err(|err| EntryError::FederatesWith(format!("{td}: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut entry = Entry {
            id: ArcStr::from(e.id.as_str()),
            spiffe_id,
            selectors: selectors.into_boxed_slice(),
            revision_number: e.revision_number,
            created_at: e.created_at,
            admin: e.admin,
            downstream: e.downstream,
            store_svid: e.store_svid,
            extras: None,
        };
        entry.set_extras(e.hint.clone(), federates_with);
        Ok(entry)
    }

    /// The selectors as `type:value` keys, sorted by type then value.
    pub fn selector_keys(&self) -> &[SelectorKey] {
        &self.selectors
    }

    /// The selectors as `(type, value)`, sorted by type then value.
    pub fn selectors(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.selectors.iter().map(|k| split_selector_key(k))
    }

    /// Workload hint.
    pub fn hint(&self) -> &str {
        self.extras.as_ref().map_or("", |x| &x.hint)
    }

    /// Trust domains whose bundles the workload receives.
    pub fn federates_with(&self) -> &[TrustDomain] {
        self.extras.as_ref().map_or(&[], |x| &x.federates_with)
    }

    /// Sets the hint.
    pub fn set_hint(&mut self, hint: impl Into<String>) {
        let federates_with = self.federates_with().to_vec();
        self.set_extras(hint.into(), federates_with);
    }

    /// Sets the federated trust domains.
    pub fn set_federates_with(&mut self, federates_with: Vec<TrustDomain>) {
        let hint = self.hint().to_string();
        self.set_extras(hint, federates_with);
    }

    fn set_extras(&mut self, hint: String, federates_with: Vec<TrustDomain>) {
        self.extras = (!hint.is_empty() || !federates_with.is_empty()).then(|| {
            Box::new(Extras {
                hint,
                federates_with,
            })
        });
    }
}

/// An X509-SVID the agent holds for an entry: the chain (leaf first, DER), the private key
/// (PKCS#8 DER) and the leaf's validity.
#[derive(Clone, PartialEq, Eq)]
pub struct X509SvidRecord {
    /// Leaf first, then intermediates.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER private key.
    pub key_pkcs8: Vec<u8>,
    /// The leaf's `notBefore`.
    pub not_before: SystemTime,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for X509SvidRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("X509SvidRecord")
            .field("chain_len", &self.chain.len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch to a time (negative clamps to the epoch).
pub fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// A time to seconds since the epoch.
pub fn to_unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// An entry for tests: `sel` like `["unix:uid:1000"]`.
    pub(crate) fn entry(id: &str, path: &str, sel: &[&str], rev: i64) -> Entry {
        let selectors: Vec<Selector> = sel.iter().map(|s| Selector::parse(s).unwrap()).collect();
        let mut e = Entry::new(
            id,
            SpiffeId::parse(&format!("spiffe://example.org{path}")).unwrap(),
            &selectors,
        );
        e.revision_number = rev;
        e.created_at = 1;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(id: &str) -> types::Entry {
        types::Entry {
            id: id.into(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: "/w".into(),
            }),
            selectors: vec![
                types::Selector {
                    r#type: "unix".into(),
                    value: "uid:1".into(),
                },
                types::Selector {
                    r#type: "unix".into(),
                    value: "gid:1".into(),
                },
                types::Selector {
                    r#type: "unix".into(),
                    value: "uid:1".into(),
                },
            ],
            federates_with: vec!["spiffe://other.org".into(), "third.org".into()],
            revision_number: 3,
            ..Default::default()
        }
    }

    #[test]
    fn converts_and_normalises() {
        let e = Entry::from_proto(&proto("a")).unwrap();
        assert_eq!(e.spiffe_id.as_str(), "spiffe://example.org/w");
        assert_eq!(e.selector_keys().len(), 2);
        assert_eq!(e.selectors().next(), Some(("unix", "gid:1")));
        assert_eq!(e.federates_with()[0].name(), "other.org");
        assert_eq!(e.federates_with()[1].name(), "third.org");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Entry::from_proto(&proto("")), Err(EntryError::MissingId));
        let mut p = proto("a");
        p.selectors.clear();
        assert!(matches!(
            Entry::from_proto(&p),
            Err(EntryError::Selectors(_))
        ));
        let mut p = proto("a");
        p.spiffe_id = None;
        assert!(matches!(
            Entry::from_proto(&p),
            Err(EntryError::SpiffeId(_))
        ));
        let mut p = proto("a");
        p.federates_with = vec!["bad domain".into()];
        assert!(matches!(
            Entry::from_proto(&p),
            Err(EntryError::FederatesWith(_))
        ));
    }

    /// Every field of the server's entry survives the conversion, the empty-by-default
    /// ones both set and unset.
    #[test]
    fn keeps_every_field() {
        let mut p = proto("0b3a8e0c-7f1e-4a36-9d6b-8a1f6c1f0e11");
        p.hint = "web".into();
        p.admin = true;
        p.store_svid = true;
        p.created_at = 1_700_000_000;
        let e = Entry::from_proto(&p).unwrap();
        assert_eq!(e.id, "0b3a8e0c-7f1e-4a36-9d6b-8a1f6c1f0e11");
        assert_eq!(e.spiffe_id.as_str(), "spiffe://example.org/w");
        assert_eq!(
            e.selectors().collect::<Vec<_>>(),
            [("unix", "gid:1"), ("unix", "uid:1")]
        );
        assert_eq!(e.selector_keys(), ["unix:gid:1", "unix:uid:1"]);
        assert_eq!(
            e.federates_with(),
            [
                TrustDomain::new("other.org").unwrap(),
                TrustDomain::new("third.org").unwrap()
            ]
        );
        assert_eq!(e.hint(), "web");
        assert_eq!(e.revision_number, 3);
        assert_eq!(e.created_at, 1_700_000_000);
        assert!(e.admin && !e.downstream && e.store_svid);

        p.hint.clear();
        p.federates_with.clear();
        p.admin = false;
        p.downstream = true;
        let e = Entry::from_proto(&p).unwrap();
        assert_eq!(e.hint(), "");
        assert!(e.federates_with().is_empty());
        assert!(e.extras.is_none());
        assert!(!e.admin && e.downstream && e.store_svid);
    }

    #[test]
    fn setters_keep_the_other_extra() {
        let mut e = Entry::from_proto(&proto("a")).unwrap();
        assert_eq!(e.federates_with().len(), 2);
        e.set_hint("h");
        assert_eq!((e.hint(), e.federates_with().len()), ("h", 2));
        e.set_federates_with(vec![]);
        assert_eq!((e.hint(), e.federates_with().len()), ("h", 0));
        e.set_hint("");
        assert!(e.extras.is_none());
    }

    /// Selectors sort as [`Selector`]s do (type, then value), not as their `type:value`
    /// strings: `a` comes before `a-b` although `a-b:` sorts before `a:`.
    #[test]
    fn selector_order_is_by_type_then_value() {
        let sel = |t: &str, v: &str| types::Selector {
            r#type: t.into(),
            value: v.into(),
        };
        let mut p = proto("a");
        p.selectors = vec![
            sel("a-b", "1"),
            sel("a", "2"),
            sel("a", "10"),
            sel("a-b", "1"),
        ];
        let e = Entry::from_proto(&p).unwrap();
        assert_eq!(e.selector_keys(), ["a:10", "a:2", "a-b:1"]);
        let parsed: Vec<Selector> = ["a-b:1", "a:2", "a:10"]
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
        let n = Entry::new("a", e.spiffe_id.clone(), &parsed);
        assert_eq!(n.selector_keys(), e.selector_keys());
        let mut bad = proto("a");
        bad.selectors = vec![sel("a:b", "1")];
        assert!(matches!(
            Entry::from_proto(&bad),
            Err(EntryError::Selectors(_))
        ));
    }

    /// Entries converted through one interner share each selector's allocation; the
    /// interner lets go of the ones no entry holds any more.
    #[test]
    fn interned_selectors_are_shared() {
        let mut interner = Interner::default();
        let a = Entry::from_proto_interned(&proto("a"), &mut interner).unwrap();
        let b = Entry::from_proto_interned(&proto("b"), &mut interner).unwrap();
        assert_eq!(interner.len(), 2);
        for (x, y) in a.selector_keys().iter().zip(b.selector_keys()) {
            assert!(ArcStr::ptr_eq(x, y));
        }
        let lone = Entry::from_proto(&proto("c")).unwrap();
        assert!(!ArcStr::ptr_eq(
            &lone.selector_keys()[0],
            &a.selector_keys()[0]
        ));
        drop((a, b));
        interner.sweep();
        assert!(interner.is_empty());
    }

    /// The point of this form: the fixed part of an entry stays small.
    #[test]
    fn stays_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 80,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn unix_times() {
        assert_eq!(to_unix(from_unix(42)), 42);
        assert_eq!(from_unix(-5), UNIX_EPOCH);
    }
}
