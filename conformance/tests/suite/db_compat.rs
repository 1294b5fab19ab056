//! Database and key-file compatibility, both directions: a SQLite datastore and disk
//! KeyManager written by one implementation are served unchanged by the other. The state
//! (entries, a federated bundle, an unused join token, an attested agent, the CA journal
//! with an active and a prepared authority) must survive the swap, the existing agent must
//! keep working, and the unused join token must still attest.
//!
//! Reference SPIRE is always the counterpart: with `SUBJECT=reference` both halves are
//! reference SPIRE (a restart), with `SUBJECT=spire-rs` they are the two directions.
//! Both snapshots are read with the reference CLI, so only the server differs.

use serde_json::Value;

use crate::support::{
    Agent, AgentOpts, Attestor, Impl, Scenario, Server, ServerOpts, id, pki, run, server_subject,
    uid_selector, wait_agent_listed,
};

/// `spire-server <args> -socketPath <socket> -output json` with the reference CLI.
fn ref_json(server: &Server, args: &[&str]) -> Value {
    let socket = server.socket.display().to_string();
    let mut all = args.to_vec();
    all.extend(["-socketPath", &socket, "-output", "json"]);
    let out = run(&Impl::Reference.bin("spire-server"), &all, None);
    assert!(
        out.ok(),
        "reference CLI {args:?} against {}: {out}",
        server.imp.name()
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Everything that must survive the swap, as the reference CLI reads it.
fn snapshot(server: &Server) -> Value {
    let mut entries = ref_json(server, &["entry", "show"])["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.sort_by_key(|e| e["id"].as_str().unwrap_or_default().to_string());
    let bundle = ref_json(server, &["bundle", "show"]);
    let mut x509: Vec<String> = bundle["x509_authorities"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["asn1"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    x509.sort();
    let mut jwt: Vec<String> = bundle["jwt_authorities"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["key_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    jwt.sort();
    let mut agents: Vec<Value> = ref_json(server, &["agent", "list"])["agents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    agents.sort_by_key(|a| a["id"]["path"].as_str().unwrap_or_default().to_string());
    serde_json::json!({
        "x509_authority": ref_json(server, &["localauthority", "x509", "show"]),
        "jwt_authority": ref_json(server, &["localauthority", "jwt", "show"]),
        "bundle_x509": x509,
        "bundle_jwt_key_ids": jwt,
        "federated": ref_json(server, &["bundle", "list"]),
        "entries": entries,
        "agents": agents,
    })
}

async fn handover(name: &str, first: Impl, second: Impl) {
    let sc = Scenario::new(name);
    eprintln!(
        "{name}: written by {}, served by {}",
        first.name(),
        second.name()
    );
    let mut server = Server::start_new(&sc, "server", first, ServerOpts::default()).await;

    // State: an attested (reference) agent, workload entries, a federated bundle, an
    // unused join token with its vanity entry, and a prepared X.509 authority.
    let token = server.token(None);
    let agent_id = id(&format!("/spire/agent/join_token/{token}"));
    let agent = Agent::start_new(
        &sc,
        "agent",
        Impl::Reference,
        &server,
        &Attestor::JoinToken(token),
        AgentOpts::default(),
    )
    .await;
    let wl = id("/db/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    let other_ca = pki::NodeCa::new(&sc.subdir("other-td"));
    server.cli_ok(&[
        "bundle",
        "set",
        "-id",
        "spiffe://other.org",
        "-path",
        &other_ca.ca_path.display().to_string(),
    ]);
    server.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &id("/db/federated"),
        "-selector",
        "unix:uid:4242",
        "-federatesWith",
        "spiffe://other.org",
        "-dns",
        "db.example.org",
        "-x509SVIDTTL",
        "600",
        "-hint",
        "db-hint",
    ]);
    let unused = server.token(Some(&id("/db/node2")));
    server.cli_ok(&["localauthority", "x509", "prepare"]);
    agent.wait_x509(&wl, 60).await;
    wait_agent_listed(&server, &agent_id, 30).await;
    let before = snapshot(&server);
    assert_eq!(
        before["entries"].as_array().map(Vec::len),
        Some(3),
        "{before}"
    );
    assert_eq!(
        before["bundle_x509"].as_array().map(Vec::len),
        Some(2),
        "{before}"
    );

    // Swap implementations on the same files.
    server.stop();
    server.switch_to(second);
    server.start().await;
    let after = snapshot(&server);
    for key in [
        "x509_authority",
        "jwt_authority",
        "bundle_x509",
        "bundle_jwt_key_ids",
        "federated",
        "entries",
        "agents",
    ] {
        assert_eq!(
            after[key],
            before[key],
            "{key} differs after {} took over from {}",
            second.name(),
            first.name()
        );
    }

    // The existing agent keeps working with the new server.
    let wl2 = id("/db/after-swap");
    server.workload_entry(&agent_id, &wl2, &uid_selector());
    agent.wait_x509(&wl2, 90).await;
    agent.wait_x509(&wl, 10).await;

    // The join token written by the first server attests against the second.
    let agent2 = Agent::start_new(
        &sc,
        "agent2",
        Impl::Reference,
        &server,
        &Attestor::JoinToken(unused.clone()),
        AgentOpts::default(),
    )
    .await;
    wait_agent_listed(
        &server,
        &id(&format!("/spire/agent/join_token/{unused}")),
        30,
    )
    .await;
    let wl3 = id("/db/node2/workload");
    server.workload_entry(&id("/db/node2"), &wl3, &uid_selector());
    agent2.wait_x509(&wl3, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn reference_db_served_by_subject() {
    handover(
        "db_compat::reference_db_served_by_subject",
        Impl::Reference,
        server_subject(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn subject_db_served_by_reference() {
    handover(
        "db_compat::subject_db_served_by_reference",
        server_subject(),
        Impl::Reference,
    )
    .await;
}
