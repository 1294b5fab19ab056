//! What workloads see. [`WorkloadCache`] is the façade the Workload API uses: the SVID
//! cache, the subscribers' change channels and [`Subscription`]s for streams, one-shot
//! updates and matching entries. The manager's tasks write into it; a subscription holds
//! only the façade, never the manager. JWT-SVIDs (which may need the server) stay on
//! [`Manager::fetch_jwt_svid`].

use super::*;

impl Manager {
    /// Loads entries, bundles and SVIDs straight into the cache, bypassing the server
    /// (benchmarks and tests of the Workload API).
    #[doc(hidden)]
    pub fn preload(
        &self,
        entries: &EntryMap,
        bundles: std::collections::BTreeMap<TrustDomain, Bundle>,
        svids: Vec<(String, X509SvidRecord)>,
    ) {
        let mut cache = self.cache.lock();
        let out =
            cache.update_entries(entries, bundles, &mut |_: &Entry, _: &X509SvidRecord| false);
        let (notify, _) = cache.update_svids(svids);
        drop(cache);
        if !out.bundles_changed.is_empty() {
            self.cache.notify_bundles();
        }
        self.notify(&out.notify);
        self.notify(&notify);
    }

    /// What workloads see: the Workload API's view of the cache.
    pub fn workloads(&self) -> &Arc<WorkloadCache> {
        &self.cache
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

/// The cache as workloads see it.
pub struct WorkloadCache {
    cache: Mutex<Cache>,
    subscribers: Mutex<HashMap<SubscriberId, watch::Sender<u64>>>,
    /// Wakes the SVID task when a subscriber lacks SVIDs.
    svid_now: Notify,
    /// Bumped whenever the set of bundles changes (the Delegated Identity API's bundle
    /// streams watch it, as SPIRE's `SubscribeToBundleChanges`).
    bundles_changed: watch::Sender<u64>,
    clock: SharedClock,
}

impl std::fmt::Debug for WorkloadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCache")
            .field("subscribers", &self.subscribers.lock().len())
            .finish_non_exhaustive()
    }
}

impl WorkloadCache {
    pub(super) fn new(cache: Cache, clock: SharedClock) -> Self {
        Self {
            cache: Mutex::new(cache),
            subscribers: Mutex::new(HashMap::new()),
            svid_now: Notify::new(),
            bundles_changed: watch::channel(0).0,
            clock,
        }
    }

    /// The cache itself (the manager's tasks update it).
    pub(super) fn lock(&self) -> parking_lot::MutexGuard<'_, Cache> {
        self.cache.lock()
    }

    /// Tells the subscribers `ids` that their view may have changed.
    pub(super) fn notify(&self, ids: &[SubscriberId]) {
        if ids.is_empty() {
            return;
        }
        let subs = self.subscribers.lock();
        for id in ids {
            if let Some(tx) = subs.get(id) {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Tells the bundle watchers that a bundle was added, updated or removed.
    pub(super) fn notify_bundles(&self) {
        self.bundles_changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A watch that changes whenever the set of bundles does; mark it seen before reading
    /// [`bundles`](Self::bundles) so no change is missed.
    pub fn watch_bundles(&self) -> watch::Receiver<u64> {
        self.bundles_changed.subscribe()
    }

    /// Every bundle the agent holds (its own and the federated ones), by trust domain.
    pub fn bundles(&self) -> BTreeMap<TrustDomain, Arc<Bundle>> {
        self.cache.lock().bundles().clone()
    }

    /// Asks the SVID task to mint what subscribers are missing now.
    pub(super) fn want_svids(&self) {
        self.svid_now.notify_one();
    }

    /// Resolves when a subscriber asked for SVIDs.
    pub(super) async fn svids_wanted(&self) {
        self.svid_now.notified().await;
    }

    fn now_ms(&self) -> i64 {
        crate::core::entry::to_unix(self.clock.now()).saturating_mul(1000)
    }

    /// Subscribes a workload with `selectors` to its updates.
    pub fn subscribe(self: &Arc<Self>, selectors: &[Selector]) -> Subscription {
        let keys = SelectorKeys::new(selectors);
        let (tx, rx) = watch::channel(0u64);
        let (id, missing) = {
            let mut cache = self.cache.lock();
            let id = cache.subscribe(selectors, self.now_ms());
            self.subscribers.lock().insert(id, tx);
            cache.refresh_stale_for_subscribers();
            (id, cache.missing_svids(&keys))
        };
        if missing {
            self.want_svids();
        }
        Subscription {
            id,
            cache: self.clone(),
            rx,
            keys,
        }
    }

    /// What a workload with `selectors` gets now (one-shot calls).
    pub fn fetch_workload_update(&self, selectors: &[Selector]) -> WorkloadUpdate {
        let keys = SelectorKeys::new(selectors);
        let now_ms = self.now_ms();
        let mut cache = self.cache.lock();
        cache.touch(&keys, now_ms);
        cache.workload_update(&keys)
    }

    /// Entries matching `selectors`.
    pub fn matching_entries(&self, selectors: &[Selector]) -> Vec<Arc<Entry>> {
        let keys = SelectorKeys::new(selectors);
        self.cache.lock().matching_entries(&keys)
    }
}

/// A Workload API stream's view of the cache.
#[derive(Debug)]
pub struct Subscription {
    id: SubscriberId,
    cache: Arc<WorkloadCache>,
    rx: watch::Receiver<u64>,
    keys: SelectorKeys,
}

impl Subscription {
    /// Waits until every matching entry has an SVID (SPIRE's "Waiting for SVID to get
    /// cached"); entries without SVIDs are minted meanwhile.
    pub async fn wait_ready(&mut self) {
        let mut logged = false;
        loop {
            let missing = self.cache.lock().missing_svids(&self.keys);
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
            self.cache.want_svids();
            tokio::select! {
                r = self.rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(SVID_SYNC_INTERVAL) => {}
            }
        }
    }

    /// The current update.
    pub fn update(&self) -> WorkloadUpdate {
        self.cache.lock().workload_update(&self.keys)
    }

    /// The current update, with every change notice so far taken as seen (so that
    /// [`Self::changed`] waits for a change after this snapshot).
    pub fn latest(&mut self) -> WorkloadUpdate {
        self.rx.borrow_and_update();
        self.update()
    }

    /// Waits for the next change that may concern this subscriber.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cache.lock().unsubscribe(self.id);
        self.cache.subscribers.lock().remove(&self.id);
    }
}
