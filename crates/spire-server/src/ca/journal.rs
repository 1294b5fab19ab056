//! The CA journal: the history of this server's X.509 CAs and JWT keys, stored in the
//! datastore (`ca_journals`) as an encoded `Entries` message of SPIRE's journal proto, keyed
//! by the active X.509 authority ID, so that SPIRE and spire-rs read each other's journals.

use std::sync::Arc;

use prost::Message as _;
use spire_datastore::{CaJournal, DataStore};
use spire_proto::journal::{Entries, JwtKeyEntry, Status, X509caEntry};

/// SPIRE keeps at most this many entries of each kind.
pub const JOURNAL_CAP: usize = 10;

/// Errors loading or saving the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The datastore failed.
    #[error("could not save CA journal in the datastore: {0}")]
    Datastore(#[from] spire_datastore::DataStoreError),
    /// The stored bytes are not a journal.
    #[error("unable to unmarshal entries from CA journal record: {0}")]
    Decode(#[from] prost::DecodeError),
    /// An update named an authority the journal does not have.
    #[error("no journal entry found with authority ID {0:?}")]
    NotFound(String),
}

/// The journal and where it is stored.
#[derive(Debug)]
pub struct Journal {
    ds: Arc<dyn DataStore>,
    id: u64,
    active_x509_authority_id: String,
    entries: Entries,
}

impl Journal {
    /// Finds the journal whose active X.509 authority is one of `candidate_authority_ids`
    /// (the subject key IDs of the KeyManager's keys), or starts an empty one.
    pub async fn load(
        ds: Arc<dyn DataStore>,
        candidate_authority_ids: &[String],
    ) -> Result<Self, JournalError> {
        for id in candidate_authority_ids {
            if let Some(found) = ds.fetch_ca_journal(id).await? {
                tracing::debug!(
                    ca_journal_id = found.id,
                    local_authority_id = %id,
                    subsystem_name = "ca_manager",
                    "Found a CA journal record that matches with a local X509 authority ID"
                );
                let entries = Entries::decode(found.data.as_slice())?;
                return Ok(Self {
                    ds,
                    id: found.id,
                    active_x509_authority_id: found.active_x509_authority_id,
                    entries,
                });
            }
        }
        tracing::info!(
            subsystem_name = "ca_manager",
            "There is not a CA journal record that matches any of the local X509 authority IDs"
        );
        Ok(Self {
            ds,
            id: 0,
            active_x509_authority_id: String::new(),
            entries: Entries::default(),
        })
    }

    /// The entries.
    pub fn entries(&self) -> &Entries {
        &self.entries
    }

    async fn save(&mut self) -> Result<(), JournalError> {
        if self.id == 0 {
            if self.active_x509_authority_id.is_empty() {
                tracing::debug!(
                    subsystem_name = "ca_manager",
                    "There is no active X.509 authority yet. Can't save CA journal in the datastore"
                );
                return Ok(());
            }
            tracing::info!(
                subsystem_name = "ca_manager",
                "Creating a new CA journal entry"
            );
        }
        let saved = self
            .ds
            .set_ca_journal(CaJournal {
                id: self.id,
                data: self.entries.encode_to_vec(),
                active_x509_authority_id: self.active_x509_authority_id.clone(),
            })
            .await?;
        tracing::debug!(
            ca_journal_id = saved.id,
            local_authority_id = %self.active_x509_authority_id,
            subsystem_name = "ca_manager",
            "Successfully stored CA journal entry in datastore"
        );
        self.id = saved.id;
        Ok(())
    }

    /// Records a newly prepared X.509 CA.
    pub async fn append_x509_ca(&mut self, entry: X509caEntry) -> Result<(), JournalError> {
        let backup = self.entries.x509_c_as.clone();
        self.entries.x509_c_as.push(entry);
        let excess = self.entries.x509_c_as.len().saturating_sub(JOURNAL_CAP);
        self.entries.x509_c_as.drain(..excess);
        let result = self.save().await;
        if result.is_err() {
            self.entries.x509_c_as = backup;
        }
        result
    }

    /// Changes the status of the newest X.509 CA with `authority_id`.
    pub async fn update_x509_ca_status(
        &mut self,
        authority_id: &str,
        status: Status,
    ) -> Result<(), JournalError> {
        let backup = (
            self.entries.x509_c_as.clone(),
            self.active_x509_authority_id.clone(),
        );
        let entry = self
            .entries
            .x509_c_as
            .iter_mut()
            .rev()
            .find(|e| e.authority_id == authority_id)
            .ok_or_else(|| JournalError::NotFound(authority_id.to_string()))?;
        entry.status = status as i32;
        if status == Status::Active {
            self.active_x509_authority_id = authority_id.to_string();
        }
        let result = self.save().await;
        if result.is_err() {
            (self.entries.x509_c_as, self.active_x509_authority_id) = backup;
        }
        result
    }

    /// Records a newly prepared JWT key.
    pub async fn append_jwt_key(&mut self, entry: JwtKeyEntry) -> Result<(), JournalError> {
        let backup = self.entries.jwt_keys.clone();
        self.entries.jwt_keys.push(entry);
        let excess = self.entries.jwt_keys.len().saturating_sub(JOURNAL_CAP);
        self.entries.jwt_keys.drain(..excess);
        let result = self.save().await;
        if result.is_err() {
            self.entries.jwt_keys = backup;
        }
        result
    }

    /// Changes the status of the newest JWT key with `authority_id`.
    pub async fn update_jwt_key_status(
        &mut self,
        authority_id: &str,
        status: Status,
    ) -> Result<(), JournalError> {
        let backup = self.entries.jwt_keys.clone();
        let entry = self
            .entries
            .jwt_keys
            .iter_mut()
            .rev()
            .find(|e| e.authority_id == authority_id)
            .ok_or_else(|| JournalError::NotFound(authority_id.to_string()))?;
        entry.status = status as i32;
        let result = self.save().await;
        if result.is_err() {
            self.entries.jwt_keys = backup;
        }
        result
    }
}
