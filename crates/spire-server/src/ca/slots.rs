//! The CA manager's slots: A and B for the X.509 CA and for the JWT key, their state as the
//! LocalAuthority API shows it, and the rule that picks current and next from the journal.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use spire_proto::journal::Status;

use super::manager::secs;
use super::{JwtKey, X509Ca};

/// A view of one slot, as the LocalAuthority API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// `A` or `B`.
    pub slot_id: &'static str,
    /// Journal status.
    pub status: Status,
    /// Subject key ID (X.509, hex) or `kid` (JWT); empty for a never-used slot.
    pub authority_id: String,
    /// Subject key ID of the upstream signer, when any.
    pub upstream_authority_id: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
}

#[derive(Debug)]
pub(super) struct X509Slot {
    pub(super) id: &'static str,
    pub(super) issued_at: SystemTime,
    pub(super) ca: Option<Arc<X509Ca>>,
    pub(super) status: Status,
    pub(super) authority_id: String,
    pub(super) upstream_authority_id: String,
    pub(super) not_after: SystemTime,
}

#[derive(Debug)]
pub(super) struct JwtSlot {
    pub(super) id: &'static str,
    pub(super) issued_at: SystemTime,
    pub(super) key: Option<Arc<JwtKey>>,
    pub(super) status: Status,
    pub(super) authority_id: String,
    pub(super) not_after: SystemTime,
}

pub(super) fn other(id: &str) -> &'static str {
    if id == "A" { "B" } else { "A" }
}

pub(super) fn slot_name(id: &str) -> &'static str {
    if id == "B" { "B" } else { "A" }
}

impl X509Slot {
    pub(super) fn empty(id: &'static str) -> Self {
        Self {
            id,
            issued_at: UNIX_EPOCH,
            ca: None,
            status: Status::Unknown,
            authority_id: String::new(),
            upstream_authority_id: String::new(),
            not_after: UNIX_EPOCH,
        }
    }
    pub(super) fn is_empty(&self) -> bool {
        self.ca.is_none() || self.status == Status::Old
    }
    pub(super) fn reset(&mut self) {
        self.ca = None;
        self.status = Status::Old;
    }
    pub(super) fn km_key_id(&self) -> String {
        format!("x509-CA-{}", self.id)
    }
    pub(super) fn state(&self) -> SlotState {
        SlotState {
            slot_id: self.id,
            status: self.status,
            authority_id: self.authority_id.clone(),
            upstream_authority_id: self.upstream_authority_id.clone(),
            not_after: secs(self.not_after),
        }
    }
}

impl JwtSlot {
    pub(super) fn empty(id: &'static str) -> Self {
        Self {
            id,
            issued_at: UNIX_EPOCH,
            key: None,
            status: Status::Unknown,
            authority_id: String::new(),
            not_after: UNIX_EPOCH,
        }
    }
    pub(super) fn is_empty(&self) -> bool {
        self.key.is_none() || self.status == Status::Old
    }
    pub(super) fn reset(&mut self) {
        self.key = None;
        self.status = Status::Old;
    }
    pub(super) fn km_key_id(&self) -> String {
        format!("JWT-Signer-{}", self.id)
    }
    pub(super) fn state(&self) -> SlotState {
        SlotState {
            slot_id: self.id,
            status: self.status,
            authority_id: self.authority_id.clone(),
            upstream_authority_id: String::new(),
            not_after: secs(self.not_after),
        }
    }
}

pub(super) fn status_name(s: Status) -> &'static str {
    match s {
        Status::Prepared => "PREPARED",
        Status::Active => "ACTIVE",
        Status::Old => "OLD",
        _ => "UNKNOWN",
    }
}

/// What the journal-loading rule needs of a slot.
pub(super) trait Slot: Sized {
    /// A never-used slot named `id`.
    fn empty_slot(id: &'static str) -> Self;
    /// `A` or `B`.
    fn id(&self) -> &'static str;
    /// Journal status.
    fn status(&self) -> Status;
}

impl Slot for X509Slot {
    fn empty_slot(id: &'static str) -> Self {
        Self::empty(id)
    }
    fn id(&self) -> &'static str {
        self.id
    }
    fn status(&self) -> Status {
        self.status
    }
}

impl Slot for JwtSlot {
    fn empty_slot(id: &'static str) -> Self {
        Self::empty(id)
    }
    fn id(&self) -> &'static str {
        self.id
    }
    fn status(&self) -> Status {
        self.status
    }
}

/// Picks current and next from slots offered newest first: the newest ACTIVE is current,
/// the newest of any other status is next; a missing one is an empty slot of the other name.
#[derive(Debug)]
pub(super) struct SlotPicker<S> {
    current: Option<S>,
    next: Option<S>,
}

impl<S> Default for SlotPicker<S> {
    fn default() -> Self {
        Self {
            current: None,
            next: None,
        }
    }
}

impl<S: Slot> SlotPicker<S> {
    /// Takes `slot` if it fills an open place; true once both places are filled.
    pub(super) fn offer(&mut self, slot: S) -> bool {
        if slot.status() == Status::Active {
            if self.current.is_none() {
                self.current = Some(slot);
            }
        } else if self.next.is_none() {
            self.next = Some(slot);
        }
        self.current.is_some() && self.next.is_some()
    }

    /// (current, next).
    pub(super) fn finish(self) -> (S, S) {
        match (self.current, self.next) {
            (Some(c), Some(n)) => (c, n),
            (Some(c), None) => {
                let n = S::empty_slot(other(c.id()));
                (c, n)
            }
            (None, Some(n)) => {
                let e = S::empty_slot(other(n.id()));
                (n, e)
            }
            (None, None) => (S::empty_slot("A"), S::empty_slot("B")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: &'static str, status: Status) -> JwtSlot {
        let mut s = JwtSlot::empty(id);
        s.status = status;
        s
    }

    #[test]
    fn newest_active_is_current_and_newest_other_is_next() {
        let mut p = SlotPicker::default();
        assert!(!p.offer(slot("B", Status::Prepared)));
        assert!(p.offer(slot("A", Status::Active)));
        let (c, n) = p.finish();
        assert_eq!(
            (c.id, c.status, n.id, n.status),
            ("A", Status::Active, "B", Status::Prepared)
        );
    }

    #[test]
    fn a_missing_slot_is_the_other_name_and_nothing_gives_a_and_b() {
        let mut p = SlotPicker::default();
        p.offer(slot("B", Status::Active));
        let (c, n) = p.finish();
        assert_eq!((c.id, n.id, n.status), ("B", "A", Status::Unknown));
        let mut p = SlotPicker::default();
        p.offer(slot("B", Status::Old));
        let (c, n) = p.finish();
        assert_eq!((c.id, c.status, n.id), ("B", Status::Old, "A"));
        let (c, n) = SlotPicker::<JwtSlot>::default().finish();
        assert_eq!((c.id, n.id), ("A", "B"));
    }
}
