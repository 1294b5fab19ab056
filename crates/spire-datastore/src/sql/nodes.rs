//! Attested nodes (`attested_node_entries`), node selectors
//! (`node_resolver_map_entries`) and their events.

use std::collections::HashMap;

use spiffe_core::SpiffeId;
use spire_plugin::Selector;
use time::OffsetDateTime;

use super::db::{Col, DbRow, Sql, Tx};
use super::entries::selector_from_db;
use super::filter::push_set_match;
use super::{IN_CHUNK, misc, parse_token, timefmt};
use crate::error::{DataStoreError, Result};
use crate::model::{AttestedNode, BySelectors, NodeMask, Pagination};

const NODE_COLUMNS: &str = "N.id, N.spiffe_id, N.data_type, N.serial_number, N.expires_at, N.new_serial_number, \
     N.new_expires_at, N.can_reattest";
const NODE_TYPES: [Col; 8] = [
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Time,
    Col::Text,
    Col::Time,
    Col::Bool,
];
const INTERNAL_PAGE: u32 = 10_000;
/// SPIRE prunes at most this many expired nodes per call.
const PRUNE_LIMIT: u32 = 1000;

/// Node filters shared by list and count.
#[derive(Debug, Default, Clone)]
pub(crate) struct NodeFilter {
    pub(crate) by_attestation_type: Option<String>,
    pub(crate) by_banned: Option<bool>,
    pub(crate) by_expires_before: Option<i64>,
    pub(crate) by_selector_match: Option<BySelectors>,
    pub(crate) by_can_reattest: Option<bool>,
    pub(crate) valid_at: Option<i64>,
}

impl NodeFilter {
    pub(crate) fn check(&self) -> Result<()> {
        if self
            .by_selector_match
            .as_ref()
            .is_some_and(|s| s.selectors.is_empty())
        {
            return Err(DataStoreError::InvalidArgument(
                "cannot list by empty selectors set".into(),
            ));
        }
        Ok(())
    }

    fn push(&self, q: &mut Sql) -> Result<()> {
        if let Some(t) = self.by_expires_before {
            q.push(" AND N.expires_at < ").bind(timefmt::unix(t)?);
        }
        if let Some(t) = self.valid_at {
            q.push(" AND N.expires_at >= ").bind(timefmt::unix(t)?);
        }
        if let Some(t) = self
            .by_attestation_type
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            q.push(" AND N.data_type = ").bind(t);
        }
        match self.by_banned {
            Some(true) => {
                q.push(" AND N.serial_number = ''");
            }
            Some(false) => {
                q.push(" AND N.serial_number <> ''");
            }
            None => {}
        }
        if let Some(c) = self.by_can_reattest {
            q.push(" AND N.can_reattest = ").bind(c);
        }
        if let Some(bs) = &self.by_selector_match {
            let mut seen = std::collections::HashSet::new();
            let items: Vec<(String, String)> = bs
                .selectors
                .iter()
                .map(|s| (s.selector_type().to_string(), s.value().to_string()))
                .filter(|s| seen.insert(s.clone()))
                .collect();
            push_set_match(
                q,
                bs.match_behavior,
                &items,
                |q, (t, v)| {
                    q.push("type = ")
                        .bind(t.as_str())
                        .push(" AND value = ")
                        .bind(v.as_str());
                },
                "N.spiffe_id IN (SELECT spiffe_id FROM node_resolver_map_entries WHERE ",
                "SELECT 1 FROM node_resolver_map_entries S WHERE S.spiffe_id = N.spiffe_id AND NOT (",
                |q, (t, v)| {
                    q.push("S.type = ")
                        .bind(t.as_str())
                        .push(" AND S.value = ")
                        .bind(v.as_str());
                },
            );
        }
        Ok(())
    }
}

fn node_from_row(mut r: DbRow) -> Result<(i64, AttestedNode)> {
    let id = r.int(0)?;
    let sid = r.take_text(1)?;
    let spiffe_id = SpiffeId::parse(&sid).map_err(|e| {
        DataStoreError::Internal(format!(
            "datastore-sql: invalid SPIFFE ID {sid:?} in attested_node_entries row {id}: {e}"
        ))
    })?;
    Ok((
        id,
        AttestedNode {
            spiffe_id,
            attestation_data_type: r.take_text(2)?,
            cert_serial_number: r.take_text(3)?,
            cert_not_after: r.unix(4)?,
            new_cert_serial_number: r.take_text(5)?,
            new_cert_not_after: r.opt_time(6)?.map_or(0, OffsetDateTime::unix_timestamp),
            selectors: Vec::new(),
            can_reattest: r.bool(7)?,
        },
    ))
}

/// Fills the selectors of the nodes (batched by SPIFFE ID).
async fn load_selectors(tx: &mut Tx, nodes: &mut [(i64, AttestedNode)]) -> Result<()> {
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, (_, n))| (n.spiffe_id.as_str().to_string(), i))
        .collect();
    let ids: Vec<String> = nodes
        .iter()
        .map(|(_, n)| n.spiffe_id.as_str().to_string())
        .collect();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = tx.sql();
        q.push("SELECT spiffe_id, type, value FROM node_resolver_map_entries WHERE spiffe_id IN ")
            .bind_list(chunk.iter())
            .push(" ORDER BY id");
        for mut r in tx.fetch(&q, &[Col::Text, Col::Text, Col::Text]).await? {
            if let Some(&i) = index.get(&r.text(0)?) {
                let s = selector_from_db(&r.take_text(1)?, &r.take_text(2)?)?;
                nodes[i].1.selectors.push(s);
            }
        }
    }
    Ok(())
}

pub(crate) async fn list_page(
    tx: &mut Tx,
    filter: &NodeFilter,
    fetch_selectors: bool,
    after_id: i64,
    limit: Option<u32>,
) -> Result<Vec<(i64, AttestedNode)>> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(NODE_COLUMNS)
        .push(" FROM attested_node_entries N WHERE 1=1");
    filter.push(&mut q)?;
    if after_id > 0 {
        q.push(" AND N.id > ").bind(after_id);
    }
    q.push(" ORDER BY N.id ASC");
    if let Some(n) = limit {
        q.push(" LIMIT ").push(&n.to_string());
    }
    let rows = tx.fetch(&q, &NODE_TYPES).await?;
    let mut nodes = rows
        .into_iter()
        .map(node_from_row)
        .collect::<Result<Vec<_>>>()?;
    if fetch_selectors {
        load_selectors(tx, &mut nodes).await?;
    }
    Ok(nodes)
}

pub(crate) async fn list(
    tx: &mut Tx,
    filter: &NodeFilter,
    fetch_selectors: bool,
    pagination: Option<&Pagination>,
) -> Result<(Vec<AttestedNode>, Option<Pagination>)> {
    filter.check()?;
    match pagination {
        Some(p) => {
            let after = parse_token(&p.token)?;
            let page = list_page(tx, filter, fetch_selectors, after, Some(p.page_size)).await?;
            let token = page
                .last()
                .map(|(id, _)| id.to_string())
                .unwrap_or_default();
            Ok((
                page.into_iter().map(|(_, n)| n).collect(),
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
                let page =
                    list_page(tx, filter, fetch_selectors, after, Some(INTERNAL_PAGE)).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                let full = page.len() == INTERNAL_PAGE as usize;
                out.extend(page.into_iter().map(|(_, n)| n));
                if !full {
                    break;
                }
            }
            Ok((out, None))
        }
    }
}

pub(crate) async fn count(tx: &mut Tx, filter: &NodeFilter) -> Result<u32> {
    filter.check()?;
    let mut q = tx.sql();
    q.push("SELECT COUNT(*) FROM attested_node_entries N WHERE 1=1");
    filter.push(&mut q)?;
    u32::try_from(tx.fetch_int(&q).await?).map_err(DataStoreError::sql)
}

async fn find(tx: &mut Tx, spiffe_id: &str, lock: bool) -> Result<Option<(i64, AttestedNode)>> {
    let mut q = tx.sql();
    q.push("SELECT ")
        .push(NODE_COLUMNS)
        .push(" FROM attested_node_entries N WHERE N.spiffe_id = ")
        .bind(spiffe_id)
        .push(" ORDER BY N.id LIMIT 1");
    if lock {
        q.push(tx.for_update());
    }
    tx.fetch_opt(&q, &NODE_TYPES)
        .await?
        .map(node_from_row)
        .transpose()
}

pub(crate) async fn fetch(tx: &mut Tx, spiffe_id: &SpiffeId) -> Result<Option<AttestedNode>> {
    Ok(find(tx, spiffe_id.as_str(), false).await?.map(|(_, n)| n))
}

pub(crate) async fn create(
    tx: &mut Tx,
    node: AttestedNode,
    now: OffsetDateTime,
) -> Result<AttestedNode> {
    let mut q = tx.sql();
    q.push(
        "INSERT INTO attested_node_entries (created_at, updated_at, spiffe_id, data_type, serial_number, \
         expires_at, new_serial_number, new_expires_at, can_reattest) VALUES (",
    )
    .bind(now)
    .push(", ")
    .bind(now)
    .push(", ")
    .bind(node.spiffe_id.as_str())
    .push(", ")
    .bind(node.attestation_data_type.as_str())
    .push(", ")
    .bind(node.cert_serial_number.as_str())
    .push(", ")
    .bind(timefmt::unix(node.cert_not_after)?)
    .push(", ")
    .bind(node.new_cert_serial_number.as_str())
    .push(", ")
    .bind(nullable_unix(node.new_cert_not_after)?)
    .push(", ")
    .bind(node.can_reattest)
    .push(")");
    tx.insert(&q).await?;
    misc::insert_node_event(tx, node.spiffe_id.as_str(), now).await?;
    Ok(AttestedNode {
        selectors: Vec::new(),
        ..node
    })
}

fn nullable_unix(secs: i64) -> Result<Option<OffsetDateTime>> {
    if secs == 0 {
        Ok(None)
    } else {
        timefmt::unix(secs).map(Some)
    }
}

pub(crate) async fn update(
    tx: &mut Tx,
    n: AttestedNode,
    mask: Option<NodeMask>,
    now: OffsetDateTime,
) -> Result<AttestedNode> {
    let mask = mask.unwrap_or(NodeMask::ALL);
    let (row_id, mut cur) = find(tx, n.spiffe_id.as_str(), true)
        .await?
        .ok_or_else(DataStoreError::record_not_found)?;
    let mut q = tx.sql();
    q.push("UPDATE attested_node_entries SET updated_at = ")
        .bind(now);
    if mask.cert_not_after {
        q.push(", expires_at = ")
            .bind(timefmt::unix(n.cert_not_after)?);
        cur.cert_not_after = n.cert_not_after;
    }
    if mask.cert_serial_number {
        q.push(", serial_number = ")
            .bind(n.cert_serial_number.as_str());
        cur.cert_serial_number = n.cert_serial_number.clone();
    }
    if mask.new_cert_not_after {
        q.push(", new_expires_at = ")
            .bind(nullable_unix(n.new_cert_not_after)?);
        cur.new_cert_not_after = n.new_cert_not_after;
    }
    if mask.new_cert_serial_number {
        q.push(", new_serial_number = ")
            .bind(n.new_cert_serial_number.as_str());
        cur.new_cert_serial_number = n.new_cert_serial_number.clone();
    }
    if mask.can_reattest {
        q.push(", can_reattest = ").bind(n.can_reattest);
        cur.can_reattest = n.can_reattest;
    }
    q.push(" WHERE id = ").bind(row_id);
    tx.execute(&q).await?;
    misc::insert_node_event(tx, n.spiffe_id.as_str(), now).await?;
    Ok(cur)
}

async fn delete_selectors(tx: &mut Tx, spiffe_id: &str) -> Result<()> {
    // As SPIRE does: collect the row IDs first, then delete by ID, which
    // avoids MySQL gap locks (and the deadlocks they caused) on the index.
    let mut q = tx.sql();
    q.push("SELECT id FROM node_resolver_map_entries WHERE spiffe_id = ")
        .bind(spiffe_id);
    let ids: Vec<i64> = tx
        .fetch(&q, &[Col::Int])
        .await?
        .iter()
        .map(|r| r.int(0))
        .collect::<Result<_>>()?;
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = tx.sql();
        q.push("DELETE FROM node_resolver_map_entries WHERE id IN ")
            .bind_list(chunk.iter().copied());
        tx.execute(&q).await?;
    }
    Ok(())
}

async fn delete_node_and_selectors(tx: &mut Tx, spiffe_id: &str) -> Result<AttestedNode> {
    delete_selectors(tx, spiffe_id).await?;
    let (row_id, node) = find(tx, spiffe_id, true)
        .await?
        .ok_or_else(DataStoreError::record_not_found)?;
    let mut q = tx.sql();
    q.push("DELETE FROM attested_node_entries WHERE id = ")
        .bind(row_id);
    tx.execute(&q).await?;
    Ok(node)
}

pub(crate) async fn delete(
    tx: &mut Tx,
    spiffe_id: &SpiffeId,
    now: OffsetDateTime,
) -> Result<AttestedNode> {
    let node = delete_node_and_selectors(tx, spiffe_id.as_str()).await?;
    misc::insert_node_event(tx, spiffe_id.as_str(), now).await?;
    Ok(node)
}

pub(crate) async fn prune_expired(
    tx: &mut Tx,
    expired_before: i64,
    include_non_reattestable: bool,
    now: OffsetDateTime,
) -> Result<u32> {
    let mut q = tx.sql();
    q.push("SELECT spiffe_id FROM attested_node_entries WHERE expires_at < ")
        .bind(timefmt::unix(expired_before)?);
    if !include_non_reattestable {
        q.push(" AND can_reattest = ").bind(true);
    }
    q.push(" AND serial_number <> '' ORDER BY id LIMIT ")
        .push(&PRUNE_LIMIT.to_string());
    let ids: Vec<String> = tx
        .fetch(&q, &[Col::Text])
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_>>()?;
    let mut count = 0u32;
    for id in &ids {
        delete_node_and_selectors(tx, id).await?;
        misc::insert_node_event(tx, id, now).await?;
        count += 1;
    }
    tracing::info!(count, "Pruned expired agents");
    Ok(count)
}

pub(crate) async fn get_selectors(tx: &mut Tx, spiffe_id: &SpiffeId) -> Result<Vec<Selector>> {
    let mut q = tx.sql();
    q.push("SELECT type, value FROM node_resolver_map_entries WHERE spiffe_id = ")
        .bind(spiffe_id.as_str())
        .push(" ORDER BY id");
    let mut out = Vec::new();
    for mut r in tx.fetch(&q, &[Col::Text, Col::Text]).await? {
        out.push(selector_from_db(&r.take_text(0)?, &r.take_text(1)?)?);
    }
    Ok(out)
}

pub(crate) async fn list_selectors(
    tx: &mut Tx,
    valid_at: Option<i64>,
) -> Result<HashMap<SpiffeId, Vec<Selector>>> {
    let mut q = tx.sql();
    q.push("SELECT nre.spiffe_id, nre.type, nre.value FROM node_resolver_map_entries nre");
    if let Some(t) = valid_at {
        q.push(" INNER JOIN attested_node_entries ane ON nre.spiffe_id = ane.spiffe_id WHERE ane.expires_at > ")
            .bind(timefmt::unix(t)?);
    }
    q.push(" ORDER BY nre.spiffe_id ASC, nre.id ASC");
    let mut out: HashMap<SpiffeId, Vec<Selector>> = HashMap::new();
    let mut current: Option<(String, SpiffeId)> = None;
    for mut r in tx.fetch(&q, &[Col::Text, Col::Text, Col::Text]).await? {
        let sid = r.take_text(0)?;
        let key = match &current {
            Some((s, id)) if *s == sid => id.clone(),
            _ => {
                let id = SpiffeId::parse(&sid).map_err(|e| {
                    DataStoreError::sql(format!(
                        "invalid SPIFFE ID {sid:?} in node_resolver_map_entries: {e}"
                    ))
                })?;
                current = Some((sid, id.clone()));
                id
            }
        };
        let s = selector_from_db(&r.take_text(1)?, &r.take_text(2)?)?;
        out.entry(key).or_default().push(s);
    }
    Ok(out)
}

pub(crate) async fn set_selectors(
    tx: &mut Tx,
    spiffe_id: &SpiffeId,
    selectors: &[Selector],
    now: OffsetDateTime,
) -> Result<()> {
    delete_selectors(tx, spiffe_id.as_str()).await?;
    for chunk in selectors.chunks(IN_CHUNK / 5) {
        let mut q = tx.sql();
        q.push("INSERT INTO node_resolver_map_entries (created_at, updated_at, spiffe_id, type, value) VALUES ");
        for (i, s) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push("(")
                .bind(now)
                .push(", ")
                .bind(now)
                .push(", ")
                .bind(spiffe_id.as_str())
                .push(", ")
                .bind(s.selector_type())
                .push(", ")
                .bind(s.value())
                .push(")");
        }
        tx.execute(&q).await?;
    }
    misc::insert_node_event(tx, spiffe_id.as_str(), now).await
}
