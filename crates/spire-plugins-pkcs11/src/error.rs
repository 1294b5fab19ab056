//! The KeyManager's errors, and how PKCS#11 return values are named in them.

use cryptoki::error::{Error as CkError, RvError};
use spire_plugin::{Code, PluginError};

/// Why a PKCS#11 operation failed. Messages name the token, never the PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// `plugin_data` is incomplete or contradictory.
    #[error("{0}")]
    Config(String),
    /// `user_pin_file` cannot be used.
    #[error("unable to read user_pin_file {path}: {reason}")]
    PinFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The module cannot be loaded or initialized.
    #[error("unable to load PKCS#11 module {path}: {reason}")]
    Module {
        /// `module_path`.
        path: String,
        /// Why.
        reason: String,
    },
    /// No token has the configured label.
    #[error("no PKCS#11 token labelled {label:?} (tokens present: {present})")]
    NoSuchToken {
        /// `token_label`.
        label: String,
        /// The labels that are there, for the operator.
        present: String,
    },
    /// The configured slot has no token (or does not exist).
    #[error("no PKCS#11 token in slot {slot}: {reason}")]
    NoSuchSlot {
        /// `slot_id`.
        slot: u64,
        /// Why.
        reason: String,
    },
    /// `C_Login` refused the PIN.
    #[error("unable to log in to PKCS#11 token {token}: the user PIN is incorrect")]
    PinIncorrect {
        /// The token.
        token: String,
    },
    /// The token locked the user PIN.
    #[error("unable to log in to PKCS#11 token {token}: the user PIN is locked")]
    PinLocked {
        /// The token.
        token: String,
    },
    /// The token went away (removed, or its sessions were closed) and could not be opened
    /// again.
    #[error("PKCS#11 token {token} is not available ({detail}); was it removed?")]
    Unavailable {
        /// The token.
        token: String,
        /// The PKCS#11 return value, or what was seen.
        detail: String,
    },
    /// Every session of the token stayed busy.
    #[error("no session of PKCS#11 token {token} came free within {secs}s")]
    Busy {
        /// The token.
        token: String,
        /// How long was waited.
        secs: u64,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {call} failed on token {token}: {rv}")]
    Call {
        /// What was called.
        call: &'static str,
        /// The token.
        token: String,
        /// The PKCS#11 return value (or the wrapper's error).
        rv: String,
    },
    /// The key's objects are gone from the token.
    #[error("key {label:?} is no longer in PKCS#11 token {token}")]
    KeyGone {
        /// The key's label.
        label: String,
        /// The token.
        token: String,
    },
    /// A key object whose public half cannot be read or is not a SPIRE key type.
    #[error("key {label:?} in PKCS#11 token {token} is unusable: {reason}")]
    BadKey {
        /// The key's label.
        label: String,
        /// The token.
        token: String,
        /// Why.
        reason: String,
    },
    /// The key cannot make the requested signature.
    #[error("{alg} signatures cannot be made with a {key} key")]
    AlgorithmMismatch {
        /// The key's kind.
        key: String,
        /// The algorithm asked for.
        alg: String,
    },
    /// A key ID SPIRE would not use.
    #[error("{0}")]
    InvalidArgument(String),
}

impl From<Pkcs11Error> for PluginError {
    fn from(e: Pkcs11Error) -> Self {
        let code = match &e {
            Pkcs11Error::Config(_)
            | Pkcs11Error::PinFile { .. }
            | Pkcs11Error::InvalidArgument(_)
            | Pkcs11Error::AlgorithmMismatch { .. } => Code::InvalidArgument,
            Pkcs11Error::Module { .. }
            | Pkcs11Error::NoSuchToken { .. }
            | Pkcs11Error::NoSuchSlot { .. }
            | Pkcs11Error::PinIncorrect { .. }
            | Pkcs11Error::PinLocked { .. } => Code::FailedPrecondition,
            Pkcs11Error::Unavailable { .. } | Pkcs11Error::Busy { .. } => Code::Unavailable,
            Pkcs11Error::KeyGone { .. } => Code::NotFound,
            Pkcs11Error::Call { .. } | Pkcs11Error::BadKey { .. } => Code::Internal,
        };
        PluginError::new(code, e.to_string())
    }
}

/// `CKR_PIN_INCORRECT` for `RvError::PinIncorrect`: the name operators find in their HSM's
/// documentation, rather than the wrapper's paragraph-long description.
pub(crate) fn rv_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => return format!("CKR_VENDOR_DEFINED({code:#x})"),
        RvError::UnknownErrorCode(code) => {
            return format!("unknown PKCS#11 return value {code:#x}");
        }
        _ => {}
    }
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A cryptoki error named for messages.
pub(crate) fn ck_name(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, _) => rv_name(*rv),
        other => other.to_string(),
    }
}

/// The PKCS#11 return value of an error from the module, if it is one.
pub(crate) fn rv_of(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// How a failed call is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The session (or the whole token) is gone: open a new session, log in again, retry.
    Reopen,
    /// An object handle is stale: find the object again, retry.
    Refind,
    /// Nothing to retry.
    Fail,
}

/// What to do after `e`.
pub(crate) fn recovery(e: &CkError) -> Recovery {
    match rv_of(e) {
        Some(
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::UserNotLoggedIn
            | RvError::CryptokiNotInitialized,
        ) => Recovery::Reopen,
        Some(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid) => Recovery::Refind,
        _ => Recovery::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_values_are_named_as_in_the_standard() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(
            rv_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED(0x80000001)"
        );
    }

    #[test]
    fn codes_follow_the_kind_of_failure() {
        let e: PluginError = Pkcs11Error::PinIncorrect {
            token: "\"t\"".into(),
        }
        .into();
        assert_eq!(e.code, Code::FailedPrecondition);
        assert_eq!(
            e.message,
            "unable to log in to PKCS#11 token \"t\": the user PIN is incorrect"
        );
        let e: PluginError = Pkcs11Error::Unavailable {
            token: "\"t\"".into(),
            detail: "CKR_TOKEN_NOT_PRESENT".into(),
        }
        .into();
        assert_eq!(e.code, Code::Unavailable);
    }
}
