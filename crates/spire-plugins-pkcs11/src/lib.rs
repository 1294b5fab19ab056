//! KeyManager `pkcs11` for spire-server and spire-agent, a spire-rs addition (SPIRE 1.13
//! keeps keys in files, memory or cloud KMSes only): keys are generated in a PKCS#11 token
//! (an HSM, a smart card, SoftHSM) and never leave it; the server's X.509 CA and JWT keys
//! and the agent's SVID key sign through it.
//!
//! ```hcl
//! KeyManager "pkcs11" {
//!     plugin_data {
//!         module_path = "/usr/lib/softhsm/libsofthsm2.so"
//!         token_label = "spire"            # or: slot_id = 1234
//!         user_pin_file = "/etc/spire/pin" # or: user_pin = "…"
//!         key_label_prefix = "spire-server-"  # the default; "spire-agent-" for the agent
//!     }
//! }
//! ```
//!
//! A key is a private and a public key object labelled `<key_label_prefix><SPIRE key ID>`
//! (e.g. `spire-server-x509-CA-A`), so a restarted server finds its keys again, and servers
//! with different prefixes can share a token (prefixes must not be prefixes of one another).
//! Key types: EC P-256, EC P-384, RSA-2048, RSA-4096. Generating a key replaces the one with
//! the same ID once the new one exists ([`objects`] tells how an interrupted replacement is
//! recovered). Messages never carry the PIN.
//!
//! - `config`: `plugin_data` and its parsing.
//! - `token`: the module (initialized once per process) and a pool of logged-in sessions,
//!   reopened after the token reports them lost (`CKR_SESSION_HANDLE_INVALID`,
//!   `CKR_TOKEN_NOT_PRESENT`, …).
//! - `objects`: finding, generating and replacing key objects.
//! - `sign`: the [`spire_plugin::Signer`] (digests made here, signed by the token).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use spiffe_core::KeyType;
use spire_plugin::{KeyManager, ManagedKey, PluginError, PluginResult, Signer};

mod config;
mod error;
mod objects;
mod sign;
mod token;

pub use config::{Config, Pin, PinSource, Settings, Side, TokenSelector};
pub use error::Pkcs11Error;
pub use sign::Pkcs11Signer;

use token::{SharedToken, Token};

/// The plugin's name in `plugins {}`.
pub const PLUGIN_NAME: &str = "pkcs11";

/// The longest SPIRE key ID accepted (labels are kept readable by token tools).
const MAX_KEY_ID_LEN: usize = 128;

/// Keys in a PKCS#11 token.
pub struct Pkcs11KeyManager {
    token: SharedToken,
    prefix: String,
    keys: Mutex<BTreeMap<String, Arc<Pkcs11Signer>>>,
}

impl std::fmt::Debug for Pkcs11KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyManager")
            .field("token", &self.token)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Pkcs11KeyManager {
    /// Loads the module, finds the token, logs in and reads the keys under the prefix.
    /// Blocks (module loading and token calls); see [`Pkcs11KeyManager::start`].
    pub fn open(settings: &Settings) -> Result<Self, Pkcs11Error> {
        let pin = settings.pin.read()?;
        let ctx = token::module(&settings.module_path)?;
        let token = Arc::new(Token::open(ctx, settings.token.clone(), pin)?);
        let name = token.name();
        let prefix = settings.key_label_prefix.clone();
        let stored = token.run(|session, _, _| objects::list(session, &prefix, &name))?;
        let keys = stored
            .into_iter()
            .map(|k| {
                (
                    k.key_id.clone(),
                    Arc::new(Pkcs11Signer::new(token.clone(), k)),
                )
            })
            .collect::<BTreeMap<_, _>>();
        tracing::info!(
            token = %name,
            key_label_prefix = %prefix,
            keys = keys.len(),
            "PKCS#11 token opened"
        );
        Ok(Self {
            token,
            prefix,
            keys: Mutex::new(keys),
        })
    }

    /// [`Pkcs11KeyManager::open`] on a blocking thread.
    pub async fn start(settings: Settings) -> Result<Self, Pkcs11Error> {
        let path = settings.module_path.display().to_string();
        tokio::task::spawn_blocking(move || Self::open(&settings))
            .await
            .map_err(|e| Pkcs11Error::Module {
                path,
                reason: e.to_string(),
            })?
    }

    /// The label the key `key_id` has in the token.
    pub fn label(&self, key_id: &str) -> String {
        format!("{}{key_id}", self.prefix)
    }
}

#[async_trait]
impl KeyManager for Pkcs11KeyManager {
    async fn generate_key(&self, key_id: &str, key_type: KeyType) -> PluginResult<ManagedKey> {
        if key_id.is_empty() {
            return Err(PluginError::invalid_argument("key id is required"));
        }
        if key_id.len() > MAX_KEY_ID_LEN || key_id.chars().any(char::is_control) {
            return Err(Pkcs11Error::InvalidArgument(format!("invalid key id {key_id:?}")).into());
        }
        let token = self.token.clone();
        let prefix = self.prefix.clone();
        let id = key_id.to_string();
        let stored = tokio::task::spawn_blocking(move || {
            let name = token.name();
            token.run(|session, _, _| objects::generate(session, &prefix, &id, key_type, &name))
        })
        .await
        .map_err(|e| PluginError::internal(e.to_string()))??;
        let signer = Arc::new(Pkcs11Signer::new(self.token.clone(), stored));
        let info = signer.info().clone();
        self.keys.lock().insert(key_id.to_string(), signer);
        Ok(info)
    }

    async fn get_public_key(&self, key_id: &str) -> PluginResult<Option<ManagedKey>> {
        Ok(self.keys.lock().get(key_id).map(|s| s.info().clone()))
    }

    async fn get_public_keys(&self) -> PluginResult<Vec<ManagedKey>> {
        Ok(self
            .keys
            .lock()
            .values()
            .map(|s| s.info().clone())
            .collect())
    }

    async fn signer(&self, key_id: &str) -> PluginResult<Arc<dyn Signer>> {
        let keys = self.keys.lock();
        let signer = keys
            .get(key_id)
            .ok_or_else(|| PluginError::not_found(format!("no such key {key_id:?}")))?;
        Ok(signer.clone())
    }
}
