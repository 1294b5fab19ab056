//! Fetching a federated trust domain's bundle from its bundle endpoint, and one update of
//! the stored copy (SPIRE's bundle client and `bundleUpdater`).
//!
//! `https_spiffe` authenticates the endpoint with the X.509 authorities of the stored
//! bundle of the endpoint SPIFFE ID's trust domain and requires exactly that ID;
//! `https_web` verifies the endpoint by web PKI against the system's roots (which honour
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`, as Go does). Whatever the endpoint serves is parsed
//! as a SPIFFE bundle of the trust domain the relationship names, so a bundle is never
//! stored under another trust domain; anything that does not parse is refused and the
//! stored bundle is kept.

use std::sync::Arc;
use std::time::Duration;

use spiffe_core::{Bundle, BundleSet, SpiffeId, TrustDomain};
use spire_datastore::DataStore;
use spire_tls::{Authorize, PeerVerifier, SharedBundles};

use crate::api::convert;

/// Every fetch, connect to last byte, is bounded by this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How a bundle endpoint is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// Web PKI.
    HttpsWeb,
    /// SPIFFE authentication of this ID.
    HttpsSpiffe(SpiffeId),
}

impl EndpointProfile {
    /// SPIRE's name of the profile.
    pub fn name(&self) -> &'static str {
        match self {
            EndpointProfile::HttpsWeb => "https_web",
            EndpointProfile::HttpsSpiffe(_) => "https_spiffe",
        }
    }
}

/// Where and how to fetch one trust domain's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainConfig {
    /// The bundle endpoint URL.
    pub endpoint_url: String,
    /// The profile.
    pub profile: EndpointProfile,
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The datastore did not answer.
    #[error("failed to fetch local federated bundle: {0}")]
    LocalBundle(spire_datastore::DataStoreError),
    /// The bundle that authenticates the endpoint could not be read.
    #[error("failed to fetch local copy of bundle for {td:?}: {source}")]
    EndpointBundle {
        /// The endpoint's trust domain.
        td: String,
        /// Why.
        source: spire_datastore::DataStoreError,
    },
    /// No bundle to authenticate the endpoint with.
    #[error("can't perform SPIFFE Authentication: local copy of bundle not found")]
    NoEndpointBundle,
    /// The TLS configuration could not be built.
    #[error("{0}")]
    Tls(#[from] spire_tls::TlsError),
    /// The fetch failed.
    #[error("failed to fetch federated bundle from endpoint: {0}")]
    Fetch(FetchError),
    /// The fetched bundle could not be stored.
    #[error("failed to store fetched federated bundle: {0}")]
    Store(spire_datastore::DataStoreError),
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No HTTP response.
    #[error("failed to fetch bundle: Get {url:?}: {}", go_http_error(source))]
    Http {
        /// The URL.
        url: String,
        /// Why.
        source: spire_http::HttpError,
    },
    /// A response other than 200.
    #[error("unexpected status {status} fetching bundle: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The first KiB of the body.
        body: String,
    },
    /// The body is not a SPIFFE bundle.
    #[error("failed to decode bundle: {0}")]
    Decode(String),
    /// A key entry SPIRE refuses.
    #[error("{0}")]
    Key(String),
}

/// An HTTP error worded as Go's `net/http` words it where that differs: a refused or
/// failed connect reads `dial tcp <addr>: connect: <errno text>`.
fn go_http_error(e: &spire_http::HttpError) -> String {
    if let spire_http::HttpError::Connect { addr, reason } = e
        && let Some(code) = reason
            .rsplit_once("(os error ")
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .and_then(|n| n.parse::<i32>().ok())
    {
        let errno = std::io::Error::from_raw_os_error(code);
        return format!(
            "dial tcp {addr}: connect: {}",
            spire_gocompat::os::errno_text(&errno)
        );
    }
    e.to_string()
}

#[derive(serde::Deserialize)]
struct KeyUse {
    #[serde(rename = "use", default)]
    key_use: String,
    #[serde(default)]
    x5c: Option<Vec<serde_json::Value>>,
}

#[derive(serde::Deserialize)]
struct DocShape {
    #[serde(default)]
    keys: Vec<serde_json::Value>,
    #[serde(default)]
    spiffe_refresh_hint: i64,
}

/// Parses what a bundle endpoint served as `td`'s bundle, as strictly as SPIRE
/// (`bundleutil.Decode`): every key has a known `use`, an `x509-svid` entry has exactly one
/// certificate, a `jwt-svid` entry a key ID. The sequence number is not taken from the
/// document (SPIRE does not read it); the refresh hint is (0 when absent).
pub fn decode_endpoint_bundle(td: &TrustDomain, body: &[u8]) -> Result<Bundle, FetchError> {
    let doc: DocShape =
        serde_json::from_slice(body).map_err(|e| FetchError::Decode(e.to_string()))?;
    for (i, raw) in doc.keys.iter().enumerate() {
        let k: KeyUse =
            serde_json::from_value(raw.clone()).map_err(|e| FetchError::Decode(e.to_string()))?;
        match k.key_use.as_str() {
            "x509-svid" => {
                let n = k.x5c.as_ref().map_or(0, Vec::len);
                if n != 1 {
                    return Err(FetchError::Key(format!(
                        "expected a single certificate in x509-svid entry {i}; got {n}"
                    )));
                }
            }
            "jwt-svid" => {}
            "" => return Err(FetchError::Key(format!("missing use for key entry {i}"))),
            other => {
                return Err(FetchError::Key(format!(
                    "unrecognized use {} for key entry {i}",
                    spire_gocompat::strconv::quote(other)
                )));
            }
        }
    }
    let mut bundle = Bundle::parse_spiffe_json(td.clone(), body)
        .map_err(|e| FetchError::Decode(e.to_string()))?;
    bundle.sequence_number = None;
    bundle.refresh_hint = Some(doc.spiffe_refresh_hint);
    Ok(bundle)
}

/// The TLS client configuration for a `https_spiffe` endpoint: the chain must verify
/// against `roots` and the leaf carry exactly `endpoint_id`. HTTP/1.1 (no ALPN).
pub fn spiffe_tls(
    endpoint_id: &SpiffeId,
    roots: Bundle,
) -> Result<Arc<rustls::ClientConfig>, spire_tls::TlsError> {
    let mut set = BundleSet::new();
    set.insert(roots);
    let verifier = PeerVerifier::new(SharedBundles::new(set), Authorize::Id(endpoint_id.clone()));
    let base = spire_tls::client_config(verifier, None)?;
    let mut config = (*base).clone();
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// Fetches and parses the bundle of `td` from `url` with `client`.
pub async fn fetch_bundle(
    client: &spire_http::Client,
    td: &TrustDomain,
    url: &str,
) -> Result<Bundle, FetchError> {
    let http = |source| FetchError::Http {
        url: url.to_owned(),
        source,
    };
    let req = spire_http::Request::get(url).map_err(http)?;
    let resp = client.send(req).await.map_err(http)?;
    if resp.status != http::StatusCode::OK {
        let end = resp.body.len().min(1024);
        return Err(FetchError::Status {
            status: resp.status.as_u16(),
            body: String::from_utf8_lossy(&resp.body[..end]).into_owned(),
        });
    }
    decode_endpoint_bundle(td, &resp.body)
}

/// The outcome of one update: the bundle stored before, and the one fetched when it was
/// new and has been stored.
#[derive(Debug, Default)]
pub struct Updated {
    /// The stored bundle before the update.
    pub local: Option<Bundle>,
    /// The fetched bundle, when it differed and was stored.
    pub fetched: Option<Bundle>,
}

/// A client for `config`'s endpoint whose every call is bounded by `timeout`.
async fn endpoint_client(
    ds: &Arc<dyn DataStore>,
    config: &TrustDomainConfig,
    timeout: Duration,
) -> Result<spire_http::Client, UpdateError> {
    match &config.profile {
        EndpointProfile::HttpsWeb => Ok(spire_http::Client::new(timeout)),
        EndpointProfile::HttpsSpiffe(id) => {
            let endpoint_td = id.trust_domain();
            let roots = match ds.fetch_bundle(&endpoint_td).await {
                Ok(Some(b)) => convert::bundle_to_spiffe(&b),
                Ok(None) => return Err(UpdateError::NoEndpointBundle),
                Err(source) => {
                    return Err(UpdateError::EndpointBundle {
                        td: endpoint_td.name().to_owned(),
                        source,
                    });
                }
            };
            Ok(spire_http::Client::new(timeout).with_tls(spiffe_tls(id, roots)?))
        }
    }
}

/// One update of `td`'s stored bundle from its endpoint (SPIRE's `UpdateBundle`). On error
/// the stored bundle, if any, is returned with it and left as it was.
pub async fn update_bundle(
    ds: &Arc<dyn DataStore>,
    td: &TrustDomain,
    config: &TrustDomainConfig,
) -> (Option<Bundle>, Result<Option<Bundle>, UpdateError>) {
    let client = match endpoint_client(ds, config, FETCH_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return (None, Err(e)),
    };
    let local = match ds.fetch_bundle(td).await {
        Ok(b) => b.map(|b| convert::bundle_to_spiffe(&b)),
        Err(e) => return (None, Err(UpdateError::LocalBundle(e))),
    };
    let fetched = match fetch_bundle(&client, td, &config.endpoint_url).await {
        Ok(b) => b,
        Err(e) => return (local, Err(UpdateError::Fetch(e))),
    };
    if local.as_ref().is_some_and(|l| same_bundle(l, &fetched)) {
        return (local, Ok(None));
    }
    match ds.set_bundle(convert::stored_from_spiffe(&fetched)).await {
        Ok(_) => (local, Ok(Some(fetched))),
        Err(e) => (local, Err(UpdateError::Store(e))),
    }
}

/// What a watch of an endpoint came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Watch {
    /// The endpoint's bundle differs from the stored one: update now.
    Changed,
    /// Nothing changed before the deadline.
    Unchanged,
    /// The endpoint does not hold requests (not a spire-rs server).
    Unsupported,
    /// A fetch failed; poll on the schedule.
    Failed(String),
}

/// Watches `td`'s endpoint until `deadline` with our extension (see
/// [`super::endpoint::WAIT_HEADER`]): one plain fetch, compared with the stored bundle,
/// then requests the endpoint holds until its bundle changes.
pub async fn watch_bundle(
    ds: &Arc<dyn DataStore>,
    td: &TrustDomain,
    config: &TrustDomainConfig,
    deadline: tokio::time::Instant,
) -> Watch {
    use super::endpoint::{MAX_WAIT, WAIT_HEADER, WATCH_HEADER};
    let failed = |e: &dyn std::fmt::Display| Watch::Failed(e.to_string());
    let client = match endpoint_client(ds, config, FETCH_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let url = config.endpoint_url.as_str();
    let req = match spire_http::Request::get(url) {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let first = match client.send(req).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    if first.status != http::StatusCode::OK {
        return Watch::Failed(format!("unexpected status {}", first.status.as_u16()));
    }
    let tag = match (first.header(WATCH_HEADER), first.header("etag")) {
        (Some(_), Some(tag)) => tag.to_owned(),
        _ => return Watch::Unsupported,
    };
    let fetched = match decode_endpoint_bundle(td, &first.body) {
        Ok(b) => b,
        Err(e) => return failed(&e),
    };
    match ds.fetch_bundle(td).await {
        Ok(Some(local)) if same_bundle(&convert::bundle_to_spiffe(&local), &fetched) => {}
        Ok(_) => return Watch::Changed,
        Err(e) => return failed(&e),
    }
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let wait = left.min(MAX_WAIT).as_secs();
        if wait == 0 {
            return Watch::Unchanged;
        }
        let client = client
            .clone()
            .with_timeout(Duration::from_secs(wait) + FETCH_TIMEOUT);
        let req = spire_http::Request::get(url)
            .and_then(|r| r.header("if-none-match", &tag))
            .and_then(|r| r.header(WAIT_HEADER, &wait.to_string()));
        let asked = tokio::time::Instant::now();
        let resp = match req {
            Ok(r) => client.send(r).await,
            Err(e) => return failed(&e),
        };
        match resp {
            // Answered long before the wait ended: not a held request (a cache or proxy in
            // between); the schedule takes over rather than asking again at once.
            Ok(r) if r.status == http::StatusCode::NOT_MODIFIED => {
                if asked.elapsed() < Duration::from_secs(wait) / 2 {
                    return Watch::Unchanged;
                }
            }
            Ok(r) if r.status == http::StatusCode::OK => {
                // Another server behind the same address may not hold requests.
                if r.header(WATCH_HEADER).is_none() {
                    return Watch::Unsupported;
                }
                return match decode_endpoint_bundle(td, &r.body) {
                    Ok(b) if same_bundle(&b, &fetched) => Watch::Unchanged,
                    Ok(_) => Watch::Changed,
                    Err(e) => failed(&e),
                };
            }
            Ok(r) => return Watch::Failed(format!("unexpected status {}", r.status.as_u16())),
            Err(e) => return failed(&e),
        }
    }
}

/// Whether the fetched bundle is the stored one: trust domain, authorities and refresh
/// hint. (SPIRE compares with go-spiffe's `Bundle.Equal`, which also compares the
/// sequence number a fetched bundle never has, so it stores every poll; only a change is
/// stored here.)
fn same_bundle(a: &Bundle, b: &Bundle) -> bool {
    let x509 = |b: &Bundle| {
        b.x509_authorities
            .iter()
            .map(|x| x.der.clone())
            .collect::<Vec<_>>()
    };
    let mut ja: Vec<_> = a
        .jwt_authorities
        .iter()
        .map(|k| (k.key_id.clone(), k.public_key.spki_der().to_vec()))
        .collect();
    let mut jb: Vec<_> = b
        .jwt_authorities
        .iter()
        .map(|k| (k.key_id.clone(), k.public_key.spki_der().to_vec()))
        .collect();
    ja.sort();
    jb.sort();
    a.trust_domain() == b.trust_domain()
        && x509(a) == x509(b)
        && ja == jb
        && a.refresh_hint.unwrap_or(0) == b.refresh_hint.unwrap_or(0)
}

/// The shortest refresh SPIRE allows (`bundleutil.MinimumRefreshHint`).
pub const MINIMUM_REFRESH: Duration = Duration::from_secs(60);

/// How long SPIRE waits before polling again after an update that left `bundle` stored
/// (`calculateNextUpdate`; a stored bundle always has a refresh hint there, 0 when none):
/// a quarter of the hint (the hint at least one minute), or, for a hint of 0, a quarter of
/// a tenth of the shortest X.509 authority lifetime (that tenth at least one minute).
pub fn next_update(bundle: &Bundle) -> Duration {
    const MINIMUM: Duration = MINIMUM_REFRESH;
    let hint = bundle.refresh_hint.unwrap_or(0);
    let safe = |d: Duration| d.max(MINIMUM);
    let calculated = if hint > 0 {
        safe(Duration::from_secs(hint.unsigned_abs()))
    } else {
        let shortest = bundle
            .x509_authorities
            .iter()
            .filter_map(|a| {
                let (_, cert) = x509_parser::parse_x509_certificate(&a.der).ok()?;
                let nb = cert.validity().not_before.timestamp();
                let na = cert.validity().not_after.timestamp();
                Some(na.saturating_sub(nb))
            })
            .min();
        match shortest {
            Some(secs) if secs > 0 => safe(Duration::from_secs(secs.unsigned_abs()) / 10),
            _ => MINIMUM,
        }
    };
    calculated / 4
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
