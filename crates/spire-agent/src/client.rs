//! The agent's gRPC client to the SPIRE server: one HTTP/2 connection over TLS, mutual once
//! the agent has an SVID, re-established after errors and SVID rotation, with SPIRE's RPC
//! sequence (entry sync, bundles, SVID minting, renewal) and our `spirers.sync.v1` change
//! stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prost::Message as _;
use spiffe_core::{Bundle, SpiffeId, TrustDomain};
use spire_proto::spire::api::server::agent::v1 as agentv1;
use spire_proto::spire::api::server::bundle::v1 as bundlev1;
use spire_proto::spire::api::server::entry::v1 as entryv1;
use spire_proto::spire::api::server::svid::v1 as svidv1;
use spire_proto::spire::api::types;
use spire_proto::spirers::sync::v1 as syncv1;
use spire_tls::{Authorize, BundleProvider, PeerVerifier, SvidResolver, TlsConnector};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::core::entry::from_unix;
use crate::core::jwt_cache::CachedJwtSvid;
use crate::core::sync::{self, EntrySync, Mirror, SyncError, SyncStats, SyncStep};

/// SPIRE's per-RPC timeout for agent calls.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The endpoint address is not usable.
    #[error("invalid server address {0:?}")]
    Address(String),
    /// The server answered with an error status.
    #[error("{context}: rpc error: code = {} desc = {}", code_name(status.code()), status.message())]
    Status {
        /// What was being done.
        context: &'static str,
        /// The status.
        status: tonic::Status,
    },
    /// The call timed out.
    #[error("{0}: context deadline exceeded")]
    Timeout(&'static str),
    /// The server broke the sync protocol.
    #[error("failed to fetch authorized entries: {0}")]
    Sync(#[from] SyncError),
    /// The server sent something unusable.
    #[error("{0}")]
    Protocol(String),
}

/// grpc-go's name of a status code, as errors print it.
pub fn code_name(code: tonic::Code) -> String {
    spire_gocompat::grpc::code_name(code as i32)
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// The `PermissionDeniedDetails` reason attached to a status, if any.
pub fn permission_denied_reason(
    status: &tonic::Status,
) -> Option<types::permission_denied_details::Reason> {
    if status.code() != tonic::Code::PermissionDenied {
        return None;
    }
    let rpc = RpcStatus::decode(status.details()).ok()?;
    rpc.details.iter().find_map(|any| {
        if !any
            .type_url
            .ends_with("/spire.api.types.PermissionDeniedDetails")
        {
            return None;
        }
        let d = types::PermissionDeniedDetails::decode(any.value.as_slice()).ok()?;
        types::permission_denied_details::Reason::try_from(d.reason).ok()
    })
}

impl ClientError {
    /// The status, if the server answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            ClientError::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// SPIRE's `nodeutil.ShouldAgentReattest`: the server no longer knows this agent (evicted,
    /// expired, or must re-attest).
    pub fn should_reattest(&self) -> bool {
        use types::permission_denied_details::Reason;
        matches!(
            self.status().and_then(permission_denied_reason),
            Some(
                Reason::AgentExpired
                    | Reason::AgentNotActive
                    | Reason::AgentNotAttested
                    | Reason::AgentMustReattest
            )
        )
    }

    /// SPIRE's `nodeutil.ShouldAgentShutdown`: the agent is banned.
    pub fn should_shutdown(&self) -> bool {
        matches!(
            self.status().and_then(permission_denied_reason),
            Some(types::permission_denied_details::Reason::AgentBanned)
        )
    }

    /// Whether the server's certificate does not chain to the agent's bundle (SPIRE's
    /// `x509util.IsUnknownAuthorityError`).
    pub fn is_unknown_authority(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => spire_tls::is_unknown_authority(status),
            _ => spire_tls::is_unknown_authority(self),
        }
    }

    /// Whether the server does not know the RPC (reference SPIRE and our extensions).
    pub fn is_unimplemented(&self) -> bool {
        self.status()
            .is_some_and(|s| s.code() == tonic::Code::Unimplemented)
    }
}

fn status(context: &'static str) -> impl FnOnce(tonic::Status) -> ClientError {
    move |status| ClientError::Status { context, status }
}

async fn timed<T>(
    context: &'static str,
    fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Ok(r) => r.map_err(status(context)),
        Err(_) => Err(ClientError::Timeout(context)),
    }
}

/// A lazily connecting channel to `address` with `connector` doing TCP + TLS.
pub fn channel(address: &str, connector: TlsConnector) -> Result<Channel, ClientError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|_| ClientError::Address(address.to_string()))?
        .connect_timeout(RPC_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let address = address.to_string();
    let svc = tower::service_fn(move |_: Uri| {
        let address = address.clone();
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(spire_tls::server_name(), tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(svc))
}

/// A TLS connector verifying the server as `spiffe://<td>/spire/server` against `bundles`,
/// presenting `svid` when given; `insecure` (`insecure_bootstrap`) skips chain verification
/// but still requires the server's certificate to name `spiffe://<td>/spire/server`, as
/// SPIRE does.
pub fn connector(
    trust_domain: &TrustDomain,
    bundles: Arc<dyn BundleProvider>,
    svid: Option<Arc<SvidResolver>>,
    insecure: bool,
) -> Result<TlsConnector, ClientError> {
    let server_id = server_id(trust_domain)?;
    let verifier = if insecure {
        PeerVerifier::insecure_bootstrap(server_id)
    } else {
        PeerVerifier::new(bundles, Authorize::Id(server_id))
    };
    let config =
        spire_tls::client_config(verifier, svid).map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(TlsConnector::from(config))
}

/// `spiffe://<td>/spire/server`.
pub fn server_id(td: &TrustDomain) -> Result<SpiffeId, ClientError> {
    td.id_with_path("/spire/server")
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Converts a bundle from the server API.
pub fn bundle_from_proto(b: &types::Bundle) -> Result<Bundle, ClientError> {
    let td = TrustDomain::from_name_or_id(&b.trust_domain)
        .map_err(|e| ClientError::Protocol(format!("invalid bundle trust domain: {e}")))?;
    let mut out = Bundle::new(td);
    for a in &b.x509_authorities {
        out.x509_authorities
            .push(spiffe_core::bundle::X509Authority {
                der: a.asn1.clone(),
                tainted: a.tainted,
            });
    }
    for k in &b.jwt_authorities {
        let public_key = spiffe_core::PublicKey::from_spki_der(&k.public_key).map_err(|e| {
            ClientError::Protocol(format!("invalid JWT authority {:?}: {e}", k.key_id))
        })?;
        out.jwt_authorities.push(spiffe_core::bundle::JwtAuthority {
            key_id: k.key_id.clone(),
            public_key,
            expires_at: k.expires_at,
            tainted: k.tainted,
        });
    }
    out.refresh_hint = (b.refresh_hint != 0).then_some(b.refresh_hint);
    out.sequence_number = (b.sequence_number != 0).then_some(b.sequence_number);
    Ok(out)
}

/// The steady-state client (mutual TLS with the agent SVID).
pub struct ServerClient {
    address: String,
    connector: TlsConnector,
    channel: Mutex<Option<Channel>>,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// An X509-SVID minted for an entry.
#[derive(Debug, Clone)]
pub struct MintedSvid {
    /// Leaf first.
    pub chain: Vec<Vec<u8>>,
}

impl ServerClient {
    /// A client for `address` (`host:port`) using `connector`.
    pub fn new(address: &str, connector: TlsConnector) -> Self {
        Self {
            address: address.to_string(),
            connector,
            channel: Mutex::new(None),
        }
    }

    fn channel(&self) -> Result<Channel, ClientError> {
        let mut guard = self.channel.lock();
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = channel(&self.address, self.connector.clone())?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Drops the connection; the next call reconnects (after errors and SVID rotation).
    pub fn release(&self) {
        *self.channel.lock() = None;
    }

    fn released<T>(&self, r: Result<T, ClientError>) -> Result<T, ClientError> {
        if r.is_err() {
            self.release();
        }
        r
    }

    /// `Entry/SyncAuthorizedEntries` over the mirror of authorized entries.
    pub async fn sync_entries(
        &self,
        mirror: &mut Mirror,
    ) -> Result<(SyncStats, Vec<sync::Malformed>), ClientError> {
        let r = self.sync_entries_inner(mirror).await;
        self.released(r)
    }

    async fn sync_entries_inner(
        &self,
        mirror: &mut Mirror,
    ) -> Result<(SyncStats, Vec<sync::Malformed>), ClientError> {
        const CTX: &str = "failed to fetch authorized entries";
        let mut client = entryv1::entry_client::EntryClient::new(self.channel()?)
            .max_decoding_message_size(usize::MAX);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut machine = EntrySync::new(mirror);
        tx.send(sync::first_request())
            .await
            .map_err(|_| ClientError::Protocol("sync stream closed".into()))?;
        let deadline = tokio::time::Instant::now() + RPC_TIMEOUT;
        let fut = async {
            let mut stream = client
                .sync_authorized_entries(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(status(CTX))?
                .into_inner();
            loop {
                let resp = stream
                    .message()
                    .await
                    .map_err(status(CTX))?
                    .ok_or_else(|| ClientError::Protocol("sync stream ended early".into()))?;
                match machine.on_response(mirror, resp)? {
                    SyncStep::Receive => {}
                    SyncStep::Request(req) => {
                        tx.send(req)
                            .await
                            .map_err(|_| ClientError::Protocol("sync stream closed".into()))?;
                    }
                    SyncStep::Done(stats) => return Ok::<_, ClientError>(stats),
                }
            }
        };
        let stats = tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| ClientError::Timeout(CTX))??;
        Ok((stats, machine.malformed().to_vec()))
    }

    /// `Entry/GetAuthorizedEntries` (with `use_sync_authorized_entries = false`).
    pub async fn get_authorized_entries(
        &self,
        mirror: &mut Mirror,
    ) -> Result<Vec<sync::Malformed>, ClientError> {
        let r = async {
            let mut client = entryv1::entry_client::EntryClient::new(self.channel()?)
                .max_decoding_message_size(usize::MAX);
            let resp = timed(
                "failed to fetch authorized entries",
                client.get_authorized_entries(entryv1::GetAuthorizedEntriesRequest {
                    output_mask: Some(sync::entry_output_mask()),
                }),
            )
            .await?
            .into_inner();
            Ok(sync::replace_all(mirror, &resp.entries))
        }
        .await;
        self.released(r)
    }

    /// `Bundle/GetBundle` and `Bundle/GetFederatedBundle` for `federated`; a federated bundle
    /// the server does not have is skipped (SPIRE warns). Returns the bundles and the
    /// trust domains not found.
    pub async fn fetch_bundles(
        &self,
        federated: &[TrustDomain],
    ) -> Result<(BTreeMap<TrustDomain, Bundle>, Vec<TrustDomain>), ClientError> {
        let r = async {
            let mut client = bundlev1::bundle_client::BundleClient::new(self.channel()?);
            let own = timed(
                "failed to fetch bundle",
                client.get_bundle(bundlev1::GetBundleRequest::default()),
            )
            .await?
            .into_inner();
            let own = bundle_from_proto(&own)?;
            let mut out = BTreeMap::new();
            out.insert(own.trust_domain().clone(), own);
            let mut not_found = Vec::new();
            for td in federated {
                let r = timed(
                    "failed to fetch federated bundle",
                    client.get_federated_bundle(bundlev1::GetFederatedBundleRequest {
                        trust_domain: td.name().to_string(),
                        output_mask: None,
                    }),
                )
                .await;
                match r {
                    Ok(b) => {
                        let b = bundle_from_proto(b.get_ref())?;
                        out.insert(b.trust_domain().clone(), b);
                    }
                    Err(ClientError::Status { status, .. })
                        if status.code() == tonic::Code::NotFound =>
                    {
                        not_found.push(td.clone())
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok((out, not_found))
        }
        .await;
        self.released(r)
    }

    /// `SVID/BatchNewX509SVID`. Returns, per entry ID, the SVID or the per-item error.
    pub async fn new_x509_svids(
        &self,
        csrs: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<(String, Result<MintedSvid, tonic::Status>)>, ClientError> {
        let r = async {
            let mut client = svidv1::svid_client::SvidClient::new(self.channel()?);
            let ids: Vec<String> = csrs.iter().map(|(id, _)| id.clone()).collect();
            let params = csrs
                .into_iter()
                .map(|(entry_id, csr)| svidv1::NewX509svidParams { entry_id, csr })
                .collect();
            let resp = timed(
                "failed to batch new X509 SVID(s)",
                client.batch_new_x509svid(svidv1::BatchNewX509svidRequest { params }),
            )
            .await?
            .into_inner();
            let mut out = Vec::with_capacity(ids.len());
            for (id, result) in ids.into_iter().zip(resp.results) {
                let code = result.status.as_ref().map(|s| s.code).unwrap_or(0);
                let item = match (code, result.svid) {
                    (0, Some(svid)) if !svid.cert_chain.is_empty() => Ok(MintedSvid {
                        chain: svid.cert_chain,
                    }),
                    (0, _) => Err(tonic::Status::internal("empty SVID in response")),
                    (code, _) => Err(tonic::Status::new(
                        tonic::Code::from_i32(code),
                        result.status.map(|s| s.message).unwrap_or_default(),
                    )),
                };
                out.push((id, item));
            }
            Ok(out)
        }
        .await;
        self.released(r)
    }

    /// `SVID/NewJWTSVID`.
    pub async fn new_jwt_svid(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<CachedJwtSvid, ClientError> {
        let r = async {
            let mut client = svidv1::svid_client::SvidClient::new(self.channel()?);
            let resp = timed(
                "failed to fetch JWT SVID",
                client.new_jwtsvid(svidv1::NewJwtsvidRequest {
                    entry_id: entry_id.to_string(),
                    audience: audience.to_vec(),
                }),
            )
            .await?
            .into_inner();
            let svid = resp
                .svid
                .ok_or_else(|| ClientError::Protocol("JWTSVID response missing SVID".into()))?;
            if svid.issued_at == 0 {
                return Err(ClientError::Protocol("JWTSVID missing issued at".into()));
            }
            if svid.expires_at == 0 {
                return Err(ClientError::Protocol("JWTSVID missing expires at".into()));
            }
            if svid.issued_at > svid.expires_at {
                return Err(ClientError::Protocol(
                    "JWTSVID issued after it has expired".into(),
                ));
            }
            Ok(CachedJwtSvid {
                token: svid.token,
                issued_at: from_unix(svid.issued_at),
                expires_at: from_unix(svid.expires_at),
            })
        }
        .await;
        self.released(r)
    }

    /// `Agent/RenewAgent`: the new agent SVID chain.
    pub async fn renew_agent(&self, csr: Vec<u8>) -> Result<Vec<Vec<u8>>, ClientError> {
        let r = async {
            let mut client = agentv1::agent_client::AgentClient::new(self.channel()?);
            let resp = timed(
                "failed to renew agent",
                client.renew_agent(agentv1::RenewAgentRequest {
                    params: Some(agentv1::AgentX509svidParams { csr }),
                }),
            )
            .await?
            .into_inner();
            resp.svid
                .map(|s| s.cert_chain)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| ClientError::Protocol("renew response is missing SVID".into()))
        }
        .await;
        self.released(r)
    }

    /// `spirers.sync.v1.Sync/WatchChanges` (our extension; `Unimplemented` on reference
    /// SPIRE).
    pub async fn watch_changes(
        &self,
    ) -> Result<tonic::Streaming<syncv1::WatchChangesResponse>, ClientError> {
        let mut client = syncv1::sync_client::SyncClient::new(self.channel()?);
        timed(
            "failed to watch changes",
            client.watch_changes(syncv1::WatchChangesRequest {}),
        )
        .await
        .map(tonic::Response::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(reason: types::permission_denied_details::Reason) -> tonic::Status {
        let details = types::PermissionDeniedDetails {
            reason: reason as i32,
        };
        let rpc = RpcStatus {
            code: tonic::Code::PermissionDenied as i32,
            message: "denied".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/spire.api.types.PermissionDeniedDetails".into(),
                value: details.encode_to_vec(),
            }],
        };
        tonic::Status::with_details(
            tonic::Code::PermissionDenied,
            "denied",
            rpc.encode_to_vec().into(),
        )
    }

    #[test]
    fn permission_denied_details_decide_reattest_or_shutdown() {
        use types::permission_denied_details::Reason;
        let e = |s| ClientError::Status {
            context: "x",
            status: s,
        };
        assert!(e(denied(Reason::AgentBanned)).should_shutdown());
        assert!(!e(denied(Reason::AgentBanned)).should_reattest());
        assert!(e(denied(Reason::AgentNotAttested)).should_reattest());
        assert!(e(denied(Reason::AgentMustReattest)).should_reattest());
        assert!(!e(tonic::Status::permission_denied("x")).should_reattest());
        assert!(!e(tonic::Status::unavailable("x")).should_shutdown());
        assert!(e(tonic::Status::unimplemented("x")).is_unimplemented());
        assert!(!ClientError::Timeout("x").should_reattest());
    }

    #[test]
    fn bundle_conversion() {
        let key = spiffe_core::PrivateKey::generate(spiffe_core::KeyType::EcP256).unwrap();
        let b = types::Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![types::X509Certificate {
                asn1: vec![1, 2],
                tainted: true,
            }],
            jwt_authorities: vec![types::JwtKey {
                public_key: key.public_key().spki_der().to_vec(),
                key_id: "k".into(),
                expires_at: 5,
                tainted: false,
            }],
            refresh_hint: 0,
            sequence_number: 3,
        };
        let out = bundle_from_proto(&b).unwrap();
        assert_eq!(out.trust_domain().name(), "example.org");
        assert!(out.x509_authorities[0].tainted);
        assert_eq!(out.jwt_authorities[0].key_id, "k");
        assert_eq!(out.refresh_hint, None);
        assert_eq!(out.sequence_number, Some(3));
        let mut bad = b.clone();
        bad.jwt_authorities[0].public_key = vec![0];
        assert!(bundle_from_proto(&bad).is_err());
        assert_eq!(
            server_id(&TrustDomain::new("example.org").unwrap())
                .unwrap()
                .as_str(),
            "spiffe://example.org/spire/server"
        );
    }
}
