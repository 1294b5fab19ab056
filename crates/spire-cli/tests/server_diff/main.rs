//! Every `spire-server` client command, one test per area, run by the reference CLI and by ours
//! against one reference spire-server 1.13.3: standard output, standard
//! error and exit codes must match (pretty output byte for byte, JSON as
//! values), after normalizing only what differs from run to run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
#[macro_use]
mod common;
mod harness;

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
    healthcheck_and_logger => health::healthcheck_and_logger,
    bundles => bundles::bundles,
    entries => entries::entries,
    agents => agents::agents,
    federation => federation::federation,
    join_tokens => tokens::join_tokens,
    minting => minting::minting,
    authorities => authorities::authorities,
}
