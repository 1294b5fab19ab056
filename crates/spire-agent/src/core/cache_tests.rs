//! Unit tests of the SVID cache.
use super::*;
use crate::core::entry::testing::entry;
use std::time::{Duration, UNIX_EPOCH};

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn svid(tag: u8) -> X509SvidRecord {
    X509SvidRecord {
        chain: vec![vec![tag]],
        key_pkcs8: vec![tag],
        not_before: UNIX_EPOCH,
        not_after: UNIX_EPOCH + Duration::from_secs(100),
    }
}

fn sel(s: &[&str]) -> Vec<Selector> {
    s.iter().map(|x| Selector::parse(x).unwrap()).collect()
}

fn set(s: &[&str]) -> SelectorKeys {
    SelectorKeys::new(&sel(s))
}

fn entries(list: &[Entry]) -> EntryMap {
    list.iter()
        .map(|e| (e.id.clone(), Arc::new(e.clone())))
        .collect()
}

fn own_bundles() -> BTreeMap<TrustDomain, Bundle> {
    let mut m = BTreeMap::new();
    m.insert(td(), Bundle::new(td()));
    m
}

fn never(_: &Entry, _: &X509SvidRecord) -> bool {
    false
}

#[test]
fn matching_is_subset_and_svids_flow() {
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    let es = entries(&[
        entry("a", "/a", &["unix:uid:1"], 1),
        entry("b", "/b", &["unix:uid:1", "unix:gid:2"], 1),
        entry("c", "/c", &["unix:uid:3"], 1),
    ]);
    let out = c.update_entries(&es, own_bundles(), &mut never);
    assert_eq!(out.created.len(), 3);
    // Room in the cache: everything is stale (to be minted).
    let stale: Vec<_> = c
        .stale_entries()
        .into_iter()
        .map(|s| s.entry.id.clone())
        .collect();
    assert_eq!(stale, ["a", "b", "c"]);

    let w = set(&["unix:uid:1", "unix:gid:2", "unix:user:x"]);
    let m: Vec<_> = c
        .matching_entries(&w)
        .iter()
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(m, ["a", "b"]);
    assert!(c.missing_svids(&w));
    assert!(!c.workload_update(&w).has_identity());

    let sub = c.subscribe(&sel(&["unix:uid:1", "unix:gid:2"]), 5);
    let other = c.subscribe(&sel(&["unix:uid:3"]), 5);
    let (notify, unknown) = c.update_svids(vec![
        ("a".into(), svid(1)),
        ("b".into(), svid(2)),
        ("zzz".into(), svid(9)),
    ]);
    assert_eq!(notify, [sub]);
    assert_eq!(unknown, ["zzz"]);
    assert!(!c.missing_svids(&w));
    let u = c.workload_update(&set(&["unix:uid:1", "unix:gid:2"]));
    assert_eq!(u.identities.len(), 2);
    assert_eq!(u.identities[0].entry.id, "a");
    assert!(u.bundle.is_some());
    let stale: Vec<_> = c
        .stale_entries()
        .into_iter()
        .map(|s| s.entry.id.clone())
        .collect();
    assert_eq!(stale, ["c"]);

    // Deleting b notifies only the subscriber whose selectors cover b's.
    let es2 = entries(&[
        entry("a", "/a", &["unix:uid:1"], 1),
        entry("c", "/c", &["unix:uid:3"], 1),
    ]);
    let out = c.update_entries(&es2, own_bundles(), &mut never);
    assert_eq!(out.removed.len(), 1);
    assert_eq!(out.notify, [sub]);
    assert_eq!(c.svid_count(), 1);
    c.unsubscribe(sub);
    c.unsubscribe(other);
    assert!(c.subscriber_selectors(sub).is_none());
}

#[test]
fn revision_change_and_rotation_mark_stale() {
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    c.update_entries(
        &entries(&[
            entry("a", "/a", &["unix:uid:1"], 1),
            entry("b", "/b", &["unix:uid:2"], 1),
        ]),
        own_bundles(),
        &mut never,
    );
    c.update_svids(vec![("a".into(), svid(1)), ("b".into(), svid(2))]);
    assert!(c.stale_entries().is_empty());
    let out = c.update_entries(
        &entries(&[
            entry("a", "/a", &["unix:uid:1"], 2),
            entry("b", "/b", &["unix:uid:2"], 1),
        ]),
        own_bundles(),
        &mut |e: &Entry, _: &X509SvidRecord| e.id == "b",
    );
    assert_eq!(out.updated.len(), 1);
    // Counted as SPIRE's cache manager counts them: "b" due, "a" changed.
    assert_eq!((out.expiring, out.outdated), (1, 1));
    let stale = c.stale_entries();
    assert_eq!(stale.len(), 2);
    assert_eq!(
        stale[0].svid_expires_at,
        Some(UNIX_EPOCH + Duration::from_secs(100))
    );
}

#[test]
fn own_bundle_change_notifies_everyone() {
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    c.update_entries(
        &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
        own_bundles(),
        &mut never,
    );
    let s1 = c.subscribe(&sel(&["unix:uid:1"]), 0);
    let s2 = c.subscribe(&sel(&["unix:uid:9"]), 0);
    let mut b = Bundle::new(td());
    b.refresh_hint = Some(5);
    let mut bundles = BTreeMap::new();
    bundles.insert(td(), b);
    let out = c.update_entries(
        &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
        bundles.clone(),
        &mut never,
    );
    assert_eq!(out.notify, [s1, s2]);
    assert_eq!(out.bundles_changed, [td()]);
    // Unchanged: nobody.
    let out = c.update_entries(
        &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
        bundles,
        &mut never,
    );
    assert!(out.notify.is_empty());
    assert!(out.bundles_changed.is_empty());
}

#[test]
fn federated_bundles_only_for_federates_with() {
    let fed = TrustDomain::new("other.org").unwrap();
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    let mut a = entry("a", "/a", &["unix:uid:1"], 1);
    a.set_federates_with(vec![fed.clone()]);
    let b = entry("b", "/b", &["unix:uid:2"], 1);
    let mut bundles = own_bundles();
    bundles.insert(fed.clone(), Bundle::new(fed.clone()));
    c.update_entries(
        &entries(&[a.clone(), b.clone()]),
        bundles.clone(),
        &mut never,
    );
    c.update_svids(vec![("a".into(), svid(1)), ("b".into(), svid(2))]);
    assert_eq!(
        c.workload_update(&set(&["unix:uid:1"]))
            .federated_bundles
            .len(),
        1
    );
    assert!(
        c.workload_update(&set(&["unix:uid:2"]))
            .federated_bundles
            .is_empty()
    );
    // A federated bundle change notifies the federating subscriber only.
    let s1 = c.subscribe(&sel(&["unix:uid:1"]), 0);
    let _s2 = c.subscribe(&sel(&["unix:uid:2"]), 0);
    let mut fb = Bundle::new(fed.clone());
    fb.sequence_number = Some(2);
    bundles.insert(fed.clone(), fb);
    let out = c.update_entries(&entries(&[a, b]), bundles, &mut never);
    assert_eq!(out.notify, [s1]);
    // Removal of the federated bundle.
    let out = c.update_entries(
        &entries(&[entry("b", "/b", &["unix:uid:2"], 1)]),
        own_bundles(),
        &mut never,
    );
    assert_eq!(out.bundles_changed, [fed]);
}

#[test]
fn lru_eviction_spares_active_subscribers() {
    let mut c = Cache::new(td(), Bundle::new(td()), 2);
    let es = entries(&[
        entry("a", "/a", &["unix:uid:1"], 1),
        entry("b", "/b", &["unix:uid:2"], 1),
        entry("c", "/c", &["unix:uid:3"], 1),
    ]);
    c.update_entries(&es, own_bundles(), &mut never);
    // Only two fit: a and b are stale, c waits.
    let stale: Vec<_> = c
        .stale_entries()
        .into_iter()
        .map(|s| s.entry.id.clone())
        .collect();
    assert_eq!(stale, ["a", "b"]);
    c.update_svids(vec![("a".into(), svid(1)), ("b".into(), svid(2))]);
    // a was used recently, b not; a subscriber for c arrives.
    c.touch(&set(&["unix:uid:1"]), 100);
    let sub = c.subscribe(&sel(&["unix:uid:3"]), 200);
    c.refresh_stale_for_subscribers();
    let stale: Vec<_> = c
        .stale_entries()
        .into_iter()
        .map(|s| s.entry.id.clone())
        .collect();
    assert_eq!(stale, ["c"]);
    c.update_svids(vec![("c".into(), svid(3))]);
    assert_eq!(c.svid_count(), 3);
    // Next sync evicts the least recently used SVID without a subscriber: b.
    let out = c.update_entries(&es, own_bundles(), &mut never);
    assert_eq!(out.evicted, ["b"]);
    assert_eq!(c.svid_count(), 2);
    assert!(c.workload_update(&set(&["unix:uid:3"])).has_identity());
    c.unsubscribe(sub);
    assert_eq!(c.entry_count(), 3);
    assert_eq!(c.entries().len(), 3);
    assert_eq!(c.identities().len(), 2);
}

#[test]
fn svids_of_a_tainted_authority_are_dropped_and_minted_again() {
    use crate::core::taint::testing::{ca, svid as chain, t};
    let old = ca(t(0));
    let new = ca(t(0));
    let record = |chain: Vec<Vec<u8>>| X509SvidRecord {
        chain,
        key_pkcs8: vec![],
        not_before: t(10),
        not_after: t(610),
    };
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    c.update_entries(
        &entries(&[
            entry("a", "/a", &["unix:uid:1"], 1),
            entry("b", "/b", &["unix:uid:1"], 1),
        ]),
        own_bundles(),
        &mut never,
    );
    c.update_svids(vec![
        ("a".into(), record(chain(&old, t(10)))),
        ("b".into(), record(chain(&new, t(10)))),
    ]);
    let sub = c.subscribe(&sel(&["unix:uid:1"]), 0);
    assert!(c.stale_entries().is_empty());
    assert_eq!(c.svid_entry_ids(), ["a", "b"]);

    let out = c.drop_tainted_svids(
        &["a".into(), "b".into(), "gone".into()],
        &[old.certificate().to_vec()],
        t(20),
    );
    assert_eq!(out.dropped, ["a"]);
    assert!(out.errors.is_empty());
    assert_eq!(c.svid_entry_ids(), ["b"]);
    // The next SVID sync mints it again, as a creation.
    c.refresh_stale_for_subscribers();
    let stale = c.stale_entries();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].entry.id, "a");
    assert_eq!(stale[0].svid_expires_at, None);
    // An SVID that cannot be judged (expired) is kept and reported.
    let out = c.drop_tainted_svids(&["b".into()], &[new.certificate().to_vec()], t(5000));
    assert!(out.dropped.is_empty());
    assert_eq!(out.errors.len(), 1);
    c.unsubscribe(sub);
}

#[test]
fn selector_change_moves_the_entry() {
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    c.update_entries(
        &entries(&[entry("a", "/a", &["unix:uid:1"], 1)]),
        own_bundles(),
        &mut never,
    );
    c.update_svids(vec![("a".into(), svid(1))]);
    let s1 = c.subscribe(&sel(&["unix:uid:1"]), 0);
    let s2 = c.subscribe(&sel(&["unix:uid:2"]), 0);
    let out = c.update_entries(
        &entries(&[entry("a", "/a", &["unix:uid:2"], 2)]),
        own_bundles(),
        &mut never,
    );
    assert_eq!(out.notify, [s1, s2]);
    assert!(!c.workload_update(&set(&["unix:uid:1"])).has_identity());
    assert!(c.workload_update(&set(&["unix:uid:2"])).has_identity());
    c.mark_stale(&["a".into(), "nope".into()]);
    assert_eq!(c.stale_entries().len(), 1);
}

/// A selector many entries share is indexed once, with every holder; holders leave as
/// their entries go or change, and the slot goes with the last one.
#[test]
fn shared_selector_index_follows_its_entries() {
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    let all = [
        entry("a", "/a", &["unix:uid:1"], 1),
        entry("b", "/b", &["unix:uid:1"], 1),
        entry("c", "/c", &["unix:uid:1", "unix:gid:2"], 1),
    ];
    c.update_entries(&entries(&all), own_bundles(), &mut never);
    assert_eq!(c.index.len(), 2);
    assert!(matches!(c.index.get("unix:uid:1"), Some(Holders::Many(s)) if s.len() == 3));
    let ids = |c: &Cache, s: &[&str]| -> Vec<String> {
        c.matching_entries(&set(s))
            .iter()
            .map(|e| e.id.to_string())
            .collect()
    };
    assert_eq!(ids(&c, &["unix:uid:1"]), ["a", "b"]);
    assert_eq!(ids(&c, &["unix:uid:1", "unix:gid:2"]), ["a", "b", "c"]);

    // b goes, c moves to another selector: a alone holds uid:1.
    let next = [
        all[0].clone(),
        entry("c", "/c", &["unix:uid:9", "unix:gid:2"], 2),
    ];
    let out = c.update_entries(&entries(&next), own_bundles(), &mut never);
    assert_eq!(out.removed.len(), 1);
    assert_eq!(out.updated.len(), 1);
    assert!(matches!(c.index.get("unix:uid:1"), Some(Holders::One(id)) if id == "a"));
    assert_eq!(ids(&c, &["unix:uid:1", "unix:gid:2"]), ["a"]);
    assert_eq!(ids(&c, &["unix:uid:9", "unix:gid:2"]), ["c"]);

    // Nothing left: no slot left either.
    c.update_entries(&EntryMap::default(), own_bundles(), &mut never);
    assert!(c.index.is_empty());
    assert_eq!(c.entry_count(), 0);
}

/// The cache keys its records and index slots with the entry's own strings, so a large
/// cache holds each ID and each selector once.
#[test]
fn keys_share_the_entries_strings() {
    let mut c = Cache::new(td(), Bundle::new(td()), 0);
    let es = entries(&[entry("a", "/a", &["unix:uid:1"], 1)]);
    c.update_entries(&es, own_bundles(), &mut never);
    let e = &es["a"];
    let (key, record) = c.records.get_key_value("a").unwrap();
    assert!(ArcStr::ptr_eq(key, &e.id));
    assert!(Arc::ptr_eq(&record.entry, e));
    let (sel, holders) = c.index.get_key_value("unix:uid:1").unwrap();
    assert!(ArcStr::ptr_eq(sel, &e.selector_keys()[0]));
    assert!(matches!(holders, Holders::One(id) if ArcStr::ptr_eq(id, &e.id)));
}
