//! Loopback stand-ins for the cloud services the attestors talk to, speaking their wire
//! formats (for this crate's tests and the conformance suite; feature `fixtures`). Not
//! for production: keys are generated per fixture and nothing is authenticated.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use crate::jws::{KeySet, RsaKey};

/// An ECDSA signing key with a key ID (ES256 on P-256, ES384 on P-384, ES512 on P-521).
pub struct EcTestKey {
    pub kid: String,
    alg: &'static str,
    crv: &'static str,
    key: aws_lc_rs::signature::EcdsaKeyPair,
}

impl std::fmt::Debug for EcTestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcTestKey({}, {})", self.kid, self.alg)
    }
}

#[allow(clippy::expect_used)]
impl EcTestKey {
    /// A key for `alg` (`ES256`, `ES384` or `ES512`).
    pub fn generate(kid: &str, alg: &str) -> Self {
        use aws_lc_rs::signature as sig;
        let (alg, crv, signing): (
            &'static str,
            &'static str,
            &'static sig::EcdsaSigningAlgorithm,
        ) = match alg {
            "ES256" => ("ES256", "P-256", &sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            "ES384" => ("ES384", "P-384", &sig::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => ("ES512", "P-521", &sig::ECDSA_P521_SHA512_FIXED_SIGNING),
        };
        let key = sig::EcdsaKeyPair::generate(signing).expect("EC key generation");
        Self {
            kid: kid.into(),
            alg,
            crv,
            key,
        }
    }

    /// A compact JWS of `claims` with this key's algorithm and `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
            .expect("ECDSA signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// This key as a JWK (`kty` EC, `crv`, `x`, `y`).
    pub fn jwk(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        let len = (point.len() - 1) / 2;
        serde_json::json!({
            "kty": "EC",
            "use": "sig",
            "kid": self.kid,
            "crv": self.crv,
            "x": URL_SAFE_NO_PAD.encode(&point[1..1 + len]),
            "y": URL_SAFE_NO_PAD.encode(&point[1 + len..]),
        })
    }
}

/// An RSA signing key with a key ID, as Google and Azure sign their tokens.
pub struct TestKey {
    pub kid: String,
    key: KeyPair,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({})", self.kid)
    }
}

#[allow(clippy::expect_used)]
impl TestKey {
    pub fn generate(kid: &str) -> Self {
        let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        Self {
            kid: kid.into(),
            key,
        }
    }

    /// A compact RS256 JWS of `claims` with this key's `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"});
        self.sign_with_header(&header, claims)
    }

    pub fn sign_with_header(
        &self,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn components(&self) -> (Vec<u8>, Vec<u8>) {
        let c: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = self.key.public_key().into();
        (c.n, c.e)
    }

    pub fn rsa_key(&self) -> RsaKey {
        let (n, e) = self.components();
        RsaKey::from_components(&n, &e).expect("RSA components")
    }

    pub fn key_set(&self) -> KeySet {
        KeySet::new(vec![(self.kid.clone(), self.rsa_key().into())])
    }

    /// This key as a JWK (`kty`, `kid`, `use`, `n`, `e`), as Azure's JWKS lists keys.
    pub fn jwk(&self) -> serde_json::Value {
        let (n, e) = self.components();
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        })
    }

    /// A self-signed certificate of this key in PEM, as Google's `oauth2/v1/certs` lists.
    pub fn certificate_pem(&self) -> String {
        let kp = rcgen::KeyPair::from_pem_and_sign_algo(
            &self.private_key_pem(),
            &rcgen::PKCS_RSA_SHA256,
        )
        .expect("rcgen key");
        let params =
            rcgen::CertificateParams::new(vec!["securetoken.test".into()]).expect("params");
        params.self_signed(&kp).expect("self-signed").pem()
    }

    /// The PKCS#8 private key in PEM (a Google service account file's `private_key`).
    pub fn private_key_pem(&self) -> String {
        let der = self.key.as_der().expect("PKCS#8");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64"));
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }
}

/// One request as the fixture saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn query(&self) -> &str {
        self.target
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the fixture answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow service).
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
            delay: None,
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            delay: None,
        }
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
}

type Handler = Arc<dyn Fn(&SeenRequest) -> Reply + Send + Sync>;

/// An HTTP/1.1 server on loopback that answers with a handler and records every request.
pub struct HttpFixture {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for HttpFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpFixture({})", self.addr)
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[allow(clippy::expect_used)]
impl HttpFixture {
    /// Starts the fixture on 127.0.0.1 (a free port) in the current tokio runtime.
    pub async fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let handler = handler.clone();
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let r = SeenRequest {
                                method: parts.method.to_string(),
                                target: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str().to_string())
                                    .unwrap_or_default(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                                body,
                            };
                            let reply = handler(&r);
                            seen.lock().push(r);
                            if let Some(d) = reply.delay {
                                tokio::time::sleep(d).await;
                            }
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(reply.body)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(reply.status).unwrap_or_default();
                            for (k, v) in reply.headers {
                                if let (Ok(k), Ok(v)) = (
                                    hyper::header::HeaderName::try_from(k),
                                    hyper::header::HeaderValue::try_from(v),
                                ) {
                                    resp.headers_mut().append(k, v);
                                }
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().clone()
    }
}

/// Google's side for `gcp_iit`: a GCE metadata server (identity tokens, access tokens),
/// the `oauth2/v1/certs` certificate map, the Compute API's `instances.get` and an OAuth2
/// token endpoint for service account files, all on one loopback server.
pub mod gcp {
    use super::*;

    /// The instance a fixture plays.
    #[derive(Debug, Clone)]
    pub struct Instance {
        pub project_id: String,
        pub project_number: i64,
        pub zone: String,
        pub instance_id: String,
        pub instance_name: String,
        /// The Compute API's `instances.get` answer.
        pub compute: serde_json::Value,
    }

    impl Default for Instance {
        fn default() -> Self {
            Self {
                project_id: "test-project".into(),
                project_number: 123_456_789,
                zone: "us-west1-b".into(),
                instance_id: "1234567890123456789".into(),
                instance_name: "test-instance".into(),
                compute: serde_json::json!({
                    "kind": "compute#instance",
                    "id": "1234567890123456789",
                    "name": "test-instance",
                    "zone": "https://www.googleapis.com/compute/v1/projects/test-project/zones/us-west1-b",
                    "tags": {"items": ["tag-1", "tag-2"], "fingerprint": "abc="},
                    "serviceAccounts": [{"email": "sa1@test-project.iam.gserviceaccount.com", "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}],
                    "labels": {"allowed": "ok", "denied": "no"},
                    "metadata": {"kind": "compute#metadata", "fingerprint": "x=", "items": [
                        {"key": "allowed", "value": "ok"},
                        {"key": "denied", "value": "no"}
                    ]}
                }),
            }
        }
    }

    /// Claims of an identity token in `format=full`, as the metadata server issues them.
    pub fn identity_claims(
        inst: &Instance,
        audience: &str,
        iat: u64,
        exp: u64,
    ) -> serde_json::Value {
        serde_json::json!({
            "aud": audience,
            "azp": "102030405060708090100",
            "email": "sa1@test-project.iam.gserviceaccount.com",
            "email_verified": true,
            "exp": exp,
            "iat": iat,
            "iss": "https://accounts.google.com",
            "sub": "102030405060708090100",
            "google": {"compute_engine": {
                "instance_creation_timestamp": 1_600_000_000,
                "instance_id": inst.instance_id,
                "instance_name": inst.instance_name,
                "project_id": inst.project_id,
                "project_number": inst.project_number,
                "zone": inst.zone,
            }}
        })
    }

    /// The fixture's state.
    pub struct Google {
        pub key: TestKey,
        pub instance: Mutex<Instance>,
        /// Seconds the issued tokens are valid from now (negative: already expired).
        pub lifetime: Mutex<i64>,
        /// A fixed answer replacing every identity token (garbage, errors, slowness).
        pub identity_override: Mutex<Option<Reply>>,
        cert_pem: std::sync::OnceLock<String>,
    }

    /// `Mon, 02 Jan 2006 15:04:05 GMT` for Unix seconds `t`.
    pub fn http_date(t: u64) -> String {
        let days = (t / 86_400) as i64;
        let rem = t % 86_400;
        // Civil date from days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let dow = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
        let mon = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][(m - 1) as usize];
        format!(
            "{dow}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    impl std::fmt::Debug for Google {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "gcp::Google")
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }

    /// Starts the Google fixture.
    pub async fn start(instance: Instance) -> (Arc<Google>, HttpFixture) {
        let google = Arc::new(Google {
            key: TestKey::generate("gcp-test-kid"),
            instance: Mutex::new(instance),
            lifetime: Mutex::new(3600),
            identity_override: Mutex::new(None),
            cert_pem: std::sync::OnceLock::new(),
        });
        let g = google.clone();
        let fixture = HttpFixture::start(move |r| g.answer(r)).await;
        (google, fixture)
    }

    impl Google {
        /// A token for the fixture's instance signed by its key.
        pub fn token(&self, audience: &str) -> String {
            let inst = self.instance.lock().clone();
            let iat = now();
            let exp = (iat as i64 + *self.lifetime.lock()).max(0) as u64;
            self.key
                .sign(&identity_claims(&inst, audience, iat.min(exp), exp))
        }

        fn answer(&self, r: &SeenRequest) -> Reply {
            let path = r.path();
            if let Some(rest) = path.strip_prefix("/computeMetadata/v1/") {
                if r.header("metadata-flavor") != Some("Google") {
                    return Reply::text(
                        403,
                        "Missing required header \"Metadata-Flavor\": \"Google\"\n",
                    );
                }
                if rest.starts_with("instance/service-accounts/") && rest.ends_with("/identity") {
                    if let Some(o) = self.identity_override.lock().clone() {
                        return o;
                    }
                    let audience = r
                        .query()
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("audience="))
                        .unwrap_or_default()
                        .to_string();
                    if audience.is_empty() {
                        return Reply::text(400, "non-empty audience parameter required\n");
                    }
                    return Reply::text(200, &self.token(&audience));
                }
                if rest.starts_with("instance/service-accounts/") && rest.ends_with("/token") {
                    return Reply::json(
                        200,
                        &serde_json::json!({
                            "access_token": "fixture-access-token-from-metadata",
                            "expires_in": 3599,
                            "token_type": "Bearer"
                        }),
                    );
                }
                return Reply::text(404, "Not Found\n");
            }
            if path == "/oauth2/v1/certs" {
                let pem = self
                    .cert_pem
                    .get_or_init(|| self.key.certificate_pem())
                    .clone();
                let mut certs = serde_json::Map::new();
                certs.insert(self.key.kid.clone(), pem.into());
                let mut reply = Reply::json(200, &serde_json::Value::Object(certs));
                // Google's answer carries an Expires header a few hours ahead.
                reply
                    .headers
                    .push(("Expires".into(), http_date(now() + 3600)));
                return reply;
            }
            if path == "/token" {
                let body = String::from_utf8_lossy(&r.body);
                if !body
                    .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
                {
                    return Reply::json(
                        400,
                        &serde_json::json!({"error": "unsupported_grant_type"}),
                    );
                }
                return Reply::json(
                    200,
                    &serde_json::json!({
                        "access_token": "fixture-access-token-from-sa-file",
                        "expires_in": 3599,
                        "token_type": "Bearer"
                    }),
                );
            }
            if let Some(rest) = path.strip_prefix("/compute/v1/projects/") {
                let inst = self.instance.lock().clone();
                let want = format!(
                    "{}/zones/{}/instances/{}",
                    inst.project_id, inst.zone, inst.instance_name
                );
                if !r
                    .header("authorization")
                    .is_some_and(|a| a.starts_with("Bearer "))
                {
                    return Reply::json(
                        401,
                        &serde_json::json!({"error": {"code": 401, "message": "Request is missing required authentication credential."}}),
                    );
                }
                if rest == want {
                    return Reply::json(200, &inst.compute);
                }
                return Reply::json(
                    404,
                    &serde_json::json!({"error": {"code": 404, "message": format!("The resource 'projects/{rest}' was not found")}}),
                );
            }
            Reply::text(404, "Not Found\n")
        }
    }
}

/// Azure's side for `azure_msi`: IMDS (managed identity tokens, instance metadata), the
/// login authority (OIDC discovery, JWKS, client credentials tokens) and the ARM APIs
/// (resources list, VM, network interface), all on one loopback server.
pub mod azure {
    use super::*;

    pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
    pub const PRINCIPAL: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    pub const SUBSCRIPTION: &str = "sub-1";

    /// The fixture's state.
    pub struct Azure {
        pub key: TestKey,
        /// When set, tokens are signed with this ECDSA key (listed next to `key`).
        pub ec_key: Mutex<Option<super::EcTestKey>>,
        /// The `tid` of issued tokens.
        pub tenant: Mutex<String>,
        /// Seconds the issued tokens are valid from now (negative: already expired).
        pub lifetime: Mutex<i64>,
        /// A fixed answer replacing every IMDS token answer.
        pub token_override: Mutex<Option<Reply>>,
        base: Mutex<String>,
    }

    impl std::fmt::Debug for Azure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "azure::Azure")
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    /// Starts the Azure fixture.
    pub async fn start() -> (Arc<Azure>, HttpFixture) {
        let azure = Arc::new(Azure {
            key: TestKey::generate("azure-test-kid"),
            ec_key: Mutex::new(None),
            tenant: Mutex::new(TENANT.into()),
            lifetime: Mutex::new(3600),
            token_override: Mutex::new(None),
            base: Mutex::new(String::new()),
        });
        let a = azure.clone();
        let fixture = HttpFixture::start(move |r| a.answer(r)).await;
        *azure.base.lock() = fixture.url();
        (azure, fixture)
    }

    const VM_ID: &str =
        "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-1";
    const NIC_ID: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/networkInterfaces/nic-1";

    impl Azure {
        /// A managed identity token for `resource`, as IMDS issues them.
        pub fn token(&self, resource: &str) -> String {
            let iat = now();
            let exp = iat + *self.lifetime.lock();
            let claims = serde_json::json!({
                "aud": resource,
                "iss": format!("https://sts.windows.net/{}/", self.tenant.lock()),
                "iat": iat.min(exp),
                "nbf": iat.min(exp),
                "exp": exp,
                "oid": PRINCIPAL,
                "sub": PRINCIPAL,
                "tid": *self.tenant.lock(),
                "xms_mirid": VM_ID,
            });
            match &*self.ec_key.lock() {
                Some(ec) => ec.sign(&claims),
                None => self.key.sign(&claims),
            }
        }

        fn answer(&self, r: &SeenRequest) -> Reply {
            let path = r.path();
            let q = r.query();
            if path.starts_with("/metadata/") {
                if r.header("metadata") != Some("true") {
                    return Reply::json(
                        400,
                        &serde_json::json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
                    );
                }
                if path == "/metadata/identity/oauth2/token" {
                    if let Some(o) = self.token_override.lock().clone() {
                        return o;
                    }
                    let resource = q
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("resource="))
                        .map(unescape)
                        .unwrap_or_default();
                    let token = self.token(&resource);
                    return Reply::json(
                        200,
                        &serde_json::json!({
                            "access_token": token,
                            "client_id": "client-id",
                            "expires_in": "86399",
                            "expires_on": "1700086399",
                            "ext_expires_in": "86399",
                            "not_before": "1699999700",
                            "resource": resource,
                            "token_type": "Bearer"
                        }),
                    );
                }
                if path == "/metadata/instance" {
                    return Reply::json(
                        200,
                        &serde_json::json!({"compute": {
                            "name": "server-vm", "subscriptionId": SUBSCRIPTION, "resourceGroupName": "rg-server",
                            "location": "westus"
                        }}),
                    );
                }
                return Reply::text(404, "not found");
            }
            let base = self.base.lock().clone();
            if path == "/common/.well-known/openid-configuration" {
                return Reply::json(
                    200,
                    &serde_json::json!({
                        "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                        "jwks_uri": format!("{base}/common/discovery/v2.0/keys"),
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }),
                );
            }
            if path == "/common/discovery/v2.0/keys" {
                let mut keys = vec![self.key.jwk()];
                if let Some(ec) = &*self.ec_key.lock() {
                    keys.push(ec.jwk());
                }
                return Reply::json(200, &serde_json::json!({ "keys": keys }));
            }
            if path.ends_with("/oauth2/v2.0/token") {
                let body = String::from_utf8_lossy(&r.body);
                let assertion = body.contains("client_assertion=")
                    && body.contains(
                        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
                    );
                if !body.contains("grant_type=client_credentials")
                    || !(body.contains("client_secret=") || assertion)
                {
                    return Reply::json(400, &serde_json::json!({"error": "invalid_request"}));
                }
                return Reply::json(
                    200,
                    &serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "fixture-arm-token"}),
                );
            }
            if !r
                .header("authorization")
                .is_some_and(|a| a.starts_with("Bearer "))
            {
                return Reply::json(
                    401,
                    &serde_json::json!({"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}}),
                );
            }
            if path == "/subscriptions/sub-1/resources" {
                let want = format!("identity%2FprincipalId+eq+%27{PRINCIPAL}%27");
                let value = if q.contains(&want) {
                    vec![
                        serde_json::json!({"id": VM_ID, "name": "vm-1", "type": "Microsoft.Compute/virtualMachines", "location": "westus"}),
                    ]
                } else {
                    vec![]
                };
                return Reply::json(200, &serde_json::json!({"value": value}));
            }
            if path == VM_ID {
                return Reply::json(
                    200,
                    &serde_json::json!({
                        "id": VM_ID, "name": "vm-1", "type": "Microsoft.Compute/virtualMachines",
                        "properties": {"vmId": "0000", "networkProfile": {"networkInterfaces": [{"id": NIC_ID, "properties": {"primary": true}}]}}
                    }),
                );
            }
            if path == NIC_ID {
                return Reply::json(
                    200,
                    &serde_json::json!({
                        "id": NIC_ID, "name": "nic-1",
                        "properties": {
                            "networkSecurityGroup": {"id": "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/networkSecurityGroups/nsg-1"},
                            "ipConfigurations": [{"name": "ipconfig1", "properties": {"privateIPAddress": "10.0.0.4",
                                "subnet": {"id": "/subscriptions/sub-1/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet-1/subnets/default"}}}]
                        }
                    }),
                );
            }
            Reply::json(
                404,
                &serde_json::json!({"error": {"code": "ResourceNotFound", "message": "not found"}}),
            )
        }
    }

    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
