//! An example KeyManager written with spire-plugin-sdk: the Rust twin of the Go test plugins
//! `conformance/goplugins/{server,agent}-keymanager-memkeys`. Keys live in the plugin's
//! memory (lost when it exits, as with the built-in `memory` KeyManager) and sign the digests
//! the host sends with aws-lc-rs: ASN.1 DER ECDSA, RSA PKCS #1 v1.5 or RSA-PSS, as Go's
//! signers do. The fingerprint of a key is the hex SHA-256 of its PKIX public key.
//!
//! One executable serves either side; `plugin_args` chooses (the server's by default):
//!
//! ```hcl
//! KeyManager "rustkeys" {
//!     plugin_cmd = "/path/to/keymanager_rust_memkeys"
//!     plugin_args = ["agent"]
//! }
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use spiffe_core::{KeyType, PublicKey};
use spire_plugin::{Code, ManagedKey, PluginError, PluginResult};
use spire_plugin_sdk::{DigestKeyManager, DigestSignature, HashAlgorithm, Plugin, SignerOpts, log};

enum Private {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct Key {
    private: Private,
    public: ManagedKey,
}

#[derive(Default)]
struct MemKeys {
    keys: RwLock<BTreeMap<String, Arc<Key>>>,
}

fn internal(what: &str) -> PluginError {
    PluginError::internal(format!("unable to {what}"))
}

fn generate(key_type: KeyType) -> PluginResult<(Private, Vec<u8>)> {
    let ec = |alg| -> PluginResult<(Private, Vec<u8>)> {
        let k = EcdsaKeyPair::generate(alg).map_err(|_| internal("generate key"))?;
        let der = k
            .public_key()
            .as_der()
            .map_err(|_| internal("marshal public key"))?;
        let der = der.as_ref().to_vec();
        Ok((Private::Ec(k), der))
    };
    let rsa = |size| -> PluginResult<(Private, Vec<u8>)> {
        let k = RsaKeyPair::generate(size).map_err(|_| internal("generate key"))?;
        let der = k
            .public_key()
            .as_der()
            .map_err(|_| internal("marshal public key"))?;
        let der = der.as_ref().to_vec();
        Ok((Private::Rsa(k), der))
    };
    match key_type {
        KeyType::EcP256 => ec(&sig::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeyType::EcP384 => ec(&sig::ECDSA_P384_SHA384_ASN1_SIGNING),
        KeyType::Rsa2048 => rsa(KeySize::Rsa2048),
        KeyType::Rsa4096 => rsa(KeySize::Rsa4096),
    }
}

fn unsupported(hash: HashAlgorithm) -> PluginError {
    PluginError::invalid_argument(format!("unsupported hash algorithm {hash:?}"))
}

/// The digest as aws-lc-rs takes it (its length was checked by the SDK).
fn imported(bytes: &[u8], hash: HashAlgorithm) -> PluginResult<Digest> {
    let alg = match hash {
        HashAlgorithm::Sha256 => &digest::SHA256,
        HashAlgorithm::Sha384 => &digest::SHA384,
        HashAlgorithm::Sha512 => &digest::SHA512,
        other => return Err(unsupported(other)),
    };
    Digest::import_less_safe(bytes, alg).map_err(|_| internal("read digest"))
}

fn rsa_padding(opts: SignerOpts) -> PluginResult<&'static dyn sig::RsaEncoding> {
    Ok(match opts {
        SignerOpts::Hash(HashAlgorithm::Sha256) => &sig::RSA_PKCS1_SHA256,
        SignerOpts::Hash(HashAlgorithm::Sha384) => &sig::RSA_PKCS1_SHA384,
        SignerOpts::Hash(HashAlgorithm::Sha512) => &sig::RSA_PKCS1_SHA512,
        SignerOpts::Pss { hash, salt_length } => {
            // aws-lc-rs salts PSS with as many bytes as the digest has: Go's
            // `PSSSaltLengthEqualsHash` (-1), or that length given outright.
            if salt_length != -1 && usize::try_from(salt_length) != Ok(hash.output_len()) {
                return Err(PluginError::invalid_argument(format!(
                    "unsupported PSS salt length {salt_length}"
                )));
            }
            match hash {
                HashAlgorithm::Sha256 => &sig::RSA_PSS_SHA256,
                HashAlgorithm::Sha384 => &sig::RSA_PSS_SHA384,
                HashAlgorithm::Sha512 => &sig::RSA_PSS_SHA512,
                other => return Err(unsupported(other)),
            }
        }
        SignerOpts::Hash(other) => return Err(unsupported(other)),
    })
}

impl Key {
    fn sign(&self, bytes: &[u8], opts: SignerOpts) -> PluginResult<Vec<u8>> {
        let digest = imported(bytes, opts.hash())?;
        match &self.private {
            Private::Ec(k) => {
                if matches!(opts, SignerOpts::Pss { .. }) {
                    return Err(PluginError::invalid_argument(
                        "PSS options are for RSA keys",
                    ));
                }
                // An ECDSA key pair signs digests of its curve's hash, which is what both
                // hosts send (SHA-256 for P-256, SHA-384 for P-384).
                k.sign_digest(&digest)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| {
                        PluginError::invalid_argument(format!(
                            "key {:?} does not sign {:?} digests",
                            self.public.id,
                            opts.hash()
                        ))
                    })
            }
            Private::Rsa(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign_digest(rsa_padding(opts)?, &digest, &mut out)
                    .map_err(|_| internal("sign data"))?;
                Ok(out)
            }
        }
    }
}

impl MemKeys {
    fn key(&self, key_id: &str) -> PluginResult<Option<Arc<Key>>> {
        let keys = self.keys.read().map_err(|_| internal("read keys"))?;
        Ok(keys.get(key_id).cloned())
    }
}

#[async_trait::async_trait]
impl DigestKeyManager for MemKeys {
    async fn generate_key(&self, key_id: &str, key_type: KeyType) -> PluginResult<ManagedKey> {
        // RSA-4096 generation takes a while: off the runtime's thread.
        let (private, pkix) = tokio::task::spawn_blocking(move || generate(key_type))
            .await
            .map_err(|_| internal("generate key"))??;
        let public_key = PublicKey::from_spki_der(&pkix)
            .map_err(|e| PluginError::internal(format!("unable to read public key: {e}")))?;
        let fingerprint = hex::encode(digest::digest(&digest::SHA256, &pkix));
        let public = ManagedKey {
            id: key_id.to_owned(),
            key_type,
            public_key,
            fingerprint,
        };
        let key = Arc::new(Key {
            private,
            public: public.clone(),
        });
        self.keys
            .write()
            .map_err(|_| internal("store key"))?
            .insert(key_id.to_owned(), key);
        log::debug(
            "Generated key",
            &[("key_id", key_id), ("key_type", &format!("{key_type:?}"))],
        );
        Ok(public)
    }

    async fn get_public_key(&self, key_id: &str) -> PluginResult<Option<ManagedKey>> {
        Ok(self.key(key_id)?.map(|k| k.public.clone()))
    }

    async fn get_public_keys(&self) -> PluginResult<Vec<ManagedKey>> {
        let keys = self.keys.read().map_err(|_| internal("read keys"))?;
        Ok(keys.values().map(|k| k.public.clone()).collect())
    }

    async fn sign_data(
        &self,
        key_id: &str,
        digest: &[u8],
        opts: SignerOpts,
    ) -> PluginResult<DigestSignature> {
        let key = self
            .key(key_id)?
            .ok_or_else(|| PluginError::new(Code::NotFound, format!("key {key_id:?} not found")))?;
        let signature = key.sign(digest, opts)?;
        Ok(DigestSignature {
            signature,
            key_fingerprint: key.public.fingerprint.clone(),
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let keys: Arc<dyn DigestKeyManager> = Arc::new(MemKeys::default());
    let plugin = match std::env::args().nth(1).as_deref() {
        None | Some("server") => Plugin::server_key_manager(keys),
        Some("agent") => Plugin::agent_key_manager(keys),
        Some(other) => {
            log::error(
                "Unknown side: the only argument is \"server\" or \"agent\"",
                &[("argument", other)],
            );
            return ExitCode::FAILURE;
        }
    };
    spire_plugin_sdk::serve(plugin).await
}
