//! Test fixtures: the REFERENCE spire-server 1.13.3 and OUR spire-agent binary, each on
//! temporary directories and loopback ports, plus Workload API clients.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// The reference binaries' directory, found through the repo's scripts.
pub fn ref_bin_dir() -> PathBuf {
    spire_testsupport::require_reference_bin_dir()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A reference spire-server.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub socket: PathBuf,
    bin: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    runs: usize,
}

impl Server {
    /// Starts a server; `extra_server` goes into `server {}`, `extra_plugins` into
    /// `plugins {}`.
    pub fn start(extra_server: &str, extra_plugins: &str) -> Server {
        Self::start_on(free_port(), extra_server, extra_plugins)
    }

    /// Starts a server on `port` (a second server with its own CA on the first one's
    /// port stands for a server whose CA changed).
    pub fn start_on(port: u16, extra_server: &str, extra_plugins: &str) -> Server {
        let bin = ref_bin_dir().join("spire-server");
        let dir = tempfile::Builder::new()
            .prefix("srv")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("api.sock");
        let data = dir.path().join("data");
        let conf = dir.path().join("server.conf");
        std::fs::write(
            &conf,
            format!(
                r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "example.org"
    data_dir = "{data}"
    log_level = "DEBUG"
    {extra_server}
}}
plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = "{data}/datastore.sqlite3"
        }}
    }}
    KeyManager "disk" {{
        plugin_data {{ keys_path = "{data}/keys.json" }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    {extra_plugins}
}}
"#,
                socket = socket.display(),
                data = data.display(),
            ),
        )
        .unwrap();
        let mut s = Server {
            dir,
            port,
            socket,
            bin,
            conf,
            child: None,
            runs: 0,
        };
        s.run();
        s
    }

    fn run(&mut self) {
        self.runs += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("server{}.log", self.runs)))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("-config")
            .arg(&self.conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let ok = Command::new(&self.bin)
                .args(["healthcheck", "-socketPath"])
                .arg(&self.socket)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "reference server did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("-socketPath")
            .arg(&self.socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spire-server {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn token(&self) -> String {
        let out = self.cli(&["token", "generate"]);
        out.lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn bundle_path(&self) -> PathBuf {
        let p = self.dir.path().join("bundle.pem");
        std::fs::write(&p, self.cli(&["bundle", "show"])).unwrap();
        p
    }

    /// Creates an entry; returns its ID.
    pub fn entry(&self, parent: &str, id: &str, selector: &str) -> String {
        let out = self.cli(&[
            "entry",
            "create",
            "-parentID",
            parent,
            "-spiffeID",
            id,
            "-selector",
            selector,
        ]);
        out.lines()
            .find_map(|l| l.strip_prefix("Entry ID         : "))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn delete_entry(&self, id: &str) {
        self.cli(&["entry", "delete", "-entryID", id]);
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        for i in 1..=self.runs {
            s += &std::fs::read_to_string(self.dir.path().join(format!("server{i}.log")))
                .unwrap_or_default();
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Our spire-agent binary (or the reference one).
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub admin_socket: PathBuf,
    pub data_dir: PathBuf,
    conf: PathBuf,
    bin: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    runs: usize,
}

pub fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").unwrap().uid()
}

impl Agent {
    /// Writes agent.conf with `node_attestor` (a `NodeAttestor` block) and `extra_agent`
    /// lines; does not start.
    pub fn new(server: &Server, extra_agent: &str, node_attestor: &str) -> Agent {
        let bootstrap = format!("trust_bundle_path = \"{}\"", server.bundle_path().display());
        Self::with_bootstrap(server, &bootstrap, extra_agent, node_attestor)
    }

    /// Like [`Agent::new`] with `bootstrap` (`trust_bundle_path = ...`,
    /// `insecure_bootstrap = true`, `trust_bundle_url = ...`) in place of the bundle path.
    pub fn with_bootstrap(
        server: &Server,
        bootstrap: &str,
        extra_agent: &str,
        node_attestor: &str,
    ) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("agt")
            .tempdir_in("/tmp")
            .unwrap();
        // SPIRE refuses an admin socket under the Workload API socket's directory.
        let socket = dir.path().join("public/api.sock");
        let admin_socket = dir.path().join("admin/admin.sock");
        let data_dir = dir.path().join("data");
        let conf = dir.path().join("agent.conf");
        std::fs::write(
            &conf,
            format!(
                r#"agent {{
    data_dir = "{data}"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "{port}"
    socket_path = "{socket}"
    {bootstrap}
    trust_domain = "example.org"
    {extra_agent}
}}
plugins {{
    {node_attestor}
    KeyManager "disk" {{
        plugin_data {{ directory = "{data}" }}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
}}
"#,
                data = data_dir.display(),
                port = server.port,
                socket = socket.display(),
            ),
        )
        .unwrap();
        Agent {
            dir,
            socket,
            admin_socket,
            data_dir,
            conf,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_spire-agent")),
            env: Vec::new(),
            child: None,
            runs: 0,
        }
    }

    /// Replaces `from` with `to` in agent.conf (before the next start).
    pub fn edit_conf(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.conf).unwrap();
        assert!(text.contains(from), "agent.conf lacks {from:?}:\n{text}");
        std::fs::write(&self.conf, text.replace(from, to)).unwrap();
    }

    /// Runs the reference spire-agent instead of ours.
    pub fn reference(mut self) -> Agent {
        self.bin = ref_bin_dir().join("spire-agent");
        self
    }

    /// Sets an environment variable for the agent process.
    pub fn env(mut self, key: &str, value: &str) -> Agent {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn start(&mut self) {
        self.runs += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("agent{}.log", self.runs))).unwrap();
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("-config")
            .arg(&self.conf)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The exit status, once the process has exited.
    pub fn wait_exit_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// The agent's data file.
    pub fn data(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.data_dir.join("agent-data.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The log of the current run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("agent{}.log", self.runs)))
            .unwrap_or_default()
    }

    /// Waits until the log holds more than `seen` lines containing `needle`.
    pub fn wait_log_more(&self, needle: &str, seen: usize, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().matches(needle).count() > seen {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "agent log has no new {needle:?} after {timeout:?}:\n{}",
            self.log()
        );
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "agent log lacks {needle:?} after {timeout:?}:\n{}",
            self.log()
        );
    }

    /// Waits for the process to exit; returns whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tonic channel over the UNIX socket at `path`.
pub async fn uds_channel(path: PathBuf) -> Channel {
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

/// Our own Workload API client (the generated client over the Unix socket, with the
/// security header).
pub async fn own_client(
    socket: PathBuf,
) -> SpiffeWorkloadApiClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
    >,
> {
    let path = socket;
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap();
    SpiffeWorkloadApiClient::with_interceptor(channel, |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("workload.spiffe.io", "true".parse().unwrap());
        Ok(req)
    })
}

/// Fetches the first X509-SVID with the crates.io `spiffe` client.
pub async fn spiffe_fetch(socket: &Path) -> Result<spiffe::X509Svid, String> {
    let client = spiffe::WorkloadApiClient::connect_to(format!("unix://{}", socket.display()))
        .await
        .map_err(|e| format!("{e:?}"))?;
    client.fetch_x509_svid().await.map_err(|e| format!("{e:?}"))
}

/// x509pop material: a CA (for the server) and a node certificate and key (for the agent).
pub fn x509pop_material(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "x509pop test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let node_key = KeyPair::generate().unwrap();
    let mut node_params = CertificateParams::new(vec![]).unwrap();
    node_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "node-1");
    node_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let node = node_params.signed_by(&node_key, &issuer).unwrap();
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("node.pem");
    let key_path = dir.join("node.key");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, node.pem()).unwrap();
    std::fs::write(&key_path, node_key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

/// The server-side x509pop plugin block for `ca`.
pub fn x509pop_server(ca: &Path) -> String {
    format!(
        "NodeAttestor \"x509pop\" {{\n plugin_data {{ ca_bundle_path = \"{}\" }}\n }}",
        ca.display()
    )
}

/// The agent-side x509pop plugin block.
pub fn x509pop_agent(cert: &Path, key: &Path) -> String {
    format!(
        "NodeAttestor \"x509pop\" {{\n plugin_data {{\n private_key_path = \"{}\"\n certificate_path = \"{}\"\n }}\n }}",
        key.display(),
        cert.display()
    )
}
