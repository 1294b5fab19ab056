//! Every `spire-server` client command, one test per area, run by the reference CLI and by ours
//! against one reference spire-server 1.13.3: standard output, standard
//! error and exit codes must match (pretty output byte for byte, JSON as
//! values), after normalizing only what differs from run to run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
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

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn healthcheck_and_logger() {
    harness::run("healthcheck and logger", health::healthcheck_and_logger);
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn bundles() {
    harness::run("bundles", bundles::bundles);
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn entries() {
    harness::run("entries", entries::entries);
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn agents() {
    harness::run("agents", agents::agents);
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn federation() {
    harness::run("federation", federation::federation);
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn join_tokens() {
    harness::run("join tokens", tokens::join_tokens);
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn minting() {
    harness::run("minting", minting::minting);
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn authorities() {
    harness::run("authorities", authorities::authorities);
}
