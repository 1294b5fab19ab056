//! `spire.api.server.localauthority.v1.LocalAuthority`: show, prepare, activate, taint and
//! revoke the local X.509 and JWT authorities, with SPIRE's preconditions and messages.

use std::sync::Arc;

use async_trait::async_trait;
use spire_proto::journal::Status as Js;
use spire_proto::spire::api::server::localauthority::v1 as pb;
use tonic::{Request, Response, Status};

use super::error::ApiError;
use crate::ca::manager::{CaManager, SlotState};
use crate::state::Server;

/// The LocalAuthority service.
#[derive(Debug, Clone)]
pub struct LocalAuthorityService {
    server: Arc<Server>,
}

impl LocalAuthorityService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }

    fn manager(&self) -> &CaManager {
        self.server.ca_manager()
    }

    async fn changed(&self) {
        if let Err(e) = self.server.refresh_bundles().await {
            tracing::warn!(error = %e, "Failed to reload bundles after a change");
        }
    }

    async fn slots(&self, kind: Kind) -> (SlotState, SlotState) {
        match kind {
            Kind::Jwt => self.manager().jwt_slots().await,
            Kind::X509 => self.manager().x509_slots().await,
        }
    }

    /// `Get*AuthorityState`: `(active, prepared, old)`.
    async fn states(&self, kind: Kind) -> Result<States, Status> {
        let (current, next) = self.slots(kind).await;
        Ok(states(&current, &next)?)
    }

    /// `Prepare*Authority`: the prepared slot.
    async fn prepare(&self, kind: Kind) -> Result<SlotState, ApiError> {
        let (current, _) = self.slots(kind).await;
        if current.status != Js::Active {
            return Err(ApiError::unavailable("server is initializing"));
        }
        let now = self.server.now();
        let prepared = match kind {
            Kind::Jwt => self.manager().prepare_jwt_now(now).await,
            Kind::X509 => self.manager().prepare_x509_now(now).await,
        }
        .map_err(|e| {
            ApiError::internal(format!("failed to prepare {} authority", kind.label())).with(e)
        })?;
        self.changed().await;
        Ok(prepared)
    }

    /// `Activate*Authority`: the new current slot.
    async fn activate(&self, kind: Kind, id: &str) -> Result<SlotState, ApiError> {
        let (_, next) = self.slots(kind).await;
        if id.is_empty() {
            return Err(ApiError::invalid_argument("no authority ID provided"));
        }
        if id != next.authority_id {
            return Err(ApiError::invalid_argument("unexpected authority ID"));
        }
        if next.status != Js::Prepared {
            return Err(
                ApiError::internal("only Prepared authorities can be activated")
                    .with(unsupported(next.status)),
            );
        }
        Ok(match kind {
            Kind::Jwt => self.manager().rotate_jwt_now().await,
            Kind::X509 => self.manager().rotate_x509_now(self.server.now()).await,
        })
    }

    /// `Taint*Authority`: the tainted (old) slot.
    async fn taint(&self, kind: Kind, id: &str) -> Result<SlotState, ApiError> {
        let (current, next) = self.slots(kind).await;
        if id.is_empty() {
            return Err(ApiError::invalid_argument("no authority ID provided"));
        }
        if id == current.authority_id {
            return Err(ApiError::invalid_argument(
                "unable to taint current local authority",
            ));
        }
        if id != next.authority_id {
            return Err(ApiError::invalid_argument("unexpected authority ID"));
        }
        if next.status != Js::Old {
            return Err(
                ApiError::invalid_argument("only Old local authorities can be tainted")
                    .with(unsupported(next.status)),
            );
        }
        let ds = self.server.registry().ds();
        let td = self.server.trust_domain();
        match kind {
            Kind::Jwt => ds.taint_jwt_key(td, id).await.map(drop),
            Kind::X509 => ds.taint_x509_ca(td, id).await,
        }
        .map_err(|e| {
            ApiError::internal(format!("failed to taint {} authority", kind.label())).with(e)
        })?;
        self.changed().await;
        tracing::info!(local_authority_id = %id, "{} authority tainted successfully", kind.label());
        Ok(next)
    }

    /// `Revoke*Authority`: which IDs may be revoked differs by kind (SPIRE revokes any
    /// non-current, non-prepared JWT key of the bundle, but only the Old X.509 authority).
    async fn revoke(&self, kind: Kind, id: &str) -> Result<(), ApiError> {
        let (current, next) = self.slots(kind).await;
        let invalid = |m: &str| ApiError::invalid_argument("invalid authority ID").with(m);
        if id.is_empty() {
            return Err(invalid("no authority ID provided"));
        }
        let ds = self.server.registry().ds();
        let td = self.server.trust_domain();
        match kind {
            Kind::Jwt if id == next.authority_id => {
                if next.status == Js::Prepared {
                    return Err(invalid("unable to use a prepared key"));
                }
            }
            _ if id == current.authority_id => {
                return Err(invalid("unable to use current authority"));
            }
            Kind::Jwt => {
                let known = ds
                    .fetch_bundle(td)
                    .await
                    .map_err(|e| ApiError::invalid_argument("invalid authority ID").with(e))?
                    .is_some_and(|b| b.jwt_signing_keys.iter().any(|k| k.kid == id));
                if !known {
                    return Err(invalid("no JWT authority found with provided authority ID"));
                }
            }
            Kind::X509 if id != next.authority_id || next.status != Js::Old => {
                return Err(invalid("only Old local authority can be revoked"));
            }
            Kind::X509 => {}
        }
        match kind {
            Kind::Jwt => ds.revoke_jwt_key(td, id).await.map(drop),
            Kind::X509 => ds.revoke_x509_ca(td, id).await,
        }
        .map_err(|e| {
            ApiError::internal(format!("failed to revoke {} authority", kind.label())).with(e)
        })?;
        self.changed().await;
        tracing::info!(local_authority_id = %id, "{} authority revoked successfully", kind.label());
        Ok(())
    }
}

/// The two kinds of local authority; the RPCs differ only in which slots they act on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Jwt,
    X509,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Jwt => "JWT",
            Kind::X509 => "X.509",
        }
    }
}

type States = (
    pb::AuthorityState,
    Option<pb::AuthorityState>,
    Option<pb::AuthorityState>,
);

/// An authority named only by its ID (taint and revoke answers).
fn id_only(id: String) -> Option<pb::AuthorityState> {
    Some(pb::AuthorityState {
        authority_id: id,
        ..Default::default()
    })
}

/// A slot without its upstream authority (SPIRE's JWT answers leave it out).
fn without_upstream(s: &SlotState) -> pb::AuthorityState {
    pb::AuthorityState {
        upstream_authority_subject_key_id: String::new(),
        ..state(s)
    }
}

fn state(s: &SlotState) -> pb::AuthorityState {
    pb::AuthorityState {
        authority_id: s.authority_id.clone(),
        expires_at: s.not_after,
        upstream_authority_subject_key_id: s.upstream_authority_id.clone(),
    }
}

fn unsupported(s: Js) -> String {
    format!(
        "unsupported local authority status: {}",
        CaManager::status_name(s)
    )
}

/// `(active, prepared, old)` as the Get*AuthorityState RPCs report them.
fn states(current: &SlotState, next: &SlotState) -> Result<States, ApiError> {
    if current.status != Js::Active {
        return Err(ApiError::unavailable("server is initializing"));
    }
    if current.authority_id.is_empty() {
        return Err(ApiError::internal(
            "current slot does not contain authority ID",
        ));
    }
    let (mut prepared, mut old) = (None, None);
    if !next.authority_id.is_empty() {
        match next.status {
            Js::Old => old = Some(state(next)),
            Js::Prepared => prepared = Some(state(next)),
            _ => {
                tracing::error!(local_authority_id = %next.authority_id, "Slot has an unknown status")
            }
        }
    }
    Ok((state(current), prepared, old))
}

#[async_trait]
impl pb::local_authority_server::LocalAuthority for LocalAuthorityService {
    async fn get_jwt_authority_state(
        &self,
        _r: Request<pb::GetJwtAuthorityStateRequest>,
    ) -> Result<Response<pb::GetJwtAuthorityStateResponse>, Status> {
        let (active, prepared, old) = self.states(Kind::Jwt).await?;
        Ok(Response::new(pb::GetJwtAuthorityStateResponse {
            active: Some(active),
            prepared,
            old,
        }))
    }

    async fn prepare_jwt_authority(
        &self,
        _r: Request<pb::PrepareJwtAuthorityRequest>,
    ) -> Result<Response<pb::PrepareJwtAuthorityResponse>, Status> {
        let prepared = self.prepare(Kind::Jwt).await?;
        Ok(Response::new(pb::PrepareJwtAuthorityResponse {
            prepared_authority: Some(without_upstream(&prepared)),
        }))
    }

    async fn activate_jwt_authority(
        &self,
        r: Request<pb::ActivateJwtAuthorityRequest>,
    ) -> Result<Response<pb::ActivateJwtAuthorityResponse>, Status> {
        let current = self
            .activate(Kind::Jwt, &r.into_inner().authority_id)
            .await?;
        Ok(Response::new(pb::ActivateJwtAuthorityResponse {
            activated_authority: Some(without_upstream(&current)),
        }))
    }

    async fn taint_jwt_authority(
        &self,
        r: Request<pb::TaintJwtAuthorityRequest>,
    ) -> Result<Response<pb::TaintJwtAuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        self.taint(Kind::Jwt, &id).await?;
        Ok(Response::new(pb::TaintJwtAuthorityResponse {
            tainted_authority: id_only(id),
        }))
    }

    async fn revoke_jwt_authority(
        &self,
        r: Request<pb::RevokeJwtAuthorityRequest>,
    ) -> Result<Response<pb::RevokeJwtAuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        self.revoke(Kind::Jwt, &id).await?;
        Ok(Response::new(pb::RevokeJwtAuthorityResponse {
            revoked_authority: id_only(id),
        }))
    }

    async fn get_x509_authority_state(
        &self,
        _r: Request<pb::GetX509AuthorityStateRequest>,
    ) -> Result<Response<pb::GetX509AuthorityStateResponse>, Status> {
        let (active, prepared, old) = self.states(Kind::X509).await?;
        Ok(Response::new(pb::GetX509AuthorityStateResponse {
            active: Some(active),
            prepared,
            old,
        }))
    }

    async fn prepare_x509_authority(
        &self,
        _r: Request<pb::PrepareX509AuthorityRequest>,
    ) -> Result<Response<pb::PrepareX509AuthorityResponse>, Status> {
        let prepared = self.prepare(Kind::X509).await?;
        Ok(Response::new(pb::PrepareX509AuthorityResponse {
            prepared_authority: Some(state(&prepared)),
        }))
    }

    async fn activate_x509_authority(
        &self,
        r: Request<pb::ActivateX509AuthorityRequest>,
    ) -> Result<Response<pb::ActivateX509AuthorityResponse>, Status> {
        let current = self
            .activate(Kind::X509, &r.into_inner().authority_id)
            .await?;
        Ok(Response::new(pb::ActivateX509AuthorityResponse {
            activated_authority: Some(state(&current)),
        }))
    }

    async fn taint_x509_authority(
        &self,
        r: Request<pb::TaintX509AuthorityRequest>,
    ) -> Result<Response<pb::TaintX509AuthorityResponse>, Status> {
        let tainted = self.taint(Kind::X509, &r.into_inner().authority_id).await?;
        Ok(Response::new(pb::TaintX509AuthorityResponse {
            tainted_authority: Some(state(&tainted)),
        }))
    }

    async fn taint_x509_upstream_authority(
        &self,
        _r: Request<pb::TaintX509UpstreamAuthorityRequest>,
    ) -> Result<Response<pb::TaintX509UpstreamAuthorityResponse>, Status> {
        Err(ApiError::failed_precondition("upstream authority is not configured").into())
    }

    async fn revoke_x509_authority(
        &self,
        r: Request<pb::RevokeX509AuthorityRequest>,
    ) -> Result<Response<pb::RevokeX509AuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        self.revoke(Kind::X509, &id).await?;
        Ok(Response::new(pb::RevokeX509AuthorityResponse {
            revoked_authority: id_only(id),
        }))
    }

    async fn revoke_x509_upstream_authority(
        &self,
        _r: Request<pb::RevokeX509UpstreamAuthorityRequest>,
    ) -> Result<Response<pb::RevokeX509UpstreamAuthorityResponse>, Status> {
        Err(ApiError::failed_precondition("upstream authority is not configured").into())
    }
}
