//! Plugin traits for spire-rs, one per SPIRE plugin type, shaped after the services of
//! SPIRE's plugin SDK so that a host for external (go-plugin) plugins can implement the same
//! traits as the built-in plugins.
//!
//! - Server: [`KeyManager`], [`ServerNodeAttestor`], [`UpstreamAuthority`], [`Notifier`],
//!   [`BundlePublisher`], [`CredentialComposer`].
//! - Agent: [`KeyManager`] (same service), [`AgentNodeAttestor`], [`WorkloadAttestor`],
//!   [`SvidStore`].
//!
//! The DataStore is not here: SPIRE only supports its built-in SQL store, which lives in
//! `spire-datastore`.
//!
//! Architecture invariant: this crate depends on `spiffe-core` only; it knows nothing about
//! the server, the agent, gRPC or configuration files.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use spiffe_core::{JwsAlgorithm, KeyType, PublicKey, SpiffeId, TrustDomain};

mod interner;
mod selector;

pub use interner::{Interner, SelectorKey, selector_key, split_selector_key, write_selector_key};
pub use selector::{Selector, SelectorError};

/// The status codes a plugin can fail with; they map one to one onto gRPC codes, as the
/// plugin SDK's errors do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Bad input from the caller.
    InvalidArgument,
    /// The caller is not allowed (e.g. an attestation that failed).
    PermissionDenied,
    /// The thing asked for does not exist.
    NotFound,
    /// It already exists.
    AlreadyExists,
    /// Not in a state that allows the call.
    FailedPrecondition,
    /// The plugin does not offer this operation.
    Unimplemented,
    /// A dependency is down; retry later.
    Unavailable,
    /// The operation gave up before it completed (e.g. polling that ran out of attempts).
    DeadlineExceeded,
    /// Anything else.
    Internal,
}

impl Code {
    /// The gRPC status code number (`google.rpc.Code`) this code travels as.
    pub fn grpc(self) -> i32 {
        match self {
            Code::InvalidArgument => 3,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::FailedPrecondition => 9,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::DeadlineExceeded => 4,
        }
    }

    /// The code for a gRPC status code number, the ones without a counterpart folded into
    /// the nearest (`OutOfRange` is bad input, `Unauthenticated` a refusal, `Aborted` a
    /// state conflict; anything else `Internal`).
    pub fn from_grpc(code: i32) -> Code {
        match code {
            3 | 11 => Code::InvalidArgument,
            5 => Code::NotFound,
            6 => Code::AlreadyExists,
            7 | 16 => Code::PermissionDenied,
            9 | 10 => Code::FailedPrecondition,
            12 => Code::Unimplemented,
            4 => Code::DeadlineExceeded,
            14 => Code::Unavailable,
            _ => Code::Internal,
        }
    }
}

/// An error from a plugin: a code and a message, as the plugin SDK reports them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    /// What kind of failure.
    pub code: Code,
    /// Human-readable message, shown to operators.
    pub message: String,
}

impl PluginError {
    /// Builds an error.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// `InvalidArgument`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    /// `PermissionDenied`.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }
    /// `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    /// `Internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    /// `Unimplemented`.
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::Unimplemented, message)
    }
    /// Prefixes the message, as SPIRE's plugin wrappers do (`"<plugin>: <message>"`).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// SPIRE's plugin facade prefix, `<type in lower case>(<name>): `, added unless the
    /// message already has it (a bare `<name>: ` prefix is replaced).
    pub fn facade_prefixed(mut self, plugin_type: &str, name: &str) -> Self {
        let prefix = format!("{}({name}): ", plugin_type.to_ascii_lowercase());
        if !self.message.starts_with(&prefix) {
            let bare = format!("{name}: ");
            let rest = self.message.strip_prefix(&bare).unwrap_or(&self.message);
            self.message = format!("{prefix}{rest}");
        }
        self
    }
}

/// Result alias for plugin calls.
pub type PluginResult<T> = Result<T, PluginError>;

// === KeyManager ===

/// A public key held by a KeyManager (`spire.plugin.*.keymanager.v1.PublicKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedKey {
    /// The key ID, e.g. `x509-CA-A` or `agent-svid-B`.
    pub id: String,
    /// The key type.
    pub key_type: KeyType,
    /// The public key.
    pub public_key: PublicKey,
    /// A fingerprint that changes whenever the key changes.
    pub fingerprint: String,
}

/// What to sign with: the X.509 algorithm that fits the key, or a JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    /// DER ECDSA with the curve's hash, or RSA PKCS#1 v1.5 with SHA-256.
    X509,
    /// A JWS algorithm (ECDSA as fixed-length r||s).
    Jws(JwsAlgorithm),
}

/// A signature being made by [`Signer::sign_async`].
pub type SignFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = PluginResult<Vec<u8>>> + Send + 'a>>;

/// A handle that signs with one managed key. Signing is synchronous because it sits on hot
/// paths (every SVID and every certificate) and inside libraries that sign synchronously
/// (certificate builders, TLS); a remote KeyManager blocks inside `sign`, and also offers
/// [`Signer::sign_async`] for callers that can wait without blocking a thread.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The key ID in its KeyManager.
    fn key_id(&self) -> &str;
    /// The public key.
    fn public_key(&self) -> &PublicKey;
    /// Signs `message`.
    fn sign(&self, message: &[u8], kind: SignatureKind) -> PluginResult<Vec<u8>>;
    /// Whether signing is a call to another process (worth [`Signer::sign_async`]).
    fn is_remote(&self) -> bool {
        false
    }
    /// Signs `message` without blocking the calling thread (by default, [`Signer::sign`]).
    fn sign_async<'a>(&'a self, message: &'a [u8], kind: SignatureKind) -> SignFuture<'a> {
        Box::pin(std::future::ready(self.sign(message, kind)))
    }
}

/// A [`Signer`] over a key held in this process.
#[derive(Debug)]
pub struct LocalSigner {
    key_id: String,
    key: spiffe_core::PrivateKey,
}

impl LocalSigner {
    /// Wraps `key` under the ID `key_id`.
    pub fn new(key_id: impl Into<String>, key: spiffe_core::PrivateKey) -> Self {
        Self {
            key_id: key_id.into(),
            key,
        }
    }

    /// The private key.
    pub fn private_key(&self) -> &spiffe_core::PrivateKey {
        &self.key
    }
}

impl Signer for LocalSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }
    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }
    fn sign(&self, message: &[u8], kind: SignatureKind) -> PluginResult<Vec<u8>> {
        let result = match kind {
            SignatureKind::X509 => self.key.sign_x509(message),
            SignatureKind::Jws(alg) => self.key.sign_jws(alg, message),
        };
        result.map_err(|e| PluginError::internal(e.to_string()))
    }
}

/// `spire.plugin.server.keymanager.v1.KeyManager` and its agent twin.
#[async_trait]
pub trait KeyManager: Send + Sync + fmt::Debug {
    /// Generates (or replaces) the key `key_id`.
    async fn generate_key(&self, key_id: &str, key_type: KeyType) -> PluginResult<ManagedKey>;
    /// The key `key_id`, if it exists.
    async fn get_public_key(&self, key_id: &str) -> PluginResult<Option<ManagedKey>>;
    /// All keys.
    async fn get_public_keys(&self) -> PluginResult<Vec<ManagedKey>>;
    /// A signer for `key_id`; `NotFound` when there is no such key.
    async fn signer(&self, key_id: &str) -> PluginResult<Arc<dyn Signer>>;
}

// === NodeAttestor ===

/// The server side's way to send a challenge to the attesting agent and await its response.
#[async_trait]
pub trait Challenger: Send {
    /// Sends `challenge` to the agent; returns its response.
    async fn challenge(&mut self, challenge: Vec<u8>) -> PluginResult<Vec<u8>>;
}

/// The attributes of an attested agent (`AgentAttributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedAgent {
    /// The agent's SPIFFE ID.
    pub agent_id: SpiffeId,
    /// Selector values; the server gives them the attestor's name as type.
    pub selector_values: Vec<String>,
    /// Whether the agent may re-attest (instead of renewing).
    pub can_reattest: bool,
}

/// `spire.plugin.server.nodeattestor.v1.NodeAttestor`.
#[async_trait]
pub trait ServerNodeAttestor: Send + Sync + fmt::Debug {
    /// Attests an agent from its payload, challenging it as often as needed.
    async fn attest(
        &self,
        payload: Vec<u8>,
        challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent>;
}

/// The agent side's channel to the server during attestation.
#[async_trait]
pub trait AttestationExchange: Send {
    /// Sends data (the payload first, then challenge responses) and returns the server's
    /// next challenge, or `None` when the server has finished.
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>>;
}

/// `spire.plugin.agent.nodeattestor.v1.NodeAttestor`.
#[async_trait]
pub trait AgentNodeAttestor: Send + Sync + fmt::Debug {
    /// Produces the payload and answers challenges through `exchange`.
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()>;
}

// === WorkloadAttestor ===

/// `spire.plugin.agent.workloadattestor.v1.WorkloadAttestor`.
#[async_trait]
pub trait WorkloadAttestor: Send + Sync + fmt::Debug {
    /// Selector values (without the plugin-name type) for the process `pid`.
    async fn attest(&self, pid: i32) -> PluginResult<Vec<String>>;
}

// === UpstreamAuthority ===

/// What an UpstreamAuthority returns when it mints an intermediate CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamX509Ca {
    /// The minted CA certificate first, then the chain up to (not including) the roots.
    pub x509_ca_chain: Vec<Vec<u8>>,
    /// The upstream roots to publish in the bundle.
    pub upstream_x509_roots: Vec<Vec<u8>>,
}

/// A JWT authority as UpstreamAuthority, Notifier and BundlePublisher plugins see it
/// (`spire.plugin.types.JWTKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtKey {
    /// PKIX (SubjectPublicKeyInfo) DER.
    pub public_key: Vec<u8>,
    /// `kid`.
    pub key_id: String,
    /// Seconds since the epoch; 0 means it does not expire.
    pub expires_at: i64,
    /// Whether the key is tainted.
    pub tainted: bool,
}

/// The first answer of [`UpstreamAuthority::subscribe_to_local_bundle`]: the upstream's
/// X.509 roots and JWT keys now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamLocalBundle {
    /// The upstream X.509 roots.
    pub x509_roots: Vec<X509Authority>,
    /// The upstream JWT keys.
    pub jwt_keys: Vec<JwtKey>,
}

/// Where an UpstreamAuthority's later news goes (the upstream rotated its roots, or has
/// new JWT keys): the server's bundle.
pub trait UpstreamUpdates: Send + Sync + fmt::Debug {
    /// The upstream X.509 roots now (the whole set).
    fn x509_roots(&self, roots: Vec<X509Authority>);
    /// The upstream JWT keys now (the whole set).
    fn jwt_keys(&self, keys: Vec<JwtKey>);
}

/// `spire.plugin.server.upstreamauthority.v1.UpstreamAuthority`. Both calls answer at once
/// and keep telling `updates` what changes upstream afterwards, until the next call of the
/// same kind replaces them.
#[async_trait]
pub trait UpstreamAuthority: Send + Sync + fmt::Debug {
    /// Signs `csr` (DER) as an intermediate CA, asking for `preferred_ttl_secs`.
    async fn mint_x509_ca(
        &self,
        csr: &[u8],
        preferred_ttl_secs: i32,
        updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamX509Ca>;
    /// Publishes a JWT key upstream; returns the upstream JWT keys. `Unimplemented` means
    /// the upstream does not take JWT keys (the server then keeps the key in its own bundle).
    async fn publish_jwt_key(
        &self,
        key: &JwtKey,
        updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<Vec<JwtKey>>;
    /// `SubscribeToLocalBundle`: the upstream's roots and JWT keys now, then what changes
    /// afterwards to `updates`. The server asks once, 5 s after start; `Unimplemented`
    /// (the default) means there is nothing to follow beyond what minting brings.
    async fn subscribe_to_local_bundle(
        &self,
        updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamLocalBundle> {
        let _ = updates;
        Err(PluginError::new(
            Code::Unimplemented,
            "this upstream authority does not stream the local bundle",
        ))
    }
}

// === Notifier, BundlePublisher ===

/// An X.509 authority of a bundle (`spire.plugin.types.X509Certificate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Authority {
    /// DER certificate.
    pub der: Vec<u8>,
    /// Whether the authority is tainted.
    pub tainted: bool,
}

/// A trust bundle as plugins see it (`spire.plugin.types.Bundle`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginBundle {
    /// Trust domain name (`example.org`).
    pub trust_domain: String,
    /// X.509 authorities.
    pub x509_authorities: Vec<X509Authority>,
    /// JWT authorities.
    pub jwt_authorities: Vec<JwtKey>,
    /// Refresh hint in seconds.
    pub refresh_hint: i64,
    /// Sequence number.
    pub sequence_number: u64,
}

/// `spire.plugin.server.notifier.v1.Notifier`.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// The bundle was loaded at start-up; an error stops the server (NotifyAndAdvise).
    async fn bundle_loaded(&self, bundle: &PluginBundle) -> PluginResult<()>;
    /// The bundle changed (Notify).
    async fn bundle_updated(&self, bundle: &PluginBundle) -> PluginResult<()>;
}

/// `spire.plugin.server.bundlepublisher.v1.BundlePublisher`.
#[async_trait]
pub trait BundlePublisher: Send + Sync + fmt::Debug {
    /// Publishes the current bundle.
    async fn publish_bundle(&self, bundle: &PluginBundle) -> PluginResult<()>;
}

// === CredentialComposer ===

/// A distinguished name as CredentialComposers see it (Go's `pkix.Name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinguishedName {
    /// `C`.
    pub country: Vec<String>,
    /// `O`.
    pub organization: Vec<String>,
    /// `OU`.
    pub organizational_unit: Vec<String>,
    /// `L`.
    pub locality: Vec<String>,
    /// `ST`.
    pub province: Vec<String>,
    /// `street`.
    pub street_address: Vec<String>,
    /// `postalCode`.
    pub postal_code: Vec<String>,
    /// `serialNumber`.
    pub serial_number: String,
    /// `CN`.
    pub common_name: String,
    /// Other attributes as (dotted OID, string value).
    pub extra_names: Vec<(String, String)>,
}

/// An extra X.509 extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Extension {
    /// Dotted OID.
    pub oid: String,
    /// DER extension value.
    pub value: Vec<u8>,
    /// Critical flag.
    pub critical: bool,
}

/// What a CredentialComposer may change in an X509-SVID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct X509SvidAttributes {
    /// Subject.
    pub subject: DistinguishedName,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// Extra extensions.
    pub extra_extensions: Vec<X509Extension>,
}

/// What a CredentialComposer may change in an X.509 CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct X509CaAttributes {
    /// Subject.
    pub subject: DistinguishedName,
    /// Certificate policies (dotted OIDs).
    pub policy_identifiers: Vec<String>,
    /// Extra extensions.
    pub extra_extensions: Vec<X509Extension>,
}

/// The claims of a JWT-SVID, as a JSON object.
pub type JwtClaims = serde_json::Map<String, serde_json::Value>;

/// `spire.plugin.server.credentialcomposer.v1.CredentialComposer`. Every method defaults to
/// passing its input through unchanged, which is what `Unimplemented` means to SPIRE.
#[async_trait]
pub trait CredentialComposer: Send + Sync + fmt::Debug {
    /// ComposeServerX509CA.
    async fn compose_server_x509_ca(&self, a: X509CaAttributes) -> PluginResult<X509CaAttributes> {
        Ok(a)
    }
    /// ComposeServerX509SVID.
    async fn compose_server_x509_svid(
        &self,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        Ok(a)
    }
    /// ComposeAgentX509SVID.
    async fn compose_agent_x509_svid(
        &self,
        _id: &SpiffeId,
        _public_key: &PublicKey,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        Ok(a)
    }
    /// ComposeWorkloadX509SVID.
    async fn compose_workload_x509_svid(
        &self,
        _id: &SpiffeId,
        _public_key: &PublicKey,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        Ok(a)
    }
    /// ComposeWorkloadJWTSVID.
    async fn compose_workload_jwt_svid(
        &self,
        _id: &SpiffeId,
        claims: JwtClaims,
    ) -> PluginResult<JwtClaims> {
        Ok(claims)
    }
}

// === SVIDStore ===

/// An X509-SVID to store (`PutX509SVIDRequest`). Its `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSvid {
    /// SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// DER chain, leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    /// PKCS#8 private key.
    pub private_key: Vec<u8>,
    /// DER CA certificates of the SVID's trust domain.
    pub bundle: Vec<Vec<u8>>,
    /// Seconds since the epoch.
    pub expires_at: i64,
    /// Federated bundles by trust domain.
    pub federated_bundles: Vec<(TrustDomain, Vec<Vec<u8>>)>,
}

impl fmt::Debug for StoredSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// `spire.plugin.agent.svidstore.v1.SVIDStore`.
#[async_trait]
pub trait SvidStore: Send + Sync + fmt::Debug {
    /// Stores an SVID; `metadata` are the entry's selector values for this store.
    async fn put_x509_svid(&self, svid: &StoredSvid, metadata: &[String]) -> PluginResult<()>;
    /// Deletes an SVID.
    async fn delete_x509_svid(&self, metadata: &[String]) -> PluginResult<()>;
}

/// The plugin types of SPIRE, with the names used in `plugins {}` and the go-plugin magic
/// cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginType {
    /// `DataStore`.
    DataStore,
    /// `KeyManager`.
    KeyManager,
    /// `NodeAttestor`.
    NodeAttestor,
    /// `WorkloadAttestor`.
    WorkloadAttestor,
    /// `UpstreamAuthority`.
    UpstreamAuthority,
    /// `Notifier`.
    Notifier,
    /// `BundlePublisher`.
    BundlePublisher,
    /// `CredentialComposer`.
    CredentialComposer,
    /// `SVIDStore`.
    SvidStore,
}

impl PluginType {
    /// The name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginType::DataStore => "DataStore",
            PluginType::KeyManager => "KeyManager",
            PluginType::NodeAttestor => "NodeAttestor",
            PluginType::WorkloadAttestor => "WorkloadAttestor",
            PluginType::UpstreamAuthority => "UpstreamAuthority",
            PluginType::Notifier => "Notifier",
            PluginType::BundlePublisher => "BundlePublisher",
            PluginType::CredentialComposer => "CredentialComposer",
            PluginType::SvidStore => "SVIDStore",
        }
    }

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<PluginType> {
        [
            PluginType::DataStore,
            PluginType::KeyManager,
            PluginType::NodeAttestor,
            PluginType::WorkloadAttestor,
            PluginType::UpstreamAuthority,
            PluginType::Notifier,
            PluginType::BundlePublisher,
            PluginType::CredentialComposer,
            PluginType::SvidStore,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

impl fmt::Display for PluginType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Code, PluginError};

    #[test]
    fn facade_prefix_as_spire_adds_it() {
        let e = PluginError::internal("boom").facade_prefixed("NodeAttestor", "k8s_psat");
        assert_eq!(e.message, "nodeattestor(k8s_psat): boom");
        let again = e.clone().facade_prefixed("NodeAttestor", "k8s_psat");
        assert_eq!(again.message, "nodeattestor(k8s_psat): boom");
        let bare = PluginError::internal("x509pop: bad").facade_prefixed("NodeAttestor", "x509pop");
        assert_eq!(bare.message, "nodeattestor(x509pop): bad");
    }

    #[test]
    fn codes_travel_as_grpc_codes_and_back() {
        for c in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            assert_eq!(Code::from_grpc(c.grpc()), c);
        }
        assert_eq!(Code::from_grpc(16), Code::PermissionDenied);
        assert_eq!(Code::from_grpc(4), Code::DeadlineExceeded);
        assert_eq!(Code::from_grpc(2), Code::Internal);
        assert_eq!(Code::from_grpc(99), Code::Internal);
    }
}
