//! Rotation with very short lifetimes (after SPIRE's `rotation` suite): CA TTL 60 s and
//! X509-SVID TTL 10 s. A streaming Workload API client (the `spiffe` crate) must receive
//! rotated SVIDs before the previous ones expire, across a CA rotation.

use std::collections::BTreeSet;

use futures::StreamExt as _;

use crate::support::{
    AgentOpts, Deadline, Scenario, ServerOpts, agent_subject, id, join_token_pair, pki,
    server_subject, uid_selector, workload,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn short_ttls() {
    let sc = Scenario::new("rotation::short_ttls");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_server: "ca_ttl = \"60s\"\n    default_x509_svid_ttl = \"10s\"".into(),
            ..Default::default()
        },
        AgentOpts::default(),
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    workload::wait_context(&agent, &wl, 60).await;

    let mut serials = BTreeSet::new();
    let mut issuers = BTreeSet::new();
    // (serial, not_after) of the SVID the workload holds.
    let mut held: Option<(String, i64)> = None;
    let d = Deadline::new(
        "4 SVID rotations and a CA rotation seen by a streaming client",
        150,
    );
    while serials.len() < 5 || issuers.len() < 2 {
        let client = match workload::client(&agent).await {
            Ok(c) => c,
            Err(e) => {
                d.tick(e).await;
                continue;
            }
        };
        let mut stream = match client.stream_x509_contexts().await {
            Ok(s) => s,
            Err(e) => {
                d.tick(e).await;
                continue;
            }
        };
        while serials.len() < 5 || issuers.len() < 2 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await;
            let ctx = match next {
                Ok(Some(Ok(ctx))) => ctx,
                Ok(Some(Err(e))) => {
                    d.tick(e).await;
                    break;
                }
                Ok(None) => {
                    d.tick("stream ended").await;
                    break;
                }
                Err(_) => {
                    d.tick(format!(
                        "{} serials, {} issuers",
                        serials.len(),
                        issuers.len()
                    ))
                    .await;
                    continue;
                }
            };
            let now = pki::now();
            let svid = ctx
                .svids()
                .iter()
                .find(|s| s.spiffe_id().to_string() == wl)
                .unwrap_or_else(|| panic!("stream update without {wl}"));
            let leaf = pki::facts(svid.leaf().as_bytes());
            assert!(leaf.not_after > now, "received an expired SVID");
            if let Some((serial, not_after)) = &held
                && *serial != leaf.serial
            {
                assert!(
                    *not_after >= now,
                    "the workload's SVID expired at {not_after} before its replacement arrived at {now}"
                );
            }
            // The leaf's issuer is in the bundle delivered with it.
            let td = spiffe::TrustDomain::new("example.org").unwrap();
            let bundle = ctx.bundle_set().get(&td).expect("own bundle in the update");
            let skids: Vec<String> = bundle
                .authorities()
                .iter()
                .map(|c| pki::facts(c.as_bytes()).skid)
                .collect();
            assert!(
                skids.contains(&leaf.akid),
                "SVID issuer {} not in the bundle {skids:?}",
                leaf.akid
            );
            serials.insert(leaf.serial.clone());
            issuers.insert(leaf.akid.clone());
            held = Some((leaf.serial, leaf.not_after));
            assert!(
                !d.expired(),
                "only {} SVIDs and {} issuers seen",
                serials.len(),
                issuers.len()
            );
        }
    }
    // The agent still serves through the CLI.
    agent.wait_x509(&wl, 30).await;
}
