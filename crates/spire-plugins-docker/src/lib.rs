//! WorkloadAttestor `docker` of spire-agent, in its own crate so the core builds without a
//! Docker client: the caller's container is found from its cgroups (SPIRE 1.13's new
//! container locator, `spire-containerinfo`, or the legacy `container_id_cgroup_matchers`),
//! inspected over the Docker Engine API ([`client`]; dockerd or podman's Docker-compatible
//! socket; only the container's `Config` is read), and described by SPIRE's selectors: `label:<k>:<v>`, `env:<k>=<v>` and
//! `image_id:<image as given to docker run>`.

pub mod client;
pub mod matchers;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use spire_containerinfo::{CgroupsError, Locator, cgroup_paths};
use spire_plugin::{Code, PluginError, PluginResult, WorkloadAttestor};

use crate::client::DockerClient;
use crate::matchers::Matchers;

/// The plugin's name in `agent.conf`.
pub const PLUGIN_NAME: &str = "docker";

/// Inspections after the first failed one (SPIRE's 3, with 100 ms doubling backoff).
const RETRIES: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// `plugin_data`, SPIRE's keys.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The daemon's address (default `unix:///var/run/docker.sock`).
    pub docker_socket_path: String,
    /// The Engine API version (default: negotiated with the daemon).
    pub docker_version: String,
    /// Legacy cgroup path patterns (needs `use_new_container_locator = false`).
    pub container_id_cgroup_matchers: Vec<String>,
    /// The new container locator (default) or the legacy matchers.
    pub use_new_container_locator: Option<bool>,
    /// Log every cgroup and mount the locator reads.
    pub verbose_container_locator_logs: bool,
    /// `experimental { sigstore { … } }`.
    pub experimental: Option<serde_json::Value>,
}

/// How the caller's container ID is found.
#[derive(Debug)]
enum Finder {
    New(Locator),
    Legacy { root: PathBuf, matchers: Matchers },
}

/// The `docker` WorkloadAttestor.
#[derive(Debug)]
pub struct DockerAttestor {
    finder: Finder,
    client: DockerClient,
}

impl DockerAttestor {
    /// Configures the plugin as SPIRE does (its errors); `root` is where `/proc` is read
    /// (`/` on a host).
    pub fn new(config: &Config, root: impl Into<PathBuf>) -> Result<DockerAttestor, String> {
        spire_containerinfo::refuse_sigstore(config.experimental.as_ref())?;
        let root = root.into();
        let use_new = config.use_new_container_locator.unwrap_or(true);
        let finder = if config.container_id_cgroup_matchers.is_empty() {
            // SPIRE 1.13: without custom matchers the new locator is used, whatever
            // `use_new_container_locator` says.
            Finder::New(Locator::new(root, false).verbose(config.verbose_container_locator_logs))
        } else if use_new {
            return Err("the new container locator and custom cgroup matchers cannot both be used; please open an issue if the new container locator fails to locate workload containers in your environment; to continue using custom matchers set use_new_container_locator=false".into());
        } else {
            tracing::warn!(
                plugin_name = PLUGIN_NAME,
                "Using the legacy container locator with custom cgroup matchers. This feature will be removed in a future release."
            );
            Finder::Legacy {
                root,
                matchers: Matchers::new(&config.container_id_cgroup_matchers)?,
            }
        };
        Ok(DockerAttestor {
            finder,
            client: DockerClient::new(&config.docker_socket_path, &config.docker_version)?,
        })
    }

    /// The container `pid` runs in; `None` when it is in none.
    fn container_id(&self, pid: i32) -> PluginResult<Option<String>> {
        match &self.finder {
            Finder::New(locator) => {
                let id = locator.container_id(pid)?;
                Ok((!id.is_empty()).then_some(id))
            }
            Finder::Legacy { root, matchers } => {
                let file = root.join("proc").join(pid.to_string()).join("cgroup");
                let paths = cgroup_paths(&file).map_err(|e| match e {
                    CgroupsError::Missing(m)
                    | CgroupsError::Unreadable(m)
                    | CgroupsError::BadLine(m) => PluginError::new(Code::Internal, m),
                })?;
                legacy_container_id(matchers, &paths)
            }
        }
    }
}

/// SPIRE's `getContainerIDFromCGroups`: every matching path must name the same container.
fn legacy_container_id(matchers: &Matchers, paths: &[String]) -> PluginResult<Option<String>> {
    let mut matched = false;
    let mut found = String::new();
    for path in paths {
        let Some(candidate) = matchers.find(path) else {
            continue;
        };
        matched = true;
        if found.is_empty() {
            found = candidate;
        } else if found != candidate {
            return Err(PluginError::new(
                Code::Internal,
                format!(
                    "workloadattestor/docker: multiple container IDs found in cgroups ({found}, {candidate})"
                ),
            ));
        }
    }
    match (matched, found.is_empty()) {
        (false, _) => Ok(None),
        (true, true) => Err(PluginError::new(
            Code::Internal,
            "workloadattestor/docker: a pattern matched, but no container id was found",
        )),
        (true, false) => Ok(Some(found)),
    }
}

/// SPIRE's selector values for a container's configuration.
pub fn selectors(config: &client::ContainerConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in config.labels.iter().flatten() {
        out.push(format!("label:{k}:{v}"));
    }
    for e in config.env.iter().flatten() {
        out.push(format!("env:{e}"));
    }
    if let Some(image) = config.image.as_deref().filter(|i| !i.is_empty()) {
        out.push(format!("image_id:{image}"));
    }
    out
}

#[async_trait]
impl WorkloadAttestor for DockerAttestor {
    async fn attest(&self, pid: i32) -> PluginResult<Vec<String>> {
        let Some(id) = self.container_id(pid)? else {
            // Not a container workload: no selectors, and no call to the daemon.
            return Ok(Vec::new());
        };
        let mut attempt = 0;
        loop {
            // One attempt (connecting, negotiating, inspecting, reading the body) is bounded
            // as a whole, so a daemon that stalls mid-answer cannot hold attestation.
            let answer = match tokio::time::timeout(
                client::REQUEST_TIMEOUT,
                self.client.container_config(&id),
            )
            .await
            {
                Ok(a) => a,
                Err(_) => Err(format!(
                    "request to the Docker daemon at {} timed out after {}s",
                    self.client.host(),
                    client::REQUEST_TIMEOUT.as_secs()
                )),
            };
            match answer {
                Ok(config) => return Ok(config.as_ref().map(selectors).unwrap_or_default()),
                Err(e) if attempt == RETRIES => {
                    return Err(PluginError::new(Code::Internal, e));
                }
                Err(e) => {
                    tracing::debug!(plugin_name = PLUGIN_NAME, container_id = %id, error = %e, attempt, "Retrying container inspection");
                    tokio::time::sleep(INITIAL_BACKOFF * 2u32.pow(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
