//! The agent's Delegated Identity API (`spire.api.agent.delegatedidentity.v1`) on its admin
//! socket, driven by an independent client: `conformance/delegatedclient`, built on the
//! Go stubs of `spire-api-sdk` at the version SPIRE 1.13.3 requires, which checks X509-SVIDs
//! and JWT-SVIDs with go-spiffe against the bundles the same API sends.
//!
//! The scenario process is the delegate: it is attested by its uid, and `authorized_delegates`
//! lists `/delegate`. Workloads are named by a selector no process has (`unix:uid:4242`) or
//! by the PID of a child process.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    Agent, AgentOpts, Deadline, Proc, Scenario, ServerOpts, agent_subject, client_unavailable, id,
    join_token_pair, pki, run, server_subject, uid_selector, workspace_root,
};

pub(crate) const DELEGATED_SELECTOR: &str = "unix:uid:4242";
const OTHER_TD: &str = "spiffe://other.org";

pub(crate) fn delegated_client(sc: &Scenario) -> Option<PathBuf> {
    let script = workspace_root().join("conformance/delegatedclient/build.sh");
    let out = run(Path::new("bash"), &[&script.display().to_string()], None);
    if !out.ok() {
        client_unavailable(
            sc,
            "delegated identity client (spire-api-sdk)",
            &format!("build failed: {out}"),
        );
        return None;
    }
    Some(PathBuf::from(out.stdout.trim()))
}

/// The admin agent configuration: the admin socket and `/delegate` as the only delegate.
pub(crate) fn agent_opts() -> AgentOpts {
    AgentOpts {
        admin_socket: true,
        extra_agent: format!("authorized_delegates = [\"{}\"]", id("/delegate")),
        ..Default::default()
    }
}

pub(crate) struct Client {
    bin: PathBuf,
    socket: String,
}

impl Client {
    pub(crate) fn new(bin: PathBuf, agent: &Agent) -> Client {
        Client {
            bin,
            socket: agent
                .admin_socket
                .as_ref()
                .expect("admin socket")
                .display()
                .to_string(),
        }
    }

    /// Runs a subcommand: the JSON lines it printed (a call error is one `{"error":...}`).
    fn call(&self, cmd: &str, args: &[&str]) -> Vec<Value> {
        let mut all = vec![cmd, "-socket", &self.socket, "-timeout", "60s"];
        all.extend_from_slice(args);
        let out = run(&self.bin, &all, None);
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(2),
            "delegatedclient {all:?}: {out}"
        );
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} ({out})")))
            .collect()
    }

    /// The first line of a call.
    pub(crate) fn first(&self, cmd: &str, args: &[&str]) -> Value {
        self.call(cmd, args)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("delegatedclient {cmd} {args:?} printed nothing"))
    }

    /// Starts a subcommand in the background, its lines going to `<dir>/<name>.log`.
    fn spawn(&self, sc: &Scenario, name: &str, cmd: &str, args: &[&str]) -> Proc {
        let mut all = vec![cmd, "-socket", &self.socket, "-timeout", "180s"];
        all.extend_from_slice(args);
        Proc::spawn(&self.bin, &all, sc.path().join(format!("{name}.log")), &[])
    }
}

/// `(code, message)` of an `{"error":...}` line.
fn error_of(v: &Value) -> (String, String) {
    (
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn expect_error(v: &Value, code: &str, message: &str, what: &str) {
    assert_eq!(
        error_of(v),
        (code.to_string(), message.to_string()),
        "{what}: {v}"
    );
}

/// The SPIFFE IDs of an x509svids or jwtsvids line.
pub(crate) fn svid_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["svids"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["spiffe_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Polls `cmd args` until `done` holds for its first line.
pub(crate) async fn wait_for(
    c: &Client,
    what: &str,
    cmd: &str,
    args: &[&str],
    done: impl Fn(&Value) -> bool,
) -> Value {
    let d = Deadline::new(what, 90);
    loop {
        let v = c.first(cmd, args);
        if done(&v) {
            return v;
        }
        d.tick(v.to_string()).await;
    }
}

/// Waits until the background client's log has a line for which `done` holds.
async fn wait_line(p: &Proc, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let d = Deadline::new(what, 90);
    loop {
        let out = p.output();
        if let Some(v) = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| done(v))
        {
            return v;
        }
        if let Some(v) = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("error").is_some())
        {
            panic!("{what}: the stream failed: {v}");
        }
        d.tick(out.clone()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn refusals() {
    let sc = Scenario::new("delegated_identity::refusals");
    let Some(bin) = delegated_client(&sc) else {
        return;
    };
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        agent_opts(),
    )
    .await;
    let c = Client::new(bin, &agent);
    let sel = ["-selector", DELEGATED_SELECTOR];

    // The caller has no identity at all.
    let v = wait_for(&c, "the admin socket to answer", "x509bundles", &[], |v| {
        v.get("error").is_some()
    })
    .await;
    expect_error(
        &v,
        "PermissionDenied",
        "no identity issued",
        "caller without entries",
    );

    // The caller has an identity, but not a delegate's.
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;
    for (cmd, args) in [
        ("x509svids", &sel[..]),
        ("x509bundles", &[][..]),
        ("jwtbundles", &[][..]),
        (
            "jwtsvids",
            &["-audience", "a", "-selector", DELEGATED_SELECTOR][..],
        ),
    ] {
        expect_error(
            &c.first(cmd, args),
            "PermissionDenied",
            "caller not configured as an authorized delegate",
            cmd,
        );
    }
    // The audience is checked before the caller.
    expect_error(
        &c.first("jwtsvids", &sel),
        "InvalidArgument",
        "audience must be specified",
        "jwtsvids without audience (unauthorized caller)",
    );

    // Now a delegate.
    let delegate_entry = server.workload_entry(&agent_id, &id("/delegate"), &uid_selector());
    wait_for(
        &c,
        "the caller to become an authorized delegate",
        "x509bundles",
        &[],
        |v| v.get("bundles").is_some(),
    )
    .await;

    let neither_nor = "must provide either selectors or non-zero PID, but not both";
    expect_error(
        &c.first("x509svids", &[]),
        "InvalidArgument",
        neither_nor,
        "x509svids with neither selectors nor PID",
    );
    expect_error(
        &c.first("x509svids", &["-selector", DELEGATED_SELECTOR, "-pid", "1"]),
        "InvalidArgument",
        neither_nor,
        "x509svids with both",
    );
    expect_error(
        &c.first("jwtsvids", &["-audience", "a"]),
        "InvalidArgument",
        neither_nor,
        "jwtsvids with neither",
    );
    for bad in ["unix:", ":uid:1", "unix"] {
        expect_error(
            &c.first("x509svids", &["-selector", bad]),
            "InvalidArgument",
            "could not parse provided selectors",
            &format!("x509svids -selector {bad:?}"),
        );
        expect_error(
            &c.first("jwtsvids", &["-audience", "a", "-selector", bad]),
            "InvalidArgument",
            "could not parse provided selectors",
            &format!("jwtsvids -selector {bad:?}"),
        );
    }
    expect_error(
        &c.first(
            "jwtsvids",
            &["-audience", "a", "-selector", "unix:uid:999999"],
        ),
        "PermissionDenied",
        "no identity issued",
        "jwtsvids for selectors without entries",
    );
    // Selectors without entries and a PID that names no process: an empty SVID message.
    for args in [&sel[..], &["-pid", "2147483646"][..]] {
        let v = c.first("x509svids", args);
        assert_eq!(
            svid_ids(&v),
            Vec::<String>::new(),
            "x509svids {args:?}: {v}"
        );
        assert_eq!(v["federates_with"], serde_json::json!([]), "{v}");
    }
    expect_error(
        &c.first("jwtsvids", &["-audience", "a", "-pid", "2147483646"]),
        "PermissionDenied",
        "no identity issued",
        "jwtsvids for a PID that names no process",
    );

    // A delegate that loses its entry loses its streams: the next update for the
    // subscribed selectors ends the stream with the refusal.
    let stream = c.spawn(
        &sc,
        "svid-stream",
        "x509svids",
        &["-n", "50", "-selector", DELEGATED_SELECTOR],
    );
    wait_line(&stream, "the SVID stream's first message", |v| {
        v.get("svids").is_some()
    })
    .await;
    server.cli_ok(&["entry", "delete", "-entryID", &delegate_entry]);
    wait_for(
        &c,
        "the caller to lose its delegate identity",
        "x509bundles",
        &[],
        |v| v.get("error").is_some(),
    )
    .await;
    server.workload_entry(&agent_id, &id("/delegated/workload"), DELEGATED_SELECTOR);
    let d = Deadline::new("the SVID stream to end with the refusal", 90);
    let last = loop {
        let out = stream.output();
        if let Some(v) = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("error").is_some())
        {
            break v;
        }
        d.tick(out).await;
    };
    expect_error(
        &last,
        "PermissionDenied",
        "caller not configured as an authorized delegate",
        "the stream of a delegate no longer authorized",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn identities_and_bundles() {
    let sc = Scenario::new("delegated_identity::identities_and_bundles");
    let Some(bin) = delegated_client(&sc) else {
        return;
    };
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        agent_opts(),
    )
    .await;
    let c = Client::new(bin, &agent);
    let other_ca = pki::NodeCa::new(&sc.subdir("other-td"));
    server.cli_ok(&[
        "bundle",
        "set",
        "-id",
        OTHER_TD,
        "-path",
        &other_ca.ca_path.display().to_string(),
    ]);
    let delegate = id("/delegate");
    server.workload_entry(&agent_id, &delegate, &uid_selector());
    let dw = id("/delegated/workload");
    server.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &dw,
        "-selector",
        DELEGATED_SELECTOR,
        "-federatesWith",
        OTHER_TD,
        "-hint",
        "delegated-hint",
    ]);
    agent.wait_x509(&delegate, 60).await;

    // X509-SVIDs by selectors.
    let sel = ["-selector", DELEGATED_SELECTOR];
    let v = wait_for(
        &c,
        "the delegated workload's X509-SVID",
        "x509svids",
        &sel,
        |v| svid_ids(v) == [dw.clone()],
    )
    .await;
    let s = &v["svids"][0];
    assert_eq!(s["leaf_id"], dw.as_str(), "{v}");
    assert_eq!(
        s["verified"], "ok",
        "chain against the API's X.509 bundles: {v}"
    );
    assert_eq!(s["key_matches"], true, "{v}");
    assert_eq!(s["hint"], "delegated-hint", "{v}");
    assert_eq!(s["expires_at"], s["leaf_not_after"], "{v}");
    assert_eq!(v["federates_with"], serde_json::json!([OTHER_TD]), "{v}");

    // By PID: a child process of this (delegate) uid gets the uid entries.
    let mut sleeper = Proc::spawn(
        Path::new("sleep"),
        &["300"],
        sc.path().join("sleeper.log"),
        &[],
    );
    let pid = sleeper.pid().to_string();
    let v = c.first("x509svids", &["-pid", &pid]);
    assert_eq!(svid_ids(&v), [delegate.as_str()], "x509svids -pid: {v}");
    assert_eq!(v["svids"][0]["verified"], "ok", "{v}");
    assert_eq!(v["federates_with"], serde_json::json!([]), "{v}");

    // X.509 bundles: ours and the federated one.
    let v = c.first("x509bundles", &[]);
    let bundles = v["bundles"].as_object().expect("bundles");
    let mut tds: Vec<&String> = bundles.keys().collect();
    tds.sort();
    assert_eq!(tds, ["spiffe://example.org", OTHER_TD], "{v}");
    assert!(
        bundles["spiffe://example.org"]["certs"].as_u64() >= Some(1),
        "{v}"
    );
    assert_eq!(bundles[OTHER_TD]["certs"], 1, "{v}");
    assert_eq!(
        bundles[OTHER_TD]["subjects"],
        serde_json::json!(["CN=conformance node CA"]),
        "{v}"
    );

    // JWT-SVIDs, validated against the API's JWT bundles.
    let v = c.first(
        "jwtsvids",
        &[
            "-audience",
            "aud-1",
            "-audience",
            "aud-2",
            "-selector",
            DELEGATED_SELECTOR,
            "-verify",
        ],
    );
    assert_eq!(svid_ids(&v), [dw.as_str()], "jwtsvids: {v}");
    let j = &v["svids"][0];
    assert_eq!(j["verified"], "ok", "{v}");
    assert_eq!(j["subject"], dw.as_str(), "{v}");
    assert_eq!(j["audience"], serde_json::json!(["aud-1", "aud-2"]), "{v}");
    assert_eq!(j["hint"], "delegated-hint", "{v}");
    assert_eq!(j["expires_at"], j["token_expiry"], "{v}");
    assert!(j["issued_at"].as_i64() < j["expires_at"].as_i64(), "{v}");
    let v = c.first("jwtsvids", &["-audience", "aud-1", "-pid", &pid, "-verify"]);
    assert_eq!(svid_ids(&v), [delegate.as_str()], "jwtsvids -pid: {v}");
    assert_eq!(v["svids"][0]["verified"], "ok", "{v}");
    sleeper.stop();

    // JWT bundles: ours with keys, the federated one (X.509 only) an empty JWKS.
    let v = c.first("jwtbundles", &[]);
    let bundles = v["bundles"].as_object().expect("bundles");
    let mut tds: Vec<&String> = bundles.keys().collect();
    tds.sort();
    assert_eq!(tds, ["spiffe://example.org", OTHER_TD], "{v}");
    assert!(
        bundles["spiffe://example.org"]["parsed_keys"].as_u64() >= Some(1),
        "{v}"
    );
    assert_eq!(bundles[OTHER_TD]["parsed_keys"], 0, "{v}");
    // SPIRE's bytes: the JWKS indented with four spaces (`json.MarshalIndent`).
    assert_eq!(bundles[OTHER_TD]["raw"], "{\n    \"keys\": []\n}", "{v}");
    assert!(
        bundles["spiffe://example.org"]["raw"]
            .as_str()
            .is_some_and(|r| r.starts_with("{\n    \"keys\": [\n        {\n            \"kty\": ")),
        "{v}"
    );

    // Pushed updates: a new entry for the delegated selectors reaches the SVID stream, a
    // changed federated bundle the bundle streams.
    let svids = c.spawn(
        &sc,
        "svid-stream",
        "x509svids",
        &["-n", "50", "-selector", DELEGATED_SELECTOR],
    );
    let x509b = c.spawn(&sc, "x509-bundle-stream", "x509bundles", &["-n", "50"]);
    let jwtb = c.spawn(&sc, "jwt-bundle-stream", "jwtbundles", &["-n", "50"]);
    wait_line(&svids, "the SVID stream's first message", |v| {
        svid_ids(v) == [dw.clone()]
    })
    .await;
    wait_line(&x509b, "the X.509 bundle stream's first message", |v| {
        v["bundles"][OTHER_TD]["certs"] == 1
    })
    .await;
    wait_line(&jwtb, "the JWT bundle stream's first message", |v| {
        v["bundles"].get(OTHER_TD).is_some()
    })
    .await;

    let second = id("/delegated/second");
    server.workload_entry(&agent_id, &second, DELEGATED_SELECTOR);
    let v = wait_line(&svids, "the new entry's SVID on the stream", |v| {
        svid_ids(v) == [second.clone(), dw.clone()]
    })
    .await;
    assert!(
        v["svids"]
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s["verified"] == "ok")),
        "{v}"
    );

    // Two CAs for other.org now.
    let more = pki::NodeCa::new(&sc.subdir("other-td-2"));
    let both = sc.path().join("other-both.pem");
    std::fs::write(
        &both,
        format!(
            "{}{}",
            std::fs::read_to_string(&other_ca.ca_path).expect("ca"),
            std::fs::read_to_string(&more.ca_path).expect("ca")
        ),
    )
    .expect("write bundle");
    server.cli_ok(&[
        "bundle",
        "set",
        "-id",
        OTHER_TD,
        "-path",
        &both.display().to_string(),
    ]);
    wait_line(
        &x509b,
        "the changed federated bundle on the X.509 bundle stream",
        |v| v["bundles"][OTHER_TD]["certs"] == 2,
    )
    .await;
    // The JWT bundle stream sends the maps again on the same change.
    let d = Deadline::new("a second message on the JWT bundle stream", 60);
    while jwtb.output().lines().count() < 2 {
        d.tick(jwtb.output()).await;
    }
    drop((svids, x509b, jwtb));
}
