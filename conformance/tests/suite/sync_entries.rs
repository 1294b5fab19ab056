//! SyncAuthorizedEntries with more entries than one page (after SPIRE's
//! `sync-authorized-entries` suite): 600 entries for one agent, so the server pages
//! revisions and the agent asks for the entries it lacks. The workload must get all 600
//! SVIDs; an updated entry (stale revision) and a deleted one must follow.

use std::collections::BTreeSet;

use crate::support::{
    AgentOpts, Deadline, Scenario, ServerOpts, agent_subject, id, join_token_pair, pki,
    server_subject, uid, workload,
};

const N: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn six_hundred_entries() {
    let sc = Scenario::new("sync_entries::six_hundred_entries");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    // `entry create -data` takes SPIRE's RegistrationEntries JSON (IDs as strings).
    let entries: Vec<serde_json::Value> = (0..N)
        .map(|i| {
            serde_json::json!({
                "entry_id": format!("sync-{i:04}"),
                "parent_id": agent_id,
                "spiffe_id": id(&format!("/workload/{i:04}")),
                "selectors": [{"type": "unix", "value": format!("uid:{}", uid())}],
            })
        })
        .collect();
    let data = sc.path().join("entries.json");
    std::fs::write(&data, serde_json::json!({ "entries": entries }).to_string()).unwrap();
    server.cli_ok(&["entry", "create", "-data", &data.display().to_string()]);
    let count = server.cli_ok(&["entry", "count"]);
    assert!(count.contains(&N.to_string()), "entry count: {count}");

    let want: BTreeSet<String> = (0..N).map(|i| id(&format!("/workload/{i:04}"))).collect();
    let client = workload::client(&agent).await.unwrap();
    let d = Deadline::new(format!("all {N} SVIDs at the workload"), 240);
    loop {
        match client.fetch_all_x509_svids().await {
            Ok(svids) => {
                let got: BTreeSet<String> =
                    svids.iter().map(|s| s.spiffe_id().to_string()).collect();
                if got == want {
                    break;
                }
                d.tick(format!("{} of {N} SVIDs", got.intersection(&want).count()))
                    .await;
            }
            Err(e) => d.tick(e).await,
        }
    }

    // A stale revision: the updated entry's new SVID reaches the workload.
    let changed = id("/workload/0123");
    server.cli_ok(&[
        "entry",
        "update",
        "-entryID",
        "sync-0123",
        "-parentID",
        &agent_id,
        "-spiffeID",
        &changed,
        "-selector",
        &format!("unix:uid:{}", uid()),
        "-dns",
        "updated.example.org",
    ]);
    let d = Deadline::new("the updated entry among 600 to reach the workload", 90);
    loop {
        let last = match client.fetch_all_x509_svids().await {
            Ok(svids) => {
                let dns = svids
                    .iter()
                    .find(|s| s.spiffe_id().to_string() == changed)
                    .map(|s| pki::facts(s.leaf().as_bytes()).dns);
                if dns == Some(vec!["updated.example.org".to_string()]) {
                    break;
                }
                format!("{dns:?}")
            }
            Err(e) => e.to_string(),
        };
        d.tick(last).await;
    }

    // A deletion among 600.
    server.cli_ok(&["entry", "delete", "-entryID", "sync-0599"]);
    let gone = id("/workload/0599");
    let d = Deadline::new("the deleted entry among 600 to leave the workload", 90);
    loop {
        let last = match client.fetch_all_x509_svids().await {
            Ok(svids) => {
                let ids: BTreeSet<String> =
                    svids.iter().map(|s| s.spiffe_id().to_string()).collect();
                if ids.len() == N - 1 && !ids.contains(&gone) {
                    break;
                }
                format!("{} SVIDs", ids.len())
            }
            Err(e) => e.to_string(),
        };
        d.tick(last).await;
    }
}
