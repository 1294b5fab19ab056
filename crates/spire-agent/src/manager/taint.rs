//! Tainted authorities: which cached X509-SVIDs, JWT-SVIDs and agent SVID chain to an
//! authority newly tainted in the bundle, and the batched re-minting of those SVIDs.

use super::*;

impl Manager {
    /// SPIRE's `processTaintedAuthorities`: for authorities newly tainted in the trust
    /// domain's bundle, schedules the check of every cached X509-SVID against them, marks
    /// the agent SVID for rotation if it chains to one, and drops cached JWT-SVIDs signed by
    /// a tainted key.
    pub(super) fn process_tainted_authorities(
        &self,
        bundle: &Bundle,
        now: SystemTime,
    ) -> Result<(), ManagerError> {
        let newly = self.taints.lock().newly_tainted(bundle);
        if !newly.x509_key_ids.is_empty() {
            tracing::debug!(
                subsystem_name = "manager",
                subject_key_ids = newly.x509_key_ids.join(",").as_str(),
                "New tainted X.509 authorities found"
            );
            let ids = self.cache.lock().svid_entry_ids();
            let count = ids.len();
            let scheduled =
                self.tainted_svids
                    .lock()
                    .schedule(ids, newly.x509_authorities.clone(), now);
            if scheduled {
                tracing::debug!(
                    subsystem_name = "cache_manager",
                    count,
                    "Scheduled rotation for SVID entries due to tainted X.509 authorities"
                );
                self.taint_now.notify_one();
            } else {
                tracing::debug!(
                    subsystem_name = "cache_manager",
                    "No SVID entries to process for tainted X.509 authorities"
                );
            }
            if !self.cfg.svid_stores.is_empty() {
                self.store_taints
                    .lock()
                    .extend(newly.x509_authorities.iter().cloned());
            }
            self.check_agent_svid_tainted(&newly.x509_authorities, now)?;
            self.taints.lock().x509_processed(&newly);
        }
        if !newly.jwt_key_ids.is_empty() {
            tracing::debug!(
                subsystem_name = "manager",
                jwt_authority_key_ids = newly.jwt_key_ids.join(",").as_str(),
                "New tainted JWT authorities found"
            );
            let call = self.cfg.metrics.start_call(&[
                "cache_manager",
                "workload",
                "process_tainted_jwt_svids",
            ]);
            let removed = self.jwt.lock().remove_signed_by(&newly.all_jwt_key_ids);
            call.done(tonic::Code::Ok);
            let total: usize = removed.values().sum();
            for (kid, count) in removed {
                tracing::info!(
                    subsystem_name = "cache_manager",
                    jwt_authority_key_ids = kid.as_str(),
                    tainted_jwt_svids = count,
                    "JWT-SVIDs were removed from the JWT cache because they were issued by a tainted authority"
                );
            }
            self.cfg.metrics.add_sample(
                &["cache_manager", "tainted_jwt_svids", "workload"],
                total as f32,
                &[],
            );
            self.taints.lock().jwt_processed(&newly);
        }
        Ok(())
    }

    /// SPIRE's `NotifyTaintedAuthorities`: the agent SVID is rotated at the next rotation
    /// check when it chains to one of `authorities`.
    pub(super) fn check_agent_svid_tainted(
        &self,
        authorities: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<(), ManagerError> {
        if self.agent_svid_tainted.load(Ordering::Relaxed) {
            tracing::debug!(
                subsystem_name = "svid_rotator",
                "Agent SVID already tainted"
            );
            return Ok(());
        }
        let chain = self.creds.lock().chain.clone();
        match signed_by_any(&chain, authorities, now) {
            Ok(true) => {
                tracing::info!(
                    subsystem_name = "svid_rotator",
                    "Agent SVID is tainted by a root authority, forcing rotation"
                );
                self.agent_svid_tainted.store(true, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => {
                return Err(ManagerError::Pki(format!(
                    "failed to check if SVID is tainted: failed to verify certificate chain: {e}"
                )));
            }
        }
        Ok(())
    }

    /// Hands out the batches of SVID checks against tainted authorities as they fall due.
    pub(super) async fn run_tainted_svids(&self) -> Result<(), ManagerError> {
        loop {
            let due = self.tainted_svids.lock().next_due();
            let Some(due) = due else {
                self.taint_now.notified().await;
                continue;
            };
            let now = self.now();
            if let Ok(wait) = due.duration_since(now)
                && !wait.is_zero()
            {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.taint_now.notified() => {}
                }
                continue;
            }
            self.process_tainted_batches(now);
        }
    }

    /// Drops the cached X509-SVIDs of the due batches that chain to a tainted authority and
    /// has them minted again.
    pub(super) fn process_tainted_batches(&self, now: SystemTime) {
        let batches = self
            .tainted_svids
            .lock()
            .due_batches(now, TAINTED_BATCH_SIZE);
        let mut dropped = false;
        for batch in batches {
            let call = self.cfg.metrics.start_call(&[
                "cache_manager",
                "workload",
                "process_tainted_x509_svids",
            ]);
            let out =
                self.cache
                    .lock()
                    .drop_tainted_svids(&batch.entry_ids, &batch.authorities, now);
            call.done(tonic::Code::Ok);
            for (id, e) in &out.errors {
                tracing::error!(subsystem_name = "cache_manager", entry_id = id.as_str(), error = %e, "Failed to check if SVID is signed by tainted authority");
            }
            self.cfg.metrics.add_sample(
                &["cache_manager", "tainted_x509_svids", "workload"],
                out.dropped.len() as f32,
                &[],
            );
            tracing::info!(
                subsystem_name = "cache_manager",
                tainted_x509_svids = out.dropped.len(),
                "Tainted X.509 SVIDs"
            );
            if batch.left == 0 {
                tracing::info!(
                    subsystem_name = "cache_manager",
                    "Finished processing all tainted entries"
                );
            } else {
                tracing::info!(
                    subsystem_name = "cache_manager",
                    count = batch.left,
                    "There are tainted X.509 SVIDs left to be processed"
                );
            }
            dropped |= !out.dropped.is_empty();
        }
        if dropped {
            self.cache.want_svids();
        }
    }
}
