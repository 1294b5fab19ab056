//! The host services SPIRE offers plugins over the broker, built on the program's own state:
//!
//! - `spire.hostservice.server.agentstore.v1.AgentStore` (server): whether an agent ID is
//!   attested, through an [`AgentLookup`] the server provides once its datastore is open
//!   (before that, SPIRE's "AgentStore host service has not been initialized").
//! - `spire.hostservice.server.identityprovider.v1.IdentityProvider` (server): the server's
//!   own X509-SVID, its key and the trust bundle, through an [`IdentityFetcher`] the server
//!   provides once its CA is up (before that, SPIRE's "IdentityProvider host service has not
//!   been initialized").
//! - `spire.hostservice.common.metrics.v1.Metrics` (both): the plugin's metrics go into the
//!   program's telemetry (`spire-telemetry`); with no sink configured they are dropped, as
//!   sink is configured.

use std::sync::{Arc, OnceLock};

use spire_proto::spire::hostservice::common::metrics::v1 as metricsv1;
use spire_proto::spire::hostservice::server::agentstore::v1 as agentstorev1;
use spire_proto::spire::hostservice::server::identityprovider::v1 as identityv1;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::broker::HostServices;

/// The server's answer to "is this agent attested?".
#[async_trait::async_trait]
pub trait AgentLookup: Send + Sync + 'static {
    /// Whether `agent_id` is an attested agent; `Err` with a message when the lookup failed.
    async fn is_attested(&self, agent_id: &str) -> Result<bool, String>;
}

/// Where the server puts its [`AgentLookup`] once it has one.
pub type AgentLookupCell = Arc<OnceLock<Arc<dyn AgentLookup>>>;

struct AgentStore(AgentLookupCell);

#[tonic::async_trait]
impl agentstorev1::agent_store_server::AgentStore for AgentStore {
    async fn get_agent_info(
        &self,
        request: Request<agentstorev1::GetAgentInfoRequest>,
    ) -> Result<Response<agentstorev1::GetAgentInfoResponse>, Status> {
        let Some(lookup) = self.0.get() else {
            return Err(Status::failed_precondition(
                "AgentStore host service has not been initialized",
            ));
        };
        let agent_id = request.into_inner().agent_id;
        match lookup.is_attested(&agent_id).await {
            Ok(true) => Ok(Response::new(agentstorev1::GetAgentInfoResponse {
                info: Some(agentstorev1::AgentInfo { agent_id }),
            })),
            Ok(false) => Err(Status::not_found("no such agent")),
            Err(message) => Err(Status::internal(message)),
        }
    }
}

/// The server's own X.509 identity and bundle. Its `Debug` leaves the key out.
#[derive(Clone)]
pub struct X509Identity {
    /// DER chain, leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    /// PKCS#8 DER private key.
    pub private_key: Vec<u8>,
    /// The trust bundle of the server's trust domain.
    pub bundle: spire_plugin::PluginBundle,
}

impl std::fmt::Debug for X509Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Identity")
            .field("certificates", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

/// The server's answer to "who are you?".
#[async_trait::async_trait]
pub trait IdentityFetcher: Send + Sync + 'static {
    /// The server's current X509-SVID, key and bundle; `Err` with a message when the
    /// bundle could not be read.
    async fn fetch_x509_identity(&self) -> Result<X509Identity, String>;
}

/// Where the server puts its [`IdentityFetcher`] once it has one.
pub type IdentityFetcherCell = Arc<OnceLock<Arc<dyn IdentityFetcher>>>;

struct IdentityProvider(IdentityFetcherCell);

#[tonic::async_trait]
impl identityv1::identity_provider_server::IdentityProvider for IdentityProvider {
    async fn fetch_x509_identity(
        &self,
        _request: Request<identityv1::FetchX509IdentityRequest>,
    ) -> Result<Response<identityv1::FetchX509IdentityResponse>, Status> {
        let Some(fetcher) = self.0.get() else {
            return Err(Status::failed_precondition(
                "IdentityProvider host service has not been initialized",
            ));
        };
        let identity = fetcher
            .fetch_x509_identity()
            .await
            .map_err(Status::internal)?;
        Ok(Response::new(identityv1::FetchX509IdentityResponse {
            identity: Some(identityv1::X509Identity {
                cert_chain: identity.cert_chain,
                private_key: identity.private_key,
            }),
            bundle: Some(spire_plugin_wire::bundle::bundle_to_proto(&identity.bundle)),
        }))
    }
}

/// The plugin's metrics, fed into the program's telemetry as SPIRE's `metricsservice`
/// does (keys and labels as the plugin sends them; `EmitKey` has no Prometheus form).
struct Metrics(spire_telemetry::Metrics);

fn labels(labels: &[metricsv1::Label]) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

fn key(parts: &[String]) -> Vec<&str> {
    parts.iter().map(String::as_str).collect()
}

#[tonic::async_trait]
impl metricsv1::metrics_server::Metrics for Metrics {
    async fn set_gauge(
        &self,
        request: Request<metricsv1::SetGaugeRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let r = request.into_inner();
        self.0
            .set_gauge(&key(&r.key), f64::from(r.val), &labels(&r.labels));
        Ok(Response::new(pbjson_types::Empty {}))
    }

    async fn emit_key(
        &self,
        _request: Request<metricsv1::EmitKeyRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        Ok(Response::new(pbjson_types::Empty {}))
    }

    async fn incr_counter(
        &self,
        request: Request<metricsv1::IncrCounterRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let r = request.into_inner();
        self.0.incr_counter(&key(&r.key), r.val, &labels(&r.labels));
        Ok(Response::new(pbjson_types::Empty {}))
    }

    async fn add_sample(
        &self,
        request: Request<metricsv1::AddSampleRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let r = request.into_inner();
        self.0.add_sample(&key(&r.key), r.val, &labels(&r.labels));
        Ok(Response::new(pbjson_types::Empty {}))
    }

    async fn measure_since(
        &self,
        request: Request<metricsv1::MeasureSinceRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let r = request.into_inner();
        self.0
            .measure_since_unix_nanos(&key(&r.key), r.time, &labels(&r.labels));
        Ok(Response::new(pbjson_types::Empty {}))
    }
}

const METRICS: &str = "spire.hostservice.common.metrics.v1.Metrics";
const AGENT_STORE: &str = "spire.hostservice.server.agentstore.v1.AgentStore";
const IDENTITY_PROVIDER: &str = "spire.hostservice.server.identityprovider.v1.IdentityProvider";

/// The server's host services: AgentStore (answered through `agents`), IdentityProvider
/// (through `identity`) and Metrics (dropped).
pub fn server(agents: AgentLookupCell, identity: IdentityFetcherCell) -> HostServices {
    server_with_metrics(agents, identity, spire_telemetry::Metrics::disabled())
}

/// [`server`], with the plugin's metrics fed into `metrics`.
pub fn server_with_metrics(
    agents: AgentLookupCell,
    identity: IdentityFetcherCell,
    metrics: spire_telemetry::Metrics,
) -> HostServices {
    let routes = Routes::new(agentstorev1::agent_store_server::AgentStoreServer::new(
        AgentStore(agents),
    ))
    .add_service(
        identityv1::identity_provider_server::IdentityProviderServer::new(IdentityProvider(
            identity,
        )),
    )
    .add_service(metricsv1::metrics_server::MetricsServer::new(Metrics(
        metrics,
    )));
    HostServices::new(
        vec![AGENT_STORE.into(), IDENTITY_PROVIDER.into(), METRICS.into()],
        routes,
    )
}

/// The agent's host services: Metrics (dropped).
pub fn agent() -> HostServices {
    agent_with_metrics(spire_telemetry::Metrics::disabled())
}

/// [`agent`], with the plugin's metrics fed into `metrics`.
pub fn agent_with_metrics(metrics: spire_telemetry::Metrics) -> HostServices {
    HostServices::new(
        vec![METRICS.into()],
        Routes::new(metricsv1::metrics_server::MetricsServer::new(Metrics(
            metrics,
        ))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use metricsv1::metrics_server::Metrics as _;

    #[tokio::test]
    async fn plugin_metrics_reach_the_program_s_telemetry() {
        let config = spire_config::TelemetryConfig {
            prometheus: Some(spire_config::PrometheusConfig {
                host: "127.0.0.1".into(),
                port: 0,
            }),
            ..Default::default()
        };
        let Ok(t) = spire_telemetry::Metrics::configure(
            &config,
            spire_telemetry::Service::Agent,
            "example.org",
            Some("h".into()),
        ) else {
            unreachable!()
        };
        let svc = Metrics(t.metrics.clone());
        let label = metricsv1::Label {
            name: "plugin".into(),
            value: "my.plugin".into(),
        };
        let _ = svc
            .incr_counter(Request::new(metricsv1::IncrCounterRequest {
                key: vec!["my".into(), "calls".into()],
                val: 2.0,
                labels: vec![label.clone()],
            }))
            .await;
        let _ = svc
            .set_gauge(Request::new(metricsv1::SetGaugeRequest {
                key: vec!["my".into(), "level".into()],
                val: 1.5,
                labels: vec![],
            }))
            .await;
        let _ = svc
            .measure_since(Request::new(metricsv1::MeasureSinceRequest {
                key: vec!["my".into(), "op".into()],
                time: 0,
                labels: vec![label],
            }))
            .await;
        let out = t.metrics.render();
        assert!(
            out.contains(r#"spire_agent_my_calls{host="h",plugin="my_plugin"} 2"#),
            "{out}"
        );
        assert!(
            out.contains(r#"spire_agent_my_level{host="h"} 1.5"#),
            "{out}"
        );
        assert!(
            out.contains(r#"spire_agent_my_op_count{host="h",plugin="my_plugin"} 1"#),
            "{out}"
        );
    }
}
