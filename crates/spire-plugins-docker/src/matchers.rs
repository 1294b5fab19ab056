//! The legacy `container_id_cgroup_matchers`: whole-path patterns over the cgroup paths of
//! `/proc/<pid>/cgroup`, with `*` for one path segment and `<id>` for the segment holding
//! the container ID (SPIRE 1.13's `dockerfinder`).

use regex::Regex;

const WILDCARD: &str = "*";
const ID_TOKEN: &str = "<id>";

/// Compiled matchers, tried in order; the first that matches a path names its container.
#[derive(Debug, Clone)]
pub struct Matchers {
    patterns: Vec<Regex>,
}

impl Matchers {
    /// Compiles `patterns` with SPIRE's checks (at least one, `<id>` exactly once in each,
    /// no two that could match the same path).
    pub fn new(patterns: &[String]) -> Result<Matchers, String> {
        if patterns.is_empty() {
            return Err("dockerfinder: at least 1 pattern must be supplied".into());
        }
        let ambiguous = ambiguous(patterns);
        if !ambiguous.is_empty() {
            let quoted: Vec<String> = ambiguous
                .iter()
                .map(|p| spire_gocompat::strconv::quote(p))
                .collect();
            return Err(format!(
                "dockerfinder: patterns must not be ambiguous: [{}]",
                quoted.join(" ")
            ));
        }
        let mut compiled = Vec::with_capacity(patterns.len());
        for p in patterns {
            compiled.push(compile(p)?);
        }
        Ok(Matchers { patterns: compiled })
    }

    /// The container ID `path` names, if a pattern matches it (possibly empty).
    pub fn find(&self, path: &str) -> Option<String> {
        self.patterns.iter().find_map(|re| {
            re.captures(path)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string())
        })
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    let mut ids = 0;
    let parts: Vec<String> = pattern
        .split('/')
        .map(|e| match e {
            WILDCARD => "[^/]*".to_string(),
            ID_TOKEN => {
                ids += 1;
                "([^/]*)".to_string()
            }
            other => regex::escape(other),
        })
        .collect();
    if ids != 1 {
        return Err(format!(
            "pattern {} must contain the container id token {} exactly once",
            spire_gocompat::strconv::quote(pattern),
            spire_gocompat::strconv::quote(ID_TOKEN)
        ));
    }
    Regex::new(&format!("^{}$", parts.join("/")))
        .map_err(|e| format!("failed to create container id fetcher: {e}"))
}

/// Every pattern some other pattern is equivalent to (same segment count; each segment
/// equal, or either side a wildcard or the ID token), in first-seen order.
fn ambiguous(patterns: &[String]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (i, a) in patterns.iter().enumerate() {
        for b in &patterns[i + 1..] {
            if equivalent(a, b) {
                for p in [a, b] {
                    if !found.contains(p) {
                        found.push(p.clone());
                    }
                }
            }
        }
    }
    found
}

fn equivalent(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || [*x, *y].contains(&WILDCARD) || [*x, *y].contains(&ID_TOKEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &[&str]) -> Result<Matchers, String> {
        Matchers::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn finds_ids_by_segment() {
        let f = m(&["/docker/<id>", "/my.slice/*/<id>/*"]).unwrap();
        assert_eq!(f.find("/docker/abc").as_deref(), Some("abc"));
        assert_eq!(f.find("/my.slice/x/abc/y").as_deref(), Some("abc"));
        assert_eq!(f.find("/docker/abc/more"), None);
        assert_eq!(f.find("/docker/"), Some(String::new()));
        assert_eq!(f.find("/user.slice"), None);
        // Regex metacharacters in a pattern are literal.
        let f = m(&["/a.b/<id>"]).unwrap();
        assert_eq!(f.find("/aXb/c"), None);
        assert_eq!(f.find("/a.b/c").as_deref(), Some("c"));
    }

    #[test]
    fn refuses_bad_pattern_sets() {
        assert_eq!(
            m(&[]).unwrap_err(),
            "dockerfinder: at least 1 pattern must be supplied"
        );
        assert_eq!(
            m(&["/docker/*"]).unwrap_err(),
            "pattern \"/docker/*\" must contain the container id token \"<id>\" exactly once"
        );
        assert_eq!(
            m(&["/<id>/<id>"]).unwrap_err(),
            "pattern \"/<id>/<id>\" must contain the container id token \"<id>\" exactly once"
        );
        assert_eq!(
            m(&["/docker/<id>", "/other", "/*/<id>"]).unwrap_err(),
            "dockerfinder: patterns must not be ambiguous: [\"/docker/<id>\" \"/*/<id>\"]"
        );
    }
}
