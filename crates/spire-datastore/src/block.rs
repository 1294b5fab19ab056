//! Registration entries in bulk: one page of entries held in a few flat buffers.
//!
//! A server builds its in-memory index from every stored entry at start-up. Decoding each
//! row into a [`RegistrationEntry`] costs a dozen heap objects per entry, which the index
//! then copies into its own form and drops: at ten million entries that is most of the
//! start-up. An [`EntryBlock`] keeps all the strings of a page in one buffer and the rest
//! in three vectors; readers see each entry through an [`EntryView`], and anything that
//! indexes entries can take either form through [`EntryFields`].
//!
//! Every ID and selector is checked as the datastore's row decoding checks it before it
//! goes into a block, so a block holds only what [`EntryView::to_entry`] can rebuild.

use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::Selector;

use crate::error::{DataStoreError, Result};
use crate::model::RegistrationEntry;

/// A string in the block's text buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// A run of items (selectors, DNS names, trust domains) of one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Run {
    start: u32,
    len: u32,
}

impl Run {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start as usize + self.len as usize)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    row_id: i64,
    entry_id: Span,
    spiffe_id: Span,
    parent_id: Span,
    hint: Span,
    selectors: Run,
    dns_names: Run,
    federates_with: Run,
    x509_svid_ttl: i32,
    jwt_svid_ttl: i32,
    admin: bool,
    downstream: bool,
    store_svid: bool,
    entry_expiry: i64,
    revision_number: i64,
    created_at: i64,
}

/// The scalar columns of one stored entry (see [`EntryBlock::push_entry`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryColumns<'a> {
    /// The row ID (`registered_entries.id`).
    pub row_id: i64,
    /// Entry ID.
    pub entry_id: &'a str,
    /// SPIFFE ID, unchecked.
    pub spiffe_id: &'a str,
    /// Parent ID, unchecked.
    pub parent_id: &'a str,
    /// Hint.
    pub hint: &'a str,
    /// X509-SVID TTL (column `ttl`).
    pub x509_svid_ttl: i64,
    /// JWT-SVID TTL.
    pub jwt_svid_ttl: i64,
    /// Admin flag.
    pub admin: bool,
    /// Downstream flag.
    pub downstream: bool,
    /// Store-SVID flag.
    pub store_svid: bool,
    /// Expiry, Unix seconds.
    pub entry_expiry: i64,
    /// Revision number.
    pub revision_number: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// One page of stored entries, ordered by row ID. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryBlock {
    text: String,
    rows: Vec<Row>,
    /// `type:value` of every selector, entry after entry.
    selectors: Vec<Span>,
    dns_names: Vec<Span>,
    federates_with: Vec<TrustDomain>,
    /// Where the last child row was attached (children arrive ordered by row ID).
    cursor: usize,
}

fn to_i32(v: i64, what: &str, row_id: i64) -> Result<i32> {
    i32::try_from(v).map_err(|e| {
        DataStoreError::sql(format!(
            "invalid value for {what} in registered_entries row {row_id}: {e}"
        ))
    })
}

fn check_id(s: &str, what: &str, row_id: i64) -> Result<()> {
    SpiffeId::check(s).map(|_| ()).map_err(|e| {
        DataStoreError::Internal(format!(
            "datastore-sql: invalid {what} {s:?} in registered_entries row {row_id}: {e}"
        ))
    })
}

impl EntryBlock {
    /// An empty block with room for `entries` entries.
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            text: String::with_capacity(entries * 128),
            rows: Vec::with_capacity(entries),
            selectors: Vec::with_capacity(entries * 3),
            ..Self::default()
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the block holds no entry.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row ID of the last entry.
    pub fn last_row_id(&self) -> Option<i64> {
        self.rows.last().map(|r| r.row_id)
    }

    fn span(&mut self, parts: &[&str]) -> Result<Span> {
        let start = self.text.len();
        for p in parts {
            self.text.push_str(p);
        }
        let len = self.text.len() - start;
        match (u32::try_from(start), u32::try_from(len)) {
            (Ok(start), Ok(len)) if u32::try_from(self.text.len()).is_ok() => {
                Ok(Span { start, len })
            }
            _ => Err(DataStoreError::sql(
                "a page of entries exceeds 4 GiB of text",
            )),
        }
    }

    fn str(&self, s: Span) -> &str {
        self.text
            .get(s.start as usize..s.start as usize + s.len as usize)
            .unwrap_or_default()
    }

    /// Appends an entry. Row IDs must grow; the IDs are checked.
    pub fn push_entry(&mut self, c: &EntryColumns<'_>) -> Result<()> {
        let row_id = c.row_id;
        if self.rows.last().is_some_and(|r| r.row_id >= row_id) {
            return Err(DataStoreError::sql(format!(
                "registered_entries row {row_id} is out of order"
            )));
        }
        check_id(c.spiffe_id, "SPIFFE ID", row_id)?;
        check_id(c.parent_id, "parent ID", row_id)?;
        let x509_svid_ttl = to_i32(c.x509_svid_ttl, "X.509 SVID TTL", row_id)?;
        let jwt_svid_ttl = to_i32(c.jwt_svid_ttl, "JWT SVID TTL", row_id)?;
        let row = Row {
            row_id,
            entry_id: self.span(&[c.entry_id])?,
            spiffe_id: self.span(&[c.spiffe_id])?,
            parent_id: self.span(&[c.parent_id])?,
            hint: self.span(&[c.hint])?,
            selectors: Run::default(),
            dns_names: Run::default(),
            federates_with: Run::default(),
            x509_svid_ttl,
            jwt_svid_ttl,
            admin: c.admin,
            downstream: c.downstream,
            store_svid: c.store_svid,
            entry_expiry: c.entry_expiry,
            revision_number: c.revision_number,
            created_at: c.created_at,
        };
        self.rows.push(row);
        Ok(())
    }

    /// Rewinds the child cursor: call before each kind of child row (selectors, DNS
    /// names, trust domains), which must each arrive ordered by entry row ID.
    pub fn start_children(&mut self) {
        self.cursor = 0;
    }

    /// The entry a child row of `row_id` belongs to, or `None` for a row outside the
    /// block.
    fn owner(&mut self, row_id: i64, what: &str) -> Result<Option<usize>> {
        // Child rows of the current entry or a later one: the cursor moves forward. One of
        // an entry already passed means the rows were not ordered by entry.
        let before_cursor = self.rows.get(self.cursor).is_none_or(|r| row_id < r.row_id);
        let behind = before_cursor
            && self
                .rows
                .get(..self.cursor)
                .is_some_and(|done| done.binary_search_by_key(&row_id, |r| r.row_id).is_ok());
        if behind {
            return Err(DataStoreError::sql(format!(
                "{what} of registered_entries row {row_id} are out of order"
            )));
        }
        while let Some(r) = self.rows.get(self.cursor) {
            if r.row_id >= row_id {
                return Ok((r.row_id == row_id).then_some(self.cursor));
            }
            self.cursor += 1;
        }
        Ok(None)
    }

    fn extend_run(run: &mut Run, next: usize, what: &str, row_id: i64) -> Result<()> {
        let next = u32::try_from(next).map_err(DataStoreError::sql)?;
        if run.len == 0 {
            run.start = next;
        } else if run.start + run.len != next {
            return Err(DataStoreError::sql(format!(
                "{what} of registered_entries row {row_id} are out of order"
            )));
        }
        run.len += 1;
        Ok(())
    }

    /// Adds a selector to the entry with row ID `row_id` (ignored when the block has no
    /// such entry). The selector is checked as SPIRE's API checks it.
    pub fn push_selector(&mut self, row_id: i64, selector_type: &str, value: &str) -> Result<()> {
        let Some(i) = self.owner(row_id, "selectors")? else {
            return Ok(());
        };
        if selector_type.is_empty() || selector_type.contains(':') || value.is_empty() {
            return Err(DataStoreError::sql(format!(
                "invalid selector {selector_type:?}:{value:?} of registered_entries row {row_id}"
            )));
        }
        let span = self.span(&[selector_type, ":", value])?;
        let next = self.selectors.len();
        Self::extend_run(&mut self.rows[i].selectors, next, "selectors", row_id)?;
        self.selectors.push(span);
        Ok(())
    }

    /// Adds a DNS name to the entry with row ID `row_id` (ignored when absent).
    pub fn push_dns_name(&mut self, row_id: i64, name: &str) -> Result<()> {
        let Some(i) = self.owner(row_id, "DNS names")? else {
            return Ok(());
        };
        let span = self.span(&[name])?;
        let next = self.dns_names.len();
        Self::extend_run(&mut self.rows[i].dns_names, next, "DNS names", row_id)?;
        self.dns_names.push(span);
        Ok(())
    }

    /// Adds a federated trust domain (name or ID, as stored) to the entry with row ID
    /// `row_id` (ignored when absent).
    pub fn push_federated(&mut self, row_id: i64, trust_domain: &str) -> Result<()> {
        let Some(i) = self.owner(row_id, "federated trust domains")? else {
            return Ok(());
        };
        let td = TrustDomain::from_name_or_id(trust_domain).map_err(|e| {
            DataStoreError::sql(format!(
                "invalid federated trust domain {trust_domain:?}: {e}"
            ))
        })?;
        let next = self.federates_with.len();
        Self::extend_run(
            &mut self.rows[i].federates_with,
            next,
            "federated trust domains",
            row_id,
        )?;
        self.federates_with.push(td);
        Ok(())
    }

    /// The entries, in row ID order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EntryView<'_>> {
        self.rows.iter().map(|row| EntryView { block: self, row })
    }

    /// The entries as datastore entries.
    pub fn to_entries(&self) -> Result<Vec<RegistrationEntry>> {
        self.iter().map(|e| e.to_entry()).collect()
    }
}

/// One entry of an [`EntryBlock`].
#[derive(Debug, Clone, Copy)]
pub struct EntryView<'a> {
    block: &'a EntryBlock,
    row: &'a Row,
}

impl<'a> EntryView<'a> {
    /// The row ID.
    pub fn row_id(&self) -> i64 {
        self.row.row_id
    }

    /// The selectors as `type:value` strings, in stored order.
    pub fn selector_keys(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let b = self.block;
        b.selectors
            .get(self.row.selectors.range())
            .unwrap_or_default()
            .iter()
            .map(move |s| b.str(*s))
    }

    /// The DNS names, in stored order.
    pub fn dns_names(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let b = self.block;
        b.dns_names
            .get(self.row.dns_names.range())
            .unwrap_or_default()
            .iter()
            .map(move |s| b.str(*s))
    }

    /// The federated trust domains, in stored order.
    pub fn federates_with(&self) -> &'a [TrustDomain] {
        self.block
            .federates_with
            .get(self.row.federates_with.range())
            .unwrap_or_default()
    }

    /// The entry as a datastore entry.
    pub fn to_entry(&self) -> Result<RegistrationEntry> {
        // Both were checked on the way into the block; an error is a broken invariant.
        let row = self.row_id();
        let bad = |what: &str, s: &str, e: &dyn std::fmt::Display| {
            DataStoreError::Internal(format!(
                "datastore-sql: invalid {what} {s:?} in registered_entries row {row}: {e}"
            ))
        };
        let id = |what: &str, s: &str| SpiffeId::parse(s).map_err(|e| bad(what, s, &e));
        let selectors = self
            .selector_keys()
            .map(|k| Selector::parse(k).map_err(|e| bad("selector", k, &e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(RegistrationEntry {
            entry_id: self.entry_id().to_string(),
            spiffe_id: id("SPIFFE ID", self.spiffe_id())?,
            parent_id: id("parent ID", self.parent_id())?,
            selectors,
            x509_svid_ttl: self.row.x509_svid_ttl,
            jwt_svid_ttl: self.row.jwt_svid_ttl,
            federates_with: self.federates_with().to_vec(),
            admin: self.row.admin,
            downstream: self.row.downstream,
            entry_expiry: self.row.entry_expiry,
            dns_names: self.dns_names().map(str::to_string).collect(),
            revision_number: self.row.revision_number,
            store_svid: self.row.store_svid,
            hint: self.hint().to_string(),
            created_at: self.row.created_at,
        })
    }
}

/// What an index needs to read from an entry, whether a [`RegistrationEntry`] or an
/// [`EntryView`]. IDs are already checked in both.
pub trait EntryFields {
    /// Entry ID.
    fn entry_id(&self) -> &str;
    /// SPIFFE ID.
    fn spiffe_id(&self) -> &str;
    /// Parent ID.
    fn parent_id(&self) -> &str;
    /// Hint.
    fn hint(&self) -> &str;
    /// Number of selectors.
    fn selector_count(&self) -> usize;
    /// Calls `f` with each selector's `type:value`, in stored order.
    fn for_each_selector_key(&self, f: &mut dyn FnMut(&str));
    /// The DNS names, in stored order.
    fn dns_name_list(&self) -> Vec<String>;
    /// The federated trust domains, in stored order.
    fn federated(&self) -> &[TrustDomain];
    /// X509-SVID TTL.
    fn x509_svid_ttl(&self) -> i32;
    /// JWT-SVID TTL.
    fn jwt_svid_ttl(&self) -> i32;
    /// Admin flag.
    fn admin(&self) -> bool;
    /// Downstream flag.
    fn downstream(&self) -> bool;
    /// Store-SVID flag.
    fn store_svid(&self) -> bool;
    /// Expiry, Unix seconds.
    fn entry_expiry(&self) -> i64;
    /// Revision number.
    fn revision_number(&self) -> i64;
    /// Creation time, Unix seconds.
    fn created_at(&self) -> i64;
}

impl EntryFields for EntryView<'_> {
    fn entry_id(&self) -> &str {
        self.block.str(self.row.entry_id)
    }
    fn spiffe_id(&self) -> &str {
        self.block.str(self.row.spiffe_id)
    }
    fn parent_id(&self) -> &str {
        self.block.str(self.row.parent_id)
    }
    fn hint(&self) -> &str {
        self.block.str(self.row.hint)
    }
    fn selector_count(&self) -> usize {
        self.row.selectors.len as usize
    }
    fn for_each_selector_key(&self, f: &mut dyn FnMut(&str)) {
        for k in self.selector_keys() {
            f(k);
        }
    }
    fn dns_name_list(&self) -> Vec<String> {
        self.dns_names().map(str::to_string).collect()
    }
    fn federated(&self) -> &[TrustDomain] {
        self.federates_with()
    }
    fn x509_svid_ttl(&self) -> i32 {
        self.row.x509_svid_ttl
    }
    fn jwt_svid_ttl(&self) -> i32 {
        self.row.jwt_svid_ttl
    }
    fn admin(&self) -> bool {
        self.row.admin
    }
    fn downstream(&self) -> bool {
        self.row.downstream
    }
    fn store_svid(&self) -> bool {
        self.row.store_svid
    }
    fn entry_expiry(&self) -> i64 {
        self.row.entry_expiry
    }
    fn revision_number(&self) -> i64 {
        self.row.revision_number
    }
    fn created_at(&self) -> i64 {
        self.row.created_at
    }
}

impl EntryFields for RegistrationEntry {
    fn entry_id(&self) -> &str {
        &self.entry_id
    }
    fn spiffe_id(&self) -> &str {
        self.spiffe_id.as_str()
    }
    fn parent_id(&self) -> &str {
        self.parent_id.as_str()
    }
    fn hint(&self) -> &str {
        &self.hint
    }
    fn selector_count(&self) -> usize {
        self.selectors.len()
    }
    fn for_each_selector_key(&self, f: &mut dyn FnMut(&str)) {
        let mut key = String::new();
        for s in &self.selectors {
            spire_plugin::write_selector_key(&mut key, s.selector_type(), s.value());
            f(&key);
        }
    }
    fn dns_name_list(&self) -> Vec<String> {
        self.dns_names.clone()
    }
    fn federated(&self) -> &[TrustDomain] {
        &self.federates_with
    }
    fn x509_svid_ttl(&self) -> i32 {
        self.x509_svid_ttl
    }
    fn jwt_svid_ttl(&self) -> i32 {
        self.jwt_svid_ttl
    }
    fn admin(&self) -> bool {
        self.admin
    }
    fn downstream(&self) -> bool {
        self.downstream
    }
    fn store_svid(&self) -> bool {
        self.store_svid
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

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn cols<'a>(row_id: i64, entry_id: &'a str, spiffe_id: &'a str) -> EntryColumns<'a> {
        EntryColumns {
            row_id,
            entry_id,
            spiffe_id,
            parent_id: "spiffe://example.org/agent",
            hint: "",
            x509_svid_ttl: 3600,
            jwt_svid_ttl: 300,
            admin: false,
            downstream: false,
            store_svid: false,
            entry_expiry: 0,
            revision_number: 0,
            created_at: 1_700_000_000,
        }
    }

    #[test]
    fn every_field_comes_back() -> TestResult {
        let mut b = EntryBlock::with_capacity(2);
        b.push_entry(&EntryColumns {
            hint: "h",
            admin: true,
            downstream: true,
            store_svid: true,
            entry_expiry: 9,
            revision_number: 4,
            ..cols(3, "a", "spiffe://example.org/a")
        })?;
        b.push_entry(&cols(7, "b", "spiffe://example.org/b"))?;
        b.start_children();
        b.push_selector(3, "unix", "uid:1")?;
        b.push_selector(3, "unix", "gid:2")?;
        b.push_selector(5, "unix", "not-in-block")?;
        b.push_selector(7, "k8s", "ns:x")?;
        b.start_children();
        b.push_dns_name(7, "b.example.org")?;
        b.start_children();
        b.push_federated(3, "spiffe://other.org")?;

        let entries = b.to_entries()?;
        assert_eq!(entries.len(), 2);
        let a = &entries[0];
        assert_eq!(a.entry_id, "a");
        assert_eq!(a.spiffe_id.as_str(), "spiffe://example.org/a");
        assert_eq!(a.parent_id.as_str(), "spiffe://example.org/agent");
        assert_eq!(
            a.selectors,
            vec![
                Selector::new("unix", "uid:1")?,
                Selector::new("unix", "gid:2")?
            ]
        );
        assert_eq!(a.federates_with, vec![TrustDomain::new("other.org")?]);
        assert!(a.dns_names.is_empty());
        assert_eq!((a.x509_svid_ttl, a.jwt_svid_ttl), (3600, 300));
        assert!(a.admin && a.downstream && a.store_svid);
        assert_eq!(
            (a.entry_expiry, a.revision_number, a.created_at),
            (9, 4, 1_700_000_000)
        );
        assert_eq!(a.hint, "h");
        let e = &entries[1];
        assert_eq!(e.selectors, vec![Selector::new("k8s", "ns:x")?]);
        assert_eq!(e.dns_names, vec!["b.example.org".to_string()]);
        assert!(e.federates_with.is_empty());
        assert!(!e.admin && !e.downstream && !e.store_svid);

        // The trait reads the same thing from both forms.
        for (v, e) in b.iter().zip(&entries) {
            assert_eq!(EntryFields::entry_id(&v), EntryFields::entry_id(e));
            let (mut x, mut y) = (Vec::new(), Vec::new());
            v.for_each_selector_key(&mut |k| x.push(k.to_string()));
            e.for_each_selector_key(&mut |k| y.push(k.to_string()));
            assert_eq!(x, y);
            assert_eq!(v.dns_name_list(), e.dns_name_list());
        }
        Ok(())
    }

    #[test]
    fn bad_rows_are_refused() -> TestResult {
        let mut b = EntryBlock::default();
        assert!(b.push_entry(&cols(1, "a", "not an id")).is_err());
        assert!(b.is_empty(), "nothing is kept from a refused row");
        b.push_entry(&cols(2, "a", "spiffe://example.org/a"))?;
        assert!(
            b.push_entry(&cols(2, "b", "spiffe://example.org/b"))
                .is_err()
        );
        b.start_children();
        assert!(b.push_selector(2, "", "x").is_err());
        assert!(b.push_selector(2, "a:b", "x").is_err());
        assert!(b.push_selector(2, "unix", "").is_err());
        assert!(b.push_federated(2, "Not A Domain").is_err());
        Ok(())
    }

    #[test]
    fn children_out_of_order_are_refused() -> TestResult {
        let mut b = EntryBlock::default();
        b.push_entry(&cols(1, "a", "spiffe://example.org/a"))?;
        b.push_entry(&cols(2, "b", "spiffe://example.org/b"))?;
        b.start_children();
        b.push_selector(1, "unix", "uid:1")?;
        b.push_selector(2, "unix", "uid:2")?;
        // Back to entry 1 after entry 2's selectors: refused.
        assert!(b.push_selector(1, "unix", "uid:3").is_err());
        // After a rewind, entry 1's run is no longer at the end of the selectors: refused.
        b.start_children();
        assert!(b.push_selector(1, "unix", "uid:4").is_err());
        // Rows of entries outside the block are skipped.
        b.start_children();
        b.push_dns_name(0, "x.example.org")?;
        b.push_dns_name(3, "y.example.org")?;
        assert!(b.to_entries()?.iter().all(|e| e.dns_names.is_empty()));
        Ok(())
    }
}
