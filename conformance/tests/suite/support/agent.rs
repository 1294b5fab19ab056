//! A spire-agent process of either implementation, with the disk KeyManager and the unix
//! WorkloadAttestor, its Workload API on its own socket.

use std::path::PathBuf;

use serde_json::Value;

use super::{Cmd, Deadline, Impl, Proc, Scenario, Server, TD, run, tail};

/// How the agent attests.
#[derive(Debug, Clone)]
pub enum Attestor {
    /// `join_token = "<token>"`.
    JoinToken(String),
    /// `NodeAttestor "join_token"` and no token in the configuration: the token, if any,
    /// comes with `-joinToken` on the command line ([`Agent::start_with`]).
    JoinTokenFlag,
    /// x509pop with these key and certificate files.
    X509Pop { key: PathBuf, cert: PathBuf },
    /// A whole `NodeAttestor "<name>" { ... }` block (an external plugin, say).
    Block(String),
}

/// What a scenario adds to the default agent configuration.
#[derive(Debug, Default, Clone)]
pub struct AgentOpts {
    /// Serve the admin API (agent Debug) on `private/admin.sock`.
    pub admin_socket: bool,
    /// Lines inside `agent {}`.
    pub extra_agent: String,
    /// Blocks inside `plugins {}`, after the `unix` WorkloadAttestor.
    pub extra_plugins: String,
    /// A `KeyManager` block in place of the default `disk` one.
    pub key_manager: Option<String>,
    /// Top-level blocks after `plugins {}` (`telemetry`, `health_checks`).
    pub extra_top: String,
    /// Extra environment of the process (e.g. `SOFTHSM2_CONF`).
    pub env: Vec<(String, String)>,
}

/// An agent: its files, its configuration and (when started) its process.
#[derive(Debug)]
pub struct Agent {
    pub imp: Impl,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub admin_socket: Option<PathBuf>,
    pub conf: PathBuf,
    pub label: String,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
    runs: usize,
}

impl Agent {
    /// Configures an agent named `label` for `server` (not started); the bootstrap bundle
    /// is fetched from the server now.
    pub fn new(
        sc: &Scenario,
        label: &str,
        imp: Impl,
        server: &Server,
        attestor: &Attestor,
        opts: AgentOpts,
    ) -> Agent {
        let dir = sc.subdir(label);
        let data_dir = dir.join("data");
        std::fs::create_dir_all(dir.join("public")).expect("mkdir public");
        std::fs::create_dir_all(&data_dir).expect("mkdir data");
        let socket = dir.join("public/api.sock");
        let admin_socket = opts.admin_socket.then(|| {
            std::fs::create_dir_all(dir.join("private")).expect("mkdir private");
            dir.join("private/admin.sock")
        });
        let bundle = dir.join("bootstrap.pem");
        server.write_bundle(&bundle);
        let (join_token, node_attestor) = match attestor {
            Attestor::JoinToken(t) => (
                format!("join_token = \"{t}\""),
                "NodeAttestor \"join_token\" {\n        plugin_data {}\n    }".to_string(),
            ),
            Attestor::JoinTokenFlag => (
                String::new(),
                "NodeAttestor \"join_token\" {\n        plugin_data {}\n    }".to_string(),
            ),
            Attestor::Block(block) => (String::new(), block.clone()),
            Attestor::X509Pop { key, cert } => (
                String::new(),
                format!(
                    "NodeAttestor \"x509pop\" {{\n        plugin_data {{\n            private_key_path = \"{}\"\n            certificate_path = \"{}\"\n        }}\n    }}",
                    key.display(),
                    cert.display()
                ),
            ),
        };
        let admin = admin_socket
            .as_ref()
            .map(|p| format!("admin_socket_path = \"{}\"", p.display()))
            .unwrap_or_default();
        let conf = dir.join("agent.conf");
        std::fs::write(
            &conf,
            format!(
                r#"agent {{
    data_dir = "{data}"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "{port}"
    socket_path = "{socket}"
    trust_bundle_path = "{bundle}"
    trust_domain = "{TD}"
    {join_token}
    {admin}
    {extra}
}}

plugins {{
    {node_attestor}
    {key_manager}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
    {extra_plugins}
}}
{extra_top}
"#,
                extra_top = opts.extra_top,
                data = data_dir.display(),
                port = server.port,
                socket = socket.display(),
                bundle = bundle.display(),
                extra = opts.extra_agent,
                extra_plugins = opts.extra_plugins,
                key_manager = opts.key_manager.clone().unwrap_or_else(|| format!(
                    "KeyManager \"disk\" {{\n        plugin_data {{\n            directory = \"{}\"\n        }}\n    }}",
                    data_dir.display()
                )),
            ),
        )
        .expect("write agent.conf");
        Agent {
            imp,
            bin: imp.bin("spire-agent"),
            dir,
            data_dir,
            socket,
            admin_socket,
            conf,
            label: label.to_string(),
            env: opts.env,
            proc: None,
            runs: 0,
        }
    }

    /// Configures and starts an agent, waiting until it is healthy.
    pub async fn start_new(
        sc: &Scenario,
        label: &str,
        imp: Impl,
        server: &Server,
        attestor: &Attestor,
        opts: AgentOpts,
    ) -> Agent {
        let mut a = Agent::new(sc, label, imp, server, attestor, opts);
        a.start();
        a.wait_healthy().await;
        a
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.join(format!("agent.{run}.log"))
    }

    /// Starts the process (without waiting).
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts the process with extra `run` flags (e.g. `-joinToken T`), without waiting.
    pub fn start_with(&mut self, flags: &[&str]) {
        assert!(self.proc.is_none(), "agent {} already running", self.label);
        self.runs += 1;
        let conf = self.conf.display().to_string();
        let mut args = vec!["run", "-config", &conf];
        args.extend_from_slice(flags);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.proc = Some(Proc::spawn(
            &self.bin,
            &args,
            self.log_path(self.runs),
            &env,
        ));
    }

    /// SIGKILL (no chance to clean up) and wait.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill_group();
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Waits until `spire-agent healthcheck` passes.
    pub async fn wait_healthy(&mut self) {
        let d = Deadline::new(
            format!(
                "{} spire-agent {} to be healthy",
                self.imp.name(),
                self.label
            ),
            60,
        );
        loop {
            let out = self.cli_socket(&["healthcheck"]);
            if out.ok() {
                return;
            }
            if let Some(p) = self.proc.as_mut()
                && let Some(status) = p.exited()
            {
                panic!(
                    "{} spire-agent {} exited with {status}:\n{}",
                    self.imp.name(),
                    self.label,
                    tail(&self.log(), 4000)
                );
            }
            d.tick(&out).await;
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let d = Deadline::new(
            format!("{} spire-agent {} to exit", self.imp.name(), self.label),
            secs,
        );
        loop {
            if let Some(p) = self.proc.as_mut()
                && let Some(status) = p.exited()
            {
                self.proc = None;
                return status;
            }
            d.tick("still running").await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// Counts a run started elsewhere (inside a container, say): the path its log is to be
    /// written to, which [`Agent::log`] then reads.
    pub fn external_run(&mut self) -> PathBuf {
        self.runs += 1;
        self.log_path(self.runs)
    }

    /// The running process's PID.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// The log of the current (last) run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default()
    }

    /// Every run's log, concatenated.
    pub fn all_logs(&self) -> String {
        (1..=self.runs)
            .map(|r| std::fs::read_to_string(self.log_path(r)).unwrap_or_default())
            .collect()
    }

    /// Waits until the current run's log contains `needle`.
    pub async fn wait_log(&self, needle: &str, secs: u64) {
        let d = Deadline::new(format!("agent log line {needle:?}"), secs);
        while !self.log().contains(needle) {
            d.tick(tail(&self.log(), 1500)).await;
        }
    }

    /// `spire-agent <args>` (no socket flag).
    pub fn cli(&self, args: &[&str]) -> Cmd {
        run(&self.bin, args, Some(&self.dir))
    }

    /// `spire-agent <args> -socketPath <public socket>`.
    pub fn cli_socket(&self, args: &[&str]) -> Cmd {
        let socket = self.socket.display().to_string();
        let mut all = args.to_vec();
        all.extend(["-socketPath", &socket]);
        self.cli(&all)
    }

    /// `api fetch x509 -output json`, parsed; `Err` with the output on failure.
    pub fn fetch_x509_json(&self) -> Result<Value, String> {
        let out = self.cli_socket(&["api", "fetch", "x509", "-output", "json", "-timeout", "5s"]);
        if !out.ok() {
            return Err(out.to_string());
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("not JSON ({e}): {out}"))
    }

    /// The SPIFFE IDs `api fetch x509` returns.
    pub fn fetch_x509_ids(&self) -> Result<Vec<String>, String> {
        let v = self.fetch_x509_json()?;
        Ok(v["svids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["spiffe_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until `api fetch x509` returns an SVID for `spiffe_id`; returns that SVID
    /// (the JSON object: `spiffe_id`, `x509_svid`, `x509_svid_key`, `bundle`).
    pub async fn wait_x509(&self, spiffe_id: &str, secs: u64) -> Value {
        let d = Deadline::new(
            format!(
                "{} spire-agent '{}' to serve an X509-SVID for {spiffe_id}",
                self.imp.name(),
                self.label
            ),
            secs,
        );
        loop {
            let last = match self.fetch_x509_json() {
                Ok(v) => {
                    if let Some(s) = v["svids"]
                        .as_array()
                        .and_then(|a| a.iter().find(|s| s["spiffe_id"] == spiffe_id))
                    {
                        return s.clone();
                    }
                    format!("svids: {}", v["svids"].as_array().map_or(0, Vec::len))
                }
                Err(e) => e,
            };
            d.tick(last).await;
        }
    }

    /// Waits until `api fetch x509` no longer returns an SVID for `spiffe_id`.
    pub async fn wait_no_x509(&self, spiffe_id: &str, secs: u64) {
        let d = Deadline::new(
            format!("agent {} to stop serving {spiffe_id}", self.label),
            secs,
        );
        loop {
            match self.fetch_x509_ids() {
                Ok(ids) if ids.iter().any(|i| i == spiffe_id) => d.tick("still served").await,
                _ => return,
            }
        }
    }

    /// `unix://<socket>` for Workload API clients.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} spire-agent {} log (tail) ----\n{}",
                self.imp.name(),
                self.label,
                tail(&self.all_logs(), 6000)
            );
        }
    }
}
