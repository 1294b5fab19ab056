//! The async shell around the core: entry and bundle synchronisation (periodic, and at once
//! when the server pushes a change notice), workload SVID issuance, agent SVID rotation, the
//! JWT-SVID cache, and subscriptions for Workload API streams.
//!
//! Decisions (what is stale, when to rotate, how long to wait) come from [`crate::core`];
//! this module only moves data between the server, the core and the subscribers.

use spire_clock::SharedClock;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use spiffe_core::{Bundle, BundleSet, KeyType, PrivateKey, SpiffeId, TrustDomain};
use spire_plugin::{AgentNodeAttestor, Selector};
use spire_tls::{SharedBundles, SvidResolver};
use tokio::sync::{Notify, watch};

use crate::attest::{AttestError, attest};
use crate::client::{self, ClientError, ServerClient};
use crate::core::backoff::{Backoff, SizeLimit};
use crate::core::bootstrap::{Disagreement, RebootstrapMode, disagreement};
use crate::core::cache::{Cache, SelectorSet, SubscriberId, WorkloadUpdate};
use crate::core::entry::{Entry, X509SvidRecord, from_unix};
use crate::core::jwt_cache::{CachedJwtSvid, JwtCache};
use crate::core::rotation::{AgentSvidAction, RotationStrategy, jwt_expired, x509_expired};
use crate::core::taint::{TAINTED_BATCH_SIZE, TaintTracker, TaintedSvidJobs, signed_by_any};
use crate::keys::{KeyStoreError, SlotKey, SvidKeyStore};
use crate::storage::{Storage, StorageError};

/// SPIRE's default sync interval, also the cap on the first interval.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// How often SVIDs of subscribed entries are checked.
pub const SVID_SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// How often the agent SVID is checked for rotation.
pub const ROTATION_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Largest batch of CSRs (the server's signing rate limit per IP).
pub const CSR_BATCH_LIMIT: usize = 500;

/// Manager settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The agent's trust domain.
    pub trust_domain: TrustDomain,
    /// `host:port` of the server.
    pub server_address: String,
    /// `sync_interval`.
    pub sync_interval: Duration,
    /// `use_sync_authorized_entries`.
    pub use_sync_authorized_entries: bool,
    /// `workload_x509_svid_key_type`.
    pub workload_key_type: KeyType,
    /// Rotation strategy (`availability_target`).
    pub rotation: RotationStrategy,
    /// `x509_svid_cache_max_size`.
    pub x509_svid_cache_max_size: usize,
    /// `jwt_svid_cache_max_size`.
    pub jwt_svid_cache_max_size: usize,
    /// Name of the NodeAttestor (`AttestationData.type`).
    pub node_attestor_name: String,
    /// Whether to try the `spirers.sync.v1` push stream.
    pub use_push: bool,
    /// `rebootstrap_mode` (after the start-up check against re-attestability).
    pub rebootstrap_mode: RebootstrapMode,
    /// `rebootstrap_delay`.
    pub rebootstrap_delay: Duration,
    /// Wall clock for everything the agent stamps, renews and expires.
    pub clock: SharedClock,
}

/// The agent's own credentials.
#[derive(Debug, Clone)]
pub struct AgentCreds {
    /// SVID chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// Its key.
    pub key: SlotKey,
    /// Whether the agent may re-attest.
    pub reattestable: bool,
}

/// Manager failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// Talking to the server failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// Re-attestation failed.
    #[error("{0}")]
    Attest(#[from] AttestError),
    /// The key store failed.
    #[error("{0}")]
    Keys(#[from] KeyStoreError),
    /// A certificate or CSR could not be handled.
    #[error("{0}")]
    Pki(String),
    /// TLS setup failed.
    #[error("{0}")]
    Tls(String),
    /// The agent data file failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Synchronisation failed in a way the agent does not recover from.
    #[error("failed to sync with SPIRE Server: {0}")]
    SyncFailed(Box<ManagerError>),
    /// The agent forgot its SVID and bundle and stops, to bootstrap again on its next start.
    #[error("shutting down for rebootstrapping")]
    Rebootstrap,
    /// The agent SVID expired and could not be replaced.
    #[error("current SVID has already expired and {action} failed: {cause}")]
    Expired {
        /// `reattest agent` or `rotate agent SVID`.
        action: &'static str,
        /// The last failure.
        cause: Box<ManagerError>,
    },
}

impl ManagerError {
    /// Whether the server asked the agent to re-attest.
    pub fn should_reattest(&self) -> bool {
        match self {
            ManagerError::Client(c) => c.should_reattest(),
            ManagerError::Attest(AttestError::Client(c)) => c.should_reattest(),
            _ => false,
        }
    }

    /// Whether the server's certificate does not chain to the agent's bundle.
    pub fn is_unknown_authority(&self) -> bool {
        match self {
            ManagerError::Client(c) => c.is_unknown_authority(),
            ManagerError::Attest(a) => a.is_unknown_authority(),
            _ => false,
        }
    }

    /// Whether the agent is banned.
    pub fn should_shutdown(&self) -> bool {
        match self {
            ManagerError::Client(c) => c.should_shutdown(),
            ManagerError::Attest(AttestError::Client(c)) => c.should_shutdown(),
            _ => false,
        }
    }
}

/// SPIRE's `SetSuccess`: bootstrapping is over; logs how long it took. With
/// `only_if_running`, nothing happens unless a bootstrap or a disagreement with the server
/// is under way (`SetSuccessIfRunning`).
pub fn bootstrap_succeeded(
    storage: &Storage,
    only_if_running: bool,
    now: SystemTime,
) -> Result<(), StorageError> {
    let success = storage
        .update_bootstrap(|st| (!only_if_running || st.running()).then(|| st.succeeded(now)))?;
    if let Some(ok) = success {
        tracing::info!(
            Logger = "TrustBundleSources",
            "Success after {} attempts={}",
            spire_config::format_go_duration(ok.elapsed),
            ok.attempts
        );
        tracing::info!(Logger = "TrustBundleSources", "Setting use.");
    }
    Ok(())
}

fn pki(e: impl std::fmt::Display) -> ManagerError {
    ManagerError::Pki(e.to_string())
}

/// The validity of a certificate.
pub fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime), ManagerError> {
    let facts = spire_pki::certificate_facts(der).map_err(pki)?;
    Ok((from_unix(facts.not_before), from_unix(facts.not_after)))
}

fn leaf_id(chain: &[Vec<u8>]) -> String {
    chain
        .first()
        .and_then(|c| spiffe_core::x509svid::id_from_der(c).ok())
        .map(|id| id.to_string())
        .unwrap_or_default()
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The cache manager.
pub struct Manager {
    cfg: ManagerConfig,
    storage: Arc<Storage>,
    keys: Arc<SvidKeyStore>,
    node_attestor: Arc<dyn AgentNodeAttestor>,
    resolver: Arc<SvidResolver>,
    tls_bundles: Arc<SharedBundles>,
    client: ServerClient,
    creds: Mutex<AgentCreds>,
    cache: Mutex<Cache>,
    mirror: tokio::sync::Mutex<HashMap<String, Arc<Entry>>>,
    jwt: Mutex<JwtCache>,
    subscribers: Mutex<HashMap<SubscriberId, watch::Sender<u64>>>,
    svid_update: tokio::sync::Mutex<()>,
    csr_limit: Mutex<SizeLimit>,
    sync_now: Notify,
    svid_now: Notify,
    last_sync: Mutex<Option<SystemTime>>,
    push_active: AtomicBool,
    started: Instant,
    taints: Mutex<TaintTracker>,
    tainted_svids: Mutex<TaintedSvidJobs>,
    taint_now: Notify,
    agent_svid_tainted: AtomicBool,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// The current time, from the agent's clock.
    pub fn now(&self) -> SystemTime {
        self.cfg.clock.now()
    }

    fn now_ms(&self) -> i64 {
        crate::core::entry::to_unix(self.now()).saturating_mul(1000)
    }

    /// A manager starting from the attested (or loaded) credentials and bundle.
    pub fn new(
        cfg: ManagerConfig,
        storage: Arc<Storage>,
        keys: Arc<SvidKeyStore>,
        node_attestor: Arc<dyn AgentNodeAttestor>,
        creds: AgentCreds,
        bundle: Bundle,
    ) -> Result<Arc<Self>, ManagerError> {
        let resolver = SvidResolver::new();
        resolver
            .set_signer(&creds.chain, creds.key.signer.clone())
            .map_err(|e| ManagerError::Tls(e.to_string()))?;
        let mut set = BundleSet::new();
        set.insert(bundle.clone());
        let tls_bundles = SharedBundles::new(set);
        let connector = client::connector(
            &cfg.trust_domain,
            tls_bundles.clone(),
            Some(resolver.clone()),
            false,
        )?;
        let client = ServerClient::new(&cfg.server_address, connector);
        let cache = Cache::new(
            cfg.trust_domain.clone(),
            bundle,
            cfg.x509_svid_cache_max_size,
        );
        let jwt = JwtCache::new(cfg.jwt_svid_cache_max_size);
        Ok(Arc::new(Self {
            storage,
            keys,
            node_attestor,
            resolver,
            tls_bundles,
            client,
            creds: Mutex::new(creds),
            cache: Mutex::new(cache),
            mirror: tokio::sync::Mutex::new(HashMap::new()),
            jwt: Mutex::new(jwt),
            subscribers: Mutex::new(HashMap::new()),
            svid_update: tokio::sync::Mutex::new(()),
            csr_limit: Mutex::new(SizeLimit::new(CSR_BATCH_LIMIT)),
            sync_now: Notify::new(),
            svid_now: Notify::new(),
            last_sync: Mutex::new(None),
            push_active: AtomicBool::new(false),
            started: Instant::now(),
            taints: Mutex::new(TaintTracker::new()),
            tainted_svids: Mutex::new(TaintedSvidJobs::new()),
            taint_now: Notify::new(),
            agent_svid_tainted: AtomicBool::new(false),
            cfg,
        }))
    }

    /// The agent's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.cfg.trust_domain
    }

    /// The current agent SVID chain.
    pub fn agent_svid(&self) -> Vec<Vec<u8>> {
        self.creds.lock().chain.clone()
    }

    /// The trust domain's bundle.
    pub fn bundle(&self) -> Option<Arc<Bundle>> {
        self.cache.lock().bundle()
    }

    /// When the last sync succeeded.
    pub fn last_sync(&self) -> Option<SystemTime> {
        *self.last_sync.lock()
    }

    /// Time since the manager was created.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Number of cached X509-SVIDs.
    pub fn x509_svid_count(&self) -> usize {
        self.cache.lock().svid_count()
    }

    /// Number of cached JWT-SVIDs.
    pub fn jwt_svid_count(&self) -> usize {
        self.jwt.lock().len()
    }

    /// Whether the server's change stream is connected.
    pub fn push_active(&self) -> bool {
        self.push_active.load(Ordering::Relaxed)
    }

    fn store_svid(&self, chain: &[Vec<u8>], reattestable: bool) {
        if let Err(e) = self.storage.store_svid(chain, reattestable) {
            tracing::warn!(subsystem_name = "manager", error = %e, "Could not store SVID");
        }
    }

    fn store_bundle(&self, bundle: Option<&Bundle>) {
        let certs = bundle.map(Bundle::x509_ders).unwrap_or_default();
        if let Err(e) = self.storage.store_bundle(&certs) {
            tracing::error!(subsystem_name = "manager", error = %e, "Could not store bundle");
        }
    }

    /// Removes the stored agent SVID (the agent attests again on its next start).
    pub fn delete_svid(&self) {
        if let Err(e) = self.storage.delete_svid() {
            tracing::error!(subsystem_name = "manager", error = %e, "Failed to remove SVID");
        }
    }

    /// First sync, as SPIRE's `Manager.Initialize`.
    pub async fn initialize(&self) -> Result<(), ManagerError> {
        let creds = self.creds.lock().clone();
        self.store_svid(&creds.chain, creds.reattestable);
        let bundle = self.cache.lock().bundle();
        self.store_bundle(bundle.as_deref());
        let r = self.synchronize().await;
        if let Err(e) = &r {
            if e.should_reattest() {
                tracing::error!(subsystem_name = "manager", error = %e, "Agent needs to re-attest: removing SVID and shutting down");
                self.delete_svid();
            }
            if e.should_shutdown() {
                tracing::error!(subsystem_name = "manager", error = %e, "Agent is banned: removing SVID and shutting down");
                self.delete_svid();
            }
        }
        r
    }

    /// Runs every loop until a fatal error (banned, failed re-attestation, expired SVID).
    pub async fn run(self: &Arc<Self>) -> Result<(), ManagerError> {
        loop {
            let err = tokio::select! {
                r = self.run_synchronizer() => r,
                r = self.run_svid_sync() => r,
                r = self.run_rotator() => r,
                r = self.run_watch() => r,
                r = self.run_tainted_svids() => r,
            };
            let Err(err) = err else {
                tracing::info!(subsystem_name = "manager", "Cache manager stopped");
                return Ok(());
            };
            if err.should_reattest() {
                tracing::warn!(subsystem_name = "manager", error = %err, "Agent needs to re-attest; will attempt to re-attest");
                let reattestable = self.creds.lock().reattestable;
                let r = if reattestable {
                    self.reattest().await
                } else {
                    Err(ManagerError::Pki(
                        "attestation method is not re-attestable".into(),
                    ))
                };
                if let Err(e) = r {
                    tracing::error!(subsystem_name = "manager", error = %e, "Agent failed re-attestation; removing SVID and shutting down");
                    self.delete_svid();
                    return Err(err);
                }
                continue;
            }
            if err.should_shutdown() {
                tracing::warn!(subsystem_name = "manager", error = %err, "Agent is banned: removing SVID and shutting down");
                self.delete_svid();
                return Err(err);
            }
            tracing::error!(subsystem_name = "manager", error = %err, "Cache manager crashed");
            return Err(err);
        }
    }

    fn notify(&self, ids: &[SubscriberId]) {
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

    /// Entry and bundle sync, then SVID issuance for stale entries.
    pub async fn synchronize(&self) -> Result<(), ManagerError> {
        let mut mirror = self.mirror.lock().await;
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
        } else {
            let malformed = self.client.get_authorized_entries(&mut mirror).await?;
            for m in malformed {
                tracing::warn!(subsystem_name = "manager", entry_id = m.id.as_str(), error = %m.error, "Received malformed entry from SPIRE server; are the server and agent versions compatible?");
            }
        }
        let federated: BTreeSet<TrustDomain> = mirror
            .values()
            .flat_map(|e| e.federates_with.iter().cloned())
            .collect();
        let federated: Vec<TrustDomain> = federated.into_iter().collect();
        let (bundles, not_found) = self.client.fetch_bundles(&federated).await?;
        for td in not_found {
            tracing::warn!(subsystem_name = "manager", federated_bundle = %td.id_string(), "Federated bundle not found");
        }
        let now = self.now();
        if let Some(own) = bundles.get(&self.cfg.trust_domain) {
            self.process_tainted_authorities(own, now)?;
        }
        let store_entries = mirror.values().any(|e| e.store_svid);
        let filtered;
        let entries: &HashMap<String, Arc<Entry>> = if store_entries {
            filtered = mirror
                .iter()
                .filter(|(_, e)| !e.store_svid)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>();
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
        self.notify(&outcome.notify);
        self.update_svids().await?;
        *self.last_sync.lock() = Some(now);
        Ok(())
    }

    /// SPIRE's `processTaintedAuthorities`: for authorities newly tainted in the trust
    /// domain's bundle, schedules the check of every cached X509-SVID against them, marks
    /// the agent SVID for rotation if it chains to one, and drops cached JWT-SVIDs signed by
    /// a tainted key.
    fn process_tainted_authorities(
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
            self.check_agent_svid_tainted(&newly.x509_authorities, now)?;
            self.taints.lock().x509_processed(&newly);
        }
        if !newly.jwt_key_ids.is_empty() {
            tracing::debug!(
                subsystem_name = "manager",
                jwt_authority_key_ids = newly.jwt_key_ids.join(",").as_str(),
                "New tainted JWT authorities found"
            );
            let removed = self.jwt.lock().remove_signed_by(&newly.all_jwt_key_ids);
            for (kid, count) in removed {
                tracing::info!(
                    subsystem_name = "cache_manager",
                    jwt_authority_key_ids = kid.as_str(),
                    tainted_jwt_svids = count,
                    "JWT-SVIDs were removed from the JWT cache because they were issued by a tainted authority"
                );
            }
            self.taints.lock().jwt_processed(&newly);
        }
        Ok(())
    }

    /// SPIRE's `NotifyTaintedAuthorities`: the agent SVID is rotated at the next rotation
    /// check when it chains to one of `authorities`.
    fn check_agent_svid_tainted(
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
    async fn run_tainted_svids(&self) -> Result<(), ManagerError> {
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
    fn process_tainted_batches(&self, now: SystemTime) {
        let batches = self
            .tainted_svids
            .lock()
            .due_batches(now, TAINTED_BATCH_SIZE);
        let mut dropped = false;
        for batch in batches {
            let out =
                self.cache
                    .lock()
                    .drop_tainted_svids(&batch.entry_ids, &batch.authorities, now);
            for (id, e) in &out.errors {
                tracing::error!(subsystem_name = "cache_manager", entry_id = id.as_str(), error = %e, "Failed to check if SVID is signed by tainted authority");
            }
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
            self.svid_now.notify_one();
        }
    }

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
            requests.push((s.entry.id.clone(), s.entry.spiffe_id.clone()));
        }
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
        let mut keys: HashMap<String, Vec<u8>> = HashMap::new();
        let mut csrs = Vec::with_capacity(generated.len());
        for (id, pkcs8, csr) in generated {
            keys.insert(id.clone(), pkcs8);
            csrs.push((id, csr));
        }
        let results = match self.client.new_x509_svids(csrs).await {
            Ok(r) => {
                self.csr_limit.lock().success();
                r
            }
            Err(e) => {
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

    async fn run_synchronizer(&self) -> Result<(), ManagerError> {
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
    fn server_disagrees(&self, e: ManagerError) -> Result<(), ManagerError> {
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

    async fn run_svid_sync(&self) -> Result<(), ManagerError> {
        let mut backoff =
            Backoff::new(SVID_SYNC_INTERVAL).with_max_interval(Duration::from_secs(240));
        loop {
            let wait = backoff.next(rand::random()).unwrap_or(SVID_SYNC_INTERVAL);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.svid_now.notified() => {}
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

    async fn run_rotator(&self) -> Result<(), ManagerError> {
        let mut backoff = Backoff::new(ROTATION_CHECK_INTERVAL);
        loop {
            let r = self.rotate_if_needed().await;
            if let Err(e) = r {
                let (chain, reattestable) = {
                    let c = self.creds.lock();
                    (c.chain.clone(), c.reattestable)
                };
                let action = if reattestable {
                    "reattest agent"
                } else {
                    "rotate agent SVID"
                };
                tracing::error!(subsystem_name = "svid_rotator", error = %e, "Could not {action}");
                let expired = chain
                    .first()
                    .and_then(|leaf| validity(leaf).ok())
                    .is_some_and(|(_, na)| x509_expired(self.now(), na));
                if expired {
                    return Err(ManagerError::Expired {
                        action,
                        cause: Box::new(e),
                    });
                }
                if e.should_reattest() || e.should_shutdown() {
                    return Err(e);
                }
            } else {
                backoff.reset();
            }
            let wait = backoff
                .next(rand::random())
                .unwrap_or(ROTATION_CHECK_INTERVAL);
            tokio::time::sleep(wait).await;
        }
    }

    async fn rotate_if_needed(&self) -> Result<(), ManagerError> {
        let (leaf, reattestable) = {
            let c = self.creds.lock();
            (c.chain.first().cloned().unwrap_or_default(), c.reattestable)
        };
        let (not_before, not_after) = validity(&leaf)?;
        let action = self.cfg.rotation.agent_svid_action(
            self.now(),
            not_before,
            not_after,
            reattestable,
            self.agent_svid_tainted.load(Ordering::Relaxed),
            rand::random(),
        );
        match action {
            AgentSvidAction::Keep => Ok(()),
            AgentSvidAction::Renew => self.renew().await,
            AgentSvidAction::Reattest => self.reattest().await,
        }
    }

    fn install_creds(&self, creds: AgentCreds) -> Result<(), ManagerError> {
        self.resolver
            .set_signer(&creds.chain, creds.key.signer.clone())
            .map_err(|e| ManagerError::Tls(e.to_string()))?;
        self.store_svid(&creds.chain, creds.reattestable);
        *self.creds.lock() = creds;
        self.agent_svid_tainted.store(false, Ordering::Relaxed);
        // New connections present the new SVID.
        self.client.release();
        Ok(())
    }

    async fn renew(&self) -> Result<(), ManagerError> {
        tracing::debug!(subsystem_name = "svid_rotator", "Rotating agent SVID");
        let current = self.creds.lock().key.id.clone();
        let key = self.keys.generate(Some(&current)).await?;
        let csr = spire_pki::make_csr_with_signer(key.signer.clone(), None).map_err(pki)?;
        let chain = self.client.renew_agent(csr).await?;
        tracing::info!(
            subsystem_name = "svid_rotator",
            spiffe_id = leaf_id(&chain).as_str(),
            "Successfully rotated agent SVID"
        );
        self.install_creds(AgentCreds {
            chain,
            key,
            reattestable: false,
        })
    }

    /// Runs node attestation again over a fresh connection.
    pub async fn reattest(&self) -> Result<(), ManagerError> {
        tracing::debug!(subsystem_name = "svid_rotator", "Reattesting node");
        let bundle = self
            .cache
            .lock()
            .bundle()
            .ok_or_else(|| ManagerError::Pki("bundle not found".into()))?;
        let current = self.creds.lock().key.id.clone();
        let key = self.keys.generate(Some(&current)).await?;
        let csr = spire_pki::make_csr_with_signer(key.signer.clone(), None).map_err(pki)?;
        let mut set = BundleSet::new();
        set.insert((*bundle).clone());
        let connector =
            client::connector(&self.cfg.trust_domain, SharedBundles::new(set), None, false)?;
        let attested = attest(
            &self.cfg.server_address,
            connector,
            &self.cfg.node_attestor_name,
            self.node_attestor.as_ref(),
            csr,
        )
        .await?;
        tracing::info!(
            subsystem_name = "svid_rotator",
            spiffe_id = leaf_id(&attested.svid).as_str(),
            "Successfully reattested node"
        );
        self.install_creds(AgentCreds {
            chain: attested.svid,
            key,
            reattestable: attested.reattestable,
        })
    }

    async fn run_watch(&self) -> Result<(), ManagerError> {
        if !self.cfg.use_push {
            return std::future::pending().await;
        }
        let mut backoff =
            Backoff::new(Duration::from_secs(1)).with_max_interval(Duration::from_secs(30));
        loop {
            match self.client.watch_changes().await {
                Err(e) if e.is_unimplemented() => {
                    tracing::info!(
                        subsystem_name = "manager",
                        "Server does not stream change notifications; polling every sync_interval"
                    );
                    return std::future::pending().await;
                }
                Err(e) => {
                    tracing::debug!(subsystem_name = "manager", error = %e, "Change notification stream unavailable");
                }
                Ok(mut stream) => {
                    tracing::info!(
                        subsystem_name = "manager",
                        "Receiving change notifications from the server"
                    );
                    self.push_active.store(true, Ordering::Relaxed);
                    backoff.reset();
                    loop {
                        match stream.message().await {
                            Ok(Some(_)) => self.sync_now.notify_one(),
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(subsystem_name = "manager", error = %status, "Change notification stream ended");
                                break;
                            }
                        }
                    }
                    self.push_active.store(false, Ordering::Relaxed);
                    // Catch up on whatever happened while the stream was down.
                    self.sync_now.notify_one();
                }
            }
            let wait = backoff
                .next(rand::random())
                .unwrap_or(Duration::from_secs(30));
            tokio::time::sleep(wait).await;
        }
    }

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
