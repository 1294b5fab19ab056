//! The SPIFFE Workload API (`SpiffeWorkloadAPI`) and gRPC health on the agent's public socket.
//!
//! Every call must carry `workload.spiffe.io: true`; the caller is identified from the
//! connection (PID, credentials and start time recorded at accept) and attested; identities
//! are the entries whose selectors are a subset of the caller's. Streams send the current
//! state at once, then a new message whenever it changes, never the same message twice in a
//! row.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use spiffe_core::{BundleSet, JwtSvid, SpiffeId, TrustDomain};
use spire_plugin::Selector;
use spire_proto::grpc::health::v1 as health;
use spire_proto::workload;
use spire_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use tonic::{Request, Response, Status};

use crate::core::cache::WorkloadUpdate;
use crate::manager::{Manager, Subscription};
use crate::peertracker::CallerInfo;
use crate::workload_attestor::{WorkloadAttestError, WorkloadAttestation};

/// The security header every Workload API call must carry.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// Workload API failures, mapped once to gRPC statuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadApiError {
    /// The security header is absent or not `true`.
    #[error("security header missing from request")]
    MissingHeader,
    /// The caller matched no entry.
    #[error("no identity issued")]
    NoIdentity,
    /// The connection carries no caller information.
    #[error("peer tracker watcher missing from context")]
    NoCaller,
    /// Attestation failed or the caller changed.
    #[error("{0}")]
    Attestation(#[from] WorkloadAttestError),
    /// A required field is missing.
    #[error("{0} must be specified")]
    Missing(&'static str),
    /// A bad SPIFFE ID was asked for.
    #[error("invalid requested SPIFFE ID: {0}")]
    BadSpiffeId(String),
    /// The JWT-SVID is not valid.
    #[error("{0}")]
    InvalidJwt(String),
    /// The server could not issue a JWT-SVID.
    #[error("could not fetch JWT-SVID: {0}")]
    JwtUnavailable(String),
    /// The agent has no bundle yet.
    #[error("could not serialize response: bundle not available")]
    NoBundle,
}

impl From<WorkloadApiError> for Status {
    fn from(e: WorkloadApiError) -> Status {
        let msg = e.to_string();
        match e {
            WorkloadApiError::MissingHeader
            | WorkloadApiError::Missing(_)
            | WorkloadApiError::BadSpiffeId(_)
            | WorkloadApiError::InvalidJwt(_) => Status::invalid_argument(msg),
            WorkloadApiError::NoIdentity => Status::permission_denied(msg),
            WorkloadApiError::NoCaller => Status::internal(msg),
            WorkloadApiError::Attestation(_) => Status::unauthenticated(msg),
            WorkloadApiError::JwtUnavailable(_) | WorkloadApiError::NoBundle => {
                Status::unavailable(msg)
            }
        }
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Workload API settings.
#[derive(Debug, Clone, Default)]
pub struct WorkloadApiConfig {
    /// `allow_unauthenticated_verifiers`.
    pub allow_unauthenticated_verifiers: bool,
    /// `allowed_foreign_jwt_claims`.
    pub allowed_foreign_jwt_claims: HashSet<String>,
}

/// The Workload API handler.
#[derive(Debug, Clone)]
pub struct WorkloadApi {
    manager: Arc<Manager>,
    attestation: Arc<WorkloadAttestation>,
    config: Arc<WorkloadApiConfig>,
}

fn check_header<T>(req: &Request<T>) -> Result<(), WorkloadApiError> {
    let values: Vec<_> = req.metadata().get_all(SECURITY_HEADER).iter().collect();
    if values.len() == 1 && values[0] == "true" {
        Ok(())
    } else {
        Err(WorkloadApiError::MissingHeader)
    }
}

fn der_concat(certs: &[Vec<u8>]) -> Vec<u8> {
    certs.concat()
}

/// SPIRE's duplicate-hint rule: for entries sharing a hint, keep the oldest (then the
/// smallest entry ID).
fn remove_duplicate_hints<T>(
    items: Vec<T>,
    entry: impl Fn(&T) -> &crate::core::entry::Entry,
) -> Vec<T> {
    let mut keep: HashMap<String, (i64, String)> = HashMap::new();
    for item in &items {
        let e = entry(item);
        if e.hint().is_empty() {
            continue;
        }
        let cand = (e.created_at, e.id.to_string());
        keep.entry(e.hint().to_string())
            .and_modify(|cur| {
                if cand < *cur {
                    *cur = cand.clone();
                }
            })
            .or_insert(cand);
    }
    items
        .into_iter()
        .filter(|item| {
            let e = entry(item);
            if e.hint().is_empty() {
                return true;
            }
            let ok = keep
                .get(e.hint())
                .is_some_and(|(_, id)| id.as_str() == e.id.as_str());
            if !ok {
                tracing::warn!(
                    subsystem_name = "endpoints",
                    hint = e.hint(),
                    registration_id = e.id.as_str(),
                    "Ignoring entry with duplicate hint"
                );
            }
            ok
        })
        .collect()
}

/// The X509-SVID response for an update (`None` when there is no identity).
pub fn x509_svid_response(update: &WorkloadUpdate) -> Option<workload::X509svidResponse> {
    let identities = remove_duplicate_hints(update.identities.clone(), |i| &i.entry);
    if identities.is_empty() {
        return None;
    }
    let bundle = update
        .bundle
        .as_ref()
        .map(|b| b.x509_authorities_der())
        .unwrap_or_default();
    let svids = identities
        .iter()
        .map(|i| workload::X509svid {
            spiffe_id: i.entry.spiffe_id.to_string(),
            x509_svid: der_concat(&i.svid.chain),
            x509_svid_key: i.svid.key_pkcs8.clone(),
            bundle: bundle.clone(),
            hint: i.entry.hint().to_string(),
        })
        .collect();
    let federated_bundles = update
        .federated_bundles
        .iter()
        .map(|(td, b)| (td.id_string(), b.x509_authorities_der()))
        .collect();
    Some(workload::X509svidResponse {
        svids,
        crl: vec![],
        federated_bundles,
    })
}

fn x509_bundles_response(
    update: &WorkloadUpdate,
) -> Result<workload::X509BundlesResponse, WorkloadApiError> {
    let own = update.bundle.as_ref().ok_or(WorkloadApiError::NoBundle)?;
    let mut bundles = HashMap::new();
    bundles.insert(own.trust_domain().id_string(), own.x509_authorities_der());
    if update.has_identity() {
        for (td, b) in &update.federated_bundles {
            bundles.insert(td.id_string(), b.x509_authorities_der());
        }
    }
    Ok(workload::X509BundlesResponse {
        crl: vec![],
        bundles,
    })
}

fn jwt_bundles_response(
    update: &WorkloadUpdate,
) -> Result<workload::JwtBundlesResponse, WorkloadApiError> {
    let own = update.bundle.as_ref().ok_or(WorkloadApiError::NoBundle)?;
    let mut bundles = HashMap::new();
    bundles.insert(
        own.trust_domain().id_string(),
        own.to_jwt_jwks_json().into_bytes(),
    );
    if update.has_identity() {
        for (td, b) in &update.federated_bundles {
            bundles.insert(td.id_string(), b.to_jwt_jwks_json().into_bytes());
        }
    }
    Ok(workload::JwtBundlesResponse { bundles })
}

impl WorkloadApi {
    /// A handler over `manager` attesting callers with `attestation`.
    pub fn new(
        manager: Arc<Manager>,
        attestation: Arc<WorkloadAttestation>,
        config: WorkloadApiConfig,
    ) -> Self {
        Self {
            manager,
            attestation,
            config: Arc::new(config),
        }
    }

    async fn selectors<T>(
        &self,
        req: &Request<T>,
    ) -> Result<(CallerInfo, Vec<Selector>), WorkloadApiError> {
        check_header(req)?;
        let caller = req
            .extensions()
            .get::<CallerInfo>()
            .cloned()
            .ok_or(WorkloadApiError::NoCaller)?;
        let selectors = self.attestation.attest(&caller).await.map_err(|e| {
            tracing::error!(subsystem_name = "endpoints", pid = caller.pid, error = %e, "Workload attestation failed");
            e
        })?;
        Ok((caller, selectors))
    }

    fn quiet(caller: &CallerInfo) -> bool {
        i64::from(caller.pid) == i64::from(std::process::id())
    }

    fn no_identity(caller: &CallerInfo, selectors: &[Selector]) -> WorkloadApiError {
        if !Self::quiet(caller) {
            tracing::error!(
                subsystem_name = "endpoints",
                pid = caller.pid,
                registered = false,
                selectors = ?selectors.iter().map(|s| format!("{}:{}", s.selector_type(), s.value())).collect::<Vec<_>>(),
                "No identity issued"
            );
        }
        WorkloadApiError::NoIdentity
    }

    /// Runs a stream: the first message at once, then one per change, identical
    /// consecutive messages suppressed; `compose` returns `Err` to end the stream.
    fn stream<T, F>(mut sub: Subscription, compose: F) -> ResponseStream<T>
    where
        T: PartialEq + Clone + Send + 'static,
        F: Fn(&WorkloadUpdate) -> Result<T, WorkloadApiError> + Send + 'static,
    {
        let s = async_stream(move |tx| async move {
            sub.wait_ready().await;
            let mut last: Option<T> = None;
            loop {
                let update = sub.update();
                match compose(&update) {
                    Ok(msg) => {
                        if last.as_ref() != Some(&msg) {
                            if tx.send(Ok(msg.clone())).await.is_err() {
                                return;
                            }
                            last = Some(msg);
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = sub.changed() => if !changed { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Box::pin(s)
    }
}

/// A stream fed by a task through a channel (the task ends when the receiver is dropped).
fn async_stream<T, F, Fut>(f: F) -> impl Stream<Item = Result<T, Status>> + Send
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<workload::X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<workload::X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<workload::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        req: Request<workload::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let (caller, selectors) = self.selectors(&req).await?;
        let sub = self.manager.workloads().subscribe(&selectors);
        let stream = Self::stream(sub, move |u| {
            x509_svid_response(u).ok_or_else(|| Self::no_identity(&caller, &selectors))
        });
        Ok(Response::new(stream))
    }

    async fn fetch_x509_bundles(
        &self,
        req: Request<workload::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let (caller, selectors) = self.selectors(&req).await?;
        let sub = self.manager.workloads().subscribe(&selectors);
        let allow = self.config.allow_unauthenticated_verifiers;
        let stream = Self::stream(sub, move |u| {
            if !allow && !u.has_identity() {
                return Err(Self::no_identity(&caller, &selectors));
            }
            x509_bundles_response(u)
        });
        Ok(Response::new(stream))
    }

    async fn fetch_jwt_bundles(
        &self,
        req: Request<workload::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let (caller, selectors) = self.selectors(&req).await?;
        let sub = self.manager.workloads().subscribe(&selectors);
        let allow = self.config.allow_unauthenticated_verifiers;
        let stream = Self::stream(sub, move |u| {
            if !allow && !u.has_identity() {
                return Err(Self::no_identity(&caller, &selectors));
            }
            jwt_bundles_response(u)
        });
        Ok(Response::new(stream))
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<workload::JwtsvidRequest>,
    ) -> Result<Response<workload::JwtsvidResponse>, Status> {
        check_header(&req)?;
        if req.get_ref().audience.is_empty() {
            return Err(WorkloadApiError::Missing("audience").into());
        }
        let wanted = req.get_ref().spiffe_id.clone();
        if !wanted.is_empty() {
            SpiffeId::parse(&wanted).map_err(|e| WorkloadApiError::BadSpiffeId(e.to_string()))?;
        }
        let (caller, selectors) = self.selectors(&req).await?;
        let audience = req.get_ref().audience.clone();
        let entries =
            remove_duplicate_hints(self.manager.workloads().matching_entries(&selectors), |e| e);
        let mut svids = Vec::new();
        for entry in entries {
            if !wanted.is_empty() && entry.spiffe_id.as_str() != wanted {
                continue;
            }
            let svid = self
                .manager
                .fetch_jwt_svid(&entry, &audience)
                .await
                .map_err(|e| {
                    tracing::error!(subsystem_name = "endpoints", spiffe_id = %entry.spiffe_id, error = %e, "Could not fetch JWT-SVID");
                    WorkloadApiError::JwtUnavailable(e.to_string())
                })?;
            svids.push(workload::Jwtsvid {
                spiffe_id: entry.spiffe_id.to_string(),
                svid: svid.token,
                hint: entry.hint().to_string(),
            });
        }
        if svids.is_empty() {
            return Err(Self::no_identity(&caller, &selectors).into());
        }
        Ok(Response::new(workload::JwtsvidResponse { svids }))
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<workload::ValidateJwtsvidRequest>,
    ) -> Result<Response<workload::ValidateJwtsvidResponse>, Status> {
        check_header(&req)?;
        if req.get_ref().audience.is_empty() {
            return Err(WorkloadApiError::Missing("audience").into());
        }
        if req.get_ref().svid.is_empty() {
            return Err(WorkloadApiError::Missing("svid").into());
        }
        let (_caller, selectors) = self.selectors(&req).await?;
        let update = self.manager.workloads().fetch_workload_update(&selectors);
        let mut bundles = BundleSet::new();
        if let Some(b) = &update.bundle {
            bundles.insert((**b).clone());
        }
        for b in update.federated_bundles.values() {
            bundles.insert((**b).clone());
        }
        let audience = req.get_ref().audience.clone();
        let svid = JwtSvid::parse_and_validate(
            &req.get_ref().svid,
            &bundles,
            &[audience.as_str()],
            self.manager.now(),
        )
        .map_err(|e| {
            tracing::warn!(subsystem_name = "endpoints", error = %e, "Failed to validate JWT");
            WorkloadApiError::InvalidJwt(e.to_string())
        })?;
        let claims = claims_struct(
            &svid,
            self.manager.trust_domain(),
            &self.config.allowed_foreign_jwt_claims,
        )?;
        Ok(Response::new(workload::ValidateJwtsvidResponse {
            spiffe_id: svid.id().to_string(),
            claims: Some(claims),
        }))
    }
}

/// The claims of a validated token as a `google.protobuf.Struct`: foreign trust domains'
/// tokens keep only `sub`, `exp`, `aud` and the allowed claims; `aud` is always a list.
pub fn claims_struct(
    svid: &JwtSvid,
    trust_domain: &TrustDomain,
    allowed_foreign: &HashSet<String>,
) -> Result<pbjson_types::Struct, WorkloadApiError> {
    let mut claims = svid.claims().clone();
    if !svid.id().is_member_of(trust_domain) {
        claims.retain(|k, _| {
            matches!(k.as_str(), "sub" | "exp" | "aud") || allowed_foreign.contains(k)
        });
    }
    if let Some(serde_json::Value::String(aud)) = claims.get("aud").cloned() {
        claims.insert(
            "aud".into(),
            serde_json::Value::Array(vec![serde_json::Value::String(aud)]),
        );
    }
    serde_json::from_value(serde_json::Value::Object(claims))
        .map_err(|e| WorkloadApiError::InvalidJwt(e.to_string()))
}

/// `grpc.health.v1.Health`: the agent is serving as long as it answers.
#[derive(Debug, Clone, Default)]
pub struct HealthService;

#[tonic::async_trait]
impl health::health_server::Health for HealthService {
    async fn check(
        &self,
        _req: Request<health::HealthCheckRequest>,
    ) -> Result<Response<health::HealthCheckResponse>, Status> {
        Ok(Response::new(health::HealthCheckResponse {
            status: health::health_check_response::ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _req: Request<health::HealthListRequest>,
    ) -> Result<Response<health::HealthListResponse>, Status> {
        let mut statuses = HashMap::new();
        statuses.insert(
            String::new(),
            health::HealthCheckResponse {
                status: health::health_check_response::ServingStatus::Serving as i32,
            },
        );
        Ok(Response::new(health::HealthListResponse { statuses }))
    }

    type WatchStream = ResponseStream<health::HealthCheckResponse>;

    async fn watch(
        &self,
        _req: Request<health::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let first = health::HealthCheckResponse {
            status: health::health_check_response::ServingStatus::Serving as i32,
        };
        let s = futures::stream::once(async move { Ok(first) }).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(s)))
    }
}

use futures::StreamExt as _;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cache::Identity;
    use crate::core::entry::{X509SvidRecord, testing::entry};
    use spiffe_core::Bundle;
    use std::time::UNIX_EPOCH;

    fn identity(id: &str, hint: &str, created: i64) -> Identity {
        let mut e = entry(id, &format!("/{id}"), &["unix:uid:1"], 1);
        e.set_hint(hint);
        e.created_at = created;
        Identity {
            entry: Arc::new(e),
            svid: Arc::new(X509SvidRecord {
                chain: vec![vec![1], vec![2]],
                key_pkcs8: vec![3],
                not_before: UNIX_EPOCH,
                not_after: UNIX_EPOCH,
            }),
        }
    }

    #[test]
    fn x509_response_and_duplicate_hints() {
        let td = TrustDomain::new("example.org").unwrap();
        let mut bundle = Bundle::new(td.clone());
        bundle.add_x509_authority(vec![9, 9]);
        let fed = TrustDomain::new("other.org").unwrap();
        let mut fb = Bundle::new(fed.clone());
        fb.add_x509_authority(vec![8]);
        let mut update = WorkloadUpdate {
            identities: vec![
                identity("a", "h", 5),
                identity("b", "h", 3),
                identity("c", "", 1),
            ],
            bundle: Some(Arc::new(bundle)),
            federated_bundles: Default::default(),
        };
        update.federated_bundles.insert(fed, Arc::new(fb));
        let r = x509_svid_response(&update).unwrap();
        let ids: Vec<_> = r.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
        assert_eq!(ids, ["spiffe://example.org/b", "spiffe://example.org/c"]);
        assert_eq!(r.svids[0].x509_svid, vec![1, 2]);
        assert_eq!(r.svids[0].bundle, vec![9, 9]);
        assert_eq!(r.federated_bundles["spiffe://other.org"], vec![8]);
        let b = x509_bundles_response(&update).unwrap();
        assert_eq!(b.bundles.len(), 2);
        update.identities.clear();
        assert!(x509_svid_response(&update).is_none());
        // No identity: federated bundles are withheld.
        assert_eq!(x509_bundles_response(&update).unwrap().bundles.len(), 1);
        let j = jwt_bundles_response(&update).unwrap();
        assert_eq!(
            std::str::from_utf8(&j.bundles["spiffe://example.org"]).unwrap(),
            "{\n    \"keys\": []\n}"
        );
        update.bundle = None;
        assert!(matches!(
            x509_bundles_response(&update),
            Err(WorkloadApiError::NoBundle)
        ));
    }

    #[test]
    fn errors_map_to_spire_codes() {
        let s: Status = WorkloadApiError::MissingHeader.into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "security header missing from request");
        let s: Status = WorkloadApiError::NoIdentity.into();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert_eq!(s.message(), "no identity issued");
        let s: Status = WorkloadApiError::Missing("audience").into();
        assert_eq!(s.message(), "audience must be specified");
        let s: Status = WorkloadApiError::JwtUnavailable("x".into()).into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn header_check() {
        let mut r = Request::new(());
        assert!(check_header(&r).is_err());
        r.metadata_mut()
            .insert(SECURITY_HEADER, "false".parse().unwrap());
        assert!(check_header(&r).is_err());
        r.metadata_mut()
            .insert(SECURITY_HEADER, "true".parse().unwrap());
        assert!(check_header(&r).is_ok());
        r.metadata_mut()
            .append(SECURITY_HEADER, "true".parse().unwrap());
        assert!(check_header(&r).is_err());
    }

    #[test]
    fn claims_filtering() {
        let key = spiffe_core::PrivateKey::generate(spiffe_core::KeyType::EcP256).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = serde_json::json!({
            "sub": "spiffe://other.org/w", "aud": "x", "exp": now + 60, "iat": now, "extra": 1
        });
        let header = serde_json::json!({"alg": "ES256", "kid": "k", "typ": "JWT"});
        use base64::Engine as _;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = key
            .sign_jws(spiffe_core::JwsAlgorithm::ES256, input.as_bytes())
            .unwrap();
        let token = format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        );
        let svid = JwtSvid::parse_insecure(&token).unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let s = claims_struct(&svid, &td, &HashSet::new()).unwrap();
        assert!(!s.fields.contains_key("extra"));
        assert!(!s.fields.contains_key("iat"));
        let aud = &s.fields["aud"];
        assert!(
            matches!(&aud.kind, Some(pbjson_types::value::Kind::ListValue(l)) if l.values.len() == 1)
        );
        let allowed: HashSet<String> = ["extra".to_string()].into();
        let s = claims_struct(&svid, &td, &allowed).unwrap();
        assert!(s.fields.contains_key("extra"));
        let own = TrustDomain::new("other.org").unwrap();
        let s = claims_struct(&svid, &own, &HashSet::new()).unwrap();
        assert!(s.fields.contains_key("iat"));
    }
}
