//! Go's `path.Clean` (and `filepath.Clean` on Unix): the shortest equivalent slash path,
//! used by the CLI's file arguments and by the templates' `clean` function.

/// Go's `path.Clean`.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clean_is_gos() {
        for (i, o) in [
            ("", "."),
            ("a/../..", ".."),
            ("/../a//b/./c/", "/a/b/c"),
            ("a/b/../../..", ".."),
            ("./", "."),
        ] {
            assert_eq!(super::clean(i), o, "{i:?}");
        }
    }
}
