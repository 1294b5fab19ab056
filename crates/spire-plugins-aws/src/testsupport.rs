//! Test fixtures (feature `test-support`, never in the programs): a stand-in for AWS's
//! region certificate and key, instance identity documents signed with it as AWS signs
//! them (RSA-1024-style PKCS #1 v1.5 SHA-256 and an RSA-2048-style PKCS #7 SignedData with
//! signed attributes), and an IMDS on loopback serving them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A test signing authority: a self-signed RSA certificate and its key.
#[derive(Debug)]
pub struct TestCa {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    key: RsaKeyPair,
}

impl TestCa {
    /// A new RSA-2048 authority named `cn`.
    pub fn new(cn: &str) -> Result<Self, String> {
        let kp =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Amazon Web Services LLC");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x1d, 0x2e, 0x3f]));
        let cert = params.self_signed(&kp).map_err(|e| e.to_string())?;
        let key = RsaKeyPair::from_pkcs8(&kp.serialize_der()).map_err(|e| e.to_string())?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .map_err(|e| e.to_string())?;
        Ok(sig)
    }

    /// `instance-identity/signature`: base64 of PKCS #1 v1.5 SHA-256 over the document.
    pub fn sign_rsa1024_style(&self, doc: &str) -> Result<String, String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(self.sign(doc.as_bytes())?))
    }

    /// `instance-identity/rsa2048`: base64 of a PKCS #7 SignedData carrying `content`,
    /// signed attributes (content type, signing time, message digest), the certificate.
    pub fn sign_pkcs7(&self, content: &[u8]) -> Result<String, String> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(&self.cert_der).map_err(|e| e.to_string())?;
        let issuer = cert.tbs_certificate.issuer.as_raw().to_vec();
        let serial = cert.raw_serial().to_vec();
        let sha256 = alg_id(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]);
        let data_oid = oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01]);
        let md = digest::digest(&digest::SHA256, content);
        let attrs = [
            attr(
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03],
                &data_oid,
            ),
            attr(
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05],
                &tlv(0x17, b"250101000000Z"),
            ),
            attr(
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04],
                &tlv(0x04, md.as_ref()),
            ),
        ]
        .concat();
        let sig = self.sign(&tlv(0x31, &attrs))?;
        let signer = tlv(
            0x30,
            &[
                tlv(0x02, &[1]),
                tlv(0x30, &[issuer, tlv(0x02, &serial)].concat()),
                sha256.clone(),
                tlv(0xa0, &attrs),
                alg_id(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
                tlv(0x04, &sig),
            ]
            .concat(),
        );
        let signed_data = tlv(
            0x30,
            &[
                tlv(0x02, &[1]),
                tlv(0x31, &sha256),
                tlv(0x30, &[data_oid, tlv(0xa0, &tlv(0x04, content))].concat()),
                tlv(0xa0, &self.cert_der),
                tlv(0x31, &signer),
            ]
            .concat(),
        );
        let ci = tlv(
            0x30,
            &[
                oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]),
                tlv(0xa0, &signed_data),
            ]
            .concat(),
        );
        Ok(base64::engine::general_purpose::STANDARD.encode(ci))
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let b = len.to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        out.push(0x80 | (b.len() - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn oid(v: &[u8]) -> Vec<u8> {
    tlv(0x06, v)
}

fn alg_id(v: &[u8]) -> Vec<u8> {
    tlv(0x30, &[oid(v), vec![0x05, 0x00]].concat())
}

fn attr(t: &[u8], value: &[u8]) -> Vec<u8> {
    tlv(0x30, &[oid(t), tlv(0x31, value)].concat())
}

/// An instance identity document as IMDS serves it (pretty-printed JSON).
pub fn document(account: &str, region: &str, instance: &str, az: &str, image: &str) -> String {
    format!(
        "{{\n  \"accountId\" : \"{account}\",\n  \"architecture\" : \"x86_64\",\n  \"availabilityZone\" : \"{az}\",\n  \"billingProducts\" : null,\n  \"devpayProductCodes\" : null,\n  \"marketplaceProductCodes\" : null,\n  \"imageId\" : \"{image}\",\n  \"instanceId\" : \"{instance}\",\n  \"instanceType\" : \"t3.micro\",\n  \"kernelId\" : null,\n  \"pendingTime\" : \"2025-01-01T00:00:00Z\",\n  \"privateIp\" : \"10.0.0.1\",\n  \"ramdiskId\" : null,\n  \"region\" : \"{region}\",\n  \"version\" : \"2017-09-30\"\n}}"
    )
}

/// How the fixture behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsMode {
    /// IMDSv2 only: reads without a valid token get 401.
    V2,
    /// IMDSv1 only: the token request gets 404 (the SDK then reads without one).
    V1,
    /// Every request gets 500.
    Broken,
    /// Accepts connections and never answers.
    Silent,
}

/// What the fixture serves.
#[derive(Debug, Clone)]
pub struct ImdsContent {
    /// `instance-identity/document`.
    pub document: String,
    /// `instance-identity/signature`.
    pub signature: String,
    /// `instance-identity/rsa2048`.
    pub rsa2048: String,
    /// More GET paths: (path, the `Authorization` header required if any, body). Serves
    /// IMDS role credentials (`/latest/meta-data/iam/security-credentials/...`) or a
    /// container credentials endpoint.
    pub paths: Vec<(String, Option<String>, String)>,
}

impl ImdsContent {
    /// The document signed both ways by `ca`.
    pub fn signed(ca: &TestCa, document: String) -> Result<Self, String> {
        Ok(Self {
            signature: ca.sign_rsa1024_style(&document)?,
            rsa2048: ca.sign_pkcs7(document.as_bytes())?,
            document,
            paths: Vec::new(),
        })
    }
}

/// A running IMDS fixture; stops when dropped.
#[derive(Debug)]
pub struct ImdsServer {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests served (token included).
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ImdsServer {
    /// The endpoint to configure (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the fixture on a free loopback port.
    pub async fn start(content: ImdsContent, mode: ImdsMode) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let content = Arc::new(content);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let content = content.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &content, mode, &counter).await;
                });
            }
        });
        Ok(Self {
            addr,
            requests,
            task,
        })
    }
}

impl Drop for ImdsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TOKEN: &str = "AQAEAFixtureTokenXYZ==";

async fn serve(
    mut stream: tokio::net::TcpStream,
    content: &ImdsContent,
    mode: ImdsMode,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    loop {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await? == 0 || buf.len() > 16 << 10 {
                return Ok(());
            }
            buf.push(byte[0]);
        }
        counter.fetch_add(1, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&buf).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default();
        let (status, extra, body): (u16, Vec<(&str, String)>, String) = match mode {
            ImdsMode::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            ImdsMode::Broken => (500, vec![], "<html>internal error</html>".into()),
            _ if method == "PUT" && path == "/latest/api/token" => {
                if mode == ImdsMode::V1 {
                    (404, vec![], String::new())
                } else if header("x-aws-ec2-metadata-token-ttl-seconds").is_none() {
                    (400, vec![], String::new())
                } else {
                    let ttl = header("x-aws-ec2-metadata-token-ttl-seconds").unwrap_or_default();
                    (
                        200,
                        vec![("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", ttl)],
                        TOKEN.into(),
                    )
                }
            }
            _ if method == "GET" => {
                if mode == ImdsMode::V2
                    && header("x-aws-ec2-metadata-token").as_deref() != Some(TOKEN)
                {
                    (401, vec![], String::new())
                } else {
                    match path {
                        "/latest/dynamic/instance-identity/document" => {
                            (200, vec![], content.document.clone())
                        }
                        "/latest/dynamic/instance-identity/signature" => {
                            (200, vec![], content.signature.clone())
                        }
                        "/latest/dynamic/instance-identity/rsa2048" => {
                            (200, vec![], content.rsa2048.clone())
                        }
                        other => match content.paths.iter().find(|(p, _, _)| p == other) {
                            Some((_, Some(auth), _))
                                if header("authorization").as_deref() != Some(auth.as_str()) =>
                            {
                                (403, vec![], "{\"message\":\"denied\"}".into())
                            }
                            Some((_, _, body)) => (200, vec![], body.clone()),
                            None => (404, vec![], String::new()),
                        },
                    }
                }
            }
            _ => (405, vec![], String::new()),
        };
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&body);
        stream.write_all(resp.as_bytes()).await?;
    }
}
