//! The federated bundle manager (SPIRE's `bundle/client.Manager`): one updater per trust
//! domain we federate with, from `federates_with` in the configuration and from the
//! federation relationships in the datastore (the configuration wins for a trust domain
//! in both). The set is re-read every 10 seconds and whenever a relationship is created,
//! updated or deleted through the API; an updater whose trust domain is gone stops.
//!
//! Each updater fetches the bundle, stores it when it changed, and schedules the next
//! poll from the bundle it now holds ([`client::next_update`]); when the fetch fails the
//! stored bundle stays and schedules the retry (one minute when there is none).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use spiffe_core::TrustDomain;
use spire_datastore::BundleEndpointProfile;
use tokio::sync::Notify;

use super::client::{self, EndpointProfile, TrustDomainConfig, UpdateError};
use crate::state::Server;

const SUBSYSTEM: &str = "bundle_client";

/// How often the sources are re-read.
pub const CONFIG_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Where the trust domains to federate with come from.
#[async_trait::async_trait]
pub trait ConfigSource: Send + Sync {
    /// The trust domains and how to reach their endpoints.
    async fn configs(&self) -> Result<BTreeMap<TrustDomain, TrustDomainConfig>, String>;
}

/// The configuration's `federates_with` over the datastore's relationships.
#[derive(Debug)]
pub struct ServerSource {
    server: Arc<Server>,
    fixed: BTreeMap<TrustDomain, TrustDomainConfig>,
}

impl ServerSource {
    /// `fixed` from the configuration file.
    pub fn new(server: Arc<Server>, fixed: BTreeMap<TrustDomain, TrustDomainConfig>) -> Self {
        Self { server, fixed }
    }
}

#[async_trait::async_trait]
impl ConfigSource for ServerSource {
    async fn configs(&self) -> Result<BTreeMap<TrustDomain, TrustDomainConfig>, String> {
        let listed = self
            .server
            .registry()
            .ds()
            .list_federation_relationships(None)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for fr in listed.relationships {
            let profile = match fr.bundle_endpoint_profile {
                BundleEndpointProfile::HttpsWeb => EndpointProfile::HttpsWeb,
                BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                    EndpointProfile::HttpsSpiffe(endpoint_spiffe_id)
                }
            };
            out.insert(
                fr.trust_domain,
                TrustDomainConfig {
                    endpoint_url: fr.bundle_endpoint_url.as_str().to_owned(),
                    profile,
                },
            );
        }
        for (td, c) in &self.fixed {
            out.insert(td.clone(), c.clone());
        }
        Ok(out)
    }
}

/// What an updater does once: update `td`'s bundle with `config`, and say when to poll
/// again. Abstracted so the schedule can be tested without endpoints.
#[async_trait::async_trait]
pub trait Updater: Send + Sync {
    /// One update; the duration until the next one and the error, if any.
    async fn update(
        &self,
        td: &TrustDomain,
        config: &TrustDomainConfig,
    ) -> (Duration, Result<bool, String>);

    /// Waits `max` before the next update, or less when the endpoint reports a change
    /// before (a spire-rs endpoint holds a request until its bundle changes). The default
    /// waits `max`.
    async fn wait(&self, _td: &TrustDomain, _config: &TrustDomainConfig, max: Duration) {
        tokio::time::sleep(max).await;
    }
}

/// The real updater: fetch, store, publish to the server's bundle view.
#[derive(Debug)]
pub struct DatastoreUpdater {
    server: Arc<Server>,
    /// Trust domains whose endpoint does not hold requests, and since when that is known
    /// (asked again after [`WATCH_RETRY`]).
    no_watch: parking_lot::Mutex<BTreeMap<TrustDomain, tokio::time::Instant>>,
}

/// How long an endpoint that does not hold requests is polled only on the schedule before
/// it is asked again (it may have been replaced by a spire-rs server).
const WATCH_RETRY: Duration = Duration::from_secs(600);

impl DatastoreUpdater {
    /// Updates `server`'s datastore.
    pub fn new(server: Arc<Server>) -> Self {
        Self {
            server,
            no_watch: parking_lot::Mutex::new(BTreeMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl Updater for DatastoreUpdater {
    async fn update(
        &self,
        td: &TrustDomain,
        config: &TrustDomainConfig,
    ) -> (Duration, Result<bool, String>) {
        let (local, result) = client::update_bundle(self.server.registry().ds(), td, config).await;
        match result {
            Ok(Some(fetched)) => {
                if let Err(e) = self.server.refresh_bundles().await {
                    tracing::warn!(error = %e, "Failed to reload bundles");
                }
                (client::next_update(&fetched), Ok(true))
            }
            Ok(None) => (
                local
                    .as_ref()
                    .map_or(client::MINIMUM_REFRESH, client::next_update),
                Ok(false),
            ),
            Err(e) => (
                local
                    .as_ref()
                    .map_or(client::MINIMUM_REFRESH, client::next_update),
                Err(render(&e)),
            ),
        }
    }

    async fn wait(&self, td: &TrustDomain, config: &TrustDomainConfig, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        let known = self.no_watch.lock().get(td).copied();
        if known.is_none_or(|since| since.elapsed() >= WATCH_RETRY) {
            match client::watch_bundle(self.server.registry().ds(), td, config, deadline).await {
                client::Watch::Changed => return,
                client::Watch::Unsupported => {
                    self.no_watch
                        .lock()
                        .insert(td.clone(), tokio::time::Instant::now());
                }
                client::Watch::Failed(e) => {
                    tracing::debug!(error = %e, trust_domain = %td.name(), subsystem_name = SUBSYSTEM, "Bundle endpoint watch failed");
                }
                client::Watch::Unchanged => {}
            }
        }
        tokio::time::sleep_until(deadline).await;
    }
}

fn render(e: &UpdateError) -> String {
    e.to_string()
}

struct Managed {
    config: Arc<parking_lot::Mutex<TrustDomainConfig>>,
    /// Held for a whole update (fetch, compare, store): a `RefreshBundle` and the poll
    /// never interleave, so an older fetch cannot overwrite a newer one.
    updating: Arc<tokio::sync::Mutex<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs one updater per federated trust domain.
pub struct Manager {
    source: Box<dyn ConfigSource>,
    updater: Arc<dyn Updater>,
    managed: tokio::sync::Mutex<HashMap<TrustDomain, Managed>>,
    reload: Notify,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        for m in self.managed.get_mut().values() {
            m.task.abort();
        }
    }
}

impl Manager {
    /// A manager reading `source` and updating with `updater`.
    pub fn new(source: Box<dyn ConfigSource>, updater: Arc<dyn Updater>) -> Arc<Self> {
        Arc::new(Self {
            source,
            updater,
            managed: tokio::sync::Mutex::new(HashMap::new()),
            reload: Notify::new(),
        })
    }

    /// Re-reads the sources every [`CONFIG_REFRESH_INTERVAL`] or when asked, forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.refresh_configs().await {
                tracing::error!(error = %e, subsystem_name = SUBSYSTEM, "Failed to reload configs");
            }
            tokio::select! {
                _ = tokio::time::sleep(CONFIG_REFRESH_INTERVAL) => {}
                _ = self.reload.notified() => {}
            }
        }
    }

    /// Asks for the sources to be re-read now (a relationship changed).
    pub fn trigger_config_reload(&self) {
        self.reload.notify_one();
    }

    /// The trust domains managed now.
    pub async fn managed(&self) -> Vec<TrustDomain> {
        let mut v: Vec<_> = self.managed.lock().await.keys().cloned().collect();
        v.sort();
        v
    }

    /// `RefreshBundle`: re-reads the sources, then updates `td` now. `Ok(false)` when `td`
    /// is not managed.
    pub async fn refresh_bundle_for(&self, td: &TrustDomain) -> Result<bool, String> {
        if let Err(e) = self.refresh_configs().await {
            tracing::error!(error = %e, subsystem_name = SUBSYSTEM, "Failed to reload configs");
        }
        let (config, updating) = {
            let managed = self.managed.lock().await;
            match managed.get(td) {
                Some(m) => (m.config.lock().clone(), m.updating.clone()),
                None => return Ok(false),
            }
        };
        let _one_at_a_time = updating.lock().await;
        let (_, result) = self.updater.update(td, &config).await;
        result.map(|_| true)
    }

    /// Starts updaters for new trust domains, updates changed ones, stops removed ones.
    pub async fn refresh_configs(&self) -> Result<(), String> {
        let mut configs = self.source.configs().await?;
        let mut managed = self.managed.lock().await;
        let tds: Vec<TrustDomain> = managed.keys().cloned().collect();
        for td in tds {
            match configs.remove(&td) {
                Some(config) => {
                    let Some(m) = managed.get(&td) else { continue };
                    let mut current = m.config.lock();
                    if *current != config {
                        tracing::info!(
                            entry = %td.name(),
                            bundle_endpoint_url = %config.endpoint_url,
                            bundle_endpoint_profile = config.profile.name(),
                            subsystem_name = SUBSYSTEM,
                            "Updated configuration for managed trust domain"
                        );
                        *current = config;
                    }
                }
                None => {
                    tracing::info!(
                        entry = %td.name(),
                        subsystem_name = SUBSYSTEM,
                        "Trust domain no longer managed"
                    );
                    if let Some(m) = managed.remove(&td) {
                        m.task.abort();
                        tracing::info!(
                            trust_domain = %td.name(),
                            subsystem_name = SUBSYSTEM,
                            "No longer polling for updates"
                        );
                    }
                }
            }
        }
        for (td, config) in configs {
            tracing::info!(
                bundle_endpoint_url = %config.endpoint_url,
                bundle_endpoint_profile = config.profile.name(),
                trust_domain = %td.name(),
                subsystem_name = SUBSYSTEM,
                "Trust domain is now managed"
            );
            let config = Arc::new(parking_lot::Mutex::new(config));
            let updating = Arc::new(tokio::sync::Mutex::new(()));
            let task = tokio::spawn(run_updater(
                td.clone(),
                config.clone(),
                updating.clone(),
                self.updater.clone(),
            ));
            managed.insert(
                td,
                Managed {
                    config,
                    updating,
                    task,
                },
            );
        }
        Ok(())
    }
}

async fn run_updater(
    td: TrustDomain,
    config: Arc<parking_lot::Mutex<TrustDomainConfig>>,
    updating: Arc<tokio::sync::Mutex<()>>,
    updater: Arc<dyn Updater>,
) {
    loop {
        tracing::debug!(trust_domain = %td.name(), subsystem_name = SUBSYSTEM, "Polling for bundle update");
        let current = config.lock().clone();
        let (next, result) = {
            let _one_at_a_time = updating.lock().await;
            updater.update(&td, &current).await
        };
        let updated = result.is_ok();
        match result {
            Ok(true) => {
                tracing::info!(trust_domain = %td.name(), subsystem_name = SUBSYSTEM, "Bundle refreshed");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(
                    error = %e,
                    trust_domain = %td.name(),
                    subsystem_name = SUBSYSTEM,
                    "Error updating bundle"
                );
            }
        }
        tracing::debug!(
            next_refresh = %super::endpoint::go_duration(next),
            trust_domain = %td.name(),
            subsystem_name = SUBSYSTEM,
            "Scheduling next bundle refresh"
        );
        if updated {
            updater.wait(&td, &current, next).await;
        } else {
            // Never watched after a failed update: a store that keeps failing would turn
            // every watch into an immediate "changed".
            tokio::time::sleep(next).await;
        }
    }
}

/// The configuration file's `federates_with` as updater configurations.
pub fn from_config(
    fed: &BTreeMap<TrustDomain, spire_config::FederatesWithConfig>,
) -> BTreeMap<TrustDomain, TrustDomainConfig> {
    fed.iter()
        .map(|(td, c)| {
            let profile = match &c.profile {
                spire_config::FederatesWithProfile::HttpsWeb => EndpointProfile::HttpsWeb,
                spire_config::FederatesWithProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                    EndpointProfile::HttpsSpiffe(endpoint_spiffe_id.clone())
                }
            };
            (
                td.clone(),
                TrustDomainConfig {
                    endpoint_url: c.bundle_endpoint_url.clone(),
                    profile,
                },
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
