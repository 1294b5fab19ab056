//! UpstreamAuthority `vault` against spire-testsupport's fake Vault (no Vault builds here;
//! the fake serves the endpoints SPIRE's plugin calls, shaped as Vault's API documents
//! them, and records every request). Reference SPIRE has the same plugin, so every pairing
//! runs the same assertions, including what is sent to Vault: the pairings with the
//! reference server pin the requests our server must make.

use spire_testsupport::vault::{FakeVault, Seen, VaultSetup};

use crate::support::{
    AgentOpts, Scenario, ServerOpts, agent_subject, check_svid_json, id, join_token_pair, pki,
    server_subject, uid_selector,
};

fn block(addr: &str, auth: &str, extra: &str) -> String {
    format!(
        "UpstreamAuthority \"vault\" {{\n        plugin_data {{\n            vault_addr = \"{addr}\"\n            pki_mount_point = \"pki\"\n{extra}            {auth}\n        }}\n    }}"
    )
}

/// The workload's SVID chains through our CA to the Vault root, the only X.509 authority.
async fn mint_through(sc: &Scenario, vault: &FakeVault, plugin: String) {
    let (server, agent, agent_id) = join_token_pair(
        sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_plugins: plugin,
            ..Default::default()
        },
        AgentOpts::default(),
    )
    .await;
    assert_eq!(
        pki::pem_certs(&server.bundle_pem()),
        vec![vault.root_der.clone()]
    );
    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    assert_eq!(chain.len(), 2, "leaf and the Vault-signed CA");
    assert_eq!(pki::facts(&chain[1]).akid, pki::facts(&vault.root_der).skid);
    assert_eq!(pki::facts(&chain[1]).uris, vec![id("")]);
}

/// The sign-intermediate request, checked field by field.
fn check_sign(seen: &Seen, token: &str) {
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.path, "/v1/pki/root/sign-intermediate");
    assert_eq!(seen.headers["x-vault-token"], token);
    assert_eq!(seen.headers["x-vault-request"], "true");
    // Vault's Go client sends its JSON without a Content-Type.
    assert!(
        !seen.headers.contains_key("content-type"),
        "{:?}",
        seen.headers
    );
    let b = &seen.body;
    let mut keys: Vec<&str> = b
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(
        keys,
        [
            "common_name",
            "country",
            "csr",
            "organization",
            "ttl",
            "uri_sans"
        ],
        "{b}"
    );
    assert_eq!(b["common_name"], "");
    assert_eq!(b["organization"], "SPIFFE");
    assert_eq!(b["country"], "US");
    assert_eq!(b["uri_sans"], "spiffe://example.org");
    // SPIRE asks for the CA TTL it wants (ca_ttl, 24 h by default), in seconds.
    assert_eq!(b["ttl"], "86400");
    assert!(
        b["csr"]
            .as_str()
            .unwrap_or_default()
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn token_auth() {
    let sc = Scenario::new("upstream_vault::token_auth");
    let vault = FakeVault::start(VaultSetup::default())
        .await
        .expect("fake vault");
    let plugin = block(&vault.addr, "token_auth { token = \"s.root-token\" }", "");
    mint_through(&sc, &vault, plugin).await;
    let seen = vault.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/v1/auth/token/lookup-self");
    assert_eq!(seen[0].headers["x-vault-token"], "s.root-token");
    let signs: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("sign-intermediate"))
        .collect();
    assert!(!signs.is_empty());
    check_sign(signs[0], "s.root-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn approle_auth_in_a_namespace() {
    let sc = Scenario::new("upstream_vault::approle_auth_in_a_namespace");
    let vault = FakeVault::start(VaultSetup {
        token: "s.approle-token".into(),
        lease_secs: 3600,
        renewable: true,
        ..VaultSetup::default()
    })
    .await
    .expect("fake vault");
    let plugin = block(
        &vault.addr,
        "approle_auth {\n                approle_id = \"role-id\"\n                approle_secret_id = \"secret-id\"\n            }",
        "            namespace = \"team-a\"\n",
    );
    mint_through(&sc, &vault, plugin).await;
    let seen = vault.seen();
    let login = &seen[0];
    assert_eq!(login.method, "PUT");
    assert_eq!(login.path, "/v1/auth/approle/login");
    assert_eq!(login.headers["x-vault-namespace"], "team-a");
    assert!(!login.headers.contains_key("x-vault-token"));
    assert_eq!(
        login.body,
        serde_json::json!({"role_id": "role-id", "secret_id": "secret-id"})
    );
    let sign = seen
        .iter()
        .find(|s| s.path.ends_with("sign-intermediate"))
        .expect("a sign-intermediate call");
    assert_eq!(sign.headers["x-vault-namespace"], "team-a");
    check_sign(sign, "s.approle-token");
}
