//! Tainted authorities (SPIRE's forced rotation, `localauthority ... taint`): the server
//! marks an X.509 or JWT authority of the trust domain's bundle as tainted, and the agent
//! stops using what that authority signed.
//!
//! - X.509: every cached X509-SVID chained to a newly tainted authority is dropped, so that
//!   it is minted again by the active authority. SPIRE walks the cached SVIDs in batches of
//!   [`TAINTED_BATCH_SIZE`], one batch every [`TAINTED_BATCH_INTERVAL`], to spread the load
//!   on the server; [`TaintedSvidJobs`] keeps that schedule. The agent's own SVID, when
//!   chained to a tainted authority, is rotated at the next rotation check.
//! - JWT: cached JWT-SVIDs whose `kid` is a tainted key are dropped
//!   ([`crate::core::jwt_cache::JwtCache::remove_signed_by`]).
//!
//! [`TaintTracker`] remembers which authorities were already handled, so that each is
//! processed once, as SPIRE's manager does.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe_core::Bundle;
use spiffe_core::x509svid::{X509SvidError, verify_x509_path};

/// SPIRE's batch size for dropping SVIDs signed by tainted authorities.
pub const TAINTED_BATCH_SIZE: usize = 100;
/// SPIRE's pause between two batches.
pub const TAINTED_BATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Authorities that became tainted since the last sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewlyTainted {
    /// Subject key IDs (lowercase hex) of the newly tainted X.509 authorities.
    pub x509_key_ids: Vec<String>,
    /// Those authorities (DER).
    pub x509_authorities: Vec<Vec<u8>>,
    /// Key IDs of the newly tainted JWT authorities.
    pub jwt_key_ids: Vec<String>,
    /// Key IDs of every tainted JWT authority in the bundle (SPIRE drops JWT-SVIDs signed
    /// by any of them once a new one appears).
    pub all_jwt_key_ids: Vec<String>,
}

impl NewlyTainted {
    /// Whether nothing new is tainted.
    pub fn is_empty(&self) -> bool {
        self.x509_key_ids.is_empty() && self.jwt_key_ids.is_empty()
    }
}

/// The tainted authorities already processed (SPIRE's `processedTainted*Authorities`).
#[derive(Debug, Default)]
pub struct TaintTracker {
    x509: HashSet<String>,
    jwt: HashSet<String>,
}

impl TaintTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The authorities tainted in the trust domain's `bundle` that were not processed yet.
    /// They count as processed once [`TaintTracker::processed`] is called (SPIRE records
    /// them only when their processing succeeded, so a failure is retried at the next sync).
    pub fn newly_tainted(&self, bundle: &Bundle) -> NewlyTainted {
        let mut out = NewlyTainted::default();
        let mut seen = BTreeSet::new();
        for a in bundle.x509_authorities.iter().filter(|a| a.tainted) {
            let skid = spire_pki::certificate_facts(&a.der)
                .map(|f| f.subject_key_id)
                .unwrap_or_default();
            if self.x509.contains(&skid) || !seen.insert(skid.clone()) {
                continue;
            }
            out.x509_key_ids.push(skid);
            out.x509_authorities.push(a.der.clone());
        }
        for k in bundle.jwt_authorities.iter().filter(|k| k.tainted) {
            if !out.all_jwt_key_ids.contains(&k.key_id) {
                out.all_jwt_key_ids.push(k.key_id.clone());
            }
            if !self.jwt.contains(&k.key_id) && !out.jwt_key_ids.contains(&k.key_id) {
                out.jwt_key_ids.push(k.key_id.clone());
            }
        }
        out
    }

    /// Records the X.509 authorities of `newly` as processed.
    pub fn x509_processed(&mut self, newly: &NewlyTainted) {
        self.x509.extend(newly.x509_key_ids.iter().cloned());
    }

    /// Records the JWT authorities of `newly` as processed.
    pub fn jwt_processed(&mut self, newly: &NewlyTainted) {
        self.jwt.extend(newly.jwt_key_ids.iter().cloned());
    }
}

/// SPIRE's `IsSignedByRoot`: whether `chain` (leaf first, then intermediates) leads to one
/// of `authorities` at `now`. A chain that leads elsewhere is not tainted; a chain that
/// cannot be judged (expired, malformed, bad signature) is an error.
pub fn signed_by_any(
    chain: &[Vec<u8>],
    authorities: &[Vec<u8>],
    now: SystemTime,
) -> Result<bool, X509SvidError> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Ok(false);
    };
    match verify_x509_path(leaf, intermediates, authorities, now) {
        Ok(_) => Ok(true),
        Err(X509SvidError::UnknownAuthority) => Ok(false),
        Err(e) => Err(e),
    }
}

#[derive(Debug)]
struct Job {
    entry_ids: Vec<String>,
    authorities: Arc<[Vec<u8>]>,
    due: SystemTime,
}

/// One batch of cached SVIDs to check against tainted authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintBatch {
    /// Entries whose SVIDs to check.
    pub entry_ids: Vec<String>,
    /// The tainted authorities (DER).
    pub authorities: Arc<[Vec<u8>]>,
    /// Entries of the same job still to be checked after this batch.
    pub left: usize,
}

/// The schedule of SVID checks against tainted authorities: each newly tainted set of
/// authorities starts a job over the SVIDs cached at that moment; every job hands out its
/// first batch at once and the next ones [`TAINTED_BATCH_INTERVAL`] apart.
#[derive(Debug, Default)]
pub struct TaintedSvidJobs {
    jobs: Vec<Job>,
}

impl TaintedSvidJobs {
    /// No jobs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a job over `entry_ids` for `authorities`, due at `now`. Returns false (and
    /// schedules nothing) when there is no SVID to check.
    pub fn schedule(
        &mut self,
        mut entry_ids: Vec<String>,
        authorities: Vec<Vec<u8>>,
        now: SystemTime,
    ) -> bool {
        if entry_ids.is_empty() || authorities.is_empty() {
            return false;
        }
        entry_ids.sort();
        self.jobs.push(Job {
            entry_ids,
            authorities: authorities.into(),
            due: now,
        });
        true
    }

    /// Whether no job is pending.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// When the next batch is due, if any job is pending.
    pub fn next_due(&self) -> Option<SystemTime> {
        self.jobs.iter().map(|j| j.due).min()
    }

    /// The batches due at `now` (at most `batch_size` entries each, one per due job);
    /// finished jobs are dropped, the others become due again after the interval.
    pub fn due_batches(&mut self, now: SystemTime, batch_size: usize) -> Vec<TaintBatch> {
        let batch_size = batch_size.max(1);
        let mut out = Vec::new();
        for job in self.jobs.iter_mut().filter(|j| j.due <= now) {
            let n = batch_size.min(job.entry_ids.len());
            let entry_ids: Vec<String> = job.entry_ids.drain(..n).collect();
            job.due = now + TAINTED_BATCH_INTERVAL;
            out.push(TaintBatch {
                entry_ids,
                authorities: job.authorities.clone(),
                left: job.entry_ids.len(),
            });
        }
        self.jobs.retain(|j| !j.entry_ids.is_empty());
        out
    }
}

/// Test PKI: CAs and SVIDs at chosen times.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use spiffe_core::{KeyType, PrivateKey, TrustDomain};
    use spire_pki::{SvidRequest, X509Authority as Ca};
    use spire_plugin::{LocalSigner, Signer};

    pub(crate) fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    /// A fixed instant plus `secs`.
    pub(crate) fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000 + secs)
    }

    /// A self-signed CA valid for an hour from `now`.
    pub(crate) fn ca(now: SystemTime) -> Ca {
        let signer: Arc<dyn Signer> = Arc::new(LocalSigner::new(
            "ca",
            PrivateKey::generate(KeyType::EcP256).unwrap(),
        ));
        let der = spire_pki::self_signed_x509_ca(
            signer.clone(),
            &td(),
            &spire_pki::Subject::default_ca(),
            &[],
            Duration::from_secs(3600),
            now,
        )
        .unwrap();
        Ca::new(der, signer, td()).unwrap()
    }

    /// An X509-SVID chain for `/workload` signed by `ca` at `now`, valid for 10 minutes.
    pub(crate) fn svid(ca: &Ca, now: SystemTime) -> Vec<Vec<u8>> {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let id = td().id_with_path("/workload").unwrap();
        let leaf = ca
            .sign_x509_svid(&SvidRequest {
                id: &id,
                public_key: key.public_key(),
                dns_names: &[],
                subject: None,
                ttl: Duration::from_secs(600),
                now,
            })
            .unwrap();
        vec![leaf]
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{ca, svid, t, td};
    use super::*;
    use spiffe_core::bundle::{JwtAuthority, X509Authority};
    use spiffe_core::{KeyType, PrivateKey};

    fn jwt_key(kid: &str, tainted: bool) -> JwtAuthority {
        JwtAuthority {
            key_id: kid.into(),
            public_key: PrivateKey::generate(KeyType::EcP256)
                .unwrap()
                .public_key()
                .clone(),
            expires_at: 0,
            tainted,
        }
    }

    #[test]
    fn each_tainted_authority_is_reported_once() {
        let old = ca(t(0));
        let new = ca(t(0));
        let mut b = Bundle::new(td());
        b.x509_authorities.push(X509Authority {
            der: old.certificate().to_vec(),
            tainted: false,
        });
        b.x509_authorities.push(X509Authority {
            der: new.certificate().to_vec(),
            tainted: false,
        });
        b.jwt_authorities.push(jwt_key("old", false));
        b.jwt_authorities.push(jwt_key("new", false));
        let mut tracker = TaintTracker::new();
        assert!(tracker.newly_tainted(&b).is_empty());

        b.x509_authorities[0].tainted = true;
        let n = tracker.newly_tainted(&b);
        assert_eq!(n.x509_key_ids, [spire_pki::hex(old.subject_key_id())]);
        assert_eq!(n.x509_authorities, [old.certificate().to_vec()]);
        assert!(n.jwt_key_ids.is_empty());
        // Not processed (e.g. the processing failed): reported again.
        assert_eq!(tracker.newly_tainted(&b), n);
        tracker.x509_processed(&n);
        assert!(tracker.newly_tainted(&b).is_empty());

        b.jwt_authorities[0].tainted = true;
        let n = tracker.newly_tainted(&b);
        assert!(n.x509_key_ids.is_empty());
        assert_eq!(n.jwt_key_ids, ["old"]);
        assert_eq!(n.all_jwt_key_ids, ["old"]);
        tracker.jwt_processed(&n);
        assert!(tracker.newly_tainted(&b).is_empty());
        // A second tainted key: only it is new, both are dropped from the JWT cache.
        b.jwt_authorities[1].tainted = true;
        let n = tracker.newly_tainted(&b);
        assert_eq!(n.jwt_key_ids, ["new"]);
        assert_eq!(n.all_jwt_key_ids, ["old", "new"]);
    }

    #[test]
    fn chains_to_a_tainted_authority_are_found() {
        let old = ca(t(0));
        let new = ca(t(0));
        let by_old = svid(&old, t(10));
        let by_new = svid(&new, t(10));
        let tainted = [old.certificate().to_vec()];
        assert!(signed_by_any(&by_old, &tainted, t(20)).unwrap());
        assert!(!signed_by_any(&by_new, &tainted, t(20)).unwrap());
        assert!(!signed_by_any(&[], &tainted, t(20)).unwrap());
        // Expired: cannot be judged.
        assert!(signed_by_any(&by_old, &tainted, t(10_000)).is_err());
    }

    #[test]
    fn jobs_hand_out_batches_on_schedule() {
        let mut jobs = TaintedSvidJobs::new();
        let auth = vec![vec![1u8]];
        assert!(!jobs.schedule(vec![], auth.clone(), t(0)));
        assert!(jobs.is_empty());
        let ids: Vec<String> = (0..250).map(|i| format!("e{i:03}")).collect();
        assert!(jobs.schedule(ids, auth.clone(), t(0)));
        assert_eq!(jobs.next_due(), Some(t(0)));

        let b = jobs.due_batches(t(0), TAINTED_BATCH_SIZE);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].entry_ids.len(), 100);
        assert_eq!(b[0].entry_ids[0], "e000");
        assert_eq!(b[0].left, 150);
        // Nothing before the interval.
        assert_eq!(jobs.next_due(), Some(t(5)));
        assert!(jobs.due_batches(t(4), TAINTED_BATCH_SIZE).is_empty());

        // A second job starts at once, alongside the first.
        assert!(jobs.schedule(vec!["x".into()], auth, t(4)));
        let b = jobs.due_batches(t(4), TAINTED_BATCH_SIZE);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].entry_ids, ["x"]);
        assert_eq!(b[0].left, 0);

        let b = jobs.due_batches(t(5), TAINTED_BATCH_SIZE);
        assert_eq!((b[0].entry_ids.len(), b[0].left), (100, 50));
        let b = jobs.due_batches(t(10), TAINTED_BATCH_SIZE);
        assert_eq!((b[0].entry_ids.len(), b[0].left), (50, 0));
        assert!(jobs.is_empty());
        assert_eq!(jobs.next_due(), None);
    }
}
