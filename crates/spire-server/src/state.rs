//! The state every API handler shares.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use spiffe_core::{BundleSet, SpiffeId, TrustDomain};
use spire_datastore::{DataStore, StoredBundle};
use spire_log::LogHandle;
use spire_plugin::ServerNodeAttestor;
use spire_tls::{SharedBundles, SvidResolver};
use tokio::sync::watch;

use crate::api::convert;
use crate::ca::Ca;
use crate::ca::manager::CaManager;
use crate::index::EntryIndex;

/// What agents watching for changes see (our `spirers.sync.v1` extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revisions {
    /// Bumped on every entry or agent change.
    pub entries: u64,
    /// Bumped on every bundle change.
    pub bundles: u64,
}

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
    pub trust_domain: TrustDomain,
    /// `spiffe://<td>/spire/server`.
    pub server_id: SpiffeId,
    /// The datastore.
    pub ds: Arc<dyn DataStore>,
    /// Signing.
    pub ca: Arc<Ca>,
    /// Rotation and the LocalAuthority API.
    pub ca_manager: Arc<CaManager>,
    /// Entries and agents, in memory.
    pub index: RwLock<EntryIndex>,
    /// Node attestors by name (`join_token` is handled by the server itself).
    pub node_attestors: HashMap<String, Arc<dyn ServerNodeAttestor>>,
    /// Current bundles.
    pub bundles: ArcSwap<Bundles>,
    /// Bundles TLS verifies client certificates against.
    pub tls_bundles: Arc<SharedBundles>,
    /// The server's own SVID presented on the TCP listener.
    pub svid: Arc<SvidResolver>,
    /// The server's SVID chain (for Debug GetInfo).
    pub svid_chain: ArcSwap<Vec<Vec<u8>>>,
    /// Logger control.
    pub log: LogHandle,
    /// API settings.
    pub settings: ApiSettings,
    /// When the server started.
    pub started: Instant,
    /// Change notices for agents.
    pub changes: watch::Sender<Revisions>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Re-reads the bundles from the datastore and publishes them to TLS and watchers.
    pub async fn refresh_bundles(&self) -> Result<(), spire_datastore::DataStoreError> {
        let all = self.ds.list_bundles(None).await?.bundles;
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
        self.changes.send_modify(|r| r.bundles += 1);
        Ok(())
    }

    /// Records that entries or agents changed.
    pub fn entries_changed(&self) {
        let rev = self.index.read().revision();
        self.changes
            .send_modify(|r| r.entries = rev.max(r.entries + 1));
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

    /// Loads the whole index from the datastore (at start-up).
    pub async fn load_index(&self) -> Result<(), spire_datastore::DataStoreError> {
        use futures::StreamExt as _;
        let mut ix = EntryIndex::new(&self.server_id);
        let mut entries = self.ds.stream_all_registration_entries(10_000);
        while let Some(page) = entries.next().await {
            for e in page? {
                ix.upsert_entry(e);
            }
        }
        drop(entries);
        let mut nodes = self.ds.stream_all_attested_nodes(10_000);
        while let Some(page) = nodes.next().await {
            for n in page? {
                let sel = n.selectors.clone();
                ix.upsert_agent(&n, Some(sel));
            }
        }
        drop(nodes);
        *self.index.write() = ix;
        self.entries_changed();
        Ok(())
    }

    /// Re-reads one entry after a change (ours or another server's) and updates the index.
    pub async fn reload_entry(
        &self,
        entry_id: &str,
    ) -> Result<(), spire_datastore::DataStoreError> {
        let e = self.ds.fetch_registration_entry(entry_id).await?;
        {
            let mut ix = self.index.write();
            match e {
                Some(e) => ix.upsert_entry(e),
                None => {
                    ix.remove_entry(entry_id);
                }
            }
        }
        self.entries_changed();
        Ok(())
    }

    /// Re-reads one agent after a change and updates the index.
    pub async fn reload_agent(&self, id: &SpiffeId) -> Result<(), spire_datastore::DataStoreError> {
        let node = self.ds.fetch_attested_node(id).await?;
        match node {
            Some(n) => {
                let sel = self
                    .ds
                    .get_node_selectors(id, spire_datastore::DataConsistency::RequireCurrent)
                    .await?;
                self.index.write().upsert_agent(&n, Some(sel));
            }
            None => {
                self.index.write().remove_agent(id.as_str());
            }
        }
        self.entries_changed();
        Ok(())
    }

    /// Seconds since the epoch.
    pub fn now_secs() -> i64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}
