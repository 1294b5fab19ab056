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
fn states(
    current: &SlotState,
    next: &SlotState,
) -> Result<
    (
        pb::AuthorityState,
        Option<pb::AuthorityState>,
        Option<pb::AuthorityState>,
    ),
    Status,
> {
    if current.status != Js::Active {
        return Err(ApiError::unavailable("server is initializing").into());
    }
    if current.authority_id.is_empty() {
        return Err(ApiError::internal("current slot does not contain authority ID").into());
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
        let (c, n) = self.manager().jwt_slots().await;
        let (active, prepared, old) = states(&c, &n)?;
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
        let (c, _) = self.manager().jwt_slots().await;
        if c.status != Js::Active {
            return Err(ApiError::unavailable("server is initializing").into());
        }
        let prepared = self
            .manager()
            .prepare_jwt_now(self.server.now())
            .await
            .map_err(|e| ApiError::internal("failed to prepare JWT authority").with(e))?;
        self.changed().await;
        Ok(Response::new(pb::PrepareJwtAuthorityResponse {
            prepared_authority: Some(pb::AuthorityState {
                authority_id: prepared.authority_id,
                expires_at: prepared.not_after,
                upstream_authority_subject_key_id: String::new(),
            }),
        }))
    }

    async fn activate_jwt_authority(
        &self,
        r: Request<pb::ActivateJwtAuthorityRequest>,
    ) -> Result<Response<pb::ActivateJwtAuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        let (_, next) = self.manager().jwt_slots().await;
        if id.is_empty() {
            return Err(ApiError::invalid_argument("no authority ID provided").into());
        }
        if id != next.authority_id {
            return Err(ApiError::invalid_argument("unexpected authority ID").into());
        }
        if next.status != Js::Prepared {
            return Err(
                ApiError::internal("only Prepared authorities can be activated")
                    .with(unsupported(next.status))
                    .into(),
            );
        }
        let current = self.manager().rotate_jwt_now().await;
        Ok(Response::new(pb::ActivateJwtAuthorityResponse {
            activated_authority: Some(pb::AuthorityState {
                authority_id: current.authority_id,
                expires_at: current.not_after,
                upstream_authority_subject_key_id: String::new(),
            }),
        }))
    }

    async fn taint_jwt_authority(
        &self,
        r: Request<pb::TaintJwtAuthorityRequest>,
    ) -> Result<Response<pb::TaintJwtAuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        let (current, next) = self.manager().jwt_slots().await;
        if id.is_empty() {
            return Err(ApiError::invalid_argument("no authority ID provided").into());
        }
        if id == current.authority_id {
            return Err(
                ApiError::invalid_argument("unable to taint current local authority").into(),
            );
        }
        if id != next.authority_id {
            return Err(ApiError::invalid_argument("unexpected authority ID").into());
        }
        if next.status != Js::Old {
            return Err(
                ApiError::invalid_argument("only Old local authorities can be tainted")
                    .with(unsupported(next.status))
                    .into(),
            );
        }
        self.server
            .registry()
            .ds()
            .taint_jwt_key(self.server.trust_domain(), &id)
            .await
            .map_err(|e| ApiError::internal("failed to taint JWT authority").with(e))?;
        self.changed().await;
        tracing::info!(local_authority_id = %id, "JWT authority tainted successfully");
        Ok(Response::new(pb::TaintJwtAuthorityResponse {
            tainted_authority: Some(pb::AuthorityState {
                authority_id: id,
                ..Default::default()
            }),
        }))
    }

    async fn revoke_jwt_authority(
        &self,
        r: Request<pb::RevokeJwtAuthorityRequest>,
    ) -> Result<Response<pb::RevokeJwtAuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        let (current, next) = self.manager().jwt_slots().await;
        let invalid = |m: &str| ApiError::invalid_argument("invalid authority ID").with(m);
        if id.is_empty() {
            return Err(invalid("no authority ID provided").into());
        }
        if id == next.authority_id {
            if next.status == Js::Prepared {
                return Err(invalid("unable to use a prepared key").into());
            }
        } else if id == current.authority_id {
            return Err(invalid("unable to use current authority").into());
        } else {
            let known = self
                .server
                .registry()
                .ds()
                .fetch_bundle(self.server.trust_domain())
                .await
                .map_err(|e| ApiError::invalid_argument("invalid authority ID").with(e))?
                .is_some_and(|b| b.jwt_signing_keys.iter().any(|k| k.kid == id));
            if !known {
                return Err(invalid("no JWT authority found with provided authority ID").into());
            }
        }
        self.server
            .registry()
            .ds()
            .revoke_jwt_key(self.server.trust_domain(), &id)
            .await
            .map_err(|e| ApiError::internal("failed to revoke JWT authority").with(e))?;
        self.changed().await;
        tracing::info!(local_authority_id = %id, "JWT authority revoked successfully");
        Ok(Response::new(pb::RevokeJwtAuthorityResponse {
            revoked_authority: Some(pb::AuthorityState {
                authority_id: id,
                ..Default::default()
            }),
        }))
    }

    async fn get_x509_authority_state(
        &self,
        _r: Request<pb::GetX509AuthorityStateRequest>,
    ) -> Result<Response<pb::GetX509AuthorityStateResponse>, Status> {
        let (c, n) = self.manager().x509_slots().await;
        let (active, prepared, old) = states(&c, &n)?;
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
        let (c, _) = self.manager().x509_slots().await;
        if c.status != Js::Active {
            return Err(ApiError::unavailable("server is initializing").into());
        }
        let prepared = self
            .manager()
            .prepare_x509_now(self.server.now())
            .await
            .map_err(|e| ApiError::internal("failed to prepare X.509 authority").with(e))?;
        self.changed().await;
        Ok(Response::new(pb::PrepareX509AuthorityResponse {
            prepared_authority: Some(state(&prepared)),
        }))
    }

    async fn activate_x509_authority(
        &self,
        r: Request<pb::ActivateX509AuthorityRequest>,
    ) -> Result<Response<pb::ActivateX509AuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        let (_, next) = self.manager().x509_slots().await;
        if id.is_empty() {
            return Err(ApiError::invalid_argument("no authority ID provided").into());
        }
        if id != next.authority_id {
            return Err(ApiError::invalid_argument("unexpected authority ID").into());
        }
        if next.status != Js::Prepared {
            return Err(
                ApiError::internal("only Prepared authorities can be activated")
                    .with(unsupported(next.status))
                    .into(),
            );
        }
        let current = self.manager().rotate_x509_now(self.server.now()).await;
        Ok(Response::new(pb::ActivateX509AuthorityResponse {
            activated_authority: Some(state(&current)),
        }))
    }

    async fn taint_x509_authority(
        &self,
        r: Request<pb::TaintX509AuthorityRequest>,
    ) -> Result<Response<pb::TaintX509AuthorityResponse>, Status> {
        let id = r.into_inner().authority_id;
        let (current, next) = self.manager().x509_slots().await;
        if id.is_empty() {
            return Err(ApiError::invalid_argument("no authority ID provided").into());
        }
        if id == current.authority_id {
            return Err(
                ApiError::invalid_argument("unable to taint current local authority").into(),
            );
        }
        if id != next.authority_id {
            return Err(ApiError::invalid_argument("unexpected authority ID").into());
        }
        if next.status != Js::Old {
            return Err(
                ApiError::invalid_argument("only Old local authorities can be tainted")
                    .with(unsupported(next.status))
                    .into(),
            );
        }
        self.server
            .registry()
            .ds()
            .taint_x509_ca(self.server.trust_domain(), &id)
            .await
            .map_err(|e| ApiError::internal("failed to taint X.509 authority").with(e))?;
        self.changed().await;
        tracing::info!(local_authority_id = %id, "X.509 authority tainted successfully");
        Ok(Response::new(pb::TaintX509AuthorityResponse {
            tainted_authority: Some(state(&next)),
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
        let (current, next) = self.manager().x509_slots().await;
        let invalid = |m: &str| ApiError::invalid_argument("invalid authority ID").with(m);
        if id.is_empty() {
            return Err(invalid("no authority ID provided").into());
        }
        if id == current.authority_id {
            return Err(invalid("unable to use current authority").into());
        }
        if id != next.authority_id || next.status != Js::Old {
            return Err(invalid("only Old local authority can be revoked").into());
        }
        self.server
            .registry()
            .ds()
            .revoke_x509_ca(self.server.trust_domain(), &id)
            .await
            .map_err(|e| ApiError::internal("failed to revoke X.509 authority").with(e))?;
        self.changed().await;
        tracing::info!(local_authority_id = %id, "X.509 authority revoked successfully");
        Ok(Response::new(pb::RevokeX509AuthorityResponse {
            revoked_authority: Some(pb::AuthorityState {
                authority_id: id,
                ..Default::default()
            }),
        }))
    }

    async fn revoke_x509_upstream_authority(
        &self,
        _r: Request<pb::RevokeX509UpstreamAuthorityRequest>,
    ) -> Result<Response<pb::RevokeX509UpstreamAuthorityResponse>, Status> {
        Err(ApiError::failed_precondition("upstream authority is not configured").into())
    }
}
