//! Serving tonic over UNIX sockets, the way SPIRE's server and agent do.
//!
//! - [`bind`]: creates the socket's parent directories, replaces a stale socket, binds, and
//!   sets the socket's mode (SPIRE: server API socket 0770, agent Workload API socket 0777,
//!   agent admin socket 0770).
//! - [`incoming`] / [`incoming_with`]: the accepted connections as a stream for
//!   `tonic::transport::Server::serve_with_incoming*`. Each connection is a [`UdsStream`]
//!   whose tonic connect info is either tonic's own [`UdsConnectInfo`] (peer address and
//!   `SO_PEERCRED` credentials) or whatever the caller derives from the accepted stream at
//!   accept time (the agent records the caller's process start time there).
//! - Every connection's client-to-server bytes go through [`h2fix::AuthorityFixer`], so that
//!   gRPC C-core clients (grpcio), which send the percent-encoded socket path as
//!   `:authority`, are served instead of reset by h2.
//! - [`limits`]: grpc-go's 4 MiB receive limit and its `RESOURCE_EXHAUSTED` answer, for
//!   every listener of both programs (the server's TLS port too).

pub mod h2fix;
pub mod limits;

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::server::Connected;

pub use h2fix::AuthorityFixer;
pub use tonic::transport::server::UdsConnectInfo;

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The parent directory could not be created.
    #[error("unable to create socket directory: {0}")]
    CreateDir(#[source] io::Error),
    /// Something other than nothing is at the path and could not be removed.
    #[error("unable to remove stale socket: {0}")]
    RemoveStale(#[source] io::Error),
    /// `bind(2)` failed.
    #[error("create UDS listener: {0}")]
    Listen(#[source] io::Error),
    /// The socket's mode could not be set.
    #[error("unable to change UDS permissions: {0}")]
    Chmod(#[source] io::Error),
}

/// Binds a UNIX socket at `path`: missing parent directories are created with `dir_mode`
/// (before the umask, as `mkdir -p` would), whatever is at `path` is removed, and the socket
/// gets `socket_mode`.
pub fn bind(path: &Path, dir_mode: u32, socket_mode: u32) -> Result<UnixListener, BindError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir)
            .map_err(BindError::CreateDir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(BindError::RemoveStale(e)),
    }
    let listener = UnixListener::bind(path).map_err(BindError::Listen)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket_mode))
        .map_err(BindError::Chmod)?;
    Ok(listener)
}

/// tonic's connect info for a UNIX stream: peer address and `SO_PEERCRED` credentials.
pub fn connect_info(stream: &UnixStream) -> UdsConnectInfo {
    stream.connect_info()
}

/// An accepted UNIX stream carrying connect info `I`, whose reads pass through an
/// [`AuthorityFixer`].
pub struct UdsStream<I = UdsConnectInfo> {
    inner: UnixStream,
    info: I,
    fixer: AuthorityFixer,
    ready: Vec<u8>,
    ready_pos: usize,
    eof: bool,
}

impl<I: std::fmt::Debug> std::fmt::Debug for UdsStream<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdsStream")
            .field("info", &self.info)
            .field("buffered", &(self.ready.len() - self.ready_pos))
            .finish_non_exhaustive()
    }
}

impl UdsStream<UdsConnectInfo> {
    /// Wraps `inner` with tonic's connect info.
    pub fn new(inner: UnixStream) -> Self {
        let info = connect_info(&inner);
        Self::with_info(inner, info)
    }
}

impl<I> UdsStream<I> {
    /// Wraps `inner` with `info` as its connect info.
    pub fn with_info(inner: UnixStream, info: I) -> Self {
        Self {
            inner,
            info,
            fixer: AuthorityFixer::default(),
            ready: Vec::new(),
            ready_pos: 0,
            eof: false,
        }
    }

    /// The connect info.
    pub fn info(&self) -> &I {
        &self.info
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &UnixStream {
        &self.inner
    }
}

impl<I: Clone + Send + Sync + 'static> Connected for UdsStream<I> {
    type ConnectInfo = I;
    fn connect_info(&self) -> I {
        self.info.clone()
    }
}

impl<I: Unpin> AsyncRead for UdsStream<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_pos);
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = rb.filled();
                    if filled.is_empty() {
                        this.eof = true;
                        continue;
                    }
                    this.fixer.feed(filled, &mut this.ready)?;
                }
            }
        }
    }
}

impl<I: Unpin> AsyncWrite for UdsStream<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How long to pause after a failed `accept(2)` (out of descriptors, usually) so that the
/// accept loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The connections accepted on `listener`, each with `info(&stream)` as its connect info,
/// computed at accept time.
pub fn incoming_with<I, F>(
    listener: UnixListener,
    info: F,
) -> impl futures::Stream<Item = io::Result<UdsStream<I>>> + Send + 'static
where
    I: Send + 'static,
    F: FnMut(&UnixStream) -> I + Send + 'static,
{
    futures::stream::unfold((listener, info), |(listener, mut info)| async move {
        let item = match listener.accept().await {
            Ok((stream, _)) => {
                let i = info(&stream);
                Ok(UdsStream::with_info(stream, i))
            }
            Err(e) => {
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                Err(e)
            }
        };
        Some((item, (listener, info)))
    })
}

/// The connections accepted on `listener`, with tonic's [`UdsConnectInfo`].
pub fn incoming(
    listener: UnixListener,
) -> impl futures::Stream<Item = io::Result<UdsStream>> + Send + 'static {
    incoming_with(listener, connect_info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn bind_creates_dirs_replaces_stale_sockets_and_sets_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/api.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = bind(&path, 0o750, 0o770).unwrap();
            let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o770);
            let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777;
            // The umask may only remove bits.
            assert_eq!(dir_mode & !0o750, 0);
            drop(l);
            // The socket file is still there: a second bind replaces it.
            assert!(path.exists());
            let _l = bind(&path, 0o750, 0o777).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o777);
            // A directory in the way is not a stale socket.
            let blocked = dir.path().join("blocked");
            std::fs::create_dir_all(blocked.join("x")).unwrap();
            assert!(matches!(
                bind(&blocked, 0o750, 0o770),
                Err(BindError::RemoveStale(_))
            ));
        });
    }
}
