//! The plugins that follow the trust bundle, driven as SPIRE drives them: Notifiers get
//! "bundle loaded" once at start-up (an error stops the server) and "bundle updated" after
//! every change the CA manager makes (errors are logged), on their own task; BundlePublishers
//! publish at start-up, after every change and every 30 seconds. Both read the bundle from
//! the datastore. The IdentityProvider host service
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
    let bundle = match stored_bundle(server).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            tracing::error!(error = "bundle not found", "Failed to publish bundle");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "Failed to publish bundle");
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

/// Our bundle from the datastore, as SPIRE's notifiers and publishers read it (the
/// in-memory copy may not have caught up with the change that woke them).
pub async fn stored_bundle(server: &Server) -> Result<Option<StoredBundle>, String> {
    server
        .registry()
        .ds()
        .fetch_bundle(server.trust_domain())
        .await
        .map_err(|e| format!("failed to fetch bundle from datastore: {e}"))
}

/// Tells the notifiers "bundle updated" after every change seen on `changes`.
pub async fn run_notifiers(
    notifiers: Vec<(String, Arc<dyn Notifier>)>,
    server: Arc<Server>,
    mut changes: watch::Receiver<u64>,
) {
    if notifiers.is_empty() {
        return;
    }
    while changes.changed().await.is_ok() {
        let result = match stored_bundle(&server).await {
            Ok(bundle) => notify(&notifiers, Event::Updated, bundle.as_ref()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, subsystem_name = "ca_manager", "Failed to notify on bundle update");
        }
    }
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
        let identity = self.0.svid_identity().load_full();
        Ok(X509Identity {
            cert_chain: identity.0.clone(),
            private_key: identity.1.clone(),
            bundle: plugin_bundle(&bundle),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spire_plugin::{PluginError, PluginResult};
    use std::sync::Mutex;

    /// A notifier that records what it hears and fails when told to.
    #[derive(Debug, Default)]
    struct Recorder {
        heard: Mutex<Vec<(Event, u64)>>,
        fail: Option<&'static str>,
    }

    #[async_trait::async_trait]
    impl Notifier for Recorder {
        async fn bundle_loaded(&self, bundle: &PluginBundle) -> PluginResult<()> {
            self.heard
                .lock()
                .unwrap()
                .push((Event::Loaded, bundle.sequence_number));
            self.fail.map_or(Ok(()), |m| Err(PluginError::internal(m)))
        }
        async fn bundle_updated(&self, bundle: &PluginBundle) -> PluginResult<()> {
            self.heard
                .lock()
                .unwrap()
                .push((Event::Updated, bundle.sequence_number));
            self.fail.map_or(Ok(()), |m| Err(PluginError::internal(m)))
        }
    }

    fn stored(seq: u64) -> StoredBundle {
        let mut b = StoredBundle::new(spiffe_core::TrustDomain::new("example.org").unwrap());
        b.sequence_number = seq;
        b.refresh_hint = 300;
        b.root_cas = vec![spire_datastore::RootCa {
            der: vec![1, 2],
            tainted: true,
        }];
        b.jwt_signing_keys = vec![spire_datastore::JwtSigningKey {
            kid: "k".into(),
            pkix: vec![3],
            not_after: 9,
            tainted: false,
        }];
        b
    }

    #[test]
    fn the_stored_bundle_is_what_plugins_see() {
        let b = plugin_bundle(&stored(4));
        assert_eq!(b.trust_domain, "example.org");
        assert_eq!(
            b.x509_authorities,
            vec![X509Authority {
                der: vec![1, 2],
                tainted: true
            }]
        );
        assert_eq!(b.jwt_authorities[0].key_id, "k");
        assert_eq!(b.jwt_authorities[0].expires_at, 9);
        assert_eq!((b.refresh_hint, b.sequence_number), (300, 4));
    }

    #[tokio::test]
    async fn every_notifier_hears_the_event_and_errors_are_joined() {
        let ok = Arc::new(Recorder::default());
        let bad = Arc::new(Recorder {
            fail: Some("nope"),
            ..Default::default()
        });
        let notifiers: Vec<(String, Arc<dyn Notifier>)> =
            vec![("ok".into(), ok.clone()), ("bad".into(), bad.clone())];
        let err = notify(&notifiers, Event::Loaded, Some(&stored(1)))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("one or more notifiers returned an error: ") && err.contains("nope"),
            "{err}"
        );
        notify(&notifiers[..1], Event::Updated, Some(&stored(2)))
            .await
            .unwrap();
        assert_eq!(
            *ok.heard.lock().unwrap(),
            vec![(Event::Loaded, 1), (Event::Updated, 2)]
        );
        assert_eq!(*bad.heard.lock().unwrap(), vec![(Event::Loaded, 1)]);
        // Without a bundle, SPIRE's error; without notifiers, nothing to do.
        assert_eq!(
            notify(&notifiers, Event::Updated, None).await.unwrap_err(),
            "trust domain bundle is missing"
        );
        notify(&[], Event::Loaded, None).await.unwrap();
    }
}
