//! What workloads see: subscriptions to the cache for Workload API streams, one-shot
//! updates, matching entries and JWT-SVIDs, all answered from the agent's cache.

use super::*;

impl Manager {
    /// Loads entries, bundles and SVIDs straight into the cache, bypassing the server
    /// (benchmarks and tests of the Workload API).
    #[doc(hidden)]
    pub fn preload(
        &self,
        entries: &HashMap<String, Arc<Entry>>,
        bundles: std::collections::BTreeMap<TrustDomain, Bundle>,
        svids: Vec<(String, X509SvidRecord)>,
    ) {
        let mut cache = self.cache.lock();
        let out =
            cache.update_entries(entries, bundles, &mut |_: &Entry, _: &X509SvidRecord| false);
        let (notify, _) = cache.update_svids(svids);
        drop(cache);
        self.notify(&out.notify);
        self.notify(&notify);
    }

    /// Subscribes a workload with `selectors` to its updates.
    pub fn subscribe(self: &Arc<Self>, selectors: &[Selector]) -> Subscription {
        let set: SelectorSet = selectors.iter().cloned().collect();
        let (tx, rx) = watch::channel(0u64);
        let (id, missing) = {
            let mut cache = self.cache.lock();
            let id = cache.subscribe(selectors, self.now_ms());
            self.subscribers.lock().insert(id, tx);
            cache.refresh_stale_for_subscribers();
            (id, cache.missing_svids(&set))
        };
        if missing {
            self.svid_now.notify_one();
        }
        Subscription {
            id,
            manager: self.clone(),
            rx,
            selectors: set,
        }
    }

    /// What a workload with `selectors` gets now (one-shot calls).
    pub fn fetch_workload_update(&self, selectors: &[Selector]) -> WorkloadUpdate {
        let set: SelectorSet = selectors.iter().cloned().collect();
        let mut cache = self.cache.lock();
        cache.touch(selectors, self.now_ms());
        cache.workload_update(&set)
    }

    /// Entries matching `selectors`.
    pub fn matching_entries(&self, selectors: &[Selector]) -> Vec<Arc<Entry>> {
        let set: SelectorSet = selectors.iter().cloned().collect();
        self.cache.lock().matching_entries(&set)
    }

    /// A JWT-SVID for `entry` and `audience`, from the cache while it is younger than its
    /// (jittered) half life, else from the server.
    pub async fn fetch_jwt_svid(
        &self,
        entry: &Entry,
        audience: &[String],
    ) -> Result<CachedJwtSvid, ManagerError> {
        let now = self.now();
        let cached = self.jwt.lock().get(&entry.spiffe_id, audience);
        if let Some(c) = &cached
            && !self
                .cfg
                .rotation
                .jwt_expires_soon(now, c.issued_at, c.expires_at, rand::random())
        {
            return Ok(c.clone());
        }
        match self.client.new_jwt_svid(&entry.id, audience).await {
            Ok(fresh) => {
                self.jwt
                    .lock()
                    .set(&entry.spiffe_id, audience, fresh.clone());
                Ok(fresh)
            }
            Err(e) => match cached {
                Some(c) if !jwt_expired(now, c.expires_at) => {
                    tracing::warn!(subsystem_name = "manager", spiffe_id = %entry.spiffe_id, error = %e, "Unable to renew JWT; returning cached copy");
                    Ok(c)
                }
                _ => Err(e.into()),
            },
        }
    }
}

/// A Workload API stream's view of the cache.
#[derive(Debug)]
pub struct Subscription {
    id: SubscriberId,
    manager: Arc<Manager>,
    rx: watch::Receiver<u64>,
    selectors: SelectorSet,
}

impl Subscription {
    /// Waits until every matching entry has an SVID (SPIRE's "Waiting for SVID to get
    /// cached"); entries without SVIDs are minted meanwhile.
    pub async fn wait_ready(&mut self) {
        let mut logged = false;
        loop {
            let missing = self.manager.cache.lock().missing_svids(&self.selectors);
            if !missing {
                return;
            }
            if !logged {
                tracing::info!(
                    subsystem_name = "cache_manager",
                    "Waiting for SVID to get cached"
                );
                logged = true;
            }
            self.manager.svid_now.notify_one();
            tokio::select! {
                r = self.rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(SVID_SYNC_INTERVAL) => {}
            }
        }
    }

    /// The current update.
    pub fn update(&self) -> WorkloadUpdate {
        self.manager.cache.lock().workload_update(&self.selectors)
    }

    /// Waits for the next change that may concern this subscriber.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.manager.cache.lock().unsubscribe(self.id);
        self.manager.subscribers.lock().remove(&self.id);
    }
}
