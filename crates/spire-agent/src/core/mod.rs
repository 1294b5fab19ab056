//! The sans-IO core of the agent: every decision the agent takes about rotation, entry
//! synchronisation, caching and retry timing, as plain data structures that take `now` (and,
//! where SPIRE draws random jitter, the random draw) as arguments and return what to do.
//!
//! Architecture invariant: nothing under `core` performs I/O, reads the clock, draws random
//! numbers or spawns tasks. The async shell (`manager`, `client`, `workload`) does all of that
//! and feeds the results back in. Tests drive these types with a fake clock.

pub mod backoff;
pub mod bootstrap;
pub mod cache;
pub mod entry;
pub mod health;
pub mod jwt_cache;
pub mod rotation;
pub mod sync;
pub mod taint;
pub mod workload_cache;
