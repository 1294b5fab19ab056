//! Several servers on one database: bundles another server writes (its CA appended to the
//! one bundle, a federated bundle refreshed) are noticed by `bundles_changed_in_store` and
//! served after `refresh_bundles`; nothing is reported while the store matches.

use spiffe_core::TrustDomain;
use spire_clock::ManualClock;
use spire_datastore::StoredBundle;

use crate::clock_tests::server_on;

#[tokio::test]
async fn another_servers_ca_in_the_store_is_noticed_and_served() {
    let clock = ManualClock::new(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_924_992_000),
    );
    let ours = server_on(&clock).await;
    let other = server_on(&clock).await;
    let s = &ours.server;
    assert!(!s.bundles_changed_in_store().await.unwrap());

    // The other server appends its CA to our trust domain's bundle in our database.
    let mut theirs = other.server.own_bundle().unwrap();
    assert_ne!(theirs.root_cas, s.own_bundle().unwrap().root_cas);
    theirs.jwt_signing_keys.clear();
    let their_root = theirs.root_cas[0].der.clone();
    s.registry().ds().append_bundle(theirs).await.unwrap();
    assert!(s.bundles_changed_in_store().await.unwrap());
    // Until refreshed, we still serve the old bundle.
    assert_eq!(s.own_bundle().unwrap().root_cas.len(), 1);

    let before = s.registry().subscribe().borrow().bundles;
    s.refresh_bundles().await.unwrap();
    let own = s.own_bundle().unwrap();
    assert_eq!(own.root_cas.len(), 2);
    assert!(own.root_cas.iter().any(|r| r.der == their_root));
    assert!(
        s.registry().subscribe().borrow().bundles > before,
        "agents are told"
    );
    assert!(!s.bundles_changed_in_store().await.unwrap());

    // A federated bundle written elsewhere counts too.
    let mut fed: StoredBundle = other.server.own_bundle().unwrap();
    fed.trust_domain = TrustDomain::new("federated.test").unwrap();
    s.registry().ds().create_bundle(fed).await.unwrap();
    assert!(s.bundles_changed_in_store().await.unwrap());
    s.refresh_bundles().await.unwrap();
    assert!(!s.bundles_changed_in_store().await.unwrap());
    assert!(
        s.federated_bundle(&TrustDomain::new("federated.test").unwrap())
            .is_some()
    );
}
