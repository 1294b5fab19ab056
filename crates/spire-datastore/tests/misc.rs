//! Bundles and keys, join tokens, federation relationships and CA journals,
//! on every available backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use common::{id, now_unix, sels, td};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyIdMethod, KeyPair};
use spire_datastore::*;

/// A self-signed CA certificate with a chosen SKID and NotAfter.
fn ca_cert(skid: &[u8], not_after: i64) -> Vec<u8> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_identifier_method = KeyIdMethod::PreSpecified(skid.to_vec());
    p.not_before = time::OffsetDateTime::from_unix_timestamp(not_after - 86_400 * 30).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    let key = KeyPair::generate().unwrap();
    p.self_signed(&key).unwrap().der().to_vec()
}

fn jwt(kid: &str, not_after: i64) -> JwtSigningKey {
    JwtSigningKey {
        kid: kid.into(),
        pkix: vec![0x30, 0x59, kid.len() as u8],
        not_after,
        tainted: false,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn bundles_and_keys() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let now = now_unix();
        let ca_old = ca_cert(&[1, 2, 3, 4], now - 10);
        let ca_new = ca_cert(&[5, 6, 7, 8], now + 86_400);
        let mut b = StoredBundle::new(td("example.org"));
        b.root_cas = vec![RootCa {
            der: ca_old.clone(),
            tainted: false,
        }];
        b.jwt_signing_keys = vec![jwt("old", now - 10)];
        b.refresh_hint = 300;
        b.sequence_number = 1;
        assert_eq!(store.create_bundle(b.clone()).await.unwrap(), b);
        assert!(
            store
                .create_bundle(b.clone())
                .await
                .unwrap_err()
                .is_already_exists(),
            "[{n}]"
        );
        assert_eq!(
            store
                .fetch_bundle(&td("example.org"))
                .await
                .unwrap()
                .unwrap(),
            b,
            "[{n}]"
        );
        assert!(
            store
                .fetch_bundle(&td("other.org"))
                .await
                .unwrap()
                .is_none()
        );
        // The row holds the protobuf encoding, keyed by trust domain ID.
        let rows = store
            .raw_query("SELECT trust_domain FROM bundles", 1)
            .await
            .unwrap();
        assert_eq!(rows[0][0].as_deref(), Some("spiffe://example.org"));
        assert_eq!(
            bundle_codec::decode_bundle(&bundle_codec::encode_bundle(&b)).unwrap(),
            b
        );

        // Append: duplicates change nothing, new material bumps the sequence.
        let mut add = StoredBundle::new(td("example.org"));
        add.root_cas = vec![RootCa {
            der: ca_old.clone(),
            tainted: false,
        }];
        add.jwt_signing_keys = vec![jwt("old", now - 10)];
        let same = store.append_bundle(add.clone()).await.unwrap();
        assert_eq!(same.sequence_number, 1, "[{n}] dedup");
        add.root_cas.push(RootCa {
            der: ca_new.clone(),
            tainted: false,
        });
        add.jwt_signing_keys.push(jwt("new", now + 86_400));
        let appended = store.append_bundle(add).await.unwrap();
        assert_eq!(appended.sequence_number, 2);
        assert_eq!(appended.root_cas.len(), 2);
        assert_eq!(appended.jwt_signing_keys.len(), 2);
        assert_eq!(appended.refresh_hint, 300);
        // Append creates a missing bundle.
        let mut fed = StoredBundle::new(td("fed.org"));
        fed.root_cas = vec![RootCa {
            der: ca_new.clone(),
            tainted: false,
        }];
        store.append_bundle(fed.clone()).await.unwrap();
        assert_eq!(store.count_bundles().await.unwrap(), 2);

        // Update with a mask; set replaces.
        let mut u = StoredBundle::new(td("example.org"));
        u.refresh_hint = 60;
        let updated = store
            .update_bundle(
                u.clone(),
                Some(BundleMask {
                    refresh_hint: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(updated.refresh_hint, 60);
        assert_eq!(updated.root_cas.len(), 2, "[{n}] masked out");
        assert!(
            store
                .update_bundle(StoredBundle::new(td("nope.org")), None)
                .await
                .unwrap_err()
                .is_not_found()
        );
        let mut s = StoredBundle::new(td("set.org"));
        s.sequence_number = 7;
        store.set_bundle(s.clone()).await.unwrap();
        s.sequence_number = 8;
        assert_eq!(store.set_bundle(s.clone()).await.unwrap(), s);
        assert_eq!(
            store.fetch_bundle(&td("set.org")).await.unwrap().unwrap(),
            s
        );

        // Pagination.
        let p1 = store
            .list_bundles(Some(Pagination {
                token: String::new(),
                page_size: 2,
            }))
            .await
            .unwrap();
        assert_eq!(p1.bundles.len(), 2);
        let p2 = store.list_bundles(p1.pagination.clone()).await.unwrap();
        assert_eq!(p2.bundles.len(), 1);
        assert_eq!(p2.bundles[0].trust_domain, td("set.org"));
        let p3 = store.list_bundles(p2.pagination.clone()).await.unwrap();
        assert!(p3.bundles.is_empty() && p3.pagination.unwrap().token.is_empty());
        assert_eq!(store.list_bundles(None).await.unwrap().bundles.len(), 3);

        // Prune drops the expired CA and JWT key.
        assert!(
            store.prune_bundle(&td("example.org"), now).await.unwrap(),
            "[{n}]"
        );
        let pruned = store
            .fetch_bundle(&td("example.org"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            pruned.root_cas,
            vec![RootCa {
                der: ca_new.clone(),
                tainted: false
            }]
        );
        assert_eq!(pruned.jwt_signing_keys, vec![jwt("new", now + 86_400)]);
        assert_eq!(pruned.sequence_number, 3);
        assert!(
            !store.prune_bundle(&td("example.org"), now).await.unwrap(),
            "[{n}] nothing left to prune"
        );
        assert!(!store.prune_bundle(&td("absent.org"), now).await.unwrap());
        let err = store
            .prune_bundle(&td("example.org"), now + 2 * 86_400)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "prune failed: would prune all certificates"
        );

        // Taint and revoke the X.509 CA by subject key ID.
        store
            .append_bundle({
                let mut x = StoredBundle::new(td("example.org"));
                x.root_cas = vec![RootCa {
                    der: ca_old.clone(),
                    tainted: false,
                }];
                x
            })
            .await
            .unwrap();
        let skid_old = hex(&[1, 2, 3, 4]);
        let err = store
            .revoke_x509_ca(&td("example.org"), &skid_old)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument(
                "it is not possible to revoke an untainted root CA".into()
            )
        );
        store
            .taint_x509_ca(&td("example.org"), &skid_old)
            .await
            .unwrap();
        let err = store
            .taint_x509_ca(&td("example.org"), &skid_old)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument("root CA is already tainted".into())
        );
        let err = store
            .taint_x509_ca(&td("example.org"), "ffff")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::NotFound("no ca found with provided subject key ID".into())
        );
        let b = store
            .fetch_bundle(&td("example.org"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            b.root_cas.iter().any(|c| c.der == ca_old && c.tainted),
            "[{n}]"
        );
        let seq = b.sequence_number;
        store
            .revoke_x509_ca(&td("example.org"), &skid_old)
            .await
            .unwrap();
        let b = store
            .fetch_bundle(&td("example.org"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            b.root_cas,
            vec![RootCa {
                der: ca_new.clone(),
                tainted: false
            }]
        );
        assert_eq!(b.sequence_number, seq + 1);
        let err = store
            .revoke_x509_ca(&td("example.org"), &skid_old)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::NotFound("no root CA found with provided subject key ID".into())
        );
        assert!(
            store
                .taint_x509_ca(&td("nope.org"), &skid_old)
                .await
                .unwrap_err()
                .is_not_found()
        );

        // JWT keys.
        let err = store
            .revoke_jwt_key(&td("example.org"), "new")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument("it is not possible to revoke an untainted key".into())
        );
        let t = store
            .taint_jwt_key(&td("example.org"), "new")
            .await
            .unwrap();
        assert!(t.tainted && t.kid == "new");
        let err = store
            .taint_jwt_key(&td("example.org"), "new")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::InvalidArgument("key is already tainted".into())
        );
        let err = store
            .taint_jwt_key(&td("example.org"), "zzz")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::NotFound("no JWT Key found with provided key ID".into())
        );
        let r = store
            .revoke_jwt_key(&td("example.org"), "new")
            .await
            .unwrap();
        assert_eq!(r, t);
        assert!(
            store
                .fetch_bundle(&td("example.org"))
                .await
                .unwrap()
                .unwrap()
                .jwt_signing_keys
                .is_empty(),
            "[{n}]"
        );
    });
}

#[tokio::test]
async fn bundle_delete_modes() {
    on_all_backends!(|db, store| {
        let n = db.name;
        for t in ["a.org", "b.org", "c.org"] {
            store.create_bundle(StoredBundle::new(td(t))).await.unwrap();
        }
        let mut ids = Vec::new();
        for (i, feds) in [
            vec!["a.org"],
            vec!["a.org", "b.org"],
            vec!["b.org", "c.org"],
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = RegistrationEntry::new(
                id(&format!("spiffe://example.org/e{i}")),
                id("spiffe://example.org/p"),
                sels(&["x:1"]),
            );
            e.federates_with = feds.iter().map(|t| td(t)).collect();
            ids.push(store.create_registration_entry(e).await.unwrap().entry_id);
        }
        let err = store
            .delete_bundle(&td("a.org"), DeleteMode::Restrict)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::FailedPrecondition(
                "datastore-sql: cannot delete bundle; federated with 2 registration entries".into()
            ),
            "[{n}]"
        );
        assert!(
            store
                .delete_bundle(&td("zzz.org"), DeleteMode::Restrict)
                .await
                .unwrap_err()
                .is_not_found()
        );
        let events_before = store
            .list_registration_entry_events(ListEventsRequest::default())
            .await
            .unwrap()
            .len();

        store
            .delete_bundle(&td("a.org"), DeleteMode::Dissociate)
            .await
            .unwrap();
        assert!(store.fetch_bundle(&td("a.org")).await.unwrap().is_none());
        let e0 = store
            .fetch_registration_entry(&ids[0])
            .await
            .unwrap()
            .unwrap();
        assert!(e0.federates_with.is_empty(), "[{n}]");
        let e1 = store
            .fetch_registration_entry(&ids[1])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e1.federates_with, vec![td("b.org")]);
        let events = store
            .list_registration_entry_events(ListEventsRequest::default())
            .await
            .unwrap();
        assert_eq!(
            events.len(),
            events_before + 2,
            "[{n}] dissociated entries get events"
        );

        store
            .delete_bundle(&td("b.org"), DeleteMode::Delete)
            .await
            .unwrap();
        assert!(
            store
                .fetch_registration_entry(&ids[1])
                .await
                .unwrap()
                .is_none(),
            "[{n}]"
        );
        assert!(
            store
                .fetch_registration_entry(&ids[2])
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .fetch_registration_entry(&ids[0])
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            common::count_rows(&store, "selectors").await,
            1,
            "[{n}] children of deleted entries removed"
        );
        // c.org is no longer federated with anything.
        store
            .delete_bundle(&td("c.org"), DeleteMode::Restrict)
            .await
            .unwrap();
        assert_eq!(
            common::count_rows(&store, "federated_registration_entries").await,
            0
        );
    });
}

#[tokio::test]
async fn join_tokens() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let now = now_unix();
        store
            .create_join_token(JoinToken {
                token: "t1".into(),
                expiry: now + 600,
            })
            .await
            .unwrap();
        store
            .create_join_token(JoinToken {
                token: "t2".into(),
                expiry: now - 1,
            })
            .await
            .unwrap();
        assert!(
            store
                .create_join_token(JoinToken {
                    token: "t1".into(),
                    expiry: now
                })
                .await
                .unwrap_err()
                .is_already_exists(),
            "[{n}]"
        );
        assert_eq!(
            store
                .create_join_token(JoinToken {
                    token: String::new(),
                    expiry: now
                })
                .await
                .unwrap_err()
                .to_string(),
            "token and expiry are required"
        );
        assert_eq!(
            store.fetch_join_token("t1").await.unwrap(),
            Some(JoinToken {
                token: "t1".into(),
                expiry: now + 600
            })
        );
        assert_eq!(store.fetch_join_token("zz").await.unwrap(), None);
        store.prune_join_tokens(now).await.unwrap();
        assert_eq!(
            store.fetch_join_token("t2").await.unwrap(),
            None,
            "[{n}] pruned"
        );
        store.delete_join_token("t1").await.unwrap();
        assert_eq!(store.fetch_join_token("t1").await.unwrap(), None);
        assert_eq!(
            store.delete_join_token("t1").await.unwrap_err(),
            DataStoreError::NotFound("datastore-sql: record not found".into())
        );
    });
}

#[tokio::test]
async fn federation_relationships() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let mut b = StoredBundle::new(td("web.org"));
        b.refresh_hint = 42;
        let web = FederationRelationship {
            trust_domain: td("web.org"),
            bundle_endpoint_url: spire_datastore::BundleEndpointUrl::parse(
                "https://web.org:8443/bundle",
            )
            .unwrap(),
            bundle_endpoint_profile: BundleEndpointProfile::HttpsWeb,
            trust_domain_bundle: Some(b.clone()),
        };
        assert_eq!(
            store
                .create_federation_relationship(web.clone())
                .await
                .unwrap(),
            web
        );
        assert!(
            store
                .create_federation_relationship(web.clone())
                .await
                .unwrap_err()
                .is_already_exists(),
            "[{n}]"
        );
        let sp = FederationRelationship {
            trust_domain: td("spiffe.org"),
            bundle_endpoint_url: spire_datastore::BundleEndpointUrl::parse("https://spiffe.org/b")
                .unwrap(),
            bundle_endpoint_profile: BundleEndpointProfile::HttpsSpiffe {
                endpoint_spiffe_id: id("spiffe://spiffe.org/spire/server"),
            },
            trust_domain_bundle: None,
        };
        store
            .create_federation_relationship(sp.clone())
            .await
            .unwrap();
        assert_eq!(
            store
                .fetch_federation_relationship(&td("web.org"))
                .await
                .unwrap()
                .unwrap(),
            web,
            "[{n}] with bundle"
        );
        assert_eq!(
            store
                .fetch_federation_relationship(&td("spiffe.org"))
                .await
                .unwrap()
                .unwrap(),
            sp
        );
        assert!(
            store
                .fetch_federation_relationship(&td("nope.org"))
                .await
                .unwrap()
                .is_none()
        );
        let rows = store
            .raw_query(
                "SELECT trust_domain, endpoint_spiffe_id FROM federated_trust_domains ORDER BY id",
                2,
            )
            .await
            .unwrap();
        assert_eq!(
            rows[0],
            vec![Some("web.org".into()), Some(String::new())],
            "[{n}] stored by name"
        );

        let p1 = store
            .list_federation_relationships(Some(Pagination {
                token: String::new(),
                page_size: 1,
            }))
            .await
            .unwrap();
        assert_eq!(p1.relationships, vec![web.clone()]);
        let p2 = store
            .list_federation_relationships(p1.pagination)
            .await
            .unwrap();
        assert_eq!(p2.relationships, vec![sp.clone()]);
        assert!(
            store
                .list_federation_relationships(p2.pagination)
                .await
                .unwrap()
                .relationships
                .is_empty()
        );

        // Update only the profile: the URL stays.
        let mut upd = sp.clone();
        upd.bundle_endpoint_url =
            spire_datastore::BundleEndpointUrl::parse("https://ignored.example/").unwrap();
        upd.bundle_endpoint_profile = BundleEndpointProfile::HttpsWeb;
        let got = store
            .update_federation_relationship(
                upd,
                FederationRelationshipMask {
                    bundle_endpoint_profile: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(got.bundle_endpoint_profile, BundleEndpointProfile::HttpsWeb);
        assert_eq!(got.bundle_endpoint_url, sp.bundle_endpoint_url, "[{n}]");
        let mut upd = got.clone();
        upd.bundle_endpoint_url =
            spire_datastore::BundleEndpointUrl::parse("https://new.spiffe.org/b2").unwrap();
        upd.trust_domain_bundle = Some(StoredBundle::new(td("spiffe.org")));
        let got = store
            .update_federation_relationship(upd.clone(), FederationRelationshipMask::ALL)
            .await
            .unwrap();
        assert_eq!(got, upd, "[{n}] bundle set too");
        let mut missing = web.clone();
        missing.trust_domain = td("missing.org");
        let err = store
            .update_federation_relationship(missing, FederationRelationshipMask::ALL)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DataStoreError::NotFound(
                "unable to fetch federation relationship: record not found".into()
            )
        );

        store
            .delete_federation_relationship(&td("web.org"))
            .await
            .unwrap();
        assert!(
            store
                .fetch_federation_relationship(&td("web.org"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store.fetch_bundle(&td("web.org")).await.unwrap().is_some(),
            "[{n}] bundle stays"
        );
        assert!(
            store
                .delete_federation_relationship(&td("web.org"))
                .await
                .unwrap_err()
                .is_not_found()
        );
    });
}

fn journal(x509_not_after: &[i64], jwt_not_after: &[i64]) -> Vec<u8> {
    use spire_proto::journal::{Entries, JwtKeyEntry, X509caEntry};
    Entries {
        x509_c_as: x509_not_after
            .iter()
            .map(|t| X509caEntry {
                not_after: *t,
                ..Default::default()
            })
            .collect(),
        jwt_keys: jwt_not_after
            .iter()
            .map(|t| JwtKeyEntry {
                not_after: *t,
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn ca_journals() {
    on_all_backends!(|db, store| {
        let n = db.name;
        let now = now_unix();
        let j1 = store
            .set_ca_journal(CaJournal {
                id: 0,
                data: journal(&[now - 100], &[now - 100]),
                active_x509_authority_id: "aaaa".into(),
            })
            .await
            .unwrap();
        assert!(j1.id > 0, "[{n}]");
        let j2 = store
            .set_ca_journal(CaJournal {
                id: 0,
                data: journal(&[now + 100], &[now - 100]),
                active_x509_authority_id: "bbbb".into(),
            })
            .await
            .unwrap();
        assert_ne!(j1.id, j2.id);
        let mut j2b = j2.clone();
        j2b.active_x509_authority_id = "cccc".into();
        assert_eq!(store.set_ca_journal(j2b.clone()).await.unwrap(), j2b);
        assert_eq!(
            store.fetch_ca_journal("cccc").await.unwrap(),
            Some(j2b.clone()),
            "[{n}]"
        );
        assert_eq!(store.fetch_ca_journal("bbbb").await.unwrap(), None);
        assert_eq!(
            store.fetch_ca_journal("").await.unwrap_err(),
            DataStoreError::InvalidArgument("active X509 authority ID is required".into())
        );
        assert!(
            store
                .set_ca_journal(CaJournal {
                    id: 999,
                    data: vec![],
                    active_x509_authority_id: "x".into()
                })
                .await
                .unwrap_err()
                .is_not_found()
        );
        store.prune_ca_journals(now).await.unwrap();
        assert_eq!(
            store.list_ca_journals().await.unwrap(),
            vec![j2b.clone()],
            "[{n}] only the expired journal went"
        );
        store.prune_ca_journals(now + 1000).await.unwrap();
        assert!(store.list_ca_journals().await.unwrap().is_empty());
    });
}
