//! The `spire-agent` client commands: `api fetch [x509|jwt]`, `api validate
//! jwt`, `api watch` and `healthcheck`.

use std::future::Future;
use std::time::Duration;

use spire_goflag::{Command, DurationFlag, Flag, FlagSet, GoDuration, Io, Parsed};
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::Channel;

use crate::gofmt::abs_path;
use crate::grpc::{RpcError, UdsChannel, runtime};

pub(crate) mod fetch_jwt;
pub(crate) mod fetch_x509;
pub(crate) mod healthcheck;
pub(crate) mod watch;

/// `common.DefaultSocketPath` of the agent.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-agent/public/api.sock";

/// The Workload API connection of one command: the security header on
/// every call and the `-timeout` deadline.
#[derive(Debug)]
pub(crate) struct WorkloadClient {
    conn: UdsChannel,
    timeout: Option<Duration>,
}

impl WorkloadClient {
    /// A client for the socket at the absolute path `path`.
    pub(crate) fn new(path: String, timeout: Option<Duration>) -> WorkloadClient {
        let display = path.clone();
        WorkloadClient {
            conn: UdsChannel::new(path, display),
            timeout,
        }
    }

    /// The gRPC client (connecting first if needed).
    pub(crate) async fn client(&mut self) -> Result<SpiffeWorkloadApiClient<Channel>, RpcError> {
        Ok(SpiffeWorkloadApiClient::new(self.conn.get().await?))
    }

    /// A request carrying `workload.spiffe.io: true` and the deadline.
    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert(
            "workload.spiffe.io",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        if let Some(t) = self.timeout {
            req.set_timeout(t);
        }
        req
    }

    /// The command's deadline.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// Runs `fut` under a deadline, failing as a timed-out gRPC call does.
pub(crate) async fn with_deadline<T>(
    timeout: Option<Duration>,
    fut: impl Future<Output = Result<T, RpcError>>,
) -> Result<T, RpcError> {
    match timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::deadline()),
        },
        None => fut.await,
    }
}

/// One `spire-agent api` command (SPIRE's agent `command`).
pub(crate) trait ApiCommand: Send + Sync + 'static {
    fn synopsis(&self) -> &'static str;

    fn run(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
        client: &mut WorkloadClient,
    ) -> impl Future<Output = Result<(), String>>;
}

/// SPIRE's agent API `adapter`: `-timeout` and `-socketPath`, errors
/// printed bare.
pub(crate) struct ApiAdapter<C> {
    flags: FlagSet,
    timeout: Flag<DurationFlag>,
    socket: Flag<String>,
    cmd: C,
}

impl<C: ApiCommand> ApiAdapter<C> {
    pub(crate) fn new(name: &str, build: impl FnOnce(&mut FlagSet) -> C) -> ApiAdapter<C> {
        let mut flags = FlagSet::new(name);
        let timeout = flags.var(
            "timeout",
            DurationFlag(GoDuration::from_secs(5)),
            "Time to wait for a response",
        );
        let socket = flags.string(
            "socketPath",
            DEFAULT_SOCKET_PATH,
            "Path to the SPIRE Agent API Unix domain socket",
        );
        let cmd = build(&mut flags);
        ApiAdapter {
            flags,
            timeout,
            socket,
            cmd,
        }
    }

    pub(crate) fn boxed(self) -> Box<dyn Command> {
        Box::new(self)
    }
}

impl<C: ApiCommand> Command for ApiAdapter<C> {
    fn synopsis(&self) -> String {
        self.cmd.synopsis().to_owned()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        let _ = self.flags.help_text(io.stderr);
        String::new()
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        let m = match self.flags.parse(args, io.stderr) {
            Ok(m) => m,
            Err(e) => {
                let _ = writeln!(io.stderr, "{e}");
                return 1;
            }
        };
        let path = match abs_path(m.get(&self.socket).as_str()) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(
                    io.stderr,
                    "failed to get absolute path for socket path: {e}"
                );
                return 1;
            }
        };
        let timeout = m.get(&self.timeout).0;
        let timeout = if timeout.as_nanos() > 0 {
            timeout.to_std()
        } else {
            None
        };
        let mut client = WorkloadClient::new(path, timeout);
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = writeln!(io.stderr, "{e}");
                return 1;
            }
        };
        match rt.block_on(self.cmd.run(&m, io, &mut client)) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(io.stderr, "{e}");
                1
            }
        }
    }
}

/// The agent's client commands, by command path.
pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    vec![
        (vec!["api", "fetch"], fetch_x509::command()),
        (vec!["api", "fetch", "x509"], fetch_x509::command()),
        (vec!["api", "fetch", "jwt"], fetch_jwt::fetch_command()),
        (
            vec!["api", "validate", "jwt"],
            fetch_jwt::validate_command(),
        ),
        (vec!["api", "watch"], Box::new(watch::Watch)),
        (vec!["healthcheck"], Box::new(healthcheck::HealthCheck)),
    ]
}
