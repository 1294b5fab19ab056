//! The CA manager: two slots (A and B) for the X.509 CA and two for the JWT key, a journal
//! in the datastore, and SPIRE's rotation rules. Keys live in the KeyManager under SPIRE's
//! names (`x509-CA-A`, `x509-CA-B`, `JWT-Signer-A`, `JWT-Signer-B`), so a restart — of ours
//! or of reference SPIRE on the same database and key file — resumes the same authorities.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spiffe_core::{KeyType, PublicKey, TrustDomain};
use spire_datastore::{DataStore, JwtSigningKey, RootCa, StoredBundle};
use spire_gocompat::time::utc_string_of;
use spire_pki::{Subject, X509Authority};
use spire_plugin::{KeyManager, UpstreamAuthority, UpstreamUpdates};
use spire_proto::journal::{JwtKeyEntry, Status, X509caEntry};
use tokio::sync::Mutex;

use super::journal::Journal;
use super::rotation::{self, RotationStep, SlotsView};
pub use super::slots::SlotState;
use super::slots::{JwtSlot, SlotPicker, X509Slot, slot_name, status_name};
use super::{Ca, JwtKey, X509Ca};

/// Errors of the CA manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The KeyManager failed.
    #[error("{0}")]
    KeyManager(#[from] spire_plugin::PluginError),
    /// The datastore failed.
    #[error("{0}")]
    Datastore(#[from] spire_datastore::DataStoreError),
    /// Certificate assembly failed.
    #[error("{0}")]
    Pki(#[from] spire_pki::PkiError),
    /// The journal could not be loaded.
    #[error("failed to load journal from datastore: {0}")]
    Journal(#[from] super::journal::JournalError),
    /// The UpstreamAuthority failed, or minted an unusable CA.
    #[error("{0}")]
    Upstream(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Settings of the CA manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Our trust domain.
    pub trust_domain: TrustDomain,
    /// Lifetime of each X.509 CA and JWT key.
    pub ca_ttl: Duration,
    /// Key type of X.509 CAs.
    pub x509_key_type: KeyType,
    /// Key type of JWT keys.
    pub jwt_key_type: KeyType,
    /// Subject of X.509 CAs.
    pub ca_subject: Subject,
}

#[derive(Debug)]
struct State {
    x509_current: X509Slot,
    x509_next: X509Slot,
    jwt_current: JwtSlot,
    jwt_next: JwtSlot,
    journal: Journal,
}

/// Called whenever the stored trust bundle changed.
pub type BundleChanged = Arc<dyn Fn() + Send + Sync>;

/// What an UpstreamAuthority says after its first answer.
#[derive(Debug)]
enum UpstreamNews {
    Roots(Vec<spire_plugin::X509Authority>),
    JwtKeys(Vec<spire_plugin::JwtKey>),
}

/// The CA manager's [`UpstreamUpdates`]: news queued for the manager's bundle.
#[derive(Debug)]
struct UpstreamInbox(tokio::sync::mpsc::UnboundedSender<UpstreamNews>);

impl UpstreamUpdates for UpstreamInbox {
    fn x509_roots(&self, roots: Vec<spire_plugin::X509Authority>) {
        let _ = self.0.send(UpstreamNews::Roots(roots));
    }
    fn jwt_keys(&self, keys: Vec<spire_plugin::JwtKey>) {
        let _ = self.0.send(UpstreamNews::JwtKeys(keys));
    }
}

/// JWT keys from an UpstreamAuthority, checked as SPIRE checks them (a key ID, a PKIX key).
fn checked_jwt_keys(keys: Vec<spire_plugin::JwtKey>) -> Result<Vec<JwtSigningKey>, String> {
    keys.into_iter()
        .map(|k| {
            if k.key_id.is_empty() {
                return Err("invalid plugin response: missing key ID for JWT key".to_owned());
            }
            spiffe_core::PublicKey::from_spki_der(&k.public_key).map_err(|e| {
                format!(
                    "invalid plugin response: failed to unmarshal public key for JWT key {:?}: {e}",
                    k.key_id
                )
            })?;
            Ok(JwtSigningKey {
                kid: k.key_id,
                pkix: k.public_key,
                not_after: k.expires_at,
                tainted: k.tainted,
            })
        })
        .collect()
}

/// X.509 roots from an UpstreamAuthority, each parsed before it joins the bundle.
fn checked_roots(roots: Vec<spire_plugin::X509Authority>) -> Result<Vec<RootCa>, String> {
    roots
        .into_iter()
        .map(|r| {
            spire_pki::certificate_facts(&r.der)
                .map_err(|e| format!("plugin response has malformed upstream X.509 roots: {e}"))?;
            Ok(RootCa {
                der: r.der,
                tainted: r.tainted,
            })
        })
        .collect()
}

/// The CA manager.
pub struct CaManager {
    config: ManagerConfig,
    ds: Arc<dyn DataStore>,
    km: Arc<dyn KeyManager>,
    upstream: Option<Arc<dyn UpstreamAuthority>>,
    upstream_inbox: Arc<dyn UpstreamUpdates>,
    jwt_unimplemented_warned: std::sync::atomic::AtomicBool,
    ca: Arc<Ca>,
    bundle_changed: BundleChanged,
    state: Mutex<State>,
}

impl std::fmt::Debug for CaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// OK, or Unknown for a failed step (SPIRE's plain errors).
fn call_code<T, E>(r: &Result<T, E>) -> tonic::Code {
    if r.is_ok() {
        tonic::Code::Ok
    } else {
        tonic::Code::Unknown
    }
}

pub(super) fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn from_secs(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s.max(0) as u64)
}

impl CaManager {
    /// Loads the journal and the keys and restores the slots, as SPIRE does at start-up.
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        config: ManagerConfig,
        ds: Arc<dyn DataStore>,
        km: Arc<dyn KeyManager>,
        upstream: Option<Arc<dyn UpstreamAuthority>>,
        ca: Arc<Ca>,
        bundle_changed: BundleChanged,
        now: SystemTime,
    ) -> Result<Arc<Self>, ManagerError> {
        tracing::debug!(
            subsystem_name = "ca_manager",
            "Loading journal from datastore"
        );
        let mut candidate_ids = Vec::new();
        let call = ca
            .metrics()
            .start_call(&["server_key_manager", "get_public_keys"]);
        let keys = km.get_public_keys().await;
        call.done(call_code(&keys));
        for key in keys? {
            if let Ok(skid) = spire_pki::subject_key_id(key.public_key.spki_der()) {
                candidate_ids.push(spire_pki::hex(&skid));
            }
        }
        let journal = Journal::load(ds.clone(), &candidate_ids).await?;
        let entries = journal.entries().clone();
        tracing::info!(
            jwt_keys = entries.jwt_keys.len(),
            x509_cas = entries.x509_c_as.len(),
            subsystem_name = "ca_manager",
            "Journal loaded"
        );
        let bundle = ds.fetch_bundle(&config.trust_domain).await?;
        let (roots, kids): (HashSet<Vec<u8>>, HashSet<String>) = match &bundle {
            Some(b) => (
                b.root_cas.iter().map(|r| r.der.clone()).collect(),
                b.jwt_signing_keys.iter().map(|k| k.kid.clone()).collect(),
            ),
            None => (HashSet::new(), HashSet::new()),
        };
        let filter = bundle.is_some();

        let mut manager_state = State {
            x509_current: X509Slot::empty("A"),
            x509_next: X509Slot::empty("B"),
            jwt_current: JwtSlot::empty("A"),
            jwt_next: JwtSlot::empty("B"),
            journal,
        };
        // Newest first: the newest ACTIVE becomes current, the newest other the next.
        let mut picker = SlotPicker::default();
        for entry in entries.x509_c_as.iter().rev() {
            if filter && !roots.contains(&entry.certificate) {
                continue;
            }
            let Some(slot) = load_x509_slot(km.as_ref(), &config.trust_domain, entry, now).await?
            else {
                continue;
            };
            if picker.offer(slot) {
                break;
            }
        }
        (manager_state.x509_current, manager_state.x509_next) = picker.finish();

        let mut picker = SlotPicker::default();
        for entry in entries.jwt_keys.iter().rev() {
            if filter && !kids.contains(&entry.kid) {
                continue;
            }
            let Some(slot) = load_jwt_slot(km.as_ref(), entry, now).await? else {
                continue;
            };
            if picker.offer(slot) {
                break;
            }
        }
        (manager_state.jwt_current, manager_state.jwt_next) = picker.finish();

        let (news_tx, mut news) = tokio::sync::mpsc::unbounded_channel();
        let me = Arc::new(Self {
            config,
            ds,
            km,
            upstream,
            upstream_inbox: Arc::new(UpstreamInbox(news_tx)),
            jwt_unimplemented_warned: std::sync::atomic::AtomicBool::new(false),
            ca,
            bundle_changed,
            state: Mutex::new(manager_state),
        });
        // Later news from the UpstreamAuthority joins the bundle (SPIRE's bundle updater).
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            while let Some(update) = news.recv().await {
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                let checked = match update {
                    UpstreamNews::Roots(roots) => checked_roots(roots).map(|r| (r, vec![])),
                    UpstreamNews::JwtKeys(keys) => checked_jwt_keys(keys).map(|k| (vec![], k)),
                };
                let result = match checked {
                    Ok((roots, keys)) => manager.append_bundle(roots, keys).await,
                    Err(e) => Err(ManagerError::Upstream(e)),
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, subsystem_name = "ca_manager", "Failed to store what the upstream authority sent");
                }
            }
        });
        {
            let mut st = me.state.lock().await;
            if let Some(ca) = &st.x509_current.ca {
                let ca = ca.clone();
                if now
                    <= rotation::activation_threshold(
                        st.x509_current.issued_at,
                        ca.authority.not_after(),
                    )
                {
                    me.activate_x509(&mut st, now).await;
                }
            }
            if let Some(key) = &st.jwt_current.key {
                let key = key.clone();
                if now <= rotation::activation_threshold(st.jwt_current.issued_at, key.not_after) {
                    me.activate_jwt(&mut st).await;
                }
            }
        }
        Ok(me)
    }
}

async fn load_x509_slot(
    km: &dyn KeyManager,
    trust_domain: &TrustDomain,
    entry: &X509caEntry,
    now: SystemTime,
) -> Result<Option<X509Slot>, ManagerError> {
    let unusable = |why: &str| {
        tracing::warn!(
            error = why,
            local_authority_id = %entry.authority_id,
            slot = %entry.slot_id,
            subsystem_name = "ca_manager",
            "X509CA slot unusable"
        );
    };
    if entry.slot_id.is_empty() {
        unusable("no slot id");
        return Ok(None);
    }
    if entry.not_after < secs(now) {
        unusable("slot expired");
        return Ok(None);
    }
    let slot_id = slot_name(&entry.slot_id);
    let key_id = format!("x509-CA-{slot_id}");
    let signer = match km.signer(&key_id).await {
        Ok(s) => s,
        Err(e) if e.code == spire_plugin::Code::NotFound => {
            unusable("no key manager key");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let authority =
        match X509Authority::new(entry.certificate.clone(), signer, trust_domain.clone()) {
            Ok(a) => a,
            Err(_) => {
                unusable("public key does not match key manager key");
                return Ok(None);
            }
        };
    let not_after = authority.not_after();
    Ok(Some(X509Slot {
        id: slot_id,
        issued_at: from_secs(entry.issued_at),
        ca: Some(Arc::new(X509Ca {
            authority,
            upstream_chain: entry.upstream_chain.clone(),
        })),
        status: Status::try_from(entry.status).unwrap_or(Status::Unknown),
        authority_id: entry.authority_id.clone(),
        upstream_authority_id: entry.upstream_authority_id.clone(),
        not_after,
    }))
}

async fn load_jwt_slot(
    km: &dyn KeyManager,
    entry: &JwtKeyEntry,
    now: SystemTime,
) -> Result<Option<JwtSlot>, ManagerError> {
    let unusable = |why: &str| {
        tracing::warn!(
            error = why,
            local_authority_id = %entry.authority_id,
            slot = %entry.slot_id,
            subsystem_name = "ca_manager",
            "JWT key slot unusable"
        );
    };
    if entry.slot_id.is_empty() {
        unusable("no slot id");
        return Ok(None);
    }
    if entry.not_after < secs(now) {
        unusable("slot expired");
        return Ok(None);
    }
    let slot_id = slot_name(&entry.slot_id);
    let signer = match km.signer(&format!("JWT-Signer-{slot_id}")).await {
        Ok(s) => s,
        Err(e) if e.code == spire_plugin::Code::NotFound => {
            unusable("no key manager key");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let stored = PublicKey::from_spki_der(&entry.public_key)
        .map_err(|e| ManagerError::Other(e.to_string()))?;
    if &stored != signer.public_key() {
        unusable("public key does not match key manager key");
        return Ok(None);
    }
    let not_after = from_secs(entry.not_after);
    Ok(Some(JwtSlot {
        id: slot_id,
        issued_at: from_secs(entry.issued_at),
        key: Some(Arc::new(JwtKey {
            signer,
            kid: entry.kid.clone(),
            not_after,
        })),
        status: Status::try_from(entry.status).unwrap_or(Status::Unknown),
        authority_id: entry.authority_id.clone(),
        not_after,
    }))
}

impl CaManager {
    /// One rotation check (SPIRE runs it every 10 s).
    pub async fn rotate(&self, now: SystemTime) -> Result<(), ManagerError> {
        let mut st = self.state.lock().await;
        let view = SlotsView {
            current: (!st.x509_current.is_empty())
                .then_some((st.x509_current.issued_at, st.x509_current.not_after)),
            next_prepared: !st.x509_next.is_empty(),
        };
        for step in rotation::plan(view, now) {
            match step {
                RotationStep::PrepareAndActivateCurrent => {
                    self.prepare_x509(&mut st, now).await?;
                    self.activate_x509(&mut st, now).await;
                }
                RotationStep::PrepareNext => self.prepare_x509(&mut st, now).await?,
                RotationStep::Rotate => self.rotate_x509_locked(&mut st, now).await,
            }
        }
        let view = SlotsView {
            current: (!st.jwt_current.is_empty())
                .then_some((st.jwt_current.issued_at, st.jwt_current.not_after)),
            next_prepared: !st.jwt_next.is_empty(),
        };
        for step in rotation::plan(view, now) {
            match step {
                RotationStep::PrepareAndActivateCurrent => {
                    self.prepare_jwt(&mut st, now).await?;
                    self.activate_jwt(&mut st).await;
                }
                RotationStep::PrepareNext => self.prepare_jwt(&mut st, now).await?,
                RotationStep::Rotate => self.rotate_jwt_locked(&mut st).await,
            }
        }
        Ok(())
    }

    /// `prepare_x509_uncounted` as SPIRE's `ca_manager_x509_ca_prepare` call.
    async fn prepare_x509(&self, st: &mut State, now: SystemTime) -> Result<(), ManagerError> {
        let call = self
            .ca
            .metrics()
            .start_call(&["ca", "manager", "x509_ca", "prepare"]);
        let r = self.prepare_x509_uncounted(st, now).await;
        call.done(call_code(&r));
        r
    }

    async fn prepare_x509_uncounted(
        &self,
        st: &mut State,
        now: SystemTime,
    ) -> Result<(), ManagerError> {
        let into_current = st.x509_current.is_empty();
        let slot = if into_current {
            &mut st.x509_current
        } else {
            &mut st.x509_next
        };
        tracing::debug!(
            slot = slot.id,
            subsystem_name = "ca_manager",
            "Preparing X509 CA"
        );
        slot.reset();
        let key_id = slot.km_key_id();
        let slot_id = slot.id;
        let call = self
            .ca
            .metrics()
            .start_call(&["server_key_manager", "generate_key"]);
        let generated = self
            .km
            .generate_key(&key_id, self.config.x509_key_type)
            .await;
        call.done(call_code(&generated));
        generated?;
        let signer = self.km.signer(&key_id).await?;
        let (subject, extensions) = if self.ca.composers().is_empty() {
            (self.config.ca_subject.clone(), vec![])
        } else {
            super::compose::x509_ca(self.ca.composers(), &self.config.ca_subject)
                .await
                .map_err(|e| ManagerError::Other(format!("credential composer: {e}")))?
        };
        let (authority, upstream_chain, upstream_authority_id) = match &self.upstream {
            None => {
                let cert = spire_pki::self_signed_x509_ca(
                    signer.clone(),
                    &self.config.trust_domain,
                    &subject,
                    &extensions,
                    self.config.ca_ttl,
                    now,
                )?;
                let authority =
                    X509Authority::new(cert.clone(), signer, self.config.trust_domain.clone())?;
                self.append_bundle(
                    vec![RootCa {
                        der: cert,
                        tainted: false,
                    }],
                    vec![],
                )
                .await?;
                (authority, vec![], String::new())
            }
            Some(upstream) => {
                self.upstream_signed_x509_ca(upstream.as_ref(), signer, &subject, &extensions, now)
                    .await?
            }
        };
        let cert = authority.certificate().to_vec();
        let authority_id = spire_pki::hex(authority.subject_key_id());
        let not_after = authority.not_after();
        let slot = if into_current {
            &mut st.x509_current
        } else {
            &mut st.x509_next
        };
        *slot = X509Slot {
            id: slot_id,
            issued_at: now,
            ca: Some(Arc::new(X509Ca {
                authority,
                upstream_chain: upstream_chain.clone(),
            })),
            status: Status::Prepared,
            authority_id: authority_id.clone(),
            upstream_authority_id: upstream_authority_id.clone(),
            not_after,
        };
        let entry = X509caEntry {
            slot_id: slot_id.to_string(),
            issued_at: secs(now),
            certificate: cert,
            upstream_chain,
            status: Status::Prepared as i32,
            authority_id: authority_id.clone(),
            not_after: secs(not_after),
            upstream_authority_id: upstream_authority_id.clone(),
        };
        if let Err(e) = st.journal.append_x509_ca(entry).await {
            tracing::error!(error = %e, slot = slot_id, subsystem_name = "ca_manager", "Unable to append X509 CA to journal");
        }
        tracing::info!(
            expiration = %utc_string_of(not_after),
            issued_at = %utc_string_of(now),
            local_authority_id = %authority_id,
            self_signed = self.upstream.is_none(),
            slot = slot_id,
            subsystem_name = "ca_manager",
            upstream_authority_id = %upstream_authority_id,
            "X509 CA prepared"
        );
        Ok(())
    }

    async fn activate_x509(&self, st: &mut State, now: SystemTime) {
        let slot = &mut st.x509_current;
        let Some(ca) = slot.ca.clone() else { return };
        tracing::info!(
            expiration = %utc_string_of(slot.not_after),
            issued_at = %utc_string_of(slot.issued_at),
            local_authority_id = %slot.authority_id,
            slot = slot.id,
            subsystem_name = "ca_manager",
            upstream_authority_id = %slot.upstream_authority_id,
            "X509 CA activated"
        );
        slot.status = Status::Active;
        let authority_id = slot.authority_id.clone();
        let ttl = slot
            .not_after
            .duration_since(now)
            .unwrap_or_default()
            .as_secs_f64();
        let metrics = self.ca.metrics();
        metrics.incr_counter(&["ca", "manager", "x509_ca", "activate"], 1.0, &[]);
        let td = self.config.trust_domain.name();
        metrics.set_gauge(
            &["manager", "x509_ca", "rotate", "expiration"],
            secs(slot.not_after) as f64,
            &[("trust_domain_id", td)],
        );
        metrics.set_gauge(
            &["manager", "x509_ca", "rotate", "ttl"],
            f64::from(ttl as f32),
            &[("trust_domain_id", td)],
        );
        if let Err(e) = st
            .journal
            .update_x509_ca_status(&authority_id, Status::Active)
            .await
        {
            tracing::error!(error = %e, subsystem_name = "ca_manager", "Failed to update to activated status on X509CA journal entry");
        }
        tracing::debug!(
            subsystem_name = "ca_manager",
            trust_domain_id = %self.config.trust_domain.id_string(),
            ttl = ttl,
            "Successfully rotated X.509 CA"
        );
        self.ca.set_x509_ca(ca);
    }

    async fn rotate_x509_locked(&self, st: &mut State, now: SystemTime) {
        std::mem::swap(&mut st.x509_current, &mut st.x509_next);
        st.x509_next.reset();
        let old = st.x509_next.authority_id.clone();
        if let Err(e) = st.journal.update_x509_ca_status(&old, Status::Old).await {
            tracing::error!(error = %e, subsystem_name = "ca_manager", "Failed to update status on X509CA journal entry");
        }
        self.activate_x509(st, now).await;
    }

    /// `prepare_jwt_uncounted` as SPIRE's `ca_manager_jwt_key_prepare` call.
    async fn prepare_jwt(&self, st: &mut State, now: SystemTime) -> Result<(), ManagerError> {
        let call = self
            .ca
            .metrics()
            .start_call(&["ca", "manager", "jwt_key", "prepare"]);
        let r = self.prepare_jwt_uncounted(st, now).await;
        call.done(call_code(&r));
        r
    }

    async fn prepare_jwt_uncounted(
        &self,
        st: &mut State,
        now: SystemTime,
    ) -> Result<(), ManagerError> {
        let into_current = st.jwt_current.is_empty();
        let slot = if into_current {
            &mut st.jwt_current
        } else {
            &mut st.jwt_next
        };
        tracing::debug!(
            slot = slot.id,
            subsystem_name = "ca_manager",
            "Preparing JWT key"
        );
        slot.reset();
        let key_id = slot.km_key_id();
        let slot_id = slot.id;
        let not_after = now + self.config.ca_ttl;
        let call = self
            .ca
            .metrics()
            .start_call(&["server_key_manager", "generate_key"]);
        let generated = self
            .km
            .generate_key(&key_id, self.config.jwt_key_type)
            .await;
        call.done(call_code(&generated));
        generated?;
        let signer = self.km.signer(&key_id).await?;
        let kid = new_key_id();
        let pkix = signer.public_key().spki_der().to_vec();
        self.publish_jwt_key(JwtSigningKey {
            kid: kid.clone(),
            pkix: pkix.clone(),
            not_after: secs(not_after),
            tainted: false,
        })
        .await?;
        let slot = if into_current {
            &mut st.jwt_current
        } else {
            &mut st.jwt_next
        };
        *slot = JwtSlot {
            id: slot_id,
            issued_at: now,
            key: Some(Arc::new(JwtKey {
                signer,
                kid: kid.clone(),
                not_after,
            })),
            status: Status::Prepared,
            authority_id: kid.clone(),
            not_after,
        };
        let entry = JwtKeyEntry {
            slot_id: slot_id.to_string(),
            issued_at: secs(now),
            not_after: secs(not_after),
            kid: kid.clone(),
            public_key: pkix,
            status: Status::Prepared as i32,
            authority_id: kid.clone(),
        };
        if let Err(e) = st.journal.append_jwt_key(entry).await {
            tracing::error!(error = %e, slot = slot_id, subsystem_name = "ca_manager", "Unable to append JWT key to journal");
        }
        tracing::info!(
            expiration = %utc_string_of(not_after),
            issued_at = %utc_string_of(now),
            local_authority_id = %kid,
            slot = slot_id,
            subsystem_name = "ca_manager",
            "JWT key prepared"
        );
        Ok(())
    }

    async fn activate_jwt(&self, st: &mut State) {
        let slot = &mut st.jwt_current;
        let Some(key) = slot.key.clone() else { return };
        tracing::info!(
            expiration = %utc_string_of(slot.not_after),
            issued_at = %utc_string_of(slot.issued_at),
            local_authority_id = %slot.authority_id,
            slot = slot.id,
            subsystem_name = "ca_manager",
            "JWT key activated"
        );
        self.ca
            .metrics()
            .incr_counter(&["manager", "jwt_key", "activate"], 1.0, &[]);
        slot.status = Status::Active;
        let authority_id = slot.authority_id.clone();
        if let Err(e) = st
            .journal
            .update_jwt_key_status(&authority_id, Status::Active)
            .await
        {
            tracing::error!(error = %e, subsystem_name = "ca_manager", "Failed to update to activated status on JWTKey journal entry");
        }
        self.ca.set_jwt_key(key);
    }

    async fn rotate_jwt_locked(&self, st: &mut State) {
        std::mem::swap(&mut st.jwt_current, &mut st.jwt_next);
        st.jwt_next.reset();
        let old = st.jwt_next.authority_id.clone();
        if let Err(e) = st.journal.update_jwt_key_status(&old, Status::Old).await {
            tracing::error!(error = %e, subsystem_name = "ca_manager", "Failed to update status on JWTKey journal entry");
        }
        self.activate_jwt(st).await;
    }

    /// SPIRE's `upstreamSignX509CA`: a CSR for the new key, minted by the UpstreamAuthority,
    /// checked (the CA certificate carries our key and trust domain and chains to the
    /// upstream roots), and the upstream roots added to the bundle. Returns the authority,
    /// its chain (CA certificate first) and the upstream authority ID.
    async fn upstream_signed_x509_ca(
        &self,
        upstream: &dyn UpstreamAuthority,
        signer: Arc<dyn spire_plugin::Signer>,
        subject: &Subject,
        extensions: &[spire_pki::Extension],
        now: SystemTime,
    ) -> Result<(X509Authority, Vec<Vec<u8>>, String), ManagerError> {
        // Certificate policies stay out of the CSR, as SPIRE leaves them out.
        let csr_extensions: Vec<spire_pki::Extension> = extensions
            .iter()
            .filter(|e| e.oid != "2.5.29.32")
            .cloned()
            .collect();
        let csr = spire_pki::make_ca_csr(
            signer.clone(),
            &self.config.trust_domain,
            subject,
            &csr_extensions,
        )?;
        let ttl = i32::try_from(self.config.ca_ttl.as_secs()).unwrap_or(i32::MAX);
        let minted = upstream
            .mint_x509_ca(&csr, ttl, self.upstream_inbox.clone())
            .await
            .map_err(|e| ManagerError::Upstream(e.to_string()))?;
        let invalid = |why: String| {
            ManagerError::Upstream(format!(
                "rpc error: code = InvalidArgument desc = X509 CA minted by upstream authority is invalid: {why}"
            ))
        };
        let Some((ca_cert, intermediates)) = minted.x509_ca_chain.split_first() else {
            return Err(invalid("no CA certificate".into()));
        };
        let authority =
            X509Authority::new(ca_cert.clone(), signer, self.config.trust_domain.clone())
                .map_err(|e| invalid(e.to_string()))?;
        if !spire_pki::is_ca_certificate(ca_cert).map_err(|e| invalid(e.to_string()))? {
            return Err(invalid(
                "the certificate is not a CA that may sign certificates".into(),
            ));
        }
        for root in &minted.upstream_x509_roots {
            spire_pki::certificate_facts(root).map_err(|e| {
                ManagerError::Upstream(format!(
                    "rpc error: code = Internal desc = plugin response has malformed upstream X.509 roots: {e}"
                ))
            })?;
        }
        let uris = spire_pki::certificate_uris(ca_cert).map_err(|e| invalid(e.to_string()))?;
        let td_id = self.config.trust_domain.id_string();
        if uris != [td_id.clone()] {
            return Err(invalid(format!(
                "X509 CA must have exactly one URI SAN, the trust domain ID {td_id:?}; got {uris:?}"
            )));
        }
        spiffe_core::x509svid::verify_x509_path(
            ca_cert,
            intermediates,
            &minted.upstream_x509_roots,
            now,
        )
        .map_err(|e| {
            invalid(format!(
                "certificate cannot be validated with upstream trust bundle: {e}"
            ))
        })?;
        self.append_bundle(
            minted
                .upstream_x509_roots
                .iter()
                .map(|der| RootCa {
                    der: der.clone(),
                    tainted: false,
                })
                .collect(),
            vec![],
        )
        .await?;
        let upstream_authority_id = spire_pki::authority_key_id(ca_cert)?
            .map(|id| spire_pki::hex(&id))
            .unwrap_or_default();
        Ok((authority, minted.x509_ca_chain, upstream_authority_id))
    }

    /// SPIRE's `PublishJWTKey`: through the UpstreamAuthority when there is one (its keys
    /// join the bundle), else, or when it does not take JWT keys, into our bundle.
    async fn publish_jwt_key(&self, key: JwtSigningKey) -> Result<(), ManagerError> {
        if let Some(upstream) = &self.upstream {
            let published = spire_plugin::JwtKey {
                public_key: key.pkix.clone(),
                key_id: key.kid.clone(),
                expires_at: key.not_after,
                tainted: false,
            };
            match upstream
                .publish_jwt_key(&published, self.upstream_inbox.clone())
                .await
            {
                Ok(keys) => {
                    let keys = checked_jwt_keys(keys).map_err(|e| {
                        ManagerError::Upstream(format!("rpc error: code = Internal desc = {e}"))
                    })?;
                    return self.append_bundle(vec![], keys).await;
                }
                Err(e) if e.code == spire_plugin::Code::Unimplemented => {
                    use std::sync::atomic::Ordering;
                    if !self.jwt_unimplemented_warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            subsystem_name = "ca_manager",
                            "UpstreamAuthority plugin does not support JWT-SVIDs. Workloads managed by this server may have trouble communicating with workloads outside this cluster when using JWT-SVIDs."
                        );
                    }
                }
                Err(e) => return Err(ManagerError::Upstream(e.to_string())),
            }
        }
        self.append_bundle(vec![], vec![key]).await
    }

    /// SPIRE's `SubscribeToLocalBundle`: the UpstreamAuthority's roots and JWT keys join the
    /// bundle, and so do its later changes. Nothing to do (`Ok`) when there is no upstream
    /// or it does not stream its bundle (`Unimplemented`: SPIRE then stops asking).
    pub async fn subscribe_to_local_bundle(&self) -> Result<(), ManagerError> {
        let Some(upstream) = &self.upstream else {
            return Ok(());
        };
        match upstream
            .subscribe_to_local_bundle(self.upstream_inbox.clone())
            .await
        {
            Ok(first) => {
                let roots = checked_roots(first.x509_roots).map_err(ManagerError::Upstream)?;
                let keys = checked_jwt_keys(first.jwt_keys).map_err(ManagerError::Upstream)?;
                if !roots.is_empty() || !keys.is_empty() {
                    self.append_bundle(roots, keys).await?;
                }
                Ok(())
            }
            Err(e) if e.code == spire_plugin::Code::Unimplemented => Ok(()),
            Err(e) => Err(ManagerError::Upstream(e.to_string())),
        }
    }

    async fn append_bundle(
        &self,
        roots: Vec<RootCa>,
        jwt: Vec<JwtSigningKey>,
    ) -> Result<(), ManagerError> {
        let mut b = StoredBundle::new(self.config.trust_domain.clone());
        b.root_cas = roots;
        b.jwt_signing_keys = jwt;
        self.ds.append_bundle(b).await?;
        (self.bundle_changed)();
        Ok(())
    }

    // === LocalAuthority API ===

    /// `(current, next)` X.509 slot states.
    pub async fn x509_slots(&self) -> (SlotState, SlotState) {
        let st = self.state.lock().await;
        (st.x509_current.state(), st.x509_next.state())
    }

    /// `(current, next)` JWT slot states.
    pub async fn jwt_slots(&self) -> (SlotState, SlotState) {
        let st = self.state.lock().await;
        (st.jwt_current.state(), st.jwt_next.state())
    }

    /// Prepares the next X.509 authority now; returns its state.
    pub async fn prepare_x509_now(&self, now: SystemTime) -> Result<SlotState, ManagerError> {
        let mut st = self.state.lock().await;
        self.prepare_x509(&mut st, now).await?;
        Ok(st.x509_next.state())
    }

    /// Activates the prepared X.509 authority; returns the new current state.
    pub async fn rotate_x509_now(&self, now: SystemTime) -> SlotState {
        let mut st = self.state.lock().await;
        self.rotate_x509_locked(&mut st, now).await;
        st.x509_current.state()
    }

    /// Prepares the next JWT authority now.
    pub async fn prepare_jwt_now(&self, now: SystemTime) -> Result<SlotState, ManagerError> {
        let mut st = self.state.lock().await;
        self.prepare_jwt(&mut st, now).await?;
        Ok(st.jwt_next.state())
    }

    /// Activates the prepared JWT authority.
    pub async fn rotate_jwt_now(&self) -> SlotState {
        let mut st = self.state.lock().await;
        self.rotate_jwt_locked(&mut st).await;
        st.jwt_current.state()
    }

    /// Prunes certificates and keys that expired more than a day ago from our bundle.
    pub async fn prune_bundle(&self, now: SystemTime) -> Result<(), ManagerError> {
        let before = now
            .checked_sub(Duration::from_secs(24 * 3600))
            .unwrap_or(UNIX_EPOCH);
        if self
            .ds
            .prune_bundle(&self.config.trust_domain, secs(before))
            .await?
        {
            tracing::debug!(
                subsystem_name = "ca_manager",
                "Expired certificates were successfully pruned from bundle"
            );
            (self.bundle_changed)();
        }
        Ok(())
    }

    /// Prunes journals whose authorities all expired more than two weeks ago.
    pub async fn prune_journals(&self, now: SystemTime) -> Result<(), ManagerError> {
        let before = now
            .checked_sub(Duration::from_secs(14 * 24 * 3600))
            .unwrap_or(UNIX_EPOCH);
        self.ds.prune_ca_journals(secs(before)).await?;
        Ok(())
    }

    /// Status names as SPIRE logs them.
    pub fn status_name(s: Status) -> &'static str {
        status_name(s)
    }
}

/// A random 32-character `kid` from `[a-zA-Z0-9]`, as SPIRE makes them.
pub fn new_key_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let bytes: [u8; 32] = rand::random();
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
