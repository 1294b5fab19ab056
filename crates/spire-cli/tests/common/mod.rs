//! Differential-test harness: reference SPIRE 1.13.3 binaries, a reference
//! server (and agent) on a temporary directory, and side-by-side runs of the
//! reference CLI and ours.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spire_goflag::{Cli, Io};

/// Where the reference binaries are, found through the repo's scripts.
pub fn ref_bin_dir() -> PathBuf {
    spire_testsupport::require_reference_bin_dir()
}

pub fn ref_server_bin() -> PathBuf {
    ref_bin_dir().join("spire-server")
}

pub fn ref_agent_bin() -> PathBuf {
    ref_bin_dir().join("spire-agent")
}

/// What a command printed and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// A command line written as it would be typed: its words, split at white space (cases
/// whose arguments contain spaces or are empty are written as arrays).
pub fn args(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// [`args`] followed by `tail` (paths and other values computed by the test).
pub fn args_with<'a>(line: &'a str, tail: &[&'a str]) -> Vec<&'a str> {
    let mut v = args(line);
    v.extend_from_slice(tail);
    v
}

/// One `#[test]` per area of a differential suite, each calling `$run(name, area)`, where
/// the name is the test's with spaces; ignored unless reference SPIRE is there
/// (`scripts/test.sh` runs them).
#[allow(unused_macros, reason = "only the area-split suites use it")]
macro_rules! area_tests {
    ($run:path; $($name:ident => $area:expr),* $(,)?) => {
        $(
            #[test]
            #[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
            fn $name() {
                $run(&stringify!($name).replace('_', " "), $area);
            }
        )*
    };
}

/// Runs a reference binary.
pub fn run_ref(bin: &Path, args: &[&str], stdin: &[u8]) -> Out {
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(std::env::current_dir().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    {
        let mut sin = child.stdin.take().unwrap();
        let _ = sin.write_all(stdin);
    }
    let out = child.wait_with_output().unwrap();
    Out {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Runs our CLI in-process.
pub fn run_cli(cli: &Cli, args: &[&str], stdin: &[u8]) -> Out {
    let mut input = stdin;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let outcome = {
        let mut io = Io {
            stdin: &mut input,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        cli.run(args, &mut io)
    };
    Out {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        code: outcome.code,
    }
}

/// A stand-in for the binaries' own commands so that command lists match.
pub struct Plain(pub &'static str);

impl spire_goflag::Command for Plain {
    fn synopsis(&self) -> String {
        self.0.to_owned()
    }
    fn help(&self, _io: &mut Io<'_>) -> String {
        String::new()
    }
    fn run(&self, _args: &[String], _io: &mut Io<'_>) -> i32 {
        0
    }
}

pub fn our_server_cli() -> Cli {
    spire_cli::server_cli_with_version(
        "1.13.3-dev-unk",
        vec![
            (vec!["run".into()], Box::new(Plain("Runs the server"))),
            (
                vec!["validate".into()],
                Box::new(Plain("Validates a SPIRE server configuration file")),
            ),
        ],
    )
}

pub fn our_agent_cli() -> Cli {
    spire_cli::agent_cli_with_version(
        "1.13.3-dev-unk",
        vec![
            (vec!["run".into()], Box::new(Plain("Runs the agent"))),
            (
                vec!["validate".into()],
                Box::new(Plain("Validates a SPIRE agent configuration file")),
            ),
        ],
    )
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A reference agent's configuration (memory KeyManager, unix WorkloadAttestor, insecure
/// bootstrap to the server on loopback `port`), attesting with `attestor` (an HCL
/// NodeAttestor block) and, if given, `join_token`.
pub fn agent_conf(
    dir: &str,
    port: u16,
    socket: &str,
    join_token: Option<&str>,
    attestor: &str,
) -> String {
    let token = join_token.map_or(String::new(), |t| format!("join_token = \"{t}\""));
    format!(
        r#"agent {{
    data_dir = "{dir}/data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "example.org"
    insecure_bootstrap = true
    {token}
}}
plugins {{
    {attestor}
    KeyManager "memory" {{ plugin_data {{}} }}
    WorkloadAttestor "unix" {{ plugin_data {{}} }}
}}
"#
    )
}

/// Writes `conf` to `dir/<name>.conf` (creating `dir/data`) and starts `bin run -config` on
/// it, its output going to `dir/<name>.log`.
pub fn spawn_with_conf(bin: &Path, dir: &Path, name: &str, conf: &str) -> Child {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let conf_path = dir.join(format!("{name}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(bin)
        .arg("run")
        .arg("-config")
        .arg(&conf_path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Whether the server or agent on `socket` answers `bin healthcheck`.
pub fn healthy(bin: &Path, socket: &str) -> bool {
    Path::new(socket).exists()
        && run_ref(bin, &["healthcheck", "-socketPath", socket], b"").code == 0
}

/// A test server's configuration (SQLite in `dir`, memory KeyManager, join_token; loopback
/// `port`; admin `socket`), with `extra_plugins` (HCL plugin blocks) added to `plugins { }`.
/// Reference and our server read the same text.
pub fn server_conf(dir: &str, port: u16, socket: &str, extra_plugins: &str) -> String {
    format!(
        r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "example.org"
    data_dir = "{dir}/data"
    log_level = "DEBUG"
    ca_ttl = "24h"
    default_x509_svid_ttl = "1h"
}}
plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = "{dir}/data/datastore.sqlite3"
        }}
    }}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
{extra_plugins}}}
"#
    )
}

/// A reference spire-server on a temporary directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub socket: String,
    pub port: u16,
    child: Child,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("sc")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display().to_string();
        let socket = format!("{d}/api.sock");
        let port = free_port();
        let conf = server_conf(&d, port, &socket, "");
        let child = spawn_with_conf(&ref_server_bin(), dir.path(), "server", &conf);
        let server = Server {
            dir,
            socket,
            port,
            child,
        };
        wait_until("the reference server", Duration::from_secs(60), || {
            healthy(&ref_server_bin(), &server.socket)
        });
        server
    }

    /// Runs the reference server CLI against this server (`-socketPath`
    /// appended).
    pub fn cli(&self, args: &[&str]) -> Out {
        let mut v: Vec<&str> = args.to_vec();
        v.push("-socketPath");
        v.push(&self.socket);
        run_ref(&ref_server_bin(), &v, b"")
    }

    /// Starts a reference agent attested with a fresh join token.
    pub fn start_agent(&self) -> Agent {
        let out = self.cli(&["token", "generate", "-ttl", "600"]);
        assert_eq!(out.code, 0, "{out:?}");
        let token = out
            .stdout
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("Token: "))
            .unwrap()
            .to_owned();
        let dir = tempfile::Builder::new()
            .prefix("ag")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display().to_string();
        let socket = format!("{d}/agent.sock");
        let conf = agent_conf(
            &d,
            self.port,
            &socket,
            Some(&token),
            "NodeAttestor \"join_token\" { plugin_data {} }",
        );
        let child = spawn_with_conf(&ref_agent_bin(), dir.path(), "agent", &conf);
        let agent = Agent {
            dir,
            socket,
            id: format!("spiffe://example.org/spire/agent/join_token/{token}"),
            child,
        };
        wait_until("the reference agent", Duration::from_secs(60), || {
            healthy(&ref_agent_bin(), &agent.socket)
        });
        agent
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reference spire-agent.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub socket: String,
    pub id: String,
    child: Child,
}

impl Agent {
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Collects mismatches between the reference CLI and ours.
pub struct Diff {
    pub failures: Vec<String>,
    pub count: usize,
    /// JSON cases whose text (not value) differs; informational.
    pub json_text_diffs: Vec<String>,
}

impl Default for Diff {
    fn default() -> Self {
        Self::new()
    }
}

/// With `SPIRE_CLI_DIFF_SHOW` set, prints every case's output of ours.
fn trace(name: &str, ours: &Out) {
    if std::env::var_os("SPIRE_CLI_DIFF_SHOW").is_some() {
        eprintln!(
            "=== {name}\n--- stdout\n{}--- stderr\n{}--- exit {}",
            ours.stdout, ours.stderr, ours.code
        );
    }
}

fn show(label: &str, a: &str, b: &str) -> String {
    format!("  {label}:\n    reference: {a:?}\n    ours:      {b:?}\n")
}

impl Diff {
    pub fn new() -> Diff {
        Diff {
            failures: Vec::new(),
            count: 0,
            json_text_diffs: Vec::new(),
        }
    }

    /// Compares byte for byte after `norm`.
    pub fn same(&mut self, name: &str, reference: &Out, ours: &Out, norm: &dyn Fn(&str) -> String) {
        self.count += 1;
        trace(name, ours);
        let mut msg = String::new();
        let (rs, os) = (norm(&reference.stdout), norm(&ours.stdout));
        if rs != os {
            msg.push_str(&show("stdout", &rs, &os));
        }
        let (re, oe) = (norm(&reference.stderr), norm(&ours.stderr));
        if re != oe {
            msg.push_str(&show("stderr", &re, &oe));
        }
        if reference.code != ours.code {
            msg.push_str(&format!(
                "  exit code: reference {} ours {}\n",
                reference.code, ours.code
            ));
        }
        if !msg.is_empty() {
            self.failures.push(format!("{name}\n{msg}"));
        }
    }

    /// Compares standard output as JSON values (after `norm` on the parsed
    /// value), the rest byte for byte.
    pub fn same_json(
        &mut self,
        name: &str,
        reference: &Out,
        ours: &Out,
        norm: &dyn Fn(&mut serde_json::Value),
    ) {
        self.count += 1;
        trace(name, ours);
        let mut msg = String::new();
        let parse = |s: &str| -> Result<serde_json::Value, String> {
            if s.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            serde_json::from_str(s).map_err(|e| format!("{e}: {s:?}"))
        };
        if reference.stdout != ours.stdout {
            self.json_text_diffs.push(name.to_owned());
        }
        match (parse(&reference.stdout), parse(&ours.stdout)) {
            (Ok(mut r), Ok(mut o)) => {
                norm(&mut r);
                norm(&mut o);
                if r != o {
                    msg.push_str(&show("stdout json", &r.to_string(), &o.to_string()));
                }
            }
            (r, o) => msg.push_str(&format!("  stdout not JSON: reference {r:?} ours {o:?}\n")),
        }
        if reference.stderr != ours.stderr {
            msg.push_str(&show("stderr", &reference.stderr, &ours.stderr));
        }
        if reference.code != ours.code {
            msg.push_str(&format!(
                "  exit code: reference {} ours {}\n",
                reference.code, ours.code
            ));
        }
        if !msg.is_empty() {
            self.failures.push(format!("{name}\n{msg}"));
        }
    }

    pub fn finish(self, what: &str) {
        eprintln!("{what}: {} differential cases", self.count);
        if std::env::var_os("SPIRE_CLI_DIFF_SHOW").is_some() {
            for name in &self.json_text_diffs {
                eprintln!("JSON text differs (values equal): {name}");
            }
        }
        if !self.failures.is_empty() {
            panic!(
                "{} of {} {what} cases differ from reference SPIRE:\n{}",
                self.failures.len(),
                self.count,
                self.failures.join("\n")
            );
        }
    }
}

/// Identity normalization.
pub fn ident(s: &str) -> String {
    s.to_owned()
}

/// Replaces every UUID (8-4-4-4-12 hex) with `<uuid>`.
pub fn norm_uuid(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let is_uuid = |w: &[u8]| {
        w.len() >= 36
            && w[..36].iter().enumerate().all(|(k, c)| match k {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    while i < b.len() {
        if is_uuid(&b[i..]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Replaces the base64 bodies of PEM blocks with `<pem>`.
pub fn norm_pem(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in s.split_inclusive('\n') {
        if line.starts_with("-----BEGIN ") {
            inside = true;
            out.push_str(line);
            out.push_str("<pem>\n");
        } else if line.starts_with("-----END ") {
            inside = false;
            out.push_str(line);
        } else if !inside {
            out.push_str(line);
        }
    }
    out
}

/// Replaces compact JWS tokens (three base64url parts starting `eyJ`) with
/// `<jwt>`.
pub fn norm_jwt(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("eyJ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(tail.len());
        out.push_str("<jwt>");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces `YYYY-MM-DD HH:MM:SS +0000 UTC`-like times and RFC 3339 UTC
/// times with `<time>`.
pub fn norm_times(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let digits = |w: &[u8], pat: &[u8]| {
        w.len() >= pat.len()
            && pat.iter().zip(w).all(|(p, c)| match p {
                b'9' => c.is_ascii_digit(),
                p => p == c,
            })
    };
    while i < b.len() {
        if digits(&b[i..], b"9999-99-99 99:99:99 +9999 UTC") {
            out.push_str("<time>");
            i += 29;
        } else if digits(&b[i..], b"9999-99-99T99:99:99Z") {
            out.push_str("<time>");
            i += 20;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Replaces a Go duration after `after ` (e.g. `after 2.3ms`) with `<dur>`.
pub fn norm_elapsed(s: &str) -> String {
    s.lines()
        .map(|l| match l.find(" after ") {
            Some(i) if l.starts_with("Received ") => format!("{} after <dur>", &l[..i]),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if s.ends_with('\n') { "\n" } else { "" }
}

/// Sets the named members anywhere in `v` to `"<x>"`.
pub fn blank_fields(v: &mut serde_json::Value, names: &[&str]) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if names.contains(&k.as_str()) {
                    *val = serde_json::Value::String("<x>".into());
                } else {
                    blank_fields(val, names);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                blank_fields(item, names);
            }
        }
        _ => {}
    }
}

/// Reads a file's mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Reads a whole file as text.
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// A writer that keeps what it is given and then fails, so that a
/// long-running command (`api watch`) stops after its first output.
pub struct FirstWrite(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for FirstWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "enough",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first line a reference command writes to standard error (the
/// process is killed then).
pub fn ref_first_stderr_line(bin: &Path, args: &[&str]) -> String {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// The first write our command makes to standard error.
pub fn our_first_stderr(cli: &Cli, args: &[&str]) -> String {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut w = FirstWrite(buf.clone());
    let mut stdin: &[u8] = b"";
    let mut stdout = Vec::new();
    let _ = cli.run(
        args,
        &mut Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut w,
        },
    );
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}
