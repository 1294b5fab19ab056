//! List filters as SQL conditions: the set match (Any, Superset, Subset, Exact) that entry
//! and agent selector filters share, and the entry filter of list, count and the
//! similar-entry lookup.

use std::collections::HashSet;

use spiffe_core::{SpiffeId, TrustDomain};

use super::db::Sql;
use crate::error::{DataStoreError, Result};
use crate::model::{ByFederatesWith, BySelectors, MatchBehavior};

/// Entry filters shared by list, count and the similar-entry lookup.
#[derive(Debug, Default, Clone)]
pub(crate) struct EntryFilter {
    pub(crate) by_parent_id: Option<SpiffeId>,
    pub(crate) by_spiffe_id: Option<SpiffeId>,
    pub(crate) by_selectors: Option<BySelectors>,
    pub(crate) by_federates_with: Option<ByFederatesWith>,
    pub(crate) by_hint: Option<String>,
    pub(crate) by_downstream: Option<bool>,
}

impl EntryFilter {
    pub(super) fn is_empty(&self) -> bool {
        self.by_parent_id.is_none()
            && self.by_spiffe_id.is_none()
            && self.by_selectors.is_none()
            && self
                .by_federates_with
                .as_ref()
                .is_none_or(|f| f.trust_domains.is_empty())
            && self.by_hint.as_deref().is_none_or(str::is_empty)
            && self.by_downstream != Some(true)
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self
            .by_selectors
            .as_ref()
            .is_some_and(|s| s.selectors.is_empty())
        {
            return Err(DataStoreError::InvalidArgument(
                "cannot list by empty selector set".into(),
            ));
        }
        Ok(())
    }

    /// Appends ` AND ...` conditions on `E` (an alias of `registered_entries`).
    pub(super) fn push(&self, q: &mut Sql) {
        if let Some(p) = &self.by_parent_id {
            q.push(" AND E.parent_id = ").bind(p.as_str());
        }
        if let Some(s) = &self.by_spiffe_id {
            q.push(" AND E.spiffe_id = ").bind(s.as_str());
        }
        if let Some(h) = self.by_hint.as_deref().filter(|h| !h.is_empty()) {
            q.push(" AND E.hint = ").bind(h);
        }
        if self.by_downstream == Some(true) {
            q.push(" AND E.downstream = ").bind(true);
        }
        if let Some(bs) = &self.by_selectors {
            // With an indexed ID filter the candidates are few: test each with
            // a correlated EXISTS on idx_selector_entry. Otherwise drive the
            // query from idx_selectors_type_value.
            let has_prefix = if self.by_spiffe_id.is_some() || self.by_parent_id.is_some() {
                "EXISTS (SELECT 1 FROM selectors S1 WHERE S1.registered_entry_id = E.id AND "
            } else {
                "E.id IN (SELECT registered_entry_id FROM selectors WHERE "
            };
            push_set_match(
                q,
                bs.match_behavior,
                &dedup(
                    bs.selectors
                        .iter()
                        .map(|s| (s.selector_type().to_string(), s.value().to_string())),
                ),
                |q, (t, v)| {
                    q.push("type = ")
                        .bind(t.as_str())
                        .push(" AND value = ")
                        .bind(v.as_str());
                },
                has_prefix,
                "SELECT 1 FROM selectors S WHERE S.registered_entry_id = E.id AND NOT (",
                |q, (t, v)| {
                    q.push("S.type = ")
                        .bind(t.as_str())
                        .push(" AND S.value = ")
                        .bind(v.as_str());
                },
            );
        }
        if let Some(fw) = self
            .by_federates_with
            .as_ref()
            .filter(|f| !f.trust_domains.is_empty())
        {
            let tds = dedup(fw.trust_domains.iter().map(TrustDomain::id_string));
            push_set_match(
                q,
                fw.match_behavior,
                &tds,
                |q, td| {
                    q.push("B.trust_domain = ").bind(td.as_str());
                },
                "E.id IN (SELECT F.registered_entry_id FROM federated_registration_entries F \
                 INNER JOIN bundles B ON B.id = F.bundle_id WHERE ",
                "SELECT 1 FROM federated_registration_entries F2 INNER JOIN bundles B2 ON B2.id = F2.bundle_id \
                 WHERE F2.registered_entry_id = E.id AND NOT (",
                |q, td| {
                    q.push("B2.trust_domain = ").bind(td.as_str());
                },
            );
        }
    }
}

pub(super) fn dedup<T: Eq + std::hash::Hash + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// Appends the conditions of a set match:
/// - Any: the record has one of the items;
/// - Superset: the record has every item;
/// - Subset: Any, and the record has nothing outside the items;
/// - Exact: Superset, and nothing outside the items.
///
/// `member` renders one item's condition inside `has_prefix ... )`;
/// `outside` renders it inside the correlated `NOT EXISTS (outside_prefix ...))`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_set_match<T>(
    q: &mut Sql,
    mode: MatchBehavior,
    items: &[T],
    member: impl Fn(&mut Sql, &T),
    has_prefix: &str,
    outside_prefix: &str,
    outside: impl Fn(&mut Sql, &T),
) {
    match mode {
        MatchBehavior::Any | MatchBehavior::Subset => {
            q.push(" AND ").push(has_prefix).push("(");
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    q.push(" OR ");
                }
                q.push("(");
                member(q, it);
                q.push(")");
            }
            q.push("))");
        }
        MatchBehavior::Superset | MatchBehavior::Exact => {
            for it in items {
                q.push(" AND ").push(has_prefix);
                member(q, it);
                q.push(")");
            }
        }
    }
    if matches!(mode, MatchBehavior::Subset | MatchBehavior::Exact) {
        q.push(" AND NOT EXISTS (").push(outside_prefix);
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push("(");
            outside(q, it);
            q.push(")");
        }
        q.push("))");
    }
}
