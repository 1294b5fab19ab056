//! `spire.api.server.debug.v1.Debug`: the server's SVID chain, uptime and counts.

use std::sync::Arc;

use async_trait::async_trait;
use spire_proto::spire::api::server::debug::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::proto_id;
use crate::state::Server;

/// The Debug service.
#[derive(Debug, Clone)]
pub struct DebugService {
    server: Arc<Server>,
}

impl DebugService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }
}

#[async_trait]
impl pb::debug_server::Debug for DebugService {
    async fn get_info(
        &self,
        _r: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        let chain = self.server.svid_chain.load();
        let svid_chain = chain
            .iter()
            .filter_map(|der| {
                let facts = spire_pki::certificate_facts(der).ok()?;
                let id = spiffe_core::x509svid::id_from_der(der).ok();
                Some(pb::get_info_response::Cert {
                    id: id.as_ref().map(proto_id),
                    expires_at: facts.not_after,
                    subject: facts.subject,
                })
            })
            .collect();
        let (agents, entries) = {
            let ix = self.server.index.read();
            (ix.agent_count(), ix.entry_count())
        };
        Ok(Response::new(pb::GetInfoResponse {
            svid_chain,
            uptime: self.server.started.elapsed().as_secs() as i32,
            agents_count: agents as i32,
            federated_bundles_count: self.server.bundles.load().federated.len() as i32,
            entries_count: entries as i32,
        }))
    }
}
