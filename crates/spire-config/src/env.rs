//! `-expandEnv`: SPIRE expands `$VAR` and `${VAR}` in the configuration text with Go's
//! `os.Expand` before parsing (unset variables become empty; `$$` stays `$`).

use std::collections::{BTreeMap, HashMap};

/// Where `-expandEnv` looks variables up. Implemented for maps and closures; use
/// [`ProcessEnv`] for the process environment.
pub trait EnvLookup {
    /// The variable's value, or `None` when it is not set.
    fn get(&self, key: &str) -> Option<String>;
}

impl EnvLookup for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvLookup for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key)
    }
}

/// The process environment (read-only).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
    }
}

fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_alnum(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Go's `getShellName`: the variable name after a `$` and how many bytes it used.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        for i in 1..b.len() {
            if b[i] == b'}' {
                if i == 1 {
                    return ("", 2);
                }
                return (&s[1..i], i + 1);
            }
        }
        return ("", 1);
    }
    if is_special(b[0]) {
        return (&s[0..1], 1);
    }
    let n = b.iter().take_while(|c| is_alnum(**c)).count();
    (&s[..n], n)
}

/// Expands `$VAR` / `${VAR}` like SPIRE's `config.ExpandEnv` (Go's `os.Expand` where `$$`
/// gives `$`): unset variables expand to the empty string, invalid syntax such as `${}` is
/// dropped, and a `$` not followed by a name is kept.
pub fn expand_env(text: &str, env: &dyn EnvLookup) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0; // start of the not-yet-copied text
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&text[i..j]);
            let (name, w) = shell_name(&text[j + 1..]);
            if name.is_empty() && w > 0 {
                // Bad syntax: the characters are dropped.
            } else if name.is_empty() || name == "$" {
                // `$` not followed by a name is kept; SPIRE maps `$$` to `$`.
                out.push('$');
            } else {
                out.push_str(&env.get(name).unwrap_or_default());
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    if i < text.len() {
        out.push_str(&text[i..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_go() {
        let env: HashMap<String, String> = [("TD", "example.org"), ("A_1", "x"), ("E", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cases = [
            ("trust_domain = \"$TD\"", "trust_domain = \"example.org\""),
            ("${TD}/x", "example.org/x"),
            ("$A_1$A_1", "xx"),
            ("$UNSET-", "-"),
            ("$$", "$"),
            ("$$TD", "$TD"),
            ("a$", "a$"),
            ("${}", ""),
            ("${TD", "TD"),
            ("$ x", "$ x"),
            ("$1", ""),
            ("${TD}${E}!", "example.org!"),
            ("é$TDé", "éexample.orgé"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_env(input, &env), want, "{input}");
        }
    }
}
