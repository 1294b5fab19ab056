//! `sshpop`: SSH host certificate proof of possession, wire-compatible with SPIRE's plugin
//! (`pkg/common/plugin/sshpop`).
//!
//! The agent sends `{"Certificate": <cert blob>}` (its OpenSSH host certificate); the server
//! checks it is a host certificate signed by one of `cert_authorities`, valid now, whose first
//! principal is the host name (less `canonical_domain`), and answers `{"Nonce": <32 bytes>}`.
//! The agent signs SHA-256(challenge nonce || its own nonce) with its host key and replies
//! `{"Nonce": ..., "Signature": {"Format", "Blob", "Rest"}}`; the server checks the signature
//! with the certified key. The agent ID is `/spire/agent/sshpop/<fingerprint>` by default, the
//! fingerprint being the unpadded URL-safe base64 SHA-256 of the certificate blob. As in
//! SPIRE, no selectors are produced.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_lc_rs::rand::SecureRandom as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use spiffe_core::TrustDomain;
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};

use super::template::{PathTemplate, Value};

pub mod wire;

use wire::{Certificate, PrivateKey, PublicKey, Signature};

/// The plugin name.
pub const PLUGIN_NAME: &str = "sshpop";
const NONCE_LEN: usize = 32;
const DEFAULT_HOST_KEY_PATH: &str = "/etc/ssh/ssh_host_rsa_key";
const DEFAULT_HOST_CERT_PATH: &str = "/etc/ssh/ssh_host_rsa_key-cert.pub";
const DEFAULT_TEMPLATE: &str = "/{{ .PluginName}}/{{ .Fingerprint }}";

/// Go's `encoding/json` form of a `[]byte`: standard base64, `null` for nil.
mod b64 {
    use super::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(&STANDARD.encode(v))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// The attestation payload (Go's field names, as SPIRE's JSON has them).
#[derive(Debug, Serialize, Deserialize)]
struct AttestationData {
    #[serde(rename = "Certificate", alias = "certificate", with = "b64", default)]
    certificate: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChallengeRequest {
    #[serde(rename = "Nonce", alias = "nonce", with = "b64", default)]
    nonce: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JsonSignature {
    #[serde(rename = "Format", alias = "format", default)]
    format: String,
    #[serde(rename = "Blob", alias = "blob", with = "b64", default)]
    blob: Vec<u8>,
    #[serde(rename = "Rest", alias = "rest", with = "b64", default)]
    rest: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChallengeResponse {
    #[serde(rename = "Nonce", alias = "nonce", with = "b64", default)]
    nonce: Vec<u8>,
    #[serde(rename = "Signature", alias = "signature", default)]
    signature: Option<JsonSignature>,
}

fn new_nonce() -> Result<Vec<u8>, String> {
    let mut n = vec![0u8; NONCE_LEN];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| "random source failed".to_string())?;
    Ok(n)
}

/// SHA-256(challenge || response): what the agent signs.
fn combine_nonces(challenge: &[u8], response: &[u8]) -> Result<Vec<u8>, String> {
    if challenge.len() != NONCE_LEN {
        return Err("invalid challenge nonce size".into());
    }
    if response.len() != NONCE_LEN {
        return Err("invalid response nonce size".into());
    }
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(challenge);
    ctx.update(response);
    Ok(ctx.finish().as_ref().to_vec())
}

/// The unpadded URL-safe base64 SHA-256 of a certificate blob (the default agent ID suffix).
pub fn fingerprint(cert_blob: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        cert_blob,
    ))
}

fn internal(msg: impl Into<String>) -> PluginError {
    PluginError::internal(msg)
}

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::invalid_argument(msg)
}

// === server ===

/// `plugin_data` of the server's `sshpop` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerConfig {
    /// CA public keys in `authorized_keys` format.
    #[serde(default)]
    pub cert_authorities: Option<Vec<String>>,
    /// A file of CA public keys, one a line.
    #[serde(default)]
    pub cert_authorities_path: String,
    /// The domain suffix removed from the principal to make the host name.
    #[serde(default)]
    pub canonical_domain: String,
    /// Go-template of the agent path.
    #[serde(default)]
    pub agent_path_template: String,
}

/// The current time, as the server half reads it (a fake clock in tests).
pub type NowFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The server half of `sshpop`.
pub struct SshPopServer {
    trust_domain: TrustDomain,
    /// CA public key blobs.
    authorities: Vec<Vec<u8>>,
    canonical_domain: String,
    template: PathTemplate,
    now: NowFn,
}

impl std::fmt::Debug for SshPopServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshPopServer")
            .field("authorities", &self.authorities.len())
            .field("canonical_domain", &self.canonical_domain)
            .finish_non_exhaustive()
    }
}

impl SshPopServer {
    /// Builds the plugin from its configuration; the messages are SPIRE's.
    pub fn new(config: &ServerConfig, trust_domain: TrustDomain, now: NowFn) -> PluginResult<Self> {
        if config.cert_authorities.is_none() && config.cert_authorities_path.is_empty() {
            return Err(invalid(
                "missing required config value for \"cert_authorities\" or \"cert_authorities_path\"",
            ));
        }
        let mut lines: Vec<String> = config.cert_authorities.clone().unwrap_or_default();
        if !config.cert_authorities_path.is_empty() {
            let path = &config.cert_authorities_path;
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(format!(
                    "failed to get cert authorities from file: {}",
                    spire_gocompat::os::path_error("open", path, &e)
                ))
            })?;
            let from_file: Vec<String> = text
                .split('\n')
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            if from_file.is_empty() {
                return Err(invalid(format!(
                    "failed to get cert authorities from file: no data found in file: {path:?}"
                )));
            }
            lines.extend(from_file);
        }
        if lines.is_empty() {
            return Err(invalid(
                "failed to create cert checker: must provide at least one cert authority",
            ));
        }
        let mut authorities = Vec::new();
        for line in &lines {
            let blob = wire::parse_authorized_key(line)
                .and_then(|b| PublicKey::parse(&b).map(|k| k.marshal()))
                .map_err(|e| {
                    invalid(format!(
                        "failed to create cert checker: failed to parse public key {line:?}: {e}"
                    ))
                })?;
            authorities.push(blob);
        }
        let template_text = if config.agent_path_template.is_empty() {
            DEFAULT_TEMPLATE
        } else {
            config.agent_path_template.as_str()
        };
        let template = PathTemplate::parse(template_text).map_err(|_| {
            invalid(format!(
                "failed to parse agent svid template: {:?}",
                config.agent_path_template
            ))
        })?;
        Ok(Self {
            trust_domain,
            authorities,
            canonical_domain: config.canonical_domain.clone(),
            template,
            now,
        })
    }

    /// Checks the attestation payload: a host certificate from a trusted CA, valid now.
    /// Returns the certificate and the host name.
    fn verify_attestation_data(&self, payload: &[u8]) -> PluginResult<(Certificate, String)> {
        let data: AttestationData = serde_json::from_slice(payload)
            .map_err(|e| internal(format!("failed to unmarshal data: {e}")))?;
        if data.certificate.is_empty() {
            return Err(internal("no certificate in response"));
        }
        let cert = Certificate::parse(&data.certificate)
            .map_err(|e| internal(format!("failed to parse public key: {e}")))?
            .ok_or_else(|| internal("pubkey in response is not a certificate"))?;
        let Some(principal) = cert.valid_principals.first().cloned() else {
            return Err(internal("cert has no valid principals"));
        };
        self.check_host_key(&principal, &cert)
            .map_err(|e| internal(format!("failed to check host key: {e}")))?;
        let hostname = decanonicalize(&principal, &self.canonical_domain)
            .map_err(|e| internal(format!("failed to decanonicalize hostname: {e}")))?;
        Ok((cert, hostname))
    }

    /// x/crypto/ssh's `CertChecker.CheckHostKey` for `<principal>:22`.
    fn check_host_key(&self, principal: &str, cert: &Certificate) -> Result<(), String> {
        if cert.cert_type != wire::HOST_CERT {
            return Err(format!(
                "ssh: certificate presented as a host key has type {}",
                cert.cert_type
            ));
        }
        let ca = PublicKey::parse(&cert.signature_key).map_err(|e| e.to_string())?;
        if !self.authorities.contains(&ca.marshal()) {
            return Err(format!("ssh: no authorities for hostname: {principal}:22"));
        }
        if principal.contains(':') {
            return Err(format!(
                "address {principal}:22: too many colons in address"
            ));
        }
        if let Some(opt) = cert
            .critical_options
            .iter()
            .find(|o| o.as_str() != "source-address")
        {
            return Err(format!(
                "ssh: unsupported critical option {opt:?} in certificate"
            ));
        }
        let now = (self.now)()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let after = cert.valid_after;
        if after > i64::MAX as u64 || now < after {
            return Err("ssh: cert is not yet valid".into());
        }
        let before = cert.valid_before;
        if before != wire::CERT_TIME_INFINITY && (now >= before || before > i64::MAX as u64) {
            return Err("ssh: cert has expired".into());
        }
        ca.verify(cert.signed_bytes(), &cert.signature)
            .map_err(|_| "ssh: certificate signature does not verify".to_string())
    }

    fn agent_id(&self, cert: &Certificate, hostname: &str) -> PluginResult<spiffe_core::SpiffeId> {
        // SPIRE's sshpop.agentPathTemplateData: the embedded *ssh.Certificate's plain
        // fields, then SPIRE's own.
        let uint = |v: u64| Value::Int64(i64::try_from(v).unwrap_or(i64::MAX));
        let data = Value::structure(
            "sshpop.agentPathTemplateData",
            [
                ("Serial", uint(cert.serial)),
                ("CertType", uint(u64::from(cert.cert_type))),
                ("KeyId", Value::from(cert.key_id.as_str())),
                (
                    "ValidPrincipals",
                    Value::StrList(cert.valid_principals.clone()),
                ),
                ("ValidAfter", uint(cert.valid_after)),
                ("ValidBefore", uint(cert.valid_before)),
                ("PluginName", Value::from(PLUGIN_NAME)),
                ("Fingerprint", Value::from(fingerprint(cert.raw()))),
                ("Hostname", Value::from(hostname)),
            ],
        );
        let path = self
            .template
            .execute(&data, &mut |b: &mut [u8]| {
                // uuidv4's randomness; a failing system RNG leaves zeros (no secret).
                let _ = aws_lc_rs::rand::fill(b);
            })
            .map_err(|e| internal(format!("failed to create AgentID: {e}")))?;
        if !path.starts_with('/') {
            return Err(internal(format!(
                "failed to create AgentID: invalid agent path suffix {path:?}: path must have a leading slash"
            )));
        }
        self.trust_domain
            .id_with_path(&format!("/spire/agent{path}"))
            .map_err(|e| {
                internal(format!(
                    "failed to create AgentID: invalid agent path suffix {path:?}: {e}"
                ))
            })
    }
}

fn decanonicalize(fqdn: &str, domain: &str) -> Result<String, String> {
    if domain.is_empty() {
        return Ok(fqdn.to_string());
    }
    let suffix = format!(".{domain}");
    fqdn.strip_suffix(&suffix)
        .map(str::to_string)
        .ok_or_else(|| format!("cert principal is not in domain {suffix:?}"))
}

#[async_trait]
impl ServerNodeAttestor for SshPopServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        if payload.is_empty() {
            return Err(invalid("missing attestation payload"));
        }
        let (cert, hostname) = self.verify_attestation_data(&payload)?;
        let nonce = new_nonce().map_err(|e| internal(format!("failed to generate nonce: {e}")))?;
        let challenge = serde_json::to_vec(&ChallengeRequest {
            nonce: nonce.clone(),
        })
        .map_err(|e| internal(format!("failed to marshal challenge request: {e}")))?;
        let answer = challenger.challenge(challenge).await?;
        let response: ChallengeResponse = serde_json::from_slice(&answer)
            .map_err(|e| internal(format!("failed to unmarshal challenge response: {e}")))?;
        let signed = combine_nonces(&nonce, &response.nonce)
            .map_err(|e| internal(format!("failed to combine nonces: {e}")))?;
        let Some(sig) = response.signature else {
            return Err(internal("failed to verify signature: missing signature"));
        };
        let sig = Signature {
            format: sig.format,
            blob: sig.blob,
            rest: sig.rest,
        };
        cert.key
            .verify(&signed, &sig)
            .map_err(|e| internal(format!("failed to verify signature: {e}")))?;
        let agent_id = self.agent_id(&cert, &hostname)?;
        Ok(AttestedAgent {
            agent_id,
            selector_values: Vec::new(),
            can_reattest: true,
        })
    }
}

// === agent ===

/// `plugin_data` of the agent's `sshpop` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentConfig {
    /// The host private key (default `/etc/ssh/ssh_host_rsa_key`).
    #[serde(default)]
    pub host_key_path: String,
    /// The host certificate (default `/etc/ssh/ssh_host_rsa_key-cert.pub`).
    #[serde(default)]
    pub host_cert_path: String,
}

/// The agent half of `sshpop`.
pub struct SshPopAgent {
    cert: Vec<u8>,
    key: PrivateKey,
}

impl std::fmt::Debug for SshPopAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshPopAgent")
            .field("fingerprint", &fingerprint(&self.cert))
            .finish_non_exhaustive()
    }
}

impl SshPopAgent {
    /// Loads the host key and certificate; the messages are SPIRE's.
    pub fn new(config: &AgentConfig) -> PluginResult<Self> {
        let key_path = if config.host_key_path.is_empty() {
            DEFAULT_HOST_KEY_PATH
        } else {
            &config.host_key_path
        };
        let cert_path = if config.host_cert_path.is_empty() {
            DEFAULT_HOST_CERT_PATH
        } else {
            &config.host_cert_path
        };
        let key_text = std::fs::read(key_path).map_err(|e| {
            invalid(format!(
                "failed to read host key file: {}",
                spire_gocompat::os::path_error("open", key_path, &e)
            ))
        })?;
        let cert_text = std::fs::read(cert_path).map_err(|e| {
            invalid(format!(
                "failed to read host cert file: {}",
                spire_gocompat::os::path_error("open", cert_path, &e)
            ))
        })?;
        let fail = |e: &dyn std::fmt::Display| {
            invalid(format!("failed to get cert and signer from pem: {e}"))
        };
        let key = PrivateKey::parse(&String::from_utf8_lossy(&key_text)).map_err(|e| fail(&e))?;
        let blob = wire::parse_authorized_key(&String::from_utf8_lossy(&cert_text))
            .map_err(|e| fail(&e))?;
        match Certificate::parse(&blob) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(fail(&"pubkey isn't a certificate")),
            Err(e) => return Err(fail(&e)),
        }
        Ok(Self { cert: blob, key })
    }

    /// The certificate's fingerprint (the default agent ID suffix).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    fn respond(&self, challenge: &[u8]) -> PluginResult<Vec<u8>> {
        let req: ChallengeRequest = serde_json::from_slice(challenge)
            .map_err(|e| internal(format!("failed to unmarshal challenge request: {e}")))?;
        let nonce = new_nonce().map_err(|e| internal(format!("failed to generate nonce: {e}")))?;
        let to_sign = combine_nonces(&req.nonce, &nonce)
            .map_err(|e| internal(format!("failed to combine nonces: {e}")))?;
        let sig = self
            .key
            .sign(&to_sign)
            .map_err(|e| internal(format!("failed to sign data: {e}")))?;
        serde_json::to_vec(&ChallengeResponse {
            nonce,
            signature: Some(JsonSignature {
                format: sig.format,
                blob: sig.blob,
                rest: sig.rest,
            }),
        })
        .map_err(|e| internal(format!("failed to marshal response: {e}")))
    }
}

#[async_trait]
impl AgentNodeAttestor for SshPopAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let payload = serde_json::to_vec(&AttestationData {
            certificate: self.cert.clone(),
        })
        .map_err(|e| internal(format!("failed to marshal attestation data: {e}")))?;
        let Some(challenge) = exchange.send(payload).await? else {
            return Err(internal("expected a challenge"));
        };
        let response = self.respond(&challenge)?;
        match exchange.send(response).await? {
            None => Ok(()),
            Some(_) => Err(internal("unexpected second challenge")),
        }
    }
}

#[cfg(test)]
mod tests;
