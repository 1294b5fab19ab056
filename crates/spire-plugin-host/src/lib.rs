//! The host for SPIRE's external plugins: executables built with SPIRE's plugin SDK (or our
//! Rust one) that `plugin_cmd` names, driven exactly as SPIRE 1.13 drives them through
//! hashicorp go-plugin.
//!
//! [`ExternalPlugin::load`] does what SPIRE's catalog does for one plugin:
//!
//! 1. [`LaunchSpec`]: `plugin_cmd` made absolute, `plugin_checksum` checked before start
//!    (without one, SPIRE's warning "Plugin checksum not configured").
//! 2. [`process`]: start the executable with the magic cookie (`<Type>=<Type>`), protocol
//!    version 1, gRPC only and no AutoMTLS; read its handshake line ([`handshake`]) within the
//!    start timeout; relay its stderr into our log ([`logs`]); kill it when the plugin is
//!    dropped or shut down, and notice when it exits.
//! 3. [`broker`]: go-plugin's gRPC broker, over which we serve the host services the plugin
//!    dials (SDK plugins dial it while initialising), and the plugin's stdio stream.
//! 4. `spire.service.private.init.v1.Init/Init`: our host service names in, the plugin's
//!    service names out; [`ExternalPlugin::bind`] checks the plugin serves its type's service.
//! 5. `spire.service.common.config.v1.Config/Configure` with the trust domain and the
//!    `plugin_data` text ([`ExternalPlugin::configure`]).
//!
//! The plugin then answers through the same traits as the built-ins ([`workloadattestor`],
//! [`nodeattestor`], [`keymanager`], [`upstreamauthority`], [`notifier`],
//! [`bundlepublisher`], [`credentialcomposer`], [`svidstore`]).
//! Errors carry SPIRE's texts ("failed to load plugin \"x\": failed to launch plugin: …").

pub mod broker;
pub mod bundlepublisher;
pub mod conn;
pub mod credentialcomposer;
pub mod handshake;
pub mod hostservices;
pub mod keymanager;
pub mod logs;
pub mod nodeattestor;
pub mod notifier;
pub mod process;
pub mod spec;
pub mod svidstore;
pub mod upstreamauthority;
pub mod workloadattestor;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::conn::PluginChannel;
use spire_gocompat::strconv::quote;
use spire_proto::spire::service::common::config::v1 as configv1;
use spire_proto::spire::service::private::init::v1 as initv1;

pub use spec::{Checksum, LaunchSpec};

/// How long an Init, Configure or Deinit call may take.
const CONTROL_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failed call waits to learn whether the plugin process has exited.
const EXIT_NOTICE: Duration = Duration::from_millis(500);
/// The gRPC service of the configuration interface.
const CONFIG_SERVICE: &str = "spire.service.common.config.v1.Config";

/// Why a plugin could not be loaded (SPIRE prints it after `failed to load plugin "<name>": `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A malformed `plugin_checksum`.
    #[error("{0}")]
    Checksum(String),
    /// Starting the process or its handshake failed.
    #[error("failed to launch plugin: {0}")]
    Launch(String),
    /// The plugin's Init failed (a gRPC error in grpc-go's words).
    #[error("{0}")]
    Init(String),
}

/// A failure of one plugin at start-up, with SPIRE's catalog message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Loading (checksum, launch, handshake, Init) failed.
    #[error("failed to load plugin {}: {source}", quote(.name))]
    Load {
        /// The plugin's name.
        name: String,
        /// What failed.
        source: LoadError,
    },
    /// The plugin does not serve its type's interface.
    #[error("failed to bind plugin {}: {message}", quote(.name))]
    Bind {
        /// The plugin's name.
        name: String,
        /// SPIRE's message.
        message: String,
    },
    /// The plugin rejected its configuration, or cannot take one.
    #[error("failed to configure plugin {}: {message}", quote(.name))]
    Configure {
        /// The plugin's name.
        name: String,
        /// SPIRE's message (a gRPC error in grpc-go's words).
        message: String,
    },
}

/// Settings of the host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// How long the plugin may take to print its handshake line (go-plugin: one minute).
    pub start_timeout: Duration,
    /// How long one call into the plugin may take before it fails.
    pub call_timeout: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// The core configuration every plugin receives with `Configure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// The trust domain name (`example.org`).
    pub trust_domain: String,
}

/// The plugins [`ExternalPlugin::start`] started in this process, for [`shutdown_all`].
static STARTED: Mutex<Vec<Weak<ExternalPlugin>>> = Mutex::new(Vec::new());

/// Shuts down, as SPIRE's catalog does when the program stops, every plugin
/// [`ExternalPlugin::start`] started that is still alive: each is deinitialised and asked to
/// exit (so go-plugin removes its socket), and killed if it does not. Dropping a plugin
/// instead kills it at once.
pub async fn shutdown_all() {
    let plugins: Vec<Arc<ExternalPlugin>> = {
        let mut started = STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        started.drain(..).filter_map(|w| w.upgrade()).collect()
    };
    let mut set = tokio::task::JoinSet::new();
    for plugin in plugins {
        set.spawn(async move { plugin.shutdown().await });
    }
    while set.join_next().await.is_some() {}
}

/// A loaded external plugin: its process, its gRPC channel and what it serves. Dropping it
/// (or [`ExternalPlugin::shutdown`]) ends the process.
#[derive(Debug)]
pub struct ExternalPlugin {
    name: String,
    plugin_type: String,
    channel: PluginChannel,
    service_names: Vec<String>,
    process: Arc<process::PluginProcess>,
    _broker: broker::Broker,
    options: HostOptions,
    stopping: std::sync::atomic::AtomicBool,
}

/// grpc-go's text of a failed call.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    let message = if status.message().is_empty() && status.code() == tonic::Code::Unknown {
        "transport is closing"
    } else {
        status.message()
    };
    spire_gocompat::grpc::status_error(status.code() as i32, message)
}

impl ExternalPlugin {
    /// Launches, handshakes and initialises the plugin; `host_services` are the names of the
    /// host services offered to it over the broker.
    pub async fn load(
        spec: &LaunchSpec,
        options: &HostOptions,
        host_services: broker::HostServices,
    ) -> Result<Self, HostError> {
        let load_error = |source: LoadError| HostError::Load {
            name: spec.name.clone(),
            source,
        };
        match &spec.checksum {
            Some(sum) => sum.verify(&spec.path).map_err(load_error)?,
            None => tracing::warn!(
                external = true,
                plugin_name = %spec.name,
                plugin_type = %spec.plugin_type,
                subsystem_name = "catalog",
                "Plugin checksum not configured"
            ),
        }
        let (process, channel) = process::PluginProcess::start(spec, options)
            .await
            .map_err(load_error)?;
        let process = Arc::new(process);
        let host_service_names = host_services.names();
        let broker = broker::Broker::start(channel.clone(), host_services, spec)
            .await
            .map_err(|e| load_error(LoadError::Launch(e)))?;
        let mut init = initv1::init_client::InitClient::new(channel.clone());
        let response = tokio::time::timeout(
            CONTROL_CALL_TIMEOUT,
            init.init(initv1::InitRequest { host_service_names }),
        )
        .await
        .map_err(|_| {
            load_error(LoadError::Init(spire_gocompat::grpc::status_error(
                4,
                "context deadline exceeded",
            )))
        })?
        .map_err(|s| load_error(LoadError::Init(status_text(&s))))?;
        Ok(Self {
            name: spec.name.clone(),
            plugin_type: spec.plugin_type.clone(),
            channel,
            service_names: response.into_inner().plugin_service_names,
            process,
            _broker: broker,
            options: options.clone(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// SPIRE's whole sequence for one external plugin: load, bind with `bind` (an adapter's
    /// constructor), configure with `data` (`plugin_data` text, `None` without one), then log
    /// "Plugin loaded". The adapter keeps the plugin alive.
    pub async fn start<T>(
        spec: &LaunchSpec,
        core: &CoreConfig,
        data: Option<&str>,
        host_services: broker::HostServices,
        bind: impl FnOnce(Arc<ExternalPlugin>) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let plugin = Arc::new(Self::load(spec, &HostOptions::default(), host_services).await?);
        STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::downgrade(&plugin));
        let bound = bind(plugin.clone())?;
        plugin.configure(core, data).await?;
        tracing::info!(
            external = true,
            plugin_name = %spec.name,
            plugin_type = %spec.plugin_type,
            subsystem_name = "catalog",
            "Plugin loaded"
        );
        Ok(bound)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's type.
    pub fn plugin_type(&self) -> &str {
        &self.plugin_type
    }

    /// The gRPC services the plugin said it serves.
    pub fn service_names(&self) -> &[String] {
        &self.service_names
    }

    /// The plugin process's ID.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The executable.
    pub fn path(&self) -> PathBuf {
        self.process.path().to_path_buf()
    }

    /// Checks that the plugin serves `service` (its type's interface) and warns about any
    /// other service it serves that we do not use, as SPIRE does.
    pub fn bind(&self, service: &str) -> Result<PluginChannel, HostError> {
        if !self.service_names.iter().any(|s| s == service) {
            let listed: Vec<String> = self.service_names.iter().map(|s| quote(s)).collect();
            return Err(HostError::Bind {
                name: self.name.clone(),
                message: format!(
                    "no supported plugin interface found in: [{}]",
                    listed.join(" ")
                ),
            });
        }
        let mut unused: Vec<&String> = self
            .service_names
            .iter()
            .filter(|s| *s != service && *s != CONFIG_SERVICE)
            .collect();
        unused.sort();
        for s in unused {
            tracing::warn!(
                external = true,
                plugin_name = %self.name,
                plugin_type = %self.plugin_type,
                subsystem_name = "catalog",
                plugin_service = %s,
                "Unsupported plugin service found"
            );
        }
        Ok(self.channel.clone())
    }

    /// Configures the plugin with `data` (`plugin_data` text; `None` when the block has
    /// neither `plugin_data` nor `plugin_data_file`).
    pub async fn configure(&self, core: &CoreConfig, data: Option<&str>) -> Result<(), HostError> {
        let configure_error = |message: String| HostError::Configure {
            name: self.name.clone(),
            message,
        };
        if !self.service_names.iter().any(|s| s == CONFIG_SERVICE) {
            return match data {
                None => Ok(()),
                Some(_) => Err(configure_error(
                    "no supported configuration interface found".into(),
                )),
            };
        }
        let mut client = configv1::config_client::ConfigClient::new(self.channel.clone());
        let request = configv1::ConfigureRequest {
            core_configuration: Some(configv1::CoreConfiguration {
                trust_domain: core.trust_domain.clone(),
            }),
            hcl_configuration: data.unwrap_or_default().to_owned(),
        };
        tokio::time::timeout(CONTROL_CALL_TIMEOUT, client.configure(request))
            .await
            .map_err(|_| {
                configure_error(spire_gocompat::grpc::status_error(
                    4,
                    "context deadline exceeded",
                ))
            })?
            .map_err(|s| configure_error(status_text(&s)))?;
        tracing::info!(
            external = true,
            plugin_name = %self.name,
            plugin_type = %self.plugin_type,
            subsystem_name = "catalog",
            reconfigurable = false,
            "Configured plugin"
        );
        Ok(())
    }

    /// A plugin error for a failed call, naming the plugin, and saying so when its process
    /// has exited.
    pub(crate) async fn call_error(&self, status: &tonic::Status) -> spire_plugin::PluginError {
        if matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ) {
            // A transport failure: tell a dead plugin from a failing one.
            self.process.wait_exit(EXIT_NOTICE).await;
        }
        call_error(&self.name, &self.process, status)
    }

    /// The error of a call that took longer than the call timeout.
    pub(crate) fn timeout_error(&self) -> spire_plugin::PluginError {
        spire_plugin::PluginError::new(
            spire_plugin::Code::Unavailable,
            format!(
                "plugin {} did not answer within {}",
                quote(&self.name),
                spire_gocompat::GoDuration::from_std(self.options.call_timeout)
                    .map(spire_gocompat::format_go_duration)
                    .unwrap_or_default()
            ),
        )
    }

    /// Runs one call into the plugin within the call timeout, turning a failure into a
    /// plugin error that names the plugin.
    pub(crate) async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> spire_plugin::PluginResult<T> {
        match tokio::time::timeout(self.call_timeout(), fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(self.call_error(&status).await),
            Err(_) => Err(self.timeout_error()),
        }
    }

    /// Whether the plugin is being shut down (its streams end; that is no error) or its
    /// process has exited.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed) || self.process.has_exited()
    }

    /// The per-call timeout.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.options.call_timeout
    }

    /// Deinitialises the plugin, asks it to shut down, and ends the process (killing it if
    /// it does not exit in time).
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut init = initv1::init_client::InitClient::new(self.channel.clone());
        match tokio::time::timeout(CONTROL_CALL_TIMEOUT, init.deinit(initv1::DeinitRequest {}))
            .await
        {
            Ok(Ok(_)) => tracing::debug!(plugin_name = %self.name, "Plugin deinitialized"),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {}
            Ok(Err(s)) => tracing::error!(
                plugin_name = %self.name,
                error = %status_text(&s),
                "Failed to deinitialize plugin"
            ),
            Err(_) => tracing::error!(
                plugin_name = %self.name,
                error = "context deadline exceeded",
                "Failed to deinitialize plugin"
            ),
        }
        self.process.stop(self.channel.clone()).await;
    }
}

/// See [`ExternalPlugin::call_error`].
pub(crate) fn call_error(
    name: &str,
    process: &process::PluginProcess,
    status: &tonic::Status,
) -> spire_plugin::PluginError {
    use spire_plugin::{Code, PluginError};
    if process.has_exited() {
        return PluginError::new(
            Code::Unavailable,
            format!("plugin {} has exited: {}", quote(name), status_text(status)),
        );
    }
    let code = Code::from_grpc(status.code() as i32);
    PluginError::new(code, status.message().to_owned())
}
