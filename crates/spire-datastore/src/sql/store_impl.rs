//! `impl DataStore for SqlStore`: one transaction per call.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::Selector;

use super::misc::EventTable;
use super::{SqlStore, bundles, check_page_size, entries, misc, nodes};
use crate::block::EntryBlock;
use crate::datastore::{BatchEntryResult, DataStore};
use crate::error::{DataStoreError, Result};
use crate::model::*;

/// Runs `$body` in a write transaction bound to `$tx`, committing on success.
macro_rules! write_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut $tx = $self.begin_write().await?;
        let out = $body;
        match out {
            Ok(v) => {
                $tx.commit().await?;
                Ok(v)
            }
            Err(e) => {
                let _ = $tx.rollback().await;
                Err(e)
            }
        }
    }};
}

/// Runs `$body` in a read transaction, rolled back afterwards.
macro_rules! read_tx {
    ($self:ident, $consistency:expr, |$tx:ident| $body:expr) => {{
        let mut $tx = $self.begin_read($consistency).await?;
        let out = $body;
        let _ = $tx.rollback().await;
        out
    }};
}

fn entry_filter(
    by_parent_id: Option<SpiffeId>,
    by_spiffe_id: Option<SpiffeId>,
    by_selectors: Option<BySelectors>,
    by_federates_with: Option<ByFederatesWith>,
    by_hint: Option<String>,
    by_downstream: Option<bool>,
) -> entries::EntryFilter {
    entries::EntryFilter {
        by_parent_id,
        by_spiffe_id,
        by_selectors,
        by_federates_with,
        by_hint,
        by_downstream,
    }
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(DataStoreError::sql)
}

#[async_trait::async_trait]
impl DataStore for SqlStore {
    async fn append_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle> {
        write_tx!(self, |tx| bundles::append(&mut tx, bundle, self.now())
            .await)
    }

    async fn count_bundles(&self) -> Result<u32> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| bundles::count(
            &mut tx
        )
        .await)
    }

    async fn create_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle> {
        write_tx!(self, |tx| bundles::create(&mut tx, bundle, self.now())
            .await)
    }

    async fn delete_bundle(&self, trust_domain: &TrustDomain, mode: DeleteMode) -> Result<()> {
        write_tx!(self, |tx| bundles::delete(
            &mut tx,
            trust_domain,
            mode,
            self.now()
        )
        .await)
    }

    async fn fetch_bundle(&self, trust_domain: &TrustDomain) -> Result<Option<StoredBundle>> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| bundles::fetch(
            &mut tx,
            trust_domain
        )
        .await)
    }

    async fn list_bundles(&self, pagination: Option<Pagination>) -> Result<ListBundlesResponse> {
        check_page_size(pagination.as_ref())?;
        let (bundles, pagination) =
            read_tx!(self, DataConsistency::RequireCurrent, |tx| bundles::list(
                &mut tx,
                pagination.as_ref()
            )
            .await)?;
        Ok(ListBundlesResponse {
            bundles,
            pagination,
        })
    }

    async fn prune_bundle(&self, trust_domain: &TrustDomain, expires_before: i64) -> Result<bool> {
        write_tx!(self, |tx| bundles::prune(
            &mut tx,
            trust_domain,
            expires_before,
            self.now()
        )
        .await)
    }

    async fn set_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle> {
        write_tx!(self, |tx| bundles::set(&mut tx, bundle, self.now()).await)
    }

    async fn update_bundle(
        &self,
        bundle: StoredBundle,
        mask: Option<BundleMask>,
    ) -> Result<StoredBundle> {
        write_tx!(self, |tx| bundles::update(
            &mut tx,
            bundle,
            mask,
            self.now()
        )
        .await)
    }

    async fn taint_x509_ca(&self, trust_domain: &TrustDomain, subject_key_id: &str) -> Result<()> {
        write_tx!(self, |tx| bundles::taint_x509_ca(
            &mut tx,
            trust_domain,
            subject_key_id,
            self.now()
        )
        .await)
    }

    async fn revoke_x509_ca(&self, trust_domain: &TrustDomain, subject_key_id: &str) -> Result<()> {
        write_tx!(self, |tx| bundles::revoke_x509_ca(
            &mut tx,
            trust_domain,
            subject_key_id,
            self.now()
        )
        .await)
    }

    async fn taint_jwt_key(
        &self,
        trust_domain: &TrustDomain,
        authority_id: &str,
    ) -> Result<JwtSigningKey> {
        write_tx!(self, |tx| bundles::taint_jwt_key(
            &mut tx,
            trust_domain,
            authority_id,
            self.now()
        )
        .await)
    }

    async fn revoke_jwt_key(
        &self,
        trust_domain: &TrustDomain,
        authority_id: &str,
    ) -> Result<JwtSigningKey> {
        write_tx!(self, |tx| bundles::revoke_jwt_key(
            &mut tx,
            trust_domain,
            authority_id,
            self.now()
        )
        .await)
    }

    async fn count_registration_entries(&self, req: CountEntriesRequest) -> Result<u32> {
        let f = entry_filter(
            req.by_parent_id,
            req.by_spiffe_id,
            req.by_selectors,
            req.by_federates_with,
            req.by_hint,
            req.by_downstream,
        );
        read_tx!(self, req.data_consistency, |tx| entries::count(&mut tx, &f)
            .await)
    }

    async fn create_registration_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry> {
        Ok(self.create_or_return_registration_entry(entry).await?.0)
    }

    async fn create_or_return_registration_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<(RegistrationEntry, bool)> {
        write_tx!(self, |tx| entries::create_or_return(
            &mut tx,
            entry,
            self.now()
        )
        .await)
    }

    async fn create_or_return_registration_entries(
        &self,
        entries_in: Vec<RegistrationEntry>,
    ) -> Result<Vec<BatchEntryResult>> {
        write_tx!(self, |tx| entries::create_or_return_batch(
            &mut tx,
            entries_in,
            self.now()
        )
        .await)
    }

    async fn delete_registration_entry(&self, entry_id: &str) -> Result<RegistrationEntry> {
        write_tx!(self, |tx| entries::delete(&mut tx, entry_id, self.now())
            .await)
    }

    async fn fetch_registration_entry(&self, entry_id: &str) -> Result<Option<RegistrationEntry>> {
        let ids = [entry_id.to_string()];
        let found = read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            entries::fetch_many(&mut tx, &ids).await
        })?;
        Ok(found.into_iter().next())
    }

    async fn fetch_registration_entries(
        &self,
        entry_ids: &[String],
    ) -> Result<HashMap<String, RegistrationEntry>> {
        let found = read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            entries::fetch_many(&mut tx, entry_ids).await
        })?;
        Ok(found.into_iter().map(|e| (e.entry_id.clone(), e)).collect())
    }

    async fn list_registration_entries(
        &self,
        req: ListEntriesRequest,
    ) -> Result<ListEntriesResponse> {
        check_page_size(req.pagination.as_ref())?;
        let f = entry_filter(
            req.by_parent_id,
            req.by_spiffe_id,
            req.by_selectors,
            req.by_federates_with,
            req.by_hint,
            req.by_downstream,
        );
        let (entries, pagination) = read_tx!(self, req.data_consistency, |tx| {
            entries::list(&mut tx, &f, req.pagination.as_ref()).await
        })?;
        Ok(ListEntriesResponse {
            entries,
            pagination,
        })
    }

    async fn prune_registration_entries(&self, expires_before: i64) -> Result<()> {
        write_tx!(self, |tx| entries::prune(
            &mut tx,
            expires_before,
            self.now()
        )
        .await)
    }

    async fn update_registration_entry(
        &self,
        entry: RegistrationEntry,
        mask: Option<EntryMask>,
    ) -> Result<RegistrationEntry> {
        write_tx!(self, |tx| entries::update(&mut tx, entry, mask, self.now())
            .await)
    }

    fn stream_all_registration_entries(&self, page_size: u32) -> BoxStream<'_, Result<EntryBlock>> {
        if let Some(src) = &self.inner.bulk {
            return super::bulk::entry_blocks(src.clone(), page_size);
        }
        let page_size = page_size.max(1);
        stream::try_unfold(Some(0i64), move |state| async move {
            let Some(after) = state else { return Ok(None) };
            let block = read_tx!(self, DataConsistency::RequireCurrent, |tx| {
                entries::list_block(&mut tx, after, page_size).await
            })?;
            let next = block
                .last_row_id()
                .filter(|_| block.len() == page_size as usize);
            Ok((!block.is_empty()).then_some((block, next)))
        })
        .boxed()
    }

    async fn list_registration_entry_events(
        &self,
        req: ListEventsRequest,
    ) -> Result<Vec<EntryEvent>> {
        let ev = self.list_events(EventTable::Entries, &req).await?;
        Ok(ev.into_iter().map(misc::entry_event).collect())
    }

    async fn prune_registration_entry_events(&self, older_than: Duration) -> Result<()> {
        self.prune_events(EventTable::Entries, older_than).await
    }

    async fn fetch_registration_entry_event(&self, event_id: u64) -> Result<EntryEvent> {
        Ok(misc::entry_event(
            self.fetch_event(EventTable::Entries, event_id).await?,
        ))
    }

    async fn create_registration_entry_event(&self, event: EntryEvent) -> Result<()> {
        self.create_event(EventTable::Entries, event.event_id, &event.entry_id)
            .await
    }

    async fn delete_registration_entry_event(&self, event_id: u64) -> Result<()> {
        self.delete_event(EventTable::Entries, event_id).await
    }

    async fn latest_registration_entry_event_id(&self) -> Result<Option<u64>> {
        self.latest_event(EventTable::Entries).await
    }

    async fn count_attested_nodes(&self, req: CountNodesRequest) -> Result<u32> {
        let f = nodes::NodeFilter {
            by_attestation_type: req.by_attestation_type,
            by_banned: req.by_banned,
            by_expires_before: req.by_expires_before,
            by_selector_match: req.by_selector_match,
            by_can_reattest: req.by_can_reattest,
            valid_at: None,
        };
        read_tx!(self, DataConsistency::RequireCurrent, |tx| nodes::count(
            &mut tx, &f
        )
        .await)
    }

    async fn create_attested_node(&self, node: AttestedNode) -> Result<AttestedNode> {
        write_tx!(self, |tx| nodes::create(&mut tx, node, self.now()).await)
    }

    async fn delete_attested_node(&self, spiffe_id: &SpiffeId) -> Result<AttestedNode> {
        write_tx!(self, |tx| nodes::delete(&mut tx, spiffe_id, self.now())
            .await)
    }

    async fn fetch_attested_node(&self, spiffe_id: &SpiffeId) -> Result<Option<AttestedNode>> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| nodes::fetch(
            &mut tx, spiffe_id
        )
        .await)
    }

    async fn list_attested_nodes(&self, req: ListNodesRequest) -> Result<ListNodesResponse> {
        check_page_size(req.pagination.as_ref())?;
        let fetch_selectors = req.fetch_selectors;
        let f = nodes::NodeFilter {
            by_attestation_type: req.by_attestation_type,
            by_banned: req.by_banned,
            by_expires_before: req.by_expires_before,
            by_selector_match: req.by_selector_match,
            by_can_reattest: req.by_can_reattest,
            valid_at: req.valid_at,
        };
        let (nodes, pagination) = read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            nodes::list(&mut tx, &f, fetch_selectors, req.pagination.as_ref()).await
        })?;
        Ok(ListNodesResponse { nodes, pagination })
    }

    async fn update_attested_node(
        &self,
        node: AttestedNode,
        mask: Option<NodeMask>,
    ) -> Result<AttestedNode> {
        write_tx!(self, |tx| nodes::update(&mut tx, node, mask, self.now())
            .await)
    }

    async fn prune_attested_expired_nodes(
        &self,
        expired_before: i64,
        include_non_reattestable: bool,
    ) -> Result<u32> {
        write_tx!(self, |tx| nodes::prune_expired(
            &mut tx,
            expired_before,
            include_non_reattestable,
            self.now()
        )
        .await)
    }

    fn stream_all_attested_nodes(
        &self,
        page_size: u32,
    ) -> BoxStream<'_, Result<Vec<AttestedNode>>> {
        let filter = nodes::NodeFilter::default();
        self.stream_pages(page_size, move |after, size| {
            let filter = filter.clone();
            async move {
                read_tx!(self, DataConsistency::RequireCurrent, |tx| {
                    nodes::list_page(&mut tx, &filter, true, after, Some(size)).await
                })
            }
        })
    }

    async fn list_attested_node_events(&self, req: ListEventsRequest) -> Result<Vec<NodeEvent>> {
        let ev = self.list_events(EventTable::Nodes, &req).await?;
        Ok(ev.into_iter().map(misc::node_event).collect())
    }

    async fn prune_attested_node_events(&self, older_than: Duration) -> Result<()> {
        self.prune_events(EventTable::Nodes, older_than).await
    }

    async fn fetch_attested_node_event(&self, event_id: u64) -> Result<NodeEvent> {
        Ok(misc::node_event(
            self.fetch_event(EventTable::Nodes, event_id).await?,
        ))
    }

    async fn create_attested_node_event(&self, event: NodeEvent) -> Result<()> {
        self.create_event(EventTable::Nodes, event.event_id, &event.spiffe_id)
            .await
    }

    async fn delete_attested_node_event(&self, event_id: u64) -> Result<()> {
        self.delete_event(EventTable::Nodes, event_id).await
    }

    async fn latest_attested_node_event_id(&self) -> Result<Option<u64>> {
        self.latest_event(EventTable::Nodes).await
    }

    async fn get_node_selectors(
        &self,
        spiffe_id: &SpiffeId,
        consistency: DataConsistency,
    ) -> Result<Vec<Selector>> {
        read_tx!(self, consistency, |tx| nodes::get_selectors(
            &mut tx, spiffe_id
        )
        .await)
    }

    async fn list_node_selectors(
        &self,
        req: ListNodeSelectorsRequest,
    ) -> Result<HashMap<SpiffeId, Vec<Selector>>> {
        read_tx!(self, req.data_consistency, |tx| nodes::list_selectors(
            &mut tx,
            req.valid_at
        )
        .await)
    }

    async fn set_node_selectors(
        &self,
        spiffe_id: &SpiffeId,
        selectors: Vec<Selector>,
    ) -> Result<()> {
        write_tx!(self, |tx| nodes::set_selectors(
            &mut tx,
            spiffe_id,
            &selectors,
            self.now()
        )
        .await)
    }

    async fn create_join_token(&self, token: JoinToken) -> Result<()> {
        if token.token.is_empty() || token.expiry == 0 {
            return Err(DataStoreError::InvalidArgument(
                "token and expiry are required".into(),
            ));
        }
        write_tx!(self, |tx| misc::create_join_token(
            &mut tx,
            &token,
            self.now()
        )
        .await)
    }

    async fn delete_join_token(&self, token: &str) -> Result<()> {
        write_tx!(self, |tx| misc::delete_join_token(&mut tx, token).await)
    }

    async fn fetch_join_token(&self, token: &str) -> Result<Option<JoinToken>> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            misc::fetch_join_token(&mut tx, token).await
        })
    }

    async fn prune_join_tokens(&self, expires_before: i64) -> Result<()> {
        write_tx!(self, |tx| misc::prune_join_tokens(&mut tx, expires_before)
            .await)
    }

    async fn create_federation_relationship(
        &self,
        fr: FederationRelationship,
    ) -> Result<FederationRelationship> {
        write_tx!(self, |tx| misc::create_federation_relationship(
            &mut tx,
            fr,
            self.now()
        )
        .await)
    }

    async fn fetch_federation_relationship(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Option<FederationRelationship>> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            misc::fetch_federation_relationship(&mut tx, trust_domain).await
        })
    }

    async fn list_federation_relationships(
        &self,
        pagination: Option<Pagination>,
    ) -> Result<ListFederationRelationshipsResponse> {
        check_page_size(pagination.as_ref())?;
        let (relationships, pagination) = read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            misc::list_federation_relationships(&mut tx, pagination.as_ref()).await
        })?;
        Ok(ListFederationRelationshipsResponse {
            relationships,
            pagination,
        })
    }

    async fn delete_federation_relationship(&self, trust_domain: &TrustDomain) -> Result<()> {
        write_tx!(self, |tx| misc::delete_federation_relationship(
            &mut tx,
            trust_domain
        )
        .await)
    }

    async fn update_federation_relationship(
        &self,
        fr: FederationRelationship,
        mask: FederationRelationshipMask,
    ) -> Result<FederationRelationship> {
        write_tx!(self, |tx| misc::update_federation_relationship(
            &mut tx,
            fr,
            mask,
            self.now()
        )
        .await)
    }

    async fn set_ca_journal(&self, journal: CaJournal) -> Result<CaJournal> {
        write_tx!(self, |tx| misc::set_ca_journal(
            &mut tx,
            journal,
            self.now()
        )
        .await)
    }

    async fn fetch_ca_journal(&self, active_x509_authority_id: &str) -> Result<Option<CaJournal>> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            misc::fetch_ca_journal(&mut tx, active_x509_authority_id).await
        })
    }

    async fn prune_ca_journals(&self, all_cas_expire_before: i64) -> Result<()> {
        write_tx!(self, |tx| misc::prune_ca_journals(
            &mut tx,
            all_cas_expire_before
        )
        .await)
    }

    async fn list_ca_journals(&self) -> Result<Vec<CaJournal>> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            misc::list_ca_journals(&mut tx).await
        })
    }

    async fn check_health(&self) -> Result<()> {
        SqlStore::check_health(self).await
    }
}

/// What entries and agents share: paging through a whole table, and the event tables.
impl SqlStore {
    /// Pages of `page_size` (at least 1) rows in row-ID order; `page(after, size)` reads the
    /// rows after row ID `after`, with their row IDs.
    fn stream_pages<'a, T, F, Fut>(
        &'a self,
        page_size: u32,
        page: F,
    ) -> BoxStream<'a, Result<Vec<T>>>
    where
        T: Send + 'a,
        F: Fn(i64, u32) -> Fut + Send + 'a,
        Fut: std::future::Future<Output = Result<Vec<(i64, T)>>> + Send + 'a,
    {
        let page_size = page_size.max(1);
        stream::try_unfold((Some(0i64), page), move |(state, page)| async move {
            let Some(after) = state else { return Ok(None) };
            let rows = page(after, page_size).await?;
            let Some((last, _)) = rows.last() else {
                return Ok(None);
            };
            let next = if rows.len() < page_size as usize {
                None
            } else {
                Some(*last)
            };
            Ok(Some((
                rows.into_iter().map(|(_, v)| v).collect(),
                (next, page),
            )))
        })
        .boxed()
    }

    async fn list_events(
        &self,
        table: EventTable,
        req: &ListEventsRequest,
    ) -> Result<Vec<(u64, String)>> {
        read_tx!(self, req.data_consistency, |tx| misc::list_events(
            &mut tx, table, req
        )
        .await)
    }

    async fn prune_events(&self, table: EventTable, older_than: Duration) -> Result<()> {
        let before = self.now() - older_than;
        write_tx!(self, |tx| misc::prune_events(&mut tx, table, before).await)
    }

    async fn fetch_event(&self, table: EventTable, event_id: u64) -> Result<(u64, String)> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            misc::fetch_event(&mut tx, table, event_id).await
        })
    }

    async fn create_event(&self, table: EventTable, event_id: u64, key: &str) -> Result<()> {
        write_tx!(self, |tx| {
            misc::create_event(&mut tx, table, event_id, key, self.now()).await
        })
    }

    async fn delete_event(&self, table: EventTable, event_id: u64) -> Result<()> {
        to_i64(event_id)?;
        write_tx!(self, |tx| misc::delete_event(&mut tx, table, event_id)
            .await)
    }

    async fn latest_event(&self, table: EventTable) -> Result<Option<u64>> {
        read_tx!(self, DataConsistency::RequireCurrent, |tx| {
            misc::latest_event(&mut tx, table).await
        })
    }
}
