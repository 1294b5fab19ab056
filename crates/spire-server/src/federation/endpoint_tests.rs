//! Tests of the bundle endpoint: answers, the served document, serving certificate reloads.

use std::str::FromStr;

use http_body_util::BodyExt;
use spiffe_core::TrustDomain;
use spire_datastore::{RootCa, StoredBundle};

use super::*;

fn self_signed(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    (params.self_signed(&key).unwrap(), key)
}

async fn body(resp: Response<Full<Bytes>>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn stored(td: &str, ders: &[Vec<u8>], sequence: u64) -> StoredBundle {
    let mut b = StoredBundle::new(TrustDomain::from_str(td).unwrap());
    b.root_cas = ders
        .iter()
        .map(|d| RootCa {
            der: d.clone(),
            tainted: false,
        })
        .collect();
    b.sequence_number = sequence;
    b.refresh_hint = 17;
    b
}

#[tokio::test]
async fn only_get_slash_is_served() {
    let b = stored("example.org", &[], 1);
    let r = respond(&Method::POST, "/", Some(&b), Duration::from_secs(300));
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body(r).await, "405 method not allowed\n");
    let r = respond(&Method::GET, "/bundle", Some(&b), Duration::from_secs(300));
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(r).await, "404 page not found\n");
    let r = respond(&Method::GET, "/", None, Duration::from_secs(300));
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body(r).await, "500 unable to retrieve local bundle\n");
}

#[tokio::test]
async fn bundle_is_served_with_the_configured_hint_and_stored_sequence() {
    let (ca, _) = self_signed("ca");
    let b = stored("example.org", &[ca.der().to_vec()], 42);
    let r = respond(&Method::GET, "/", Some(&b), Duration::from_secs(300));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = body(r).await;
    // SPIRE's json.MarshalIndent shape: keys first, then sequence, then hint.
    let keys_at = text.find("\"keys\"").unwrap();
    let seq_at = text.find("\"spiffe_sequence\": 42").unwrap();
    let hint_at = text.find("\"spiffe_refresh_hint\": 300").unwrap();
    assert!(keys_at < seq_at && seq_at < hint_at, "{text}");
    assert!(text.starts_with("{\n    \"keys\": [\n        {\n            \"use\": \"x509-svid\""));
    let parsed = spiffe_core::Bundle::parse_spiffe_json(
        TrustDomain::from_str("example.org").unwrap(),
        text.as_bytes(),
    )
    .unwrap();
    assert_eq!(parsed.x509_authorities[0].der, ca.der().to_vec());
    assert_eq!(parsed.refresh_hint, Some(300));
    assert_eq!(parsed.sequence_number, Some(42));
}

#[test]
fn display_addr_is_gos() {
    assert_eq!(display_addr(None, 8443), ":8443");
    assert_eq!(
        display_addr(Some("127.0.0.1".parse().unwrap()), 8443),
        "127.0.0.1:8443"
    );
    assert_eq!(display_addr(Some("::1".parse().unwrap()), 1), "[::1]:1");
}

fn write_pair(dir: &Path, name: &str) -> Vec<u8> {
    let (cert, key) = self_signed(name);
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

fn served(cert: &ServingCert) -> Vec<u8> {
    cert.leaf_der()
}

#[test]
fn serving_cert_file_is_reloaded_when_it_changes_and_kept_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_pair(dir.path(), "one.test");
    let cert = ServingCert::load(ServingCertFile {
        cert_file_path: dir.path().join("cert.pem"),
        key_file_path: dir.path().join("key.pem"),
        file_sync_interval: Duration::from_secs(3600),
    })
    .unwrap();
    assert_eq!(served(&cert), first);
    // Unchanged files: nothing reloaded.
    cert.sync();
    assert_eq!(served(&cert), first);
    // New files (with a later modification time): the new certificate is served.
    let later = SystemTime::now() + Duration::from_secs(5);
    let second = write_pair(dir.path(), "two.test");
    for f in ["cert.pem", "key.pem"] {
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(f))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    cert.sync();
    assert_eq!(served(&cert), second);
    // A broken certificate file: the last good one stays.
    std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("cert.pem"))
        .unwrap()
        .set_modified(later + Duration::from_secs(5))
        .unwrap();
    cert.sync();
    assert_eq!(served(&cert), second);
    // A missing file: kept too.
    std::fs::remove_file(dir.path().join("key.pem")).unwrap();
    cert.sync();
    assert_eq!(served(&cert), second);
}

#[test]
fn serving_cert_file_must_load_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = ServingCert::load(ServingCertFile {
        cert_file_path: dir.path().join("cert.pem"),
        key_file_path: dir.path().join("key.pem"),
        file_sync_interval: Duration::from_secs(3600),
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to load certificate: open "),
        "{err}"
    );
}

fn get(headers: &[(&str, &str)]) -> Request<()> {
    let mut r = Request::builder().method(Method::GET).uri("/");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_wait_on_the_current_tag_is_held_until_the_bundle_changes_or_the_wait_ends() {
    let (ca1, _) = self_signed("ca1");
    let (ca2, _) = self_signed("ca2");
    let hint = Duration::from_secs(300);
    let bundle = Arc::new(parking_lot::Mutex::new(stored(
        "example.org",
        &[ca1.der().to_vec()],
        1,
    )));
    let b = bundle.clone();
    let current = move || Some(b.lock().clone());
    let (tx, _) = tokio::sync::watch::channel(0u64);
    let waiters = tokio::sync::Semaphore::new(MAX_WAITERS);

    // A plain request (SPIRE's client): the bundle at once, with our tag and marker.
    let plain = answer(&get(&[]), &current, tx.subscribe(), &waiters, hint).await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(plain.headers()[WATCH_HEADER], "1");
    let tag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let text = body(plain).await;
    assert_eq!(tag, etag(text.as_bytes()));

    // A wait on the current tag with no change: 304 when the wait ends, not before.
    let t = tokio::time::Instant::now();
    let held = answer(
        &get(&[("if-none-match", &tag), (WAIT_HEADER, "5")]),
        &current,
        tx.subscribe(),
        &waiters,
        hint,
    )
    .await;
    assert_eq!(held.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(held.headers()["etag"], tag.as_str());
    assert_eq!(t.elapsed(), Duration::from_secs(5));

    // A wait longer than MAX_WAIT is capped.
    let t = tokio::time::Instant::now();
    let held = answer(
        &get(&[("if-none-match", &tag), (WAIT_HEADER, "100000")]),
        &current,
        tx.subscribe(),
        &waiters,
        hint,
    )
    .await;
    assert_eq!(held.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(t.elapsed(), MAX_WAIT);

    // The bundle changes during the wait: the new bundle, at the change.
    let rx = tx.subscribe();
    let b = bundle.clone();
    let ders = vec![ca1.der().to_vec(), ca2.der().to_vec()];
    let changer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        *b.lock() = stored("example.org", &ders, 2);
        tx.send_modify(|g| *g += 1);
        tx
    });
    let t = tokio::time::Instant::now();
    let changed = answer(
        &get(&[("if-none-match", &tag), (WAIT_HEADER, "30")]),
        &current,
        rx,
        &waiters,
        hint,
    )
    .await;
    assert_eq!(t.elapsed(), Duration::from_secs(2));
    assert_eq!(changed.status(), StatusCode::OK);
    let new_tag = changed.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_tag, tag);
    {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(ca2.der());
        assert!(body(changed).await.contains(&b64));
    }
    let tx = changer.await.unwrap();

    // A stale tag is answered at once; so is every wait once the waiters are all taken.
    let t = tokio::time::Instant::now();
    let stale = answer(
        &get(&[("if-none-match", &tag), (WAIT_HEADER, "30")]),
        &current,
        tx.subscribe(),
        &waiters,
        hint,
    )
    .await;
    assert_eq!(stale.status(), StatusCode::OK);
    let none = tokio::sync::Semaphore::new(0);
    let busy = answer(
        &get(&[("if-none-match", &new_tag), (WAIT_HEADER, "30")]),
        &current,
        tx.subscribe(),
        &none,
        hint,
    )
    .await;
    assert_eq!(busy.status(), StatusCode::OK);
    assert_eq!(t.elapsed(), Duration::ZERO);

    // Malformed waits are plain requests.
    for headers in [
        vec![(WAIT_HEADER, "30")],
        vec![("if-none-match", new_tag.as_str()), (WAIT_HEADER, "soon")],
        vec![("if-none-match", new_tag.as_str()), (WAIT_HEADER, "0")],
    ] {
        let r = answer(&get(&headers), &current, tx.subscribe(), &waiters, hint).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn acme_keys_go_to_the_keymanager_under_spires_ids() {
    use spire_plugin::KeyManager as _;
    let d = tempfile::tempdir().unwrap();
    let km = Arc::new(spire_plugins::keymanager::LocalKeyManager::memory());
    assert_eq!(acme_user_agent(), "SPIRE-1.13.3");
    let acme = AcmeConfig {
        directory_url: "https://127.0.0.1:1/directory".into(),
        domain_name: "bundle.example.org".into(),
        email: "admin@example.org".into(),
        tos_accepted: false,
        cache_dir: d.path().join("bundle-acme"),
    };
    let http = spire_acme::AcmeHttp::with_tls(
        spire_tls::web_client_config(&[self_signed("ca.example.org").0.der().clone()]).unwrap(),
        &acme_user_agent(),
    )
    .unwrap();
    let m = acme_manager(&acme, km.clone(), http, Arc::new(spire_clock::SystemClock));
    // Another name than domain_name gets nothing; the domain's first hello makes the
    // certificate key and the account key in the KeyManager, then fails on the
    // unreachable CA (and nothing is cached).
    let other = m.get_certificate(Some("other.example.org"), &[]).await;
    assert!(
        matches!(other, Err(spire_acme::HelloError::NotAllowed(_))),
        "{other:?}"
    );
    let err = m
        .get_certificate(Some("bundle.example.org"), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let mut ids: Vec<String> = km
        .get_public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "bundle-acme-acme_account+key",
            "bundle-acme-bundle.example.org"
        ]
    );
    assert!(!d.path().join("bundle-acme/bundle.example.org").exists());
}
