//! Registration entries and their events, on every available backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use common::{id, now_unix, sel, sels, td};
use futures::TryStreamExt;
use spire_datastore::*;

fn entry(spiffe: &str, parent: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry::new(id(spiffe), id(parent), sels(selectors))
}

async fn add_bundle(store: &SqlStore, name: &str) {
    store
        .create_bundle(StoredBundle::new(td(name)))
        .await
        .unwrap();
}

async fn entry_event_ids(store: &SqlStore) -> Vec<String> {
    store
        .list_registration_entry_events(ListEventsRequest::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry_id)
        .collect()
}

#[tokio::test]
async fn entry_crud_masks_revisions_and_events() {
    on_all_backends!(|db, store| {
        let n = db.name;
        add_bundle(&store, "fed1.org").await;
        add_bundle(&store, "fed2.org").await;
        let mut e = entry(
            "spiffe://example.org/web",
            "spiffe://example.org/agent",
            &["unix:uid:1000", "unix:gid:1000"],
        );
        e.x509_svid_ttl = 3600;
        e.jwt_svid_ttl = 300;
        e.federates_with = vec![td("fed1.org"), td("fed2.org")];
        e.admin = true;
        e.downstream = true;
        e.entry_expiry = 4_102_444_800;
        e.dns_names = vec!["web.example.org".into(), "www.example.org".into()];
        e.hint = "webhint".into();
        let before = now_unix();
        let created = store.create_registration_entry(e.clone()).await.unwrap();
        assert_eq!(created.entry_id.len(), 36, "[{n}] generated UUID");
        assert_eq!(created.revision_number, 0);
        assert!(
            (created.created_at - before).abs() <= 2,
            "[{n}] created_at {}",
            created.created_at
        );

        let fetched = store
            .fetch_registration_entry(&created.entry_id)
            .await
            .unwrap()
            .unwrap();
        let mut want = e.clone();
        want.entry_id = created.entry_id.clone();
        want.created_at = fetched.created_at;
        assert_eq!(fetched, want, "[{n}] round trip");
        assert!((fetched.created_at - before).abs() <= 2);
        assert_eq!(
            entry_event_ids(&store).await,
            vec![created.entry_id.clone()],
            "[{n}] create event"
        );

        // Mask: only the hint changes.
        let mut upd = entry(
            "spiffe://example.org/other",
            "spiffe://example.org/agent",
            &["k8s:ns:x"],
        );
        upd.entry_id = created.entry_id.clone();
        upd.hint = "newhint".into();
        let updated = store
            .update_registration_entry(
                upd.clone(),
                Some(EntryMask {
                    hint: true,
                    ..EntryMask::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(updated.revision_number, 1);
        assert_eq!(updated.hint, "newhint");
        assert_eq!(updated.spiffe_id, e.spiffe_id, "[{n}] unmasked field kept");
        // Answers to create and update list selectors and DNS names sorted, as SPIRE's
        // read-back on SQLite does; fetches keep the stored order.
        let mut sorted = e.selectors.clone();
        sorted.sort();
        assert_ne!(sorted, e.selectors, "[{n}] the test needs unsorted input");
        assert_eq!(created.selectors, sorted, "[{n}] create answer sorted");
        assert_eq!(updated.selectors, sorted, "[{n}] update answer sorted");
        assert_eq!(updated.dns_names, e.dns_names);
        assert_eq!(updated.federates_with, e.federates_with);

        // Selectors, DNS names and federates_with replaced.
        let mut upd2 = updated.clone();
        upd2.selectors = sels(&["k8s:ns:prod", "k8s:sa:web"]);
        upd2.dns_names = vec!["a.example.org".into()];
        upd2.federates_with = vec![td("fed2.org")];
        upd2.x509_svid_ttl = 60;
        let updated2 = store
            .update_registration_entry(
                upd2.clone(),
                Some(EntryMask {
                    selectors: true,
                    dns_names: true,
                    federates_with: true,
                    x509_svid_ttl: true,
                    ..EntryMask::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(updated2.revision_number, 2);
        assert_eq!(updated2.selectors, upd2.selectors);
        assert_eq!(updated2.dns_names, upd2.dns_names);
        assert_eq!(updated2.federates_with, vec![td("fed2.org")]);
        assert_eq!(updated2.x509_svid_ttl, 60);
        let refetched = store
            .fetch_registration_entry(&created.entry_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(refetched, updated2, "[{n}] fetch after update");

        // Full update (no mask).
        let mut full = entry(
            "spiffe://example.org/web2",
            "spiffe://example.org/agent2",
            &["unix:uid:1"],
        );
        full.entry_id = created.entry_id.clone();
        let updated3 = store
            .update_registration_entry(full.clone(), None)
            .await
            .unwrap();
        assert_eq!(updated3.revision_number, 3);
        assert_eq!(updated3.spiffe_id, full.spiffe_id);
        assert!(
            updated3.dns_names.is_empty() && updated3.federates_with.is_empty() && !updated3.admin
        );

        // store_svid needs one selector type when selectors are rewritten.
        let mut bad = updated3.clone();
        bad.store_svid = true;
        bad.selectors = sels(&["a:1", "b:2"]);
        let err = store
            .update_registration_entry(bad, None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "datastore-validation: invalid registration entry: selector types must be the same when store SVID is enabled"
        );

        let mut missing = full.clone();
        missing.entry_id = "nope".into();
        let err = store
            .update_registration_entry(missing, None)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::NotFound("datastore-sql: record not found".into()),
            "[{n}]"
        );

        let deleted = store
            .delete_registration_entry(&created.entry_id)
            .await
            .unwrap();
        assert_eq!(deleted, updated3, "[{n}] delete returns the entry");
        assert!(
            store
                .fetch_registration_entry(&created.entry_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .delete_registration_entry(&created.entry_id)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(
            entry_event_ids(&store).await,
            vec![created.entry_id.clone(); 5],
            "[{n}] 1 create + 3 updates + 1 delete"
        );
        // Child rows are gone too.
        assert_eq!(common::count_rows(&store, "selectors").await, 0, "[{n}]");
        assert_eq!(common::count_rows(&store, "dns_names").await, 0, "[{n}]");
        assert_eq!(
            common::count_rows(&store, "federated_registration_entries").await,
            0,
            "[{n}]"
        );
    });
}

#[tokio::test]
async fn create_validation_similar_entries_and_uniqueness() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let base = entry(
            "spiffe://example.org/a",
            "spiffe://example.org/p",
            &["t:1", "t:2"],
        );
        let (first, existed) = store
            .create_or_return_registration_entry(base.clone())
            .await
            .unwrap();
        assert!(!existed);
        // Same selector set in another order: the existing entry comes back.
        let (again, existed) = store
            .create_or_return_registration_entry(entry(
                "spiffe://example.org/a",
                "spiffe://example.org/p",
                &["t:2", "t:1"],
            ))
            .await
            .unwrap();
        assert!(existed, "[{n}]");
        assert_eq!(again.entry_id, first.entry_id);
        // A superset or subset is a different entry.
        let (_, existed) = store
            .create_or_return_registration_entry(entry(
                "spiffe://example.org/a",
                "spiffe://example.org/p",
                &["t:1"],
            ))
            .await
            .unwrap();
        assert!(!existed, "[{n}] subset is new");
        let (_, existed) = store
            .create_or_return_registration_entry(entry(
                "spiffe://example.org/a",
                "spiffe://example.org/p",
                &["t:1", "t:2", "t:3"],
            ))
            .await
            .unwrap();
        assert!(!existed, "[{n}] superset is new");

        let mut with_id = entry("spiffe://example.org/b", "spiffe://example.org/p", &["t:9"]);
        with_id.entry_id = "my-entry.ID_1".into();
        store
            .create_registration_entry(with_id.clone())
            .await
            .unwrap();
        let mut dup = entry(
            "spiffe://example.org/c",
            "spiffe://example.org/p",
            &["t:10"],
        );
        dup.entry_id = "my-entry.ID_1".into();
        assert!(
            store
                .create_registration_entry(dup)
                .await
                .unwrap_err()
                .is_already_exists(),
            "[{n}]"
        );

        let cases: Vec<(RegistrationEntry, &str)> = vec![
            (
                entry("spiffe://example.org/x", "spiffe://example.org/p", &[]),
                "invalid registration entry: missing selector list",
            ),
            (
                RegistrationEntry {
                    entry_id: "bad id!".into(),
                    ..entry("spiffe://example.org/x", "spiffe://example.org/p", &["a:b"])
                },
                "invalid registration entry: entry ID contains invalid characters",
            ),
            (
                RegistrationEntry {
                    entry_id: "a".repeat(256),
                    ..entry("spiffe://example.org/x", "spiffe://example.org/p", &["a:b"])
                },
                "invalid registration entry: entry ID too long",
            ),
            (
                RegistrationEntry {
                    x509_svid_ttl: -1,
                    ..entry("spiffe://example.org/x", "spiffe://example.org/p", &["a:b"])
                },
                "invalid registration entry: X509SvidTtl is not set",
            ),
            (
                RegistrationEntry {
                    jwt_svid_ttl: -1,
                    ..entry("spiffe://example.org/x", "spiffe://example.org/p", &["a:b"])
                },
                "invalid registration entry: JwtSvidTtl is not set",
            ),
            (
                RegistrationEntry {
                    store_svid: true,
                    ..entry(
                        "spiffe://example.org/x",
                        "spiffe://example.org/p",
                        &["a:b", "c:d"],
                    )
                },
                "invalid registration entry: selector types must be the same when store SVID is enabled",
            ),
        ];
        for (e, msg) in cases {
            let err = store.create_registration_entry(e).await.unwrap_err();
            assert_eq!(
                err,
                DataStoreError::InvalidArgument(format!("datastore-validation: {msg}")),
                "[{n}]"
            );
        }
        let mut fed = entry("spiffe://example.org/f", "spiffe://example.org/p", &["a:b"]);
        fed.federates_with = vec![td("missing.org")];
        let err = store.create_registration_entry(fed).await.unwrap_err();
        assert_eq!(
            err,
            DataStoreError::Unknown(
                "unable to find federated bundle \"spiffe://missing.org\"".into()
            ),
            "[{n}]"
        );
        // Nothing from the failed creates was left behind.
        assert_eq!(
            store
                .count_registration_entries(CountEntriesRequest::default())
                .await
                .unwrap(),
            4,
            "[{n}]"
        );
        assert_eq!(
            entry_event_ids(&store).await.len(),
            4,
            "[{n}] one event per created entry"
        );
    });
}

/// Entries used by the filter test: name -> (selectors, federates_with).
fn filter_fixture() -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    vec![
        ("e1", vec!["a:1"], vec!["td1.org"]),
        ("e2", vec!["a:1", "b:2"], vec!["td1.org", "td2.org"]),
        (
            "e3",
            vec!["a:1", "b:2", "c:3"],
            vec!["td1.org", "td2.org", "td3.org"],
        ),
        ("e4", vec!["b:2"], vec!["td2.org"]),
        ("e5", vec!["c:3"], vec![]),
    ]
}

fn names(entries: &[RegistrationEntry]) -> Vec<String> {
    let mut v: Vec<String> = entries
        .iter()
        .map(|e| e.spiffe_id.path().trim_start_matches('/').to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn list_filters_every_match_mode() {
    on_all_backends!(|db, store| {
        let n = db.name;
        for t in ["td1.org", "td2.org", "td3.org"] {
            add_bundle(&store, t).await;
        }
        for (name, s, f) in filter_fixture() {
            let mut e = entry(
                &format!("spiffe://example.org/{name}"),
                "spiffe://example.org/parent",
                &s,
            );
            e.federates_with = f.iter().map(|t| td(t)).collect();
            if name == "e2" {
                e.hint = "h2".into();
                e.downstream = true;
            }
            if name == "e5" {
                e.parent_id = id("spiffe://example.org/other-parent");
            }
            store.create_registration_entry(e).await.unwrap();
        }
        let by_sel = |m: MatchBehavior, s: &[&str]| ListEntriesRequest {
            by_selectors: Some(BySelectors {
                selectors: sels(s),
                match_behavior: m,
            }),
            ..ListEntriesRequest::default()
        };
        let by_fed = |m: MatchBehavior, t: &[&str]| ListEntriesRequest {
            by_federates_with: Some(ByFederatesWith {
                trust_domains: t.iter().map(|x| td(x)).collect(),
                match_behavior: m,
            }),
            ..ListEntriesRequest::default()
        };
        let cases: Vec<(ListEntriesRequest, Vec<&str>)> = vec![
            (by_sel(MatchBehavior::Exact, &["a:1", "b:2"]), vec!["e2"]),
            (
                by_sel(MatchBehavior::Exact, &["b:2", "a:1", "a:1"]),
                vec!["e2"],
            ),
            (
                by_sel(MatchBehavior::Subset, &["a:1", "b:2"]),
                vec!["e1", "e2", "e4"],
            ),
            (
                by_sel(MatchBehavior::Superset, &["a:1", "b:2"]),
                vec!["e2", "e3"],
            ),
            (
                by_sel(MatchBehavior::Any, &["a:1", "c:3"]),
                vec!["e1", "e2", "e3", "e5"],
            ),
            (by_sel(MatchBehavior::Exact, &["z:9"]), vec![]),
            (
                by_fed(MatchBehavior::Exact, &["td1.org", "td2.org"]),
                vec!["e2"],
            ),
            (
                by_fed(MatchBehavior::Subset, &["td1.org", "td2.org"]),
                vec!["e1", "e2", "e4"],
            ),
            (
                by_fed(MatchBehavior::Superset, &["td1.org", "td2.org"]),
                vec!["e2", "e3"],
            ),
            (
                by_fed(MatchBehavior::Any, &["td3.org", "td1.org"]),
                vec!["e1", "e2", "e3"],
            ),
            (
                by_fed(MatchBehavior::Any, &[]),
                vec!["e1", "e2", "e3", "e4", "e5"],
            ),
            (
                ListEntriesRequest {
                    by_parent_id: Some(id("spiffe://example.org/other-parent")),
                    ..Default::default()
                },
                vec!["e5"],
            ),
            (
                ListEntriesRequest {
                    by_spiffe_id: Some(id("spiffe://example.org/e3")),
                    ..Default::default()
                },
                vec!["e3"],
            ),
            (
                ListEntriesRequest {
                    by_hint: Some("h2".into()),
                    ..Default::default()
                },
                vec!["e2"],
            ),
            (
                ListEntriesRequest {
                    by_downstream: Some(true),
                    ..Default::default()
                },
                vec!["e2"],
            ),
            (
                ListEntriesRequest {
                    by_parent_id: Some(id("spiffe://example.org/parent")),
                    by_selectors: Some(BySelectors {
                        selectors: sels(&["b:2"]),
                        match_behavior: MatchBehavior::Superset,
                    }),
                    by_federates_with: Some(ByFederatesWith {
                        trust_domains: vec![td("td3.org")],
                        match_behavior: MatchBehavior::Any,
                    }),
                    ..Default::default()
                },
                vec!["e3"],
            ),
        ];
        for (req, want) in cases {
            let got = store.list_registration_entries(req.clone()).await.unwrap();
            assert_eq!(names(&got.entries), want, "[{n}] {req:?}");
            let count = store
                .count_registration_entries(CountEntriesRequest {
                    data_consistency: req.data_consistency,
                    by_parent_id: req.by_parent_id.clone(),
                    by_spiffe_id: req.by_spiffe_id.clone(),
                    by_selectors: req.by_selectors.clone(),
                    by_federates_with: req.by_federates_with.clone(),
                    by_hint: req.by_hint.clone(),
                    by_downstream: req.by_downstream,
                })
                .await
                .unwrap();
            assert_eq!(count as usize, want.len(), "[{n}] count {req:?}");
            // Paged with page size 1 gives the same entries.
            let mut paged = Vec::new();
            let mut token = String::new();
            loop {
                let resp = store
                    .list_registration_entries(ListEntriesRequest {
                        pagination: Some(Pagination {
                            token: token.clone(),
                            page_size: 1,
                        }),
                        ..req.clone()
                    })
                    .await
                    .unwrap();
                let p = resp.pagination.unwrap();
                if resp.entries.is_empty() {
                    assert_eq!(p.token, "");
                    break;
                }
                paged.extend(resp.entries);
                token = p.token;
            }
            assert_eq!(names(&paged), want, "[{n}] paged {req:?}");
        }
        let err = store
            .list_registration_entries(by_sel(MatchBehavior::Exact, &[]))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument("cannot list by empty selector set".into())
        );
        // The replica setting falls back to the primary.
        let stale = store
            .list_registration_entries(ListEntriesRequest {
                data_consistency: DataConsistency::TolerateStale,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(stale.entries.len(), 5);
    });
}

#[tokio::test]
async fn pagination_tokens() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let batch: Vec<RegistrationEntry> = (0..25)
            .map(|i| {
                entry(
                    &format!("spiffe://example.org/w{i:02}"),
                    "spiffe://example.org/p",
                    &["u:1"],
                )
            })
            .collect();
        for r in store
            .create_or_return_registration_entries(batch)
            .await
            .unwrap()
        {
            r.unwrap();
        }
        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let resp = store
                .list_registration_entries(ListEntriesRequest {
                    pagination: Some(Pagination {
                        token: token.clone(),
                        page_size: 10,
                    }),
                    ..Default::default()
                })
                .await
                .unwrap();
            pages.push(resp.entries.len());
            let p = resp.pagination.unwrap();
            assert_eq!(p.page_size, 10);
            if resp.entries.is_empty() {
                assert_eq!(p.token, "", "[{n}] empty page has no token");
                break;
            }
            assert!(!p.token.is_empty());
            token = p.token;
        }
        assert_eq!(pages, vec![10, 10, 5, 0], "[{n}]");
        let err = store
            .list_registration_entries(ListEntriesRequest {
                pagination: Some(Pagination {
                    token: "abc".into(),
                    page_size: 10,
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument("could not parse token 'abc'".into())
        );
        let err = store
            .list_registration_entries(ListEntriesRequest {
                pagination: Some(Pagination {
                    token: String::new(),
                    page_size: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument("cannot paginate with pagesize = 0".into())
        );
    });
}

#[tokio::test]
async fn batch_create_is_one_transaction_with_per_entry_results() {
    on_all_backends!(|db, store| {
        let n = db.name;
        add_bundle(&store, "fed.org").await;
        let mut batch = Vec::new();
        for i in 0..200 {
            let mut e = entry(
                &format!("spiffe://example.org/b{i}"),
                "spiffe://example.org/p",
                &["k8s:ns:a", "k8s:sa:b"],
            );
            e.dns_names = vec![format!("b{i}.example.org")];
            e.federates_with = vec![td("fed.org")];
            batch.push(e);
        }
        batch.push(entry(
            "spiffe://example.org/bad",
            "spiffe://example.org/p",
            &[],
        ));
        batch.push(entry(
            "spiffe://example.org/b0",
            "spiffe://example.org/p",
            &["k8s:sa:b", "k8s:ns:a"],
        ));
        let mut dup_id = entry(
            "spiffe://example.org/d1",
            "spiffe://example.org/p",
            &["x:1"],
        );
        dup_id.entry_id = "fixed".into();
        let mut dup_id2 = entry(
            "spiffe://example.org/d2",
            "spiffe://example.org/p",
            &["x:2"],
        );
        dup_id2.entry_id = "fixed".into();
        batch.push(dup_id);
        batch.push(dup_id2);
        let mut missing = entry("spiffe://example.org/m", "spiffe://example.org/p", &["x:3"]);
        missing.federates_with = vec![td("nowhere.org")];
        batch.push(missing);
        let results = store
            .create_or_return_registration_entries(batch)
            .await
            .unwrap();
        assert_eq!(results.len(), 205);
        assert!(
            results[..200].iter().all(|r| matches!(r, Ok((_, false)))),
            "[{n}]"
        );
        assert!(
            matches!(&results[200], Err(DataStoreError::InvalidArgument(_))),
            "[{n}] {:?}",
            results[200]
        );
        let (existing, was) = results[201].as_ref().unwrap();
        assert!(was, "[{n}] similar entry returned");
        assert_eq!(existing.spiffe_id, id("spiffe://example.org/b0"));
        assert!(results[202].is_ok());
        assert!(
            results[203].as_ref().unwrap_err().is_already_exists(),
            "[{n}] {:?}",
            results[203]
        );
        assert!(
            matches!(&results[204], Err(DataStoreError::Unknown(_))),
            "[{n}]"
        );
        assert_eq!(
            store
                .count_registration_entries(CountEntriesRequest::default())
                .await
                .unwrap(),
            201,
            "[{n}]"
        );
        assert_eq!(
            entry_event_ids(&store).await.len(),
            201,
            "[{n}] events only for created entries"
        );
        let all = store
            .list_registration_entries(ListEntriesRequest::default())
            .await
            .unwrap()
            .entries;
        let b7 = all.iter().find(|e| e.spiffe_id.path() == "/b7").unwrap();
        assert_eq!(b7.dns_names, vec!["b7.example.org".to_string()]);
        assert_eq!(b7.federates_with, vec![td("fed.org")]);
        assert_eq!(b7.selectors, sels(&["k8s:ns:a", "k8s:sa:b"]));

        let ids: Vec<String> = all
            .iter()
            .take(3)
            .map(|e| e.entry_id.clone())
            .chain(["missing".to_string()])
            .collect();
        let fetched = store.fetch_registration_entries(&ids).await.unwrap();
        assert_eq!(fetched.len(), 3, "[{n}]");
        for e in all.iter().take(3) {
            assert_eq!(fetched.get(&e.entry_id), Some(e));
        }
    });
}

#[tokio::test]
async fn stream_all_entries_pages_through_everything() {
    on_all_backends!(|db, store| {
        let n = db.name;
        add_bundle(&store, "fed.org").await;
        let mut batch = Vec::new();
        for i in 0..2500u32 {
            let mut e = entry(
                &format!("spiffe://example.org/s{i}"),
                "spiffe://example.org/p",
                &["a:1", &format!("n:{i}")],
            );
            if i.is_multiple_of(3) {
                e.dns_names = vec![format!("s{i}.example.org")];
            }
            if i.is_multiple_of(5) {
                e.federates_with = vec![td("fed.org")];
            }
            batch.push(e);
        }
        for r in store
            .create_or_return_registration_entries(batch)
            .await
            .unwrap()
        {
            r.unwrap();
        }
        // A deletion in the middle leaves a gap in row IDs.
        let victim = store
            .list_registration_entries(ListEntriesRequest {
                by_spiffe_id: Some(id("spiffe://example.org/s1500")),
                ..Default::default()
            })
            .await
            .unwrap()
            .entries[0]
            .entry_id
            .clone();
        store.delete_registration_entry(&victim).await.unwrap();
        let blocks: Vec<spire_datastore::EntryBlock> = store
            .stream_all_registration_entries(1000)
            .try_collect()
            .await
            .unwrap();
        let pages: Vec<Vec<RegistrationEntry>> =
            blocks.iter().map(|b| b.to_entries().unwrap()).collect();
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1000, 1000, 499],
            "[{n}]"
        );
        let all: Vec<RegistrationEntry> = pages.into_iter().flatten().collect();
        // Every field as listing reads it (SQLite files take a reader of their own).
        let listed = store
            .list_registration_entries(ListEntriesRequest::default())
            .await
            .unwrap()
            .entries;
        assert_eq!(all, listed, "[{n}]");
        let seen: HashSet<&str> = all.iter().map(|e| e.spiffe_id.path()).collect();
        assert_eq!(seen.len(), 2499);
        for e in &all {
            let i: usize = e.spiffe_id.path()[2..].parse().unwrap();
            assert_eq!(
                e.selectors,
                vec![sel("a:1"), sel(&format!("n:{i}"))],
                "[{n}]"
            );
            assert_eq!(e.dns_names.len(), usize::from(i.is_multiple_of(3)));
            assert_eq!(e.federates_with.len(), usize::from(i.is_multiple_of(5)));
        }
        assert_eq!(
            store
                .latest_registration_entry_event_id()
                .await
                .unwrap()
                .unwrap() as usize,
            2501
        );
    });
}

#[tokio::test]
async fn stream_all_entries_fails_on_a_bad_row_rather_than_skipping_it() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let mut batch = Vec::new();
        for i in 0..30u32 {
            batch.push(entry(
                &format!("spiffe://example.org/b{i}"),
                "spiffe://example.org/p",
                &["a:1"],
            ));
        }
        for r in store
            .create_or_return_registration_entries(batch)
            .await
            .unwrap()
        {
            r.unwrap();
        }
        let read = |store: &spire_datastore::SqlStore| {
            let store = store.clone();
            async move {
                store
                    .stream_all_registration_entries(10)
                    .try_collect::<Vec<_>>()
                    .await
            }
        };
        assert_eq!(read(&store).await.unwrap().len(), 3, "[{n}]");

        store
            .raw_execute("UPDATE selectors SET type = '' WHERE id = 25")
            .await
            .unwrap();
        let err = read(&store).await.unwrap_err().to_string();
        assert!(err.contains("invalid selector"), "[{n}] {err}");

        store
            .raw_execute("UPDATE registered_entries SET spiffe_id = 'not-an-id' WHERE id = 15")
            .await
            .unwrap();
        let err = read(&store).await.unwrap_err().to_string();
        assert!(
            err.contains("invalid SPIFFE ID \"not-an-id\" in registered_entries row 15"),
            "[{n}] {err}"
        );
    });
}

#[tokio::test]
async fn prune_entries_and_events() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let now = now_unix();
        for (i, exp) in [(0, 0), (1, now - 100), (2, now + 1000), (3, now - 5)].into_iter() {
            let mut e = entry(
                &format!("spiffe://example.org/p{i}"),
                "spiffe://example.org/p",
                &["a:1"],
            );
            e.entry_id = format!("p{i}");
            e.entry_expiry = exp;
            store.create_registration_entry(e).await.unwrap();
        }
        store.prune_registration_entries(now).await.unwrap();
        let left: Vec<String> = store
            .list_registration_entries(ListEntriesRequest::default())
            .await
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.entry_id)
            .collect();
        assert_eq!(left, vec!["p0".to_string(), "p2".to_string()], "[{n}]");
        let events = store
            .list_registration_entry_events(ListEventsRequest::default())
            .await
            .unwrap();
        let keys: Vec<&str> = events.iter().map(|e| e.entry_id.as_str()).collect();
        assert_eq!(
            keys,
            vec!["p0", "p1", "p2", "p3", "p1", "p3"],
            "[{n}] prune writes events"
        );

        // Event listing bounds.
        let first = events[0].event_id;
        let gt = store
            .list_registration_entry_events(ListEventsRequest {
                greater_than_event_id: first + 3,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(gt.len(), 2);
        let lt = store
            .list_registration_entry_events(ListEventsRequest {
                less_than_event_id: first + 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            lt.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            vec![first, first + 1]
        );
        let err = store
            .list_registration_entry_events(ListEventsRequest {
                greater_than_event_id: 1,
                less_than_event_id: 5,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "datastore-sql: can't set both greater and less than event id"
        );
        assert_eq!(
            store.fetch_registration_entry_event(first).await.unwrap(),
            events[0]
        );
        assert!(
            store
                .fetch_registration_entry_event(9999)
                .await
                .unwrap_err()
                .is_not_found()
        );

        // Test helpers: explicit IDs, delete.
        store
            .create_registration_entry_event(EntryEvent {
                event_id: 500,
                entry_id: "manual".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            store
                .fetch_registration_entry_event(500)
                .await
                .unwrap()
                .entry_id,
            "manual"
        );
        assert_eq!(
            store.latest_registration_entry_event_id().await.unwrap(),
            Some(500)
        );
        store.delete_registration_entry_event(500).await.unwrap();
        assert!(
            store
                .fetch_registration_entry_event(500)
                .await
                .unwrap_err()
                .is_not_found()
        );

        // Pruning by age: nothing is an hour old, everything is older than "now".
        store
            .prune_registration_entry_events(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(
            store
                .list_registration_entry_events(ListEventsRequest::default())
                .await
                .unwrap()
                .len(),
            6,
            "[{n}]"
        );
        // Seen from a clock ten seconds on, every event is older than five seconds.
        let later = spire_clock::ManualClock::new(SystemTime::now() + Duration::from_secs(10));
        let store_later = SqlStore::open_with_clock(&db.config, later.shared())
            .await
            .unwrap();
        store_later
            .prune_registration_entry_events(Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            store
                .list_registration_entry_events(ListEventsRequest::default())
                .await
                .unwrap()
                .len(),
            6,
            "[{n}] nothing is a minute old"
        );
        store_later
            .prune_registration_entry_events(Duration::from_secs(5))
            .await
            .unwrap();
        store_later.close().await;
        assert!(
            store
                .list_registration_entry_events(ListEventsRequest::default())
                .await
                .unwrap()
                .is_empty(),
            "[{n}]"
        );
    });
}
