//! `grpc.health.v1.Health` on the UNIX socket: SERVING once the server has an active CA.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use spire_proto::grpc::health::v1 as pb;
use tonic::{Request, Response, Status};

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

    fn status(&self) -> pb::health_check_response::ServingStatus {
        if self.server.ca.x509_ca().is_some() && self.server.ca.jwt_key().is_some() {
            pb::health_check_response::ServingStatus::Serving
        } else {
            pb::health_check_response::ServingStatus::NotServing
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
            return Err(Status::not_found("unknown service"));
        }
        Ok(Response::new(pb::HealthCheckResponse {
            status: self.status() as i32,
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
                status: self.status() as i32,
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
            self.status()
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
