//! The plugin process: started with go-plugin's environment, its handshake line read within
//! the start timeout, its stderr relayed, its stdout drained, and a supervisor task that logs
//! its exit and kills it when the host lets go of it. A plugin is never left running after
//! its [`PluginProcess`] is gone, and never left unreaped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use crate::conn::{self, PluginChannel};
use crate::handshake::{self, PluginAddress};
use crate::{HostOptions, LaunchSpec, LoadError, logs};

/// How long a plugin gets to exit after being asked to shut down (go-plugin: 2 s).
const GRACEFUL_EXIT: Duration = Duration::from_secs(2);
/// How long connecting to the plugin's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running plugin process.
#[derive(Debug)]
pub struct PluginProcess {
    path: PathBuf,
    pid: Option<u32>,
    exited: watch::Receiver<bool>,
    kill: parking_kill::Kill,
}

/// The supervisor's kill switch: dropping it (or [`Kill::now`]) kills the process.
mod parking_kill {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    #[derive(Debug)]
    pub(super) struct Kill(Mutex<Option<oneshot::Sender<()>>>);

    impl Kill {
        pub(super) fn new(tx: oneshot::Sender<()>) -> Self {
            Self(Mutex::new(Some(tx)))
        }

        pub(super) fn now(&self) {
            let tx = self.0.lock().ok().and_then(|mut g| g.take());
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        }
    }
}

impl PluginProcess {
    /// Starts the plugin and connects to it.
    pub(crate) async fn start(
        spec: &LaunchSpec,
        options: &HostOptions,
    ) -> Result<(Self, PluginChannel), LoadError> {
        let shown = spec.path.display().to_string();
        let mut child = Command::new(&spec.path)
            .args(&spec.args)
            .env(&spec.plugin_type, &spec.plugin_type)
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("PLUGIN_PROTOCOL_VERSIONS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                LoadError::Launch(spire_gocompat::os::path_error("fork/exec", &shown, &e))
            })?;
        let pid = child.id();
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => return Err(LoadError::Launch("plugin pipes were not set up".into())),
        };
        let (name, plugin_type, path) = (
            spec.name.clone(),
            spec.plugin_type.clone(),
            spec.path.clone(),
        );
        tokio::spawn(async move { logs::relay(stderr, name, plugin_type, &path).await });

        let (exited_tx, exited) = watch::channel(false);
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(supervise(
            child,
            kill_rx,
            exited_tx,
            spec.name.clone(),
            shown.clone(),
        ));
        let process = Self {
            path: spec.path.clone(),
            pid,
            exited,
            kill: parking_kill::Kill::new(kill_tx),
        };

        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(options.start_timeout, lines.next_line()).await;
        let address = match first {
            Err(_) => {
                return Err(LoadError::Launch(
                    "timeout while waiting for plugin to start".into(),
                ));
            }
            Ok(Err(e)) => {
                return Err(LoadError::Launch(format!(
                    "error encountered while scanning stdout: {e}"
                )));
            }
            Ok(Ok(None)) => handshake::parse("", true),
            Ok(Ok(Some(line))) => handshake::parse(&line, false),
        }
        .map_err(LoadError::Launch)?;
        // go-plugin reads and drops what the plugin prints on stdout afterwards.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let channel = connect(&address)
            .await
            .map_err(|e| LoadError::Launch(format!("error connecting to plugin: {e}")))?;
        Ok((process, channel))
    }

    /// The process ID, while it was known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the process has exited.
    pub fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }

    /// Waits up to `limit` for the process to have exited (and been reaped); whether it has.
    pub(crate) async fn wait_exit(&self, limit: Duration) -> bool {
        let mut exited = self.exited.clone();
        matches!(
            tokio::time::timeout(limit, exited.wait_for(|e| *e)).await,
            Ok(Ok(_))
        ) || self.has_exited()
    }

    /// Asks the plugin to shut down (go-plugin's controller), waits briefly for it to exit,
    /// then kills it.
    pub(crate) async fn stop(&self, channel: PluginChannel) {
        let mut controller =
            spire_proto::plugin::grpc_controller_client::GrpcControllerClient::new(channel);
        let _ = tokio::time::timeout(
            GRACEFUL_EXIT,
            controller.shutdown(spire_proto::plugin::Empty {}),
        )
        .await;
        if !self.wait_exit(GRACEFUL_EXIT).await {
            self.kill.now();
            self.wait_exit(GRACEFUL_EXIT).await;
        }
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        self.kill.now();
    }
}

/// Waits for the process to exit or for the kill switch, and reaps it either way.
async fn supervise(
    mut child: tokio::process::Child,
    kill: oneshot::Receiver<()>,
    exited: watch::Sender<bool>,
    name: String,
    path: String,
) {
    let pid = child.id().unwrap_or_default();
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let _ = exited.send(true);
    match status {
        Ok(s) if s.success() => tracing::info!(
            plugin_name = %name,
            plugin = %path,
            id = pid,
            subsystem_name = "catalog",
            "plugin process exited"
        ),
        Ok(s) => tracing::info!(
            plugin_name = %name,
            plugin = %path,
            id = pid,
            error = %exit_text(s),
            subsystem_name = "catalog",
            "plugin process exited"
        ),
        Err(e) => tracing::error!(
            plugin_name = %name,
            plugin = %path,
            id = pid,
            error = %e,
            subsystem_name = "catalog",
            "plugin process exited"
        ),
    }
}

/// Go's `*exec.ExitError` text.
fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".into(),
        (None, Some(15)) => "signal: terminated".into(),
        (None, Some(sig)) => format!("signal: {sig}"),
        (None, None) => "exited".into(),
    }
}

/// A gRPC connection to the plugin's listener.
async fn connect(address: &PluginAddress) -> Result<PluginChannel, String> {
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        match address {
            PluginAddress::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("dial unix {}: {e}", path.display()))?;
                conn::handshake(s).await.map_err(|e| e.to_string())
            }
            PluginAddress::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("dial tcp {addr}: {e}"))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                conn::handshake(s).await.map_err(|e| e.to_string())
            }
        }
    })
    .await;
    opened.unwrap_or_else(|_| Err("timed out connecting to the plugin".into()))
}
