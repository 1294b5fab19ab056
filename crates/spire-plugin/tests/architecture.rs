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

/// The crate layers of ARCHITECTURE.md ("Crate layers"): a crate depends only on crates of
/// lower layers. A crate missing here fails the test, so a new crate gets a place.
const LAYERS: &[(&str, u8)] = &[
    ("spire-clock", 0),
    ("spire-gocompat", 0),
    ("spiffe-core", 1),
    ("spire-proto", 1),
    ("spire-goflag", 1),
    ("spire-uds", 1),
    ("spire-testsupport", 1),
    ("spire-plugin", 2),
    ("spire-config", 2),
    ("spire-log", 2),
    ("spire-pki", 3),
    ("spire-tls", 3),
    ("spire-cli", 3),
    ("spire-datastore", 3),
    ("spire-plugin-wire", 3),
    ("spire-containerinfo", 3),
    ("spire-telemetry", 3),
    ("spire-plugin-host", 4),
    ("spire-plugin-sdk", 4),
    ("spire-http", 4),
    ("spire-acme", 5),
    ("spire-plugins", 5),
    ("spire-plugins-k8s", 5),
    ("spire-plugins-docker", 5),
    ("spire-plugins-systemd", 5),
    ("spire-plugins-tpm", 5),
    ("spire-plugins-gcp-azure", 5),
    ("spire-plugins-pkcs11", 5),
    ("spire-plugins-aws", 5),
    ("spire-server", 6),
    ("spire-agent", 6),
    ("spire-oidc-discovery-provider", 6),
];

fn layer(name: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("crate {name} has no layer in LAYERS (and ARCHITECTURE.md)"))
}

/// Workspace crates in `[dependencies]` (not dev or build) of a manifest.
fn normal_deps(manifest: &Path) -> Vec<String> {
    sectioned_lines(manifest)
        .into_iter()
        .filter(|(section, _)| section == "[dependencies]")
        .filter_map(|(_, line)| {
            let name = line.split('=').next()?.trim().to_owned();
            (name.starts_with("spire-") || name == "spiffe-core").then_some(name)
        })
        .collect()
}

#[test]
fn crates_depend_only_on_lower_layers_and_architecture_md_maps_each() {
    let ws = workspace();
    let arch = std::fs::read_to_string(ws.join("ARCHITECTURE.md")).unwrap();
    for e in std::fs::read_dir(ws.join("crates")).unwrap() {
        let dir = e.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let own = layer(&name);
        for dep in normal_deps(&dir.join("Cargo.toml")) {
            assert!(
                layer(&dep) < own,
                "{name} (layer {own}) depends on {dep} (layer {}): against the documented direction",
                layer(&dep)
            );
        }
        assert!(
            arch.contains(&format!("### `crates/{name}`")),
            "ARCHITECTURE.md's code map has no section for crates/{name}"
        );
    }
}

/// Source files under `dir`, with their text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect()
}

#[test]
fn the_pure_cores_read_no_clock_sleep_or_do_io() {
    let ws = workspace();
    let forbidden = [
        "SystemTime::now",
        "Instant::now",
        "Utc::now",
        "OffsetDateTime::now",
        "sleep(",
        "std::fs",
        "tokio::fs",
        "std::net",
        "tokio::net",
        "std::process",
        "std::env::var",
        "tokio::time",
    ];
    let mut offenders = Vec::new();
    let mut scanned = 0;
    for dir in [
        "crates/spiffe-core/src",
        "crates/spire-agent/src/core",
        "crates/spire-gocompat/src",
    ] {
        for (file, text) in sources(&ws.join(dir)) {
            scanned += 1;
            // Test modules may set up what they like.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            for f in forbidden {
                if code.contains(f) {
                    offenders.push(format!("{}: {f}", file.display()));
                }
            }
        }
    }
    assert!(scanned > 10, "the scan found the pure cores' sources");
    assert!(
        offenders.is_empty(),
        "clock, sleep or I/O in a pure core: {offenders:?}"
    );
}

#[test]
fn every_library_file_says_what_it_is() {
    let ws = workspace();
    let mut missing = Vec::new();
    for e in std::fs::read_dir(ws.join("crates")).unwrap() {
        let src = e.unwrap().path().join("src");
        for (file, text) in sources(&src) {
            if !text.trim_start().starts_with("//!") {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:?}"
    );
}
