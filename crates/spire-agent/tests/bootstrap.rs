//! End-to-end tests of how OUR spire-agent trusts the server before and after attestation,
//! against the REFERENCE spire-server 1.13.3: `rebootstrap_mode` / `rebootstrap_delay`,
//! `insecure_bootstrap`, `trust_bundle_url` over https; and the admin socket's
//! `Debug/GetInfo`, compared with the reference spire-agent's answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use spire_proto::spire::agent::debug::v1 as debugv1;
use support::{Agent, Server, spiffe_fetch, uid};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const JOIN_TOKEN_PREFIX: &str = "spiffe://example.org/spire/agent/join_token/";
const JOIN_TOKEN_ATTESTOR: &str = "NodeAttestor \"join_token\" {\n plugin_data {}\n }";

fn selector() -> String {
    format!("unix:uid:{}", uid())
}

/// A join-token agent with `bootstrap` in place of the trust bundle path.
fn join_token_agent(server: &Server, bootstrap: Option<&str>, extra: &str) -> (Agent, String) {
    let token = server.token();
    let extra = format!("join_token = \"{token}\"\n{extra}");
    let agent = match bootstrap {
        Some(b) => Agent::with_bootstrap(server, b, &extra, JOIN_TOKEN_ATTESTOR),
        None => Agent::new(server, &extra, JOIN_TOKEN_ATTESTOR),
    };
    (agent, format!("{JOIN_TOKEN_PREFIX}{token}"))
}

async fn wait_svid(agent: &Agent, id: &str, timeout: Duration) {
    let start = std::time::Instant::now();
    loop {
        if let Ok(svid) = spiffe_fetch(&agent.socket).await
            && svid.spiffe_id().to_string() == id
        {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "no SVID for {id} after {timeout:?}:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- rebootstrap_mode / rebootstrap_delay ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn rebootstrap_modes_against_a_join_token() {
    let server = Server::start("", "");
    // `always`: the stored SVID is not re-attestable, so the second start is refused.
    let (mut always, _) = join_token_agent(&server, None, "rebootstrap_mode = \"always\"");
    always.start();
    always.wait_log("Starting Workload and SDS APIs", Duration::from_secs(30));
    // The first start counts as a successful bootstrap.
    assert!(always.log().contains("Success after "), "{}", always.log());
    assert!(always.log().contains("Setting use."), "{}", always.log());
    assert_eq!(always.data()["bootstrap_use"], 2);
    always.stop();
    always.start();
    let status = always
        .wait_exit_status(Duration::from_secs(30))
        .expect("agent with rebootstrap_mode=always and a join token kept running");
    assert!(!status.success());
    assert!(
        always.log().contains("you have requested rebootstrap support but the NodeAttestor plugin or the spire server configuration is not allowing it"),
        "{}",
        always.log()
    );

    // `auto`: disabled with a warning; the agent runs.
    let (mut auto, _) = join_token_agent(&server, None, "rebootstrap_mode = \"auto\"");
    auto.start();
    auto.wait_log("Starting Workload and SDS APIs", Duration::from_secs(30));
    auto.stop();
    auto.start();
    auto.wait_log("not allowing it. Disabling", Duration::from_secs(30));
    auto.wait_log("Starting Workload and SDS APIs", Duration::from_secs(30));

    // retry_bootstrap cannot be combined with rebootstrapping.
    let (mut both, _) = join_token_agent(
        &server,
        None,
        "rebootstrap_mode = \"auto\"\nretry_bootstrap = true",
    );
    both.start();
    assert!(both.wait_exit(Duration::from_secs(20)));
    assert!(
        both.log()
            .contains("you can not set retry_bootstrap when using reboostrap_mode"),
        "{}",
        both.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn a_new_server_ca_is_fatal_with_rebootstrap_never() {
    let mut first = Server::start("", "");
    let (mut agent, _) = join_token_agent(&first, None, "");
    agent.start();
    agent.wait_log("Starting Workload and SDS APIs", Duration::from_secs(30));
    // Another server (another CA) takes the port.
    first.stop();
    let _second = Server::start_on(first.port, "", "");
    let status = agent
        .wait_exit_status(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("agent kept running:\n{}", agent.log()));
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains("Synchronize failed, non-recoverable error"),
        "{log}"
    );
    assert!(log.contains("failed to sync with SPIRE Server"), "{log}");
    assert!(
        log.contains("certificate signed by unknown authority"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn rebootstrap_after_the_server_ca_changed() {
    let material = tempfile::tempdir().unwrap();
    let (ca, cert, key) = support::x509pop_material(material.path());
    let mut first = Server::start("", &support::x509pop_server(&ca));
    let mut agent = Agent::new(
        &first,
        "rebootstrap_mode = \"auto\"\nrebootstrap_delay = \"3s\"",
        &support::x509pop_agent(&cert, &key),
    );
    agent.start();
    agent.wait_log("Starting Workload and SDS APIs", Duration::from_secs(30));
    assert!(agent.log().contains("reattestable=true"), "{}", agent.log());

    first.stop();
    let second = Server::start_on(first.port, "", &support::x509pop_server(&ca));
    let status = agent
        .wait_exit_status(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("agent kept running:\n{}", agent.log()));
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains(
            "Trust Bandle and Server dont agree.... Ignoring for now. Rebootstrap timeout left: "
        ),
        "{log}"
    );
    assert!(
        log.contains("Trust Bandle and Server dont agree.... rebootstrapping"),
        "{log}"
    );
    assert!(log.contains("shutting down for rebootstrapping"), "{log}");
    // SVID and bundle are gone; the next start is a rebootstrap.
    let data = agent.data();
    assert!(data["svid"].is_null(), "{data}");
    assert!(data["bundle"].is_null(), "{data}");
    assert_eq!(data["bootstrap_use"], 2, "{data}");

    // The operator's trust bundle now has the new CA: the agent attests to the new server.
    std::fs::write(
        first.dir.path().join("bundle.pem"),
        second.cli(&["bundle", "show"]),
    )
    .unwrap();
    agent.start();
    agent.wait_log("Node attestation was successful", Duration::from_secs(30));
    agent.wait_log("Starting Workload and SDS APIs", Duration::from_secs(30));
    assert!(agent.log().contains("attempts=1"), "{}", agent.log());
}

// --- insecure_bootstrap ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn insecure_bootstrap_still_checks_the_server_id() {
    let server = Server::start("", "");
    let (mut agent, agent_id) = join_token_agent(&server, Some("insecure_bootstrap = true"), "");
    server.entry(&agent_id, "spiffe://example.org/insecure", &selector());
    agent.start();
    agent.wait_log("Bundle is not found", Duration::from_secs(30));
    agent.wait_log(
        "Insecure bootstrap enabled; skipping server certificate verification",
        Duration::from_secs(30),
    );
    agent.wait_log("Node attestation was successful", Duration::from_secs(30));
    wait_svid(
        &agent,
        "spiffe://example.org/insecure",
        Duration::from_secs(40),
    )
    .await;
    // The bundle from the server is kept for the next start.
    assert!(agent.data()["bundle"].is_array());

    // An agent of another trust domain does not accept this server.
    let (mut other, _) = join_token_agent(&server, Some("insecure_bootstrap = true"), "");
    other.edit_conf(
        "trust_domain = \"example.org\"",
        "trust_domain = \"other.org\"",
    );
    other.start();
    other.wait_log(
        r#"expected server SPIFFE ID \"spiffe://other.org/spire/server\"; got [\"spiffe://example.org/spire/server\"]"#,
        Duration::from_secs(30),
    );
    assert!(!other.log().contains("Node attestation was successful"));
}

// --- trust_bundle_url over https ---

/// A private web PKI: the CA (PEM) and a `localhost` certificate and key (DER).
fn web_pki() -> (String, Vec<u8>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test web CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), leaf.der().to_vec(), key.serialize_der())
}

/// Serves `files` (path to body) over https on loopback; returns the port.
async fn https_server(leaf: Vec<u8>, key: Vec<u8>, files: HashMap<String, String>) -> u16 {
    let resolver = spire_tls::SvidResolver::new();
    resolver.set(&[leaf], &key).unwrap();
    let acceptor = spire_tls::TlsAcceptor::from(spire_tls::server_config(resolver, None).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = Arc::new(files);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let files = files.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or_default();
                let path = path.split('?').next().unwrap_or_default();
                let resp = match files.get(path) {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn trust_bundle_url_over_https_in_both_formats() {
    let server = Server::start("", "");
    let (ca_pem, leaf, key) = web_pki();
    let pki_dir = tempfile::tempdir().unwrap();
    let ca_file = pki_dir.path().join("web-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (other_ca, _, _) = web_pki();
    let other_ca_file = pki_dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let files = HashMap::from([
        ("/bundle.pem".to_string(), server.cli(&["bundle", "show"])),
        (
            "/bundle.json".to_string(),
            server.cli(&["bundle", "show", "-format", "spiffe"]),
        ),
    ]);
    let port = https_server(leaf, key, files).await;

    for (path, format) in [("bundle.pem", "pem"), ("bundle.json", "spiffe")] {
        let bootstrap = format!(
            "trust_bundle_url = \"https://localhost:{port}/{path}\"\ntrust_bundle_format = \"{format}\""
        );
        let (agent, agent_id) = join_token_agent(&server, Some(&bootstrap), "");
        let mut agent = agent.env("SSL_CERT_FILE", ca_file.to_str().unwrap());
        let wl = format!("spiffe://example.org/url-{format}");
        server.entry(&agent_id, &wl, &selector());
        agent.start();
        agent.wait_log(
            "Server attestation attempt 1. Started ",
            Duration::from_secs(30),
        );
        agent.wait_log("Node attestation was successful", Duration::from_secs(30));
        wait_svid(&agent, &wl, Duration::from_secs(40)).await;
    }

    // A certificate the roots do not vouch for.
    let bootstrap = format!("trust_bundle_url = \"https://localhost:{port}/bundle.pem\"");
    let (agent, _) = join_token_agent(&server, Some(&bootstrap), "");
    let mut agent = agent.env("SSL_CERT_FILE", other_ca_file.to_str().unwrap());
    agent.start();
    agent.wait_log(
        &format!("unable to fetch trust bundle URL https://localhost:{port}/bundle.pem"),
        Duration::from_secs(30),
    );
    assert!(!agent.log().contains("Node attestation was successful"));
    // A missing file.
    let bootstrap = format!("trust_bundle_url = \"https://localhost:{port}/nope.pem\"");
    let (agent, _) = join_token_agent(&server, Some(&bootstrap), "");
    let mut agent = agent.env("SSL_CERT_FILE", ca_file.to_str().unwrap());
    agent.start();
    agent.wait_log(
        "error downloading trust bundle: 404 Not Found",
        Duration::from_secs(30),
    );
}

// --- admin socket ---

async fn get_info(socket: &std::path::Path) -> debugv1::GetInfoResponse {
    let channel = support::uds_channel(socket.to_path_buf()).await;
    debugv1::debug_client::DebugClient::new(channel)
        .get_info(debugv1::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The attribute types of a Go-formatted distinguished name (`O=SPIRE,C=US` → `O,C`).
fn dn_shape(subject: &str) -> Vec<String> {
    subject
        .split(',')
        .map(|rdn| rdn.split('=').next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn admin_socket_get_info_matches_the_reference_agent() {
    let server = Server::start("", "");
    let mut infos = Vec::new();
    for reference in [false, true] {
        let (agent, agent_id) = join_token_agent(&server, None, "");
        let admin = agent.admin_socket.clone();
        agent.edit_conf(
            "trust_domain = \"example.org\"",
            &format!(
                "trust_domain = \"example.org\"\n    admin_socket_path = \"{}\"",
                admin.display()
            ),
        );
        let mut agent = if reference { agent.reference() } else { agent };
        let wl = format!("spiffe://example.org/admin-{reference}");
        server.entry(&agent_id, &wl, &selector());
        agent.start();
        wait_svid(&agent, &wl, Duration::from_secs(40)).await;
        let mode = std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o770, "admin socket mode (reference={reference})");
        // GetInfo answers from a 5 s cache: ask until the answer shows the agent's SVID
        // and a successful sync.
        let start = std::time::Instant::now();
        let info = loop {
            let info = get_info(&admin).await;
            if !info.svid_chain.is_empty() && info.last_sync_success > 0 {
                break info;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "GetInfo never showed the SVID and a sync: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        infos.push((agent, agent_id, info));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (agent, agent_id, info) in &infos {
        let leaf = &info.svid_chain[0];
        let id = leaf.id.as_ref().unwrap();
        assert_eq!(
            format!("spiffe://{}{}", id.trust_domain, id.path),
            *agent_id,
            "{info:?}"
        );
        assert!(leaf.expires_at > now, "{info:?}");
        assert!(
            info.last_sync_success > now - 60 && info.last_sync_success <= now,
            "{info:?}\n{}",
            agent.log()
        );
        assert!(info.uptime >= 0 && info.uptime < 120, "{info:?}");
        assert_eq!(info.cached_svidstore_x509_svids_count, 0);
    }
    let (ours, theirs) = (&infos[0].2, &infos[1].2);
    // The verified chain: agent SVID, then the server's CA from the bundle.
    assert_eq!(
        ours.svid_chain.len(),
        theirs.svid_chain.len(),
        "{ours:?}\n{theirs:?}"
    );
    assert_eq!(ours.svid_chain.last(), theirs.svid_chain.last());
    assert_eq!(
        dn_shape(&ours.svid_chain[0].subject),
        dn_shape(&theirs.svid_chain[0].subject),
        "{ours:?}\n{theirs:?}"
    );
    assert_eq!(
        ours.cached_x509_svids_count, theirs.cached_x509_svids_count,
        "{ours:?}\n{theirs:?}"
    );
    #[allow(deprecated, reason = "SPIRE still fills the deprecated svids_count")]
    {
        assert_eq!(ours.svids_count, theirs.svids_count);
    }
    assert_eq!(ours.cached_jwt_svids_count, theirs.cached_jwt_svids_count);
}
