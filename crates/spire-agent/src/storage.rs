//! `agent-data.json` in the data directory, in SPIRE's own format (`pkg/agent/storage`), so
//! that a data directory moves between reference SPIRE and spire-rs agents.
//!
//! The file is a JSON object `{"svid", "bundle", "reattestable", "bootstrap_use",
//! "bootstrap_start_time", "connection_attempts"}` where `svid` and `bundle` are lists of
//! base64-encoded PEM certificates (Go marshals `[][]byte` as base64), written atomically with
//! mode 0600.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::core::bootstrap::BootstrapState;

/// The file name in the data directory.
pub const DATA_FILE: &str = "agent-data.json";

/// Go's zero `time.Time` as JSON.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Storage errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Reading or writing the file failed.
    #[error("failed to {op} data file {path}: {source}")]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("failed to unmarshal data: {0}")]
    Decode(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DataJson {
    svid: Option<Vec<String>>,
    bundle: Option<Vec<String>>,
    #[serde(default)]
    reattestable: bool,
    #[serde(default)]
    bootstrap_use: i64,
    #[serde(default = "zero_time")]
    bootstrap_start_time: String,
    #[serde(default)]
    connection_attempts: i64,
}

fn zero_time() -> String {
    GO_ZERO_TIME.to_string()
}

/// What the file holds, with certificates as DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentData {
    /// The agent SVID chain, leaf first.
    pub svid: Vec<Vec<u8>>,
    /// The trust domain's X.509 authorities.
    pub bundle: Vec<Vec<u8>>,
    /// Whether the agent may re-attest.
    pub reattestable: bool,
    /// Bootstrap bookkeeping (rebootstrap support), kept as SPIRE wrote it.
    pub bootstrap_use: i64,
    /// RFC 3339 time, Go's zero time when unset.
    pub bootstrap_start_time: String,
    /// Bootstrap bookkeeping.
    pub connection_attempts: i64,
}

impl Default for AgentData {
    fn default() -> Self {
        Self {
            svid: Vec::new(),
            bundle: Vec::new(),
            reattestable: false,
            bootstrap_use: 0,
            bootstrap_start_time: zero_time(),
            connection_attempts: 0,
        }
    }
}

fn encode_certs(certs: &[Vec<u8>]) -> Option<Vec<String>> {
    if certs.is_empty() {
        return None;
    }
    Some(
        certs
            .iter()
            .map(|der| STANDARD.encode(spiffe_core::pem_encode("CERTIFICATE", der)))
            .collect(),
    )
}

fn decode_certs(list: Option<Vec<String>>, what: &str) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut out = Vec::new();
    for b64 in list.unwrap_or_default() {
        let pem_bytes = STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| StorageError::Decode(format!("failed to parse {what}: {e}")))?;
        let text = String::from_utf8(pem_bytes)
            .map_err(|e| StorageError::Decode(format!("failed to parse {what}: {e}")))?;
        let ders = spiffe_core::x509svid::parse_pem_certificates(&text)
            .map_err(|e| StorageError::Decode(format!("failed to parse {what}: {e}")))?;
        out.extend(ders);
    }
    Ok(out)
}

impl AgentData {
    /// Encodes as SPIRE does (compact JSON, field order as SPIRE's struct).
    pub fn to_json(&self) -> String {
        let doc = DataJson {
            svid: encode_certs(&self.svid),
            bundle: encode_certs(&self.bundle),
            reattestable: self.reattestable,
            bootstrap_use: self.bootstrap_use,
            bootstrap_start_time: self.bootstrap_start_time.clone(),
            connection_attempts: self.connection_attempts,
        };
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// Decodes SPIRE's format.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StorageError> {
        let doc: DataJson =
            serde_json::from_slice(bytes).map_err(|e| StorageError::Decode(e.to_string()))?;
        Ok(Self {
            svid: decode_certs(doc.svid, "SVID")?,
            bundle: decode_certs(doc.bundle, "bundle")?,
            reattestable: doc.reattestable,
            bootstrap_use: doc.bootstrap_use,
            bootstrap_start_time: doc.bootstrap_start_time,
            connection_attempts: doc.connection_attempts,
        })
    }
}

/// Go's `time.Time` JSON (RFC 3339 with nanoseconds), `None` for the zero time.
fn parse_go_time(text: &str) -> Option<SystemTime> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    // Go's zero time (year 1) and anything before the epoch mean "not set".
    (t.unix_timestamp() >= 0).then(|| SystemTime::from(t))
}

fn format_go_time(t: Option<SystemTime>) -> String {
    t.and_then(|t| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(zero_time)
}

impl AgentData {
    /// The bootstrap bookkeeping, with SPIRE's reading of an unspecified use.
    pub fn bootstrap_state(&self) -> BootstrapState {
        BootstrapState::load(
            self.bootstrap_use,
            parse_go_time(&self.bootstrap_start_time),
            self.connection_attempts,
            !self.bundle.is_empty(),
        )
    }

    fn set_bootstrap_state(&mut self, state: &BootstrapState) {
        self.bootstrap_use = state.use_;
        self.bootstrap_start_time = format_go_time(state.start_time);
        self.connection_attempts = state.connection_attempts;
    }
}

/// The data file of one data directory.
#[derive(Debug)]
pub struct Storage {
    path: PathBuf,
    data: Mutex<AgentData>,
    metrics: std::sync::OnceLock<spire_telemetry::Metrics>,
}

/// SPIRE's trust bundle source gauges: `bootstraped`, and `bootstrap_seconds` (the start
/// time, Go's zero time when none) and `bootstrap_attempts` for the current mode.
fn bootstrap_metrics(m: &spire_telemetry::Metrics, st: &BootstrapState) {
    /// `time.Time{}.Unix()`.
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    let mode = if st.use_ == crate::core::bootstrap::USE_REBOOTSTRAP {
        "rebootstrap"
    } else {
        "bootstrap"
    };
    let seconds = st.start_time.map_or(GO_ZERO_TIME, |t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    m.set_gauge(
        &["bootstraped"],
        if st.start_time.is_none() { 1.0 } else { 0.0 },
        &[],
    );
    m.set_gauge(
        &["bootstrap_seconds"],
        f64::from(seconds as f32),
        &[("mode", mode)],
    );
    m.set_gauge(
        &["bootstrap_attempts"],
        st.connection_attempts as f64,
        &[("mode", mode)],
    );
}

impl Storage {
    /// Reports the bootstrap state's gauges into `metrics` from now on (and at once).
    pub fn set_metrics(&self, metrics: spire_telemetry::Metrics) {
        bootstrap_metrics(&metrics, &self.data.lock().bootstrap_state());
        let _ = self.metrics.set(metrics);
    }

    /// Opens `<dir>/agent-data.json`; a missing file is an empty state.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join(DATA_FILE);
        let data = match std::fs::read(&path) {
            Ok(bytes) => AgentData::from_json(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AgentData::default(),
            Err(source) => {
                return Err(StorageError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        Ok(Self {
            path,
            data: Mutex::new(data),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// A copy of the current state.
    pub fn load(&self) -> AgentData {
        self.data.lock().clone()
    }

    fn update(&self, f: impl FnOnce(&mut AgentData)) -> Result<(), StorageError> {
        let mut guard = self.data.lock();
        let mut next = guard.clone();
        f(&mut next);
        spire_plugins::keymanager::write_private_file_atomically(
            &self.path,
            next.to_json().as_bytes(),
        )
        .map_err(|source| StorageError::Io {
            op: "write",
            path: self.path.clone(),
            source,
        })?;
        *guard = next;
        Ok(())
    }

    /// Stores the agent SVID.
    pub fn store_svid(&self, chain: &[Vec<u8>], reattestable: bool) -> Result<(), StorageError> {
        self.update(|d| {
            d.svid = chain.to_vec();
            d.reattestable = reattestable;
        })
    }

    /// Removes the agent SVID (the agent must attest again).
    pub fn delete_svid(&self) -> Result<(), StorageError> {
        self.update(|d| {
            d.svid.clear();
            d.reattestable = false;
        })
    }

    /// Stores the trust domain's X.509 authorities.
    pub fn store_bundle(&self, bundle: &[Vec<u8>]) -> Result<(), StorageError> {
        self.update(|d| d.bundle = bundle.to_vec())
    }

    /// Applies `f` to the bootstrap bookkeeping and stores the result (when it changed);
    /// returns what `f` returned.
    pub fn update_bootstrap<R>(
        &self,
        f: impl FnOnce(&mut BootstrapState) -> R,
    ) -> Result<R, StorageError> {
        let before = self.data.lock().bootstrap_state();
        let mut after = before.clone();
        let out = f(&mut after);
        if let Some(m) = self.metrics.get() {
            bootstrap_metrics(m, &after);
        }
        if after != before || self.data.lock().bootstrap_use != after.use_ {
            self.update(|d| d.set_bootstrap_state(&after))?;
        }
        Ok(out)
    }

    /// SPIRE's `SetForceRebootstrap`: the bootstrap clock restarts at `now`, and the SVID
    /// and bundle are forgotten, so that the next start attests again with the configured
    /// trust bundle.
    pub fn force_rebootstrap(&self, now: SystemTime) -> Result<(), StorageError> {
        self.update(|d| {
            let mut state = d.bootstrap_state();
            state.force_rebootstrap(now);
            d.set_bootstrap_state(&state);
            d.svid.clear();
            d.reattestable = false;
            d.bundle.clear();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn round_trip_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.load(), AgentData::default());
        let c = cert();
        s.store_svid(std::slice::from_ref(&c), true).unwrap();
        s.store_bundle(std::slice::from_ref(&c)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(DATA_FILE)).unwrap();
        assert!(text.starts_with("{\"svid\":[\""), "{text}");
        assert!(
            text.ends_with(
                "\"reattestable\":true,\"bootstrap_use\":0,\"bootstrap_start_time\":\"0001-01-01T00:00:00Z\",\"connection_attempts\":0}"
            ),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(DATA_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Storage::open(dir.path()).unwrap().load();
        assert_eq!(again.svid, vec![c.clone()]);
        assert_eq!(again.bundle, vec![c]);
        assert!(again.reattestable);
        s.delete_svid().unwrap();
        let text = std::fs::read_to_string(dir.path().join(DATA_FILE)).unwrap();
        assert!(text.starts_with("{\"svid\":null,\"bundle\":[\""), "{text}");
    }

    #[test]
    fn bootstrap_state_round_trips_and_force_rebootstrap_forgets() {
        use crate::core::bootstrap::{USE_BOOTSTRAP, USE_REBOOTSTRAP};
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let c = cert();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250);
        // Nothing stored and no bundle: a first bootstrap, persisted as such.
        let state = s.update_bootstrap(|st| st.clone()).unwrap();
        assert_eq!(state.use_, USE_BOOTSTRAP);
        assert_eq!(s.load().bootstrap_use, USE_BOOTSTRAP);
        s.update_bootstrap(|st| st.fetching_bundle(t0)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(DATA_FILE)).unwrap();
        assert!(
            text.contains(
                "\"bootstrap_use\":1,\"bootstrap_start_time\":\"2023-11-14T22:13:20.25Z\",\"connection_attempts\":1"
            ),
            "{text}"
        );
        let again = Storage::open(dir.path()).unwrap();
        assert_eq!(again.load().bootstrap_state().start_time, Some(t0));
        s.store_svid(std::slice::from_ref(&c), true).unwrap();
        s.store_bundle(std::slice::from_ref(&c)).unwrap();
        s.force_rebootstrap(t0).unwrap();
        let d = Storage::open(dir.path()).unwrap().load();
        assert!(d.svid.is_empty() && d.bundle.is_empty() && !d.reattestable);
        assert_eq!(d.bootstrap_use, USE_REBOOTSTRAP);
        assert_eq!(d.connection_attempts, 0);
        assert_eq!(d.bootstrap_state().start_time, Some(t0));
        // An unspecified use with a bundle on file is a rebootstrap.
        let mut fresh = AgentData {
            bundle: vec![c],
            ..AgentData::default()
        };
        assert_eq!(fresh.bootstrap_state().use_, USE_REBOOTSTRAP);
        fresh.bundle.clear();
        assert_eq!(fresh.bootstrap_state().start_time, None);
    }

    #[test]
    fn reads_reference_format() {
        // The shape reference SPIRE writes (a fresh file with no SVID).
        let doc = br#"{"svid":null,"bundle":null,"reattestable":false,"bootstrap_use":0,"bootstrap_start_time":"0001-01-01T00:00:00Z","connection_attempts":0}"#;
        let d = AgentData::from_json(doc).unwrap();
        assert!(d.svid.is_empty());
        assert_eq!(d.to_json().as_bytes(), doc);
        assert!(AgentData::from_json(b"{\"svid\":[\"!!\"]}").is_err());
        assert!(AgentData::from_json(b"nope").is_err());
    }
}
