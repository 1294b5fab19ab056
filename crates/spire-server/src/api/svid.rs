//! `spire.api.server.svid.v1.SVID`: SVIDs for agents' entries, minting for admins, and
//! intermediate CAs for downstream servers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use spiffe_core::SpiffeId;
use spire_pki::PkiError;
use spire_proto::spire::api::server::svid::v1 as pb;
use spire_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::convert::{self, proto_id};
use super::error::{ApiError, ok};
use crate::auth;
use crate::index::EntryRef;
use crate::ratelimit::{self, RateLimits};
use crate::state::Server;

/// The SVID service.
#[derive(Debug, Clone)]
pub struct SvidService {
    server: Arc<Server>,
    limits: Arc<RateLimits>,
}

impl SvidService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>, limits: Arc<RateLimits>) -> Self {
        Self { server, limits }
    }
}

fn parse_csr(csr: &[u8], signature_msg: &str) -> Result<spire_pki::Csr, ApiError> {
    spire_pki::parse_csr(csr).map_err(|e| match e {
        PkiError::CsrSignature => ApiError::invalid_argument(signature_msg).with(e),
        other => ApiError::invalid_argument("malformed CSR").with(other),
    })
}

/// SPIRE's `CheckForWildcardOverlap`: a name whose first label, replaced by `*`, is also in
/// the list (`a.example.org` next to `*.example.org`) is refused. SPIRE walks a Go map, so
/// with several overlaps the one it names varies; we name the first in CSR order.
fn check_wildcard_overlap(names: &[String]) -> Result<(), String> {
    let set: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    for name in names.iter().filter(|n| !n.starts_with('*')) {
        let wildcard = match name.split_once('.') {
            Some((_, rest)) => format!("*.{rest}"),
            None => "*".to_string(),
        };
        if set.contains(wildcard.as_str()) {
            return Err(format!(
                "name {} overlaps with an existing wildcard name in the list: wildcard overlap",
                spire_gocompat::strconv::quote(name)
            ));
        }
    }
    Ok(())
}

fn ttl(secs: i32) -> Duration {
    Duration::from_secs(secs.max(0) as u64)
}

/// An authorized entry with its SPIFFE ID parsed: what signing needs, without rebuilding
/// the rest of the entry.
struct Signable {
    entry: EntryRef,
    spiffe_id: SpiffeId,
}

impl SvidService {
    fn authorized_entries(
        &self,
        caller: &auth::Caller,
        ids: &[&str],
    ) -> Result<HashMap<String, Signable>, ApiError> {
        let caller_id = caller
            .id
            .as_ref()
            .ok_or_else(|| ApiError::internal("caller ID missing from request context"))?;
        let authorized = self
            .server
            .registry()
            .authorized_subset(caller_id.as_str(), ids);
        authorized
            .into_iter()
            .map(|entry| {
                let spiffe_id = SpiffeId::parse(entry.spiffe_id())
                    .map_err(|err| ApiError::internal("failed to read entry").with(err))?;
                Ok((entry.entry_id().to_string(), Signable { entry, spiffe_id }))
            })
            .collect()
    }

    async fn new_x509_svid(
        &self,
        p: &pb::NewX509svidParams,
        entries: &HashMap<String, Signable>,
        now: SystemTime,
    ) -> pb::batch_new_x509svid_response::Result {
        let fail = |e: ApiError| pb::batch_new_x509svid_response::Result {
            status: Some(e.item_status()),
            svid: None,
        };
        if p.entry_id.is_empty() {
            return fail(ApiError::invalid_argument("missing entry ID"));
        }
        if p.csr.is_empty() {
            return fail(ApiError::invalid_argument("missing CSR"));
        }
        let Some(entry) = entries.get(&p.entry_id) else {
            return fail(ApiError::not_found("entry not found or not authorized"));
        };
        let csr = match parse_csr(&p.csr, "invalid CSR signature") {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        match self
            .server
            .ca()
            .sign_workload_x509_svid(
                &entry.spiffe_id,
                &csr.public_key,
                entry.entry.dns_names(),
                ttl(entry.entry.x509_svid_ttl()),
                now,
            )
            .await
        {
            Ok(issued) => {
                tracing::debug!(
                    registration_id = %entry.entry.entry_id(),
                    revision_number = entry.entry.revision_number(),
                    spiffe_id = %entry.spiffe_id,
                    "Signed X509 SVID"
                );
                pb::batch_new_x509svid_response::Result {
                    status: Some(ok()),
                    svid: Some(types::X509svid {
                        id: Some(proto_id(&entry.spiffe_id)),
                        cert_chain: issued.chain,
                        expires_at: issued.not_after,
                        hint: String::new(),
                    }),
                }
            }
            Err(e) => fail(ApiError::internal("failed to sign X509-SVID").with(e)),
        }
    }

    async fn mint_jwt(
        &self,
        id: Option<&types::Spiffeid>,
        audience: &[String],
        ttl_secs: i32,
    ) -> Result<types::Jwtsvid, ApiError> {
        let id: SpiffeId = convert::id_from_proto(id)
            .and_then(|id| convert::verify_workload(self.server.trust_domain(), &id).map(|_| id))
            .map_err(|e| ApiError::invalid_argument("invalid SPIFFE ID").with(e))?;
        if audience.is_empty() {
            return Err(ApiError::invalid_argument(
                "at least one audience is required",
            ));
        }
        let now = self.server.now();
        let (token, expires_at) = self
            .server
            .ca()
            .sign_workload_jwt_svid(&id, audience, ttl(ttl_secs), now)
            .await
            .map_err(|e| ApiError::internal("failed to sign JWT-SVID").with(e))?;
        tracing::debug!(spiffe_id = %id, "Server CA successfully signed JWT SVID");
        // The token's `iat` and `issued_at` are the same reading of the clock.
        let issued_at = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(types::Jwtsvid {
            token,
            id: Some(proto_id(&id)),
            expires_at,
            issued_at,
            hint: String::new(),
        })
    }
}

#[async_trait]
impl pb::svid_server::Svid for SvidService {
    async fn mint_x509svid(
        &self,
        request: Request<pb::MintX509svidRequest>,
    ) -> Result<Response<pb::MintX509svidResponse>, Status> {
        let req = request.into_inner();
        if req.csr.is_empty() {
            return Err(ApiError::invalid_argument("missing CSR").into());
        }
        let csr = parse_csr(&req.csr, "failed to verify CSR signature")?;
        let uri = match csr.uris.as_slice() {
            [] => return Err(ApiError::invalid_argument("CSR URI SAN is required").into()),
            [one] => one,
            _ => return Err(ApiError::invalid_argument("only one URI SAN is expected").into()),
        };
        let id = convert::parse_id(uri)
            .and_then(|id| convert::verify_workload(self.server.trust_domain(), &id).map(|_| id))
            .map_err(|e| ApiError::invalid_argument("CSR URI SAN is invalid").with(e))?;
        for d in &csr.dns_names {
            convert::validate_dns_name(d)
                .map_err(|e| ApiError::invalid_argument("CSR DNS name is invalid").with(e))?;
        }
        check_wildcard_overlap(&csr.dns_names).map_err(|e| {
            ApiError::invalid_argument(
                "CSR DNS name contains a wildcard that covers another non-wildcard name",
            )
            .with(e)
        })?;
        let issued = self
            .server
            .ca()
            .sign_workload_x509_svid(
                &id,
                &csr.public_key,
                &csr.dns_names,
                ttl(req.ttl),
                self.server.now(),
            )
            .await
            .map_err(|e| ApiError::internal("failed to sign X509-SVID").with(e))?;
        Ok(Response::new(pb::MintX509svidResponse {
            svid: Some(types::X509svid {
                id: Some(proto_id(&id)),
                cert_chain: issued.chain,
                expires_at: issued.not_after,
                hint: String::new(),
            }),
        }))
    }

    async fn mint_jwtsvid(
        &self,
        request: Request<pb::MintJwtsvidRequest>,
    ) -> Result<Response<pb::MintJwtsvidResponse>, Status> {
        let req = request.into_inner();
        let svid = self
            .mint_jwt(req.id.as_ref(), &req.audience, req.ttl)
            .await?;
        Ok(Response::new(pb::MintJwtsvidResponse { svid: Some(svid) }))
    }

    async fn batch_new_x509svid(
        &self,
        request: Request<pb::BatchNewX509svidRequest>,
    ) -> Result<Response<pb::BatchNewX509svidResponse>, Status> {
        let caller = auth::caller(&request)?;
        let req = request.into_inner();
        if req.params.is_empty() {
            return Err(ApiError::invalid_argument("missing parameters").into());
        }
        let ip = caller.addr.map(|a| a.ip().to_string());
        ratelimit::limit(
            &self.limits,
            &self.limits.x509_signing,
            ip.as_deref(),
            req.params.len() as u32,
            &["svid", "v1", "svid", "batch_new_x509svid"],
        )
        .await
        .map_err(|e| {
            ApiError::resource_exhausted(
                "rejecting request due to certificate signing rate limiting",
            )
            .with(e)
        })?;
        let ids: Vec<&str> = req.params.iter().map(|p| p.entry_id.as_str()).collect();
        let entries = self.authorized_entries(&caller, &ids)?;
        let now = self.server.now();
        let mut results = Vec::with_capacity(req.params.len());
        for p in &req.params {
            results.push(self.new_x509_svid(p, &entries, now).await);
        }
        Ok(Response::new(pb::BatchNewX509svidResponse { results }))
    }

    async fn new_jwtsvid(
        &self,
        request: Request<pb::NewJwtsvidRequest>,
    ) -> Result<Response<pb::NewJwtsvidResponse>, Status> {
        let caller = auth::caller(&request)?;
        let req = request.into_inner();
        let ip = caller.addr.map(|a| a.ip().to_string());
        ratelimit::limit(
            &self.limits,
            &self.limits.jwt_signing,
            ip.as_deref(),
            1,
            &["svid", "v1", "svid", "new_jwtsvid"],
        )
        .await
        .map_err(|e| {
            ApiError::resource_exhausted(
                "rejecting request due to JWT signing request rate limiting",
            )
            .with(e)
        })?;
        let entries = self.authorized_entries(&caller, &[req.entry_id.as_str()])?;
        let entry = entries
            .get(&req.entry_id)
            .ok_or_else(|| ApiError::not_found("entry not found or not authorized"))?;
        let svid = self
            .mint_jwt(
                Some(&proto_id(&entry.spiffe_id)),
                &req.audience,
                entry.entry.jwt_svid_ttl(),
            )
            .await?;
        Ok(Response::new(pb::NewJwtsvidResponse { svid: Some(svid) }))
    }

    async fn new_downstream_x509ca(
        &self,
        request: Request<pb::NewDownstreamX509caRequest>,
    ) -> Result<Response<pb::NewDownstreamX509caResponse>, Status> {
        let caller = auth::caller(&request)?;
        let req = request.into_inner();
        let ip = caller.addr.map(|a| a.ip().to_string());
        ratelimit::limit(
            &self.limits,
            &self.limits.x509_signing,
            ip.as_deref(),
            1,
            &["svid", "v1", "svid", "new_downstream_x509ca"],
        )
        .await
        .map_err(|e| {
            ApiError::resource_exhausted(
                "rejecting request due to downstream CA signing rate limit",
            )
            .with(e)
        })?;
        let is_downstream = caller
            .id
            .as_ref()
            .is_some_and(|id| self.server.registry().is_downstream(id.as_str()));
        if !is_downstream {
            return Err(ApiError::internal("caller is not a downstream workload").into());
        }
        let csr = parse_csr(&req.csr, "invalid CSR signature")?;
        let chain = self
            .server
            .ca()
            .sign_downstream_x509_ca(&csr.public_key, ttl(req.preferred_ttl), self.server.now())
            .await
            .map_err(|e| ApiError::internal("failed to sign downstream X.509 CA").with(e))?;
        let bundle = self
            .server
            .own_bundle()
            .ok_or_else(|| ApiError::not_found("bundle not found"))?;
        Ok(Response::new(pb::NewDownstreamX509caResponse {
            ca_cert_chain: chain,
            x509_authorities: bundle.root_cas.into_iter().map(|r| r.der).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_overlap() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_wildcard_overlap(&n(&["*.a.org", "b.a.org"])).is_err());
        assert!(check_wildcard_overlap(&n(&["*.a.org", "c.b.a.org", "a.org"])).is_ok());
        assert!(check_wildcard_overlap(&n(&["*", "a"])).is_err());
    }
}
