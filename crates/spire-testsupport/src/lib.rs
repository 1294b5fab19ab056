//! For tests only (a dev-dependency, never a dependency of a library or binary): where the
//! counterparts that the repo's own scripts provide are, and how a test that cannot run
//! says so.
//!
//! Every counterpart is found through the scripts, never at a fixed path left on some
//! machine: reference SPIRE through `$SPIRE_REF_BIN_DIR` (exported by `scripts/test.sh`),
//! else by running `conformance/build-reference.sh`, which builds it once per machine into
//! `~/.cache/spire-rs` and prints the directory.

pub mod ca;
pub mod toxiproxy;
pub mod vault;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    // This crate lives in `<root>/crates/spire-testsupport`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The directory holding reference SPIRE 1.13.3's `spire-server` and `spire-agent`:
/// `$SPIRE_REF_BIN_DIR`, else what `conformance/build-reference.sh` prints (building it
/// the first time on a machine). The answer is computed once per test process.
pub fn reference_bin_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(find_reference).clone()
}

fn holds_reference(dir: &Path) -> bool {
    dir.join("spire-server").is_file() && dir.join("spire-agent").is_file()
}

fn find_reference() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("SPIRE_REF_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(d);
        return if holds_reference(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "SPIRE_REF_BIN_DIR={} does not hold spire-server and spire-agent",
                dir.display()
            ))
        };
    }
    let script = workspace_root().join("conformance/build-reference.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); set SPIRE_REF_BIN_DIR to a directory with reference spire-server and spire-agent 1.13.3",
            script.display(),
            out.status
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if holds_reference(&dir) {
        Ok(dir)
    } else {
        Err(format!(
            "{} printed {}, which does not hold spire-server and spire-agent",
            script.display(),
            dir.display()
        ))
    }
}

/// Reference SPIRE's directory, or a panic naming why it is missing: for tests that
/// cannot mean anything without it.
#[allow(clippy::panic)]
pub fn require_reference_bin_dir() -> PathBuf {
    match reference_bin_dir() {
        Ok(d) => d,
        Err(e) => panic!("reference SPIRE 1.13.3 is required: {e}"),
    }
}

/// A process's peak resident set size (`VmHWM`), in KiB, if it can be read.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// True when the environment variable `name` is `1`.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_of_this_process_is_read() {
        assert!(peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn workspace_root_holds_the_scripts() {
        assert!(
            workspace_root()
                .join("conformance/build-reference.sh")
                .is_file()
        );
    }
}
