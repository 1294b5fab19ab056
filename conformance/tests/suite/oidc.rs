//! The OIDC discovery provider (`oidc-discovery-provider`). Ours and reference SPIRE's run
//! side by side with the same configuration against the server (and agent) under test; their
//! discovery documents, keys, error answers and configuration errors are compared, and an
//! independent OIDC relying party (PyJWT's `PyJWKClient`, in a venv built by
//! `conformance/oidcclient/setup.sh`) verifies a JWT-SVID through each.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const AUDIENCE: &str = "oidc-relying-party";
const BIN: &str = "oidc-discovery-provider";

/// One HTTP/1.1 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Where a provider listens.
#[derive(Debug, Clone)]
enum Addr {
    Tcp(u16),
    Unix(PathBuf),
}

/// A raw HTTP/1.1 exchange (`Connection: close`, body read to the end).
fn http(
    addr: &Addr,
    method: &str,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = Vec::new();
    let timeout = Some(std::time::Duration::from_secs(10));
    match addr {
        Addr::Tcp(port) => {
            let mut s =
                std::net::TcpStream::connect(("127.0.0.1", *port)).map_err(|e| e.to_string())?;
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        }
        Addr::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| e.to_string())?;
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

fn get(addr: &Addr, path: &str, host: &str) -> Answer {
    http(addr, "GET", path, host, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A provider process of either implementation.
struct Provider {
    imp: Impl,
    addr: Addr,
    health_port: u16,
    proc: Proc,
}

impl Provider {
    fn start(
        sc: &Scenario,
        label: &str,
        imp: Impl,
        listen: &str,
        addr: Addr,
        source: &str,
    ) -> Provider {
        let dir = sc.subdir(label);
        let health_port = free_port();
        let conf = format!(
            "log_level = \"debug\"\ndomains = [\"localhost\", \"oidc.example.org\"]\nallow_insecure_scheme = true\n{listen}\n{source}\nhealth_checks {{\n  bind_port = {health_port}\n}}\n"
        );
        let path = dir.join("oidc.conf");
        std::fs::write(&path, conf).expect("write oidc.conf");
        let proc = Proc::spawn(
            &imp.bin(BIN),
            &["-config", &path.display().to_string()],
            dir.join("oidc.log"),
            &[],
        );
        Provider {
            imp,
            addr,
            health_port,
            proc,
        }
    }

    /// Waits until `/keys` answers 200 with `n` keys (or any number, with `None`).
    async fn wait_keys(&mut self, n: Option<usize>) -> Answer {
        self.wait_keys_at("/keys", n).await
    }

    /// Waits until `path` answers 200 with `n` keys (or any number, with `None`).
    async fn wait_keys_at(&mut self, path: &str, n: Option<usize>) -> Answer {
        let d = Deadline::new(format!("{} provider to serve keys", self.imp.name()), 60);
        loop {
            if let Some(status) = self.proc.exited() {
                panic!(
                    "{} provider exited with {status}: {}",
                    self.imp.name(),
                    self.proc.output()
                );
            }
            let last = match http(&self.addr, "GET", path, "localhost", &[]) {
                Ok(a) if a.status == 200 => {
                    let count = a.json()["keys"].as_array().map_or(0, Vec::len);
                    if n.is_none_or(|n| n == count) {
                        return a;
                    }
                    format!("{count} keys: {}", a.body)
                }
                Ok(a) => format!("{a:?}"),
                Err(e) => e,
            };
            d.tick(last).await;
        }
    }

    fn health(&self, path: &str) -> u16 {
        get(&Addr::Tcp(self.health_port), path, "localhost").status
    }
}

/// The venv's python with PyJWT, or `None` (a visible skip) when it cannot be built.
fn pyjwt(sc: &Scenario) -> Option<PathBuf> {
    let script = workspace_root().join("conformance/oidcclient/setup.sh");
    let out = Command::new("bash").arg(&script).output().ok()?;
    if !out.status.success() {
        client_unavailable(
            sc,
            "PyJWT",
            &format!(
                "conformance/oidcclient/setup.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// PyJWT verifies `token` through the provider's discovery document: the verified claims.
fn verify_with_pyjwt(
    python: &Path,
    discovery: &str,
    token: &str,
    subject: &str,
) -> serde_json::Value {
    let script = workspace_root().join("conformance/oidcclient/verify.py");
    let mut child = Command::new(python)
        .args([
            script.display().to_string(),
            discovery.into(),
            AUDIENCE.into(),
            subject.into(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run verify.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(token.as_bytes())
        .expect("write token");
    let out = child.wait_with_output().expect("verify.py output");
    assert!(
        out.status.success(),
        "PyJWT could not verify the JWT-SVID through {discovery}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verify.py JSON")
}

/// The keys of a JWKS, sorted by `kid` (a Workload API source need not keep the order).
fn sorted_keys(a: &Answer) -> Vec<serde_json::Value> {
    let mut keys = a.json()["keys"].as_array().cloned().unwrap_or_default();
    keys.sort_by_key(|k| k["kid"].as_str().unwrap_or_default().to_string());
    keys
}

/// Both providers give the same answers: discovery document byte for byte (plain, through
/// forwarded headers, under another allowed name), and the same error answers.
fn compare_documents(ours: &Addr, theirs: &Addr) {
    let wk = "/.well-known/openid-configuration";
    for (host, extra) in [
        ("localhost", vec![]),
        ("oidc.example.org:8443", vec![]),
        (
            "localhost",
            vec![
                ("X-Forwarded-Host", "oidc.example.org"),
                ("X-Forwarded-Proto", "https"),
            ],
        ),
        (
            "localhost",
            vec![("Forwarded", "for=192.0.2.1;proto=https")],
        ),
        ("evil.example", vec![]),
        ("localhost", vec![("X-Forwarded-Host", "evil.example")]),
        ("Localhost", vec![]),
        ("bad_name", vec![]),
    ] {
        let a = http(ours, "GET", wk, host, &extra).expect("ours");
        let b = http(theirs, "GET", wk, host, &extra).expect("reference");
        assert_eq!(a.status, b.status, "{host} {extra:?}: {a:?} vs {b:?}");
        assert_eq!(a.body, b.body, "{host} {extra:?}");
        assert_eq!(a.header("Content-Type"), b.header("Content-Type"), "{host}");
    }
    let unknown = get(ours, wk, "evil.example");
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body, "domain \"evil.example\" is not allowed\n");
    for (method, path) in [
        ("POST", wk),
        ("POST", "/keys"),
        ("GET", "/nope"),
        ("GET", "/keys/"),
    ] {
        let a = http(ours, method, path, "localhost", &[]).expect("ours");
        let b = http(theirs, method, path, "localhost", &[]).expect("reference");
        assert_eq!((a.status, &a.body), (b.status, &b.body), "{method} {path}");
    }
}

fn assert_same_key_headers(a: &Answer, b: &Answer) {
    for h in [
        "Cache-Control",
        "Pragma",
        "Expires",
        "Content-Type",
        "Accept-Ranges",
    ] {
        assert_eq!(a.header(h), b.header(h), "{h}");
    }
    assert!(a.header("Last-Modified").is_some() && b.header("Last-Modified").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn server_api_source_matches_reference_and_verifies_with_pyjwt() {
    // Also the `file` source, on the server's bundle written by `bundle show -format spiffe`.
    let sc = Scenario::new("oidc::server_api_source_matches_reference_and_verifies_with_pyjwt");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let workload = id("/oidc-workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());

    let source = format!(
        "server_api {{\n  address = \"unix://{}\"\n  poll_interval = \"1s\"\n}}",
        server.socket.display()
    );
    let (p1, p2) = (free_port(), free_port());
    let mut ours = Provider::start(
        &sc,
        "ours",
        Impl::SpireRs,
        &format!("insecure_addr = \"127.0.0.1:{p1}\""),
        Addr::Tcp(p1),
        &source,
    );
    let mut theirs = Provider::start(
        &sc,
        "reference",
        Impl::Reference,
        &format!("insecure_addr = \"127.0.0.1:{p2}\""),
        Addr::Tcp(p2),
        &source,
    );
    let a = ours.wait_keys(Some(1)).await;
    let b = theirs.wait_keys(Some(1)).await;
    assert_eq!(a.body, b.body, "keys document");
    assert_same_key_headers(&a, &b);
    let key = &a.json()["keys"][0];
    assert_eq!(key["kty"], "EC", "{key}");
    assert_eq!(key["alg"], "ES256", "{key}");
    assert!(key.get("use").is_none(), "{key}");
    compare_documents(&ours.addr, &theirs.addr);
    assert_eq!((ours.health("/ready"), ours.health("/live")), (200, 200));
    assert_eq!(
        (theirs.health("/ready"), theirs.health("/live")),
        (200, 200)
    );

    // A relying party verifies a JWT-SVID through either provider.
    let svid = workload::wait_jwt(&agent, AUDIENCE, 60).await;
    if let Some(python) = pyjwt(&sc) {
        for (p, port) in [(&ours, p1), (&theirs, p2)] {
            let v = verify_with_pyjwt(
                &python,
                &format!("http://localhost:{port}/.well-known/openid-configuration"),
                svid.token(),
                &workload,
            );
            assert_eq!(
                v["issuer"],
                format!("http://localhost:{port}"),
                "{}",
                p.imp.name()
            );
            assert_eq!(v["kid"], key["kid"], "{v}");
        }
    }

    // A new JWT key (prepared, not yet active) appears in both providers' keys.
    server.cli_ok(&["localauthority", "jwt", "prepare"]);
    let a = ours.wait_keys(Some(2)).await;
    let b = theirs.wait_keys(Some(2)).await;
    assert_eq!(a.body, b.body, "keys after rotation");

    // The `file` source: the same two keys from the bundle in SPIFFE format.
    let bundle_path = sc.path().join("bundle.spiffe.json");
    std::fs::write(
        &bundle_path,
        server.cli_ok(&["bundle", "show", "-format", "spiffe"]),
    )
    .expect("bundle");
    let file_source = format!(
        "file {{\n  path = \"{}\"\n  poll_interval = \"1s\"\n}}",
        bundle_path.display()
    );
    let (p3, p4) = (free_port(), free_port());
    let mut ours_file = Provider::start(
        &sc,
        "ours-file",
        Impl::SpireRs,
        &format!("insecure_addr = \"127.0.0.1:{p3}\""),
        Addr::Tcp(p3),
        &file_source,
    );
    let mut theirs_file = Provider::start(
        &sc,
        "reference-file",
        Impl::Reference,
        &format!("insecure_addr = \"127.0.0.1:{p4}\""),
        Addr::Tcp(p4),
        &file_source,
    );
    let fa = ours_file.wait_keys(Some(2)).await;
    let fb = theirs_file.wait_keys(Some(2)).await;
    assert_eq!(sorted_keys(&fa), sorted_keys(&fb));
    assert_eq!(sorted_keys(&fa), sorted_keys(&a));

    // A bundle without JWT authorities: both write `"keys": null`.
    let mut x509_only: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle_path).expect("bundle"))
            .expect("JSON");
    if let Some(keys) = x509_only["keys"].as_array_mut() {
        keys.retain(|k| k["use"] == "x509-svid");
    }
    std::fs::write(&bundle_path, x509_only.to_string()).expect("x509-only bundle");
    let fa = ours_file.wait_keys(Some(0)).await;
    let fb = theirs_file.wait_keys(Some(0)).await;
    assert_eq!(fa.body, fb.body);
    assert_eq!(fa.body, "{\n  \"keys\": null\n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn workload_api_source_on_a_unix_socket_matches_reference() {
    let sc = Scenario::new("oidc::workload_api_source_on_a_unix_socket_matches_reference");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    // The agent answers FetchJWTBundles only to a caller with an identity.
    let workload = id("/oidc-provider");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    agent.wait_x509(&workload, 60).await;

    let source = format!(
        "workload_api {{\n  socket_path = \"{}\"\n  trust_domain = \"{TD}\"\n  poll_interval = \"1s\"\n}}",
        agent.socket.display()
    );
    let (s1, s2) = (sc.path().join("ours.sock"), sc.path().join("ref.sock"));
    let listen = |p: &Path| format!("listen_socket_path = \"{}\"", p.display());
    let mut ours = Provider::start(
        &sc,
        "ours",
        Impl::SpireRs,
        &listen(&s1),
        Addr::Unix(s1.clone()),
        &source,
    );
    let mut theirs = Provider::start(
        &sc,
        "reference",
        Impl::Reference,
        &listen(&s2),
        Addr::Unix(s2.clone()),
        &source,
    );
    let a = ours.wait_keys(Some(1)).await;
    let b = theirs.wait_keys(Some(1)).await;
    assert_eq!(sorted_keys(&a), sorted_keys(&b));
    assert_same_key_headers(&a, &b);
    compare_documents(&ours.addr, &theirs.addr);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode(&s1), mode(&s2));
    assert_eq!((ours.health("/ready"), ours.health("/live")), (200, 200));

    // A prepared JWT key reaches the agent's bundle, then both providers.
    server.cli_ok(&["localauthority", "jwt", "prepare"]);
    let a = ours.wait_keys(Some(2)).await;
    let b = theirs.wait_keys(Some(2)).await;
    assert_eq!(sorted_keys(&a), sorted_keys(&b));
}

/// A self-signed serving certificate for `oidc.example.org`: (cert PEM, key PEM).
fn serving_cert() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["oidc.example.org".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

/// `curl --cacert` against the HTTPS provider: the body, or why it failed.
fn curl_https(port: u16, ca: &Path) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            &ca.display().to_string(),
            "--resolve",
            &format!("oidc.example.org:{port}:127.0.0.1"),
            &format!("https://oidc.example.org:{port}/.well-known/openid-configuration"),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn serving_cert_file_is_served_and_reloaded() {
    let sc = Scenario::new("oidc::serving_cert_file_is_served_and_reloaded");
    if Command::new("curl").arg("--version").output().is_err() {
        client_unavailable(&sc, "curl", "curl is not installed");
        return;
    }
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let dir = sc.subdir("certs");
    let (cert_a, key_a) = serving_cert();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert_a).expect("cert");
    std::fs::write(&key_path, &key_a).expect("key");
    let ca_a = dir.join("ca-a.pem");
    std::fs::write(&ca_a, &cert_a).expect("ca a");
    let port = free_port();
    let listen = format!(
        "serving_cert_file {{\n  cert_file_path = \"{}\"\n  key_file_path = \"{}\"\n  addr = \"127.0.0.1:{port}\"\n  file_sync_interval = \"1s\"\n}}",
        cert_path.display(),
        key_path.display()
    );
    let source = format!(
        "server_api {{\n  address = \"unix://{}\"\n}}",
        server.socket.display()
    );
    let mut p = Provider::start(&sc, "ours", subject(), &listen, Addr::Tcp(port), &source);
    let body = wait_until("the HTTPS provider to answer", 60, || {
        if let Some(s) = p.proc.exited() {
            panic!("provider exited with {s}: {}", p.proc.output());
        }
        curl_https(port, &ca_a)
    })
    .await;
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    // Over TLS the scheme is https even with allow_insecure_scheme.
    assert_eq!(
        doc["issuer"],
        format!("https://oidc.example.org:{port}"),
        "{doc}"
    );

    // New files are picked up at the next sync: the old CA no longer verifies.
    let (cert_b, key_b) = serving_cert();
    let ca_b = dir.join("ca-b.pem");
    std::fs::write(&ca_b, &cert_b).expect("ca b");
    std::fs::write(&key_path, &key_b).expect("key b");
    std::fs::write(&cert_path, &cert_b).expect("cert b");
    wait_until("the new serving certificate", 30, || {
        curl_https(port, &ca_b)
    })
    .await;
    assert!(curl_https(port, &ca_a).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn bad_configurations_fail_as_reference() {
    let sc = Scenario::new("oidc::bad_configurations_fail_as_reference");
    let dir = sc.subdir("configs");
    let srv = "server_api { address = \"unix:///tmp/none.sock\" }";
    // A port in use, for the listen error.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let cases = [
        String::new(),
        "domains = [\"a\"]".to_string(),
        format!("domains = [\"a\"]\n{srv}"),
        "domains = [\"a\"]\ninsecure_addr = \":1\"".to_string(),
        format!("domains = [\"a\"]\ninsecure_addr = \":1\"\nacme {{ tos_accepted = true email = \"x\" }}\n{srv}"),
        format!("domains = [\"a\"]\nacme {{ email = \"x\" }}\n{srv}"),
        format!("domains = [\"a\"]\nacme {{ tos_accepted = true }}\n{srv}"),
        format!("domains = [\"a\"]\nserving_cert_file {{ key_file_path = \"k\" }}\n{srv}"),
        format!("domains = [\"a\"]\nserving_cert_file {{ cert_file_path = \"c\" }}\n{srv}"),
        format!("domains = [\"a\"]\nserving_cert_file {{ cert_file_path = \"c\" key_file_path = \"k\" addr = \"nope\" }}\n{srv}"),
        format!("domains = [\"a\"]\nserving_cert_file {{ cert_file_path = \"c\" key_file_path = \"k\" file_sync_interval = \"x\" }}\n{srv}"),
        "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { address = \"unix:/x\" poll_interval = \"bad\" }".to_string(),
        "domains = [\"a\"]\ninsecure_addr = \":1\"\nworkload_api { socket_path = \"/x\" }".to_string(),
        "domains = [\"a\"]\ninsecure_addr = \":1\"\nworkload_api { trust_domain = \"example.org\" }".to_string(),
        "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { }".to_string(),
        "domains = [\"a\"]\ninsecure_addr = \":1\"\nserver_api { address = \"dns:///x\" }".to_string(),
        format!("domains = [\"a\"]\ninsecure_addr = \":1\"\nlisten_socket_path = \"/x\"\n{srv}"),
        format!("domains = [\"a\"]\nlisten_socket_path = \"/x\"\nserving_cert_file {{ cert_file_path = \"c\" key_file_path = \"k\" }}\n{srv}"),
        format!("domains = [\"a\"]\nacme {{ tos_accepted = true email = \"x\" }}\nserving_cert_file {{ cert_file_path = \"c\" key_file_path = \"k\" }}\n{srv}"),
        format!("domains = [\"a\"]\nacme {{ tos_accepted = true email = \"x\" }}\nlisten_socket_path = \"/x\"\n{srv}"),
        format!("domains = [\"a\"]\ninsecure_addr = \":1\"\n{srv}\nworkload_api {{ socket_path = \"/x\" trust_domain = \"t\" }}"),
        format!("domains = [\"a\"]\ninsecure_addr = \":1\"\n{srv}\njwt_issuer = \"example.org\""),
        format!("domains = [\"a\"]\ninsecure_addr = \":1\"\n{srv}\njwt_issuer = \"https://\""),
        format!("domains = [\"a\"]\ninsecure_addr = \":1\"\n{srv}\njwks_uri = \"/keys\""),
        format!("domains = [\"A.example\"]\ninsecure_addr = \"127.0.0.1:{}\"\n{srv}", free_port()),
        // hcl's decoding errors.
        "domains = [\n".to_string(),
        format!("domains = \"a\"\ninsecure_addr = \":1\"\n{srv}"),
        format!("domains = [\"a\"]\nset_key_use = \"yes\"\ninsecure_addr = \":1\"\n{srv}"),
        format!("domains = [\"a\"]\ninsecure_addr = \":1\"\n{srv}\nacme = 3"),
        // Failures to listen or to load the serving certificate.
        format!("domains = [\"a\"]\ninsecure_addr = 5\n{srv}"),
        format!("domains = [\"a\"]\ninsecure_addr = \"127.0.0.1:{}\"\n{srv}", held.local_addr().expect("addr").port()),
        format!("domains = [\"a\"]\nlisten_socket_path = \"/nonexistent/dir/x.sock\"\n{srv}"),
        format!("domains = [\"a\"]\nserving_cert_file {{ cert_file_path = \"/nonexistent/c\" key_file_path = \"/nonexistent/k\" addr = \"127.0.0.1:0\" }}\n{srv}"),
    ];
    let run_one = |imp: Impl, path: &Path| {
        let out = Command::new(imp.bin(BIN))
            .args(["-config", &path.display().to_string()])
            .output()
            .expect("run provider");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (i, text) in cases.iter().enumerate() {
        let path = dir.join(format!("{i}.conf"));
        std::fs::write(&path, text).expect("write config");
        // Log lines (a failed first poll, racing the exit) are not part of the comparison.
        let strip = |(code, err): (Option<i32>, String)| {
            let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("time=")).collect();
            (code, lines.join("\n"))
        };
        let ours = strip(run_one(Impl::SpireRs, &path));
        let theirs = strip(run_one(Impl::Reference, &path));
        assert_eq!(ours.0, Some(1), "{text}: {ours:?}");
        assert_eq!(ours, theirs, "{text}");
    }
    // A missing file.
    let missing = dir.join("missing.conf");
    assert_eq!(
        run_one(Impl::SpireRs, &missing),
        run_one(Impl::Reference, &missing)
    );

    // SIGTERM: SPIRE's provider ends with Go's "http: Server closed" and exit code 1.
    let ok = dir.join("ok.conf");
    std::fs::write(
        &ok,
        format!("domains = [\"a\"]\ninsecure_addr = \"127.0.0.1:0\"\n{srv}\n"),
    )
    .expect("ok.conf");
    let mut ends = Vec::new();
    for imp in [Impl::SpireRs, Impl::Reference] {
        let child = Command::new(imp.bin(BIN))
            .args(["-config", &ok.display().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start provider");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        let out = child.wait_with_output().expect("provider output");
        let err = String::from_utf8_lossy(&out.stderr);
        ends.push((
            out.status.code(),
            err.lines().last().unwrap_or_default().to_string(),
        ));
    }
    assert_eq!(ends[0], ends[1]);
    assert_eq!(ends[0], (Some(1), "http: Server closed".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn issuer_prefix_and_key_use_options_match_reference() {
    let sc = Scenario::new("oidc::issuer_prefix_and_key_use_options_match_reference");
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let source = format!(
        "server_api {{\n  address = \"unix://{}\"\n  poll_interval = \"1s\"\n}}",
        server.socket.display()
    );
    let variants: [(&str, &str); 4] = [
        (
            "set_key_use = true\nserver_path_prefix = \"/oidc\"",
            "/oidc",
        ),
        ("server_path_prefix = \"/a/b/\"", "/a/b"),
        ("jwt_issuer = \"https://issuer.example/base\"", ""),
        (
            "jwt_issuer = \"https://issuer.example\"\njwks_uri = \"https://cdn.example/jwks.json\"",
            "",
        ),
    ];
    for (i, (options, prefix)) in variants.iter().enumerate() {
        let text = format!("{options}\n{source}");
        let (p1, p2) = (free_port(), free_port());
        let mut ours = Provider::start(
            &sc,
            &format!("ours-{i}"),
            Impl::SpireRs,
            &format!("insecure_addr = \"127.0.0.1:{p1}\""),
            Addr::Tcp(p1),
            &text,
        );
        let mut theirs = Provider::start(
            &sc,
            &format!("reference-{i}"),
            Impl::Reference,
            &format!("insecure_addr = \"127.0.0.1:{p2}\""),
            Addr::Tcp(p2),
            &text,
        );
        let keys = format!("{prefix}/keys");
        let a = ours.wait_keys_at(&keys, Some(1)).await;
        let b = theirs.wait_keys_at(&keys, Some(1)).await;
        assert_eq!(a.body, b.body, "{options}");
        if options.contains("set_key_use") {
            assert_eq!(a.json()["keys"][0]["use"], "sig", "{}", a.body);
        }
        for path in [
            format!("{prefix}/.well-known/openid-configuration"),
            "/.well-known/openid-configuration".to_string(),
            "/keys".to_string(),
        ] {
            let x = get(&ours.addr, &path, "oidc.example.org");
            let y = get(&theirs.addr, &path, "oidc.example.org");
            assert_eq!(
                (x.status, &x.body),
                (y.status, &y.body),
                "{options}: {path}"
            );
        }
    }
}

/// Pebble (Let's Encrypt's test ACME server) and its DNS server, built by
/// `conformance/pebble/build.sh`; `None` (a visible skip) when they cannot be built.
pub(crate) struct Pebble {
    /// The directory URL.
    pub(crate) directory: String,
    /// The management port (`/roots/0` is the issuing root).
    management: u16,
    /// The root of pebble's own HTTPS listeners.
    pub(crate) minica: PathBuf,
    /// The ACME server.
    pub(crate) proc: Proc,
    _dns: Proc,
}

impl Pebble {
    /// Starts pebble issuing certificates valid `validity` seconds, validating TLS-ALPN-01
    /// on `tls_port`.
    pub(crate) fn start(sc: &Scenario, tls_port: u16, validity: u64) -> Option<Pebble> {
        let script = workspace_root().join("conformance/pebble/build.sh");
        let out = match Command::new("bash").arg(&script).output() {
            Ok(o) => o,
            Err(e) => {
                client_unavailable(sc, "pebble", &e.to_string());
                return None;
            }
        };
        if !out.status.success() {
            client_unavailable(
                sc,
                "pebble",
                &format!(
                    "conformance/pebble/build.sh failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
            return None;
        }
        let cache = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let dir = sc.subdir("pebble");
        let (dns_port, dns_mgmt) = (free_port(), free_port());
        let dns = Proc::spawn(
            &cache.join("bin/pebble-challtestsrv"),
            &[
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-doh",
                "",
            ],
            dir.join("challtestsrv.log"),
            &[],
        );
        let (port, management, http_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cache.join("localhost.cert.pem"),
                "privateKey": cache.join("localhost.key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": ["blocked-domain.example"],
                "retryAfter": { "authz": 1, "order": 1 },
                "keyAlgorithm": "ecdsa",
                "profiles": { "default": { "description": "default", "validityPeriod": validity } }
            }
        });
        let path = dir.join("pebble.json");
        std::fs::write(&path, config.to_string()).expect("pebble config");
        let proc = Proc::spawn(
            &cache.join("bin/pebble"),
            &[
                "-config",
                &path.display().to_string(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ],
            dir.join("pebble.log"),
            // No validation delay, and no deliberately refused nonces.
            &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")],
        );
        Some(Pebble {
            directory: format!("https://127.0.0.1:{port}/dir"),
            management,
            minica: cache.join("pebble.minica.pem"),
            proc,
            _dns: dns,
        })
    }

    /// The root pebble issues under, from its management interface.
    pub(crate) async fn issuing_root(&mut self) -> String {
        let (mgmt, minica) = (self.management, self.minica.clone());
        wait_until("pebble's issuing root", 30, || {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(&minica)
                .arg(format!("https://127.0.0.1:{mgmt}/roots/0"))
                .output()
                .map_err(|e| e.to_string())?;
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && body.contains("BEGIN CERTIFICATE") {
                Ok(body)
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })
        .await
    }
}

/// `curl` to `name` at 127.0.0.1:`port`, verifying with `ca`: the discovery document.
fn curl_name(name: &str, port: u16, ca: &Path) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "--cacert",
            &ca.display().to_string(),
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            &format!("https://{name}:{port}/.well-known/openid-configuration"),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn acme_certificate_from_pebble_is_served_and_cached() {
    let sc = Scenario::new("oidc::acme_certificate_from_pebble_is_served_and_cached");
    if Command::new("curl").arg("--version").output().is_err() {
        client_unavailable(&sc, "curl", "curl is not installed");
        return;
    }
    let imp = subject();
    if matches!(imp, Impl::Reference) {
        // Checked by hand with port 443 free: pebble answers a finalization with the order
        // but no Location header (Boulder sends one), and x/crypto v0.43.0's
        // CreateOrderCert then polls the order at the URL "" ("Post \"\": unsupported
        // protocol scheme"), so SPIRE's provider never gets a certificate from pebble.
        skip(
            &sc,
            "reference SPIRE 1.13.3's autocert cannot finish an order with pebble (no Location header on finalize); it also listens on port 443 only",
        );
        return;
    }
    // SPIRE's provider always listens on 443; ours takes SPIRE_RS_OIDC_ACME_PORT in tests.
    let port = free_port();
    let Some(mut pebble) = Pebble::start(&sc, port, 90 * 86_400) else {
        return;
    };
    let root = pebble.issuing_root().await;
    let dir = sc.subdir("certs");
    let root_path = dir.join("pebble-root.pem");
    std::fs::write(&root_path, &root).expect("root");

    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let cache_dir = sc.subdir("acme-cache");
    let conf = format!(
        "log_level = \"debug\"\ndomains = [\"oidc.example.org\"]\nacme {{\n  directory_url = \"{}\"\n  email = \"admin@example.org\"\n  tos_accepted = true\n  cache_dir = \"{}\"\n}}\nserver_api {{\n  address = \"unix://{}\"\n}}\n",
        pebble.directory,
        cache_dir.display(),
        server.socket.display()
    );
    let conf_path = sc.subdir("provider").join("oidc.conf");
    std::fs::write(&conf_path, conf).expect("conf");
    let port_s = port.to_string();
    let minica = pebble.minica.display().to_string();
    // Extra roots for the directory come from SSL_CERT_FILE, as for Go's provider.
    let env = [
        ("SSL_CERT_FILE", minica.as_str()),
        ("SPIRE_RS_OIDC_ACME_PORT", port_s.as_str()),
    ];
    let start = |n: &str| {
        Proc::spawn(
            &imp.bin(BIN),
            &["-config", &conf_path.display().to_string()],
            sc.subdir("provider").join(format!("oidc-{n}.log")),
            &env,
        )
    };
    let mut p = start("1");

    // The first ClientHello for the domain obtains the certificate (TLS-ALPN-01 answered
    // on the same port); the chain verifies against pebble's root.
    let body = wait_until("the ACME provider to answer over HTTPS", 120, || {
        if let Some(s) = p.exited() {
            panic!("provider exited with {s}: {}", p.output());
        }
        if let Some(s) = pebble.proc.exited() {
            panic!("pebble exited with {s}: {}", pebble.proc.output());
        }
        curl_name("oidc.example.org", port, &root_path)
    })
    .await;
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        doc["issuer"],
        format!("https://oidc.example.org:{port}"),
        "{doc}"
    );
    assert_eq!(
        doc["jwks_uri"],
        format!("https://oidc.example.org:{port}/keys"),
        "{doc}"
    );
    let log = p.output();
    assert!(
        log.contains("ACME Terms Of Service accepted"),
        "no ToS log line: {log}"
    );

    // A name outside `domains` and a name without a dot get no certificate.
    let refused = curl_name("other.example.org", port, &root_path);
    assert!(refused.is_err(), "{refused:?}");
    let refused = curl_name("localhost", port, &root_path);
    assert!(refused.is_err(), "{refused:?}");

    // autocert's DirCache layout: the account key and the domain's key + chain, 0600.
    use std::os::unix::fs::PermissionsExt as _;
    let account = std::fs::read_to_string(cache_dir.join("acme_account+key")).expect("account key");
    assert!(
        account.starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
        "{account}"
    );
    let entry = cache_dir.join("oidc.example.org");
    let cached = std::fs::read_to_string(&entry).expect("cached certificate");
    assert!(
        cached.starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
        "{cached}"
    );
    assert!(
        cached.matches("-----BEGIN CERTIFICATE-----").count() >= 2,
        "{cached}"
    );
    assert_eq!(
        std::fs::metadata(&entry)
            .expect("entry")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // With the CA gone, a restarted provider serves the cached certificate.
    p.stop();
    pebble.proc.stop();
    let mut p = start("2");
    let again = wait_until(
        "the restarted provider to serve the cached certificate",
        60,
        || {
            if let Some(s) = p.exited() {
                panic!("provider exited with {s}: {}", p.output());
            }
            curl_name("oidc.example.org", port, &root_path)
        },
    )
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again).expect("JSON")["issuer"],
        doc["issuer"]
    );
}

/// The leaf certificate (PEM) served for `name` at 127.0.0.1:`port`, verified with `ca`.
fn served_leaf(name: &str, port: u16, ca: &Path) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{certs}",
            "--cacert",
            &ca.display().to_string(),
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            &format!("https://{name}:{port}/.well-known/openid-configuration"),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let end = "-----END CERTIFICATE-----";
    match (out.status.success(), text.find(end)) {
        (true, Some(i)) => Ok(text[..i + end.len()].trim().to_string()),
        _ => Err(format!("{}{text}", String::from_utf8_lossy(&out.stderr))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn acme_certificate_is_renewed_30_days_before_expiry() {
    let sc = Scenario::new("oidc::acme_certificate_is_renewed_30_days_before_expiry");
    if Command::new("curl").arg("--version").output().is_err() {
        client_unavailable(&sc, "curl", "curl is not installed");
        return;
    }
    if matches!(subject(), Impl::Reference) {
        skip(
            &sc,
            "reference SPIRE 1.13.3's autocert cannot finish an order with pebble (no Location header on finalize); it also listens on port 443 only",
        );
        return;
    }
    let port = free_port();
    // Certificates valid 30 days and a minute: due for renewal (30 days before expiry, minus
    // up to an hour of jitter) as soon as they are issued.
    let Some(mut pebble) = Pebble::start(&sc, port, 30 * 86_400 + 60) else {
        return;
    };
    let root_path = sc.subdir("certs").join("pebble-root.pem");
    std::fs::write(&root_path, pebble.issuing_root().await).expect("root");
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let cache_dir = sc.subdir("acme-cache");
    let conf = format!(
        "domains = [\"oidc.example.org\"]\nacme {{\n  directory_url = \"{}\"\n  email = \"admin@example.org\"\n  tos_accepted = true\n  cache_dir = \"{}\"\n}}\nserver_api {{\n  address = \"unix://{}\"\n}}\n",
        pebble.directory,
        cache_dir.display(),
        server.socket.display()
    );
    let conf_path = sc.subdir("provider").join("oidc.conf");
    std::fs::write(&conf_path, conf).expect("conf");
    let port_s = port.to_string();
    let minica = pebble.minica.display().to_string();
    let mut p = Proc::spawn(
        &subject().bin(BIN),
        &["-config", &conf_path.display().to_string()],
        sc.subdir("provider").join("oidc.log"),
        &[
            ("SSL_CERT_FILE", minica.as_str()),
            ("SPIRE_RS_OIDC_ACME_PORT", port_s.as_str()),
        ],
    );
    let first = wait_until("the first ACME certificate", 120, || {
        if let Some(s) = p.exited() {
            panic!("provider exited with {s}: {}", p.output());
        }
        served_leaf("oidc.example.org", port, &root_path)
    })
    .await;
    let key_block = |pem: &str| {
        pem.split("-----END EC PRIVATE KEY-----")
            .next()
            .map(str::to_string)
    };
    let first_key = wait_until("the first certificate in the cache", 30, || {
        std::fs::read_to_string(cache_dir.join("oidc.example.org")).map_err(|e| e.to_string())
    })
    .await;
    // Without a restart, the listener goes on to serve a renewed certificate, and the
    // cache holds it under the same key (autocert renews with the certificate's key).
    wait_until("a renewed certificate to be served", 120, || {
        if let Some(s) = p.exited() {
            panic!("provider exited with {s}: {}", p.output());
        }
        if let Some(s) = pebble.proc.exited() {
            panic!("pebble exited with {s}: {}", pebble.proc.output());
        }
        match served_leaf("oidc.example.org", port, &root_path)? {
            leaf if leaf != first => Ok(()),
            _ => Err("still the first certificate".to_string()),
        }
    })
    .await;
    let cached = std::fs::read_to_string(cache_dir.join("oidc.example.org")).expect("cache");
    assert_eq!(key_block(&cached), key_block(&first_key));
    assert!(
        p.output().contains("Renewed the ACME certificate"),
        "{}",
        p.output()
    );
}
