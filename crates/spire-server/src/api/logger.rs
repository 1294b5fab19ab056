//! `spire.api.server.logger.v1.Logger`: read and change the log level at run time.

use std::sync::Arc;

use async_trait::async_trait;
use spire_log::LogLevel;
use spire_proto::spire::api::server::logger::v1 as pb;
use spire_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::error::ApiError;
use crate::state::Server;

/// The Logger service.
#[derive(Debug, Clone)]
pub struct LoggerService {
    server: Arc<Server>,
}

impl LoggerService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }

    fn current(&self) -> types::Logger {
        types::Logger {
            current_level: to_proto(self.server.log().level()) as i32,
            launch_level: to_proto(self.server.log().launch_level()) as i32,
        }
    }
}

fn to_proto(l: LogLevel) -> types::LogLevel {
    match l {
        LogLevel::Panic => types::LogLevel::Panic,
        LogLevel::Fatal => types::LogLevel::Fatal,
        LogLevel::Error => types::LogLevel::Error,
        LogLevel::Warn => types::LogLevel::Warn,
        LogLevel::Info => types::LogLevel::Info,
        LogLevel::Debug => types::LogLevel::Debug,
        LogLevel::Trace => types::LogLevel::Trace,
    }
}

fn from_proto(l: i32) -> Option<LogLevel> {
    match types::LogLevel::try_from(l).ok()? {
        types::LogLevel::Panic => Some(LogLevel::Panic),
        types::LogLevel::Fatal => Some(LogLevel::Fatal),
        types::LogLevel::Error => Some(LogLevel::Error),
        types::LogLevel::Warn => Some(LogLevel::Warn),
        types::LogLevel::Info => Some(LogLevel::Info),
        types::LogLevel::Debug => Some(LogLevel::Debug),
        types::LogLevel::Trace => Some(LogLevel::Trace),
        types::LogLevel::Unspecified => None,
    }
}

#[async_trait]
impl pb::logger_server::Logger for LoggerService {
    async fn get_logger(
        &self,
        _r: Request<pb::GetLoggerRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        Ok(Response::new(self.current()))
    }

    async fn set_log_level(
        &self,
        r: Request<pb::SetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        let req = r.into_inner();
        let level = from_proto(req.new_level).ok_or_else(|| {
            ApiError::invalid_argument("newLevel value cannot be LogLevel_UNSPECIFIED")
        })?;
        tracing::info!(new_level = level.as_str(), "Log level set");
        self.server.log().set_level(level);
        Ok(Response::new(self.current()))
    }

    async fn reset_log_level(
        &self,
        _r: Request<pb::ResetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        self.server.log().reset();
        tracing::info!(
            launch_log_level = self.server.log().launch_level().as_str(),
            "Log level reset"
        );
        Ok(Response::new(self.current()))
    }
}
