//! Checks the architecture invariants stated in ARCHITECTURE.md that a compiler cannot:
//! which crates may depend on which, and where rustls configurations are built.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Names of the workspace crates a manifest depends on (any section).
fn local_deps(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    text.lines()
        .filter_map(|l| {
            let name = l.split('=').next()?.trim();
            (name.starts_with("spire-") || name.starts_with("spiffe-core")).then(|| name.to_owned())
        })
        .filter(|n| !n.contains(' '))
        .collect()
}

#[test]
fn plugin_crates_depend_only_on_what_they_may() {
    let ws = workspace();
    let plugin = local_deps(&ws.join("crates/spire-plugin/Cargo.toml"));
    assert_eq!(
        plugin,
        vec!["spiffe-core"],
        "spire-plugin depends on spiffe-core only"
    );
    for dep in local_deps(&ws.join("crates/spire-plugins/Cargo.toml")) {
        assert!(
            ![
                "spire-server",
                "spire-agent",
                "spire-datastore",
                "spire-cli"
            ]
            .contains(&dep.as_str()),
            "plugins never depend on the server or agent crates: spire-plugins uses {dep}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_spire_tls_builds_rustls_configs() {
    let ws = workspace();
    let mut files = Vec::new();
    for dir in ["crates", "bench", "conformance"] {
        if ws.join(dir).is_dir() {
            rust_files(&ws.join(dir), &mut files);
        }
    }
    let tls = ws.join("crates/spire-tls");
    let this = Path::new(file!()).file_name().unwrap();
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with(&tls) && f.file_name() != Some(this))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains("ClientConfig::builder") || text.contains("ServerConfig::builder")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "rustls configs built outside spire-tls: {offenders:?}"
    );
    assert!(files.len() > 50, "the scan found the workspace's sources");
}

/// The `[section]` each line of a manifest is in, with the line.
fn sectioned_lines(manifest: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
        } else {
            out.push((section.clone(), t.to_owned()));
        }
    }
    out
}

#[test]
fn test_support_is_only_ever_a_dev_dependency() {
    let ws = workspace();
    let mut manifests = vec![
        ws.join("bench/Cargo.toml"),
        ws.join("conformance/Cargo.toml"),
    ];
    for e in std::fs::read_dir(ws.join("crates")).unwrap() {
        let m = e.unwrap().path().join("Cargo.toml");
        if m.is_file() {
            manifests.push(m);
        }
    }
    let mut users = 0;
    for m in &manifests {
        for (section, line) in sectioned_lines(m) {
            if line.starts_with("spire-testsupport") {
                assert_eq!(
                    section,
                    "[dev-dependencies]",
                    "{}: spire-testsupport outside [dev-dependencies]",
                    m.display()
                );
                users += 1;
            }
        }
    }
    assert!(users > 0, "the scan found the test-support users");
    assert!(
        local_deps(&ws.join("crates/spire-testsupport/Cargo.toml")).is_empty(),
        "spire-testsupport depends on no workspace crate"
    );
}
