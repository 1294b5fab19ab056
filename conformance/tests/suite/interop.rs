//! Mixed pairs: the server under test with a reference SPIRE 1.13.3 agent, and a
//! reference SPIRE server with the agent under test, each attested with join_token and
//! with x509pop, ending with a workload fetching X.509 and JWT SVIDs through the agent CLI
//! and through the crates.io `spiffe` client. With `SUBJECT=reference` both sides are
//! reference SPIRE (the baseline); with `SUBJECT=spire-rs` these are the interop pairs.

use crate::support::{
    AgentOpts, Impl, Scenario, ServerOpts, agent_subject, check_svid_json, id, join_token_pair,
    server_subject, uid_selector, workload, x509pop_pair,
};

#[derive(Clone, Copy)]
enum Attestation {
    JoinToken,
    X509Pop,
}

async fn pair(name: &str, server_imp: Impl, agent_imp: Impl, attestation: Attestation) {
    let sc = Scenario::new(name);
    eprintln!(
        "{name}: {} server with {} agent",
        server_imp.name(),
        agent_imp.name()
    );
    let (server, agent, agent_id) = match attestation {
        Attestation::JoinToken => {
            join_token_pair(
                &sc,
                server_imp,
                agent_imp,
                ServerOpts::default(),
                AgentOpts::default(),
            )
            .await
        }
        Attestation::X509Pop => {
            let (s, a, node) = x509pop_pair(
                &sc,
                server_imp,
                agent_imp,
                ServerOpts::default(),
                AgentOpts::default(),
            )
            .await;
            (s, a, node.agent_id())
        }
    };
    let wl = id("/interop/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());

    // X.509 through the agent CLI.
    let svid = agent.wait_x509(&wl, 60).await;
    check_svid_json(&svid, &wl);
    let pretty = agent.cli_socket(&["api", "fetch", "x509"]);
    assert!(pretty.ok(), "api fetch x509: {pretty}");
    assert!(
        pretty.stdout.contains(&format!("SPIFFE ID:\t\t{wl}")),
        "{pretty}"
    );

    // JWT through the agent CLI: fetch, then validate.
    let jwt = agent.cli_socket(&[
        "api",
        "fetch",
        "jwt",
        "-audience",
        "interop",
        "-output",
        "json",
    ]);
    assert!(jwt.ok(), "api fetch jwt: {jwt}");
    let v: serde_json::Value =
        serde_json::from_str(&jwt.stdout).unwrap_or_else(|e| panic!("{e}: {jwt}"));
    let token = v[0]["svids"][0]["svid"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {v}"));
    assert_eq!(v[0]["svids"][0]["spiffe_id"], wl.as_str());
    let valid = agent.cli_socket(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "interop",
        "-svid",
        token,
    ]);
    assert!(valid.ok(), "api validate jwt: {valid}");
    assert!(valid.stdout.contains("SVID is valid."), "{valid}");
    let wrong = agent.cli_socket(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "other",
        "-svid",
        token,
    ]);
    assert!(
        !wrong.ok(),
        "a JWT-SVID for another audience must not validate: {wrong}"
    );

    // The same through the independent client.
    let ctx = workload::wait_context(&agent, &wl, 30).await;
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    assert!(ctx.bundle_set().get(&td).is_some(), "no own bundle");
    let jwt = workload::wait_jwt(&agent, "interop", 30).await;
    assert_eq!(jwt.spiffe_id().to_string(), wl);
    let client = workload::client(&agent).await.unwrap();
    let bundles = client.fetch_jwt_bundles().await.expect("JWT bundles");
    let checked = spiffe::JwtSvid::parse_and_validate(jwt.token(), &bundles, &["interop"])
        .expect("JWT-SVID validates against the Workload API's JWT bundle");
    assert_eq!(checked.spiffe_id().to_string(), wl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn subject_server_reference_agent_join_token() {
    pair(
        "interop::subject_server_reference_agent_join_token",
        server_subject(),
        Impl::Reference,
        Attestation::JoinToken,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn subject_server_reference_agent_x509pop() {
    pair(
        "interop::subject_server_reference_agent_x509pop",
        server_subject(),
        Impl::Reference,
        Attestation::X509Pop,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn reference_server_subject_agent_join_token() {
    pair(
        "interop::reference_server_subject_agent_join_token",
        Impl::Reference,
        agent_subject(),
        Attestation::JoinToken,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn reference_server_subject_agent_x509pop() {
    pair(
        "interop::reference_server_subject_agent_x509pop",
        Impl::Reference,
        agent_subject(),
        Attestation::X509Pop,
    )
    .await;
}
