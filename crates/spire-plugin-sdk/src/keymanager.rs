//! KeyManager plugins, server and agent. A host never hands a KeyManager plugin the message
//! to sign: as Go's `crypto.Signer`, it hashes the message itself and sends the digest with
//! the hash (or the RSA-PSS options) it used. So a Rust KeyManager plugin implements
//! [`DigestKeyManager`], whose `sign_data` signs a digest, rather than `spire-plugin`'s
//! `KeyManager`, whose signers sign messages.
//!
//! Signatures are what Go's signers return for the same digest: ASN.1 DER `ECDSA-Sig-Value`
//! for ECDSA keys, PKCS #1 v1.5 or PSS for RSA keys. The host turns ECDSA signatures into a
//! JWS's fixed-length `r||s` itself where it signs a JWT.
//!
//! The server (`spire.plugin.server.keymanager.v1`) and agent
//! (`spire.plugin.agent.keymanager.v1`) services carry the same messages field for field;
//! one trait serves either.

use std::sync::Arc;

use async_trait::async_trait;
use spiffe_core::{KeyType, PublicKey};
use spire_plugin::{ManagedKey, PluginError, PluginResult};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use spire_plugin_wire::keymanager::{key_type_from_proto, key_type_to_proto};

use crate::services::status;

/// The hash a host computed the digest with (`HashAlgorithm` of the KeyManager protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-224.
    Sha224,
    /// SHA-256: X.509 signatures with P-256 and RSA keys, ES256, RS256, PS256.
    Sha256,
    /// SHA-384: X.509 signatures with P-384 keys, ES384, RS384, PS384.
    Sha384,
    /// SHA-512: RS512, PS512.
    Sha512,
    /// SHA3-224.
    Sha3_224,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
    /// SHA-512/224.
    Sha512_224,
    /// SHA-512/256.
    Sha512_256,
}

impl HashAlgorithm {
    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha224 | Self::Sha3_224 | Self::Sha512_224 => 28,
            Self::Sha256 | Self::Sha3_256 | Self::Sha512_256 => 32,
            Self::Sha384 | Self::Sha3_384 => 48,
            Self::Sha512 | Self::Sha3_512 => 64,
        }
    }

    /// The protocol's enum value (the same in the server and agent packages).
    fn from_wire(v: i32) -> Option<Self> {
        Some(match v {
            4 => Self::Sha224,
            5 => Self::Sha256,
            6 => Self::Sha384,
            7 => Self::Sha512,
            10 => Self::Sha3_224,
            11 => Self::Sha3_256,
            12 => Self::Sha3_384,
            13 => Self::Sha3_512,
            14 => Self::Sha512_224,
            15 => Self::Sha512_256,
            _ => return None,
        })
    }
}

/// How the digest is to be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerOpts {
    /// ECDSA, or RSA PKCS #1 v1.5, over a digest made with this hash.
    Hash(HashAlgorithm),
    /// RSA-PSS over a digest made with `hash`. `salt_length` as Go's `rsa.PSSOptions`: `-1`
    /// for a salt as long as the digest, `0` for the longest salt the key allows, otherwise
    /// that many bytes.
    Pss {
        /// The hash of the digest (and of PSS's mask generation).
        hash: HashAlgorithm,
        /// The salt length, as Go's `rsa.PSSOptions.SaltLength`.
        salt_length: i32,
    },
}

impl SignerOpts {
    /// The hash the digest was made with.
    pub fn hash(self) -> HashAlgorithm {
        match self {
            Self::Hash(h) | Self::Pss { hash: h, .. } => h,
        }
    }
}

/// A signature and the fingerprint of the key that made it (the host checks that it is the
/// fingerprint it knows for the key, so a key replaced between two calls is noticed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSignature {
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// The fingerprint of the key, as its [`ManagedKey`] gives it.
    pub key_fingerprint: String,
}

/// A KeyManager plugin (server or agent), as the plugin protocol sees one.
///
/// Requests are checked before they reach it: key IDs are not empty, key types are known,
/// and a digest has the length of its hash.
#[async_trait]
pub trait DigestKeyManager: Send + Sync + 'static {
    /// Generates (or replaces) the key `key_id`.
    async fn generate_key(&self, key_id: &str, key_type: KeyType) -> PluginResult<ManagedKey>;
    /// The key `key_id`, if there is one.
    async fn get_public_key(&self, key_id: &str) -> PluginResult<Option<ManagedKey>>;
    /// Every key.
    async fn get_public_keys(&self) -> PluginResult<Vec<ManagedKey>>;
    /// Signs `digest` with the key `key_id` (`NotFound` when there is none).
    async fn sign_data(
        &self,
        key_id: &str,
        digest: &[u8],
        opts: SignerOpts,
    ) -> PluginResult<DigestSignature>;
}

fn key_id(id: &str) -> Result<&str, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("key id is required"));
    }
    Ok(id)
}

fn hash(v: i32) -> Result<HashAlgorithm, Status> {
    HashAlgorithm::from_wire(v)
        .ok_or_else(|| Status::invalid_argument(format!("unsupported hash algorithm {v}")))
}

/// The digest, checked against the length of its hash.
fn digest(data: &[u8], opts: SignerOpts) -> Result<&[u8], Status> {
    let want = opts.hash().output_len();
    if data.len() != want {
        return Err(Status::invalid_argument(format!(
            "digest is {} bytes long, {:?} digests are {want}",
            data.len(),
            opts.hash()
        )));
    }
    Ok(data)
}

/// Checks that the plugin answered about the key it was asked about.
fn same_key(asked: &str, key: &ManagedKey) -> Result<(), Status> {
    if key.id == asked {
        Ok(())
    } else {
        Err(status(PluginError::internal(format!(
            "plugin returned key {:?} for a request for {asked:?}",
            key.id
        ))))
    }
}

/// One KeyManager service over [`DigestKeyManager`], for the message types of one package
/// (`$km`, a module in scope).
macro_rules! key_manager_service {
    ($service:ident, $km:ident, $name:literal) => {
        struct $service(Arc<dyn DigestKeyManager>);

        impl $service {
            fn public_key(k: ManagedKey) -> $km::PublicKey {
                $km::PublicKey {
                    pkix_data: PublicKey::spki_der(&k.public_key).to_vec(),
                    r#type: key_type_to_proto(k.key_type),
                    id: k.id,
                    fingerprint: k.fingerprint,
                }
            }

            fn routes(p: Arc<dyn DigestKeyManager>) -> (&'static str, Routes) {
                use $km::key_manager_server::KeyManagerServer;
                ($name, Routes::new(KeyManagerServer::new(Self(p))))
            }
        }

        #[tonic::async_trait]
        impl $km::key_manager_server::KeyManager for $service {
            async fn generate_key(
                &self,
                request: Request<$km::GenerateKeyRequest>,
            ) -> Result<Response<$km::GenerateKeyResponse>, Status> {
                let r = request.into_inner();
                let id = key_id(&r.key_id)?;
                let key_type = key_type_from_proto(r.key_type).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "unable to generate key {id:?} for unknown key type {}",
                        r.key_type
                    ))
                })?;
                let key = self.0.generate_key(id, key_type).await.map_err(status)?;
                same_key(id, &key)?;
                Ok(Response::new($km::GenerateKeyResponse {
                    public_key: Some(Self::public_key(key)),
                }))
            }

            async fn get_public_key(
                &self,
                request: Request<$km::GetPublicKeyRequest>,
            ) -> Result<Response<$km::GetPublicKeyResponse>, Status> {
                let r = request.into_inner();
                let id = key_id(&r.key_id)?;
                let key = self.0.get_public_key(id).await.map_err(status)?;
                if let Some(k) = &key {
                    same_key(id, k)?;
                }
                Ok(Response::new($km::GetPublicKeyResponse {
                    public_key: key.map(Self::public_key),
                }))
            }

            async fn get_public_keys(
                &self,
                _request: Request<$km::GetPublicKeysRequest>,
            ) -> Result<Response<$km::GetPublicKeysResponse>, Status> {
                let keys = self.0.get_public_keys().await.map_err(status)?;
                Ok(Response::new($km::GetPublicKeysResponse {
                    public_keys: keys.into_iter().map(Self::public_key).collect(),
                }))
            }

            async fn sign_data(
                &self,
                request: Request<$km::SignDataRequest>,
            ) -> Result<Response<$km::SignDataResponse>, Status> {
                use $km::sign_data_request::SignerOpts as Wire;
                let r = request.into_inner();
                let id = key_id(&r.key_id)?;
                let opts = match r.signer_opts {
                    Some(Wire::HashAlgorithm(h)) => SignerOpts::Hash(hash(h)?),
                    Some(Wire::PssOptions(p)) => SignerOpts::Pss {
                        hash: hash(p.hash_algorithm)?,
                        salt_length: p.salt_length,
                    },
                    None => return Err(Status::invalid_argument("signer opts is required")),
                };
                let data = digest(&r.data, opts)?;
                let signed = self.0.sign_data(id, data, opts).await.map_err(status)?;
                Ok(Response::new($km::SignDataResponse {
                    signature: signed.signature,
                    key_fingerprint: signed.key_fingerprint,
                }))
            }
        }
    };
}

use spire_proto::spire::plugin::agent::keymanager::v1 as agent_km;
use spire_proto::spire::plugin::server::keymanager::v1 as server_km;

key_manager_service!(
    ServerKeyManagerService,
    server_km,
    "spire.plugin.server.keymanager.v1.KeyManager"
);
key_manager_service!(
    AgentKeyManagerService,
    agent_km,
    "spire.plugin.agent.keymanager.v1.KeyManager"
);

pub(crate) fn server_key_manager(p: Arc<dyn DigestKeyManager>) -> (&'static str, Routes) {
    ServerKeyManagerService::routes(p)
}

pub(crate) fn agent_key_manager(p: Arc<dyn DigestKeyManager>) -> (&'static str, Routes) {
    AgentKeyManagerService::routes(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_hash_values_are_the_protocol_s() {
        use spire_proto::spire::plugin::server::keymanager::v1::HashAlgorithm as W;
        for (w, h) in [
            (W::Sha224, HashAlgorithm::Sha224),
            (W::Sha256, HashAlgorithm::Sha256),
            (W::Sha384, HashAlgorithm::Sha384),
            (W::Sha512, HashAlgorithm::Sha512),
            (W::Sha3224, HashAlgorithm::Sha3_224),
            (W::Sha3256, HashAlgorithm::Sha3_256),
            (W::Sha3384, HashAlgorithm::Sha3_384),
            (W::Sha3512, HashAlgorithm::Sha3_512),
            (W::Sha512224, HashAlgorithm::Sha512_224),
            (W::Sha512256, HashAlgorithm::Sha512_256),
        ] {
            assert_eq!(HashAlgorithm::from_wire(w as i32), Some(h));
        }
        assert_eq!(
            HashAlgorithm::from_wire(W::UnspecifiedHashAlgorithm as i32),
            None
        );
        use spire_proto::spire::plugin::server::keymanager::v1::KeyType as K;
        for (w, t) in [
            (K::EcP256, KeyType::EcP256),
            (K::EcP384, KeyType::EcP384),
            (K::Rsa2048, KeyType::Rsa2048),
            (K::Rsa4096, KeyType::Rsa4096),
        ] {
            assert_eq!(key_type_from_proto(w as i32), Some(t));
            assert_eq!(key_type_to_proto(t), w as i32);
        }
        assert_eq!(key_type_from_proto(K::UnspecifiedKeyType as i32), None);
    }

    #[test]
    fn digests_must_have_their_hash_s_length() {
        let opts = SignerOpts::Hash(HashAlgorithm::Sha384);
        assert!(digest(&[0; 48], opts).is_ok());
        let err = digest(&[0; 32], opts).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "digest is 32 bytes long, Sha384 digests are 48"
        );
        assert_eq!(key_id("").unwrap_err().message(), "key id is required");
    }
}
