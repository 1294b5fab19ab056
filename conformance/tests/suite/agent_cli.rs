//! The agent CLI (after SPIRE's `agent-cli` suite): `healthcheck`, `validate`, `api watch`
//! and `api fetch x509 -write`.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::{
    AgentOpts, Deadline, Proc, Scenario, ServerOpts, agent_subject, id, join_token_pair, pki, run,
    server_subject, uid_selector,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn healthcheck() {
    let sc = Scenario::new("agent_cli::healthcheck");
    let (_server, agent, _) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let ok = agent.cli_socket(&["healthcheck"]);
    assert!(ok.ok(), "healthcheck failed: {ok}");
    assert!(ok.stdout.contains("Agent is healthy."), "{ok}");
    let ok = agent.cli_socket(&["healthcheck", "-shallow"]);
    assert!(ok.ok(), "healthcheck -shallow failed: {ok}");

    let missing = agent.dir.join("no/such/api.sock").display().to_string();
    let bad = agent.cli(&["healthcheck", "-socketPath", &missing]);
    assert!(
        !bad.ok(),
        "healthcheck on a missing socket must fail: {bad}"
    );
    assert!(bad.all().contains("Agent is unhealthy"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn validate() {
    let sc = Scenario::new("agent_cli::validate");
    let (_server, agent, _) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let conf = agent.conf.display().to_string();
    let ok = agent.cli(&["validate", "-config", &conf]);
    assert!(ok.ok(), "validate of the running config failed: {ok}");
    assert!(
        ok.stdout
            .contains("SPIRE agent configuration file is valid."),
        "{ok}"
    );
    let bad = agent.cli(&["validate", "-config", "invalid/path"]);
    assert!(!bad.ok(), "validate of a missing file must fail: {bad}");
    assert!(
        bad.all()
            .contains("SPIRE agent configuration file is invalid"),
        "{bad}"
    );
    // An unknown key is an error, as in SPIRE.
    let broken = agent.dir.join("broken.conf");
    let text = std::fs::read_to_string(&agent.conf).unwrap();
    std::fs::write(
        &broken,
        text.replacen("agent {", "agent {\n    no_such_key = 1", 1),
    )
    .unwrap();
    let bad = agent.cli(&["validate", "-config", &broken.display().to_string()]);
    assert!(!bad.ok(), "validate must reject an unknown key: {bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn api_watch_first_message() {
    let sc = Scenario::new("agent_cli::api_watch_first_message");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    // The watch starts before the workload has an identity and waits for one.
    let socket = agent.socket.display().to_string();
    let watch = Proc::spawn(
        &agent.bin,
        &["api", "watch", "-socketPath", &socket],
        agent.dir.join("watch.log"),
        &[],
    );
    let before = watch.output();
    assert!(
        !before.contains("Received"),
        "watch reported an SVID before any entry existed: {before}"
    );
    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let d = Deadline::new("`api watch` to print its first SVID", 60);
    loop {
        let out = watch.output();
        if out.contains("Received 1 svid after")
            && out.contains(&format!("SPIFFE ID:\t\t{workload}"))
        {
            break;
        }
        d.tick(&out).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn api_fetch_write() {
    let sc = Scenario::new("agent_cli::api_fetch_write");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    agent.wait_x509(&workload, 60).await;

    // Under umask 022, as SPIRE's suites run: files keep the modes the agent CLI asks for.
    let out_dir = sc.subdir("written");
    let script = "umask 022; exec \"$0\" \"$@\"";
    let bin = agent.bin.display().to_string();
    let socket = agent.socket.display().to_string();
    let dir = out_dir.display().to_string();
    let out = run(
        std::path::Path::new("/bin/sh"),
        &[
            "-c",
            script,
            &bin,
            "api",
            "fetch",
            "x509",
            "-socketPath",
            &socket,
            "-write",
            &dir,
        ],
        None,
    );
    assert!(out.ok(), "api fetch x509 -write failed: {out}");
    for (file, mode) in [
        ("svid.0.pem", 0o644),
        ("svid.0.key", 0o600),
        ("bundle.0.pem", 0o644),
    ] {
        let meta = std::fs::metadata(out_dir.join(file))
            .unwrap_or_else(|e| panic!("{file} not written: {e}; output: {out}"));
        assert_eq!(
            meta.permissions().mode() & 0o777,
            mode,
            "{file} mode {:o}",
            meta.permissions().mode() & 0o777
        );
    }
    let svid = std::fs::read_to_string(out_dir.join("svid.0.pem")).unwrap();
    let chain = pki::pem_certs(&svid);
    assert!(!chain.is_empty(), "svid.0.pem has no certificate");
    assert_eq!(pki::facts(&chain[0]).uris, vec![workload.clone()]);
    let key = std::fs::read_to_string(out_dir.join("svid.0.key")).unwrap();
    assert!(
        key.contains("-----BEGIN PRIVATE KEY-----"),
        "svid.0.key is not PKCS#8 PEM: {key}"
    );
    let bundle = std::fs::read_to_string(out_dir.join("bundle.0.pem")).unwrap();
    let mut got = pki::pem_certs(&bundle);
    let mut want = pki::pem_certs(&server.bundle_pem());
    got.sort();
    want.sort();
    assert_eq!(got, want, "bundle.0.pem differs from the server's bundle");
    assert!(
        out.stdout
            .contains(&format!("Writing SVID #0 to file {dir}/svid.0.pem.")),
        "{out}"
    );
}
