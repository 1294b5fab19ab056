//! Every RPC in the golden file is reachable through a generated client at the
//! exact HTTP/2 path, and every generated server advertises the right service
//! name.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{Service, http};

use spire_proto::grpc::health::v1 as health;
use spire_proto::plugin as goplugin;
use spire_proto::spire::agent::debug::v1 as agent_debug;
use spire_proto::spire::api::agent::{
    delegatedidentity::v1 as delegated, logger::v1 as agent_logger,
};
use spire_proto::spire::api::server::{
    agent::v1 as agent, bundle::v1 as bundle, debug::v1 as server_debug, entry::v1 as entry,
    localauthority::v1 as localauthority, logger::v1 as server_logger, svid::v1 as svid,
    trustdomain::v1 as trustdomain,
};
use spire_proto::spire::hostservice::{
    common::metrics::v1 as metrics,
    server::{agentstore::v1 as agentstore, identityprovider::v1 as identityprovider},
};
use spire_proto::spire::plugin::agent::{
    keymanager::v1 as agent_km, nodeattestor::v1 as agent_na, svidstore::v1 as svidstore,
    workloadattestor::v1 as workloadattestor,
};
use spire_proto::spire::plugin::server::{
    bundlepublisher::v1 as bundlepublisher, credentialcomposer::v1 as credentialcomposer,
    keymanager::v1 as server_km, nodeattestor::v1 as server_na, notifier::v1 as notifier,
    upstreamauthority::v1 as upstreamauthority,
};
use spire_proto::spire::service::{common::config::v1 as config, private::init::v1 as init};
use spire_proto::workload;

const GOLDEN: &str = include_str!("golden/wire.txt");

/// `/<service>/<method>` of every `rpc` line in the golden file.
fn golden_paths() -> BTreeSet<String> {
    GOLDEN
        .lines()
        .filter_map(|l| l.strip_prefix("rpc "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// A gRPC "transport" that records request paths and answers UNIMPLEMENTED.
#[derive(Clone, Default)]
struct Recorder {
    paths: Arc<Mutex<Vec<String>>>,
}

impl Service<http::Request<Body>> for Recorder {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(req.uri().path().to_owned());
        let mut resp = http::Response::new(Body::empty());
        let headers = resp.headers_mut();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", http::HeaderValue::from_static("12"));
        ready(Ok(resp))
    }
}

/// Calls each listed method once on a client built over `$rec`.
/// `unary` methods take one request, `stream` methods a (here empty) stream.
macro_rules! exercise {
    ($rec:expr, $($client:ident)::+ { $($kind:ident $method:ident),* $(,)? }) => {{
        let mut client = $($client)::+::new($rec.clone());
        $( exercise!(@call client $kind $method); )*
    }};
    (@call $c:ident unary $m:ident) => {
        let status = $c.$m(tonic::Request::new(Default::default())).await.err().unwrap();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    };
    (@call $c:ident stream $m:ident) => {
        let status = $c.$m(tokio_stream::empty()).await.err().unwrap();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    };
}

#[tokio::test]
async fn every_golden_rpc_has_a_client_method_at_its_path() {
    let rec = Recorder::default();

    exercise!(rec, workload::spiffe_workload_api_client::SpiffeWorkloadApiClient {
        unary fetch_x509svid, unary fetch_x509_bundles, unary fetch_jwtsvid,
        unary fetch_jwt_bundles, unary validate_jwtsvid,
    });

    exercise!(rec, agent::agent_client::AgentClient {
        unary count_agents, unary list_agents, unary get_agent, unary delete_agent,
        unary ban_agent, stream attest_agent, unary renew_agent, unary create_join_token,
        unary post_status,
    });
    exercise!(rec, bundle::bundle_client::BundleClient {
        unary count_bundles, unary get_bundle, unary append_bundle,
        unary publish_jwt_authority, unary list_federated_bundles, unary get_federated_bundle,
        unary batch_create_federated_bundle, unary batch_update_federated_bundle,
        unary batch_set_federated_bundle, unary batch_delete_federated_bundle,
    });
    exercise!(rec, server_debug::debug_client::DebugClient { unary get_info });
    exercise!(rec, entry::entry_client::EntryClient {
        unary count_entries, unary list_entries, unary get_entry, unary batch_create_entry,
        unary batch_update_entry, unary batch_delete_entry, unary get_authorized_entries,
        stream sync_authorized_entries,
    });
    exercise!(rec, localauthority::local_authority_client::LocalAuthorityClient {
        unary get_jwt_authority_state, unary prepare_jwt_authority,
        unary activate_jwt_authority, unary taint_jwt_authority, unary revoke_jwt_authority,
        unary get_x509_authority_state, unary prepare_x509_authority,
        unary activate_x509_authority, unary taint_x509_authority,
        unary taint_x509_upstream_authority, unary revoke_x509_authority,
        unary revoke_x509_upstream_authority,
    });
    exercise!(rec, server_logger::logger_client::LoggerClient {
        unary get_logger, unary set_log_level, unary reset_log_level,
    });
    exercise!(rec, svid::svid_client::SvidClient {
        unary mint_x509svid, unary mint_jwtsvid, unary batch_new_x509svid,
        unary new_jwtsvid, unary new_downstream_x509ca,
    });
    exercise!(rec, trustdomain::trust_domain_client::TrustDomainClient {
        unary list_federation_relationships, unary get_federation_relationship,
        unary batch_create_federation_relationship, unary batch_update_federation_relationship,
        unary batch_delete_federation_relationship, unary refresh_bundle,
    });

    exercise!(rec, agent_debug::debug_client::DebugClient { unary get_info });
    exercise!(rec, delegated::delegated_identity_client::DelegatedIdentityClient {
        unary subscribe_to_x509svi_ds, unary subscribe_to_x509_bundles,
        unary fetch_jwtsvi_ds, unary subscribe_to_jwt_bundles,
    });
    exercise!(rec, agent_logger::logger_client::LoggerClient {
        unary get_logger, unary set_log_level, unary reset_log_level,
    });

    exercise!(rec, health::health_client::HealthClient { unary check, unary list, unary watch });
    exercise!(rec, goplugin::grpc_broker_client::GrpcBrokerClient { stream start_stream });
    exercise!(rec, goplugin::grpc_controller_client::GrpcControllerClient { unary shutdown });
    exercise!(rec, goplugin::grpc_stdio_client::GrpcStdioClient { unary stream_stdio });

    exercise!(rec, config::config_client::ConfigClient { unary configure, unary validate });
    exercise!(rec, init::init_client::InitClient { unary init, unary deinit });

    exercise!(rec, server_na::node_attestor_client::NodeAttestorClient { stream attest });
    exercise!(rec, server_km::key_manager_client::KeyManagerClient {
        unary generate_key, unary get_public_key, unary get_public_keys, unary sign_data,
    });
    exercise!(rec, upstreamauthority::upstream_authority_client::UpstreamAuthorityClient {
        unary mint_x509ca_and_subscribe, unary publish_jwt_key_and_subscribe,
        unary subscribe_to_local_bundle,
    });
    exercise!(rec, notifier::notifier_client::NotifierClient { unary notify, unary notify_and_advise });
    exercise!(rec, bundlepublisher::bundle_publisher_client::BundlePublisherClient {
        unary publish_bundle,
    });
    exercise!(rec, credentialcomposer::credential_composer_client::CredentialComposerClient {
        unary compose_server_x509ca, unary compose_server_x509svid,
        unary compose_agent_x509svid, unary compose_workload_x509svid,
        unary compose_workload_jwtsvid,
    });

    exercise!(rec, agent_na::node_attestor_client::NodeAttestorClient { stream aid_attestation });
    exercise!(rec, agent_km::key_manager_client::KeyManagerClient {
        unary generate_key, unary get_public_key, unary get_public_keys, unary sign_data,
    });
    exercise!(rec, workloadattestor::workload_attestor_client::WorkloadAttestorClient {
        unary attest,
    });
    exercise!(rec, svidstore::svid_store_client::SvidStoreClient {
        unary put_x509svid, unary delete_x509svid,
    });

    exercise!(rec, metrics::metrics_client::MetricsClient {
        unary set_gauge, unary emit_key, unary incr_counter, unary add_sample,
        unary measure_since,
    });
    exercise!(rec, agentstore::agent_store_client::AgentStoreClient { unary get_agent_info });
    exercise!(rec, identityprovider::identity_provider_client::IdentityProviderClient {
        unary fetch_x509_identity,
    });

    let called: Vec<String> = rec.paths.lock().unwrap().clone();
    let called_set: BTreeSet<String> = called.iter().cloned().collect();
    assert_eq!(called.len(), called_set.len(), "a path was called twice");
    let expected = golden_paths();
    let missing: Vec<_> = expected.difference(&called_set).collect();
    let extra: Vec<_> = called_set.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "client paths differ from the golden rpc list\nnot called: {missing:#?}\nnot in golden: {extra:#?}"
    );
}

#[test]
fn spot_check_method_paths() {
    let paths = golden_paths();
    for p in [
        "/SpiffeWorkloadAPI/FetchX509SVID",
        "/SpiffeWorkloadAPI/ValidateJWTSVID",
        "/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries",
        "/spire.api.server.agent.v1.Agent/AttestAgent",
        "/spire.agent.debug.v1.Debug/GetInfo",
        "/grpc.health.v1.Health/Check",
        "/plugin.GRPCBroker/StartStream",
    ] {
        assert!(paths.contains(p), "{p} missing from golden");
    }
}

#[test]
fn server_service_names_match_golden() {
    let names: BTreeSet<&str> = [
        workload::spiffe_workload_api_server::SERVICE_NAME,
        agent::agent_server::SERVICE_NAME,
        bundle::bundle_server::SERVICE_NAME,
        server_debug::debug_server::SERVICE_NAME,
        entry::entry_server::SERVICE_NAME,
        localauthority::local_authority_server::SERVICE_NAME,
        server_logger::logger_server::SERVICE_NAME,
        svid::svid_server::SERVICE_NAME,
        trustdomain::trust_domain_server::SERVICE_NAME,
        agent_debug::debug_server::SERVICE_NAME,
        delegated::delegated_identity_server::SERVICE_NAME,
        agent_logger::logger_server::SERVICE_NAME,
        health::health_server::SERVICE_NAME,
        goplugin::grpc_broker_server::SERVICE_NAME,
        goplugin::grpc_controller_server::SERVICE_NAME,
        goplugin::grpc_stdio_server::SERVICE_NAME,
        config::config_server::SERVICE_NAME,
        init::init_server::SERVICE_NAME,
        server_na::node_attestor_server::SERVICE_NAME,
        server_km::key_manager_server::SERVICE_NAME,
        upstreamauthority::upstream_authority_server::SERVICE_NAME,
        notifier::notifier_server::SERVICE_NAME,
        bundlepublisher::bundle_publisher_server::SERVICE_NAME,
        credentialcomposer::credential_composer_server::SERVICE_NAME,
        agent_na::node_attestor_server::SERVICE_NAME,
        agent_km::key_manager_server::SERVICE_NAME,
        workloadattestor::workload_attestor_server::SERVICE_NAME,
        svidstore::svid_store_server::SERVICE_NAME,
        metrics::metrics_server::SERVICE_NAME,
        agentstore::agent_store_server::SERVICE_NAME,
        identityprovider::identity_provider_server::SERVICE_NAME,
    ]
    .into_iter()
    .collect();
    let golden: BTreeSet<String> = golden_paths()
        .iter()
        .filter_map(|p| {
            p.trim_start_matches('/')
                .split('/')
                .next()
                .map(str::to_owned)
        })
        .collect();
    let golden: BTreeSet<&str> = golden.iter().map(String::as_str).collect();
    assert_eq!(names, golden);
}
