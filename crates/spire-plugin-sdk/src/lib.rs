//! Write SPIRE plugins in Rust. Implement one of the `spire-plugin` traits (and [`Configure`]
//! for the plugin's `plugin_data`), hand it to [`serve`], and the executable speaks
//! hashicorp go-plugin the way SPIRE's Go plugin SDK does, so reference SPIRE 1.13 and
//! spire-rs both load it with `plugin_cmd`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use spire_plugin::{PluginResult, WorkloadAttestor};
//!
//! #[derive(Debug)]
//! struct Always;
//!
//! #[async_trait::async_trait]
//! impl WorkloadAttestor for Always {
//!     async fn attest(&self, _pid: i32) -> PluginResult<Vec<String>> {
//!         Ok(vec!["always".into()])
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let plugin = spire_plugin_sdk::Plugin::workload_attestor(Arc::new(Always));
//!     spire_plugin_sdk::serve(plugin).await
//! }
//! ```
//!
//! What [`serve`] does, as go-plugin's `Serve` does for a Go plugin:
//!
//! 1. Refuses to run unless the environment carries the magic cookie (`<Type>=<Type>`),
//!    i.e. unless a host started it.
//! 2. Listens on a UNIX socket in a private temporary directory and serves, besides the
//!    plugin's own service: the SDK's init service (`spire.service.private.init.v1`), the
//!    configuration service, go-plugin's broker, controller (shutdown) and stdio services,
//!    and gRPC health for `plugin`.
//! 3. Prints the handshake line `1|1|unix|<socket>|grpc|` and serves until the host shuts
//!    it down or kills it.
//!
//! Every plugin type can be served: [`Plugin::workload_attestor`],
//! [`Plugin::agent_node_attestor`], [`Plugin::server_node_attestor`],
//! [`Plugin::upstream_authority`], [`Plugin::notifier`], [`Plugin::bundle_publisher`],
//! [`Plugin::credential_composer`] and [`Plugin::svid_store`] take the `spire-plugin` trait
//! the built-ins implement; [`Plugin::server_key_manager`] and [`Plugin::agent_key_manager`]
//! take a [`DigestKeyManager`], because the protocol hands a KeyManager digests to sign where
//! `spire-plugin`'s signers sign messages. `examples/` has a WorkloadAttestor, both halves
//! of a NodeAttestor, a CredentialComposer and a KeyManager (server or agent).
//!
//! [`log`] writes hclog JSON lines on stderr, which both hosts relay into their logs with
//! the plugin's name.

mod interfaces;
mod keymanager;
pub mod log;
mod services;

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use spire_plugin::{AgentNodeAttestor, PluginError, PluginResult, ServerNodeAttestor};
use tonic::service::Routes;

pub use keymanager::{DigestKeyManager, DigestSignature, HashAlgorithm, SignerOpts};

/// The core configuration a host sends with `Configure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// The trust domain name (`example.org`).
    pub trust_domain: String,
}

/// A plugin's configuration hook: `plugin_data` as HCL (or JSON) text, and the trust domain.
#[async_trait]
pub trait Configure: Send + Sync + 'static {
    /// Applies the configuration; an error refuses it (the host will not start).
    async fn configure(&self, core: &CoreConfig, plugin_data: &str) -> PluginResult<()>;
}

/// Decodes `plugin_data` text into `T` with SPIRE's HCL rules (unknown keys are ignored, as
/// SPIRE's plugins ignore them); the error is an `InvalidArgument` for the host to show.
pub fn decode_config<T: serde::de::DeserializeOwned + Default>(text: &str) -> PluginResult<T> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let data = spire_config::LoadedPluginData::parse(text).map_err(|e| {
        PluginError::invalid_argument(format!("failed to decode configuration: {e}"))
    })?;
    data.decode_lenient::<T>()
        .map(|(t, _)| t)
        .map_err(|e| PluginError::invalid_argument(format!("failed to decode configuration: {e}")))
}

/// A plugin ready to serve: its type (the magic cookie), its services and their names.
#[derive(Debug)]
pub struct Plugin {
    plugin_type: &'static str,
    names: Vec<String>,
    routes: Routes,
    configure: Option<Arc<dyn Configure>>,
}

impl std::fmt::Debug for dyn Configure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Configure")
    }
}

impl Plugin {
    fn new(plugin_type: &'static str, name: &str, routes: Routes) -> Self {
        Self {
            plugin_type,
            names: vec![name.to_owned()],
            routes,
            configure: None,
        }
    }

    /// An agent WorkloadAttestor.
    pub fn workload_attestor(p: Arc<dyn spire_plugin::WorkloadAttestor>) -> Self {
        let (name, routes) = services::workload_attestor(p);
        Self::new("WorkloadAttestor", name, routes)
    }

    /// An agent NodeAttestor.
    pub fn agent_node_attestor(p: Arc<dyn AgentNodeAttestor>) -> Self {
        let (name, routes) = services::agent_node_attestor(p);
        Self::new("NodeAttestor", name, routes)
    }

    /// A server NodeAttestor.
    pub fn server_node_attestor(p: Arc<dyn ServerNodeAttestor>) -> Self {
        let (name, routes) = services::server_node_attestor(p);
        Self::new("NodeAttestor", name, routes)
    }

    /// A server UpstreamAuthority.
    pub fn upstream_authority(p: Arc<dyn spire_plugin::UpstreamAuthority>) -> Self {
        let (name, routes) = interfaces::upstream_authority(p);
        Self::new("UpstreamAuthority", name, routes)
    }

    /// A server Notifier.
    pub fn notifier(p: Arc<dyn spire_plugin::Notifier>) -> Self {
        let (name, routes) = interfaces::notifier(p);
        Self::new("Notifier", name, routes)
    }

    /// A server BundlePublisher.
    pub fn bundle_publisher(p: Arc<dyn spire_plugin::BundlePublisher>) -> Self {
        let (name, routes) = interfaces::bundle_publisher(p);
        Self::new("BundlePublisher", name, routes)
    }

    /// A server CredentialComposer.
    pub fn credential_composer(p: Arc<dyn spire_plugin::CredentialComposer>) -> Self {
        let (name, routes) = interfaces::credential_composer(p);
        Self::new("CredentialComposer", name, routes)
    }

    /// An agent SVIDStore.
    pub fn svid_store(p: Arc<dyn spire_plugin::SvidStore>) -> Self {
        let (name, routes) = interfaces::svid_store(p);
        Self::new("SVIDStore", name, routes)
    }

    /// A server KeyManager.
    pub fn server_key_manager(p: Arc<dyn DigestKeyManager>) -> Self {
        let (name, routes) = keymanager::server_key_manager(p);
        Self::new("KeyManager", name, routes)
    }

    /// An agent KeyManager.
    pub fn agent_key_manager(p: Arc<dyn DigestKeyManager>) -> Self {
        let (name, routes) = keymanager::agent_key_manager(p);
        Self::new("KeyManager", name, routes)
    }

    /// Serves the configuration interface with `c` (without it, a host refuses any
    /// `plugin_data` for the plugin, as SPIRE does).
    pub fn with_configure(mut self, c: Arc<dyn Configure>) -> Self {
        self.configure = Some(c);
        self
    }

    /// The plugin type (`WorkloadAttestor`).
    pub fn plugin_type(&self) -> &'static str {
        self.plugin_type
    }
}

/// Serves `plugin` as a go-plugin plugin until the host shuts it down; the exit code for
/// `main`.
pub async fn serve(plugin: Plugin) -> ExitCode {
    match services::serve(plugin).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error(&message, &[]);
            ExitCode::FAILURE
        }
    }
}
