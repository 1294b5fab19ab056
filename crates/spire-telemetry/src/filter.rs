//! go-metrics' filters: `AllowedPrefixes`/`BlockedPrefixes` matched against the key joined
//! with `.` (prefix included; the longest matching prefix decides, a blocked prefix winning
//! over the same allowed one; no match allows), and `AllowedLabels`/`BlockedLabels` by name.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// prefix → allowed.
    prefixes: BTreeMap<String, bool>,
    allowed_labels: Option<HashSet<String>>,
    blocked_labels: HashSet<String>,
}

impl Filter {
    pub(crate) fn new(
        allowed_prefixes: &[String],
        blocked_prefixes: &[String],
        allowed_labels: &[String],
        blocked_labels: &[String],
    ) -> Self {
        let mut prefixes = BTreeMap::new();
        for p in allowed_prefixes {
            prefixes.insert(p.clone(), true);
        }
        for p in blocked_prefixes {
            prefixes.insert(p.clone(), false);
        }
        Filter {
            prefixes,
            // An empty list reads as "not set": SPIRE's HCL decoding leaves it nil.
            allowed_labels: (!allowed_labels.is_empty())
                .then(|| allowed_labels.iter().cloned().collect()),
            blocked_labels: blocked_labels.iter().cloned().collect(),
        }
    }

    /// Whether a metric with these key parts is emitted.
    pub(crate) fn allows(&self, parts: &[&str]) -> bool {
        if self.prefixes.is_empty() {
            return true;
        }
        let dotted = parts.join(".");
        // The longest configured prefix of `dotted`.
        let mut best: Option<(&str, bool)> = None;
        for (prefix, allowed) in &self.prefixes {
            if dotted.starts_with(prefix.as_str())
                && best.is_none_or(|(b, _)| prefix.len() > b.len())
            {
                best = Some((prefix, *allowed));
            }
        }
        best.is_none_or(|(_, allowed)| allowed)
    }

    pub(crate) fn label_allowed(&self, name: &str) -> bool {
        if self.blocked_labels.contains(name) {
            return false;
        }
        match &self.allowed_labels {
            Some(allowed) => allowed.contains(name),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn no_prefixes_allow_everything() {
        assert!(Filter::default().allows(&["spire_server", "rpc"]));
    }

    #[test]
    fn longest_prefix_decides() {
        let f = Filter::new(
            &s(&["spire_server.rpc.agent"]),
            &s(&["spire_server.rpc"]),
            &[],
            &[],
        );
        assert!(!f.allows(&["spire_server", "rpc", "entry", "v1"]));
        assert!(f.allows(&["spire_server", "rpc", "agent", "v1"]));
        assert!(f.allows(&["spire_server", "datastore"]));
        // Prefixes are plain string prefixes of the dotted key, as go-metrics' radix tree.
        assert!(!f.allows(&["spire_server", "rpcx"]));
    }

    #[test]
    fn blocked_wins_over_the_same_allowed_prefix() {
        let f = Filter::new(&s(&["spire_agent.a"]), &s(&["spire_agent.a"]), &[], &[]);
        assert!(!f.allows(&["spire_agent", "a"]));
    }

    #[test]
    fn labels_blocked_then_allowed() {
        let f = Filter::new(&[], &[], &s(&["status", "host"]), &s(&["host"]));
        assert!(f.label_allowed("status"));
        assert!(!f.label_allowed("host"));
        assert!(!f.label_allowed("attestor"));
        let open = Filter::new(&[], &[], &[], &s(&["host"]));
        assert!(open.label_allowed("attestor"));
        assert!(!open.label_allowed("host"));
    }
}
