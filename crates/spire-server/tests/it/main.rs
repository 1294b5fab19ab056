//! Integration tests: the real `spire-server` binary on temp dirs and loopback, driven
//! through its UNIX socket with gRPC clients (and the CLI where the CLI is the subject).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test support code: a failure is a failed test"
)]

mod support;

mod authz;
mod backends;
mod events;
mod failover;
mod lifecycle;
mod limits;
mod mint;
mod outage;
mod rotation;
mod validation;
