//! Configuration parity: every example `server.conf` / `agent.conf` shipped in reference
//! SPIRE 1.13.3's module source (`conf/server/*.conf`, `conf/agent/*.conf`) is judged by
//! reference `validate`; the subject's `validate` must agree when the file uses only
//! plugins the subject has, and must otherwise name the missing plugin as not available.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Impl, Scenario, agent_subject, run, server_subject};

/// Built-in plugins of spire-rs, by binary: `(type, name)`.
const SPIRE_RS_SERVER_PLUGINS: &[(&str, &str)] = &[
    ("DataStore", "sql"),
    ("KeyManager", "disk"),
    ("KeyManager", "memory"),
    ("NodeAttestor", "http_challenge"),
    ("NodeAttestor", "join_token"),
    ("NodeAttestor", "k8s_psat"),
    ("NodeAttestor", "sshpop"),
    ("KeyManager", "pkcs11"),
    ("NodeAttestor", "aws_iid"),
    ("NodeAttestor", "azure_msi"),
    ("NodeAttestor", "gcp_iit"),
    ("NodeAttestor", "tpm_devid"),
    ("NodeAttestor", "x509pop"),
    ("UpstreamAuthority", "cert-manager"),
    ("UpstreamAuthority", "disk"),
    ("UpstreamAuthority", "spire"),
    ("UpstreamAuthority", "vault"),
    ("Notifier", "k8sbundle"),
    ("BundlePublisher", "k8s_configmap"),
    ("CredentialComposer", "uniqueid"),
];
const SPIRE_RS_AGENT_PLUGINS: &[(&str, &str)] = &[
    ("KeyManager", "disk"),
    ("KeyManager", "memory"),
    ("KeyManager", "pkcs11"),
    ("NodeAttestor", "aws_iid"),
    ("NodeAttestor", "azure_msi"),
    ("NodeAttestor", "gcp_iit"),
    ("NodeAttestor", "http_challenge"),
    ("NodeAttestor", "join_token"),
    ("NodeAttestor", "k8s_psat"),
    ("NodeAttestor", "sshpop"),
    ("NodeAttestor", "tpm_devid"),
    ("NodeAttestor", "x509pop"),
    ("WorkloadAttestor", "docker"),
    ("WorkloadAttestor", "k8s"),
    ("WorkloadAttestor", "systemd"),
    ("WorkloadAttestor", "unix"),
];
const PLUGIN_TYPES: &[&str] = &[
    "DataStore",
    "KeyManager",
    "NodeAttestor",
    "WorkloadAttestor",
    "UpstreamAuthority",
    "Notifier",
    "BundlePublisher",
    "CredentialComposer",
    "SVIDStore",
];

/// `<GOMODCACHE>/github.com/spiffe/spire@v1.13.3/conf`.
fn reference_conf_dir() -> PathBuf {
    let cache = std::env::var("GOMODCACHE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            Command::new("go")
                .args(["env", "GOMODCACHE"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .expect("GOMODCACHE is not set and `go env GOMODCACHE` failed");
    let dir = Path::new(&cache).join("github.com/spiffe/spire@v1.13.3/conf");
    assert!(
        dir.is_dir(),
        "{} not found: run conformance/build-reference.sh (it downloads SPIRE's module)",
        dir.display()
    );
    dir
}

/// The enabled plugin blocks of a configuration file (comment lines skipped).
fn plugins(text: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with('#') || l.starts_with("//") {
            continue;
        }
        let mut words = l.split_whitespace();
        if let (Some(t), Some(name)) = (words.next(), words.next())
            && PLUGIN_TYPES.contains(&t)
            && name.starts_with('"')
        {
            out.push((t.to_string(), name.trim_matches('"').to_string()));
        }
    }
    out
}

fn check(kind: &str, subject: Impl, ours: &[(&str, &str)]) {
    let sc = Scenario::new(&format!("config_parity::{kind}_examples"));
    let bin_name = format!("spire-{kind}");
    let reference = Impl::Reference.bin(&bin_name);
    let subject_bin = subject.bin(&bin_name);
    let dir = reference_conf_dir().join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no example configs in {}", dir.display());
    let mut failures = vec![];
    for f in &files {
        let file = f.display().to_string();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let want = run(&reference, &["validate", "-config", &file], Some(sc.path()));
        let got = run(
            &subject_bin,
            &["validate", "-config", &file],
            Some(sc.path()),
        );
        let text = std::fs::read_to_string(f).unwrap();
        let missing: Vec<(String, String)> = if subject == Impl::Reference {
            vec![]
        } else {
            plugins(&text)
                .into_iter()
                .filter(|(t, n)| !ours.iter().any(|(ot, on)| ot == t && on == n))
                .collect()
        };
        eprintln!(
            "{kind}/{name}: reference {} | {} {} | plugins missing in subject: {missing:?}",
            if want.ok() { "valid" } else { "invalid" },
            subject.name(),
            if got.ok() { "valid" } else { "invalid" },
        );
        if !want.ok() {
            // Invalid for SPIRE (e.g. Windows-only settings): invalid for the subject too.
            if got.ok() {
                failures.push(format!(
                    "{name}: reference rejects it ({want}) but the subject accepts it"
                ));
            }
        } else if missing.is_empty() {
            if !got.ok() {
                failures.push(format!(
                    "{name}: valid for reference, rejected by the subject: {got}"
                ));
            }
        } else {
            let msg = got.all();
            let named = missing
                .iter()
                .any(|(_, n)| msg.contains(&format!("\"{n}\"")));
            if got.ok()
                || !named
                || !(msg.contains("not available") || msg.contains("not supported"))
            {
                failures.push(format!(
                    "{name}: uses plugins the subject lacks ({missing:?}); expected a \"not available\" message naming one, got: {got}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "config parity failures: {}",
        failures.join(" | ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn server_examples() {
    check("server", server_subject(), SPIRE_RS_SERVER_PLUGINS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn agent_examples() {
    check("agent", agent_subject(), SPIRE_RS_AGENT_PLUGINS);
}
