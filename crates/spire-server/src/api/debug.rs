//! `spire.api.server.debug.v1.Debug`: the server's SVID chain, uptime and counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use spire_datastore::{CountEntriesRequest, CountNodesRequest};
use spire_proto::spire::api::server::debug::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::proto_id;
use super::error::ApiError;
use crate::state::Server;

/// How long SPIRE serves the same `GetInfo` answer.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// The Debug service.
#[derive(Debug, Clone)]
pub struct DebugService {
    server: Arc<Server>,
    cached: Arc<tokio::sync::Mutex<Option<(Instant, pb::GetInfoResponse)>>>,
}

impl DebugService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self {
            server,
            cached: Arc::default(),
        }
    }

    /// The server's SVID chain as verified against its own bundle, root included.
    fn svid_chain(&self) -> Result<Vec<pb::get_info_response::Cert>, ApiError> {
        let bundle = self
            .server
            .own_bundle()
            .ok_or_else(|| ApiError::not_found("trust domain bundle not found"))?;
        let roots: Vec<Vec<u8>> = bundle.root_cas.into_iter().map(|r| r.der).collect();
        let chain = self.server.svid_chain().load();
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| ApiError::internal("failed verification against bundle"))?;
        let above =
            spiffe_core::x509svid::verify_x509_path(leaf, intermediates, &roots, self.server.now())
                .map_err(|e| ApiError::internal("failed verification against bundle").with(e))?;
        Ok(std::iter::once(leaf)
            .chain(above.iter())
            .filter_map(|der| {
                let facts = spire_pki::certificate_facts(der).ok()?;
                let id = spiffe_core::x509svid::id_from_der(der).ok();
                Some(pb::get_info_response::Cert {
                    id: id.as_ref().map(proto_id),
                    expires_at: facts.not_after,
                    subject: facts.subject,
                })
            })
            .collect())
    }
}

#[async_trait]
impl pb::debug_server::Debug for DebugService {
    async fn get_info(
        &self,
        _r: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        let mut cached = self.cached.lock().await;
        if let Some((at, answer)) = cached.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(Response::new(answer.clone()));
        }
        // SPIRE counts from the datastore; its bundle count includes our own bundle.
        let ds = self.server.registry().ds();
        let agents = ds
            .count_attested_nodes(CountNodesRequest::default())
            .await
            .map_err(|e| ApiError::internal("failed to count agents").with(e))?;
        let entries = ds
            .count_registration_entries(CountEntriesRequest::default())
            .await
            .map_err(|e| ApiError::internal("failed to count entries").with(e))?;
        let bundles = ds
            .count_bundles()
            .await
            .map_err(|e| ApiError::internal("failed to count bundles").with(e))?;
        let answer = pb::GetInfoResponse {
            svid_chain: self.svid_chain()?,
            uptime: i32::try_from(self.server.started().elapsed().as_secs()).unwrap_or(i32::MAX),
            agents_count: i32::try_from(agents).unwrap_or(i32::MAX),
            federated_bundles_count: i32::try_from(bundles).unwrap_or(i32::MAX),
            entries_count: i32::try_from(entries).unwrap_or(i32::MAX),
        };
        *cached = Some((Instant::now(), answer.clone()));
        Ok(Response::new(answer))
    }
}
