//! Workload attestation: the caller's selectors from every WorkloadAttestor plugin, cached
//! per process lifetime (PID plus start time), and the PID-reuse guard applied after every
//! attestation, cached or not.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use spire_plugin::{Selector, WorkloadAttestor};

use crate::core::workload_cache::{AttestationCache, ProcessKey};
use crate::peertracker::{CallerInfo, PeerError, ProcFs};

/// How many processes' selectors are kept.
pub const CACHE_ENTRIES: usize = 4096;
/// How long a process's selectors are reused.
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// Attestation failures, mapped to gRPC statuses by the Workload API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadAttestError {
    /// The caller could not be identified or has changed.
    #[error("could not verify existence of the original caller: {0}")]
    Caller(#[from] PeerError),
}

/// The agent's WorkloadAttestor plugins.
#[derive(Debug)]
pub struct WorkloadAttestation {
    plugins: Vec<(String, Arc<dyn WorkloadAttestor>)>,
    proc_fs: ProcFs,
    cache: Mutex<AttestationCache>,
    metrics: spire_telemetry::Metrics,
}

impl WorkloadAttestation {
    /// Attests with `plugins` (name, plugin).
    pub fn new(plugins: Vec<(String, Arc<dyn WorkloadAttestor>)>, proc_fs: ProcFs) -> Self {
        Self {
            plugins,
            proc_fs,
            cache: Mutex::new(AttestationCache::new(CACHE_ENTRIES, CACHE_MAX_AGE)),
            metrics: spire_telemetry::Metrics::disabled(),
        }
    }

    /// Emits SPIRE's `workload_api` attestation metrics into `metrics`.
    pub fn with_metrics(mut self, metrics: spire_telemetry::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The selectors of the caller, sorted.
    pub async fn attest(&self, caller: &CallerInfo) -> Result<Vec<Selector>, WorkloadAttestError> {
        if caller.pid <= 0 {
            return Err(PeerError::NoCredentials.into());
        }
        // SPIRE's `workload_api_workload_attestation` call (always OK: failing plugins
        // only lose their selectors) and the `discovered_selectors` sample.
        let call = self
            .metrics
            .start_call(&["workload_api", "workload_attestation"]);
        let selectors = self.attest_uncounted(caller).await?;
        self.metrics.add_sample(
            &["workload_api", "discovered_selectors"],
            selectors.len() as f32,
            &[],
        );
        call.done(tonic::Code::Ok);
        Ok(selectors)
    }

    async fn attest_uncounted(
        &self,
        caller: &CallerInfo,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let key = caller.start_time.map(|start_time| ProcessKey {
            pid: caller.pid,
            start_time,
            uid: caller.uid,
            gid: caller.gid,
        });
        let now = SystemTime::now();
        if let Some(k) = &key
            && let Some(selectors) = self.cache.lock().get(k, now)
        {
            self.proc_fs.check_alive(caller)?;
            return Ok(selectors);
        }
        let (selectors, complete) = self.run_plugins(caller.pid).await;
        self.proc_fs.check_alive(caller)?;
        if complete && let Some(k) = key {
            self.cache.lock().put(k, selectors.clone(), now);
        }
        tracing::debug!(
            subsystem_name = "workload_attestor",
            pid = caller.pid,
            selectors = %logged_selectors(&selectors),
            "PID attested to have selectors"
        );
        Ok(selectors)
    }

    /// The selectors of `pid` from every plugin, uncached and without the PID-reuse guard:
    /// what the Delegated Identity API asks for a PID named by a delegate (SPIRE attests it
    /// as given; the delegate vouches for it). A failing plugin is logged and contributes
    /// nothing, as SPIRE does.
    pub async fn attest_pid(&self, pid: i32) -> Vec<Selector> {
        let (selectors, _) = self.run_plugins(pid).await;
        tracing::debug!(
            subsystem_name = "workload_attestor",
            pid,
            selectors = %logged_selectors(&selectors),
            "PID attested to have selectors"
        );
        selectors
    }

    /// Every plugin at once on `pid`: the sorted selectors, and whether every plugin answered.
    async fn run_plugins(&self, pid: i32) -> (Vec<Selector>, bool) {
        let mut selectors = Vec::new();
        let mut complete = true;
        // Every attestor at once (as SPIRE runs them), so a slow one (a daemon that takes
        // its time) does not hold up the others.
        let answers =
            futures::future::join_all(self.plugins.iter().map(|(name, plugin)| async move {
                let mut call = self
                    .metrics
                    .start_call(&["workload_api", "workload_attestor"]);
                call.add_label("attestor", name);
                let answer = plugin.attest(pid).await;
                call.done(if answer.is_ok() {
                    tonic::Code::Ok
                } else {
                    tonic::Code::Unknown
                });
                (name, answer)
            }))
            .await;
        for (name, answer) in answers {
            match answer {
                Ok(values) => {
                    for v in values {
                        match Selector::new(name, &v) {
                            Ok(s) => selectors.push(s),
                            Err(e) => {
                                tracing::warn!(
                                    subsystem_name = "workload_attestor",
                                    attestor = name.as_str(),
                                    error = %e,
                                    "Invalid selector from workload attestor"
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    complete = false;
                    tracing::error!(
                        subsystem_name = "workload_attestor",
                        pid,
                        error = %e,
                        "Failed to collect all selectors for PID"
                    );
                }
            }
        }
        selectors.sort();
        selectors.dedup();
        (selectors, complete)
    }
}

/// Selectors as SPIRE's agent logs them (`%v` of its selector messages):
/// `[type:"unix" value:"uid:0" type:"docker" value:"label:app:web"]`.
pub(crate) fn logged_selectors(selectors: &[Selector]) -> String {
    let items: Vec<String> = selectors
        .iter()
        .map(|s| {
            format!(
                "type:{} value:{}",
                spire_gocompat::strconv::quote(s.selector_type()),
                spire_gocompat::strconv::quote(s.value())
            )
        })
        .collect();
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_logged_as_spire_logs_them() {
        let s = [
            Selector::new("unix", "uid:0").unwrap(),
            Selector::new("docker", "label:a:\"b\"").unwrap(),
        ];
        assert_eq!(
            logged_selectors(&s),
            r#"[type:"unix" value:"uid:0" type:"docker" value:"label:a:\"b\""]"#
        );
    }
    use spire_plugins::workloadattestor::unix::{UnixAttestor, UnixConfig};

    #[tokio::test]
    async fn attests_self_and_caches() {
        let me = std::process::id() as i32;
        let proc_fs = ProcFs::default();
        let info = CallerInfo {
            pid: me,
            uid: std::fs::metadata(format!("/proc/{me}"))
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .unwrap(),
            gid: std::fs::metadata(format!("/proc/{me}"))
                .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
                .unwrap(),
            start_time: Some(proc_fs.start_time(me).unwrap()),
        };
        let w = WorkloadAttestation::new(
            vec![(
                "unix".into(),
                Arc::new(UnixAttestor::new(UnixConfig::default())) as Arc<dyn WorkloadAttestor>,
            )],
            proc_fs,
        );
        let s = w.attest(&info).await.unwrap();
        assert!(s.iter().any(|s| s.value() == format!("uid:{}", info.uid)));
        assert_eq!(w.cache.lock().len(), 1);
        assert_eq!(w.attest(&info).await.unwrap(), s);
        let mut reused = info.clone();
        reused.start_time = Some(1);
        assert!(w.attest(&reused).await.is_err());
        let mut none = info.clone();
        none.pid = 0;
        assert!(w.attest(&none).await.is_err());

        // A PID named by a delegate: attested as given, uncached; a PID that names no
        // process gets no selectors (the plugin's failure is logged), as in SPIRE.
        assert_eq!(w.attest_pid(me).await, s);
        assert_eq!(w.cache.lock().len(), 1);
        assert!(w.attest_pid(i32::MAX - 1).await.is_empty());
    }
}
