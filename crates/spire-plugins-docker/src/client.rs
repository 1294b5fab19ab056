//! The Docker Engine API client (`bollard`), set up as SPIRE's Go client is: the daemon at
//! `docker_socket_path` (`unix://` or `tcp://`), the API version fixed by `docker_version`
//! or negotiated with the daemon on first use; connected lazily, so an agent starts while
//! dockerd is down and attests once it is up. Errors read as the Go client's.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerConfig;

/// SPIRE's (the Go client's) default daemon address.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The longest one request to the daemon may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    Unix(String),
    Tcp(String),
}

/// Where the daemon is and which API version to speak.
#[derive(Debug)]
pub struct DockerClient {
    host: String,
    transport: Transport,
    version: Option<bollard::ClientVersion>,
    connected: parking_lot::Mutex<Option<Docker>>,
}

impl DockerClient {
    /// Parses `docker_socket_path` (empty: [`DEFAULT_HOST`]) and `docker_version` (empty:
    /// negotiated).
    pub fn new(host: &str, version: &str) -> Result<DockerClient, String> {
        let host = if host.is_empty() { DEFAULT_HOST } else { host };
        let Some((proto, addr)) = host.split_once("://").filter(|(_, a)| !a.is_empty()) else {
            return Err(format!("unable to parse docker host `{host}`"));
        };
        let transport = match proto {
            "unix" => Transport::Unix(addr.to_string()),
            "tcp" | "http" => Transport::Tcp(addr.to_string()),
            other => {
                return Err(format!(
                    "docker host protocol {} is not supported by spire-rs (unix or tcp)",
                    spire_gocompat::strconv::quote(other)
                ));
            }
        };
        let version = if version.is_empty() {
            None
        } else {
            Some(parse_version(version)?)
        };
        Ok(DockerClient {
            host: host.to_string(),
            transport,
            version,
            connected: parking_lot::Mutex::new(None),
        })
    }

    /// The `Config` of container `id` (`GET /containers/<id>/json`).
    pub async fn container_config(&self, id: &str) -> Result<Option<ContainerConfig>, String> {
        let docker = self.docker().await?;
        let inspect = docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(inspect.config)
    }

    /// The connected client; the first call connects (and negotiates the version).
    async fn docker(&self) -> Result<Docker, String> {
        if let Some(d) = self.connected.lock().clone() {
            return Ok(d);
        }
        let secs = REQUEST_TIMEOUT.as_secs();
        let version = self
            .version
            .as_ref()
            .unwrap_or(bollard::API_DEFAULT_VERSION);
        let docker = match &self.transport {
            Transport::Unix(path) => Docker::connect_with_unix(path, secs, version),
            Transport::Tcp(addr) => Docker::connect_with_http(addr, secs, version),
        }
        .map_err(|e| self.error(e))?;
        let docker = if self.version.is_some() {
            docker
        } else {
            docker
                .negotiate_version()
                .await
                .map_err(|e| self.error(e))?
        };
        *self.connected.lock() = Some(docker.clone());
        Ok(docker)
    }

    /// The Go client's words for a failed request.
    fn error(&self, e: BollardError) -> String {
        match &e {
            BollardError::DockerResponseServerError { message, .. } => {
                format!("Error response from daemon: {message}")
            }
            BollardError::SocketNotFoundError(_)
            | BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. } => {
                if io_kind(&e) == Some(std::io::ErrorKind::PermissionDenied) {
                    let addr = match &self.transport {
                        Transport::Unix(p) => format!("dial unix {p}"),
                        Transport::Tcp(a) => format!("dial tcp {a}"),
                    };
                    format!(
                        "permission denied while trying to connect to the Docker daemon socket at {}: {addr}: connect: permission denied",
                        self.host
                    )
                } else {
                    format!(
                        "Cannot connect to the Docker daemon at {}. Is the docker daemon running?",
                        self.host
                    )
                }
            }
            BollardError::RequestTimeoutError => format!(
                "request to the Docker daemon at {} timed out after {}s",
                self.host,
                REQUEST_TIMEOUT.as_secs()
            ),
            other => other.to_string(),
        }
    }

    /// The daemon's address as configured (`unix:///var/run/docker.sock`).
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// The kind of the I/O error somewhere in `e`'s source chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// `1.41` or `v1.41`.
fn parse_version(v: &str) -> Result<bollard::ClientVersion, String> {
    let bad = || {
        format!(
            "invalid docker_version {}: expected <major>.<minor>, such as 1.41",
            spire_gocompat::strconv::quote(v)
        )
    };
    let (major, minor) = v.trim_start_matches('v').split_once('.').ok_or_else(bad)?;
    Ok(bollard::ClientVersion {
        major_version: major.parse().map_err(|_| bad())?,
        minor_version: minor.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_versions() {
        let c = DockerClient::new("", "").unwrap();
        assert_eq!(c.host, DEFAULT_HOST);
        assert_eq!(c.transport, Transport::Unix("/var/run/docker.sock".into()));
        assert!(c.version.is_none());
        let c = DockerClient::new("tcp://127.0.0.1:2375", "v1.41").unwrap();
        assert_eq!(c.transport, Transport::Tcp("127.0.0.1:2375".into()));
        let v = c.version.unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert_eq!(
            DockerClient::new("/var/run/docker.sock", "").unwrap_err(),
            "unable to parse docker host `/var/run/docker.sock`"
        );
        assert_eq!(
            DockerClient::new("unix://", "").unwrap_err(),
            "unable to parse docker host `unix://`"
        );
        assert!(
            DockerClient::new("ssh://h", "")
                .unwrap_err()
                .contains("\"ssh\"")
        );
        assert_eq!(
            DockerClient::new("", "latest").unwrap_err(),
            "invalid docker_version \"latest\": expected <major>.<minor>, such as 1.41"
        );
    }
}
