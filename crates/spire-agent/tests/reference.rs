//! End-to-end tests: OUR spire-agent binary against the REFERENCE spire-server 1.13.3.
//!
//! Each test runs its own server (SQLite, join_token [+ x509pop], loopback port, private
//! socket) and agent(s) on temporary directories. Workloads are this test process, matched by
//! `unix:uid:<uid>`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use std::time::{Duration, Instant, SystemTime};

use spiffe_core::{Bundle, BundleSet, TrustDomain};
use spire_proto::workload;
use support::{Agent, Server, spiffe_fetch, uid, wait_for};

const AGENT_ID_PREFIX: &str = "spiffe://example.org/spire/agent/join_token/";

fn join_token_agent(server: &Server) -> (Agent, String) {
    let token = server.token();
    let agent = Agent::new(
        server,
        &format!("join_token = \"{token}\""),
        "NodeAttestor \"join_token\" {\n plugin_data {}\n }",
    );
    (agent, format!("{AGENT_ID_PREFIX}{token}"))
}

fn selector() -> String {
    format!("unix:uid:{}", uid())
}

/// Waits until the spiffe-crate client gets an SVID for `id`; returns the time it took.
async fn wait_svid(agent: &Agent, id: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(svid) = spiffe_fetch(&agent.socket).await
            && svid.spiffe_id().to_string() == id
        {
            return start.elapsed();
        }
        // Several identities: look at all of them.
        if let Ok(c) =
            spiffe::WorkloadApiClient::connect_to(format!("unix://{}", agent.socket.display()))
                .await
            && let Ok(all) = c.fetch_all_x509_svids().await
            && all.iter().any(|s| s.spiffe_id().to_string() == id)
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "no SVID for {id} after {timeout:?}:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bundle_set(resp: &workload::X509svidResponse) -> BundleSet {
    let td = TrustDomain::new("example.org").unwrap();
    let mut b = Bundle::new(td);
    for der in spiffe_core::x509svid::split_der_certificates(&resp.svids[0].bundle).unwrap() {
        b.add_x509_authority(der);
    }
    let mut set = BundleSet::new();
    set.insert(b);
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn join_token_end_to_end() {
    let mut server = Server::start("", "");
    let (mut agent, agent_id) = join_token_agent(&server);
    let wl = server.entry(&agent_id, "spiffe://example.org/workload", &selector());
    agent.start();
    agent.wait_log(
        "SVID is not found. Starting node attestation",
        Duration::from_secs(20),
    );
    agent.wait_log("Node attestation was successful", Duration::from_secs(20));
    agent.wait_log(&format!("spiffe_id=\"{agent_id}\""), Duration::from_secs(5));
    agent.wait_log("Starting Workload and SDS APIs", Duration::from_secs(20));

    // The independent client (crates.io spiffe).
    wait_svid(
        &agent,
        "spiffe://example.org/workload",
        Duration::from_secs(30),
    )
    .await;
    let svid = spiffe_fetch(&agent.socket).await.unwrap();
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://example.org/workload"
    );
    let spiffe_client =
        spiffe::WorkloadApiClient::connect_to(format!("unix://{}", agent.socket.display()))
            .await
            .unwrap();
    let jwt = spiffe_client
        .fetch_jwt_svid(["test-audience"], None)
        .await
        .unwrap();
    assert_eq!(jwt.spiffe_id().to_string(), "spiffe://example.org/workload");
    let validated = spiffe_client
        .validate_jwt_token("test-audience", jwt.token())
        .await
        .unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://example.org/workload"
    );

    // Our own client: chain verifies against the bundle; JWT validates.
    let mut own = support::own_client(agent.socket.clone()).await;
    let mut stream = own
        .fetch_x509svid(workload::X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.svids.len(), 1);
    let chain = spiffe_core::x509svid::split_der_certificates(&first.svids[0].x509_svid).unwrap();
    let id = spiffe_core::x509svid::verify_chain(&chain, &bundle_set(&first), SystemTime::now())
        .unwrap();
    assert_eq!(id.as_str(), "spiffe://example.org/workload");
    spiffe_core::X509Svid::parse(chain, &first.svids[0].x509_svid_key).unwrap();
    let token = own
        .fetch_jwtsvid(workload::JwtsvidRequest {
            audience: vec!["aud1".into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .svids
        .remove(0)
        .svid;
    let v = own
        .validate_jwtsvid(workload::ValidateJwtsvidRequest {
            audience: "aud1".into(),
            svid: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.spiffe_id, "spiffe://example.org/workload");
    assert!(v.claims.unwrap().fields.contains_key("aud"));
    let bad = own
        .validate_jwtsvid(workload::ValidateJwtsvidRequest {
            audience: "other".into(),
            svid: token,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let bundles = own
        .fetch_jwt_bundles(workload::JwtBundlesRequest {})
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let jwks = std::str::from_utf8(&bundles.bundles["spiffe://example.org"]).unwrap();
    assert!(
        jwks.contains("\"kid\"") && !jwks.contains("\"use\""),
        "{jwks}"
    );

    // Missing security header.
    let path = agent.socket.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let mut bare = workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel);
    let err = bare
        .fetch_jwtsvid(workload::JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "security header missing from request");

    // Entry created -> workload holds the SVID: latency against the reference server.
    let t0 = Instant::now();
    let second = server.entry(&agent_id, "spiffe://example.org/second", &selector());
    let latency = wait_svid(
        &agent,
        "spiffe://example.org/second",
        Duration::from_secs(40),
    )
    .await;
    eprintln!(
        "MEASURE entry-create -> workload-holds-SVID (reference server, polling): {:?} (incl. CLI {:?})",
        latency,
        t0.elapsed()
    );
    // The open stream saw the change.
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.svids.len(), 2);

    eprintln!("MEASURE idle agent VmRSS: {} KiB", agent.rss_kib());

    // Entry deleted -> the workload loses it; with none left -> PermissionDenied.
    server.delete_entry(&second);
    server.delete_entry(&wl);
    let start = Instant::now();
    loop {
        let r = spiffe_fetch(&agent.socket).await;
        match &r {
            Err(e) if e.contains("PermissionDenied") || e.contains("NoIdentity") => break,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "SVID not withdrawn: {:?}\n{}",
            r.map(|s| s.spiffe_id().to_string()),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = own
        .fetch_jwtsvid(workload::JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");

    // Agent restart: no re-attestation, keeps serving.
    server.entry(&agent_id, "spiffe://example.org/workload", &selector());
    wait_svid(
        &agent,
        "spiffe://example.org/workload",
        Duration::from_secs(30),
    )
    .await;
    agent.stop();
    agent.start();
    agent.wait_log("SVID loaded", Duration::from_secs(20));
    assert!(!agent.log().contains("Starting node attestation"));
    wait_svid(
        &agent,
        "spiffe://example.org/workload",
        Duration::from_secs(30),
    )
    .await;

    // Server restart: cached SVIDs keep being served; the agent reconnects.
    let failures = agent.log().matches("Synchronize failed").count();
    server.stop();
    // The agent has noticed: a sync against the stopped server failed.
    agent.wait_log_more("Synchronize failed", failures, Duration::from_secs(30));
    let during = spiffe_fetch(&agent.socket).await.unwrap();
    assert_eq!(
        during.spiffe_id().to_string(),
        "spiffe://example.org/workload"
    );
    server.restart();
    server.entry(&agent_id, "spiffe://example.org/after-restart", &selector());
    wait_svid(
        &agent,
        "spiffe://example.org/after-restart",
        Duration::from_secs(60),
    )
    .await;
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn used_join_token_is_refused() {
    let server = Server::start("", "");
    let token = server.token();
    let na = "NodeAttestor \"join_token\" {\n plugin_data {}\n }";
    let mut first = Agent::new(&server, &format!("join_token = \"{token}\""), na);
    first.start();
    first.wait_log("Node attestation was successful", Duration::from_secs(20));
    let mut second = Agent::new(
        &server,
        &format!("join_token = \"{token}\"\n retry_bootstrap = false"),
        na,
    );
    second.start();
    assert!(
        second.wait_exit(Duration::from_secs(30)),
        "second agent kept running"
    );
    let log = second.log();
    assert!(
        log.contains("join token does not exist or has already been used"),
        "{log}"
    );
    assert!(!log.contains("Node attestation was successful"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn banned_agent_shuts_down() {
    let server = Server::start("", "");
    let (mut agent, agent_id) = join_token_agent(&server);
    agent.start();
    agent.wait_log("Starting Workload and SDS APIs", Duration::from_secs(20));
    server.cli(&["agent", "ban", "-spiffeID", &agent_id]);
    assert!(
        agent.wait_exit(Duration::from_secs(30)),
        "agent did not shut down"
    );
    assert!(
        agent
            .log()
            .contains("Agent is banned: removing SVID and shutting down")
    );
    // The SVID was removed: the data file has none.
    let data = std::fs::read_to_string(agent.data_dir.join("agent-data.json")).unwrap();
    assert!(data.starts_with("{\"svid\":null"), "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn short_ttls_rotate_before_expiry() {
    let server = Server::start("ca_ttl = \"3m\"\n default_x509_svid_ttl = \"20s\"", "");
    let (mut agent, agent_id) = join_token_agent(&server);
    server.entry(&agent_id, "spiffe://example.org/rot", &selector());
    agent.start();
    wait_svid(&agent, "spiffe://example.org/rot", Duration::from_secs(40)).await;
    let mut own = support::own_client(agent.socket.clone()).await;
    let mut stream = own
        .fetch_x509svid(workload::X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let leaf = |r: &workload::X509svidResponse| {
        spiffe_core::x509svid::split_der_certificates(&r.svids[0].x509_svid).unwrap()[0].clone()
    };
    let first_leaf = leaf(&first);
    let facts = spire_pki::certificate_facts(&first_leaf).unwrap();
    let rotated = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let m = stream.message().await.unwrap().unwrap();
            if leaf(&m) != first_leaf {
                return m;
            }
        }
    })
    .await
    .expect("no rotated SVID on the stream");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(now < facts.not_after, "rotation arrived after expiry");
    let new_facts = spire_pki::certificate_facts(&leaf(&rotated)).unwrap();
    assert!(new_facts.not_after > facts.not_after);
    // The agent SVID (20s) was renewed too.
    agent.wait_log("Successfully rotated agent SVID", Duration::from_secs(30));
    // And the agent still works after renewing.
    wait_svid(&agent, "spiffe://example.org/rot", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn x509pop_attests_and_reattests_after_evict() {
    let material = tempfile::tempdir().unwrap();
    let (ca, cert, key) = support::x509pop_material(material.path());
    let server = Server::start(
        "",
        &format!(
            "NodeAttestor \"x509pop\" {{\n plugin_data {{ ca_bundle_path = \"{}\" }}\n }}",
            ca.display()
        ),
    );
    let mut agent = Agent::new(
        &server,
        "",
        &format!(
            "NodeAttestor \"x509pop\" {{\n plugin_data {{\n private_key_path = \"{}\"\n certificate_path = \"{}\"\n }}\n }}",
            key.display(),
            cert.display()
        ),
    );
    agent.start();
    agent.wait_log("Node attestation was successful", Duration::from_secs(30));
    assert!(agent.log().contains("reattestable=true"), "{}", agent.log());
    let log = agent.log();
    let agent_id = log
        .split("spiffe_id=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert!(
        agent_id.starts_with("spiffe://example.org/spire/agent/x509pop/"),
        "{agent_id}"
    );
    server.entry(&agent_id, "spiffe://example.org/pop-workload", &selector());
    wait_svid(
        &agent,
        "spiffe://example.org/pop-workload",
        Duration::from_secs(40),
    )
    .await;
    server.cli(&["agent", "evict", "-spiffeID", &agent_id]);
    agent.wait_log("Successfully reattested node", Duration::from_secs(40));
    // Still serving after re-attestation.
    wait_svid(
        &agent,
        "spiffe://example.org/pop-workload",
        Duration::from_secs(30),
    )
    .await;
    let listed = server.cli(&["agent", "list"]);
    assert!(listed.contains(&agent_id), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
async fn py_spiffe_fetches_an_svid() {
    let require = std::env::var("SPIRE_RS_REQUIRE_PY").is_ok_and(|v| v == "1");
    let has_py = std::process::Command::new("python3")
        .args(["-c", "import spiffe"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_py {
        assert!(
            !require,
            "SPIRE_RS_REQUIRE_PY=1 but python3 with the spiffe module is missing"
        );
        eprintln!("skipping: python3 with the PyPI spiffe module is not installed");
        return;
    }
    let server = Server::start("", "");
    let (mut agent, agent_id) = join_token_agent(&server);
    server.entry(&agent_id, "spiffe://example.org/python", &selector());
    agent.start();
    wait_svid(
        &agent,
        "spiffe://example.org/python",
        Duration::from_secs(40),
    )
    .await;
    let script = r#"
from spiffe import WorkloadApiClient
with WorkloadApiClient() as client:
    svid = client.fetch_x509_svid()
    print(svid.spiffe_id)
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script])
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", agent.socket.display()),
        )
        .output()
        .await
        .unwrap();
    // grpcio (C-core) sends the percent-encoded socket path as `:authority`, which h2
    // rejects; `spire_uds::h2fix` rewrites it. Without that, this fails with RST_STREAM.
    assert!(
        out.status.success(),
        "py-spiffe failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "spiffe://example.org/python"
    );
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn reference_binaries_are_available() {
    let dir = support::ref_bin_dir();
    assert!(dir.join("spire-server").is_file());
    wait_for("nothing", Duration::from_secs(1), || true);
}

/// The Go test plugins built by `conformance/goplugins/build.sh` (scripts/test.sh sets
/// `SPIRE_RS_GOPLUGINS_DIR`).
fn goplugin(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("SPIRE_RS_GOPLUGINS_DIR").unwrap_or_else(|| {
        panic!("SPIRE_RS_GOPLUGINS_DIR is unset: scripts/test.sh builds the Go test plugins")
    });
    std::path::PathBuf::from(dir).join(name)
}

/// What `/proc/self/status` says of this process under `key` (`Name:`, `Gid:`).
fn own_status(key: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reference SPIRE 1.13.3 and the Go test plugins; scripts/test.sh runs it"]
async fn an_external_go_workload_attestor_gives_the_same_identities_in_both_agents() {
    let server = Server::start("", "");
    let plugin = goplugin("workloadattestor-pidinfo");
    let block = format!(
        "WorkloadAttestor \"unix\" {{\n        plugin_data {{}}\n    }}\n    WorkloadAttestor \"pidinfo\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{ tag = \"blue\" }}\n    }}",
        plugin.display()
    );
    let mut agents = Vec::new();
    for (which, reference) in [("ours", false), ("reference", true)] {
        let (agent, agent_id) = join_token_agent(&server);
        let mut agent = if reference { agent.reference() } else { agent };
        agent.edit_conf(
            "WorkloadAttestor \"unix\" {\n        plugin_data {}\n    }",
            &block,
        );
        // Every selector the plugin gives for this process must match.
        let id = format!("spiffe://example.org/pidinfo/{which}");
        server.cli(&[
            "entry",
            "create",
            "-parentID",
            &agent_id,
            "-spiffeID",
            &id,
            "-selector",
            &format!("pidinfo:uid:{}", uid()),
            "-selector",
            &format!("pidinfo:gid:{}", own_status("Gid:")),
            "-selector",
            &format!("pidinfo:comm:{}", own_status("Name:")),
            "-selector",
            "pidinfo:tag:blue",
        ]);
        // A selector the plugin does not give: never issued.
        server.cli(&[
            "entry",
            "create",
            "-parentID",
            &agent_id,
            "-spiffeID",
            &format!("spiffe://example.org/pidinfo/{which}-red"),
            "-selector",
            "pidinfo:tag:red",
        ]);
        agent.start();
        agents.push((agent, id));
    }
    for (agent, id) in &agents {
        wait_svid(agent, id, Duration::from_secs(30)).await;
        let c = spiffe::WorkloadApiClient::connect_to(format!("unix://{}", agent.socket.display()))
            .await
            .unwrap();
        let all: Vec<String> = c
            .fetch_all_x509_svids()
            .await
            .unwrap()
            .iter()
            .map(|s| s.spiffe_id().to_string())
            .collect();
        assert_eq!(all, vec![id.clone()], "{}", agent.log());
    }
    let ours = &agents[0].0;
    let log = ours.log();
    assert!(
        log.contains("Plugin checksum not configured") && log.contains("plugin_name=pidinfo"),
        "{log}"
    );
    // The plugin's own hclog line, relayed with its fields.
    assert!(
        log.contains("msg=Configured")
            && log.contains("tag=blue")
            && log.contains("trust_domain=example.org"),
        "{log}"
    );
}
