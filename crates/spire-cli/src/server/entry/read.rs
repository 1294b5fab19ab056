//! `entry show` and `entry count`: the filter flags they share and the listing.

use super::*;

/// The filter flags `entry show` and `entry count` share.
pub(super) struct FilterFlags {
    pub(super) parent_id: Flag<String>,
    pub(super) spiffe_id: Flag<String>,
    pub(super) downstream: Flag<bool>,
    pub(super) selectors: Flag<StringsFlag>,
    pub(super) federates_with: Flag<StringsFlag>,
    pub(super) match_federates_with: Flag<String>,
    pub(super) match_selectors: Flag<String>,
    pub(super) hint: Flag<String>,
    pub(super) output: Flag<OutputFlag>,
}

pub(super) fn filter_flags(f: &mut FlagSet, what: &str) -> FilterFlags {
    FilterFlags {
        parent_id: f.string("parentID", "", &format!("The Parent ID of the records to {what}")),
        spiffe_id: f.string("spiffeID", "", &format!("The SPIFFE ID of the records to {what}")),
        downstream: f.bool(
            "downstream",
            false,
            "A boolean value that, when set, indicates that the entry describes a downstream SPIRE server",
        ),
        selectors: f.strings(
            "selector",
            "A colon-delimited type:value selector. Can be used more than once",
        ),
        federates_with: f.strings(
            "federatesWith",
            "SPIFFE ID of a trust domain an entry is federate with. Can be used more than once",
        ),
        match_federates_with: f.string(
            "matchFederatesWithOn",
            "superset",
            "The match mode used when filtering by federates with. Options: exact, any, superset and subset",
        ),
        match_selectors: f.string(
            "matchSelectorsOn",
            "superset",
            "The match mode used when filtering by selectors. Options: exact, any, superset and subset",
        ),
        hint: f.string(
            "hint",
            "",
            &format!("The Hint of the records to {what} (optional)"),
        ),
        output: output_flag(f),
    }
}

pub(super) fn selector_match(s: &str) -> Result<i32, String> {
    use selector_match::MatchBehavior as M;
    Ok(match s {
        "exact" => M::MatchExact,
        "any" => M::MatchAny,
        "superset" => M::MatchSuperset,
        "subset" => M::MatchSubset,
        _ => return Err(format!("match behavior {} unknown", quote(s))),
    } as i32)
}

pub(super) fn federates_match(s: &str) -> Result<i32, String> {
    use federates_with_match::MatchBehavior as M;
    Ok(match s {
        "exact" => M::MatchExact,
        "any" => M::MatchAny,
        "superset" => M::MatchSuperset,
        "subset" => M::MatchSubset,
        _ => return Err(format!("match behavior {} unknown", quote(s))),
    } as i32)
}

/// The filter of `entry show` and `entry count`, in SPIRE's check order.
pub(super) struct Filter {
    pub(super) by_parent_id: Option<Spiffeid>,
    pub(super) by_spiffe_id: Option<Spiffeid>,
    pub(super) by_selectors: Option<SelectorMatch>,
    pub(super) by_federates_with: Option<FederatesWithMatch>,
    pub(super) by_hint: Option<String>,
    pub(super) by_downstream: bool,
}

impl FilterFlags {
    /// Builds the filter; `count` uses entry count's check order (selectors
    /// before federatesWith is the same in both).
    fn filter(&self, m: &Parsed) -> Result<Filter, String> {
        let mut f = Filter {
            by_parent_id: None,
            by_spiffe_id: None,
            by_selectors: None,
            by_federates_with: None,
            by_hint: None,
            by_downstream: *m.get(&self.downstream),
        };
        let parent = m.get(&self.parent_id);
        if !parent.is_empty() {
            f.by_parent_id = Some(
                id_to_proto(parent)
                    .map_err(|e| format!("error parsing parent ID {}: {e}", quote(parent)))?,
            );
        }
        let spiffe = m.get(&self.spiffe_id);
        if !spiffe.is_empty() {
            f.by_spiffe_id = Some(
                id_to_proto(spiffe)
                    .map_err(|e| format!("error parsing SPIFFE ID {}: {e}", quote(spiffe)))?,
            );
        }
        let selectors = m.get(&self.selectors);
        if !selectors.is_empty() {
            let behavior = selector_match(m.get(&self.match_selectors).as_str())?;
            let mut parsed = Vec::new();
            for s in selectors.iter() {
                parsed
                    .push(parse_selector(s).map_err(|e| format!("error parsing selectors: {e}"))?);
            }
            f.by_selectors = Some(SelectorMatch {
                selectors: parsed,
                r#match: behavior,
            });
        }
        let fw = m.get(&self.federates_with);
        if !fw.is_empty() {
            let behavior = federates_match(m.get(&self.match_federates_with).as_str())?;
            f.by_federates_with = Some(FederatesWithMatch {
                trust_domains: fw.to_vec(),
                r#match: behavior,
            });
        }
        let hint = m.get(&self.hint);
        if !hint.is_empty() {
            f.by_hint = Some(hint.clone());
        }
        Ok(f)
    }
}

/// `showCommand`.
pub(super) struct Show {
    pub(super) entry_id: Flag<String>,
    pub(super) filter: FilterFlags,
}

pub(super) fn show() -> Box<dyn Command> {
    Adapter::new("entry show", |f| Show {
        entry_id: f.string("entryID", "", "The Entry ID of the records to show"),
        filter: filter_flags(f, "show"),
    })
    .boxed()
}

/// `util.SortTypesEntries`.
pub(crate) fn sort_entries(entries: &mut [Entry]) {
    fn cmp_sel(a: &Selector, b: &Selector) -> std::cmp::Ordering {
        a.r#type.cmp(&b.r#type).then_with(|| a.value.cmp(&b.value))
    }
    for e in entries.iter_mut() {
        sort_slice(&mut e.selectors, |a, b| cmp_sel(a, b).is_lt());
    }
    let key = |id: &Option<Spiffeid>| {
        id.as_ref()
            .map(|i| (i.trust_domain.clone(), i.path.clone()))
            .unwrap_or_default()
    };
    sort_slice(entries, |a, b| {
        let ord = key(&a.spiffe_id)
            .cmp(&key(&b.spiffe_id))
            .then_with(|| key(&a.parent_id).cmp(&key(&b.parent_id)))
            .then_with(|| a.x509_svid_ttl.cmp(&b.x509_svid_ttl))
            .then_with(|| a.jwt_svid_ttl.cmp(&b.jwt_svid_ttl))
            .then_with(|| a.selectors.len().cmp(&b.selectors.len()))
            .then_with(|| {
                a.selectors
                    .iter()
                    .zip(&b.selectors)
                    .map(|(x, y)| cmp_sel(x, y))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        ord.is_lt()
    });
}

impl ServerCommand for Show {
    fn synopsis(&self) -> &'static str {
        "Displays configured registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let id = m.get(&self.entry_id);
        if !id.is_empty()
            && (!m.get(&self.filter.parent_id).is_empty()
                || !m.get(&self.filter.spiffe_id).is_empty()
                || !m.get(&self.filter.selectors).is_empty())
        {
            return Err("the -entryID flag can't be combined with others".into());
        }
        let mut resp = ListEntriesResponse::default();
        if !id.is_empty() {
            let entry = async {
                let r = c
                    .entry()
                    .await?
                    .get_entry(GetEntryRequest {
                        id: id.clone(),
                        output_mask: None,
                    })
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("error fetching entry ID {id}: {e}"))?;
            resp.entries.push(entry);
        } else {
            let f = self.filter.filter(m)?;
            let filter = list_entries_request::Filter {
                by_spiffe_id: f.by_spiffe_id,
                by_parent_id: f.by_parent_id,
                by_selectors: f.by_selectors,
                by_federates_with: f.by_federates_with,
                by_hint: f.by_hint.map(|value| pbjson_types::StringValue { value }),
                by_downstream: Some(pbjson_types::BoolValue {
                    value: f.by_downstream,
                }),
            };
            let mut token = String::new();
            loop {
                let page = async {
                    let r = c
                        .entry()
                        .await?
                        .list_entries(ListEntriesRequest {
                            filter: Some(filter.clone()),
                            output_mask: None,
                            page_size: 500,
                            page_token: token.clone(),
                        })
                        .await?;
                    Ok::<_, RpcError>(r.into_inner())
                }
                .await
                .map_err(|e| format!("error fetching entries: {e}"))?;
                resp.entries.extend(page.entries);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
        }
        sort_entries(&mut resp.entries);
        if is_json(m, &self.filter.output) {
            return print_proto(io, &resp);
        }
        let n = resp.entries.len();
        out!(
            io,
            "{}\n",
            pluralize(&format!("Found {n} "), "entry", "entries", n)
        );
        for e in &resp.entries {
            print_entry(e, io.stdout);
        }
        Ok(())
    }
}

/// `countCommand`.
pub(super) struct Count(FilterFlags);

pub(super) fn count() -> Box<dyn Command> {
    Adapter::new("entry count", |f| Count(filter_flags(f, "count"))).boxed()
}

impl ServerCommand for Count {
    fn synopsis(&self) -> &'static str {
        "Count registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let f = self.0.filter(m)?;
        let filter = count_entries_request::Filter {
            by_spiffe_id: f.by_spiffe_id,
            by_parent_id: f.by_parent_id,
            by_selectors: f.by_selectors,
            by_federates_with: f.by_federates_with,
            by_hint: f.by_hint.map(|value| pbjson_types::StringValue { value }),
            by_downstream: Some(pbjson_types::BoolValue {
                value: f.by_downstream,
            }),
        };
        let resp: CountEntriesResponse = async {
            let r = c
                .entry()
                .await?
                .count_entries(CountEntriesRequest {
                    filter: Some(filter),
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.0.output) {
            return print_proto(io, &resp);
        }
        let n = usize::try_from(resp.count).unwrap_or(0);
        out!(
            io,
            "{}\n",
            pluralize(
                &format!("{} registration ", resp.count),
                "entry",
                "entries",
                n
            )
        );
        Ok(())
    }
}
