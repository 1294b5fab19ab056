//! SPIRE 1.13's schema (version 23) for each backend, and the checks SPIRE's
//! `migration.go` runs when it opens a database.
//!
//! The DDL reproduces what gorm v1 issues for SPIRE's models, statement for
//! statement and in the same order, so the catalogs (`sqlite_master`,
//! `pg_dump -s`, `SHOW CREATE TABLE`) of a database created by us and one
//! created by SPIRE are identical.

use std::cmp::Ordering;

use time::OffsetDateTime;

use super::db::{Backend, Col, Tx};
use crate::error::{DataStoreError, Result};

/// The schema version this crate reads and writes (`latestSchemaVersion`).
pub const SCHEMA_VERSION: i64 = 23;
/// Oldest schema version whose migration is supported (`lastMinorReleaseSchemaVersion`).
pub(crate) const LAST_MINOR_RELEASE_SCHEMA_VERSION: i64 = 23;
/// The SPIRE version we record in `migrations.code_version`, and whose
/// compatibility rules we apply.
pub const SPIRE_CODE_VERSION: &str = "1.13.3";

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Auto-increment primary key.
    Id,
    /// gorm `time.Time` / `*time.Time`.
    Time,
    /// Go `string` (varchar(255) / text).
    Str,
    /// Go `string` with `not null`.
    StrNotNull,
    /// Go `int32`.
    Int32,
    /// Go `int` (only `migrations.version`).
    GoInt,
    /// Go `int64`.
    Int64,
    /// Go `uint` (foreign keys).
    Uint,
    /// Go `bool`.
    Bool,
    /// Go `[]byte` with `size:16777215`.
    Blob,
}

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// `(unique, name, columns as gorm wrote them for SQLite)`.
    indexes: &'static [(bool, &'static str, &'static str)],
}

const MODEL: [(&str, Kind); 3] = [
    ("id", Kind::Id),
    ("created_at", Kind::Time),
    ("updated_at", Kind::Time),
];

macro_rules! cols {
    ($($name:literal : $kind:ident),* $(,)?) => {
        &[MODEL[0], MODEL[1], MODEL[2], $(($name, Kind::$kind)),*]
    };
}

/// Tables in gorm's creation order (after the join table).
const TABLES: &[Table] = &[
    Table {
        name: "bundles",
        columns: cols!["trust_domain": StrNotNull, "data": Blob],
        indexes: &[(true, "uix_bundles_trust_domain", "trust_domain")],
    },
    Table {
        name: "attested_node_entries",
        columns: cols![
            "spiffe_id": Str, "data_type": Str, "serial_number": Str, "expires_at": Time,
            "new_serial_number": Str, "new_expires_at": Time, "can_reattest": Bool,
        ],
        indexes: &[
            (false, "idx_attested_node_entries_expires_at", "expires_at"),
            (true, "uix_attested_node_entries_spiffe_id", "spiffe_id"),
        ],
    },
    Table {
        name: "attested_node_entries_events",
        columns: cols!["spiffe_id": Str],
        indexes: &[],
    },
    Table {
        name: "node_resolver_map_entries",
        columns: cols!["spiffe_id": Str, "type": Str, "value": Str],
        indexes: &[(
            true,
            "idx_node_resolver_map",
            "spiffe_id, \"type\", \"value\"",
        )],
    },
    Table {
        name: "registered_entries",
        columns: cols![
            "entry_id": Str, "spiffe_id": Str, "parent_id": Str, "ttl": Int32, "admin": Bool,
            "downstream": Bool, "expiry": Int64, "revision_number": Int64, "store_svid": Bool,
            "hint": Str, "jwt_svid_ttl": Int32,
        ],
        indexes: &[
            (false, "idx_registered_entries_spiffe_id", "spiffe_id"),
            (false, "idx_registered_entries_parent_id", "parent_id"),
            (false, "idx_registered_entries_expiry", "\"expiry\""),
            (false, "idx_registered_entries_hint", "\"hint\""),
            (true, "uix_registered_entries_entry_id", "entry_id"),
        ],
    },
    Table {
        name: "registered_entries_events",
        columns: cols!["entry_id": Str],
        indexes: &[],
    },
    Table {
        name: "join_tokens",
        columns: cols!["token": Str, "expiry": Int64],
        indexes: &[(true, "uix_join_tokens_token", "\"token\"")],
    },
    Table {
        name: "selectors",
        columns: cols!["registered_entry_id": Uint, "type": Str, "value": Str],
        indexes: &[
            (false, "idx_selectors_type_value", "\"type\", \"value\""),
            (
                true,
                "idx_selector_entry",
                "registered_entry_id, \"type\", \"value\"",
            ),
        ],
    },
    Table {
        name: "migrations",
        columns: cols!["version": GoInt, "code_version": Str],
        indexes: &[],
    },
    Table {
        name: "dns_names",
        columns: cols!["registered_entry_id": Uint, "value": Str],
        indexes: &[(true, "idx_dns_entry", "registered_entry_id, \"value\"")],
    },
    Table {
        name: "federated_trust_domains",
        columns: cols![
            "trust_domain": StrNotNull, "bundle_endpoint_url": Str, "bundle_endpoint_profile": Str,
            "endpoint_spiffe_id": Str, "implicit": Bool,
        ],
        indexes: &[(
            true,
            "uix_federated_trust_domains_trust_domain",
            "trust_domain",
        )],
    },
    Table {
        name: "ca_journals",
        columns: cols!["data": Blob, "active_x509_authority_id": Str, "active_jwt_authority_id": Str],
        indexes: &[
            (
                false,
                "idx_ca_journals_active_x509_authority_id",
                "active_x509_authority_id",
            ),
            (
                false,
                "idx_ca_journals_active_jwt_authority_id",
                "active_jwt_authority_id",
            ),
        ],
    },
];

fn quote(b: Backend, ident: &str) -> String {
    match b {
        Backend::MySql => format!("`{ident}`"),
        Backend::Sqlite | Backend::Postgres => format!("\"{ident}\""),
    }
}

fn column_type(b: Backend, k: Kind) -> &'static str {
    match (b, k) {
        (Backend::Sqlite, Kind::Id) => "integer primary key autoincrement",
        (Backend::Postgres, Kind::Id) => "serial",
        (Backend::MySql, Kind::Id) => "int unsigned AUTO_INCREMENT",
        (Backend::Sqlite, Kind::Time) => "datetime",
        (Backend::Postgres, Kind::Time) => "timestamp with time zone",
        (Backend::MySql, Kind::Time) => "DATETIME NULL",
        (Backend::Sqlite | Backend::MySql, Kind::Str) => "varchar(255)",
        (Backend::Postgres, Kind::Str) => "text",
        (Backend::Sqlite | Backend::MySql, Kind::StrNotNull) => "varchar(255) NOT NULL",
        (Backend::Postgres, Kind::StrNotNull) => "text NOT NULL",
        (Backend::Sqlite | Backend::Postgres, Kind::Int32 | Kind::GoInt | Kind::Uint) => "integer",
        (Backend::MySql, Kind::Int32 | Kind::GoInt) => "int",
        (Backend::MySql, Kind::Uint) => "int unsigned",
        (_, Kind::Int64) => "bigint",
        (Backend::Sqlite, Kind::Bool) => "bool",
        (Backend::Postgres | Backend::MySql, Kind::Bool) => "boolean",
        (Backend::Sqlite, Kind::Blob) => "blob",
        (Backend::Postgres, Kind::Blob) => "bytea",
        (Backend::MySql, Kind::Blob) => "longblob",
    }
}

fn table_options(b: Backend) -> &'static str {
    match b {
        Backend::MySql => " ENGINE=InnoDB  ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8",
        Backend::Sqlite | Backend::Postgres => "",
    }
}

fn create_table(b: Backend, t: &Table) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|(n, k)| format!("{} {}", quote(b, n), column_type(b, *k)))
        .collect();
    let pk = match b {
        Backend::Sqlite => String::new(),
        Backend::Postgres | Backend::MySql => format!(", PRIMARY KEY ({})", quote(b, "id")),
    };
    format!(
        "CREATE TABLE {} ({} {}){}",
        quote(b, t.name),
        cols.join(","),
        pk,
        table_options(b)
    )
}

fn create_index(b: Backend, table: &str, unique: bool, name: &str, sqlite_cols: &str) -> String {
    let cols = match b {
        Backend::MySql => sqlite_cols.replace('"', "`"),
        Backend::Sqlite | Backend::Postgres => sqlite_cols.to_string(),
    };
    // gorm ends the statement with a space, which SQLite keeps in
    // `sqlite_master.sql`; the `;` stops the driver from trimming it.
    let end = match b {
        Backend::Sqlite => " ;",
        Backend::Postgres | Backend::MySql => " ",
    };
    format!(
        "CREATE {}INDEX {name} ON {}({cols}){end}",
        if unique { "UNIQUE " } else { "" },
        quote(b, table)
    )
}

fn join_table(b: Backend) -> String {
    let ty = match b {
        Backend::MySql => "int unsigned",
        Backend::Sqlite | Backend::Postgres => "integer",
    };
    format!(
        "CREATE TABLE {} ({} {ty},{} {ty}, PRIMARY KEY ({},{})){}",
        quote(b, "federated_registration_entries"),
        quote(b, "bundle_id"),
        quote(b, "registered_entry_id"),
        quote(b, "bundle_id"),
        quote(b, "registered_entry_id"),
        table_options(b)
    )
}

/// Every DDL statement of a new database, in gorm's order, with the place
/// where the `migrations` row is inserted marked by `None`.
fn init_statements(b: Backend) -> Vec<Option<String>> {
    let mut out = vec![Some(join_table(b))];
    for t in TABLES {
        out.push(Some(create_table(b, t)));
        for (unique, name, cols) in t.indexes {
            out.push(Some(create_index(b, t.name, *unique, name, cols)));
        }
    }
    out.push(None);
    out.push(Some(create_index(
        b,
        "federated_registration_entries",
        false,
        "idx_federated_registration_entries_registered_entry_id",
        "registered_entry_id",
    )));
    out
}

/// The DDL of a new database for a backend (for documentation and tests).
pub fn schema_ddl(b: crate::DatabaseType) -> Vec<String> {
    let backend = match b {
        crate::DatabaseType::Sqlite3 => Backend::Sqlite,
        crate::DatabaseType::Postgres => Backend::Postgres,
        crate::DatabaseType::MySql => Backend::MySql,
    };
    init_statements(backend).into_iter().flatten().collect()
}

/// A semantic version as blang/semver parses it (strict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SemVer {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) patch: u64,
    pre: Vec<PreId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PreId {
    Num(u64),
    Alpha(String),
}

impl SemVer {
    pub(crate) const ZERO: SemVer = SemVer {
        major: 0,
        minor: 0,
        patch: 0,
        pre: Vec::new(),
    };

    pub(crate) fn parse(s: &str) -> std::result::Result<SemVer, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("Version string empty".into());
        }
        let (main, build) = match s.split_once('+') {
            Some((m, b)) => (m, Some(b)),
            None => (s, None),
        };
        if let Some(b) = build
            && b.split('.')
                .any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        {
            return Err(format!(
                "Invalid character(s) found in build meta data {b:?}"
            ));
        }
        let (core, pre) = match main.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (main, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 {
            return Err("No Major.Minor.Patch elements found".into());
        }
        let num = |p: &str, what: &str| -> std::result::Result<u64, String> {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("Invalid character(s) found in {what} number {p:?}"));
            }
            if p.len() > 1 && p.starts_with('0') {
                return Err(format!(
                    "{what} number must not contain leading zeroes {p:?}"
                ));
            }
            p.parse().map_err(|e| format!("{e}"))
        };
        let mut v = SemVer {
            major: num(parts[0], "major")?,
            minor: num(parts[1], "minor")?,
            patch: num(parts[2], "patch")?,
            pre: Vec::new(),
        };
        if let Some(pre) = pre {
            for id in pre.split('.') {
                if id.is_empty() {
                    return Err("Prerelease is empty".into());
                }
                if id.bytes().all(|c| c.is_ascii_digit()) {
                    if id.len() > 1 && id.starts_with('0') {
                        return Err(format!(
                            "Numeric PreRelease version must not contain leading zeroes {id:?}"
                        ));
                    }
                    v.pre
                        .push(PreId::Num(id.parse().map_err(|e| format!("{e}"))?));
                } else if id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
                    v.pre.push(PreId::Alpha(id.to_string()));
                } else {
                    return Err(format!("Invalid character(s) found in prerelease {id:?}"));
                }
            }
        }
        Ok(v)
    }
}

impl Ord for SemVer {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&o.pre) {
                        let c = match (a, b) {
                            (PreId::Num(x), PreId::Num(y)) => x.cmp(y),
                            (PreId::Num(_), PreId::Alpha(_)) => Ordering::Less,
                            (PreId::Alpha(_), PreId::Num(_)) => Ordering::Greater,
                            (PreId::Alpha(x), PreId::Alpha(y)) => x.cmp(y),
                        };
                        if c != Ordering::Equal {
                            return c;
                        }
                    }
                    self.pre.len().cmp(&o.pre.len())
                }
            })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// SPIRE's `isCompatibleCodeVersion`: same major, minor within one.
pub(crate) fn is_compatible_code_version(ours: &SemVer, db: &SemVer) -> bool {
    let (lo, hi) = (ours.minor.min(db.minor), ours.minor.max(db.minor));
    db.major == ours.major && (lo == hi || lo + 1 == hi)
}

/// What opening a database did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationOutcome {
    /// The database was empty and was initialised at [`SCHEMA_VERSION`].
    Initialized,
    /// Same schema version; nothing to do.
    UpToDate,
    /// Same schema version; `code_version` was raised to ours.
    CodeVersionUpdated {
        /// The code version found.
        previous: String,
    },
    /// The schema is newer than ours but SPIRE's rules accept it (compatible
    /// code version); SPIRE logs a warning and carries on.
    NewerCompatible {
        /// Schema version found.
        schema_version: i64,
    },
    /// Migration is disabled and the code versions are compatible.
    MigrationDisabled {
        /// Schema version found.
        schema_version: i64,
    },
}

async fn has_table(tx: &mut Tx, table: &str) -> Result<bool> {
    let mut q = tx.sql();
    match tx.backend() {
        Backend::Sqlite => q.push("SELECT count(*) FROM sqlite_master WHERE type='table' AND name = ").bind(table),
        Backend::Postgres => q
            .push("SELECT count(*) FROM INFORMATION_SCHEMA.tables WHERE table_name = ")
            .bind(table)
            .push(" AND table_type = 'BASE TABLE' AND table_schema = CURRENT_SCHEMA()"),
        Backend::MySql => q
            .push("SELECT count(*) FROM INFORMATION_SCHEMA.TABLES WHERE table_schema = DATABASE() AND table_name = ")
            .bind(table),
    };
    Ok(tx.fetch_int(&q).await? > 0)
}

async fn init_db(tx: &mut Tx, now: OffsetDateTime) -> Result<()> {
    let b = tx.backend();
    for stmt in init_statements(b) {
        match stmt {
            Some(ddl) => {
                let mut q = tx.sql();
                q.push(&ddl);
                tx.execute(&q).await?;
            }
            None => {
                let mut q = tx.sql();
                q.push("INSERT INTO ")
                    .push(&quote(b, "migrations"))
                    .push(" (")
                    .push(
                        &["created_at", "updated_at", "version", "code_version"]
                            .map(|c| quote(b, c))
                            .join(","),
                    )
                    .push(") VALUES (")
                    .bind(now)
                    .push(",")
                    .bind(now)
                    .push(",")
                    .bind(SCHEMA_VERSION)
                    .push(",")
                    .bind(SPIRE_CODE_VERSION)
                    .push(")");
                tx.execute(&q).await?;
            }
        }
    }
    Ok(())
}

/// Creates or checks the schema as SPIRE's `migrateDB` does. The caller
/// commits the transaction.
pub(crate) async fn migrate(
    tx: &mut Tx,
    disable_migration: bool,
    now: OffsetDateTime,
) -> Result<MigrationOutcome> {
    if !has_table(tx, "migrations").await? {
        init_db(tx, now).await?;
        return Ok(MigrationOutcome::Initialized);
    }

    // FirstOrCreate: a migrations table without a row gets a zero row.
    let mut q = tx.sql();
    q.push("SELECT id, version, code_version FROM migrations ORDER BY id ASC LIMIT 1");
    let row = match tx.fetch_opt(&q, &[Col::Int, Col::Int, Col::Text]).await? {
        Some(r) => r,
        None => {
            let mut ins = tx.sql();
            ins.push(
                "INSERT INTO migrations (created_at, updated_at, version, code_version) VALUES (",
            )
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", 0, '')");
            tx.insert(&ins).await?;
            tx.fetch_opt(&q, &[Col::Int, Col::Int, Col::Text])
                .await?
                .ok_or_else(DataStoreError::record_not_found)?
        }
    };
    let id = row.int(0)?;
    let schema_version = row.int(1)?;
    let db_code_version_str = row.text(2)?;
    let db_code_version = if db_code_version_str.is_empty() {
        SemVer::ZERO
    } else {
        SemVer::parse(&db_code_version_str).map_err(|e| {
            DataStoreError::Internal(format!(
                "datastore-sql: error getting DB code version: unable to parse code version from DB: {e}"
            ))
        })?
    };
    let ours = SemVer::parse(SPIRE_CODE_VERSION).map_err(DataStoreError::Internal)?;

    if schema_version == SCHEMA_VERSION {
        if ours > db_code_version {
            let mut up = tx.sql();
            up.push("UPDATE migrations SET version = ")
                .bind(SCHEMA_VERSION)
                .push(", code_version = ")
                .bind(SPIRE_CODE_VERSION)
                .push(", updated_at = ")
                .bind(now)
                .push(" WHERE id = ")
                .bind(id);
            tx.execute(&up).await?;
            return Ok(MigrationOutcome::CodeVersionUpdated {
                previous: db_code_version_str,
            });
        }
        return Ok(MigrationOutcome::UpToDate);
    }

    if disable_migration {
        if !is_compatible_code_version(&ours, &db_code_version) {
            return Err(DataStoreError::FailedPrecondition(
                "datastore-sql: auto-migration must be enabled for current DB".into(),
            ));
        }
        return Ok(MigrationOutcome::MigrationDisabled { schema_version });
    }

    if schema_version > SCHEMA_VERSION {
        if !is_compatible_code_version(&ours, &db_code_version) {
            return Err(DataStoreError::FailedPrecondition(
                "datastore-sql: incompatible DB schema and code version".into(),
            ));
        }
        tracing::warn!(
            schema = schema_version,
            version_info = %db_code_version_str,
            "DB schema is ahead of code version, upgrading SPIRE Server is recommended"
        );
        return Ok(MigrationOutcome::NewerCompatible { schema_version });
    }

    // Older schema: SPIRE 1.13 carries no migration code (every version
    // below 23 needs an earlier release first), and neither do we.
    if schema_version < LAST_MINOR_RELEASE_SCHEMA_VERSION {
        return Err(DataStoreError::FailedPrecondition(format!(
            "datastore-sql: migrating from schema version {schema_version} requires a previous SPIRE release; please follow the upgrade strategy at doc/upgrading.md"
        )));
    }
    Err(DataStoreError::FailedPrecondition(format!(
        "datastore-sql: no migration support for unknown schema version {schema_version}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_rules() {
        let v = |s: &str| SemVer::parse(s).unwrap();
        assert!(v("1.13.3") > v("1.13.3-dev-unk"));
        assert!(v("1.13.3-dev-unk") > v("1.13.2"));
        assert!(v("1.0.0-alpha.1") > v("1.0.0-alpha"));
        assert!(v("1.0.0-alpha.beta") > v("1.0.0-alpha.1"));
        assert!(v("1.0.0-rc.1") > v("1.0.0-beta.11"));
        assert_eq!(v("1.2.3+build.5").cmp(&v("1.2.3")), Ordering::Equal);
        assert!(SemVer::parse("v1.2.3").is_err());
        assert!(SemVer::parse("1.02.3").is_err());
        assert!(SemVer::parse("1.2").is_err());
        assert!(is_compatible_code_version(&v("1.13.3"), &v("1.12.0")));
        assert!(is_compatible_code_version(&v("1.13.3"), &v("1.14.9")));
        assert!(!is_compatible_code_version(&v("1.13.3"), &v("1.15.0")));
        assert!(!is_compatible_code_version(&v("1.13.3"), &SemVer::ZERO));
        assert!(!is_compatible_code_version(&v("1.13.3"), &v("2.13.0")));
    }

    #[test]
    fn sqlite_ddl_matches_gorm_text() {
        let ddl = schema_ddl(crate::DatabaseType::Sqlite3);
        assert_eq!(
            ddl[0],
            r#"CREATE TABLE "federated_registration_entries" ("bundle_id" integer,"registered_entry_id" integer, PRIMARY KEY ("bundle_id","registered_entry_id"))"#
        );
        assert_eq!(
            ddl[1],
            r#"CREATE TABLE "bundles" ("id" integer primary key autoincrement,"created_at" datetime,"updated_at" datetime,"trust_domain" varchar(255) NOT NULL,"data" blob )"#
        );
        assert_eq!(
            ddl[2],
            r#"CREATE UNIQUE INDEX uix_bundles_trust_domain ON "bundles"(trust_domain) ;"#
        );
        assert!(ddl.contains(&r#"CREATE UNIQUE INDEX idx_selector_entry ON "selectors"(registered_entry_id, "type", "value") ;"#.to_string()));
        let my = schema_ddl(crate::DatabaseType::MySql);
        assert_eq!(
            my[1],
            "CREATE TABLE `bundles` (`id` int unsigned AUTO_INCREMENT,`created_at` DATETIME NULL,`updated_at` DATETIME NULL,`trust_domain` varchar(255) NOT NULL,`data` longblob , PRIMARY KEY (`id`)) ENGINE=InnoDB  ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8"
        );
    }
}
