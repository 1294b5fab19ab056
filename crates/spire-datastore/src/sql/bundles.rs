//! Bundles: the `bundles` table holds an encoded `spire.common.Bundle`.

use prost::Message;
use spiffe_core::TrustDomain;
use spire_proto::spire::common as pb;
use time::OffsetDateTime;

use super::db::{Col, Tx};
use super::{entries, parse_token};
use crate::error::{DataStoreError, Result};
use crate::model::{BundleMask, DeleteMode, JwtSigningKey, Pagination, RootCa, StoredBundle};

impl From<&StoredBundle> for pb::Bundle {
    fn from(b: &StoredBundle) -> Self {
        pb::Bundle {
            trust_domain_id: b.trust_domain.id_string(),
            root_cas: b
                .root_cas
                .iter()
                .map(|c| pb::Certificate {
                    der_bytes: c.der.clone(),
                    tainted_key: c.tainted,
                })
                .collect(),
            jwt_signing_keys: b
                .jwt_signing_keys
                .iter()
                .map(|k| pb::PublicKey {
                    pkix_bytes: k.pkix.clone(),
                    kid: k.kid.clone(),
                    not_after: k.not_after,
                    tainted_key: k.tainted,
                })
                .collect(),
            refresh_hint: b.refresh_hint,
            sequence_number: b.sequence_number,
        }
    }
}

impl TryFrom<pb::Bundle> for StoredBundle {
    type Error = DataStoreError;
    fn try_from(b: pb::Bundle) -> Result<Self> {
        let trust_domain = TrustDomain::from_name_or_id(&b.trust_domain_id).map_err(|e| {
            DataStoreError::sql(format!(
                "invalid bundle trust domain {:?}: {e}",
                b.trust_domain_id
            ))
        })?;
        Ok(StoredBundle {
            trust_domain,
            root_cas: b
                .root_cas
                .into_iter()
                .map(|c| RootCa {
                    der: c.der_bytes,
                    tainted: c.tainted_key,
                })
                .collect(),
            jwt_signing_keys: b
                .jwt_signing_keys
                .into_iter()
                .map(|k| JwtSigningKey {
                    kid: k.kid,
                    pkix: k.pkix_bytes,
                    not_after: k.not_after,
                    tainted: k.tainted_key,
                })
                .collect(),
            refresh_hint: b.refresh_hint,
            sequence_number: b.sequence_number,
        })
    }
}

/// Encodes a bundle as SPIRE stores it.
pub fn encode_bundle(b: &StoredBundle) -> Vec<u8> {
    pb::Bundle::from(b).encode_to_vec()
}

/// Decodes a `bundles.data` value.
pub fn decode_bundle(data: &[u8]) -> Result<StoredBundle> {
    let pb = pb::Bundle::decode(data).map_err(DataStoreError::sql)?;
    StoredBundle::try_from(pb)
}

struct BundleRow {
    id: i64,
    bundle: StoredBundle,
}

async fn find(tx: &mut Tx, td: &TrustDomain, lock: bool) -> Result<Option<BundleRow>> {
    let mut q = tx.sql();
    q.push("SELECT id, data FROM bundles WHERE trust_domain = ")
        .bind(td.id_string())
        .push(" ORDER BY id LIMIT 1");
    if lock {
        q.push(tx.for_update());
    }
    match tx.fetch_opt(&q, &[Col::Int, Col::Bytes]).await? {
        Some(mut r) => Ok(Some(BundleRow {
            id: r.int(0)?,
            bundle: decode_bundle(&r.bytes(1)?)?,
        })),
        None => Ok(None),
    }
}

pub(crate) async fn fetch(tx: &mut Tx, td: &TrustDomain) -> Result<Option<StoredBundle>> {
    Ok(find(tx, td, false).await?.map(|r| r.bundle))
}

pub(crate) async fn create(
    tx: &mut Tx,
    b: StoredBundle,
    now: OffsetDateTime,
) -> Result<StoredBundle> {
    let mut q = tx.sql();
    q.push("INSERT INTO bundles (created_at, updated_at, trust_domain, data) VALUES (")
        .bind(now)
        .push(", ")
        .bind(now)
        .push(", ")
        .bind(b.trust_domain.id_string())
        .push(", ")
        .bind(encode_bundle(&b))
        .push(")");
    tx.insert(&q).await?;
    Ok(b)
}

async fn save(tx: &mut Tx, row_id: i64, b: &StoredBundle, now: OffsetDateTime) -> Result<()> {
    let mut q = tx.sql();
    q.push("UPDATE bundles SET updated_at = ")
        .bind(now)
        .push(", data = ")
        .bind(encode_bundle(b))
        .push(" WHERE id = ")
        .bind(row_id);
    tx.execute(&q).await?;
    Ok(())
}

pub(crate) async fn update(
    tx: &mut Tx,
    b: StoredBundle,
    mask: Option<BundleMask>,
    now: OffsetDateTime,
) -> Result<StoredBundle> {
    let mask = mask.unwrap_or(BundleMask::ALL);
    let row = find(tx, &b.trust_domain, true)
        .await?
        .ok_or_else(DataStoreError::record_not_found)?;
    let mut cur = row.bundle;
    if mask.refresh_hint {
        cur.refresh_hint = b.refresh_hint;
    }
    if mask.root_cas {
        cur.root_cas = b.root_cas;
    }
    if mask.jwt_signing_keys {
        cur.jwt_signing_keys = b.jwt_signing_keys;
    }
    if mask.sequence_number {
        cur.sequence_number = b.sequence_number;
    }
    save(tx, row.id, &cur, now).await?;
    Ok(cur)
}

pub(crate) async fn set(tx: &mut Tx, b: StoredBundle, now: OffsetDateTime) -> Result<StoredBundle> {
    if find(tx, &b.trust_domain, true).await?.is_none() {
        return create(tx, b, now).await;
    }
    update(tx, b, None, now).await
}

pub(crate) async fn append(
    tx: &mut Tx,
    b: StoredBundle,
    now: OffsetDateTime,
) -> Result<StoredBundle> {
    let Some(row) = find(tx, &b.trust_domain, true).await? else {
        return create(tx, b, now).await;
    };
    let mut cur = row.bundle;
    let mut changed = false;
    // SPIRE compares whole messages: DER plus tainted flag; key plus kid,
    // expiry and tainted flag.
    for ca in b.root_cas {
        if !cur.root_cas.contains(&ca) {
            cur.root_cas.push(ca);
            changed = true;
        }
    }
    for k in b.jwt_signing_keys {
        if !cur.jwt_signing_keys.contains(&k) {
            cur.jwt_signing_keys.push(k);
            changed = true;
        }
    }
    if changed {
        cur.sequence_number += 1;
        save(tx, row.id, &cur, now).await?;
    }
    Ok(cur)
}

pub(crate) async fn delete(
    tx: &mut Tx,
    td: &TrustDomain,
    mode: DeleteMode,
    now: OffsetDateTime,
) -> Result<()> {
    let row = find(tx, td, true)
        .await?
        .ok_or_else(DataStoreError::record_not_found)?;
    let federated = entries::federated_with_bundle(tx, row.id).await?;
    if !federated.is_empty() {
        match mode {
            DeleteMode::Restrict => {
                return Err(DataStoreError::FailedPrecondition(format!(
                    "datastore-sql: cannot delete bundle; federated with {} registration entries",
                    federated.len()
                )));
            }
            // SPIRE deletes only the registered_entries rows and writes no
            // events; we delete the entries completely, with their events.
            DeleteMode::Delete => entries::delete_by_row_ids(tx, &federated, now).await?,
            DeleteMode::Dissociate => {
                // The entries' federates_with changes: record events so
                // event-driven caches see it (SPIRE writes none).
                super::misc::insert_entry_events(
                    tx,
                    federated.iter().map(|(_, e)| e.as_str()),
                    now,
                )
                .await?;
            }
        }
    }
    let mut q = tx.sql();
    q.push("DELETE FROM federated_registration_entries WHERE bundle_id = ")
        .bind(row.id);
    tx.execute(&q).await?;
    let mut q = tx.sql();
    q.push("DELETE FROM bundles WHERE id = ").bind(row.id);
    tx.execute(&q).await?;
    Ok(())
}

pub(crate) async fn count(tx: &mut Tx) -> Result<u32> {
    let mut q = tx.sql();
    q.push("SELECT COUNT(*) FROM bundles");
    u32::try_from(tx.fetch_int(&q).await?).map_err(DataStoreError::sql)
}

pub(crate) async fn list(
    tx: &mut Tx,
    pagination: Option<&Pagination>,
) -> Result<(Vec<StoredBundle>, Option<Pagination>)> {
    let mut q = tx.sql();
    q.push("SELECT id, data FROM bundles");
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
    let rows = tx.fetch(&q, &[Col::Int, Col::Bytes]).await?;
    let mut last = None;
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        last = Some(r.int(0)?);
        out.push(decode_bundle(&r.bytes(1)?)?);
    }
    let pag = pagination.map(|p| Pagination {
        token: last.map(|l| l.to_string()).unwrap_or_default(),
        page_size: p.page_size,
    });
    Ok((out, pag))
}

/// Every certificate in a DER blob (one or several concatenated).
fn parse_certs(
    der: &[u8],
) -> std::result::Result<Vec<x509_parser::certificate::X509Certificate<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = der;
    while !rest.is_empty() {
        let (r, cert) = x509_parser::parse_x509_certificate(rest).map_err(|e| e.to_string())?;
        out.push(cert);
        rest = r;
    }
    if out.is_empty() {
        return Err("no certificate".into());
    }
    Ok(out)
}

/// Lowercase hex of the subject key ID (SPIRE's `SubjectKeyIDToString`).
pub(crate) fn subject_key_id(der: &[u8]) -> std::result::Result<String, String> {
    let certs = parse_certs(der)?;
    let cert = certs.first().ok_or("no certificate")?;
    for ext in cert.extensions() {
        if let x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(kid) =
            ext.parsed_extension()
        {
            return Ok(kid.0.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    Ok(String::new())
}

pub(crate) async fn prune(
    tx: &mut Tx,
    td: &TrustDomain,
    expires_before: i64,
    now: OffsetDateTime,
) -> Result<bool> {
    let Some(row) = find(tx, td, true)
        .await
        .map_err(|e| e.context("unable to fetch current bundle"))?
    else {
        return Ok(false);
    };
    let cur = row.bundle;
    let mut changed = false;
    let mut root_cas = Vec::with_capacity(cur.root_cas.len());
    for ca in &cur.root_cas {
        let certs = parse_certs(&ca.der).map_err(|e| {
            DataStoreError::Unknown(format!("prune failed: cannot parse certificates: {e}"))
        })?;
        if certs
            .iter()
            .any(|c| c.validity().not_after.timestamp() <= expires_before)
        {
            tracing::info!(trust_domain = %td, "Pruning CA certificate due to expiration");
            changed = true;
        } else {
            root_cas.push(ca.clone());
        }
    }
    let mut keys = Vec::with_capacity(cur.jwt_signing_keys.len());
    for k in &cur.jwt_signing_keys {
        if k.not_after <= expires_before {
            tracing::info!(kid = %k.kid, "Pruning JWT signing key due to expiration");
            changed = true;
        } else {
            keys.push(k.clone());
        }
    }
    if root_cas.is_empty() {
        tracing::warn!("Pruning halted; all known CA certificates have expired");
        return Err(DataStoreError::Unknown(
            "prune failed: would prune all certificates".into(),
        ));
    }
    if keys.is_empty() {
        tracing::warn!("Pruning halted; all known JWT signing keys have expired");
        return Err(DataStoreError::Unknown(
            "prune failed: would prune all JWT signing keys".into(),
        ));
    }
    if changed {
        let new = StoredBundle {
            trust_domain: cur.trust_domain.clone(),
            root_cas,
            jwt_signing_keys: keys,
            refresh_hint: cur.refresh_hint,
            sequence_number: cur.sequence_number + 1,
        };
        save(tx, row.id, &new, now)
            .await
            .map_err(|e| e.context("unable to write new bundle"))?;
    }
    Ok(changed)
}

async fn get(tx: &mut Tx, td: &TrustDomain) -> Result<BundleRow> {
    find(tx, td, true)
        .await?
        .ok_or_else(DataStoreError::record_not_found)
}

pub(crate) async fn taint_x509_ca(
    tx: &mut Tx,
    td: &TrustDomain,
    skid: &str,
    now: OffsetDateTime,
) -> Result<()> {
    let mut row = get(tx, td).await?;
    let mut found = false;
    for ca in &mut row.bundle.root_cas {
        let id = subject_key_id(&ca.der)
            .map_err(|e| DataStoreError::Internal(format!("failed to parse rootCA: {e}")))?;
        if id != skid {
            continue;
        }
        if ca.tainted {
            return Err(DataStoreError::InvalidArgument(
                "root CA is already tainted".into(),
            ));
        }
        found = true;
        ca.tainted = true;
    }
    if !found {
        return Err(DataStoreError::NotFound(
            "no ca found with provided subject key ID".into(),
        ));
    }
    row.bundle.sequence_number += 1;
    save(tx, row.id, &row.bundle, now).await
}

pub(crate) async fn revoke_x509_ca(
    tx: &mut Tx,
    td: &TrustDomain,
    skid: &str,
    now: OffsetDateTime,
) -> Result<()> {
    let mut row = get(tx, td).await?;
    let mut found = false;
    let mut kept = Vec::with_capacity(row.bundle.root_cas.len());
    for ca in std::mem::take(&mut row.bundle.root_cas) {
        let id = subject_key_id(&ca.der)
            .map_err(|e| DataStoreError::Internal(format!("failed to parse root CA: {e}")))?;
        if id == skid {
            if !ca.tainted {
                return Err(DataStoreError::InvalidArgument(
                    "it is not possible to revoke an untainted root CA".into(),
                ));
            }
            found = true;
            continue;
        }
        kept.push(ca);
    }
    if !found {
        return Err(DataStoreError::NotFound(
            "no root CA found with provided subject key ID".into(),
        ));
    }
    row.bundle.root_cas = kept;
    row.bundle.sequence_number += 1;
    save(tx, row.id, &row.bundle, now)
        .await
        .map_err(|e| DataStoreError::Internal(format!("failed to update bundle: {e}")))
}

pub(crate) async fn taint_jwt_key(
    tx: &mut Tx,
    td: &TrustDomain,
    kid: &str,
    now: OffsetDateTime,
) -> Result<JwtSigningKey> {
    let mut row = get(tx, td).await?;
    let mut tainted: Option<JwtSigningKey> = None;
    for k in &mut row.bundle.jwt_signing_keys {
        if k.kid != kid {
            continue;
        }
        if k.tainted {
            return Err(DataStoreError::InvalidArgument(
                "key is already tainted".into(),
            ));
        }
        if tainted.is_some() {
            return Err(DataStoreError::Internal(
                "another JWT Key found with the same KeyID".into(),
            ));
        }
        k.tainted = true;
        tainted = Some(k.clone());
    }
    let tainted = tainted
        .ok_or_else(|| DataStoreError::NotFound("no JWT Key found with provided key ID".into()))?;
    row.bundle.sequence_number += 1;
    save(tx, row.id, &row.bundle, now).await?;
    Ok(tainted)
}

pub(crate) async fn revoke_jwt_key(
    tx: &mut Tx,
    td: &TrustDomain,
    kid: &str,
    now: OffsetDateTime,
) -> Result<JwtSigningKey> {
    let mut row = get(tx, td).await?;
    let mut revoked: Option<JwtSigningKey> = None;
    let mut kept = Vec::with_capacity(row.bundle.jwt_signing_keys.len());
    for k in std::mem::take(&mut row.bundle.jwt_signing_keys) {
        if k.kid == kid {
            if revoked.is_some() {
                return Err(DataStoreError::Internal(
                    "another key found with the same KeyID".into(),
                ));
            }
            if !k.tainted {
                return Err(DataStoreError::InvalidArgument(
                    "it is not possible to revoke an untainted key".into(),
                ));
            }
            revoked = Some(k);
            continue;
        }
        kept.push(k);
    }
    let revoked = revoked
        .ok_or_else(|| DataStoreError::NotFound("no JWT Key found with provided key ID".into()))?;
    row.bundle.jwt_signing_keys = kept;
    row.bundle.sequence_number += 1;
    save(tx, row.id, &row.bundle, now).await?;
    Ok(revoked)
}
