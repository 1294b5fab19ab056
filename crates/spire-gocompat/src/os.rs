//! Go's `os` and `syscall` error texts: what an `*os.PathError` or a bare `syscall.Errno`
//! prints, for messages SPIRE users see (file and process errors).

use std::io;

/// What Go programs (SPIRE's included) do when they start, since Go 1.19: raise the soft
/// limit on open files to the hard limit, so that a server can hold thousands of agent
/// connections without `EMFILE` on systems whose soft limit is 1024. Returns the soft limit
/// now in force, `None` when it cannot be read or set.
pub fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    Some(hard)
}

/// Go's text for an errno (the `syscall.Errno.Error()` table on Linux).
pub fn errno_text(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return match err.kind() {
            io::ErrorKind::InvalidInput => "invalid argument".to_owned(),
            io::ErrorKind::NotFound => "no such file or directory".to_owned(),
            io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            io::ErrorKind::UnexpectedEof => "EOF".to_owned(),
            _ => err.to_string(),
        };
    };
    let known = match code {
        1 => "operation not permitted",
        2 => "no such file or directory",
        4 => "interrupted system call",
        5 => "input/output error",
        9 => "bad file descriptor",
        11 => "resource temporarily unavailable",
        12 => "cannot allocate memory",
        13 => "permission denied",
        17 => "file exists",
        20 => "not a directory",
        21 => "is a directory",
        22 => "invalid argument",
        23 => "too many open files in system",
        24 => "too many open files",
        27 => "file too large",
        28 => "no space left on device",
        30 => "read-only file system",
        32 => "broken pipe",
        36 => "file name too long",
        40 => "too many levels of symbolic links",
        88 => "socket operation on non-socket",
        91 => "protocol wrong type for socket",
        98 => "address already in use",
        104 => "connection reset by peer",
        110 => "connection timed out",
        111 => "connection refused",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Go's `*os.PathError` text: `<op> <path>: <errno>`.
pub fn path_error(op: &str, path: &str, err: &io::Error) -> String {
    format!("{op} {path}: {}", errno_text(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_and_path_error_texts() {
        assert_eq!(
            errno_text(&io::Error::from_raw_os_error(2)),
            "no such file or directory"
        );
        assert_eq!(
            path_error("open", "/x", &io::Error::from_raw_os_error(13)),
            "open /x: permission denied"
        );
        assert_eq!(
            errno_text(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            "EOF"
        );
    }
}

#[cfg(test)]
mod limit_tests {
    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
            return;
        };
        // Lower the soft limit (allowed without privileges), then raise it back.
        let lowered = soft.min(hard).min(256);
        if setrlimit(Resource::RLIMIT_NOFILE, lowered, hard).is_ok() && lowered < hard {
            assert_eq!(super::raise_open_files_limit(), Some(hard));
            assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).ok(), Some((hard, hard)));
        }
        assert_eq!(super::raise_open_files_limit(), Some(hard));
    }
}
