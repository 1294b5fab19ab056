//! KeyManager plugins: `memory` and `disk`. Both keep keys in this process; `disk` also
//! persists them in SPIRE's JSON format (`{"keys": {"<id>": <base64 PKCS#8>}}`, file mode 0600,
//! written atomically).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use spiffe_core::{KeyType, PrivateKey};
use spire_plugin::{KeyManager, LocalSigner, ManagedKey, PluginError, PluginResult, Signer};

/// SHA-256 of the PKIX public key, hex: SPIRE's key fingerprint.
fn fingerprint(spki: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki))
}

struct Entry {
    signer: Arc<LocalSigner>,
    info: ManagedKey,
}

fn entry(id: &str, key: PrivateKey) -> PluginResult<Entry> {
    let key_type = key.key_type().ok_or_else(|| {
        PluginError::internal(format!("unable to make entry {id:?}: unsupported key type"))
    })?;
    let public_key = key.public_key().clone();
    let info = ManagedKey {
        id: id.to_string(),
        key_type,
        fingerprint: fingerprint(public_key.spki_der()),
        public_key,
    };
    Ok(Entry {
        signer: Arc::new(LocalSigner::new(id, key)),
        info,
    })
}

/// Keys held in memory, optionally persisted to a SPIRE-format JSON file.
pub struct LocalKeyManager {
    keys: Mutex<BTreeMap<String, Entry>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for LocalKeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyManager")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Configuration of the server's `disk` KeyManager.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ServerDiskConfig {
    /// Path of the JSON key file.
    #[serde(default)]
    pub keys_path: String,
}

/// Configuration of the agent's `disk` KeyManager.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AgentDiskConfig {
    /// Directory that holds `keys.json`.
    #[serde(default)]
    pub directory: String,
}

#[derive(serde::Deserialize)]
struct KeysFile {
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

impl LocalKeyManager {
    /// The `memory` KeyManager: keys are lost when the process exits.
    pub fn memory() -> Self {
        Self {
            keys: Mutex::new(BTreeMap::new()),
            path: None,
        }
    }

    /// The server's `disk` KeyManager (`keys_path` is required).
    pub fn server_disk(config: &ServerDiskConfig) -> PluginResult<Self> {
        if config.keys_path.is_empty() {
            return Err(PluginError::invalid_argument("keys_path is required"));
        }
        Self::open(PathBuf::from(&config.keys_path))
    }

    /// The agent's `disk` KeyManager (`directory` is required; keys go to `keys.json`).
    pub fn agent_disk(config: &AgentDiskConfig) -> PluginResult<Self> {
        if config.directory.is_empty() {
            return Err(PluginError::invalid_argument(
                "directory must be configured",
            ));
        }
        Self::open(Path::new(&config.directory).join("keys.json"))
    }

    /// A disk KeyManager over `path`; loads the keys already there.
    pub fn open(path: PathBuf) -> PluginResult<Self> {
        let keys = match fs::read(&path) {
            Ok(bytes) => load(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(PluginError::internal(format!(
                    "unable to read {}: {e}",
                    path.display()
                )));
            }
        };
        Ok(Self {
            keys: Mutex::new(keys),
            path: Some(path),
        })
    }

    fn persist(&self, keys: &BTreeMap<String, Entry>) -> PluginResult<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let doc: BTreeMap<&str, String> = keys
            .iter()
            .map(|(id, e)| {
                (
                    id.as_str(),
                    STANDARD.encode(e.signer.private_key().pkcs8_der()),
                )
            })
            .collect();
        let text = go_indent_json(&doc);
        write_private_file_atomically(path, text.as_bytes()).map_err(|e| {
            PluginError::internal(format!("unable to write keys to {}: {e}", path.display()))
        })
    }
}

fn load(bytes: &[u8]) -> PluginResult<BTreeMap<String, Entry>> {
    let file: KeysFile = serde_json::from_slice(bytes)
        .map_err(|e| PluginError::internal(format!("unable to decode keys JSON: {e}")))?;
    let mut keys = BTreeMap::new();
    for (id, b64) in file.keys {
        let der = STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| PluginError::internal(format!("unable to parse key {id:?}: {e}")))?;
        let key = PrivateKey::from_pkcs8_der(&der)
            .map_err(|e| PluginError::internal(format!("unable to parse key {id:?}: {e}")))?;
        keys.insert(id.clone(), entry(&id, key)?);
    }
    Ok(keys)
}

/// `{"keys": {...}}` indented with tabs, as Go's `json.MarshalIndent(v, "", "\t")` writes.
fn go_indent_json(keys: &BTreeMap<&str, String>) -> String {
    let mut out = String::from("{\n\t\"keys\": {");
    for (i, (id, b64)) in keys.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&format!("\t\t{}: {}", json_string(id), json_string(b64)));
    }
    out.push_str(if keys.is_empty() { "}\n}" } else { "\n\t}\n}" });
    out
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Writes `path.tmp` with mode 0600, fsyncs, renames over `path`, fsyncs the directory.
pub fn write_private_file_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[async_trait]
impl KeyManager for LocalKeyManager {
    async fn generate_key(&self, key_id: &str, key_type: KeyType) -> PluginResult<ManagedKey> {
        if key_id.is_empty() {
            return Err(PluginError::invalid_argument("key id is required"));
        }
        // RSA-4096 generation takes a while; keep it off the async workers.
        let key = tokio::task::spawn_blocking(move || PrivateKey::generate(key_type))
            .await
            .map_err(|e| PluginError::internal(e.to_string()))?
            .map_err(|e| PluginError::internal(format!("unable to generate key: {e}")))?;
        let new = entry(key_id, key)?;
        let info = new.info.clone();
        let mut keys = self.keys.lock();
        let old = keys.insert(key_id.to_string(), new);
        if let Err(e) = self.persist(&keys) {
            // Nothing is changed on failure.
            match old {
                Some(old) => keys.insert(key_id.to_string(), old),
                None => keys.remove(key_id),
            };
            return Err(e);
        }
        Ok(info)
    }

    async fn get_public_key(&self, key_id: &str) -> PluginResult<Option<ManagedKey>> {
        Ok(self.keys.lock().get(key_id).map(|e| e.info.clone()))
    }

    async fn get_public_keys(&self) -> PluginResult<Vec<ManagedKey>> {
        Ok(self.keys.lock().values().map(|e| e.info.clone()).collect())
    }

    async fn signer(&self, key_id: &str) -> PluginResult<Arc<dyn Signer>> {
        let keys = self.keys.lock();
        let e = keys
            .get(key_id)
            .ok_or_else(|| PluginError::not_found(format!("no such key {key_id:?}")))?;
        Ok(e.signer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spire_plugin::SignatureKind;

    #[tokio::test]
    async fn memory_generates_and_signs() {
        let km = LocalKeyManager::memory();
        assert!(km.get_public_key("a").await.unwrap().is_none());
        let k = km.generate_key("a", KeyType::EcP256).await.unwrap();
        assert_eq!(k.fingerprint.len(), 64);
        let signer = km.signer("a").await.unwrap();
        let sig = signer.sign(b"hello", SignatureKind::X509).unwrap();
        assert!(!sig.is_empty());
        assert_eq!(km.get_public_keys().await.unwrap().len(), 1);
        assert_eq!(
            km.signer("b").await.unwrap_err().code,
            spire_plugin::Code::NotFound
        );
    }

    #[tokio::test]
    async fn disk_survives_a_restart_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let cfg = ServerDiskConfig {
            keys_path: path.to_string_lossy().into(),
        };
        let km = LocalKeyManager::server_disk(&cfg).unwrap();
        let a = km.generate_key("x509-CA-A", KeyType::EcP256).await.unwrap();
        let b = km
            .generate_key("JWT-Signer-A", KeyType::Rsa2048)
            .await
            .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = LocalKeyManager::server_disk(&cfg).unwrap();
        assert_eq!(again.get_public_key("x509-CA-A").await.unwrap().unwrap(), a);
        assert_eq!(
            again.get_public_key("JWT-Signer-A").await.unwrap().unwrap(),
            b
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\n\t\"keys\": {\n\t\t\"JWT-Signer-A\": \""),
            "{text}"
        );
    }

    #[test]
    fn reads_a_key_file_written_by_reference_spire() {
        // Written by spire-server 1.13.3's disk KeyManager.
        let text = include_str!("../../testdata/spire-1.13.3-keys.json");
        let keys = load(text.as_bytes()).unwrap();
        assert_eq!(
            keys.keys().cloned().collect::<Vec<_>>(),
            ["JWT-Signer-A", "x509-CA-A"]
        );
        assert_eq!(keys["x509-CA-A"].info.key_type, KeyType::EcP256);
        // And we write it back byte for byte.
        let doc: BTreeMap<&str, String> = keys
            .iter()
            .map(|(id, e)| {
                (
                    id.as_str(),
                    STANDARD.encode(e.signer.private_key().pkcs8_der()),
                )
            })
            .collect();
        assert_eq!(go_indent_json(&doc), text);
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(load(b"not json").is_err());
        assert!(load(br#"{"keys": {"a": "!!"}}"#).is_err());
        assert!(load(br#"{"keys": {"a": "AAAA"}}"#).is_err());
        assert!(
            LocalKeyManager::server_disk(&ServerDiskConfig {
                keys_path: String::new()
            })
            .is_err()
        );
        assert_eq!(go_indent_json(&BTreeMap::new()), "{\n\t\"keys\": {}\n}");
    }
}
