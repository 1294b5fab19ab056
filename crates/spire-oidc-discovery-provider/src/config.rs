//! `oidc-discovery-provider.conf`, decoded with SPIRE's HCL rules (unknown keys ignored, as
//! `hcl.Decode` ignores them) and checked as SPIRE 1.13.3's `ParseConfig` checks it: the
//! same defaults, the same order of checks, the same messages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spire_config::LoadedPluginData;

/// SPIRE's defaults.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// `poll_interval` of every source.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// `serving_cert_file.file_sync_interval`.
pub const DEFAULT_FILE_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// `acme.cache_dir`.
pub const DEFAULT_CACHE_DIR: &str = "./.acme-cache";
/// `health_checks.bind_port`.
pub const DEFAULT_HEALTH_PORT: u16 = 8008;
/// `health_checks.ready_path`.
pub const DEFAULT_READY_PATH: &str = "/ready";
/// `health_checks.live_path`.
pub const DEFAULT_LIVE_PATH: &str = "/live";
/// `serving_cert_file.addr`.
pub const DEFAULT_ADDR: &str = ":443";

/// A configuration SPIRE would refuse; the text is SPIRE's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(s: impl Into<String>) -> ConfigError {
    ConfigError(s.into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    log_format: String,
    log_level: String,
    log_path: String,
    log_requests: bool,
    domains: Vec<String>,
    set_key_use: bool,
    allow_insecure_scheme: bool,
    insecure_addr: String,
    listen_socket_path: String,
    acme: Option<RawAcme>,
    serving_cert_file: Option<RawServingCertFile>,
    server_api: Option<RawServerApi>,
    workload_api: Option<RawWorkloadApi>,
    file: Option<RawFile>,
    health_checks: Option<RawHealthChecks>,
    jwt_issuer: String,
    jwks_uri: String,
    server_path_prefix: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAcme {
    directory_url: String,
    email: String,
    tos_accepted: bool,
    cache_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawServingCertFile {
    cert_file_path: String,
    key_file_path: String,
    addr: String,
    file_sync_interval: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawServerApi {
    address: String,
    poll_interval: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawWorkloadApi {
    socket_path: String,
    trust_domain: String,
    poll_interval: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFile {
    path: String,
    poll_interval: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHealthChecks {
    bind_port: i64,
    live_path: String,
    ready_path: String,
}

/// The `acme` section (served by `acme`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// `directory_url`.
    pub directory_url: String,
    /// `email`.
    pub email: String,
    /// `cache_dir` (default `./.acme-cache`; empty disables the cache).
    pub cache_dir: String,
}

/// `serving_cert_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCertFile {
    /// `cert_file_path`.
    pub cert_file_path: PathBuf,
    /// `key_file_path`.
    pub key_file_path: PathBuf,
    /// `addr` (default `:443`).
    pub addr: SocketAddr,
    /// `file_sync_interval` (default 1m).
    pub file_sync_interval: Duration,
}

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `server_api`: the server's admin socket (`unix:` target) and the poll interval.
    ServerApi {
        /// The socket path (the `unix:` target's path).
        socket: PathBuf,
        /// `poll_interval`.
        poll_interval: Duration,
    },
    /// `workload_api`: an agent's Workload API socket.
    WorkloadApi {
        /// `socket_path`, made absolute.
        socket: PathBuf,
        /// `trust_domain`.
        trust_domain: String,
        /// `poll_interval`.
        poll_interval: Duration,
    },
    /// `file`: a SPIFFE bundle file.
    File {
        /// `path`.
        path: PathBuf,
        /// `poll_interval`.
        poll_interval: Duration,
    },
}

impl Source {
    /// The source's poll interval.
    pub fn poll_interval(&self) -> Duration {
        match self {
            Source::ServerApi { poll_interval, .. }
            | Source::WorkloadApi { poll_interval, .. }
            | Source::File { poll_interval, .. } => *poll_interval,
        }
    }
}

/// `health_checks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChecks {
    /// `bind_port` (default 8008; a value beyond 65535 fails to listen, as in SPIRE).
    pub bind_port: i64,
    /// `live_path` (default `/live`).
    pub live_path: String,
    /// `ready_path` (default `/ready`).
    pub ready_path: String,
}

/// How the document is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `insecure_addr`: plain HTTP on TCP.
    Insecure(String),
    /// `listen_socket_path`: plain HTTP on a UNIX socket.
    Socket(PathBuf),
    /// `serving_cert_file`: HTTPS with a certificate from disk.
    ServingCert(ServingCertFile),
    /// `acme`.
    Acme(Acme),
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `log_level` (default `info`).
    pub log_level: String,
    /// `log_format`.
    pub log_format: String,
    /// `log_path`.
    pub log_path: String,
    /// `log_requests`.
    pub log_requests: bool,
    /// `domains`, duplicates removed, in order.
    pub domains: Vec<String>,
    /// `set_key_use`.
    pub set_key_use: bool,
    /// `allow_insecure_scheme`.
    pub allow_insecure_scheme: bool,
    /// The listener.
    pub listen: Listen,
    /// The key source.
    pub source: Source,
    /// `health_checks`.
    pub health_checks: Option<HealthChecks>,
    /// `jwt_issuer`.
    pub jwt_issuer: Option<String>,
    /// `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// `server_path_prefix`.
    pub server_path_prefix: String,
}

/// SPIRE's `parseDurationField`: empty or non-positive means the default.
fn duration_field(raw: &str, default: Duration) -> Result<Duration, String> {
    if raw.is_empty() {
        return Ok(default);
    }
    match spire_gocompat::parse_go_duration(raw) {
        Ok(d) => Ok(d.to_std().filter(|d| !d.is_zero()).unwrap_or(default)),
        Err(e) => Err(e.to_string()),
    }
}

/// Go's `net.ResolveTCPAddr("tcp", addr)` for the forms a listener address takes
/// (`:443`, `host:port`, `[v6]:port`); host names are resolved.
pub fn resolve_tcp_addr(addr: &str) -> Result<SocketAddr, String> {
    let Some(colon) = addr.rfind(':') else {
        return Err(format!("address {addr}: missing port in address"));
    };
    let (host, port) = (&addr[..colon], &addr[colon + 1..]);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port
        .parse()
        .map_err(|_| format!("lookup tcp/{port}: unknown port"))?;
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    use std::net::ToSocketAddrs as _;
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("lookup {host}: no such host"))
}

/// Go's `url.Parse` far enough for SPIRE's checks: the scheme and the host.
fn url_scheme_host(s: &str) -> (String, String) {
    let Some((scheme, rest)) = s.split_once("://") else {
        return (String::new(), String::new());
    };
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return (String::new(), String::new());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    (scheme.to_string(), host.to_string())
}

/// SPIRE's `util.GetUnixAddrWithAbsPath`.
fn absolute(p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Parses and checks configuration text, as SPIRE's `ParseConfig`.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    // spire-config's errors already read "unable to decode configuration: ..." where hcl's
    // would be wrapped so by SPIRE.
    let decode_err = |e: spire_config::ConfigError| {
        let m = e.to_string();
        if m.starts_with("unable to decode configuration: ") {
            err(m)
        } else {
            err(format!("unable to decode configuration: {m}"))
        }
    };
    let data = LoadedPluginData::parse(text).map_err(decode_err)?;
    let (c, _unknown) = data.decode_lenient::<RawConfig>().map_err(decode_err)?;

    let log_level = if c.log_level.is_empty() {
        DEFAULT_LOG_LEVEL.to_string()
    } else {
        c.log_level.clone()
    };
    if c.domains.is_empty() {
        return Err(err("at least one domain must be configured"));
    }
    let mut domains: Vec<String> = Vec::new();
    for d in &c.domains {
        if !domains.contains(d) {
            domains.push(d.clone());
        }
    }

    let acme = match &c.acme {
        Some(a) => {
            if !c.insecure_addr.is_empty() {
                return Err(err(
                    "insecure_addr and the acme section are mutually exclusive",
                ));
            }
            if !a.tos_accepted {
                return Err(err(
                    "tos_accepted must be set to true in the acme configuration section",
                ));
            }
            if a.email.is_empty() {
                return Err(err(
                    "email must be configured in the acme configuration section",
                ));
            }
            Some(Acme {
                directory_url: a.directory_url.clone(),
                email: a.email.clone(),
                cache_dir: a
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CACHE_DIR.to_string()),
            })
        }
        None => None,
    };

    let serving = match &c.serving_cert_file {
        Some(s) => {
            if s.cert_file_path.is_empty() {
                return Err(err(
                    "cert_file_path must be configured in the serving_cert_file configuration section",
                ));
            }
            if s.key_file_path.is_empty() {
                return Err(err(
                    "key_file_path must be configured in the serving_cert_file configuration section",
                ));
            }
            let raw_addr = if s.addr.is_empty() {
                DEFAULT_ADDR
            } else {
                s.addr.as_str()
            };
            let addr = resolve_tcp_addr(raw_addr).map_err(|e| {
                err(format!(
                    "invalid addr in the serving_cert_file configuration section: {e}"
                ))
            })?;
            let file_sync_interval = duration_field(
                &s.file_sync_interval,
                DEFAULT_FILE_SYNC_INTERVAL,
            )
            .map_err(|e| {
                err(format!(
                    "invalid file_sync_interval in the serving_cert_file configuration section: {e}"
                ))
            })?;
            Some(ServingCertFile {
                cert_file_path: s.cert_file_path.clone().into(),
                key_file_path: s.key_file_path.clone().into(),
                addr,
                file_sync_interval,
            })
        }
        None => None,
    };

    let mut sources = Vec::new();
    if let Some(s) = &c.server_api {
        let poll_interval =
            duration_field(&s.poll_interval, DEFAULT_POLL_INTERVAL).map_err(|e| {
                err(format!(
                    "invalid poll_interval in the server_api configuration section: {e}"
                ))
            })?;
        sources.push(Source::ServerApi {
            socket: PathBuf::new(),
            poll_interval,
        });
    }
    if let Some(w) = &c.workload_api {
        if w.trust_domain.is_empty() {
            return Err(err(
                "trust_domain must be configured in the workload_api configuration section",
            ));
        }
        let poll_interval =
            duration_field(&w.poll_interval, DEFAULT_POLL_INTERVAL).map_err(|e| {
                err(format!(
                    "invalid poll_interval in the workload_api configuration section: {e}"
                ))
            })?;
        sources.push(Source::WorkloadApi {
            socket: PathBuf::new(),
            trust_domain: w.trust_domain.clone(),
            poll_interval,
        });
    }
    if let Some(f) = &c.file {
        let poll_interval =
            duration_field(&f.poll_interval, DEFAULT_POLL_INTERVAL).map_err(|e| {
                err(format!(
                    "invalid poll_interval in the file configuration section: {e}"
                ))
            })?;
        sources.push(Source::File {
            path: f.path.clone().into(),
            poll_interval,
        });
    }

    let health_checks = c.health_checks.as_ref().map(|h| HealthChecks {
        bind_port: if h.bind_port <= 0 {
            i64::from(DEFAULT_HEALTH_PORT)
        } else {
            h.bind_port
        },
        live_path: if h.live_path.is_empty() {
            DEFAULT_LIVE_PATH.to_string()
        } else {
            h.live_path.clone()
        },
        ready_path: if h.ready_path.is_empty() {
            DEFAULT_READY_PATH.to_string()
        } else {
            h.ready_path.clone()
        },
    });

    // validateOS (POSIX).
    let (has_acme, has_cert) = (acme.is_some(), serving.is_some());
    let (has_insecure, has_socket) = (
        !c.insecure_addr.is_empty(),
        !c.listen_socket_path.is_empty(),
    );
    if !has_acme && !has_socket && !has_cert && !has_insecure {
        return Err(err(
            "either acme, serving_cert_file, insecure_addr or listen_socket_path must be configured",
        ));
    }
    let exclusive = [
        (
            has_acme && has_cert,
            "acme and serving_cert_file are mutually exclusive",
        ),
        (
            has_acme && has_socket,
            "listen_socket_path and the acme section are mutually exclusive",
        ),
        (
            has_cert && has_insecure,
            "serving_cert_file and insecure_addr are mutually exclusive",
        ),
        (
            has_cert && has_socket,
            "serving_cert_file and listen_socket_path are mutually exclusive",
        ),
        (
            has_acme && has_insecure,
            "acme and insecure_addr are mutually exclusive",
        ),
        (
            has_insecure && has_socket,
            "insecure_addr and listen_socket_path are mutually exclusive",
        ),
    ];
    if let Some((_, m)) = exclusive.iter().find(|(bad, _)| *bad) {
        return Err(err(*m));
    }
    if let Some(s) = &c.server_api {
        if s.address.is_empty() {
            return Err(err(
                "address must be configured in the server_api configuration section",
            ));
        }
        if !s.address.starts_with("unix:") {
            return Err(err(
                "address must use the unix name system in the server_api configuration section",
            ));
        }
    }
    if let Some(w) = &c.workload_api
        && w.socket_path.is_empty()
    {
        return Err(err(
            "socket_path must be configured in the workload_api configuration section",
        ));
    }

    let mut source = match sources.len() {
        0 => {
            return Err(err(
                "exactly one of the server_api, workload_api, or file sections must be configured",
            ));
        }
        1 => sources.remove(0),
        _ => {
            return Err(err(
                "the server_api, workload_api, and file sections are mutually exclusive",
            ));
        }
    };
    match &mut source {
        Source::ServerApi { socket, .. } => {
            let address = c
                .server_api
                .as_ref()
                .map(|s| s.address.as_str())
                .unwrap_or_default();
            *socket = unix_target_path(address);
        }
        Source::WorkloadApi { socket, .. } => {
            let path = c
                .workload_api
                .as_ref()
                .map(|w| w.socket_path.as_str())
                .unwrap_or_default();
            *socket = absolute(path);
        }
        Source::File { .. } => {}
    }

    if !c.jwt_issuer.is_empty() {
        let (scheme, host) = url_scheme_host(&c.jwt_issuer);
        if scheme.is_empty() {
            return Err(err("the jwt_issuer url must contain a scheme"));
        }
        if host.is_empty() {
            return Err(err("the jwt_issuer url must contain a host"));
        }
    }
    if !c.jwks_uri.is_empty() {
        let (scheme, host) = url_scheme_host(&c.jwks_uri);
        if scheme.is_empty() || host.is_empty() {
            // Go wraps a nil error here: `%!w(<nil>)`.
            return Err(err("the jwks_uri setting could not be parsed: %!w(<nil>)"));
        }
    }

    let listen = if has_insecure {
        Listen::Insecure(c.insecure_addr.clone())
    } else if has_socket {
        Listen::Socket(c.listen_socket_path.clone().into())
    } else if let Some(s) = serving {
        Listen::ServingCert(s)
    } else if let Some(a) = acme {
        Listen::Acme(a)
    } else {
        return Err(err(
            "either acme, serving_cert_file, insecure_addr or listen_socket_path must be configured",
        ));
    };

    Ok(Config {
        log_level,
        log_format: c.log_format,
        log_path: c.log_path,
        log_requests: c.log_requests,
        domains,
        set_key_use: c.set_key_use,
        allow_insecure_scheme: c.allow_insecure_scheme,
        listen,
        source,
        health_checks,
        jwt_issuer: (!c.jwt_issuer.is_empty()).then_some(c.jwt_issuer),
        jwks_uri: (!c.jwks_uri.is_empty()).then_some(c.jwks_uri),
        server_path_prefix: c.server_path_prefix,
    })
}

/// The socket path of a gRPC `unix:` target (`unix:path`, `unix:///abs/path`).
fn unix_target_path(address: &str) -> PathBuf {
    let rest = address.strip_prefix("unix:").unwrap_or(address);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    PathBuf::from(rest)
}

/// Reads and parses the file, as SPIRE's `LoadConfig` (`-expandEnv` expands `$VAR`).
pub fn load(path: &Path, expand_env: bool) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(format!(
            "unable to load configuration: {}",
            spire_gocompat::os::path_error("open", &path.display().to_string(), &e)
        ))
    })?;
    let text = if expand_env {
        spire_config::expand_env(&text, &spire_config::ProcessEnv)
    } else {
        text
    };
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_API: &str =
        "server_api { address = \"unix:///tmp/spire-server/private/api.sock\" }";

    fn parse_err(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    #[test]
    fn defaults_as_spire() {
        let c = parse(&format!(
            "domains = [\"a.example\", \"b.example\", \"a.example\"]\ninsecure_addr = \":8080\"\n{SERVER_API}\nhealth_checks {{}}\n"
        ))
        .unwrap();
        assert_eq!(c.log_level, "info");
        assert_eq!(c.domains, vec!["a.example", "b.example"]);
        assert_eq!(c.listen, Listen::Insecure(":8080".into()));
        assert_eq!(
            c.source,
            Source::ServerApi {
                socket: "/tmp/spire-server/private/api.sock".into(),
                poll_interval: Duration::from_secs(10)
            }
        );
        assert_eq!(
            c.health_checks,
            Some(HealthChecks {
                bind_port: 8008,
                live_path: "/live".into(),
                ready_path: "/ready".into()
            })
        );
    }

    #[test]
    fn serving_cert_file_defaults() {
        let c = parse(&format!(
            "domains = [\"a\"]\nserving_cert_file {{ cert_file_path = \"c.pem\" key_file_path = \"k.pem\" }}\n{SERVER_API}"
        ))
        .unwrap();
        let Listen::ServingCert(s) = c.listen else {
            panic!("{:?}", c.listen)
        };
        assert_eq!(s.addr, "0.0.0.0:443".parse().unwrap());
        assert_eq!(s.file_sync_interval, Duration::from_secs(60));
    }

    #[test]
    fn workload_api_source() {
        let c = parse(
            "domains = [\"a\"]\nlisten_socket_path = \"/tmp/x.sock\"\nworkload_api { socket_path = \"/tmp/agent.sock\" trust_domain = \"example.org\" poll_interval = \"5s\" }",
        )
        .unwrap();
        assert_eq!(
            c.source,
            Source::WorkloadApi {
                socket: "/tmp/agent.sock".into(),
                trust_domain: "example.org".into(),
                poll_interval: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn errors_as_spire() {
        let cases: &[(&str, &str)] = &[
            ("", "at least one domain must be configured"),
            (
                "domains = [\"a\"]",
                "either acme, serving_cert_file, insecure_addr or listen_socket_path must be configured",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"",
                "exactly one of the server_api, workload_api, or file sections must be configured",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nacme { tos_accepted = true email = \"x\" }",
                "insecure_addr and the acme section are mutually exclusive",
            ),
            (
                "domains = [\"a\"]\nacme { email = \"x\" }",
                "tos_accepted must be set to true in the acme configuration section",
            ),
            (
                "domains = [\"a\"]\nacme { tos_accepted = true }",
                "email must be configured in the acme configuration section",
            ),
            (
                "domains = [\"a\"]\nserving_cert_file { key_file_path = \"k\" }",
                "cert_file_path must be configured in the serving_cert_file configuration section",
            ),
            (
                "domains = [\"a\"]\nserving_cert_file { cert_file_path = \"c\" }",
                "key_file_path must be configured in the serving_cert_file configuration section",
            ),
            (
                "domains = [\"a\"]\nserving_cert_file { cert_file_path = \"c\" key_file_path = \"k\" addr = \"nope\" }",
                "invalid addr in the serving_cert_file configuration section: address nope: missing port in address",
            ),
            (
                "domains = [\"a\"]\nserving_cert_file { cert_file_path = \"c\" key_file_path = \"k\" file_sync_interval = \"x\" }",
                "invalid file_sync_interval in the serving_cert_file configuration section: time: invalid duration \"x\"",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { address = \"unix:/x\" poll_interval = \"bad\" }",
                "invalid poll_interval in the server_api configuration section: time: invalid duration \"bad\"",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nworkload_api { socket_path = \"/x\" }",
                "trust_domain must be configured in the workload_api configuration section",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { }",
                "address must be configured in the server_api configuration section",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { address = \"dns:///x\" }",
                "address must use the unix name system in the server_api configuration section",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nworkload_api { trust_domain = \"example.org\" }",
                "socket_path must be configured in the workload_api configuration section",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nlisten_socket_path = \"/x\"\nserver_api { address = \"unix:/x\" }",
                "insecure_addr and listen_socket_path are mutually exclusive",
            ),
            (
                "domains = [\"a\"]\nlisten_socket_path = \"/x\"\nserving_cert_file { cert_file_path = \"c\" key_file_path = \"k\" }\nserver_api { address = \"unix:/x\" }",
                "serving_cert_file and listen_socket_path are mutually exclusive",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { address = \"unix:/x\" }\nworkload_api { socket_path = \"/x\" trust_domain = \"t\" }",
                "the server_api, workload_api, and file sections are mutually exclusive",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { address = \"unix:/x\" }\njwt_issuer = \"example.org\"",
                "the jwt_issuer url must contain a scheme",
            ),
            (
                "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { address = \"unix:/x\" }\njwks_uri = \"/keys\"",
                "the jwks_uri setting could not be parsed: %!w(<nil>)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_err(text), *want, "{text}");
        }
        assert!(parse_err("domains = [").starts_with("unable to decode configuration: "));
    }
}
