//! The Docker Engine API client, the two calls the attestor makes and no more: the API
//! version from `GET /_ping` (unless `docker_version` pins it; Docker's Go client's
//! negotiation: the daemon's `API-Version`, capped at 1.51, 1.24 when it names none), then
//! `GET /v<version>/containers/<id>/json`, of which only `Config.Labels`, `Config.Env` and
//! `Config.Image` are read, so whatever else a daemon (dockerd, podman) puts in its answer
//! cannot fail the attestation. One HTTP/1.1 connection per request over `unix://` or
//! `tcp://`, as Docker's client does on a socket. Errors read as the Go client's.
//!
//! Not `bollard` (tried first): its typed model refuses any enum value it does not know
//! anywhere in the inspection answer (a container state or a cgroup namespace mode of a
//! newer or different daemon), which would turn into failed attestations; see the test
//! `fields_other_than_config_never_fail_the_read`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// SPIRE's (the Go client's) default daemon address.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The longest one attempt (connect, negotiate, inspect, read) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The newest API version Docker's Go client (v28) asks for.
const MAX_VERSION: (u32, u32) = (1, 51);
/// What a daemon that names no version is taken to speak.
const FALLBACK_VERSION: (u32, u32) = (1, 24);
/// The largest answer read (an inspection is a few KiB).
const MAX_BODY: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    Unix(String),
    Tcp(String),
}

/// The part of a container's inspection the attestor reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerConfig {
    /// `Config.Labels`.
    #[serde(rename = "Labels", default)]
    pub labels: Option<HashMap<String, String>>,
    /// `Config.Env`.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// `Config.Image`: the image as given to `docker run`.
    #[serde(rename = "Image", default)]
    pub image: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Inspection {
    #[serde(rename = "Config", default)]
    config: Option<ContainerConfig>,
}

/// Where the daemon is and which API version to speak.
#[derive(Debug)]
pub struct DockerClient {
    host: String,
    transport: Transport,
    version: parking_lot::Mutex<Option<(u32, u32)>>,
}

impl DockerClient {
    /// Parses `docker_socket_path` (empty: [`DEFAULT_HOST`]) and `docker_version` (empty:
    /// negotiated on first use).
    pub fn new(host: &str, version: &str) -> Result<DockerClient, String> {
        let host = if host.is_empty() { DEFAULT_HOST } else { host };
        let Some((proto, addr)) = host.split_once("://").filter(|(_, a)| !a.is_empty()) else {
            return Err(format!("unable to parse docker host `{host}`"));
        };
        let transport = match proto {
            "unix" => Transport::Unix(addr.to_string()),
            "tcp" | "http" => Transport::Tcp(addr.trim_end_matches('/').to_string()),
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
            Some(
                parse_version(version.trim_start_matches('v')).ok_or_else(|| {
                    format!(
                        "invalid docker_version {}: expected <major>.<minor>, such as 1.41",
                        spire_gocompat::strconv::quote(version)
                    )
                })?,
            )
        };
        Ok(DockerClient {
            host: host.to_string(),
            transport,
            version: parking_lot::Mutex::new(version),
        })
    }

    /// The daemon's address as configured (`unix:///var/run/docker.sock`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Config` of container `id` (`GET /containers/<id>/json`).
    pub async fn container_config(&self, id: &str) -> Result<Option<ContainerConfig>, String> {
        let (major, minor) = self.api_version().await?;
        let path = format!("/v{major}.{minor}/containers/{id}/json");
        let (status, _, body) = self.get(&path).await?;
        if !status.is_success() {
            return Err(daemon_error(status, &body));
        }
        let inspection: Inspection = serde_json::from_slice(&body)
            .map_err(|e| format!("error reading the Docker daemon's answer: {e}"))?;
        Ok(inspection.config)
    }

    /// The API version: pinned, or negotiated once (`GET /_ping`, as the Go client).
    async fn api_version(&self) -> Result<(u32, u32), String> {
        if let Some(v) = *self.version.lock() {
            return Ok(v);
        }
        let (status, headers, body) = self.get("/_ping").await?;
        if status.is_server_error() {
            return Err(daemon_error(status, &body));
        }
        let version = headers
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_version)
            .map_or(FALLBACK_VERSION, |v| v.min(MAX_VERSION));
        *self.version.lock() = Some(version);
        Ok(version)
    }

    /// One GET on a fresh connection: status, headers and the whole body.
    async fn get(&self, path: &str) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
        let connect_err = |e: std::io::Error| self.connect_error(&e);
        let request = http::Request::get(path)
            .header(http::header::HOST, "api.moby.localhost")
            .header(http::header::USER_AGENT, "spire-rs")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("error during connect: {e}"))?;
        let response = match &self.transport {
            Transport::Unix(p) => {
                let io = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                send(io, request).await
            }
            Transport::Tcp(a) => {
                let io = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(connect_err)?;
                send(io, request).await
            }
        }
        .map_err(|e| format!("error during connect: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("error reading the Docker daemon's answer: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// The Go client's words for a connection that could not be made.
    fn connect_error(&self, e: &std::io::Error) -> String {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            let dial = match &self.transport {
                Transport::Unix(p) => format!("dial unix {p}"),
                Transport::Tcp(a) => format!("dial tcp {a}"),
            };
            format!(
                "permission denied while trying to connect to the Docker daemon socket at {}: {dial}: connect: permission denied",
                self.host
            )
        } else {
            format!(
                "Cannot connect to the Docker daemon at {}. Is the docker daemon running?",
                self.host
            )
        }
    }
}

async fn send<S>(
    io: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection task ends when the response has been read (or the attempt dropped).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await
}

/// `Error response from daemon: <message>` from the daemon's JSON error body.
fn daemon_error(status: http::StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let message = serde_json::from_slice::<Message>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        });
    format!("Error response from daemon: {message}")
}

/// `1.41` as (1, 41).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_versions() {
        let c = DockerClient::new("", "").unwrap();
        assert_eq!(c.host, DEFAULT_HOST);
        assert_eq!(c.transport, Transport::Unix("/var/run/docker.sock".into()));
        assert!(c.version.lock().is_none());
        let c = DockerClient::new("tcp://127.0.0.1:2375", "v1.41").unwrap();
        assert_eq!(c.transport, Transport::Tcp("127.0.0.1:2375".into()));
        assert_eq!(*c.version.lock(), Some((1, 41)));
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

    #[test]
    fn daemon_errors_read_as_the_go_clients() {
        assert_eq!(
            daemon_error(
                http::StatusCode::NOT_FOUND,
                br#"{"message":"No such container: abc"}"#
            ),
            "Error response from daemon: No such container: abc"
        );
        assert_eq!(
            daemon_error(http::StatusCode::BAD_GATEWAY, b""),
            "Error response from daemon: 502 Bad Gateway"
        );
    }

    /// An inspection whose other fields hold values no typed model of today's API knows
    /// (a container state, a cgroup namespace mode): the attestor still reads `Config`.
    #[test]
    fn fields_other_than_config_never_fail_the_read() {
        let answer = br#"{"Id":"abc","State":{"Status":"hibernating","Pid":1},
            "HostConfig":{"CgroupnsMode":"ns:/proc/1/ns/cgroup"},
            "Config":{"Image":"local/busybox:1","Env":["PATH=/bin"],"Labels":{"app":"web"}}}"#;
        let got: Inspection = serde_json::from_slice(answer).unwrap();
        let config = got.config.unwrap();
        assert_eq!(config.image.as_deref(), Some("local/busybox:1"));
        assert_eq!(config.env, Some(vec!["PATH=/bin".to_string()]));
    }
}
