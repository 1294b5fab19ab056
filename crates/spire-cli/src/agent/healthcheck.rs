//! `spire-agent healthcheck`.

use spire_goflag::{Command, Flag, FlagSet, Io};
use spire_proto::grpc::health::v1::HealthCheckRequest;
use spire_proto::grpc::health::v1::health_check_response::ServingStatus;
use spire_proto::grpc::health::v1::health_client::HealthClient;

use super::DEFAULT_SOCKET_PATH;
use crate::gofmt::{abs_path, quote};
use crate::grpc::{RpcError, UdsChannel, runtime};
use crate::server::healthcheck::status_name;

/// `healthCheckCommand`.
#[derive(Debug)]
pub(crate) struct HealthCheck;

struct Flags {
    fs: FlagSet,
    shallow: Flag<bool>,
    verbose: Flag<bool>,
    socket: Flag<String>,
}

fn flags() -> Flags {
    let mut fs = FlagSet::new("health");
    let shallow = fs.bool("shallow", false, "Perform a less stringent health check");
    let verbose = fs.bool("verbose", false, "Print verbose information");
    let socket = fs.string(
        "socketPath",
        DEFAULT_SOCKET_PATH,
        "Path to the SPIRE Agent API socket",
    );
    Flags {
        fs,
        shallow,
        verbose,
        socket,
    }
}

async fn check(path: String, verbose: bool, io: &mut Io<'_>) -> Result<(), String> {
    let mut conn = UdsChannel::new(path.clone(), path);
    let resp = async {
        let channel = conn.get().await?;
        let r = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok::<_, RpcError>(r.into_inner())
    }
    .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            if verbose {
                let _ = writeln!(io.stderr, "Failed to check health: {e}");
            }
            return Err("unable to determine health".into());
        }
    };
    if resp.status != ServingStatus::Serving as i32 {
        return Err(format!(
            "agent returned status {}",
            quote(&status_name(resp.status))
        ));
    }
    Ok(())
}

impl Command for HealthCheck {
    fn synopsis(&self) -> String {
        "Determines agent health status".to_owned()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        let _ = flags().fs.help_text(io.stderr);
        String::new()
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        let f = flags();
        let Ok(m) = f.fs.parse(args, io.stderr) else {
            return 1;
        };
        let _ = m.get(&f.shallow);
        let verbose = *m.get(&f.verbose);
        let result = (|| {
            if verbose {
                let _ = writeln!(io.stdout, "Checking agent health...");
            }
            let path = abs_path(m.get(&f.socket).as_str())
                .map_err(|e| format!("failed to get absolute path for socket path: {e}"))?;
            let rt = runtime()?;
            rt.block_on(check(path, verbose, io))
        })();
        if let Err(e) = result {
            let _ = writeln!(io.stderr, "Agent is unhealthy: {e}");
            return 1;
        }
        if writeln!(io.stdout, "Agent is healthy.").is_err() {
            return 1;
        }
        0
    }
}
