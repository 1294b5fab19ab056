//! The harness: which implementation is under test, where its binaries are, and one
//! isolated scenario (temp dir, loopback ports, socket paths, processes killed on drop).
//!
//! Nothing here links the implementation under test: servers and agents are processes,
//! driven through their CLI, their sockets, their log lines and the files they write.

#![allow(dead_code, unreachable_pub)]

pub mod agent;
pub mod containers;
pub mod k8s;
pub mod pki;
pub mod server;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use agent::{Agent, AgentOpts, Attestor};
pub use server::{Server, ServerOpts};

/// The trust domain of every scenario.
pub const TD: &str = "example.org";

/// An implementation of SPIRE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Reference SPIRE 1.13.3 (Go).
    Reference,
    /// Our binaries.
    SpireRs,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Reference => "reference",
            Impl::SpireRs => "spire-rs",
        }
    }

    fn parse(var: &str, value: &str) -> Impl {
        match value {
            "reference" | "ref" | "spire" => Impl::Reference,
            "spire-rs" | "ours" | "rs" => Impl::SpireRs,
            other => panic!("{var}={other:?}: expected \"spire-rs\" or \"reference\""),
        }
    }

    /// The path of this implementation's `spire-server` or `spire-agent`.
    pub fn bin(self, name: &str) -> PathBuf {
        let dir = match self {
            Impl::Reference => reference_bin_dir().clone(),
            Impl::SpireRs => spire_rs_bin_dir(),
        };
        let path = dir.join(name);
        assert!(
            path.is_file(),
            "{} binary {name} not found at {}: {}",
            self.name(),
            path.display(),
            match self {
                Impl::SpireRs =>
                    "build it first (`cargo build -p spire-server -p spire-agent -p spire-oidc-discovery-provider`) or point SPIRE_RS_BIN_DIR at a directory holding it",
                Impl::Reference =>
                    "run conformance/build-reference.sh or point SPIRE_REF_BIN_DIR at a directory holding it",
            }
        );
        path
    }
}

fn env_impl(var: &str) -> Option<Impl> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| Impl::parse(var, &v))
}

/// `SUBJECT` (default `spire-rs`).
pub fn subject() -> Impl {
    env_impl("SUBJECT").unwrap_or(Impl::SpireRs)
}

/// The server under test: `SERVER_SUBJECT`, else `SUBJECT`.
pub fn server_subject() -> Impl {
    env_impl("SERVER_SUBJECT").unwrap_or_else(subject)
}

/// The agent under test: `AGENT_SUBJECT`, else `SUBJECT`.
pub fn agent_subject() -> Impl {
    env_impl("AGENT_SUBJECT").unwrap_or_else(subject)
}

/// The workspace root (the parent of `conformance/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Our binaries: `SPIRE_RS_BIN_DIR`, else `$CARGO_TARGET_DIR/debug`, else
/// `<workspace>/target/debug`. Building them is the caller's job.
pub fn spire_rs_bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SPIRE_RS_BIN_DIR")
        && !d.is_empty()
    {
        return PathBuf::from(d);
    }
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR")
        && !d.is_empty()
    {
        let p = PathBuf::from(d);
        let p = if p.is_absolute() {
            p
        } else {
            workspace_root().join(p)
        };
        return p.join("debug");
    }
    workspace_root().join("target/debug")
}

/// Reference SPIRE's binaries, found through the repo's scripts (`SPIRE_REF_BIN_DIR`, else
/// what `conformance/build-reference.sh` prints; it builds once into a cache).
pub fn reference_bin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(spire_testsupport::require_reference_bin_dir)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    // A port is free only until someone binds it: never hand out the same one twice in
    // this process, or two listeners of one scenario (chosen before either binds) collide.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// This process's uid: every workload of the suite is this process or its children.
pub fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

/// The unix selector matching this process and its children.
pub fn uid_selector() -> String {
    format!("unix:uid:{}", uid())
}

/// The `type:value` selectors of an agent as `agent list -output json` shows it.
pub fn agent_selectors(listed: &serde_json::Value) -> Vec<String> {
    listed["selectors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    format!(
                        "{}:{}",
                        s["type"].as_str().unwrap_or_default(),
                        s["value"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `spiffe://example.org<path>`.
pub fn id(path: &str) -> String {
    format!("spiffe://{TD}{path}")
}

/// One scenario's directory: every server and agent of the scenario lives below it. Kept
/// after a failure (and always with `SPIRE_CONFORMANCE_KEEP=1`) for inspection.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scenario {
    /// A new scenario with a directory of its own (every scenario is `#[ignore]`d by a plain
    /// `cargo test`; `conformance/run.sh` runs them, once per pairing).
    pub fn new(name: &str) -> Scenario {
        // Short paths: UNIX socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("spcf-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let path = dir.path().to_path_buf();
        eprintln!(
            "scenario {name}: server={} agent={} dir={}",
            server_subject().name(),
            agent_subject().name(),
            path.display()
        );
        Scenario {
            name: name.to_string(),
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new subdirectory.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).expect("create scenario subdir");
        p
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || std::env::var("SPIRE_CONFORMANCE_KEEP").is_ok_and(|v| v == "1");
        if keep && let Some(dir) = self.dir.take() {
            let kept = dir.keep();
            eprintln!("scenario {}: files kept in {}", self.name, kept.display());
        } else if let Some(dir) = &self.dir {
            unmount_under(dir.path());
        }
    }
}

/// Lazily unmounts whatever is still mounted under `dir` (deepest first), so that the
/// directory can be removed: a container engine's CLI may mount its storage again after
/// the engine was stopped (podman binds its overlay directory onto itself).
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_unstable_by(|a, b| b.cmp(a));
    for m in points {
        let _ = Command::new("umount").args(["-l", m]).output();
    }
}

/// A deadline for polling a condition; `tick` fails the scenario once it has passed.
#[derive(Debug)]
pub struct Deadline {
    what: String,
    start: Instant,
    end: Instant,
}

impl Deadline {
    pub fn new(what: impl Into<String>, secs: u64) -> Deadline {
        let start = Instant::now();
        Deadline {
            what: what.into(),
            start,
            end: start + Duration::from_secs(secs),
        }
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.end
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Sleeps a little, or fails with `last` (the last observation) once expired.
    pub async fn tick(&self, last: impl std::fmt::Display) {
        assert!(
            !self.expired(),
            "timed out after {:?} waiting for {}; last observation: {last}",
            self.end - self.start,
            self.what
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub async fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let d = Deadline::new(what, secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => d.tick(last).await,
        }
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Cmd {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Cmd {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Everything the command printed.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] stdout: {:?} stderr: {:?}",
            self.status,
            tail(&self.stdout, 1500),
            tail(&self.stderr, 1500)
        )
    }
}

/// A `KEY=value` file written by a setup script (`cluster.env`, `engine.env`), values
/// possibly single-quoted; empty when the file is missing.
pub fn parse_env_file(path: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// Runs a command to completion (stdin closed).
pub fn run(bin: &Path, args: &[&str], cwd: Option<&Path>) -> Cmd {
    let mut c = Command::new(bin);
    c.args(args).stdin(Stdio::null());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    Cmd {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The last `n` bytes of `s` (at a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// A child process whose stdout and stderr go to a log file; killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(bin: &Path, args: &[&str], log: PathBuf, env: &[(&str, &str)]) -> Proc {
        let file = std::fs::File::create(&log).expect("create log file");
        let err = file.try_clone().expect("clone log file");
        let mut c = Command::new(bin);
        c.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        // Its own process group, so that a kill also ends the plugin processes it started
        // (a SIGKILLed spire-rs host cannot end them itself; SPIRE's die by Pdeathsig).
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        // Plugins put their go-plugin sockets in TMPDIR; a killed plugin leaves its socket
        // behind, so keep them in the scenario's directory, which goes with it.
        if let Some(dir) = log.parent() {
            c.env("TMPDIR", dir);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Proc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_group();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL to the process and every plugin process it started (its process group).
    pub fn kill_group(&self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_group();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the optional independent clients (py-spiffe, go-spiffe) must be present.
pub fn clients_required() -> bool {
    std::env::var("SPIRE_RS_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

/// Reports a missing optional client: a failure with `SPIRE_RS_REQUIRE_CLIENTS=1`, else a
/// printed skip (see [`skip`]).
pub fn client_unavailable(sc: &Scenario, what: &str, why: &str) {
    assert!(
        !clients_required(),
        "{what} is unavailable and SPIRE_RS_REQUIRE_CLIENTS=1: {why}"
    );
    skip(
        sc,
        &format!("{what} is unavailable ({why}); set SPIRE_RS_REQUIRE_CLIENTS=1 to fail instead"),
    );
}

/// Skips the rest of a scenario visibly: prints `SKIPPED <name>: <why>` and, when
/// `SPIRE_CONFORMANCE_SKIP_FILE` is set, records the scenario there so the results file
/// reports it as skipped rather than passed.
pub fn skip(sc: &Scenario, why: &str) {
    eprintln!("SKIPPED {}: {why}", sc.name);
    if let Ok(f) = std::env::var("SPIRE_CONFORMANCE_SKIP_FILE")
        && !f.is_empty()
    {
        use std::io::Write as _;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
        {
            let _ = writeln!(file, "{}\t{why}", sc.name);
        }
    }
}

/// A SPIFFE ID in the CLI's JSON (`{"trust_domain": ..., "path": ...}`) as a string.
pub fn json_id(v: &serde_json::Value) -> String {
    format!(
        "spiffe://{}{}",
        v["trust_domain"].as_str().unwrap_or_default(),
        v["path"].as_str().unwrap_or_default()
    )
}

/// A server and one agent attested with a join token: `(server, agent, agent ID)`.
pub async fn join_token_pair(
    sc: &Scenario,
    server_imp: Impl,
    agent_imp: Impl,
    server_opts: ServerOpts,
    agent_opts: AgentOpts,
) -> (Server, Agent, String) {
    let server = Server::start_new(sc, "server", server_imp, server_opts).await;
    let token = server.token(None);
    let agent = Agent::start_new(
        sc,
        "agent",
        agent_imp,
        &server,
        &Attestor::JoinToken(token.clone()),
        agent_opts,
    )
    .await;
    (
        server,
        agent,
        id(&format!("/spire/agent/join_token/{token}")),
    )
}

/// The server plugin block trusting `ca` for x509pop (external_pki mode).
pub fn x509pop_server_plugin(ca: &Path) -> String {
    format!(
        "NodeAttestor \"x509pop\" {{\n        plugin_data {{\n            ca_bundle_path = \"{}\"\n        }}\n    }}",
        ca.display()
    )
}

/// A server and one agent attested with x509pop (external_pki): `(server, agent, node)`.
pub async fn x509pop_pair(
    sc: &Scenario,
    server_imp: Impl,
    agent_imp: Impl,
    mut server_opts: ServerOpts,
    agent_opts: AgentOpts,
) -> (Server, Agent, pki::NodeCert) {
    let ca = pki::NodeCa::new(&sc.subdir("pki"));
    let node = ca.node("node1", "test");
    server_opts.extra_plugins += &x509pop_server_plugin(&ca.ca_path);
    let server = Server::start_new(sc, "server", server_imp, server_opts).await;
    let agent = Agent::start_new(
        sc,
        "agent",
        agent_imp,
        &server,
        &node.attestor(),
        agent_opts,
    )
    .await;
    (server, agent, node)
}

/// Waits until the server lists `agent_id` among attested agents; returns its JSON.
pub async fn wait_agent_listed(server: &Server, agent_id: &str, secs: u64) -> serde_json::Value {
    let d = Deadline::new(format!("server to list agent {agent_id}"), secs);
    loop {
        let agents = server.agents();
        if let Some(a) = agents.iter().find(|a| server::agent_id(a) == agent_id) {
            return a.clone();
        }
        d.tick(format!("{:?}", server.agent_ids())).await;
    }
}

/// Checks an SVID from `api fetch x509 -output json`: its leaf names `spiffe_id`, and it
/// chains to an authority of the bundle delivered with it. Returns the leaf's facts.
pub fn check_svid_json(svid: &serde_json::Value, spiffe_id: &str) -> pki::CertFacts {
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    let bundle = pki::split_der(&pki::b64(svid["bundle"].as_str().unwrap_or_default()));
    assert!(!chain.is_empty(), "empty X509-SVID chain: {svid}");
    let leaf = pki::facts(&chain[0]);
    assert_eq!(leaf.uris, vec![spiffe_id.to_string()], "leaf URI SANs");
    assert!(!leaf.is_ca, "leaf must not be a CA");
    let top = pki::facts(chain.last().expect("chain"));
    let skids: Vec<String> = bundle.iter().map(|c| pki::facts(c).skid).collect();
    assert!(
        skids.contains(&top.akid) || skids.contains(&top.skid),
        "SVID chain does not lead to the bundle: chain top AKID {} not in bundle {skids:?}",
        top.akid
    );
    leaf
}
