//! Both halves against a real software TPM (swtpm on a unix socket, manufactured by
//! swtpm_setup with an EK certificate from a local CA of the test's own). The DevID key is
//! created here under SPIRE's SRK template with this crate's own TPM client, its
//! certificate issued with rcgen. Skipped visibly without swtpm; `SPIRE_RS_REQUIRE_TPM=1`
//! makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use spiffe_core::TrustDomain;
use spire_plugin::{AttestedAgent, Challenger, ServerNodeAttestor};
use tokio::sync::mpsc;

use super::*;
use crate::server::{ServerConfig, TpmDevIdServer};
use crate::tpm2::{Writer, attr};

/// A running swtpm, killed (by its PID) when dropped.
struct Swtpm {
    child: Child,
    socket: PathBuf,
    ek_ca: PathBuf,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn available(cmd: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn swtpm(dir: &Path) -> Option<Swtpm> {
    let (Some(_), Some(_), Some(localca_tool)) = (
        available("swtpm"),
        available("swtpm_setup"),
        available("swtpm_localca"),
    ) else {
        assert!(
            std::env::var("SPIRE_RS_REQUIRE_TPM").as_deref() != Ok("1"),
            "swtpm is unavailable and SPIRE_RS_REQUIRE_TPM=1"
        );
        eprintln!("SKIPPED: swtpm is unavailable; set SPIRE_RS_REQUIRE_TPM=1 to fail instead");
        return None;
    };
    let state = dir.join("state");
    let localca = dir.join("localca");
    fs::create_dir_all(&state).unwrap();
    fs::create_dir_all(&localca).unwrap();
    let l = localca.display();
    fs::write(
        dir.join("localca.conf"),
        format!("statedir = {l}\nsigningkey = {l}/signkey.pem\nissuercert = {l}/issuercert.pem\ncertserial = {l}/certserial\n"),
    )
    .unwrap();
    fs::write(
        dir.join("localca.options"),
        "--platform-manufacturer spire-rs\n--platform-version 1.0\n--platform-model test\n",
    )
    .unwrap();
    fs::write(
        dir.join("setup.conf"),
        format!(
            "create_certs_tool = {localca_tool}\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
            dir.join("localca.conf").display(),
            dir.join("localca.options").display()
        ),
    )
    .unwrap();
    let out = Command::new("swtpm_setup")
        .args(["--tpm2", "--tpmstate"])
        .arg(&state)
        .arg("--config")
        .arg(dir.join("setup.conf"))
        .args([
            "--create-ek-cert",
            "--create-platform-cert",
            "--lock-nvram",
            "--overwrite",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swtpm_setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ek_ca = dir.join("ek-ca.pem");
    let mut roots = fs::read_to_string(localca.join("issuercert.pem")).unwrap();
    roots.push_str(&fs::read_to_string(localca.join("swtpm-localca-rootca-cert.pem")).unwrap());
    fs::write(&ek_ca, roots).unwrap();
    let socket = dir.join("tpm.sock");
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .arg("--server")
        .arg(format!("type=unixio,path={}", socket.display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(socket.exists(), "swtpm did not open its socket");
    Some(Swtpm {
        child,
        socket,
        ek_ca,
    })
}

/// An unrestricted RSA-2048 RSASSA-SHA256 signing key, SPIRE's test DevID template.
fn devid_template() -> Vec<u8> {
    let attrs = attr::SIGN
        | attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH;
    let mut w = Writer::default();
    w.u16(alg::RSA).u16(alg::SHA256).u32(attrs).tpm2b(&[]);
    w.u16(alg::NULL).u16(alg::RSASSA).u16(alg::SHA256);
    w.u16(2048).u32(0).tpm2b(&[]);
    w.0
}

fn der_len_bytes(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else if len < 0x100 {
        vec![0x81, len as u8]
    } else {
        vec![0x82, (len >> 8) as u8, len as u8]
    }
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len_bytes(body.len()));
    out.extend_from_slice(body);
    out
}

/// SPIRE's test ECC DevID template: an unrestricted NIST P-256 ECDSA-SHA256 signing key.
fn devid_template_ecc() -> Vec<u8> {
    let attrs = attr::SIGN
        | attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH;
    let mut w = Writer::default();
    w.u16(alg::ECC).u16(alg::SHA256).u32(attrs).tpm2b(&[]);
    w.u16(alg::NULL).u16(alg::ECDSA).u16(alg::SHA256);
    w.u16(0x0003).u16(alg::NULL).tpm2b(&[0; 32]).tpm2b(&[0; 32]);
    w.0
}

/// The SubjectPublicKeyInfo of a P-256 key from its coordinates.
fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    let alg_id = der(
        0x30,
        &[
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ]
        .concat(),
    );
    let mut bits = vec![0u8, 0x04];
    bits.extend_from_slice(x);
    bits.extend_from_slice(y);
    der(0x30, &[alg_id, der(0x03, &bits)].concat())
}

/// The SubjectPublicKeyInfo of an RSA key from its modulus and exponent.
fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let mut b = v.to_vec();
        if b.first().is_some_and(|x| x & 0x80 != 0) {
            b.insert(0, 0);
        }
        der(0x02, &b)
    };
    let pkcs1 = der(0x30, &[int(n), int(e)].concat());
    let alg_id = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let mut bits = vec![0u8];
    bits.extend(pkcs1);
    der(0x30, &[alg_id, der(0x03, &bits)].concat())
}

/// Creates a DevID key under the SRK with our own TPM client and issues its certificate.
fn provision(tpm: &Swtpm, dir: &Path, ecc: bool) -> (AgentConfig, Vec<u8>, Vec<u8>) {
    let mut t = Tpm::open(&tpm.socket).unwrap();
    let (srk_template, template) = if ecc {
        (device::srk_template_ecc(), devid_template_ecc())
    } else {
        (device::srk_template_rsa(), devid_template())
    };
    let srk = t
        .create_primary(device::RH_OWNER, &[], &[], &srk_template)
        .unwrap();
    let key = t.create(srk.handle, &[], b"devid-pw", &template).unwrap();
    t.flush(srk.handle).unwrap();
    drop(t);
    let public = Public::decode(&key.public).unwrap();
    let spki = match &public.params {
        KeyParams::Rsa { .. } => {
            let (n, e) = public.rsa().unwrap();
            rsa_spki(n, &e)
        }
        KeyParams::Ecc { x, y, .. } => p256_spki(x, y),
    };

    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "devid root");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_der = ca_params.self_signed(&ca_key).unwrap().der().to_vec();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, "swtpm-node");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = rcgen::SubjectPublicKeyInfo::from_der(&spki).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf_der = leaf.signed_by(&leaf_key, &issuer).unwrap().der().to_vec();

    fs::write(dir.join("devid.pub"), &key.public).unwrap();
    fs::write(dir.join("devid.priv"), &key.private).unwrap();
    fs::write(
        dir.join("devid.pem"),
        spiffe_core::pem_encode("CERTIFICATE", &leaf_der),
    )
    .unwrap();
    fs::write(
        dir.join("ca.pem"),
        spiffe_core::pem_encode("CERTIFICATE", &ca_der),
    )
    .unwrap();
    let s = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let cfg = AgentConfig {
        devid_cert_path: s("devid.pem"),
        devid_pub_path: s("devid.pub"),
        devid_priv_path: s("devid.priv"),
        devid_password: "devid-pw".into(),
        tpm_device_path: tpm.socket.to_string_lossy().into_owned(),
        ..Default::default()
    };
    (cfg, leaf_der, ca_der)
}

/// Runs both halves against each other; `tamper` may change the challenge in transit.
async fn run(
    agent: &TpmDevIdAgent,
    server: &TpmDevIdServer,
    tamper: fn(&mut ChallengeRequest),
) -> (PluginResult<()>, PluginResult<AttestedAgent>) {
    struct AgentSide {
        to_server: mpsc::Sender<Vec<u8>>,
        from_server: mpsc::Receiver<Option<Vec<u8>>>,
    }
    #[async_trait]
    impl AttestationExchange for AgentSide {
        async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
            self.to_server
                .send(data)
                .await
                .map_err(|e| PluginError::internal(e.to_string()))?;
            self.from_server
                .recv()
                .await
                .ok_or_else(|| PluginError::internal("closed"))
        }
    }
    struct ServerSide {
        to_agent: mpsc::Sender<Option<Vec<u8>>>,
        from_agent: mpsc::Receiver<Vec<u8>>,
        tamper: fn(&mut ChallengeRequest),
    }
    #[async_trait]
    impl Challenger for ServerSide {
        async fn challenge(&mut self, c: Vec<u8>) -> PluginResult<Vec<u8>> {
            let mut req: ChallengeRequest = serde_json::from_slice(&c).unwrap();
            (self.tamper)(&mut req);
            self.to_agent
                .send(Some(serde_json::to_vec(&req).unwrap()))
                .await
                .map_err(|e| PluginError::internal(e.to_string()))?;
            self.from_agent
                .recv()
                .await
                .ok_or_else(|| PluginError::internal("the agent gave up"))
        }
    }
    let (a2s_tx, mut a2s_rx) = mpsc::channel(4);
    let (s2a_tx, s2a_rx) = mpsc::channel(4);
    let agent_fut = async move {
        // Owned here so the server sees the channel close when the agent gives up.
        let mut side = AgentSide {
            to_server: a2s_tx,
            from_server: s2a_rx,
        };
        agent.attest(&mut side).await
    };
    let done_tx = s2a_tx.clone();
    let server_fut = async move {
        let Some(payload) = a2s_rx.recv().await else {
            return Err(PluginError::internal("no payload"));
        };
        let mut side = ServerSide {
            to_agent: s2a_tx,
            from_agent: a2s_rx,
            tamper,
        };
        let result = server.attest(payload, &mut side).await;
        let _ = done_tx.send(None).await;
        result
    };
    tokio::join!(agent_fut, server_fut)
}

fn server(dir: &Path, devid_ca: &[u8], ek_ca: &Path) -> TpmDevIdServer {
    fs::write(
        dir.join("server-devid-ca.pem"),
        spiffe_core::pem_encode("CERTIFICATE", devid_ca),
    )
    .unwrap();
    let cfg = ServerConfig {
        devid_ca_path: dir.join("server-devid-ca.pem").to_string_lossy().into(),
        endorsement_ca_path: ek_ca.to_string_lossy().into(),
    };
    TpmDevIdServer::new(&cfg, TrustDomain::new("example.org").unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attests_through_swtpm_and_survives_a_failed_activation() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tpm) = swtpm(dir.path()) else {
        return;
    };
    let (cfg, leaf, ca) = provision(&tpm, dir.path(), false);
    let agent = TpmDevIdAgent::new(&cfg).unwrap();
    let server = server(dir.path(), &ca, &tpm.ek_ca);

    // A credential the TPM cannot activate (its integrity check fails): the agent reports
    // it, the server issues nothing.
    let (agent_result, server_result) = run(&agent, &server, |req| {
        if let Some(c) = req.cred_activation.as_mut()
            && let Some(last) = c.credential.last_mut()
        {
            *last ^= 1;
        }
    })
    .await;
    let err = agent_result.unwrap_err();
    assert!(
        err.message.starts_with(
            "unable to solve proof of residency challenge: failed to activate credential: TPM error"
        ),
        "{err}"
    );
    assert!(server_result.is_err());

    // Every handle was flushed: the same TPM attests again (swtpm holds 3 transient objects).
    for _ in 0..2 {
        let (agent_result, server_result) = run(&agent, &server, |_| {}).await;
        agent_result.unwrap();
        let attested = server_result.unwrap();
        assert_eq!(
            attested.agent_id.to_string(),
            format!(
                "spiffe://example.org/spire/agent/tpm_devid/{}",
                crate::fingerprint(&leaf)
            )
        );
        assert_eq!(
            attested.selector_values,
            vec![
                "subject:cn:swtpm-node".to_string(),
                "issuer:cn:devid root".to_string(),
                format!("ca:fingerprint:{}", crate::fingerprint(&ca)),
            ]
        );
    }

    // A wrong DevID password: the TPM refuses the key's use.
    let mut wrong = cfg.clone();
    wrong.devid_password = "not-it".into();
    let agent = TpmDevIdAgent::new(&wrong).unwrap();
    let (agent_result, server_result) = run(&agent, &server, |_| {}).await;
    let err = agent_result.unwrap_err();
    assert!(
        err.message
            .starts_with("unable to certify DevID key: tpm2.Certify failed: TPM error"),
        "{err}"
    );
    assert!(server_result.is_err());
}

/// An ECC DevID key: loaded under SPIRE's ECC SRK, the AK still under the RSA SRK, the
/// nonce signed with ECDSA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attests_with_an_ecc_devid_key() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tpm) = swtpm(dir.path()) else {
        return;
    };
    let (cfg, leaf, ca) = provision(&tpm, dir.path(), true);
    let agent = TpmDevIdAgent::new(&cfg).unwrap();
    let server = server(dir.path(), &ca, &tpm.ek_ca);
    let (agent_result, server_result) = run(&agent, &server, |_| {}).await;
    agent_result.unwrap();
    let attested = server_result.unwrap();
    assert_eq!(
        attested.agent_id.to_string(),
        format!(
            "spiffe://example.org/spire/agent/tpm_devid/{}",
            crate::fingerprint(&leaf)
        )
    );
    // The DevID nonce signature must be the key's: a nonce tampered in transit fails.
    let (agent_result, server_result) = run(&agent, &server, |req| req.devid[0] ^= 1).await;
    agent_result.unwrap();
    let err = server_result.unwrap_err();
    assert!(
        err.message
            .starts_with("devID challenge verification failed"),
        "{err}"
    );
}
