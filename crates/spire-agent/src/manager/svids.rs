//! Workload SVID issuance: CSRs for stale entries, a batch at a time, and the loop that
//! runs it whenever the cache reports stale entries.

use super::*;

impl Manager {
    /// Mints SVIDs for stale entries, a batch at a time.
    pub async fn update_svids(&self) -> Result<(), ManagerError> {
        let _guard = self.svid_update.lock().await;
        let stale = self.cache.lock().stale_entries();
        if stale.is_empty() {
            return Ok(());
        }
        let limit = self.csr_limit.lock().current();
        tracing::debug!(
            subsystem_name = "manager",
            count = stale.len(),
            limit,
            "Renewing stale entries"
        );
        let mut requests: Vec<(String, SpiffeId)> = Vec::new();
        for s in stale.into_iter().take(limit) {
            match s.svid_expires_at {
                None => {
                    tracing::info!(subsystem_name = "manager", entry_id = s.entry.id.as_str(), spiffe_id = %s.entry.spiffe_id, "Creating X509-SVID")
                }
                Some(exp) => {
                    tracing::info!(subsystem_name = "manager", entry_id = s.entry.id.as_str(), expires_at = rfc3339(exp).as_str(), spiffe_id = %s.entry.spiffe_id, "Renewing X509-SVID")
                }
            }
            requests.push((s.entry.id.to_string(), s.entry.spiffe_id.clone()));
        }
        let (mut keys, csrs) = self.keys_and_csrs(requests).await?;
        let call = self
            .cfg
            .metrics
            .start_call(&["manager", "sync", "fetch_svids_updates"]);
        let results = match self.client.new_x509_svids(csrs).await {
            Ok(r) => {
                call.done(tonic::Code::Ok);
                self.csr_limit.lock().success();
                r
            }
            Err(e) => {
                call.done(e.status().map_or(tonic::Code::Unknown, tonic::Status::code));
                self.csr_limit.lock().failure();
                return Err(e.into());
            }
        };
        let mut records = Vec::with_capacity(results.len());
        for (id, result) in results {
            match result {
                Ok(minted) => {
                    let Some(key_pkcs8) = keys.remove(&id) else {
                        continue;
                    };
                    let Some(leaf) = minted.chain.first() else {
                        continue;
                    };
                    let (not_before, not_after) = validity(leaf)?;
                    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
                    if self.cfg.rotation.should_fallback_x509_default(lifetime) {
                        tracing::warn!(
                            subsystem_name = "manager",
                            entry_id = id.as_str(),
                            spiffe_id = leaf_id(&minted.chain).as_str(),
                            "X509 SVID lifetime isn't long enough to guarantee the availability_target, falling back to the default rotation strategy"
                        );
                    }
                    records.push((
                        id,
                        X509SvidRecord {
                            chain: minted.chain,
                            key_pkcs8,
                            not_before,
                            not_after,
                        },
                    ));
                }
                Err(status) => {
                    tracing::warn!(subsystem_name = "manager", entry_id = id.as_str(), status = ?status.code(), error = status.message(), "Failed to mint X509 SVID");
                }
            }
        }
        let (notify, unknown) = self.cache.lock().update_svids(records);
        for id in unknown {
            tracing::error!(
                subsystem_name = "cache_manager",
                entry_id = id.as_str(),
                "Entry not found"
            );
        }
        self.notify(&notify);
        Ok(())
    }

    /// A fresh key and its CSR for each `(entry ID, SPIFFE ID)`, made off the runtime's
    /// threads: the keys (PKCS#8) by entry ID, and the CSRs in request order.
    pub(super) async fn keys_and_csrs(
        &self,
        requests: Vec<(String, SpiffeId)>,
    ) -> Result<(HashMap<String, Vec<u8>>, Vec<(String, Vec<u8>)>), ManagerError> {
        let key_type = self.cfg.workload_key_type;
        let generated = tokio::task::spawn_blocking(move || {
            requests
                .into_iter()
                .map(|(id, spiffe_id)| {
                    let key = PrivateKey::generate(key_type).map_err(pki)?;
                    let pkcs8 = key.pkcs8_der().to_vec();
                    let csr = spire_pki::make_csr(key, Some(&spiffe_id)).map_err(pki)?;
                    Ok((id, pkcs8, csr))
                })
                .collect::<Result<Vec<_>, ManagerError>>()
        })
        .await
        .map_err(pki)??;
        let mut keys = HashMap::with_capacity(generated.len());
        let mut csrs = Vec::with_capacity(generated.len());
        for (id, pkcs8, csr) in generated {
            keys.insert(id.clone(), pkcs8);
            csrs.push((id, csr));
        }
        Ok((keys, csrs))
    }

    pub(super) async fn run_svid_sync(&self) -> Result<(), ManagerError> {
        let mut backoff =
            Backoff::new(SVID_SYNC_INTERVAL).with_max_interval(Duration::from_secs(240));
        loop {
            let wait = backoff.next(rand::random()).unwrap_or(SVID_SYNC_INTERVAL);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.cache.svids_wanted() => {}
            }
            self.cache.lock().refresh_stale_for_subscribers();
            match self.update_svids().await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::error!(subsystem_name = "manager", error = %e, "SVID sync failed");
                }
            }
        }
    }
}
