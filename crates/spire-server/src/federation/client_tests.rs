//! Tests of the bundle client: SPIRE's strict decoding, the refresh schedule, updates over TLS
//! against a loopback endpoint and a SQLite datastore.

use std::str::FromStr;

use http_body_util::Full;
use hyper::body::Bytes;
use spire_datastore::{DatabaseType, SqlConfig, SqlStore, StoredBundle};

use super::*;

fn td(s: &str) -> TrustDomain {
    TrustDomain::from_str(s).unwrap()
}

struct Ca {
    der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca() -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = p.self_signed(&key).unwrap();
    Ca {
        der: cert.der().to_vec(),
        issuer: rcgen::Issuer::new(p, key),
    }
}

/// An X509-SVID for `id` from `ca`: (chain, PKCS#8 key).
fn svid(ca: &Ca, id: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
    p.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().unwrap())];
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (vec![cert.der().to_vec()], key.serialize_der())
}

fn bundle_json(ders: &[&[u8]], hint: i64, seq: u64) -> String {
    let mut b = Bundle::new(td("b.test"));
    for d in ders {
        b.add_x509_authority(d.to_vec());
    }
    b.refresh_hint = Some(hint);
    b.sequence_number = Some(seq);
    b.to_spiffe_json()
}

/// A bundle endpoint on loopback presenting `cert` and answering `reply`.
struct Endpoint {
    url: String,
    cert: Arc<spire_tls::SvidResolver>,
    reply: Arc<parking_lot::Mutex<(u16, String)>>,
    /// Headers added to every answer.
    headers: Arc<parking_lot::Mutex<Vec<(&'static str, &'static str)>>>,
}

async fn endpoint() -> Endpoint {
    let cert = spire_tls::SvidResolver::new();
    let reply = Arc::new(parking_lot::Mutex::new((200u16, String::new())));
    let headers = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let tls = spire_tls::https_server_config(cert.clone()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let (r, hs) = (reply.clone(), headers.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let (r, hs) = (r.clone(), hs.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    let (status, body) = r.lock().clone();
                    let extra = hs.lock().clone();
                    async move {
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        for (k, v) in extra {
                            resp.headers_mut()
                                .insert(k, hyper::header::HeaderValue::from_static(v));
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Endpoint {
        url,
        cert,
        reply,
        headers,
    }
}

async fn datastore(dir: &std::path::Path) -> Arc<dyn DataStore> {
    let db = dir.join("ds.sqlite3");
    Arc::new(
        SqlStore::open(&SqlConfig::new(DatabaseType::Sqlite3, db.to_str().unwrap()))
            .await
            .unwrap(),
    )
}

#[test]
fn decode_is_as_strict_as_spire() {
    let t = td("b.test");
    let ca = ca();
    let good = bundle_json(&[&ca.der], 300, 9);
    let b = decode_endpoint_bundle(&t, good.as_bytes()).unwrap();
    assert_eq!(b.trust_domain(), &t);
    assert_eq!(b.x509_authorities.len(), 1);
    assert_eq!(b.refresh_hint, Some(300));
    // SPIRE does not read the sequence number of a fetched bundle.
    assert_eq!(b.sequence_number, None);
    // No hint: 0.
    let no_hint = decode_endpoint_bundle(&t, br#"{"keys":[]}"#).unwrap();
    assert_eq!(no_hint.refresh_hint, Some(0));

    for (body, want) in [
        (&b"not json"[..], "failed to decode bundle: "),
        (br#"{"keys":[{"kty":"EC"}]}"#, "missing use for key entry 0"),
        (
            br#"{"keys":[{"use":"x509-svid","kty":"EC","x5c":[]}]}"#,
            "expected a single certificate in x509-svid entry 0; got 0",
        ),
        (
            br#"{"keys":[{"use":"other","kty":"EC"}]}"#,
            "unrecognized use \"other\" for key entry 0",
        ),
        (
            br#"{"keys":[{"use":"x509-svid","kty":"EC","x5c":["AAAA"]}]}"#,
            "failed to decode bundle: ",
        ),
        (br#"{"spiffe_refresh_hint":5}"#, "failed to decode bundle: "),
    ] {
        let err = decode_endpoint_bundle(&t, body).unwrap_err().to_string();
        assert!(err.starts_with(want), "{err} (want {want})");
    }
}

#[test]
fn next_update_follows_spire() {
    let mut b = Bundle::new(td("b.test"));
    b.refresh_hint = Some(600);
    assert_eq!(next_update(&b), Duration::from_secs(150));
    // A hint under a minute counts as a minute.
    b.refresh_hint = Some(5);
    assert_eq!(next_update(&b), Duration::from_secs(15));
    // No hint and no authorities: a minute, over four.
    b.refresh_hint = Some(0);
    assert_eq!(next_update(&b), Duration::from_secs(15));
    b.refresh_hint = None;
    assert_eq!(next_update(&b), Duration::from_secs(15));
    // No hint: a tenth of the shortest authority lifetime, over four.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
    p.not_before = rcgen::date_time_ymd(2030, 1, 1);
    p.not_after = p.not_before + std::time::Duration::from_secs(40_000);
    let cert = p.self_signed(&key).unwrap();
    b.add_x509_authority(cert.der().to_vec());
    assert_eq!(next_update(&b), Duration::from_secs(1000));
}

#[tokio::test]
async fn https_spiffe_update_stores_good_bundles_and_keeps_them_on_bad_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ds = datastore(dir.path()).await;
    let b = td("b.test");
    let ca1 = ca();
    let ep = endpoint().await;
    let (chain, key) = svid(&ca1, "spiffe://b.test/spire/server");
    ep.cert.set(&chain, &key).unwrap();
    let config = TrustDomainConfig {
        endpoint_url: ep.url.clone(),
        profile: EndpointProfile::HttpsSpiffe(
            SpiffeId::from_str("spiffe://b.test/spire/server").unwrap(),
        ),
    };

    // No local bundle to authenticate the endpoint with.
    let (local, r) = update_bundle(&ds, &b, &config).await;
    assert!(local.is_none());
    assert_eq!(
        r.unwrap_err().to_string(),
        "can't perform SPIFFE Authentication: local copy of bundle not found"
    );

    // The initial bundle (as `federation create -trustDomainBundlePath` stores it).
    let mut initial = StoredBundle::new(b.clone());
    initial.root_cas.push(spire_datastore::RootCa {
        der: ca1.der.clone(),
        tainted: false,
    });
    ds.set_bundle(initial).await.unwrap();

    // The endpoint serves a bundle with a second CA: stored.
    let ca2 = ca();
    *ep.reply.lock() = (200, bundle_json(&[&ca1.der, &ca2.der], 600, 3));
    let (local, r) = update_bundle(&ds, &b, &config).await;
    assert_eq!(local.unwrap().x509_authorities.len(), 1);
    let fetched = r.unwrap().expect("a new bundle");
    assert_eq!(next_update(&fetched), Duration::from_secs(150));
    let stored = ds.fetch_bundle(&b).await.unwrap().unwrap();
    assert_eq!(stored.root_cas.len(), 2);
    assert_eq!(stored.refresh_hint, 600);

    // The same bundle again: nothing stored.
    let (_, r) = update_bundle(&ds, &b, &config).await;
    assert!(r.unwrap().is_none());

    // Garbage, an error status, an empty-use key: refused, the stored bundle stays.
    for (status, body) in [
        (200, "garbage".to_owned()),
        (503, "down".to_owned()),
        (200, r#"{"keys":[{"kty":"EC"}]}"#.to_owned()),
    ] {
        *ep.reply.lock() = (status, body);
        let (local, r) = update_bundle(&ds, &b, &config).await;
        let err = r.unwrap_err().to_string();
        assert!(
            err.starts_with("failed to fetch federated bundle from endpoint: "),
            "{err}"
        );
        assert_eq!(local.unwrap().x509_authorities.len(), 2);
        assert_eq!(ds.fetch_bundle(&b).await.unwrap().unwrap(), stored);
    }
    *ep.reply.lock() = (503, "down".to_owned());
    let (_, r) = update_bundle(&ds, &b, &config).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "failed to fetch federated bundle from endpoint: unexpected status 503 fetching bundle: down"
    );

    // The endpoint presents another SPIFFE ID: refused before any body is read.
    *ep.reply.lock() = (200, bundle_json(&[&ca2.der], 600, 4));
    let (chain, key) = svid(&ca1, "spiffe://b.test/not/the/server");
    ep.cert.set(&chain, &key).unwrap();
    let (_, r) = update_bundle(&ds, &b, &config).await;
    let err = r.unwrap_err().to_string();
    assert!(err.contains("failed to fetch bundle: Get "), "{err}");
    assert_eq!(ds.fetch_bundle(&b).await.unwrap().unwrap(), stored);

    // An SVID from a CA the stored bundle does not hold: refused too.
    let stranger = ca();
    let (chain, key) = svid(&stranger, "spiffe://b.test/spire/server");
    ep.cert.set(&chain, &key).unwrap();
    let (_, r) = update_bundle(&ds, &b, &config).await;
    assert!(r.is_err());
    assert_eq!(ds.fetch_bundle(&b).await.unwrap().unwrap(), stored);
}

#[test]
fn connect_errors_read_as_gos() {
    let e = spire_http::HttpError::Connect {
        addr: "127.0.0.1:2".into(),
        reason: std::io::Error::from_raw_os_error(111).to_string(),
    };
    assert_eq!(
        go_http_error(&e),
        "dial tcp 127.0.0.1:2: connect: connection refused"
    );
    let other = spire_http::HttpError::Tls("bad certificate".into());
    assert_eq!(go_http_error(&other), "tls: bad certificate");
}

/// A loopback endpoint answering as ours does (with the wait extension), serving `bundle`;
/// `changes` announces a new one.
struct WatchEndpoint {
    url: String,
    bundle: Arc<parking_lot::Mutex<Option<StoredBundle>>>,
    changes: tokio::sync::watch::Sender<u64>,
    waiters: Arc<tokio::sync::Semaphore>,
}

async fn watch_endpoint(ca: &Ca) -> WatchEndpoint {
    let cert = spire_tls::SvidResolver::new();
    let (chain, key) = svid(ca, "spiffe://b.test/spire/server");
    cert.set(&chain, &key).unwrap();
    let tls = spire_tls::https_server_config(cert).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let bundle = Arc::new(parking_lot::Mutex::new(None::<StoredBundle>));
    let changes = tokio::sync::watch::Sender::new(0u64);
    let waiters = Arc::new(tokio::sync::Semaphore::new(
        super::super::endpoint::MAX_WAITERS,
    ));
    let (b, tx, w) = (bundle.clone(), changes.clone(), waiters.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let (b, tx, w) = (b.clone(), tx.clone(), w.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| {
                    let (b, rx, w) = (b.clone(), tx.subscribe(), w.clone());
                    async move {
                        let current = move || b.lock().clone();
                        Ok::<_, std::convert::Infallible>(
                            super::super::endpoint::answer(
                                &req,
                                &current,
                                rx,
                                &w,
                                Duration::from_secs(60),
                            )
                            .await,
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    WatchEndpoint {
        url,
        bundle,
        changes,
        waiters,
    }
}

fn stored_b(ders: &[&[u8]]) -> StoredBundle {
    let mut b = StoredBundle::new(td("b.test"));
    for d in ders {
        b.root_cas.push(spire_datastore::RootCa {
            der: d.to_vec(),
            tainted: false,
        });
    }
    b
}

#[tokio::test]
async fn watch_returns_when_a_spire_rs_endpoint_changes_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let ds = datastore(dir.path()).await;
    let b = td("b.test");
    let ca1 = ca();
    let ep = watch_endpoint(&ca1).await;
    *ep.bundle.lock() = Some(stored_b(&[&ca1.der]));
    let config = TrustDomainConfig {
        endpoint_url: ep.url.clone(),
        profile: EndpointProfile::HttpsSpiffe(
            SpiffeId::from_str("spiffe://b.test/spire/server").unwrap(),
        ),
    };
    ds.set_bundle(stored_b(&[&ca1.der])).await.unwrap();
    let (_, r) = update_bundle(&ds, &b, &config).await;
    r.unwrap();

    // Nothing changes: the watch ends unchanged (in whole seconds before the deadline),
    // having been held by the endpoint.
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(2);
    assert_eq!(
        watch_bundle(&ds, &b, &config, deadline).await,
        Watch::Unchanged
    );
    assert!(start.elapsed() >= Duration::from_secs(1));

    // A change while the request is held: the watch returns with it, long before the
    // deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let watch = {
        let (ds, b, config) = (ds.clone(), b.clone(), config.clone());
        tokio::spawn(async move { watch_bundle(&ds, &b, &config, deadline).await })
    };
    while ep.waiters.available_permits() == super::super::endpoint::MAX_WAITERS {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ca2 = ca();
    *ep.bundle.lock() = Some(stored_b(&[&ca1.der, &ca2.der]));
    ep.changes.send_modify(|g| *g += 1);
    assert_eq!(watch.await.unwrap(), Watch::Changed);
    assert!(tokio::time::Instant::now() < deadline);

    // The endpoint already differs from the stored copy: changed at once.
    assert_eq!(
        watch_bundle(&ds, &b, &config, deadline).await,
        Watch::Changed
    );
    let (_, r) = update_bundle(&ds, &b, &config).await;
    assert!(r.unwrap().is_some());

    // An endpoint without the extension (SPIRE's): unsupported, after one plain fetch.
    let plain = endpoint().await;
    let (chain, key) = svid(&ca1, "spiffe://b.test/spire/server");
    plain.cert.set(&chain, &key).unwrap();
    *plain.reply.lock() = (200, bundle_json(&[&ca1.der, &ca2.der], 60, 2));
    let config = TrustDomainConfig {
        endpoint_url: plain.url.clone(),
        ..config
    };
    assert_eq!(
        watch_bundle(&ds, &b, &config, deadline).await,
        Watch::Unsupported
    );

    // An endpoint that claims to hold requests but answers at once (a proxy, or a server
    // that changed): unchanged, never a tight loop of "changed".
    *plain.headers.lock() = vec![
        (super::super::endpoint::WATCH_HEADER, "1"),
        ("etag", "\"t1\""),
    ];
    let stored = ds.fetch_bundle(&b).await.unwrap().unwrap();
    let same: Vec<&[u8]> = stored.root_cas.iter().map(|c| c.der.as_slice()).collect();
    *plain.reply.lock() = (200, bundle_json(&same, stored.refresh_hint, 2));
    let t = tokio::time::Instant::now();
    assert_eq!(
        watch_bundle(&ds, &b, &config, deadline).await,
        Watch::Unchanged
    );
    *plain.reply.lock() = (304, String::new());
    assert_eq!(
        watch_bundle(&ds, &b, &config, deadline).await,
        Watch::Failed("unexpected status 304".into())
    );
    assert!(t.elapsed() < Duration::from_secs(30));

    // An endpoint that is down: failed (the caller waits for the schedule).
    *plain.reply.lock() = (503, "down".into());
    assert!(matches!(
        watch_bundle(&ds, &b, &config, deadline).await,
        Watch::Failed(_)
    ));
}
