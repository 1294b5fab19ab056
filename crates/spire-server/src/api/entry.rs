//! `spire.api.server.entry.v1.Entry`: registration entry CRUD for admins, and the
//! authorized-entry answers for agents, served from the in-memory index.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use spire_datastore::{
    ByFederatesWith, BySelectors, CountEntriesRequest, DataStoreError, ListEntriesRequest,
};
use spire_proto::spire::api::server::entry::v1 as pb;
use spire_proto::spire::api::types;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::agent::match_behavior;
use super::convert;
use super::error::{ApiError, ok};
use crate::auth;
use crate::index::EntryRef;
use crate::state::Server;

/// Entries per SyncAuthorizedEntries page, as SPIRE.
pub const ENTRY_PAGE_SIZE: usize = 500;

/// The Entry service.
#[derive(Debug, Clone)]
pub struct EntryService {
    server: Arc<Server>,
}

impl EntryService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }
}

struct Filters {
    by_parent_id: Option<spiffe_core::SpiffeId>,
    by_spiffe_id: Option<spiffe_core::SpiffeId>,
    by_selectors: Option<BySelectors>,
    by_federates_with: Option<ByFederatesWith>,
    by_hint: Option<String>,
    by_downstream: Option<bool>,
}

#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the two filter messages field by field"
)]
fn filters(
    server: &Server,
    by_parent_id: Option<&types::Spiffeid>,
    by_spiffe_id: Option<&types::Spiffeid>,
    by_selectors: Option<&types::SelectorMatch>,
    by_federates_with: Option<&types::FederatesWithMatch>,
    by_hint: Option<&pbjson_types::StringValue>,
    by_downstream: Option<&pbjson_types::BoolValue>,
) -> Result<Filters, ApiError> {
    let td = server.trust_domain();
    let by_parent_id = by_parent_id
        .map(|p| {
            convert::id_from_proto(Some(p))
                .and_then(|id| convert::verify_member(td, &id).map(|_| id))
                .map_err(|e| ApiError::invalid_argument("malformed parent ID filter").with(e))
        })
        .transpose()?;
    let by_spiffe_id = by_spiffe_id
        .map(|p| {
            convert::id_from_proto(Some(p))
                .and_then(|id| convert::verify_workload(td, &id).map(|_| id))
                .map_err(|e| ApiError::invalid_argument("malformed SPIFFE ID filter").with(e))
        })
        .transpose()?;
    let by_selectors = match by_selectors {
        Some(m) => {
            let selectors = convert::selectors_from_proto(&m.selectors)
                .map_err(|e| ApiError::invalid_argument("malformed selectors filter").with(e))?;
            if selectors.is_empty() {
                return Err(ApiError::invalid_argument("malformed selectors filter")
                    .with("empty selector set"));
            }
            Some(BySelectors {
                selectors,
                match_behavior: match_behavior(m.r#match),
            })
        }
        None => None,
    };
    let by_federates_with = match by_federates_with {
        Some(m) => {
            let mut trust_domains = Vec::new();
            for t in &m.trust_domains {
                trust_domains.push(convert::parse_td(t).map_err(|e| {
                    ApiError::invalid_argument("malformed federates with filter").with(e)
                })?);
            }
            if trust_domains.is_empty() {
                return Err(
                    ApiError::invalid_argument("malformed federates with filter")
                        .with("empty trust domain set"),
                );
            }
            Some(ByFederatesWith {
                trust_domains,
                match_behavior: match_behavior(m.r#match),
            })
        }
        None => None,
    };
    Ok(Filters {
        by_parent_id,
        by_spiffe_id,
        by_selectors,
        by_federates_with,
        by_hint: by_hint.map(|h| h.value.clone()),
        by_downstream: by_downstream.map(|b| b.value),
    })
}

impl EntryService {
    fn authorized(&self, caller: &auth::Caller) -> Result<Vec<EntryRef>, ApiError> {
        let id = caller
            .id
            .as_ref()
            .ok_or_else(|| ApiError::internal("caller ID missing from request context"))?;
        Ok(self.server.registry().authorized_entries(id.as_str()))
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Runs SPIRE's SyncAuthorizedEntries exchange over `entries` (sorted by ID).
async fn sync_authorized(
    entries: Vec<EntryRef>,
    rx: &mut Streaming<pb::SyncAuthorizedEntriesRequest>,
    tx: &mpsc::Sender<Result<pb::SyncAuthorizedEntriesResponse, Status>>,
) -> Result<(), Status> {
    let first = rx
        .message()
        .await?
        .ok_or_else(|| ApiError::invalid_argument("missing initial request").unlogged())?;
    if !first.ids.is_empty() {
        return Err(ApiError::invalid_argument(
            "specifying IDs on initial request is not supported",
        )
        .unlogged()
        .into());
    }
    if first
        .output_mask
        .as_ref()
        .is_some_and(|m| !m.revision_number)
    {
        return Err(
            ApiError::invalid_argument("revision number cannot be masked")
                .unlogged()
                .into(),
        );
    }
    let mask = first.output_mask;
    let send = |resp: pb::SyncAuthorizedEntriesResponse| async move {
        tx.send(Ok(resp))
            .await
            .map_err(|_| Status::from(ApiError::cancelled("client went away").unlogged()))
    };
    if entries.len() <= ENTRY_PAGE_SIZE {
        let resp = pb::SyncAuthorizedEntriesResponse {
            entries: entries
                .iter()
                .map(|e| convert::entry_to_proto(e.as_ref(), mask.as_ref()))
                .collect(),
            ..Default::default()
        };
        return send(resp).await;
    }
    let pages: Vec<&[EntryRef]> = entries.chunks(ENTRY_PAGE_SIZE).collect();
    let last = pages.len() - 1;
    for (i, page) in pages.into_iter().enumerate() {
        send(pb::SyncAuthorizedEntriesResponse {
            entry_revisions: page
                .iter()
                .map(|e| pb::EntryRevision {
                    id: e.entry_id().to_string(),
                    revision_number: e.revision_number(),
                    created_at: e.created_at(),
                })
                .collect(),
            entries: vec![],
            more: i != last,
        })
        .await?;
    }
    loop {
        let req = match rx.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) if e.code() == Code::Cancelled => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut ids = req.ids;
        ids.sort();
        let mut resp = pb::SyncAuthorizedEntriesResponse::default();
        for id in &ids {
            let Ok(i) = entries.binary_search_by(|e| e.entry_id().cmp(id)) else {
                continue;
            };
            if resp.entries.len() == ENTRY_PAGE_SIZE {
                resp.more = true;
                send(std::mem::take(&mut resp)).await?;
            }
            resp.entries
                .push(convert::entry_to_proto(entries[i].as_ref(), mask.as_ref()));
        }
        resp.more = false;
        send(resp).await?;
    }
}

#[async_trait]
impl pb::entry_server::Entry for EntryService {
    async fn count_entries(
        &self,
        request: Request<pb::CountEntriesRequest>,
    ) -> Result<Response<pb::CountEntriesResponse>, Status> {
        let req = request.into_inner();
        let mut count = CountEntriesRequest::default();
        if let Some(f) = &req.filter {
            let f = filters(
                &self.server,
                f.by_parent_id.as_ref(),
                f.by_spiffe_id.as_ref(),
                f.by_selectors.as_ref(),
                f.by_federates_with.as_ref(),
                f.by_hint.as_ref(),
                f.by_downstream.as_ref(),
            )?;
            count.by_parent_id = f.by_parent_id;
            count.by_spiffe_id = f.by_spiffe_id;
            count.by_selectors = f.by_selectors;
            count.by_federates_with = f.by_federates_with;
            count.by_hint = f.by_hint;
            count.by_downstream = f.by_downstream;
        }
        let n = self
            .server
            .registry()
            .ds()
            .count_registration_entries(count)
            .await
            .map_err(|e| ApiError::internal("failed to count entries").with(e))?;
        Ok(Response::new(pb::CountEntriesResponse { count: n as i32 }))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let req = request.into_inner();
        let mut list = ListEntriesRequest {
            pagination: convert::pagination(req.page_size, &req.page_token),
            ..Default::default()
        };
        if let Some(f) = &req.filter {
            let f = filters(
                &self.server,
                f.by_parent_id.as_ref(),
                f.by_spiffe_id.as_ref(),
                f.by_selectors.as_ref(),
                f.by_federates_with.as_ref(),
                f.by_hint.as_ref(),
                f.by_downstream.as_ref(),
            )?;
            list.by_parent_id = f.by_parent_id;
            list.by_spiffe_id = f.by_spiffe_id;
            list.by_selectors = f.by_selectors;
            list.by_federates_with = f.by_federates_with;
            list.by_hint = f.by_hint;
            list.by_downstream = f.by_downstream;
        }
        let resp = self
            .server
            .registry()
            .ds()
            .list_registration_entries(list)
            .await
            .map_err(|e| ApiError::internal("failed to list entries").with(e))?;
        Ok(Response::new(pb::ListEntriesResponse {
            entries: resp
                .entries
                .iter()
                .map(|e| convert::entry_to_proto(e, req.output_mask.as_ref()))
                .collect(),
            next_page_token: resp.pagination.map(|p| p.token).unwrap_or_default(),
        }))
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<types::Entry>, Status> {
        let req = request.into_inner();
        if req.id.is_empty() {
            return Err(ApiError::invalid_argument("missing ID").into());
        }
        let e = self
            .server
            .registry()
            .ds()
            .fetch_registration_entry(&req.id)
            .await
            .map_err(|e| ApiError::internal("failed to fetch entry").with(e))?
            .ok_or_else(|| ApiError::not_found("entry not found"))?;
        Ok(Response::new(convert::entry_to_proto(
            &e,
            req.output_mask.as_ref(),
        )))
    }

    async fn batch_create_entry(
        &self,
        request: Request<pb::BatchCreateEntryRequest>,
    ) -> Result<Response<pb::BatchCreateEntryResponse>, Status> {
        let req = request.into_inner();
        let mut results: Vec<Option<pb::batch_create_entry_response::Result>> = Vec::new();
        let mut valid = Vec::new();
        let mut positions = Vec::new();
        for (i, e) in req.entries.iter().enumerate() {
            match convert::entry_from_proto(self.server.trust_domain(), e, None) {
                Ok((entry, _)) => {
                    valid.push(entry);
                    positions.push(i);
                    results.push(None);
                }
                Err(m) => results.push(Some(pb::batch_create_entry_response::Result {
                    status: Some(
                        ApiError::invalid_argument("failed to convert entry")
                            .with(m)
                            .item_status(),
                    ),
                    entry: None,
                })),
            }
        }
        if !valid.is_empty() {
            // SPIRE creates entry by entry, so a datastore failure (a database outage) is
            // each entry's result, not the call's.
            let n = valid.len();
            let created = match self.server.registry().create_entries(valid).await {
                Ok(c) => c,
                Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
            };
            for (pos, r) in positions.into_iter().zip(created) {
                results[pos] = Some(match r {
                    Ok((entry, existed)) => pb::batch_create_entry_response::Result {
                        status: Some(if existed {
                            types::Status {
                                code: Code::AlreadyExists as i32,
                                message: "similar entry already exists".into(),
                            }
                        } else {
                            ok()
                        }),
                        entry: Some(convert::entry_to_proto(&entry, req.output_mask.as_ref())),
                    },
                    Err(e) => pb::batch_create_entry_response::Result {
                        status: Some(
                            ApiError::datastore("failed to create entry", e).item_status(),
                        ),
                        entry: None,
                    },
                });
            }
        }
        Ok(Response::new(pb::BatchCreateEntryResponse {
            results: results.into_iter().flatten().collect(),
        }))
    }

    async fn batch_update_entry(
        &self,
        request: Request<pb::BatchUpdateEntryRequest>,
    ) -> Result<Response<pb::BatchUpdateEntryResponse>, Status> {
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.entries.len());
        for e in &req.entries {
            let (entry, mask) = match convert::entry_from_proto(
                self.server.trust_domain(),
                e,
                req.input_mask.as_ref(),
            ) {
                Ok(x) => x,
                Err(m) => {
                    results.push(pb::batch_update_entry_response::Result {
                        status: Some(
                            ApiError::invalid_argument("failed to convert entry")
                                .with(m)
                                .item_status(),
                        ),
                        entry: None,
                    });
                    continue;
                }
            };
            let mask = req.input_mask.as_ref().map(|_| mask);
            match self.server.registry().update_entry(entry, mask).await {
                Ok(updated) => {
                    results.push(pb::batch_update_entry_response::Result {
                        status: Some(ok()),
                        entry: Some(convert::entry_to_proto(&updated, req.output_mask.as_ref())),
                    });
                }
                Err(e) => results.push(pb::batch_update_entry_response::Result {
                    status: Some(ApiError::datastore("failed to update entry", e).item_status()),
                    entry: None,
                }),
            }
        }
        Ok(Response::new(pb::BatchUpdateEntryResponse { results }))
    }

    async fn batch_delete_entry(
        &self,
        request: Request<pb::BatchDeleteEntryRequest>,
    ) -> Result<Response<pb::BatchDeleteEntryResponse>, Status> {
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.ids.len());
        for id in req.ids {
            if id.is_empty() {
                results.push(pb::batch_delete_entry_response::Result {
                    status: Some(ApiError::invalid_argument("missing entry ID").item_status()),
                    id,
                });
                continue;
            }
            let status = match self.server.registry().delete_entry(&id).await {
                Ok(_) => ok(),
                Err(DataStoreError::NotFound(_)) => {
                    ApiError::not_found("entry not found").item_status()
                }
                Err(e) => ApiError::internal("failed to delete entry")
                    .with(e)
                    .item_status(),
            };
            results.push(pb::batch_delete_entry_response::Result {
                status: Some(status),
                id,
            });
        }
        Ok(Response::new(pb::BatchDeleteEntryResponse { results }))
    }

    async fn get_authorized_entries(
        &self,
        request: Request<pb::GetAuthorizedEntriesRequest>,
    ) -> Result<Response<pb::GetAuthorizedEntriesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let req = request.into_inner();
        let entries = self.authorized(&caller)?;
        Ok(Response::new(pb::GetAuthorizedEntriesResponse {
            entries: entries
                .iter()
                .map(|e| convert::entry_to_proto(e.as_ref(), req.output_mask.as_ref()))
                .collect(),
        }))
    }

    type SyncAuthorizedEntriesStream = ResponseStream<pb::SyncAuthorizedEntriesResponse>;

    async fn sync_authorized_entries(
        &self,
        request: Request<Streaming<pb::SyncAuthorizedEntriesRequest>>,
    ) -> Result<Response<Self::SyncAuthorizedEntriesStream>, Status> {
        let caller = auth::caller(&request)?;
        let entries = self.authorized(&caller)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            if let Err(e) = sync_authorized(entries, &mut inbound, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
