//! A thin layer over sqlx that lets the store's logic be written once for
//! the three backends: queries are built with `?`-style binds (rendered as
//! `$n` for PostgreSQL), arguments and row values are small enums, and each
//! backend encodes timestamps the way gorm stores them there.

use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, MySql, Postgres, Row, Sqlite, TypeInfo, ValueRef};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::timefmt;
use super::txn::Txn;
use crate::error::{DataStoreError, Result};

/// The SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// A bound argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Time(OffsetDateTime),
    NullTime,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Arg::Int(i64::from(v))
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Bytes(v)
    }
}
impl From<OffsetDateTime> for Arg {
    fn from(v: OffsetDateTime) -> Self {
        Arg::Time(v)
    }
}
impl From<Option<OffsetDateTime>> for Arg {
    fn from(v: Option<OffsetDateTime>) -> Self {
        v.map_or(Arg::NullTime, Arg::Time)
    }
}

/// A query under construction.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    backend: Backend,
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend,
            text: String::with_capacity(256),
            args: Vec::new(),
        }
    }

    /// Appends SQL text (no placeholders in it).
    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub(crate) fn bind(&mut self, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        match self.backend {
            Backend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.args.len().to_string());
            }
            Backend::Sqlite | Backend::MySql => self.text.push('?'),
        }
        self
    }

    /// Appends `(?, ?, ...)` bound to the items.
    pub(crate) fn bind_list<A: Into<Arg>>(
        &mut self,
        items: impl IntoIterator<Item = A>,
    ) -> &mut Self {
        self.text.push('(');
        for (i, a) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(a);
        }
        self.text.push(')');
        self
    }
}

/// Expected column type of a result (every column may be NULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Int,
    Bool,
    Text,
    Bytes,
    Time,
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Time(OffsetDateTime),
}

/// A decoded row. Accessors return zero values for NULL, as gorm does when
/// it scans NULL into a plain field.
#[derive(Debug, Clone)]
pub(crate) struct DbRow(Vec<Val>);

impl DbRow {
    fn get(&self, i: usize) -> Result<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| DataStoreError::sql(format!("missing column {i}")))
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64> {
        match self.get(i)? {
            Val::Null => Ok(0),
            Val::Int(v) => Ok(*v),
            Val::Bool(b) => Ok(i64::from(*b)),
            other => Err(DataStoreError::sql(format!(
                "column {i}: expected an integer, got {other:?}"
            ))),
        }
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool> {
        match self.get(i)? {
            Val::Null => Ok(false),
            Val::Bool(b) => Ok(*b),
            Val::Int(v) => Ok(*v != 0),
            other => Err(DataStoreError::sql(format!(
                "column {i}: expected a boolean, got {other:?}"
            ))),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String> {
        match self.get(i)? {
            Val::Null => Ok(String::new()),
            Val::Text(s) => Ok(s.clone()),
            Val::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
            Val::Int(v) => Ok(v.to_string()),
            other => Err(DataStoreError::sql(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    /// [`DbRow::text`] without a copy when the column holds text.
    pub(crate) fn text_ref(&self, i: usize) -> Result<std::borrow::Cow<'_, str>> {
        match self.get(i)? {
            Val::Text(s) => Ok(std::borrow::Cow::Borrowed(s)),
            Val::Null => Ok(std::borrow::Cow::Borrowed("")),
            _ => self.text(i).map(std::borrow::Cow::Owned),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.get(i)? {
            Val::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// Takes a text column out of the row (avoids a copy).
    pub(crate) fn take_text(&mut self, i: usize) -> Result<String> {
        match self.0.get_mut(i) {
            Some(Val::Text(s)) => Ok(std::mem::take(s)),
            _ => self.text(i),
        }
    }

    pub(crate) fn bytes(&mut self, i: usize) -> Result<Vec<u8>> {
        match self.0.get_mut(i) {
            Some(Val::Null) => Ok(Vec::new()),
            Some(Val::Bytes(b)) => Ok(std::mem::take(b)),
            Some(Val::Text(s)) => Ok(std::mem::take(s).into_bytes()),
            Some(other) => Err(DataStoreError::sql(format!(
                "column {i}: expected bytes, got {other:?}"
            ))),
            None => Err(DataStoreError::sql(format!("missing column {i}"))),
        }
    }

    pub(crate) fn opt_time(&self, i: usize) -> Result<Option<OffsetDateTime>> {
        match self.get(i)? {
            Val::Null => Ok(None),
            Val::Time(t) => Ok(Some(*t)),
            other => Err(DataStoreError::sql(format!(
                "column {i}: expected a time, got {other:?}"
            ))),
        }
    }

    /// A time as Unix seconds; NULL is gorm's zero time (year 1).
    pub(crate) fn unix(&self, i: usize) -> Result<i64> {
        Ok(self
            .opt_time(i)?
            .map_or(GO_ZERO_TIME_UNIX, |t| t.unix_timestamp()))
    }
}

/// `time.Time{}.Unix()` in Go: what a NULL timestamp reads as.
pub(crate) const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// An open transaction on one of the backends.
#[derive(Debug)]
pub(crate) enum Tx {
    Sqlite(Txn<Sqlite>),
    Postgres(Txn<Postgres>),
    MySql(Txn<MySql>),
}

macro_rules! bind_args {
    ($q:expr, $args:expr, $time:expr, $null_time:ty) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Bool(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_str()),
                Arg::Bytes(v) => q.bind(v.as_slice()),
                Arg::Time(t) => q.bind($time(*t)),
                Arg::NullTime => q.bind(None::<$null_time>),
            };
        }
        q
    }};
}

fn sqlite_time(t: OffsetDateTime) -> String {
    timefmt::format_sqlite(t)
}

fn pg_time(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

fn mysql_time(t: OffsetDateTime) -> PrimitiveDateTime {
    let u = t.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(u.date(), u.time())
}

impl Tx {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
            Tx::MySql(_) => Backend::MySql,
        }
    }

    /// A new query builder for this backend.
    pub(crate) fn sql(&self) -> Sql {
        Sql::new(self.backend())
    }

    /// `FOR UPDATE` where SPIRE uses it for read-modify-write transactions.
    pub(crate) fn for_update(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => "",
            Tx::Postgres(_) | Tx::MySql(_) => " FOR UPDATE",
        }
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
            Tx::MySql(t) => t.commit().await?,
        }
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
            Tx::MySql(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// Runs a statement with no result set; returns the rows affected.
    pub(crate) async fn execute(&mut self, q: &Sql) -> Result<u64> {
        trace(q);
        let text = AssertSqlSafe(q.text.as_str());
        Ok(match self {
            Tx::Sqlite(t) => bind_args!(sqlx::query::<Sqlite>(text), &q.args, sqlite_time, String)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            Tx::Postgres(t) => bind_args!(
                sqlx::query::<Postgres>(text),
                &q.args,
                pg_time,
                OffsetDateTime
            )
            .execute(&mut **t)
            .await?
            .rows_affected(),
            Tx::MySql(t) => bind_args!(
                sqlx::query::<MySql>(text),
                &q.args,
                mysql_time,
                PrimitiveDateTime
            )
            .execute(&mut **t)
            .await?
            .rows_affected(),
        })
    }

    /// Runs an `INSERT` and returns the generated `id`.
    pub(crate) async fn insert(&mut self, q: &Sql) -> Result<i64> {
        trace(q);
        match self {
            Tx::Sqlite(t) => Ok(bind_args!(
                sqlx::query::<Sqlite>(AssertSqlSafe(q.text.as_str())),
                &q.args,
                sqlite_time,
                String
            )
            .execute(&mut **t)
            .await?
            .last_insert_rowid()),
            Tx::Postgres(t) => {
                let text = format!("{} RETURNING id", q.text);
                let row = bind_args!(
                    sqlx::query::<Postgres>(AssertSqlSafe(text)),
                    &q.args,
                    pg_time,
                    OffsetDateTime
                )
                .fetch_one(&mut **t)
                .await?;
                match decode_pg(&row, 0, Col::Int)? {
                    Val::Int(v) => Ok(v),
                    other => Err(DataStoreError::sql(format!("unexpected id {other:?}"))),
                }
            }
            Tx::MySql(t) => {
                let id = bind_args!(
                    sqlx::query::<MySql>(AssertSqlSafe(q.text.as_str())),
                    &q.args,
                    mysql_time,
                    PrimitiveDateTime
                )
                .execute(&mut **t)
                .await?
                .last_insert_id();
                i64::try_from(id).map_err(DataStoreError::sql)
            }
        }
    }

    /// Runs a query and decodes every row with the given column types.
    pub(crate) async fn fetch(&mut self, q: &Sql, cols: &[Col]) -> Result<Vec<DbRow>> {
        trace(q);
        let text = AssertSqlSafe(q.text.as_str());
        match self {
            Tx::Sqlite(t) => {
                let rows = bind_args!(sqlx::query::<Sqlite>(text), &q.args, sqlite_time, String)
                    .fetch_all(&mut **t)
                    .await?;
                rows.iter()
                    .map(|r| decode_row(r, cols, decode_sqlite))
                    .collect()
            }
            Tx::Postgres(t) => {
                let rows = bind_args!(
                    sqlx::query::<Postgres>(text),
                    &q.args,
                    pg_time,
                    OffsetDateTime
                )
                .fetch_all(&mut **t)
                .await?;
                rows.iter()
                    .map(|r| decode_row(r, cols, decode_pg))
                    .collect()
            }
            Tx::MySql(t) => {
                let rows = bind_args!(
                    sqlx::query::<MySql>(text),
                    &q.args,
                    mysql_time,
                    PrimitiveDateTime
                )
                .fetch_all(&mut **t)
                .await?;
                rows.iter()
                    .map(|r| decode_row(r, cols, decode_mysql))
                    .collect()
            }
        }
    }

    /// Like [`Tx::fetch`], at most one row.
    pub(crate) async fn fetch_opt(&mut self, q: &Sql, cols: &[Col]) -> Result<Option<DbRow>> {
        Ok(self.fetch(q, cols).await?.into_iter().next())
    }

    /// A single integer (e.g. `COUNT(*)`).
    pub(crate) async fn fetch_int(&mut self, q: &Sql) -> Result<i64> {
        match self.fetch_opt(q, &[Col::Int]).await? {
            Some(r) => r.int(0),
            None => Ok(0),
        }
    }
}

fn trace(q: &Sql) {
    tracing::trace!(target: "spire_datastore::sql", query = q.text.as_str(), args = q.args.len());
}

fn decode_row<R>(row: &R, cols: &[Col], f: fn(&R, usize, Col) -> Result<Val>) -> Result<DbRow> {
    let mut out = Vec::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        out.push(f(row, i, *c)?);
    }
    Ok(DbRow(out))
}

fn col_err(i: usize, e: impl std::fmt::Display) -> DataStoreError {
    DataStoreError::sql(format!("decoding column {i}: {e}"))
}

fn decode_sqlite(row: &SqliteRow, i: usize, col: Col) -> Result<Val> {
    let raw = row.try_get_raw(i).map_err(|e| col_err(i, e))?;
    if raw.is_null() {
        return Ok(Val::Null);
    }
    let storage = raw.type_info().name().to_string();
    Ok(match col {
        Col::Int => Val::Int(
            row.try_get_unchecked::<i64, _>(i)
                .map_err(|e| col_err(i, e))?,
        ),
        Col::Bool => Val::Bool(
            row.try_get_unchecked::<i64, _>(i)
                .map_err(|e| col_err(i, e))?
                != 0,
        ),
        Col::Text => Val::Text(
            row.try_get_unchecked::<String, _>(i)
                .map_err(|e| col_err(i, e))?,
        ),
        Col::Bytes => Val::Bytes(
            row.try_get_unchecked::<Vec<u8>, _>(i)
                .map_err(|e| col_err(i, e))?,
        ),
        Col::Time => match storage.as_str() {
            "INTEGER" => {
                // go-sqlite3 reads integers in datetime columns as Unix
                // seconds, or milliseconds when they are that large.
                let v = row
                    .try_get_unchecked::<i64, _>(i)
                    .map_err(|e| col_err(i, e))?;
                Val::Time(timefmt::from_unix_or_millis(v)?)
            }
            "REAL" => {
                let v = row
                    .try_get_unchecked::<f64, _>(i)
                    .map_err(|e| col_err(i, e))?;
                Val::Time(timefmt::from_julian_day(v)?)
            }
            _ => {
                let s = row
                    .try_get_unchecked::<String, _>(i)
                    .map_err(|e| col_err(i, e))?;
                match timefmt::parse_sqlite(&s) {
                    Some(t) => Val::Time(t),
                    // go-sqlite3 yields the zero time for unparseable values.
                    None => Val::Null,
                }
            }
        },
    })
}

fn decode_pg(row: &PgRow, i: usize, col: Col) -> Result<Val> {
    let raw = row.try_get_raw(i).map_err(|e| col_err(i, e))?;
    if raw.is_null() {
        return Ok(Val::Null);
    }
    let ty = raw.type_info().name().to_string();
    let e = |e: sqlx::Error| col_err(i, e);
    Ok(match col {
        Col::Int | Col::Bool => match ty.as_str() {
            "INT2" => Val::Int(i64::from(row.try_get::<i16, _>(i).map_err(e)?)),
            "INT4" => Val::Int(i64::from(row.try_get::<i32, _>(i).map_err(e)?)),
            "INT8" => Val::Int(row.try_get::<i64, _>(i).map_err(e)?),
            "BOOL" => Val::Bool(row.try_get::<bool, _>(i).map_err(e)?),
            other => return Err(col_err(i, format!("unexpected type {other}"))),
        },
        Col::Text => Val::Text(row.try_get_unchecked::<String, _>(i).map_err(e)?),
        Col::Bytes => Val::Bytes(row.try_get::<Vec<u8>, _>(i).map_err(e)?),
        Col::Time => match ty.as_str() {
            "TIMESTAMPTZ" => Val::Time(row.try_get::<OffsetDateTime, _>(i).map_err(e)?),
            "TIMESTAMP" => Val::Time(
                row.try_get::<PrimitiveDateTime, _>(i)
                    .map_err(e)?
                    .assume_utc(),
            ),
            other => return Err(col_err(i, format!("unexpected type {other}"))),
        },
    })
}

fn decode_mysql(row: &MySqlRow, i: usize, col: Col) -> Result<Val> {
    let raw = row.try_get_raw(i).map_err(|e| col_err(i, e))?;
    if raw.is_null() {
        return Ok(Val::Null);
    }
    let unsigned = raw.type_info().name().contains("UNSIGNED");
    let e = |e: sqlx::Error| col_err(i, e);
    Ok(match col {
        Col::Int | Col::Bool => {
            let v = if unsigned {
                i64::try_from(row.try_get_unchecked::<u64, _>(i).map_err(e)?)
                    .map_err(|x| col_err(i, x))?
            } else {
                row.try_get_unchecked::<i64, _>(i).map_err(e)?
            };
            if col == Col::Bool {
                Val::Bool(v != 0)
            } else {
                Val::Int(v)
            }
        }
        Col::Text => Val::Text(row.try_get_unchecked::<String, _>(i).map_err(e)?),
        Col::Bytes => Val::Bytes(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(e)?),
        Col::Time => Val::Time(
            row.try_get_unchecked::<PrimitiveDateTime, _>(i)
                .map_err(e)?
                .assume_utc(),
        ),
    })
}
