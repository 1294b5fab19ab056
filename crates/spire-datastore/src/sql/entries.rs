//! Registration entries: `registered_entries`, `selectors`, `dns_names`,
//! `federated_registration_entries`, and their events.

use std::collections::HashMap;

use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::Selector;
use time::OffsetDateTime;

use super::db::{Col, DbRow, Sql, Tx};
pub(crate) use super::filter::EntryFilter;
use super::filter::dedup;
use super::{IN_CHUNK, misc, parse_token, timefmt};
use crate::block::{EntryBlock, EntryColumns};
use crate::error::{DataStoreError, Result};
use crate::model::{BySelectors, EntryMask, MatchBehavior, Pagination, RegistrationEntry};

const ENTRY_COLUMNS: &str = "E.id, E.entry_id, E.spiffe_id, E.parent_id, E.ttl, E.admin, E.downstream, E.expiry, \
     E.revision_number, E.store_svid, E.hint, E.jwt_svid_ttl, E.created_at";
const ENTRY_TYPES: [Col; 13] = [
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Bool,
    Col::Bool,
    Col::Int,
    Col::Int,
    Col::Bool,
    Col::Text,
    Col::Int,
    Col::Time,
];

/// Page size used internally when a caller lists without paging.
const INTERNAL_PAGE: u32 = 10_000;

fn parse_id(s: &str, what: &str, row_id: i64) -> Result<SpiffeId> {
    SpiffeId::parse(s).map_err(|e| {
        DataStoreError::Internal(format!(
            "datastore-sql: invalid {what} {s:?} in registered_entries row {row_id}: {e}"
        ))
    })
}

fn entry_from_row(mut r: DbRow) -> Result<(i64, RegistrationEntry)> {
    let id = r.int(0)?;
    let spiffe_id = r.take_text(2)?;
    let parent_id = r.take_text(3)?;
    let entry = RegistrationEntry {
        entry_id: r.take_text(1)?,
        spiffe_id: parse_id(&spiffe_id, "SPIFFE ID", id)?,
        parent_id: parse_id(&parent_id, "parent ID", id)?,
        selectors: Vec::new(),
        x509_svid_ttl: to_i32(r.int(4)?, "X.509 SVID TTL")?,
        jwt_svid_ttl: to_i32(r.int(11)?, "JWT SVID TTL")?,
        federates_with: Vec::new(),
        admin: r.bool(5)?,
        downstream: r.bool(6)?,
        entry_expiry: r.int(7)?,
        dns_names: Vec::new(),
        revision_number: r.int(8)?,
        store_svid: r.bool(9)?,
        hint: r.take_text(10)?,
        created_at: r
            .opt_time(12)?
            .map_or(super::db::GO_ZERO_TIME_UNIX, timefmt::round_to_secs),
    };
    Ok((id, entry))
}

fn to_i32(v: i64, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|e| DataStoreError::sql(format!("invalid value for {what}: {e}")))
}

pub(crate) fn selector_from_db(t: &str, v: &str) -> Result<Selector> {
    Selector::new(t, v)
        .map_err(|e| DataStoreError::sql(format!("invalid selector {t:?}:{v:?}: {e}")))
}

/// How to find the child rows of a page of entries.
enum Scope<'a> {
    /// Every entry with `first <= id <= last` is in the page.
    Range(i64, i64),
    /// Arbitrary row IDs.
    Ids(&'a [i64]),
}

fn push_scope(q: &mut Sql, column: &str, scope: &Scope<'_>) {
    match scope {
        Scope::Range(a, b) => {
            q.push(column)
                .push(" >= ")
                .bind(*a)
                .push(" AND ")
                .push(column)
                .push(" <= ")
                .bind(*b);
        }
        Scope::Ids(ids) => {
            q.push(column).push(" IN ").bind_list(ids.iter().copied());
        }
    }
}

/// Fills selectors, DNS names and federated trust domains of `entries`
/// (sorted by row ID) with three batched queries per scope chunk.
async fn load_children(
    tx: &mut Tx,
    entries: &mut [(i64, RegistrationEntry)],
    contiguous: bool,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let index: HashMap<i64, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let ids: Vec<i64> = entries.iter().map(|(id, _)| *id).collect();
    let scopes: Vec<Scope<'_>> = if contiguous {
        vec![Scope::Range(ids[0], ids[ids.len() - 1])]
    } else {
        ids.chunks(IN_CHUNK).map(Scope::Ids).collect()
    };
    for scope in &scopes {
        let mut q = tx.sql();
        q.push("SELECT registered_entry_id, type, value FROM selectors WHERE ");
        push_scope(&mut q, "registered_entry_id", scope);
        q.push(" ORDER BY registered_entry_id, id");
        for mut r in tx.fetch(&q, &[Col::Int, Col::Text, Col::Text]).await? {
            if let Some(&i) = index.get(&r.int(0)?) {
                let s = selector_from_db(&r.take_text(1)?, &r.take_text(2)?)?;
                entries[i].1.selectors.push(s);
            }
        }

        let mut q = tx.sql();
        q.push("SELECT registered_entry_id, value FROM dns_names WHERE ");
        push_scope(&mut q, "registered_entry_id", scope);
        q.push(" ORDER BY registered_entry_id, id");
        for mut r in tx.fetch(&q, &[Col::Int, Col::Text]).await? {
            if let Some(&i) = index.get(&r.int(0)?) {
                entries[i].1.dns_names.push(r.take_text(1)?);
            }
        }

        let mut q = tx.sql();
        q.push(
            "SELECT F.registered_entry_id, B.trust_domain FROM federated_registration_entries F \
             INNER JOIN bundles B ON B.id = F.bundle_id WHERE ",
        );
        push_scope(&mut q, "F.registered_entry_id", scope);
        q.push(" ORDER BY F.registered_entry_id, B.id");
        for r in tx.fetch(&q, &[Col::Int, Col::Text]).await? {
            if let Some(&i) = index.get(&r.int(0)?) {
                let td_id = r.text(1)?;
                let td = TrustDomain::from_name_or_id(&td_id).map_err(|e| {
                    DataStoreError::sql(format!("invalid federated trust domain {td_id:?}: {e}"))
                })?;
                entries[i].1.federates_with.push(td);
            }
        }
    }
    Ok(())
}

/// The child queries of a page read in bulk, each for the entry row IDs between `?1` and
/// `?2` and ordered by entry: selectors (`entry, type, value`), DNS names (`entry, value`)
/// and federated trust domains (`entry, trust domain`).
pub(crate) const BULK_CHILDREN: [&str; 3] = [
    "SELECT registered_entry_id, type, value FROM selectors \
     WHERE registered_entry_id >= ?1 AND registered_entry_id <= ?2 ORDER BY registered_entry_id, id",
    "SELECT registered_entry_id, value FROM dns_names \
     WHERE registered_entry_id >= ?1 AND registered_entry_id <= ?2 ORDER BY registered_entry_id, id",
    "SELECT F.registered_entry_id, B.trust_domain FROM federated_registration_entries F \
     INNER JOIN bundles B ON B.id = F.bundle_id \
     WHERE F.registered_entry_id >= ?1 AND F.registered_entry_id <= ?2 \
     ORDER BY F.registered_entry_id, B.id",
];

/// The page query of a bulk read: the entries after row `?1`, at most `?2` of them, with
/// the columns of [`ENTRY_COLUMNS`].
pub(crate) fn bulk_page_query() -> String {
    format!(
        "SELECT {ENTRY_COLUMNS} FROM registered_entries E WHERE E.id > ?1 ORDER BY E.id ASC LIMIT ?2"
    )
}

/// One page of every entry, as a block (the bulk read of any database; SQLite files have
/// a faster reader in `bulk`).
pub(crate) async fn list_block(tx: &mut Tx, after_id: i64, limit: u32) -> Result<EntryBlock> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(ENTRY_COLUMNS)
        .push(" FROM registered_entries E WHERE E.id > ")
        .bind(after_id)
        .push(" ORDER BY E.id ASC LIMIT ")
        .push(&limit.to_string());
    let rows = tx.fetch(&q, &ENTRY_TYPES).await?;
    let mut block = EntryBlock::with_capacity(rows.len());
    for r in &rows {
        block.push_entry(&EntryColumns {
            row_id: r.int(0)?,
            entry_id: &r.text_ref(1)?,
            spiffe_id: &r.text_ref(2)?,
            parent_id: &r.text_ref(3)?,
            x509_svid_ttl: r.int(4)?,
            admin: r.bool(5)?,
            downstream: r.bool(6)?,
            entry_expiry: r.int(7)?,
            revision_number: r.int(8)?,
            store_svid: r.bool(9)?,
            hint: &r.text_ref(10)?,
            jwt_svid_ttl: r.int(11)?,
            created_at: r
                .opt_time(12)?
                .map_or(super::db::GO_ZERO_TIME_UNIX, timefmt::round_to_secs),
        })?;
    }
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(block);
    };
    let scope = Scope::Range(first.int(0)?, last.int(0)?);

    block.start_children();
    let mut q = tx.sql();
    q.push("SELECT registered_entry_id, type, value FROM selectors WHERE ");
    push_scope(&mut q, "registered_entry_id", &scope);
    q.push(" ORDER BY registered_entry_id, id");
    for r in tx.fetch(&q, &[Col::Int, Col::Text, Col::Text]).await? {
        block.push_selector(r.int(0)?, &r.text_ref(1)?, &r.text_ref(2)?)?;
    }

    block.start_children();
    let mut q = tx.sql();
    q.push("SELECT registered_entry_id, value FROM dns_names WHERE ");
    push_scope(&mut q, "registered_entry_id", &scope);
    q.push(" ORDER BY registered_entry_id, id");
    for r in tx.fetch(&q, &[Col::Int, Col::Text]).await? {
        block.push_dns_name(r.int(0)?, &r.text_ref(1)?)?;
    }

    block.start_children();
    let mut q = tx.sql();
    q.push(
        "SELECT F.registered_entry_id, B.trust_domain FROM federated_registration_entries F \
         INNER JOIN bundles B ON B.id = F.bundle_id WHERE ",
    );
    push_scope(&mut q, "F.registered_entry_id", &scope);
    q.push(" ORDER BY F.registered_entry_id, B.id");
    for r in tx.fetch(&q, &[Col::Int, Col::Text]).await? {
        block.push_federated(r.int(0)?, &r.text_ref(1)?)?;
    }
    Ok(block)
}

/// One page of entries (with children), and the row ID of the last one.
pub(crate) async fn list_page(
    tx: &mut Tx,
    filter: &EntryFilter,
    after_id: i64,
    limit: Option<u32>,
) -> Result<Vec<(i64, RegistrationEntry)>> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(ENTRY_COLUMNS)
        .push(" FROM registered_entries E WHERE 1=1");
    filter.push(&mut q);
    if after_id > 0 {
        q.push(" AND E.id > ").bind(after_id);
    }
    q.push(" ORDER BY E.id ASC");
    if let Some(n) = limit {
        q.push(" LIMIT ").push(&n.to_string());
    }
    let rows = tx.fetch(&q, &ENTRY_TYPES).await?;
    let mut entries = rows
        .into_iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>>>()?;
    let contiguous = filter.is_empty();
    load_children(tx, &mut entries, contiguous).await?;
    Ok(entries)
}

/// SPIRE's `listRegistrationEntries` (one transaction).
pub(crate) async fn list(
    tx: &mut Tx,
    filter: &EntryFilter,
    pagination: Option<&Pagination>,
) -> Result<(Vec<RegistrationEntry>, Option<Pagination>)> {
    filter.check()?;
    match pagination {
        Some(p) => {
            let after = parse_token(&p.token)?;
            let page = list_page(tx, filter, after, Some(p.page_size)).await?;
            let token = page
                .last()
                .map(|(id, _)| id.to_string())
                .unwrap_or_default();
            Ok((
                page.into_iter().map(|(_, e)| e).collect(),
                Some(Pagination {
                    token,
                    page_size: p.page_size,
                }),
            ))
        }
        None => {
            let mut out = Vec::new();
            let mut after = 0;
            loop {
                let page = list_page(tx, filter, after, Some(INTERNAL_PAGE)).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                let full = page.len() == INTERNAL_PAGE as usize;
                out.extend(page.into_iter().map(|(_, e)| e));
                if !full {
                    break;
                }
            }
            Ok((out, None))
        }
    }
}

pub(crate) async fn count(tx: &mut Tx, filter: &EntryFilter) -> Result<u32> {
    filter.check()?;
    let mut q = tx.sql();
    q.push("SELECT COUNT(*) FROM registered_entries E WHERE 1=1");
    filter.push(&mut q);
    let n = tx.fetch_int(&q).await?;
    u32::try_from(n).map_err(DataStoreError::sql)
}

/// Entries by entry ID.
pub(crate) async fn fetch_many(
    tx: &mut Tx,
    entry_ids: &[String],
) -> Result<Vec<RegistrationEntry>> {
    let mut out = Vec::with_capacity(entry_ids.len());
    for chunk in entry_ids.chunks(IN_CHUNK) {
        let mut q = tx.sql();
        q.push("SELECT ")
            .push(ENTRY_COLUMNS)
            .push(" FROM registered_entries E WHERE E.entry_id IN ")
            .bind_list(chunk.iter())
            .push(" ORDER BY E.id");
        let rows = tx.fetch(&q, &ENTRY_TYPES).await?;
        let mut entries = rows
            .into_iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>>>()?;
        load_children(tx, &mut entries, false).await?;
        out.extend(entries.into_iter().map(|(_, e)| e));
    }
    Ok(out)
}

async fn find_row(tx: &mut Tx, entry_id: &str, lock: bool) -> Result<(i64, RegistrationEntry)> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(ENTRY_COLUMNS)
        .push(" FROM registered_entries E WHERE E.entry_id = ")
        .bind(entry_id)
        .push(" ORDER BY E.id LIMIT 1");
    if lock {
        q.push(tx.for_update());
    }
    let row = tx
        .fetch_opt(&q, &ENTRY_TYPES)
        .await?
        .ok_or_else(DataStoreError::record_not_found)?;
    entry_from_row(row)
}

fn valid_entry_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// SPIRE's `validateRegistrationEntry`.
pub(crate) fn validate(entry: &RegistrationEntry) -> Result<()> {
    if entry.selectors.is_empty() {
        return Err(DataStoreError::validation(
            "invalid registration entry: missing selector list",
        ));
    }
    if entry.store_svid && !equal_selector_types(&entry.selectors) {
        return Err(DataStoreError::validation(
            "invalid registration entry: selector types must be the same when store SVID is enabled",
        ));
    }
    if entry.entry_id.len() > 255 {
        return Err(DataStoreError::validation(
            "invalid registration entry: entry ID too long",
        ));
    }
    if !entry.entry_id.chars().all(valid_entry_id_char) {
        return Err(DataStoreError::validation(
            "invalid registration entry: entry ID contains invalid characters",
        ));
    }
    if entry.x509_svid_ttl < 0 {
        return Err(DataStoreError::validation(
            "invalid registration entry: X509SvidTtl is not set",
        ));
    }
    if entry.jwt_svid_ttl < 0 {
        return Err(DataStoreError::validation(
            "invalid registration entry: JwtSvidTtl is not set",
        ));
    }
    Ok(())
}

fn validate_for_update(entry: &RegistrationEntry, mask: &EntryMask) -> Result<()> {
    if mask.selectors && entry.selectors.is_empty() {
        return Err(DataStoreError::validation(
            "invalid registration entry: missing selector list",
        ));
    }
    if mask.x509_svid_ttl && entry.x509_svid_ttl < 0 {
        return Err(DataStoreError::validation(
            "invalid registration entry: X509SvidTtl is not set",
        ));
    }
    if mask.jwt_svid_ttl && entry.jwt_svid_ttl < 0 {
        return Err(DataStoreError::validation(
            "invalid registration entry: JwtSvidTtl is not set",
        ));
    }
    Ok(())
}

fn equal_selector_types(selectors: &[Selector]) -> bool {
    selectors
        .windows(2)
        .all(|w| w[0].selector_type() == w[1].selector_type())
}

/// SPIRE's `lookupSimilarEntry`: same SPIFFE ID, parent ID and selector set.
async fn lookup_similar(
    tx: &mut Tx,
    entry: &RegistrationEntry,
) -> Result<Option<RegistrationEntry>> {
    let filter = EntryFilter {
        by_parent_id: Some(entry.parent_id.clone()),
        by_spiffe_id: Some(entry.spiffe_id.clone()),
        by_selectors: Some(BySelectors {
            selectors: entry.selectors.clone(),
            match_behavior: MatchBehavior::Exact,
        }),
        ..EntryFilter::default()
    };
    let page = list_page(tx, &filter, 0, Some(1)).await?;
    Ok(page.into_iter().next().map(|(_, e)| e))
}

/// Bundle row IDs of the trust domains, in the order given (deduplicated).
async fn resolve_federated_bundles(
    tx: &mut Tx,
    tds: &[TrustDomain],
) -> Result<Vec<(i64, TrustDomain)>> {
    if tds.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = dedup(tds.iter().cloned());
    let mut found: HashMap<String, i64> = HashMap::new();
    for chunk in wanted.chunks(IN_CHUNK) {
        let mut q = tx.sql();
        q.push("SELECT id, trust_domain FROM bundles WHERE trust_domain IN ")
            .bind_list(chunk.iter().map(TrustDomain::id_string));
        for r in tx.fetch(&q, &[Col::Int, Col::Text]).await? {
            found.insert(r.text(1)?, r.int(0)?);
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for td in wanted {
        let id_str = td.id_string();
        match found.get(&id_str) {
            Some(id) => out.push((*id, td)),
            None => {
                return Err(DataStoreError::Unknown(format!(
                    "unable to find federated bundle {id_str:?}"
                )));
            }
        }
    }
    Ok(out)
}

async fn insert_children(
    tx: &mut Tx,
    row_id: i64,
    selectors: Option<&[Selector]>,
    dns: Option<&[String]>,
    bundles: Option<&[(i64, TrustDomain)]>,
    now: OffsetDateTime,
) -> Result<()> {
    if let Some(bundles) = bundles.filter(|b| !b.is_empty()) {
        let mut q = tx.sql();
        q.push(
            "INSERT INTO federated_registration_entries (bundle_id, registered_entry_id) VALUES ",
        );
        for (i, (bid, _)) in bundles.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push("(").bind(*bid).push(", ").bind(row_id).push(")");
        }
        tx.execute(&q).await?;
    }
    if let Some(selectors) = selectors.filter(|s| !s.is_empty()) {
        for chunk in selectors.chunks(IN_CHUNK / 5) {
            let mut q = tx.sql();
            q.push("INSERT INTO selectors (created_at, updated_at, registered_entry_id, type, value) VALUES ");
            for (i, s) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push("(")
                    .bind(now)
                    .push(", ")
                    .bind(now)
                    .push(", ")
                    .bind(row_id)
                    .push(", ")
                    .bind(s.selector_type())
                    .push(", ")
                    .bind(s.value())
                    .push(")");
            }
            tx.execute(&q).await?;
        }
    }
    if let Some(dns) = dns.filter(|d| !d.is_empty()) {
        for chunk in dns.chunks(IN_CHUNK / 4) {
            let mut q = tx.sql();
            q.push("INSERT INTO dns_names (created_at, updated_at, registered_entry_id, value) VALUES ");
            for (i, d) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push("(")
                    .bind(now)
                    .push(", ")
                    .bind(now)
                    .push(", ")
                    .bind(row_id)
                    .push(", ")
                    .bind(d.as_str())
                    .push(")");
            }
            tx.execute(&q).await?;
        }
    }
    Ok(())
}

async fn create_in_tx(
    tx: &mut Tx,
    mut entry: RegistrationEntry,
    now: OffsetDateTime,
) -> Result<RegistrationEntry> {
    if entry.entry_id.is_empty() {
        entry.entry_id = uuid::Uuid::new_v4().to_string();
    }
    let mut q = tx.sql();
    q.push(
        "INSERT INTO registered_entries (created_at, updated_at, entry_id, spiffe_id, parent_id, ttl, admin, \
         downstream, expiry, revision_number, store_svid, hint, jwt_svid_ttl) VALUES (",
    )
    .bind(now)
    .push(", ")
    .bind(now)
    .push(", ")
    .bind(entry.entry_id.as_str())
    .push(", ")
    .bind(entry.spiffe_id.as_str())
    .push(", ")
    .bind(entry.parent_id.as_str())
    .push(", ")
    .bind(entry.x509_svid_ttl)
    .push(", ")
    .bind(entry.admin)
    .push(", ")
    .bind(entry.downstream)
    .push(", ")
    .bind(entry.entry_expiry)
    .push(", ")
    .bind(0i64)
    .push(", ")
    .bind(entry.store_svid)
    .push(", ")
    .bind(entry.hint.as_str())
    .push(", ")
    .bind(entry.jwt_svid_ttl)
    .push(")");
    let row_id = tx.insert(&q).await?;
    let bundles = resolve_federated_bundles(tx, &entry.federates_with).await?;
    insert_children(
        tx,
        row_id,
        Some(&entry.selectors),
        Some(&entry.dns_names),
        Some(&bundles),
        now,
    )
    .await?;
    let mut bundles = bundles;
    bundles.sort_by_key(|(bundle_row_id, _)| *bundle_row_id);
    entry.federates_with = bundles.into_iter().map(|(_, td)| td).collect();
    entry.revision_number = 0;
    entry.created_at = timefmt::round_to_secs(now);
    sort_children_as_read_back(&mut entry);
    Ok(entry)
}

/// SPIRE answers a create or update with the entry read back without an ORDER BY; on
/// SQLite that walks the unique indexes, so selectors come back sorted by type then value,
/// DNS names by value and federated trust domains by bundle row. We answer in that order on
/// every backend.
fn sort_children_as_read_back(entry: &mut RegistrationEntry) {
    entry.selectors.sort();
    entry.dns_names.sort();
}

/// Validate, look up a similar entry, else create it and write its event.
pub(crate) async fn create_or_return(
    tx: &mut Tx,
    entry: RegistrationEntry,
    now: OffsetDateTime,
) -> Result<(RegistrationEntry, bool)> {
    validate(&entry)?;
    if let Some(existing) = lookup_similar(tx, &entry).await? {
        return Ok((existing, true));
    }
    let created = create_in_tx(tx, entry, now).await?;
    misc::insert_entry_event(tx, &created.entry_id, now).await?;
    Ok((created, false))
}

/// Many entries in one transaction, each inside a savepoint.
pub(crate) async fn create_or_return_batch(
    tx: &mut Tx,
    entries: Vec<RegistrationEntry>,
    now: OffsetDateTime,
) -> Result<Vec<Result<(RegistrationEntry, bool)>>> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Err(e) = validate(&entry) {
            out.push(Err(e));
            continue;
        }
        let mut sp = tx.sql();
        sp.push("SAVEPOINT spire_batch_entry");
        tx.execute(&sp).await?;
        match create_or_return(tx, entry, now).await {
            Ok(v) => {
                let mut rel = tx.sql();
                rel.push("RELEASE SAVEPOINT spire_batch_entry");
                tx.execute(&rel).await?;
                out.push(Ok(v));
            }
            Err(e) => {
                let mut rb = tx.sql();
                rb.push("ROLLBACK TO SAVEPOINT spire_batch_entry");
                tx.execute(&rb).await?;
                let mut rel = tx.sql();
                rel.push("RELEASE SAVEPOINT spire_batch_entry");
                tx.execute(&rel).await?;
                out.push(Err(e));
            }
        }
    }
    Ok(out)
}

/// Reloads one entry with its children.
async fn reload(tx: &mut Tx, row_id: i64, entry: RegistrationEntry) -> Result<RegistrationEntry> {
    let mut v = vec![(row_id, entry)];
    load_children(tx, &mut v, true).await?;
    v.pop()
        .map(|(_, e)| e)
        .ok_or_else(DataStoreError::record_not_found)
}

pub(crate) async fn update(
    tx: &mut Tx,
    e: RegistrationEntry,
    mask: Option<EntryMask>,
    now: OffsetDateTime,
) -> Result<RegistrationEntry> {
    let mask = mask.unwrap_or(EntryMask::ALL);
    validate_for_update(&e, &mask)?;
    let (row_id, mut cur) = find_row(tx, &e.entry_id, true).await?;
    if mask.store_svid {
        cur.store_svid = e.store_svid;
    }
    if mask.selectors {
        let mut q = tx.sql();
        q.push("DELETE FROM selectors WHERE registered_entry_id = ")
            .bind(row_id);
        tx.execute(&q).await?;
        // SPIRE checks the selector types only when it rewrites them.
        if cur.store_svid && !equal_selector_types(&e.selectors) {
            return Err(DataStoreError::validation(
                "invalid registration entry: selector types must be the same when store SVID is enabled",
            ));
        }
    }
    if mask.dns_names {
        let mut q = tx.sql();
        q.push("DELETE FROM dns_names WHERE registered_entry_id = ")
            .bind(row_id);
        tx.execute(&q).await?;
    }
    if mask.spiffe_id {
        cur.spiffe_id = e.spiffe_id.clone();
    }
    if mask.parent_id {
        cur.parent_id = e.parent_id.clone();
    }
    if mask.x509_svid_ttl {
        cur.x509_svid_ttl = e.x509_svid_ttl;
    }
    if mask.admin {
        cur.admin = e.admin;
    }
    if mask.downstream {
        cur.downstream = e.downstream;
    }
    if mask.entry_expiry {
        cur.entry_expiry = e.entry_expiry;
    }
    if mask.jwt_svid_ttl {
        cur.jwt_svid_ttl = e.jwt_svid_ttl;
    }
    if mask.hint {
        cur.hint = e.hint.clone();
    }
    cur.revision_number += 1;

    let mut q = tx.sql();
    q.push("UPDATE registered_entries SET updated_at = ")
        .bind(now)
        .push(", spiffe_id = ")
        .bind(cur.spiffe_id.as_str())
        .push(", parent_id = ")
        .bind(cur.parent_id.as_str())
        .push(", ttl = ")
        .bind(cur.x509_svid_ttl)
        .push(", admin = ")
        .bind(cur.admin)
        .push(", downstream = ")
        .bind(cur.downstream)
        .push(", expiry = ")
        .bind(cur.entry_expiry)
        .push(", revision_number = ")
        .bind(cur.revision_number)
        .push(", store_svid = ")
        .bind(cur.store_svid)
        .push(", hint = ")
        .bind(cur.hint.as_str())
        .push(", jwt_svid_ttl = ")
        .bind(cur.jwt_svid_ttl)
        .push(" WHERE id = ")
        .bind(row_id);
    tx.execute(&q).await?;

    let bundles = if mask.federates_with {
        let b = resolve_federated_bundles(tx, &e.federates_with).await?;
        let mut q = tx.sql();
        q.push("DELETE FROM federated_registration_entries WHERE registered_entry_id = ")
            .bind(row_id);
        tx.execute(&q).await?;
        Some(b)
    } else {
        None
    };
    insert_children(
        tx,
        row_id,
        mask.selectors.then_some(e.selectors.as_slice()),
        mask.dns_names.then_some(e.dns_names.as_slice()),
        bundles.as_deref(),
        now,
    )
    .await?;
    let mut updated = reload(tx, row_id, cur).await?;
    sort_children_as_read_back(&mut updated);
    misc::insert_entry_event(tx, &updated.entry_id, now).await?;
    Ok(updated)
}

async fn delete_rows(tx: &mut Tx, row_ids: &[i64]) -> Result<()> {
    for chunk in row_ids.chunks(IN_CHUNK) {
        for (table, column) in [
            ("federated_registration_entries", "registered_entry_id"),
            ("registered_entries", "id"),
            ("selectors", "registered_entry_id"),
            ("dns_names", "registered_entry_id"),
        ] {
            let mut q = tx.sql();
            q.push("DELETE FROM ")
                .push(table)
                .push(" WHERE ")
                .push(column)
                .push(" IN ")
                .bind_list(chunk.iter().copied());
            tx.execute(&q).await?;
        }
    }
    Ok(())
}

pub(crate) async fn delete(
    tx: &mut Tx,
    entry_id: &str,
    now: OffsetDateTime,
) -> Result<RegistrationEntry> {
    let (row_id, entry) = find_row(tx, entry_id, true).await?;
    let entry = reload(tx, row_id, entry).await?;
    delete_rows(tx, &[row_id]).await?;
    misc::insert_entry_event(tx, entry_id, now).await?;
    Ok(entry)
}

/// Deletes the entries with these row IDs and writes their events.
pub(crate) async fn delete_by_row_ids(
    tx: &mut Tx,
    rows: &[(i64, String)],
    now: OffsetDateTime,
) -> Result<()> {
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    delete_rows(tx, &ids).await?;
    misc::insert_entry_events(tx, rows.iter().map(|(_, e)| e.as_str()), now).await
}

pub(crate) async fn prune(tx: &mut Tx, expires_before: i64, now: OffsetDateTime) -> Result<()> {
    let mut q = tx.sql();
    q.push("SELECT id, entry_id, spiffe_id, parent_id FROM registered_entries WHERE expiry != 0 AND expiry < ")
        .bind(expires_before);
    let rows = tx
        .fetch(&q, &[Col::Int, Col::Text, Col::Text, Col::Text])
        .await?;
    let mut victims = Vec::with_capacity(rows.len());
    for r in rows {
        let entry_id = r.text(1)?;
        tracing::info!(
            spiffe_id = %r.text(2)?,
            parent_id = %r.text(3)?,
            registration_id = %entry_id,
            "Pruned an expired registration"
        );
        victims.push((r.int(0)?, entry_id));
    }
    delete_by_row_ids(tx, &victims, now).await
}

/// Row IDs and entry IDs of entries federating with a bundle.
pub(crate) async fn federated_with_bundle(
    tx: &mut Tx,
    bundle_row_id: i64,
) -> Result<Vec<(i64, String)>> {
    let mut q = tx.sql();
    q.push(
        "SELECT E.id, E.entry_id FROM registered_entries E INNER JOIN federated_registration_entries F \
         ON F.registered_entry_id = E.id WHERE F.bundle_id = ",
    )
    .bind(bundle_row_id)
    .push(" ORDER BY E.id");
    tx.fetch(&q, &[Col::Int, Col::Text])
        .await?
        .into_iter()
        .map(|r| Ok((r.int(0)?, r.text(1)?)))
        .collect()
}
