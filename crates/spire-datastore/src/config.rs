//! The `sql` DataStore's `plugin_data`, with SPIRE's key names, and the
//! translation of SPIRE's connection strings into sqlx connection options.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::error::{DataStoreError, Result};
use crate::sql::pghosts::{self, PgHosts, SessionAttrs};

/// Default `max_open_conns` (SPIRE's).
pub const DEFAULT_MAX_OPEN_CONNS: u32 = 100;
/// Default `max_idle_conns` (SPIRE's).
pub const DEFAULT_MAX_IDLE_CONNS: u32 = 100;
/// Idle connections are closed after this long (SPIRE's fixed `ConnMaxIdleTime`).
pub const CONN_MAX_IDLE_TIME: Duration = Duration::from_secs(30);
/// SQLite busy timeout unless the connection string sets `_busy_timeout`/`_timeout`.
pub const DEFAULT_SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of SQLite reader connections (each one is a thread in sqlx).
const MAX_SQLITE_READERS: u32 = 16;
/// Connections used when `max_open_conns` is 0 or negative ("unlimited" in Go).
const UNLIMITED_CONNS: u32 = 1024;

/// Supported `database_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseType {
    /// `sqlite3`
    Sqlite3,
    /// `postgres`
    Postgres,
    /// `mysql` (also MariaDB)
    MySql,
}

impl DatabaseType {
    /// SPIRE's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseType::Sqlite3 => "sqlite3",
            DatabaseType::Postgres => "postgres",
            DatabaseType::MySql => "mysql",
        }
    }
}

impl FromStr for DatabaseType {
    type Err = DataStoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sqlite3" => Ok(DatabaseType::Sqlite3),
            "postgres" => Ok(DatabaseType::Postgres),
            "mysql" => Ok(DatabaseType::MySql),
            "aws_postgres" | "aws_mysql" => Err(DataStoreError::InvalidArgument(format!(
                "datastore-sql: database_type {s:?} (AWS IAM authentication) is not supported by spire-rs"
            ))),
            other => Err(DataStoreError::InvalidArgument(format!(
                "datastore-sql: unsupported database_type: {other}"
            ))),
        }
    }
}

/// The `database_type` value as written: a name, or SPIRE's block form
/// `database_type "aws_postgres" { region = "..." }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DatabaseTypeValue {
    /// `database_type = "sqlite3"`
    Name(String),
    /// `database_type "aws_mysql" { ... }` as a map.
    Block(BTreeMap<String, serde::de::IgnoredAny>),
    /// The block form as some HCL decoders produce it: a list of maps.
    Blocks(Vec<BTreeMap<String, serde::de::IgnoredAny>>),
}

impl Default for DatabaseTypeValue {
    fn default() -> Self {
        DatabaseTypeValue::Name(String::new())
    }
}

/// The `sql` DataStore configuration (`plugin_data` of `DataStore "sql"`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct SqlConfig {
    /// `sqlite3`, `postgres` or `mysql`.
    pub database_type: DatabaseTypeValue,
    /// SQLite: a path or `file:` URI. PostgreSQL: a `postgres://` URL or a
    /// libpq `key=value` string. MySQL: a Go DSN
    /// `user:pass@tcp(host:port)/db?parseTime=true` (or a `mysql://` URL).
    pub connection_string: String,
    /// Read replica for reads that tolerate staleness (ignored for SQLite).
    pub ro_connection_string: String,
    /// MySQL TLS: CA certificate file.
    pub root_ca_path: String,
    /// MySQL TLS: client certificate file.
    pub client_cert_path: String,
    /// MySQL TLS: client key file.
    pub client_key_path: String,
    /// Go duration (`"1h"`); unset means connections live forever.
    pub conn_max_lifetime: Option<String>,
    /// Maximum open connections (default 100; 0 or less: unlimited).
    #[serde(deserialize_with = "de_opt_int")]
    pub max_open_conns: Option<i64>,
    /// Maximum idle connections (default 100). sqlx has no such limit: the
    /// value is accepted and only `0` has an effect (idle connections are then
    /// closed after one second instead of 30).
    #[serde(deserialize_with = "de_opt_int")]
    pub max_idle_conns: Option<i64>,
    /// Refuse to migrate; open only databases SPIRE's rules accept as is.
    #[serde(deserialize_with = "de_bool")]
    pub disable_migration: bool,
    /// Log every statement at debug level (SPIRE's undocumented `log_sql`).
    #[serde(deserialize_with = "de_bool")]
    pub log_sql: bool,
}

impl SqlConfig {
    /// A configuration for a backend and connection string, defaults elsewhere.
    pub fn new(database_type: DatabaseType, connection_string: impl Into<String>) -> Self {
        Self {
            database_type: DatabaseTypeValue::Name(database_type.as_str().to_string()),
            connection_string: connection_string.into(),
            ..Self::default()
        }
    }

    /// The database type, validated.
    pub fn database_type(&self) -> Result<DatabaseType> {
        match &self.database_type {
            DatabaseTypeValue::Name(n) if n.is_empty() => Err(DataStoreError::InvalidArgument(
                "datastore-sql: database_type must be set".into(),
            )),
            DatabaseTypeValue::Name(n) => n.parse(),
            DatabaseTypeValue::Block(m) => block_type(m.keys()),
            DatabaseTypeValue::Blocks(v) => block_type(v.iter().flat_map(|m| m.keys())),
        }
    }

    /// Checks the configuration as SPIRE's `Validate` does.
    pub fn validate(&self) -> Result<DatabaseType> {
        let db_type = self.database_type()?;
        if self.connection_string.is_empty() {
            return Err(DataStoreError::InvalidArgument(
                "datastore-sql: connection_string must be set".into(),
            ));
        }
        if db_type == DatabaseType::MySql {
            parse_mysql_dsn(&self.connection_string, self)?;
            if !self.ro_connection_string.is_empty() {
                parse_mysql_dsn(&self.ro_connection_string, self)?;
            }
        }
        self.conn_max_lifetime()?;
        Ok(db_type)
    }

    /// `conn_max_lifetime` parsed.
    pub fn conn_max_lifetime(&self) -> Result<Option<Duration>> {
        match &self.conn_max_lifetime {
            None => Ok(None),
            Some(s) => {
                let d = spire_gocompat::parse_go_duration(s).map_err(|e| {
                    DataStoreError::InvalidArgument(format!(
                        "failed to parse conn_max_lifetime {s:?}: {e}"
                    ))
                })?;
                // Go: a lifetime <= 0 means connections are reused forever.
                Ok(d.to_std().filter(|d| !d.is_zero()))
            }
        }
    }

    /// Maximum connections of a pool.
    pub(crate) fn max_connections(&self) -> u32 {
        match self.max_open_conns {
            None => DEFAULT_MAX_OPEN_CONNS,
            Some(n) if n <= 0 => UNLIMITED_CONNS,
            Some(n) => u32::try_from(n).unwrap_or(UNLIMITED_CONNS),
        }
    }

    /// How long an idle connection is kept.
    pub(crate) fn idle_timeout(&self) -> Duration {
        match self.max_idle_conns {
            Some(n) if n <= 0 => Duration::from_secs(1),
            _ => CONN_MAX_IDLE_TIME,
        }
    }

    /// Number of SQLite reader connections.
    pub(crate) fn sqlite_readers(&self) -> u32 {
        self.max_connections().clamp(1, MAX_SQLITE_READERS)
    }
}

fn block_type<'a>(mut keys: impl Iterator<Item = &'a String>) -> Result<DatabaseType> {
    match (keys.next(), keys.next()) {
        (Some(k), None) => k.parse(),
        (None, _) => Err(DataStoreError::InvalidArgument(
            "malformed database type configuration".into(),
        )),
        (Some(_), Some(_)) => Err(DataStoreError::InvalidArgument(
            "exactly one database type is expected".into(),
        )),
    }
}

/// Accepts an integer or a string holding one (HCL1 was lenient).
fn de_opt_int<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Str(String),
    }
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(IntOrString::Int(i)) => Ok(Some(i)),
        Some(IntOrString::Str(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {s:?}"))),
    }
}

/// Accepts a bool or a string holding one (HCL1 was lenient).
fn de_bool<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        Bool(bool),
        Str(String),
    }
    match Option::<BoolOrString>::deserialize(d)? {
        None => Ok(false),
        Some(BoolOrString::Bool(b)) => Ok(b),
        Some(BoolOrString::Str(s)) => match s.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected a bool, got {s:?}"
            ))),
        },
    }
}

/// A SQLite database location.
#[derive(Debug, Clone)]
pub(crate) struct SqliteTarget {
    pub(crate) options: SqliteConnectOptions,
    /// The database only lives in memory: a single shared connection.
    pub(crate) in_memory: bool,
    /// File to create the parent directory of.
    pub(crate) path: Option<PathBuf>,
    /// Busy timeout.
    pub(crate) busy: Duration,
    /// `mode=ro`.
    pub(crate) read_only: bool,
}

/// Parses SPIRE's SQLite connection string: a plain path, or a `file:` URI
/// with go-sqlite3 query parameters (`mode`, `cache`, `_busy_timeout`/`_timeout`,
/// `_synchronous`/`_sync`). `_journal_mode` and `_foreign_keys` are forced to WAL and ON, as
/// SPIRE does; `synchronous` is NORMAL unless set, as go-sqlite3 sets it on every connection
/// (in WAL mode a commit is then not flushed to disk until the next checkpoint: durable
/// against a crash of the process, not of the machine, exactly as SPIRE's database).
pub(crate) fn parse_sqlite(conn: &str) -> Result<SqliteTarget> {
    let (path_part, query) = if let Some(rest) = conn.strip_prefix("file:") {
        match rest.split_once('?') {
            Some((p, q)) => (percent_decode(p)?, Some(q)),
            None => (percent_decode(rest)?, None),
        }
    } else if conn.contains("://") {
        let scheme = conn.split("://").next().unwrap_or_default();
        return Err(DataStoreError::InvalidArgument(format!(
            "datastore-sql: unsupported scheme {scheme:?}"
        )));
    } else {
        match conn.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q)),
            None => (conn.to_string(), None),
        }
    };
    // `file://localhost/path` and `file:///path` forms.
    let path_part = match path_part.strip_prefix("//") {
        Some(rest) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => rest.to_string(),
        },
        None => path_part,
    };

    let mut busy = DEFAULT_SQLITE_BUSY_TIMEOUT;
    let mut synchronous = SqliteSynchronous::Normal;
    let mut mode = String::new();
    let mut shared_cache = false;
    for (k, v) in query.map(parse_query).transpose()?.unwrap_or_default() {
        match k.as_str() {
            "_busy_timeout" | "_timeout" => {
                let ms: u64 = v.parse().map_err(|_| {
                    DataStoreError::InvalidArgument(format!("datastore-sql: invalid {k}: {v}"))
                })?;
                busy = Duration::from_millis(ms);
            }
            "_synchronous" | "_sync" if !v.is_empty() => {
                synchronous = match v.to_ascii_uppercase().as_str() {
                    "0" | "OFF" => SqliteSynchronous::Off,
                    "1" | "NORMAL" => SqliteSynchronous::Normal,
                    "2" | "FULL" => SqliteSynchronous::Full,
                    "3" | "EXTRA" => SqliteSynchronous::Extra,
                    _ => {
                        return Err(DataStoreError::InvalidArgument(format!(
                            "Invalid _synchronous: {v}, expecting value of '0 OFF 1 NORMAL 2 FULL 3 EXTRA'"
                        )));
                    }
                };
            }
            "mode" => mode = v,
            "cache" => shared_cache = v == "shared",
            _ => {}
        }
    }
    let in_memory = path_part == ":memory:" || mode == "memory" || path_part.is_empty();
    let mut options = SqliteConnectOptions::new()
        .foreign_keys(true)
        .busy_timeout(busy)
        .synchronous(synchronous)
        .shared_cache(shared_cache);
    if in_memory {
        options = options
            .in_memory(true)
            .journal_mode(SqliteJournalMode::Memory);
        return Ok(SqliteTarget {
            options,
            in_memory,
            path: None,
            busy,
            read_only: false,
        });
    }
    let path = PathBuf::from(&path_part);
    options = options
        .filename(&path)
        .journal_mode(SqliteJournalMode::Wal)
        .read_only(mode == "ro")
        .create_if_missing(mode.is_empty() || mode == "rwc");
    Ok(SqliteTarget {
        options,
        in_memory,
        path: Some(path),
        busy,
        read_only: mode == "ro",
    })
}

fn parse_query(q: &str) -> Result<Vec<(String, String)>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(|| bad_escape(s))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad_escape(s))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad_escape(s))
}

fn bad_escape(s: &str) -> DataStoreError {
    DataStoreError::InvalidArgument(format!("datastore-sql: invalid escape in {s:?}"))
}

/// Parses a PostgreSQL connection string: a URL, or libpq `key=value` pairs
/// (values may be single-quoted with `\` escapes). Either may list several hosts
/// (`h1:5432,h2:5432` in a URL, `host=h1,h2 port=5432,5433` as pairs) and set
/// `target_session_attrs`, as pgx reads them; see `sql/pghosts.rs`.
pub(crate) fn parse_postgres(conn: &str) -> Result<PgHosts> {
    let trimmed = conn.trim();
    let invalid = |e: sqlx::Error| {
        DataStoreError::InvalidArgument(format!("datastore-sql: invalid connection string: {e}"))
    };
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let (url, hosts, attrs) = pghosts::split_url(trimmed)?;
        let base = PgConnectOptions::from_str(&url).map_err(invalid)?;
        return Ok(PgHosts {
            hosts: with_hosts(base, hosts),
            attrs,
        });
    }
    let mut opts = PgConnectOptions::new();
    let mut hosts = None;
    let mut ports = None;
    let mut attrs = SessionAttrs::Any;
    for (k, v) in parse_libpq_pairs(trimmed)? {
        opts = match k.as_str() {
            "host" | "hostaddr" => {
                hosts = Some(v);
                opts
            }
            "port" => {
                ports = Some(v);
                opts
            }
            "target_session_attrs" => {
                attrs = SessionAttrs::parse(&v)?;
                opts
            }
            "user" => opts.username(&v),
            "password" => opts.password(&v),
            "dbname" => opts.database(&v),
            "sslmode" => opts.ssl_mode(
                PgSslMode::from_str(&v)
                    .map_err(|e| DataStoreError::InvalidArgument(format!("datastore-sql: {e}")))?,
            ),
            "sslrootcert" => opts.ssl_root_cert(v),
            "sslcert" => opts.ssl_client_cert(v),
            "sslkey" => opts.ssl_client_key(v),
            "application_name" | "fallback_application_name" => opts.application_name(&v),
            _ => opts,
        };
    }
    let list = match hosts {
        Some(h) => pghosts::pair_lists(&h, ports.as_deref())?,
        None => {
            if let Some(p) = ports {
                opts = opts.port(p.parse().map_err(|_| {
                    DataStoreError::InvalidArgument(format!("datastore-sql: invalid port {p:?}"))
                })?);
            }
            Vec::new()
        }
    };
    Ok(PgHosts {
        hosts: with_hosts(opts, list),
        attrs,
    })
}

/// libpq's default port: `PGPORT`, else 5432.
fn default_pg_port() -> u16 {
    std::env::var("PGPORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}

/// One set of options per host (the base's own host when the list is empty).
fn with_hosts(base: PgConnectOptions, hosts: Vec<pghosts::HostPort>) -> Vec<PgConnectOptions> {
    if hosts.is_empty() {
        return vec![base];
    }
    hosts
        .into_iter()
        .map(|(h, port)| {
            let o = if h.starts_with('/') {
                base.clone().socket(&h)
            } else {
                base.clone().host(&h)
            };
            // A host without a port takes libpq's default.
            o.port(port.unwrap_or_else(default_pg_port))
        })
        .collect()
}

fn parse_libpq_pairs(s: &str) -> Result<Vec<(String, String)>> {
    let bad = || DataStoreError::InvalidArgument("datastore-sql: invalid connection string".into());
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad());
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or_else(bad)?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.push(chars.next().ok_or_else(bad)?);
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Parses a go-sql-driver/mysql DSN,
/// `[user[:password]@][net[(addr)]]/dbname[?param=value&...]`, requiring
/// `parseTime=true` as SPIRE does. A `mysql://` URL is accepted too.
pub(crate) fn parse_mysql_dsn(dsn: &str, cfg: &SqlConfig) -> Result<MySqlConnectOptions> {
    let invalid = |m: &str| DataStoreError::InvalidArgument(format!("datastore-sql: {m}"));
    let mut opts = if dsn.starts_with("mysql://") || dsn.starts_with("mariadb://") {
        MySqlConnectOptions::from_str(dsn)
            .map_err(|e| invalid(&format!("invalid connection string: {e}")))?
    } else {
        let slash = dsn.rfind('/').ok_or_else(|| {
            invalid("invalid DSN: missing the slash separating the database name")
        })?;
        let (head, tail) = dsn.split_at(slash);
        let tail = &tail[1..];
        let (dbname, params) = match tail.split_once('?') {
            Some((d, p)) => (d, Some(p)),
            None => (tail, None),
        };
        let mut opts = MySqlConnectOptions::new().ssl_mode(MySqlSslMode::Disabled);
        let (userinfo, netaddr) = match head.rfind('@') {
            Some(at) => (Some(&head[..at]), &head[at + 1..]),
            None => (None, head),
        };
        if let Some(ui) = userinfo {
            let (user, pass) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            opts = opts.username(user);
            if let Some(p) = pass {
                opts = opts.password(p);
            }
        }
        if !netaddr.is_empty() {
            let (net, addr) = match netaddr.split_once('(') {
                Some((n, rest)) => (
                    n,
                    rest.strip_suffix(')').ok_or_else(|| {
                        invalid(
                            "invalid DSN: network address not terminated (missing closing brace)",
                        )
                    })?,
                ),
                None => (netaddr, ""),
            };
            match net {
                "unix" => {
                    if !addr.is_empty() {
                        opts = opts.socket(addr);
                    }
                }
                "tcp" | "" => {
                    if !addr.is_empty() {
                        let (host, port) = split_host_port(addr);
                        opts = opts.host(host);
                        if let Some(p) = port {
                            opts =
                                opts.port(p.parse().map_err(|_| invalid("invalid DSN: bad port"))?);
                        }
                    }
                }
                other => {
                    return Err(invalid(&format!(
                        "invalid DSN: unsupported network {other:?}"
                    )));
                }
            }
        }
        if !dbname.is_empty() {
            opts = opts.database(&percent_decode(dbname)?);
        }
        let mut parse_time = false;
        for (k, v) in params.map(parse_query).transpose()?.unwrap_or_default() {
            match k.as_str() {
                "parseTime" => parse_time = matches!(v.as_str(), "true" | "1" | "True" | "TRUE"),
                "tls" => {
                    opts = opts.ssl_mode(match v.as_str() {
                        "true" => MySqlSslMode::VerifyIdentity,
                        "skip-verify" => MySqlSslMode::Required,
                        "preferred" => MySqlSslMode::Preferred,
                        "false" => MySqlSslMode::Disabled,
                        _ => MySqlSslMode::VerifyIdentity,
                    })
                }
                "charset" => {
                    if let Some(first) = v.split(',').next() {
                        opts = opts.charset(first);
                    }
                }
                "collation" => opts = opts.collation(&v),
                _ => {}
            }
        }
        if !parse_time {
            return Err(invalid(
                "invalid mysql config: missing parseTime=true param in connection_string",
            ));
        }
        opts
    };
    if !cfg.root_ca_path.is_empty() {
        opts = opts
            .ssl_ca(&cfg.root_ca_path)
            .ssl_mode(MySqlSslMode::VerifyIdentity);
    }
    if !cfg.client_cert_path.is_empty() && !cfg.client_key_path.is_empty() {
        opts = opts
            .ssl_client_cert(&cfg.client_cert_path)
            .ssl_client_key(&cfg.client_key_path);
        if cfg.root_ca_path.is_empty() {
            opts = opts.ssl_mode(MySqlSslMode::VerifyIdentity);
        }
    }
    Ok(opts)
}

fn split_host_port(addr: &str) -> (&str, Option<&str>) {
    if let Some(rest) = addr.strip_prefix('[')
        && let Some((h, p)) = rest.split_once(']')
    {
        return (h, p.strip_prefix(':'));
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (addr, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_spire_keys() {
        let cfg: SqlConfig = serde_json::from_value(serde_json::json!({
            "database_type": "postgres",
            "connection_string": "dbname=spire user=spire host=127.0.0.1 port=5432 sslmode=disable",
            "ro_connection_string": "postgres://ro@127.0.0.1/spire",
            "max_open_conns": "20",
            "max_idle_conns": 10,
            "conn_max_lifetime": "1h",
            "disable_migration": true,
        }))
        .unwrap();
        assert_eq!(cfg.validate().unwrap(), DatabaseType::Postgres);
        assert_eq!(cfg.max_connections(), 20);
        assert_eq!(
            cfg.conn_max_lifetime().unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert!(cfg.disable_migration);
        let pg = parse_postgres(&cfg.connection_string).unwrap();
        assert_eq!(pg.hosts.len(), 1);
        let pg = &pg.hosts[0];
        assert_eq!(pg.get_database(), Some("spire"));
        assert_eq!(pg.get_port(), 5432);
        assert_eq!(pg.get_username(), "spire");

        let block: SqlConfig = serde_json::from_value(serde_json::json!({
            "database_type": {"aws_postgres": {"region": "us-east-1"}},
            "connection_string": "x",
        }))
        .unwrap();
        assert!(
            block
                .database_type()
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        let missing = SqlConfig::default();
        assert_eq!(
            missing.validate().unwrap_err().to_string(),
            "datastore-sql: database_type must be set"
        );
    }

    #[test]
    fn postgres_host_lists() {
        let url = parse_postgres(
            "postgres://spire:pw@127.0.0.1:26501,db2/spire?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(url.attrs, SessionAttrs::ReadWrite);
        let hosts: Vec<(String, u16)> = url
            .hosts
            .iter()
            .map(|h| (h.get_host().to_string(), h.get_port()))
            .collect();
        assert_eq!(
            hosts,
            vec![("127.0.0.1".to_string(), 26501), ("db2".to_string(), 5432)]
        );
        for h in &url.hosts {
            assert_eq!(h.get_database(), Some("spire"));
            assert_eq!(h.get_username(), "spire");
        }
        let kv = parse_postgres(
            "host=a,b port=1,2 dbname=spire user=u target_session_attrs=prefer-standby",
        )
        .unwrap();
        assert_eq!(kv.attrs, SessionAttrs::PreferStandby);
        assert_eq!(kv.hosts.len(), 2);
        assert_eq!((kv.hosts[1].get_host(), kv.hosts[1].get_port()), ("b", 2));
        assert_eq!(kv.hosts[1].get_database(), Some("spire"));
        let one = parse_postgres("dbname=spire port=5433").unwrap();
        assert_eq!(one.hosts.len(), 1);
        assert_eq!(one.hosts[0].get_port(), 5433);
        assert_eq!(
            parse_postgres("host=a,b port=1,2,3")
                .unwrap_err()
                .to_string(),
            "datastore-sql: could not match 3 port numbers to 2 hosts"
        );
    }

    #[test]
    fn mysql_dsn() {
        let cfg = SqlConfig::new(
            DatabaseType::MySql,
            "u:p@ss@tcp(db.example:3307)/spire?parseTime=true&tls=skip-verify",
        );
        let o = parse_mysql_dsn(&cfg.connection_string, &cfg).unwrap();
        assert_eq!(o.get_host(), "db.example");
        assert_eq!(o.get_port(), 3307);
        assert_eq!(o.get_username(), "u");
        assert_eq!(o.get_database(), Some("spire"));
        assert!(matches!(o.get_ssl_mode(), MySqlSslMode::Required));
        let no_pt = SqlConfig::new(DatabaseType::MySql, "u@tcp(h)/db");
        assert_eq!(
            no_pt.validate().unwrap_err().to_string(),
            "datastore-sql: invalid mysql config: missing parseTime=true param in connection_string"
        );
        let unix = parse_mysql_dsn("root@unix(/run/mysqld.sock)/x?parseTime=true", &no_pt).unwrap();
        assert!(unix.get_socket().is_some());
    }

    #[test]
    fn sqlite_strings() {
        let t = parse_sqlite("/tmp/x/datastore.sqlite3").unwrap();
        assert!(!t.in_memory);
        assert_eq!(t.path.unwrap(), PathBuf::from("/tmp/x/datastore.sqlite3"));
        let t = parse_sqlite("file:/tmp/a%20b.db?_busy_timeout=100&cache=shared").unwrap();
        assert_eq!(t.path.unwrap(), PathBuf::from("/tmp/a b.db"));
        assert!(
            parse_sqlite("file::memory:?cache=shared")
                .unwrap()
                .in_memory
        );
        assert!(parse_sqlite("http://x").is_err());
        let t = parse_sqlite("file:///var/lib/spire/ds.db").unwrap();
        assert_eq!(t.path.unwrap(), PathBuf::from("/var/lib/spire/ds.db"));
    }

    #[tokio::test]
    async fn sqlite_synchronous_is_normal_as_go_sqlite3_sets_it_unless_the_string_says() {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ds.sqlite3");
        for (query, want) in [("", 1i64), ("?_sync=FULL", 2), ("?_synchronous=off", 0)] {
            let t = parse_sqlite(&format!("file:{}{query}", db.display())).unwrap();
            let mut c = sqlx::SqliteConnection::connect_with(&t.options)
                .await
                .unwrap();
            let (got,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(got, want, "{query:?}");
        }
        let err = parse_sqlite(&format!("file:{}?_sync=sometimes", db.display()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("Invalid _synchronous: sometimes, expecting value of '0 OFF 1 NORMAL 2 FULL 3 EXTRA'"),
            "{err}"
        );
    }

    #[test]
    fn libpq_quoting() {
        let p = parse_libpq_pairs(r"dbname='my db' password='it\'s' host = h").unwrap();
        assert_eq!(
            p,
            vec![
                ("dbname".into(), "my db".into()),
                ("password".into(), "it's".into()),
                ("host".into(), "h".into())
            ]
        );
    }
}
