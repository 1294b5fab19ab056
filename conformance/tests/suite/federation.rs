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
    let prepared = b.cli_json(&["localauthority", "x509", "prepare"]);
    let prepared_id = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap_or_else(|| panic!("prepare output: {prepared}"))
        .to_owned();
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

    // The Workload API's bundle calls carry B's bundle too (X.509 and JWT authorities).
    let bundles = run(&goclient, &["bundles", "-socket", &endpoint], None);
    assert!(
        bundles.ok(),
        "go-spiffe FetchX509Bundles/FetchJWTBundles: {bundles}"
    );
    let lines: Vec<&str> = bundles.stdout.lines().collect();
    assert!(lines.contains(&"x509_bundle=b.test 2"), "{bundles}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("x509_bundle=example.org ")),
        "{bundles}"
    );
    let b_jwt = serde_json::from_str::<Value>(&b.cli_ok(&["bundle", "show", "-format", "spiffe"]))
        .expect("B's bundle")["keys"]
        .as_array()
        .map_or(0, |k| k.iter().filter(|k| k["use"] == "jwt-svid").count());
    assert!(b_jwt > 0, "B has JWT authorities");
    assert!(
        lines.contains(&format!("jwt_bundle=b.test {b_jwt}").as_str()),
        "{bundles}"
    );

    // A later change in B (its new CA active, a third prepared) reaches the running
    // workload in A after a refresh, without restarting anything; an SVID B signs with
    // its new CA verifies.
    b.cli_ok(&[
        "localauthority",
        "x509",
        "activate",
        "-authorityID",
        &prepared_id,
    ]);
    b.cli_ok(&["localauthority", "x509", "prepare"]);
    assert_eq!(
        x509_keys(&b.cli_ok(&["bundle", "show", "-format", "spiffe"])).len(),
        3
    );
    let refreshed = a.cli(&["federation", "refresh", "-id", B]);
    assert!(refreshed.ok(), "federation refresh: {refreshed}");
    wait_until("B's third CA to reach the workload in A", 60, || {
        let out = run(&goclient, &["bundles", "-socket", &endpoint], None);
        if out.ok() && out.stdout.lines().any(|l| l == "x509_bundle=b.test 3") {
            Ok(())
        } else {
            Err(out.all())
        }
    })
    .await;
    let mint2 = sc.subdir("b-mint2");
    b.cli_ok(&[
        "x509",
        "mint",
        "-spiffeID",
        "spiffe://b.test/peer2",
        "-write",
        &mint2.display().to_string(),
    ]);
    let svid2 = mint2.join("svid.pem").display().to_string();
    let out = run(
        &goclient,
        &["verify", "-socket", &endpoint, "-svid", &svid2],
        None,
    );
    assert!(
        out.ok() && out.stdout.contains("verified=spiffe://b.test/peer2"),
        "{out}"
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

/// A test web CA and a certificate for 127.0.0.1 from it, written under `dir`:
/// `(ca.pem, cert.pem, key.pem)`.
fn web_pki(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "federation test web CA");
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "bundle endpoint");
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("sign");
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write pki file");
        p.display().to_string()
    };
    (
        w("web-ca.pem", ca_cert.pem()),
        w("web-cert.pem", cert.pem()),
        w("web-key.pem", key.serialize_pem()),
    )
}

/// An HTTPS server (Python's) answering every GET with `body`.
const GARBAGE_SERVER: &str = r#"
import http.server, ssl, sys
port, cert, key, body = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening", flush=True)
srv.serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn https_web() {
    let sc = Scenario::new("federation::https_web");
    let (ca, cert, key) = web_pki(sc.path());
    let be_port = free_port();
    let b = Server::start_new(
        &sc,
        "server-b",
        agent_subject(),
        ServerOpts {
            trust_domain: Some(B.into()),
            extra_server: format!(
                r#"federation {{
        bundle_endpoint {{
            address = "127.0.0.1"
            port = {be_port}
            profile "https_web" {{
                serving_cert_file {{
                    cert_file_path = "{cert}"
                    key_file_path = "{key}"
                    file_sync_interval = "1s"
                }}
            }}
        }}
    }}"#
            ),
            ..ServerOpts::default()
        },
    )
    .await;
    b.wait_log("Serving bundle endpoint", 30).await;

    // A federates with B from its configuration file, trusting the test CA through
    // SSL_CERT_FILE (as Go's crypto/x509 does).
    let a = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_server: format!(
                r#"federation {{
        federates_with "{B}" {{
            bundle_endpoint_url = "https://127.0.0.1:{be_port}"
            bundle_endpoint_profile "https_web" {{}}
        }}
    }}"#
            ),
            env: vec![("SSL_CERT_FILE".into(), ca.clone())],
            ..ServerOpts::default()
        },
    )
    .await;
    // What the endpoint serves: the bundle as `bundle show -format spiffe` prints it, with
    // the refresh hint (default 5m) added, in SPIRE's indented layout.
    let served = run(
        std::path::Path::new("curl"),
        &[
            "-sS",
            "--cacert",
            &ca,
            &format!("https://127.0.0.1:{be_port}/"),
        ],
        None,
    );
    assert!(served.ok(), "curl the bundle endpoint: {served}");
    let shown = b.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let mut want: Value = serde_json::from_str(&shown).expect("bundle show JSON");
    want["spiffe_refresh_hint"] = Value::from(300);
    let got: Value = serde_json::from_str(&served.stdout).expect("endpoint JSON");
    assert_eq!(got, want, "served: {}", served.stdout);
    assert!(
        served
            .stdout
            .starts_with("{\n    \"keys\": [\n        {\n            \"use\": \"x509-svid\""),
        "{}",
        served.stdout
    );
    let b_now = x509_keys(&b.cli_ok(&["bundle", "show", "-format", "spiffe"]));
    wait_until("A to fetch B's bundle over https_web", 60, || {
        let out = a.cli(&["bundle", "list", "-id", B_ID, "-format", "spiffe"]);
        if out.ok() && x509_keys(&out.stdout) == b_now {
            Ok(())
        } else {
            Err(out.all())
        }
    })
    .await;
    let refreshed = a.cli(&["federation", "refresh", "-id", B]);
    assert!(refreshed.ok(), "federation refresh: {refreshed}");

    // An endpoint serving garbage (trusted certificate, 200, not a bundle): refused, and
    // the initial bundle given for that trust domain stays.
    let g_port = free_port();
    let mut garbage = Proc::spawn(
        std::path::Path::new("python3"),
        &[
            "-c",
            GARBAGE_SERVER,
            &g_port.to_string(),
            &cert,
            &key,
            r#"{"keys":[{"kty":"EC","crv":"P-256"}]} and more"#,
        ],
        sc.path().join("garbage.log"),
        &[],
    );
    let d = Deadline::new("garbage endpoint to listen", 30);
    while !garbage.output().contains("listening") {
        if let Some(status) = garbage.exited() {
            panic!(
                "garbage endpoint exited with {status}: {}",
                garbage.output()
            );
        }
        d.tick(garbage.output()).await;
    }
    let b_bundle = sc.path().join("b-bundle.json");
    std::fs::write(
        &b_bundle,
        b.cli_ok(&["bundle", "show", "-format", "spiffe"]),
    )
    .expect("write bundle");
    a.cli_ok(&[
        "federation",
        "create",
        "-trustDomain",
        "g.test",
        "-bundleEndpointURL",
        &format!("https://127.0.0.1:{g_port}"),
        "-bundleEndpointProfile",
        "https_web",
        "-trustDomainBundlePath",
        &b_bundle.display().to_string(),
        "-trustDomainBundleFormat",
        "spiffe",
    ]);
    let refused = a.cli(&["federation", "refresh", "-id", "g.test"]);
    assert!(!refused.ok(), "refresh from a garbage endpoint: {refused}");
    assert!(
        refused.all().contains("failed to refresh bundle"),
        "{refused}"
    );
    let kept = a.cli_ok(&[
        "bundle",
        "list",
        "-id",
        "spiffe://g.test",
        "-format",
        "spiffe",
    ]);
    assert_eq!(
        x509_keys(&kept),
        b_now,
        "g.test's bundle after garbage: {kept}"
    );
    a.wait_log("Error updating bundle", 60).await;
    garbage.stop();
}

/// `curl` to `https://<name>:<port>/` at 127.0.0.1, verifying with `ca`: the body and the
/// leaf certificate (PEM), or why it failed.
fn curl_acme(name: &str, port: u16, ca: &str) -> Result<(String, String), String> {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "-w",
            "\n@@certs@@\n%{certs}",
            "--cacert",
            ca,
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            &format!("https://{name}:{port}/"),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{}{text}", String::from_utf8_lossy(&out.stderr)));
    }
    let (body, certs) = text
        .split_once("\n@@certs@@\n")
        .ok_or_else(|| format!("no certificates in curl's output: {text}"))?;
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    match (certs.find(begin), certs.find(end)) {
        (Some(b), Some(e)) if b < e => Ok((body.to_string(), certs[b..e + end.len()].to_string())),
        _ => Err(format!("no certificate in curl's output: {text}")),
    }
}

/// The bundle endpoint's `https_web` profile with `acme`: server B (the pairing's server
/// subject) gets its endpoint certificate from pebble on the first ClientHello for its
/// domain (TLS-ALPN-01 answered on the endpoint's own port), keeps the ACME keys in its
/// KeyManager (`bundle-acme-…`) and only certificates in `<data_dir>/bundle-acme`, serves
/// the cached certificate after a restart with the CA gone; server A (the agent subject's
/// implementation) federates with B over `https_web`, trusting pebble's root. With
/// `tos_accepted = false` the terms are refused and no certificate is obtained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn https_web_acme() {
    let sc = Scenario::new("federation::https_web_acme");
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        client_unavailable(&sc, "curl", "curl is not installed");
        return;
    }
    if matches!(server_subject(), Impl::Reference) {
        // Run by hand: SPIRE's fork of autocert sends a CSR naming the domain only as its
        // common name (certRequest is called without SANs), and pebble refuses to finalize
        // it: "Order includes different number of DNSnames identifiers than CSR specifies".
        skip(
            &sc,
            "reference SPIRE 1.13.3's bundle endpoint sends an ACME CSR without a DNS SAN, which pebble refuses (\"Order includes different number of DNSnames identifiers than CSR specifies\")",
        );
        return;
    }
    if let Err(e) = crate::support::server::private_hosts_available() {
        client_unavailable(&sc, "a private /etc/hosts", &e);
        return;
    }
    let domain = "bundle.b.test";
    let be_port = free_port();
    let Some(mut pebble) = crate::oidc::Pebble::start(&sc, be_port, 90 * 86_400) else {
        return;
    };
    let root = sc.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.issuing_root().await).expect("pebble root");
    let root = root.display().to_string();
    let minica = pebble.minica.display().to_string();
    let directory = pebble.directory.clone();
    let acme = |port: u16, tos: bool, dir: &str| {
        format!(
            r#"federation {{
        bundle_endpoint {{
            address = "127.0.0.1"
            port = {port}
            profile "https_web" {{
                acme {{
                    domain_name = "{domain}"
                    directory_url = "{dir}"
                    email = "admin@b.test"
                    tos_accepted = {tos}
                }}
            }}
        }}
    }}"#
        )
    };
    let mut b = Server::start_new(
        &sc,
        "server-b",
        server_subject(),
        ServerOpts {
            trust_domain: Some(B.into()),
            extra_server: acme(be_port, true, &directory),
            // The directory's own TLS certificate is pebble's minica's.
            env: vec![("SSL_CERT_FILE".into(), minica.clone())],
            ..ServerOpts::default()
        },
    )
    .await;
    b.wait_log("Serving bundle endpoint", 30).await;

    // The first ClientHello for the domain obtains the certificate; it chains to pebble's
    // root, names the domain, and the endpoint serves the bundle through it.
    let (served, leaf) = wait_until("B's ACME bundle endpoint to answer", 120, || {
        if let Some(s) = pebble.proc.exited() {
            panic!("pebble exited with {s}: {}", pebble.proc.output());
        }
        curl_acme(domain, be_port, &root)
    })
    .await;
    let shown = b.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let mut want: Value = serde_json::from_str(&shown).expect("bundle show JSON");
    want["spiffe_refresh_hint"] = Value::from(300);
    let got: Value = serde_json::from_str(&served).expect("endpoint JSON");
    assert_eq!(got, want, "served: {served}");
    b.wait_log("ACME Terms of Service accepted", 10).await;

    // SPIRE's layout: the keys in the KeyManager, only certificates in the cache.
    let keys = std::fs::read_to_string(b.data_dir.join("keys.json")).expect("keys.json");
    for id in ["bundle-acme-acme_account+key", "bundle-acme-bundle.b.test"] {
        assert!(keys.contains(id), "no {id} in the KeyManager: {keys}");
    }
    let entry = b.data_dir.join("bundle-acme").join(domain);
    let cached = std::fs::read_to_string(&entry).expect("cached certificate");
    assert!(
        cached.starts_with("-----BEGIN CERTIFICATE-----\n") && !cached.contains("PRIVATE"),
        "{cached}"
    );
    assert!(cached.matches("-----BEGIN CERTIFICATE-----").count() >= 2);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&entry)
        .expect("entry")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // A federates with B over https_web, resolving B's domain to loopback and trusting
    // pebble's root.
    let hosts = sc.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n127.0.0.1 {domain}\n")).expect("hosts");
    let a = Server::start_new(
        &sc,
        "server",
        agent_subject(),
        ServerOpts {
            extra_server: format!(
                r#"federation {{
        federates_with "{B}" {{
            bundle_endpoint_url = "https://{domain}:{be_port}"
            bundle_endpoint_profile "https_web" {{}}
        }}
    }}"#
            ),
            env: vec![("SSL_CERT_FILE".into(), root.clone())],
            hosts: Some(hosts),
            ..ServerOpts::default()
        },
    )
    .await;
    let b_now = x509_keys(&shown);
    wait_until("A to fetch B's bundle over https_web with ACME", 60, || {
        let out = a.cli(&["bundle", "list", "-id", B_ID, "-format", "spiffe"]);
        if out.ok() && x509_keys(&out.stdout) == b_now {
            Ok(())
        } else {
            Err(out.all())
        }
    })
    .await;
    let refreshed = a.cli(&["federation", "refresh", "-id", B]);
    assert!(refreshed.ok(), "federation refresh: {refreshed}");

    // With the CA gone, the restarted endpoint serves the cached certificate (its key
    // read back from the KeyManager).
    pebble.proc.stop();
    b.stop();
    b.start().await;
    let (_, again) = wait_until(
        "the restarted endpoint to serve the cached certificate",
        60,
        || curl_acme(domain, be_port, &root),
    )
    .await;
    assert_eq!(again, leaf);

    // Terms not accepted: SPIRE's warning, and no certificate (the CA wants agreement).
    let Some(mut pebble2) = crate::oidc::Pebble::start(&sc, free_port(), 90 * 86_400) else {
        return;
    };
    let port_c = free_port();
    let c = Server::start_new(
        &sc,
        "server-c",
        server_subject(),
        ServerOpts {
            trust_domain: Some("c.test".into()),
            extra_server: acme(port_c, false, &pebble2.directory),
            env: vec![("SSL_CERT_FILE".into(), pebble2.minica.display().to_string())],
            ..ServerOpts::default()
        },
    )
    .await;
    c.wait_log(
        "ACME Terms of Service have not been accepted. See the `tos_accepted` configurable",
        30,
    )
    .await;
    let root2 = sc.path().join("pebble2-root.pem");
    std::fs::write(&root2, pebble2.issuing_root().await).expect("pebble root");
    let refused = curl_acme(domain, port_c, &root2.display().to_string());
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        !c.data_dir.join("bundle-acme").join(domain).exists(),
        "a certificate was cached without accepted terms"
    );
    drop(a);
}
