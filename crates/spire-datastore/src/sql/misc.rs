//! Events, join tokens, federation relationships and CA journals.

use spiffe_core::{SpiffeId, TrustDomain};
use time::OffsetDateTime;

use super::bundles;
use super::db::{Col, DbRow, Tx};
use super::{IN_CHUNK, parse_token};
use crate::error::{DataStoreError, Result};
use crate::model::{
    BundleEndpointProfile, CaJournal, EntryEvent, FederationRelationship,
    FederationRelationshipMask, JoinToken, ListEventsRequest, NodeEvent, Pagination,
};

// ---------------------------------------------------------------- events

#[derive(Debug, Clone, Copy)]
pub(crate) enum EventTable {
    Entries,
    Nodes,
}

impl EventTable {
    fn table(self) -> &'static str {
        match self {
            EventTable::Entries => "registered_entries_events",
            EventTable::Nodes => "attested_node_entries_events",
        }
    }
    fn column(self) -> &'static str {
        match self {
            EventTable::Entries => "entry_id",
            EventTable::Nodes => "spiffe_id",
        }
    }
}

async fn insert_events<'a>(
    tx: &mut Tx,
    table: EventTable,
    keys: impl Iterator<Item = &'a str>,
    now: OffsetDateTime,
) -> Result<()> {
    let keys: Vec<&str> = keys.collect();
    for chunk in keys.chunks(IN_CHUNK / 3) {
        let mut q = tx.sql();
        q.push("INSERT INTO ")
            .push(table.table())
            .push(" (created_at, updated_at, ")
            .push(table.column())
            .push(") VALUES ");
        for (i, k) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push("(")
                .bind(now)
                .push(", ")
                .bind(now)
                .push(", ")
                .bind(*k)
                .push(")");
        }
        tx.execute(&q).await?;
    }
    Ok(())
}

pub(crate) async fn insert_entry_event(
    tx: &mut Tx,
    entry_id: &str,
    now: OffsetDateTime,
) -> Result<()> {
    insert_events(tx, EventTable::Entries, std::iter::once(entry_id), now).await
}

pub(crate) async fn insert_entry_events<'a>(
    tx: &mut Tx,
    entry_ids: impl Iterator<Item = &'a str>,
    now: OffsetDateTime,
) -> Result<()> {
    insert_events(tx, EventTable::Entries, entry_ids, now).await
}

pub(crate) async fn insert_node_event(
    tx: &mut Tx,
    spiffe_id: &str,
    now: OffsetDateTime,
) -> Result<()> {
    insert_events(tx, EventTable::Nodes, std::iter::once(spiffe_id), now).await
}

/// Writes an event with an explicit ID (SPIRE's `Create*EventForTesting`).
pub(crate) async fn create_event(
    tx: &mut Tx,
    table: EventTable,
    id: u64,
    key: &str,
    now: OffsetDateTime,
) -> Result<()> {
    let mut q = tx.sql();
    q.push("INSERT INTO ").push(table.table()).push(" (");
    if id != 0 {
        q.push("id, ");
    }
    q.push("created_at, updated_at, ")
        .push(table.column())
        .push(") VALUES (");
    if id != 0 {
        q.bind(i64::try_from(id).map_err(DataStoreError::sql)?)
            .push(", ");
    }
    q.bind(now)
        .push(", ")
        .bind(now)
        .push(", ")
        .bind(key)
        .push(")");
    tx.execute(&q).await?;
    Ok(())
}

pub(crate) async fn delete_event(tx: &mut Tx, table: EventTable, id: u64) -> Result<()> {
    let mut q = tx.sql();
    q.push("DELETE FROM ")
        .push(table.table())
        .push(" WHERE id = ")
        .bind(i64::try_from(id).map_err(DataStoreError::sql)?);
    tx.execute(&q).await?;
    Ok(())
}

fn event_from_row(r: &DbRow) -> Result<(u64, String)> {
    Ok((
        u64::try_from(r.int(0)?).map_err(DataStoreError::sql)?,
        r.text(1)?,
    ))
}

pub(crate) async fn list_events(
    tx: &mut Tx,
    table: EventTable,
    req: &ListEventsRequest,
) -> Result<Vec<(u64, String)>> {
    if req.greater_than_event_id != 0 && req.less_than_event_id != 0 {
        return Err(DataStoreError::InvalidArgument(
            "datastore-sql: can't set both greater and less than event id".into(),
        ));
    }
    let mut q = tx.sql();
    q.push("SELECT id, ")
        .push(table.column())
        .push(" FROM ")
        .push(table.table());
    let to_i64 = |v: u64| i64::try_from(v).map_err(DataStoreError::sql);
    if req.greater_than_event_id != 0 {
        q.push(" WHERE id > ")
            .bind(to_i64(req.greater_than_event_id)?);
    } else if req.less_than_event_id != 0 {
        q.push(" WHERE id < ").bind(to_i64(req.less_than_event_id)?);
    }
    q.push(" ORDER BY id ASC");
    tx.fetch(&q, &[Col::Int, Col::Text])
        .await?
        .iter()
        .map(event_from_row)
        .collect()
}

pub(crate) async fn fetch_event(tx: &mut Tx, table: EventTable, id: u64) -> Result<(u64, String)> {
    let mut q = tx.sql();
    q.push("SELECT id, ")
        .push(table.column())
        .push(" FROM ")
        .push(table.table())
        .push(" WHERE id = ")
        .bind(i64::try_from(id).map_err(DataStoreError::sql)?);
    let row = tx
        .fetch_opt(&q, &[Col::Int, Col::Text])
        .await?
        .ok_or_else(DataStoreError::record_not_found)?;
    event_from_row(&row)
}

pub(crate) async fn prune_events(
    tx: &mut Tx,
    table: EventTable,
    before: OffsetDateTime,
) -> Result<()> {
    let mut q = tx.sql();
    q.push("DELETE FROM ")
        .push(table.table())
        .push(" WHERE created_at < ")
        .bind(before);
    tx.execute(&q).await?;
    Ok(())
}

pub(crate) async fn latest_event(tx: &mut Tx, table: EventTable) -> Result<Option<u64>> {
    let mut q = tx.sql();
    q.push("SELECT MAX(id) FROM ").push(table.table());
    match tx.fetch_opt(&q, &[Col::Int]).await? {
        Some(r) => {
            let v = r.int(0)?;
            Ok(if v > 0 {
                Some(u64::try_from(v).map_err(DataStoreError::sql)?)
            } else {
                None
            })
        }
        None => Ok(None),
    }
}

pub(crate) fn entry_event((event_id, entry_id): (u64, String)) -> EntryEvent {
    EntryEvent { event_id, entry_id }
}

pub(crate) fn node_event((event_id, spiffe_id): (u64, String)) -> NodeEvent {
    NodeEvent {
        event_id,
        spiffe_id,
    }
}

// ---------------------------------------------------------------- join tokens

pub(crate) async fn create_join_token(
    tx: &mut Tx,
    token: &JoinToken,
    now: OffsetDateTime,
) -> Result<()> {
    let mut q = tx.sql();
    q.push("INSERT INTO join_tokens (created_at, updated_at, token, expiry) VALUES (")
        .bind(now)
        .push(", ")
        .bind(now)
        .push(", ")
        .bind(token.token.as_str())
        .push(", ")
        .bind(token.expiry)
        .push(")");
    tx.insert(&q).await?;
    Ok(())
}

pub(crate) async fn fetch_join_token(tx: &mut Tx, token: &str) -> Result<Option<JoinToken>> {
    let mut q = tx.sql();
    q.push("SELECT token, expiry FROM join_tokens WHERE token = ")
        .bind(token)
        .push(" ORDER BY id LIMIT 1");
    tx.fetch_opt(&q, &[Col::Text, Col::Int])
        .await?
        .map(|r| {
            Ok(JoinToken {
                token: r.text(0)?,
                expiry: r.int(1)?,
            })
        })
        .transpose()
}

pub(crate) async fn delete_join_token(tx: &mut Tx, token: &str) -> Result<()> {
    let mut q = tx.sql();
    q.push("DELETE FROM join_tokens WHERE token = ").bind(token);
    if tx.execute(&q).await? == 0 {
        return Err(DataStoreError::record_not_found());
    }
    Ok(())
}

pub(crate) async fn prune_join_tokens(tx: &mut Tx, expires_before: i64) -> Result<()> {
    let mut q = tx.sql();
    q.push("DELETE FROM join_tokens WHERE expiry < ")
        .bind(expires_before);
    tx.execute(&q).await?;
    Ok(())
}

// ---------------------------------------------------------------- federation

const FR_COLUMNS: &str =
    "id, trust_domain, bundle_endpoint_url, bundle_endpoint_profile, endpoint_spiffe_id";
const FR_TYPES: [Col; 5] = [Col::Int, Col::Text, Col::Text, Col::Text, Col::Text];

struct FrRow {
    id: i64,
    trust_domain: String,
    url: String,
    profile: String,
    endpoint_spiffe_id: String,
}

fn fr_row(r: &DbRow) -> Result<FrRow> {
    Ok(FrRow {
        id: r.int(0)?,
        trust_domain: r.text(1)?,
        url: r.text(2)?,
        profile: r.text(3)?,
        endpoint_spiffe_id: r.text(4)?,
    })
}

async fn fr_from_row(tx: &mut Tx, row: FrRow) -> Result<FederationRelationship> {
    let url = crate::model::BundleEndpointUrl::parse(&row.url)
        .map_err(|e| DataStoreError::Unknown(format!("unable to parse URL: {e}")))?;
    let trust_domain = TrustDomain::new(&row.trust_domain).map_err(DataStoreError::sql)?;
    let profile = match row.profile.as_str() {
        "https_web" => BundleEndpointProfile::HttpsWeb,
        "https_spiffe" => BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: SpiffeId::parse(&row.endpoint_spiffe_id).map_err(|e| {
                DataStoreError::Unknown(format!("unable to parse bundle endpoint SPIFFE ID: {e}"))
            })?,
        },
        other => {
            return Err(DataStoreError::Unknown(format!(
                "unknown bundle endpoint profile type: {other:?}"
            )));
        }
    };
    let trust_domain_bundle = bundles::fetch(tx, &trust_domain)
        .await
        .map_err(|e| e.context("unable to fetch bundle"))?;
    Ok(FederationRelationship {
        trust_domain,
        bundle_endpoint_url: url,
        bundle_endpoint_profile: profile,
        trust_domain_bundle,
    })
}

fn endpoint_id(p: &BundleEndpointProfile) -> Option<&str> {
    match p {
        BundleEndpointProfile::HttpsWeb => None,
        BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
            Some(endpoint_spiffe_id.as_str())
        }
    }
}

pub(crate) async fn create_federation_relationship(
    tx: &mut Tx,
    fr: FederationRelationship,
    now: OffsetDateTime,
) -> Result<FederationRelationship> {
    if let Some(b) = &fr.trust_domain_bundle {
        bundles::set(tx, b.clone(), now)
            .await
            .map_err(|e| e.context("unable to set bundle"))?;
    }
    let mut q = tx.sql();
    q.push(
        "INSERT INTO federated_trust_domains (created_at, updated_at, trust_domain, bundle_endpoint_url, \
         bundle_endpoint_profile, endpoint_spiffe_id, implicit) VALUES (",
    )
    .bind(now)
    .push(", ")
    .bind(now)
    .push(", ")
    .bind(fr.trust_domain.name())
    .push(", ")
    .bind(fr.bundle_endpoint_url.as_str())
    .push(", ")
    .bind(fr.bundle_endpoint_profile.name())
    .push(", ")
    .bind(endpoint_id(&fr.bundle_endpoint_profile).unwrap_or(""))
    .push(", ")
    .bind(false)
    .push(")");
    tx.insert(&q).await?;
    Ok(fr)
}

async fn find_fr(tx: &mut Tx, td: &TrustDomain, lock: bool) -> Result<Option<FrRow>> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(FR_COLUMNS)
        .push(" FROM federated_trust_domains WHERE trust_domain = ")
        .bind(td.name())
        .push(" ORDER BY id LIMIT 1");
    if lock {
        q.push(tx.for_update());
    }
    tx.fetch_opt(&q, &FR_TYPES)
        .await?
        .as_ref()
        .map(fr_row)
        .transpose()
}

pub(crate) async fn fetch_federation_relationship(
    tx: &mut Tx,
    td: &TrustDomain,
) -> Result<Option<FederationRelationship>> {
    match find_fr(tx, td, false).await? {
        Some(row) => Ok(Some(fr_from_row(tx, row).await?)),
        None => Ok(None),
    }
}

pub(crate) async fn list_federation_relationships(
    tx: &mut Tx,
    pagination: Option<&Pagination>,
) -> Result<(Vec<FederationRelationship>, Option<Pagination>)> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(FR_COLUMNS)
        .push(" FROM federated_trust_domains");
    if let Some(p) = pagination {
        let after = parse_token(&p.token)?;
        if after > 0 {
            q.push(" WHERE id > ").bind(after);
        }
    }
    q.push(" ORDER BY id ASC");
    if let Some(p) = pagination {
        q.push(" LIMIT ").push(&p.page_size.to_string());
    }
    let rows: Vec<FrRow> = tx
        .fetch(&q, &FR_TYPES)
        .await?
        .iter()
        .map(fr_row)
        .collect::<Result<_>>()?;
    let token = rows.last().map(|r| r.id.to_string()).unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(fr_from_row(tx, r).await?);
    }
    Ok((
        out,
        pagination.map(|p| Pagination {
            token,
            page_size: p.page_size,
        }),
    ))
}

pub(crate) async fn delete_federation_relationship(tx: &mut Tx, td: &TrustDomain) -> Result<()> {
    let row = find_fr(tx, td, true)
        .await?
        .ok_or_else(DataStoreError::record_not_found)?;
    let mut q = tx.sql();
    q.push("DELETE FROM federated_trust_domains WHERE id = ")
        .bind(row.id);
    tx.execute(&q).await?;
    Ok(())
}

pub(crate) async fn update_federation_relationship(
    tx: &mut Tx,
    fr: FederationRelationship,
    mask: FederationRelationshipMask,
    now: OffsetDateTime,
) -> Result<FederationRelationship> {
    let mut row = find_fr(tx, &fr.trust_domain, true).await?.ok_or_else(|| {
        DataStoreError::NotFound("unable to fetch federation relationship: record not found".into())
    })?;
    if mask.bundle_endpoint_url {
        row.url = fr.bundle_endpoint_url.as_str().to_string();
    }
    if mask.bundle_endpoint_profile {
        row.profile = fr.bundle_endpoint_profile.name().to_string();
        // As SPIRE: the endpoint ID is only written for https_spiffe.
        if let Some(id) = endpoint_id(&fr.bundle_endpoint_profile) {
            row.endpoint_spiffe_id = id.to_string();
        }
    }
    if mask.trust_domain_bundle
        && let Some(b) = &fr.trust_domain_bundle
    {
        bundles::set(tx, b.clone(), now)
            .await
            .map_err(|e| e.context("unable to set bundle"))?;
    }
    let mut q = tx.sql();
    q.push("UPDATE federated_trust_domains SET updated_at = ")
        .bind(now)
        .push(", bundle_endpoint_url = ")
        .bind(row.url.as_str())
        .push(", bundle_endpoint_profile = ")
        .bind(row.profile.as_str())
        .push(", endpoint_spiffe_id = ")
        .bind(row.endpoint_spiffe_id.as_str())
        .push(" WHERE id = ")
        .bind(row.id);
    tx.execute(&q).await?;
    fr_from_row(tx, row).await
}

// ---------------------------------------------------------------- CA journals

const JOURNAL_COLUMNS: &str = "id, data, active_x509_authority_id";
const JOURNAL_TYPES: [Col; 3] = [Col::Int, Col::Bytes, Col::Text];

fn journal_from_row(mut r: DbRow) -> Result<CaJournal> {
    Ok(CaJournal {
        id: u64::try_from(r.int(0)?).map_err(DataStoreError::sql)?,
        data: r.bytes(1)?,
        active_x509_authority_id: r.text(2)?,
    })
}

pub(crate) async fn set_ca_journal(
    tx: &mut Tx,
    j: CaJournal,
    now: OffsetDateTime,
) -> Result<CaJournal> {
    if j.id == 0 {
        let mut q = tx.sql();
        q.push("INSERT INTO ca_journals (created_at, updated_at, data, active_x509_authority_id) VALUES (")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(j.data.clone())
            .push(", ")
            .bind(j.active_x509_authority_id.as_str())
            .push(")");
        let id = tx.insert(&q).await?;
        return Ok(CaJournal {
            id: u64::try_from(id).map_err(DataStoreError::sql)?,
            ..j
        });
    }
    let id = i64::try_from(j.id).map_err(DataStoreError::sql)?;
    let mut q = tx.sql();
    q.push("SELECT id FROM ca_journals WHERE id = ")
        .bind(id)
        .push(tx.for_update());
    if tx.fetch_opt(&q, &[Col::Int]).await?.is_none() {
        return Err(DataStoreError::record_not_found());
    }
    let mut q = tx.sql();
    q.push("UPDATE ca_journals SET updated_at = ")
        .bind(now)
        .push(", data = ")
        .bind(j.data.clone())
        .push(", active_x509_authority_id = ")
        .bind(j.active_x509_authority_id.as_str())
        .push(" WHERE id = ")
        .bind(id);
    tx.execute(&q).await?;
    Ok(j)
}

pub(crate) async fn fetch_ca_journal(
    tx: &mut Tx,
    active_x509_authority_id: &str,
) -> Result<Option<CaJournal>> {
    if active_x509_authority_id.is_empty() {
        return Err(DataStoreError::InvalidArgument(
            "active X509 authority ID is required".into(),
        ));
    }
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(JOURNAL_COLUMNS)
        .push(" FROM ca_journals WHERE active_x509_authority_id = ")
        .bind(active_x509_authority_id)
        .push(" ORDER BY id LIMIT 1");
    tx.fetch_opt(&q, &JOURNAL_TYPES)
        .await?
        .map(journal_from_row)
        .transpose()
}

pub(crate) async fn list_ca_journals(tx: &mut Tx) -> Result<Vec<CaJournal>> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(JOURNAL_COLUMNS)
        .push(" FROM ca_journals ORDER BY id");
    tx.fetch(&q, &JOURNAL_TYPES)
        .await?
        .into_iter()
        .map(journal_from_row)
        .collect()
}

pub(crate) async fn prune_ca_journals(tx: &mut Tx, all_expire_before: i64) -> Result<()> {
    use prost::Message;
    for j in list_ca_journals(tx).await? {
        let entries = spire_proto::journal::Entries::decode(j.data.as_slice()).map_err(|e| {
            DataStoreError::Internal(format!(
                "unable to unmarshal entries from CA journal record: {e}"
            ))
        })?;
        let live = entries
            .x509_c_as
            .iter()
            .any(|c| c.not_after > all_expire_before)
            || entries
                .jwt_keys
                .iter()
                .any(|k| k.not_after > all_expire_before);
        if live {
            continue;
        }
        let mut q = tx.sql();
        q.push("DELETE FROM ca_journals WHERE id = ")
            .bind(i64::try_from(j.id).map_err(DataStoreError::sql)?);
        tx.execute(&q)
            .await
            .map_err(|e| DataStoreError::Internal(format!("failed to delete CA journal: {e}")))?;
        tracing::info!(ca_journal_id = j.id, "Pruned stale CA journal record");
    }
    Ok(())
}
