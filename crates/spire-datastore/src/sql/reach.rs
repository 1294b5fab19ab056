//! Failing fast when a networked database is away.
//!
//! sqlx's pool retries a refused connection until its acquire timeout (30 s), so with the
//! database stopped every call would hang that long and calls would pile up. SPIRE's
//! `database/sql` instead answers "connection refused" at once. [`Reach`] restores that: a
//! connection that is not handed out quickly triggers one direct connection attempt (shared
//! by every waiting call); if that fails the database is marked away and the waiting calls
//! fail with its error. While away, each call first tries a direct connection (again shared,
//! and reused for a short while), so the first call after the database is back succeeds.
//!
//! With several PostgreSQL hosts or `target_session_attrs` (see `pghosts.rs`), the probe is
//! libpq's host choice: the first host that answers and qualifies becomes the pool's host.
//! That is how a primary failover is followed: the old primary refuses, the promoted
//! standby now qualifies, and the next connections go there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::mysql::MySql;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;
use sqlx::{ConnectOptions, Connection, Database};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::pghosts::{self, PgHosts};
use crate::error::{DataStoreError, Result};

/// How long an acquire may wait before we check that the database is there at all.
const SLOW_ACQUIRE: Duration = Duration::from_millis(200);
/// The direct connection attempt's bound (a refused connection answers at once).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a probe's answer is reused by later calls.
const PROBE_REUSE: Duration = Duration::from_millis(250);
/// How long the health check waits for a connection before it reports the database away
/// (a database that drops packets never refuses, so slowness must end somewhere).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the database answers; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    away: AtomicBool,
    last: Mutex<Option<(Instant, std::result::Result<(), String>)>>,
    /// PostgreSQL hosts to choose among, when there is a choice to make.
    hosts: Option<PgHosts>,
}

/// Why a direct connection attempt did not succeed.
#[derive(Debug, Clone)]
pub(crate) enum Unreached {
    /// The database answered with an error (refused, authentication, not qualifying).
    Refused(String),
    /// No answer within [`PROBE_TIMEOUT`]: slow or away, which cannot be told apart, so
    /// callers keep waiting on the pool (bounded by its acquire timeout) rather than fail
    /// during a latency spike.
    Slow,
}

/// One direct connection attempt on a database kind.
pub(crate) trait Probe: Database {
    fn reach<'a>(
        pool: &'a sqlx::Pool<Self>,
        hosts: Option<&'a PgHosts>,
        timeout: Duration,
    ) -> BoxFuture<'a, std::result::Result<(), Unreached>>;
}

/// Connects once to the pool's host and says goodbye.
async fn connect_once<DB: Database>(
    pool: &sqlx::Pool<DB>,
    timeout: Duration,
) -> std::result::Result<(), Unreached> {
    let opts = pool.connect_options();
    match tokio::time::timeout(timeout, opts.connect()).await {
        Ok(Ok(conn)) => {
            // Closing says goodbye to the server; no caller waits for it.
            tokio::spawn(async move {
                let _ = conn.close().await;
            });
            Ok(())
        }
        Ok(Err(e)) => Err(Unreached::Refused(e.to_string())),
        Err(_) => Err(Unreached::Slow),
    }
}

impl Probe for MySql {
    fn reach<'a>(
        pool: &'a sqlx::Pool<Self>,
        _hosts: Option<&'a PgHosts>,
        timeout: Duration,
    ) -> BoxFuture<'a, std::result::Result<(), Unreached>> {
        Box::pin(connect_once(pool, timeout))
    }
}

impl Probe for Postgres {
    fn reach<'a>(
        pool: &'a sqlx::Pool<Self>,
        hosts: Option<&'a PgHosts>,
        timeout: Duration,
    ) -> BoxFuture<'a, std::result::Result<(), Unreached>> {
        Box::pin(async move {
            let Some(hosts) = hosts else {
                return connect_once(pool, timeout).await;
            };
            let i = match hosts.choose(timeout).await {
                Ok(Some(i)) => i,
                Ok(None) => return Err(Unreached::Slow),
                Err(e) => return Err(Unreached::Refused(e)),
            };
            let chosen = &hosts.hosts[i];
            if !pghosts::same_server(&pool.connect_options(), chosen) {
                tracing::info!(
                    host = %pghosts::describe(chosen),
                    target_session_attrs = hosts.attrs.as_str(),
                    "Switching database connections to another host"
                );
                pool.set_connect_options(chosen.clone());
            }
            Ok(())
        })
    }
}

impl Reach {
    /// A probe that chooses among `hosts` (when there is a choice to make).
    pub(crate) fn with_hosts(hosts: &PgHosts) -> Reach {
        Reach {
            hosts: hosts.needs_choice().then(|| hosts.clone()),
            ..Reach::default()
        }
    }

    /// Whether this probe chooses among PostgreSQL hosts.
    pub(crate) fn chooses(&self) -> bool {
        self.hosts.is_some()
    }

    /// True while the last probe failed.
    pub(crate) fn is_away(&self) -> bool {
        self.away.load(Ordering::Acquire)
    }

    /// A connection from `pool`, or the database's error at once when it is away.
    pub(crate) async fn acquire<DB: Probe>(
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
    pub(crate) async fn probe<DB: Probe>(&self, pool: &sqlx::Pool<DB>) -> Result<()> {
        let mut last = self.last.lock().await;
        if let Some((at, res)) = last.as_ref()
            && at.elapsed() < PROBE_REUSE
        {
            return res.clone().map_err(DataStoreError::sql);
        }
        let res = match DB::reach(pool, self.hosts.as_ref(), PROBE_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(Unreached::Refused(e)) => Err(e),
            Err(Unreached::Slow) => {
                tracing::debug!("Database is slow to answer; waiting on the pool");
                Ok(())
            }
        };
        self.record(&res);
        *last = Some((Instant::now(), res.clone()));
        res.map_err(DataStoreError::sql)
    }

    /// The health check's probe: like [`Reach::probe`], but a database that does not
    /// answer within [`HEALTH_TIMEOUT`] is reported away.
    pub(crate) async fn check<DB: Probe>(&self, pool: &sqlx::Pool<DB>) -> Result<()> {
        let res = match DB::reach(pool, self.hosts.as_ref(), HEALTH_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(Unreached::Refused(e)) => Err(e),
            Err(Unreached::Slow) => Err(format!(
                "no answer from the database within {}s",
                HEALTH_TIMEOUT.as_secs()
            )),
        };
        self.record(&res);
        res.map_err(DataStoreError::sql)
    }

    /// Marks the database away or back, logging the change.
    fn record(&self, res: &std::result::Result<(), String>) {
        let was_away = self.away.swap(res.is_err(), Ordering::AcqRel);
        match (res, was_away) {
            (Err(e), false) => tracing::error!(error = %e, "Database is unreachable"),
            (Ok(()), true) => tracing::info!("Database is reachable again"),
            _ => {}
        }
    }
}
