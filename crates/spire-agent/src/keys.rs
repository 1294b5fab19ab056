//! The agent SVID's key in the KeyManager, under SPIRE's IDs `agent-svid-A` and
//! `agent-svid-B` (a rotation writes the slot not in use, so the current key survives until
//! the new SVID is in place).
//!
//! The TLS stack needs the key itself, while `spire_plugin::KeyManager` only hands out
//! signers. For the built-in `disk` KeyManager the key is read back from the KeyManager's
//! own file (SPIRE's `keys.json` format); the `memory` KeyManager is reproduced here, since
//! its keys never leave the process anyway.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use spiffe_core::{KeyType, PrivateKey};
use spire_plugin::KeyManager as _;
use spire_plugins::keymanager::LocalKeyManager;

/// Key ID of slot A.
pub const SLOT_A: &str = "agent-svid-A";
/// Key ID of slot B.
pub const SLOT_B: &str = "agent-svid-B";

/// Errors of the SVID key store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The KeyManager failed.
    #[error("{0}")]
    KeyManager(#[from] spire_plugin::PluginError),
    /// The key file could not be read back.
    #[error("unable to read key {id:?} back from {path}: {reason}")]
    ReadBack {
        /// Key ID.
        id: String,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Key generation failed.
    #[error("unable to generate key: {0}")]
    Generate(String),
}

/// A key in a slot: its ID and PKCS#8 DER.
#[derive(Clone)]
pub struct SlotKey {
    /// `agent-svid-A` or `agent-svid-B`.
    pub id: String,
    /// PKCS#8 DER.
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SlotKey {
    /// The parsed key.
    pub fn private_key(&self) -> Result<PrivateKey, KeyStoreError> {
        PrivateKey::from_pkcs8_der(&self.pkcs8).map_err(|e| KeyStoreError::Generate(e.to_string()))
    }
}

/// Where the agent SVID keys live.
#[derive(Debug)]
pub enum SvidKeyStore {
    /// The `memory` KeyManager.
    Memory(Mutex<BTreeMap<String, Vec<u8>>>),
    /// The `disk` KeyManager writing `<directory>/keys.json`.
    Disk {
        /// The KeyManager.
        km: LocalKeyManager,
        /// Its key file.
        path: PathBuf,
    },
}

impl SvidKeyStore {
    /// The `memory` KeyManager.
    pub fn memory() -> Self {
        SvidKeyStore::Memory(Mutex::new(BTreeMap::new()))
    }

    /// The `disk` KeyManager over `directory`.
    pub fn disk(directory: &str) -> Result<Self, KeyStoreError> {
        let config = spire_plugins::keymanager::AgentDiskConfig {
            directory: directory.to_string(),
        };
        let km = LocalKeyManager::agent_disk(&config)?;
        Ok(SvidKeyStore::Disk {
            km,
            path: PathBuf::from(directory).join("keys.json"),
        })
    }

    fn read_back(path: &PathBuf, id: &str) -> Result<Option<Vec<u8>>, KeyStoreError> {
        let err = |reason: String| KeyStoreError::ReadBack {
            id: id.to_string(),
            path: path.clone(),
            reason,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        #[derive(serde::Deserialize)]
        struct KeysFile {
            #[serde(default)]
            keys: BTreeMap<String, String>,
        }
        let file: KeysFile = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        match file.keys.get(id) {
            None => Ok(None),
            Some(b64) => STANDARD
                .decode(b64.as_bytes())
                .map(Some)
                .map_err(|e| err(e.to_string())),
        }
    }

    /// The SVID keys present, A before B.
    pub async fn keys(&self) -> Result<Vec<SlotKey>, KeyStoreError> {
        let mut out = Vec::new();
        for id in [SLOT_A, SLOT_B] {
            let pkcs8 = match self {
                SvidKeyStore::Memory(m) => m.lock().get(id).cloned(),
                SvidKeyStore::Disk { km, path } => {
                    if km.get_public_key(id).await?.is_none() {
                        None
                    } else {
                        Self::read_back(path, id)?
                    }
                }
            };
            if let Some(pkcs8) = pkcs8 {
                out.push(SlotKey {
                    id: id.to_string(),
                    pkcs8,
                });
            }
        }
        Ok(out)
    }

    /// Generates a key in the slot not used by `current` (A when there is none).
    pub async fn generate(&self, current: Option<&str>) -> Result<SlotKey, KeyStoreError> {
        let id = if current == Some(SLOT_A) {
            SLOT_B
        } else {
            SLOT_A
        };
        let pkcs8 = match self {
            SvidKeyStore::Memory(m) => {
                let key = PrivateKey::generate(KeyType::EcP256)
                    .map_err(|e| KeyStoreError::Generate(e.to_string()))?;
                let der = key.pkcs8_der().to_vec();
                m.lock().insert(id.to_string(), der.clone());
                der
            }
            SvidKeyStore::Disk { km, path } => {
                let managed = km.generate_key(id, KeyType::EcP256).await?;
                let der = Self::read_back(path, id)?.ok_or_else(|| KeyStoreError::ReadBack {
                    id: id.to_string(),
                    path: path.clone(),
                    reason: "key missing after generation".into(),
                })?;
                let key = PrivateKey::from_pkcs8_der(&der)
                    .map_err(|e| KeyStoreError::Generate(e.to_string()))?;
                if key.public_key() != &managed.public_key {
                    return Err(KeyStoreError::ReadBack {
                        id: id.to_string(),
                        path: path.clone(),
                        reason: "key file does not match the KeyManager".into(),
                    });
                }
                der
            }
        };
        Ok(SlotKey {
            id: id.to_string(),
            pkcs8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_alternate_and_disk_persists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_string_lossy().to_string();
        let store = SvidKeyStore::disk(&d).unwrap();
        assert!(store.keys().await.unwrap().is_empty());
        let a = store.generate(None).await.unwrap();
        assert_eq!(a.id, SLOT_A);
        let b = store.generate(Some(SLOT_A)).await.unwrap();
        assert_eq!(b.id, SLOT_B);
        let again = SvidKeyStore::disk(&d).unwrap();
        let keys = again.keys().await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].pkcs8, a.pkcs8);
        assert_eq!(keys[1].pkcs8, b.pkcs8);
        assert!(keys[0].private_key().is_ok());

        let mem = SvidKeyStore::memory();
        let k = mem.generate(Some(SLOT_B)).await.unwrap();
        assert_eq!(k.id, SLOT_A);
        assert_eq!(mem.keys().await.unwrap().len(), 1);
        assert!(format!("{k:?}").contains("agent-svid-A"));
    }
}
