//! The async shell around the core: entry and bundle synchronisation (periodic, and at once
//! when the server pushes a change notice), workload SVID issuance, agent SVID rotation, the
//! JWT-SVID cache, and subscriptions for Workload API streams.
//!
//! Decisions (what is stale, when to rotate, how long to wait) come from [`crate::core`];
//! this module only moves data between the server, the core and the subscribers.

use spire_clock::SharedClock;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
use crate::core::cache::{Cache, SelectorKeys, SubscriberId, WorkloadUpdate};
use crate::core::entry::{Entry, X509SvidRecord, from_unix};
use crate::core::jwt_cache::{CachedJwtSvid, JwtCache};
use crate::core::rotation::{AgentSvidAction, RotationStrategy, jwt_expired, x509_expired};
use crate::core::sync::{EntryMap, Mirror};
use crate::core::taint::{TAINTED_BATCH_SIZE, TaintTracker, TaintedSvidJobs, signed_by_any};
use crate::keys::{KeyStoreError, SlotKey, SvidKeyStore};
use crate::storage::{Storage, StorageError};

mod push;
mod rotation;
mod store;
mod svids;
mod sync;
mod taint;
mod workloads;

pub use workloads::{Subscription, WorkloadCache};
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
    /// SVIDStore plugins by name, for `store_svid` entries.
    pub svid_stores: Vec<(String, Arc<dyn spire_plugin::SvidStore>)>,
    /// Telemetry (disabled unless configured).
    pub metrics: spire_telemetry::Metrics,
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
    /// What workloads see (SVID cache, subscribers); shared with their streams.
    cache: Arc<WorkloadCache>,
    mirror: tokio::sync::Mutex<Mirror>,
    /// What the SVID store service stored, by entry ID.
    stored: tokio::sync::Mutex<HashMap<String, store::StoredRecord>>,
    jwt: Mutex<JwtCache>,
    svid_update: tokio::sync::Mutex<()>,
    csr_limit: Mutex<SizeLimit>,
    sync_now: Notify,
    last_sync: Mutex<Option<SystemTime>>,
    push_active: AtomicBool,
    started: Instant,
    taints: Mutex<TaintTracker>,
    tainted_svids: Mutex<TaintedSvidJobs>,
    taint_now: Notify,
    agent_svid_tainted: AtomicBool,
    /// Authorities newly tainted, for the next SVIDStore sync to check its SVIDs against.
    store_taints: Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// The agent's telemetry.
    pub fn metrics(&self) -> &spire_telemetry::Metrics {
        &self.cfg.metrics
    }

    /// The current time, from the agent's clock.
    pub fn now(&self) -> SystemTime {
        self.cfg.clock.now()
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
        let cache = Arc::new(WorkloadCache::new(cache, cfg.clock.clone()));
        Ok(Arc::new(Self {
            storage,
            keys,
            node_attestor,
            resolver,
            tls_bundles,
            client,
            creds: Mutex::new(creds),
            cache,
            mirror: tokio::sync::Mutex::new(Mirror::new()),
            stored: tokio::sync::Mutex::new(HashMap::new()),
            jwt: Mutex::new(jwt),
            svid_update: tokio::sync::Mutex::new(()),
            csr_limit: Mutex::new(SizeLimit::new(CSR_BATCH_LIMIT)),
            sync_now: Notify::new(),
            last_sync: Mutex::new(None),
            push_active: AtomicBool::new(false),
            started: Instant::now(),
            taints: Mutex::new(TaintTracker::new()),
            tainted_svids: Mutex::new(TaintedSvidJobs::new()),
            taint_now: Notify::new(),
            agent_svid_tainted: AtomicBool::new(false),
            store_taints: Mutex::new(Vec::new()),
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
        self.cache.notify(ids);
    }
}
