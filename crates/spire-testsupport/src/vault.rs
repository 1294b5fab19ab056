//! A fake Vault for UpstreamAuthority tests: no Vault builds here cheaply, so this serves the
//! endpoints SPIRE's `vault` plugin calls, with the request and response shapes of Vault's
//! HTTP API documentation (`/v1/auth/token/lookup-self`, `/v1/auth/<mount>/login`,
//! `/v1/auth/token/renew-self`, `/v1/<pki>/root/sign-intermediate`, errors as
//! `{"errors": [...]}`), on plain HTTP/1.1 over loopback.
//!
//! The PKI engine is a root CA made with rcgen; `sign-intermediate` signs the CSR's key as a
//! CA with the CSR's subject and SANs for the request's `ttl` (seconds, default one hour) and
//! answers `certificate`, `issuing_ca` and `ca_chain`. Every request is recorded (method,
//! path, headers in lower case, JSON body) for the test to compare.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// What the fake accepts.
#[derive(Debug, Clone)]
pub struct VaultSetup {
    /// The token `lookup-self` accepts, and every login hands out.
    pub token: String,
    /// `lease_duration`/`ttl` of tokens, seconds (0: never expire).
    pub lease_secs: u64,
    pub renewable: bool,
    /// AppRole credentials accepted at `auth/<approle mount>/login`.
    pub role_id: String,
    pub secret_id: String,
    /// The PKI mount (`pki` by default in SPIRE).
    pub pki_mount: String,
    /// The AppRole mount.
    pub approle_mount: String,
}

impl Default for VaultSetup {
    fn default() -> Self {
        Self {
            token: "s.root-token".into(),
            lease_secs: 0,
            renewable: false,
            role_id: "role-id".into(),
            secret_id: "secret-id".into(),
            pki_mount: "pki".into(),
            approle_mount: "approle".into(),
        }
    }
}

/// A running fake Vault.
pub struct FakeVault {
    /// `http://127.0.0.1:<port>`.
    pub addr: String,
    /// The PKI root, PEM and DER.
    pub root_pem: String,
    pub root_der: Vec<u8>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeVault")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Pki {
    ca: crate::ca::TestCa,
    root_pem: String,
}

impl FakeVault {
    /// Starts the fake on a free loopback port.
    pub async fn start(setup: VaultSetup) -> std::io::Result<FakeVault> {
        let ca = crate::ca::TestCa::new("fake vault root").map_err(std::io::Error::other)?;
        let (root_pem, root_der) = (ca.pem.clone(), ca.der.clone());
        let pki = Arc::new(Pki {
            ca,
            root_pem: root_pem.clone(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (seen2, setup) = (seen.clone(), Arc::new(setup));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (pki, seen, setup) = (pki.clone(), seen2.clone(), setup.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &pki, &seen, &setup).await;
                });
            }
        });
        Ok(FakeVault {
            addr,
            root_pem,
            root_der,
            seen,
            task,
        })
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Serves the requests of one connection (keep-alive).
async fn serve(
    mut stream: tokio::net::TcpStream,
    pki: &Pki,
    seen: &Mutex<Vec<Seen>>,
    setup: &VaultSetup,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((req, used)) = parse(&buf) else {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        buf.drain(..used);
        if let Ok(mut s) = seen.lock() {
            s.push(req.clone());
        }
        let (status, body) = answer(&req, pki, setup);
        let text = body.to_string();
        let reason = if status == 200 { "OK" } else { "Error" };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(resp.as_bytes()).await?;
    }
}

/// One whole request at the start of `buf`, and how many bytes it took.
fn parse(buf: &[u8]) -> Option<(Seen, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let total = end + 4 + len;
    if buf.len() < total {
        return None;
    }
    let body = serde_json::from_slice(&buf[end + 4..total]).unwrap_or(Value::Null);
    Some((
        Seen {
            method,
            path,
            headers,
            body,
        },
        total,
    ))
}

fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({ "errors": [message] }))
}

fn auth(setup: &VaultSetup) -> Value {
    json!({
        "auth": {
            "client_token": setup.token,
            "accessor": "accessor",
            "policies": ["default"],
            "lease_duration": setup.lease_secs,
            "renewable": setup.renewable,
        }
    })
}

fn answer(req: &Seen, pki: &Pki, setup: &VaultSetup) -> (u16, Value) {
    let token_ok = req.headers.get("x-vault-token") == Some(&setup.token);
    let path = req.path.split('?').next().unwrap_or_default();
    let approle_login = format!("/v1/auth/{}/login", setup.approle_mount);
    let sign = format!("/v1/{}/root/sign-intermediate", setup.pki_mount);
    match (req.method.as_str(), path) {
        ("GET", "/v1/auth/token/lookup-self") => {
            if !token_ok {
                return error(403, "permission denied");
            }
            (
                200,
                json!({ "data": {
                    "id": setup.token,
                    "ttl": setup.lease_secs,
                    "renewable": setup.renewable,
                    "policies": ["root"],
                }}),
            )
        }
        ("PUT" | "POST", "/v1/auth/token/renew-self") => {
            if !token_ok {
                return error(403, "permission denied");
            }
            (200, auth(setup))
        }
        ("PUT" | "POST", p) if p == approle_login => {
            if req.body["role_id"] == setup.role_id.as_str()
                && req.body["secret_id"] == setup.secret_id.as_str()
            {
                (200, auth(setup))
            } else {
                error(400, "invalid role or secret ID")
            }
        }
        ("PUT" | "POST", p) if p == sign => {
            if !token_ok {
                return error(403, "permission denied");
            }
            match sign_intermediate(&req.body, pki) {
                Ok(cert) => (
                    200,
                    json!({ "data": {
                        "certificate": cert,
                        "issuing_ca": pki.root_pem,
                        "ca_chain": [pki.root_pem],
                        "serial_number": "01",
                    }}),
                ),
                Err(e) => error(400, &e),
            }
        }
        _ => error(404, "no handler for route"),
    }
}

fn sign_intermediate(body: &Value, pki: &Pki) -> Result<String, String> {
    let pem = body["csr"].as_str().ok_or("missing csr")?;
    let der = crate::ca::pem_body(pem).ok_or("csr is not PEM")?;
    let ttl: u64 = match body["ttl"].as_str() {
        Some("") | None => 3600,
        Some(t) => t.parse().map_err(|_| format!("invalid ttl {t:?}"))?,
    };
    pki.ca
        .sign_ca_csr(&der, std::time::Duration::from_secs(ttl))
}
