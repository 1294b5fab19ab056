//! `spire.api.server.agent.v1.Agent`: node attestation, agent SVID renewal, and the admin
//! RPCs over attested agents and join tokens.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use spiffe_core::SpiffeId;
use spire_datastore::{
    AttestedNode, BySelectors, CountNodesRequest, JoinToken, ListNodesRequest, NodeMask,
    RegistrationEntry,
};
use spire_plugin::{Challenger, PluginError, PluginResult, Selector};
use spire_proto::spire::api::server::agent::v1 as pb;
use spire_proto::spire::api::types;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, proto_id};
use super::error::ApiError;
use crate::auth::{self, Caller, permission_denied};
use crate::ca::IssuedSvid;
use crate::ratelimit;
use crate::registry::AttestWrite;
use crate::state::Server;

/// The Agent service.
#[derive(Debug, Clone)]
pub struct AgentService {
    server: Arc<Server>,
    limits: Arc<ratelimit::RateLimits>,
}

impl AgentService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>, limits: Arc<ratelimit::RateLimits>) -> Self {
        Self { server, limits }
    }
}

/// Maps the API's selector match to the datastore's.
pub fn match_behavior(m: i32) -> spire_datastore::MatchBehavior {
    use spire_datastore::MatchBehavior as M;
    match m {
        1 => M::Subset,
        2 => M::Superset,
        3 => M::Any,
        _ => M::Exact,
    }
}

/// Parses `-expiresBefore` as SPIRE does, with Go's `time.Parse` and the layout
/// `"2006-01-02 15:04:05 -0700 -07"`: fixed-width fields, an optional fraction of a second,
/// and two offsets of which the last (hours only) wins. Like SPIRE, a value that does not
/// parse (or parses to Go's zero time) is no filter at all.
pub fn parse_expires_before(s: &str) -> Option<i64> {
    fn num(b: &[u8], at: usize, width: usize) -> Option<i32> {
        let digits = b.get(at..at + width)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
    fn lit(b: &[u8], at: usize, c: u8) -> Option<()> {
        (b.get(at) == Some(&c)).then_some(())
    }
    fn sign(b: &[u8], at: usize) -> Option<i32> {
        match b.get(at) {
            Some(b'+') => Some(1),
            Some(b'-') => Some(-1),
            _ => None,
        }
    }
    let b = s.as_bytes();
    let year = num(b, 0, 4)?;
    lit(b, 4, b'-')?;
    let month = num(b, 5, 2)?;
    lit(b, 7, b'-')?;
    let day = num(b, 8, 2)?;
    lit(b, 10, b' ')?;
    let hour = num(b, 11, 2)?;
    lit(b, 13, b':')?;
    let minute = num(b, 14, 2)?;
    lit(b, 16, b':')?;
    let second = num(b, 17, 2)?;
    let mut at = 19;
    if matches!(b.get(at), Some(b'.' | b',')) && b.get(at + 1).is_some_and(u8::is_ascii_digit) {
        at += 1;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
    }
    lit(b, at, b' ')?;
    // The first offset is checked, then overridden by the second.
    sign(b, at + 1)?;
    let (first_h, first_m) = (num(b, at + 2, 2)?, num(b, at + 4, 2)?);
    if first_h > 24 || first_m > 60 {
        return None;
    }
    lit(b, at + 6, b' ')?;
    let offset_sign = sign(b, at + 7)?;
    let offset_h = num(b, at + 8, 2)?;
    if offset_h > 24 || b.len() != at + 10 {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    let offset = time::UtcOffset::from_whole_seconds(offset_sign * offset_h * 3600).ok()?;
    let unix = date.with_time(clock).assume_offset(offset).unix_timestamp();
    // Go's zero time (0001-01-01 00:00:00 UTC) means "no filter" to SPIRE.
    (unix != -62_135_596_800).then_some(unix)
}

fn selector_filter(m: Option<&types::SelectorMatch>) -> Result<Option<BySelectors>, ApiError> {
    let Some(m) = m else { return Ok(None) };
    let selectors = convert::selectors_from_proto(&m.selectors)
        .map_err(|e| ApiError::invalid_argument("failed to parse selectors").with(e))?;
    Ok(Some(BySelectors {
        selectors,
        match_behavior: match_behavior(m.r#match),
    }))
}

fn csr_public_key(csr: &[u8]) -> Result<spiffe_core::PublicKey, ApiError> {
    spire_pki::parse_csr(csr)
        .map(|c| c.public_key)
        .map_err(|e| ApiError::invalid_argument("failed to parse CSR").with(e))
}

/// Signs an agent SVID for the key in `csr`.
async fn sign_agent_svid(
    server: &Server,
    id: &SpiffeId,
    csr: &[u8],
) -> Result<IssuedSvid, ApiError> {
    let key = csr_public_key(csr)?;
    server
        .ca()
        .sign_agent_x509_svid(id, &key, server.now())
        .await
        .map_err(|e| ApiError::internal("failed to sign X509 SVID").with(e))
}

fn x509_svid(id: &SpiffeId, issued: IssuedSvid) -> types::X509svid {
    types::X509svid {
        id: Some(proto_id(id)),
        expires_at: issued.not_after,
        cert_chain: issued.chain,
        hint: String::new(),
    }
}

/// Relays a NodeAttestor's challenges over the AttestAgent stream.
struct StreamChallenger<'a> {
    tx: &'a mpsc::Sender<Result<pb::AttestAgentResponse, Status>>,
    rx: &'a mut Streaming<pb::AttestAgentRequest>,
}

#[async_trait]
impl Challenger for StreamChallenger<'_> {
    async fn challenge(&mut self, challenge: Vec<u8>) -> PluginResult<Vec<u8>> {
        let resp = pb::AttestAgentResponse {
            step: Some(pb::attest_agent_response::Step::Challenge(challenge)),
        };
        self.tx.send(Ok(resp)).await.map_err(|e| {
            PluginError::internal(format!("failed to send challenge to agent: {e}"))
        })?;
        let next = self.rx.message().await.map_err(|e| {
            PluginError::internal(format!("failed to receive challenge from agent: {e}"))
        })?;
        match next.and_then(|r| r.step) {
            Some(pb::attest_agent_request::Step::ChallengeResponse(b)) => Ok(b),
            _ => Ok(Vec::new()),
        }
    }
}

/// The agent ID a join token attests as.
pub fn join_token_agent_id(server: &Server, token: &str) -> Result<SpiffeId, ApiError> {
    server
        .trust_domain()
        .id_with_path(&format!("/spire/agent/join_token/{token}"))
        .map_err(|e| ApiError::internal("failed to create join token ID").with(e))
}

async fn attest_join_token(
    server: &Server,
    token: &str,
) -> Result<(SpiffeId, Vec<Selector>, bool), ApiError> {
    let found = server
        .registry()
        .ds()
        .fetch_join_token(token)
        .await
        .map_err(|e| ApiError::internal("failed to fetch join token").with(e))?;
    let Some(jt) = found else {
        return Err(ApiError::invalid_argument(
            "failed to attest: join token does not exist or has already been used",
        ));
    };
    server
        .registry()
        .ds()
        .delete_join_token(token)
        .await
        .map_err(|e| ApiError::internal("failed to delete join token").with(e))?;
    if jt.expiry < server.now_secs() {
        return Err(ApiError::invalid_argument("join token expired"));
    }
    Ok((join_token_agent_id(server, token)?, vec![], false))
}

async fn attest(
    server: Arc<Server>,
    limits: Arc<ratelimit::RateLimits>,
    caller: Caller,
    rx: &mut Streaming<pb::AttestAgentRequest>,
    tx: &mpsc::Sender<Result<pb::AttestAgentResponse, Status>>,
) -> Result<pb::AttestAgentResponse, Status> {
    let ip = caller.addr.map(|a| a.ip().to_string());
    ratelimit::limit(
        &limits,
        &limits.attestation,
        ip.as_deref(),
        1,
        &["agent", "v1", "agent", "attest_agent"],
    )
    .await
    .map_err(|e| {
        ApiError::resource_exhausted("rejecting request due to attest agent rate limiting").with(e)
    })?;
    let first = rx
        .message()
        .await
        .map_err(|e| {
            ApiError::invalid_argument("failed to receive request from stream").with(e.message())
        })?
        .ok_or_else(|| {
            ApiError::invalid_argument("failed to receive request from stream").with("EOF")
        })?;
    let params = match first.step {
        Some(pb::attest_agent_request::Step::Params(p)) => Some(p),
        _ => None,
    };
    let malformed = |m: &str| ApiError::invalid_argument("malformed param").with(m);
    let params = params.ok_or_else(|| malformed("missing params"))?;
    let data = params
        .data
        .as_ref()
        .ok_or_else(|| malformed("missing attestation data"))?;
    let svid_params = params
        .params
        .as_ref()
        .ok_or_else(|| malformed("missing X509-SVID parameters"))?;
    if svid_params.csr.is_empty() {
        return Err(malformed("missing CSR").into());
    }
    if data.r#type.is_empty() {
        return Err(malformed("missing attestation data type").into());
    }
    if data.payload.is_empty() {
        return Err(malformed("missing attestation data payload").into());
    }
    let attestor_type = data.r#type.clone();

    let (agent_id, selectors, can_reattest) = if attestor_type == "join_token" {
        let token = String::from_utf8_lossy(&data.payload).to_string();
        attest_join_token(&server, &token).await?
    } else {
        let Some(attestor) = server.node_attestors().get(&attestor_type).cloned() else {
            return Err(ApiError::failed_precondition("error getting node attestor")
                .with(format!(
                    "could not find node attestor type {attestor_type:?}"
                ))
                .into());
        };
        let mut challenger = StreamChallenger { tx, rx };
        let attested = attestor
            .attest(data.payload.clone(), &mut challenger)
            .await
            .map_err(|e| ApiError::from(e.facade_prefixed("NodeAttestor", &attestor_type)))?;
        let mut selectors = Vec::new();
        for v in &attested.selector_values {
            if let Ok(s) = Selector::new(&attestor_type, v) {
                selectors.push(s);
            }
        }
        (attested.agent_id, selectors, attested.can_reattest)
    };

    if agent_id.path() == "/spire/server" {
        return Err(ApiError::internal("agent ID cannot collide with the server ID").into());
    }
    if !agent_id.is_member_of(server.trust_domain())
        || !agent_id
            .path()
            .starts_with(&format!("/spire/agent/{attestor_type}/"))
    {
        tracing::warn!(
            agent_id = %agent_id,
            "The node attestor produced an invalid agent ID; future releases will enforce that agent IDs are within the reserved agent namesepace for the node attestor"
        );
    }
    let existing = server
        .registry()
        .ds()
        .fetch_attested_node(&agent_id)
        .await
        .map_err(|e| ApiError::internal("failed to fetch agent").with(e))?;
    if existing.as_ref().is_some_and(AttestedNode::is_banned) {
        return Err(ApiError::permission_denied("failed to attest: agent is banned").into());
    }
    let issued = sign_agent_svid(&server, &agent_id, &svid_params.csr).await?;

    let mut selectors = selectors;
    selectors.sort();
    selectors.dedup();
    let node = AttestedNode {
        spiffe_id: agent_id.clone(),
        attestation_data_type: attestor_type.clone(),
        cert_serial_number: issued.serial.to_string(),
        cert_not_after: issued.not_after,
        new_cert_serial_number: String::new(),
        new_cert_not_after: 0,
        selectors: vec![],
        can_reattest,
    };
    server
        .registry()
        .attest_agent(node, selectors, existing)
        .await
        .map_err(|w| match w {
            AttestWrite::Selectors(e) => ApiError::internal("failed to update selectors").with(e),
            AttestWrite::Create(e) => ApiError::internal("failed to create attested agent").with(e),
            AttestWrite::Update(e) => ApiError::internal("failed to update attested agent").with(e),
        })?;
    tracing::info!(
        address = %caller.addr.map(|a| a.to_string()).unwrap_or_default(),
        agent_id = %agent_id,
        node_attestor_type = %attestor_type,
        "Agent attestation request completed"
    );
    Ok(pb::AttestAgentResponse {
        step: Some(pb::attest_agent_response::Step::Result(
            pb::attest_agent_response::Result {
                svid: Some(x509_svid(&agent_id, issued)),
                reattestable: can_reattest,
            },
        )),
    })
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[async_trait]
impl pb::agent_server::Agent for AgentService {
    async fn count_agents(
        &self,
        request: Request<pb::CountAgentsRequest>,
    ) -> Result<Response<pb::CountAgentsResponse>, Status> {
        let req = request.into_inner();
        let mut count = CountNodesRequest::default();
        if let Some(f) = &req.filter {
            count.by_banned = f.by_banned.as_ref().map(|b| b.value);
            count.by_can_reattest = f.by_can_reattest.as_ref().map(|b| b.value);
            if !f.by_attestation_type.is_empty() {
                count.by_attestation_type = Some(f.by_attestation_type.clone());
            }
            if !f.by_expires_before.is_empty() {
                count.by_expires_before = parse_expires_before(&f.by_expires_before);
            }
            count.by_selector_match = selector_filter(f.by_selector_match.as_ref())?;
        }
        let n = self
            .server
            .registry()
            .ds()
            .count_attested_nodes(count)
            .await
            .map_err(|e| ApiError::internal("failed to count agents").with(e))?;
        Ok(Response::new(pb::CountAgentsResponse { count: n as i32 }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let req = request.into_inner();
        let mut list = ListNodesRequest {
            fetch_selectors: req.output_mask.as_ref().is_none_or(|m| m.selectors),
            ..Default::default()
        };
        if let Some(f) = &req.filter {
            list.by_banned = f.by_banned.as_ref().map(|b| b.value);
            list.by_can_reattest = f.by_can_reattest.as_ref().map(|b| b.value);
            if !f.by_attestation_type.is_empty() {
                list.by_attestation_type = Some(f.by_attestation_type.clone());
            }
            if !f.by_expires_before.is_empty() {
                list.by_expires_before = parse_expires_before(&f.by_expires_before);
            }
            list.by_selector_match = selector_filter(f.by_selector_match.as_ref())?;
        }
        list.pagination = convert::pagination(req.page_size, &req.page_token);
        let resp = self
            .server
            .registry()
            .ds()
            .list_attested_nodes(list)
            .await
            .map_err(|e| ApiError::internal("failed to list agents").with(e))?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: resp
                .nodes
                .iter()
                .map(|n| convert::agent_to_proto(n, req.output_mask.as_ref()))
                .collect(),
            next_page_token: resp.pagination.map(|p| p.token).unwrap_or_default(),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<types::Agent>, Status> {
        let req = request.into_inner();
        let id = agent_id_from_proto(&self.server, req.id.as_ref())?;
        let node = self
            .server
            .registry()
            .ds()
            .fetch_attested_node(&id)
            .await
            .map_err(|e| ApiError::internal("failed to fetch agent").with(e))?
            .ok_or_else(|| ApiError::not_found("agent not found"))?;
        let mut node = node;
        node.selectors = self
            .server
            .registry()
            .ds()
            .get_node_selectors(&id, spire_datastore::DataConsistency::RequireCurrent)
            .await
            .map_err(|e| {
                ApiError::internal("failed to get selectors from agent")
                    .with(format!("failed to get node selectors: {e}"))
            })?;
        Ok(Response::new(convert::agent_to_proto(
            &node,
            req.output_mask.as_ref(),
        )))
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let req = request.into_inner();
        let id = agent_id_from_proto(&self.server, req.id.as_ref())?;
        match self.server.registry().delete_agent(&id).await {
            Ok(_) => {
                tracing::info!(spiffe_id = %id, "Agent deleted");
                Ok(Response::new(pbjson_types::Empty {}))
            }
            Err(spire_datastore::DataStoreError::NotFound(_)) => {
                Err(ApiError::not_found("agent not found").into())
            }
            Err(e) => Err(ApiError::internal("failed to remove agent").with(e).into()),
        }
    }

    async fn ban_agent(
        &self,
        request: Request<pb::BanAgentRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let req = request.into_inner();
        let id = agent_id_from_proto(&self.server, req.id.as_ref())?;
        let banned = AttestedNode {
            spiffe_id: id.clone(),
            attestation_data_type: String::new(),
            cert_serial_number: String::new(),
            cert_not_after: 0,
            new_cert_serial_number: String::new(),
            new_cert_not_after: 0,
            selectors: vec![],
            can_reattest: false,
        };
        let mask = NodeMask {
            cert_serial_number: true,
            new_cert_serial_number: true,
            ..Default::default()
        };
        match self.server.registry().update_agent(banned, mask).await {
            Ok(_) => {
                tracing::info!(spiffe_id = %id, "Agent banned");
                Ok(Response::new(pbjson_types::Empty {}))
            }
            Err(spire_datastore::DataStoreError::NotFound(_)) => {
                Err(ApiError::not_found("agent not found").into())
            }
            Err(e) => Err(ApiError::internal("failed to ban agent").with(e).into()),
        }
    }

    type AttestAgentStream = ResponseStream<pb::AttestAgentResponse>;

    async fn attest_agent(
        &self,
        request: Request<Streaming<pb::AttestAgentRequest>>,
    ) -> Result<Response<Self::AttestAgentStream>, Status> {
        let caller = auth::caller(&request)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let server = self.server.clone();
        let limits = self.limits.clone();
        tokio::spawn(async move {
            let result = attest(server, limits, caller, &mut inbound, &tx).await;
            let _ = tx.send(result).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew_agent(
        &self,
        request: Request<pb::RenewAgentRequest>,
    ) -> Result<Response<pb::RenewAgentResponse>, Status> {
        let caller = auth::caller(&request)?;
        let req = request.into_inner();
        let ip = caller.addr.map(|a| a.ip().to_string());
        ratelimit::limit(
            &self.limits,
            &self.limits.x509_signing,
            ip.as_deref(),
            1,
            &["agent", "v1", "agent", "renew_agent"],
        )
        .await
        .map_err(|e| {
            ApiError::resource_exhausted("rejecting request due to renew agent rate limiting")
                .with(e)
        })?;
        let id = caller
            .id
            .clone()
            .ok_or_else(|| ApiError::internal("caller ID missing from request context"))?;
        let node = self
            .server
            .registry()
            .ds()
            .fetch_attested_node(&id)
            .await
            .map_err(|e| ApiError::internal("failed to fetch agent").with(e))?
            .ok_or_else(|| ApiError::not_found("agent not found"))?;
        if node.can_reattest {
            return Err(permission_denied(
                "agent must reattest instead of renew",
                types::permission_denied_details::Reason::AgentMustReattest,
            ));
        }
        tracing::info!(caller_id = %id, "Renewing agent SVID");
        let params = req
            .params
            .ok_or_else(|| ApiError::invalid_argument("params cannot be nil"))?;
        if params.csr.is_empty() {
            return Err(ApiError::invalid_argument("missing CSR").into());
        }
        let issued = sign_agent_svid(&self.server, &id, &params.csr).await?;
        let mut update = node;
        update.new_cert_serial_number = issued.serial.to_string();
        update.new_cert_not_after = issued.not_after;
        let mask = NodeMask {
            new_cert_serial_number: true,
            new_cert_not_after: true,
            ..Default::default()
        };
        match self.server.registry().update_agent(update, mask).await {
            Ok(_) => {}
            Err(spire_datastore::DataStoreError::NotFound(_)) => {
                return Err(ApiError::not_found("agent not found").into());
            }
            Err(e) => return Err(ApiError::internal("failed to update agent").with(e).into()),
        }
        Ok(Response::new(pb::RenewAgentResponse {
            svid: Some(x509_svid(&id, issued)),
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<types::JoinToken>, Status> {
        let req = request.into_inner();
        if req.ttl < 1 {
            return Err(ApiError::invalid_argument("ttl is required, you must provide one").into());
        }
        let alias = match &req.agent_id {
            Some(p) => {
                let id = convert::id_from_proto(Some(p))
                    .and_then(|id| {
                        convert::verify_workload(self.server.trust_domain(), &id).map(|_| id)
                    })
                    .map_err(|e| ApiError::invalid_argument("invalid agent ID").with(e))?;
                Some(id)
            }
            None => None,
        };
        let token = if req.token.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.token.clone()
        };
        let expiry = self.server.now_secs() + i64::from(req.ttl);
        self.server
            .registry()
            .ds()
            .create_join_token(JoinToken {
                token: token.clone(),
                expiry,
            })
            .await
            .map_err(|e| ApiError::internal("failed to create token").with(e))?;
        if let Some(alias) = alias {
            let parent = join_token_agent_id(&self.server, &token)?;
            let selector = Selector::new("spiffe_id", parent.as_str()).map_err(|e| {
                ApiError::internal("failed to create join token registration entry").with(e)
            })?;
            let entry = RegistrationEntry::new(alias, parent, vec![selector]);
            self.server
                .registry()
                .create_entry(entry)
                .await
                .map_err(|e| {
                    ApiError::internal("failed to create join token registration entry").with(e)
                })?;
        }
        Ok(Response::new(types::JoinToken {
            value: token,
            expires_at: expiry,
        }))
    }

    async fn post_status(
        &self,
        _request: Request<pb::PostStatusRequest>,
    ) -> Result<Response<pb::PostStatusResponse>, Status> {
        Err(ApiError::unimplemented("unimplemented").unlogged().into())
    }
}

fn agent_id_from_proto(server: &Server, p: Option<&types::Spiffeid>) -> Result<SpiffeId, ApiError> {
    convert::id_from_proto(p)
        .and_then(|id| convert::verify_agent(server.trust_domain(), &id).map(|_| id))
        .map_err(|e| ApiError::invalid_argument("invalid agent ID").with(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_before_uses_gos_layout() {
        assert_eq!(
            parse_expires_before("2026-01-01 00:00:00 +0000 +00"),
            Some(1_767_225_600)
        );
        // The last offset (hours only) wins, as in Go.
        assert_eq!(
            parse_expires_before("2026-01-01 00:00:00 -0700 +05"),
            Some(1_767_207_600)
        );
        assert_eq!(
            parse_expires_before("2026-01-01 00:00:00.5 +0000 +00"),
            Some(1_767_225_600)
        );
        for bad in [
            "tomorrow",
            "2026-01-01 00:00:00 +0000 UTC",
            "2026-01-01 01:00:00 +0100 CET",
            "2026-1-01 00:00:00 +0000 +00",
            "2026-01-01 24:00:00 +0000 +00",
            "2026-02-30 00:00:00 +0000 +00",
            "2026-01-01 00:00:00 +0000 +00 extra",
            "2026-01-01 00:00:00 +00:00 +00",
            "0001-01-01 00:00:00 +0000 +00",
        ] {
            assert_eq!(parse_expires_before(bad), None, "{bad}");
        }
    }
}
