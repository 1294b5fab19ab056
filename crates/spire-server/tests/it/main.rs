//! Integration tests: the real `spire-server` binary on temp dirs and loopback, driven
//! through its UNIX socket with gRPC clients (and the CLI where the CLI is the subject).

mod support;

mod backends;
mod lifecycle;
mod mint;
mod rotation;
mod validation;
