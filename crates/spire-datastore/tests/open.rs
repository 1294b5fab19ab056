//! Opening databases: SPIRE's migration/compatibility rules, the migrations
//! row, SQLite connection strings and the read replica.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use common::{id, sels};
use spire_datastore::*;

#[tokio::test]
async fn migration_rules_follow_spire() {
    for db in common::databases().await {
        let n = db.name;
        let store = db.open().await;
        assert_eq!(
            store.migration_outcome(),
            &MigrationOutcome::Initialized,
            "[{n}]"
        );
        assert_eq!(
            store.migration_info().await.unwrap(),
            (23, "1.13.3".to_string())
        );
        assert_eq!(common::count_rows(&store, "migrations").await, 1);
        store.close().await;
        let store = db.open().await;
        assert_eq!(
            store.migration_outcome(),
            &MigrationOutcome::UpToDate,
            "[{n}]"
        );

        let set = |version: i64, code: &str| {
            format!("UPDATE migrations SET version = {version}, code_version = '{code}'")
        };
        let cases: Vec<(i64, &str, bool, Result<MigrationOutcome, &str>)> = vec![
            (
                23,
                "1.12.0",
                false,
                Ok(MigrationOutcome::CodeVersionUpdated {
                    previous: "1.12.0".into(),
                }),
            ),
            (23, "1.14.2", false, Ok(MigrationOutcome::UpToDate)),
            (
                24,
                "1.14.0",
                false,
                Ok(MigrationOutcome::NewerCompatible { schema_version: 24 }),
            ),
            (
                24,
                "1.15.0",
                false,
                Err("datastore-sql: incompatible DB schema and code version"),
            ),
            (
                22,
                "1.12.4",
                false,
                Err(
                    "datastore-sql: migrating from schema version 22 requires a previous SPIRE release; please follow the upgrade strategy at doc/upgrading.md",
                ),
            ),
            (
                22,
                "1.12.4",
                true,
                Ok(MigrationOutcome::MigrationDisabled { schema_version: 22 }),
            ),
            (
                22,
                "1.11.0",
                true,
                Err("datastore-sql: auto-migration must be enabled for current DB"),
            ),
            (
                24,
                "1.14.0",
                true,
                Ok(MigrationOutcome::MigrationDisabled { schema_version: 24 }),
            ),
            (
                22,
                "not-a-version",
                false,
                Err(
                    "datastore-sql: error getting DB code version: unable to parse code version from DB: No Major.Minor.Patch elements found",
                ),
            ),
        ];
        for (version, code, disable, want) in cases {
            store.raw_execute(&set(version, code)).await.unwrap();
            let mut cfg = db.config.clone();
            cfg.disable_migration = disable;
            let got = SqlStore::open(&cfg).await;
            match (&got, &want) {
                (Ok(s), Ok(w)) => {
                    assert_eq!(s.migration_outcome(), w, "[{n}] {version} {code} {disable}")
                }
                (Err(e), Err(w)) => {
                    assert_eq!(e.to_string(), *w, "[{n}] {version} {code} {disable}")
                }
                _ => panic!("[{n}] {version} {code} {disable}: got {got:?}, want {want:?}"),
            }
            if let Ok(s) = got {
                s.close().await;
            }
        }
        // A refused database was not modified.
        let rows = store
            .raw_query("SELECT code_version FROM migrations", 1)
            .await
            .unwrap();
        assert_eq!(rows[0][0].as_deref(), Some("not-a-version"), "[{n}]");
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn sqlite_connection_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("dir").join("ds.sqlite3");
    let uri = format!("file:{}?_busy_timeout=2000", path.display());
    let store = SqlStore::open(&SqlConfig::new(DatabaseType::Sqlite3, uri.clone()))
        .await
        .unwrap();
    store
        .create_registration_entry(RegistrationEntry::new(
            id("spiffe://example.org/a"),
            id("spiffe://example.org/p"),
            sels(&["a:b"]),
        ))
        .await
        .unwrap();
    let mode = store.raw_query("PRAGMA journal_mode", 1).await.unwrap();
    assert_eq!(mode[0][0].as_deref(), Some("wal"));
    store.close().await;
    assert!(path.exists(), "parent directories created");
    // The same file as a plain path.
    let store = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        path.to_string_lossy().to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        store
            .count_registration_entries(CountEntriesRequest::default())
            .await
            .unwrap(),
        1
    );
    store.close().await;

    // In memory: one shared connection keeps the database alive.
    let mem = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        "file::memory:?cache=shared",
    ))
    .await
    .unwrap();
    assert_eq!(mem.migration_outcome(), &MigrationOutcome::Initialized);
    mem.create_join_token(JoinToken {
        token: "t".into(),
        expiry: 10,
    })
    .await
    .unwrap();
    assert!(mem.fetch_join_token("t").await.unwrap().is_some());
    mem.close().await;

    let bad = SqlStore::open(&SqlConfig::new(DatabaseType::Sqlite3, "http://x/y"))
        .await
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "datastore-sql: unsupported scheme \"http\""
    );
}

#[tokio::test]
async fn read_replica_serves_stale_reads() {
    for db in common::databases().await {
        let n = db.name;
        if n == "sqlite3" {
            db.cleanup().await;
            continue;
        }
        let store = db.open().await;
        store
            .create_registration_entry(RegistrationEntry::new(
                id("spiffe://example.org/a"),
                id("spiffe://example.org/p"),
                sels(&["a:b"]),
            ))
            .await
            .unwrap();
        store.close().await;
        // The replica is the same database here.
        let mut cfg = db.config.clone();
        cfg.ro_connection_string = cfg.connection_string.clone();
        let store = SqlStore::open(&cfg).await.unwrap();
        let stale = ListEntriesRequest {
            data_consistency: DataConsistency::TolerateStale,
            ..Default::default()
        };
        assert_eq!(
            store
                .list_registration_entries(stale.clone())
                .await
                .unwrap()
                .entries
                .len(),
            1,
            "[{n}]"
        );
        store.close().await;
        // An unreachable replica: stale reads fail, current reads still work.
        let mut cfg = db.config.clone();
        // A database that does not exist on the same server: connecting fails at once.
        cfg.ro_connection_string = if n == "postgres" {
            let mut u = url::Url::parse(&cfg.connection_string).unwrap();
            u.set_path("/no_such_database_here");
            u.to_string()
        } else {
            let (head, tail) = cfg.connection_string.rsplit_once('/').unwrap();
            let params = tail.split_once('?').unwrap().1;
            format!("{head}/no_such_database_here?{params}")
        };
        cfg.max_open_conns = Some(2);
        let store = SqlStore::open(&cfg).await.unwrap();
        assert_eq!(
            store
                .list_registration_entries(ListEntriesRequest::default())
                .await
                .unwrap()
                .entries
                .len(),
            1
        );
        assert!(
            store.list_registration_entries(stale).await.is_err(),
            "[{n}] replica used"
        );
        store.close().await;
        db.cleanup().await;
    }
}
