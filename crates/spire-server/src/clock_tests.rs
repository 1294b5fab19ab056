//! The server on a clock the test moves: what it stamps, signs and expires follows the
//! injected clock, not the machine's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe_core::{KeyType, TrustDomain};
use spire_clock::{Clock, ManualClock};
use spire_datastore::{DataStore, SqlConfig, SqlStore};
use spire_plugins::keymanager::LocalKeyManager;
use spire_proto::spire::api::server::agent::v1::{self as agentpb, agent_server::Agent};
use spire_proto::spire::api::server::svid::v1::{self as svidpb, svid_server::Svid};
use spire_proto::spire::api::types;
use tonic::Request;

use crate::api::agent::AgentService;
use crate::api::svid::SvidService;
use crate::ca::manager::{CaManager, ManagerConfig};
use crate::ca::{Ca, CaSettings};
use crate::ratelimit::RateLimits;
use crate::registry::Registry;
use crate::run::{PruneSettings, prune_once};
use crate::state::{ApiSettings, Server, ServerParts};

/// 2031-01-01T00:00:00Z: far from the machine's time, so a stray clock read shows.
const START: u64 = 1_924_992_000;

pub(crate) struct TestServer {
    pub(crate) server: Arc<Server>,
    _dir: tempfile::TempDir,
}

pub(crate) async fn server_on(clock: &ManualClock) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let server_id = td.id_with_path("/spire/server").unwrap();
    let db = dir.path().join("datastore.sqlite3");
    let ds: Arc<dyn DataStore> = Arc::new(
        SqlStore::open_with_clock(
            &SqlConfig::new(spire_datastore::DatabaseType::Sqlite3, db.to_str().unwrap()),
            clock.shared(),
        )
        .await
        .unwrap(),
    );
    let ca = Arc::new(Ca::new(
        td.clone(),
        CaSettings {
            x509_svid_ttl: Duration::from_secs(3600),
            jwt_svid_ttl: Duration::from_secs(300),
            agent_ttl: Duration::from_secs(3600),
            svid_subject: spire_pki::Subject::default_svid(),
            jwt_issuer: None,
        },
        vec![],
    ));
    let ca_manager = CaManager::load(
        ManagerConfig {
            trust_domain: td.clone(),
            ca_ttl: Duration::from_secs(86_400),
            x509_key_type: KeyType::EcP256,
            jwt_key_type: KeyType::EcP256,
            ca_subject: spire_pki::Subject::default_ca(),
        },
        ds.clone(),
        Arc::new(LocalKeyManager::memory()),
        None,
        ca.clone(),
        Arc::new(|| {}),
        clock.now(),
    )
    .await
    .unwrap();
    let server = Arc::new(Server::new(ServerParts {
        trust_domain: td,
        server_id: server_id.clone(),
        registry: Arc::new(Registry::new(ds, &server_id)),
        ca,
        ca_manager: ca_manager.clone(),
        node_attestors: Default::default(),
        log: spire_log::LogHandle::detached(spire_log::LogLevel::Info),
        settings: ApiSettings {
            default_join_token_ttl: Duration::from_secs(600),
            admin_ids: HashSet::new(),
            rate_limit_attestation: false,
            rate_limit_signing: false,
        },
        clock: clock.shared(),
        metrics: spire_telemetry::Metrics::disabled(),
    }));
    ca_manager.rotate(server.now()).await.unwrap();
    server.refresh_bundles().await.unwrap();
    TestServer { server, _dir: dir }
}

fn unix(t: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t)
}

#[tokio::test]
async fn jwt_svids_are_stamped_and_expired_by_the_server_clock() {
    let clock = ManualClock::new(unix(START));
    let ts = server_on(&clock).await;
    let svids = SvidService::new(ts.server.clone(), Arc::new(RateLimits::new(false, false)));
    let mint = || async {
        svids
            .mint_jwtsvid(Request::new(svidpb::MintJwtsvidRequest {
                id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/workload".into(),
                }),
                audience: vec!["aud".into()],
                ttl: 0,
            }))
            .await
            .unwrap()
            .into_inner()
            .svid
            .unwrap()
    };
    let first = mint().await;
    assert_eq!(first.issued_at, START as i64);
    assert_eq!(first.expires_at, START as i64 + 300);

    clock.advance(Duration::from_secs(600));
    let second = mint().await;
    assert_eq!(second.issued_at, START as i64 + 600);
    assert_eq!(second.expires_at, START as i64 + 900);
}

#[tokio::test]
async fn join_tokens_expire_and_are_pruned_by_the_server_clock() {
    let clock = ManualClock::new(unix(START));
    let ts = server_on(&clock).await;
    let agents = AgentService::new(ts.server.clone(), Arc::new(RateLimits::new(false, false)));
    let token = agents
        .create_join_token(Request::new(agentpb::CreateJoinTokenRequest {
            ttl: 600,
            token: "tok".into(),
            agent_id: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(token.expires_at, START as i64 + 600);
    let ds = ts.server.registry().ds().clone();
    let prune = PruneSettings {
        nodes_expired_for: None,
        tofu_nodes: false,
    };

    clock.advance(Duration::from_secs(599));
    prune_once(&ts.server, ts.server.now(), prune).await;
    assert!(
        ds.fetch_join_token("tok").await.unwrap().is_some(),
        "pruned early"
    );

    clock.advance(Duration::from_secs(2));
    prune_once(&ts.server, ts.server.now(), prune).await;
    assert!(
        ds.fetch_join_token("tok").await.unwrap().is_none(),
        "not pruned"
    );
}
