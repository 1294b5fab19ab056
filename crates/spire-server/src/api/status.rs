//! Errors as SPIRE's APIs report them: `msg: cause` in the status message, logged once
//! (`Invalid argument: msg` for InvalidArgument, the capitalised message otherwise), and the
//! per-item `types.Status` of batch RPCs.

use std::fmt::Display;

use spire_proto::spire::api::types;
use tonic::{Code, Status};

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Builds the status SPIRE's `api.MakeErr` returns, and logs it the same way.
pub fn make_err(code: Code, msg: &str, cause: Option<&dyn Display>) -> Status {
    let full = match (code, cause) {
        (Code::NotFound, _) | (_, None) => msg.to_string(),
        (_, Some(e)) => format!("{msg}: {e}"),
    };
    match code {
        Code::InvalidArgument => match cause {
            Some(e) => tracing::error!(error = %e, "Invalid argument: {msg}"),
            None => tracing::error!("Invalid argument: {msg}"),
        },
        _ => match cause {
            Some(e) if code != Code::NotFound => tracing::error!(error = %e, "{}", capitalize(msg)),
            _ => tracing::error!("{}", capitalize(msg)),
        },
    }
    Status::new(code, full)
}

/// `make_err` without a cause.
pub fn err(code: Code, msg: &str) -> Status {
    make_err(code, msg, None)
}

/// `make_err` with a cause.
pub fn err_with(code: Code, msg: &str, cause: impl Display) -> Status {
    make_err(code, msg, Some(&cause))
}

/// The per-item status of batch RPCs.
pub fn item_status(code: Code, msg: &str, cause: Option<&dyn Display>) -> types::Status {
    if code == Code::Ok {
        return ok();
    }
    let s = make_err(code, msg, cause);
    types::Status {
        code: code as i32,
        message: s.message().to_string(),
    }
}

/// `OK` as SPIRE writes it in batch results.
pub fn ok() -> types::Status {
    types::Status {
        code: 0,
        message: "OK".to_string(),
    }
}

/// Maps a datastore error to a gRPC code the way SPIRE's sqlstore errors surface: the codes
/// its datastore attaches (not found, already exists, validation, precondition) are kept,
/// every other failure (a plain error in Go, `codes.Unknown`) is reported as Internal. The
/// only such mapping: the datastore itself carries no gRPC codes.
pub fn ds_code(e: &spire_datastore::DataStoreError) -> Code {
    use spire_datastore::DataStoreError as E;
    match e {
        E::NotFound(_) => Code::NotFound,
        E::AlreadyExists(_) => Code::AlreadyExists,
        E::InvalidArgument(_) => Code::InvalidArgument,
        E::FailedPrecondition(_) => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}
