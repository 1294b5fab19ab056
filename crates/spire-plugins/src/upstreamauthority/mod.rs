//! Built-in UpstreamAuthority plugins: where the server's X.509 CA gets signed when it is
//! not its own root.

pub mod disk;
pub mod vault;
