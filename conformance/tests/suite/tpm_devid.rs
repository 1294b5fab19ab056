//! tpm_devid attestation against a real software TPM (swtpm): the test manufactures a TPM
//! state with `swtpm_setup` (EK certificate from a per-scenario local CA), serves it on a
//! unix socket, provisions a DevID key under SPIRE's SRK template with conformance/tpmprov
//! (go-tpm, the version SPIRE pins) and a DevID certificate from a test CA through an
//! intermediate. The agent points `tpm_device_path` at the socket. swtpm is stopped by PID
//! when the scenario ends.
//!
//! Without swtpm/swtpm_setup or Go the scenarios skip visibly; `SPIRE_RS_REQUIRE_TPM=1`
//! (scripts/test.sh sets it) turns that into a failure.

use std::path::{Path, PathBuf};

use crate::support::{
    Agent, AgentOpts, Attestor, Proc, Scenario, Server, ServerOpts, agent_selectors, agent_subject,
    check_svid_json, id, pki, run, server_subject, skip, uid_selector, wait_agent_listed,
    wait_until, workspace_root,
};

fn tpm_required() -> bool {
    std::env::var("SPIRE_RS_REQUIRE_TPM").is_ok_and(|v| v == "1")
}

fn tpm_unavailable(sc: &Scenario, why: &str) {
    assert!(
        !tpm_required(),
        "swtpm is unavailable and SPIRE_RS_REQUIRE_TPM=1: {why}"
    );
    skip(
        sc,
        &format!("swtpm is unavailable ({why}); set SPIRE_RS_REQUIRE_TPM=1 to fail instead"),
    );
}

fn which(cmd: &str) -> bool {
    run(Path::new("sh"), &["-c", &format!("command -v {cmd}")], None).ok()
}

/// A running swtpm and the files the plugins need.
struct Tpm {
    _proc: Proc,
    socket: PathBuf,
    /// The EK certificate's issuer and root (SPIRE uses the file as roots only).
    ek_ca: PathBuf,
    /// tpmprov's output: devid.pem (leaf + intermediate), devid.pub, devid.priv, ca.pem.
    devid: PathBuf,
    /// The DevID key's authorization value ("" for none).
    devid_password: String,
    /// The owner and endorsement hierarchies' authorization values ("" for none).
    hierarchy: (String, String),
}

impl Tpm {
    fn devid_leaf(&self) -> Vec<u8> {
        let pem = std::fs::read_to_string(self.devid.join("devid.pem")).unwrap();
        pki::pem_certs(&pem).remove(0)
    }

    fn devid_intermediate(&self) -> Vec<u8> {
        let pem = std::fs::read_to_string(self.devid.join("devid.pem")).unwrap();
        pki::pem_certs(&pem).remove(1)
    }

    fn devid_root(&self) -> Vec<u8> {
        let pem = std::fs::read_to_string(self.devid.join("ca.pem")).unwrap();
        pki::pem_certs(&pem).remove(0)
    }

    fn agent_id(&self) -> String {
        id(&format!(
            "/spire/agent/tpm_devid/{}",
            pki::sha1_hex(&self.devid_leaf())
        ))
    }

    fn agent_block(&self) -> String {
        format!(
            "NodeAttestor \"tpm_devid\" {{\n        plugin_data {{\n            devid_cert_path = \"{d}/devid.pem\"\n            devid_pub_path = \"{d}/devid.pub\"\n            devid_priv_path = \"{d}/devid.priv\"\n            devid_password = \"{p}\"\n            owner_hierarchy_password = \"{o}\"\n            endorsement_hierarchy_password = \"{e}\"\n            tpm_device_path = \"{s}\"\n        }}\n    }}",
            d = self.devid.display(),
            p = self.devid_password,
            o = self.hierarchy.0,
            e = self.hierarchy.1,
            s = self.socket.display()
        )
    }
}

fn server_block(devid_ca: &Path, ek_ca: &Path) -> String {
    format!(
        "NodeAttestor \"tpm_devid\" {{\n        plugin_data {{\n            devid_ca_path = \"{}\"\n            endorsement_ca_path = \"{}\"\n        }}\n    }}",
        devid_ca.display(),
        ek_ca.display()
    )
}

/// How the DevID key is made.
#[derive(Clone, Copy)]
enum DevId {
    /// RSA-2048, no password.
    Rsa,
    /// NIST P-256, with a password.
    EccWithPassword,
    /// RSA-2048, no password, in a TPM whose owner and endorsement hierarchies have
    /// passwords (set after provisioning).
    RsaHierarchyPasswords,
}

/// Manufactures, starts and provisions a swtpm, or skips (returns `None`).
async fn swtpm(sc: &Scenario, kind: DevId) -> Option<Tpm> {
    for cmd in ["swtpm", "swtpm_setup", "go"] {
        if !which(cmd) {
            tpm_unavailable(sc, &format!("{cmd} is not installed"));
            return None;
        }
    }
    let dir = sc.subdir("tpm");
    let (state, localca) = (dir.join("state"), dir.join("localca"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&localca).unwrap();
    // A local CA of the scenario's own, so nothing depends on /var/lib/swtpm-localca.
    let ca_conf = dir.join("swtpm-localca.conf");
    std::fs::write(
        &ca_conf,
        format!(
            "statedir = {l}\nsigningkey = {l}/signkey.pem\nissuercert = {l}/issuercert.pem\ncertserial = {l}/certserial\n",
            l = localca.display()
        ),
    )
    .unwrap();
    let options = dir.join("swtpm-localca.options");
    std::fs::write(
        &options,
        "--platform-manufacturer spire-rs\n--platform-version 1.0\n--platform-model conformance\n",
    )
    .unwrap();
    let localca_tool = run(Path::new("sh"), &["-c", "command -v swtpm_localca"], None);
    if !localca_tool.ok() {
        tpm_unavailable(sc, "swtpm_localca is not installed");
        return None;
    }
    let setup_conf = dir.join("swtpm_setup.conf");
    std::fs::write(
        &setup_conf,
        format!(
            "create_certs_tool = {}\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
            localca_tool.stdout.trim(),
            ca_conf.display(),
            options.display()
        ),
    )
    .unwrap();
    let out = run(
        Path::new("swtpm_setup"),
        &[
            "--tpm2",
            "--tpmstate",
            &state.display().to_string(),
            "--config",
            &setup_conf.display().to_string(),
            "--create-ek-cert",
            "--create-platform-cert",
            "--lock-nvram",
            "--overwrite",
        ],
        None,
    );
    assert!(out.ok(), "swtpm_setup: {out}");
    let ek_ca = dir.join("ek-ca.pem");
    let mut roots = std::fs::read_to_string(localca.join("issuercert.pem")).unwrap();
    roots
        .push_str(&std::fs::read_to_string(localca.join("swtpm-localca-rootca-cert.pem")).unwrap());
    std::fs::write(&ek_ca, roots).unwrap();

    let socket = dir.join("tpm.sock");
    let proc = Proc::spawn(
        Path::new("swtpm"),
        &[
            "socket",
            "--tpm2",
            "--tpmstate",
            &format!("dir={}", state.display()),
            "--server",
            &format!("type=unixio,path={}", socket.display()),
            "--flags",
            "not-need-init,startup-clear",
        ],
        dir.join("swtpm.log"),
        &[],
    );
    wait_until("swtpm socket", 30, || {
        if socket.exists() {
            Ok(())
        } else {
            Err("no socket yet".to_string())
        }
    })
    .await;

    let build = run(
        Path::new("bash"),
        &[&workspace_root()
            .join("conformance/tpmprov/build.sh")
            .display()
            .to_string()],
        None,
    );
    if !build.ok() {
        tpm_unavailable(sc, &format!("tpmprov build failed: {build}"));
        return None;
    }
    let devid = dir.join("devid");
    std::fs::create_dir_all(&devid).unwrap();
    let devid_password = match kind {
        DevId::Rsa | DevId::RsaHierarchyPasswords => String::new(),
        DevId::EccWithPassword => "devid-secret".to_string(),
    };
    let hierarchy = match kind {
        DevId::RsaHierarchyPasswords => {
            ("owner-secret".to_string(), "endorsement-secret".to_string())
        }
        _ => (String::new(), String::new()),
    };
    let (socket_arg, devid_arg) = (socket.display().to_string(), devid.display().to_string());
    let mut args = vec![
        "-tpm",
        &socket_arg,
        "-out",
        &devid_arg,
        "-cn",
        "node-devid",
        "-intermediate",
        "-devid-password",
        &devid_password,
    ];
    if matches!(kind, DevId::EccWithPassword) {
        args.push("-ecc");
    }
    if !hierarchy.0.is_empty() {
        args.extend(["-new-owner-password", &hierarchy.0]);
        args.extend(["-new-endorsement-password", &hierarchy.1]);
    }
    let prov = run(Path::new(build.stdout.trim()), &args, None);
    assert!(prov.ok(), "tpmprov: {prov}");
    Some(Tpm {
        _proc: proc,
        socket,
        ek_ca,
        devid,
        devid_password,
        hierarchy,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn attest() {
    let sc = Scenario::new("tpm_devid::attest");
    attest_with(&sc, DevId::Rsa).await;
}

/// An ECC DevID key (loaded under SPIRE's ECC SRK, the nonce signed with ECDSA) with a
/// `devid_password`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn ecc_devid_with_password() {
    let sc = Scenario::new("tpm_devid::ecc_devid_with_password");
    attest_with(&sc, DevId::EccWithPassword).await;
}

/// A TPM whose owner and endorsement hierarchies have passwords: the agent recreates the
/// SRK with `owner_hierarchy_password` and opens the EK's PolicySecret session with
/// `endorsement_hierarchy_password`. Without them the same agent cannot attest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn hierarchy_passwords() {
    let sc = Scenario::new("tpm_devid::hierarchy_passwords");
    let Some(mut tpm) = swtpm(&sc, DevId::RsaHierarchyPasswords).await else {
        return;
    };
    let mut server = Server::start_new(
        &sc,
        "server-nopass",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(&tpm.devid.join("ca.pem"), &tpm.ek_ca),
            ..Default::default()
        },
    )
    .await;
    let hierarchy = std::mem::take(&mut tpm.hierarchy);
    let mut agent = Agent::new(
        &sc,
        "agent-nopass",
        agent_subject(),
        &server,
        &Attestor::Block(tpm.agent_block()),
        AgentOpts::default(),
    );
    agent.start();
    // SPIRE's agent retries attestation; the SRK cannot be recreated without the owner
    // password, so every attempt fails in the TPM, before the server is asked.
    agent
        .wait_log(
            "unable to start a new TPM session: cannot load DevID key on TPM",
            60,
        )
        .await;
    agent.kill();
    assert!(
        server.agent_ids().is_empty(),
        "no agent may be attested without the hierarchy passwords: {:?}",
        server.agent_ids()
    );
    server.stop();
    tpm.hierarchy = hierarchy;
    attest_tpm(&sc, &tpm).await;
}

async fn attest_with(sc: &Scenario, kind: DevId) {
    let Some(tpm) = swtpm(sc, kind).await else {
        return;
    };
    attest_tpm(sc, &tpm).await;
}

async fn attest_tpm(sc: &Scenario, tpm: &Tpm) {
    let server = Server::start_new(
        sc,
        "server",
        server_subject(),
        ServerOpts {
            extra_plugins: server_block(&tpm.devid.join("ca.pem"), &tpm.ek_ca),
            ..Default::default()
        },
    )
    .await;
    let agent = Agent::start_new(
        sc,
        "agent",
        agent_subject(),
        &server,
        &Attestor::Block(tpm.agent_block()),
        AgentOpts::default(),
    )
    .await;
    let agent_id = tpm.agent_id();
    let listed = wait_agent_listed(&server, &agent_id, 60).await;
    assert_eq!(listed["attestation_type"], "tpm_devid", "{listed}");
    assert_eq!(
        listed["can_reattest"], true,
        "tpm_devid agents can re-attest"
    );
    let mut selectors = agent_selectors(&listed);
    selectors.sort();
    let mut want = vec![
        "tpm_devid:subject:cn:node-devid".to_string(),
        "tpm_devid:issuer:cn:tpmprov intermediate CA".to_string(),
        format!(
            "tpm_devid:ca:fingerprint:{}",
            pki::sha1_hex(&tpm.devid_intermediate())
        ),
        format!(
            "tpm_devid:ca:fingerprint:{}",
            pki::sha1_hex(&tpm.devid_root())
        ),
    ];
    want.sort();
    assert_eq!(selectors, want, "agent selectors");

    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
}

/// The server refuses an agent whose TPM evidence does not chain to its configuration:
/// first an EK certificate from a CA it does not trust, then a DevID certificate from a CA
/// it does not trust. Nothing is issued; the server keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn untrusted_cas() {
    let sc = Scenario::new("tpm_devid::untrusted_cas");
    let Some(tpm) = swtpm(&sc, DevId::Rsa).await else {
        return;
    };
    // The DevID CA where the EK CA belongs, and the EK CA where the DevID CA belongs.
    let cases = [
        (
            "ek",
            server_block(&tpm.devid.join("ca.pem"), &tpm.devid.join("ca.pem")),
            "cannot verify EK signature",
        ),
        (
            "devid",
            server_block(&tpm.ek_ca, &tpm.ek_ca),
            "unable to verify DevID signature",
        ),
    ];
    for (label, block, needle) in cases {
        let mut server = Server::start_new(
            &sc,
            &format!("server-{label}"),
            server_subject(),
            ServerOpts {
                extra_plugins: block,
                ..Default::default()
            },
        )
        .await;
        let mut agent = Agent::new(
            &sc,
            &format!("agent-{label}"),
            agent_subject(),
            &server,
            &Attestor::Block(tpm.agent_block()),
            AgentOpts::default(),
        );
        agent.start();
        agent.wait_log(needle, 60).await;
        assert!(
            server.agent_ids().is_empty(),
            "no agent may be attested: {:?}",
            server.agent_ids()
        );
        assert!(server.is_running(), "the server survives bad evidence");
        agent.kill();
        server.stop();
    }
}
