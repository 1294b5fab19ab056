//! Shared `type:value` selector strings for the server's index and the agent's cache.

use std::collections::HashSet;

use arcstr::ArcStr;

/// A selector as an index holds it: one `type:value` string (a selector type never
/// contains `:`), shared by every entry that has the selector.
pub type SelectorKey = ArcStr;

/// Writes `type:value` into `buf`, which is cleared first (to build keys in one reused
/// buffer).
pub fn write_selector_key(buf: &mut String, selector_type: &str, value: &str) {
    buf.clear();
    buf.reserve(selector_type.len() + 1 + value.len());
    buf.push_str(selector_type);
    buf.push(':');
    buf.push_str(value);
}

/// `type:value` for a selector's two parts.
pub fn selector_key(selector_type: &str, value: &str) -> String {
    let mut k = String::new();
    write_selector_key(&mut k, selector_type, value);
    k
}

/// The two parts of a `type:value` key. The split is exact because a selector type never
/// contains `:`.
pub fn split_selector_key(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
}

/// Shares one allocation per distinct string. Strings stay while anything else holds
/// them; [`Interner::sweep`] drops those nothing else holds any more, and runs by itself
/// whenever the set has doubled since the last one.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<ArcStr, foldhash::fast::RandomState>,
    /// Size after the last sweep.
    swept_at: usize,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn intern(&mut self, s: &str) -> SelectorKey {
        if let Some(k) = self.set.get(s) {
            return k.clone();
        }
        if self.set.len() >= 2 * self.swept_at.max(1024) {
            self.sweep();
        }
        let k = ArcStr::from(s);
        self.set.insert(k.clone());
        k
    }

    /// Makes room for `n` more strings.
    pub fn reserve(&mut self, n: usize) {
        self.set.reserve(n);
    }

    /// Drops the strings only the interner holds.
    pub fn sweep(&mut self) {
        self.set
            .retain(|k| ArcStr::strong_count(k).is_none_or(|n| n > 1));
        self.swept_at = self.set.len();
    }

    /// Distinct strings held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no string is held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_colon() {
        let k = selector_key("k8s", "pod-label:app:web");
        assert_eq!(k, "k8s:pod-label:app:web");
        assert_eq!(split_selector_key(&k), ("k8s", "pod-label:app:web"));
        let mut buf = String::from("left over");
        write_selector_key(&mut buf, "unix", "uid:0");
        assert_eq!(buf, "unix:uid:0");
    }

    #[test]
    fn shares_and_sweeps() {
        let mut i = Interner::default();
        let a = i.intern("k8s:ns:a");
        let b = i.intern("k8s:ns:a");
        assert!(ArcStr::ptr_eq(&a, &b));
        drop(i.intern("k8s:ns:b"));
        assert_eq!(i.len(), 2);
        i.sweep();
        assert_eq!(i.len(), 1);
        drop((a, b));
        i.sweep();
        assert!(i.is_empty());
    }

    #[test]
    fn sweeps_by_itself_when_the_set_doubles() {
        let mut i = Interner::default();
        // The first sweep comes at 2 048 strings (twice the floor of 1 024).
        for n in 0..2048 {
            drop(i.intern(&format!("unix:uid:{n}")));
        }
        assert_eq!(i.len(), 2048);
        let kept = i.intern("unix:uid:kept");
        // The next string found 2 048 unused ones and swept them first.
        assert_eq!(i.len(), 1);
        assert!(ArcStr::ptr_eq(&kept, &i.intern("unix:uid:kept")));
    }
}
