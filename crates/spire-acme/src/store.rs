//! Where the manager keeps keys and certificates.
//!
//! - [`FileStore`]: Go's `autocert.DirCache` as autocert itself uses it (SPIRE's OIDC
//!   discovery provider): the account key in `acme_account+key` (an `EC PRIVATE KEY` PEM
//!   block) and one file per domain named after it holding the key's PEM block followed by
//!   the chain's `CERTIFICATE` blocks; directory 0700, files 0600. Without a directory,
//!   keys and certificates live in memory only.
//! - [`KeyManagerStore`]: SPIRE's fork of autocert for the server's bundle endpoint: keys
//!   in the server's KeyManager under `bundle-acme-acme_account+key` and
//!   `bundle-acme-<domain>` (ECDSA P-256), the cache file `<domain>` holding only the
//!   chain's `CERTIFICATE` blocks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use spiffe_core::KeyType;
use spiffe_core::PrivateKey;
use spire_plugin::{Code, KeyManager, LocalSigner, Signer};

/// The account key's name (in the cache, and after the prefix in a KeyManager).
pub const ACCOUNT_KEY_NAME: &str = "acme_account+key";
/// The name older autocert versions stored the account key under (still read).
pub const LEGACY_ACCOUNT_KEY_NAME: &str = "acme_account.key";
/// The prefix of the bundle endpoint's key IDs in the KeyManager.
pub const KEY_PREFIX: &str = "bundle-acme-";

/// Keys and certificates for the manager.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The account key, created (and kept) when there is none.
    async fn account_key(&self) -> Result<Arc<dyn Signer>, String>;
    /// A new key for `domain`'s certificate (replacing the stored one, if any).
    async fn new_key(&self, domain: &str) -> Result<Arc<dyn Signer>, String>;
    /// The stored chain for `domain` and its key; `None` when absent or unusable.
    async fn load(&self, domain: &str) -> Option<(Vec<Vec<u8>>, Arc<dyn Signer>)>;
    /// Stores `domain`'s chain (its key is the one [`Store::new_key`] or [`Store::load`]
    /// last gave for `domain`).
    async fn save(&self, domain: &str, chain: &[Vec<u8>]) -> Result<(), String>;
}

/// autocert's `DirCache`.
#[derive(Debug, Clone)]
pub struct DirCache(pub PathBuf);

impl DirCache {
    /// The entry `name`, `None` when absent.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(self.0.join(name)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(spire_gocompat::os::path_error(
                "open",
                &self.0.join(name).display().to_string(),
                &e,
            )),
        }
    }

    /// The entry `name` for a cache lookup: `None` when absent or unreadable (logged).
    pub fn entry(&self, name: &str) -> Option<Vec<u8>> {
        match self.get(name) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "Failed to read the ACME cache");
                None
            }
        }
    }

    /// Writes the entry `name` (0600, through a temporary file renamed into place; the
    /// directory is created 0700).
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), String> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .map_err(|e| {
                spire_gocompat::os::path_error("mkdir", &self.0.display().to_string(), &e)
            })?;
        let tmp = self.0.join(format!(".{name}.tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.0.join(name))
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            spire_gocompat::os::path_error("write", &self.0.join(name).display().to_string(), &e)
        })
    }
}

/// A PEM block as Go's `pem.Encode` writes it (LF line ends, 64 columns).
pub fn pem_block(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A fresh ECDSA P-256 key.
pub fn generate_key() -> Result<PrivateKey, String> {
    PrivateKey::generate_ec(spiffe_core::keys::Curve::P256).map_err(|e| e.to_string())
}

/// A key from a PEM block's DER: SEC1 (`EC PRIVATE KEY`, what autocert writes) or PKCS#8
/// (`PRIVATE KEY`). Keys other than ECDSA P-256 are refused.
pub fn key_from_der(der: &[u8]) -> Result<PrivateKey, String> {
    let kp = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
        .or_else(|_| EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der))
        .map_err(|_| "acme/autocert: failed to parse private key".to_string())?;
    let doc = kp
        .to_pkcs8v1()
        .map_err(|_| "failed to encode an ECDSA key".to_string())?;
    PrivateKey::from_pkcs8_der(doc.as_ref()).map_err(|e| e.to_string())
}

/// The `EC PRIVATE KEY` PEM block autocert writes (SEC1, as Go's
/// `x509.MarshalECPrivateKey`).
pub fn key_to_sec1_pem(key: &PrivateKey) -> Result<String, String> {
    use aws_lc_rs::encoding::{AsDer as _, EcPrivateKeyRfc5915Der};
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.pkcs8_der())
        .map_err(|_| "acme/autocert: only ECDSA P-256 keys are cached".to_string())?;
    let sec1: EcPrivateKeyRfc5915Der<'static> = kp
        .private_key()
        .as_der()
        .map_err(|_| "failed to encode an ECDSA key".to_string())?;
    Ok(pem_block("EC PRIVATE KEY", sec1.as_ref()))
}

fn signer(name: &str, key: PrivateKey) -> Arc<dyn Signer> {
    Arc::new(LocalSigner::new(name, key))
}

/// autocert's own layout (keys inside the cache files).
#[derive(Debug, Default)]
pub struct FileStore {
    cache: Option<DirCache>,
    account: tokio::sync::Mutex<Option<Arc<dyn Signer>>>,
    /// The PKCS#8 of each domain's key, for writing it beside the chain.
    keys: parking_lot::Mutex<HashMap<String, Vec<u8>>>,
}

impl FileStore {
    /// A store in `dir` (`None`: memory only).
    pub fn new(dir: Option<PathBuf>) -> FileStore {
        FileStore {
            cache: dir.map(DirCache),
            ..FileStore::default()
        }
    }

    /// A domain's cache entry: the key's PEM block, then the chain's.
    pub fn encode_entry(key: &PrivateKey, chain: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        let mut out = key_to_sec1_pem(key)?;
        for c in chain {
            out.push_str(&pem_block("CERTIFICATE", c));
        }
        Ok(out.into_bytes())
    }

    /// Reads a domain's cache entry: the key and the chain.
    pub fn decode_entry(data: &[u8]) -> Option<(PrivateKey, Vec<Vec<u8>>)> {
        let blocks = pem::parse_many(data).ok()?;
        let (first, rest) = blocks.split_first()?;
        if !first.tag().contains("PRIVATE") {
            return None;
        }
        let key = key_from_der(first.contents()).ok()?;
        Some((key, rest.iter().map(|b| b.contents().to_vec()).collect()))
    }
}

#[async_trait]
impl Store for FileStore {
    async fn account_key(&self) -> Result<Arc<dyn Signer>, String> {
        let mut g = self.account.lock().await;
        if let Some(k) = &*g {
            return Ok(k.clone());
        }
        let key = match &self.cache {
            None => generate_key()?,
            Some(cache) => {
                let data = match cache.get(ACCOUNT_KEY_NAME)? {
                    Some(d) => Some(d),
                    None => cache.get(LEGACY_ACCOUNT_KEY_NAME)?,
                };
                match data {
                    None => {
                        let key = generate_key()?;
                        cache.put(ACCOUNT_KEY_NAME, key_to_sec1_pem(&key)?.as_bytes())?;
                        key
                    }
                    Some(d) => {
                        let block = pem::parse(&d)
                            .ok()
                            .filter(|b| b.tag().contains("PRIVATE"))
                            .ok_or("acme/autocert: invalid account key found in cache")?;
                        key_from_der(block.contents())?
                    }
                }
            }
        };
        let s = signer(ACCOUNT_KEY_NAME, key);
        *g = Some(s.clone());
        Ok(s)
    }

    async fn new_key(&self, domain: &str) -> Result<Arc<dyn Signer>, String> {
        let key = generate_key()?;
        self.keys
            .lock()
            .insert(domain.to_string(), key.pkcs8_der().to_vec());
        Ok(signer(domain, key))
    }

    async fn load(&self, domain: &str) -> Option<(Vec<Vec<u8>>, Arc<dyn Signer>)> {
        let data = self.cache.as_ref()?.entry(domain)?;
        let (key, chain) = FileStore::decode_entry(&data)?;
        self.keys
            .lock()
            .insert(domain.to_string(), key.pkcs8_der().to_vec());
        Some((chain, signer(domain, key)))
    }

    async fn save(&self, domain: &str, chain: &[Vec<u8>]) -> Result<(), String> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let pkcs8 = self
            .keys
            .lock()
            .get(domain)
            .cloned()
            .ok_or("acme/autocert: the certificate's key is not known")?;
        let key = PrivateKey::from_pkcs8_der(&pkcs8).map_err(|e| e.to_string())?;
        cache.put(domain, &FileStore::encode_entry(&key, chain)?)
    }
}

/// SPIRE's bundle endpoint layout: keys in a KeyManager, certificates in the cache.
#[derive(Debug)]
pub struct KeyManagerStore {
    km: Arc<dyn KeyManager>,
    cache: DirCache,
    subsystem: &'static str,
}

impl KeyManagerStore {
    /// Keys in `km`, certificates in `dir`; logs carry `subsystem` as `subsystem_name`.
    pub fn new(km: Arc<dyn KeyManager>, dir: PathBuf, subsystem: &'static str) -> KeyManagerStore {
        KeyManagerStore {
            km,
            cache: DirCache(dir),
            subsystem,
        }
    }

    async fn generate(&self, id: &str) -> Result<Arc<dyn Signer>, String> {
        let key_id = format!("{KEY_PREFIX}{id}");
        self.km
            .generate_key(&key_id, KeyType::EcP256)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(id = %key_id, subsystem_name = self.subsystem, "Generated new key");
        self.km.signer(&key_id).await.map_err(|e| e.to_string())
    }

    async fn existing(&self, id: &str) -> Result<Option<Arc<dyn Signer>>, String> {
        match self.km.signer(&format!("{KEY_PREFIX}{id}")).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.code == Code::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A cache entry's chain: PEM blocks only, nothing left over.
    pub fn decode_entry(data: &[u8]) -> Option<Vec<Vec<u8>>> {
        let text = std::str::from_utf8(data).ok()?;
        let blocks = pem::parse_many(text).ok()?;
        let end = "-----END CERTIFICATE-----";
        // Leftover content after the last block: corrupt, as autocert judges it.
        let tail = text
            .rfind(end)
            .map(|i| &text[i + end.len()..])
            .unwrap_or(text);
        if !tail.trim().is_empty() || blocks.is_empty() {
            return None;
        }
        Some(blocks.into_iter().map(|b| b.into_contents()).collect())
    }
}

#[async_trait]
impl Store for KeyManagerStore {
    async fn account_key(&self) -> Result<Arc<dyn Signer>, String> {
        match self.existing(ACCOUNT_KEY_NAME).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => self
                .generate(ACCOUNT_KEY_NAME)
                .await
                .map_err(|e| format!("acme/autocert: unable to generate account key: {e}")),
            Err(e) => Err(format!("acme/autocert: unable to get account key: {e}")),
        }
    }

    async fn new_key(&self, domain: &str) -> Result<Arc<dyn Signer>, String> {
        self.generate(domain).await
    }

    async fn load(&self, domain: &str) -> Option<(Vec<Vec<u8>>, Arc<dyn Signer>)> {
        let data = self.cache.entry(domain)?;
        let chain = KeyManagerStore::decode_entry(&data)?;
        let key = self.existing(domain).await.ok()??;
        Some((chain, key))
    }

    async fn save(&self, domain: &str, chain: &[Vec<u8>]) -> Result<(), String> {
        let data: String = chain.iter().map(|c| pem_block("CERTIFICATE", c)).collect();
        self.cache.put(domain, data.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_round_trip_in_autocert_format() {
        let key = generate_key().unwrap();
        let kp = rcgen::KeyPair::try_from(key.pkcs8_der()).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["oidc.example.org".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap()
            .der()
            .to_vec();
        let data = FileStore::encode_entry(&key, std::slice::from_ref(&cert)).unwrap();
        let text = String::from_utf8(data.clone()).unwrap();
        assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 1);
        let (back, chain) = FileStore::decode_entry(&data).unwrap();
        assert_eq!(back.pkcs8_der(), key.pkcs8_der());
        assert_eq!(chain, vec![cert]);
        assert!(FileStore::decode_entry(b"garbage").is_none());
    }

    #[tokio::test]
    async fn file_store_files_are_private_and_the_account_key_persists() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        let store = FileStore::new(Some(dir.clone()));
        let a = store.account_key().await.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(ACCOUNT_KEY_NAME)), 0o600);
        let text = std::fs::read_to_string(dir.join(ACCOUNT_KEY_NAME)).unwrap();
        assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let b = FileStore::new(Some(dir)).account_key().await.unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }

    /// A throwaway key written by Go's `x509.MarshalECPrivateKey` + `pem.Encode`, as
    /// autocert stores keys.
    const GO_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEICrK6rOKuAlspMzDZ7aaK/4G5WNbNFAEQdKU9gwziviooAoGCCqGSM49
AwEHoUQDQgAE4uHs6T85bT2CE2dlHawfxtcro8+90sJ8X5vJStwBm3Ks25RazInN
kR7stty054CzdVREZUJZcWoeCodfsCY+Dg==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn keys_written_by_go_are_read_and_written_back_byte_for_byte() {
        let block = pem::parse(GO_SEC1_PEM).unwrap();
        let key = key_from_der(block.contents()).unwrap();
        assert_eq!(key_to_sec1_pem(&key).unwrap(), GO_SEC1_PEM);
    }
}
