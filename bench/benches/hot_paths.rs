//! Micro-benchmarks of the hot paths, in process: SPIFFE ID parsing, X509-SVID minting from
//! a CSR, JWT-SVID signing and validation, and entry matching over 100 000 entries (the
//! agent's cache for a workload's selectors, the server's index for an agent).
//!
//! `cargo bench -p spire-bench --bench hot_paths`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark set-up: a failure should abort the run"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use spiffe_core::bundle::JwtAuthority;
use spiffe_core::jwt::JwtSvidClaims;
use spiffe_core::{Bundle, JwsAlgorithm, JwtSvid, KeyType, PrivateKey, SpiffeId, TrustDomain};
use spire_agent::core::cache::{Cache, SelectorKeys};
use spire_agent::core::entry::Entry;
use spire_agent::core::sync::EntryMap;
use spire_datastore::RegistrationEntry;
use spire_pki::{Subject, SvidRequest, X509Authority, make_csr, parse_csr, self_signed_x509_ca};
use spire_plugin::{LocalSigner, Selector, Signer};
use spire_server::index::EntryIndex;

const ENTRIES: usize = 100_000;

fn spiffe_id(c: &mut Criterion) {
    c.bench_function("spiffe_id_parse", |b| {
        b.iter(|| {
            SpiffeId::parse(black_box(
                "spiffe://example.org/ns/default/sa/frontend-7d9f",
            ))
        })
    });
}

fn x509_mint(c: &mut Criterion) {
    let td = TrustDomain::new("example.org").unwrap();
    let signer: Arc<dyn Signer> = Arc::new(LocalSigner::new(
        "ca",
        PrivateKey::generate(KeyType::EcP256).unwrap(),
    ));
    let now = SystemTime::now();
    let ca_der = self_signed_x509_ca(
        signer.clone(),
        &td,
        &Subject::default_ca(),
        &[],
        Duration::from_secs(86400),
        now,
    )
    .unwrap();
    let ca = X509Authority::new(ca_der, signer, td).unwrap();
    let csr = make_csr(PrivateKey::generate(KeyType::EcP256).unwrap(), None).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/workload").unwrap();
    c.bench_function("x509_svid_mint_from_csr_p256", |b| {
        b.iter(|| {
            let parsed = parse_csr(black_box(&csr)).unwrap();
            ca.sign_x509_svid(&SvidRequest {
                id: &id,
                public_key: &parsed.public_key,
                dns_names: &[],
                subject: None,
                ttl: Duration::from_secs(3600),
                now,
            })
            .unwrap()
        })
    });
}

fn jwt(c: &mut Criterion) {
    let td = TrustDomain::new("example.org").unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut bundle = Bundle::new(td);
    bundle.jwt_authorities.push(JwtAuthority {
        key_id: "kid-1".into(),
        public_key: key.public_key().clone(),
        expires_at: 0,
        tainted: false,
    });
    let id = SpiffeId::parse("spiffe://example.org/workload").unwrap();
    let audience = vec!["bench".to_string()];
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = JwtSvidClaims {
        subject: &id,
        audience: &audience,
        expires_at: secs + 300,
        issued_at: secs,
        issuer: None,
    };
    c.bench_function("jwt_svid_sign_es256", |b| {
        b.iter(|| {
            spiffe_core::jwt::sign(black_box(&claims), &key, "kid-1", JwsAlgorithm::ES256).unwrap()
        })
    });
    let token = spiffe_core::jwt::sign(&claims, &key, "kid-1", JwsAlgorithm::ES256).unwrap();
    c.bench_function("jwt_svid_validate_es256", |b| {
        b.iter(|| JwtSvid::parse_and_validate(black_box(&token), &bundle, &["bench"], now).unwrap())
    });
}

/// Entry `i`: a Kubernetes-style workload on one of 1 000 nodes, in one of 100 namespaces.
fn selectors(i: usize) -> Vec<Selector> {
    let mut v = vec![
        Selector::new("k8s", &format!("ns:ns{}", i % 100)).unwrap(),
        Selector::new("k8s", &format!("sa:sa{i}")).unwrap(),
    ];
    v.sort();
    v
}

fn agent_cache_matching(c: &mut Criterion) {
    let td = TrustDomain::new("example.org").unwrap();
    let mut cache = Cache::new(td.clone(), Bundle::new(td.clone()), 1000);
    let entries: EntryMap = (0..ENTRIES)
        .map(|i| {
            let mut e = Entry::new(
                &format!("entry-{i:06}"),
                SpiffeId::parse(&format!("spiffe://example.org/w/{i}")).unwrap(),
                &selectors(i),
            );
            e.revision_number = 1;
            e.created_at = 1;
            (e.id.clone(), Arc::new(e))
        })
        .collect();
    let mut bundles = BTreeMap::new();
    bundles.insert(td.clone(), Bundle::new(td));
    cache.update_entries(&entries, bundles, &mut |_, _| false);
    // What the k8s attestor reports for the pod of entry 4242 (plus noise).
    let mut workload: BTreeSet<Selector> = selectors(4242).into_iter().collect();
    for s in [
        "k8s:container-name:app",
        "k8s:pod-label:app:frontend",
        "k8s:node-name:node-7",
        "k8s:pod-uid:1234",
    ] {
        workload.insert(Selector::parse(s).unwrap());
    }
    c.bench_function("agent_cache_matching_entries_100k", |b| {
        b.iter(|| {
            // Keys are built per request, as the Workload API does.
            let m = cache.matching_entries(&SelectorKeys::new(black_box(&workload)));
            assert_eq!(m.len(), 1);
            m
        })
    });
}

fn server_index_authorized(c: &mut Criterion) {
    let server_id = SpiffeId::parse("spiffe://example.org/spire/server").unwrap();
    let mut index = EntryIndex::new(&server_id);
    for i in 0..ENTRIES {
        let mut e = RegistrationEntry::new(
            SpiffeId::parse(&format!("spiffe://example.org/w/{i}")).unwrap(),
            SpiffeId::parse(&format!(
                "spiffe://example.org/spire/agent/k8s_psat/c1/node{}",
                i % 1000
            ))
            .unwrap(),
            selectors(i),
        );
        e.entry_id = format!("entry-{i:06}");
        index.upsert_entry(&e);
    }
    c.bench_function("server_index_authorized_entries_100_of_100k", |b| {
        b.iter(|| {
            let v = index.authorized_entries(black_box(
                "spiffe://example.org/spire/agent/k8s_psat/c1/node42",
            ));
            assert_eq!(v.len(), ENTRIES / 1000);
            v
        })
    });
}

criterion_group!(
    benches,
    spiffe_id,
    x509_mint,
    jwt,
    agent_cache_matching,
    server_index_authorized
);
criterion_main!(benches);
