//! gRPC over a UNIX domain socket, with grpc-go's error texts.

use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::gofmt::{errno_text, quote};

/// grpc-go's name of a status code.
pub(crate) fn code_name(code: tonic::Code) -> String {
    spire_gocompat::grpc::code_name(code as i32)
}

/// grpc-go's `codes.Code.String()` for a numeric code (batch results
/// carry them as `int32`).
pub(crate) fn code_name_i32(code: i32) -> String {
    spire_gocompat::grpc::code_name(code)
}

/// An RPC failure, printed as grpc-go prints a status error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcError {
    pub(crate) code: tonic::Code,
    pub(crate) message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rpc error: code = {} desc = {}",
            code_name(self.code),
            self.message
        )
    }
}

impl From<tonic::Status> for RpcError {
    fn from(s: tonic::Status) -> RpcError {
        if s.code() == tonic::Code::Cancelled && s.message() == "Timeout expired" {
            // tonic enforcing the request's grpc-timeout: grpc-go reports
            // the expired context.
            return RpcError::deadline();
        }
        let mut message = s.message().to_owned();
        if s.code() == tonic::Code::Unknown && message.is_empty() {
            // A transport failure tonic reports without a message.
            message = "transport is closing".to_owned();
        }
        RpcError {
            code: s.code(),
            message,
        }
    }
}

impl RpcError {
    /// `context deadline exceeded`, as a timed-out call reports it.
    pub(crate) fn deadline() -> RpcError {
        RpcError {
            code: tonic::Code::DeadlineExceeded,
            message: "context deadline exceeded".to_owned(),
        }
    }
}

/// A lazily connected channel to a UNIX socket: the connection is made on
/// first use, and a failure reads like grpc-go's dial error.
#[derive(Debug)]
pub(crate) struct UdsChannel {
    path: String,
    /// How grpc-go names the address in dial errors.
    display: String,
    channel: Option<Channel>,
}

impl UdsChannel {
    pub(crate) fn new(path: String, display: String) -> UdsChannel {
        UdsChannel {
            path,
            display,
            channel: None,
        }
    }

    /// The connected channel, connecting first if needed.
    pub(crate) async fn get(&mut self) -> Result<Channel, RpcError> {
        if let Some(c) = &self.channel {
            return Ok(c.clone());
        }
        let dial_error = |e: &std::io::Error, display: &str| RpcError {
            code: tonic::Code::Unavailable,
            message: format!(
                "connection error: desc = {}",
                quote(&format!(
                    "transport: Error while dialing: dial unix {display}: connect: {}",
                    errno_text(e)
                ))
            ),
        };
        let first = UnixStream::connect(&self.path)
            .await
            .map_err(|e| dial_error(&e, &self.display))?;
        let slot = Arc::new(Mutex::new(Some(first)));
        let path = self.path.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let slot = Arc::clone(&slot);
            let path = path.clone();
            async move {
                let ready = slot.lock().ok().and_then(|mut s| s.take());
                let stream = match ready {
                    Some(s) => s,
                    None => UnixStream::connect(&path).await?,
                };
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let endpoint = Endpoint::from_static("http://localhost");
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| RpcError {
                code: tonic::Code::Unavailable,
                message: format!(
                    "connection error: desc = {}",
                    quote(&format!("transport: {e}"))
                ),
            })?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }
}

/// A current-thread Tokio runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("unable to start runtime: {e}"))
}
