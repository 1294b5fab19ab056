//! SPIRE's datastore call metrics (`pkg/common/telemetry/server/datastore`): every
//! datastore call counted as `datastore_<entity>_<op>` with its `status` label and
//! `_elapsed_time` timer, under SPIRE's key parts. Calls SPIRE's wrapper does not count
//! (our own streaming reads, event ID lookups, health checks) pass straight through. The
//! wrapper is installed only when a telemetry sink is configured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use spiffe_core::{SpiffeId, TrustDomain};
use spire_datastore::*;
use spire_plugin::Selector;
use spire_telemetry::{CallCounter, Metrics};

/// Go's `status.Code` of a datastore error: SPIRE's SQL store returns gRPC statuses for
/// these and plain errors (code Unknown) for the rest.
fn code(e: &DataStoreError) -> tonic::Code {
    match e {
        DataStoreError::NotFound(_) => tonic::Code::NotFound,
        DataStoreError::AlreadyExists(_) => tonic::Code::AlreadyExists,
        DataStoreError::InvalidArgument(_) => tonic::Code::InvalidArgument,
        DataStoreError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
        _ => tonic::Code::Unknown,
    }
}

/// A datastore whose calls are counted.
#[derive(Debug)]
pub struct MetricsDataStore {
    ds: Arc<dyn DataStore>,
    metrics: Metrics,
}

impl MetricsDataStore {
    /// `ds` counted on `metrics`; `ds` itself when no sink is configured.
    pub fn wrap(ds: Arc<dyn DataStore>, metrics: &Metrics) -> Arc<dyn DataStore> {
        if metrics.enabled() {
            Arc::new(MetricsDataStore {
                ds,
                metrics: metrics.clone(),
            })
        } else {
            ds
        }
    }

    /// `telemetry.StartCall` under `datastore`.
    fn start(&self, parts: &[&str]) -> CallCounter {
        let mut key = Vec::with_capacity(parts.len() + 1);
        key.push("datastore");
        key.extend_from_slice(parts);
        self.metrics.start_call(&key)
    }
}

/// `callCounter.Done(&err)`.
fn done<T>(call: CallCounter, result: &Result<T>) {
    call.done(match result {
        Ok(_) => tonic::Code::Ok,
        Err(e) => code(e),
    });
}

#[async_trait::async_trait]
impl DataStore for MetricsDataStore {
    async fn append_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle> {
        let call = self.start(&["bundle", "append"]);
        let result = self.ds.append_bundle(bundle).await;
        done(call, &result);
        result
    }

    async fn count_bundles(&self) -> Result<u32> {
        let call = self.start(&["bundle", "count"]);
        let result = self.ds.count_bundles().await;
        done(call, &result);
        result
    }

    async fn create_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle> {
        let call = self.start(&["bundle", "create"]);
        let result = self.ds.create_bundle(bundle).await;
        done(call, &result);
        result
    }

    async fn delete_bundle(&self, trust_domain: &TrustDomain, mode: DeleteMode) -> Result<()> {
        let call = self.start(&["bundle", "delete"]);
        let result = self.ds.delete_bundle(trust_domain, mode).await;
        done(call, &result);
        result
    }

    async fn fetch_bundle(&self, trust_domain: &TrustDomain) -> Result<Option<StoredBundle>> {
        let call = self.start(&["bundle", "fetch"]);
        let result = self.ds.fetch_bundle(trust_domain).await;
        done(call, &result);
        result
    }

    async fn list_bundles(&self, pagination: Option<Pagination>) -> Result<ListBundlesResponse> {
        let call = self.start(&["bundle", "list"]);
        let result = self.ds.list_bundles(pagination).await;
        done(call, &result);
        result
    }

    async fn prune_bundle(&self, trust_domain: &TrustDomain, expires_before: i64) -> Result<bool> {
        let call = self.start(&["bundle", "prune"]);
        let result = self.ds.prune_bundle(trust_domain, expires_before).await;
        done(call, &result);
        result
    }

    async fn set_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle> {
        let call = self.start(&["bundle", "set"]);
        let result = self.ds.set_bundle(bundle).await;
        done(call, &result);
        result
    }

    async fn update_bundle(
        &self,
        bundle: StoredBundle,
        mask: Option<BundleMask>,
    ) -> Result<StoredBundle> {
        let call = self.start(&["bundle", "update"]);
        let result = self.ds.update_bundle(bundle, mask).await;
        done(call, &result);
        result
    }

    async fn taint_x509_ca(&self, trust_domain: &TrustDomain, subject_key_id: &str) -> Result<()> {
        let call = self.start(&["bundle", "x509", "taint"]);
        let result = self.ds.taint_x509_ca(trust_domain, subject_key_id).await;
        done(call, &result);
        result
    }

    async fn revoke_x509_ca(&self, trust_domain: &TrustDomain, subject_key_id: &str) -> Result<()> {
        let call = self.start(&["bundle", "x509", "revoke"]);
        let result = self.ds.revoke_x509_ca(trust_domain, subject_key_id).await;
        done(call, &result);
        result
    }

    async fn taint_jwt_key(
        &self,
        trust_domain: &TrustDomain,
        authority_id: &str,
    ) -> Result<JwtSigningKey> {
        let call = self.start(&["bundle", "jwt", "taint"]);
        let result = self.ds.taint_jwt_key(trust_domain, authority_id).await;
        done(call, &result);
        result
    }

    async fn revoke_jwt_key(
        &self,
        trust_domain: &TrustDomain,
        authority_id: &str,
    ) -> Result<JwtSigningKey> {
        let call = self.start(&["bundle", "jwt", "revoke"]);
        let result = self.ds.revoke_jwt_key(trust_domain, authority_id).await;
        done(call, &result);
        result
    }

    async fn count_registration_entries(&self, req: CountEntriesRequest) -> Result<u32> {
        let call = self.start(&["registration_entry", "count"]);
        let result = self.ds.count_registration_entries(req).await;
        done(call, &result);
        result
    }

    async fn create_registration_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry> {
        let call = self.start(&["registration_entry", "create"]);
        let result = self.ds.create_registration_entry(entry).await;
        done(call, &result);
        result
    }

    async fn create_or_return_registration_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<(RegistrationEntry, bool)> {
        let call = self.start(&["registration_entry", "create"]);
        let result = self.ds.create_or_return_registration_entry(entry).await;
        done(call, &result);
        result
    }

    async fn create_or_return_registration_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<BatchEntryResult>> {
        // SPIRE creates a batch one entry at a time: one count per entry.
        let calls: Vec<CallCounter> = entries
            .iter()
            .map(|_| self.start(&["registration_entry", "create"]))
            .collect();
        let result = self.ds.create_or_return_registration_entries(entries).await;
        match &result {
            Ok(each) => {
                for (call, r) in calls.into_iter().zip(each) {
                    done(call, r);
                }
            }
            Err(_) => {
                for call in calls {
                    done(call, &result);
                }
            }
        }
        result
    }

    async fn delete_registration_entry(&self, entry_id: &str) -> Result<RegistrationEntry> {
        let call = self.start(&["registration_entry", "delete"]);
        let result = self.ds.delete_registration_entry(entry_id).await;
        done(call, &result);
        result
    }

    async fn fetch_registration_entry(&self, entry_id: &str) -> Result<Option<RegistrationEntry>> {
        let call = self.start(&["registration_entry", "fetch"]);
        let result = self.ds.fetch_registration_entry(entry_id).await;
        done(call, &result);
        result
    }

    async fn fetch_registration_entries(
        &self,
        entry_ids: &[String],
    ) -> Result<HashMap<String, RegistrationEntry>> {
        let call = self.start(&["registration_entry", "fetch"]);
        let result = self.ds.fetch_registration_entries(entry_ids).await;
        done(call, &result);
        result
    }

    async fn list_registration_entries(
        &self,
        req: ListEntriesRequest,
    ) -> Result<ListEntriesResponse> {
        let call = self.start(&["registration_entry", "list"]);
        let result = self.ds.list_registration_entries(req).await;
        done(call, &result);
        result
    }

    async fn prune_registration_entries(&self, expires_before: i64) -> Result<()> {
        let call = self.start(&["registration_entry", "prune"]);
        let result = self.ds.prune_registration_entries(expires_before).await;
        done(call, &result);
        result
    }

    async fn update_registration_entry(
        &self,
        entry: RegistrationEntry,
        mask: Option<EntryMask>,
    ) -> Result<RegistrationEntry> {
        let call = self.start(&["registration_entry", "update"]);
        let result = self.ds.update_registration_entry(entry, mask).await;
        done(call, &result);
        result
    }

    fn stream_all_registration_entries(
        &self,
        page_size: u32,
    ) -> BoxStream<'_, Result<spire_datastore::EntryBlock>> {
        self.ds.stream_all_registration_entries(page_size)
    }

    async fn list_registration_entry_events(
        &self,
        req: ListEventsRequest,
    ) -> Result<Vec<EntryEvent>> {
        let call = self.start(&["registration_entry_event", "list"]);
        let result = self.ds.list_registration_entry_events(req).await;
        done(call, &result);
        result
    }

    async fn prune_registration_entry_events(&self, older_than: Duration) -> Result<()> {
        let call = self.start(&["registration_entry_event", "prune"]);
        let result = self.ds.prune_registration_entry_events(older_than).await;
        done(call, &result);
        result
    }

    async fn fetch_registration_entry_event(&self, event_id: u64) -> Result<EntryEvent> {
        let call = self.start(&["registration_entry_event", "fetch"]);
        let result = self.ds.fetch_registration_entry_event(event_id).await;
        done(call, &result);
        result
    }

    async fn create_registration_entry_event(&self, event: EntryEvent) -> Result<()> {
        let call = self.start(&["registration_entry_event", "create"]);
        let result = self.ds.create_registration_entry_event(event).await;
        done(call, &result);
        result
    }

    async fn delete_registration_entry_event(&self, event_id: u64) -> Result<()> {
        let call = self.start(&["registration_entry_event", "delete"]);
        let result = self.ds.delete_registration_entry_event(event_id).await;
        done(call, &result);
        result
    }

    async fn latest_registration_entry_event_id(&self) -> Result<Option<u64>> {
        self.ds.latest_registration_entry_event_id().await
    }

    async fn count_attested_nodes(&self, req: CountNodesRequest) -> Result<u32> {
        let call = self.start(&["node", "count"]);
        let result = self.ds.count_attested_nodes(req).await;
        done(call, &result);
        result
    }

    async fn create_attested_node(&self, node: AttestedNode) -> Result<AttestedNode> {
        let call = self.start(&["node", "create"]);
        let result = self.ds.create_attested_node(node).await;
        done(call, &result);
        result
    }

    async fn delete_attested_node(&self, spiffe_id: &SpiffeId) -> Result<AttestedNode> {
        let call = self.start(&["node", "delete"]);
        let result = self.ds.delete_attested_node(spiffe_id).await;
        done(call, &result);
        result
    }

    async fn fetch_attested_node(&self, spiffe_id: &SpiffeId) -> Result<Option<AttestedNode>> {
        let call = self.start(&["node", "fetch"]);
        let result = self.ds.fetch_attested_node(spiffe_id).await;
        done(call, &result);
        result
    }

    async fn list_attested_nodes(&self, req: ListNodesRequest) -> Result<ListNodesResponse> {
        let call = self.start(&["node", "list"]);
        let result = self.ds.list_attested_nodes(req).await;
        done(call, &result);
        result
    }

    async fn update_attested_node(
        &self,
        node: AttestedNode,
        mask: Option<NodeMask>,
    ) -> Result<AttestedNode> {
        let call = self.start(&["node", "update"]);
        let result = self.ds.update_attested_node(node, mask).await;
        done(call, &result);
        result
    }

    async fn prune_attested_expired_nodes(
        &self,
        expired_before: i64,
        include_non_reattestable: bool,
    ) -> Result<u32> {
        let call = self.start(&["node", "prune"]);
        let result = self
            .ds
            .prune_attested_expired_nodes(expired_before, include_non_reattestable)
            .await;
        done(call, &result);
        result
    }

    fn stream_all_attested_nodes(
        &self,
        page_size: u32,
    ) -> BoxStream<'_, Result<Vec<AttestedNode>>> {
        self.ds.stream_all_attested_nodes(page_size)
    }

    async fn list_attested_node_events(&self, req: ListEventsRequest) -> Result<Vec<NodeEvent>> {
        let call = self.start(&["node_event", "list"]);
        let result = self.ds.list_attested_node_events(req).await;
        done(call, &result);
        result
    }

    async fn prune_attested_node_events(&self, older_than: Duration) -> Result<()> {
        let call = self.start(&["node_event", "prune"]);
        let result = self.ds.prune_attested_node_events(older_than).await;
        done(call, &result);
        result
    }

    async fn fetch_attested_node_event(&self, event_id: u64) -> Result<NodeEvent> {
        let call = self.start(&["node_event", "fetch"]);
        let result = self.ds.fetch_attested_node_event(event_id).await;
        done(call, &result);
        result
    }

    async fn create_attested_node_event(&self, event: NodeEvent) -> Result<()> {
        let call = self.start(&["node_event", "create"]);
        let result = self.ds.create_attested_node_event(event).await;
        done(call, &result);
        result
    }

    async fn delete_attested_node_event(&self, event_id: u64) -> Result<()> {
        let call = self.start(&["node_event", "delete"]);
        let result = self.ds.delete_attested_node_event(event_id).await;
        done(call, &result);
        result
    }

    async fn latest_attested_node_event_id(&self) -> Result<Option<u64>> {
        self.ds.latest_attested_node_event_id().await
    }

    async fn get_node_selectors(
        &self,
        spiffe_id: &SpiffeId,
        consistency: DataConsistency,
    ) -> Result<Vec<Selector>> {
        let call = self.start(&["node", "selectors", "fetch"]);
        let result = self.ds.get_node_selectors(spiffe_id, consistency).await;
        done(call, &result);
        result
    }

    async fn list_node_selectors(
        &self,
        req: ListNodeSelectorsRequest,
    ) -> Result<HashMap<SpiffeId, Vec<Selector>>> {
        let call = self.start(&["node", "selectors", "list"]);
        let result = self.ds.list_node_selectors(req).await;
        done(call, &result);
        result
    }

    async fn set_node_selectors(
        &self,
        spiffe_id: &SpiffeId,
        selectors: Vec<Selector>,
    ) -> Result<()> {
        let call = self.start(&["node", "selectors", "set"]);
        let result = self.ds.set_node_selectors(spiffe_id, selectors).await;
        done(call, &result);
        result
    }

    async fn create_join_token(&self, token: JoinToken) -> Result<()> {
        let call = self.start(&["join_token", "create"]);
        let result = self.ds.create_join_token(token).await;
        done(call, &result);
        result
    }

    async fn delete_join_token(&self, token: &str) -> Result<()> {
        let call = self.start(&["join_token", "delete"]);
        let result = self.ds.delete_join_token(token).await;
        done(call, &result);
        result
    }

    async fn fetch_join_token(&self, token: &str) -> Result<Option<JoinToken>> {
        let call = self.start(&["join_token", "fetch"]);
        let result = self.ds.fetch_join_token(token).await;
        done(call, &result);
        result
    }

    async fn prune_join_tokens(&self, expires_before: i64) -> Result<()> {
        let call = self.start(&["join_token", "prune"]);
        let result = self.ds.prune_join_tokens(expires_before).await;
        done(call, &result);
        result
    }

    async fn create_federation_relationship(
        &self,
        fr: FederationRelationship,
    ) -> Result<FederationRelationship> {
        let call = self.start(&["federation_relationship", "create"]);
        let result = self.ds.create_federation_relationship(fr).await;
        done(call, &result);
        result
    }

    async fn fetch_federation_relationship(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Option<FederationRelationship>> {
        let call = self.start(&["federation_relationship", "fetch"]);
        let result = self.ds.fetch_federation_relationship(trust_domain).await;
        done(call, &result);
        result
    }

    async fn list_federation_relationships(
        &self,
        pagination: Option<Pagination>,
    ) -> Result<ListFederationRelationshipsResponse> {
        let call = self.start(&["federation_relationship", "list"]);
        let result = self.ds.list_federation_relationships(pagination).await;
        done(call, &result);
        result
    }

    async fn delete_federation_relationship(&self, trust_domain: &TrustDomain) -> Result<()> {
        let call = self.start(&["federation_relationship", "delete"]);
        let result = self.ds.delete_federation_relationship(trust_domain).await;
        done(call, &result);
        result
    }

    async fn update_federation_relationship(
        &self,
        fr: FederationRelationship,
        mask: FederationRelationshipMask,
    ) -> Result<FederationRelationship> {
        let call = self.start(&["federation_relationship", "update"]);
        let result = self.ds.update_federation_relationship(fr, mask).await;
        done(call, &result);
        result
    }

    async fn set_ca_journal(&self, journal: CaJournal) -> Result<CaJournal> {
        let call = self.start(&["ca_journal", "set"]);
        let result = self.ds.set_ca_journal(journal).await;
        done(call, &result);
        result
    }

    async fn fetch_ca_journal(&self, active_x509_authority_id: &str) -> Result<Option<CaJournal>> {
        let call = self.start(&["ca_journal", "fetch"]);
        let result = self.ds.fetch_ca_journal(active_x509_authority_id).await;
        done(call, &result);
        result
    }

    async fn prune_ca_journals(&self, all_cas_expire_before: i64) -> Result<()> {
        let call = self.start(&["ca_journal", "prune"]);
        let result = self.ds.prune_ca_journals(all_cas_expire_before).await;
        done(call, &result);
        result
    }

    async fn list_ca_journals(&self) -> Result<Vec<CaJournal>> {
        let call = self.start(&["ca_journal", "list"]);
        let result = self.ds.list_ca_journals().await;
        done(call, &result);
        result
    }

    async fn check_health(&self) -> Result<()> {
        self.ds.check_health().await
    }
}
