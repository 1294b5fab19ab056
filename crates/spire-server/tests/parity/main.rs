//! Admin-API parity, one test per area of the API: reference spire-server 1.13.3 and ours, started with the same
//! configuration (SQLite, memory KeyManager, join_token and x509pop), each driven by the
//! same command lines of the *reference* CLI, with reference agents attested to each. Standard output, standard error and exit codes must match
//! after normalizing what legitimately differs between two servers: their CA keys and
//! certificates (PEM bodies, authority IDs, key IDs), times, random UUIDs and agent SVID
//! serial numbers.
//!
//! Each side has its own server, so every command simply runs once against each; the state
//! stays the same on both sides as long as the servers behave the same. Values that differ
//! per side but must correspond (authority IDs, the socket path) are kept as per-side
//! variables: `{name}` in an argument expands to the side's value, and the side's value in
//! its output is replaced by `<name>`.
//!
//! Known, accepted differences are listed in `KNOWN` with their reason; they are reported
//! but do not fail the test. `SPIRE_PARITY_TRACE=1` prints every case's output on both
//! sides; `SPIRE_PARITY_KEEP=1` keeps the servers' directories (configuration, logs,
//! databases).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code: a failure is a failed test"
)]

#[path = "../../../spire-cli/tests/common/mod.rs"]
#[macro_use]
mod cli_common;
mod harness;
mod support;

mod agents;
mod authorities;
mod bundles;
mod entries;
mod federation;
mod health;
mod minting;
mod tokens;

area_tests! {
    harness::run;
    health_and_logger => health::health_and_logger,
    bundles => bundles::bundles,
    entries => entries::entries,
    agents => agents::agents,
    federation => federation::with_files,
    tokens => tokens::tokens,
    minting => minting::minting,
    local_authorities => authorities::local_authorities,
}
