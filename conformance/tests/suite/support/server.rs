//! A spire-server process of either implementation, configured on SQLite and the disk
//! KeyManager, listening on loopback and on its own socket.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Cmd, Deadline, Impl, Proc, Scenario, TD, free_port, run, tail};

/// What a scenario adds to the default server configuration.
#[derive(Debug, Default, Clone)]
pub struct ServerOpts {
    /// Lines inside `server {}`.
    pub extra_server: String,
    /// Blocks inside `plugins {}` (join_token is always there).
    pub extra_plugins: String,
    /// A `KeyManager` block in place of the default `disk` one.
    pub key_manager: Option<String>,
    /// Top-level blocks after `plugins {}` (`telemetry`, `health_checks`).
    pub extra_top: String,
    /// Extra environment of the process (e.g. `SOFTHSM2_CONF`).
    pub env: Vec<(String, String)>,
    /// The trust domain, when not [`TD`] (a second domain for federation).
    pub trust_domain: Option<String>,
    /// `(database_type, connection_string)` of the `sql` DataStore, in place of the
    /// server's own SQLite file (several servers on one database).
    pub sql: Option<(String, String)>,
    /// A file to see as `/etc/hosts` (names the system cannot resolve, such as an ACME
    /// domain on loopback): the process runs in its own mount namespace with the file
    /// bind-mounted there (`unshare`), so nothing outside it changes.
    pub hosts: Option<PathBuf>,
}

/// A server: its files, its configuration and (when started) its process.
#[derive(Debug)]
pub struct Server {
    pub imp: Impl,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub socket: PathBuf,
    pub conf: PathBuf,
    pub label: String,
    opts: ServerOpts,
    proc: Option<Proc>,
    runs: usize,
}

impl Server {
    /// Configures a server named `label` under the scenario directory (not started).
    pub fn new(sc: &Scenario, label: &str, imp: Impl, opts: ServerOpts) -> Server {
        let dir = sc.subdir(label);
        let data_dir = dir.join("data");
        let s = Server {
            imp,
            bin: imp.bin("spire-server"),
            socket: dir.join("api.sock"),
            conf: dir.join("server.conf"),
            port: free_port(),
            data_dir,
            dir,
            label: label.to_string(),
            opts,
            proc: None,
            runs: 0,
        };
        s.write_config();
        s
    }

    /// Configures and starts a server, waiting until it serves its bundle.
    pub async fn start_new(sc: &Scenario, label: &str, imp: Impl, opts: ServerOpts) -> Server {
        let mut s = Server::new(sc, label, imp, opts);
        s.start().await;
        s
    }

    /// Another implementation serving the same files (database, keys, configuration).
    pub fn switch_to(&mut self, imp: Impl) {
        assert!(self.proc.is_none(), "stop the server before switching");
        self.imp = imp;
        self.bin = imp.bin("spire-server");
    }

    pub fn write_config(&self) {
        let conf = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "{td}"
    data_dir = "{data}"
    log_level = "DEBUG"
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
{extra_top}
"#,
            extra_top = self.opts.extra_top,
            db_type = self.opts.sql.as_ref().map_or("sqlite3", |(t, _)| t.as_str()),
            db_conn = self.opts.sql.as_ref().map_or_else(
                || format!("{}/datastore.sqlite3", self.data_dir.display()),
                |(_, c)| c.clone()
            ),
            td = self.opts.trust_domain.as_deref().unwrap_or(TD),
            port = self.port,
            socket = self.socket.display(),
            data = self.data_dir.display(),
            extra_server = self.opts.extra_server,
            extra_plugins = self.opts.extra_plugins,
            key_manager = self.opts.key_manager.clone().unwrap_or_else(|| format!(
                "KeyManager \"disk\" {{\n        plugin_data {{\n            keys_path = \"{}/keys.json\"\n        }}\n    }}",
                self.data_dir.display()
            )),
        );
        std::fs::write(&self.conf, conf).expect("write server.conf");
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.join(format!("server.{run}.log"))
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.opts
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The server process (`run -config conf`), under its own `/etc/hosts` when one is
    /// set (`sh` execs the server, so the PID is the server's).
    fn spawn(&self, conf: &str) -> Proc {
        let Some(hosts) = &self.opts.hosts else {
            return Proc::spawn(
                &self.bin,
                &["run", "-config", conf],
                self.log_path(self.runs),
                &self.env(),
            );
        };
        // As root a mount namespace is enough; otherwise a user namespace maps us to root.
        let ns = if runs_as_root() { "-m" } else { "-rm" };
        let hosts = hosts.display().to_string();
        let bin = self.bin.display().to_string();
        Proc::spawn(
            Path::new("unshare"),
            &[
                ns,
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
                &hosts,
                &bin,
                "run",
                "-config",
                conf,
            ],
            self.log_path(self.runs),
            &self.env(),
        )
    }

    /// Starts the process and waits until `bundle show` answers over the socket.
    pub async fn start(&mut self) {
        assert!(self.proc.is_none(), "server {} already running", self.label);
        self.runs += 1;
        let conf = self.conf.display().to_string();
        self.proc = Some(self.spawn(&conf));
        let d = Deadline::new(
            format!("{} spire-server {} to serve", self.imp.name(), self.label),
            60,
        );
        loop {
            let out = self.cli(&["bundle", "show"]);
            if out.ok() && out.stdout.contains("BEGIN CERTIFICATE") {
                return;
            }
            if let Some(p) = self.proc.as_mut()
                && let Some(status) = p.exited()
            {
                panic!(
                    "{} spire-server {} exited with {status}:\n{}",
                    self.imp.name(),
                    self.label,
                    tail(&self.log(), 4000)
                );
            }
            d.tick(&out).await;
        }
    }

    /// Starts the process without waiting for it to serve, and waits up to `secs` for it
    /// to exit (for configurations it must refuse): its exit status.
    pub async fn run_expecting_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        assert!(self.proc.is_none(), "server {} already running", self.label);
        self.runs += 1;
        let conf = self.conf.display().to_string();
        let mut proc = self.spawn(&conf);
        let d = Deadline::new(
            format!("{} spire-server {} to exit", self.imp.name(), self.label),
            secs,
        );
        loop {
            if let Some(status) = proc.exited() {
                return status;
            }
            d.tick(tail(&self.log(), 2000)).await;
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.start().await;
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// The running process's PID.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Waits until the current run's log contains `needle`.
    pub async fn wait_log(&self, needle: &str, secs: u64) {
        let d = Deadline::new(format!("server log line {needle:?}"), secs);
        while !self.log().contains(needle) {
            d.tick(tail(&self.log(), 1500)).await;
        }
    }

    /// Every run's log, concatenated.
    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|r| std::fs::read_to_string(self.log_path(r)).unwrap_or_default())
            .collect()
    }

    /// `spire-server <args> -socketPath <socket>` (the socket flag goes last).
    pub fn cli(&self, args: &[&str]) -> Cmd {
        let socket = self.socket.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-socketPath", &socket]);
        run(&self.bin, &all, Some(&self.dir))
    }

    /// Like [`Server::cli`], failing the scenario on a non-zero exit.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.ok(),
            "{} spire-server {args:?} failed: {out}",
            self.imp.name()
        );
        out.stdout
    }

    /// `-output json`, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-output", "json"]);
        let out = self.cli_ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("spire-server {args:?}: not JSON ({e}): {out}"))
    }

    /// `token generate [-spiffeID <vanity>]`: the token.
    pub fn token(&self, vanity: Option<&str>) -> String {
        let mut args = vec!["token", "generate"];
        if let Some(v) = vanity {
            args.extend(["-spiffeID", v]);
        }
        let out = self.cli_ok(&args);
        out.lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .unwrap_or_else(|| panic!("no `Token: ` line in {out:?}"))
            .trim()
            .to_string()
    }

    /// The bundle in PEM, as `bundle show` prints it.
    pub fn bundle_pem(&self) -> String {
        self.cli_ok(&["bundle", "show"])
    }

    /// Writes the bundle for an agent to bootstrap from.
    pub fn write_bundle(&self, path: &Path) {
        std::fs::write(path, self.bundle_pem()).expect("write bundle");
    }

    /// `entry create <args>`: the new entry's ID.
    pub fn entry_create(&self, args: &[&str]) -> String {
        let mut all = vec!["entry", "create"];
        all.extend_from_slice(args);
        let out = self.cli_ok(&all);
        out.lines()
            .find_map(|l| l.strip_prefix("Entry ID         : "))
            .unwrap_or_else(|| panic!("no entry ID in {out:?}"))
            .trim()
            .to_string()
    }

    /// A workload entry: `entry create -parentID <parent> -spiffeID <id> -selector <sel>`.
    pub fn workload_entry(&self, parent: &str, spiffe_id: &str, selector: &str) -> String {
        self.entry_create(&[
            "-parentID",
            parent,
            "-spiffeID",
            spiffe_id,
            "-selector",
            selector,
        ])
    }

    /// `agent list -output json`: the agents array.
    pub fn agents(&self) -> Vec<Value> {
        self.cli_json(&["agent", "list"])["agents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The SPIFFE IDs of the attested agents.
    pub fn agent_ids(&self) -> Vec<String> {
        self.agents().iter().map(agent_id).collect()
    }

    /// `localauthority x509 show -output json`.
    pub fn x509_authorities(&self) -> Value {
        self.cli_json(&["localauthority", "x509", "show"])
    }

    /// The active X.509 authority ID.
    pub fn active_x509_authority(&self) -> String {
        self.x509_authorities()["active"]["authority_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} spire-server {} log (tail) ----\n{}",
                self.imp.name(),
                self.label,
                tail(&self.log(), 6000)
            );
        }
    }
}

/// The SPIFFE ID of an agent in `agent list -output json`.
pub fn agent_id(agent: &Value) -> String {
    format!(
        "spiffe://{}{}",
        agent["id"]["trust_domain"].as_str().unwrap_or_default(),
        agent["id"]["path"].as_str().unwrap_or_default()
    )
}

/// Whether this process runs as root (from `/proc/self/status`, without libc).
fn runs_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether a process can be given its own `/etc/hosts` here (see [`ServerOpts::hosts`]).
pub fn private_hosts_available() -> Result<(), String> {
    let ns = if runs_as_root() { "-m" } else { "-rm" };
    let out = std::process::Command::new("unshare")
        .args([ns, "sh", "-c", "mount --bind /etc/hosts /etc/hosts"])
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare {ns} cannot bind-mount /etc/hosts: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
