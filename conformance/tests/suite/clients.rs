//! Independent SPIFFE clients against the agent under test: the crates.io `spiffe` crate
//! (X509Source, JwtSource, JWT validation), py-spiffe (PyPI `spiffe`) and go-spiffe v2
//! (`conformance/goclient`, including an mTLS connection between two workloads with
//! `spiffetls`). Python and Go clients that cannot be run are skipped, or fail the scenario
//! with `SPIRE_RS_REQUIRE_CLIENTS=1`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{
    Agent, AgentOpts, Deadline, Proc, Scenario, Server, ServerOpts, agent_subject,
    client_unavailable, id, join_token_pair, run, server_subject, uid_selector, workspace_root,
};

const AUDIENCE: &str = "conformance";

async fn setup(sc: &Scenario) -> (Server, Agent, String) {
    let (server, agent, agent_id) = join_token_pair(
        sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let wl = id("/client/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;
    (server, agent, wl)
}

/// `key=value` lines of a client's output.
fn kv(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn rust_spiffe() {
    let sc = Scenario::new("clients::rust_spiffe");
    let (_server, agent, wl) = setup(&sc).await;

    let x509 = spiffe::X509Source::builder()
        .endpoint(agent.endpoint())
        .build()
        .await
        .expect("X509Source");
    let svid = x509.svid().expect("X509Source SVID");
    assert_eq!(svid.spiffe_id().to_string(), wl);
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = x509.try_bundle_for_trust_domain(&td).expect("own bundle");
    let leaf = crate::support::pki::facts(svid.leaf().as_bytes());
    assert!(
        bundle
            .authorities()
            .iter()
            .any(|c| crate::support::pki::facts(c.as_bytes()).skid == leaf.akid),
        "the SVID's issuer is not in the X509Source bundle"
    );
    x509.shutdown().await;

    let jwt_source = spiffe::JwtSource::builder()
        .endpoint(agent.endpoint())
        .build()
        .await
        .expect("JwtSource");
    let jwt = jwt_source
        .fetch_jwt_svid([AUDIENCE])
        .await
        .expect("JWT-SVID");
    assert_eq!(jwt.spiffe_id().to_string(), wl);
    assert_eq!(jwt.audience(), [AUDIENCE.to_string()]);
    let local = spiffe::JwtSvid::parse_and_validate(jwt.token(), &jwt_source, &[AUDIENCE])
        .expect("local validation against the JwtSource bundles");
    assert_eq!(local.spiffe_id().to_string(), wl);
    assert!(
        spiffe::JwtSvid::parse_and_validate(jwt.token(), &jwt_source, &["someone-else"]).is_err(),
        "a token for another audience must not validate"
    );
    jwt_source.shutdown().await;

    let client = crate::support::workload::client(&agent).await.unwrap();
    let remote = client
        .validate_jwt_token(AUDIENCE, jwt.token())
        .await
        .expect("ValidateJWTSVID");
    assert_eq!(remote.spiffe_id().to_string(), wl);
    assert!(
        client
            .validate_jwt_token("someone-else", jwt.token())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn py_spiffe() {
    let sc = Scenario::new("clients::py_spiffe");
    let probe = Command::new("python3")
        .args(["-c", "import spiffe"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        client_unavailable(
            &sc,
            "py-spiffe",
            "python3 cannot import `spiffe` (run conformance/pyclient/setup.sh)",
        );
        return;
    }
    let (_server, agent, wl) = setup(&sc).await;
    let script = workspace_root().join("conformance/pyclient/fetch.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(AUDIENCE)
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "py-spiffe client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(kv(&stdout, "x509_spiffe_id"), Some(wl.clone()), "{stdout}");
    assert_eq!(kv(&stdout, "jwt_spiffe_id"), Some(wl.clone()), "{stdout}");
    assert_eq!(kv(&stdout, "jwt_validated_spiffe_id"), Some(wl), "{stdout}");
    assert_ne!(
        kv(&stdout, "x509_bundle_authorities").as_deref(),
        Some("0"),
        "{stdout}"
    );
}

pub(crate) fn go_client(sc: &Scenario) -> Option<PathBuf> {
    let script = workspace_root().join("conformance/goclient/build.sh");
    let out = run(
        std::path::Path::new("bash"),
        &[&script.display().to_string()],
        None,
    );
    if !out.ok() {
        client_unavailable(sc, "go-spiffe client", &format!("build failed: {out}"));
        return None;
    }
    Some(PathBuf::from(out.stdout.trim()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn go_spiffe() {
    let sc = Scenario::new("clients::go_spiffe");
    let Some(bin) = go_client(&sc) else {
        return;
    };
    let (_server, agent, wl) = setup(&sc).await;
    let endpoint = agent.endpoint();

    let x509 = run(&bin, &["x509", "-socket", &endpoint], None);
    assert!(x509.ok(), "go-spiffe X509Source: {x509}");
    assert_eq!(kv(&x509.stdout, "spiffe_id"), Some(wl.clone()), "{x509}");

    let jwt = run(
        &bin,
        &["jwt", "-socket", &endpoint, "-audience", AUDIENCE],
        None,
    );
    assert!(jwt.ok(), "go-spiffe JWTSource: {jwt}");
    assert_eq!(kv(&jwt.stdout, "spiffe_id"), Some(wl.clone()), "{jwt}");

    // mTLS between two workloads, each with its own X509Source on the agent.
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    let mut server = Proc::spawn(
        &bin,
        &[
            "mtls-server",
            "-socket",
            &endpoint,
            "-addr",
            &addr,
            "-peer",
            &wl,
        ],
        sc.path().join("mtls-server.log"),
        &[],
    );
    let d = Deadline::new("go-spiffe mTLS server to listen", 30);
    while !server.output().contains("listening") {
        if let Some(status) = server.exited() {
            panic!("mtls-server exited with {status}: {}", server.output());
        }
        d.tick(server.output()).await;
    }
    let client = run(
        &bin,
        &[
            "mtls-client",
            "-socket",
            &endpoint,
            "-addr",
            &addr,
            "-peer",
            &wl,
        ],
        None,
    );
    assert!(client.ok(), "go-spiffe mTLS client: {client}");
    assert_eq!(
        kv(&client.stdout, "reply"),
        Some("echo hello".to_string()),
        "{client}"
    );
    assert_eq!(kv(&client.stdout, "peer"), Some(wl.clone()), "{client}");
    let d = Deadline::new("go-spiffe mTLS server to finish", 30);
    while server.exited().is_none() {
        d.tick(server.output()).await;
    }
    assert!(
        server.output().contains(&format!("served {wl}")),
        "{}",
        server.output()
    );
}
