//! Reading configuration files with SPIRE's error messages.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use crate::env::{EnvLookup, expand_env};
use crate::error::ConfigError;

/// Go's wording of an I/O error on `path` during `op` (`open`, `read`).
pub(crate) fn go_io_message(op: &str, path: &Path, err: &std::io::Error) -> String {
    let p = path.display();
    match err.kind() {
        ErrorKind::NotFound => format!("{op} {p}: no such file or directory"),
        ErrorKind::PermissionDenied => format!("{op} {p}: permission denied"),
        ErrorKind::IsADirectory => format!("read {p}: is a directory"),
        ErrorKind::InvalidData => format!("{op} {p}: invalid UTF-8"),
        _ => {
            let text = err.to_string();
            let text = match text.find(" (os error") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            let mut chars = text.chars();
            let lowered = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => String::new(),
            };
            format!("{op} {p}: {lowered}")
        }
    }
}

/// Reads a configuration file as SPIRE's `ParseFile` does: a missing file gives "could not
/// find config file ABS: please use the -config flag", other failures "unable to read
/// configuration at ...". With `expand_env`, `$VAR`/`${VAR}` are expanded afterwards.
pub fn read_config_file(
    path: &Path,
    expand: Option<&dyn EnvLookup>,
) -> Result<String, ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ConfigError::NotFound {
                path: absolute(path),
            });
        }
        Err(e) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                message: go_io_message("open", path, &e),
            });
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
            let column = 1 + valid.iter().rev().take_while(|b| **b != b'\n').count();
            return Err(ConfigError::Parse {
                path: Some(path.to_owned()),
                line,
                column,
                message: format!("At {line}:{column}: illegal UTF-8 encoding"),
            });
        }
    };
    Ok(match expand {
        Some(env) => expand_env(&text, env),
        None => text,
    })
}

/// Go's `filepath.Abs`: joined with the working directory and cleaned (no symlink
/// resolution).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_owned(),
        }
    };
    clean(&joined)
}

/// Go's `filepath.Clean` for absolute or relative paths.
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}
