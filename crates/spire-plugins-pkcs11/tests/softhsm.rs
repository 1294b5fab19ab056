//! The pkcs11 KeyManager against a real token: SoftHSM2 (Debian `softhsm2`), with tokens
//! initialized by `softhsm2-util` in a private token directory per test.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, when the module is initialized, and a module is
//! initialized once per process; so every test runs its body in a child process of this
//! test binary (`--exact <name>`) whose environment names the test's own configuration.
//! Without SoftHSM the tests are skipped with a message, and fail instead when
//! `SPIRE_RS_REQUIRE_SOFTHSM=1` (which `scripts/test.sh` sets).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use spiffe_core::{JwsAlgorithm, KeyType};
use spire_plugin::{Code, KeyManager, SignatureKind, Signer};
use spire_plugins_pkcs11::{Config, Pkcs11KeyManager, Settings, Side};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const LABEL: &str = "spire-test";
const PIN: &str = "1234";
const CHILD_ENV: &str = "SPIRE_RS_PKCS11_TEST_DIR";

/// The test's SoftHSM: its directory (configuration and tokens).
struct Hsm {
    dir: PathBuf,
}

impl Hsm {
    fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    fn util(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn init_token(&self, label: &str, pin: &str) {
        self.util(&[
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            "000000",
        ]);
    }

    fn settings(&self, label: &str, pin: &str, prefix: Option<&str>) -> Settings {
        Config {
            module_path: MODULE.into(),
            token_label: label.into(),
            user_pin: pin.into(),
            key_label_prefix: prefix.map(Into::into),
            ..Config::default()
        }
        .parse(Side::Server)
        .unwrap()
    }

    /// The labels of the objects in the token, as `pkcs11-tool` (OpenSC) lists them.
    fn object_labels(&self, label: &str, pin: &str) -> Vec<String> {
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                MODULE,
                "--token-label",
                label,
                "--login",
                "--pin",
                pin,
                "--list-objects",
            ])
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_string())
            .collect()
    }
}

fn tool_missing() -> Option<String> {
    if !Path::new(MODULE).exists() {
        return Some(format!("{MODULE} is missing"));
    }
    for tool in ["softhsm2-util", "pkcs11-tool"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Runs `body` in a child process with its own SoftHSM configuration and a token
/// `LABEL`/`PIN` (more can be made by the body).
fn isolated(name: &str, body: impl FnOnce(&Hsm)) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        body(&Hsm { dir: dir.into() });
        return;
    }
    if let Some(why) = tool_missing() {
        assert!(
            std::env::var("SPIRE_RS_REQUIRE_SOFTHSM").as_deref() != Ok("1"),
            "{why} and SPIRE_RS_REQUIRE_SOFTHSM=1"
        );
        eprintln!("SKIPPED {name}: {why} (Debian: softhsm2, opensc)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("sp11-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    std::fs::write(
        dir.path().join("softhsm2.conf"),
        format!(
            "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = true\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let hsm = Hsm {
        dir: dir.path().into(),
    };
    hsm.init_token(LABEL, PIN);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(CHILD_ENV, dir.path())
        .env("SOFTHSM2_CONF", hsm.conf())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed in its child process");
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run in its child"
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn open(hsm: &Hsm) -> Pkcs11KeyManager {
    Pkcs11KeyManager::open(&hsm.settings(LABEL, PIN, None)).unwrap()
}

/// Signs X.509 and every JWS algorithm the key type allows, verifying each with the public
/// key (aws-lc-rs through spiffe-core); the algorithms the key cannot do are refused.
async fn check_signs(signer: &Arc<dyn Signer>, key_type: KeyType) {
    let key = signer.public_key().clone();
    let msg = b"to be signed by the token";
    let sig = signer.sign(msg, SignatureKind::X509).unwrap();
    assert!(key.verify_x509(msg, &sig), "{key_type:?} X.509");
    let sig = signer.sign_async(msg, SignatureKind::X509).await.unwrap();
    assert!(key.verify_x509(msg, &sig), "{key_type:?} X.509 async");
    assert!(!key.verify_x509(b"another message", &sig));
    let allowed: &[JwsAlgorithm] = match key_type {
        KeyType::EcP256 => &[JwsAlgorithm::ES256],
        KeyType::EcP384 => &[JwsAlgorithm::ES384],
        _ => &[
            JwsAlgorithm::RS256,
            JwsAlgorithm::RS384,
            JwsAlgorithm::RS512,
            JwsAlgorithm::PS256,
            JwsAlgorithm::PS384,
            JwsAlgorithm::PS512,
        ],
    };
    for alg in JwsAlgorithm::ALL {
        let r = signer.sign(msg, SignatureKind::Jws(alg));
        if allowed.contains(&alg) {
            let sig = r.unwrap();
            assert!(key.verify_jws(alg, msg, &sig), "{key_type:?} {alg}");
        } else {
            assert_eq!(
                r.unwrap_err().code,
                Code::InvalidArgument,
                "{key_type:?} {alg}"
            );
        }
    }
}

#[test]
fn generates_lists_and_signs_with_each_key_type() {
    isolated("generates_lists_and_signs_with_each_key_type", |hsm| {
        block_on(async {
            let km = open(hsm);
            assert!(km.get_public_keys().await.unwrap().is_empty());
            assert!(km.get_public_key("x509-CA-A").await.unwrap().is_none());
            assert_eq!(
                km.signer("x509-CA-A").await.unwrap_err().code,
                Code::NotFound
            );
            let types = [
                ("x509-CA-A", KeyType::EcP256),
                ("x509-CA-B", KeyType::EcP384),
                ("JWT-Signer-A", KeyType::Rsa2048),
            ];
            for (id, key_type) in types {
                let k = km.generate_key(id, key_type).await.unwrap();
                assert_eq!(k.id, id);
                assert_eq!(k.key_type, key_type);
                assert_eq!(k.public_key.key_type(), Some(key_type));
                assert_eq!(k.fingerprint.len(), 64);
                assert_eq!(km.get_public_key(id).await.unwrap().unwrap(), k);
                let signer = km.signer(id).await.unwrap();
                assert_eq!(signer.key_id(), id);
                assert_eq!(signer.public_key(), &k.public_key);
                check_signs(&signer, key_type).await;
            }
            let listed: Vec<String> = km
                .get_public_keys()
                .await
                .unwrap()
                .into_iter()
                .map(|k| k.id)
                .collect();
            assert_eq!(listed, ["JWT-Signer-A", "x509-CA-A", "x509-CA-B"]);
            // The objects are in the token under the prefixed labels, as another PKCS#11
            // client (OpenSC's pkcs11-tool) sees them: a private and a public key each.
            let mut labels = hsm.object_labels(LABEL, PIN);
            labels.sort();
            assert_eq!(
                labels,
                [
                    "spire-server-JWT-Signer-A",
                    "spire-server-JWT-Signer-A",
                    "spire-server-x509-CA-A",
                    "spire-server-x509-CA-A",
                    "spire-server-x509-CA-B",
                    "spire-server-x509-CA-B",
                ]
            );
            assert_eq!(
                km.generate_key("", KeyType::EcP256).await.unwrap_err().code,
                Code::InvalidArgument
            );
        });
    });
}

#[test]
fn keys_survive_a_restart() {
    isolated("keys_survive_a_restart", |hsm| {
        block_on(async {
            let (a, b) = {
                let km = open(hsm);
                (
                    km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap(),
                    km.generate_key("JWT-Signer-A", KeyType::Rsa2048)
                        .await
                        .unwrap(),
                )
            };
            // A new instance (the restarted server) finds them by label.
            let km = open(hsm);
            assert_eq!(km.get_public_key("x509-CA-A").await.unwrap().unwrap(), a);
            assert_eq!(km.get_public_key("JWT-Signer-A").await.unwrap().unwrap(), b);
            assert_eq!(km.get_public_keys().await.unwrap().len(), 2);
            let signer = km.signer("x509-CA-A").await.unwrap();
            let sig = signer.sign(b"m", SignatureKind::X509).unwrap();
            assert!(a.public_key.verify_x509(b"m", &sig));
        });
        // And a new process does too.
        let out = Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", LABEL, "--list-objects"])
            .env("SOFTHSM2_CONF", hsm.conf())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("spire-server-x509-CA-A"), "{text}");
    });
}

#[test]
fn generating_again_replaces_the_key() {
    isolated("generating_again_replaces_the_key", |hsm| {
        block_on(async {
            let km = open(hsm);
            let old = km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
            let old_signer = km.signer("x509-CA-A").await.unwrap();
            let new = km.generate_key("x509-CA-A", KeyType::EcP384).await.unwrap();
            assert_ne!(old.fingerprint, new.fingerprint);
            assert_eq!(new.key_type, KeyType::EcP384);
            assert_eq!(km.get_public_keys().await.unwrap(), vec![new.clone()]);
            // One pair left in the token.
            assert_eq!(
                hsm.object_labels(LABEL, PIN),
                ["spire-server-x509-CA-A", "spire-server-x509-CA-A"]
            );
            // The replaced key is gone: its signer fails clearly.
            let e = old_signer.sign(b"m", SignatureKind::X509).unwrap_err();
            assert_eq!(e.code, Code::NotFound, "{e:?}");
            assert_eq!(
                e.message,
                "key \"spire-server-x509-CA-A\" is no longer in PKCS#11 token \"spire-test\""
            );
            let signer = km.signer("x509-CA-A").await.unwrap();
            check_signs(&signer, KeyType::EcP384).await;
            assert_eq!(
                open(hsm).get_public_keys().await.unwrap(),
                vec![new.clone()]
            );
        });
    });
}

#[test]
fn wrong_pin_and_pin_files() {
    isolated("wrong_pin_and_pin_files", |hsm| {
        let e = Pkcs11KeyManager::open(&hsm.settings(LABEL, "9999", None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to log in to PKCS#11 token \"spire-test\": the user PIN is incorrect"
        );
        assert!(!format!("{e:?}").contains("9999"));
        let pin_file = hsm.dir.join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        let settings = Config {
            module_path: MODULE.into(),
            token_label: LABEL.into(),
            user_pin_file: pin_file.display().to_string(),
            ..Config::default()
        }
        .parse(Side::Agent)
        .unwrap();
        block_on(async {
            let km = Pkcs11KeyManager::open(&settings).unwrap();
            km.generate_key("agent-svid-A", KeyType::EcP256)
                .await
                .unwrap();
            assert_eq!(km.label("agent-svid-A"), "spire-agent-agent-svid-A");
        });
        std::fs::write(&pin_file, "4321\n").unwrap();
        let e = Pkcs11KeyManager::open(&settings).unwrap_err();
        assert!(e.to_string().ends_with("the user PIN is incorrect"), "{e}");
    });
}

#[test]
fn missing_token_slot_or_module() {
    isolated("missing_token_slot_or_module", |hsm| {
        let e = Pkcs11KeyManager::open(&hsm.settings("no-such-token", PIN, None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no PKCS#11 token labelled \"no-such-token\" (tokens present: \"spire-test\")"
        );
        let settings = Config {
            module_path: MODULE.into(),
            slot_id: Some(4_000_000_000),
            user_pin: PIN.into(),
            ..Config::default()
        }
        .parse(Side::Server)
        .unwrap();
        let e = Pkcs11KeyManager::open(&settings).unwrap_err().to_string();
        assert!(
            e.starts_with("no PKCS#11 token in slot 4000000000: CKR_SLOT_ID_INVALID"),
            "{e}"
        );
        let mut settings = hsm.settings(LABEL, PIN, None);
        settings.module_path = hsm.dir.join("nothing.so");
        let e = Pkcs11KeyManager::open(&settings).unwrap_err().to_string();
        assert!(e.starts_with("unable to load PKCS#11 module "), "{e}");
        // The slot the token is in works as well as its label.
        let out = hsm.util(&["--show-slots"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let slot: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Slot "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap();
        let settings = Config {
            module_path: MODULE.into(),
            slot_id: Some(slot),
            user_pin: PIN.into(),
            ..Config::default()
        }
        .parse(Side::Server)
        .unwrap();
        block_on(async {
            let km = Pkcs11KeyManager::open(&settings).unwrap();
            km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
        });
    });
}

#[test]
fn prefixes_keep_key_managers_apart() {
    isolated("prefixes_keep_key_managers_apart", |hsm| {
        block_on(async {
            let one = Pkcs11KeyManager::open(&hsm.settings(LABEL, PIN, Some("one-"))).unwrap();
            let two = Pkcs11KeyManager::open(&hsm.settings(LABEL, PIN, Some("two-"))).unwrap();
            let a1 = one
                .generate_key("x509-CA-A", KeyType::EcP256)
                .await
                .unwrap();
            let a2 = two
                .generate_key("x509-CA-A", KeyType::EcP256)
                .await
                .unwrap();
            assert_ne!(a1.fingerprint, a2.fingerprint);
            two.generate_key("JWT-Signer-A", KeyType::EcP256)
                .await
                .unwrap();
            // Replacing one's key leaves two's alone.
            let b1 = one
                .generate_key("x509-CA-A", KeyType::EcP256)
                .await
                .unwrap();
            assert_eq!(one.get_public_keys().await.unwrap(), vec![b1.clone()]);
            let two_again =
                Pkcs11KeyManager::open(&hsm.settings(LABEL, PIN, Some("two-"))).unwrap();
            assert_eq!(
                two_again
                    .get_public_key("x509-CA-A")
                    .await
                    .unwrap()
                    .unwrap(),
                a2
            );
            assert_eq!(two_again.get_public_keys().await.unwrap().len(), 2);
            let one_again =
                Pkcs11KeyManager::open(&hsm.settings(LABEL, PIN, Some("one-"))).unwrap();
            assert_eq!(one_again.get_public_keys().await.unwrap(), vec![b1]);
            // The default prefix sees neither.
            assert!(open(hsm).get_public_keys().await.unwrap().is_empty());
        });
    });
}

#[test]
fn concurrent_signatures_share_the_session_pool() {
    isolated("concurrent_signatures_share_the_session_pool", |hsm| {
        let signer = block_on(async {
            let km = open(hsm);
            km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
            km.signer("x509-CA-A").await.unwrap()
        });
        // Twice as many signers as the pool has sessions (8): they wait their turn.
        std::thread::scope(|s| {
            for t in 0..16 {
                let signer = signer.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        let msg = format!("{t}-{i}");
                        let sig = signer.sign(msg.as_bytes(), SignatureKind::X509).unwrap();
                        assert!(signer.public_key().verify_x509(msg.as_bytes(), &sig));
                    }
                });
            }
        });
    });
}

#[test]
fn a_token_removed_at_run_time_fails_signing_clearly() {
    isolated("a_token_removed_at_run_time_fails_signing_clearly", |hsm| {
        block_on(async {
            let km = open(hsm);
            km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
            let signer = km.signer("x509-CA-A").await.unwrap();
            signer.sign(b"m", SignatureKind::X509).unwrap();
            // Another process deletes the token while we hold sessions on it.
            hsm.util(&["--delete-token", "--token", LABEL]);
            let e = signer.sign(b"m", SignatureKind::X509).unwrap_err();
            eprintln!("after removal: {e:?}");
            assert_eq!(e.code, Code::Unavailable, "{e:?}");
            assert_eq!(
                e.message,
                "PKCS#11 token \"spire-test\" is not available (the token is gone); was it removed?"
            );
            let e = km
                .generate_key("x509-CA-B", KeyType::EcP256)
                .await
                .unwrap_err();
            eprintln!("generate after removal: {e:?}");
            assert!(e.message.contains("token \"spire-test\""), "{e:?}");
        });
    });
}

#[test]
fn a_new_token_under_the_same_label_does_not_bring_back_the_key() {
    isolated(
        "a_new_token_under_the_same_label_does_not_bring_back_the_key",
        |hsm| {
            block_on(async {
                let km = open(hsm);
                km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
                let signer = km.signer("x509-CA-A").await.unwrap();
                hsm.util(&["--delete-token", "--token", LABEL]);
                hsm.init_token(LABEL, PIN);
                // (SoftHSM itself is confused in this process from now on: its calls fail with
                // CKR_GENERAL_ERROR; what matters is a clear error and no panic.)
                let e = signer.sign(b"m", SignatureKind::X509).unwrap_err();
                eprintln!("after re-creation: {e:?}");
                assert!(e.message.contains("token \"spire-test\""), "{e:?}");
                assert!(km.generate_key("x509-CA-B", KeyType::EcP256).await.is_err());
            });
        },
    );
}

#[test]
fn sessions_logged_out_behind_our_back_log_in_again() {
    isolated("sessions_logged_out_behind_our_back_log_in_again", |hsm| {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        block_on(async {
            let km = open(hsm);
            km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
            let signer = km.signer("x509-CA-A").await.unwrap();
            signer.sign(b"m", SignatureKind::X509).unwrap();
            // Another part of the process logs the application out of the token (login
            // state is shared by all of its sessions).
            let ctx = Pkcs11::new(MODULE).unwrap();
            let _already = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
            let slot = ctx
                .get_slots_with_initialized_token()
                .unwrap()
                .into_iter()
                .find(|s| ctx.get_token_info(*s).unwrap().label().trim() == LABEL)
                .unwrap();
            let session = ctx.open_ro_session(slot).unwrap();
            session.logout().unwrap();
            drop(session);
            for _ in 0..3 {
                let sig = signer.sign(b"m", SignatureKind::X509).unwrap();
                assert!(signer.public_key().verify_x509(b"m", &sig));
            }
        });
    });
}

#[test]
fn an_interrupted_replacement_keeps_the_old_key() {
    isolated("an_interrupted_replacement_keeps_the_old_key", |hsm| {
        block_on(async {
            let km = open(hsm);
            let old = km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
            // A newer generation under the same label whose replacement never finished
            // (made by another PKCS#11 client: generation 5 in the CKA_ID's first 8 bytes).
            let out = Command::new("pkcs11-tool")
                .args([
                    "--module",
                    MODULE,
                    "--token-label",
                    LABEL,
                    "--login",
                    "--pin",
                    PIN,
                    "--keypairgen",
                    "--key-type",
                    "EC:prime256v1",
                    "--label",
                    "spire-server-x509-CA-A",
                    "--id",
                    "00000000000000050102030405060708",
                ])
                .env("SOFTHSM2_CONF", hsm.conf())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(hsm.object_labels(LABEL, PIN).len(), 4);
            // A restart takes the oldest whole pair: the key the server knew.
            let km = open(hsm);
            assert_eq!(km.get_public_keys().await.unwrap(), vec![old.clone()]);
            let signer = km.signer("x509-CA-A").await.unwrap();
            let sig = signer.sign(b"m", SignatureKind::X509).unwrap();
            assert!(old.public_key.verify_x509(b"m", &sig));
            // The next generation removes both.
            let new = km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
            assert_ne!(new.fingerprint, old.fingerprint);
            assert_eq!(hsm.object_labels(LABEL, PIN).len(), 2);
            assert_eq!(open(hsm).get_public_keys().await.unwrap(), vec![new]);
        });
    });
}

#[test]
fn rsa_4096_keys_too() {
    isolated("rsa_4096_keys_too", |hsm| {
        block_on(async {
            let km = open(hsm);
            let k = km
                .generate_key("JWT-Signer-B", KeyType::Rsa4096)
                .await
                .unwrap();
            assert_eq!(k.key_type, KeyType::Rsa4096);
            let signer = km.signer("JWT-Signer-B").await.unwrap();
            check_signs(&signer, KeyType::Rsa4096).await;
            assert_eq!(
                open(hsm).get_public_key("JWT-Signer-B").await.unwrap(),
                Some(k)
            );
        });
    });
}
