//! grpc-go's texts for status codes: `codes.Code.String()` and the `rpc error: code = …
//! desc = …` form in which a status error prints.

/// The canonical names, indexed by code number (0 to 16).
const NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// `codes.Code(code).String()`: the name of a known code, `Code(<n>)` for any other.
pub fn code_name(code: i32) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("Code({code})"), |n| (*n).to_owned())
}

/// How grpc-go prints a status error: `rpc error: code = <name> desc = <message>`.
pub fn status_error(code: i32, message: &str) -> String {
    format!("rpc error: code = {} desc = {message}", code_name(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_codes() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(1), "Canceled");
        assert_eq!(code_name(16), "Unauthenticated");
        assert_eq!(code_name(17), "Code(17)");
        assert_eq!(code_name(-1), "Code(-1)");
        assert_eq!(
            status_error(3, "bad"),
            "rpc error: code = InvalidArgument desc = bad"
        );
    }
}
