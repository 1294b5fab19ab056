//! FetchX509SVID latency with a warm cache: an in-process Workload API server (the real
//! handler, peer tracking and unix workload attestation) and a tonic client over a Unix
//! socket. Prints p50/p99 of a separate timed loop besides criterion's statistics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use hyper_util::rt::TokioIo;
use spiffe_core::{Bundle, KeyType, PrivateKey, SpiffeId, TrustDomain};
use spire_agent::core::entry::{Entry, X509SvidRecord};
use spire_agent::core::sync::EntryMap;
use spire_agent::keys::SlotKey;
use spire_agent::manager::{AgentCreds, Manager, ManagerConfig};
use spire_agent::peertracker::ProcFs;
use spire_agent::workload::{WorkloadApi, WorkloadApiConfig};
use spire_agent::workload_attestor::WorkloadAttestation;
use spire_plugin::{AgentNodeAttestor, Selector, WorkloadAttestor};
use spire_plugins::nodeattestor::join_token::JoinTokenAgent;
use spire_plugins::workloadattestor::unix::{UnixAttestor, UnixConfig};
use spire_proto::workload;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::{Endpoint, Uri};

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// A CA and a workload SVID issued by it.
fn pki(td: &TrustDomain) -> (Vec<u8>, X509SvidRecord) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let leaf_key = KeyPair::try_from(key.pkcs8_der()).unwrap();
    let mut leaf = CertificateParams::new(vec![]).unwrap();
    leaf.subject_alt_names = vec![SanType::URI(
        format!("{}/bench", td.id_string()).try_into().unwrap(),
    )];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (
        ca_cert.der().to_vec(),
        X509SvidRecord {
            chain: vec![leaf_cert.der().to_vec()],
            key_pkcs8: key.pkcs8_der().to_vec(),
            not_before: SystemTime::now(),
            not_after: SystemTime::now() + Duration::from_secs(3600),
        },
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let (ca_der, svid) = pki(&td);
    let mut bundle = Bundle::new(td.clone());
    bundle.add_x509_authority(ca_der);
    // The manager presents this chain, so the key must be the chain's.
    let agent_key = PrivateKey::from_pkcs8_der(&svid.key_pkcs8).unwrap();
    let creds = AgentCreds {
        chain: svid.chain.clone(),
        key: SlotKey {
            id: "agent-svid-A".into(),
            signer: Arc::new(spire_plugin::LocalSigner::new("agent-svid-A", agent_key)),
        },
        reattestable: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(spire_agent::storage::Storage::open(dir.path()).unwrap());
    let node_attestor: Arc<dyn AgentNodeAttestor> = Arc::new(JoinTokenAgent::new("x").unwrap());
    let manager = {
        let _guard = rt.enter();
        Manager::new(
            ManagerConfig {
                trust_domain: td.clone(),
                server_address: "127.0.0.1:1".into(),
                sync_interval: Duration::from_secs(5),
                use_sync_authorized_entries: true,
                workload_key_type: KeyType::EcP256,
                rotation: Default::default(),
                x509_svid_cache_max_size: 1000,
                jwt_svid_cache_max_size: 1000,
                node_attestor_name: "join_token".into(),
                use_push: false,
                rebootstrap_mode: Default::default(),
                rebootstrap_delay: Duration::from_secs(600),
                clock: spire_clock::system(),
                svid_stores: Vec::new(),
                metrics: spire_telemetry::Metrics::disabled(),
            },
            storage,
            Arc::new(spire_agent::keys::SvidKeyStore::memory()),
            node_attestor,
            creds,
            bundle.clone(),
        )
        .unwrap()
    };
    let mut entry = Entry::new(
        "bench",
        SpiffeId::parse("spiffe://example.org/bench").unwrap(),
        &[Selector::parse(&format!("unix:uid:{}", uid())).unwrap()],
    );
    entry.revision_number = 1;
    entry.created_at = 1;
    let mut entries = EntryMap::default();
    entries.insert(entry.id.clone(), std::sync::Arc::new(entry));
    let mut bundles = BTreeMap::new();
    bundles.insert(td.clone(), bundle);
    manager.preload(&entries, bundles, vec![("bench".into(), svid)]);

    let attestors: Vec<(String, Arc<dyn WorkloadAttestor>)> = vec![(
        "unix".into(),
        Arc::new(UnixAttestor::new(UnixConfig::default())),
    )];
    let attestation = Arc::new(WorkloadAttestation::new(attestors, ProcFs::default()));
    let sds = spire_agent::sds::SdsService::new(
        manager.clone(),
        attestation.clone(),
        spire_agent::sds::SdsConfig {
            default_svid_name: "default".into(),
            default_bundle_name: "ROOTCA".into(),
            default_all_bundles_name: "ALL".into(),
            disable_spiffe_cert_validation: false,
        },
    );
    let api = WorkloadApi::new(manager.clone(), attestation, WorkloadApiConfig::default());
    let sock = dir.path().join("api.sock");
    let listener = {
        let _guard = rt.enter();
        spire_agent::endpoints::bind(&sock, 0o777).unwrap()
    };
    rt.spawn(spire_agent::endpoints::serve_workload_api(
        listener,
        api,
        sds,
        spire_telemetry::Metrics::disabled(),
        std::future::pending(),
    ));
    let mut client = rt.block_on(async {
        let path = sock.clone();
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        SpiffeWorkloadApiClient::with_interceptor(channel, |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("workload.spiffe.io", "true".parse().unwrap());
            Ok(req)
        })
    });

    let fetch = |client: &mut SpiffeWorkloadApiClient<_>| {
        let mut client = client.clone();
        async move {
            let mut s = client
                .fetch_x509svid(workload::X509svidRequest {})
                .await
                .unwrap()
                .into_inner();
            let m = s.message().await.unwrap().unwrap();
            assert_eq!(m.svids.len(), 1);
        }
    };
    // Percentiles from a plain timed loop (warm cache, warm attestation cache).
    let mut samples = Vec::with_capacity(2000);
    rt.block_on(async {
        for _ in 0..200 {
            fetch(&mut client).await;
        }
        for _ in 0..2000 {
            let t = Instant::now();
            fetch(&mut client).await;
            samples.push(t.elapsed());
        }
    });
    samples.sort();
    eprintln!(
        "MEASURE FetchX509SVID first message, warm cache: p50 {:?} p99 {:?} (n={})",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        samples.len()
    );
    c.bench_function("fetch_x509svid_warm", |b| {
        b.to_async(&rt).iter(|| fetch(&mut client.clone()));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
