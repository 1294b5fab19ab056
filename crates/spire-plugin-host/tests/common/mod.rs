//! Helpers shared by the host's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use spire_plugin_host::{CoreConfig, LaunchSpec};

pub(crate) const NEEDS_PLUGINS: &str = "needs the Go test plugins: run through scripts/test.sh, which builds them and sets SPIRE_RS_GOPLUGINS_DIR";

/// Where `conformance/goplugins/build.sh` put the Go test plugins.
pub(crate) fn plugins_dir() -> PathBuf {
    match std::env::var_os("SPIRE_RS_GOPLUGINS_DIR") {
        Some(d) => PathBuf::from(d),
        None => panic!("{NEEDS_PLUGINS}"),
    }
}

/// What to launch for the plugin `cmd`.
pub(crate) fn spec(
    name: &str,
    plugin_type: &str,
    cmd: &Path,
    checksum: Option<&str>,
) -> LaunchSpec {
    LaunchSpec::new(
        name,
        plugin_type,
        &cmd.display().to_string(),
        &[],
        checksum,
        Path::new("/"),
    )
    .unwrap()
}

/// The core configuration of trust domain `example.org`.
pub(crate) fn core() -> CoreConfig {
    CoreConfig {
        trust_domain: "example.org".into(),
    }
}
