//! Attested nodes, node selectors and node events, on every available backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use common::{id, now_unix, sels};
use futures::TryStreamExt;
use spire_datastore::*;

fn node(
    path: &str,
    data_type: &str,
    serial: &str,
    not_after: i64,
    can_reattest: bool,
) -> AttestedNode {
    AttestedNode {
        spiffe_id: id(&format!("spiffe://example.org/spire/agent/{path}")),
        attestation_data_type: data_type.into(),
        cert_serial_number: serial.into(),
        cert_not_after: not_after,
        new_cert_serial_number: String::new(),
        new_cert_not_after: 0,
        selectors: Vec::new(),
        can_reattest,
    }
}

fn paths(nodes: &[AttestedNode]) -> Vec<String> {
    let mut v: Vec<String> = nodes
        .iter()
        .map(|n| n.spiffe_id.path().rsplit('/').next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn node_events(store: &SqlStore) -> Vec<String> {
    store
        .list_attested_node_events(ListEventsRequest::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.spiffe_id.rsplit('/').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn node_crud_selectors_and_events() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let now = now_unix();
        let a = node("x509pop/a", "x509pop", "111", now + 3600, true);
        let created = store.create_attested_node(a.clone()).await.unwrap();
        assert_eq!(created, a);
        assert!(
            store
                .create_attested_node(a.clone())
                .await
                .unwrap_err()
                .is_already_exists(),
            "[{n}]"
        );
        assert_eq!(
            store
                .fetch_attested_node(&a.spiffe_id)
                .await
                .unwrap()
                .unwrap(),
            a,
            "[{n}]"
        );
        assert!(
            store
                .fetch_attested_node(&id("spiffe://example.org/nope"))
                .await
                .unwrap()
                .is_none()
        );

        // Mask: rotate to a new SVID.
        let mut upd = a.clone();
        upd.new_cert_serial_number = "222".into();
        upd.new_cert_not_after = now + 7200;
        upd.cert_serial_number = "ignored".into();
        let got = store
            .update_attested_node(
                upd,
                Some(NodeMask {
                    new_cert_serial_number: true,
                    new_cert_not_after: true,
                    ..NodeMask::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(got.cert_serial_number, "111", "[{n}]");
        assert_eq!(got.new_cert_serial_number, "222");
        assert_eq!(got.new_cert_not_after, now + 7200);
        let fetched = store
            .fetch_attested_node(&a.spiffe_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fetched, got, "[{n}]");
        // Full update clears the new serial and expiry (NULL).
        let mut full = a.clone();
        full.cert_serial_number = "333".into();
        full.can_reattest = false;
        let got = store
            .update_attested_node(full.clone(), None)
            .await
            .unwrap();
        assert_eq!(got, full, "[{n}]");
        assert!(
            store
                .update_attested_node(node("x/none", "x", "1", 1, false), None)
                .await
                .unwrap_err()
                .is_not_found()
        );

        let s = sels(&["x509pop:subject:cn:a", "x509pop:ca:fingerprint:ab"]);
        store
            .set_node_selectors(&a.spiffe_id, s.clone())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_node_selectors(&a.spiffe_id, DataConsistency::RequireCurrent)
                .await
                .unwrap(),
            s,
            "[{n}]"
        );
        let s2 = sels(&["x509pop:subject:cn:b"]);
        store
            .set_node_selectors(&a.spiffe_id, s2.clone())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_node_selectors(&a.spiffe_id, DataConsistency::TolerateStale)
                .await
                .unwrap(),
            s2
        );

        let deleted = store.delete_attested_node(&a.spiffe_id).await.unwrap();
        assert_eq!(deleted, full);
        assert!(
            store
                .fetch_attested_node(&a.spiffe_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get_node_selectors(&a.spiffe_id, DataConsistency::RequireCurrent)
                .await
                .unwrap()
                .is_empty(),
            "[{n}] selectors deleted"
        );
        assert!(
            store
                .delete_attested_node(&a.spiffe_id)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(
            node_events(&store).await,
            vec!["a"; 6],
            "[{n}] create, 2 updates, 2 selector sets, delete"
        );

        let evs = store
            .list_attested_node_events(ListEventsRequest::default())
            .await
            .unwrap();
        assert_eq!(
            store
                .fetch_attested_node_event(evs[2].event_id)
                .await
                .unwrap(),
            evs[2]
        );
        assert_eq!(
            store.latest_attested_node_event_id().await.unwrap(),
            Some(evs[5].event_id)
        );
        let gt = store
            .list_attested_node_events(ListEventsRequest {
                greater_than_event_id: evs[3].event_id,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(gt, evs[4..].to_vec());
        store
            .delete_attested_node_event(evs[0].event_id)
            .await
            .unwrap();
        assert!(
            store
                .fetch_attested_node_event(evs[0].event_id)
                .await
                .unwrap_err()
                .is_not_found()
        );
        store
            .create_attested_node_event(NodeEvent {
                event_id: 900,
                spiffe_id: "spiffe://x/y".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            store
                .fetch_attested_node_event(900)
                .await
                .unwrap()
                .spiffe_id,
            "spiffe://x/y"
        );
        store
            .prune_attested_node_events(std::time::Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(node_events(&store).await.len(), 6);
    });
}

#[tokio::test]
async fn node_filters_pagination_and_prune() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let now = now_unix();
        let fixtures = [
            // name, type, serial, not_after, can_reattest, selectors
            (
                "n1",
                "aws_iid",
                "1",
                now + 100,
                true,
                vec!["aws:tag:a", "aws:az:1"],
            ),
            ("n2", "aws_iid", "", now + 100, true, vec!["aws:tag:a"]),
            ("n3", "join_token", "3", now - 100, false, vec![]),
            (
                "n4",
                "k8s_psat",
                "4",
                now - 50,
                true,
                vec!["k8s:cluster:c", "aws:tag:a", "aws:az:1"],
            ),
            ("n5", "k8s_psat", "5", now - 10, true, vec!["aws:az:1"]),
        ];
        for (name, ty, serial, na, cr, s) in &fixtures {
            let nd = node(&format!("{ty}/{name}"), ty, serial, *na, *cr);
            store.create_attested_node(nd.clone()).await.unwrap();
            if !s.is_empty() {
                store
                    .set_node_selectors(&nd.spiffe_id, sels(s))
                    .await
                    .unwrap();
            }
        }
        let sm = |m: MatchBehavior, s: &[&str]| ListNodesRequest {
            by_selector_match: Some(BySelectors {
                selectors: sels(s),
                match_behavior: m,
            }),
            ..ListNodesRequest::default()
        };
        let cases: Vec<(ListNodesRequest, Vec<&str>)> = vec![
            (
                ListNodesRequest::default(),
                vec!["n1", "n2", "n3", "n4", "n5"],
            ),
            (
                ListNodesRequest {
                    by_attestation_type: Some("aws_iid".into()),
                    ..Default::default()
                },
                vec!["n1", "n2"],
            ),
            (
                ListNodesRequest {
                    by_banned: Some(true),
                    ..Default::default()
                },
                vec!["n2"],
            ),
            (
                ListNodesRequest {
                    by_banned: Some(false),
                    ..Default::default()
                },
                vec!["n1", "n3", "n4", "n5"],
            ),
            (
                ListNodesRequest {
                    by_can_reattest: Some(false),
                    ..Default::default()
                },
                vec!["n3"],
            ),
            (
                ListNodesRequest {
                    by_can_reattest: Some(true),
                    ..Default::default()
                },
                vec!["n1", "n2", "n4", "n5"],
            ),
            (
                ListNodesRequest {
                    by_expires_before: Some(now),
                    ..Default::default()
                },
                vec!["n3", "n4", "n5"],
            ),
            (
                ListNodesRequest {
                    valid_at: Some(now),
                    ..Default::default()
                },
                vec!["n1", "n2"],
            ),
            (
                sm(MatchBehavior::Exact, &["aws:tag:a", "aws:az:1"]),
                vec!["n1"],
            ),
            (
                sm(MatchBehavior::Subset, &["aws:tag:a", "aws:az:1"]),
                vec!["n1", "n2", "n5"],
            ),
            (
                sm(MatchBehavior::Superset, &["aws:tag:a", "aws:az:1"]),
                vec!["n1", "n4"],
            ),
            (
                sm(MatchBehavior::Any, &["k8s:cluster:c", "aws:tag:a"]),
                vec!["n1", "n2", "n4"],
            ),
            (
                ListNodesRequest {
                    by_attestation_type: Some("k8s_psat".into()),
                    by_selector_match: Some(BySelectors {
                        selectors: sels(&["aws:az:1"]),
                        match_behavior: MatchBehavior::Superset,
                    }),
                    by_expires_before: Some(now - 20),
                    ..Default::default()
                },
                vec!["n4"],
            ),
        ];
        for (req, want) in cases {
            let resp = store.list_attested_nodes(req.clone()).await.unwrap();
            assert_eq!(paths(&resp.nodes), want, "[{n}] {req:?}");
            assert!(
                resp.nodes.iter().all(|x| x.selectors.is_empty()),
                "[{n}] selectors only when asked"
            );
            let with = store
                .list_attested_nodes(ListNodesRequest {
                    fetch_selectors: true,
                    ..req.clone()
                })
                .await
                .unwrap();
            for x in &with.nodes {
                let name = x.spiffe_id.path().rsplit('/').next().unwrap();
                let f = fixtures.iter().find(|f| f.0 == name).unwrap();
                assert_eq!(x.selectors, sels(&f.5), "[{n}] selectors of {name}");
            }
            let count = store
                .count_attested_nodes(CountNodesRequest {
                    by_attestation_type: req.by_attestation_type.clone(),
                    by_banned: req.by_banned,
                    by_expires_before: req.by_expires_before,
                    by_selector_match: req.by_selector_match.clone(),
                    by_can_reattest: req.by_can_reattest,
                })
                .await
                .unwrap();
            if req.valid_at.is_none() {
                assert_eq!(count as usize, want.len(), "[{n}] count {req:?}");
            }
            let mut paged = Vec::new();
            let mut token = String::new();
            loop {
                let resp = store
                    .list_attested_nodes(ListNodesRequest {
                        pagination: Some(Pagination {
                            token: token.clone(),
                            page_size: 2,
                        }),
                        ..req.clone()
                    })
                    .await
                    .unwrap();
                let p = resp.pagination.unwrap();
                if resp.nodes.is_empty() {
                    assert!(p.token.is_empty());
                    break;
                }
                paged.extend(resp.nodes);
                token = p.token;
            }
            assert_eq!(paths(&paged), want, "[{n}] paged {req:?}");
        }
        let err = store
            .list_attested_nodes(sm(MatchBehavior::Any, &[]))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument("cannot list by empty selectors set".into())
        );

        let all = store
            .list_node_selectors(ListNodeSelectorsRequest::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 4, "[{n}]");
        assert_eq!(
            all[&id("spiffe://example.org/spire/agent/k8s_psat/n4")],
            sels(&["k8s:cluster:c", "aws:tag:a", "aws:az:1"])
        );
        let valid = store
            .list_node_selectors(ListNodeSelectorsRequest {
                valid_at: Some(now),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(valid.len(), 2, "[{n}] only unexpired nodes");

        let streamed: Vec<Vec<AttestedNode>> = store
            .stream_all_attested_nodes(2)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            streamed.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1],
            "[{n}]"
        );
        assert_eq!(
            streamed[1][1].selectors,
            sels(&["k8s:cluster:c", "aws:tag:a", "aws:az:1"])
        );

        // Prune: n3 is not reattestable, n2 banned (and unexpired anyway).
        let before_events = node_events(&store).await.len();
        assert_eq!(
            store
                .prune_attested_expired_nodes(now, false)
                .await
                .unwrap(),
            2,
            "[{n}] n4, n5"
        );
        assert_eq!(
            paths(
                &store
                    .list_attested_nodes(ListNodesRequest::default())
                    .await
                    .unwrap()
                    .nodes
            ),
            vec!["n1", "n2", "n3"]
        );
        assert_eq!(
            store.prune_attested_expired_nodes(now, true).await.unwrap(),
            1,
            "[{n}] n3"
        );
        assert_eq!(node_events(&store).await.len(), before_events + 3);
        assert!(
            store
                .get_node_selectors(
                    &id("spiffe://example.org/spire/agent/k8s_psat/n4"),
                    DataConsistency::RequireCurrent
                )
                .await
                .unwrap()
                .is_empty()
        );
    });
}
