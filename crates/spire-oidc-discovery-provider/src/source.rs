//! The key sources, polled as SPIRE polls them: once at start, then every `poll_interval`.
//! A poll that fails keeps the last key set (and the last successful poll time, which the
//! health checks read); a poll whose answer equals the last one leaves the key set and its
//! modification time alone.
//!
//! - `server_api`: `GetBundle` (JWT authorities only) on the server's admin socket.
//! - `workload_api`: the first answer of `FetchJWTBundles` on an agent's socket, the bundle
//!   of the configured trust domain.
//! - `file`: a SPIFFE bundle file's JWT authorities.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prost::Message as _;
use spiffe_core::{PublicKey, TrustDomain};
use spire_clock::SharedClock;
use spire_proto::spire::api::server::bundle::v1::{GetBundleRequest, bundle_client::BundleClient};
use spire_proto::spire::api::types::{Bundle, BundleMask};
use spire_proto::workload::{
    JwtBundlesRequest, spiffe_workload_api_client::SpiffeWorkloadApiClient,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::keys::{Key, KeySet};

/// How long one poll may take before it counts as failed.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the pollers share with the HTTP side.
#[derive(Debug, Default)]
pub struct State {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    raw: Option<Vec<u8>>,
    set: Option<KeySet>,
    last_poll: Option<SystemTime>,
}

impl State {
    /// The current key set, if any poll has succeeded.
    pub fn key_set(&self) -> Option<KeySet> {
        self.inner.lock().set.clone()
    }

    /// When the last successful poll happened.
    pub fn last_poll(&self) -> Option<SystemTime> {
        self.inner.lock().last_poll
    }

    /// Records a successful poll whose answer was `raw` and gave `keys`. No keys at all is
    /// kept as `None`: SPIRE appends to a nil slice, which go-jose writes as `null`.
    pub fn update(&self, raw: Vec<u8>, keys: impl FnOnce() -> Vec<Key>, now: SystemTime) {
        let mut inner = self.inner.lock();
        if inner.raw.as_ref() != Some(&raw) {
            let keys = keys();
            inner.set = Some(KeySet {
                keys: (!keys.is_empty()).then_some(keys),
                modified: now,
            });
            inner.raw = Some(raw);
        }
        inner.last_poll = Some(now);
    }
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The RPC failed.
    #[error("{0}")]
    Rpc(String),
    /// The answer had no bundle for the trust domain.
    #[error("no bundle for trust domain in Workload API response")]
    NoBundle,
    /// The trust domain's bundle could not be parsed.
    #[error("{0}")]
    Parse(String),
}

fn rpc_error(s: tonic::Status) -> PollError {
    let message = if s.message().starts_with("transport: Error while dialing") {
        format!(
            "connection error: desc = {}",
            spire_gocompat::strconv::quote(s.message())
        )
    } else {
        s.message().to_string()
    };
    PollError::Rpc(format!(
        "rpc error: code = {} desc = {message}",
        spire_gocompat::grpc::code_name(s.code() as i32),
    ))
}

/// A channel to a UNIX socket, connected on first use and reconnected as needed.
pub fn uds_channel(path: &Path) -> Channel {
    let path: PathBuf = path.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            match UnixStream::connect(&path).await {
                Ok(s) => Ok(TokioIo::new(s)),
                // grpc-go's wording, which SPIRE logs.
                Err(e) => Err(std::io::Error::other(format!(
                    "transport: Error while dialing: dial unix {}: connect: {}",
                    path.display(),
                    spire_gocompat::os::errno_text(&e)
                ))),
            }
        }
    });
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector_lazy(connector)
}

/// The keys of a server bundle's JWT authorities; malformed keys are skipped with a
/// warning, as SPIRE does.
pub fn server_bundle_keys(bundle: &Bundle) -> Vec<Key> {
    let mut keys = Vec::new();
    for k in &bundle.jwt_authorities {
        match PublicKey::from_spki_der(&k.public_key) {
            Ok(key) => keys.push(Key {
                kid: k.key_id.clone(),
                key,
            }),
            Err(e) => {
                tracing::warn!(kid = %k.key_id, error = %e, "Malformed public key in bundle");
            }
        }
    }
    keys
}

/// One `server_api` poll.
pub async fn poll_server(
    client: &mut BundleClient<Channel>,
    state: &State,
    now: SystemTime,
) -> Result<(), PollError> {
    let req = GetBundleRequest {
        output_mask: Some(BundleMask {
            jwt_authorities: true,
            ..Default::default()
        }),
    };
    let bundle = tokio::time::timeout(POLL_TIMEOUT, client.get_bundle(req))
        .await
        .map_err(|_| PollError::Rpc("context deadline exceeded".into()))?
        .map_err(rpc_error)?
        .into_inner();
    let raw = bundle.encode_to_vec();
    state.update(raw, || server_bundle_keys(&bundle), now);
    Ok(())
}

#[derive(serde::Deserialize)]
struct RawJwks {
    #[serde(default)]
    keys: Vec<spiffe_core::jwk::Jwk>,
}

/// go-spiffe's `jwtbundle.Parse` of a Workload API JWT bundle: every key needs an ID and a
/// readable public key.
pub fn workload_bundle_keys(raw: &[u8]) -> Result<Vec<Key>, PollError> {
    let jwks: RawJwks = serde_json::from_slice(raw)
        .map_err(|e| PollError::Parse(format!("jwtbundle: unable to parse JWKS: {e}")))?;
    let mut keys = Vec::new();
    for jwk in jwks.keys {
        let kid = jwk.kid.clone().unwrap_or_default();
        if kid.is_empty() {
            return Err(PollError::Parse(
                "jwtbundle: error adding authority 0 of JWKS: keyID cannot be empty".into(),
            ));
        }
        let key = jwk
            .public_key()
            .map_err(|e| PollError::Parse(format!("jwtbundle: unable to parse JWKS: {e}")))?;
        keys.push(Key { kid, key });
    }
    Ok(keys)
}

/// One `workload_api` poll.
pub async fn poll_workload(
    client: &mut SpiffeWorkloadApiClient<Channel>,
    trust_domain: &TrustDomain,
    state: &State,
    now: SystemTime,
) -> Result<(), PollError> {
    let mut req = tonic::Request::new(JwtBundlesRequest {});
    req.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let first = async {
        let mut stream = client.fetch_jwt_bundles(req).await?.into_inner();
        stream
            .message()
            .await?
            .ok_or_else(|| tonic::Status::unavailable("stream closed"))
    };
    let resp = tokio::time::timeout(POLL_TIMEOUT, first)
        .await
        .map_err(|_| PollError::Rpc("context deadline exceeded".into()))?
        .map_err(rpc_error)?;
    let raw = resp
        .bundles
        .iter()
        .find(|(td, _)| TrustDomain::from_name_or_id(td).is_ok_and(|t| t == *trust_domain))
        .map(|(_, b)| b.clone())
        .ok_or(PollError::NoBundle)?;
    let keys = workload_bundle_keys(&raw)?;
    state.update(raw, || keys, now);
    Ok(())
}

/// One `file` poll: the file holds a SPIFFE bundle (go-spiffe's `spiffebundle.Load`), whose
/// JWT authorities are the keys.
pub fn poll_file(path: &Path, state: &State, now: SystemTime) -> Result<(), PollError> {
    let raw = std::fs::read(path).map_err(|e| {
        PollError::Parse(format!(
            "spiffebundle: unable to load SPIFFE bundle: {}",
            spire_gocompat::os::path_error("open", &path.display().to_string(), &e)
        ))
    })?;
    // The file's trust domain is not checked (SPIRE loads it for an empty one).
    let td = TrustDomain::new("file").map_err(|e| PollError::Parse(e.to_string()))?;
    let bundle = spiffe_core::Bundle::parse_spiffe_json(td, &raw)
        .map_err(|e| PollError::Parse(format!("spiffebundle: unable to parse JWKS: {e}")))?;
    let keys = bundle
        .jwt_authorities
        .iter()
        .map(|a| Key {
            kid: a.key_id.clone(),
            key: a.public_key.clone(),
        })
        .collect();
    state.update(raw, || keys, now);
    Ok(())
}

/// Runs a source's polls until the program stops.
pub async fn run(source: crate::config::Source, state: Arc<State>, clock: SharedClock) {
    use crate::config::Source;
    let interval = source.poll_interval();
    tracing::debug!(interval = %spire_config::format_go_duration(interval), "Polling started");
    match source {
        Source::ServerApi { socket, .. } => {
            let mut client = BundleClient::new(uds_channel(&socket));
            loop {
                if let Err(e) = poll_server(&mut client, &state, clock.now()).await {
                    tracing::warn!(error = %e, "Failed to fetch bundle");
                }
                tokio::time::sleep(interval).await;
            }
        }
        Source::WorkloadApi {
            socket,
            trust_domain,
            ..
        } => {
            let Ok(td) = TrustDomain::from_name_or_id(&trust_domain) else {
                return;
            };
            let mut client = SpiffeWorkloadApiClient::new(uds_channel(&socket));
            loop {
                match poll_workload(&mut client, &td, &state, clock.now()).await {
                    Ok(()) => {}
                    Err(PollError::NoBundle) => tracing::error!(
                        trust_domain_id = %td.id_string(),
                        "No bundle for trust domain in Workload API response"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "Failed to fetch JWKS from the Workload API")
                    }
                }
                tokio::time::sleep(interval).await;
            }
        }
        Source::File { path, .. } => loop {
            if let Err(e) = poll_file(&path, &state, clock.now()) {
                tracing::warn!(error = %e, "Failed to load SPIFFE trust bundle");
            }
            tokio::time::sleep(interval).await;
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spiffe_core::{KeyType, PrivateKey};
    use spire_proto::spire::api::types::JwtKey;

    #[test]
    fn unchanged_answers_keep_the_modification_time() {
        let state = State::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let t1 = t0 + Duration::from_secs(10);
        let key = Key {
            kid: "k".into(),
            key: PrivateKey::generate(KeyType::EcP256)
                .unwrap()
                .public_key()
                .clone(),
        };
        state.update(b"a".to_vec(), || vec![key], t0);
        state.update(b"a".to_vec(), || panic!("not rebuilt"), t1);
        assert_eq!(state.key_set().unwrap().modified, t0);
        assert_eq!(state.last_poll(), Some(t1));
        state.update(b"b".to_vec(), Vec::new, t1);
        assert_eq!(state.key_set().unwrap().modified, t1);
        assert_eq!(state.key_set().unwrap().keys, None);
    }

    #[test]
    fn server_bundle_skips_malformed_keys() {
        let good = PrivateKey::generate(KeyType::EcP256).unwrap();
        let bundle = Bundle {
            jwt_authorities: vec![
                JwtKey {
                    public_key: vec![1, 2, 3],
                    key_id: "bad".into(),
                    ..Default::default()
                },
                JwtKey {
                    public_key: good.public_key().spki_der().to_vec(),
                    key_id: "good".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let keys = server_bundle_keys(&bundle);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "good");
    }

    #[test]
    fn file_source_reads_jwt_authorities_of_a_spiffe_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.json");
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut jwk = spiffe_core::jwk::Jwk::from_public_key(key.public_key());
        jwk.kid = Some("jk".into());
        jwk.key_use = Some("jwt-svid".into());
        std::fs::write(
            &path,
            serde_json::to_vec(&serde_json::json!({ "keys": [jwk] })).unwrap(),
        )
        .unwrap();
        let state = State::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        poll_file(&path, &state, now).unwrap();
        let set = state.key_set().unwrap();
        assert_eq!(set.keys.unwrap()[0].kid, "jk");
        let missing = dir.path().join("nope.json");
        assert!(
            poll_file(&missing, &state, now)
                .unwrap_err()
                .to_string()
                .starts_with("spiffebundle: unable to load SPIFFE bundle: open ")
        );
    }

    #[test]
    fn workload_bundle_needs_key_ids() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut jwk = spiffe_core::jwk::Jwk::from_public_key(key.public_key());
        jwk.kid = Some("k1".into());
        jwk.key_use = Some("jwt-svid".into());
        let raw = serde_json::to_vec(&serde_json::json!({ "keys": [jwk] })).unwrap();
        let keys = workload_bundle_keys(&raw).unwrap();
        assert_eq!(keys[0].kid, "k1");
        assert_eq!(&keys[0].key, key.public_key());
        let mut nokid = spiffe_core::jwk::Jwk::from_public_key(key.public_key());
        nokid.kid = None;
        let raw = serde_json::to_vec(&serde_json::json!({ "keys": [nokid] })).unwrap();
        assert!(workload_bundle_keys(&raw).is_err());
    }
}
