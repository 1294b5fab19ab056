//! The plugins that follow the trust bundle, driven as SPIRE drives them: Notifiers get
//! "bundle loaded" once at start-up (an error stops the server) and "bundle updated" after
//! every change the CA manager makes (errors are logged); BundlePublishers publish at
//! start-up, after every change and every 30 seconds. The IdentityProvider host service
//! answers from the server's own SVID.

use std::sync::Arc;
use std::time::Duration;

use spire_datastore::StoredBundle;
use spire_plugin::{BundlePublisher, JwtKey, Notifier, PluginBundle, X509Authority};
use spire_plugin_host::hostservices::{IdentityFetcher, X509Identity};
use tokio::sync::watch;

use crate::state::Server;

/// How often BundlePublishers publish even without a change (SPIRE's refresh interval).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(30);

/// The bundle as plugins see it.
pub fn plugin_bundle(b: &StoredBundle) -> PluginBundle {
    PluginBundle {
        trust_domain: b.trust_domain.name().to_string(),
        x509_authorities: b
            .root_cas
            .iter()
            .map(|r| X509Authority {
                der: r.der.clone(),
                tainted: r.tainted,
            })
            .collect(),
        jwt_authorities: b
            .jwt_signing_keys
            .iter()
            .map(|k| JwtKey {
                public_key: k.pkix.clone(),
                key_id: k.kid.clone(),
                expires_at: k.not_after,
                tainted: k.tainted,
            })
            .collect(),
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    }
}

/// Which notifier event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// At start-up (NotifyAndAdvise).
    Loaded,
    /// After a change (Notify).
    Updated,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Loaded => "bundle loaded",
            Event::Updated => "bundle updated",
        }
    }
}

/// Sends `event` with `bundle` to every notifier at once; SPIRE's error when any failed.
pub async fn notify(
    notifiers: &[(String, Arc<dyn Notifier>)],
    event: Event,
    bundle: Option<&StoredBundle>,
) -> Result<(), String> {
    if notifiers.is_empty() {
        return Ok(());
    }
    let bundle = plugin_bundle(bundle.ok_or("trust domain bundle is missing")?);
    let calls = notifiers.iter().map(|(name, n)| {
        let bundle = &bundle;
        async move {
            let result = match event {
                Event::Loaded => n.bundle_loaded(bundle).await,
                Event::Updated => n.bundle_updated(bundle).await,
            };
            match &result {
                Ok(()) => tracing::debug!(notifier = %name, event = event.name(), "Notifier handled event"),
                Err(e) if event == Event::Loaded => tracing::error!(notifier = %name, event = event.name(), error = %e, "Notifier failed to handle event"),
                Err(e) => tracing::warn!(notifier = %name, event = event.name(), error = %e, "Notifier failed to handle event"),
            }
            result
        }
    });
    let errors: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "one or more notifiers returned an error: {}",
            errors.join("\n")
        ))
    }
}

/// Publishes the current bundle through every publisher at once; failures are logged.
pub async fn publish(publishers: &[(String, Arc<dyn BundlePublisher>)], server: &Server) {
    if publishers.is_empty() {
        return;
    }
    // From the datastore, as SPIRE does: the in-memory copy may not have caught up with
    // the change that woke us.
    let bundle = match server
        .registry()
        .ds()
        .fetch_bundle(server.trust_domain())
        .await
    {
        Ok(Some(b)) => b,
        Ok(None) => {
            tracing::error!(error = "bundle not found", "Failed to publish bundle");
            return;
        }
        Err(e) => {
            tracing::error!(error = %format!("failed to fetch bundle from datastore: {e}"), "Failed to publish bundle");
            return;
        }
    };
    let bundle = plugin_bundle(&bundle);
    let calls = publishers.iter().map(|(name, p)| {
        let bundle = &bundle;
        async move {
            if let Err(e) = p.publish_bundle(bundle).await {
                tracing::error!(bundle_publisher = %name, error = %e, "Failed to publish bundle");
            }
        }
    });
    futures::future::join_all(calls).await;
}

/// Publishes at once, then after every change seen on `changes` and every
/// [`PUBLISH_INTERVAL`].
pub async fn run_publishers(
    publishers: Vec<(String, Arc<dyn BundlePublisher>)>,
    server: Arc<Server>,
    mut changes: watch::Receiver<u64>,
) {
    if publishers.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        publish(&publishers, &server).await;
    }
}

/// The IdentityProvider host service's view of the server.
#[derive(Debug)]
pub struct ServerIdentity(pub Arc<Server>);

#[async_trait::async_trait]
impl IdentityFetcher for ServerIdentity {
    async fn fetch_x509_identity(&self) -> Result<X509Identity, String> {
        let bundle = self.0.own_bundle().ok_or("bundle not found")?;
        Ok(X509Identity {
            cert_chain: self.0.svid_chain().load().as_ref().clone(),
            private_key: self.0.svid_key().load().as_ref().clone(),
            bundle: plugin_bundle(&bundle),
        })
    }
}
