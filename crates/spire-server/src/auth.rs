//! Who is calling, and may they: SPIRE's authorization policy (`policy_data.json`) applied
//! in a tower layer in front of every service, before any handler runs.
//!
//! Callers on the UNIX socket are local. Callers on TCP are identified by the X509-SVID
//! they presented (rustls already verified the chain against our bundles). An RPC is
//! allowed when its policy allows any caller, or a local one and the caller is local, or
//! an admin and the caller's ID is in `admin_ids` or has an entry with `admin`, or a
//! downstream and the caller has an entry with `downstream`, or an agent and the caller is a
//! current, unbanned agent whose SVID serial number is the one on record (a new serial from
//! RenewAgent is promoted on its first use).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message as _;
use spiffe_core::SpiffeId;
use spire_proto::spire::api::types::{PermissionDeniedDetails, permission_denied_details::Reason};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use tonic::{Code, Status};

use crate::registry::AgentCheck;
use crate::state::Server;

/// The caller of an RPC, as handlers see it (a request extension).
#[derive(Debug, Clone)]
pub struct Caller {
    /// Whether it came over the UNIX socket.
    pub local: bool,
    /// Its PID, for local callers.
    pub pid: Option<i32>,
    /// Its address, for TCP callers.
    pub addr: Option<SocketAddr>,
    /// The SPIFFE ID of its X509-SVID, for TCP callers that presented one.
    pub id: Option<SpiffeId>,
    /// Its certificate chain (DER), for TCP callers that presented one.
    pub chain: Vec<Vec<u8>>,
    /// Set when the caller was authorized as an agent.
    pub agent: bool,
}

impl Caller {
    /// The rate-limit key: the IP address for TCP, a constant for local callers.
    pub fn rate_key(&self) -> String {
        match self.addr {
            Some(a) => a.ip().to_string(),
            None => "local".to_string(),
        }
    }
}

/// Which kinds of caller an RPC admits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Anyone.
    pub any: bool,
    /// UNIX socket callers.
    pub local: bool,
    /// Admin SVIDs.
    pub admin: bool,
    /// Agents.
    pub agent: bool,
    /// Downstream servers.
    pub downstream: bool,
}

const L_A: Policy = Policy {
    any: false,
    local: true,
    admin: true,
    agent: false,
    downstream: false,
};
const L: Policy = Policy {
    any: false,
    local: true,
    admin: false,
    agent: false,
    downstream: false,
};
const AG: Policy = Policy {
    any: false,
    local: false,
    admin: false,
    agent: true,
    downstream: false,
};
const D: Policy = Policy {
    any: false,
    local: false,
    admin: false,
    agent: false,
    downstream: true,
};
const ANY: Policy = Policy {
    any: true,
    local: false,
    admin: false,
    agent: false,
    downstream: false,
};
const L_A_AG: Policy = Policy {
    any: false,
    local: true,
    admin: true,
    agent: true,
    downstream: false,
};

/// SPIRE 1.13's policy for a full method name; `None` means denied to everyone.
pub fn policy(method: &str) -> Option<Policy> {
    let (service, rpc) = method.strip_prefix('/')?.split_once('/')?;
    let p = match (service, rpc) {
        ("spire.api.server.svid.v1.SVID", "MintX509SVID" | "MintJWTSVID") => L_A,
        ("spire.api.server.svid.v1.SVID", "BatchNewX509SVID" | "NewJWTSVID") => AG,
        ("spire.api.server.svid.v1.SVID", "NewDownstreamX509CA") => D,
        ("spire.api.server.bundle.v1.Bundle", "GetBundle") => ANY,
        ("spire.api.server.bundle.v1.Bundle", "PublishJWTAuthority") => D,
        ("spire.api.server.bundle.v1.Bundle", "GetFederatedBundle") => L_A_AG,
        (
            "spire.api.server.bundle.v1.Bundle",
            "AppendBundle"
            | "CountBundles"
            | "ListFederatedBundles"
            | "BatchCreateFederatedBundle"
            | "BatchUpdateFederatedBundle"
            | "BatchSetFederatedBundle"
            | "BatchDeleteFederatedBundle",
        ) => L_A,
        ("spire.api.server.debug.v1.Debug", "GetInfo") => L,
        ("spire.api.server.entry.v1.Entry", "GetAuthorizedEntries" | "SyncAuthorizedEntries") => AG,
        (
            "spire.api.server.entry.v1.Entry",
            "CountEntries" | "ListEntries" | "GetEntry" | "BatchCreateEntry" | "BatchUpdateEntry"
            | "BatchDeleteEntry",
        ) => L_A,
        ("spire.api.server.logger.v1.Logger", "GetLogger" | "SetLogLevel" | "ResetLogLevel") => L,
        ("spire.api.server.agent.v1.Agent", "AttestAgent") => ANY,
        ("spire.api.server.agent.v1.Agent", "RenewAgent") => AG,
        (
            "spire.api.server.agent.v1.Agent",
            "CountAgents" | "ListAgents" | "GetAgent" | "DeleteAgent" | "BanAgent"
            | "CreateJoinToken",
        ) => L_A,
        ("grpc.health.v1.Health", "Check" | "List" | "Watch") => L,
        (
            "spire.api.server.trustdomain.v1.TrustDomain",
            "ListFederationRelationships"
            | "GetFederationRelationship"
            | "BatchCreateFederationRelationship"
            | "BatchUpdateFederationRelationship"
            | "BatchDeleteFederationRelationship"
            | "RefreshBundle",
        ) => L_A,
        (
            "spire.api.server.localauthority.v1.LocalAuthority",
            "GetJWTAuthorityState"
            | "PrepareJWTAuthority"
            | "ActivateJWTAuthority"
            | "TaintJWTAuthority"
            | "RevokeJWTAuthority"
            | "GetX509AuthorityState"
            | "PrepareX509Authority"
            | "ActivateX509Authority"
            | "TaintX509Authority"
            | "TaintX509UpstreamAuthority"
            | "RevokeX509Authority"
            | "RevokeX509UpstreamAuthority",
        ) => L_A,
        // Our own extension: agents only.
        ("spirers.sync.v1.Sync", "WatchChanges") => AG,
        _ => return None,
    };
    Some(p)
}

/// The services the policy table knows.
const SERVICES: &[&str] = &[
    "spire.api.server.svid.v1.SVID",
    "spire.api.server.bundle.v1.Bundle",
    "spire.api.server.debug.v1.Debug",
    "spire.api.server.entry.v1.Entry",
    "spire.api.server.logger.v1.Logger",
    "spire.api.server.agent.v1.Agent",
    "grpc.health.v1.Health",
    "spire.api.server.trustdomain.v1.TrustDomain",
    "spire.api.server.localauthority.v1.LocalAuthority",
    "spirers.sync.v1.Sync",
];

/// What gRPC answers for a method no service has, before any authorization (SPIRE's
/// authorization runs in interceptors, which gRPC only calls for registered methods):
/// `UNIMPLEMENTED`, with grpc-go's wording.
pub fn unknown_method(method: &str) -> Status {
    let path = method.strip_prefix('/').unwrap_or(method);
    match path.rsplit_once('/') {
        Some((service, rpc)) if SERVICES.contains(&service) => {
            Status::unimplemented(format!("unknown method {rpc} for service {service}"))
        }
        Some((service, _)) => Status::unimplemented(format!("unknown service {service}")),
        None => Status::unimplemented(format!("malformed method name: {method:?}")),
    }
}

/// Encodes `google.rpc.Status` with one `PermissionDeniedDetails`, as gRPC status details.
fn denied_details(code: Code, message: &str, reason: Reason) -> bytes::Bytes {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<prost_types::Any>,
    }
    let detail = PermissionDeniedDetails {
        reason: reason as i32,
    };
    let st = RpcStatus {
        code: code as i32,
        message: message.to_string(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/spire.api.types.PermissionDeniedDetails".into(),
            value: detail.encode_to_vec(),
        }],
    };
    bytes::Bytes::from(st.encode_to_vec())
}

/// A PermissionDenied status carrying SPIRE's denial reason.
pub fn permission_denied(message: &str, reason: Reason) -> Status {
    Status::with_details(
        Code::PermissionDenied,
        message,
        denied_details(Code::PermissionDenied, message, reason),
    )
}

/// Why an agent check failed.
#[derive(Debug)]
pub struct AgentDenied {
    /// The status to return.
    pub status: Status,
    /// SPIRE's reason, when it is a denial.
    pub reason: Option<Reason>,
}

fn denied(msg: String, reason: Reason) -> AgentDenied {
    tracing::error!("{msg}");
    AgentDenied {
        status: Status::permission_denied(msg),
        reason: Some(reason),
    }
}

/// SPIRE's agent check for a caller with SVID `leaf` claiming to be `id`.
pub async fn authorize_agent(
    server: &Server,
    id: &SpiffeId,
    leaf: &[u8],
) -> Result<(), AgentDenied> {
    let facts = spire_pki::certificate_facts(leaf).map_err(|e| AgentDenied {
        status: Status::internal(format!("unable to parse agent SVID: {e}")),
        reason: None,
    })?;
    if server.now_secs() > facts.not_after {
        return Err(denied(
            format!("agent {:?} SVID is expired", id.as_str()),
            Reason::AgentExpired,
        ));
    }
    match server
        .registry()
        .check_agent_svid(id, &facts.serial_decimal)
        .await
    {
        Ok(()) => Ok(()),
        Err(AgentCheck::NotAttested) => Err(denied(
            format!("agent {:?} is not attested", id.as_str()),
            Reason::AgentNotAttested,
        )),
        Err(AgentCheck::Banned) => Err(denied(
            format!("agent {:?} is banned", id.as_str()),
            Reason::AgentBanned,
        )),
        Err(AgentCheck::WrongSerial { expected }) => Err(denied(
            format!(
                "agent {:?} expected to have serial number {:?}; has {:?}",
                id.as_str(),
                expected,
                facts.serial_decimal
            ),
            Reason::AgentNotActive,
        )),
        Err(AgentCheck::Datastore { what, error }) => Err(AgentDenied {
            status: Status::internal(format!("{what}: {error}")),
            reason: None,
        }),
    }
}

/// Decides whether `caller` may call `method`; on success returns the caller, with `agent`
/// set when it was admitted as an agent.
pub async fn authorize(
    server: &Server,
    method: &str,
    mut caller: Caller,
) -> Result<Caller, Status> {
    let deny = |reason: Option<Reason>| {
        let msg = format!("authorization denied for method {method}");
        tracing::error!(error = %msg, "Failed to authenticate caller");
        match reason {
            Some(r) => permission_denied(&msg, r),
            None => Status::permission_denied(msg),
        }
    };
    let Some(p) = policy(method) else {
        // A registered method without a policy (SPIRE has one: Agent/PostStatus) is denied;
        // a method no service has is unimplemented, as gRPC answers before authorizing.
        if method == "/spire.api.server.agent.v1.Agent/PostStatus" {
            return Err(deny(None));
        }
        return Err(unknown_method(method));
    };
    if p.any || (p.local && caller.local) {
        return Ok(caller);
    }
    let Some(id) = caller.id.clone() else {
        return Err(deny(None));
    };
    if p.admin
        && (server.settings().admin_ids.contains(id.as_str())
            || server.registry().is_admin(id.as_str()))
    {
        return Ok(caller);
    }
    if p.downstream && server.registry().is_downstream(id.as_str()) {
        return Ok(caller);
    }
    let mut reason = None;
    if p.agent && id.is_member_of(server.trust_domain()) && id.path().starts_with("/spire/agent/") {
        let Some(leaf) = caller.chain.first() else {
            return Err(deny(None));
        };
        match authorize_agent(server, &id, leaf).await {
            Ok(()) => {
                caller.agent = true;
                return Ok(caller);
            }
            Err(d) => {
                if d.reason.is_none() {
                    return Err(d.status);
                }
                reason = d.reason;
            }
        }
    }
    Err(deny(reason))
}

/// The tower layer that runs [`authorize`] for every request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    server: Arc<Server>,
}

impl AuthLayer {
    /// A layer authorizing against `server`'s state.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            server: self.server.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    server: Arc<Server>,
}

fn caller_from(ext: &http::Extensions) -> Caller {
    let mut c = Caller {
        local: false,
        pid: None,
        addr: None,
        id: None,
        chain: vec![],
        agent: false,
    };
    if let Some(uds) = ext.get::<UdsConnectInfo>() {
        c.local = true;
        c.pid = uds.peer_cred.and_then(|p| p.pid());
    } else if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
        c.addr = tls.get_ref().remote_addr();
        if let Some(certs) = tls.peer_certs() {
            c.chain = certs.iter().map(|x| x.to_vec()).collect();
            c.id = spire_tls::peer_id(&certs);
        }
    }
    c
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let server = self.server.clone();
        Box::pin(async move {
            let method = req.uri().path().to_string();
            let caller = caller_from(req.extensions());
            match authorize(&server, &method, caller).await {
                Ok(c) => {
                    req.extensions_mut().insert(c);
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The caller attached by [`AuthLayer`].
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("caller information missing from request context"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table_matches_spire() {
        assert_eq!(
            policy("/spire.api.server.agent.v1.Agent/AttestAgent"),
            Some(ANY)
        );
        assert_eq!(
            policy("/spire.api.server.agent.v1.Agent/RenewAgent"),
            Some(AG)
        );
        assert_eq!(policy("/spire.api.server.agent.v1.Agent/PostStatus"), None);
        assert_eq!(
            policy("/spire.api.server.bundle.v1.Bundle/GetFederatedBundle"),
            Some(L_A_AG)
        );
        assert_eq!(
            policy("/spire.api.server.svid.v1.SVID/NewDownstreamX509CA"),
            Some(D)
        );
        assert_eq!(
            policy("/spire.api.server.logger.v1.Logger/SetLogLevel"),
            Some(L)
        );
        assert_eq!(policy("/spire.api.server.debug.v1.Debug/GetInfo"), Some(L));
        assert_eq!(
            policy("/spire.api.server.entry.v1.Entry/ListEntries"),
            Some(L_A)
        );
        assert_eq!(policy("/bogus"), None);
    }

    #[test]
    fn unknown_methods_are_unimplemented_with_grpc_go_wording() {
        let st = unknown_method("/spire.api.server.entry.v1.Entry/NoSuchRPC");
        assert_eq!(st.code(), Code::Unimplemented);
        assert_eq!(
            st.message(),
            "unknown method NoSuchRPC for service spire.api.server.entry.v1.Entry"
        );
        let st = unknown_method("/no.such.Service/Call");
        assert_eq!(st.code(), Code::Unimplemented);
        assert_eq!(st.message(), "unknown service no.such.Service");
    }

    #[test]
    fn denial_details_decode() {
        let st = permission_denied("authorization denied for method x", Reason::AgentBanned);
        #[derive(Clone, PartialEq, prost::Message)]
        struct RpcStatus {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
            #[prost(message, repeated, tag = "3")]
            details: Vec<prost_types::Any>,
        }
        let decoded = RpcStatus::decode(st.details()).unwrap();
        assert_eq!(decoded.code, Code::PermissionDenied as i32);
        let d = PermissionDeniedDetails::decode(decoded.details[0].value.as_slice()).unwrap();
        assert_eq!(d.reason, Reason::AgentBanned as i32);
    }
}
