//! The `DataStore` trait: SPIRE's datastore interface in Rust.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::BoxStream;
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::Selector;

use crate::error::Result;
use crate::model::*;

/// Outcome of one entry of [`DataStore::create_or_return_registration_entries`]:
/// the stored entry and whether it already existed.
pub type BatchEntryResult = Result<(RegistrationEntry, bool)>;

/// Persistent storage of the SPIRE server's state, modelled on SPIRE's
/// `pkg/server/datastore.DataStore`. Every write runs in one transaction,
/// together with the event rows SPIRE writes for it.
///
/// Time arguments are Unix seconds unless stated otherwise.
#[async_trait::async_trait]
pub trait DataStore: Send + Sync + std::fmt::Debug {
    // ------------------------------------------------------------ bundles

    /// Merges the bundle into the stored one (adding root CAs and JWT keys it
    /// lacks, bumping the sequence number if anything was added); creates it
    /// if there is none. Returns the stored bundle.
    async fn append_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle>;
    /// Number of bundles.
    async fn count_bundles(&self) -> Result<u32>;
    /// Stores a new bundle (`AlreadyExists` if the trust domain has one).
    async fn create_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle>;
    /// Deletes a trust domain's bundle; `mode` says what happens to entries
    /// federating with it.
    async fn delete_bundle(&self, trust_domain: &TrustDomain, mode: DeleteMode) -> Result<()>;
    /// The bundle of a trust domain, if any.
    async fn fetch_bundle(&self, trust_domain: &TrustDomain) -> Result<Option<StoredBundle>>;
    /// Bundles, optionally paged.
    async fn list_bundles(&self, pagination: Option<Pagination>) -> Result<ListBundlesResponse>;
    /// Removes root CAs and JWT keys that expire at or before `expires_before`.
    /// Returns whether the bundle changed.
    async fn prune_bundle(&self, trust_domain: &TrustDomain, expires_before: i64) -> Result<bool>;
    /// Creates or replaces a bundle.
    async fn set_bundle(&self, bundle: StoredBundle) -> Result<StoredBundle>;
    /// Updates the masked fields of an existing bundle (`None`: all).
    async fn update_bundle(
        &self,
        bundle: StoredBundle,
        mask: Option<BundleMask>,
    ) -> Result<StoredBundle>;

    // ------------------------------------------------------------ keys

    /// Marks the root CA whose subject key ID (lowercase hex) matches as tainted.
    async fn taint_x509_ca(&self, trust_domain: &TrustDomain, subject_key_id: &str) -> Result<()>;
    /// Removes a tainted root CA.
    async fn revoke_x509_ca(&self, trust_domain: &TrustDomain, subject_key_id: &str) -> Result<()>;
    /// Marks a JWT key as tainted; returns it.
    async fn taint_jwt_key(
        &self,
        trust_domain: &TrustDomain,
        authority_id: &str,
    ) -> Result<JwtSigningKey>;
    /// Removes a tainted JWT key; returns it.
    async fn revoke_jwt_key(
        &self,
        trust_domain: &TrustDomain,
        authority_id: &str,
    ) -> Result<JwtSigningKey>;

    // ------------------------------------------------------------ entries

    /// Counts entries matching the filters.
    async fn count_registration_entries(&self, req: CountEntriesRequest) -> Result<u32>;
    /// Validates and stores an entry (a similar entry, same parent, SPIFFE ID
    /// and selectors, is returned instead of creating a duplicate).
    async fn create_registration_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry>;
    /// Like [`DataStore::create_registration_entry`]; the flag tells whether
    /// the entry already existed.
    async fn create_or_return_registration_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<(RegistrationEntry, bool)>;
    /// Creates many entries in ONE transaction. Each entry succeeds or fails
    /// on its own (a savepoint per entry); the outer error is for failures of
    /// the transaction itself.
    async fn create_or_return_registration_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<BatchEntryResult>>;
    /// Deletes an entry; returns it (`NotFound` if absent).
    async fn delete_registration_entry(&self, entry_id: &str) -> Result<RegistrationEntry>;
    /// An entry by ID.
    async fn fetch_registration_entry(&self, entry_id: &str) -> Result<Option<RegistrationEntry>>;
    /// Entries by ID (missing IDs are absent from the map).
    async fn fetch_registration_entries(
        &self,
        entry_ids: &[String],
    ) -> Result<HashMap<String, RegistrationEntry>>;
    /// Entries matching the filters, optionally paged.
    async fn list_registration_entries(
        &self,
        req: ListEntriesRequest,
    ) -> Result<ListEntriesResponse>;
    /// Deletes entries whose expiry is set and before `expires_before`.
    async fn prune_registration_entries(&self, expires_before: i64) -> Result<()>;
    /// Updates the masked fields (`None`: all), bumping the revision number.
    async fn update_registration_entry(
        &self,
        entry: RegistrationEntry,
        mask: Option<EntryMask>,
    ) -> Result<RegistrationEntry>;
    /// Every entry with its selectors, DNS names and federated trust
    /// domains, in blocks of up to `page_size`, ordered by row ID: for building an
    /// in-memory index. Note the last entry event ID first
    /// ([`DataStore::latest_registration_entry_event_id`]) and replay events
    /// after it once the stream ends.
    fn stream_all_registration_entries(
        &self,
        page_size: u32,
    ) -> BoxStream<'_, Result<crate::EntryBlock>>;

    // ------------------------------------------------------------ entry events

    /// Entry events, ordered by ID.
    async fn list_registration_entry_events(
        &self,
        req: ListEventsRequest,
    ) -> Result<Vec<EntryEvent>>;
    /// Deletes entry events created more than `older_than` ago.
    async fn prune_registration_entry_events(&self, older_than: Duration) -> Result<()>;
    /// One entry event (`NotFound` if absent).
    async fn fetch_registration_entry_event(&self, event_id: u64) -> Result<EntryEvent>;
    /// Writes an event row (with its ID if non-zero). For tests and repair.
    async fn create_registration_entry_event(&self, event: EntryEvent) -> Result<()>;
    /// Deletes an event row. For tests and repair.
    async fn delete_registration_entry_event(&self, event_id: u64) -> Result<()>;
    /// Highest entry event ID, if any event exists.
    async fn latest_registration_entry_event_id(&self) -> Result<Option<u64>>;

    // ------------------------------------------------------------ nodes

    /// Counts attested nodes matching the filters.
    async fn count_attested_nodes(&self, req: CountNodesRequest) -> Result<u32>;
    /// Stores a new attested node (its selectors are ignored: use
    /// [`DataStore::set_node_selectors`]).
    async fn create_attested_node(&self, node: AttestedNode) -> Result<AttestedNode>;
    /// Deletes a node and its selectors; returns it (`NotFound` if absent).
    async fn delete_attested_node(&self, spiffe_id: &SpiffeId) -> Result<AttestedNode>;
    /// A node by SPIFFE ID (without selectors).
    async fn fetch_attested_node(&self, spiffe_id: &SpiffeId) -> Result<Option<AttestedNode>>;
    /// Nodes matching the filters, optionally paged.
    async fn list_attested_nodes(&self, req: ListNodesRequest) -> Result<ListNodesResponse>;
    /// Updates the masked fields (`None`: all); returns the node.
    async fn update_attested_node(
        &self,
        node: AttestedNode,
        mask: Option<NodeMask>,
    ) -> Result<AttestedNode>;
    /// Deletes up to 1000 nodes whose SVID expired before `expired_before`,
    /// never banned ones, and non-reattestable ones only when asked. Returns
    /// how many were deleted.
    async fn prune_attested_expired_nodes(
        &self,
        expired_before: i64,
        include_non_reattestable: bool,
    ) -> Result<u32>;
    /// Every attested node with its selectors, in pages: for building an
    /// in-memory index (see [`DataStore::stream_all_registration_entries`]).
    fn stream_all_attested_nodes(&self, page_size: u32)
    -> BoxStream<'_, Result<Vec<AttestedNode>>>;

    // ------------------------------------------------------------ node events

    /// Node events, ordered by ID.
    async fn list_attested_node_events(&self, req: ListEventsRequest) -> Result<Vec<NodeEvent>>;
    /// Deletes node events created more than `older_than` ago.
    async fn prune_attested_node_events(&self, older_than: Duration) -> Result<()>;
    /// One node event (`NotFound` if absent).
    async fn fetch_attested_node_event(&self, event_id: u64) -> Result<NodeEvent>;
    /// Writes a node event row. For tests and repair.
    async fn create_attested_node_event(&self, event: NodeEvent) -> Result<()>;
    /// Deletes a node event row. For tests and repair.
    async fn delete_attested_node_event(&self, event_id: u64) -> Result<()>;
    /// Highest node event ID, if any event exists.
    async fn latest_attested_node_event_id(&self) -> Result<Option<u64>>;

    // ------------------------------------------------------------ node selectors

    /// A node's selectors.
    async fn get_node_selectors(
        &self,
        spiffe_id: &SpiffeId,
        consistency: DataConsistency,
    ) -> Result<Vec<Selector>>;
    /// Selectors of every node (of nodes still valid at `valid_at`).
    async fn list_node_selectors(
        &self,
        req: ListNodeSelectorsRequest,
    ) -> Result<HashMap<SpiffeId, Vec<Selector>>>;
    /// Replaces a node's selectors.
    async fn set_node_selectors(
        &self,
        spiffe_id: &SpiffeId,
        selectors: Vec<Selector>,
    ) -> Result<()>;

    // ------------------------------------------------------------ join tokens

    /// Stores a join token.
    async fn create_join_token(&self, token: JoinToken) -> Result<()>;
    /// Deletes a join token (`NotFound` if absent).
    async fn delete_join_token(&self, token: &str) -> Result<()>;
    /// A join token.
    async fn fetch_join_token(&self, token: &str) -> Result<Option<JoinToken>>;
    /// Deletes tokens expiring before `expires_before`.
    async fn prune_join_tokens(&self, expires_before: i64) -> Result<()>;

    // ------------------------------------------------------------ federation

    /// Stores a relationship (and its bundle, when given).
    async fn create_federation_relationship(
        &self,
        fr: FederationRelationship,
    ) -> Result<FederationRelationship>;
    /// A relationship with the stored bundle of its trust domain.
    async fn fetch_federation_relationship(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Option<FederationRelationship>>;
    /// Relationships, optionally paged.
    async fn list_federation_relationships(
        &self,
        pagination: Option<Pagination>,
    ) -> Result<ListFederationRelationshipsResponse>;
    /// Deletes a relationship (the bundle stays).
    async fn delete_federation_relationship(&self, trust_domain: &TrustDomain) -> Result<()>;
    /// Updates the masked fields.
    async fn update_federation_relationship(
        &self,
        fr: FederationRelationship,
        mask: FederationRelationshipMask,
    ) -> Result<FederationRelationship>;

    // ------------------------------------------------------------ CA journals

    /// Creates (id 0) or updates a CA journal.
    async fn set_ca_journal(&self, journal: CaJournal) -> Result<CaJournal>;
    /// The journal whose active X.509 authority ID matches.
    async fn fetch_ca_journal(&self, active_x509_authority_id: &str) -> Result<Option<CaJournal>>;
    /// Deletes journals all of whose authorities expire before the time.
    async fn prune_ca_journals(&self, all_cas_expire_before: i64) -> Result<()>;
    /// Every journal.
    async fn list_ca_journals(&self) -> Result<Vec<CaJournal>>;

    // ---- Health ----

    /// Whether the database answers now, bounded in time: what readiness reports.
    async fn check_health(&self) -> Result<()>;
}
