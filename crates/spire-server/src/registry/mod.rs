//! The registry: the one owner of the datastore handle, the in-memory index of entries and
//! agents, the change notices agents watch, and the follower of other servers' writes.
//!
//! Every write of an entry or an agent goes through it, in one order: the database first
//! (the ground truth, shared with other servers), then the index, then a notice to watching
//! agents. Agent-facing questions (what may this agent see or have signed, is this its
//! current SVID) are answered from the index; the database is read at start-up, on change,
//! and on an index miss only. Reads SPIRE answers from the database (admin listings and
//! lookups) go to [`Registry::ds`].

pub mod events;

use std::sync::Arc;

use parking_lot::RwLock;
use spiffe_core::SpiffeId;
use spire_datastore::{
    AttestedNode, CountEntriesRequest, DataConsistency, DataStore, DataStoreError, EntryMask,
    NodeMask, RegistrationEntry,
};
use spire_plugin::Selector;
use tokio::sync::watch;

use crate::index::{EntryIndex, EntryRef};

/// What agents watching for changes see (our `spirers.sync.v1` extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revisions {
    /// Bumped on every entry or agent change.
    pub entries: u64,
    /// Bumped on every bundle change.
    pub bundles: u64,
}

/// Why an agent's SVID is not accepted ([`Registry::check_agent_svid`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCheck {
    /// No such agent.
    NotAttested,
    /// The agent is banned.
    Banned,
    /// The SVID's serial is neither the agent's current one nor its pending renewal.
    WrongSerial {
        /// The serial the registry has.
        expected: String,
    },
    /// The database could not be read or written.
    Datastore {
        /// What was being done ("unable to look up agent information", …).
        what: &'static str,
        /// The failure.
        error: DataStoreError,
    },
}

/// Which write of an attestation failed ([`Registry::attest_agent`]).
#[derive(Debug)]
pub enum AttestWrite {
    /// Storing the selectors.
    Selectors(DataStoreError),
    /// Creating the agent.
    Create(DataStoreError),
    /// Updating the agent.
    Update(DataStoreError),
}

/// See the module docs.
#[derive(Debug)]
pub struct Registry {
    ds: Arc<dyn DataStore>,
    index: RwLock<EntryIndex>,
    changes: watch::Sender<Revisions>,
    server_id: SpiffeId,
}

impl Registry {
    /// An empty registry over `ds` (call [`Registry::load`] before serving).
    pub fn new(ds: Arc<dyn DataStore>, server_id: &SpiffeId) -> Self {
        Self {
            ds,
            index: RwLock::new(EntryIndex::new(server_id)),
            changes: watch::channel(Revisions::default()).0,
            server_id: server_id.clone(),
        }
    }

    /// The datastore, for what SPIRE reads from the database directly (admin listings and
    /// lookups, bundles, federation relationships, the CA journal).
    pub fn ds(&self) -> &Arc<dyn DataStore> {
        &self.ds
    }

    /// Change notices, for agents that watch.
    pub fn subscribe(&self) -> watch::Receiver<Revisions> {
        self.changes.subscribe()
    }

    /// Records that bundles changed.
    pub fn bundles_changed(&self) {
        self.changes.send_modify(|r| r.bundles += 1);
    }

    fn entries_changed(&self) {
        let rev = self.index.read().revision();
        self.changes
            .send_modify(|r| r.entries = rev.max(r.entries + 1));
    }

    /// Loads the whole index from the datastore (at start-up).
    pub async fn load(&self) -> Result<(), DataStoreError> {
        use futures::StreamExt as _;
        let mut ix = EntryIndex::new(&self.server_id);
        let count = self
            .ds
            .count_registration_entries(CountEntriesRequest::default())
            .await?;
        ix.reserve(count as usize);
        // The next block of entries is read while this one is indexed, on the other core.
        // (A SQLite file's reader already runs on a thread of its own; this task gives the
        // same overlap to the other databases, whose reads are async.)
        let (pages_tx, mut pages) = tokio::sync::mpsc::channel(1);
        let ds = self.ds.clone();
        let reader = tokio::spawn(async move {
            let mut stream = ds.stream_all_registration_entries(10_000);
            while let Some(page) = stream.next().await {
                let failed = page.is_err();
                if pages_tx.send(page).await.is_err() || failed {
                    break;
                }
            }
        });
        while let Some(block) = pages.recv().await {
            for e in block?.iter() {
                ix.upsert_entry(&e);
            }
        }
        // The pages ended; so did the reader, unless it panicked, which would have cut the
        // pages short.
        reader
            .await
            .map_err(|e| DataStoreError::Internal(format!("reading entries stopped: {e}")))?;
        let mut nodes = self.ds.stream_all_attested_nodes(10_000);
        while let Some(page) = nodes.next().await {
            for n in page? {
                let sel = n.selectors.clone();
                ix.upsert_agent(&n, Some(sel));
            }
        }
        drop(nodes);
        *self.index.write() = ix;
        self.entries_changed();
        Ok(())
    }

    /// Re-reads one entry after a change (ours or another server's) into the index.
    pub async fn reload_entry(&self, entry_id: &str) -> Result<(), DataStoreError> {
        let e = self.ds.fetch_registration_entry(entry_id).await?;
        {
            let mut ix = self.index.write();
            match e {
                Some(e) => ix.upsert_entry(&e),
                None => {
                    ix.remove_entry(entry_id);
                }
            }
        }
        self.entries_changed();
        Ok(())
    }

    /// Re-reads one agent after a change into the index.
    pub async fn reload_agent(&self, id: &SpiffeId) -> Result<(), DataStoreError> {
        match self.ds.fetch_attested_node(id).await? {
            Some(n) => {
                let sel = self
                    .ds
                    .get_node_selectors(id, DataConsistency::RequireCurrent)
                    .await?;
                self.index.write().upsert_agent(&n, Some(sel));
            }
            None => {
                self.index.write().remove_agent(id.as_str());
            }
        }
        self.entries_changed();
        Ok(())
    }

    // ---- Questions answered from the index ----

    /// Every entry `agent_id` may see (SyncAuthorizedEntries, GetAuthorizedEntries).
    pub fn authorized_entries(&self, agent_id: &str) -> Vec<EntryRef> {
        self.index.read().authorized_entries(agent_id)
    }

    /// Those of `ids` that `agent_id` may have signed.
    pub fn authorized_subset(&self, agent_id: &str, ids: &[&str]) -> Vec<EntryRef> {
        self.index.read().authorized_subset(agent_id, ids)
    }

    /// The index's sizes, as SPIRE's events-based cache reports them.
    pub fn cache_stats(&self) -> crate::index::CacheStats {
        self.index.read().stats()
    }

    /// Whether an entry for `id` is marked admin.
    pub fn is_admin(&self, id: &str) -> bool {
        self.index.read().is_admin(id)
    }

    /// Whether an entry for `id` is marked downstream.
    pub fn is_downstream(&self, id: &str) -> bool {
        self.index.read().is_downstream(id)
    }

    /// Drops agents whose SVIDs expired before `now` (seconds) from the index.
    pub fn prune_expired_agents(&self, now: i64) -> usize {
        self.index.write().prune_expired_agents(now)
    }

    // ---- Entries ----

    /// Creates entries (or returns the similar ones that exist); each result is
    /// `(entry, existed)`.
    pub async fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<(RegistrationEntry, bool), DataStoreError>>, DataStoreError> {
        let created = self
            .ds
            .create_or_return_registration_entries(entries)
            .await?;
        let mut changed = false;
        {
            let mut ix = self.index.write();
            for (entry, existed) in created.iter().flatten() {
                if !existed {
                    ix.upsert_entry(entry);
                    changed = true;
                }
            }
        }
        if changed {
            self.entries_changed();
        }
        Ok(created)
    }

    /// Creates one entry.
    pub async fn create_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, DataStoreError> {
        let created = self.ds.create_registration_entry(entry).await?;
        self.index.write().upsert_entry(&created);
        self.entries_changed();
        Ok(created)
    }

    /// Updates one entry (the fields in `mask`, or all).
    pub async fn update_entry(
        &self,
        entry: RegistrationEntry,
        mask: Option<EntryMask>,
    ) -> Result<RegistrationEntry, DataStoreError> {
        let updated = self.ds.update_registration_entry(entry, mask).await?;
        self.index.write().upsert_entry(&updated);
        self.entries_changed();
        Ok(updated)
    }

    /// Deletes one entry.
    pub async fn delete_entry(&self, entry_id: &str) -> Result<RegistrationEntry, DataStoreError> {
        let deleted = self.ds.delete_registration_entry(entry_id).await?;
        self.index.write().remove_entry(entry_id);
        self.entries_changed();
        Ok(deleted)
    }

    // ---- Agents ----

    /// Stores an attested agent and its selectors: created, or (re-attestation) updated
    /// keeping the attestation type it first had in the index.
    pub async fn attest_agent(
        &self,
        node: AttestedNode,
        selectors: Vec<Selector>,
        existing: Option<AttestedNode>,
    ) -> Result<(), AttestWrite> {
        self.ds
            .set_node_selectors(&node.spiffe_id, selectors.clone())
            .await
            .map_err(AttestWrite::Selectors)?;
        if existing.is_none() {
            self.ds
                .create_attested_node(node.clone())
                .await
                .map_err(AttestWrite::Create)?;
        } else {
            self.ds
                .update_attested_node(node.clone(), Some(NodeMask::ALL))
                .await
                .map_err(AttestWrite::Update)?;
        }
        {
            let mut node = node;
            if let Some(old) = existing {
                node.attestation_data_type = old.attestation_data_type;
            }
            self.index.write().upsert_agent(&node, Some(selectors));
        }
        self.entries_changed();
        Ok(())
    }

    /// Writes the fields of `node` in `mask` (a renewal's pending serial, a ban), then
    /// re-reads the agent into the index.
    pub async fn update_agent(
        &self,
        node: AttestedNode,
        mask: NodeMask,
    ) -> Result<AttestedNode, DataStoreError> {
        let id = node.spiffe_id.clone();
        let updated = self.ds.update_attested_node(node, Some(mask)).await?;
        let _ = self.reload_agent(&id).await;
        Ok(updated)
    }

    /// Deletes an agent.
    pub async fn delete_agent(&self, id: &SpiffeId) -> Result<AttestedNode, DataStoreError> {
        let deleted = self.ds.delete_attested_node(id).await?;
        let _ = self.reload_agent(id).await;
        Ok(deleted)
    }

    /// SPIRE's check of an agent SVID's serial: the agent's current serial passes (from
    /// the index, or from the database when the index disagrees: another server may have
    /// renewed or banned it), and its pending renewal's serial passes once, being promoted
    /// to current.
    pub async fn check_agent_svid(&self, id: &SpiffeId, serial: &str) -> Result<(), AgentCheck> {
        if self
            .index
            .read()
            .agent(id.as_str())
            .is_some_and(|a| !a.is_banned() && a.cert_serial_number == serial)
        {
            return Ok(());
        }
        let node = self
            .ds
            .fetch_attested_node(id)
            .await
            .map_err(|error| AgentCheck::Datastore {
                what: "unable to look up agent information",
                error,
            })?
            .ok_or(AgentCheck::NotAttested)?;
        if node.is_banned() {
            return Err(AgentCheck::Banned);
        }
        if node.cert_serial_number == serial {
            let _ = self.reload_agent(id).await;
            return Ok(());
        }
        if node.new_cert_serial_number == serial {
            let mut promoted = node.clone();
            promoted.cert_serial_number = node.new_cert_serial_number.clone();
            promoted.cert_not_after = node.new_cert_not_after;
            promoted.new_cert_serial_number = String::new();
            promoted.new_cert_not_after = 0;
            self.ds
                .update_attested_node(promoted, Some(NodeMask::ALL))
                .await
                .map_err(|error| AgentCheck::Datastore {
                    what: "unable to activate the new agent SVID",
                    error,
                })?;
            let _ = self.reload_agent(id).await;
            return Ok(());
        }
        Err(AgentCheck::WrongSerial {
            expected: node.cert_serial_number,
        })
    }
}
