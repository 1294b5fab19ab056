//! The module (loaded and initialized once per process and path, as PKCS#11 wants) and the
//! token: a small pool of logged-in read/write sessions, opened again (and logged in again)
//! when the token reports that its sessions are gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use parking_lot::{Condvar, Mutex};

use crate::config::{Pin, TokenSelector};
use crate::error::{Pkcs11Error, Recovery, ck_name, recovery, rv_name, rv_of};

/// Sessions open at once (idle or in use); a caller that finds none free waits for one.
/// Tokens limit their sessions, some to a handful.
const MAX_SESSIONS: usize = 8;
/// How long a caller waits for a free session.
const SESSION_WAIT: Duration = Duration::from_secs(30);

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// The module at `path`, loaded and `C_Initialize`d on first use (with OS locking, so its
/// sessions can be used from several threads). Later calls share it.
pub(crate) fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let mut modules = MODULES.get_or_init(Mutex::default).lock();
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let failed = |reason: String| Pkcs11Error::Module {
        path: path.display().to_string(),
        reason,
    };
    let ctx = Pkcs11::new(path).map_err(|e| match e {
        CkError::LibraryLoading(e) => failed(e.to_string()),
        e => failed(ck_name(&e)),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        // Someone else in this process initialized it already; it is usable.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(failed(format!("C_Initialize: {}", ck_name(&e)))),
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// An error from an operation run in a session: the module's, or ours.
#[derive(Debug)]
pub(crate) enum OpError {
    /// The module failed a call.
    Ck(&'static str, CkError),
    /// The operation failed on its own terms.
    Ours(Pkcs11Error),
}

impl From<Pkcs11Error> for OpError {
    fn from(e: Pkcs11Error) -> Self {
        OpError::Ours(e)
    }
}

/// Tags a cryptoki result with the PKCS#11 function it called, for messages.
pub(crate) trait CallExt<T> {
    /// `Err(e)` becomes `OpError::Ck(call, e)`.
    fn call(self, call: &'static str) -> Result<T, OpError>;
}

impl<T> CallExt<T> for Result<T, CkError> {
    fn call(self, call: &'static str) -> Result<T, OpError> {
        self.map_err(|e| OpError::Ck(call, e))
    }
}

struct Pool {
    slot: Option<Slot>,
    idle: Vec<Session>,
    /// Bumped whenever every session was dropped; object handles found under an older epoch
    /// are looked up again.
    epoch: u64,
    /// Sessions open, idle or in use.
    open: usize,
}

/// One token, its PIN and its sessions.
pub(crate) struct Token {
    ctx: Pkcs11,
    selector: TokenSelector,
    pin: Pin,
    pool: Mutex<Pool>,
    /// Signalled when a session is given back or closed.
    freed: Condvar,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Finds the token and logs in: a wrong PIN, a missing token or an unusable module is
    /// reported here, at configuration time.
    pub(crate) fn open(
        ctx: Pkcs11,
        selector: TokenSelector,
        pin: Pin,
    ) -> Result<Self, Pkcs11Error> {
        let token = Self {
            ctx,
            selector,
            pin,
            pool: Mutex::new(Pool {
                slot: None,
                idle: Vec::new(),
                epoch: 0,
                open: 1,
            }),
            freed: Condvar::new(),
        };
        let session = token.new_session()?;
        token.pool.lock().idle.push(session);
        Ok(token)
    }

    /// How messages name the token.
    pub(crate) fn name(&self) -> String {
        self.selector.to_string()
    }

    fn slot(&self) -> Result<Slot, Pkcs11Error> {
        if let Some(slot) = self.pool.lock().slot {
            return Ok(slot);
        }
        let slot = match &self.selector {
            TokenSelector::SlotId(id) => {
                let slot = Slot::try_from(*id).map_err(|e| Pkcs11Error::NoSuchSlot {
                    slot: *id,
                    reason: e.to_string(),
                })?;
                self.ctx
                    .get_token_info(slot)
                    .map_err(|e| Pkcs11Error::NoSuchSlot {
                        slot: *id,
                        reason: ck_name(&e),
                    })?;
                slot
            }
            TokenSelector::Label(label) => self.slot_by_label(label)?,
        };
        self.pool.lock().slot = Some(slot);
        Ok(slot)
    }

    /// Whether the token is (still) there, looked for afresh.
    pub(crate) fn present(&self) -> bool {
        match &self.selector {
            TokenSelector::Label(label) => self.slot_by_label(label).is_ok(),
            TokenSelector::SlotId(id) => Slot::try_from(*id)
                .ok()
                .and_then(|slot| self.ctx.get_token_info(slot).ok())
                .is_some_and(|info| info.token_initialized()),
        }
    }

    fn slot_by_label(&self, label: &str) -> Result<Slot, Pkcs11Error> {
        let call_failed = |call, e: CkError| Pkcs11Error::Call {
            call,
            token: format!("{label:?}"),
            rv: ck_name(&e),
        };
        let slots = self
            .ctx
            .get_slots_with_initialized_token()
            .map_err(|e| call_failed("C_GetSlotList", e))?;
        let mut present = Vec::new();
        for slot in slots {
            let Ok(info) = self.ctx.get_token_info(slot) else {
                continue;
            };
            let found = info.label().trim_end_matches([' ', '\0']);
            if found == label {
                return Ok(slot);
            }
            present.push(format!("{found:?}"));
        }
        Err(Pkcs11Error::NoSuchToken {
            label: label.to_string(),
            present: if present.is_empty() {
                "none".into()
            } else {
                present.join(", ")
            },
        })
    }

    /// Opens a read/write session and logs the user in unless the application already is
    /// (login state is shared by every session of the application on the token).
    fn new_session(&self) -> Result<Session, Pkcs11Error> {
        let slot = self.slot()?;
        let unavailable = |e: &CkError| Pkcs11Error::Unavailable {
            token: self.name(),
            detail: ck_name(e),
        };
        let session = match self.ctx.open_rw_session(slot) {
            Ok(s) => s,
            Err(e) => {
                // The slot may have changed (a token re-created or moved): look again next
                // time.
                self.pool.lock().slot = None;
                return Err(unavailable(&e));
            }
        };
        self.log_in_if_needed(&session)?;
        Ok(session)
    }

    /// Logs the user in unless the application already is (someone may have logged every
    /// session out).
    fn log_in_if_needed(&self, session: &Session) -> Result<(), Pkcs11Error> {
        let state = session
            .get_session_info()
            .map_err(|e| Pkcs11Error::Unavailable {
                token: self.name(),
                detail: ck_name(&e),
            })?
            .session_state();
        if matches!(state, SessionState::RoUser | SessionState::RwUser) {
            return Ok(());
        }
        let pin = AuthPin::from(self.pin.expose());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => Ok(()),
            Err(e) => match rv_of(&e) {
                Some(RvError::UserAlreadyLoggedIn) => Ok(()),
                Some(RvError::PinIncorrect) => {
                    Err(Pkcs11Error::PinIncorrect { token: self.name() })
                }
                Some(RvError::PinLocked) => Err(Pkcs11Error::PinLocked { token: self.name() }),
                Some(rv) if recovery(&e) == Recovery::Reopen => Err(Pkcs11Error::Unavailable {
                    token: self.name(),
                    detail: rv_name(rv),
                }),
                _ => Err(Pkcs11Error::Call {
                    call: "C_Login",
                    token: self.name(),
                    rv: ck_name(&e),
                }),
            },
        }
    }

    /// An idle session, a new one while fewer than `MAX_SESSIONS` are open, or the next one
    /// given back (waiting up to `SESSION_WAIT`).
    fn take(&self) -> Result<(Session, u64), Pkcs11Error> {
        let mut pool = self.pool.lock();
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok((s, pool.epoch));
            }
            if pool.open < MAX_SESSIONS {
                pool.open += 1;
                let epoch = pool.epoch;
                drop(pool);
                return match self.new_session() {
                    Ok(s) => Ok((s, epoch)),
                    Err(e) => {
                        self.closed();
                        Err(e)
                    }
                };
            }
            if self.freed.wait_for(&mut pool, SESSION_WAIT).timed_out() {
                return Err(Pkcs11Error::Busy {
                    token: self.name(),
                    secs: SESSION_WAIT.as_secs(),
                });
            }
        }
    }

    /// Counts a session closed (or never opened).
    fn closed(&self) {
        let mut pool = self.pool.lock();
        pool.open = pool.open.saturating_sub(1);
        self.freed.notify_one();
    }

    fn give_back(&self, session: Session, epoch: u64) {
        let stale = {
            let mut pool = self.pool.lock();
            if pool.epoch == epoch {
                pool.idle.push(session);
                None
            } else {
                pool.open = pool.open.saturating_sub(1);
                Some(session)
            }
        };
        self.freed.notify_one();
        drop(stale);
    }

    /// Closes `session`, which belongs to a token that went away, and every idle one.
    fn reset(&self, session: Session, epoch: u64) {
        let stale = {
            let mut pool = self.pool.lock();
            pool.open = pool.open.saturating_sub(1);
            let stale = if pool.epoch == epoch {
                pool.epoch += 1;
                pool.slot = None;
                let stale = std::mem::take(&mut pool.idle);
                pool.open = pool.open.saturating_sub(stale.len());
                stale
            } else {
                Vec::new()
            };
            self.freed.notify_all();
            stale
        };
        // Closing sessions of a removed token fails; cryptoki only logs that.
        drop(session);
        drop(stale);
    }

    /// Runs `op` in a session. `op` gets the session, the pool's epoch and whether cached
    /// object handles must be looked up again. A lost session (token removed, sessions
    /// closed, logged out) is replaced and `op` run once more, as is a stale object handle.
    pub(crate) fn run<T>(
        &self,
        op: impl Fn(&Session, u64, bool) -> Result<T, OpError>,
    ) -> Result<T, Pkcs11Error> {
        let mut refind = false;
        let mut last: Option<(&'static str, CkError)> = None;
        for _attempt in 0..2 {
            let (session, epoch) = match self.take() {
                Ok(s) => s,
                Err(e) => {
                    return Err(match (e, &last) {
                        // The token is gone and could not be opened again.
                        (
                            Pkcs11Error::NoSuchToken { .. } | Pkcs11Error::NoSuchSlot { .. },
                            Some((_, ck)),
                        ) => Pkcs11Error::Unavailable {
                            token: self.name(),
                            detail: ck_name(ck),
                        },
                        (e, _) => e,
                    });
                }
            };
            if refind && let Err(e) = self.log_in_if_needed(&session) {
                self.reset(session, epoch);
                return Err(e);
            }
            match op(&session, epoch, refind) {
                Ok(v) => {
                    self.give_back(session, epoch);
                    return Ok(v);
                }
                Err(OpError::Ours(e)) => {
                    self.give_back(session, epoch);
                    return Err(e);
                }
                Err(OpError::Ck(call, e)) => match recovery(&e) {
                    Recovery::Reopen => {
                        self.reset(session, epoch);
                        refind = true;
                        last = Some((call, e));
                    }
                    Recovery::Refind => {
                        self.give_back(session, epoch);
                        refind = true;
                        last = Some((call, e));
                    }
                    Recovery::Fail => {
                        self.give_back(session, epoch);
                        return Err(Pkcs11Error::Call {
                            call,
                            token: self.name(),
                            rv: ck_name(&e),
                        });
                    }
                },
            }
        }
        Err(match last {
            Some((_, e)) if recovery(&e) == Recovery::Reopen => Pkcs11Error::Unavailable {
                token: self.name(),
                detail: ck_name(&e),
            },
            Some((call, e)) => Pkcs11Error::Call {
                call,
                token: self.name(),
                rv: ck_name(&e),
            },
            None => Pkcs11Error::Unavailable {
                token: self.name(),
                detail: "no session".into(),
            },
        })
    }
}

/// A token shared by the KeyManager and its signers.
pub(crate) type SharedToken = Arc<Token>;
