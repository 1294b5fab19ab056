//! Unit tests: both halves of sshpop with certificates built here (every key type, every way
//! a certificate can be wrong) and with `ssh-keygen`'s own keys and certificates.

use std::path::Path;
use std::process::Command;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use spire_plugin::Code;

use super::wire::{EcCurve, put_string};
use super::*;
use crate::nodeattestor::testexchange::run;

const NOW: u64 = 1_800_000_000;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn fixed_now() -> NowFn {
    Arc::new(|| UNIX_EPOCH + std::time::Duration::from_secs(NOW))
}

fn key(kind: &str) -> PrivateKey {
    match kind {
        "ed25519" => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            PrivateKey::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }
        "rsa" => PrivateKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()),
        ec => {
            let curve = match ec {
                "p256" => EcCurve::P256,
                "p384" => EcCurve::P384,
                _ => EcCurve::P521,
            };
            let alg = match curve {
                EcCurve::P256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                EcCurve::P384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                EcCurve::P521 => &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            };
            PrivateKey::Ecdsa(curve, EcdsaKeyPair::generate(alg).unwrap())
        }
    }
}

/// What goes into a test certificate.
struct Spec {
    cert_type: u32,
    principals: Vec<&'static str>,
    after: u64,
    before: u64,
    critical: Vec<(&'static str, &'static str)>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            cert_type: wire::HOST_CERT,
            principals: vec!["node1.example.org"],
            after: NOW - 60,
            before: NOW + 3600,
            critical: Vec::new(),
        }
    }
}

/// An OpenSSH certificate for `host`'s key signed by `ca`, laid out as PROTOCOL.certkeys.
fn certify(host: &PrivateKey, ca: &PrivateKey, spec: &Spec) -> Vec<u8> {
    let public = host.public_key().unwrap();
    let mut out = Vec::new();
    put_string(
        &mut out,
        format!("{}-cert-v01@openssh.com", public.key_type()).as_bytes(),
    );
    put_string(&mut out, &[9u8; 32]);
    public.put_fields(&mut out);
    out.extend_from_slice(&42u64.to_be_bytes());
    out.extend_from_slice(&spec.cert_type.to_be_bytes());
    put_string(&mut out, b"node1-key");
    let mut principals = Vec::new();
    for p in &spec.principals {
        put_string(&mut principals, p.as_bytes());
    }
    put_string(&mut out, &principals);
    out.extend_from_slice(&spec.after.to_be_bytes());
    out.extend_from_slice(&spec.before.to_be_bytes());
    let mut critical = Vec::new();
    for (name, value) in &spec.critical {
        put_string(&mut critical, name.as_bytes());
        let mut v = Vec::new();
        put_string(&mut v, value.as_bytes());
        put_string(&mut critical, &v);
    }
    put_string(&mut out, &critical);
    put_string(&mut out, &[]);
    put_string(&mut out, &[]);
    put_string(&mut out, &ca.public_key().unwrap().marshal());
    let sig = ca.sign(&out).unwrap();
    let mut body = Vec::new();
    put_string(&mut body, sig.format.as_bytes());
    put_string(&mut body, &sig.blob);
    put_string(&mut out, &body);
    out
}

fn authorized(key: &PrivateKey) -> String {
    let public = key.public_key().unwrap();
    format!(
        "{} {} ca@test",
        public.key_type(),
        STANDARD.encode(public.marshal())
    )
}

fn server_with(ca: &PrivateKey, f: impl FnOnce(&mut ServerConfig)) -> PluginResult<SshPopServer> {
    let mut cfg = ServerConfig {
        cert_authorities: Some(vec![authorized(ca)]),
        ..Default::default()
    };
    f(&mut cfg);
    SshPopServer::new(&cfg, td(), fixed_now())
}

fn server(ca: &PrivateKey) -> SshPopServer {
    server_with(ca, |_| {}).unwrap()
}

fn agent(host: PrivateKey, cert: Vec<u8>) -> SshPopAgent {
    SshPopAgent { cert, key: host }
}

async fn attest_err(srv: &SshPopServer, ag: &SshPopAgent) -> PluginError {
    run(ag, srv).await.unwrap_err()
}

#[tokio::test]
async fn attests_with_every_key_type() {
    for kind in ["ed25519", "p256", "p384", "p521", "rsa"] {
        let ca = key(kind);
        let host = key(kind);
        let cert = certify(&host, &ca, &Spec::default());
        let fp = fingerprint(&cert);
        let ag = agent(host, cert);
        assert_eq!(ag.fingerprint(), fp);
        let attested = run(&ag, &server(&ca)).await.unwrap();
        assert_eq!(
            attested.agent_id.to_string(),
            format!("spiffe://example.org/spire/agent/sshpop/{fp}"),
            "{kind}"
        );
        assert!(
            attested.selector_values.is_empty(),
            "SPIRE gives no selectors"
        );
        assert!(attested.can_reattest);
    }
    // Certificates signed by a CA of another key type.
    let ca = key("rsa");
    let host = key("ed25519");
    let cert = certify(&host, &ca, &Spec::default());
    run(&agent(host, cert), &server(&ca)).await.unwrap();
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let host = key("ed25519");
    let cert = certify(&host, &key("ed25519"), &Spec::default());
    let err = attest_err(&server(&key("ed25519")), &agent(host, cert)).await;
    assert_eq!(err.code, Code::Internal);
    assert_eq!(
        err.message,
        "failed to check host key: ssh: no authorities for hostname: node1.example.org:22"
    );
}

#[tokio::test]
async fn expired_and_future_certificates_are_refused() {
    let ca = key("p256");
    for (spec, want) in [
        (
            Spec {
                after: NOW - 7200,
                before: NOW - 1,
                ..Default::default()
            },
            "failed to check host key: ssh: cert has expired",
        ),
        (
            Spec {
                before: NOW,
                ..Default::default()
            },
            "failed to check host key: ssh: cert has expired",
        ),
        (
            Spec {
                after: NOW + 10,
                ..Default::default()
            },
            "failed to check host key: ssh: cert is not yet valid",
        ),
    ] {
        let host = key("p256");
        let cert = certify(&host, &ca, &spec);
        assert_eq!(
            attest_err(&server(&ca), &agent(host, cert)).await.message,
            want
        );
    }
    // `forever` certificates never expire.
    let host = key("p256");
    let cert = certify(
        &host,
        &ca,
        &Spec {
            after: 0,
            before: wire::CERT_TIME_INFINITY,
            ..Default::default()
        },
    );
    run(&agent(host, cert), &server(&ca)).await.unwrap();
}

#[tokio::test]
async fn user_certificates_and_certificates_without_principals_are_refused() {
    let ca = key("ed25519");
    let host = key("ed25519");
    let user = certify(
        &host,
        &ca,
        &Spec {
            cert_type: wire::USER_CERT,
            ..Default::default()
        },
    );
    assert_eq!(
        attest_err(&server(&ca), &agent(key("ed25519"), user))
            .await
            .message,
        "failed to check host key: ssh: certificate presented as a host key has type 1"
    );
    let none = certify(
        &host,
        &ca,
        &Spec {
            principals: vec![],
            ..Default::default()
        },
    );
    assert_eq!(
        attest_err(&server(&ca), &agent(host, none)).await.message,
        "cert has no valid principals"
    );
}

#[tokio::test]
async fn unsupported_critical_options_are_refused() {
    let ca = key("ed25519");
    let host = key("ed25519");
    let cert = certify(
        &host,
        &ca,
        &Spec {
            critical: vec![("force-command", "/bin/true")],
            ..Default::default()
        },
    );
    assert_eq!(
        attest_err(&server(&ca), &agent(host, cert)).await.message,
        "failed to check host key: ssh: unsupported critical option \"force-command\" in certificate"
    );
}

#[tokio::test]
async fn a_tampered_certificate_is_refused() {
    let ca = key("p384");
    let host = key("p384");
    let mut cert = certify(&host, &ca, &Spec::default());
    // The key ID "node1-key" becomes "node2-key": the CA's signature no longer covers it.
    let at = cert.windows(9).position(|w| w == b"node1-key").unwrap();
    cert[at + 4] = b'2';
    assert_eq!(
        attest_err(&server(&ca), &agent(host, cert)).await.message,
        "failed to check host key: ssh: certificate signature does not verify"
    );
}

#[tokio::test]
async fn the_host_name_and_canonical_domain() {
    let ca = key("ed25519");
    let host = key("ed25519");
    let cert = certify(&host, &ca, &Spec::default());
    let ag = agent(host, cert);
    let srv = server_with(&ca, |c| {
        c.canonical_domain = "example.org".into();
        c.agent_path_template =
            "/{{ .PluginName }}/{{ .Hostname }}/{{ .KeyId }}/{{ .Serial }}".into();
    })
    .unwrap();
    let attested = run(&ag, &srv).await.unwrap();
    assert_eq!(
        attested.agent_id.to_string(),
        "spiffe://example.org/spire/agent/sshpop/node1/node1-key/42"
    );
    let other = server_with(&ca, |c| c.canonical_domain = "other.org".into()).unwrap();
    assert_eq!(
        attest_err(&other, &ag).await.message,
        "failed to decanonicalize hostname: cert principal is not in domain \".other.org\""
    );
}

/// A challenger that answers with a fixed response (a replayed or forged one).
struct Replay(Vec<u8>);

#[async_trait]
impl Challenger for Replay {
    async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn replayed_forged_and_malformed_responses_are_refused() {
    let ca = key("ed25519");
    let host = key("ed25519");
    let cert = certify(&host, &ca, &Spec::default());
    let ag = agent(host, cert.clone());
    let srv = server(&ca);
    let payload = serde_json::to_vec(&AttestationData {
        certificate: cert.clone(),
    })
    .unwrap();

    // A response the agent made for an earlier challenge.
    let old = serde_json::to_vec(&ChallengeRequest { nonce: vec![1; 32] }).unwrap();
    let replayed = ag.respond(&old).unwrap();
    let err = srv
        .attest(payload.clone(), &mut Replay(replayed))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Internal);
    assert_eq!(
        err.message,
        "failed to verify signature: ssh: signature did not verify"
    );

    // Signed by another key (one the CA did not certify).
    let intruder = agent(key("ed25519"), cert.clone());
    let forged = intruder.respond(&old).unwrap();
    assert!(
        srv.attest(payload.clone(), &mut Replay(forged))
            .await
            .unwrap_err()
            .message
            .starts_with("failed to verify signature")
    );

    // Short nonce, no signature, wrong signature type, not JSON.
    let short = br#"{"Nonce":"AAAA","Signature":{"Format":"ssh-ed25519","Blob":"AAAA"}}"#;
    let no_sig = format!(r#"{{"Nonce":"{}"}}"#, STANDARD.encode([0u8; 32]));
    let wrong_type = format!(
        r#"{{"Nonce":"{}","Signature":{{"Format":"rsa-sha2-512","Blob":"AAAA","Rest":null}}}}"#,
        STANDARD.encode([0u8; 32])
    );
    for (resp, want) in [
        (
            short.to_vec(),
            "failed to combine nonces: invalid response nonce size",
        ),
        (
            no_sig.into_bytes(),
            "failed to verify signature: missing signature",
        ),
        (
            wrong_type.into_bytes(),
            "failed to verify signature: ssh: signature type rsa-sha2-512 for key type ssh-ed25519",
        ),
    ] {
        let err = srv
            .attest(payload.clone(), &mut Replay(resp))
            .await
            .unwrap_err();
        assert_eq!(err.message, want);
    }
    let err = srv
        .attest(payload, &mut Replay(b"nope".to_vec()))
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("failed to unmarshal challenge response: "),
        "{err}"
    );

    // The agent refuses a challenge of the wrong size.
    let err = ag
        .respond(&serde_json::to_vec(&ChallengeRequest { nonce: vec![1; 8] }).unwrap())
        .unwrap_err();
    assert_eq!(
        err.message,
        "failed to combine nonces: invalid challenge nonce size"
    );
}

#[tokio::test]
async fn bad_payloads_are_refused() {
    let ca = key("ed25519");
    let srv = server(&ca);
    let plain = key("ed25519").public_key().unwrap().marshal();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "missing attestation payload"),
        (b"{".to_vec(), "failed to unmarshal data: "),
        (b"{}".to_vec(), "no certificate in response"),
        (
            br#"{"Certificate":"AAAAB3NzaC1yc2E="}"#.to_vec(),
            "failed to parse public key: ssh: short read",
        ),
        (
            serde_json::to_vec(&AttestationData { certificate: plain }).unwrap(),
            "pubkey in response is not a certificate",
        ),
    ];
    for (payload, want) in cases {
        let err = srv
            .attest(payload, &mut Replay(Vec::new()))
            .await
            .unwrap_err();
        assert!(err.message.starts_with(want), "{err} vs {want}");
    }
}

#[test]
fn the_wire_format_uses_go_field_names() {
    let ca = key("p256");
    let host = key("p256");
    let cert = certify(&host, &ca, &Spec::default());
    let payload = serde_json::to_value(AttestationData {
        certificate: cert.clone(),
    })
    .unwrap();
    assert_eq!(payload["Certificate"], STANDARD.encode(&cert));
    let ag = agent(host, cert);
    let challenge = br#"{"Nonce":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}"#;
    let resp: serde_json::Value = serde_json::from_slice(&ag.respond(challenge).unwrap()).unwrap();
    assert_eq!(resp["Signature"]["Format"], "ecdsa-sha2-nistp256");
    assert!(resp["Signature"]["Blob"].is_string());
    assert!(resp["Signature"]["Rest"].is_null());
    assert_eq!(
        STANDARD
            .decode(resp["Nonce"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn server_configuration_errors() {
    let ca = key("ed25519");
    let dir = tempfile::tempdir().unwrap();
    let msg = |cfg: ServerConfig| {
        SshPopServer::new(&cfg, td(), fixed_now())
            .unwrap_err()
            .message
    };
    assert_eq!(
        msg(ServerConfig::default()),
        "missing required config value for \"cert_authorities\" or \"cert_authorities_path\""
    );
    assert_eq!(
        msg(ServerConfig {
            cert_authorities: Some(vec![]),
            ..Default::default()
        }),
        "failed to create cert checker: must provide at least one cert authority"
    );
    let missing = dir.path().join("missing");
    assert_eq!(
        msg(ServerConfig {
            cert_authorities_path: missing.display().to_string(),
            ..Default::default()
        }),
        format!(
            "failed to get cert authorities from file: open {}: no such file or directory",
            missing.display()
        )
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n\n").unwrap();
    assert_eq!(
        msg(ServerConfig {
            cert_authorities_path: empty.display().to_string(),
            ..Default::default()
        }),
        format!(
            "failed to get cert authorities from file: no data found in file: {:?}",
            empty.display().to_string()
        )
    );
    assert_eq!(
        msg(ServerConfig {
            cert_authorities: Some(vec!["ssh-ed25519 garbage".into()]),
            ..Default::default()
        }),
        "failed to create cert checker: failed to parse public key \"ssh-ed25519 garbage\": ssh: no key found"
    );
    assert_eq!(
        server_with(&ca, |c| c.agent_path_template = "/{{ .Nope".into())
            .unwrap_err()
            .message,
        "failed to parse agent svid template: \"/{{ .Nope\""
    );
    // Both sources together, with an options prefix as authorized_keys allows.
    let file = dir.path().join("cas");
    std::fs::write(&file, format!("{}\n", authorized(&key("p256")))).unwrap();
    let srv = SshPopServer::new(
        &ServerConfig {
            cert_authorities: Some(vec![format!("cert-authority {}", authorized(&ca))]),
            cert_authorities_path: file.display().to_string(),
            ..Default::default()
        },
        td(),
        fixed_now(),
    )
    .unwrap();
    assert_eq!(srv.authorities.len(), 2);
}

#[test]
fn agent_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let msg = |cfg: AgentConfig| SshPopAgent::new(&cfg).unwrap_err().message;
    let err = msg(AgentConfig {
        host_key_path: dir.path().join("nokey").display().to_string(),
        ..Default::default()
    });
    assert_eq!(
        err,
        format!(
            "failed to read host key file: open {}: no such file or directory",
            dir.path().join("nokey").display()
        )
    );
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "not a key").unwrap();
    let err = msg(AgentConfig {
        host_key_path: key_file.display().to_string(),
        ..Default::default()
    });
    assert_eq!(
        err,
        "failed to read host cert file: open /etc/ssh/ssh_host_rsa_key-cert.pub: no such file or directory"
    );
    let cert_file = dir.path().join("cert");
    std::fs::write(&cert_file, authorized(&key("ed25519"))).unwrap();
    let cfg = AgentConfig {
        host_key_path: key_file.display().to_string(),
        host_cert_path: cert_file.display().to_string(),
    };
    assert_eq!(
        msg(cfg.clone()),
        "failed to get cert and signer from pem: ssh: no key found"
    );
}

// === with ssh-keygen ===

fn ssh_keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(dir: &Path, name: &str, kind: &[&str]) -> String {
    let path = dir.join(name).display().to_string();
    let mut args = vec!["-q", "-N", "", "-C", name, "-f", &path];
    args.extend_from_slice(kind);
    ssh_keygen(&args);
    path
}

const KINDS: &[&[&str]] = &[
    &["-t", "ed25519"],
    &["-t", "ecdsa", "-b", "256"],
    &["-t", "ecdsa", "-b", "384"],
    &["-t", "ecdsa", "-b", "521"],
    &["-t", "rsa", "-b", "2048"],
    &["-t", "rsa", "-b", "2048", "-m", "PEM"],
    &["-t", "ecdsa", "-b", "256", "-m", "PEM"],
];

#[tokio::test]
#[ignore = "needs ssh-keygen (Debian openssh-client)"]
async fn ssh_keygen_host_certificates_attest() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let ca = keygen(dir.path(), "ca", kind);
        let host = keygen(dir.path(), "host", kind);
        ssh_keygen(&[
            "-q",
            "-s",
            &ca,
            "-h",
            "-I",
            "node1",
            "-n",
            "node1.example.org,node1",
            "-z",
            "7",
            &format!("{host}.pub"),
        ]);
        let ag = SshPopAgent::new(&AgentConfig {
            host_key_path: host.clone(),
            host_cert_path: format!("{host}-cert.pub"),
        })
        .unwrap();
        let srv = SshPopServer::new(
            &ServerConfig {
                cert_authorities_path: format!("{ca}.pub"),
                agent_path_template: "/{{ .PluginName }}/{{ .Hostname }}-{{ .Serial }}".into(),
                canonical_domain: "example.org".into(),
                ..Default::default()
            },
            td(),
            Arc::new(SystemTime::now),
        )
        .unwrap();
        let attested = run(&ag, &srv).await.unwrap();
        assert_eq!(
            attested.agent_id.to_string(),
            "spiffe://example.org/spire/agent/sshpop/node1-7",
            "{kind:?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs ssh-keygen (Debian openssh-client)"]
async fn ssh_keygen_bad_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kind: &[&str] = &["-t", "ed25519"];
    let ca = keygen(dir.path(), "ca", kind);
    let other_ca = keygen(dir.path(), "other", kind);
    let srv = |path: &str| {
        SshPopServer::new(
            &ServerConfig {
                cert_authorities_path: format!("{path}.pub"),
                ..Default::default()
            },
            td(),
            Arc::new(SystemTime::now),
        )
        .unwrap()
    };
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "expired",
            &["-V", "20200101:20200102"],
            "ssh: cert has expired",
        ),
        (
            "user",
            &[],
            "ssh: certificate presented as a host key has type 1",
        ),
        ("unknown", &[], "ssh: no authorities for hostname: node1:22"),
    ];
    for (name, extra, want) in cases {
        let host = keygen(dir.path(), name, kind);
        let signer = if *name == "unknown" { &other_ca } else { &ca };
        let mut args = vec!["-q", "-s", signer.as_str(), "-I", "id", "-n", "node1"];
        if *name != "user" {
            args.push("-h");
        }
        args.extend_from_slice(extra);
        let pubkey = format!("{host}.pub");
        args.push(&pubkey);
        ssh_keygen(&args);
        let ag = SshPopAgent::new(&AgentConfig {
            host_key_path: host.clone(),
            host_cert_path: format!("{host}-cert.pub"),
        })
        .unwrap();
        let err = run(&ag, &srv(&ca)).await.unwrap_err();
        assert_eq!(
            err.message,
            format!("failed to check host key: {want}"),
            "{name}"
        );
    }
    // A passphrase-protected host key.
    let locked = dir.path().join("locked").display().to_string();
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "secret", "-f", &locked]);
    ssh_keygen(&[
        "-q",
        "-s",
        &ca,
        "-h",
        "-I",
        "id",
        "-n",
        "node1",
        &format!("{locked}.pub"),
    ]);
    let err = SshPopAgent::new(&AgentConfig {
        host_key_path: locked.clone(),
        host_cert_path: format!("{locked}-cert.pub"),
    })
    .unwrap_err();
    assert_eq!(
        err.message,
        "failed to get cert and signer from pem: ssh: this private key is passphrase protected"
    );
    // The plain public key where the certificate should be.
    let plain = keygen(dir.path(), "plain", kind);
    let err = SshPopAgent::new(&AgentConfig {
        host_key_path: plain.clone(),
        host_cert_path: format!("{plain}.pub"),
    })
    .unwrap_err();
    assert!(
        err.message
            .starts_with("failed to get cert and signer from pem: "),
        "{err}"
    );
}
