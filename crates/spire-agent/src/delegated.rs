//! The Delegated Identity API (`spire.api.agent.delegatedidentity.v1.DelegatedIdentity`) on
//! the admin socket, as SPIRE 1.13 serves it: a trusted delegate (a CNI, a proxy) fetches
//! identities on behalf of workloads it names by selectors or by PID.
//!
//! Every call first authorizes the caller: its PID (recorded at accept) is attested with the
//! agent's WorkloadAttestors and the PID-reuse guard, and one of the entries matching its
//! selectors must have a SPIFFE ID listed in `authorized_delegates`. Streams authorize again
//! with the caller's first selectors before each later message, so a delegate whose entry
//! goes away loses its streams. The workload is then named by exactly one of selectors (taken
//! as attested) or a non-zero PID (attested here, as given: the delegate vouches for it).
//! Streams send the current state at once and a message per change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use spiffe_core::{Bundle, SpiffeId, TrustDomain};
use spire_plugin::Selector;
use spire_proto::spire::api::agent::delegatedidentity::v1 as pb;
use spire_proto::spire::api::types;
use tonic::{Request, Response, Status};

use crate::core::cache::WorkloadUpdate;
use crate::core::entry::{Entry, to_unix};
use crate::manager::Manager;
use crate::peertracker::CallerInfo;
use crate::workload_attestor::{WorkloadAttestation, logged_selectors};

/// The `service` of this API's log lines (SPIRE's short name; SPIRE's admin API lines carry
/// `service`, `method` and the caller's `pid`, no `subsystem_name`).
const SERVICE: &str = "DelegatedIdentity";

/// Why a call was refused; each maps to SPIRE's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegatedError {
    /// The caller could not be attested (or is no longer the process that connected).
    #[error("workload attestation failed")]
    AttestationFailed,
    /// The caller (or, for JWT-SVIDs, the named workload) matches no entry.
    #[error("no identity issued")]
    NoIdentity,
    /// None of the caller's identities is an authorized delegate.
    #[error("caller not configured as an authorized delegate")]
    NotAuthorized,
    /// Both or neither of selectors and PID.
    #[error("must provide either selectors or non-zero PID, but not both")]
    SelectorsOrPid,
    /// A selector without type or value, or with `:` in its type.
    #[error("could not parse provided selectors")]
    BadSelectors,
    /// `FetchJWTSVIDs` without audience.
    #[error("audience must be specified")]
    MissingAudience,
    /// The server could not sign a JWT-SVID.
    #[error("could not fetch JWT-SVID: {0}")]
    JwtUnavailable(String),
    /// A cached identity had no certificate.
    #[error("could not serialize response")]
    Serialize,
}

impl From<DelegatedError> for Status {
    fn from(e: DelegatedError) -> Status {
        let msg = e.to_string();
        match e {
            DelegatedError::AttestationFailed | DelegatedError::Serialize => Status::internal(msg),
            DelegatedError::NoIdentity | DelegatedError::NotAuthorized => {
                Status::permission_denied(msg)
            }
            DelegatedError::SelectorsOrPid
            | DelegatedError::BadSelectors
            | DelegatedError::MissingAudience => Status::invalid_argument(msg),
            DelegatedError::JwtUnavailable(_) => Status::unavailable(msg),
        }
    }
}

/// How a request names the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Selectors the delegate has attested itself.
    Selectors(Vec<Selector>),
    /// A process for the agent to attest.
    Pid(i32),
}

/// Reads a request's `selectors` and `pid`: exactly one of them (PID 0 counts as absent,
/// as in SPIRE), and every selector with a type free of `:` and a value.
pub fn target(pid: i32, selectors: &[types::Selector]) -> Result<Target, DelegatedError> {
    if selectors.is_empty() == (pid == 0) {
        return Err(DelegatedError::SelectorsOrPid);
    }
    if pid != 0 {
        return Ok(Target::Pid(pid));
    }
    selectors
        .iter()
        .map(|s| Selector::new(&s.r#type, &s.value))
        .collect::<Result<Vec<_>, _>>()
        .map(Target::Selectors)
        .map_err(|_| DelegatedError::BadSelectors)
}

/// SPIRE's delegate check over the entries matching the caller's selectors: none is "no
/// identity issued"; otherwise one of them must be an authorized delegate.
pub fn authorize<'a>(
    entries: &'a [Arc<Entry>],
    delegates: &HashSet<String>,
) -> Result<&'a Entry, DelegatedError> {
    if entries.is_empty() {
        return Err(DelegatedError::NoIdentity);
    }
    entries
        .iter()
        .find(|e| delegates.contains(e.spiffe_id.as_str()))
        .map(|e| &**e)
        .ok_or(DelegatedError::NotAuthorized)
}

fn id_proto(id: &SpiffeId) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: id.trust_domain_name().to_string(),
        path: id.path().to_string(),
    }
}

/// A `SubscribeToX509SVIDs` message: the workload's SVIDs with their keys (admin and
/// downstream entries left out) and the trust domains whose bundles it federates with,
/// sorted.
pub fn x509_svids_response(
    update: &WorkloadUpdate,
) -> Result<pb::SubscribeToX509sviDsResponse, DelegatedError> {
    let mut federates_with: Vec<String> = update
        .federated_bundles
        .keys()
        .map(TrustDomain::id_string)
        .collect();
    federates_with.sort();
    let mut x509_svids = Vec::with_capacity(update.identities.len());
    for identity in &update.identities {
        if identity.entry.admin || identity.entry.downstream {
            continue;
        }
        if identity.svid.chain.is_empty() {
            tracing::error!(
                service = SERVICE,
                error = "unable to get SVID from identity",
                "Could not serialize X.509 SVID response"
            );
            return Err(DelegatedError::Serialize);
        }
        x509_svids.push(pb::X509svidWithKey {
            x509_svid: Some(types::X509svid {
                cert_chain: identity.svid.chain.clone(),
                id: Some(id_proto(&identity.entry.spiffe_id)),
                expires_at: to_unix(identity.svid.not_after),
                hint: identity.entry.hint().to_string(),
            }),
            x509_svid_key: identity.svid.key_pkcs8.clone(),
        });
    }
    Ok(pb::SubscribeToX509sviDsResponse {
        x509_svids,
        federates_with,
    })
}

/// Folds `bundles` into the X.509 bundle map SPIRE keeps for a stream: trust domain ID →
/// its CA certificates' DER, concatenated. As in SPIRE, a trust domain once sent is never
/// dropped from the map, even when its bundle goes.
pub fn fold_x509_bundles(
    acc: &mut HashMap<String, Vec<u8>>,
    bundles: &BTreeMap<TrustDomain, Arc<Bundle>>,
) {
    for (td, b) in bundles {
        acc.insert(td.id_string(), b.x509_authorities_der());
    }
}

/// The same for JWT bundles: trust domain ID → a standard JWKS of its JWT authorities.
pub fn fold_jwt_bundles(
    acc: &mut HashMap<String, Vec<u8>>,
    bundles: &BTreeMap<TrustDomain, Arc<Bundle>>,
) {
    for (td, b) in bundles {
        acc.insert(td.id_string(), b.to_jwt_jwks_json().into_bytes());
    }
}

/// An authorized caller: its PID and the selectors it was attested with.
#[derive(Debug, Clone)]
struct Delegate {
    pid: i32,
    selectors: Vec<Selector>,
}

/// Seconds from `now` to `at` (negative when past), as SPIRE logs a TTL.
fn ttl_secs(now: std::time::SystemTime, at: std::time::SystemTime) -> f64 {
    match at.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Folds the agent's bundles into a stream's bundle map.
type Fold = fn(&mut HashMap<String, Vec<u8>>, &BTreeMap<TrustDomain, Arc<Bundle>>);

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type Sender<T> = tokio::sync::mpsc::Sender<Result<T, Status>>;

/// The Delegated Identity service.
#[derive(Debug, Clone)]
pub struct DelegatedIdentityService {
    manager: Arc<Manager>,
    attestation: Arc<WorkloadAttestation>,
    delegates: Arc<HashSet<String>>,
}

impl DelegatedIdentityService {
    /// Serves `manager`'s identities to the callers whose identities are in `delegates`,
    /// attesting callers and named PIDs with `attestation`.
    pub fn new(
        manager: Arc<Manager>,
        attestation: Arc<WorkloadAttestation>,
        delegates: &[SpiffeId],
    ) -> Self {
        Self {
            manager,
            attestation,
            delegates: Arc::new(delegates.iter().map(|d| d.as_str().to_string()).collect()),
        }
    }

    /// Attests the caller of `req` and checks it is an authorized delegate; streams keep
    /// what this returns to authorize again.
    async fn authorize_caller<T>(
        &self,
        req: &Request<T>,
        method: &'static str,
    ) -> Result<Delegate, DelegatedError> {
        let caller = req.extensions().get::<CallerInfo>().cloned();
        let pid = caller.as_ref().map_or(0, |c| c.pid);
        let selectors = match caller {
            Some(c) => self.attestation.attest(&c).await.map_err(|e| e.to_string()),
            None => Err("peer tracker watcher missing from context".to_string()),
        };
        let selectors = selectors.map_err(|e| {
            tracing::error!(service = SERVICE, method, pid, error = %e, "Workload attestation failed");
            DelegatedError::AttestationFailed
        })?;
        let delegate = Delegate { pid, selectors };
        self.check_delegate(&delegate, method)?;
        Ok(delegate)
    }

    /// The delegate check for a caller attested to have `delegate.selectors`.
    fn check_delegate(
        &self,
        delegate: &Delegate,
        method: &'static str,
    ) -> Result<(), DelegatedError> {
        let pid = delegate.pid;
        let selectors = logged_selectors(&delegate.selectors);
        let entries = self
            .manager
            .workloads()
            .matching_entries(&delegate.selectors);
        match authorize(&entries, &self.delegates) {
            Ok(e) => {
                tracing::debug!(service = SERVICE, method, pid, delegate_selectors = %selectors, delegate_id = %e.spiffe_id, "Caller authorized as delegate");
                Ok(())
            }
            Err(DelegatedError::NoIdentity) => {
                tracing::error!(service = SERVICE, method, pid, delegate_selectors = %selectors, "no identity issued");
                Err(DelegatedError::NoIdentity)
            }
            Err(e) => {
                tracing::error!(
                    service = SERVICE,
                    method,
                    pid,
                    delegate_selectors = %selectors,
                    num_registered_entries = entries.len(),
                    default_id = %entries.first().map(|e| e.spiffe_id.as_str()).unwrap_or_default(),
                    "Permission denied; caller not configured as an authorized delegate."
                );
                Err(e)
            }
        }
    }

    /// The selectors of the workload a request names.
    async fn workload_selectors(
        &self,
        pid: i32,
        selectors: &[types::Selector],
        method: &'static str,
        delegate: &Delegate,
    ) -> Result<Vec<Selector>, DelegatedError> {
        match target(pid, selectors) {
            Ok(Target::Selectors(s)) => Ok(s),
            Ok(Target::Pid(pid)) => Ok(self.attestation.attest_pid(pid).await),
            Err(e) => {
                let what = match e {
                    DelegatedError::BadSelectors => {
                        "Invalid argument; could not parse provided selectors"
                    }
                    _ => {
                        "Invalid argument; must provide either selectors or non-zero PID, but not both"
                    }
                };
                tracing::error!(service = SERVICE, method, pid = delegate.pid, "{what}");
                Err(e)
            }
        }
    }

    /// Runs `body` as a stream task; the stream ends when the task returns or the client
    /// goes away.
    fn stream<T, F, Fut>(body: F) -> ResponseStream<T>
    where
        T: Send + 'static,
        F: FnOnce(Sender<T>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let task = body(tx.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                () = tx.closed() => {}
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    /// A bundle stream: the current map at once, then the map again (authorizing the
    /// caller first) whenever the set of bundles changes.
    fn bundle_stream<T>(
        &self,
        caller: Delegate,
        method: &'static str,
        fold: Fold,
        message: fn(HashMap<String, Vec<u8>>) -> T,
    ) -> ResponseStream<T>
    where
        T: Send + 'static,
    {
        let this = self.clone();
        Self::stream(move |tx| async move {
            let workloads = this.manager.workloads().clone();
            let mut changes = workloads.watch_bundles();
            changes.borrow_and_update();
            let mut acc = HashMap::new();
            loop {
                fold(&mut acc, &workloads.bundles());
                if tx.send(Ok(message(acc.clone()))).await.is_err() {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
                changes.borrow_and_update();
                if let Err(e) = this.check_delegate(&caller, method) {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        })
    }
}

#[tonic::async_trait]
impl pb::delegated_identity_server::DelegatedIdentity for DelegatedIdentityService {
    type SubscribeToX509SVIDsStream = ResponseStream<pb::SubscribeToX509sviDsResponse>;
    type SubscribeToX509BundlesStream = ResponseStream<pb::SubscribeToX509BundlesResponse>;
    type SubscribeToJWTBundlesStream = ResponseStream<pb::SubscribeToJwtBundlesResponse>;

    async fn subscribe_to_x509svi_ds(
        &self,
        req: Request<pb::SubscribeToX509sviDsRequest>,
    ) -> Result<Response<Self::SubscribeToX509SVIDsStream>, Status> {
        const METHOD: &str = "SubscribeToX509SVIDs";
        // SPIRE times the first update that carries an SVID, from the call's start.
        let started = std::time::Instant::now();
        let caller = self.authorize_caller(&req, METHOD).await?;
        let r = req.get_ref();
        let selectors = self
            .workload_selectors(r.pid, &r.selectors, METHOD, &caller)
            .await?;
        tracing::debug!(service = SERVICE, method = METHOD, pid = caller.pid, delegate_selectors = %logged_selectors(&caller.selectors), request_selectors = %logged_selectors(&selectors), "Subscribing to cache changes");
        let mut sub = self.manager.workloads().subscribe(&selectors);
        let this = self.clone();
        Ok(Response::new(Self::stream(move |tx| async move {
            // SPIRE's subscription waits until every matching entry has its SVID.
            sub.wait_ready().await;
            let mut first_measured = false;
            loop {
                if let Err(e) = this.check_delegate(&caller, METHOD) {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                let update = sub.update();
                if !first_measured && !update.identities.is_empty() {
                    first_measured = true;
                    this.manager.metrics().measure_since(
                        &[
                            "delegated_identity_api",
                            "subscribe_x509_svids",
                            "first_update",
                            "elapsed_time",
                        ],
                        started,
                        &[],
                    );
                }
                let msg = x509_svids_response(&update).map_err(Status::from);
                let failed = msg.is_err();
                if let Ok(m) = &msg {
                    let now = this.manager.now();
                    let sent = update
                        .identities
                        .iter()
                        .filter(|i| !i.entry.admin && !i.entry.downstream);
                    for identity in sent {
                        tracing::debug!(
                            service = SERVICE,
                            method = METHOD,
                            pid = caller.pid,
                            count = m.x509_svids.len(),
                            spiffe_id = %identity.entry.spiffe_id,
                            ttl = ttl_secs(now, identity.svid.not_after),
                            "Fetched X.509 SVID for delegated identity"
                        );
                    }
                }
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
                if !sub.changed().await {
                    return;
                }
            }
        })))
    }

    async fn subscribe_to_x509_bundles(
        &self,
        req: Request<pb::SubscribeToX509BundlesRequest>,
    ) -> Result<Response<Self::SubscribeToX509BundlesStream>, Status> {
        const METHOD: &str = "SubscribeToX509Bundles";
        let caller = self.authorize_caller(&req, METHOD).await?;
        Ok(Response::new(self.bundle_stream(
            caller,
            METHOD,
            fold_x509_bundles,
            |ca_certificates| pb::SubscribeToX509BundlesResponse { ca_certificates },
        )))
    }

    async fn fetch_jwtsvi_ds(
        &self,
        req: Request<pb::FetchJwtsviDsRequest>,
    ) -> Result<Response<pb::FetchJwtsviDsResponse>, Status> {
        const METHOD: &str = "FetchJWTSVIDs";
        if req.get_ref().audience.is_empty() {
            tracing::error!(
                service = SERVICE,
                method = METHOD,
                "Missing required audience parameter"
            );
            return Err(DelegatedError::MissingAudience.into());
        }
        let caller = self.authorize_caller(&req, METHOD).await?;
        let pid = caller.pid;
        let r = req.get_ref();
        let selectors = self
            .workload_selectors(r.pid, &r.selectors, METHOD, &caller)
            .await?;
        let mut svids = Vec::new();
        for entry in self.manager.workloads().matching_entries(&selectors) {
            let svid = self
                .manager
                .fetch_jwt_svid(&entry, &r.audience)
                .await
                .map_err(|e| {
                    tracing::error!(service = SERVICE, method = METHOD, pid, spiffe_id = %entry.spiffe_id, error = %e, "Could not fetch JWT-SVID");
                    DelegatedError::JwtUnavailable(e.to_string())
                })?;
            tracing::debug!(service = SERVICE, method = METHOD, pid, spiffe_id = %entry.spiffe_id, ttl = ttl_secs(self.manager.now(), svid.expires_at), "Fetched JWT SVID");
            svids.push(types::Jwtsvid {
                token: svid.token,
                id: Some(id_proto(&entry.spiffe_id)),
                expires_at: to_unix(svid.expires_at),
                issued_at: to_unix(svid.issued_at),
                hint: entry.hint().to_string(),
            });
        }
        if svids.is_empty() {
            tracing::error!(
                service = SERVICE,
                method = METHOD,
                pid,
                "No identity issued"
            );
            return Err(DelegatedError::NoIdentity.into());
        }
        Ok(Response::new(pb::FetchJwtsviDsResponse { svids }))
    }

    async fn subscribe_to_jwt_bundles(
        &self,
        req: Request<pb::SubscribeToJwtBundlesRequest>,
    ) -> Result<Response<Self::SubscribeToJWTBundlesStream>, Status> {
        const METHOD: &str = "SubscribeToJWTBundles";
        let caller = self.authorize_caller(&req, METHOD).await?;
        Ok(Response::new(self.bundle_stream(
            caller,
            METHOD,
            fold_jwt_bundles,
            |bundles| pb::SubscribeToJwtBundlesResponse { bundles },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cache::Identity;
    use crate::core::entry::{X509SvidRecord, testing::entry};
    use std::time::{Duration, UNIX_EPOCH};

    fn sel(t: &str, v: &str) -> types::Selector {
        types::Selector {
            r#type: t.into(),
            value: v.into(),
        }
    }

    #[test]
    fn target_rules_are_spires() {
        assert_eq!(target(0, &[]), Err(DelegatedError::SelectorsOrPid));
        assert_eq!(
            target(7, &[sel("unix", "uid:1")]),
            Err(DelegatedError::SelectorsOrPid)
        );
        assert_eq!(target(7, &[]), Ok(Target::Pid(7)));
        assert_eq!(target(-3, &[]), Ok(Target::Pid(-3)));
        assert_eq!(
            target(0, &[sel("unix", "uid:1"), sel("k8s", "ns:a")]),
            Ok(Target::Selectors(vec![
                Selector::new("unix", "uid:1").unwrap(),
                Selector::new("k8s", "ns:a").unwrap()
            ]))
        );
        for bad in [sel("", "x"), sel("a:b", "x"), sel("unix", "")] {
            assert_eq!(
                target(0, &[sel("unix", "uid:1"), bad]),
                Err(DelegatedError::BadSelectors)
            );
        }
    }

    #[test]
    fn delegate_authorization() {
        let delegates: HashSet<String> = ["spiffe://example.org/delegate".to_string()].into();
        assert_eq!(
            authorize(&[], &delegates).err(),
            Some(DelegatedError::NoIdentity)
        );
        let other = Arc::new(entry("1", "/other", &["unix:uid:1"], 1));
        let delegate = Arc::new(entry("2", "/delegate", &["unix:uid:1"], 1));
        assert_eq!(
            authorize(std::slice::from_ref(&other), &delegates).err(),
            Some(DelegatedError::NotAuthorized)
        );
        let both = [other, delegate];
        assert_eq!(authorize(&both, &delegates).map(|e| e.id.as_str()), Ok("2"));
        assert_eq!(
            authorize(&both, &HashSet::new()).err(),
            Some(DelegatedError::NotAuthorized)
        );
    }

    #[test]
    fn errors_have_spires_codes_and_messages() {
        let cases = [
            (
                DelegatedError::AttestationFailed,
                tonic::Code::Internal,
                "workload attestation failed",
            ),
            (
                DelegatedError::NoIdentity,
                tonic::Code::PermissionDenied,
                "no identity issued",
            ),
            (
                DelegatedError::NotAuthorized,
                tonic::Code::PermissionDenied,
                "caller not configured as an authorized delegate",
            ),
            (
                DelegatedError::SelectorsOrPid,
                tonic::Code::InvalidArgument,
                "must provide either selectors or non-zero PID, but not both",
            ),
            (
                DelegatedError::BadSelectors,
                tonic::Code::InvalidArgument,
                "could not parse provided selectors",
            ),
            (
                DelegatedError::MissingAudience,
                tonic::Code::InvalidArgument,
                "audience must be specified",
            ),
            (
                DelegatedError::JwtUnavailable("boom".into()),
                tonic::Code::Unavailable,
                "could not fetch JWT-SVID: boom",
            ),
            (
                DelegatedError::Serialize,
                tonic::Code::Internal,
                "could not serialize response",
            ),
        ];
        for (e, code, msg) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, msg));
        }
    }

    fn identity(id: &str, path: &str) -> Identity {
        let mut e = entry(id, path, &["unix:uid:1"], 1);
        e.set_hint(format!("hint-{id}"));
        Identity {
            entry: Arc::new(e),
            svid: Arc::new(X509SvidRecord {
                chain: vec![vec![1, 2], vec![3]],
                key_pkcs8: vec![4, 5],
                not_before: UNIX_EPOCH,
                not_after: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            }),
        }
    }

    fn bundle(td: &str, ca: &[u8]) -> Bundle {
        let mut b = Bundle::new(TrustDomain::new(td).unwrap());
        b.add_x509_authority(ca.to_vec());
        b
    }

    #[test]
    fn x509_response_skips_admin_and_downstream_and_sorts_federation() {
        let mut admin = identity("2", "/admin");
        Arc::make_mut(&mut admin.entry).admin = true;
        let mut downstream = identity("3", "/down");
        Arc::make_mut(&mut downstream.entry).downstream = true;
        let mut update = WorkloadUpdate {
            identities: vec![identity("1", "/w"), admin, downstream],
            bundle: Some(Arc::new(bundle("example.org", &[9]))),
            federated_bundles: BTreeMap::new(),
        };
        for td in ["zeta.org", "alpha.org"] {
            update
                .federated_bundles
                .insert(TrustDomain::new(td).unwrap(), Arc::new(bundle(td, &[8])));
        }
        let r = x509_svids_response(&update).unwrap();
        assert_eq!(
            r.federates_with,
            ["spiffe://alpha.org", "spiffe://zeta.org"]
        );
        assert_eq!(r.x509_svids.len(), 1);
        let s = &r.x509_svids[0];
        assert_eq!(s.x509_svid_key, vec![4, 5]);
        let x = s.x509_svid.as_ref().unwrap();
        assert_eq!(x.cert_chain, vec![vec![1, 2], vec![3]]);
        assert_eq!(x.expires_at, 1_700_000_000);
        assert_eq!(x.hint, "hint-1");
        let id = x.id.as_ref().unwrap();
        assert_eq!(
            (id.trust_domain.as_str(), id.path.as_str()),
            ("example.org", "/w")
        );

        // No identity: an empty message, not an error.
        update.identities.clear();
        update.federated_bundles.clear();
        let r = x509_svids_response(&update).unwrap();
        assert!(r.x509_svids.is_empty() && r.federates_with.is_empty());

        let mut broken = identity("4", "/x");
        Arc::make_mut(&mut broken.svid).chain.clear();
        update.identities.push(broken);
        assert_eq!(x509_svids_response(&update), Err(DelegatedError::Serialize));
    }

    #[test]
    fn bundle_maps_keep_what_they_once_sent() {
        let own = TrustDomain::new("example.org").unwrap();
        let fed = TrustDomain::new("other.org").unwrap();
        let mut bundles = BTreeMap::new();
        bundles.insert(own.clone(), Arc::new(bundle("example.org", &[1, 2])));
        bundles.insert(fed.clone(), Arc::new(bundle("other.org", &[3])));
        let mut x = HashMap::new();
        fold_x509_bundles(&mut x, &bundles);
        assert_eq!(x["spiffe://example.org"], vec![1, 2]);
        assert_eq!(x["spiffe://other.org"], vec![3]);
        let mut j = HashMap::new();
        fold_jwt_bundles(&mut j, &bundles);
        assert_eq!(j["spiffe://other.org"], b"{\n    \"keys\": []\n}".to_vec());
        // The federated bundle goes: SPIRE's map still holds it.
        bundles.remove(&fed);
        fold_x509_bundles(&mut x, &bundles);
        assert_eq!(x.len(), 2);
    }
}
