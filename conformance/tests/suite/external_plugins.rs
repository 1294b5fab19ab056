//! External plugins (`plugin_cmd`) built with SPIRE's Go plugin SDK
//! (`conformance/goplugins`, built by its `build.sh`; `run.sh` sets `SPIRE_RS_GOPLUGINS_DIR`)
//! and with our Rust SDK (`crates/spire-plugin-sdk/examples`; `run.sh` sets
//! `SPIRE_RS_SDK_EXAMPLES_DIR`): the same executables and the same configuration give the
//! same agent identity, selectors and workload SVIDs whichever implementation hosts them.

use std::path::PathBuf;

use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Scenario, Server, ServerOpts, agent_selectors,
    agent_subject, check_svid_json, id, join_token_pair, pki, server_subject, uid, uid_selector,
    wait_agent_listed, wait_until, workload,
};

fn plugin_in(var: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os(var)
        .unwrap_or_else(|| panic!("{var} is unset: conformance/run.sh builds the test plugins"));
    PathBuf::from(dir).join(name)
}

fn goplugin(name: &str) -> PathBuf {
    plugin_in("SPIRE_RS_GOPLUGINS_DIR", name)
}

fn rust_example(name: &str) -> PathBuf {
    plugin_in("SPIRE_RS_SDK_EXAMPLES_DIR", name)
}

/// The three attestor plugins of one SDK: the agent and server halves of `sharedsecret` and
/// a pidinfo WorkloadAttestor.
struct Attestors {
    agent: PathBuf,
    server: PathBuf,
    workload: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn go_sdk_node_and_workload_attestors() {
    node_and_workload_attestors(
        "external_plugins::go_sdk_node_and_workload_attestors",
        Attestors {
            agent: goplugin("agent-nodeattestor-sharedsecret"),
            server: goplugin("server-nodeattestor-sharedsecret"),
            workload: goplugin("workloadattestor-pidinfo"),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn rust_sdk_node_and_workload_attestors() {
    node_and_workload_attestors(
        "external_plugins::rust_sdk_node_and_workload_attestors",
        Attestors {
            agent: rust_example("nodeattestor_rust_sharedsecret_agent"),
            server: rust_example("nodeattestor_rust_sharedsecret_server"),
            workload: rust_example("workloadattestor_rust_pidinfo"),
        },
    )
    .await;
}

async fn node_and_workload_attestors(name: &str, plugins: Attestors) {
    let sc = Scenario::new(name);
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: format!(
                "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            shared_secret = \"correct horse\"\n        }}\n    }}",
                plugins.server.display()
            ),
            ..Default::default()
        },
    )
    .await;
    let agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &Attestor::Block(format!(
            "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            node_name = \"node1\"\n            shared_secret = \"correct horse\"\n        }}\n    }}",
            plugins.agent.display()
        )),
        AgentOpts {
            extra_plugins: format!(
                "WorkloadAttestor \"pidinfo\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            tag = \"blue\"\n        }}\n    }}",
                plugins.workload.display()
            ),
            ..Default::default()
        },
    )
    .await;

    // The server plugin names the agent (from the trust domain it was configured with) and
    // gives its selectors; the challenge round trip went through both hosts.
    let agent_id = id("/spire/agent/sharedsecret/node1");
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "sharedsecret", "{listed}");
    assert_eq!(listed["can_reattest"], true, "{listed}");
    let selectors = agent_selectors(&listed);
    assert_eq!(selectors, vec!["sharedsecret:node:node1".to_owned()]);

    // The workload attestor plugin's selectors, together with the built-in unix ones.
    let workload = id("/go-plugin-workload");
    server.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &workload,
        "-selector",
        &format!("pidinfo:uid:{}", uid()),
        "-selector",
        "pidinfo:tag:blue",
        "-selector",
        &format!("unix:uid:{}", uid()),
    ]);
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn go_sdk_key_managers_hold_the_signing_keys() {
    key_managers_hold_the_signing_keys(
        "external_plugins::go_sdk_key_managers_hold_the_signing_keys",
        key_manager_block(&goplugin("server-keymanager-memkeys"), None),
        key_manager_block(&goplugin("agent-keymanager-memkeys"), None),
    )
    .await;
}

/// The Rust SDK's KeyManager example: one executable, its side chosen by `plugin_args`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn rust_sdk_key_managers_hold_the_signing_keys() {
    let exe = rust_example("keymanager_rust_memkeys");
    key_managers_hold_the_signing_keys(
        "external_plugins::rust_sdk_key_managers_hold_the_signing_keys",
        key_manager_block(&exe, Some("server")),
        key_manager_block(&exe, Some("agent")),
    )
    .await;
}

fn key_manager_block(cmd: &std::path::Path, side: Option<&str>) -> String {
    let args = side
        .map(|s| format!("\n        plugin_args = [\"{s}\"]"))
        .unwrap_or_default();
    format!(
        "KeyManager \"memkeys\" {{\n        plugin_cmd = \"{}\"{args}\n    }}",
        cmd.display()
    )
}

async fn key_managers_hold_the_signing_keys(name: &str, server_km: String, agent_km: String) {
    let sc = Scenario::new(name);
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            key_manager: Some(server_km),
            ..Default::default()
        },
        AgentOpts {
            // The agent's own SVID key in the agent-side plugin.
            key_manager: Some(agent_km),
            ..Default::default()
        },
    )
    .await;
    // The CA's key lives in the plugin: the agent and the workload hold certificates it
    // signed, and the X.509 authority the server publishes is the plugin's key.
    let workload = id("/signed-by-plugin");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let context = workload::wait_context(&agent, &workload, 30).await;
    assert!(context.default_svid().is_some());

    // JWT-SVIDs are signed through the plugin too (ES256, r||s) and validate.
    let jwt = workload::wait_jwt(&agent, "memkeys", 30).await;
    let client = workload::client(&agent).await.unwrap();
    let validated = client
        .validate_jwt_token("memkeys", jwt.token())
        .await
        .expect("ValidateJWTSVID");
    assert_eq!(validated.spiffe_id().to_string(), workload);

    // Both say they loaded the external plugin.
    for log in [server.log(), agent.log()] {
        assert!(
            log.contains("plugin_name=memkeys") && log.contains("Plugin loaded"),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn a_plugin_asks_the_agent_store_host_service() {
    let sc = Scenario::new("external_plugins::a_plugin_asks_the_agent_store_host_service");
    // single_use: the Go plugin asks the server's AgentStore whether the agent ID it is
    // about to hand out is already attested.
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: format!(
                "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            shared_secret = \"s\"\n            single_use = true\n        }}\n    }}",
                goplugin("server-nodeattestor-sharedsecret").display()
            ),
            ..Default::default()
        },
    )
    .await;
    let attestor = Attestor::Block(format!(
        "NodeAttestor \"sharedsecret\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            node_name = \"node1\"\n            shared_secret = \"s\"\n        }}\n    }}",
        goplugin("agent-nodeattestor-sharedsecret").display()
    ));
    let _first = Agent::start_new(
        &sc,
        "first",
        agent_subject(),
        &server,
        &attestor,
        AgentOpts::default(),
    )
    .await;
    wait_agent_listed(&server, &id("/spire/agent/sharedsecret/node1"), 30).await;

    // A second agent with the same node name: the plugin finds the ID in the store.
    let mut second = Agent::new(
        &sc,
        "second",
        agent_subject(),
        &server,
        &attestor,
        AgentOpts::default(),
    );
    second.start();
    let status = second.wait_exit(60).await;
    assert!(
        !status.success(),
        "the second agent attested:\n{}",
        second.log()
    );
    let log = second.log();
    assert!(
        log.contains("attestation data has already been used to attest an agent"),
        "{log}"
    );
}

/// One line the `notifier-bundlefile` plugin appended.
fn notifier_events(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn b64_list(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| pki::b64(s.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The claims of a JWT, decoded.
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("JWT payload base64");
    serde_json::from_slice(&bytes).expect("JWT claims JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn go_sdk_server_plugins_shape_and_follow_the_ca() {
    let sc = Scenario::new("external_plugins::go_sdk_server_plugins_shape_and_follow_the_ca");
    // An upstream CA on disk signs the server's CA (UpstreamAuthority); a CredentialComposer
    // adds a JWT claim, a DNS SAN to workload SVIDs and an OU to agent SVIDs; a Notifier
    // records every bundle event (asking the IdentityProvider host service who the server
    // is); a BundlePublisher writes the bundle to a file.
    let upstream = pki::NodeCa::new(&sc.subdir("upstream"));
    let upstream_key = upstream.write_key();
    // A root the upstream adds 3 s after minting (on the open stream): it joins the bundle.
    let later = pki::NodeCa::new(&sc.subdir("upstream-later"));
    // A root only the upstream's local bundle holds (SubscribeToLocalBundle, which the
    // server asks for 5 s after start): it joins the bundle too.
    let local = pki::NodeCa::new(&sc.subdir("upstream-local"));
    let out = sc.subdir("out");
    let events = out.join("notifier.jsonl");
    let published = out.join("published.json");
    let plugins = format!(
        r#"UpstreamAuthority "diskca" {{
        plugin_cmd = "{ua}"
        plugin_data {{
            cert_file_path = "{cert}"
            key_file_path = "{key}"
            later_root_file_path = "{later}"
            later_after_seconds = 3
            local_bundle_root_file_path = "{local}"
        }}
    }}
    CredentialComposer "addclaim" {{
        plugin_cmd = "{cc}"
        plugin_data {{
            claim_name = "department"
            claim_value = "payments"
            dns_name = "composed.example.org"
        }}
    }}
    Notifier "bundlefile" {{
        plugin_cmd = "{notifier}"
        plugin_data {{
            path = "{events}"
            record_identity = true
        }}
    }}
    BundlePublisher "file" {{
        plugin_cmd = "{publisher}"
        plugin_data {{
            path = "{published}"
        }}
    }}"#,
        ua = goplugin("upstreamauthority-diskca").display(),
        cert = upstream.ca_path.display(),
        key = upstream_key.display(),
        later = later.ca_path.display(),
        local = local.ca_path.display(),
        cc = goplugin("credentialcomposer-addclaim").display(),
        notifier = goplugin("notifier-bundlefile").display(),
        events = events.display(),
        publisher = goplugin("bundlepublisher-file").display(),
        published = published.display(),
    );
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_plugins: plugins,
            ..Default::default()
        },
        AgentOpts::default(),
    )
    .await;
    let upstream_root = upstream.der();

    // "Bundle loaded": the bundle holds the upstream root (not our intermediate), and the
    // IdentityProvider host service answered with the server's own SVID.
    let loaded = wait_until("the notifier's bundle-loaded event", 30, || {
        notifier_events(&events)
            .into_iter()
            .find(|e| e["event"] == "loaded")
            .ok_or_else(|| format!("events: {:?}", std::fs::read_to_string(&events)))
    })
    .await;
    assert_eq!(loaded["trust_domain"], "example.org", "{loaded}");
    assert_eq!(
        b64_list(&loaded["x509_authorities"]),
        vec![upstream_root.clone()],
        "{loaded}"
    );
    assert_eq!(loaded["identity"], id("/spire/server"), "{loaded}");
    assert_eq!(
        loaded["jwt_key_ids"].as_array().map(Vec::len),
        Some(1),
        "{loaded}"
    );

    // The server's CA is an intermediate under the upstream root: a workload SVID's chain
    // is leaf, our CA, and it leads to the bundle's upstream root.
    let workload = id("/composed");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    let leaf = check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    assert_eq!(chain.len(), 2, "leaf and the upstream-signed CA");
    let ca = pki::facts(&chain[1]);
    assert!(ca.is_ca);
    assert_eq!(
        ca.akid,
        pki::facts(&upstream_root).skid,
        "CA signed upstream"
    );
    assert_eq!(ca.uris, vec![id("")], "CA names the trust domain");
    // The composer's DNS SAN.
    assert_eq!(leaf.dns, vec!["composed.example.org".to_owned()]);

    // The composer's JWT claim, next to SPIRE's own.
    let jwt = workload::wait_jwt(&agent, "composer", 30).await;
    let claims = jwt_claims(jwt.token());
    assert_eq!(claims["department"], "payments", "{claims}");
    assert_eq!(claims["sub"], workload, "{claims}");
    assert!(claims["exp"].is_i64() && claims["iat"].is_i64(), "{claims}");

    // The publisher wrote the same bundle.
    let publication = wait_until("the published bundle", 30, || {
        std::fs::read_to_string(&published)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()))
    })
    .await;
    assert!(
        b64_list(&publication["x509_authorities"]).contains(&upstream_root),
        "{publication}"
    );

    // A new JWT key (the upstream does not take JWT keys, so it joins our bundle): the
    // notifier hears "bundle updated" and the publisher publishes it.
    server.cli_ok(&["localauthority", "jwt", "prepare"]);
    let updated = wait_until("a bundle-updated event with two JWT keys", 30, || {
        notifier_events(&events)
            .into_iter()
            .find(|e| {
                e["event"] == "updated" && e["jwt_key_ids"].as_array().map(Vec::len) == Some(2)
            })
            .ok_or_else(|| format!("events: {:?}", std::fs::read_to_string(&events)))
    })
    .await;
    assert!(
        b64_list(&updated["x509_authorities"]).contains(&upstream_root),
        "{updated}"
    );
    wait_until("the publisher to publish two JWT keys", 45, || {
        let t = std::fs::read_to_string(&published).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
        (v["jwt_key_ids"].as_array().map(Vec::len) == Some(2))
            .then_some(())
            .ok_or(t)
    })
    .await;
    let log = server.log();
    assert!(
        log.contains("UpstreamAuthority plugin does not support JWT-SVIDs"),
        "{log}"
    );

    // The upstream's later root reaches the bundle (and the notifier and the CLI).
    let later_root = later.der();
    wait_until("the upstream's later root in the bundle", 30, || {
        let certs = pki::pem_certs(&server.bundle_pem());
        (certs.contains(&upstream_root) && certs.contains(&later_root))
            .then_some(())
            .ok_or_else(|| format!("{} authorities", certs.len()))
    })
    .await;
    wait_until("a bundle-updated event with the later root", 30, || {
        notifier_events(&events)
            .into_iter()
            .find(|e| b64_list(&e["x509_authorities"]).contains(&later_root))
            .map(|_| ())
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    // The root of the upstream's local bundle arrives through SubscribeToLocalBundle.
    let local_root = local.der();
    wait_until("the upstream's local-bundle root in the bundle", 30, || {
        let certs = pki::pem_certs(&server.bundle_pem());
        certs
            .contains(&local_root)
            .then_some(())
            .ok_or_else(|| format!("{} authorities", certs.len()))
    })
    .await;

    // A graceful stop shuts the plugins down: go-plugin removes each plugin's socket from
    // TMPDIR (the server's directory here).
    let mut server = server;
    server.stop();
    let sockets: Vec<String> = std::fs::read_dir(&server.dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("plugin"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        sockets.is_empty(),
        "plugin sockets left: {sockets:?}\n{}",
        crate::support::tail(&server.log(), 6000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn go_sdk_svid_store_keeps_stored_svids() {
    let sc = Scenario::new("external_plugins::go_sdk_svid_store_keeps_stored_svids");
    // An entry with `-storeSVID true` and `files:` selectors: the agent mints its SVID and
    // hands it to the SVIDStore plugin named `files` (which writes `<dir>/<name>.json`),
    // never to workloads; deleting the entry deletes the stored SVID.
    let dir = sc.subdir("stored");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts {
            extra_plugins: format!(
                "SVIDStore \"files\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            dir = \"{}\"\n        }}\n    }}",
                goplugin("svidstore-file").display(),
                dir.display()
            ),
            admin_socket: true,
            ..Default::default()
        },
    )
    .await;
    let stored_id = id("/stored/db");
    let entry_id = server.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &stored_id,
        "-selector",
        "files:name:db",
        "-selector",
        "files:team:payments",
        "-storeSVID",
    ]);
    // A regular workload entry next to it, to know when the agent has synced both.
    let workload = id("/regular");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    agent.wait_x509(&workload, 60).await;

    let file = dir.join("db.json");
    let stored: serde_json::Value = wait_until("the stored SVID", 60, || {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(stored["spiffe_id"], stored_id, "{stored}");
    assert_eq!(
        stored["metadata"],
        serde_json::json!(["name:db", "team:payments"]),
        "{stored}"
    );
    let chain = b64_list(&stored["cert_chain"]);
    assert_eq!(pki::facts(&chain[0]).uris, vec![stored_id.clone()]);
    assert!(!pki::b64(stored["private_key"].as_str().unwrap_or_default()).is_empty());
    let bundle = b64_list(&stored["bundle"]);
    assert_eq!(
        bundle,
        pki::pem_certs(&server.bundle_pem()),
        "the stored bundle is the server's"
    );
    assert!(stored["expires_at"].as_i64().unwrap_or_default() > pki::now());
    // Never served to workloads.
    let served = agent.fetch_x509_ids().unwrap_or_default();
    assert!(!served.contains(&stored_id), "{served:?}");
    // The agent's Debug GetInfo counts it among the SVID store's SVIDs.
    wait_svidstore_count(&agent, 1).await;

    // The authority that signed it is tainted: the agent stores a new SVID from the next one.
    let prepared = server.cli_json(&["localauthority", "x509", "prepare"]);
    let new = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let active = server.cli_json(&["localauthority", "x509", "show"]);
    let old = active["active"]["authority_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!new.is_empty() && !old.is_empty(), "{prepared} {active}");
    server.cli_json(&["localauthority", "x509", "activate", "-authorityID", &new]);
    server.cli_json(&["localauthority", "x509", "taint", "-authorityID", &old]);
    let before = chain[0].clone();
    wait_until(
        "the stored SVID to be minted again after the taint",
        90,
        || {
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let now = b64_list(&v["cert_chain"]);
            if now.first() != Some(&before) {
                Ok(())
            } else {
                Err("still the SVID from the tainted authority".to_owned())
            }
        },
    )
    .await;

    // The entry goes: the stored SVID goes.
    server.cli_ok(&["entry", "delete", "-entryID", &entry_id]);
    wait_until("the stored SVID to be deleted", 60, || {
        (!file.exists())
            .then_some(())
            .ok_or_else(|| "still there".to_owned())
    })
    .await;
    wait_svidstore_count(&agent, 0).await;
}

/// Polls the agent's Debug GetInfo (cached by both for 5 s) until
/// `cached_svidstore_x509_svids_count` is `want`.
async fn wait_svidstore_count(agent: &Agent, want: i32) {
    use spire_proto::spire::agent::debug::v1 as debug;
    let admin = agent.admin_socket.clone().expect("admin socket");
    let d = Deadline::new(
        format!("agent GetInfo cached_svidstore_x509_svids_count = {want}"),
        60,
    );
    loop {
        let last = match workload::uds_channel(&admin).await {
            Ok(ch) => match debug::debug_client::DebugClient::new(ch)
                .get_info(debug::GetInfoRequest::default())
                .await
            {
                Ok(r) if r.get_ref().cached_svidstore_x509_svids_count == want => return,
                Ok(r) => format!("{:?}", r.into_inner()),
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        d.tick(last).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn a_notifier_refusing_the_loaded_bundle_stops_the_server() {
    let sc =
        Scenario::new("external_plugins::a_notifier_refusing_the_loaded_bundle_stops_the_server");
    let events = sc.subdir("out").join("events.jsonl");
    let mut server = Server::new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: format!(
                "Notifier \"bundlefile\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            path = \"{}\"\n            fail_loaded = true\n        }}\n    }}",
                goplugin("notifier-bundlefile").display(),
                events.display()
            ),
            ..Default::default()
        },
    );
    let status = server.run_expecting_exit(60).await;
    assert!(!status.success());
    let log = server.log();
    assert!(
        log.contains("one or more notifiers returned an error")
            && log.contains("bundle loaded is refused by configuration"),
        "{log}"
    );
    assert!(!events.exists(), "the refusing notifier wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn rust_sdk_credential_composer_adds_a_claim() {
    let sc = Scenario::new("external_plugins::rust_sdk_credential_composer_adds_a_claim");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_plugins: format!(
                "CredentialComposer \"rustclaim\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{\n            claim_name = \"team\"\n            claim_value = \"rust\"\n            dns_name = \"rust.example.org\"\n        }}\n    }}",
                rust_example("credentialcomposer_rust_addclaim").display()
            ),
            ..Default::default()
        },
        AgentOpts::default(),
    )
    .await;
    let workload = id("/composed-in-rust");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    let leaf = check_svid_json(&svid, &workload);
    assert_eq!(leaf.dns, vec!["rust.example.org".to_owned()]);
    let jwt = workload::wait_jwt(&agent, "rust", 30).await;
    let claims = jwt_claims(jwt.token());
    assert_eq!(claims["team"], "rust", "{claims}");
    assert!(claims["exp"].is_i64(), "{claims}");
}
