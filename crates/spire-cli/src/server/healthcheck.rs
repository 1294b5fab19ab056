//! `spire-server healthcheck`.

use spire_goflag::{Command, Flag, Io, Parsed};
use spire_proto::grpc::health::v1::HealthCheckRequest;
use spire_proto::grpc::health::v1::health_check_response::ServingStatus;

use super::{Adapter, ServerClient, ServerCommand, err, out};
use crate::gofmt::quote;
use crate::grpc::RpcError;

/// `healthCheckCommand`.
struct HealthCheck {
    shallow: Flag<bool>,
    verbose: Flag<bool>,
}

pub(crate) fn command() -> Box<dyn Command> {
    Adapter::new("healthcheck", |f| HealthCheck {
        shallow: f.bool("shallow", false, "Perform a less stringent health check"),
        verbose: f.bool("verbose", false, "Print verbose information"),
    })
    .boxed()
}

/// The name grpc-go prints for a serving status.
pub(crate) fn status_name(status: i32) -> String {
    match ServingStatus::try_from(status) {
        Ok(s) => s.as_str_name().to_owned(),
        Err(_) => status.to_string(),
    }
}

impl ServerCommand for HealthCheck {
    fn synopsis(&self) -> &'static str {
        "Determines server health status"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let _ = m.get(&self.shallow);
        let verbose = *m.get(&self.verbose);
        if verbose {
            out!(io, "Checking server health...\n");
        }
        let resp = async {
            let r = c
                .health()
                .await?
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
                    err!(io, "Failed to check health: {e}\n");
                }
                return Err("server is unhealthy: unable to determine health".into());
            }
        };
        if resp.status != ServingStatus::Serving as i32 {
            return Err(format!(
                "server is unhealthy: server returned status {}",
                quote(&status_name(resp.status))
            ));
        }
        out!(io, "Server is healthy.\n");
        Ok(())
    }
}
