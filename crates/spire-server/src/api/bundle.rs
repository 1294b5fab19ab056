//! `spire.api.server.bundle.v1.Bundle`: our trust bundle and federated bundles.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use spiffe_core::TrustDomain;
use spire_datastore::{BundleMask, DataStoreError, DeleteMode, StoredBundle};
use spire_proto::spire::api::server::bundle::v1 as pb;
use spire_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::convert;
use super::error::{ApiError, ok};
use crate::state::Server;

/// The Bundle service.
#[derive(Debug, Clone)]
pub struct BundleService {
    server: Arc<Server>,
}

impl BundleService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }

    async fn changed(&self) {
        if let Err(e) = self.server.refresh_bundles().await {
            tracing::warn!(error = %e, "Failed to reload bundles after a change");
        }
    }

    /// Validates a federated bundle's trust domain: parseable and not ours.
    fn federated_td(&self, s: &str, ours_msg: &str) -> Result<TrustDomain, types::Status> {
        let td = convert::parse_td(s).map_err(|e| {
            ApiError::invalid_argument("trust domain argument is not valid")
                .with(e)
                .item_status()
        })?;
        if td == *self.server.trust_domain() {
            return Err(ApiError::invalid_argument(ours_msg).item_status());
        }
        Ok(td)
    }

    fn convert_bundle(b: &types::Bundle) -> Result<StoredBundle, types::Status> {
        convert::bundle_from_proto(b).map_err(|e| {
            ApiError::invalid_argument("failed to convert bundle")
                .with(e)
                .item_status()
        })
    }

    /// One batch of federated-bundle writes: each bundle is checked (not the server's own
    /// trust domain, which is refused as "`verb` a federated bundle for the server's own
    /// trust domain is not allowed"), converted and handed to `write`; each item gets its
    /// status and, when written, the bundle as stored (masked by `mask`). Bundle watchers
    /// are told once, after the batch.
    async fn write_federated(
        &self,
        bundles: &[types::Bundle],
        verb: &str,
        mask: Option<&types::BundleMask>,
        write: impl Fn(StoredBundle) -> BoxFuture<'static, Result<StoredBundle, types::Status>>,
    ) -> Vec<(types::Status, Option<types::Bundle>)> {
        let own =
            format!("{verb} a federated bundle for the server's own trust domain is not allowed");
        let mut results = Vec::with_capacity(bundles.len());
        for b in bundles {
            let written = match self
                .federated_td(&b.trust_domain, &own)
                .and_then(|_| Self::convert_bundle(b))
            {
                Ok(stored) => write(stored).await,
                Err(st) => Err(st),
            };
            results.push(match written {
                Ok(s) => (ok(), Some(out(&s, mask))),
                Err(st) => (st, None),
            });
        }
        self.changed().await;
        results
    }
}

fn out(b: &StoredBundle, mask: Option<&types::BundleMask>) -> types::Bundle {
    convert::mask_bundle(convert::bundle_to_proto(b), mask)
}

#[async_trait]
impl pb::bundle_server::Bundle for BundleService {
    async fn get_bundle(
        &self,
        r: Request<pb::GetBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        let req = r.into_inner();
        let b = match self.server.own_bundle() {
            Some(b) => b,
            None => self
                .server
                .registry()
                .ds()
                .fetch_bundle(self.server.trust_domain())
                .await
                .map_err(|e| ApiError::internal("failed to fetch bundle").with(e))?
                .ok_or_else(|| ApiError::not_found("bundle not found"))?,
        };
        Ok(Response::new(out(&b, req.output_mask.as_ref())))
    }

    async fn count_bundles(
        &self,
        _r: Request<pb::CountBundlesRequest>,
    ) -> Result<Response<pb::CountBundlesResponse>, Status> {
        let n = self
            .server
            .registry()
            .ds()
            .count_bundles()
            .await
            .map_err(|e| ApiError::internal("failed to count bundles").with(e))?;
        Ok(Response::new(pb::CountBundlesResponse { count: n as i32 }))
    }

    async fn append_bundle(
        &self,
        r: Request<pb::AppendBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        let req = r.into_inner();
        if req.jwt_authorities.is_empty() && req.x509_authorities.is_empty() {
            return Err(ApiError::invalid_argument("no authorities to append").into());
        }
        let jwt = convert::jwt_authorities_from_proto(&req.jwt_authorities)
            .map_err(|e| ApiError::invalid_argument("failed to convert JWT authority").with(e))?;
        let x509 = convert::x509_authorities_from_proto(&req.x509_authorities)
            .map_err(|e| ApiError::invalid_argument("failed to convert X.509 authority").with(e))?;
        let mut b = StoredBundle::new(self.server.trust_domain().clone());
        b.root_cas = x509;
        b.jwt_signing_keys = jwt;
        let stored = self
            .server
            .registry()
            .ds()
            .append_bundle(b)
            .await
            .map_err(|e| ApiError::internal("failed to append bundle").with(e))?;
        self.changed().await;
        Ok(Response::new(out(&stored, req.output_mask.as_ref())))
    }

    async fn publish_jwt_authority(
        &self,
        r: Request<pb::PublishJwtAuthorityRequest>,
    ) -> Result<Response<pb::PublishJwtAuthorityResponse>, Status> {
        let req = r.into_inner();
        let key = req
            .jwt_authority
            .ok_or_else(|| ApiError::invalid_argument("missing JWT authority"))?;
        let parsed = convert::jwt_authorities_from_proto(std::slice::from_ref(&key))
            .map_err(|e| ApiError::invalid_argument("invalid JWT authority").with(e))?;
        let mut b = StoredBundle::new(self.server.trust_domain().clone());
        b.jwt_signing_keys = parsed;
        let stored = self
            .server
            .registry()
            .ds()
            .append_bundle(b)
            .await
            .map_err(|e| ApiError::internal("failed to publish JWT key").with(e))?;
        self.changed().await;
        Ok(Response::new(pb::PublishJwtAuthorityResponse {
            jwt_authorities: convert::bundle_to_proto(&stored).jwt_authorities,
        }))
    }

    async fn list_federated_bundles(
        &self,
        r: Request<pb::ListFederatedBundlesRequest>,
    ) -> Result<Response<pb::ListFederatedBundlesResponse>, Status> {
        let req = r.into_inner();
        let pagination = convert::pagination(req.page_size, &req.page_token);
        let resp = self
            .server
            .registry()
            .ds()
            .list_bundles(pagination)
            .await
            .map_err(|e| ApiError::internal("failed to list bundles").with(e))?;
        Ok(Response::new(pb::ListFederatedBundlesResponse {
            bundles: resp
                .bundles
                .iter()
                .filter(|b| b.trust_domain != *self.server.trust_domain())
                .map(|b| out(b, req.output_mask.as_ref()))
                .collect(),
            next_page_token: resp.pagination.map(|p| p.token).unwrap_or_default(),
        }))
    }

    async fn get_federated_bundle(
        &self,
        r: Request<pb::GetFederatedBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        let req = r.into_inner();
        let td = convert::parse_td(&req.trust_domain).map_err(|e| {
            ApiError::invalid_argument("trust domain argument is not valid").with(e)
        })?;
        if td == *self.server.trust_domain() {
            return Err(ApiError::invalid_argument(
                "getting a federated bundle for the server's own trust domain is not allowed",
            )
            .into());
        }
        let b = match self.server.federated_bundle(&td) {
            Some(b) => b,
            None => self
                .server
                .registry()
                .ds()
                .fetch_bundle(&td)
                .await
                .map_err(|e| ApiError::internal("failed to fetch bundle").with(e))?
                .ok_or_else(|| ApiError::not_found("bundle not found"))?,
        };
        Ok(Response::new(out(&b, req.output_mask.as_ref())))
    }

    async fn batch_create_federated_bundle(
        &self,
        r: Request<pb::BatchCreateFederatedBundleRequest>,
    ) -> Result<Response<pb::BatchCreateFederatedBundleResponse>, Status> {
        let req = r.into_inner();
        let ds = self.server.registry().ds().clone();
        let written = self
            .write_federated(
                &req.bundle,
                "creating",
                req.output_mask.as_ref(),
                move |stored| {
                    let ds = ds.clone();
                    Box::pin(async move {
                        match ds.create_bundle(stored).await {
                            Ok(s) => Ok(s),
                            Err(DataStoreError::AlreadyExists(_)) => {
                                Err(ApiError::already_exists("bundle already exists").item_status())
                            }
                            Err(e) => Err(ApiError::internal("unable to create bundle")
                                .with(e)
                                .item_status()),
                        }
                    })
                },
            )
            .await;
        Ok(Response::new(pb::BatchCreateFederatedBundleResponse {
            results: written
                .into_iter()
                .map(
                    |(status, bundle)| pb::batch_create_federated_bundle_response::Result {
                        status: Some(status),
                        bundle,
                    },
                )
                .collect(),
        }))
    }

    async fn batch_update_federated_bundle(
        &self,
        r: Request<pb::BatchUpdateFederatedBundleRequest>,
    ) -> Result<Response<pb::BatchUpdateFederatedBundleResponse>, Status> {
        let req = r.into_inner();
        let mask = req.input_mask.as_ref().map(|m| BundleMask {
            root_cas: m.x509_authorities,
            jwt_signing_keys: m.jwt_authorities,
            refresh_hint: m.refresh_hint,
            sequence_number: m.sequence_number,
        });
        let ds = self.server.registry().ds().clone();
        let written = self
            .write_federated(
                &req.bundle,
                "updating",
                req.output_mask.as_ref(),
                move |stored| {
                    let ds = ds.clone();
                    Box::pin(async move {
                        match ds.update_bundle(stored, mask).await {
                            Ok(s) => Ok(s),
                            Err(DataStoreError::NotFound(_)) => {
                                Err(ApiError::not_found("bundle not found").item_status())
                            }
                            Err(e) => Err(ApiError::internal("failed to update bundle")
                                .with(e)
                                .item_status()),
                        }
                    })
                },
            )
            .await;
        Ok(Response::new(pb::BatchUpdateFederatedBundleResponse {
            results: written
                .into_iter()
                .map(
                    |(status, bundle)| pb::batch_update_federated_bundle_response::Result {
                        status: Some(status),
                        bundle,
                    },
                )
                .collect(),
        }))
    }

    async fn batch_set_federated_bundle(
        &self,
        r: Request<pb::BatchSetFederatedBundleRequest>,
    ) -> Result<Response<pb::BatchSetFederatedBundleResponse>, Status> {
        let req = r.into_inner();
        let ds = self.server.registry().ds().clone();
        let written = self
            .write_federated(
                &req.bundle,
                "setting",
                req.output_mask.as_ref(),
                move |stored| {
                    let ds = ds.clone();
                    Box::pin(async move {
                        ds.set_bundle(stored).await.map_err(|e| {
                            ApiError::internal("failed to set bundle")
                                .with(e)
                                .item_status()
                        })
                    })
                },
            )
            .await;
        Ok(Response::new(pb::BatchSetFederatedBundleResponse {
            results: written
                .into_iter()
                .map(
                    |(status, bundle)| pb::batch_set_federated_bundle_response::Result {
                        status: Some(status),
                        bundle,
                    },
                )
                .collect(),
        }))
    }

    async fn batch_delete_federated_bundle(
        &self,
        r: Request<pb::BatchDeleteFederatedBundleRequest>,
    ) -> Result<Response<pb::BatchDeleteFederatedBundleResponse>, Status> {
        let req = r.into_inner();
        let mode = match req.mode {
            0 => DeleteMode::Restrict,
            1 => DeleteMode::Delete,
            2 => DeleteMode::Dissociate,
            other => {
                return Err(ApiError::invalid_argument("failed to parse deletion mode")
                    .with(format!("unhandled delete mode {other:?}"))
                    .into());
            }
        };
        let mut results = Vec::new();
        for t in req.trust_domains {
            let status = match self.federated_td(
                &t,
                "removing the bundle for the server trust domain is not allowed",
            ) {
                Err(st) => st,
                Ok(td) => match self.server.registry().ds().delete_bundle(&td, mode).await {
                    Ok(()) => ok(),
                    Err(DataStoreError::NotFound(_)) => {
                        ApiError::not_found("bundle not found").item_status()
                    }
                    Err(e) => {
                        ApiError::datastore("failed to delete federated bundle", e).item_status()
                    }
                },
            };
            results.push(pb::batch_delete_federated_bundle_response::Result {
                status: Some(status),
                trust_domain: t,
            });
        }
        self.changed().await;
        Ok(Response::new(pb::BatchDeleteFederatedBundleResponse {
            results,
        }))
    }
}
