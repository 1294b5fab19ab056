//! An external KeyManager behind the trait the built-ins implement: the server's
//! (`spire.plugin.server.keymanager.v1.KeyManager`) or the agent's
//! (`spire.plugin.agent.keymanager.v1.KeyManager`). The two services carry the same messages
//! field for field, so one client calls either by its path. Signing follows Go's `crypto.Signer`, as SPIRE's facade
//! does: we hash the message, send the digest with its hash (or PSS options), and turn the
//! plugin's ASN.1 ECDSA signature into JWS's fixed-length `r||s` where a JWS is signed. The
//! fingerprint the plugin returns with each signature must be the key's.
//!
//! [`Signer::sign`] is synchronous (certificate builders and TLS sign synchronously), so the
//! signer blocks its worker thread (`block_in_place`) while the call runs on the runtime; it
//! needs the multi-threaded runtime the programs use. Callers that can wait (the server's CA
//! issuing SVIDs and JWT-SVIDs) use [`Signer::sign_async`], which does not block.

use std::sync::Arc;

use crate::conn::PluginChannel;
use async_trait::async_trait;
use spiffe_core::{JwsAlgorithm, KeyType, PublicKey};
use spire_plugin::{
    Code, KeyManager, ManagedKey, PluginError, PluginResult, SignatureKind, Signer,
};
use spire_plugin_wire::keymanager::{key_type_from_proto, key_type_to_proto};
use spire_proto::spire::plugin::server::keymanager::v1 as kmv1;

use crate::{ExternalPlugin, HostError};

/// The gRPC service of a server KeyManager plugin.
pub const SERVER_SERVICE: &str = "spire.plugin.server.keymanager.v1.KeyManager";
/// The gRPC service of an agent KeyManager plugin.
pub const AGENT_SERVICE: &str = "spire.plugin.agent.keymanager.v1.KeyManager";

/// A KeyManager client for one of the two services.
#[derive(Debug, Clone)]
struct Client {
    grpc: tonic::client::Grpc<PluginChannel>,
    service: &'static str,
}

impl Client {
    async fn unary<Req, Resp>(
        &mut self,
        method: &str,
        request: Req,
    ) -> Result<tonic::Response<Resp>, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("plugin connection: {e}")))?;
        let path = http::uri::PathAndQuery::try_from(format!("/{}/{method}", self.service))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        self.grpc
            .unary(
                tonic::Request::new(request),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await
    }
}

fn internal(message: String) -> PluginError {
    PluginError::new(Code::Internal, message)
}

/// A key as the plugin described it, checked: a known type and a PKIX key that parses.
fn managed_key(k: kmv1::PublicKey) -> PluginResult<ManagedKey> {
    let key_type = key_type_from_proto(k.r#type).ok_or_else(|| {
        internal(format!(
            "plugin returned key {:?} with an unknown key type {}",
            k.id, k.r#type
        ))
    })?;
    let public_key = PublicKey::from_spki_der(&k.pkix_data).map_err(|e| {
        internal(format!(
            "plugin returned key {:?} with a malformed public key: {e}",
            k.id
        ))
    })?;
    Ok(ManagedKey {
        id: k.id,
        key_type,
        public_key,
        fingerprint: k.fingerprint,
    })
}

/// An external KeyManager.
#[derive(Debug, Clone)]
pub struct ExternalKeyManager {
    plugin: Arc<ExternalPlugin>,
    client: Client,
}

impl ExternalKeyManager {
    /// Binds a loaded plugin to the server KeyManager interface.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        Self::bind_to(plugin, SERVER_SERVICE)
    }

    /// Binds a loaded plugin to the agent KeyManager interface.
    pub fn bind_agent(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        Self::bind_to(plugin, AGENT_SERVICE)
    }

    fn bind_to(plugin: Arc<ExternalPlugin>, service: &'static str) -> Result<Self, HostError> {
        let channel = plugin.bind(service)?;
        Ok(Self {
            plugin,
            client: Client {
                grpc: tonic::client::Grpc::new(channel),
                service,
            },
        })
    }

    async fn call<T, F>(&self, f: impl FnOnce(Client) -> F) -> PluginResult<T>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        call(&self.plugin, f(self.client.clone())).await
    }
}

async fn call<T>(
    plugin: &ExternalPlugin,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> PluginResult<T> {
    plugin.call(fut).await
}

#[async_trait]
impl KeyManager for ExternalKeyManager {
    async fn generate_key(&self, key_id: &str, key_type: KeyType) -> PluginResult<ManagedKey> {
        let request = kmv1::GenerateKeyRequest {
            key_id: key_id.to_owned(),
            key_type: key_type_to_proto(key_type),
        };
        let response: kmv1::GenerateKeyResponse = self
            .call(|mut c| async move { c.unary("GenerateKey", request).await })
            .await?;
        let key = response
            .public_key
            .ok_or_else(|| internal("plugin response missing public key".into()))?;
        let key = managed_key(key)?;
        if key.id != key_id {
            return Err(internal(format!(
                "plugin returned key {:?} for a request for {key_id:?}",
                key.id
            )));
        }
        Ok(key)
    }

    async fn get_public_key(&self, key_id: &str) -> PluginResult<Option<ManagedKey>> {
        let request = kmv1::GetPublicKeyRequest {
            key_id: key_id.to_owned(),
        };
        let response: kmv1::GetPublicKeyResponse = self
            .call(|mut c| async move { c.unary("GetPublicKey", request).await })
            .await?;
        response.public_key.map(managed_key).transpose()
    }

    async fn get_public_keys(&self) -> PluginResult<Vec<ManagedKey>> {
        let response: kmv1::GetPublicKeysResponse = self
            .call(|mut c| async move {
                c.unary("GetPublicKeys", kmv1::GetPublicKeysRequest {})
                    .await
            })
            .await?;
        response.public_keys.into_iter().map(managed_key).collect()
    }

    async fn signer(&self, key_id: &str) -> PluginResult<Arc<dyn Signer>> {
        let key = self
            .get_public_key(key_id)
            .await?
            .ok_or_else(|| PluginError::not_found(format!("key {key_id:?} not found")))?;
        Ok(Arc::new(ExternalSigner {
            plugin: self.plugin.clone(),
            client: self.client.clone(),
            key,
        }))
    }
}

/// Signs with one key of an external KeyManager.
#[derive(Debug)]
struct ExternalSigner {
    plugin: Arc<ExternalPlugin>,
    client: Client,
    key: ManagedKey,
}

/// How one signature is asked for and returned.
struct Recipe {
    digest: &'static aws_lc_rs::digest::Algorithm,
    hash: kmv1::HashAlgorithm,
    pss: bool,
    /// JWS ECDSA: the DER signature becomes `r||s` of this many bytes each.
    fixed_len: Option<usize>,
}

fn recipe(key: &ManagedKey, kind: SignatureKind) -> PluginResult<Recipe> {
    use aws_lc_rs::digest::{SHA256, SHA384, SHA512};
    use kmv1::HashAlgorithm as H;
    let ec = matches!(key.key_type, KeyType::EcP256 | KeyType::EcP384);
    let mismatch = |alg: JwsAlgorithm| {
        internal(format!(
            "key {:?} of type {:?} cannot sign {alg}",
            key.id, key.key_type
        ))
    };
    let r = |digest, hash, pss, fixed_len| Recipe {
        digest,
        hash,
        pss,
        fixed_len,
    };
    Ok(match kind {
        SignatureKind::X509 => match key.key_type {
            KeyType::EcP384 => r(&SHA384, H::Sha384, false, None),
            _ => r(&SHA256, H::Sha256, false, None),
        },
        SignatureKind::Jws(alg) => match alg {
            JwsAlgorithm::ES256 if key.key_type == KeyType::EcP256 => {
                r(&SHA256, H::Sha256, false, Some(32))
            }
            JwsAlgorithm::ES384 if key.key_type == KeyType::EcP384 => {
                r(&SHA384, H::Sha384, false, Some(48))
            }
            JwsAlgorithm::RS256 if !ec => r(&SHA256, H::Sha256, false, None),
            JwsAlgorithm::RS384 if !ec => r(&SHA384, H::Sha384, false, None),
            JwsAlgorithm::RS512 if !ec => r(&SHA512, H::Sha512, false, None),
            JwsAlgorithm::PS256 if !ec => r(&SHA256, H::Sha256, true, None),
            JwsAlgorithm::PS384 if !ec => r(&SHA384, H::Sha384, true, None),
            JwsAlgorithm::PS512 if !ec => r(&SHA512, H::Sha512, true, None),
            other => return Err(mismatch(other)),
        },
    })
}

/// An ASN.1 `ECDSA-Sig-Value` (SEQUENCE of two INTEGERs) as fixed-length `r||s`.
pub(crate) fn der_to_fixed(der: &[u8], len: usize) -> Option<Vec<u8>> {
    fn take_len(b: &[u8]) -> Option<(usize, &[u8])> {
        let (&first, rest) = b.split_first()?;
        if first < 0x80 {
            return Some((usize::from(first), rest));
        }
        if first == 0x81 {
            let (&n, rest) = rest.split_first()?;
            return Some((usize::from(n), rest));
        }
        None
    }
    fn integer(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        if tag != 0x02 {
            return None;
        }
        let (n, rest) = take_len(rest)?;
        let value = rest.get(..n)?;
        Some((value, rest.get(n..)?))
    }
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (n, rest) = take_len(rest)?;
    if rest.len() != n {
        return None;
    }
    let (r, rest) = integer(rest)?;
    let (s, rest) = integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = vec![0u8; len * 2];
    for (i, v) in [r, s].into_iter().enumerate() {
        let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        let v = v.get(start..)?;
        if v.len() > len {
            return None;
        }
        let at = i * len + (len - v.len());
        out.get_mut(at..at + v.len())?.copy_from_slice(v);
    }
    Some(out)
}

impl ExternalSigner {
    async fn sign_remote(&self, message: &[u8], kind: SignatureKind) -> PluginResult<Vec<u8>> {
        let recipe = recipe(&self.key, kind)?;
        let digest = aws_lc_rs::digest::digest(recipe.digest, message);
        let signer_opts = if recipe.pss {
            kmv1::sign_data_request::SignerOpts::PssOptions(kmv1::sign_data_request::PssOptions {
                salt_length: i32::try_from(recipe.digest.output_len()).unwrap_or(32),
                hash_algorithm: recipe.hash as i32,
            })
        } else {
            kmv1::sign_data_request::SignerOpts::HashAlgorithm(recipe.hash as i32)
        };
        let request = kmv1::SignDataRequest {
            key_id: self.key.id.clone(),
            data: digest.as_ref().to_vec(),
            signer_opts: Some(signer_opts),
        };
        let mut client = self.client.clone();
        let response: kmv1::SignDataResponse =
            call(&self.plugin, client.unary("SignData", request)).await?;
        if response.key_fingerprint != self.key.fingerprint {
            return Err(internal(format!(
                "fingerprint {:?} on key {:?} does not match {:?}",
                self.key.fingerprint, self.key.id, response.key_fingerprint
            )));
        }
        match recipe.fixed_len {
            None => Ok(response.signature),
            Some(len) => der_to_fixed(&response.signature, len).ok_or_else(|| {
                internal(format!(
                    "plugin returned a malformed ECDSA signature for key {:?}",
                    self.key.id
                ))
            }),
        }
    }
}

impl Signer for ExternalSigner {
    fn key_id(&self) -> &str {
        &self.key.id
    }

    fn public_key(&self) -> &PublicKey {
        &self.key.public_key
    }

    fn sign(&self, message: &[u8], kind: SignatureKind) -> PluginResult<Vec<u8>> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            internal("an external KeyManager signs only inside the tokio runtime".into())
        })?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(internal(
                "an external KeyManager needs the multi-threaded tokio runtime".into(),
            ));
        }
        tokio::task::block_in_place(|| handle.block_on(self.sign_remote(message, kind)))
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn sign_async<'a>(
        &'a self,
        message: &'a [u8],
        kind: SignatureKind,
    ) -> spire_plugin::SignFuture<'a> {
        Box::pin(self.sign_remote(message, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_ecdsa_signatures_become_fixed_length() {
        // r = 0x00ff.. (leading zero for the sign bit), s = 0x01 (short).
        let mut der = vec![0x30, 0x26, 0x02, 0x21, 0x00];
        der.extend([0xff; 32]);
        der.extend([0x02, 0x01, 0x01]);
        let fixed = der_to_fixed(&der, 32).unwrap();
        assert_eq!(&fixed[..32], &[0xff; 32]);
        assert_eq!(&fixed[32..63], &[0u8; 31]);
        assert_eq!(fixed[63], 1);
        assert!(der_to_fixed(&der[..10], 32).is_none());
        assert!(der_to_fixed(&der, 16).is_none());
        assert!(der_to_fixed(b"\x31\x00", 32).is_none());
    }
}
