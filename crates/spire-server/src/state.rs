//! The state every API handler shares.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use spiffe_core::{BundleSet, SpiffeId, TrustDomain};
use spire_clock::SharedClock;
use spire_datastore::StoredBundle;
use spire_log::LogHandle;
use spire_plugin::ServerNodeAttestor;
use spire_tls::{SharedBundles, SvidResolver};

use crate::api::convert;
use crate::ca::Ca;
use crate::ca::manager::CaManager;
use crate::registry::Registry;

/// Our bundle and the federated ones, as of the last change.
#[derive(Debug, Default)]
pub struct Bundles {
    /// Our trust domain's bundle, as stored.
    pub own: Option<StoredBundle>,
    /// Federated bundles, as stored.
    pub federated: Vec<StoredBundle>,
}

/// Settings the API handlers need.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Join token lifetime when CreateJoinToken gives none (600 s).
    pub default_join_token_ttl: Duration,
    /// `admin_ids`.
    pub admin_ids: HashSet<String>,
    /// `ratelimit.attestation`.
    pub rate_limit_attestation: bool,
    /// `ratelimit.signing`.
    pub rate_limit_signing: bool,
}

/// The server.
pub struct Server {
    /// Our trust domain.
    trust_domain: TrustDomain,
    /// `spiffe://<td>/spire/server`.
    server_id: SpiffeId,
    /// The datastore, the index of entries and agents, change notices.
    registry: Arc<Registry>,
    /// Signing.
    ca: Arc<Ca>,
    /// Rotation and the LocalAuthority API.
    ca_manager: Arc<CaManager>,
    /// Node attestors by name (`join_token` is handled by the server itself).
    node_attestors: HashMap<String, Arc<dyn ServerNodeAttestor>>,
    /// Current bundles.
    bundles: ArcSwap<Bundles>,
    /// Bundles TLS verifies client certificates against.
    tls_bundles: Arc<SharedBundles>,
    /// The server's own SVID presented on the TCP listener.
    svid: Arc<SvidResolver>,
    /// The server's SVID chain (for Debug GetInfo).
    svid_chain: ArcSwap<Vec<Vec<u8>>>,
    /// The server's SVID chain and its key (PKCS#8 DER), swapped together, for the
    /// IdentityProvider host service.
    svid_identity: ArcSwap<(Vec<Vec<u8>>, Vec<u8>)>,
    /// Set when the server starts to stop: long-lived streams end.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Bumped whenever the bundles are re-read (the bundle endpoint's waiting requests).
    bundles_generation: tokio::sync::watch::Sender<u64>,
    /// Logger control.
    log: LogHandle,
    /// API settings.
    settings: ApiSettings,
    clock: SharedClock,
    /// When the server started.
    started: Instant,
    metrics: spire_telemetry::Metrics,
    /// The federated bundle manager, once started.
    federation: std::sync::OnceLock<Arc<crate::federation::manager::Manager>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// What a [`Server`] is made of (see `run.rs`).
#[derive(Debug)]
pub struct ServerParts {
    /// Our trust domain.
    pub trust_domain: TrustDomain,
    /// `spiffe://<td>/spire/server`.
    pub server_id: SpiffeId,
    /// The datastore, the index of entries and agents, change notices.
    pub registry: Arc<Registry>,
    /// Signing.
    pub ca: Arc<Ca>,
    /// Rotation and the LocalAuthority API.
    pub ca_manager: Arc<CaManager>,
    /// Node attestors by name (`join_token` is handled by the server itself).
    pub node_attestors: HashMap<String, Arc<dyn ServerNodeAttestor>>,
    /// Logger control.
    pub log: LogHandle,
    /// API settings.
    pub settings: ApiSettings,
    /// Wall-clock time for everything the server stamps, signs and expires.
    pub clock: SharedClock,
    /// Telemetry (disabled unless `telemetry { Prometheus { ... } }`).
    pub metrics: spire_telemetry::Metrics,
}

impl Server {
    /// A server with no bundles and no SVID yet.
    pub fn new(parts: ServerParts) -> Self {
        Self {
            trust_domain: parts.trust_domain,
            server_id: parts.server_id,
            registry: parts.registry,
            ca: parts.ca,
            ca_manager: parts.ca_manager,
            node_attestors: parts.node_attestors,
            bundles: ArcSwap::from_pointee(Bundles::default()),
            tls_bundles: SharedBundles::new(BundleSet::new()),
            svid: SvidResolver::new(),
            svid_chain: ArcSwap::from_pointee(Vec::new()),
            svid_identity: ArcSwap::from_pointee((Vec::new(), Vec::new())),
            stopping: tokio::sync::watch::Sender::new(false),
            bundles_generation: tokio::sync::watch::Sender::new(0),
            log: parts.log,
            settings: parts.settings,
            clock: parts.clock,
            started: Instant::now(),
            metrics: parts.metrics,
            federation: std::sync::OnceLock::new(),
        }
    }

    /// Installs the federated bundle manager (once, at start-up).
    pub fn set_federation(&self, manager: Arc<crate::federation::manager::Manager>) {
        let _ = self.federation.set(manager);
    }

    /// The federated bundle manager, when started.
    pub fn federation(&self) -> Option<&Arc<crate::federation::manager::Manager>> {
        self.federation.get()
    }

    /// Our trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// `spiffe://<td>/spire/server`.
    pub fn server_id(&self) -> &SpiffeId {
        &self.server_id
    }

    /// The datastore, the index of entries and agents, change notices.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Signing.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    /// Rotation and the LocalAuthority API.
    pub fn ca_manager(&self) -> &Arc<CaManager> {
        &self.ca_manager
    }

    /// Node attestors by name.
    pub fn node_attestors(&self) -> &HashMap<String, Arc<dyn ServerNodeAttestor>> {
        &self.node_attestors
    }

    /// Bundles TLS verifies client certificates against.
    pub fn tls_bundles(&self) -> &Arc<SharedBundles> {
        &self.tls_bundles
    }

    /// The server's own SVID presented on the TCP listener.
    pub fn svid(&self) -> &Arc<SvidResolver> {
        &self.svid
    }

    /// The server's SVID chain (for Debug GetInfo).
    pub fn svid_chain(&self) -> &ArcSwap<Vec<Vec<u8>>> {
        &self.svid_chain
    }

    /// The server's SVID chain and key (PKCS#8 DER), as one value.
    pub fn svid_identity(&self) -> &ArcSwap<(Vec<Vec<u8>>, Vec<u8>)> {
        &self.svid_identity
    }

    /// Marks the server as stopping: streams that would otherwise run forever end, so a
    /// graceful stop does not wait for their clients.
    pub fn begin_stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once the server is stopping.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Telemetry.
    pub fn metrics(&self) -> &spire_telemetry::Metrics {
        &self.metrics
    }

    /// Logger control.
    pub fn log(&self) -> &LogHandle {
        &self.log
    }

    /// API settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }

    /// When the server started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Re-reads the bundles from the datastore and publishes them to TLS and watchers.
    pub async fn refresh_bundles(&self) -> Result<(), spire_datastore::DataStoreError> {
        let all = self.registry.ds().list_bundles(None).await?.bundles;
        let mut own = None;
        let mut federated = Vec::new();
        let mut set = BundleSet::new();
        for b in all {
            set.insert(convert::bundle_to_spiffe(&b));
            if b.trust_domain == self.trust_domain {
                own = Some(b);
            } else {
                federated.push(b);
            }
        }
        self.tls_bundles.store(set);
        self.bundles.store(Arc::new(Bundles { own, federated }));
        self.registry.bundles_changed();
        self.bundles_generation
            .send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }

    /// A receiver that sees every re-read of the bundles (not only changes of ours).
    pub fn bundles_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.bundles_generation.subscribe()
    }

    /// Whether the bundles in the datastore differ from the ones we serve: another server
    /// sharing the database appended its CA or JWT key, or refreshed a federated bundle.
    pub async fn bundles_changed_in_store(&self) -> Result<bool, spire_datastore::DataStoreError> {
        let stored = self.registry.ds().list_bundles(None).await?.bundles;
        let current = self.bundles.load();
        let known = current.own.iter().chain(current.federated.iter()).count();
        let same = stored.len() == known
            && stored.iter().all(|b| {
                if b.trust_domain == self.trust_domain {
                    current.own.as_ref() == Some(b)
                } else {
                    current.federated.iter().any(|f| f == b)
                }
            });
        Ok(!same)
    }

    /// Our bundle, as currently known.
    pub fn own_bundle(&self) -> Option<StoredBundle> {
        self.bundles.load().own.clone()
    }

    /// A federated bundle, as currently known.
    pub fn federated_bundle(&self, td: &TrustDomain) -> Option<StoredBundle> {
        self.bundles
            .load()
            .federated
            .iter()
            .find(|b| &b.trust_domain == td)
            .cloned()
    }

    /// The server's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The current time, from the server's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The current time in seconds since the epoch.
    pub fn now_secs(&self) -> i64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}
