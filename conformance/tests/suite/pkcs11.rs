//! KeyManager `pkcs11`, a spire-rs extension (reference SPIRE 1.13.3 has no PKCS#11
//! KeyManager): keys generated and kept in a SoftHSM2 token. The server's CA and JWT keys
//! sign SVIDs that `openssl verify` accepts against the bundle, survive a restart (same
//! authorities) and a forced rotation puts the new key in the token; the agent's SVID key
//! lives there too. A scenario whose subject is reference SPIRE on the side that would use
//! the token is recorded as skipped (the other side may be either implementation).
//!
//! SoftHSM (Debian `softhsm2`, `opensc` for `pkcs11-tool`) missing: a visible skip, or a
//! failure with `SPIRE_RS_REQUIRE_SOFTHSM=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::support::{
    AgentOpts, Deadline, Impl, Scenario, Server, ServerOpts, agent_subject, id, join_token_pair,
    pki, server_subject, skip, uid_selector,
};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "spire";
const PIN: &str = "7205-secret";
const EXTENSION: &str =
    "KeyManager pkcs11 is a spire-rs extension; reference SPIRE 1.13.3 has no PKCS#11 KeyManager";

/// A SoftHSM token directory of the scenario's own, with one token.
struct SoftHsm {
    conf: PathBuf,
    pin_file: PathBuf,
}

impl SoftHsm {
    fn new(sc: &Scenario) -> Option<SoftHsm> {
        let missing = if !Path::new(MODULE).exists() {
            Some(format!("{MODULE} is missing (Debian: softhsm2)"))
        } else if Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_err()
        {
            Some("softhsm2-util is not installed (Debian: softhsm2)".into())
        } else if Command::new("pkcs11-tool").arg("--help").output().is_err() {
            Some("pkcs11-tool is not installed (Debian: opensc)".into())
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(
                std::env::var("SPIRE_RS_REQUIRE_SOFTHSM").as_deref() != Ok("1"),
                "{why} and SPIRE_RS_REQUIRE_SOFTHSM=1"
            );
            skip(
                sc,
                &format!("{why}; set SPIRE_RS_REQUIRE_SOFTHSM=1 to fail instead"),
            );
            return None;
        }
        let dir = sc.subdir("softhsm");
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.display()
            ),
        )
        .unwrap();
        let pin_file = dir.join("pin");
        write_private(&pin_file, &format!("{PIN}\n"));
        let hsm = SoftHsm { conf, pin_file };
        let mut init = hsm.command("softhsm2-util");
        init.args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            "000000",
        ]);
        hsm.check(init);
        Some(hsm)
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    fn check(&self, mut c: Command) -> String {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{c:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".into(), self.conf.display().to_string())]
    }

    /// The `KeyManager "pkcs11"` block.
    fn key_manager(&self, extra: &str) -> String {
        format!(
            "KeyManager \"pkcs11\" {{\n        plugin_data {{\n            module_path = \"{MODULE}\"\n            token_label = \"{TOKEN}\"\n            user_pin_file = \"{}\"\n            {extra}\n        }}\n    }}",
            self.pin_file.display()
        )
    }

    /// The labels of the token's objects as OpenSC's `pkcs11-tool` lists them, sorted.
    fn labels(&self) -> Vec<String> {
        let mut c = self.command("pkcs11-tool");
        c.args([
            "--module",
            MODULE,
            "--token-label",
            TOKEN,
            "--login",
            "--pin",
            PIN,
            "--list-objects",
        ]);
        let out = self.check(c);
        let mut labels: Vec<String> = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_string())
            .collect();
        labels.sort();
        labels
    }

    /// The labels, each once (a key is a private and a public object).
    fn keys(&self) -> Vec<String> {
        let labels = self.labels();
        let mut keys = labels.clone();
        keys.dedup();
        for k in &keys {
            assert_eq!(
                labels.iter().filter(|l| *l == k).count(),
                2,
                "{k}: a private and a public key object expected in {labels:?}"
            );
        }
        keys
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn pem(label: &str, ders: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str(&format!("-----BEGIN {label}-----\n"));
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
    }
    out
}

/// `openssl verify` of an X509-SVID from `api fetch x509 -output json` against the bundle
/// delivered with it; returns the leaf's authority key ID.
fn openssl_verify(dir: &Path, svid: &serde_json::Value, name: &str) -> String {
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    let bundle = pki::split_der(&pki::b64(svid["bundle"].as_str().unwrap_or_default()));
    assert!(!chain.is_empty() && !bundle.is_empty(), "{svid}");
    let leaf_path = dir.join(format!("{name}.pem"));
    let bundle_path = dir.join(format!("{name}-bundle.pem"));
    std::fs::write(&leaf_path, pem("CERTIFICATE", &chain[..1])).unwrap();
    std::fs::write(&bundle_path, pem("CERTIFICATE", &bundle)).unwrap();
    let mut c = Command::new("openssl");
    c.arg("verify").arg("-CAfile").arg(&bundle_path);
    if chain.len() > 1 {
        let untrusted = dir.join(format!("{name}-chain.pem"));
        std::fs::write(&untrusted, pem("CERTIFICATE", &chain[1..])).unwrap();
        c.arg("-untrusted").arg(untrusted);
    }
    let out = c.arg(&leaf_path).output().expect("openssl");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl verify {name}: {text}");
    assert!(text.contains(": OK"), "openssl verify {name}: {text}");
    pki::facts(&chain[0]).akid
}

/// JWT-SVID through the agent CLI: fetched, then validated against the agent's JWT bundle.
fn jwt_round_trip(agent: &crate::support::Agent, wl: &str) {
    let jwt = agent.cli_socket(&[
        "api",
        "fetch",
        "jwt",
        "-audience",
        "pkcs11",
        "-output",
        "json",
    ]);
    assert!(jwt.ok(), "api fetch jwt: {jwt}");
    let v: serde_json::Value =
        serde_json::from_str(&jwt.stdout).unwrap_or_else(|e| panic!("{e}: {jwt}"));
    // One JWT-SVID per identity the workload has: take the one for `wl`.
    let token = v[0]["svids"]
        .as_array()
        .and_then(|svids| svids.iter().find(|s| s["spiffe_id"] == wl))
        .and_then(|s| s["svid"].as_str())
        .unwrap_or_else(|| panic!("no token for {wl}: {v}"));
    let valid = agent.cli_socket(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "pkcs11",
        "-svid",
        token,
    ]);
    assert!(valid.ok(), "api validate jwt: {valid}");
    assert!(valid.stdout.contains("SVID is valid."), "{valid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn server_keys_in_softhsm_sign_survive_restarts_and_rotate() {
    let sc = Scenario::new("pkcs11::server_keys_in_softhsm_sign_survive_restarts_and_rotate");
    if server_subject() == Impl::Reference {
        skip(&sc, EXTENSION);
        return;
    }
    let Some(hsm) = SoftHsm::new(&sc) else {
        return;
    };
    // P-384 CA and RSA-2048 JWT keys, both in the token.
    let opts = ServerOpts {
        key_manager: Some(hsm.key_manager("")),
        env: hsm.env(),
        extra_server: "ca_key_type = \"ec-p384\"\n    jwt_key_type = \"rsa-2048\"".into(),
        ..ServerOpts::default()
    };
    let (mut server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        opts,
        AgentOpts::default(),
    )
    .await;
    assert_eq!(
        hsm.keys(),
        ["spire-server-JWT-Signer-A", "spire-server-x509-CA-A"]
    );
    assert!(
        !server.data_dir.join("keys.json").exists(),
        "no key may be written to disk"
    );
    assert!(!server.log().contains(PIN), "the PIN was logged");

    let dir = sc.subdir("verify");
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    let svid = agent.wait_x509(&wl, 60).await;
    let active = server.active_x509_authority();
    assert_eq!(openssl_verify(&dir, &svid, "first"), active);
    jwt_round_trip(&agent, &wl);

    // A restart finds the keys in the token: same authorities, and they still sign.
    let bundle = server.bundle_pem();
    server.restart().await;
    assert_eq!(server.bundle_pem(), bundle, "the bundle changed on restart");
    assert_eq!(server.active_x509_authority(), active);
    assert_eq!(
        hsm.keys(),
        ["spire-server-JWT-Signer-A", "spire-server-x509-CA-A"]
    );
    let wl2 = id("/after-restart");
    server.workload_entry(&agent_id, &wl2, &uid_selector());
    let svid = agent.wait_x509(&wl2, 60).await;
    assert_eq!(openssl_verify(&dir, &svid, "after-restart"), active);

    // Forced rotation: the prepared authority's key is generated in the token.
    let prepared = server.cli_json(&["localauthority", "x509", "prepare"]);
    let new = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap_or_else(|| panic!("prepare output: {prepared}"))
        .to_string();
    assert_ne!(new, active);
    assert_eq!(
        hsm.keys(),
        [
            "spire-server-JWT-Signer-A",
            "spire-server-x509-CA-A",
            "spire-server-x509-CA-B"
        ]
    );
    let jwt_prepared = server.cli_json(&["localauthority", "jwt", "prepare"]);
    assert!(
        jwt_prepared["prepared_authority"]["authority_id"].is_string(),
        "{jwt_prepared}"
    );
    assert_eq!(
        hsm.keys(),
        [
            "spire-server-JWT-Signer-A",
            "spire-server-JWT-Signer-B",
            "spire-server-x509-CA-A",
            "spire-server-x509-CA-B"
        ]
    );
    server.cli_json(&["localauthority", "x509", "activate", "-authorityID", &new]);
    assert_eq!(server.active_x509_authority(), new);
    // New SVIDs come from the new key in the token.
    let wl3 = id("/after-rotation");
    server.workload_entry(&agent_id, &wl3, &uid_selector());
    let d = Deadline::new("an SVID from the activated authority", 90);
    loop {
        let svid = agent.wait_x509(&wl3, 60).await;
        let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
        if pki::facts(&chain[0]).akid == new {
            assert_eq!(openssl_verify(&dir, &svid, "after-rotation"), new);
            break;
        }
        d.tick("SVID still from the old authority").await;
    }

    // And the rotated state survives a restart too.
    server.restart().await;
    assert_eq!(server.active_x509_authority(), new);
    let wl4 = id("/after-second-restart");
    server.workload_entry(&agent_id, &wl4, &uid_selector());
    let svid = agent.wait_x509(&wl4, 60).await;
    assert_eq!(openssl_verify(&dir, &svid, "after-second-restart"), new);
    jwt_round_trip(&agent, &wl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn agent_svid_key_in_softhsm() {
    let sc = Scenario::new("pkcs11::agent_svid_key_in_softhsm");
    if agent_subject() == Impl::Reference {
        skip(&sc, EXTENSION);
        return;
    }
    let Some(hsm) = SoftHsm::new(&sc) else {
        return;
    };
    // A short agent SVID lifetime, so the agent rotates its key within the scenario.
    let server_opts = ServerOpts {
        extra_server: "agent_ttl = \"40s\"".into(),
        ..ServerOpts::default()
    };
    let agent_opts = AgentOpts {
        key_manager: Some(hsm.key_manager("")),
        env: hsm.env(),
        ..AgentOpts::default()
    };
    let (server, mut agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        server_opts,
        agent_opts,
    )
    .await;
    assert!(hsm.keys().contains(&"spire-agent-agent-svid-A".to_string()));
    assert!(!agent.data_dir.join("keys.json").exists());
    let dir = sc.subdir("verify");
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    let svid = agent.wait_x509(&wl, 60).await;
    openssl_verify(&dir, &svid, "workload");

    // The agent rotates its SVID: the new key is generated in the other slot of the token.
    let d = Deadline::new("the agent to rotate its SVID key into the token", 90);
    loop {
        // (Another process may see a pair half written: count both objects.)
        let labels = hsm.labels();
        let count = |l: &str| labels.iter().filter(|x| *x == l).count();
        if count("spire-agent-agent-svid-A") == 2 && count("spire-agent-agent-svid-B") == 2 {
            break;
        }
        d.tick(format!("{labels:?}")).await;
    }

    // A restart finds the key in the token and keeps the SVID (the join token is spent,
    // so attesting again would fail): the agent serves new entries.
    agent.stop();
    agent.start();
    agent.wait_healthy().await;
    let wl2 = id("/after-restart");
    server.workload_entry(&agent_id, &wl2, &uid_selector());
    let svid = agent.wait_x509(&wl2, 90).await;
    openssl_verify(&dir, &svid, "after-restart");
    assert!(!agent.all_logs().contains(PIN), "the PIN was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn server_refuses_a_wrong_pin_or_a_missing_token() {
    let sc = Scenario::new("pkcs11::server_refuses_a_wrong_pin_or_a_missing_token");
    if server_subject() == Impl::Reference {
        skip(&sc, EXTENSION);
        return;
    }
    let Some(hsm) = SoftHsm::new(&sc) else {
        return;
    };
    let wrong_pin = hsm.pin_file.with_file_name("wrong-pin");
    write_private(&wrong_pin, "0000-wrong\n");
    let cases = [
        (
            "bad-pin",
            format!(
                "KeyManager \"pkcs11\" {{ plugin_data {{ module_path = \"{MODULE}\" token_label = \"{TOKEN}\" user_pin_file = \"{}\" }} }}",
                wrong_pin.display()
            ),
            "the user PIN is incorrect",
        ),
        (
            "no-token",
            format!(
                "KeyManager \"pkcs11\" {{ plugin_data {{ module_path = \"{MODULE}\" token_label = \"absent\" user_pin = \"{PIN}\" }} }}"
            ),
            "no PKCS#11 token labelled",
        ),
    ];
    for (label, block, needle) in cases {
        let mut server = Server::new(
            &sc,
            label,
            server_subject(),
            ServerOpts {
                key_manager: Some(block),
                env: hsm.env(),
                ..ServerOpts::default()
            },
        );
        let status = server.run_expecting_exit(60).await;
        assert!(!status.success(), "{label}: the server started");
        let log = server.log();
        assert!(log.contains(needle), "{label}: no {needle:?} in:\n{log}");
        assert!(
            !log.contains("0000-wrong") && !log.contains(PIN),
            "{label}: PIN logged"
        );
        assert!(!log.contains("panicked"), "{label}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn server_survives_its_token_being_removed() {
    let sc = Scenario::new("pkcs11::server_survives_its_token_being_removed");
    if server_subject() == Impl::Reference {
        skip(&sc, EXTENSION);
        return;
    }
    let Some(hsm) = SoftHsm::new(&sc) else {
        return;
    };
    let mut server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            key_manager: Some(hsm.key_manager("")),
            env: hsm.env(),
            ..ServerOpts::default()
        },
    )
    .await;
    let wl = id("/minted");
    let minted = server.cli(&["x509", "mint", "-spiffeID", &wl]);
    assert!(minted.ok(), "x509 mint: {minted}");
    // The token goes away under the running server (another process deletes it).
    let mut delete = hsm.command("softhsm2-util");
    delete.args(["--delete-token", "--token", TOKEN]);
    hsm.check(delete);
    let minted = server.cli(&["x509", "mint", "-spiffeID", &wl]);
    assert!(!minted.ok(), "x509 mint signed without its token: {minted}");
    assert!(
        minted
            .all()
            .contains("PKCS#11 token \"spire\" is not available"),
        "{minted}"
    );
    // The server keeps running and answering.
    assert!(server.is_running(), "the server exited");
    assert!(server.cli(&["bundle", "show"]).ok());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}
