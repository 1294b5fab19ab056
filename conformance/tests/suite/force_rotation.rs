//! Forced X.509 authority rotation (after SPIRE's `force-rotation-self-signed` suite):
//! `localauthority x509 prepare`, `activate`, `taint` and `revoke`, observed from a
//! workload: SVIDs move to the new authority once the old one is tainted, and the old one
//! leaves the workload's bundle once revoked.

use crate::support::{
    AgentOpts, Deadline, Scenario, ServerOpts, agent_subject, id, join_token_pair, pki,
    server_subject, uid_selector, workload,
};

/// `(leaf AKID, bundle SKIDs)` of `wl`'s SVID as the workload sees it.
async fn workload_view(
    agent: &crate::support::Agent,
    wl: &str,
) -> Result<(String, Vec<String>), String> {
    let client = workload::client(agent).await?;
    let ctx = client
        .fetch_x509_context()
        .await
        .map_err(|e| e.to_string())?;
    let svid = ctx
        .svids()
        .iter()
        .find(|s| s.spiffe_id().to_string() == wl)
        .ok_or_else(|| format!("no SVID for {wl}"))?;
    let td = spiffe::TrustDomain::new("example.org").map_err(|e| e.to_string())?;
    let bundle = ctx.bundle_set().get(&td).ok_or("no bundle")?;
    let skids = bundle
        .authorities()
        .iter()
        .map(|c| pki::facts(c.as_bytes()).skid)
        .collect();
    Ok((pki::facts(svid.leaf().as_bytes()).akid, skids))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn x509_prepare_activate_taint_revoke() {
    let sc = Scenario::new("force_rotation::x509_prepare_activate_taint_revoke");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    workload::wait_context(&agent, &wl, 60).await;
    let old = server.active_x509_authority();
    assert!(!old.is_empty(), "no active X.509 authority");
    assert_eq!(workload_view(&agent, &wl).await.unwrap().0, old);

    // Prepare: a new authority, published in the bundle at once.
    let prepared = server.cli_json(&["localauthority", "x509", "prepare"]);
    let new = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap_or_else(|| panic!("prepare output: {prepared}"))
        .to_string();
    assert_ne!(new, old);
    assert_eq!(pki::pem_certs(&server.bundle_pem()).len(), 2);
    let d = Deadline::new("the prepared authority to reach the workload bundle", 60);
    loop {
        match workload_view(&agent, &wl).await {
            Ok((_, skids)) if skids.contains(&new) && skids.contains(&old) => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }

    // Activate: the new one is active, the old one is OLD.
    let out = server.cli_json(&["localauthority", "x509", "activate", "-authorityID", &new]);
    assert_eq!(
        out["activated_authority"]["authority_id"],
        new.as_str(),
        "{out}"
    );
    let show = server.x509_authorities();
    assert_eq!(show["active"]["authority_id"], new.as_str(), "{show}");
    assert_eq!(show["old"]["authority_id"], old.as_str(), "{show}");

    // Taint the old one: the agent re-issues SVIDs from the new authority.
    let out = server.cli_json(&["localauthority", "x509", "taint", "-authorityID", &old]);
    assert_eq!(
        out["tainted_authority"]["authority_id"],
        old.as_str(),
        "{out}"
    );
    let bundle = server.cli_json(&["bundle", "show"]);
    let tainted: Vec<bool> = bundle["x509_authorities"]
        .as_array()
        .map(|a| a.iter().map(|x| x["tainted"] == true).collect())
        .unwrap_or_default();
    assert_eq!(
        tainted.iter().filter(|t| **t).count(),
        1,
        "bundle: {bundle}"
    );
    let d = Deadline::new("the workload SVID to move to the new authority", 90);
    loop {
        match workload_view(&agent, &wl).await {
            Ok((akid, _)) if akid == new => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }

    // Revoke it: it leaves the bundle, for the server and for the workload.
    let out = server.cli_json(&["localauthority", "x509", "revoke", "-authorityID", &old]);
    assert_eq!(
        out["revoked_authority"]["authority_id"],
        old.as_str(),
        "{out}"
    );
    assert_eq!(pki::pem_certs(&server.bundle_pem()).len(), 1);
    let d = Deadline::new("the revoked authority to leave the workload bundle", 90);
    loop {
        match workload_view(&agent, &wl).await {
            Ok((akid, skids)) if akid == new && skids == vec![new.clone()] => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }
    // The agent still talks to the server (its own SVID moved too): a new entry arrives.
    let wl2 = id("/after-revoke");
    server.workload_entry(&agent_id, &wl2, &uid_selector());
    agent.wait_x509(&wl2, 60).await;
}

/// `(kid of a freshly fetched JWT-SVID, kids of the workload's JWT bundle)`.
async fn jwt_view(agent: &crate::support::Agent) -> Result<(String, Vec<String>), String> {
    let client = workload::client(agent).await?;
    let svid = client
        .fetch_jwt_svid(["rotation"], None)
        .await
        .map_err(|e| e.to_string())?;
    let bundles = client
        .fetch_jwt_bundles()
        .await
        .map_err(|e| e.to_string())?;
    let td = spiffe::TrustDomain::new("example.org").map_err(|e| e.to_string())?;
    let bundle = bundles.get(&td).ok_or("no JWT bundle")?;
    let mut kids: Vec<String> = bundle
        .jwt_authorities()
        .map(|a| a.key_id().to_string())
        .collect();
    kids.sort();
    Ok((svid.key_id().to_string(), kids))
}

/// After SPIRE's `force-rotation-jwt-authority` suite: JWT-SVIDs move to the new key once
/// the old one is tainted, and the old key leaves the workload's JWT bundle once revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn jwt_prepare_activate_taint_revoke() {
    let sc = Scenario::new("force_rotation::jwt_prepare_activate_taint_revoke");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    workload::wait_jwt(&agent, "rotation", 60).await;
    let show = server.cli_json(&["localauthority", "jwt", "show"]);
    let old = show["active"]["authority_id"]
        .as_str()
        .unwrap_or_else(|| panic!("jwt show: {show}"))
        .to_string();
    assert_eq!(jwt_view(&agent).await.unwrap().0, old, "JWT-SVID kid");

    let prepared = server.cli_json(&["localauthority", "jwt", "prepare"]);
    let new = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap_or_else(|| panic!("prepare output: {prepared}"))
        .to_string();
    assert_ne!(new, old);
    let d = Deadline::new("the prepared JWT key to reach the workload JWT bundle", 60);
    loop {
        match jwt_view(&agent).await {
            Ok((_, kids)) if kids.contains(&new) && kids.contains(&old) => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }

    let out = server.cli_json(&["localauthority", "jwt", "activate", "-authorityID", &new]);
    assert_eq!(
        out["activated_authority"]["authority_id"],
        new.as_str(),
        "{out}"
    );
    let out = server.cli_json(&["localauthority", "jwt", "taint", "-authorityID", &old]);
    assert_eq!(
        out["tainted_authority"]["authority_id"],
        old.as_str(),
        "{out}"
    );
    let d = Deadline::new("JWT-SVIDs to be signed with the new key", 90);
    loop {
        match jwt_view(&agent).await {
            Ok((kid, _)) if kid == new => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }

    let out = server.cli_json(&["localauthority", "jwt", "revoke", "-authorityID", &old]);
    assert_eq!(
        out["revoked_authority"]["authority_id"],
        old.as_str(),
        "{out}"
    );
    let d = Deadline::new("the revoked JWT key to leave the workload JWT bundle", 90);
    loop {
        match jwt_view(&agent).await {
            Ok((kid, kids)) if kid == new && kids == vec![new.clone()] => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }
}
