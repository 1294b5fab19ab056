//! Entry and bundle synchronisation with the server (periodic, and at once on a push
//! notice), and what the agent does when the server no longer chains to its bundle.

use super::*;

impl Manager {
    /// Entry and bundle sync, then SVID issuance for stale entries.
    pub async fn synchronize(&self) -> Result<(), ManagerError> {
        let mut mirror = self.mirror.lock().await;
        // SPIRE's `manager_sync_fetch_entries_updates` call (entries, then bundles) and
        // its sync gauges.
        let call = self
            .cfg
            .metrics
            .start_call(&["manager", "sync", "fetch_entries_updates"]);
        let fetched: Result<_, ManagerError> = async {
            if self.cfg.use_sync_authorized_entries {
                let (stats, malformed) = self.client.sync_entries(&mut mirror).await?;
                for m in malformed {
                    tracing::warn!(subsystem_name = "manager", entry_id = m.id.as_str(), error = %m.error, "Received malformed entry from SPIRE server; are the server and agent versions compatible?");
                }
                tracing::debug!(
                    subsystem_name = "manager",
                    total = stats.total,
                    missing = stats.missing,
                    stale = stats.stale,
                    dropped = stats.dropped,
                    "Synced entries"
                );
                let m = &self.cfg.metrics;
                m.set_gauge(&["sync_entries_total"], stats.total as f64, &[]);
                m.set_gauge(&["sync_entries_missing"], stats.missing as f64, &[]);
                m.set_gauge(&["sync_entries_stale"], stats.stale as f64, &[]);
                m.set_gauge(&["sync_entries_dropped"], stats.dropped as f64, &[]);
            } else {
                let malformed = self.client.get_authorized_entries(&mut mirror).await?;
                for m in malformed {
                    tracing::warn!(subsystem_name = "manager", entry_id = m.id.as_str(), error = %m.error, "Received malformed entry from SPIRE server; are the server and agent versions compatible?");
                }
            }
            let federated: BTreeSet<TrustDomain> = mirror
                .values()
                .flat_map(|e| e.federates_with().iter().cloned())
                .collect();
            let federated: Vec<TrustDomain> = federated.into_iter().collect();
            let (bundles, not_found) = self.client.fetch_bundles(&federated).await?;
            for td in not_found {
                tracing::warn!(subsystem_name = "manager", federated_bundle = %td.id_string(), "Federated bundle not found");
            }
            if self.cfg.use_sync_authorized_entries {
                self.cfg
                    .metrics
                    .set_gauge(&["sync_bundles_total"], bundles.len() as f64, &[]);
            }
            Ok(bundles)
        }
        .await;
        call.done(match &fetched {
            Ok(_) => tonic::Code::Ok,
            Err(ManagerError::Client(e)) => {
                e.status().map_or(tonic::Code::Unknown, tonic::Status::code)
            }
            Err(_) => tonic::Code::Unknown,
        });
        let bundles = fetched?;
        let now = self.now();
        if let Some(own) = bundles.get(&self.cfg.trust_domain) {
            self.process_tainted_authorities(own, now)?;
        }
        let stored_entries: Vec<Arc<Entry>> =
            mirror.values().filter(|e| e.store_svid).cloned().collect();
        let store_entries = !stored_entries.is_empty();
        let store_bundles =
            (store_entries || !self.cfg.svid_stores.is_empty()).then(|| bundles.clone());
        let filtered;
        let entries: &EntryMap = if store_entries {
            filtered = mirror
                .iter()
                .filter(|(_, e)| !e.store_svid)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<EntryMap>();
            &filtered
        } else {
            &mirror
        };
        let rotation = self.cfg.rotation;
        let outcome = self.cache.lock().update_entries(
            entries,
            bundles,
            &mut |_: &Entry, svid: &X509SvidRecord| {
                rotation.should_rotate_x509(now, svid.not_before, svid.not_after, rand::random())
            },
        );
        drop(mirror);
        {
            // SPIRE's LRU cache metrics.
            let m = &self.cfg.metrics;
            m.incr_counter(&["lru_cache_entry_add"], outcome.created.len() as f32, &[]);
            m.incr_counter(
                &["lru_cache_entry_update"],
                outcome.updated.len() as f32,
                &[],
            );
            m.incr_counter(
                &["lru_cache_entry_remove"],
                outcome.removed.len() as f32,
                &[],
            );
            let cache = self.cache.lock();
            m.set_gauge(
                &["lru_cache_record_map_size"],
                cache.entry_count() as f64,
                &[],
            );
            m.set_gauge(&["lru_cache_svid_map_size"], cache.svid_count() as f64, &[]);
            drop(cache);
            if outcome.expiring > 0 {
                m.add_sample(
                    &["cache_manager", "expiring_svids", "workload"],
                    outcome.expiring as f32,
                    &[],
                );
                tracing::debug!(
                    subsystem_name = "manager",
                    expiring_svids = outcome.expiring,
                    "Updating expiring SVIDs in cache"
                );
            }
            if outcome.outdated > 0 {
                m.add_sample(
                    &["cache_manager", "outdated_svids", "workload"],
                    outcome.outdated as f32,
                    &[],
                );
                tracing::debug!(
                    subsystem_name = "manager",
                    outdated_svids = outcome.outdated,
                    "Updating SVIDs with outdated attributes in cache"
                );
            }
        }
        for e in &outcome.created {
            tracing::debug!(subsystem_name = "cache_manager", entry = e.id.as_str(), spiffe_id = %e.spiffe_id, "Entry created");
        }
        for e in &outcome.updated {
            tracing::debug!(subsystem_name = "cache_manager", entry = e.id.as_str(), spiffe_id = %e.spiffe_id, "Entry updated");
        }
        for e in &outcome.removed {
            tracing::debug!(subsystem_name = "cache_manager", entry = e.id.as_str(), spiffe_id = %e.spiffe_id, "Entry removed");
        }
        for id in &outcome.evicted {
            tracing::debug!(
                subsystem_name = "cache_manager",
                record_id = id.as_str(),
                "Removing SVID record"
            );
        }
        if outcome.bundles_changed.contains(&self.cfg.trust_domain) {
            let own = self.cache.lock().bundle();
            if let Some(own) = own {
                tracing::debug!(subsystem_name = "cache_manager", trust_domain_id = %self.cfg.trust_domain.id_string(), "Bundle updated");
                let mut set = BundleSet::new();
                set.insert((*own).clone());
                self.tls_bundles.store(set);
                self.store_bundle(Some(&own));
            }
        }
        if !outcome.bundles_changed.is_empty() {
            self.cache.notify_bundles();
        }
        self.notify(&outcome.notify);
        self.update_svids().await?;
        // SPIRE's SVID store service pass (`store_store_svid_updates`, always OK), run here
        // after each sync, with or without SVIDStores.
        let call = self
            .cfg
            .metrics
            .start_call(&["store", "store_svid_updates"]);
        let stored = match store_bundles {
            Some(bundles) => self.update_stored_svids(stored_entries, &bundles).await,
            None => Ok(()),
        };
        call.done(tonic::Code::Ok);
        stored?;
        *self.last_sync.lock() = Some(now);
        Ok(())
    }

    pub(super) async fn run_synchronizer(&self) -> Result<(), ManagerError> {
        let interval = self.cfg.sync_interval;
        let max = (interval * 48).min(Duration::from_secs(8 * 60));
        let mut backoff = Backoff::new(interval).with_max_interval(max);
        let mut wait = backoff
            .next(rand::random())
            .unwrap_or(interval)
            .min(DEFAULT_SYNC_INTERVAL);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.sync_now.notified() => {}
            }
            let result = self.synchronize().await;
            if result.is_ok() {
                bootstrap_succeeded(&self.storage, true, self.now())?;
            }
            match result {
                Ok(()) => {
                    backoff.reset();
                    wait = backoff.next(rand::random()).unwrap_or(interval);
                    if self.x509_svid_count() == 0 {
                        wait = wait.min(DEFAULT_SYNC_INTERVAL);
                    }
                }
                Err(e) if e.is_unknown_authority() => {
                    self.server_disagrees(e)?;
                    backoff.reset();
                    wait = backoff
                        .next(rand::random())
                        .unwrap_or(interval)
                        .min(DEFAULT_SYNC_INTERVAL);
                }
                Err(e) if e.should_reattest() || e.should_shutdown() => {
                    tracing::error!(subsystem_name = "manager", error = %e, "Synchronize failed");
                    return Err(e);
                }
                Err(e) => {
                    tracing::error!(subsystem_name = "manager", error = %e, "Synchronize failed");
                    wait = backoff.next(rand::random()).unwrap_or(max);
                }
            }
        }
    }

    /// The server's certificate no longer chains to our bundle (SPIRE's synchronizer):
    /// fatal with `rebootstrap_mode = "never"`; else tolerated for `rebootstrap_delay`, after
    /// which the agent forgets its SVID and bundle and stops, to bootstrap again.
    #[allow(
        clippy::print_stdout,
        reason = "SPIRE prints these two lines on stdout, not through its logger"
    )]
    pub(super) fn server_disagrees(&self, e: ManagerError) -> Result<(), ManagerError> {
        if self.cfg.rebootstrap_mode == RebootstrapMode::Never {
            tracing::info!(subsystem_name = "manager", error = %e, "Synchronize failed, non-recoverable error");
            return Err(ManagerError::SyncFailed(Box::new(e)));
        }
        let now = self.now();
        let start = self.storage.update_bootstrap(|st| st.start_time(now))?;
        match disagreement(start, now, self.cfg.rebootstrap_delay) {
            Disagreement::Wait { time_left } => {
                println!(
                    "Trust Bandle and Server dont agree.... Ignoring for now. Rebootstrap timeout left: {}",
                    spire_config::format_go_duration(time_left)
                );
                Ok(())
            }
            Disagreement::Rebootstrap => {
                print!("Trust Bandle and Server dont agree.... rebootstrapping");
                let _ = std::io::Write::flush(&mut std::io::stdout());
                self.storage.force_rebootstrap(now)?;
                Err(ManagerError::Rebootstrap)
            }
        }
    }
}
