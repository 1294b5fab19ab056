//! The programs under test: configuration files, processes, readiness and memory.
//!
//! Both implementations get byte-for-byte the same `server.conf` and `agent.conf`: SQLite
//! datastore, disk KeyManager on the server and memory KeyManager on the agent, ec-p256
//! keys everywhere, the same TTLs, join-token attestation and the unix workload attestor.
//! Rate limits are switched off on both servers so that the signing scenario measures
//! signing rather than SPIRE's per-IP limiter (500 SVIDs/s by default).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use spire_proto::grpc::health::v1::health_client::HealthClient;
use spire_proto::grpc::health::v1::{HealthCheckRequest, health_check_response::ServingStatus};
use tokio::process::{Child, Command};

use crate::clients;

/// Where the data directories of the programs under test are made (`--work-dir`).
static WORK_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the directory for data directories; the first call wins.
pub(crate) fn set_work_dir(dir: PathBuf) {
    let _ = WORK_DIR.set(dir);
}

/// The directory data directories are made in.
pub(crate) fn work_dir() -> PathBuf {
    WORK_DIR.get().cloned().unwrap_or_else(std::env::temp_dir)
}

/// The trust domain of every run.
pub(crate) const TRUST_DOMAIN: &str = "example.org";

/// One implementation: a server binary and an agent binary.
#[derive(Debug, Clone)]
pub(crate) struct Implementation {
    /// "reference SPIRE" or "spire-rs".
    pub(crate) name: &'static str,
    pub(crate) server: PathBuf,
    pub(crate) agent: PathBuf,
}

impl Implementation {
    /// The binaries in `dir`, which must both exist.
    pub(crate) fn from_dir(name: &'static str, dir: &Path) -> Result<Self> {
        let server = dir.join("spire-server");
        let agent = dir.join("spire-agent");
        for bin in [&server, &agent] {
            if !bin.is_file() {
                bail!("{name}: {} not found", bin.display());
            }
        }
        Ok(Self {
            name,
            server,
            agent,
        })
    }
}

/// Memory figures of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    /// VmRSS.
    pub(crate) rss: f64,
    /// VmHWM: the peak RSS since start or since the last [`reset_peak`].
    pub(crate) peak: f64,
}

/// Reads VmRSS and VmHWM of `pid`.
pub(crate) fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing in /proc/{pid}/status"))?;
        let kib: f64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))?;
        Ok(kib * 1024.0)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// CPU time (user + system, all threads) `pid` has used so far, in seconds; `None` for
/// this process.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may contain spaces): state is the first;
    // utime and stime are the 12th and 13th (fields 14 and 15 of proc(5)).
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .with_context(|| format!("parsing {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("parsing {path}"))
    };
    // USER_HZ is 100 on Linux whatever the kernel's tick rate.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Resets the peak RSS (VmHWM) of `pid` to its current RSS (`clear_refs` mode 5).
pub(crate) fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5")
        .with_context(|| format!("resetting the peak RSS of {pid}"))
}

/// A free TCP port on loopback.
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running program under test; killed on drop.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    _dir: tempfile::TempDir,
    pid: u32,
    /// When the process was spawned.
    pub(crate) started: Instant,
    log: PathBuf,
    what: String,
    spec: Spawn,
}

/// How a process was started.
#[derive(Debug)]
struct Spawn {
    bin: PathBuf,
    config: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Spawn {
    /// Starts the process in `dir`, its output appended to `log`.
    fn start(&self, dir: &Path, log: &Path) -> Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let err = out.try_clone()?;
        Command::new(&self.bin)
            .arg("run")
            .arg("-config")
            .arg(&self.config)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // Plugins' go-plugin sockets go with the run's directory.
            .env("TMPDIR", dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            // Its own process group, so that killing it also ends the plugin processes it
            // started (a SIGKILLed host cannot end them itself).
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))
    }
}

/// SIGKILL to the process group `pgid` (the host and the plugins it started).
fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Kill and reap before the temp dir (possibly a multi-GB datastore) is removed.
        kill_group(self.pid);
        let _ = self.child.start_kill();
        for _ in 0..500 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Proc {
    fn spawn(
        bin: &Path,
        config: &Path,
        extra: &[&str],
        dir: tempfile::TempDir,
        env: &[(String, String)],
    ) -> Result<Self> {
        let log = dir.path().join("output.log");
        let spec = Spawn {
            bin: bin.to_path_buf(),
            config: config.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
        };
        let started = Instant::now();
        let child = spec.start(dir.path(), &log)?;
        let pid = child.id().context("spawned process has no pid")?;
        Ok(Self {
            child,
            _dir: dir,
            pid,
            started,
            log,
            what: bin.display().to_string(),
            spec,
        })
    }

    /// Stops the process and starts it again with the same command, environment and
    /// directory (its data kept).
    pub(crate) async fn restart(&mut self) -> Result<()> {
        kill_group(self.pid);
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.started = Instant::now();
        self.child = self.spec.start(self._dir.path(), &self.log)?;
        self.pid = self.child.id().context("spawned process has no pid")?;
        Ok(())
    }

    pub(crate) fn memory(&self) -> Result<Memory> {
        memory(self.pid)
    }

    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(Some(self.pid))
    }

    pub(crate) fn reset_peak(&self) -> Result<()> {
        reset_peak(self.pid)
    }

    /// The last lines the process printed, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// Fails with the log tail if the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.what, self.log_tail());
        }
        Ok(())
    }

    /// Polls the gRPC health service on `socket` (what `healthcheck` does) until it reports
    /// SERVING; returns the time since spawn.
    async fn wait_healthy(&mut self, socket: &Path, timeout: Duration) -> Result<Duration> {
        let deadline = self.started + timeout;
        loop {
            self.check_alive()?;
            if socket.exists()
                && let Ok(ch) = clients::uds_channel(socket).await
                && let Ok(resp) = HealthClient::new(ch)
                    .check(HealthCheckRequest::default())
                    .await
                && resp.get_ref().status == ServingStatus::Serving as i32
            {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {} s:\n{}",
                    self.what,
                    timeout.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the process and waits for it.
    pub(crate) async fn stop(mut self) {
        kill_group(self.pid);
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) proc: Proc,
    /// The admin UNIX socket.
    pub(crate) socket: PathBuf,
    /// The agent-facing TCP port.
    pub(crate) port: u16,
}

/// Server start options.
#[derive(Debug, Default)]
pub(crate) struct ServerOptions {
    /// A SQLite file to copy in as the datastore before start.
    pub(crate) datastore: Option<PathBuf>,
    /// A `KeyManager` block in place of the default `disk` one.
    pub(crate) key_manager: Option<String>,
    /// Extra environment of the server process (e.g. `SOFTHSM2_CONF`).
    pub(crate) env: Vec<(String, String)>,
    /// Plugin blocks after the `join_token` NodeAttestor (other node attestors).
    pub(crate) extra_plugins: String,
    /// The trust domain in place of [`TRUST_DOMAIN`].
    pub(crate) trust_domain: Option<String>,
    /// Blocks at the end of the `server` block (`federation`).
    pub(crate) extra_server: String,
    /// `(database_type, connection_string)` of a shared SQL database in place of the
    /// server's own SQLite file.
    pub(crate) sql: Option<(String, String)>,
}

impl Server {
    /// Writes the configuration and spawns `imp`'s server (not waiting for readiness).
    pub(crate) fn spawn(imp: &Implementation, opts: &ServerOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spire-bench-")
            .tempdir_in(work_dir())?;
        let d = dir.path().display().to_string();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        if let Some(src) = &opts.datastore {
            std::fs::copy(src, data.join("datastore.sqlite3"))
                .with_context(|| format!("copying {}", src.display()))?;
        }
        let socket = dir.path().join("api.sock");
        let port = free_port()?;
        let conf = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{sock}"
    trust_domain = "{trust_domain}"
    data_dir = "{d}/data"
    log_level = "WARN"
    ca_key_type = "ec-p256"
    ca_ttl = "168h"
    default_x509_svid_ttl = "1h"
    default_jwt_svid_ttl = "5m"
    agent_ttl = "24h"
    ratelimit {{
        attestation = false
        signing = false
    }}
    {extra_server}
}}

plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "{db_type}"
            connection_string = "{db_conn}"
        }}
    }}
    {key_manager}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    {extra_plugins}
}}
"#,
            sock = socket.display(),
            extra_plugins = opts.extra_plugins,
            extra_server = opts.extra_server,
            trust_domain = opts.trust_domain.as_deref().unwrap_or(TRUST_DOMAIN),
            db_type = opts.sql.as_ref().map_or("sqlite3", |(t, _)| t.as_str()),
            db_conn = opts
                .sql
                .as_ref()
                .map_or_else(|| format!("{d}/data/datastore.sqlite3"), |(_, c)| c.clone()),
            key_manager = opts.key_manager.clone().unwrap_or_else(|| format!(
                "KeyManager \"disk\" {{\n        plugin_data {{\n            keys_path = \"{d}/data/keys.json\"\n        }}\n    }}"
            )),
        );
        let config = dir.path().join("server.conf");
        std::fs::write(&config, conf)?;
        let proc = Proc::spawn(&imp.server, &config, &[], dir, &opts.env)?;
        Ok(Self { proc, socket, port })
    }

    /// Waits until `spire-server healthcheck` would pass; returns the time since spawn.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let socket = self.socket.clone();
        self.proc.wait_healthy(&socket, timeout).await
    }

    /// Spawns and waits for readiness (60 s).
    pub(crate) async fn start(imp: &Implementation) -> Result<Self> {
        let mut s = Self::spawn(imp, &ServerOptions::default())?;
        s.wait_ready(Duration::from_secs(60)).await?;
        Ok(s)
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// How an agent is configured beyond the defaults.
#[derive(Debug, Default)]
pub(crate) struct AgentOptions<'a> {
    /// `join_token` in the `agent` block.
    pub(crate) join_token: Option<&'a str>,
    /// The NodeAttestor block.
    pub(crate) node_attestor: &'a str,
    /// Plugin blocks after the `unix` WorkloadAttestor.
    pub(crate) extra_plugins: &'a str,
    /// Top-level blocks (`telemetry`, `health_checks`).
    pub(crate) extra_top: &'a str,
    /// Extra environment of the agent process.
    pub(crate) env: &'a [(String, String)],
}

/// A running agent.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) proc: Proc,
    /// The Workload API socket.
    pub(crate) socket: PathBuf,
}

impl Agent {
    /// Spawns `imp`'s agent attesting with `join_token` to the server at `server_port`.
    pub(crate) fn spawn(imp: &Implementation, server_port: u16, join_token: &str) -> Result<Self> {
        Self::spawn_with(imp, server_port, join_token, "")
    }

    /// [`Agent::spawn`] with `extra_plugins` blocks after the `unix` WorkloadAttestor.
    pub(crate) fn spawn_with(
        imp: &Implementation,
        server_port: u16,
        join_token: &str,
        extra_plugins: &str,
    ) -> Result<Self> {
        Self::spawn_with_top(imp, server_port, join_token, extra_plugins, "")
    }

    /// [`Agent::spawn_with`] plus top-level blocks (`telemetry`, `health_checks`).
    pub(crate) fn spawn_with_top(
        imp: &Implementation,
        server_port: u16,
        join_token: &str,
        extra_plugins: &str,
        extra_top: &str,
    ) -> Result<Self> {
        Self::spawn_config(
            imp,
            server_port,
            &AgentOptions {
                join_token: Some(join_token),
                node_attestor: "NodeAttestor \"join_token\" {\n        plugin_data {}\n    }",
                extra_plugins,
                extra_top,
                env: &[],
            },
        )
    }

    /// Spawns `imp`'s agent attesting with `opts.node_attestor` to the server at
    /// `server_port`.
    pub(crate) fn spawn_config(
        imp: &Implementation,
        server_port: u16,
        opts: &AgentOptions<'_>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spire-bench-agent-")
            .tempdir_in(work_dir())?;
        let d = dir.path().display().to_string();
        let socket = dir.path().join("agent.sock");
        let join_token = opts
            .join_token
            .map(|t| format!("join_token = \"{t}\""))
            .unwrap_or_default();
        let conf = format!(
            r#"agent {{
    data_dir = "{d}/data"
    log_level = "WARN"
    server_address = "127.0.0.1"
    server_port = "{server_port}"
    socket_path = "{sock}"
    trust_domain = "{TRUST_DOMAIN}"
    insecure_bootstrap = true
    {join_token}
    workload_x509_svid_key_type = "ec-p256"
}}

plugins {{
    {node_attestor}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
    {extra_plugins}
}}
{extra_top}
"#,
            sock = socket.display(),
            node_attestor = opts.node_attestor,
            extra_plugins = opts.extra_plugins,
            extra_top = opts.extra_top,
        );
        let config = dir.path().join("agent.conf");
        std::fs::write(&config, conf)?;
        let proc = Proc::spawn(&imp.agent, &config, &[], dir, opts.env)?;
        Ok(Self { proc, socket })
    }

    /// Waits until `spire-agent healthcheck` would pass (the agent has attested and finished
    /// its first sync); returns the time since spawn.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let socket = self.socket.clone();
        self.proc.wait_healthy(&socket, timeout).await
    }

    /// Spawns and waits for readiness (120 s).
    pub(crate) async fn start(
        imp: &Implementation,
        server_port: u16,
        join_token: &str,
    ) -> Result<Self> {
        let mut a = Self::spawn(imp, server_port, join_token)?;
        a.wait_ready(Duration::from_secs(120)).await?;
        Ok(a)
    }
}
