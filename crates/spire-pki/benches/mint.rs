//! X509-SVID minting from a CSR: parse and verify the CSR, build the certificate, sign it.
#![allow(
    clippy::unwrap_used,
    reason = "benchmark set-up: a failure should abort the run"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use spiffe_core::{KeyType, PrivateKey, SpiffeId, TrustDomain};
use spire_pki::{Subject, SvidRequest, X509Authority, make_csr, parse_csr, self_signed_x509_ca};
use spire_plugin::{LocalSigner, Signer};

fn mint(c: &mut Criterion) {
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
        Duration::from_secs(86400),
        now,
    )
    .unwrap();
    let ca = X509Authority::new(ca_der, signer, td).unwrap();
    let csr = make_csr(PrivateKey::generate(KeyType::EcP256).unwrap(), None).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/workload").unwrap();
    c.bench_function("mint_x509_svid_from_csr_p256", |b| {
        b.iter(|| {
            let parsed = parse_csr(&csr).unwrap();
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

criterion_group!(benches, mint);
criterion_main!(benches);
