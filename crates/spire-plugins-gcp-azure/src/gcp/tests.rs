//! Tests of `gcp_iit`: both halves against the loopback Google fixture.

use std::sync::OnceLock;

use super::*;
use crate::fixtures::gcp::{self as fx, Google};
use crate::fixtures::{HttpFixture, Reply, TestKey};

struct Agents(Vec<String>);

#[async_trait]
impl spire_plugin_host::hostservices::AgentLookup for Agents {
    async fn is_attested(&self, agent_id: &str) -> Result<bool, String> {
        Ok(self.0.iter().any(|a| a == agent_id))
    }
}

fn agents(attested: &[&str]) -> AgentLookupCell {
    let cell: AgentLookupCell = Arc::new(OnceLock::new());
    let _ = cell.set(Arc::new(Agents(
        attested.iter().map(|s| s.to_string()).collect(),
    )));
    cell
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn config() -> ServerConfig {
    ServerConfig {
        projectid_allow_list: vec!["test-project".into()],
        ..Default::default()
    }
}

fn server(cfg: &ServerConfig, fixture: &HttpFixture, attested: &[&str]) -> GcpIitServer {
    GcpIitServer::new(cfg, td(), agents(attested))
        .unwrap()
        .with_endpoints(
            &format!("{}/oauth2/v1/certs", fixture.url()),
            &fixture.url(),
        )
}

struct NoChallenges;

#[async_trait]
impl Challenger for NoChallenges {
    async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
        Err(internal("no challenge expected"))
    }
}

/// An exchange that hands the agent's payload straight to a server half.
struct Direct<'a> {
    server: &'a GcpIitServer,
    result: Option<PluginResult<AttestedAgent>>,
}

#[async_trait]
impl AttestationExchange for Direct<'_> {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        self.result = Some(self.server.attest(data, &mut NoChallenges).await);
        Ok(None)
    }
}

async fn start() -> (Arc<Google>, HttpFixture) {
    fx::start(fx::Instance::default()).await
}

#[tokio::test]
async fn agent_and_server_attest_through_the_metadata_server() {
    let (_g, f) = start().await;
    let agent = GcpIitAgent::new(&AgentConfig {
        identity_token_host: f.host(),
        service_account: String::new(),
    });
    let server = server(&config(), &f, &[]);
    let mut ex = Direct {
        server: &server,
        result: None,
    };
    agent.attest(&mut ex).await.unwrap();
    let attested = ex.result.unwrap().unwrap();
    assert_eq!(
        attested.agent_id.as_str(),
        "spiffe://example.org/spire/agent/gcp_iit/test-project/1234567890123456789"
    );
    assert_eq!(
        attested.selector_values,
        vec![
            "project-id:test-project",
            "zone:us-west1-b",
            "instance-name:test-instance"
        ]
    );
    assert!(!attested.can_reattest);
    let reqs = f.requests();
    let md = reqs
        .iter()
        .find(|r| r.path().starts_with("/computeMetadata"))
        .unwrap();
    assert_eq!(
        md.target,
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=spire-gcp-node-attestor&format=full"
    );
    assert_eq!(md.header("metadata-flavor"), Some("Google"));
    assert_eq!(md.method, "GET");
}

#[test]
fn identity_url_is_spires() {
    assert_eq!(
        identity_token_url("metadata.google.internal", "sa@p.iam.gserviceaccount.com"),
        "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/sa@p.iam.gserviceaccount.com/identity?audience=spire-gcp-node-attestor&format=full"
    );
    assert_eq!(
        identity_token_url("h", "a b"),
        "http://h/computeMetadata/v1/instance/service-accounts/a%20b/identity?audience=spire-gcp-node-attestor&format=full"
    );
}

struct Collect(Option<Vec<u8>>);

#[async_trait]
impl AttestationExchange for Collect {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        self.0 = Some(data);
        Ok(None)
    }
}

#[tokio::test]
async fn agent_reports_metadata_server_failures() {
    // Down: nothing listens on the port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let agent = GcpIitAgent::new(&AgentConfig {
        identity_token_host: format!("127.0.0.1:{port}"),
        ..Default::default()
    });
    let err = agent.attest(&mut Collect(None)).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::Internal);
    assert!(
        err.message
            .starts_with("unable to retrieve valid identity token: Get \"http://127.0.0.1:"),
        "{err}"
    );

    // An error status.
    let (g, f) = start().await;
    *g.identity_override.lock() = Some(Reply::text(500, "boom"));
    let agent = GcpIitAgent::new(&AgentConfig {
        identity_token_host: f.host(),
        ..Default::default()
    });
    let err = agent.attest(&mut Collect(None)).await.unwrap_err();
    assert_eq!(
        err.message,
        "unable to retrieve valid identity token: unexpected status code: 500"
    );

    // Slow: bounded by the client's timeout.
    *g.identity_override.lock() = Some(Reply::text(200, "late").delayed(Duration::from_secs(30)));
    let agent = agent.with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = agent.attest(&mut Collect(None)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.message.contains("timed out"), "{err}");

    // Garbage is passed on as the payload (the server judges it) and refused there.
    *g.identity_override.lock() = Some(Reply::text(200, "not a token"));
    let mut c = Collect(None);
    agent.attest(&mut c).await.unwrap();
    let payload = c.0.unwrap();
    assert_eq!(payload, b"not a token");
    let err = server(&config(), &f, &[])
        .attest(payload, &mut NoChallenges)
        .await
        .unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::InvalidArgument);
    assert_eq!(
        err.message,
        "unable to parse the identity token: go-jose/go-jose: compact JWS format must have three parts"
    );
}

async fn attest_token(s: &GcpIitServer, token: String) -> PluginResult<AttestedAgent> {
    s.attest(token.into_bytes(), &mut NoChallenges).await
}

#[tokio::test]
async fn server_refuses_bad_tokens_with_spires_messages() {
    let (g, f) = start().await;
    let s = server(&config(), &f, &[]);

    // Tampered signature.
    let token = g.token(TOKEN_AUDIENCE);
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = g.token("other-audience");
    let other_payload = other.split('.').nth(1).unwrap();
    parts[1] = other_payload;
    let err = attest_token(&s, parts.join(".")).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::InvalidArgument);
    assert_eq!(
        err.message,
        "failed to validate the identity token signature: go-jose/go-jose: error in cryptographic primitive"
    );

    // Wrong audience (validly signed).
    let err = attest_token(&s, other).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::PermissionDenied);
    assert_eq!(
        err.message,
        "failed to validate the identity token claims: go-jose/go-jose/jwt: validation failed, invalid audience claim (aud)"
    );

    // Expired beyond the minute of leeway.
    *g.lifetime.lock() = -120;
    let err = attest_token(&s, g.token(TOKEN_AUDIENCE)).await.unwrap_err();
    assert_eq!(
        err.message,
        "failed to validate the identity token claims: go-jose/go-jose/jwt: validation failed, token is expired (exp)"
    );
    *g.lifetime.lock() = 3600;

    // Unknown key ID (signed by a key Google does not list).
    let stranger = TestKey::generate("unknown-kid");
    let inst = g.instance.lock().clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = stranger.sign(&fx::identity_claims(&inst, TOKEN_AUDIENCE, now, now + 600));
    let err = attest_token(&s, token).await.unwrap_err();
    assert_eq!(
        err.message,
        "failed to validate the identity token signature: go-jose/go-jose: JWK with matching kid not found in JWK Set"
    );

    // Project outside the allow list.
    g.instance.lock().project_id = "other-project".into();
    let err = attest_token(&s, g.token(TOKEN_AUDIENCE)).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::PermissionDenied);
    assert_eq!(
        err.message,
        "identity token project ID \"other-project\" is not in the allow list"
    );

    // Empty payload.
    let err = s.attest(Vec::new(), &mut NoChallenges).await.unwrap_err();
    assert_eq!(err.message, "missing attestation payload");
}

#[tokio::test]
async fn server_applies_trust_on_first_use() {
    let (g, f) = start().await;
    let s = server(
        &config(),
        &f,
        &["spiffe://example.org/spire/agent/gcp_iit/test-project/1234567890123456789"],
    );
    let err = attest_token(&s, g.token(TOKEN_AUDIENCE)).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::PermissionDenied);
    assert_eq!(
        err.message,
        "attestation data has already been used to attest an agent"
    );
}

#[tokio::test]
async fn server_template_and_config_errors() {
    let (g, f) = start().await;
    let cfg = ServerConfig {
        agent_path_template: "/{{ .PluginName }}/{{ .Zone }}/{{ .InstanceName }}".into(),
        ..config()
    };
    let s = server(&cfg, &f, &[]);
    let a = attest_token(&s, g.token(TOKEN_AUDIENCE)).await.unwrap();
    assert_eq!(
        a.agent_id.as_str(),
        "spiffe://example.org/spire/agent/gcp_iit/us-west1-b/test-instance"
    );
    // Sprig and printf over the ComputeEngine fields (ProjectNumber is an int64).
    let cfg = ServerConfig {
        agent_path_template: r#"/{{ regexReplaceAll "-[a-z]$" .Zone "" }}/{{ printf "%x" .ProjectNumber | trunc 6 }}/{{ .InstanceName | sha256sum | trunc 8 }}"#.into(),
        ..config()
    };
    let s = server(&cfg, &f, &[]);
    let g2 = g.token(TOKEN_AUDIENCE);
    let a = attest_token(&s, g2).await.unwrap();
    assert_eq!(
        a.agent_id.as_str(),
        "spiffe://example.org/spire/agent/us-west1/75bcd1/b6a8ed49"
    );
    let err = GcpIitServer::new(&ServerConfig::default(), td(), agents(&[])).unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::InvalidArgument);
    assert_eq!(err.message, "projectid_allow_list is required");
    let err = GcpIitServer::new(
        &ServerConfig {
            agent_path_template: "/{{ .ProjectID ".into(),
            ..config()
        },
        td(),
        agents(&[]),
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "failed to parse agent path template: \"/{{ .ProjectID \""
    );
}

#[tokio::test]
async fn instance_metadata_selectors_with_a_service_account_file() {
    let (g, f) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let sa_key = TestKey::generate("sa-key");
    let file = dir.path().join("sa.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "sa-key",
            "private_key": sa_key.private_key_pem(),
            "client_email": "attestor@test-project.iam.gserviceaccount.com",
            "token_uri": format!("{}/token", f.url()),
        })
        .to_string(),
    )
    .unwrap();
    let cfg = ServerConfig {
        use_instance_metadata: true,
        allowed_label_keys: vec!["allowed".into()],
        allowed_metadata_keys: vec!["allowed".into()],
        service_account_file: file.display().to_string(),
        ..config()
    };
    let s = server(&cfg, &f, &[]);
    let a = attest_token(&s, g.token(TOKEN_AUDIENCE)).await.unwrap();
    assert_eq!(
        a.selector_values,
        vec![
            "project-id:test-project",
            "zone:us-west1-b",
            "instance-name:test-instance",
            "tag:tag-1",
            "tag:tag-2",
            "sa:sa1@test-project.iam.gserviceaccount.com",
            "label:allowed:ok",
            "metadata:allowed:ok",
        ]
    );
    let reqs = f.requests();
    let token_req = reqs.iter().find(|r| r.path() == "/token").unwrap();
    let body = String::from_utf8_lossy(&token_req.body).into_owned();
    let assertion = body.split("assertion=").nth(1).unwrap();
    // The assertion is a JWT signed by the service account key, for the token endpoint.
    let parsed = jws::parse_rs256(assertion).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(parsed.verify(&sa_key.key_set()).unwrap()).unwrap();
    assert_eq!(
        claims["iss"],
        "attestor@test-project.iam.gserviceaccount.com"
    );
    assert_eq!(claims["aud"], format!("{}/token", f.url()));
    let compute = reqs
        .iter()
        .find(|r| r.path().starts_with("/compute/v1/"))
        .unwrap();
    assert_eq!(
        compute.path(),
        "/compute/v1/projects/test-project/zones/us-west1-b/instances/test-instance"
    );
    assert_eq!(
        compute.header("authorization"),
        Some("Bearer fixture-access-token-from-sa-file")
    );

    // A metadata value over the limit fails the attestation.
    let small = ServerConfig {
        max_metadata_value_size: 1,
        ..cfg.clone()
    };
    let err = attest_token(&server(&small, &f, &[]), g.token(TOKEN_AUDIENCE))
        .await
        .unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::Internal);
    assert_eq!(
        err.message,
        "metadata \"allowed\" exceeded value limit (2 > 1)"
    );

    // The instance unknown to the Compute API.
    g.instance.lock().compute = serde_json::json!({});
    let token = g.token(TOKEN_AUDIENCE);
    g.instance.lock().instance_name = "renamed".into();
    let err = attest_token(&server(&cfg, &f, &[]), token)
        .await
        .unwrap_err();
    assert!(
        err.message.starts_with(
            "failed to fetch instance metadata: failed to fetch instance metadata: googleapi: Error 404: The resource"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn certificates_are_cached_until_expires() {
    let (g, f) = start().await;
    let certs = serde_json::json!({ g.key.kid.clone(): g.key.certificate_pem() });
    let fixed = HttpFixture::start(move |_| {
        let mut r = Reply::json(200, &certs);
        r.headers
            .push(("Expires".into(), "Sat, 5 Dec 2026 10:00:00 GMT".into()));
        r
    })
    .await;
    let when = Arc::new(parking_lot::Mutex::new(
        parse_http_date("Fri, 4 Dec 2026 10:00:00 GMT").unwrap(),
    ));
    let w = when.clone();
    let s = GcpIitServer::with_env(
        &config(),
        td(),
        agents(&[]),
        Arc::new(move || *w.lock()),
        Arc::new(|_| None),
    )
    .unwrap()
    .with_endpoints(&fixed.url(), &f.url());
    // Tokens are checked against the fixed clock, so sign for it.
    let inst = g.instance.lock().clone();
    let t = when.lock().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token = g
        .key
        .sign(&fx::identity_claims(&inst, TOKEN_AUDIENCE, t, t + 600));
    attest_token(&s, token.clone()).await.unwrap();
    attest_token(&s, token.clone()).await.unwrap();
    assert_eq!(fixed.requests().len(), 1, "cached until Expires");
    *when.lock() = parse_http_date("Sat, 5 Dec 2026 10:00:01 GMT").unwrap();
    let _ = attest_token(&s, token).await;
    assert_eq!(fixed.requests().len(), 2, "fetched again after Expires");
}

#[test]
fn http_dates_parse_as_go_does() {
    for t in [0u64, 1_796_414_400, 1_700_000_123, 4_102_444_800] {
        assert_eq!(
            parse_http_date(&fx::http_date(t)),
            Some(UNIX_EPOCH + Duration::from_secs(t)),
            "{}",
            fx::http_date(t)
        );
    }
    assert_eq!(
        fx::http_date(1_796_414_400),
        "Fri, 04 Dec 2026 20:00:00 GMT"
    );
    assert_eq!(
        parse_http_date("Thu, 1 Jan 1970 00:01:00 GMT"),
        Some(UNIX_EPOCH + Duration::from_secs(60))
    );
    assert_eq!(
        parse_http_date("Fri, 04 Dec 2026 20:00:00 GMT")
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_796_414_400
    );
    assert_eq!(parse_http_date("yesterday"), None);
}

#[tokio::test]
async fn certificate_endpoint_failures_are_reported() {
    let (g, f) = start().await;
    let down = HttpFixture::start(|_| Reply::text(503, "unavailable")).await;
    let s = GcpIitServer::new(&config(), td(), agents(&[]))
        .unwrap()
        .with_endpoints(&down.url(), &f.url());
    let err = attest_token(&s, g.token(TOKEN_AUDIENCE)).await.unwrap_err();
    assert_eq!(err.message, "unexpected status code: 503");
    let garbage = HttpFixture::start(|_| Reply::json(200, &serde_json::json!({"k": "nope"}))).await;
    let s = GcpIitServer::new(&config(), td(), agents(&[]))
        .unwrap()
        .with_endpoints(&garbage.url(), &f.url());
    let err = attest_token(&s, g.token(TOKEN_AUDIENCE)).await.unwrap_err();
    assert_eq!(
        err.message,
        "unable to unmarshal certificate response: malformed PEM block"
    );
}
