//! SPIFFE federation between two trust domains on loopback.
//!
//! Domain A (`example.org`) is the pairing's server and agent; domain B (`b.test`) is a
//! second server serving its bundle endpoint, of the *agent* subject's implementation, so
//! the four pairings cover ours fetching from ours, from reference SPIRE, reference SPIRE
//! fetching from ours, and reference from reference. A federation relationship created
//! with `federation create` (the initial bundle given with `-trustDomainBundlePath`)
//! makes A fetch B's bundle from its endpoint (`https_spiffe`); `federation refresh`
//! fetches now; a workload in A whose entry federates with B gets B's bundle and verifies
//! (go-spiffe) an X509-SVID minted in B; an endpoint presenting another SPIFFE ID than
//! the relationship names changes nothing; a deleted relationship is no longer refreshed.

use serde_json::Value;

use crate::clients::go_client;
use crate::support::*;

const B: &str = "b.test";
const B_ID: &str = "spiffe://b.test";
const B_SERVER: &str = "spiffe://b.test/spire/server";

/// The x5c certificates (base64 DER) of the `x509-svid` keys of a SPIFFE bundle document.
fn x509_keys(doc: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(doc).unwrap_or_else(|e| panic!("bundle JSON ({e}): {doc}"));
    let mut out: Vec<String> = v["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys: {doc}"))
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .filter_map(|k| k["x5c"][0].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

fn bundle_endpoint(port: u16) -> String {
    format!(
        r#"federation {{
        bundle_endpoint {{
            address = "127.0.0.1"
            port = {port}
            refresh_hint = "1m"
            profile "https_spiffe" {{}}
        }}
    }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn https_spiffe() {
    let sc = Scenario::new("federation::https_spiffe");
    let Some(goclient) = go_client(&sc) else {
        return;
    };
    let be_port = free_port();
    let b = Server::start_new(
        &sc,
        "server-b",
        agent_subject(),
        ServerOpts {
            trust_domain: Some(B.into()),
            extra_server: bundle_endpoint(be_port),
            ..ServerOpts::default()
        },
    )
    .await;
    b.wait_log("Serving bundle endpoint", 30).await;
    let url = format!("https://127.0.0.1:{be_port}");

    let (a, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;

    // The relationship, with B's bundle as it is now.
    let b_bundle = b.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let b_path = sc.path().join("b-bundle.json");
    std::fs::write(&b_path, &b_bundle).expect("write bundle");
    let b_path = b_path.display().to_string();
    a.cli_ok(&[
        "federation",
        "create",
        "-trustDomain",
        B,
        "-bundleEndpointURL",
        &url,
        "-bundleEndpointProfile",
        "https_spiffe",
        "-endpointSpiffeID",
        B_SERVER,
        "-trustDomainBundlePath",
        &b_path,
        "-trustDomainBundleFormat",
        "spiffe",
    ]);

    // B gets a second CA; A fetches it on `federation refresh`.
    b.cli_ok(&["localauthority", "x509", "prepare"]);
    let b_now = x509_keys(&b.cli_ok(&["bundle", "show", "-format", "spiffe"]));
    assert_eq!(b_now.len(), 2, "B's bundle after prepare");
    let refreshed = a.cli(&["federation", "refresh", "-id", B]);
    assert!(refreshed.ok(), "federation refresh: {refreshed}");
    let a_copy = a.cli_ok(&["bundle", "list", "-id", B_ID, "-format", "spiffe"]);
    assert_eq!(
        x509_keys(&a_copy),
        b_now,
        "A's copy of B's bundle: {a_copy}"
    );
    a.wait_log("Trust domain is now managed", 30).await;

    // A workload in A federating with B verifies an SVID minted in B.
    let wl = id("/federated-workload");
    a.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &wl,
        "-selector",
        &uid_selector(),
        "-federatesWith",
        B_ID,
    ]);
    agent.wait_x509(&wl, 60).await;
    let mint_dir = sc.subdir("b-mint");
    b.cli_ok(&[
        "x509",
        "mint",
        "-spiffeID",
        "spiffe://b.test/peer",
        "-write",
        &mint_dir.display().to_string(),
    ]);
    let svid = mint_dir.join("svid.pem").display().to_string();
    let endpoint = agent.endpoint();
    let verified = wait_until(
        "go-spiffe to verify B's SVID with the federated bundle",
        60,
        || {
            let out = run(
                &goclient,
                &["verify", "-socket", &endpoint, "-svid", &svid],
                None,
            );
            if out.ok() {
                Ok(out.stdout)
            } else {
                Err(out.all())
            }
        },
    )
    .await;
    assert!(
        verified.contains("verified=spiffe://b.test/peer"),
        "{verified}"
    );

    // An endpoint presenting another SPIFFE ID than the relationship names: refused, and
    // the bundle stored for that trust domain stays as it was.
    a.cli_ok(&[
        "federation",
        "create",
        "-trustDomain",
        "c.test",
        "-bundleEndpointURL",
        &url,
        "-bundleEndpointProfile",
        "https_spiffe",
        "-endpointSpiffeID",
        "spiffe://c.test/spire/server",
        "-trustDomainBundlePath",
        &b_path,
        "-trustDomainBundleFormat",
        "spiffe",
    ]);
    let before = a.cli_ok(&[
        "bundle",
        "list",
        "-id",
        "spiffe://c.test",
        "-format",
        "spiffe",
    ]);
    let refused = a.cli(&["federation", "refresh", "-id", "c.test"]);
    assert!(
        !refused.ok(),
        "refresh from an endpoint with another ID: {refused}"
    );
    assert!(
        refused.all().contains("failed to refresh bundle"),
        "{refused}"
    );
    let after = a.cli_ok(&[
        "bundle",
        "list",
        "-id",
        "spiffe://c.test",
        "-format",
        "spiffe",
    ]);
    assert_eq!(x509_keys(&before), x509_keys(&after));

    // The relationship deleted: no longer managed, no longer refreshed.
    a.cli_ok(&["federation", "delete", "-id", B]);
    a.wait_log("Trust domain no longer managed", 30).await;
    let gone = a.cli(&["federation", "refresh", "-id", B]);
    assert!(!gone.ok(), "{gone}");
    assert!(
        gone.all()
            .contains("there is no federation relationship with trust domain \"b.test\""),
        "{gone}"
    );
}
