//! `SqlStore`: the DataStore on SQLite, PostgreSQL or MySQL/MariaDB, with
//! SPIRE 1.13's schema and behaviour.

mod bulk;
mod bundles;
pub(crate) mod bundles_codec {
    pub use super::bundles::{decode_bundle, encode_bundle};
}
pub(crate) mod db;
mod entries;
mod filter;
mod misc;
mod nodes;
pub(crate) mod pghosts;
mod reach;
pub(crate) mod schema;
pub(crate) mod timefmt;
mod txn;

use std::sync::Arc;

use spire_clock::SharedClock;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Executor};
use time::OffsetDateTime;

use self::db::Tx;
use self::reach::Reach;
pub use self::schema::MigrationOutcome;
use self::txn::Txn;
use crate::config::{DatabaseType, SqlConfig, parse_mysql_dsn, parse_postgres, parse_sqlite};
use crate::error::{DataStoreError, Result};
use crate::model::DataConsistency;

/// Largest number of values in one `IN (...)` list.
pub(crate) const IN_CHUNK: usize = 1000;

#[derive(Debug, Clone)]
enum Pool {
    /// The pool, and whether its connections must never be closed (in memory).
    Sqlite(SqlitePool, bool),
    Postgres(PgPool, Arc<Reach>),
    MySql(MySqlPool, Arc<Reach>),
}

impl Pool {
    async fn close(&self) {
        match self {
            Pool::Sqlite(p, _) => p.close().await,
            Pool::Postgres(p, _) => p.close().await,
            Pool::MySql(p, _) => p.close().await,
        }
    }

    async fn begin_write(&self) -> Result<Tx> {
        Ok(match self {
            // One writer connection: BEGIN IMMEDIATE takes SQLite's write lock
            // at once, so a transaction never fails upgrading a read lock.
            Pool::Sqlite(p, keep) => {
                Tx::Sqlite(Txn::begin(p.acquire().await?, "BEGIN IMMEDIATE", *keep).await?)
            }
            Pool::Postgres(p, r) => {
                Tx::Postgres(Txn::begin(r.acquire(p).await?, "BEGIN", false).await?)
            }
            Pool::MySql(p, r) => Tx::MySql(Txn::begin(r.acquire(p).await?, "BEGIN", false).await?),
        })
    }

    async fn begin_read(&self) -> Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p, keep) => {
                Tx::Sqlite(Txn::begin(p.acquire().await?, "BEGIN", *keep).await?)
            }
            // A snapshot for the page query and its child queries.
            Pool::Postgres(p, r) => Tx::Postgres(
                Txn::begin(
                    r.acquire(p).await?,
                    "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
                    false,
                )
                .await?,
            ),
            Pool::MySql(p, r) => Tx::MySql(
                Txn::begin(
                    r.acquire(p).await?,
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT",
                    false,
                )
                .await?,
            ),
        })
    }
}

#[derive(Debug)]
struct Inner {
    database_type: DatabaseType,
    /// Writes and current reads. For SQLite: a single connection.
    primary: Pool,
    /// SQLite: the reader connections. Others: the read replica, if configured.
    secondary: Option<Pool>,
    migration: MigrationOutcome,
    /// Stamps rows (created_at, updated_at, event times) and measures event ages.
    clock: SharedClock,
    /// A SQLite file: read in bulk by a reader of our own (see `bulk`).
    bulk: Option<bulk::BulkSource>,
}

/// SPIRE's `sql` DataStore. Cheap to clone (shared pools).
#[derive(Debug, Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

impl SqlStore {
    /// Connects, then creates the schema on an empty database or checks an
    /// existing one with SPIRE's rules (see [`MigrationOutcome`]).
    pub async fn open(config: &SqlConfig) -> Result<SqlStore> {
        Self::open_with_clock(config, spire_clock::system()).await
    }

    /// [`SqlStore::open`] with the clock that stamps rows and ages events.
    pub async fn open_with_clock(config: &SqlConfig, clock: SharedClock) -> Result<SqlStore> {
        let database_type = config.validate()?;
        let lifetime = config.conn_max_lifetime()?;
        let mut bulk = None;
        let (primary, secondary) = match database_type {
            DatabaseType::Sqlite3 => {
                let target = parse_sqlite(&config.connection_string)?;
                if let Some(parent) = target.path.as_ref().and_then(|p| p.parent())
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        DataStoreError::Internal(format!(
                            "datastore-sql: unable to create directory {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                if !config.ro_connection_string.is_empty() {
                    tracing::warn!(
                        "Read-only connection is not applicable for sqlite3. Falling back to primary connection"
                    );
                }
                let mut opts = target.options.clone();
                if !config.log_sql {
                    opts = opts.disable_statement_logging();
                }
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(u32::from(target.in_memory))
                    .idle_timeout(if target.in_memory {
                        None
                    } else {
                        Some(config.idle_timeout())
                    })
                    .max_lifetime(if target.in_memory { None } else { lifetime })
                    .connect_with(opts.clone())
                    .await?;
                let readers = if target.in_memory {
                    None
                } else {
                    Some(Pool::Sqlite(
                        SqlitePoolOptions::new()
                            .max_connections(config.sqlite_readers())
                            .idle_timeout(Some(config.idle_timeout()))
                            .max_lifetime(lifetime)
                            .connect_lazy_with(opts.create_if_missing(false)),
                        false,
                    ))
                };
                if let (Some(path), false) = (&target.path, target.in_memory) {
                    bulk = Some(bulk::BulkSource {
                        path: path.clone(),
                        busy: target.busy,
                        read_only: target.read_only,
                    });
                }
                (Pool::Sqlite(writer, target.in_memory), readers)
            }
            DatabaseType::Postgres => {
                let mk = |conn: &str| -> Result<(PgPool, Arc<Reach>)> {
                    let mut target = parse_postgres(conn)?;
                    if !config.log_sql {
                        for h in &mut target.hosts {
                            *h = h.clone().disable_statement_logging();
                        }
                    }
                    let attrs = target.attrs;
                    let first = target.hosts[0].clone();
                    let pool = PgPoolOptions::new()
                        .max_connections(config.max_connections())
                        .idle_timeout(Some(config.idle_timeout()))
                        .max_lifetime(lifetime)
                        .after_connect(move |conn, _| {
                            Box::pin(async move {
                                // A host may have changed roles since it was chosen.
                                attrs.check(conn).await.map_err(|e| {
                                    sqlx::Error::Protocol(format!(
                                        "target_session_attrs={}: {e}",
                                        attrs.as_str()
                                    ))
                                })
                            })
                        })
                        .connect_lazy_with(first);
                    Ok((pool, Arc::new(Reach::with_hosts(&target))))
                };
                let (primary, reach) = mk(&config.connection_string)?;
                // Choose the host (with several) and connect now, so configuration errors
                // surface at open.
                if reach.chooses() {
                    reach.probe(&primary).await?;
                }
                primary.acquire().await?;
                let ro = if config.ro_connection_string.is_empty() {
                    None
                } else {
                    let (pool, reach) = mk(&config.ro_connection_string)?;
                    Some(Pool::Postgres(pool, reach))
                };
                (Pool::Postgres(primary, reach), ro)
            }
            DatabaseType::MySql => {
                let mk = |conn: &str| -> Result<MySqlPool> {
                    let mut opts = parse_mysql_dsn(conn, config)?;
                    if !config.log_sql {
                        opts = opts.disable_statement_logging();
                    }
                    Ok(MySqlPoolOptions::new()
                        .max_connections(config.max_connections())
                        .idle_timeout(Some(config.idle_timeout()))
                        .max_lifetime(lifetime)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                // DATETIME values are UTC, as go-sql-driver writes them.
                                conn.execute("SET time_zone = '+00:00'").await?;
                                Ok(())
                            })
                        })
                        .connect_lazy_with(opts))
                };
                let primary = mk(&config.connection_string)?;
                primary.acquire().await?;
                let ro = if config.ro_connection_string.is_empty() {
                    None
                } else {
                    Some(Pool::MySql(
                        mk(&config.ro_connection_string)?,
                        Arc::default(),
                    ))
                };
                (Pool::MySql(primary, Arc::default()), ro)
            }
        };

        let mut tx = primary.begin_write().await?;
        let migration =
            match schema::migrate(&mut tx, config.disable_migration, to_db_time(clock.now())).await
            {
                Ok(m) => m,
                Err(e) => {
                    drop(tx);
                    primary.close().await;
                    return Err(e);
                }
            };
        tx.commit().await?;
        tracing::info!(
            r#type = database_type.as_str(),
            read_only = false,
            outcome = ?migration,
            "Connected to SQL database"
        );
        Ok(SqlStore {
            inner: Arc::new(Inner {
                database_type,
                primary,
                secondary,
                migration,
                clock,
                bulk,
            }),
        })
    }

    /// The current time, from the store's clock, as the database columns hold it.
    pub(crate) fn now(&self) -> OffsetDateTime {
        to_db_time(self.inner.clock.now())
    }

    /// Whether the database answers now: a direct connection attempt on networked
    /// databases (failing at once when refused, and after 5 s without an answer), a trivial
    /// read on SQLite.
    pub async fn check_health(&self) -> Result<()> {
        match &self.inner.primary {
            Pool::Postgres(p, r) => r.check(p).await,
            Pool::MySql(p, r) => r.check(p).await,
            Pool::Sqlite(..) => {
                let mut tx = self.begin_read(DataConsistency::TolerateStale).await?;
                let mut q = tx.sql();
                q.push("SELECT 1");
                tx.fetch_opt(&q, &[db::Col::Int]).await?;
                tx.rollback().await
            }
        }
    }

    /// What [`SqlStore::open`] did to the schema.
    pub fn migration_outcome(&self) -> &MigrationOutcome {
        &self.inner.migration
    }

    /// The backend.
    pub fn database_type(&self) -> DatabaseType {
        self.inner.database_type
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.inner.primary.close().await;
        if let Some(s) = &self.inner.secondary {
            s.close().await;
        }
    }

    /// `version` and `code_version` of the `migrations` row.
    pub async fn migration_info(&self) -> Result<(i64, String)> {
        let mut tx = self.begin_read(DataConsistency::RequireCurrent).await?;
        let mut q = tx.sql();
        q.push("SELECT version, code_version FROM migrations ORDER BY id LIMIT 1");
        let row = tx
            .fetch_opt(&q, &[db::Col::Int, db::Col::Text])
            .await?
            .ok_or_else(DataStoreError::record_not_found)?;
        let _ = tx.rollback().await;
        Ok((row.int(0)?, row.text(1)?))
    }

    /// Runs a statement on the primary, outside the datastore's logic. For
    /// tests and repair tools only.
    #[doc(hidden)]
    pub async fn raw_execute(&self, sql: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut q = tx.sql();
        q.push(sql);
        let n = tx.execute(&q).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Runs a query on the primary and returns every column as text (cast
    /// non-text columns in the SQL). For tests and repair tools only.
    #[doc(hidden)]
    pub async fn raw_query(&self, sql: &str, columns: usize) -> Result<Vec<Vec<Option<String>>>> {
        let mut tx = self.inner.primary.begin_read().await?;
        let mut q = tx.sql();
        q.push(sql);
        let cols = vec![db::Col::Text; columns];
        let rows = tx.fetch(&q, &cols).await?;
        let _ = tx.rollback().await;
        rows.iter()
            .map(|r| {
                (0..columns)
                    .map(|i| r.opt_text(i))
                    .collect::<Result<Vec<_>>>()
            })
            .collect()
    }

    /// A write transaction on the primary.
    pub(crate) async fn begin_write(&self) -> Result<Tx> {
        self.inner.primary.begin_write().await
    }

    /// A read transaction: SQLite readers, the replica for stale reads, or
    /// the primary.
    pub(crate) async fn begin_read(&self, consistency: DataConsistency) -> Result<Tx> {
        match (&self.inner.secondary, self.inner.database_type, consistency) {
            (Some(s), DatabaseType::Sqlite3, _) | (Some(s), _, DataConsistency::TolerateStale) => {
                s.begin_read().await
            }
            _ => self.inner.primary.begin_read().await,
        }
    }
}

/// Parses a pagination token (a row ID) as SPIRE does.
pub(crate) fn parse_token(token: &str) -> Result<i64> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse::<u32>()
        .map(i64::from)
        .map_err(|_| DataStoreError::InvalidArgument(format!("could not parse token '{token}'")))
}

pub(crate) fn check_page_size(p: Option<&crate::model::Pagination>) -> Result<()> {
    if p.is_some_and(|p| p.page_size == 0) {
        return Err(DataStoreError::InvalidArgument(
            "cannot paginate with pagesize = 0".into(),
        ));
    }
    Ok(())
}

/// A wall-clock time as the database columns hold it.
pub(crate) fn to_db_time(t: std::time::SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}
mod store_impl;
