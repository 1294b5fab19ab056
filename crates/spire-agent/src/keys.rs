//! The agent SVID's key in the KeyManager, under SPIRE's IDs `agent-svid-A` and
//! `agent-svid-B` (a rotation writes the slot not in use, so the current key survives until
//! the new SVID is in place).
//!
//! The key never leaves the KeyManager: CSRs are signed and TLS handshakes are answered
//! through the KeyManager's [`Signer`], which `spire_tls::SvidResolver::set_signer` and
//! `spire_pki::make_csr_with_signer` accept.

use std::sync::Arc;

use spiffe_core::KeyType;
use spire_plugin::{KeyManager, Signer};
use spire_plugins::keymanager::LocalKeyManager;

/// Key ID of slot A.
pub const SLOT_A: &str = "agent-svid-A";
/// Key ID of slot B.
pub const SLOT_B: &str = "agent-svid-B";

/// The agent SVID key type (SPIRE's `keymanager.ForSVID`).
pub const SVID_KEY_TYPE: KeyType = KeyType::EcP256;

/// Errors of the SVID key store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The KeyManager failed.
    #[error("{0}")]
    KeyManager(#[from] spire_plugin::PluginError),
}

/// A key in a slot: its ID and a signer for it.
#[derive(Debug, Clone)]
pub struct SlotKey {
    /// `agent-svid-A` or `agent-svid-B`.
    pub id: String,
    /// Signs with the key inside the KeyManager.
    pub signer: Arc<dyn Signer>,
}

impl SlotKey {
    /// The key's PKIX public key (DER).
    pub fn spki_der(&self) -> &[u8] {
        self.signer.public_key().spki_der()
    }
}

/// Where the agent SVID keys live: the agent's KeyManager.
#[derive(Debug, Clone)]
pub struct SvidKeyStore {
    km: Arc<dyn KeyManager>,
    metrics: spire_telemetry::Metrics,
}

impl SvidKeyStore {
    /// Keys in `km`.
    pub fn new(km: Arc<dyn KeyManager>) -> Self {
        Self {
            km,
            metrics: spire_telemetry::Metrics::disabled(),
        }
    }

    /// Counts calls as SPIRE's `agent_key_manager_*` metrics.
    pub fn with_metrics(mut self, metrics: spire_telemetry::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The `memory` KeyManager.
    pub fn memory() -> Self {
        Self::new(Arc::new(LocalKeyManager::memory()))
    }

    /// The `disk` KeyManager over `directory` (`<directory>/keys.json`).
    pub fn disk(directory: &str) -> Result<Self, KeyStoreError> {
        let config = spire_plugins::keymanager::AgentDiskConfig {
            directory: directory.to_string(),
        };
        Ok(Self::new(Arc::new(LocalKeyManager::agent_disk(&config)?)))
    }

    /// The SVID keys present, A before B.
    pub async fn keys(&self) -> Result<Vec<SlotKey>, KeyStoreError> {
        let call = self.metrics.start_call(&["agent_key_manager", "get_keys"]);
        let r = self.keys_uncounted().await;
        call.done(code(&r));
        r
    }

    async fn keys_uncounted(&self) -> Result<Vec<SlotKey>, KeyStoreError> {
        let mut out = Vec::new();
        for id in [SLOT_A, SLOT_B] {
            if self.km.get_public_key(id).await?.is_some() {
                out.push(SlotKey {
                    id: id.to_string(),
                    signer: self.km.signer(id).await?,
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
        let call = self
            .metrics
            .start_call(&["agent_key_manager", "generate_key"]);
        let r = self.km.generate_key(id, SVID_KEY_TYPE).await;
        call.done(code(&r));
        r?;
        Ok(SlotKey {
            id: id.to_string(),
            signer: self.km.signer(id).await?,
        })
    }
}

/// OK, or Unknown for a failed KeyManager call.
fn code<T, E>(r: &Result<T, E>) -> tonic::Code {
    if r.is_ok() {
        tonic::Code::Ok
    } else {
        tonic::Code::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spire_plugin::SignatureKind;

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
        assert_ne!(a.spki_der(), b.spki_der());
        // A KeyManager opened again on the same directory has the same keys.
        let again = SvidKeyStore::disk(&d).unwrap();
        let keys = again.keys().await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].spki_der(), a.spki_der());
        assert_eq!(keys[1].spki_der(), b.spki_der());
        let es256 = SignatureKind::Jws(spiffe_core::keys::JwsAlgorithm::ES256);
        let sig = keys[0].signer.sign(b"msg", es256).unwrap();
        assert!(a.signer.public_key().verify_jws(
            spiffe_core::keys::JwsAlgorithm::ES256,
            b"msg",
            &sig
        ));
        // Rotating from B writes A again, with a new key.
        let a2 = again.generate(Some(SLOT_B)).await.unwrap();
        assert_eq!(a2.id, SLOT_A);
        assert_ne!(a2.spki_der(), a.spki_der());

        let mem = SvidKeyStore::memory();
        let k = mem.generate(Some(SLOT_B)).await.unwrap();
        assert_eq!(k.id, SLOT_A);
        assert_eq!(mem.keys().await.unwrap().len(), 1);
        assert!(format!("{k:?}").contains("agent-svid-A"));
    }
}
