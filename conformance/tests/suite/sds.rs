//! Envoy SDS v3 on the agent's Workload API socket, driven by an independent client built on
//! Envoy's go-control-plane (`conformance/sdsclient`): the resources SPIRE 1.13 serves
//! (SVIDs by SPIFFE ID and the default name, bundles by trust domain ID and the default
//! name, all bundles for Envoy's SPIFFE validator, federated bundles), the `sds { }`
//! settings and the node metadata override, unknown names, a caller with no identity,
//! `StreamSecrets` versions, ACKs, a change of names and a push on a new entry, and
//! `DeltaSecrets` (not implemented). The last scenario serves the same entries through
//! reference SPIRE's agent and ours and compares what SDS returns.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Impl, Proc, Scenario, Server, ServerOpts, agent_subject,
    client_unavailable, id, join_token_pair, pki, run, server_subject, uid_selector,
    workspace_root,
};

const OTHER_TD: &str = "spiffe://other.org";

pub(crate) fn sds_client(sc: &Scenario) -> Option<PathBuf> {
    let script = workspace_root().join("conformance/sdsclient/build.sh");
    let out = run(
        std::path::Path::new("bash"),
        &[&script.display().to_string()],
        None,
    );
    if !out.ok() {
        client_unavailable(sc, "Envoy SDS client", &format!("build failed: {out}"));
        return None;
    }
    Some(PathBuf::from(out.stdout.trim()))
}

/// Runs the client and returns the JSON lines it printed.
fn sds(bin: &Path, agent: &Agent, mode: &str, args: &[&str]) -> Vec<Value> {
    let socket = agent.socket.display().to_string();
    let mut all = vec![mode, "-socket", socket.as_str()];
    all.extend_from_slice(args);
    let out = run(bin, &all, None);
    assert!(out.ok(), "sdsclient {all:?}: {out}");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// One FetchSecrets answer (retrying SPIRE's "not authorized" while SVIDs are minted).
pub(crate) fn fetch(bin: &Path, agent: &Agent, args: &[&str]) -> Value {
    let mut a = vec!["-retry", "20s"];
    a.extend_from_slice(args);
    let mut out = sds(bin, agent, "fetch", &a);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

fn names(resp: &Value) -> Vec<String> {
    let mut n: Vec<String> = resp["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources: {resp}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}

fn resource<'a>(resp: &'a Value, name: &str) -> &'a Value {
    resp["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no resource {name} in {resp}"))
}

fn assert_error(resp: &Value, code: &str, message: &str) {
    assert_eq!(
        resp["error"],
        json!({"code": code, "message": message}),
        "{resp}"
    );
}

/// The trust domain names of a SPIFFE validator context.
fn validator_tds(r: &Value) -> Vec<String> {
    let v = &r["custom_validator"];
    assert_eq!(v["name"], "envoy.tls.cert_validator.spiffe", "{r}");
    assert_eq!(
        v["type_url"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig",
        "{r}"
    );
    assert!(r.get("trusted_ca").is_none(), "{r}");
    v["trust_domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(!t["certs"].as_array().unwrap().is_empty(), "{r}");
            t["name"].as_str().unwrap().to_string()
        })
        .collect()
}

fn check_svid(r: &Value, spiffe_id: &str) {
    assert_eq!(r["type"], "tls_certificate", "{r}");
    assert_eq!(r["certificate_chain"][0]["uris"], json!([spiffe_id]), "{r}");
    assert_eq!(r["certificate_chain"][0]["is_ca"], false, "{r}");
    assert_eq!(r["private_key_pem_type"], "PRIVATE KEY", "{r}");
    assert_eq!(r["key_matches_leaf"], true, "{r}");
}

/// A federated bundle for `other.org` and an entry for this process federating with it.
fn federate(sc: &Scenario, server: &Server, agent_id: &str, wl: &str) {
    let other_ca = pki::NodeCa::new(&sc.subdir("other-td"));
    server.cli_ok(&[
        "bundle",
        "set",
        "-id",
        OTHER_TD,
        "-path",
        &other_ca.ca_path.display().to_string(),
    ]);
    server.entry_create(&[
        "-parentID",
        agent_id,
        "-spiffeID",
        wl,
        "-selector",
        &uid_selector(),
        "-federatesWith",
        OTHER_TD,
    ]);
}

/// Waits until a full FetchSecrets answer holds every one of `want`.
async fn wait_names(bin: &Path, agent: &Agent, want: &[&str]) -> Value {
    let d = Deadline::new(format!("SDS resources {want:?}"), 60);
    loop {
        let resp = fetch(bin, agent, &[]);
        let have = names(&resp);
        if want.iter().all(|w| have.iter().any(|h| h == w)) {
            return resp;
        }
        d.tick(&resp).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn sds_resources() {
    let sc = Scenario::new("sds::sds_resources");
    let Some(bin) = sds_client(&sc) else {
        return;
    };
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let td = id("").trim_end_matches('/').to_string();

    // A caller with no identity: the bundle only, and no default SVID.
    let resp = fetch(&bin, &agent, &[]);
    assert_eq!(names(&resp), std::slice::from_ref(&td), "{resp}");
    let resp = sds(&bin, &agent, "fetch", &["-names", "default"]);
    assert_error(
        &resp[0],
        "InvalidArgument",
        "workload is not authorized for the requested identities [\"default\"]",
    );

    let wl = id("/sds/workload");
    federate(&sc, &server, &agent_id, &wl);
    agent.wait_x509(&wl, 60).await;
    let all = wait_names(&bin, &agent, &[&wl, OTHER_TD]).await;
    assert_eq!(
        names(&all),
        [td.clone(), wl.clone(), OTHER_TD.to_string()],
        "{all}"
    );
    assert_eq!(all["version_info"], "", "{all}");
    assert_eq!(all["nonce_len"], 0, "{all}");
    assert_eq!(
        all["type_url"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    );
    check_svid(resource(&all, &wl), &wl);
    assert_eq!(validator_tds(resource(&all, &td)), ["example.org"]);
    assert_eq!(validator_tds(resource(&all, OTHER_TD)), ["other.org"]);

    // Default names, and the all-bundles context.
    let resp = fetch(&bin, &agent, &["-names", "default,ROOTCA"]);
    assert_eq!(names(&resp), ["ROOTCA", "default"], "{resp}");
    check_svid(resource(&resp, "default"), &wl);
    assert_eq!(validator_tds(resource(&resp, "ROOTCA")), ["example.org"]);
    let resp = fetch(&bin, &agent, &["-names", "ALL"]);
    assert_eq!(names(&resp), ["ALL"], "{resp}");
    assert_eq!(
        validator_tds(resource(&resp, "ALL")),
        ["example.org", "other.org"]
    );
    let resp = fetch(&bin, &agent, &["-names", &format!("{wl},{OTHER_TD}")]);
    assert_eq!(names(&resp), [wl.clone(), OTHER_TD.to_string()], "{resp}");

    // The node's metadata disables the SPIFFE validator: plain trusted CAs.
    let resp = fetch(
        &bin,
        &agent,
        &["-names", "ROOTCA", "-disable-validation", "true"],
    );
    let r = resource(&resp, "ROOTCA");
    assert!(r.get("custom_validator").is_none(), "{r}");
    assert_eq!(r["trusted_ca"][0]["is_ca"], true, "{r}");
    let resp = sds(
        &bin,
        &agent,
        "fetch",
        &["-names", "ALL", "-disable-validation", "true"],
    );
    assert_error(
        &resp[0],
        "Internal",
        "unable to use \"SPIFFE validator\" on Envoy below 1.17",
    );
    // So does an Envoy of 1.17 or older.
    let resp = sds(
        &bin,
        &agent,
        "fetch",
        &["-names", "ALL", "-envoy-version", "1.17"],
    );
    assert_error(
        &resp[0],
        "Internal",
        "unable to use \"SPIFFE validator\" on Envoy below 1.17",
    );
    let resp = fetch(&bin, &agent, &["-names", "ALL", "-envoy-version", "1.30"]);
    assert_eq!(names(&resp), ["ALL"], "{resp}");

    // Unknown names, and names of two forms SPIRE does not serve together.
    let resp = sds(
        &bin,
        &agent,
        "fetch",
        &["-names", &format!("{wl},spiffe://example.org/nope,zzz")],
    );
    assert_error(
        &resp[0],
        "InvalidArgument",
        "workload is not authorized for the requested identities [\"spiffe://example.org/nope\" \"zzz\"]",
    );
    let resp = sds(&bin, &agent, "fetch", &["-names", "ROOTCA,ALL"]);
    assert_error(
        &resp[0],
        "InvalidArgument",
        "workload is not authorized for the requested identities [\"ALL\"]",
    );

    // Not implemented, as in SPIRE.
    let resp = sds(&bin, &agent, "delta", &[]);
    assert_error(&resp[0], "Unimplemented", "Method is not implemented");

    // A stream: version 1 with a nonce, then a change of names answered at once.
    let out = sds(
        &bin,
        &agent,
        "stream",
        &["-retry", "20s", "-then-names", "ROOTCA,default"],
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(names(&out[0]), names(&all), "{out:?}");
    assert_eq!(out[0]["nonce_len"], 8, "{out:?}");
    assert_eq!(names(&out[1]), ["ROOTCA", "default"], "{out:?}");
    assert_eq!(out[1]["version_info"], out[0]["version_info"], "{out:?}");
    assert_eq!(out[1]["nonce_len"], 8, "{out:?}");
    // An unknown name ends the stream with the same error.
    let out = sds(&bin, &agent, "stream", &["-names", "nope"]);
    assert_error(
        &out[0],
        "InvalidArgument",
        "workload is not authorized for the requested identities [\"nope\"]",
    );

    // A push: a new entry for this process reaches an open stream.
    let wl2 = id("/sds/second");
    let socket = agent.socket.display().to_string();
    let mut watcher = Proc::spawn(
        &bin,
        &[
            "stream",
            "-socket",
            &socket,
            "-retry",
            "20s",
            "-wait-for",
            &wl2,
            "-timeout",
            "90s",
        ],
        sc.path().join("sds-stream.log"),
        &[],
    );
    let d = Deadline::new("the first StreamSecrets response", 30);
    while !watcher.output().contains("version_info") {
        if let Some(status) = watcher.exited() {
            panic!("sdsclient exited with {status}: {}", watcher.output());
        }
        d.tick(watcher.output()).await;
    }
    server.workload_entry(&agent_id, &wl2, &uid_selector());
    let d = Deadline::new("the pushed StreamSecrets response", 90);
    let status = loop {
        if let Some(status) = watcher.exited() {
            break status;
        }
        d.tick(watcher.output()).await;
    };
    let out = watcher.output();
    assert!(status.success(), "sdsclient: {out}");
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let first = lines.first().expect("responses");
    let last = lines.last().expect("responses");
    assert!(!names(first).contains(&wl2), "{out}");
    check_svid(resource(last, &wl2), &wl2);
    let version = |v: &Value| v["version_info"].as_str().unwrap().parse::<u64>().unwrap();
    assert!(version(first) >= 1, "{out}");
    assert!(version(last) > version(first), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn sds_settings() {
    let sc = Scenario::new("sds::sds_settings");
    let Some(bin) = sds_client(&sc) else {
        return;
    };
    let opts = AgentOpts {
        extra_agent: "sds {\n        default_svid_name = \"my-svid\"\n        default_bundle_name = \"my-ca\"\n        default_all_bundles_name = \"my-all\"\n        disable_spiffe_cert_validation = true\n    }".into(),
        ..AgentOpts::default()
    };
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        opts,
    )
    .await;
    let wl = id("/sds/settings");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;

    let resp = fetch(&bin, &agent, &["-names", "my-svid,my-ca"]);
    assert_eq!(names(&resp), ["my-ca", "my-svid"], "{resp}");
    check_svid(resource(&resp, "my-svid"), &wl);
    // Validation disabled by configuration: trusted CAs.
    let r = resource(&resp, "my-ca");
    assert!(r.get("custom_validator").is_none(), "{r}");
    assert_eq!(r["trusted_ca"][0]["is_ca"], true, "{r}");
    // The defaults are just names now.
    let resp = sds(&bin, &agent, "fetch", &["-names", "default,ROOTCA"]);
    assert_error(
        &resp[0],
        "InvalidArgument",
        "workload is not authorized for the requested identities [\"ROOTCA\" \"default\"]",
    );
    let resp = sds(&bin, &agent, "fetch", &["-names", "my-all"]);
    assert_error(
        &resp[0],
        "Internal",
        "unable to use \"SPIFFE validator\" on Envoy below 1.17",
    );
    // The node's metadata turns the validator back on.
    let resp = fetch(
        &bin,
        &agent,
        &["-names", "my-all", "-disable-validation", "false"],
    );
    assert_eq!(validator_tds(resource(&resp, "my-all")), ["example.org"]);
}

/// What both agents must agree on: names, types, URIs and CA flags of the certificates,
/// bundle subjects and validator trust domains (SVID subjects and keys differ by issue).
fn shape(resp: &Value) -> Value {
    let mut rs: Vec<Value> = resp["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources: {resp}"))
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(chain) = r["certificate_chain"].as_array_mut() {
                for c in chain {
                    c.as_object_mut().unwrap().remove("subject");
                }
            }
            r
        })
        .collect();
    rs.sort_by_key(|r| r["name"].as_str().unwrap_or_default().to_string());
    // Stream versions count change notices, which the two agents need not send alike.
    let version = match resp["version_info"].as_str() {
        Some("") => "",
        _ => "set",
    };
    json!({
        "version_info": version,
        "nonce_len": resp["nonce_len"],
        "type_url": resp["type_url"],
        "resources": rs,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn sds_differential() {
    let sc = Scenario::new("sds::sds_differential");
    let Some(bin) = sds_client(&sc) else {
        return;
    };
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let mut agents = Vec::new();
    for (label, imp) in [("ref", Impl::Reference), ("ours", Impl::SpireRs)] {
        let token = server.token(None);
        let agent = Agent::start_new(
            &sc,
            label,
            imp,
            &server,
            &Attestor::JoinToken(token.clone()),
            AgentOpts::default(),
        )
        .await;
        let agent_id = id(&format!("/spire/agent/join_token/{token}"));
        agents.push((agent, agent_id));
    }
    let wl = id("/sds/diff");
    let other_ca = pki::NodeCa::new(&sc.subdir("other-td"));
    server.cli_ok(&[
        "bundle",
        "set",
        "-id",
        OTHER_TD,
        "-path",
        &other_ca.ca_path.display().to_string(),
    ]);
    for (agent, agent_id) in &agents {
        server.entry_create(&[
            "-parentID",
            agent_id,
            "-spiffeID",
            &wl,
            "-selector",
            &uid_selector(),
            "-federatesWith",
            OTHER_TD,
        ]);
        agent.wait_x509(&wl, 60).await;
        wait_names(&bin, agent, &[&wl, OTHER_TD]).await;
    }
    let cases: &[&[&str]] = &[
        &[],
        &["-names", "default,ROOTCA"],
        &["-names", "ALL"],
        &["-names", "ROOTCA", "-disable-validation", "true"],
        &["-names", "ALL", "-envoy-version", "1.17"],
        &["-names", "nope,default"],
    ];
    for case in cases {
        let answers: Vec<Value> = agents
            .iter()
            .map(|(agent, _)| {
                let mut args = vec!["-retry", "20s"];
                args.extend_from_slice(case);
                sds(&bin, agent, "fetch", &args).remove(0)
            })
            .collect();
        let norm = |v: &Value| {
            if v.get("error").is_some() {
                v.clone()
            } else {
                shape(v)
            }
        };
        assert_eq!(
            norm(&answers[0]),
            norm(&answers[1]),
            "FetchSecrets {case:?}: reference (left) and spire-rs (right) differ"
        );
    }
    let streams: Vec<Value> = agents
        .iter()
        .map(|(agent, _)| {
            sds(
                &bin,
                agent,
                "stream",
                &["-retry", "20s", "-then-names", "ALL,default"],
            )
            .into_iter()
            .map(|v| shape(&v))
            .collect()
        })
        .collect();
    assert_eq!(
        streams[0], streams[1],
        "StreamSecrets: reference (left) and spire-rs (right) differ"
    );
    let deltas: Vec<Value> = agents
        .iter()
        .map(|(agent, _)| sds(&bin, agent, "delta", &[]).remove(0))
        .collect();
    assert_eq!(deltas[0], deltas[1]);
}
