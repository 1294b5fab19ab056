//! The gRPC side of a served plugin: the plugin interfaces over the `spire-plugin` traits,
//! the SDK's init and configuration services, go-plugin's broker, controller and stdio
//! services, gRPC health, and the listener and handshake line.

use std::pin::Pin;
use std::sync::Arc;

use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, Challenger, PluginError, PluginResult,
    ServerNodeAttestor, WorkloadAttestor,
};
use spire_proto::grpc::health::v1 as health;
use spire_proto::plugin as goplugin;
use spire_proto::spire::plugin::agent::nodeattestor::v1 as agentna;
use spire_proto::spire::plugin::agent::workloadattestor::v1 as wa;
use spire_proto::spire::plugin::server::nodeattestor::v1 as serverna;
use spire_proto::spire::service::common::config::v1 as configv1;
use spire_proto::spire::service::private::init::v1 as initv1;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_stream::{Stream, StreamExt as _};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use crate::{Configure, CoreConfig, Plugin};

pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub(crate) fn status(e: PluginError) -> Status {
    Status::new(tonic::Code::from_i32(e.code.grpc()), e.message)
}

// === WorkloadAttestor ===

struct WorkloadAttestorService(Arc<dyn WorkloadAttestor>);

#[tonic::async_trait]
impl wa::workload_attestor_server::WorkloadAttestor for WorkloadAttestorService {
    async fn attest(
        &self,
        request: Request<wa::AttestRequest>,
    ) -> Result<Response<wa::AttestResponse>, Status> {
        let selector_values = self
            .0
            .attest(request.into_inner().pid)
            .await
            .map_err(status)?;
        Ok(Response::new(wa::AttestResponse { selector_values }))
    }
}

pub(crate) fn workload_attestor(p: Arc<dyn WorkloadAttestor>) -> (&'static str, Routes) {
    (
        "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor",
        Routes::new(wa::workload_attestor_server::WorkloadAttestorServer::new(
            WorkloadAttestorService(p),
        )),
    )
}

// === NodeAttestor, agent side ===

struct AgentNodeAttestorService(Arc<dyn AgentNodeAttestor>);

/// The plugin's end of `AidAttestation`: what it sends goes to the host; the host's
/// challenges come back.
struct HostExchange {
    out: mpsc::Sender<Result<agentna::PayloadOrChallengeResponse, Status>>,
    challenges: Streaming<agentna::Challenge>,
    first: bool,
}

#[async_trait::async_trait]
impl AttestationExchange for HostExchange {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        use agentna::payload_or_challenge_response::Data;
        let data = if std::mem::replace(&mut self.first, false) {
            Data::Payload(data)
        } else {
            Data::ChallengeResponse(data)
        };
        self.out
            .send(Ok(agentna::PayloadOrChallengeResponse { data: Some(data) }))
            .await
            .map_err(|_| PluginError::internal("host closed the attestation stream"))?;
        match self.challenges.message().await {
            Ok(Some(c)) => Ok(Some(c.challenge)),
            // The host closes its side when the server has finished.
            Ok(None) | Err(_) => Ok(None),
        }
    }
}

#[tonic::async_trait]
impl agentna::node_attestor_server::NodeAttestor for AgentNodeAttestorService {
    type AidAttestationStream = BoxStream<agentna::PayloadOrChallengeResponse>;

    async fn aid_attestation(
        &self,
        request: Request<Streaming<agentna::Challenge>>,
    ) -> Result<Response<Self::AidAttestationStream>, Status> {
        let (tx, rx) = mpsc::channel(2);
        let mut exchange = HostExchange {
            out: tx.clone(),
            challenges: request.into_inner(),
            first: true,
        };
        let plugin = self.0.clone();
        tokio::spawn(async move {
            if let Err(e) = plugin.attest(&mut exchange).await {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

pub(crate) fn agent_node_attestor(p: Arc<dyn AgentNodeAttestor>) -> (&'static str, Routes) {
    (
        "spire.plugin.agent.nodeattestor.v1.NodeAttestor",
        Routes::new(agentna::node_attestor_server::NodeAttestorServer::new(
            AgentNodeAttestorService(p),
        )),
    )
}

// === NodeAttestor, server side ===

struct ServerNodeAttestorService(Arc<dyn ServerNodeAttestor>);

/// The plugin's way to challenge the agent through the host.
struct HostChallenger {
    out: mpsc::Sender<Result<serverna::AttestResponse, Status>>,
    requests: Streaming<serverna::AttestRequest>,
}

#[async_trait::async_trait]
impl Challenger for HostChallenger {
    async fn challenge(&mut self, challenge: Vec<u8>) -> PluginResult<Vec<u8>> {
        use serverna::attest_request::Request as R;
        use serverna::attest_response::Response as A;
        self.out
            .send(Ok(serverna::AttestResponse {
                response: Some(A::Challenge(challenge)),
            }))
            .await
            .map_err(|_| PluginError::internal("host closed the attestation stream"))?;
        match self.requests.message().await {
            Ok(Some(serverna::AttestRequest {
                request: Some(R::ChallengeResponse(r)),
            })) => Ok(r),
            Ok(_) => Err(PluginError::invalid_argument(
                "expected a challenge response from the host",
            )),
            Err(s) => Err(PluginError::internal(s.message().to_owned())),
        }
    }
}

#[tonic::async_trait]
impl serverna::node_attestor_server::NodeAttestor for ServerNodeAttestorService {
    type AttestStream = BoxStream<serverna::AttestResponse>;

    async fn attest(
        &self,
        request: Request<Streaming<serverna::AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        use serverna::attest_request::Request as R;
        use serverna::attest_response::Response as A;
        let mut requests = request.into_inner();
        let payload = match requests.message().await? {
            Some(serverna::AttestRequest {
                request: Some(R::Payload(p)),
            }) => p,
            _ => return Err(Status::invalid_argument("expected the attestation payload")),
        };
        let (tx, rx) = mpsc::channel(2);
        let plugin = self.0.clone();
        tokio::spawn(async move {
            let mut challenger = HostChallenger {
                out: tx.clone(),
                requests,
            };
            let verdict = match plugin.attest(payload, &mut challenger).await {
                Ok(a) => Ok(serverna::AttestResponse {
                    response: Some(A::AgentAttributes(serverna::AgentAttributes {
                        spiffe_id: a.agent_id.to_string(),
                        selector_values: a.selector_values,
                        can_reattest: a.can_reattest,
                    })),
                }),
                Err(e) => Err(status(e)),
            };
            let _ = tx.send(verdict).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

pub(crate) fn server_node_attestor(p: Arc<dyn ServerNodeAttestor>) -> (&'static str, Routes) {
    (
        "spire.plugin.server.nodeattestor.v1.NodeAttestor",
        Routes::new(serverna::node_attestor_server::NodeAttestorServer::new(
            ServerNodeAttestorService(p),
        )),
    )
}

// === The SDK's own services ===

struct InitService(Vec<String>);

#[tonic::async_trait]
impl initv1::init_server::Init for InitService {
    async fn init(
        &self,
        _request: Request<initv1::InitRequest>,
    ) -> Result<Response<initv1::InitResponse>, Status> {
        Ok(Response::new(initv1::InitResponse {
            plugin_service_names: self.0.clone(),
        }))
    }

    async fn deinit(
        &self,
        _request: Request<initv1::DeinitRequest>,
    ) -> Result<Response<initv1::DeinitResponse>, Status> {
        Ok(Response::new(initv1::DeinitResponse {}))
    }
}

struct ConfigService(Arc<dyn Configure>);

#[tonic::async_trait]
impl configv1::config_server::Config for ConfigService {
    async fn configure(
        &self,
        request: Request<configv1::ConfigureRequest>,
    ) -> Result<Response<configv1::ConfigureResponse>, Status> {
        let r = request.into_inner();
        let core = CoreConfig {
            trust_domain: r
                .core_configuration
                .map(|c| c.trust_domain)
                .unwrap_or_default(),
        };
        self.0
            .configure(&core, &r.hcl_configuration)
            .await
            .map_err(status)?;
        Ok(Response::new(configv1::ConfigureResponse {}))
    }

    async fn validate(
        &self,
        _request: Request<configv1::ValidateRequest>,
    ) -> Result<Response<configv1::ValidateResponse>, Status> {
        Err(Status::unimplemented("validation is not implemented"))
    }
}

/// go-plugin's broker: the host announces its connections here; this SDK dials none (it
/// offers no host-service clients yet), but keeps the stream open as go-plugin does.
struct BrokerService;

#[tonic::async_trait]
impl goplugin::grpc_broker_server::GrpcBroker for BrokerService {
    type StartStreamStream = BoxStream<goplugin::ConnInfo>;

    async fn start_stream(
        &self,
        request: Request<Streaming<goplugin::ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut incoming = request.into_inner();
        tokio::spawn(async move { while let Ok(Some(_)) = incoming.message().await {} });
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }
}

/// go-plugin's controller: `Shutdown` ends [`serve`].
struct ControllerService(Arc<Notify>);

#[tonic::async_trait]
impl goplugin::grpc_controller_server::GrpcController for ControllerService {
    async fn shutdown(
        &self,
        _request: Request<goplugin::Empty>,
    ) -> Result<Response<goplugin::Empty>, Status> {
        self.0.notify_one();
        Ok(Response::new(goplugin::Empty {}))
    }
}

/// go-plugin's stdio stream: this SDK writes nothing to its own stdout after the handshake.
struct StdioService;

#[tonic::async_trait]
impl goplugin::grpc_stdio_server::GrpcStdio for StdioService {
    type StreamStdioStream = BoxStream<goplugin::StdioData>;

    async fn stream_stdio(
        &self,
        _request: Request<pbjson_types::Empty>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }
}

/// gRPC health: go-plugin hosts ask for the service `plugin`.
struct HealthService;

#[tonic::async_trait]
impl health::health_server::Health for HealthService {
    type WatchStream = BoxStream<health::HealthCheckResponse>;

    async fn check(
        &self,
        _request: Request<health::HealthCheckRequest>,
    ) -> Result<Response<health::HealthCheckResponse>, Status> {
        Ok(Response::new(health::HealthCheckResponse {
            status: health::health_check_response::ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<health::HealthListRequest>,
    ) -> Result<Response<health::HealthListResponse>, Status> {
        Err(Status::unimplemented("list is not implemented"))
    }

    async fn watch(
        &self,
        _request: Request<health::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let first = health::HealthCheckResponse {
            status: health::health_check_response::ServingStatus::Serving as i32,
        };
        Ok(Response::new(Box::pin(
            tokio_stream::once(Ok(first)).chain(tokio_stream::pending()),
        )))
    }
}

/// The body of [`crate::serve`].
pub(crate) async fn serve(plugin: Plugin) -> Result<(), String> {
    use std::io::Write as _;
    let cookie = std::env::var(plugin.plugin_type).unwrap_or_default();
    if cookie != plugin.plugin_type {
        return Err(format!(
            "this executable is a SPIRE {} plugin: a SPIRE server or agent starts it (plugin_cmd), it is not run by hand",
            plugin.plugin_type
        ));
    }
    let versions = std::env::var("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_else(|_| "1".into());
    if !versions.split(',').any(|v| v.trim() == "1") {
        return Err(format!(
            "the host offers plugin protocol versions {versions}; this plugin speaks 1"
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("plugin")
        .tempdir()
        .map_err(|e| format!("unable to create the socket directory: {e}"))?;
    let socket = dir.path().join("plugin.sock");
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| format!("unable to listen on {}: {e}", socket.display()))?;

    let shutdown = Arc::new(Notify::new());
    let mut names = plugin.names.clone();
    let mut routes = plugin.routes;
    if let Some(c) = plugin.configure {
        names.push("spire.service.common.config.v1.Config".into());
        routes = routes.add_service(configv1::config_server::ConfigServer::new(ConfigService(c)));
    }
    let routes = routes
        .add_service(initv1::init_server::InitServer::new(InitService(names)))
        .add_service(goplugin::grpc_broker_server::GrpcBrokerServer::new(
            BrokerService,
        ))
        .add_service(goplugin::grpc_controller_server::GrpcControllerServer::new(
            ControllerService(shutdown.clone()),
        ))
        .add_service(goplugin::grpc_stdio_server::GrpcStdioServer::new(
            StdioService,
        ))
        .add_service(health::health_server::HealthServer::new(HealthService));

    // The handshake line, then nothing more on stdout.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "1|1|unix|{}|grpc|", socket.display())
            .and_then(|()| out.flush())
            .map_err(|e| format!("unable to write the handshake: {e}"))?;
    }
    // On the host's Shutdown the process ends at once, as go-plugin's does: the broker and
    // stdio streams the host keeps open would hold a graceful stop for ever.
    let server = tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming(UnixListenerStream::new(listener));
    let served = tokio::select! {
        r = server => r,
        () = shutdown.notified() => Ok(()),
    };
    drop(dir);
    served.map_err(|e| format!("plugin server failed: {e}"))
}
