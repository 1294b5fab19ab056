//! The `spire-server` client commands: SPIRE's `util.Adapter` (a
//! `-socketPath` flag, `Error: ...` on failure) around each command.

use std::future::Future;

use spire_goflag::{Command, Flag, FlagSet, Io, Parsed};
use spire_proto::grpc::health::v1::health_client::HealthClient;
use spire_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use spire_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spire_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use spire_proto::spire::api::server::localauthority::v1::local_authority_client::LocalAuthorityClient;
use spire_proto::spire::api::server::logger::v1::logger_client::LoggerClient;
use spire_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spire_proto::spire::api::server::trustdomain::v1::trust_domain_client::TrustDomainClient;
use spire_proto::spire::api::types::Selector;
use tonic::transport::Channel;

use crate::grpc::{RpcError, UdsChannel, runtime};

pub(crate) mod agent;
pub(crate) mod authority;
pub(crate) mod bundle;
pub(crate) mod entry;
pub(crate) mod federation;
pub(crate) mod healthcheck;
pub(crate) mod logger;
pub(crate) mod mint;
pub(crate) mod token;

/// `util.DefaultSocketPath`.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-server/private/api.sock";

/// The connection to the server API socket; clients connect on first use.
#[derive(Debug)]
pub(crate) struct ServerClient {
    conn: UdsChannel,
}

impl ServerClient {
    async fn channel(&mut self) -> Result<Channel, RpcError> {
        self.conn.get().await
    }

    pub(crate) async fn agent(&mut self) -> Result<AgentClient<Channel>, RpcError> {
        Ok(AgentClient::new(self.channel().await?))
    }

    pub(crate) async fn bundle(&mut self) -> Result<BundleClient<Channel>, RpcError> {
        Ok(BundleClient::new(self.channel().await?))
    }

    pub(crate) async fn entry(&mut self) -> Result<EntryClient<Channel>, RpcError> {
        Ok(EntryClient::new(self.channel().await?))
    }

    pub(crate) async fn logger(&mut self) -> Result<LoggerClient<Channel>, RpcError> {
        Ok(LoggerClient::new(self.channel().await?))
    }

    pub(crate) async fn svid(&mut self) -> Result<SvidClient<Channel>, RpcError> {
        Ok(SvidClient::new(self.channel().await?))
    }

    pub(crate) async fn trust_domain(&mut self) -> Result<TrustDomainClient<Channel>, RpcError> {
        Ok(TrustDomainClient::new(self.channel().await?))
    }

    pub(crate) async fn local_authority(
        &mut self,
    ) -> Result<LocalAuthorityClient<Channel>, RpcError> {
        Ok(LocalAuthorityClient::new(self.channel().await?))
    }

    pub(crate) async fn health(&mut self) -> Result<HealthClient<Channel>, RpcError> {
        Ok(HealthClient::new(self.channel().await?))
    }
}

/// One `spire-server` command (SPIRE's `util.Command`).
pub(crate) trait ServerCommand: Send + Sync + 'static {
    /// The one-line synopsis.
    fn synopsis(&self) -> &'static str;

    /// Runs the command with parsed flags; an error is printed as
    /// `Error: <err>` with exit code 1.
    fn run(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
        client: &mut ServerClient,
    ) -> impl Future<Output = Result<(), String>>;
}

/// SPIRE's `util.Adapter`.
pub(crate) struct Adapter<C> {
    flags: FlagSet,
    socket: Flag<String>,
    cmd: C,
}

impl<C: ServerCommand> Adapter<C> {
    /// A command whose flag set is named `name`; `build` defines the
    /// command's flags and returns the command.
    pub(crate) fn new(name: &str, build: impl FnOnce(&mut FlagSet) -> C) -> Adapter<C> {
        let mut flags = FlagSet::new(name);
        let socket = flags.string(
            "socketPath",
            DEFAULT_SOCKET_PATH,
            "Path to the SPIRE Server API socket",
        );
        let cmd = build(&mut flags);
        Adapter { flags, socket, cmd }
    }

    /// Boxes the adapter.
    pub(crate) fn boxed(self) -> Box<dyn Command> {
        Box::new(self)
    }
}

/// How grpc-go names the socket in dial errors (`"unix:" + path` parsed as
/// a URL puts `//` before absolute paths).
fn dial_display(path: &str) -> String {
    if path.starts_with('/') {
        format!("//{path}")
    } else {
        path.to_owned()
    }
}

impl<C: ServerCommand> Command for Adapter<C> {
    fn synopsis(&self) -> String {
        self.cmd.synopsis().to_owned()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        self.flags.help_text(io.stderr)
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        let Ok(m) = self.flags.parse(args, io.stderr) else {
            return 1;
        };
        let mut path = m.get(&self.socket).clone();
        if path.is_empty() {
            DEFAULT_SOCKET_PATH.clone_into(&mut path);
        }
        let display = dial_display(&path);
        let mut client = ServerClient {
            conn: UdsChannel::new(path, display),
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = writeln!(io.stderr, "Error: {e}");
                return 1;
            }
        };
        let result = rt.block_on(self.cmd.run(&m, io, &mut client));
        match result {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(io.stderr, "Error: {e}");
                1
            }
        }
    }
}

/// `util.ParseSelector`.
pub(crate) fn parse_selector(s: &str) -> Result<Selector, String> {
    match s.split_once(':') {
        Some((t, v)) => Ok(Selector {
            r#type: t.to_owned(),
            value: v.to_owned(),
        }),
        None => Err(format!("selector \"{s}\" must be formatted as type:value")),
    }
}

/// `util.Pluralizer`.
pub(crate) fn pluralize(msg: &str, singular: &str, plural: &str, n: usize) -> String {
    format!("{msg}{}", if n == 1 { singular } else { plural })
}

/// Writes to standard output, ignoring failures as SPIRE's `env.Printf`
/// callers do.
macro_rules! out {
    ($io:expr, $($arg:tt)*) => {{
        let _ = ::std::write!($io.stdout, $($arg)*);
    }};
}

/// Writes to standard error, ignoring failures.
macro_rules! err {
    ($io:expr, $($arg:tt)*) => {{
        let _ = ::std::write!($io.stderr, $($arg)*);
    }};
}

pub(crate) use {err, out};

/// The server's client commands, by command path.
pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    let mut v: Vec<(Vec<&'static str>, Box<dyn Command>)> = Vec::new();
    v.extend(agent::commands());
    v.extend(bundle::commands());
    v.extend(entry::commands());
    v.extend(federation::commands());
    v.extend(logger::commands());
    v.extend(authority::commands());
    v.push((vec!["token", "generate"], token::command()));
    v.push((vec!["healthcheck"], healthcheck::command()));
    v.push((vec!["x509", "mint"], mint::x509_command()));
    v.push((vec!["jwt", "mint"], mint::jwt_command()));
    v
}
