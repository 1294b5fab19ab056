//! Caller identity on the Workload API socket, as SPIRE's peertracker establishes it: the
//! peer's credentials from `SO_PEERCRED` and the process start time are recorded when the
//! connection is accepted; after attestation the agent checks that the process is still the
//! same one (same start time, UID and GID), so that a PID recycled meanwhile never receives
//! the original caller's identity.

use std::io;
use std::path::PathBuf;

use tokio::net::{UnixListener, UnixStream};

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerInfo {
    /// PID (0 when unknown).
    pub pid: i32,
    /// UID.
    pub uid: u32,
    /// GID.
    pub gid: u32,
    /// Start time of the process at accept time, clock ticks since boot.
    pub start_time: Option<u64>,
}

/// Where `/proc` is (tests point it elsewhere).
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc"),
        }
    }
}

/// Why a caller is no longer trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The kernel gave no credentials.
    #[error("could not resolve caller information")]
    NoCredentials,
    /// The process is gone.
    #[error("caller exit suspected due to failure to get starttime: {0}")]
    Exited(String),
    /// Another process has the PID now.
    #[error("new process detected: process starttime {now} does not match original caller {then}")]
    StartTimeChanged {
        /// At accept.
        then: u64,
        /// Now.
        now: u64,
    },
    /// The process credentials changed.
    #[error("new process detected: process {what} {now} does not match original caller {then}")]
    CredentialsChanged {
        /// `uid` or `gid`.
        what: &'static str,
        /// At accept.
        then: u32,
        /// Now.
        now: u32,
    },
}

impl ProcFs {
    /// A proc filesystem mounted at `root`.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// The start time of `pid` (field 22 of `/proc/<pid>/stat`).
    pub fn start_time(&self, pid: i32) -> io::Result<u64> {
        let text = std::fs::read_to_string(self.root.join(pid.to_string()).join("stat"))?;
        parse_start_time(&text)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
    }

    /// Checks that the caller recorded in `info` is still alive and the same process.
    pub fn check_alive(&self, info: &CallerInfo) -> Result<(), PeerError> {
        use std::os::unix::fs::MetadataExt as _;
        if info.pid <= 0 {
            return Err(PeerError::NoCredentials);
        }
        let then = info.start_time.ok_or(PeerError::NoCredentials)?;
        let now = self
            .start_time(info.pid)
            .map_err(|e| PeerError::Exited(e.to_string()))?;
        if now != then {
            return Err(PeerError::StartTimeChanged { then, now });
        }
        let meta = std::fs::metadata(self.root.join(info.pid.to_string()))
            .map_err(|e| PeerError::Exited(e.to_string()))?;
        if meta.uid() != info.uid {
            return Err(PeerError::CredentialsChanged {
                what: "uid",
                then: info.uid,
                now: meta.uid(),
            });
        }
        if meta.gid() != info.gid {
            return Err(PeerError::CredentialsChanged {
                what: "gid",
                then: info.gid,
                now: meta.gid(),
            });
        }
        Ok(())
    }
}

/// Field 22 (`starttime`) of a `stat` line; the command name (field 2) may contain spaces
/// and parentheses, so fields are counted after the last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first; starttime is field 22, the 20th here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The caller on the other end of `stream`, from `SO_PEERCRED` and `/proc` at accept time.
pub fn caller_info(stream: &UnixStream, proc_fs: &ProcFs) -> CallerInfo {
    match stream.peer_cred() {
        Ok(cred) => {
            let pid = cred.pid().unwrap_or(0);
            CallerInfo {
                pid,
                uid: cred.uid(),
                gid: cred.gid(),
                start_time: (pid > 0).then(|| proc_fs.start_time(pid).ok()).flatten(),
            }
        }
        Err(_) => CallerInfo {
            pid: 0,
            uid: u32::MAX,
            gid: u32::MAX,
            start_time: None,
        },
    }
}

/// A connection with its caller recorded at accept time; reads go through
/// `spire_uds`'s `:authority` fix so that gRPC C-core clients are accepted.
pub type TrackedStream = spire_uds::UdsStream<CallerInfo>;

/// Accepted connections of `listener`, tracked.
pub fn incoming(
    listener: UnixListener,
    proc_fs: ProcFs,
) -> impl futures::Stream<Item = io::Result<TrackedStream>> + Send + 'static {
    spire_uds::incoming_with(listener, move |s: &UnixStream| caller_info(s, &proc_fs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parsing() {
        let stat = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[tokio::test]
    async fn tracks_the_peer_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let _client = UnixStream::connect(&path).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let proc_fs = ProcFs::default();
        let info = caller_info(&server, &proc_fs);
        assert_eq!(info.pid, std::process::id() as i32);
        assert!(info.start_time.is_some());
        assert_eq!(proc_fs.check_alive(&info), Ok(()));
        let mut other = info.clone();
        other.start_time = Some(1);
        assert!(matches!(
            proc_fs.check_alive(&other),
            Err(PeerError::StartTimeChanged { .. })
        ));
        let mut other = info.clone();
        other.uid = info.uid.wrapping_add(1);
        assert!(matches!(
            proc_fs.check_alive(&other),
            Err(PeerError::CredentialsChanged { what: "uid", .. })
        ));
        let mut gone = info.clone();
        gone.pid = i32::MAX - 1;
        assert!(matches!(
            proc_fs.check_alive(&gone),
            Err(PeerError::Exited(_))
        ));
        gone.pid = 0;
        assert_eq!(proc_fs.check_alive(&gone), Err(PeerError::NoCredentials));
    }
}
