//! The instance metadata service client of the agent half, as the AWS SDK's
//! `feature/ec2/imds` client behaves for SPIRE: an IMDSv2 session token (`PUT
//! /latest/api/token` with a 300 s TTL) reused for every read, falling back to IMDSv1 (no
//! token) when the token request is refused with 403, 404 or 405 or cannot be sent; a 400 on
//! the token is final. Every operation is bounded by [`OPERATION_TIMEOUT`] (the SDK's
//! default operation timeout) and every body by [`MAX_BODY`].

use std::time::Duration;

use spire_http::{Client, HttpError, Request, Response};

/// The default endpoint (`http://169.254.169.254`).
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// The environment variable the SDK reads when no endpoint is configured.
pub const ENDPOINT_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// The bound of one IMDS operation (token included).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from IMDS.
pub const MAX_BODY: usize = 64 << 10;
/// The token TTL the SDK asks for, in seconds.
pub const TOKEN_TTL_SECONDS: u32 = 300;

const TOKEN_PATH: &str = "/latest/api/token";
const TOKEN_TTL_HEADER: &str = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds";
const TOKEN_HEADER: &str = "X-Aws-Ec2-Metadata-Token";

/// An IMDS failure, worded as the SDK's operation errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation error ec2imds: {operation}, {detail}")]
pub struct ImdsError {
    operation: &'static str,
    detail: String,
}

impl ImdsError {
    fn new(operation: &'static str, detail: impl Into<String>) -> Self {
        Self {
            operation,
            detail: detail.into(),
        }
    }
}

/// An IMDS client for one attestation.
#[derive(Debug)]
pub struct Imds {
    endpoint: String,
    client: Client,
    /// `None` before the first read, `Some(None)` once IMDSv1 is the fallback.
    token: Option<Option<String>>,
}

fn send_error(method: &str, url: &str, e: &HttpError) -> String {
    match e {
        HttpError::Timeout(..) => {
            format!("request send failed, {method} \"{url}\": context deadline exceeded")
        }
        other => format!("request send failed, {method} \"{url}\": {other}"),
    }
}

fn status_error(resp: &Response) -> String {
    format!(
        "https response error StatusCode: {}, RequestID: , request to EC2 IMDS failed",
        resp.status.as_u16()
    )
}

impl Imds {
    /// A client of `endpoint` (empty: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, then the default).
    pub fn new(endpoint: &str) -> Self {
        Self::with_timeout(endpoint, OPERATION_TIMEOUT)
    }

    /// [`Imds::new`] with another operation bound (tests).
    pub fn with_timeout(endpoint: &str, timeout: Duration) -> Self {
        let endpoint = if endpoint.is_empty() {
            std::env::var(ENDPOINT_ENV)
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
        } else {
            endpoint.to_string()
        };
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            client: Client::new(timeout),
            token: None,
        }
    }

    async fn token(&mut self, operation: &'static str) -> Result<Option<String>, ImdsError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let url = format!("{}{TOKEN_PATH}", self.endpoint);
        let req = Request::put(&url)
            .and_then(|r| r.header(TOKEN_TTL_HEADER, &TOKEN_TTL_SECONDS.to_string()))
            .map_err(|e| ImdsError::new(operation, format!("failed to get API token, {e}")))?
            .max_body(MAX_BODY);
        let token = match self.client.send(req).await {
            Err(HttpError::Url(e)) => {
                return Err(ImdsError::new(
                    operation,
                    format!("failed to get API token, {e}"),
                ));
            }
            // Not reachable or too slow: the SDK disables tokens and reads without one.
            Err(e) => {
                tracing::warn!(error = %send_error("PUT", &url, &e), "falling back to IMDSv1");
                None
            }
            Ok(resp) => match resp.status.as_u16() {
                200..=299 => {
                    if resp
                        .header(TOKEN_TTL_HEADER)
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .is_none()
                    {
                        return Err(ImdsError::new(
                            operation,
                            "failed to get API token, unable to parse API token, invalid TTL header",
                        ));
                    }
                    let tok = resp.text().map_err(|e| {
                        ImdsError::new(operation, format!("failed to get API token, {e}"))
                    })?;
                    Some(tok.to_string())
                }
                403..=405 => {
                    tracing::warn!(status = resp.status.as_u16(), "falling back to IMDSv1");
                    None
                }
                _ => {
                    return Err(ImdsError::new(
                        operation,
                        format!("failed to get API token, {}", status_error(&resp)),
                    ));
                }
            },
        };
        self.token = Some(token.clone());
        Ok(token)
    }

    /// `GetDynamicData`: the text at `/latest/dynamic/<path>`.
    pub async fn dynamic_data(&mut self, path: &str) -> Result<String, ImdsError> {
        self.read("GetDynamicData", "dynamic", path).await
    }

    /// `GetMetadata`: the text at `/latest/meta-data/<path>`.
    pub async fn meta_data(&mut self, path: &str) -> Result<String, ImdsError> {
        self.read("GetMetadata", "meta-data", path).await
    }

    async fn read(
        &mut self,
        op: &'static str,
        tree: &str,
        path: &str,
    ) -> Result<String, ImdsError> {
        let token = self.token(op).await?;
        let url = format!("{}/latest/{tree}/{path}", self.endpoint);
        let mut req = Request::get(&url)
            .map_err(|e| ImdsError::new(op, e.to_string()))?
            .max_body(MAX_BODY);
        if let Some(t) = &token {
            req = req
                .header(TOKEN_HEADER, t)
                .map_err(|e| ImdsError::new(op, e.to_string()))?;
        }
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| ImdsError::new(op, send_error("GET", &url, &e)))?;
        if !resp.status.is_success() {
            if resp.status.as_u16() == 401 {
                // A token that expired or was revoked: the next read asks for a new one.
                self.token = None;
            }
            return Err(ImdsError::new(op, status_error(&resp)));
        }
        resp.text()
            .map(str::to_string)
            .map_err(|e| ImdsError::new(op, format!("read response body failed, {e}")))
    }
}
