//! Errors returned by the datastore.
//!
//! The messages are the ones SPIRE's `sql` datastore returns (for example
//! `datastore-sql: record not found`), because SPIRE's APIs put them in the
//! status messages clients see. The variant tells the gRPC code SPIRE would
//! have used ([`DataStoreError::code`]).

/// Prefix of errors raised by the SQL layer, as SPIRE spells it.
pub(crate) const SQL_PREFIX: &str = "datastore-sql";
/// Prefix of entry validation errors, as SPIRE spells it.
pub(crate) const VALIDATION_PREFIX: &str = "datastore-validation";

/// Message of a lookup that matched no row (gorm's `record not found`).
pub const RECORD_NOT_FOUND: &str = "datastore-sql: record not found";

/// A datastore failure. Every variant carries the full message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataStoreError {
    /// The record does not exist (`codes.NotFound`).
    #[error("{0}")]
    NotFound(String),
    /// A uniqueness constraint was violated (`codes.AlreadyExists`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is invalid (`codes.InvalidArgument`), including entry
    /// validation failures (`datastore-validation: ...`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The operation is refused in the current state (`codes.FailedPrecondition`),
    /// e.g. deleting a bundle that registration entries federate with.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent transaction got in the way (deadlock, serialization
    /// failure, SQLite busy); retrying may succeed.
    #[error("{0}")]
    Conflict(String),
    /// An error SPIRE reports without a specific code (`codes.Unknown`), such
    /// as `unable to find federated bundle "spiffe://x"`.
    #[error("{0}")]
    Unknown(String),
    /// Anything else: connection failures, corrupt rows, driver errors.
    #[error("{0}")]
    Internal(String),
}

impl DataStoreError {
    /// The message, as SPIRE would print it.
    pub fn message(&self) -> &str {
        match self {
            DataStoreError::NotFound(m)
            | DataStoreError::AlreadyExists(m)
            | DataStoreError::InvalidArgument(m)
            | DataStoreError::FailedPrecondition(m)
            | DataStoreError::Conflict(m)
            | DataStoreError::Unknown(m)
            | DataStoreError::Internal(m) => m,
        }
    }

    /// Whether this is [`DataStoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, DataStoreError::NotFound(_))
    }

    /// Whether this is [`DataStoreError::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, DataStoreError::AlreadyExists(_))
    }

    /// `datastore-sql: record not found`.
    pub(crate) fn record_not_found() -> Self {
        DataStoreError::NotFound(RECORD_NOT_FOUND.to_string())
    }

    /// `datastore-sql: <msg>` with an internal code.
    pub(crate) fn sql(msg: impl std::fmt::Display) -> Self {
        DataStoreError::Internal(format!("{SQL_PREFIX}: {msg}"))
    }

    /// `datastore-validation: <msg>` with an invalid-argument code.
    pub(crate) fn validation(msg: impl std::fmt::Display) -> Self {
        DataStoreError::InvalidArgument(format!("{VALIDATION_PREFIX}: {msg}"))
    }

    /// Prefixes the message (`<context>: <message>`), keeping the variant,
    /// as Go's `fmt.Errorf("context: %w", err)` keeps the wrapped code.
    pub(crate) fn context(self, context: &str) -> Self {
        let wrap = |m: String| format!("{context}: {m}");
        match self {
            DataStoreError::NotFound(m) => DataStoreError::NotFound(wrap(m)),
            DataStoreError::AlreadyExists(m) => DataStoreError::AlreadyExists(wrap(m)),
            DataStoreError::InvalidArgument(m) => DataStoreError::InvalidArgument(wrap(m)),
            DataStoreError::FailedPrecondition(m) => DataStoreError::FailedPrecondition(wrap(m)),
            DataStoreError::Conflict(m) => DataStoreError::Conflict(wrap(m)),
            DataStoreError::Unknown(m) => DataStoreError::Unknown(wrap(m)),
            DataStoreError::Internal(m) => DataStoreError::Internal(wrap(m)),
        }
    }
}

impl From<sqlx::Error> for DataStoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => DataStoreError::record_not_found(),
            sqlx::Error::Database(db) => {
                let msg = format!("{SQL_PREFIX}: {}", db.message());
                if matches!(
                    db.kind(),
                    sqlx::error::ErrorKind::UniqueViolation
                        | sqlx::error::ErrorKind::ForeignKeyViolation
                        | sqlx::error::ErrorKind::NotNullViolation
                        | sqlx::error::ErrorKind::CheckViolation
                ) || is_constraint_code(db.code().as_deref())
                {
                    return DataStoreError::AlreadyExists(msg);
                }
                if is_conflict_code(db.code().as_deref()) {
                    return DataStoreError::Conflict(msg);
                }
                DataStoreError::Internal(msg)
            }
            sqlx::Error::PoolTimedOut => DataStoreError::Conflict(format!(
                "{SQL_PREFIX}: timed out waiting for a database connection"
            )),
            other => DataStoreError::sql(other),
        }
    }
}

/// Constraint violations SPIRE maps to `AlreadyExists`: SQLite's
/// `SQLITE_CONSTRAINT` family, PostgreSQL class 23, MySQL `ER_DUP_ENTRY`.
fn is_constraint_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => {
            // SQLite extended codes: 19 (CONSTRAINT), 2067 (UNIQUE), 1555 (PRIMARYKEY).
            matches!(
                c,
                "19" | "275" | "531" | "787" | "1043" | "1299" | "1555" | "1811" | "2067"
            ) || (c.len() == 5 && c.starts_with("23"))
                || c == "1062"
        }
        None => false,
    }
}

/// Errors a retry may fix: SQLite BUSY/LOCKED (5, 6 and extended forms),
/// PostgreSQL serialization failures and deadlocks, MySQL deadlocks and lock
/// wait timeouts.
fn is_conflict_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("5" | "6" | "261" | "517" | "262" | "40001" | "40P01" | "1213" | "1205")
    )
}

/// Result alias.
pub type Result<T, E = DataStoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes() {
        let e = DataStoreError::record_not_found();
        assert_eq!(e.to_string(), "datastore-sql: record not found");
        assert!(e.is_not_found());
        let v = DataStoreError::validation("invalid registration entry: missing selector list");
        assert_eq!(
            v.to_string(),
            "datastore-validation: invalid registration entry: missing selector list"
        );
        assert!(matches!(v, DataStoreError::InvalidArgument(_)));
        let c =
            DataStoreError::record_not_found().context("unable to fetch federation relationship");
        assert!(c.is_not_found());
        assert_eq!(
            c.to_string(),
            "unable to fetch federation relationship: datastore-sql: record not found"
        );
        assert!(is_constraint_code(Some("23505")));
        assert!(is_constraint_code(Some("2067")));
        assert!(is_constraint_code(Some("1062")));
        assert!(!is_constraint_code(Some("40001")));
        assert!(is_conflict_code(Some("40P01")));
    }
}
