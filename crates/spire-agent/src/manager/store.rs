//! SPIRE's SVID store service: entries marked `store_svid` are never served over the
//! Workload API; the agent mints their SVIDs itself and hands them to the SVIDStore plugin
//! their selectors name (all of an entry's selectors have the plugin's name as type; their
//! values are the plugin's metadata). An SVID is stored again when its entry or a bundle it
//! carries changes, and renewed like any other; when the entry goes, the stored SVID is
//! deleted (a plugin that calls the metadata malformed counts as deleted, as in SPIRE).

use super::*;
use spire_plugin::{StoredSvid, SvidStore};

/// What the agent last stored for one entry.
#[derive(Debug, Clone)]
pub(super) struct StoredRecord {
    /// The entry as stored.
    entry: Arc<Entry>,
    /// The SVID and its key.
    svid: X509SvidRecord,
    /// The bundles it was stored with.
    bundles: StoreBundles,
    /// Whether the plugin accepted it.
    stored: bool,
    /// Signed by a tainted authority: minted again at the next sync.
    tainted: bool,
}

/// The X.509 authorities stored with an SVID: its trust domain's, and those of the trust
/// domains the entry federates with (the ones the agent has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoreBundles {
    own: Vec<Vec<u8>>,
    federated: Vec<(TrustDomain, Vec<Vec<u8>>)>,
}

/// The plugin named by an entry's selectors, and the metadata (selector values).
fn store_of(entry: &Entry) -> Result<(String, Vec<String>), &'static str> {
    let Some((name, _)) = entry.selectors().next() else {
        return Err("no selectors found");
    };
    let mut metadata = Vec::with_capacity(entry.selector_keys().len());
    for (selector_type, value) in entry.selectors() {
        if selector_type != name {
            return Err("selector contains multiple types");
        }
        metadata.push(value.to_string());
    }
    Ok((name.to_string(), metadata))
}

impl Manager {
    /// The store `entry` names, its name and the metadata; `None` (logged, with SPIRE's
    /// words for `doing`: "deleting", "storing") when there is none.
    fn svid_store(
        &self,
        entry: &Entry,
        doing: &str,
    ) -> Option<(Arc<dyn SvidStore>, String, Vec<String>)> {
        let (name, metadata) = match store_of(entry) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(subsystem_name = "svid_store_service", entry = entry.id.as_str(), spiffe_id = %entry.spiffe_id, error = e, "Invalid store name in selectors");
                return None;
            }
        };
        let Some(store) = self
            .cfg
            .svid_stores
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
        else {
            tracing::error!(subsystem_name = "svid_store_service", entry = entry.id.as_str(), spiffe_id = %entry.spiffe_id, svid_store = name.as_str(), "Error {doing} SVID: SVIDStore not found");
            return None;
        };
        Some((store, name, metadata))
    }

    /// Deletes what was stored for `entry`; true when it is gone.
    async fn delete_stored(&self, entry: &Entry) -> bool {
        let Some((store, name, metadata)) = self.svid_store(entry, "deleting") else {
            return false;
        };
        match store.delete_x509_svid(&metadata).await {
            Ok(()) => {
                tracing::debug!(subsystem_name = "svid_store_service", entry = entry.id.as_str(), spiffe_id = %entry.spiffe_id, svid_store = name.as_str(), "SVID deleted successfully");
                true
            }
            Err(e) if e.code == spire_plugin::Code::InvalidArgument => {
                tracing::debug!(subsystem_name = "svid_store_service", entry = entry.id.as_str(), spiffe_id = %entry.spiffe_id, svid_store = name.as_str(), error = %e, "Failed to delete SVID because of malformed selectors");
                true
            }
            Err(e) => {
                tracing::error!(subsystem_name = "svid_store_service", entry = entry.id.as_str(), spiffe_id = %entry.spiffe_id, svid_store = name.as_str(), error = %e, "Failed to delete SVID");
                false
            }
        }
    }

    /// Stores `record`'s SVID through its plugin; true when the plugin took it.
    async fn put_stored(&self, record: &StoredRecord) -> bool {
        let entry = &record.entry;
        let Some((store, name, metadata)) = self.svid_store(entry, "storing") else {
            return false;
        };
        if record.bundles.own.is_empty() {
            tracing::error!(
                subsystem_name = "svid_store_service",
                entry = entry.id.as_str(),
                error = "no rootCA found",
                "Failed to parse record"
            );
            return false;
        }
        let svid = StoredSvid {
            spiffe_id: entry.spiffe_id.clone(),
            cert_chain: record.svid.chain.clone(),
            private_key: record.svid.key_pkcs8.clone(),
            bundle: record.bundles.own.clone(),
            expires_at: spire_gocompat::time::unix_secs(record.svid.not_after),
            federated_bundles: record.bundles.federated.clone(),
        };
        match store.put_x509_svid(&svid, &metadata).await {
            Ok(()) => {
                tracing::debug!(subsystem_name = "svid_store_service", entry = entry.id.as_str(), spiffe_id = %entry.spiffe_id, svid_store = name.as_str(), "SVID stored successfully");
                true
            }
            Err(e) => {
                tracing::error!(subsystem_name = "svid_store_service", entry = entry.id.as_str(), spiffe_id = %entry.spiffe_id, svid_store = name.as_str(), error = %e, "Failed to put X509-SVID");
                false
            }
        }
    }

    /// How many SVIDs the SVID store service tracks, as SPIRE's store cache counts its
    /// records (the debug API's `cached_svidstore_x509_svids_count`): every `store_svid`
    /// entry of the last sync, and those gone whose SVID is not yet deleted from its store.
    pub async fn svid_store_count(&self) -> usize {
        let mut ids: std::collections::HashSet<String> = self
            .mirror
            .lock()
            .await
            .values()
            .filter(|e| e.store_svid)
            .map(|e| e.id.to_string())
            .collect();
        ids.extend(self.stored.lock().await.keys().cloned());
        ids.len()
    }

    /// One pass of the store service over the `store_svid` entries of the last sync, with
    /// the bundles fetched then.
    /// SPIRE's SVIDStore cache `TaintX509SVIDs`: the stored SVIDs that chain to one of
    /// `authorities` are marked for minting again.
    fn taint_stored(
        &self,
        stored: &mut HashMap<String, StoredRecord>,
        authorities: &[Vec<u8>],
        now: SystemTime,
    ) {
        let m = &self.cfg.metrics;
        let call = m.start_call(&["cache_manager", "svid_store", "process_tainted_x509_svids"]);
        let mut tainted = 0usize;
        for (id, record) in stored.iter_mut().filter(|(_, r)| !r.tainted) {
            match crate::core::taint::signed_by_any(&record.svid.chain, authorities, now) {
                Ok(true) => {
                    record.tainted = true;
                    tainted += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(subsystem_name = "cache_manager", entry_id = id.as_str(), error = %e, "Failed to check if SVID is signed by tainted authority");
                }
            }
        }
        // SPIRE counts these as the SVIDStore cache's "expiring" SVIDs.
        m.add_sample(
            &["cache_manager", "expiring_svids", "svid_store"],
            tainted as f32,
            &[],
        );
        call.done(tonic::Code::Ok);
        tracing::info!(
            subsystem_name = "cache_manager",
            tainted_x509_svids = tainted,
            "Tainted X.509 SVIDs"
        );
    }

    pub(super) async fn update_stored_svids(
        &self,
        entries: Vec<Arc<Entry>>,
        bundles: &BTreeMap<TrustDomain, Bundle>,
    ) -> Result<(), ManagerError> {
        if entries.is_empty() && self.stored.lock().await.is_empty() {
            return Ok(());
        }
        let mut stored = self.stored.lock().await;
        let now = self.now();
        let taints = std::mem::take(&mut *self.store_taints.lock());
        if !taints.is_empty() {
            self.taint_stored(&mut stored, &taints, now);
        }
        // Entries that went away: delete what was stored for them.
        let live: HashMap<&str, &Arc<Entry>> = entries.iter().map(|e| (e.id.as_str(), e)).collect();
        let gone: Vec<String> = stored
            .keys()
            .filter(|id| !live.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            let Some(record) = stored.get(&id) else {
                continue;
            };
            if !record.stored || self.delete_stored(&record.entry).await {
                stored.remove(&id);
            }
        }
        // What each live entry needs: a new SVID (none yet, or due for renewal), or storing
        // again (the entry or its bundles changed, or the last put failed).
        let own = bundles.get(&self.cfg.trust_domain);
        let mut mint = Vec::new();
        let mut put = Vec::new();
        for entry in &entries {
            let wanted = StoreBundles {
                own: own.map(Bundle::x509_ders).unwrap_or_default(),
                federated: entry
                    .federates_with()
                    .iter()
                    .filter(|td| **td != self.cfg.trust_domain)
                    .filter_map(|td| bundles.get(td).map(|b| (td.clone(), b.x509_ders())))
                    .collect(),
            };
            match stored.get_mut(entry.id.as_str()) {
                Some(record)
                    if !record.tainted
                        && !self.cfg.rotation.should_rotate_x509(
                            now,
                            record.svid.not_before,
                            record.svid.not_after,
                            rand::random(),
                        ) =>
                {
                    let changed = record.entry.revision_number != entry.revision_number
                        || record.entry.selector_keys() != entry.selector_keys();
                    if changed
                        && record.entry.selector_keys() != entry.selector_keys()
                        && record.stored
                    {
                        // SPIRE deletes under the old selectors before storing anew.
                        self.delete_stored(&record.entry).await;
                    }
                    if changed || record.bundles != wanted || !record.stored {
                        record.entry = entry.clone();
                        record.bundles = wanted;
                        record.stored = false;
                        put.push(entry.id.to_string());
                    }
                }
                _ => mint.push((entry.clone(), wanted)),
            }
        }
        if !mint.is_empty() {
            let ids: Vec<(String, SpiffeId)> = mint
                .iter()
                .map(|(e, _)| (e.id.to_string(), e.spiffe_id.clone()))
                .collect();
            let (mut keys, csrs) = self.keys_and_csrs(ids).await?;
            let mut results = Vec::with_capacity(csrs.len());
            let mut csrs = csrs.into_iter().peekable();
            while csrs.peek().is_some() {
                let batch: Vec<_> = csrs.by_ref().take(CSR_BATCH_LIMIT).collect();
                results.extend(self.client.new_x509_svids(batch).await?);
            }
            let mut minted: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
            for (id, result) in results {
                match result {
                    Ok(svid) => {
                        minted.insert(id, svid.chain);
                    }
                    Err(status) => {
                        tracing::warn!(subsystem_name = "manager", entry_id = id.as_str(), status = ?status.code(), error = status.message(), "Failed to mint X509 SVID");
                    }
                }
            }
            for (entry, wanted) in mint {
                let (Some(chain), Some(key_pkcs8)) = (
                    minted.remove(entry.id.as_str()),
                    keys.remove(entry.id.as_str()),
                ) else {
                    continue;
                };
                let Some(leaf) = chain.first() else { continue };
                let (not_before, not_after) = match validity(leaf) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(subsystem_name = "manager", entry_id = entry.id.as_str(), error = %e, "Failed to mint X509 SVID");
                        continue;
                    }
                };
                if let Some(old) = stored.get(entry.id.as_str())
                    && old.stored
                    && old.entry.selector_keys() != entry.selector_keys()
                {
                    self.delete_stored(&old.entry).await;
                }
                stored.insert(
                    entry.id.to_string(),
                    StoredRecord {
                        entry: entry.clone(),
                        svid: X509SvidRecord {
                            chain,
                            key_pkcs8,
                            not_before,
                            not_after,
                        },
                        bundles: wanted,
                        stored: false,
                        tainted: false,
                    },
                );
                put.push(entry.id.to_string());
            }
        }
        for id in put {
            let Some(record) = stored.get(&id).cloned() else {
                continue;
            };
            let ok = self.put_stored(&record).await;
            if let Some(r) = stored.get_mut(&id) {
                r.stored = ok;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(selectors: &[(&str, &str)]) -> Entry {
        let selectors: Vec<Selector> = selectors
            .iter()
            .map(|(t, v)| Selector::new(t, v).unwrap())
            .collect();
        let mut e = Entry::new(
            "e",
            SpiffeId::parse("spiffe://example.org/w").unwrap(),
            &selectors,
        );
        e.revision_number = 1;
        e.store_svid = true;
        e
    }

    #[test]
    fn the_store_is_the_selector_type_and_the_metadata_its_values() {
        let e = entry(&[("files", "name:a"), ("files", "team:b")]);
        assert_eq!(
            store_of(&e),
            Ok(("files".into(), vec!["name:a".into(), "team:b".into()]))
        );
        let mixed = entry(&[("files", "name:a"), ("other", "x")]);
        assert_eq!(store_of(&mixed), Err("selector contains multiple types"));
        assert_eq!(store_of(&entry(&[])), Err("no selectors found"));
    }
}
