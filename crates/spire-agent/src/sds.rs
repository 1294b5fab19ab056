//! Envoy's Secret Discovery Service (SDS v3) on the Workload API socket, as SPIRE 1.13 serves
//! it: the caller is attested from its connection exactly as for the Workload API (no
//! security header), and sees its X509-SVIDs as `TlsCertificate` secrets and the bundles as
//! validation contexts.
//!
//! Resource names: an SVID is named by its SPIFFE ID, and the first SVID also answers to
//! `default_svid_name`; a bundle is named by its trust domain ID (`spiffe://td`), the
//! agent's own bundle also answers to `default_bundle_name`, and `default_all_bundles_name`
//! is one validation context holding every bundle for Envoy's SPIFFE validator. An empty
//! name list means every SVID and bundle (never the default or all-bundles names). A name
//! that matches nothing fails the call with SPIRE's `InvalidArgument`.
//!
//! `StreamSecrets` follows SPIRE's state machine: a response when the subscription changes
//! or the requested names change, versions counted per stream from 1, a random nonce per
//! response, requests with a stale nonce ignored, NACKs logged. `FetchSecrets` answers
//! once with no version and no nonce; `DeltaSecrets` is not implemented (as in SPIRE).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use pbjson_types::{Any, Struct, value::Kind};
use spiffe_core::{Bundle, TrustDomain};
use spire_proto::envoy::config::core::v3 as core;
use spire_proto::envoy::extensions::transport_sockets::tls::v3 as tls;
use spire_proto::envoy::service::discovery::v3 as discovery;
use spire_proto::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
use tonic::{Request, Response, Status, Streaming};

use crate::core::cache::{Identity, WorkloadUpdate};
use crate::manager::Manager;
use crate::peertracker::CallerInfo;
use crate::workload_attestor::{WorkloadAttestError, WorkloadAttestation};

pub use spire_config::SdsConfig;

/// Node metadata key that overrides `disable_spiffe_cert_validation` per proxy.
pub const DISABLE_SPIFFE_CERT_VALIDATION_KEY: &str = "disable_spiffe_cert_validation";

/// Name of Envoy's SPIFFE certificate validator extension.
pub const SPIFFE_VALIDATOR_NAME: &str = "envoy.tls.cert_validator.spiffe";

const TYPE_PREFIX: &str = "type.googleapis.com/";

/// SDS failures, mapped once to gRPC statuses with SPIRE's codes and messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdsError {
    /// The connection carries no caller information.
    #[error("peer tracker watcher missing from context")]
    NoCaller,
    /// Attestation failed or the caller changed.
    #[error("{0}")]
    Attestation(#[from] WorkloadAttestError),
    /// Names that match no SVID or bundle of the caller (sorted, Go-quoted as a list).
    #[error("workload is not authorized for the requested identities {}", go_quoted_list(.0))]
    NotAuthorized(Vec<String>),
    /// A validation context for a trust domain whose bundle is unknown (root CA form).
    #[error("no bundle found for trust domain: {}", spire_gocompat::strconv::quote(.0))]
    NoBundle(String),
    /// The same, in the SPIFFE validator form.
    #[error("no bundle found for trust domain: {}", spire_gocompat::strconv::quote(.0))]
    NoBundleSpiffe(String),
    /// The all-bundles context asked of a proxy that cannot take the SPIFFE validator.
    #[error("unable to use \"SPIFFE validator\" on Envoy below 1.17")]
    ValidatorUnsupported,
    /// The delta protocol.
    #[error("Method is not implemented")]
    DeltaUnimplemented,
}

impl From<SdsError> for Status {
    fn from(e: SdsError) -> Status {
        let msg = e.to_string();
        match e {
            SdsError::NoCaller | SdsError::NoBundle(_) | SdsError::ValidatorUnsupported => {
                Status::internal(msg)
            }
            SdsError::Attestation(_) => Status::unauthenticated(msg),
            SdsError::NotAuthorized(_) => Status::invalid_argument(msg),
            SdsError::NoBundleSpiffe(_) => Status::not_found(msg),
            SdsError::DeltaUnimplemented => Status::unimplemented(msg),
        }
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|n| spire_gocompat::strconv::quote(n))
        .collect();
    format!("[{}]", quoted.join(" "))
}

fn any_of<M: prost::Message>(type_name: &str, msg: &M) -> Any {
    Any {
        type_url: format!("{TYPE_PREFIX}{type_name}"),
        value: msg.encode_to_vec().into(),
    }
}

fn inline(bytes: Vec<u8>) -> core::DataSource {
    core::DataSource {
        specifier: Some(core::data_source::Specifier::InlineBytes(bytes)),
    }
}

fn secret_any(secret: &tls::Secret) -> Any {
    any_of("envoy.extensions.transport_sockets.tls.v3.Secret", secret)
}

fn bundle_pem(bundle: &Bundle) -> Vec<u8> {
    spiffe_core::x509svid::certificates_to_pem(&bundle.x509_ders()).into_bytes()
}

/// The `TlsCertificate` secret of an identity: PEM chain and PKCS#8 PEM key.
fn tls_certificate(identity: &Identity, name: &str) -> Any {
    let key = spiffe_core::pem_encode("PRIVATE KEY", &identity.svid.key_pkcs8);
    secret_any(&tls::Secret {
        name: name.to_owned(),
        r#type: Some(tls::secret::Type::TlsCertificate(tls::TlsCertificate {
            certificate_chain: Some(inline(
                spiffe_core::x509svid::certificates_to_pem(&identity.svid.chain).into_bytes(),
            )),
            private_key: Some(inline(key.into_bytes())),
        })),
    })
}

fn validation_context(name: &str, ctx: tls::CertificateValidationContext) -> Any {
    secret_any(&tls::Secret {
        name: name.to_owned(),
        r#type: Some(tls::secret::Type::ValidationContext(ctx)),
    })
}

/// How validation contexts are built: plain trusted CAs, or Envoy's SPIFFE validator.
struct ContextBuilder<'a> {
    spiffe: bool,
    bundles: BTreeMap<&'a TrustDomain, &'a Bundle>,
}

impl<'a> ContextBuilder<'a> {
    fn new(spiffe: bool, upd: &'a WorkloadUpdate) -> Self {
        let mut bundles: BTreeMap<&TrustDomain, &Bundle> = upd
            .federated_bundles
            .iter()
            .map(|(td, b)| (td, b.as_ref()))
            .collect();
        if let Some(b) = &upd.bundle {
            bundles.insert(b.trust_domain(), b.as_ref());
        }
        Self { spiffe, bundles }
    }

    fn spiffe_context(trust_domains: Vec<tls::spiffe_cert_validator_config::TrustDomain>) -> Any {
        let config = tls::SpiffeCertValidatorConfig { trust_domains };
        any_of(
            "envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig",
            &config,
        )
    }

    fn one(&self, name: &str, td: &TrustDomain) -> Result<Any, SdsError> {
        let bundle = self.bundles.get(td).ok_or_else(|| {
            if self.spiffe {
                SdsError::NoBundleSpiffe(td.id_string())
            } else {
                SdsError::NoBundle(td.id_string())
            }
        })?;
        let ctx = if self.spiffe {
            let typed =
                Self::spiffe_context(vec![tls::spiffe_cert_validator_config::TrustDomain {
                    name: td.name().to_owned(),
                    trust_bundle: Some(inline(bundle_pem(bundle))),
                }]);
            tls::CertificateValidationContext {
                trusted_ca: None,
                custom_validator_config: Some(core::TypedExtensionConfig {
                    name: SPIFFE_VALIDATOR_NAME.to_owned(),
                    typed_config: Some(typed),
                }),
            }
        } else {
            tls::CertificateValidationContext {
                trusted_ca: Some(inline(bundle_pem(bundle))),
                custom_validator_config: None,
            }
        };
        Ok(validation_context(name, ctx))
    }

    fn all(&self, name: &str) -> Result<Any, SdsError> {
        if !self.spiffe {
            return Err(SdsError::ValidatorUnsupported);
        }
        // Sorted by trust domain name.
        let trust_domains = self
            .bundles
            .iter()
            .map(|(td, b)| tls::spiffe_cert_validator_config::TrustDomain {
                name: td.name().to_owned(),
                trust_bundle: Some(inline(bundle_pem(b))),
            })
            .collect();
        let typed = Self::spiffe_context(trust_domains);
        Ok(validation_context(
            name,
            tls::CertificateValidationContext {
                trusted_ca: None,
                custom_validator_config: Some(core::TypedExtensionConfig {
                    name: SPIFFE_VALIDATOR_NAME.to_owned(),
                    typed_config: Some(typed),
                }),
            },
        ))
    }
}

/// Go's `strconv.ParseBool` over a metadata value: a bool, or a string it accepts.
fn metadata_bool(meta: Option<&Struct>, key: &str) -> Option<bool> {
    match meta?.fields.get(key)?.kind.as_ref()? {
        Kind::BoolValue(b) => Some(*b),
        Kind::StringValue(s) => spire_gocompat::strconv::parse_bool(s).ok(),
        _ => None,
    }
}

/// SPIRE's `supportsSPIFFEAuthExtension`: Envoy above 1.17, or a proxy that does not say.
fn supports_spiffe_validator(node: Option<&core::Node>) -> bool {
    match node.and_then(|n| n.user_agent_version_type.as_ref()) {
        Some(core::node::UserAgentVersionType::UserAgentBuildVersion(b)) => {
            let (major, minor) = b
                .version
                .as_ref()
                .map_or((0, 0), |v| (v.major_number, v.minor_number));
            (major == 1 && minor > 17) || major > 1
        }
        _ => true,
    }
}

/// Whether the SPIFFE validator is used for `req` under `cfg`: the node's metadata may
/// override `disable_spiffe_cert_validation`; old Envoys never get it.
pub fn use_spiffe_validator(cfg: &SdsConfig, req: &discovery::DiscoveryRequest) -> bool {
    let node = req.node.as_ref();
    let disabled = metadata_bool(
        node.and_then(|n| n.metadata.as_ref()),
        DISABLE_SPIFFE_CERT_VALIDATION_KEY,
    )
    .unwrap_or(cfg.disable_spiffe_cert_validation);
    !disabled && supports_spiffe_validator(node)
}

/// SPIRE's `buildResponse`: the secrets `req` names (all SVIDs and bundles when it names
/// none) from `upd`. `nonce` is set on stream responses.
pub fn build_response(
    cfg: &SdsConfig,
    version_info: &str,
    nonce: String,
    req: &discovery::DiscoveryRequest,
    upd: &WorkloadUpdate,
) -> Result<discovery::DiscoveryResponse, SdsError> {
    let mut resp = discovery::DiscoveryResponse {
        version_info: version_info.to_owned(),
        resources: Vec::new(),
        canary: false,
        type_url: req.type_url.clone(),
        nonce,
    };
    let mut names: BTreeSet<&str> = req
        .resource_names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.is_empty())
        .collect();
    let all = names.is_empty();
    let builder = ContextBuilder::new(use_spiffe_validator(cfg, req), upd);

    // One of: the own bundle by ID (or everything), by the default name, or all bundles.
    if let Some(bundle) = &upd.bundle {
        let td = bundle.trust_domain();
        let id = td.id_string();
        if all || names.contains(id.as_str()) {
            resp.resources.push(builder.one(&id, td)?);
            names.remove(id.as_str());
        } else if names.contains(cfg.default_bundle_name.as_str()) {
            resp.resources
                .push(builder.one(&cfg.default_bundle_name, td)?);
            names.remove(cfg.default_bundle_name.as_str());
        } else if names.contains(cfg.default_all_bundles_name.as_str()) {
            resp.resources
                .push(builder.all(&cfg.default_all_bundles_name)?);
            names.remove(cfg.default_all_bundles_name.as_str());
        }
    }
    for td in upd.federated_bundles.keys() {
        let id = td.id_string();
        if all || names.contains(id.as_str()) {
            resp.resources.push(builder.one(&id, td)?);
            names.remove(id.as_str());
        }
    }
    for (i, identity) in upd.identities.iter().enumerate() {
        let id = identity.entry.spiffe_id.as_str();
        if all || names.contains(id) {
            resp.resources.push(tls_certificate(identity, id));
            names.remove(id);
        } else if i == 0 && names.contains(cfg.default_svid_name.as_str()) {
            resp.resources
                .push(tls_certificate(identity, &cfg.default_svid_name));
            names.remove(cfg.default_svid_name.as_str());
        }
    }
    if !names.is_empty() {
        return Err(SdsError::NotAuthorized(
            names.into_iter().map(str::to_owned).collect(),
        ));
    }
    Ok(resp)
}

/// SPIRE's `subListChanged`: another length, or a name not asked before.
fn names_changed(old: &[String], new: &[String]) -> bool {
    if old.len() != new.len() {
        return true;
    }
    let old: BTreeSet<&String> = old.iter().collect();
    new.iter().any(|n| !old.contains(n))
}

/// A fresh nonce: 4 random bytes in hex, as SPIRE.
fn next_nonce() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The SDS v3 handler.
#[derive(Debug, Clone)]
pub struct SdsService {
    manager: Arc<Manager>,
    attestation: Arc<WorkloadAttestation>,
    config: Arc<SdsConfig>,
}

impl SdsService {
    /// A handler over `manager` attesting callers with `attestation`.
    pub fn new(
        manager: Arc<Manager>,
        attestation: Arc<WorkloadAttestation>,
        config: SdsConfig,
    ) -> Self {
        Self {
            manager,
            attestation,
            config: Arc::new(config),
        }
    }

    async fn selectors<T>(
        &self,
        req: &Request<T>,
    ) -> Result<Vec<spire_plugin::Selector>, SdsError> {
        let caller = req
            .extensions()
            .get::<CallerInfo>()
            .cloned()
            .ok_or(SdsError::NoCaller)?;
        self.attestation.attest(&caller).await.map_err(|e| {
            tracing::error!(subsystem_name = "endpoints", pid = caller.pid, error = %e, "Failed to attest the workload");
            SdsError::from(e)
        })
    }
}

/// One stream's state (SPIRE's `StreamSecrets` loop).
#[derive(Debug, Default)]
struct StreamState {
    version: u64,
    last_nonce: String,
    last_node: Option<core::Node>,
    last_req: Option<discovery::DiscoveryRequest>,
}

impl StreamState {
    fn version_info(&self) -> String {
        self.version.to_string()
    }

    /// Takes a request; whether a response is due (given an update is at hand).
    fn on_request(&mut self, mut req: discovery::DiscoveryRequest) -> bool {
        tracing::debug!(subsystem_name = "sds_api", resource_names = ?req.resource_names, version_info = req.version_info.as_str(), nonce = req.response_nonce.as_str(), "Received StreamSecrets request");
        if let Some(detail) = &req.error_detail {
            tracing::error!(subsystem_name = "sds_api", resource_names = ?req.resource_names, error = detail.message.as_str(), "Envoy reported errors applying secrets");
        }
        if !self.last_nonce.is_empty() {
            if self.last_nonce != req.response_nonce {
                tracing::warn!(
                    subsystem_name = "sds_api",
                    nonce = req.response_nonce.as_str(),
                    expect = self.last_nonce.as_str(),
                    "Received unexpected nonce; ignoring request"
                );
                return false;
            }
            let version = self.version_info();
            if req.version_info.is_empty() || req.version_info != version {
                tracing::error!(
                    subsystem_name = "sds_api",
                    version_info = req.version_info.as_str(),
                    expect = version.as_str(),
                    "Client rejected expected version and rolled back"
                );
            }
            if req.node.is_none() {
                req.node = self.last_node.clone();
            }
        }
        let send = self
            .last_req
            .as_ref()
            .is_none_or(|last| names_changed(&last.resource_names, &req.resource_names));
        self.last_req = Some(req);
        send
    }

    /// The response to the last request for `upd`, remembering its nonce and node.
    fn respond(
        &mut self,
        cfg: &SdsConfig,
        upd: &WorkloadUpdate,
    ) -> Option<Result<discovery::DiscoveryResponse, SdsError>> {
        let req = self.last_req.as_ref()?;
        let resp = match build_response(cfg, &self.version_info(), next_nonce(), req, upd) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        tracing::debug!(
            subsystem_name = "sds_api",
            version_info = resp.version_info.as_str(),
            nonce = resp.nonce.as_str(),
            count = resp.resources.len(),
            "Sending StreamSecrets response"
        );
        self.last_nonce = resp.nonce.clone();
        if let Some(node) = &req.node {
            self.last_node = Some(node.clone());
        }
        Some(Ok(resp))
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type StreamSecretsStream = ResponseStream<discovery::DiscoveryResponse>;
    type DeltaSecretsStream = ResponseStream<discovery::DeltaDiscoveryResponse>;

    async fn stream_secrets(
        &self,
        req: Request<Streaming<discovery::DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let selectors = self.selectors(&req).await?;
        let mut sub = self.manager.workloads().subscribe(&selectors);
        let mut requests = req.into_inner();
        let cfg = self.config.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            sub.wait_ready().await;
            let mut state = StreamState::default();
            // The subscription's first update.
            let mut upd = sub.latest();
            state.version = 1;
            loop {
                let due = tokio::select! {
                    next = requests.next() => match next {
                        Some(Ok(r)) => state.on_request(r),
                        Some(Err(status)) => {
                            if status.code() != tonic::Code::Cancelled {
                                tracing::error!(subsystem_name = "sds_api", error = %status.message(), "Received error from stream secrets server");
                            }
                            return;
                        }
                        None => return,
                    },
                    changed = sub.changed() => {
                        if !changed {
                            return;
                        }
                        upd = sub.latest();
                        state.version += 1;
                        true
                    }
                    _ = tx.closed() => return,
                };
                if !due {
                    continue;
                }
                let sent = match state.respond(&cfg, &upd) {
                    None => continue,
                    Some(Ok(resp)) => tx.send(Ok(resp)).await,
                    Some(Err(e)) => {
                        tracing::error!(subsystem_name = "sds_api", error = %e, "Error building stream secrets response");
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delta_secrets(
        &self,
        _req: Request<Streaming<discovery::DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(SdsError::DeltaUnimplemented.into())
    }

    async fn fetch_secrets(
        &self,
        req: Request<discovery::DiscoveryRequest>,
    ) -> Result<Response<discovery::DiscoveryResponse>, Status> {
        let selectors = self.selectors(&req).await?;
        let upd = self.manager.workloads().fetch_workload_update(&selectors);
        let resp = build_response(&self.config, "", String::new(), req.get_ref(), &upd)
            .map_err(|e| {
                tracing::error!(subsystem_name = "sds_api", resource_names = ?req.get_ref().resource_names, error = %e, "Error building fetch secrets response");
                e
            })?;
        tracing::debug!(
            subsystem_name = "sds_api",
            count = resp.resources.len(),
            "Sending FetchSecrets response"
        );
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
#[path = "sds_tests.rs"]
mod tests;
