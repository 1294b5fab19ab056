//! The API boundary's one error type. Handlers say what went wrong as an [`ApiError`];
//! the single conversion into `tonic::Status` (and [`ApiError::item_status`] for the
//! per-item results of batch RPCs) chooses the gRPC code, writes SPIRE's message
//! (`msg: cause`, a NotFound without its cause) and logs it once as SPIRE's `api.MakeErr`
//! does (`Invalid argument: msg` for InvalidArgument, the capitalised message otherwise).

use std::fmt::Display;

use spire_datastore::DataStoreError;
use spire_plugin::PluginError;
use spire_proto::spire::api::types;
use tonic::{Code, Status};

/// What a handler reports: SPIRE's message and, when there is one, its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// SPIRE's message, lower-case as SPIRE writes it.
    pub msg: String,
    /// The underlying error's text.
    pub cause: Option<String>,
}

/// An API error, by kind.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed or names something invalid.
    InvalidArgument(Detail),
    /// What the request names does not exist.
    NotFound(Detail),
    /// What the request creates exists already.
    AlreadyExists(Detail),
    /// The caller may not do this.
    PermissionDenied(Detail),
    /// The server's state does not allow this now.
    FailedPrecondition(Detail),
    /// The server is not ready.
    Unavailable(Detail),
    /// The server cannot do this.
    Unimplemented(Detail),
    /// The caller asked for more than a limit allows.
    ResourceExhausted(Detail),
    /// The server failed.
    Internal(Detail),
    /// The datastore failed; the code follows the datastore's error: its NotFound,
    /// AlreadyExists, InvalidArgument and FailedPrecondition are kept, anything else is
    /// Internal (a plain error in SPIRE's sqlstore).
    DataStore {
        /// SPIRE's message.
        msg: String,
        /// The datastore's error.
        source: DataStoreError,
    },
    /// A plugin failed; its code is kept and its message is the message.
    Plugin(PluginError),
    /// The caller went away.
    Cancelled(Detail),
    /// An error SPIRE returns without logging it (stream protocol errors).
    Unlogged(Box<ApiError>),
}

macro_rules! constructors {
    ($($fn_name:ident => $variant:ident),* $(,)?) => {
        impl ApiError {
            $(
                #[doc = concat!("A `", stringify!($variant), "` error with SPIRE's message `msg`.")]
                pub fn $fn_name(msg: impl Into<String>) -> Self {
                    Self::$variant(Detail { msg: msg.into(), cause: None })
                }
            )*
        }
    };
}

constructors! {
    invalid_argument => InvalidArgument,
    not_found => NotFound,
    already_exists => AlreadyExists,
    permission_denied => PermissionDenied,
    failed_precondition => FailedPrecondition,
    unavailable => Unavailable,
    unimplemented => Unimplemented,
    resource_exhausted => ResourceExhausted,
    cancelled => Cancelled,
    internal => Internal,
}

impl ApiError {
    /// The datastore failed while doing `msg`.
    pub fn datastore(msg: impl Into<String>, source: DataStoreError) -> Self {
        Self::DataStore {
            msg: msg.into(),
            source,
        }
    }

    /// The same error, returned without being logged.
    #[must_use]
    pub fn unlogged(self) -> Self {
        Self::Unlogged(Box::new(self))
    }

    /// The same error, caused by `cause`.
    #[must_use]
    pub fn with(mut self, cause: impl Display) -> Self {
        if let Some(d) = self.detail_mut() {
            d.cause = Some(cause.to_string());
        }
        self
    }

    fn detail_mut(&mut self) -> Option<&mut Detail> {
        match self {
            Self::InvalidArgument(d)
            | Self::NotFound(d)
            | Self::AlreadyExists(d)
            | Self::PermissionDenied(d)
            | Self::FailedPrecondition(d)
            | Self::Unavailable(d)
            | Self::Unimplemented(d)
            | Self::ResourceExhausted(d)
            | Self::Cancelled(d)
            | Self::Internal(d) => Some(d),
            Self::Unlogged(e) => e.detail_mut(),
            Self::DataStore { .. } | Self::Plugin(_) => None,
        }
    }

    /// The gRPC code, SPIRE's message and the cause's text.
    fn parts(&self) -> (Code, &str, Option<String>) {
        fn plain(code: Code, d: &Detail) -> (Code, &str, Option<String>) {
            (code, d.msg.as_str(), d.cause.clone())
        }
        match self {
            Self::InvalidArgument(d) => plain(Code::InvalidArgument, d),
            Self::NotFound(d) => plain(Code::NotFound, d),
            Self::AlreadyExists(d) => plain(Code::AlreadyExists, d),
            Self::PermissionDenied(d) => plain(Code::PermissionDenied, d),
            Self::FailedPrecondition(d) => plain(Code::FailedPrecondition, d),
            Self::Unavailable(d) => plain(Code::Unavailable, d),
            Self::Unimplemented(d) => plain(Code::Unimplemented, d),
            Self::ResourceExhausted(d) => plain(Code::ResourceExhausted, d),
            Self::Internal(d) => plain(Code::Internal, d),
            Self::DataStore { msg, source } => {
                let code = match source {
                    DataStoreError::NotFound(_) => Code::NotFound,
                    DataStoreError::AlreadyExists(_) => Code::AlreadyExists,
                    DataStoreError::InvalidArgument(_) => Code::InvalidArgument,
                    DataStoreError::FailedPrecondition(_) => Code::FailedPrecondition,
                    _ => Code::Internal,
                };
                (code, msg.as_str(), Some(source.to_string()))
            }
            Self::Plugin(e) => (plugin_code(e), e.message.as_str(), None),
            Self::Cancelled(d) => plain(Code::Cancelled, d),
            Self::Unlogged(e) => e.parts(),
        }
    }

    /// Logs the error as SPIRE does and gives the code and the status message.
    fn report(self) -> (Code, String) {
        let (code, msg, cause) = self.parts();
        match (code, &cause) {
            _ if matches!(self, Self::Unlogged(_)) => {}
            (Code::InvalidArgument, Some(e)) => {
                tracing::error!(error = %e, "Invalid argument: {msg}")
            }
            (Code::InvalidArgument, None) => tracing::error!("Invalid argument: {msg}"),
            (Code::NotFound, _) | (_, None) => tracing::error!("{}", capitalize(msg)),
            (_, Some(e)) => tracing::error!(error = %e, "{}", capitalize(msg)),
        }
        let full = match (code, cause) {
            (Code::NotFound, _) | (_, None) => msg.to_string(),
            (_, Some(e)) => format!("{msg}: {e}"),
        };
        (code, full)
    }

    /// The per-item status of batch RPCs (logged the same way).
    pub fn item_status(self) -> types::Status {
        let (code, message) = self.report();
        types::Status {
            code: code as i32,
            message,
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let (code, message) = e.report();
        Status::new(code, message)
    }
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        Self::Plugin(e)
    }
}

/// `OK` as SPIRE writes it in batch results.
pub fn ok() -> types::Status {
    types::Status {
        code: 0,
        message: "OK".to_string(),
    }
}

fn plugin_code(e: &PluginError) -> Code {
    Code::from_i32(e.code.grpc())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_spire() {
        let st: Status = ApiError::invalid_argument("invalid SPIFFE ID")
            .with("bad")
            .into();
        assert_eq!(
            (st.code(), st.message()),
            (Code::InvalidArgument, "invalid SPIFFE ID: bad")
        );
        let st: Status = ApiError::not_found("entry not found").with("x").into();
        assert_eq!(
            (st.code(), st.message()),
            (Code::NotFound, "entry not found")
        );
        let st: Status = ApiError::internal("failed to sign").into();
        assert_eq!(
            (st.code(), st.message()),
            (Code::Internal, "failed to sign")
        );
    }

    #[test]
    fn datastore_errors_keep_their_kind_or_become_internal() {
        let code = |e| Status::from(ApiError::datastore("m", e)).code();
        assert_eq!(code(DataStoreError::NotFound("x".into())), Code::NotFound);
        assert_eq!(
            code(DataStoreError::AlreadyExists("x".into())),
            Code::AlreadyExists
        );
        assert_eq!(
            code(DataStoreError::InvalidArgument("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code(DataStoreError::FailedPrecondition("x".into())),
            Code::FailedPrecondition
        );
        assert_eq!(code(DataStoreError::Internal("x".into())), Code::Internal);
        let st = ApiError::datastore("failed to delete", DataStoreError::Internal("boom".into()))
            .item_status();
        assert_eq!(st.message, "failed to delete: boom");
    }
}
