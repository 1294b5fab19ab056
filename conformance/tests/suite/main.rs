//! The conformance and interoperability suite: black-box scenarios that drive spire-server
//! and spire-agent only through their public surfaces (CLI, server socket, Workload API
//! socket, admin socket, log lines, files written). The implementation under test is chosen
//! at run time:
//!
//! - `SUBJECT=spire-rs` (default) or `SUBJECT=reference`;
//! - `SERVER_SUBJECT` / `AGENT_SUBJECT` override one side, to run mixed pairs.
//!
//! Every scenario is `#[ignore]`d, so a plain `cargo test` lists them without running
//! them; `conformance/run.sh` runs them with `--include-ignored` for each pairing.
//!
//! Scenarios whose point is a pairing (`interop`, `db_compat`) pit the subject against
//! reference SPIRE 1.13.3, which is the judge of behaviour. See `conformance/README.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "test code: a failed expectation is a failed scenario, and progress goes to stderr"
)]

mod support;

mod agent_cli;
mod aws_iid;
mod azure_msi;
mod clients;
mod config_parity;
mod credential_composer;
mod db_compat;
mod debug_endpoints;
mod delegated_identity;
mod docker_workload;
mod entries;
mod evict_ban;
mod external_plugins;
mod federation;
mod force_rotation;
mod gcp_iit;
mod ha;
mod http_challenge;
mod interop;
mod join_token;
mod k8s_bundle;
mod k8s_deploy;
mod k8s_psat;
mod k8s_workload;
mod limits;
mod nested;
mod oidc;
mod pkcs11;
mod restarts;
mod rotation;
mod sds;
mod sshpop;
mod sync_entries;
mod systemd_workload;
mod telemetry;
mod tpm_devid;
mod upstream_certmanager;
mod upstream_disk;
mod upstream_vault;
mod x509pop;
