//! Transactions driven with plain `BEGIN`/`COMMIT`/`ROLLBACK` statements on a pooled
//! connection, and the rule that keeps the pool clean: a connection goes back to the pool
//! only when it is known to be outside any transaction. When a `COMMIT` or `ROLLBACK` fails
//! in a way that leaves the state unknown (a broken connection, an I/O error), or a
//! transaction is dropped unfinished without a runtime to roll it back on, the connection is
//! closed instead of reused.
//!
//! sqlx's own `Transaction` counts nesting depth beside the database; after SQLite answers
//! `SQLITE_FULL` on `COMMIT` it rolls the transaction back by itself, sqlx's `ROLLBACK` then
//! fails ("no transaction is active"), the count stays at one, and every later `begin` on
//! that connection failed until it was recycled. Statements we issue ourselves cannot get
//! out of step that way.

use futures::future::BoxFuture;
use sqlx::Database;
use sqlx::pool::PoolConnection;

use crate::error::Result;

/// An open transaction on one pooled connection. Derefs to the connection for queries.
#[derive(Debug)]
pub(crate) struct Txn<DB: Database>
where
    DB::Connection: RawExec,
{
    conn: Option<PoolConnection<DB>>,
    /// The connection must never be closed (SQLite in memory: the database lives in it).
    keep: bool,
}

/// What `ROLLBACK` may answer on a connection that is, in fact, outside a transaction:
/// SQLite after it rolled back by itself ("cannot rollback - no transaction is active"),
/// PostgreSQL only warns, MySQL accepts it.
fn no_transaction(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.message().contains("no transaction is active"),
        _ => false,
    }
}

/// A plain statement on a concrete connection type, outside sqlx's transaction counting.
pub(crate) trait RawExec: Send {
    fn raw(&mut self, sql: &'static str) -> BoxFuture<'_, std::result::Result<(), sqlx::Error>>;
}

macro_rules! raw_exec {
    ($($conn:ty),*) => {$(
        impl RawExec for $conn {
            fn raw(
                &mut self,
                sql: &'static str,
            ) -> BoxFuture<'_, std::result::Result<(), sqlx::Error>> {
                Box::pin(async move { sqlx::raw_sql(sql).execute(&mut *self).await.map(|_| ()) })
            }
        }
    )*};
}

raw_exec!(
    sqlx::SqliteConnection,
    sqlx::PgConnection,
    sqlx::MySqlConnection
);

impl<DB> Txn<DB>
where
    DB: Database,
    DB::Connection: RawExec,
{
    /// Runs `begin` (e.g. `BEGIN IMMEDIATE`) on `conn`, taken from a pool.
    pub(crate) async fn begin(
        conn: PoolConnection<DB>,
        begin: &'static str,
        keep: bool,
    ) -> Result<Self> {
        let mut t = Txn {
            conn: Some(conn),
            keep,
        };
        if let Err(e) = t.run(begin).await {
            // BEGIN failed: the connection is in autocommit mode unless it is broken.
            if matches!(e, sqlx::Error::Database(_)) {
                t.rollback_or_close().await;
            } else {
                t.discard();
            }
            return Err(e.into());
        }
        Ok(t)
    }

    async fn run(&mut self, sql: &'static str) -> std::result::Result<(), sqlx::Error> {
        match self.conn.as_mut() {
            Some(c) => {
                let c: &mut DB::Connection = c;
                c.raw(sql).await
            }
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Commits; on failure rolls back (or closes the connection) before returning the error.
    pub(crate) async fn commit(mut self) -> Result<()> {
        match self.run("COMMIT").await {
            Ok(()) => {
                self.release();
                Ok(())
            }
            Err(e) => {
                self.rollback_or_close().await;
                Err(e.into())
            }
        }
    }

    /// Rolls back.
    pub(crate) async fn rollback(mut self) -> Result<()> {
        match self.run("ROLLBACK").await {
            Ok(()) => {
                self.release();
                Ok(())
            }
            Err(e) if no_transaction(&e) => {
                self.release();
                Ok(())
            }
            Err(e) => {
                self.discard();
                Err(e.into())
            }
        }
    }

    /// After an error: a `ROLLBACK` that succeeds (or finds no transaction) proves the
    /// connection clean; anything else closes it.
    async fn rollback_or_close(&mut self) {
        match self.run("ROLLBACK").await {
            Ok(()) => self.release(),
            Err(e) if no_transaction(&e) => self.release(),
            Err(_) => self.discard(),
        }
    }

    /// Returns the connection to the pool.
    fn release(&mut self) {
        self.conn = None;
    }

    /// Closes the connection rather than returning it to the pool (unless it must be kept,
    /// in which case sqlx's release-time ping is all that is left).
    fn discard(&mut self) {
        if let Some(mut c) = self.conn.take()
            && !self.keep
        {
            c.close_on_drop();
        }
    }
}

impl<DB> Drop for Txn<DB>
where
    DB: Database,
    DB::Connection: RawExec,
{
    fn drop(&mut self) {
        // Unfinished: an early return or a cancelled call. Roll back on the runtime so the
        // connection reaches the pool clean; without one, close it.
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let keep = self.keep;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let c: &mut DB::Connection = &mut conn;
                    let clean = match c.raw("ROLLBACK").await {
                        Ok(()) => true,
                        Err(e) => no_transaction(&e),
                    };
                    if !clean && !keep {
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => {
                if !keep {
                    conn.close_on_drop();
                }
            }
        }
    }
}

impl<DB: Database> std::ops::Deref for Txn<DB>
where
    DB::Connection: RawExec,
{
    type Target = DB::Connection;
    fn deref(&self) -> &Self::Target {
        // Only `commit`, `rollback` and `Drop` take the connection, and they consume or
        // end the transaction; a live `Txn` always holds one.
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

impl<DB: Database> std::ops::DerefMut for Txn<DB>
where
    DB::Connection: RawExec,
{
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

#[cold]
#[allow(clippy::panic)]
fn unreachable_conn() -> ! {
    panic!("transaction used after it ended")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    async fn one_connection() -> sqlx::SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_commit_that_finds_the_transaction_gone_leaves_the_connection_usable() {
        // SQLite ends a transaction by itself on some errors (SQLITE_FULL during COMMIT);
        // the ROLLBACK here plays that part.
        let pool = one_connection().await;
        let mut t = Txn::begin(pool.acquire().await.unwrap(), "BEGIN IMMEDIATE", true)
            .await
            .unwrap();
        sqlx::raw_sql("ROLLBACK").execute(&mut *t).await.unwrap();
        assert!(t.commit().await.is_err());
        // The pool's only connection begins and commits again.
        let t = Txn::begin(pool.acquire().await.unwrap(), "BEGIN IMMEDIATE", true)
            .await
            .unwrap();
        t.commit().await.unwrap();
    }

    #[tokio::test]
    async fn an_unfinished_transaction_is_rolled_back_before_the_connection_is_reused() {
        let pool = one_connection().await;
        sqlx::raw_sql("CREATE TABLE t (v INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let mut t = Txn::begin(pool.acquire().await.unwrap(), "BEGIN IMMEDIATE", true)
            .await
            .unwrap();
        sqlx::raw_sql("INSERT INTO t VALUES (1)")
            .execute(&mut *t)
            .await
            .unwrap();
        drop(t); // an early return or a cancelled call
        let mut t = Txn::begin(pool.acquire().await.unwrap(), "BEGIN IMMEDIATE", true)
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *t)
            .await
            .unwrap();
        assert_eq!(n, 0, "the dropped transaction's insert was rolled back");
        t.commit().await.unwrap();
    }
}
