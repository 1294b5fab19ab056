//! `spirers.sync.v1.Sync`: change notices for our agents (an extension reference SPIRE lacks;
//! agents fall back to polling when a server answers Unimplemented).

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use spire_proto::spirers::sync::v1 as pb;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::state::Server;

/// The Sync service.
#[derive(Debug, Clone)]
pub struct SyncService {
    server: Arc<Server>,
}

impl SyncService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }
}

type Notices = Pin<Box<dyn Stream<Item = Result<pb::WatchChangesResponse, Status>> + Send>>;

#[async_trait]
impl pb::sync_server::Sync for SyncService {
    type WatchChangesStream = Notices;

    async fn watch_changes(
        &self,
        _r: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        // Every agent gets every notice: cheap (no payload) and agents re-sync only what
        // they are authorized for.
        let rx = self.server.registry().subscribe();
        let stream = WatchStream::new(rx).map(|r| {
            Ok(pb::WatchChangesResponse {
                entries_revision: r.entries,
                bundles_revision: r.bundles,
            })
        });
        // Ends when the server stops, so a graceful stop does not wait for the agent.
        let stream = futures::StreamExt::take_until(stream, self.server.stopped());
        Ok(Response::new(Box::pin(stream)))
    }
}
