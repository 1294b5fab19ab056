//! The CA's HTTP client: `spire-http` (HTTP/1.1, one connection per request, the CA
//! verified against the system's roots with `SSL_CERT_FILE` / `SSL_CERT_DIR` honoured, as
//! Go does), every request bounded by [`HTTP_TIMEOUT`], with the program's User-Agent.

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;

/// The bound on one HTTP request to the CA.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from the CA.
const MAX_BODY: usize = 1 << 20;

/// An answer from the CA.
pub type Answer = spire_http::Response;

/// The CA's HTTP client.
#[derive(Debug, Clone)]
pub struct AcmeHttp {
    client: spire_http::Client,
    user_agent: String,
}

impl AcmeHttp {
    /// A client trusting the system's roots, sending `user_agent`.
    pub fn new(user_agent: &str) -> Result<AcmeHttp, String> {
        Ok(AcmeHttp {
            client: spire_http::Client::new(HTTP_TIMEOUT),
            user_agent: user_agent.to_string(),
        })
    }

    /// A client verifying the CA with its own TLS configuration (tests).
    pub fn with_tls(tls: Arc<rustls::ClientConfig>, user_agent: &str) -> Result<AcmeHttp, String> {
        Ok(AcmeHttp {
            client: spire_http::Client::new(HTTP_TIMEOUT).with_tls(tls),
            user_agent: user_agent.to_string(),
        })
    }

    /// Sends one request (`body` with `content_type` for a POST).
    pub async fn request(
        &self,
        method: http::Method,
        url: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<Answer, String> {
        let what = match method {
            http::Method::GET => "Get",
            http::Method::HEAD => "Head",
            _ => "Post",
        };
        let fail = |e: spire_http::HttpError| {
            format!("{what} {}: {e}", spire_gocompat::strconv::quote(url))
        };
        let mut req = spire_http::Request::new(method, url)
            .and_then(|r| r.header("user-agent", &self.user_agent))
            .map_err(fail)?
            .max_body(MAX_BODY);
        if let Some((b, content_type)) = body {
            req = req
                .header("content-type", content_type)
                .map_err(fail)?
                .body(b);
        }
        self.client.send(req).await.map_err(fail)
    }
}
