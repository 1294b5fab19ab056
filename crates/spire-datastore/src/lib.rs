//! SPIRE's DataStore for spire-rs: the [`DataStore`] trait, modelled on
//! SPIRE's datastore interface, and [`SqlStore`], its one implementation on
//! SQLite, PostgreSQL and MySQL/MariaDB with SPIRE 1.13's schema (version
//! 23), so that reference SPIRE and spire-rs can take turns on one database.
//!
//! ```no_run
//! # async fn f() -> Result<(), spire_datastore::DataStoreError> {
//! use spire_datastore::{DataStore, SqlConfig, SqlStore};
//! // From the `plugin_data` of `DataStore "sql"` (SPIRE's key names):
//! let cfg: SqlConfig = serde_json::from_str(
//!     r#"{"database_type": "sqlite3", "connection_string": "/var/lib/spire/datastore.sqlite3"}"#,
//! ).unwrap();
//! let store = SqlStore::open(&cfg).await?;
//! let n = store.count_bundles().await?;
//! # let _ = n; Ok(()) }
//! ```
//!
//! Module map:
//! - [`model`]: records, masks, filters, requests and answers;
//! - [`datastore`]: the [`DataStore`] trait;
//! - [`config`]: [`SqlConfig`] and connection strings;
//! - [`error`]: [`DataStoreError`] with SPIRE's messages;
//! - `sql`: [`SqlStore`] (schema, migrations checks, queries per table).

pub mod block;
pub mod config;
mod convert;
pub mod datastore;
pub mod error;
pub mod model;
mod sql;

pub use block::{EntryBlock, EntryColumns, EntryFields, EntryView};
pub use config::{DatabaseType, SqlConfig};
pub use datastore::{BatchEntryResult, DataStore};
pub use error::{DataStoreError, Result};
pub use model::*;
pub use sql::schema::{SCHEMA_VERSION, SPIRE_CODE_VERSION, schema_ddl};
pub use sql::{MigrationOutcome, SqlStore};

/// Encoding of the `bundles.data` column (`spire.common.Bundle`).
pub mod bundle_codec {
    pub use crate::sql::bundles_codec::{decode_bundle, encode_bundle};
}
