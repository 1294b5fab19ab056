//! Test harness: every scenario runs against SQLite (always, in a temp dir)
//! and against PostgreSQL and MariaDB/MySQL when `SPIRE_RS_TEST_POSTGRES_URL`
//! / `SPIRE_RS_TEST_MYSQL_URL` are set (see `scripts/test-databases.sh`).
//! Each test gets a database of its own. With `SPIRE_RS_REQUIRE_DBS=1` a
//! missing server fails the test instead of being skipped.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};

use spiffe_core::{SpiffeId, TrustDomain};
use spire_datastore::{DatabaseType, SqlConfig, SqlStore};
use spire_plugin::Selector;
use sqlx::Connection;

pub const PG_ENV: &str = "SPIRE_RS_TEST_POSTGRES_URL";
pub const MYSQL_ENV: &str = "SPIRE_RS_TEST_MYSQL_URL";
pub const REQUIRE_ENV: &str = "SPIRE_RS_REQUIRE_DBS";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database of one backend.
pub struct TestDb {
    pub name: &'static str,
    pub config: SqlConfig,
    /// Server-level URL (PostgreSQL URL, MySQL `mysql://` URL) and database name, to drop it.
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn open(&self) -> SqlStore {
        SqlStore::open(&self.config)
            .await
            .unwrap_or_else(|e| panic!("[{}] open: {e}", self.name))
    }

    pub fn kind(&self) -> DatabaseType {
        self.config.database_type().unwrap()
    }

    /// Drops the database (best effort).
    pub async fn cleanup(self) {
        if let Some((url, name)) = &self.admin {
            if self.name == "postgres" {
                if let Ok(mut c) = sqlx::postgres::PgConnection::connect(url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            } else if let Ok(mut c) = sqlx::mysql::MySqlConnection::connect(url).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}"
                )))
                .execute(&mut c)
                .await;
            }
        }
    }
}

fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("spire_t_{}_{}_{}", std::process::id(), n, nanos % 100_000)
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// `spire:spire@tcp(127.0.0.1:3306)/spire?parseTime=true` -> (`mysql://spire:spire@127.0.0.1:3306`, rest).
pub fn mysql_dsn_parts(dsn: &str) -> (String, String) {
    let (head, tail) = dsn.rsplit_once('/').unwrap();
    let (userinfo, addr) = head.rsplit_once('@').unwrap();
    let addr = addr.trim_start_matches("tcp(").trim_end_matches(')');
    let params = tail
        .split_once('?')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    (format!("mysql://{userinfo}@{addr}"), params)
}

pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    // A nested path: the store must create the parent directory.
    let path = dir.path().join("data").join("datastore.sqlite3");
    TestDb {
        name: "sqlite3",
        config: SqlConfig::new(DatabaseType::Sqlite3, path.to_string_lossy().to_string()),
        admin: None,
        _dir: Some(dir),
    }
}

pub async fn postgres_db() -> Option<TestDb> {
    let url = match std::env::var(PG_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if required() {
                panic!("{PG_ENV} is not set and {REQUIRE_ENV}=1: PostgreSQL tests are required");
            }
            return None;
        }
    };
    let name = unique_name();
    let mut c = sqlx::postgres::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let mut u = url::Url::parse(&url).unwrap();
    u.set_path(&format!("/{name}"));
    Some(TestDb {
        name: "postgres",
        config: SqlConfig::new(DatabaseType::Postgres, u.to_string()),
        admin: Some((url, name)),
        _dir: None,
    })
}

pub async fn mysql_db() -> Option<TestDb> {
    let dsn = match std::env::var(MYSQL_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if required() {
                panic!(
                    "{MYSQL_ENV} is not set and {REQUIRE_ENV}=1: MySQL/MariaDB tests are required"
                );
            }
            return None;
        }
    };
    let (server_url, params) = mysql_dsn_parts(&dsn);
    let name = unique_name();
    let mut c = sqlx::mysql::MySqlConnection::connect(&server_url)
        .await
        .unwrap_or_else(|e| panic!("connect {server_url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let head = dsn.rsplit_once('/').unwrap().0;
    let params = if params.is_empty() {
        "parseTime=true".to_string()
    } else {
        params
    };
    Some(TestDb {
        name: "mysql",
        config: SqlConfig::new(DatabaseType::MySql, format!("{head}/{name}?{params}")),
        admin: Some((server_url, name)),
        _dir: None,
    })
}

/// One fresh database per available backend.
pub async fn databases() -> Vec<TestDb> {
    let mut out = vec![sqlite_db()];
    let mut skipped = Vec::new();
    match postgres_db().await {
        Some(d) => out.push(d),
        None => skipped.push("PostgreSQL"),
    }
    match mysql_db().await {
        Some(d) => out.push(d),
        None => skipped.push("MySQL/MariaDB"),
    }
    if !skipped.is_empty() {
        eprintln!(
            "note: ran SQLite only for {}: set {PG_ENV} / {MYSQL_ENV} (scripts/test-databases.sh) to test {}",
            std::thread::current().name().unwrap_or("this test"),
            skipped.join(" and ")
        );
    }
    out
}

/// Runs a scenario on every backend, with the backend's name for messages.
#[macro_export]
macro_rules! on_all_backends {
    (|$db:ident, $store:ident| $body:block) => {{
        for $db in common::databases().await {
            let $store = $db.open().await;
            {
                $body
            }
            $store.close().await;
            $db.cleanup().await;
        }
    }};
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

pub fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

pub fn sels(v: &[&str]) -> Vec<Selector> {
    v.iter().map(|s| sel(s)).collect()
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `COUNT(*)` of a table through the store's raw query helper.
pub async fn count_rows(store: &SqlStore, table: &str) -> i64 {
    let cast = match store.database_type() {
        DatabaseType::MySql => "CHAR",
        _ => "TEXT",
    };
    let rows = store
        .raw_query(&format!("SELECT CAST(COUNT(*) AS {cast}) FROM {table}"), 1)
        .await
        .unwrap();
    rows[0][0].as_deref().unwrap().parse().unwrap()
}
