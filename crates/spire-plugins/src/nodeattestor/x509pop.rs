//! `x509pop`: X.509 proof of possession, wire-compatible with SPIRE's plugin.
//!
//! The agent sends `{"certificates": [<DER>...]}` (leaf first); the server verifies the chain
//! to its CA bundle (external_pki mode) or to the server's own X.509 bundle (spiffe mode),
//! sends a nonce challenge (`{"rsa_signature": ...}` or `{"ecdsa_signature": ...}`), and the
//! agent answers with its own nonce and a signature over SHA-256(challenge || response):
//! ECDSA as raw r and s, RSA as PSS with SHA-256. The agent ID is
//! `/spire/agent/x509pop/<sha1 fingerprint of the leaf>` by default.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_lc_rs::rand::SecureRandom as _;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair, RsaPssSaltLength};
use serde::{Deserialize, Serialize};
use spiffe_core::keys::{Curve, PublicKeyKind};
use spiffe_core::{PrivateKey, PublicKey, TrustDomain, x509svid};
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::template::{PathTemplate, Value};

/// The plugin name, also the selector type.
pub const PLUGIN_NAME: &str = "x509pop";
const NONCE_LEN: usize = 32;

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }

    pub(super) mod list {
        use super::*;
        pub(in super::super) fn serialize<S: Serializer>(
            v: &[Vec<u8>],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|c| STANDARD.encode(c)))
        }
        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<Vec<u8>>, D::Error> {
            let v = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
            v.iter()
                .map(|s| {
                    STANDARD
                        .decode(s.as_bytes())
                        .map_err(serde::de::Error::custom)
                })
                .collect()
        }
    }
}

/// The attestation payload.
#[derive(Debug, Serialize, Deserialize)]
struct AttestationData {
    #[serde(with = "b64::list", default)]
    certificates: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct NonceChallenge {
    #[serde(with = "b64", default)]
    nonce: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
struct Challenge {
    rsa_signature: Option<NonceChallenge>,
    ecdsa_signature: Option<NonceChallenge>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RsaResponse {
    #[serde(with = "b64", default)]
    nonce: Vec<u8>,
    #[serde(with = "b64", default)]
    signature: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct EcdsaResponse {
    #[serde(with = "b64", default)]
    nonce: Vec<u8>,
    #[serde(with = "b64", default)]
    r: Vec<u8>,
    #[serde(with = "b64", default)]
    s: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct Response {
    rsa_signature: Option<RsaResponse>,
    ecdsa_signature: Option<EcdsaResponse>,
}

fn nonce() -> PluginResult<Vec<u8>> {
    let mut n = vec![0u8; NONCE_LEN];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| PluginError::internal("unable to generate nonce"))?;
    Ok(n)
}

/// `challenge || response`, the message both sides sign and verify (SPIRE signs its SHA-256).
fn combined(challenge: &[u8], response: &[u8]) -> Result<Vec<u8>, String> {
    if challenge.len() != NONCE_LEN {
        return Err("invalid challenge nonce".into());
    }
    if response.len() != NONCE_LEN {
        return Err("invalid response nonce".into());
    }
    Ok([challenge, response].concat())
}

/// SHA-1 fingerprint of a DER certificate, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der,
    ))
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

// === server ===

/// `plugin_data` of the server's `x509pop` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerConfig {
    /// `external_pki` (default) or `spiffe`.
    #[serde(default)]
    pub mode: String,
    /// SVID path prefix in spiffe mode (default `/spire-exchange`).
    #[serde(default)]
    pub spiffe_prefix: Option<String>,
    /// One CA bundle file.
    #[serde(default)]
    pub ca_bundle_path: String,
    /// Several CA bundle files.
    #[serde(default)]
    pub ca_bundle_paths: Vec<String>,
    /// Go-template of the agent path.
    #[serde(default)]
    pub agent_path_template: String,
    /// Maximum intermediates accepted in the payload (default 4).
    #[serde(default)]
    pub max_intermediates: Option<usize>,
    /// Largest RSA key accepted, in bits (default 8192).
    #[serde(default)]
    pub max_rsa_key_size: Option<usize>,
}

/// Supplies the server's own X.509 authorities (spiffe mode).
pub type TrustBundleFn = Arc<dyn Fn() -> Vec<Vec<u8>> + Send + Sync>;

/// The server half of `x509pop`.
pub struct X509PopServer {
    trust_domain: TrustDomain,
    spiffe_mode: bool,
    svid_prefix: String,
    ca_bundle: Vec<Vec<u8>>,
    template: PathTemplate,
    own_bundle: Option<TrustBundleFn>,
    max_intermediates: usize,
    max_rsa_bits: usize,
}

impl std::fmt::Debug for X509PopServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509PopServer")
            .field("spiffe_mode", &self.spiffe_mode)
            .finish_non_exhaustive()
    }
}

impl X509PopServer {
    /// Builds the plugin; `own_bundle` is required in spiffe mode.
    pub fn new(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        own_bundle: Option<TrustBundleFn>,
    ) -> PluginResult<Self> {
        let mode = if config.mode.is_empty() {
            "external_pki"
        } else {
            config.mode.as_str()
        };
        let spiffe_mode = match mode {
            "external_pki" => false,
            "spiffe" => true,
            _ => {
                return Err(PluginError::invalid_argument(
                    "mode can only be either spiffe or external_pki",
                ));
            }
        };
        let mut ca_bundle = Vec::new();
        if spiffe_mode {
            if !config.ca_bundle_path.is_empty() || !config.ca_bundle_paths.is_empty() {
                return Err(PluginError::invalid_argument(
                    "you can not use ca_bundle_path or ca_bundle_paths in spiffe mode",
                ));
            }
            if own_bundle.is_none() {
                return Err(PluginError::internal(
                    "IdentityProvider host service is required",
                ));
            }
        } else {
            if !config.ca_bundle_path.is_empty() && !config.ca_bundle_paths.is_empty() {
                return Err(PluginError::invalid_argument(
                    "only one of ca_bundle_path or ca_bundle_paths can be configured, not both",
                ));
            }
            let paths: Vec<&String> = if config.ca_bundle_path.is_empty() {
                config.ca_bundle_paths.iter().collect()
            } else {
                vec![&config.ca_bundle_path]
            };
            if paths.is_empty() {
                return Err(PluginError::invalid_argument(
                    "one of ca_bundle_path or ca_bundle_paths must be configured",
                ));
            }
            for p in paths {
                let text = fs::read_to_string(p).map_err(|e| {
                    PluginError::invalid_argument(format!("unable to load trust bundle {p:?}: {e}"))
                })?;
                let certs = x509svid::parse_pem_certificates(&text).map_err(|e| {
                    PluginError::invalid_argument(format!("unable to load trust bundle {p:?}: {e}"))
                })?;
                ca_bundle.extend(certs);
            }
        }
        let default_template = if spiffe_mode {
            "/{{ .PluginName }}/{{ .SVIDPathTrimmed }}"
        } else {
            "/{{ .PluginName }}/{{ .Fingerprint }}"
        };
        let template_text = if config.agent_path_template.is_empty() {
            default_template
        } else {
            config.agent_path_template.as_str()
        };
        let template = PathTemplate::parse(template_text).map_err(|_| {
            PluginError::invalid_argument(format!(
                "failed to parse agent svid template: {:?}",
                config.agent_path_template
            ))
        })?;
        let mut svid_prefix = config
            .spiffe_prefix
            .clone()
            .unwrap_or_else(|| "/spire-exchange/".into());
        if !svid_prefix.ends_with('/') {
            svid_prefix.push('/');
        }
        Ok(Self {
            trust_domain,
            spiffe_mode,
            svid_prefix,
            ca_bundle,
            template,
            own_bundle,
            max_intermediates: config.max_intermediates.unwrap_or(4),
            max_rsa_bits: config.max_rsa_key_size.unwrap_or(8192),
        })
    }
}

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::invalid_argument(msg)
}

fn denied(msg: impl Into<String>) -> PluginError {
    PluginError::permission_denied(msg)
}

#[async_trait]
impl ServerNodeAttestor for X509PopServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        if payload.is_empty() {
            return Err(invalid("missing attestation payload"));
        }
        let data: AttestationData = serde_json::from_slice(&payload)
            .map_err(|e| invalid(format!("failed to unmarshal data: {e}")))?;
        let Some((leaf_der, intermediates)) = data.certificates.split_first() else {
            return Err(invalid("no certificate to attest"));
        };
        if intermediates.len() > self.max_intermediates {
            return Err(invalid(format!(
                "too many intermediates: {} exceeds the maximum of {}",
                intermediates.len(),
                self.max_intermediates
            )));
        }
        let (_, leaf) = X509Certificate::from_der(leaf_der)
            .map_err(|e| invalid(format!("unable to parse leaf certificate: {e}")))?;
        for (i, der) in intermediates.iter().enumerate() {
            X509Certificate::from_der(der).map_err(|e| {
                invalid(format!("unable to parse intermediate certificate {i}: {e}"))
            })?;
        }
        let leaf_key = PublicKey::from_parsed_spki(leaf.public_key())
            .map_err(|e| invalid(format!("unsupported leaf key: {e}")))?;
        if let PublicKeyKind::Rsa { bits } = leaf_key.kind()
            && bits > self.max_rsa_bits
        {
            return Err(invalid(format!(
                "RSA key size {bits} exceeds the maximum of {}",
                self.max_rsa_bits
            )));
        }
        let anchors = match (&self.own_bundle, self.spiffe_mode) {
            (Some(f), true) => f(),
            _ => self.ca_bundle.clone(),
        };
        let chain =
            x509svid::verify_x509_path(leaf_der, intermediates, &anchors, SystemTime::now())
                .map_err(|e| denied(format!("certificate verification failed: {e}")))?;

        // Challenge: the leaf must be meant for signatures.
        let ku_ok = leaf
            .key_usage()
            .ok()
            .flatten()
            .is_some_and(|k| k.value.digital_signature());
        if !ku_ok {
            return Err(PluginError::internal(
                "unable to generate challenge: certificate not intended for digital signature use",
            ));
        }
        let challenge_nonce = nonce()?;
        let mut challenge = Challenge::default();
        match leaf_key.kind() {
            PublicKeyKind::Rsa { .. } => {
                challenge.rsa_signature = Some(NonceChallenge {
                    nonce: challenge_nonce.clone(),
                })
            }
            PublicKeyKind::Ec(_) => {
                challenge.ecdsa_signature = Some(NonceChallenge {
                    nonce: challenge_nonce.clone(),
                })
            }
        }
        let bytes = serde_json::to_vec(&challenge)
            .map_err(|e| PluginError::internal(format!("unable to marshal challenge: {e}")))?;
        let reply = challenger.challenge(bytes).await?;
        let response: Response = serde_json::from_slice(&reply)
            .map_err(|e| invalid(format!("unable to unmarshal challenge response: {e}")))?;
        verify_response(&leaf_key, &challenge_nonce, &response)
            .map_err(|e| denied(format!("challenge response verification failed: {e}")))?;

        let mut svid_path = String::new();
        if self.spiffe_mode {
            let uri = uris(&leaf).into_iter().find(|u| u.starts_with("spiffe://"));
            let Some(uri) = uri else {
                return Err(denied("valid SVID x509 cert not found"));
            };
            let path = uri
                .strip_prefix("spiffe://")
                .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
                .unwrap_or_default();
            let Some(trimmed) = path.strip_prefix(&self.svid_prefix) else {
                return Err(denied("x509 cert doesnt match SVID prefix"));
            };
            svid_path = trimmed.to_string();
        }
        let san_selectors = san_selectors(&leaf, self.trust_domain.name());
        let data = template_data(
            &leaf,
            leaf_der,
            self.trust_domain.name(),
            svid_path,
            san_selectors.clone(),
        );
        let path = self
            .template
            .execute(&data, &mut |b: &mut [u8]| {
                // uuidv4's randomness; a failing system RNG leaves zeros (no secret).
                let _ = aws_lc_rs::rand::fill(b);
            })
            .map_err(|e| PluginError::internal(format!("failed to make spiffe id: {e}")))?;
        let agent_id = self
            .trust_domain
            .id_with_path(&format!("/spire/agent{path}"))
            .map_err(|e| PluginError::internal(format!("failed to make spiffe id: {e}")))?;

        let mut selector_values = Vec::new();
        if let Some(cn) = common_name(&leaf) {
            selector_values.push(format!("subject:cn:{cn}"));
        }
        for der in &chain {
            let fp = format!("ca:fingerprint:{}", fingerprint(der));
            if !selector_values.contains(&fp) {
                selector_values.push(fp);
            }
        }
        selector_values.push(format!("serialnumber:{}", serial_hex(leaf.raw_serial())));
        for (k, v) in san_selectors {
            selector_values.push(format!("san:{k}:{v}"));
        }
        Ok(AttestedAgent {
            agent_id,
            selector_values,
            can_reattest: true,
        })
    }
}

/// SPIRE's `x509pop.agentPathTemplateData`: the leaf's fields Go's `x509.Certificate`
/// promotes that have a plain text form (subject names, SANs), and SPIRE's own fields.
fn template_data(
    leaf: &X509Certificate<'_>,
    leaf_der: &[u8],
    trust_domain: &str,
    svid_path: String,
    san_selectors: BTreeMap<String, String>,
) -> Value {
    let attrs = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        Value::StrList(
            it.filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect(),
        )
    };
    let subject = leaf.subject();
    let first = |v: Option<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        Value::from(v.and_then(|a| a.as_str().ok()).unwrap_or_default())
    };
    let subject = Value::structure(
        "pkix.Name",
        [
            ("Country", attrs(&mut subject.iter_country())),
            ("Organization", attrs(&mut subject.iter_organization())),
            (
                "OrganizationalUnit",
                attrs(&mut subject.iter_organizational_unit()),
            ),
            ("Locality", attrs(&mut subject.iter_locality())),
            ("Province", attrs(&mut subject.iter_state_or_province())),
            (
                "SerialNumber",
                first(
                    subject
                        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
                        .next(),
                ),
            ),
            ("CommonName", first(subject.iter_common_name().next())),
        ],
    );
    let (mut dns, mut emails) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::RFC822Name(e) => {
                    emails.push(e.to_string());
                }
                _ => {}
            }
        }
    }
    Value::structure(
        "x509pop.agentPathTemplateData",
        [
            ("Subject", subject),
            ("DNSNames", Value::StrList(dns)),
            ("EmailAddresses", Value::StrList(emails)),
            ("Version", Value::Int(i64::from(leaf.version().0) + 1)),
            (
                "SerialNumberHex",
                Value::from(serial_hex(leaf.raw_serial())),
            ),
            ("Fingerprint", Value::from(fingerprint(leaf_der))),
            ("PluginName", Value::from(PLUGIN_NAME)),
            ("TrustDomain", Value::from(trust_domain)),
            ("SVIDPathTrimmed", Value::from(svid_path)),
            (
                "URISanSelectors",
                Value::str_map("map[string]string", san_selectors),
            ),
        ],
    )
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `x509pop://<td>/<key>/<value>` URI SANs become `san:<key>:<value>` selectors.
fn san_selectors(cert: &X509Certificate<'_>, td: &str) -> BTreeMap<String, String> {
    let prefix = format!("x509pop://{td}/");
    let mut out = BTreeMap::new();
    for uri in uris(cert) {
        if let Some(rest) = uri.strip_prefix(&prefix)
            && let Some((k, v)) = rest.trim_matches('/').split_once('/')
        {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// DER `ECDSA-Sig-Value` from big-endian r and s.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let start = v
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        let mut body = v[start..].to_vec();
        if body.is_empty() {
            body.push(0);
        }
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![0x02];
        push_len(&mut out, body.len());
        out.extend(body);
        out
    }
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.push(0x81);
            out.push(len as u8);
        }
    }
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend(body);
    out
}

const PSS_MAX_SALT: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

fn verify_response(key: &PublicKey, challenge: &[u8], response: &Response) -> Result<(), String> {
    match key.kind() {
        PublicKeyKind::Ec(curve) => {
            let resp = response
                .ecdsa_signature
                .as_ref()
                .ok_or("expecting ECDSA response")?;
            let msg = combined(challenge, &resp.nonce)?;
            let alg: &'static signature::EcdsaVerificationAlgorithm = match curve {
                Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
                Curve::P384 => &signature::ECDSA_P384_SHA256_ASN1,
                Curve::P521 => &signature::ECDSA_P521_SHA256_ASN1,
            };
            signature::UnparsedPublicKey::new(alg, key.spki_der())
                .verify(&msg, &ecdsa_der(&resp.r, &resp.s))
                .map_err(|_| "ECDSA signature verify failed".to_string())
        }
        PublicKeyKind::Rsa { .. } => {
            let resp = response
                .rsa_signature
                .as_ref()
                .ok_or("expecting RSA response")?;
            let msg = combined(challenge, &resp.nonce)?;
            // Go signs with the maximum salt length and verifies with any; accept both the
            // maximum and the digest length.
            let max = signature::UnparsedPublicKey::new(&PSS_MAX_SALT, key.spki_der())
                .verify(&msg, &resp.signature);
            let digest = signature::UnparsedPublicKey::new(
                &signature::RSA_PSS_2048_8192_SHA256,
                key.spki_der(),
            )
            .verify(&msg, &resp.signature);
            max.or(digest)
                .map_err(|_| "RSA signature verify failed".to_string())
        }
    }
}

// === agent ===

/// `plugin_data` of the agent's `x509pop` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentConfig {
    /// PEM private key.
    #[serde(default)]
    pub private_key_path: String,
    /// PEM certificate (and optionally its chain).
    #[serde(default)]
    pub certificate_path: String,
    /// PEM intermediates.
    #[serde(default)]
    pub intermediates_path: String,
}

enum AgentKey {
    Ec(Curve, EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// The agent half of `x509pop`.
pub struct X509PopAgent {
    certificates: Vec<Vec<u8>>,
    key: AgentKey,
}

impl std::fmt::Debug for X509PopAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509PopAgent")
            .field("certificates", &self.certificates.len())
            .finish_non_exhaustive()
    }
}

impl X509PopAgent {
    /// Loads the key and certificates named in `config`.
    pub fn new(config: &AgentConfig) -> PluginResult<Self> {
        if config.private_key_path.is_empty() {
            return Err(invalid("private_key_path is required"));
        }
        if config.certificate_path.is_empty() {
            return Err(invalid("certificate_path is required"));
        }
        let read = |p: &str| {
            fs::read_to_string(p)
                .map_err(|e| PluginError::internal(format!("unable to load {p:?}: {e}")))
        };
        let key = PrivateKey::from_pem(&read(&config.private_key_path)?)
            .map_err(|e| PluginError::internal(format!("unable to load private key: {e}")))?;
        let mut certificates =
            x509svid::parse_pem_certificates(&read(&config.certificate_path)?)
                .map_err(|e| PluginError::internal(format!("unable to load certificate: {e}")))?;
        if certificates.is_empty() {
            return Err(PluginError::internal(
                "unable to load certificate: no certificates found",
            ));
        }
        if !config.intermediates_path.is_empty() {
            let more = x509svid::parse_pem_certificates(&read(&config.intermediates_path)?)
                .map_err(|e| PluginError::internal(format!("unable to load intermediates: {e}")))?;
            certificates.extend(more);
        }
        let (_, leaf) = X509Certificate::from_der(&certificates[0])
            .map_err(|e| PluginError::internal(format!("unable to parse certificate: {e}")))?;
        if leaf.public_key().raw != key.public_key().spki_der() {
            return Err(PluginError::internal(
                "certificate and private key do not match",
            ));
        }
        let pkcs8 = key.pkcs8_der();
        let agent_key =
            match key.curve() {
                Some(curve) => {
                    let alg = match curve {
                        Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                        Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                        Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
                    };
                    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8).map_err(|e| {
                        PluginError::internal(format!("unable to load private key: {e}"))
                    })?;
                    AgentKey::Ec(curve, pair)
                }
                None => AgentKey::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| {
                    PluginError::internal(format!("unable to load private key: {e}"))
                })?),
            };
        Ok(Self {
            certificates,
            key: agent_key,
        })
    }

    fn respond(&self, challenge: &Challenge) -> PluginResult<Response> {
        let my_nonce = nonce()?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.key {
            AgentKey::Ec(curve, pair) => {
                let c = challenge
                    .ecdsa_signature
                    .as_ref()
                    .ok_or_else(|| PluginError::internal("expecting ECDSA challenge"))?;
                let msg = combined(&c.nonce, &my_nonce).map_err(PluginError::internal)?;
                let sig = match curve {
                    Curve::P256 => pair.sign(&rng, &msg),
                    // Go signs the SHA-256 digest with the key's curve directly; a SHA-384/512
                    // digest that is the SHA-256 value left-padded with zeros is the same
                    // integer, so the signature is the same function of the message.
                    Curve::P384 | Curve::P521 => {
                        let h = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &msg);
                        let (pad, alg) = match curve {
                            Curve::P384 => (16, &aws_lc_rs::digest::SHA384),
                            _ => (32, &aws_lc_rs::digest::SHA512),
                        };
                        let mut padded = vec![0u8; pad];
                        padded.extend_from_slice(h.as_ref());
                        let d = aws_lc_rs::digest::Digest::import_less_safe(&padded, alg)
                            .map_err(|_| PluginError::internal("digest"))?;
                        pair.sign_digest(&d)
                    }
                }
                .map_err(|_| PluginError::internal("failed to calculate challenge response"))?;
                let (r, s) = split_ecdsa_der(sig.as_ref()).ok_or_else(|| {
                    PluginError::internal("failed to calculate challenge response")
                })?;
                Ok(Response {
                    ecdsa_signature: Some(EcdsaResponse {
                        nonce: my_nonce,
                        r,
                        s,
                    }),
                    rsa_signature: None,
                })
            }
            AgentKey::Rsa(pair) => {
                let c = challenge
                    .rsa_signature
                    .as_ref()
                    .ok_or_else(|| PluginError::internal("expecting RSA challenge"))?;
                let msg = combined(&c.nonce, &my_nonce).map_err(PluginError::internal)?;
                let mut sig = vec![0u8; pair.public_modulus_len()];
                const ENCODING: signature::RsaSignatureEncoding =
                    signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
                pair.sign(&ENCODING, &rng, &msg, &mut sig)
                    .map_err(|_| PluginError::internal("failed to calculate challenge response"))?;
                Ok(Response {
                    rsa_signature: Some(RsaResponse {
                        nonce: my_nonce,
                        signature: sig,
                    }),
                    ecdsa_signature: None,
                })
            }
        }
    }

    /// The leaf certificate's SHA-1 fingerprint (the default agent ID suffix).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certificates[0])
    }
}

/// Splits a DER `ECDSA-Sig-Value` into minimal big-endian r and s.
fn split_ecdsa_der(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, obj) = x509_parser::der_parser::parse_der(der).ok()?;
    let seq = obj.as_sequence().ok()?;
    let r = seq.first()?.as_bigint().ok()?.to_bytes_be().1;
    let s = seq.get(1)?.as_bigint().ok()?.to_bytes_be().1;
    Some((r, s))
}

#[async_trait]
impl AgentNodeAttestor for X509PopAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let payload = serde_json::to_vec(&AttestationData {
            certificates: self.certificates.clone(),
        })
        .map_err(|e| PluginError::internal(e.to_string()))?;
        let Some(challenge) = exchange.send(payload).await? else {
            return Err(PluginError::internal("expected a challenge"));
        };
        let challenge: Challenge = serde_json::from_slice(&challenge)
            .map_err(|e| PluginError::internal(format!("unable to unmarshal challenge: {e}")))?;
        let response = self.respond(&challenge)?;
        let bytes = serde_json::to_vec(&response).map_err(|e| {
            PluginError::internal(format!("unable to marshal challenge response: {e}"))
        })?;
        match exchange.send(bytes).await? {
            None => Ok(()),
            Some(_) => Err(PluginError::internal("unexpected second challenge")),
        }
    }
}

#[cfg(test)]
mod tests;
