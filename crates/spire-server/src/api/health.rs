//! `grpc.health.v1.Health` on the UNIX socket, as SPIRE answers it (what `spire-server
//! healthcheck` asks): SERVING when the datastore returns our bundle, NOT_SERVING when it
//! fails (a database outage) or has none; per-service checks are refused.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use spire_proto::grpc::health::v1 as pb;
use tonic::{Request, Response, Status};

use super::error::ApiError;

use crate::state::Server;

/// The Health service.
#[derive(Debug, Clone)]
pub struct HealthService {
    server: Arc<Server>,
}

impl HealthService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }

    async fn status(&self) -> pb::health_check_response::ServingStatus {
        use pb::health_check_response::ServingStatus;
        match self
            .server
            .registry()
            .ds()
            .fetch_bundle(self.server.trust_domain())
            .await
        {
            Ok(Some(_)) => ServingStatus::Serving,
            Ok(None) => {
                tracing::warn!(reason = "bundle is missing", "Health check failed");
                ServingStatus::NotServing
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = "unable to fetch bundle", "Health check failed");
                ServingStatus::NotServing
            }
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::HealthCheckResponse, Status>> + Send>>;

#[async_trait]
impl pb::health_server::Health for HealthService {
    async fn check(
        &self,
        r: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        let service = r.into_inner().service;
        if !service.is_empty() {
            return Err(
                ApiError::invalid_argument("per-service health is not supported")
                    .unlogged()
                    .into(),
            );
        }
        Ok(Response::new(pb::HealthCheckResponse {
            status: self.status().await as i32,
        }))
    }

    async fn list(
        &self,
        _r: Request<pb::HealthListRequest>,
    ) -> Result<Response<pb::HealthListResponse>, Status> {
        let mut statuses = std::collections::HashMap::new();
        statuses.insert(
            String::new(),
            pb::HealthCheckResponse {
                status: self.status().await as i32,
            },
        );
        Ok(Response::new(pb::HealthListResponse { statuses }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        r: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = r.into_inner().service;
        let st = if service.is_empty() {
            self.status().await
        } else {
            pb::health_check_response::ServingStatus::ServiceUnknown
        };
        let first = pb::HealthCheckResponse { status: st as i32 };
        let stream =
            futures::stream::once(async move { Ok(first) }).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}

use futures::StreamExt as _;
