//! `spire-server run`: assembles the plugins, CA, index and listeners, and runs the
//! background loops (CA rotation, server SVID rotation, pruning, change following).

use spire_clock::SharedClock;
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use spiffe_core::{KeyType, PrivateKey};
use spire_config::ServerConfig;
use spire_log::LogHandle;
use spire_pki::Subject;

use crate::ca::manager::{CaManager, ManagerConfig};
use crate::ca::{Ca, CaSettings};
use crate::catalog;
use crate::endpoints;
use crate::registry::Registry;
use crate::state::{ApiSettings, Server, ServerParts};

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Plugins.
    #[error(transparent)]
    Catalog(#[from] catalog::LoadError),
    /// The CA manager.
    #[error(transparent)]
    Ca(#[from] crate::ca::manager::ManagerError),
    /// The datastore.
    #[error(transparent)]
    Datastore(#[from] spire_datastore::DataStoreError),
    /// The listeners.
    #[error(transparent)]
    Endpoints(#[from] endpoints::EndpointsError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

fn ca_subject(config: &ServerConfig) -> Subject {
    let s = &config.ca_subject;
    if s.country.is_empty() && s.organization.is_empty() && s.common_name.is_empty() {
        return Subject::default_ca();
    }
    Subject {
        country: s.country.clone(),
        organization: s.organization.clone(),
        common_name: s.common_name.clone(),
        ..Subject::default()
    }
}

fn bind_address(config: &ServerConfig) -> Result<SocketAddr, RunError> {
    (config.bind_address.as_str(), config.bind_port)
        .to_socket_addrs()
        .map_err(|e| {
            RunError::Other(format!(
                "could not resolve bind address \"{}:{}\": {e}",
                config.bind_address, config.bind_port
            ))
        })?
        .next()
        .ok_or_else(|| {
            RunError::Other(format!(
                "could not resolve bind address \"{}:{}\"",
                config.bind_address, config.bind_port
            ))
        })
}

/// How often the server SVID rotator looks at its SVID at the least (SPIRE's interval).
const SVID_ROTATOR_INTERVAL: Duration = Duration::from_secs(5);

/// Whether the server's SVID chains to a root of its own bundle: to an untainted one
/// (`Some(true)`), to a tainted one only (`Some(false)`), or to none (`None`: revoked
/// since, or an upstream chain that does not reach the bundle's roots).
fn server_svid_trust(server: &Server) -> Option<bool> {
    let bundle = server.own_bundle()?;
    let chain = server.svid_chain().load();
    let (leaf, intermediates) = chain.split_first()?;
    let (tainted, trusted): (Vec<_>, Vec<_>) = bundle.root_cas.into_iter().partition(|r| r.tainted);
    let verifies = |roots: Vec<spire_datastore::RootCa>| {
        let roots: Vec<Vec<u8>> = roots.into_iter().map(|r| r.der).collect();
        spiffe_core::x509svid::verify_x509_path(leaf, intermediates, &roots, server.now()).is_ok()
    };
    if verifies(trusted) {
        Some(true)
    } else if verifies(tainted) {
        Some(false)
    } else {
        None
    }
}

/// Signs a fresh server SVID and installs it for TLS; returns when it should next rotate.
/// The server SVID rotation, counted as SPIRE's `svid_rotate` call.
async fn rotate_server_svid(server: &Server) -> Result<SystemTime, RunError> {
    let call = server.metrics().start_call(&["svid", "rotate"]);
    let r = rotate_server_svid_uncounted(server).await;
    call.done(if r.is_ok() {
        tonic::Code::Ok
    } else {
        tonic::Code::Unknown
    });
    r
}

async fn rotate_server_svid_uncounted(server: &Server) -> Result<SystemTime, RunError> {
    let key = PrivateKey::generate(KeyType::EcP256).map_err(|e| RunError::Other(e.to_string()))?;
    let now = server.now();
    let issued = server
        .ca()
        .sign_server_x509_svid(key.public_key(), now)
        .await
        .map_err(|e| RunError::Other(format!("failed to sign server SVID: {e}")))?;
    let not_after = issued.not_after;
    server
        .svid()
        .set(&issued.chain, key.pkcs8_der())
        .map_err(|e| RunError::Other(e.to_string()))?;
    server
        .svid_identity()
        .store(Arc::new((issued.chain.clone(), key.pkcs8_der().to_vec())));
    server.svid_chain().store(Arc::new(issued.chain));
    tracing::debug!(
        expiration = %spire_gocompat::time::utc_string(not_after),
        spiffe_id = %server.server_id(),
        subsystem_name = "svid_rotator",
        "Signed X509 SVID"
    );
    // Rotate at half life.
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64);
    let half = not_after.duration_since(now).unwrap_or_default() / 2;
    Ok(now + half)
}

/// What the hourly maintenance prunes, from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PruneSettings {
    /// `prune_attested_nodes_expired_for`: agents whose SVIDs expired this long ago go.
    pub(crate) nodes_expired_for: Option<Duration>,
    /// `prune_tofu_nodes`: whether those include agents of TOFU attestors.
    pub(crate) tofu_nodes: bool,
}

/// One round of the hourly maintenance at `now`: old CA slots leave the bundle and the
/// journal; expired join tokens, entries and (when configured) agents leave the database;
/// agents expired for an hour leave the index. Failures are logged and left to the next
/// round.
pub(crate) async fn prune_once(server: &Server, now: SystemTime, prune: PruneSettings) {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if let Err(e) = server.ca_manager().prune_bundle(now).await {
        tracing::warn!(error = %e, subsystem_name = "ca_manager", "Could not prune bundle");
    }
    if let Err(e) = server.ca_manager().prune_journals(now).await {
        tracing::warn!(error = %e, subsystem_name = "ca_manager", "Could not prune CA journals");
    }
    let ds = server.registry().ds();
    if let Err(e) = ds.prune_join_tokens(secs).await {
        tracing::warn!(error = %e, "Could not prune join tokens");
    }
    if let Err(e) = ds.prune_registration_entries(secs).await {
        tracing::warn!(error = %e, "Could not prune registration entries");
    }
    if let Some(expired_for) = prune.nodes_expired_for {
        let before = secs - expired_for.as_secs() as i64;
        if let Err(e) = ds
            .prune_attested_expired_nodes(before, prune.tofu_nodes)
            .await
        {
            tracing::warn!(error = %e, "Could not prune attested nodes");
        }
    }
    server.registry().prune_expired_agents(secs - 3600);
}

/// Runs the server until SIGINT/SIGTERM; `clock` is the wall clock for everything it
/// stamps, signs and expires.
pub async fn run(config: ServerConfig, log: LogHandle, clock: SharedClock) -> Result<(), RunError> {
    // SPIRE tightens a permissive umask so data files are not group/world writable.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    if old.bits() & 0o027 != 0o027 {
        tracing::warn!(
            "Current umask {:04o} is too permissive; setting umask 0027",
            old.bits()
        );
    } else {
        nix::sys::stat::umask(old);
    }
    let td = config.trust_domain.clone();
    let metrics = spire_telemetry::start(
        &config.telemetry,
        spire_telemetry::Service::Server,
        td.name(),
        spire_cli::VERSION,
    )
    .await
    .map_err(|e| RunError::Other(e.to_string()))?;
    let server_id = td
        .id_with_path("/spire/server")
        .map_err(|e| RunError::Other(e.to_string()))?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| RunError::Other(format!("unable to create data directory: {e}")))?;
    let tcp_addr = bind_address(&config)?;

    // x509pop's spiffe mode trusts our own X.509 authorities.
    let own_roots: Arc<ArcSwap<Vec<Vec<u8>>>> = Arc::new(ArcSwap::from_pointee(Vec::new()));
    let roots_for_plugin = own_roots.clone();
    let cat = catalog::load(
        &config,
        &td,
        Arc::new(move || roots_for_plugin.load().as_ref().clone()),
        &clock,
        &metrics,
    )
    .await?;

    let ca = Arc::new(
        Ca::new(
            td.clone(),
            CaSettings {
                x509_svid_ttl: config.default_x509_svid_ttl,
                jwt_svid_ttl: config.default_jwt_svid_ttl,
                agent_ttl: config.agent_ttl,
                svid_subject: Subject::default_svid(),
                jwt_issuer: config.jwt_issuer.clone(),
            },
            cat.credential_composers.clone(),
        )
        .with_metrics(metrics.clone()),
    );
    // Every change the CA manager makes to the bundle bumps this counter; the bundle
    // reloader, the notifiers and the publishers each follow it.
    let (bundle_changes, _) = tokio::sync::watch::channel(0u64);
    let bundle_changes = Arc::new(bundle_changes);
    let notify = bundle_changes.clone();
    let bundle_km = cat.km.clone();
    let ca_manager = CaManager::load(
        ManagerConfig {
            trust_domain: td.clone(),
            ca_ttl: config.ca_ttl,
            x509_key_type: config.ca_key_type,
            jwt_key_type: config.jwt_key_type,
            ca_subject: ca_subject(&config),
        },
        cat.ds.clone(),
        cat.km.clone(),
        cat.upstream_authority.clone(),
        ca.clone(),
        Arc::new(move || notify.send_modify(|n| *n += 1)),
        clock.now(),
    )
    .await?;

    let server = Arc::new(Server::new(ServerParts {
        trust_domain: td.clone(),
        server_id: server_id.clone(),
        registry: Arc::new(Registry::new(cat.ds.clone(), &server_id)),
        ca: ca.clone(),
        ca_manager: ca_manager.clone(),
        node_attestors: cat.node_attestors,
        log,
        settings: ApiSettings {
            default_join_token_ttl: Duration::from_secs(600),
            admin_ids: config
                .admin_ids
                .iter()
                .map(|i| i.to_string())
                .collect::<HashSet<_>>(),
            rate_limit_attestation: config.ratelimit.attestation,
            rate_limit_signing: config.ratelimit.signing,
        },
        clock: clock.clone(),
        metrics: metrics.clone(),
    }));

    // The CA must be active before anything is signed.
    ca_manager.rotate(server.now()).await?;
    server.refresh_bundles().await?;
    own_roots.store(Arc::new(
        server
            .own_bundle()
            .map(|b| b.root_cas.into_iter().map(|r| r.der).collect())
            .unwrap_or_default(),
    ));

    let last_entry_event = server
        .registry()
        .ds()
        .latest_registration_entry_event_id()
        .await?
        .unwrap_or(0);
    let last_node_event = server
        .registry()
        .ds()
        .latest_attested_node_event_id()
        .await?
        .unwrap_or(0);
    tracing::info!(
        subsystem_name = "endpoints",
        "Building in-memory entry cache"
    );
    {
        // SPIRE's full cache times each build as `entry_cache_reload`; ours is built once
        // and then follows the event tables. The events-based cache emits gauges instead.
        let call = (!config.experimental.events_based_cache)
            .then(|| server.metrics().start_call(&["entry", "cache", "reload"]));
        let loaded = server.registry().load().await;
        if let Some(call) = call {
            call.done(match &loaded {
                Ok(()) => tonic::Code::Ok,
                Err(_) => tonic::Code::Internal,
            });
        }
        loaded?;
    }
    tracing::info!(
        subsystem_name = "endpoints",
        "Completed building in-memory entry cache"
    );

    tracing::debug!(subsystem_name = "svid_rotator", "Rotating server SVID");
    let mut next_svid_rotation = rotate_server_svid(&server).await?;
    let _ = cat
        .identity
        .set(Arc::new(crate::bundleplugins::ServerIdentity(
            server.clone(),
        )));
    // SPIRE drops a pending "bundle updated" before "bundle loaded", so notifiers do not
    // hear of the start-up changes twice.
    let mut notifier_changes = bundle_changes.subscribe();
    notifier_changes.borrow_and_update();
    let own = crate::bundleplugins::stored_bundle(&server)
        .await
        .map_err(RunError::Other)?;
    crate::bundleplugins::notify(
        &cat.notifiers,
        crate::bundleplugins::Event::Loaded,
        own.as_ref(),
    )
    .await
    .map_err(RunError::Other)?;

    // Background loops.
    {
        // The server SVID rotates at half life (checked at least every 5 s, SPIRE's
        // rotator interval, so short TTLs are honoured) or when its authority is tainted.
        // An SVID that chained to a trusted root when issued and no longer chains to any
        // was signed by an authority revoked since: rotated as a tainted one is (SPIRE
        // latches the taint notice, so a revoke soon after the taint has the same result).
        let server = server.clone();
        tokio::spawn(async move {
            let mut was_trusted = server_svid_trust(&server) == Some(true);
            loop {
                let wait = next_svid_rotation
                    .duration_since(server.now())
                    .unwrap_or_default()
                    .min(SVID_ROTATOR_INTERVAL);
                tokio::time::sleep(wait).await;
                let now = server.now();
                let trust = server_svid_trust(&server);
                let tainted = trust == Some(false) || (was_trusted && trust.is_none());
                if now < next_svid_rotation && !tainted {
                    continue;
                }
                if tainted {
                    tracing::info!(
                        subsystem_name = "svid_rotator",
                        "Server SVID signed using a tainted authority, forcing rotation of the Server SVID"
                    );
                }
                tracing::debug!(subsystem_name = "svid_rotator", "Rotating server SVID");
                match rotate_server_svid(&server).await {
                    Ok(next) => {
                        next_svid_rotation = next;
                        was_trusted = server_svid_trust(&server) == Some(true);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, subsystem_name = "svid_rotator", "Could not rotate server SVID");
                        next_svid_rotation = now + Duration::from_secs(1);
                    }
                }
            }
        });
    }
    {
        let server = server.clone();
        let own_roots = own_roots.clone();
        let mut changes = bundle_changes.subscribe();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if let Err(e) = server.refresh_bundles().await {
                    tracing::warn!(error = %e, "Failed to reload bundles");
                }
                own_roots.store(Arc::new(
                    server
                        .own_bundle()
                        .map(|b| b.root_cas.into_iter().map(|r| r.der).collect())
                        .unwrap_or_default(),
                ));
            }
        });
    }
    // Notifiers on their own task, so a slow one does not hold up the bundle reload.
    tokio::spawn(crate::bundleplugins::run_notifiers(
        cat.notifiers,
        server.clone(),
        notifier_changes,
    ));
    tokio::spawn(crate::bundleplugins::run_publishers(
        cat.bundle_publishers,
        server.clone(),
        bundle_changes.subscribe(),
    ));
    let prune = PruneSettings {
        nodes_expired_for: config.prune_attested_nodes_expired_for,
        tofu_nodes: config.prune_tofu_nodes,
    };
    {
        let server = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            let mut last_prune = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let now = server.now();
                if let Err(e) = server.ca_manager().rotate(now).await {
                    tracing::error!(error = %e, subsystem_name = "ca_manager", "Unable to rotate CA");
                }
                if last_prune.elapsed() >= Duration::from_secs(3600) {
                    last_prune = tokio::time::Instant::now();
                    prune_once(&server, now, prune).await;
                }
            }
        });
    }
    {
        // SPIRE's rotator asks the UpstreamAuthority for its local bundle 5 s after start,
        // once; an upstream that does not stream it answers Unimplemented. A failure is
        // retried every 5 s (SPIRE's server would stop).
        let server = server.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                match server.ca_manager().subscribe_to_local_bundle().await {
                    Ok(()) => return,
                    Err(e) => tracing::error!(
                        error = %e,
                        subsystem_name = "ca_manager",
                        "Failed to subscribe to the upstream authority's local bundle; retrying"
                    ),
                }
            }
        });
    }
    // Writes by other servers sharing the database reach our index through the event
    // tables (our own writes are applied directly too).
    tokio::spawn(crate::registry::events::follow(
        server.registry().clone(),
        crate::registry::events::Cursor::new(last_entry_event),
        crate::registry::events::Cursor::new(last_node_event),
        config
            .experimental
            .events_based_cache
            .then(|| server.metrics().clone()),
    ));

    // Bundles other servers write (each appends its own CA and JWT keys; any of them may
    // refresh a federated bundle) are read back at the event poll's pace, as SPIRE's
    // one-second datastore cache does; a change goes the way of our own changes.
    {
        let server = server.clone();
        let changes = bundle_changes.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::registry::events::POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match server.bundles_changed_in_store().await {
                    Ok(true) => {
                        tracing::debug!("Bundle changed in the datastore; reloading");
                        changes.send_modify(|n| *n += 1);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "Failed to check the bundles for changes"),
                }
            }
        });
    }

    if config.health_checks.listener_enabled {
        let (srv, hc) = (server.clone(), config.health_checks.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::health_http::serve(srv, hc).await {
                tracing::error!(error = %e, subsystem_name = "health", "Health check listener failed");
            }
        });
    }

    if let Some(be) = config.federation.bundle_endpoint.clone() {
        let (_, serve) = crate::federation::endpoint::start(server.clone(), be, bundle_km)
            .await
            .map_err(|e| RunError::Other(e.to_string()))?;
        tokio::spawn(serve);
    }
    {
        use crate::federation::manager::{DatastoreUpdater, Manager, ServerSource, from_config};
        let manager = Manager::new(
            Box::new(ServerSource::new(
                server.clone(),
                from_config(&config.federation.federates_with),
            )),
            Arc::new(DatastoreUpdater::new(server.clone())),
        );
        server.set_federation(manager.clone());
        tokio::spawn(manager.run());
    }

    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    endpoints::serve(
        server.clone(),
        tcp_addr,
        config.socket_path.clone(),
        shutdown,
    )
    .await?;
    spire_plugin_host::shutdown_all().await;
    tracing::info!("Server stopped gracefully");
    Ok(())
}
