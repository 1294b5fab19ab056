//! The records the datastore keeps, and the requests and answers of its
//! operations. They follow SPIRE's `datastore` package, with Rust names and
//! typed fields where SPIRE's APIs validate the values.
//!
//! Times are Unix seconds (`i64`) wherever SPIRE stores or compares whole
//! seconds.

use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::Selector;

/// A registration entry (`registered_entries` with its `selectors`,
/// `dns_names` and `federated_registration_entries` rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationEntry {
    /// Entry ID. Empty on create asks the store to generate a UUIDv4.
    pub entry_id: String,
    /// SPIFFE ID of the workloads (or downstream servers) the entry describes.
    pub spiffe_id: SpiffeId,
    /// SPIFFE ID of the agent or node alias the entry is attached to.
    pub parent_id: SpiffeId,
    /// Selectors, in stored order. Never empty for a stored entry.
    pub selectors: Vec<Selector>,
    /// X509-SVID TTL in seconds (column `ttl`); 0 means the server default.
    pub x509_svid_ttl: i32,
    /// JWT-SVID TTL in seconds; 0 means the server default.
    pub jwt_svid_ttl: i32,
    /// Trust domains the entry federates with (their bundles must exist).
    pub federates_with: Vec<TrustDomain>,
    /// Whether SVIDs of this entry may use the admin APIs.
    pub admin: bool,
    /// Whether the entry describes a downstream SPIRE server.
    pub downstream: bool,
    /// Expiry in Unix seconds (column `expiry`); 0 means never.
    pub entry_expiry: i64,
    /// DNS names, in stored order.
    pub dns_names: Vec<String>,
    /// Incremented by every update. Ignored on create.
    pub revision_number: i64,
    /// Whether the SVID is exported to an SVIDStore.
    pub store_svid: bool,
    /// Free-form hint passed to workloads.
    pub hint: String,
    /// Creation time in Unix seconds, rounded to the nearest second. Ignored on create.
    pub created_at: i64,
}

impl RegistrationEntry {
    /// An entry with the given IDs and selectors and every other field empty.
    pub fn new(spiffe_id: SpiffeId, parent_id: SpiffeId, selectors: Vec<Selector>) -> Self {
        Self {
            entry_id: String::new(),
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            federates_with: Vec::new(),
            admin: false,
            downstream: false,
            entry_expiry: 0,
            dns_names: Vec::new(),
            revision_number: 0,
            store_svid: false,
            hint: String::new(),
            created_at: 0,
        }
    }
}

/// Which entry fields an update writes (SPIRE's `RegistrationEntryMask`).
/// `None` in [`crate::DataStore::update_registration_entry`] means all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct EntryMask {
    pub selectors: bool,
    pub parent_id: bool,
    pub spiffe_id: bool,
    pub x509_svid_ttl: bool,
    pub jwt_svid_ttl: bool,
    pub federates_with: bool,
    pub admin: bool,
    pub downstream: bool,
    pub entry_expiry: bool,
    pub dns_names: bool,
    pub store_svid: bool,
    pub hint: bool,
}

impl EntryMask {
    /// Every field.
    pub const ALL: EntryMask = EntryMask {
        selectors: true,
        parent_id: true,
        spiffe_id: true,
        x509_svid_ttl: true,
        jwt_svid_ttl: true,
        federates_with: true,
        admin: true,
        downstream: true,
        entry_expiry: true,
        dns_names: true,
        store_svid: true,
        hint: true,
    };
}

/// An attested node, i.e. an agent (`attested_node_entries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedNode {
    /// The agent's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Node attestor name (column `data_type`), e.g. `join_token`.
    pub attestation_data_type: String,
    /// Serial number of the current agent SVID; empty means banned.
    pub cert_serial_number: String,
    /// NotAfter of the current agent SVID, Unix seconds (column `expires_at`).
    pub cert_not_after: i64,
    /// Serial number of an SVID being rotated to.
    pub new_cert_serial_number: String,
    /// NotAfter of the SVID being rotated to, 0 when none (column `new_expires_at`, NULL).
    pub new_cert_not_after: i64,
    /// Node selectors (`node_resolver_map_entries`), filled only when asked for.
    pub selectors: Vec<Selector>,
    /// Whether the agent may re-attest.
    pub can_reattest: bool,
}

impl AttestedNode {
    /// Whether the node is banned (its serial number is empty).
    pub fn is_banned(&self) -> bool {
        self.cert_serial_number.is_empty()
    }
}

/// Which node fields an update writes (SPIRE's `AttestedNodeMask`; the
/// attestation type is never updated, as in SPIRE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct NodeMask {
    pub cert_serial_number: bool,
    pub cert_not_after: bool,
    pub new_cert_serial_number: bool,
    pub new_cert_not_after: bool,
    pub can_reattest: bool,
}

impl NodeMask {
    /// Every field.
    pub const ALL: NodeMask = NodeMask {
        cert_serial_number: true,
        cert_not_after: true,
        new_cert_serial_number: true,
        new_cert_not_after: true,
        can_reattest: true,
    };
}

/// A root CA certificate (or chain) in a stored bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootCa {
    /// DER bytes: one certificate, or several concatenated.
    pub der: Vec<u8>,
    /// Whether the key was tainted.
    pub tainted: bool,
}

/// A JWT signing key in a stored bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtSigningKey {
    /// Key ID (`kid`).
    pub kid: String,
    /// PKIX (SubjectPublicKeyInfo) DER.
    pub pkix: Vec<u8>,
    /// Expiry in Unix seconds, 0 for none.
    pub not_after: i64,
    /// Whether the key was tainted.
    pub tainted: bool,
}

/// A trust bundle as stored: the `bundles` row holds the protobuf encoding of
/// `spire.common.Bundle`, and this type is its lossless image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBundle {
    /// Trust domain (stored as its ID, `spiffe://<name>`).
    pub trust_domain: TrustDomain,
    /// X.509 authorities.
    pub root_cas: Vec<RootCa>,
    /// JWT authorities.
    pub jwt_signing_keys: Vec<JwtSigningKey>,
    /// Refresh hint in seconds, 0 when unset.
    pub refresh_hint: i64,
    /// Sequence number.
    pub sequence_number: u64,
}

impl StoredBundle {
    /// An empty bundle for a trust domain.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            root_cas: Vec::new(),
            jwt_signing_keys: Vec::new(),
            refresh_hint: 0,
            sequence_number: 0,
        }
    }
}

/// Which bundle fields an update writes (SPIRE's `BundleMask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct BundleMask {
    pub root_cas: bool,
    pub jwt_signing_keys: bool,
    pub refresh_hint: bool,
    pub sequence_number: bool,
}

impl BundleMask {
    /// Every field.
    pub const ALL: BundleMask = BundleMask {
        root_cas: true,
        jwt_signing_keys: true,
        refresh_hint: true,
        sequence_number: true,
    };
}

/// What happens to entries that federate with a bundle being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteMode {
    /// Refuse to delete while entries federate with it (SPIRE's default).
    #[default]
    Restrict,
    /// Delete those entries too.
    Delete,
    /// Remove the trust domain from those entries' `federates_with`.
    Dissociate,
}

/// A join token (`join_tokens`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The token.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expiry: i64,
}

/// How a federated trust domain's bundle endpoint is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleEndpointProfile {
    /// `https_web`: Web PKI.
    HttpsWeb,
    /// `https_spiffe`: SPIFFE authentication against the endpoint's SPIFFE ID.
    HttpsSpiffe {
        /// Expected SPIFFE ID of the endpoint server.
        endpoint_spiffe_id: SpiffeId,
    },
}

impl BundleEndpointProfile {
    /// The stored name, `https_web` or `https_spiffe`.
    pub fn name(&self) -> &'static str {
        match self {
            BundleEndpointProfile::HttpsWeb => "https_web",
            BundleEndpointProfile::HttpsSpiffe { .. } => "https_spiffe",
        }
    }
}

/// A federation relationship (`federated_trust_domains`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationRelationship {
    /// The federated trust domain (stored by name).
    pub trust_domain: TrustDomain,
    /// URL of its bundle endpoint.
    pub bundle_endpoint_url: BundleEndpointUrl,
    /// Endpoint profile.
    pub bundle_endpoint_profile: BundleEndpointProfile,
    /// The trust domain's bundle: on create/update, `Some` overwrites the stored
    /// bundle; on reads, the stored bundle if any.
    pub trust_domain_bundle: Option<StoredBundle>,
}

/// A bundle endpoint URL as the operator wrote it.
///
/// SPIRE stores and prints the URL in Go's rendering, which keeps the host's case, an
/// explicit default port and dot segments; `url::Url` would normalise all of those. So the
/// text is kept as given, and only checked to be a parseable absolute URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpointUrl {
    text: String,
    url: url::Url,
}

impl BundleEndpointUrl {
    /// Parses `text`, keeping it unchanged for storage and display.
    pub fn parse(text: &str) -> std::result::Result<Self, url::ParseError> {
        Ok(Self {
            url: url::Url::parse(text)?,
            text: text.to_owned(),
        })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed (normalised) URL, for fetching.
    pub fn url(&self) -> &url::Url {
        &self.url
    }
}

impl std::fmt::Display for BundleEndpointUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Which federation relationship fields an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct FederationRelationshipMask {
    pub bundle_endpoint_url: bool,
    pub bundle_endpoint_profile: bool,
    pub trust_domain_bundle: bool,
}

impl FederationRelationshipMask {
    /// Every field.
    pub const ALL: FederationRelationshipMask = FederationRelationshipMask {
        bundle_endpoint_url: true,
        bundle_endpoint_profile: true,
        trust_domain_bundle: true,
    };
}

/// A CA journal (`ca_journals`): one server's X.509 CA and JWT key history,
/// an encoded `Entries` message of SPIRE's journal proto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaJournal {
    /// Row ID; 0 on [`crate::DataStore::set_ca_journal`] creates a new record.
    pub id: u64,
    /// Encoded journal.
    pub data: Vec<u8>,
    /// Subject key ID (hex) of the server's active X.509 authority.
    pub active_x509_authority_id: String,
}

/// A change to a registration entry (`registered_entries_events`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryEvent {
    /// Event ID (monotonic per database, with possible gaps).
    pub event_id: u64,
    /// ID of the entry that was created, updated or deleted.
    pub entry_id: String,
}

/// A change to an attested node or its selectors (`attested_node_entries_events`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeEvent {
    /// Event ID.
    pub event_id: u64,
    /// SPIFFE ID (as stored) of the node that changed.
    pub spiffe_id: String,
}

/// Whether a read may be served by the read replica (`ro_connection_string`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataConsistency {
    /// Read from the primary.
    #[default]
    RequireCurrent,
    /// The replica is fine; the answer may be stale.
    TolerateStale,
}

/// How a set of selectors (or trust domains) in a filter is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchBehavior {
    /// The record's set equals the filter's set.
    #[default]
    Exact,
    /// The record's set is a non-empty subset of the filter's set.
    Subset,
    /// The record's set contains all of the filter's set.
    Superset,
    /// The record's set shares at least one element with the filter's set.
    Any,
}

/// Filter by selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BySelectors {
    /// Selectors; must not be empty.
    pub selectors: Vec<Selector>,
    /// Match mode.
    pub match_behavior: MatchBehavior,
}

/// Filter by federated trust domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByFederatesWith {
    /// Trust domains; an empty list disables the filter (as in SPIRE).
    pub trust_domains: Vec<TrustDomain>,
    /// Match mode.
    pub match_behavior: MatchBehavior,
}

/// A page request: `token` is the opaque token of the previous page (empty
/// for the first page), `page_size` must be positive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pagination {
    /// Token returned with the previous page; empty to start.
    pub token: String,
    /// Maximum number of records.
    pub page_size: u32,
}

/// Filters of [`crate::DataStore::list_registration_entries`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListEntriesRequest {
    /// Replica or primary.
    pub data_consistency: DataConsistency,
    /// Only entries with this parent ID.
    pub by_parent_id: Option<SpiffeId>,
    /// Only entries with this SPIFFE ID.
    pub by_spiffe_id: Option<SpiffeId>,
    /// Only entries whose selectors match.
    pub by_selectors: Option<BySelectors>,
    /// Only entries whose federated trust domains match.
    pub by_federates_with: Option<ByFederatesWith>,
    /// Only entries with this hint.
    pub by_hint: Option<String>,
    /// `Some(true)`: only downstream entries (`Some(false)` does not filter, as in SPIRE).
    pub by_downstream: Option<bool>,
    /// Paging; `None` lists everything.
    pub pagination: Option<Pagination>,
}

/// Answer of [`crate::DataStore::list_registration_entries`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListEntriesResponse {
    /// The entries, ordered by row ID.
    pub entries: Vec<RegistrationEntry>,
    /// With paging: the token of the next page, empty once a page comes back empty.
    pub pagination: Option<Pagination>,
}

/// Filters of [`crate::DataStore::count_registration_entries`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct CountEntriesRequest {
    pub data_consistency: DataConsistency,
    pub by_parent_id: Option<SpiffeId>,
    pub by_spiffe_id: Option<SpiffeId>,
    pub by_selectors: Option<BySelectors>,
    pub by_federates_with: Option<ByFederatesWith>,
    pub by_hint: Option<String>,
    pub by_downstream: Option<bool>,
}

/// Filters of [`crate::DataStore::list_attested_nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListNodesRequest {
    /// Only nodes attested with this attestor.
    pub by_attestation_type: Option<String>,
    /// `Some(true)`: only banned nodes; `Some(false)`: only nodes not banned.
    pub by_banned: Option<bool>,
    /// Only nodes whose SVID expires before this time (Unix seconds).
    pub by_expires_before: Option<i64>,
    /// Only nodes whose node selectors match.
    pub by_selector_match: Option<BySelectors>,
    /// Only nodes that can (or cannot) re-attest.
    pub by_can_reattest: Option<bool>,
    /// Only nodes whose SVID is still valid at this time (Unix seconds).
    pub valid_at: Option<i64>,
    /// Fill in [`AttestedNode::selectors`].
    pub fetch_selectors: bool,
    /// Paging; `None` lists everything.
    pub pagination: Option<Pagination>,
}

/// Answer of [`crate::DataStore::list_attested_nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListNodesResponse {
    /// The nodes, ordered by row ID.
    pub nodes: Vec<AttestedNode>,
    /// With paging: the token of the next page, empty once a page comes back empty.
    pub pagination: Option<Pagination>,
}

/// Filters of [`crate::DataStore::count_attested_nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct CountNodesRequest {
    pub by_attestation_type: Option<String>,
    pub by_banned: Option<bool>,
    pub by_expires_before: Option<i64>,
    pub by_selector_match: Option<BySelectors>,
    pub by_can_reattest: Option<bool>,
}

/// Request of the event listings: at most one of the bounds may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListEventsRequest {
    /// Replica or primary.
    pub data_consistency: DataConsistency,
    /// Only events with a greater ID (0: no bound).
    pub greater_than_event_id: u64,
    /// Only events with a smaller ID (0: no bound).
    pub less_than_event_id: u64,
}

/// Request of [`crate::DataStore::list_node_selectors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListNodeSelectorsRequest {
    /// Replica or primary.
    pub data_consistency: DataConsistency,
    /// Only nodes whose SVID expires after this time (Unix seconds).
    pub valid_at: Option<i64>,
}

/// Answer of [`crate::DataStore::list_bundles`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListBundlesResponse {
    /// Bundles, ordered by row ID.
    pub bundles: Vec<StoredBundle>,
    /// With paging: the next token (empty when the page was empty).
    pub pagination: Option<Pagination>,
}

/// Answer of [`crate::DataStore::list_federation_relationships`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFederationRelationshipsResponse {
    /// Relationships, ordered by row ID.
    pub relationships: Vec<FederationRelationship>,
    /// With paging: the next token (empty when the page was empty).
    pub pagination: Option<Pagination>,
}
