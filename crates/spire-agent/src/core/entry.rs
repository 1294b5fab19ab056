//! The agent's view of registration entries and of the SVIDs it holds for them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::Selector;
use spire_proto::spire::api::types;

/// A registration entry as the agent uses it (the fields of SPIRE's agent output mask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Entry ID.
    pub id: String,
    /// The SPIFFE ID the entry issues.
    pub spiffe_id: SpiffeId,
    /// Selectors, sorted and without duplicates.
    pub selectors: Vec<Selector>,
    /// Trust domains whose bundles the workload receives.
    pub federates_with: Vec<TrustDomain>,
    /// Bumped by the server on every change.
    pub revision_number: i64,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Workload hint.
    pub hint: String,
    /// `admin`.
    pub admin: bool,
    /// `downstream`.
    pub downstream: bool,
    /// `store_svid`: served to SVIDStore plugins, never over the Workload API.
    pub store_svid: bool,
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

impl Entry {
    /// Converts a server entry (`spire.api.types.Entry`).
    pub fn from_proto(e: &types::Entry) -> Result<Entry, EntryError> {
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
        let mut selectors = e
            .selectors
            .iter()
            .map(|s| Selector::new(&s.r#type, &s.value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| EntryError::Selectors(err.to_string()))?;
        selectors.sort();
        selectors.dedup();
        let federates_with = e
            .federates_with
            .iter()
            .map(|td| {
                TrustDomain::from_name_or_id(td)
                    .map_err(|err| EntryError::FederatesWith(format!("{td}: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Entry {
            id: e.id.clone(),
            spiffe_id,
            selectors,
            federates_with,
            revision_number: e.revision_number,
            created_at: e.created_at,
            hint: e.hint.clone(),
            admin: e.admin,
            downstream: e.downstream,
            store_svid: e.store_svid,
        })
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
        let mut selectors: Vec<Selector> =
            sel.iter().map(|s| Selector::parse(s).unwrap()).collect();
        selectors.sort();
        Entry {
            id: id.into(),
            spiffe_id: SpiffeId::parse(&format!("spiffe://example.org{path}")).unwrap(),
            selectors,
            federates_with: vec![],
            revision_number: rev,
            created_at: 1,
            hint: String::new(),
            admin: false,
            downstream: false,
            store_svid: false,
        }
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
        assert_eq!(e.selectors.len(), 2);
        assert_eq!(e.selectors[0].value(), "gid:1");
        assert_eq!(e.federates_with[0].name(), "other.org");
        assert_eq!(e.federates_with[1].name(), "third.org");
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

    #[test]
    fn unix_times() {
        assert_eq!(to_unix(from_unix(42)), 42);
        assert_eq!(from_unix(-5), UNIX_EPOCH);
    }
}
