//! `spire-server logger get|set|reset`.

use spire_goflag::{Command, Flag, Io, Parsed};
use spire_proto::spire::api::server::logger::v1::{
    GetLoggerRequest, ResetLogLevelRequest, SetLogLevelRequest,
};
use spire_proto::spire::api::types::{LogLevel, Logger};

use super::{Adapter, ServerClient, ServerCommand, out};
use crate::gofmt::quote;
use crate::grpc::RpcError;
use crate::printer::{OutputFlag, is_json, output_flag, print_proto};

pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    vec![
        (vec!["logger", "get"], command(Op::Get)),
        (vec!["logger", "set"], command(Op::Set)),
        (vec!["logger", "reset"], command(Op::Reset)),
    ]
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
    Reset,
}

struct LoggerCommand {
    op: Op,
    level: Option<Flag<String>>,
    output: Flag<OutputFlag>,
}

fn command(op: Op) -> Box<dyn Command> {
    let name = match op {
        Op::Get => "logger get",
        Op::Set => "logger set",
        Op::Reset => "logger reset",
    };
    Adapter::new(name, |f| LoggerCommand {
        op,
        level: matches!(op, Op::Set).then(|| {
            f.string(
                "level",
                "",
                "The new log level, one of (panic, fatal, error, warn, info, debug, trace)",
            )
        }),
        output: output_flag(f),
    })
    .boxed()
}

/// logrus's `Level.MarshalText` of the level an API level maps to.
fn level_text(level: i32) -> Option<&'static str> {
    Some(match LogLevel::try_from(level).ok()? {
        LogLevel::Panic => "panic",
        LogLevel::Fatal => "fatal",
        LogLevel::Error => "error",
        LogLevel::Warn => "warning",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
        LogLevel::Unspecified => return None,
    })
}

/// `PrettyPrintLogger`.
fn pretty(io: &mut Io<'_>, logger: &Logger) -> Result<(), String> {
    let current = level_text(logger.current_level).ok_or_else(|| {
        "internal error: returned current log level is undefined; please report this as a bug"
            .to_owned()
    })?;
    let launch = level_text(logger.launch_level).ok_or_else(|| {
        "internal error: returned launch log level is undefined; please report this as a bug"
            .to_owned()
    })?;
    out!(io, "Logger Level : {current}\nLaunch Level : {launch}\n\n");
    Ok(())
}

impl ServerCommand for LoggerCommand {
    fn synopsis(&self) -> &'static str {
        match self.op {
            Op::Get => "Gets the logger details",
            Op::Set => "Sets the logger details",
            Op::Reset => "Reset the logger details to launch level",
        }
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let logger = match self.op {
            Op::Get => async {
                let r = c.logger().await?.get_logger(GetLoggerRequest {}).await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("error fetching logger: {e}"))?,
            Op::Reset => async {
                let r = c
                    .logger()
                    .await?
                    .reset_log_level(ResetLogLevelRequest {})
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("failed to reset logger: {e}"))?,
            Op::Set => {
                let raw = self
                    .level
                    .as_ref()
                    .map(|l| m.get(l).clone())
                    .unwrap_or_default();
                if raw.is_empty() {
                    return Err("a value (-level) must be set".into());
                }
                let level = match raw.to_lowercase().as_str() {
                    "panic" => LogLevel::Panic,
                    "fatal" => LogLevel::Fatal,
                    "error" => LogLevel::Error,
                    "warn" | "warning" => LogLevel::Warn,
                    "info" => LogLevel::Info,
                    "debug" => LogLevel::Debug,
                    "trace" => LogLevel::Trace,
                    _ => {
                        return Err(format!("the value {} is not a valid setting", quote(&raw)));
                    }
                };
                async {
                    let r = c
                        .logger()
                        .await?
                        .set_log_level(SetLogLevelRequest {
                            new_level: level as i32,
                        })
                        .await?;
                    Ok::<_, RpcError>(r.into_inner())
                }
                .await
                .map_err(|e| format!("failed to set log level: {e}"))?
            }
        };
        if is_json(m, &self.output) {
            return print_proto(io, &logger);
        }
        pretty(io, &logger)
    }
}
