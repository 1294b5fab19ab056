//! sshpop attestation with real OpenSSH host certificates: `ssh-keygen` makes a CA and a
//! host key, and signs the host key (`ssh-keygen -s ca -h -n <principal>`). The agent ID
//! the server lists is computed here, independently of both implementations (the unpadded
//! URL-safe base64 SHA-256 of the certificate blob), so every pairing must list the same
//! agent ID and the same (empty: SPIRE's sshpop gives none) selectors.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Scenario, Server, ServerOpts, agent_selectors,
    agent_subject, check_svid_json, id, server_subject, uid_selector, wait_agent_listed,
};

fn ssh_keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("ssh-keygen cannot run ({e}); .ci/run installs it (Debian openssh-client)")
        });
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new key pair `<dir>/<name>` (and `.pub`) of `kind` (`ssh-keygen -t/-b` arguments).
fn keygen(dir: &Path, name: &str, kind: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let p = path.display().to_string();
    let mut args = vec!["-q", "-N", "", "-C", name, "-f", &p];
    args.extend_from_slice(kind);
    ssh_keygen(&args);
    path
}

/// A host certificate for `host` signed by `ca` for `principals`: `<host>-cert.pub`.
fn certify(ca: &Path, host: &Path, principals: &str) -> PathBuf {
    ssh_keygen(&[
        "-q",
        "-s",
        &ca.display().to_string(),
        "-h",
        "-I",
        "node1-host-key",
        "-n",
        principals,
        "-V",
        "-1h:+1d",
        &format!("{}.pub", host.display()),
    ]);
    PathBuf::from(format!("{}-cert.pub", host.display()))
}

/// SPIRE's sshpop fingerprint of a certificate file.
fn fingerprint(cert: &Path) -> String {
    let text = std::fs::read_to_string(cert).expect("read certificate");
    let b64 = text.split_whitespace().nth(1).expect("certificate blob");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 certificate");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &blob))
}

fn agent_block(key: &Path, cert: &Path) -> Attestor {
    Attestor::Block(format!(
        "NodeAttestor \"sshpop\" {{\n        plugin_data {{\n            host_key_path = \"{}\"\n            host_cert_path = \"{}\"\n        }}\n    }}",
        key.display(),
        cert.display()
    ))
}

fn server_block(ca_pub: &Path, extra: &str) -> String {
    format!(
        "NodeAttestor \"sshpop\" {{\n        plugin_data {{\n            cert_authorities_path = \"{}\"\n            {extra}\n        }}\n    }}",
        ca_pub.display()
    )
}

/// One attestation with `kind` keys; checks the listed agent and a workload SVID.
async fn attest(name: &str, kind: &[&str], server_extra: &str, principals: &str, want: Want) {
    let sc = Scenario::new(name);
    let keys = sc.subdir("ssh");
    let ca = keygen(&keys, "ca", kind);
    let host = keygen(&keys, "host", kind);
    let cert = certify(&ca, &host, principals);
    let ca_pub = PathBuf::from(format!("{}.pub", ca.display()));
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(&ca_pub, server_extra),
            ..Default::default()
        },
    )
    .await;
    let agent = Agent::start_new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(&host, &cert),
        AgentOpts::default(),
    )
    .await;
    let agent_id = match want {
        Want::Fingerprint => id(&format!("/spire/agent/sshpop/{}", fingerprint(&cert))),
        Want::Path(p) => id(p),
    };
    let listed = wait_agent_listed(&server, &agent_id, 30).await;
    assert_eq!(listed["attestation_type"], "sshpop", "{listed}");
    assert_eq!(listed["can_reattest"], true, "sshpop agents can re-attest");
    assert_eq!(
        agent_selectors(&listed),
        Vec::<String>::new(),
        "SPIRE's sshpop gives no selectors"
    );
    assert_eq!(server.agent_ids(), vec![agent_id.clone()]);

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

enum Want {
    /// `/spire/agent/sshpop/<fingerprint>`, SPIRE's default.
    Fingerprint,
    /// This path.
    Path(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn ed25519_host_certificate() {
    attest(
        "sshpop::ed25519_host_certificate",
        &["-t", "ed25519"],
        "",
        "node1.example.org",
        Want::Fingerprint,
    )
    .await;
}

/// RSA host keys: SPIRE's agent signs the challenge with `ssh-rsa` (SHA-1), ours with
/// `rsa-sha2-512`; both servers must accept both. The host name comes from the principal
/// less `canonical_domain`, through `agent_path_template`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn rsa_host_certificate_with_canonical_domain() {
    attest(
        "sshpop::rsa_host_certificate_with_canonical_domain",
        &["-t", "rsa", "-b", "2048"],
        "canonical_domain = \"example.org\"\n            agent_path_template = \"/{{ .PluginName }}/{{ .Hostname }}\"",
        "node1.example.org,node1",
        Want::Path("/spire/agent/sshpop/node1"),
    )
    .await;
}

/// An `agent_path_template` with pipelines, sprig functions and Go builtins over the
/// certificate's fields: every server must render the same agent ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn sprig_agent_path_template() {
    attest(
        "sshpop::sprig_agent_path_template",
        &["-t", "ed25519"],
        "canonical_domain = \"example.org\"\n            agent_path_template = \"/{{ .PluginName | upper }}/{{ .Hostname | title }}/{{ len .ValidPrincipals }}-{{ .CertType }}/{{ with .ValidPrincipals }}{{ index . 0 | sha1sum | trunc 7 }}{{ end }}\"",
        "node1.example.org,node1",
        Want::Path("/spire/agent/SSHPOP/Node1/2-2/1a14fe8"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn ecdsa_host_certificate() {
    attest(
        "sshpop::ecdsa_host_certificate",
        &["-t", "ecdsa", "-b", "384"],
        "",
        "node1.example.org",
        Want::Fingerprint,
    )
    .await;
}

/// A host certificate from a CA the server does not trust: the agent is refused, nothing
/// is listed, and the agent says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn unknown_ca_is_refused() {
    let sc = Scenario::new("sshpop::unknown_ca_is_refused");
    let keys = sc.subdir("ssh");
    let kind: &[&str] = &["-t", "ed25519"];
    let trusted = keygen(&keys, "trusted", kind);
    let rogue = keygen(&keys, "rogue", kind);
    let host = keygen(&keys, "host", kind);
    let cert = certify(&rogue, &host, "node1.example.org");
    let server = Server::start_new(
        &sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(&PathBuf::from(format!("{}.pub", trusted.display())), ""),
            ..Default::default()
        },
    )
    .await;
    let mut agent = Agent::new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(&host, &cert),
        AgentOpts::default(),
    );
    agent.start();
    let d = Deadline::new("the agent to report the refused certificate", 60);
    let want = "ssh: no authorities for hostname: node1.example.org:22";
    while !agent.log().contains(want) {
        d.tick(crate::support::tail(&agent.log(), 2000).to_string())
            .await;
    }
    assert!(server.agent_ids().is_empty(), "{:?}", server.agent_ids());
    agent.stop();
}

/// Configuration errors stop both programs with SPIRE's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn configuration_errors() {
    let sc = Scenario::new("sshpop::configuration_errors");
    let missing = sc.path().join("missing.pub");
    for (label, data, want) in [
        (
            "no-authorities",
            String::new(),
            "missing required config value for ".to_string(),
        ),
        (
            "missing-file",
            format!("cert_authorities_path = \"{}\"", missing.display()),
            format!(
                "failed to get cert authorities from file: open {}: no such file or directory",
                missing.display()
            ),
        ),
    ] {
        let mut server = Server::new(
            &sc,
            label,
            server_subject(),
            ServerOpts {
                extra_plugins: format!(
                    "NodeAttestor \"sshpop\" {{\n        plugin_data {{\n            {data}\n        }}\n    }}"
                ),
                ..Default::default()
            },
        );
        let status = server.run_expecting_exit(60).await;
        assert!(!status.success(), "{label}");
        let log = server.log();
        assert!(
            log.contains(&want) && log.contains("InvalidArgument"),
            "{label}: {}",
            crate::support::tail(&log, 3000)
        );
    }

    // The agent: no host key where it is told to look.
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let nokey = sc.path().join("nokey");
    let mut agent = Agent::new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &agent_block(&nokey, &sc.path().join("nocert")),
        AgentOpts::default(),
    );
    agent.start();
    let status = agent.wait_exit(60).await;
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains(&format!(
            "failed to read host key file: open {}: no such file or directory",
            nokey.display()
        )),
        "{}",
        crate::support::tail(&log, 3000)
    );
}
