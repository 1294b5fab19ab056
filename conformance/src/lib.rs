//! The spire-rs conformance suite lives in `tests/suite` (run it with `conformance/run.sh`);
//! this library is intentionally empty. See `conformance/README.md`.
