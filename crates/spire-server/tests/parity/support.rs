//! Servers and agents for the parity test: reference spire-server 1.13.3 and ours, started
//! from one configuration template, and reference agents attested to either with join
//! tokens of a value we choose (so that agent IDs are the same on both sides).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use spire_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use spire_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};

use crate::cli_common::{
    agent_conf, free_port, healthy, ref_agent_bin, ref_server_bin, spawn_with_conf, wait_until,
};

/// Which implementation a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impl {
    Reference,
    Ours,
}

impl Impl {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Impl::Reference => "reference",
            Impl::Ours => "ours",
        }
    }

    fn server_bin(self) -> PathBuf {
        match self {
            Impl::Reference => ref_server_bin(),
            Impl::Ours => PathBuf::from(env!("CARGO_BIN_EXE_spire-server")),
        }
    }
}

/// The server configuration both implementations run with: the shared test configuration
/// plus x509pop trusting `x509pop_ca`.
fn server_conf(dir: &str, port: u16, socket: &str, x509pop_ca: &str) -> String {
    let x509pop = format!(
        "    NodeAttestor \"x509pop\" {{\n        plugin_data {{\n            ca_bundle_path = \"{x509pop_ca}\"\n        }}\n    }}\n"
    );
    crate::cli_common::server_conf(dir, port, socket, &x509pop)
}

/// How a reference agent attests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attestation<'a> {
    /// With a join token of this value (created on the server first).
    JoinToken(&'a str),
    /// With x509pop and this identity.
    X509Pop(&'a X509PopIdentity),
}

/// An x509pop agent identity: a key and a certificate issued by the CA both servers trust.
#[derive(Debug, Clone)]
pub(crate) struct X509PopIdentity {
    pub(crate) key: String,
    pub(crate) cert: String,
    /// The agent ID x509pop derives: the SHA-1 fingerprint of the certificate.
    pub(crate) id: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is required for the x509pop agents: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a CA (`x509pop-ca.pem`) and one agent identity per name under `dir`.
pub(crate) fn x509pop_material(dir: &Path, names: &[&str]) -> (String, Vec<X509PopIdentity>) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "x509pop-ca.key",
        "-out",
        "x509pop-ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=parity x509pop CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(dir, &ca);
    std::fs::write(dir.join("leaf.ext"), "keyUsage=critical,digitalSignature\n").unwrap();
    let identities = names
        .iter()
        .map(|name| {
            let (key, csr, cert) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subj = format!("/CN={name}");
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(dir, &req);
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "x509pop-ca.pem",
                    "-CAkey",
                    "x509pop-ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                    "-out",
                    &cert,
                ],
            );
            let fp = Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint", "-sha1", "-in", &cert])
                .current_dir(dir)
                .output()
                .unwrap();
            let fp = String::from_utf8_lossy(&fp.stdout);
            let fp = fp
                .trim()
                .rsplit('=')
                .next()
                .unwrap()
                .replace(':', "")
                .to_lowercase();
            X509PopIdentity {
                key: dir.join(&key).display().to_string(),
                cert: dir.join(&cert).display().to_string(),
                id: format!("spiffe://example.org/spire/agent/x509pop/{fp}"),
            }
        })
        .collect();
    (dir.join("x509pop-ca.pem").display().to_string(), identities)
}

/// A running spire-server (either implementation) on a temporary directory.
pub(crate) struct Server {
    pub(crate) which: Impl,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) socket: String,
    pub(crate) port: u16,
    child: Child,
}

impl Server {
    pub(crate) fn start(which: Impl, x509pop_ca: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("parity")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display().to_string();
        let socket = format!("{d}/api.sock");
        let port = free_port();
        let conf = server_conf(&d, port, &socket, x509pop_ca);
        let child = spawn_with_conf(&which.server_bin(), dir.path(), "server", &conf);
        let mut server = Server {
            which,
            dir,
            socket,
            port,
            child,
        };
        let what = format!("the {} server", which.label());
        wait_until(&what, Duration::from_secs(60), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{what} exited with {status}:\n{}", server.log());
            }
            healthy(&ref_server_bin(), &server.socket)
        });
        server
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Creates a join token with the given value (the CLI only makes random ones).
    pub(crate) fn create_join_token(&self, token: &str, ttl: i32) {
        let socket = PathBuf::from(&self.socket);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let channel = Endpoint::try_from("http://[::]:50051")
                .unwrap()
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?))
                    }
                }))
                .await
                .unwrap();
            AgentClient::new(channel)
                .create_join_token(CreateJoinTokenRequest {
                    ttl,
                    token: token.to_owned(),
                    agent_id: None,
                })
                .await
                .unwrap();
        });
    }

    /// Attests a reference agent, then stops it (the attested node stays). Returns the
    /// agent's SPIFFE ID.
    pub(crate) fn attest_agent(&self, how: Attestation<'_>) -> String {
        let (join_token, attestor, id) = match how {
            Attestation::JoinToken(token) => {
                self.create_join_token(token, 600);
                (
                    Some(token),
                    "NodeAttestor \"join_token\" { plugin_data {} }".to_string(),
                    format!("spiffe://example.org/spire/agent/join_token/{token}"),
                )
            }
            Attestation::X509Pop(identity) => (
                None,
                format!(
                    "NodeAttestor \"x509pop\" {{ plugin_data {{ private_key_path = \"{}\" certificate_path = \"{}\" }} }}",
                    identity.key, identity.cert
                ),
                identity.id.clone(),
            ),
        };
        let dir = tempfile::Builder::new()
            .prefix("parity-ag")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display().to_string();
        let socket = format!("{d}/agent.sock");
        let conf = agent_conf(&d, self.port, &socket, join_token, &attestor);
        let mut child = spawn_with_conf(&ref_agent_bin(), dir.path(), "agent", &conf);
        let what = format!(
            "a reference agent attesting to the {} server",
            self.which.label()
        );
        let start = Instant::now();
        loop {
            if healthy(&ref_agent_bin(), &socket) {
                break;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} failed ({exited:?}):\n{}\n--- server log\n{}",
                    std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        id
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("SPIRE_PARITY_KEEP").is_some() {
            let kept = self.dir.path().to_path_buf();
            let _ = std::mem::replace(
                &mut self.dir,
                tempfile::Builder::new()
                    .prefix("parity")
                    .tempdir_in("/tmp")
                    .unwrap(),
            )
            .keep();
            eprintln!(
                "kept the {} server's files in {}",
                self.which.label(),
                kept.display()
            );
        }
    }
}
