//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// The SPIRE v1.13.3 sources in the Go module cache. CI guarantees they exist; when they
/// do not, the test fails with the command that fetches them (it is never skipped).
pub(crate) fn spire_module_dir() -> PathBuf {
    let cache = std::env::var_os("GOMODCACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new("go")
                .args(["env", "GOMODCACHE"])
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (!text.is_empty()).then(|| PathBuf::from(text))
        })
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join("go/pkg/mod")
        });
    let dir = cache.join("github.com/spiffe/spire@v1.13.3");
    assert!(
        dir.is_dir(),
        "SPIRE v1.13.3 sources not found at {}: run `go mod download github.com/spiffe/spire@v1.13.3`",
        dir.display()
    );
    dir
}

/// The `.conf` files of one directory of the SPIRE sources, sorted.
pub(crate) fn conf_files(sub: &str) -> Vec<PathBuf> {
    let dir = spire_module_dir().join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

pub(crate) fn file_name(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// A minimal valid server configuration with `extra` inside `server { }`.
pub(crate) fn server_conf(extra: &str) -> String {
    format!(
        "server {{\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/data\"\n{extra}\n}}\nplugins {{}}\n"
    )
}

/// A minimal valid agent configuration with `extra` inside `agent { }`.
pub(crate) fn agent_conf(extra: &str) -> String {
    format!(
        "agent {{\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n{extra}\n}}\nplugins {{}}\n"
    )
}
