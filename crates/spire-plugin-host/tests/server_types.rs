//! The server plugin types (UpstreamAuthority, Notifier, BundlePublisher,
//! CredentialComposer), the agent's SVIDStore and the IdentityProvider host service against
//! the Go SDK plugins of `conformance/goplugins`: what they are given arrives intact, what
//! they answer comes back through the traits, and their refusals keep their codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use spiffe_core::{KeyType, PrivateKey, SpiffeId, TrustDomain};
use spire_plugin::{
    BundlePublisher as _, Code, CredentialComposer as _, JwtKey, LocalSigner, Notifier as _,
    PluginBundle, StoredSvid, SvidStore as _, UpstreamAuthority as _, X509Authority,
    X509CaAttributes, X509SvidAttributes,
};
use spire_plugin_host::broker::HostServices;
use spire_plugin_host::hostservices::{self, IdentityFetcher, IdentityFetcherCell, X509Identity};
use spire_plugin_host::{ExternalPlugin, HostError};

mod common;
use common::{core, plugins_dir, spec};

/// Starts the Go plugin `file` as `plugin_type`, configured with `data`.
async fn start<T>(
    file: &str,
    plugin_type: &str,
    data: &str,
    services: HostServices,
    bind: impl FnOnce(Arc<ExternalPlugin>) -> Result<T, HostError>,
) -> Result<T, HostError> {
    let path = plugins_dir().join(file);
    ExternalPlugin::start(
        &spec(file, plugin_type, &path, None),
        &core(),
        Some(data),
        services,
        bind,
    )
    .await
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn bundle(ders: Vec<Vec<u8>>) -> PluginBundle {
    PluginBundle {
        trust_domain: "example.org".into(),
        x509_authorities: ders
            .into_iter()
            .map(|der| X509Authority {
                der,
                tainted: false,
            })
            .collect(),
        jwt_authorities: vec![JwtKey {
            public_key: vec![1, 2, 3],
            key_id: "kid-1".into(),
            expires_at: 0,
            tainted: false,
        }],
        refresh_hint: 60,
        sequence_number: 3,
    }
}

/// A self-signed CA: (certificate DER, signer, PKCS#8 PEM key).
fn ca() -> (Vec<u8>, Arc<LocalSigner>, String) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let pem = pem("PRIVATE KEY", key.pkcs8_der());
    let signer = Arc::new(LocalSigner::new("ca", key));
    let der = spire_pki::self_signed_x509_ca(
        signer.clone(),
        &td(),
        &spire_pki::Subject::default_ca(),
        &[],
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .unwrap();
    (der, signer, pem)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

/// What an UpstreamAuthority said after its first answers.
#[derive(Debug, Default)]
struct News {
    roots: std::sync::Mutex<Vec<Vec<X509Authority>>>,
}

impl spire_plugin::UpstreamUpdates for News {
    fn x509_roots(&self, roots: Vec<X509Authority>) {
        self.roots.lock().unwrap().push(roots);
    }
    fn jwt_keys(&self, _keys: Vec<JwtKey>) {}
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn an_upstream_authority_mints_our_ca_and_refuses_what_it_cannot_sign() {
    use spire_plugin_host::upstreamauthority::ExternalUpstreamAuthority;
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _, key_pem) = ca();
    let cert_path = dir.path().join("up.crt");
    let key_path = dir.path().join("up.key");
    std::fs::write(&cert_path, pem("CERTIFICATE", &upstream)).unwrap();
    std::fs::write(&key_path, key_pem).unwrap();
    let (later, _, _) = ca();
    let later_path = dir.path().join("later.crt");
    std::fs::write(&later_path, pem("CERTIFICATE", &later)).unwrap();

    // A missing file is a configuration error, in SPIRE's words.
    let err = start(
        "upstreamauthority-diskca",
        "UpstreamAuthority",
        "cert_file_path = \"/nonexistent\"\nkey_file_path = \"/nonexistent\"",
        HostServices::none(),
        ExternalUpstreamAuthority::bind,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "failed to configure plugin \"upstreamauthority-diskca\": rpc error: code = InvalidArgument desc = "
        ),
        "{err}"
    );

    let ua = start(
        "upstreamauthority-diskca",
        "UpstreamAuthority",
        &format!(
            "cert_file_path = \"{}\"\nkey_file_path = \"{}\"\nlater_root_file_path = \"{}\"\nlater_after_seconds = 1",
            cert_path.display(),
            key_path.display(),
            later_path.display()
        ),
        HostServices::none(),
        ExternalUpstreamAuthority::bind,
    )
    .await
    .unwrap();

    // Our CA's CSR: minted under the upstream root, for the asked lifetime.
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let signer = Arc::new(LocalSigner::new("x509-CA-A", key));
    let csr =
        spire_pki::make_ca_csr(signer, &td(), &spire_pki::Subject::default_ca(), &[]).unwrap();
    let news = Arc::new(News::default());
    let minted = ua.mint_x509_ca(&csr, 600, news.clone()).await.unwrap();
    assert_eq!(minted.upstream_x509_roots, vec![upstream.clone()]);
    assert_eq!(minted.x509_ca_chain.len(), 1);
    let ca_cert = &minted.x509_ca_chain[0];
    spiffe_core::x509svid::verify_x509_path(
        ca_cert,
        &[],
        std::slice::from_ref(&upstream),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(
        spire_pki::certificate_uris(ca_cert).unwrap(),
        vec!["spiffe://example.org".to_owned()]
    );
    // The asked 600 s, after SPIRE's 10 s backdating of notBefore.
    let facts = spire_pki::certificate_facts(ca_cert).unwrap();
    assert_eq!(facts.not_after - facts.not_before, 610);

    // A second answer on the open stream (the upstream added a root) reaches the caller.
    let mut waited = 0;
    while news.roots.lock().unwrap().is_empty() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let later_roots: Vec<Vec<u8>> = news.roots.lock().unwrap()[0]
        .iter()
        .map(|r| r.der.clone())
        .collect();
    assert_eq!(later_roots, vec![upstream.clone(), later.clone()]);

    // A CSR that does not verify: the plugin's refusal, code kept.
    let mut bad = csr.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let err = ua.mint_x509_ca(&bad, 600, news.clone()).await.unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument, "{err:?}");

    // JWT keys are not taken by this plugin: Unimplemented, which the CA manager handles.
    let err = ua
        .publish_jwt_key(
            &JwtKey {
                public_key: vec![1],
                key_id: "k".into(),
                expires_at: 0,
                tainted: false,
            },
            news.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unimplemented, "{err:?}");
    // Nor does it stream its local bundle unless configured to.
    let err = ua
        .subscribe_to_local_bundle(news.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unimplemented, "{err:?}");

    // Configured with a local-bundle root: the first answer holds the upstream roots.
    let ua = start(
        "upstreamauthority-diskca",
        "UpstreamAuthority",
        &format!(
            "cert_file_path = \"{}\"\nkey_file_path = \"{}\"\nlocal_bundle_root_file_path = \"{}\"",
            cert_path.display(),
            key_path.display(),
            later_path.display()
        ),
        HostServices::none(),
        ExternalUpstreamAuthority::bind,
    )
    .await
    .unwrap();
    let local = ua.subscribe_to_local_bundle(news).await.unwrap();
    let roots: Vec<Vec<u8>> = local.x509_roots.iter().map(|r| r.der.clone()).collect();
    assert_eq!(roots, vec![upstream, later]);
    assert!(local.jwt_keys.is_empty());
}

/// The server identity the IdentityProvider host service hands out in these tests.
struct Identity(Vec<u8>);

#[async_trait::async_trait]
impl IdentityFetcher for Identity {
    async fn fetch_x509_identity(&self) -> Result<X509Identity, String> {
        Ok(X509Identity {
            cert_chain: vec![self.0.clone()],
            private_key: vec![],
            bundle: bundle(vec![self.0.clone()]),
        })
    }
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_notifier_hears_both_events_and_asks_the_identity_provider() {
    use spire_plugin_host::notifier::ExternalNotifier;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let (ca_der, _, _) = ca();
    let identity: IdentityFetcherCell = Arc::default();
    let notifier = start(
        "notifier-bundlefile",
        "Notifier",
        &format!("path = \"{}\"\nrecord_identity = true", events.display()),
        hostservices::server(Arc::default(), identity.clone()),
        ExternalNotifier::bind,
    )
    .await
    .unwrap();

    // Before the server has an identity, SPIRE's message reaches the plugin.
    notifier
        .bundle_loaded(&bundle(vec![ca_der.clone()]))
        .await
        .unwrap();
    let _ = identity.set(Arc::new(Identity(ca_der.clone())));
    notifier
        .bundle_updated(&bundle(vec![ca_der.clone()]))
        .await
        .unwrap();
    let got = lines(&events);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["event"], "loaded");
    assert!(
        got[0]["identity"]
            .as_str()
            .unwrap()
            .contains("IdentityProvider host service has not been initialized"),
        "{}",
        got[0]
    );
    assert_eq!(got[1]["event"], "updated");
    assert_eq!(got[1]["identity"], "spiffe://example.org");
    assert_eq!(got[1]["trust_domain"], "example.org");
    assert_eq!(got[1]["jwt_key_ids"], serde_json::json!(["kid-1"]));
    assert_eq!(got[1]["refresh_hint"], 60);
    assert_eq!(got[1]["sequence_number"], 3);
    let der = base64::engine::general_purpose::STANDARD
        .decode(got[1]["x509_authorities"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(der, ca_der);

    // A notifier that refuses "bundle loaded": its error, which stops a server.
    let refusing = start(
        "notifier-bundlefile",
        "Notifier",
        &format!("path = \"{}\"\nfail_loaded = true", events.display()),
        HostServices::none(),
        ExternalNotifier::bind,
    )
    .await
    .unwrap();
    let err = refusing
        .bundle_loaded(&bundle(vec![ca_der]))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Internal);
    assert_eq!(err.message, "bundle loaded is refused by configuration");
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_bundle_publisher_publishes_what_it_is_given() {
    use spire_plugin_host::bundlepublisher::ExternalBundlePublisher;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle.json");
    let (ca_der, _, _) = ca();
    let publisher = start(
        "bundlepublisher-file",
        "BundlePublisher",
        &format!("path = \"{}\"", out.display()),
        HostServices::none(),
        ExternalBundlePublisher::bind,
    )
    .await
    .unwrap();
    for _ in 0..2 {
        publisher
            .publish_bundle(&bundle(vec![ca_der.clone()]))
            .await
            .unwrap();
    }
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(published["publish_count"], 2);
    assert_eq!(published["sequence_number"], 3);
    assert_eq!(published["jwt_key_ids"], serde_json::json!(["kid-1"]));
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn a_credential_composer_changes_what_it_implements_and_passes_the_rest() {
    use spire_plugin_host::credentialcomposer::ExternalCredentialComposer;
    let cc = start(
        "credentialcomposer-addclaim",
        "CredentialComposer",
        "claim_name = \"department\"\nclaim_value = \"payments\"\ndns_name = \"extra.example.org\"",
        HostServices::none(),
        ExternalCredentialComposer::bind,
    )
    .await
    .unwrap();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();

    // Unimplemented (server CA and SVID): unchanged.
    let ca_in = X509CaAttributes {
        subject: spire_plugin::DistinguishedName {
            country: vec!["US".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        cc.compose_server_x509_ca(ca_in.clone()).await.unwrap(),
        ca_in
    );
    let svid_in = X509SvidAttributes {
        subject: spire_plugin::DistinguishedName {
            organization: vec!["SPIRE".into()],
            ..Default::default()
        },
        dns_sans: vec!["a.example.org".into()],
        extra_extensions: vec![],
    };
    assert_eq!(
        cc.compose_server_x509_svid(svid_in.clone()).await.unwrap(),
        svid_in
    );

    // Workload X509-SVID: a DNS SAN added; agent: an OU added; the rest kept.
    let workload = cc
        .compose_workload_x509_svid(&id, key.public_key(), svid_in.clone())
        .await
        .unwrap();
    assert_eq!(
        workload.dns_sans,
        vec!["a.example.org".to_owned(), "extra.example.org".to_owned()]
    );
    assert_eq!(workload.subject, svid_in.subject);
    let agent = cc
        .compose_agent_x509_svid(&id, key.public_key(), svid_in.clone())
        .await
        .unwrap();
    assert_eq!(agent.subject.organizational_unit, vec!["addclaim-agent"]);
    assert_eq!(agent.subject.organization, vec!["SPIRE"]);

    // JWT claims: the claim added, numbers still integers, lists kept.
    let claims: spire_plugin::JwtClaims = serde_json::from_str(
        r#"{"aud":["x"],"exp":1900000000,"iat":1800000000,"sub":"spiffe://example.org/w"}"#,
    )
    .unwrap();
    let out = cc.compose_workload_jwt_svid(&id, claims).await.unwrap();
    assert_eq!(
        serde_json::Value::Object(out).to_string(),
        r#"{"aud":["x"],"department":"payments","exp":1900000000,"iat":1800000000,"sub":"spiffe://example.org/w"}"#
    );
}

#[tokio::test]
#[ignore = "needs the Go test plugins (scripts/test.sh)"]
async fn an_svid_store_stores_deletes_and_refuses_bad_metadata() {
    use spire_plugin_host::svidstore::ExternalSvidStore;
    let dir = tempfile::tempdir().unwrap();
    let store = start(
        "svidstore-file",
        "SVIDStore",
        &format!("dir = \"{}\"", dir.path().display()),
        hostservices::agent(),
        ExternalSvidStore::bind,
    )
    .await
    .unwrap();
    let (ca_der, _, _) = ca();
    let other = TrustDomain::new("other.org").unwrap();
    let svid = StoredSvid {
        spiffe_id: SpiffeId::parse("spiffe://example.org/db").unwrap(),
        cert_chain: vec![vec![1, 2, 3]],
        private_key: vec![4, 5],
        bundle: vec![ca_der.clone()],
        expires_at: 1_900_000_000,
        federated_bundles: vec![(other, vec![ca_der.clone(), ca_der.clone()])],
    };
    let metadata = ["name:db".to_owned()];
    store.put_x509_svid(&svid, &metadata).await.unwrap();
    let file = dir.path().join("db.json");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["spiffe_id"], "spiffe://example.org/db");
    assert_eq!(stored["expires_at"], 1_900_000_000);
    // Two federated authorities went as one DER blob and were split back.
    assert_eq!(
        stored["federated_bundles"]["spiffe://other.org"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{stored}"
    );
    store.delete_x509_svid(&metadata).await.unwrap();
    assert!(!file.exists());

    let err = store
        .put_x509_svid(&svid, &["name:../escape".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument, "{err:?}");
    let err = store.delete_x509_svid(&metadata).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound, "{err:?}");
}
