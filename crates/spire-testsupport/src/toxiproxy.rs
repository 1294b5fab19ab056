//! toxiproxy (Shopify's TCP fault injector) for database fault tests and benchmarks: a
//! server of the caller's own, built once per machine by `scripts/toxiproxy.sh`, driven
//! through its HTTP API. Stopped (by PID) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A running toxiproxy server.
#[derive(Debug)]
pub struct Toxiproxy {
    child: Child,
    api: u16,
}

/// A free port on 127.0.0.1 (bound and released; fine for a test's own listeners).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Toxiproxy {
    /// Builds (once per machine) and starts a server on a free port.
    pub async fn start() -> Result<Toxiproxy, String> {
        let script = crate::workspace_root().join("scripts/toxiproxy.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed", script.display()));
        }
        let bin =
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("toxiproxy-server");
        let api = free_port()?;
        let child = Command::new(&bin)
            .args(["-host", "127.0.0.1", "-port", &api.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let t = Toxiproxy { child, api };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", api))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("toxiproxy did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(t)
    }

    /// Creates proxy `name` from a free local port to `127.0.0.1:upstream`; the local port.
    pub async fn proxy(&self, name: &str, upstream: u16) -> Result<u16, String> {
        let port = free_port()?;
        self.call(
            "POST",
            "/proxies",
            &serde_json::json!({
                "name": name,
                "listen": format!("127.0.0.1:{port}"),
                "upstream": format!("127.0.0.1:{upstream}"),
                "enabled": true,
            }),
        )
        .await?;
        Ok(port)
    }

    /// Changes proxy `name` (e.g. `{"enabled": false}`, or another `upstream`; toxiproxy
    /// drops the proxy's connections when it restarts it).
    pub async fn update(&self, name: &str, body: &serde_json::Value) -> Result<(), String> {
        self.call("POST", &format!("/proxies/{name}"), body).await
    }

    /// Adds a toxic (`{"name", "type", "stream", "attributes"}`) to proxy `name`.
    pub async fn add_toxic(&self, name: &str, toxic: &serde_json::Value) -> Result<(), String> {
        self.call("POST", &format!("/proxies/{name}/toxics"), toxic)
            .await
    }

    /// Removes toxic `toxic` from proxy `name`.
    pub async fn remove_toxic(&self, name: &str, toxic: &str) -> Result<(), String> {
        self.call(
            "DELETE",
            &format!("/proxies/{name}/toxics/{toxic}"),
            &serde_json::Value::Null,
        )
        .await
    }

    /// One API call (HTTP/1.0, JSON body), bounded to 10 s; an error unless it answers 2xx.
    async fn call(&self, method: &str, path: &str, body: &serde_json::Value) -> Result<(), String> {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.api)).await?;
            s.write_all(
                format!(
                    "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let out = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| format!("toxiproxy {method} {path}: no answer in 10 s"))?
            .map_err(|e| format!("toxiproxy {method} {path}: {e}"))?;
        let ok = out
            .split(' ')
            .nth(1)
            .is_some_and(|code| code.starts_with('2'));
        if ok {
            Ok(())
        } else {
            Err(format!("toxiproxy {method} {path}: {out}"))
        }
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
