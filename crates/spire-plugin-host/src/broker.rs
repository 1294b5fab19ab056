//! go-plugin's gRPC broker, host side, and the plugin's stdio stream.
//!
//! A plugin built with SPIRE's plugin SDK dials broker ID 1 while it initialises, to reach
//! the host services (SPIRE's `HostServiceProviderID`). We open `plugin.GRPCBroker/StartStream`
//! at once, listen on a fresh UNIX socket in a private temporary directory, serve the host
//! services there, and announce that socket as connection 1. We also read the plugin's
//! `plugin.GRPCStdio/StreamStdio` (what it writes to its own stdout and stderr after start-up)
//! so that those writes never block it; like SPIRE, we log them at debug level only.

use crate::conn::PluginChannel;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::service::Routes;

use spire_proto::plugin::{
    ConnInfo, grpc_broker_client::GrpcBrokerClient, grpc_stdio_client::GrpcStdioClient,
};

use crate::LaunchSpec;

/// The broker ID under which SPIRE's plugin SDK looks for the host services.
pub const HOST_SERVICE_PROVIDER_ID: u32 = 1;

/// The host services offered to a plugin: their gRPC service names (sent with Init) and the
/// routes that serve them.
#[derive(Debug, Default)]
pub struct HostServices {
    names: Vec<String>,
    routes: Routes,
}

impl HostServices {
    /// No host services: calls to any fail with `Unimplemented`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Services `routes` under `names` (fully qualified gRPC service names).
    pub fn new(names: Vec<String>, routes: Routes) -> Self {
        Self { names, routes }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.names.clone()
    }
}

/// The broker's running parts; dropping it stops the host-service server and removes its
/// socket directory.
#[derive(Debug)]
pub struct Broker {
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
    _announce: mpsc::Sender<ConnInfo>,
}

impl Broker {
    /// Starts the broker stream, the host-service server and the stdio reader.
    pub(crate) async fn start(
        channel: PluginChannel,
        services: HostServices,
        spec: &LaunchSpec,
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("spire-plugin-host")
            .tempdir()
            .map_err(|e| format!("unable to create host service directory: {e}"))?;
        let socket = dir.path().join("host.sock");
        let listener = tokio::net::UnixListener::bind(&socket)
            .map_err(|e| format!("unable to listen for host services: {e}"))?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let name = spec.name.clone();
        let router = tonic::transport::Server::builder().add_routes(services.routes);
        tokio::spawn(async move {
            let served = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(plugin_name = %name, error = %e, "Host services server failed");
            }
        });

        // The request stream stays open for the plugin's lifetime: closing it would end the
        // plugin's side of the broker.
        let (announce, outgoing) = mpsc::channel::<ConnInfo>(4);
        announce
            .send(ConnInfo {
                service_id: HOST_SERVICE_PROVIDER_ID,
                network: "unix".into(),
                address: socket.display().to_string(),
                knock: None,
            })
            .await
            .map_err(|_| "broker stream closed".to_owned())?;
        let mut broker = GrpcBrokerClient::new(channel.clone());
        let name = spec.name.clone();
        // The plugin sends its stream's headers only with its first message, so the call
        // is not awaited here.
        tokio::spawn(async move {
            match broker.start_stream(ReceiverStream::new(outgoing)).await {
                Ok(incoming) => {
                    let mut incoming = incoming.into_inner();
                    while let Ok(Some(info)) = incoming.message().await {
                        tracing::debug!(
                            plugin_name = %name,
                            service_id = info.service_id,
                            "Plugin offered a brokered connection; not used"
                        );
                    }
                }
                Err(status) => tracing::debug!(
                    plugin_name = %name,
                    error = %crate::status_text(&status),
                    "Plugin broker stream ended"
                ),
            }
        });

        let mut stdio = GrpcStdioClient::new(channel);
        let name = spec.name.clone();
        tokio::spawn(async move {
            let Ok(stream) = stdio.stream_stdio(pbjson_types::Empty {}).await else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(data)) = stream.message().await {
                tracing::debug!(
                    plugin_name = %name,
                    channel = data.channel,
                    data = %String::from_utf8_lossy(&data.data),
                    "Plugin output"
                );
            }
        });

        Ok(Self {
            _stop: stop_tx,
            _dir: dir,
            _announce: announce,
        })
    }
}
