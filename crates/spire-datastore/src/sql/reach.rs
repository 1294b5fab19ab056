//! Failing fast when a networked database is away.
//!
//! sqlx's pool retries a refused connection until its acquire timeout (30 s), so with the
//! database stopped every call would hang that long and calls would pile up. SPIRE's
//! `database/sql` instead answers "connection refused" at once. [`Reach`] restores that: a
//! connection that is not handed out quickly triggers one direct connection attempt (shared
//! by every waiting call); if that fails the database is marked away and the waiting calls
//! fail with its error. While away, each call first tries a direct connection (again shared,
//! and reused for a short while), so the first call after the database is back succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{ConnectOptions, Connection, Database};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::{DataStoreError, Result};

/// How long an acquire may wait before we check that the database is there at all.
const SLOW_ACQUIRE: Duration = Duration::from_millis(200);
/// The direct connection attempt's bound (a refused connection answers at once).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a probe's answer is reused by later calls.
const PROBE_REUSE: Duration = Duration::from_millis(250);

/// Whether the database answers; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    away: AtomicBool,
    last: Mutex<Option<(Instant, std::result::Result<(), String>)>>,
}

impl Reach {
    /// True while the last probe failed.
    pub(crate) fn is_away(&self) -> bool {
        self.away.load(Ordering::Acquire)
    }

    /// A connection from `pool`, or the database's error at once when it is away.
    pub(crate) async fn acquire<DB: Database>(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<PoolConnection<DB>> {
        if self.is_away() {
            self.probe(pool).await?;
        }
        let acquire = pool.acquire();
        tokio::pin!(acquire);
        tokio::select! {
            biased;
            r = &mut acquire => return r.map_err(Into::into),
            () = tokio::time::sleep(SLOW_ACQUIRE) => {}
        }
        // Slow: the pool is busy, or the database is away.
        tokio::select! {
            biased;
            r = &mut acquire => r.map_err(Into::into),
            p = self.probe(pool) => match p {
                Ok(()) => acquire.await.map_err(Into::into),
                Err(e) => Err(e),
            },
        }
    }

    /// One direct connection attempt, shared by concurrent callers and reused briefly.
    pub(crate) async fn probe<DB: Database>(&self, pool: &sqlx::Pool<DB>) -> Result<()> {
        let mut last = self.last.lock().await;
        if let Some((at, res)) = last.as_ref()
            && at.elapsed() < PROBE_REUSE
        {
            return res.clone().map_err(DataStoreError::sql);
        }
        let opts = pool.connect_options();
        let res = match tokio::time::timeout(PROBE_TIMEOUT, opts.connect()).await {
            Ok(Ok(conn)) => {
                // Closing says goodbye to the server; no caller waits for it.
                tokio::spawn(async move {
                    let _ = conn.close().await;
                });
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "timed out after {}s connecting to the database",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        let was_away = self.away.swap(res.is_err(), Ordering::AcqRel);
        match (&res, was_away) {
            (Err(e), false) => tracing::error!(error = %e, "Database is unreachable"),
            (Ok(()), true) => tracing::info!("Database is reachable again"),
            _ => {}
        }
        *last = Some((Instant::now(), res.clone()));
        res.map_err(DataStoreError::sql)
    }
}
