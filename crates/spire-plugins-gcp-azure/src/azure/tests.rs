//! Tests of `azure_msi`: both halves against the loopback Azure fixture.

use std::sync::OnceLock;

use super::*;
use crate::fixtures::azure::{self as fx, Azure, PRINCIPAL, TENANT};
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

fn app_tenant() -> TenantConfig {
    TenantConfig {
        subscription_id: "sub-1".into(),
        app_id: "app".into(),
        app_secret: "s3cret".into(),
        ..Default::default()
    }
}

fn config(tenant: TenantConfig) -> ServerConfig {
    ServerConfig {
        tenants: [(TENANT.to_string(), tenant)].into_iter().collect(),
        ..Default::default()
    }
}

fn endpoints(f: &HttpFixture) -> Endpoints {
    Endpoints {
        authority: format!("{}/", f.url()),
        arm: f.url(),
        imds: f.url(),
        env: Arc::new(|_| None),
    }
}

async fn server(
    cfg: &ServerConfig,
    f: &HttpFixture,
    attested: &[&str],
) -> PluginResult<AzureMsiServer> {
    AzureMsiServer::with_env(
        cfg,
        td(),
        agents(attested),
        endpoints(f),
        Arc::new(SystemTime::now),
        Duration::from_secs(5),
    )
    .await
}

struct NoChallenges;

#[async_trait]
impl Challenger for NoChallenges {
    async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
        Err(internal("no challenge expected"))
    }
}

struct Collect(Option<Vec<u8>>);

#[async_trait]
impl AttestationExchange for Collect {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        self.0 = Some(data);
        Ok(None)
    }
}

fn agent(f: &HttpFixture) -> AzureMsiAgent {
    AzureMsiAgent::new(&AgentConfig::default()).with_imds(&f.url(), Duration::from_secs(5))
}

async fn payload(f: &HttpFixture) -> Vec<u8> {
    let mut c = Collect(None);
    agent(f).attest(&mut c).await.unwrap();
    c.0.unwrap()
}

fn payload_of(token: &str) -> Vec<u8> {
    serde_json::to_vec(&AttestationData {
        token: token.into(),
    })
    .unwrap()
}

const WANT_SELECTORS: &[&str] = &[
    "network-security-group:rg-1:nsg-1",
    "subscription-id:sub-1",
    "virtual-network-subnet:rg-net:vnet-1:default",
    "virtual-network:rg-net:vnet-1",
    "vm-name:rg-1:vm-1",
];

#[tokio::test]
async fn agent_and_server_attest_with_app_credentials() {
    let (_a, f) = fx::start().await;
    let p = payload(&f).await;
    let data: serde_json::Value = serde_json::from_slice(&p).unwrap();
    assert!(data["token"].as_str().is_some(), "{data}");
    assert_eq!(
        data.as_object().unwrap().len(),
        1,
        "SPIRE's payload: {{\"token\": ...}}"
    );
    let s = server(&config(app_tenant()), &f, &[]).await.unwrap();
    let a = s.attest(p, &mut NoChallenges).await.unwrap();
    assert_eq!(
        a.agent_id.as_str(),
        format!("spiffe://example.org/spire/agent/azure_msi/{TENANT}/{PRINCIPAL}")
    );
    assert_eq!(a.selector_values, WANT_SELECTORS);
    assert!(!a.can_reattest);
    let reqs = f.requests();
    let imds = reqs
        .iter()
        .find(|r| r.path() == "/metadata/identity/oauth2/token")
        .unwrap();
    assert_eq!(
        imds.target,
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
    );
    assert_eq!(imds.header("metadata"), Some("true"));
    let token = reqs
        .iter()
        .find(|r| r.path() == format!("/{TENANT}/oauth2/v2.0/token"))
        .unwrap();
    let body = String::from_utf8_lossy(&token.body);
    assert!(body.contains("client_id=app") && body.contains("client_secret=s3cret"));
    assert!(body.contains("scope=https%3A%2F%2Fmanagement.azure.com%2F.default"));
    let list = reqs
        .iter()
        .find(|r| r.path() == "/subscriptions/sub-1/resources")
        .unwrap();
    assert!(
        list.query().contains("api-version=2021-04-01"),
        "{}",
        list.target
    );
    assert_eq!(
        list.header("authorization"),
        Some("Bearer fixture-arm-token")
    );
}

async fn server_with_env(
    cfg: &ServerConfig,
    f: &HttpFixture,
    vars: &[(&str, String)],
) -> PluginResult<AzureMsiServer> {
    let vars: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut ep = endpoints(f);
    ep.env = Arc::new(move |k| vars.get(k).cloned());
    AzureMsiServer::with_env(
        cfg,
        td(),
        agents(&[]),
        ep,
        Arc::new(SystemTime::now),
        Duration::from_secs(5),
    )
    .await
}

fn token_requests(f: &HttpFixture) -> Vec<String> {
    f.requests()
        .iter()
        .filter(|r| r.path().ends_with("/oauth2/v2.0/token"))
        .map(|r| format!("{} {}", r.path(), String::from_utf8_lossy(&r.body)))
        .collect()
}

#[tokio::test]
async fn default_credential_takes_the_environments_client_secret_and_caches_its_token() {
    let (_a, f) = fx::start().await;
    let s = server_with_env(
        &config(TenantConfig::default()),
        &f,
        &[
            ("AZURE_TENANT_ID", "env-tenant".into()),
            ("AZURE_CLIENT_ID", "env-app".into()),
            ("AZURE_CLIENT_SECRET", "env-secret".into()),
        ],
    )
    .await
    .unwrap();
    let a = s
        .attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap();
    assert_eq!(a.selector_values, WANT_SELECTORS);
    let reqs = token_requests(&f);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(
        reqs[0].starts_with("/env-tenant/oauth2/v2.0/token ")
            && reqs[0].contains("client_id=env-app")
            && reqs[0].contains("client_secret=env-secret"),
        "{reqs:?}"
    );
    // The token (valid ~1 h) is reused by the next attestation.
    s.attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap();
    assert_eq!(token_requests(&f).len(), 1);
}

#[tokio::test]
async fn default_credential_exchanges_the_federated_token_of_workload_identity() {
    let (_a, f) = fx::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "projected.service-account.jwt\n").unwrap();
    let s = server_with_env(
        &config(TenantConfig::default()),
        &f,
        &[
            ("AZURE_CLIENT_ID", "wi-app".into()),
            ("AZURE_TENANT_ID", "ignored-tenant".into()),
            ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
            ("AZURE_AUTHORITY_HOST", format!("{}/", f.url())),
        ],
    )
    .await
    .unwrap();
    let a = s
        .attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap();
    assert_eq!(a.selector_values, WANT_SELECTORS);
    let reqs = token_requests(&f);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    // The configured tenant, not AZURE_TENANT_ID; the file's token as the assertion.
    assert!(
        reqs[0].starts_with(&format!("/{TENANT}/oauth2/v2.0/token ")),
        "{reqs:?}"
    );
    assert!(
        reqs[0].contains("client_assertion=projected.service-account.jwt&")
            && reqs[0].contains("client_id=wi-app")
            && !reqs[0].contains("client_secret"),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn default_credential_reports_every_member_when_none_issues_a_token() {
    let (a, f) = fx::start().await;
    *a.token_override.lock() = Some(Reply::json(
        400,
        &serde_json::json!({"error": "invalid_request", "error_description": "Identity not found"}),
    ));
    let s = server_with_env(
        &config(TenantConfig::default()),
        &f,
        &[("AZURE_TOKEN_CREDENTIALS", "prod".into())],
    )
    .await
    .unwrap();
    let err = s
        .attest(payload_of(&a.token(DEFAULT_RESOURCE_ID)), &mut NoChallenges)
        .await
        .unwrap_err()
        .to_string();
    for want in [
        "DefaultAzureCredential: failed to acquire a token.",
        "EnvironmentCredential: missing environment variable AZURE_TENANT_ID",
        "WorkloadIdentityCredential: no client ID specified",
        "ManagedIdentityCredential: authentication failed: 400",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    let bad = server_with_env(
        &config(TenantConfig::default()),
        &f,
        &[("AZURE_TOKEN_CREDENTIALS", "nope".into())],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains(
            "unable to fetch client credential: invalid AZURE_TOKEN_CREDENTIALS value \"nope\""
        ),
        "{bad}"
    );
}

/// Tokens signed with ECDSA keys (ES256/384/512) attest like RSA-signed ones, the key
/// picked by `kid` from a JWKS listing RSA and EC keys; a template renders the claims.
#[tokio::test]
async fn ecdsa_signed_tokens_attest() {
    for alg in ["ES256", "ES384", "ES512"] {
        let (a, f) = fx::start().await;
        *a.ec_key.lock() = Some(crate::fixtures::EcTestKey::generate("ec-kid", alg));
        let p = payload(&f).await;
        let data: serde_json::Value = serde_json::from_slice(&p).unwrap();
        let token = data["token"].as_str().unwrap();
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        let cfg = ServerConfig {
            agent_path_template: "/{{ .PluginName }}/{{ .TenantID | trunc 8 }}/{{ .PrincipalID | upper }}/{{ .Subject | default \"none\" }}".into(),
            ..config(app_tenant())
        };
        let s = server(&cfg, &f, &[]).await.unwrap();
        let attested = s.attest(p, &mut NoChallenges).await.unwrap();
        assert_eq!(
            attested.agent_id.as_str(),
            format!(
                "spiffe://example.org/spire/agent/azure_msi/11111111/{}/none",
                PRINCIPAL.to_uppercase()
            ),
            "{alg}"
        );
        // The same token with its signature cut is refused.
        let cut = &token[..token.len() - 4];
        let err = s
            .attest(payload_of(cut), &mut NoChallenges)
            .await
            .unwrap_err();
        assert_eq!(err.code, spire_plugin::Code::InvalidArgument, "{alg}");
    }
}

#[tokio::test]
async fn managed_identity_tenant_uses_the_servers_imds() {
    let (_a, f) = fx::start().await;
    let s = server(&config(TenantConfig::default()), &f, &[])
        .await
        .unwrap();
    let a = s
        .attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap();
    assert_eq!(a.selector_values, WANT_SELECTORS);
    assert!(
        f.requests()
            .iter()
            .any(|r| r.target == "/metadata/instance?api-version=2017-08-01&format=json")
    );
}

#[tokio::test]
async fn server_refuses_bad_tokens_with_spires_messages() {
    let (a, f) = fx::start().await;
    let s = server(&config(app_tenant()), &f, &[]).await.unwrap();
    let attest = |p: Vec<u8>| {
        let s = &s;
        async move { s.attest(p, &mut NoChallenges).await.unwrap_err() }
    };

    // Unknown tenant.
    *a.tenant.lock() = "other-tenant".into();
    let err = attest(payload(&f).await).await;
    assert_eq!(err.code, spire_plugin::Code::PermissionDenied);
    assert_eq!(err.message, "tenant \"other-tenant\" is not authorized");
    *a.tenant.lock() = TENANT.into();

    // Wrong audience.
    let err = attest(payload_of(&a.token("https://vault.azure.net"))).await;
    assert_eq!(err.code, spire_plugin::Code::Internal);
    assert_eq!(
        err.message,
        "unable to validate token claims: go-jose/go-jose/jwt: validation failed, invalid audience claim (aud)"
    );

    // Expired beyond the five minutes of leeway; within them it passes.
    *a.lifetime.lock() = -240;
    s.attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap();
    *a.lifetime.lock() = -400;
    let err = attest(payload(&f).await).await;
    assert_eq!(
        err.message,
        "unable to validate token claims: go-jose/go-jose/jwt: validation failed, token is expired (exp)"
    );
    *a.lifetime.lock() = 3600;

    // Tampered signature.
    let token = a.token(DEFAULT_RESOURCE_ID);
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = a.token("x").split('.').nth(1).unwrap().to_string();
    let err = attest(payload_of(&parts.join("."))).await;
    assert_eq!(err.code, spire_plugin::Code::InvalidArgument);
    assert_eq!(
        err.message,
        "unable to verify token: go-jose/go-jose: error in cryptographic primitive"
    );

    // A key Microsoft does not list.
    let stranger = TestKey::generate("stranger");
    let err = attest(payload_of(
        &stranger.sign(&serde_json::json!({"tid": TENANT, "sub": PRINCIPAL})),
    ))
    .await;
    assert_eq!(err.message, "key id \"stranger\" not found");

    // Payload problems.
    let err = attest(b"nope".to_vec()).await;
    assert!(
        err.message
            .starts_with("failed to unmarshal data payload: "),
        "{err}"
    );
    let err = attest(b"{}".to_vec()).await;
    assert_eq!(err.message, "missing token from attestation data");
    let err = attest(payload_of("a.b")).await;
    assert_eq!(
        err.message,
        "unable to parse token: go-jose/go-jose: compact JWS format must have three parts"
    );
}

#[tokio::test]
async fn trust_on_first_use_and_principal_lookup() {
    let (a, f) = fx::start().await;
    let id = format!("spiffe://example.org/spire/agent/azure_msi/{TENANT}/{PRINCIPAL}");
    let s = server(&config(app_tenant()), &f, &[&id]).await.unwrap();
    let err = s
        .attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::PermissionDenied);
    assert_eq!(
        err.message,
        "attestation data has already been used to attest an agent"
    );

    // A principal the Resource Manager does not know.
    let s = server(&config(app_tenant()), &f, &[]).await.unwrap();
    let token = a.key.sign(&serde_json::json!({
        "aud": DEFAULT_RESOURCE_ID, "tid": TENANT, "sub": "nobody",
        "exp": SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600,
    }));
    let err = s
        .attest(payload_of(&token), &mut NoChallenges)
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "unable to get resource for principal \"nobody\": rpc error: code = Internal desc = principal \"nobody\" not found"
    );
}

#[tokio::test]
async fn configuration_errors_are_spires() {
    let (_a, f) = fx::start().await;
    let err = server(&ServerConfig::default(), &f, &[]).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::InvalidArgument);
    assert_eq!(err.message, "configuration must have at least one tenant");
    let err = server(
        &config(TenantConfig {
            app_secret: String::new(),
            ..app_tenant()
        }),
        &f,
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.message,
        format!("misconfigured tenant \"{TENANT}\": missing app secret")
    );
    let cfg = ServerConfig {
        agent_path_template: "/{{ .PluginName }}/{{ .TenantID }}".into(),
        ..config(app_tenant())
    };
    let s = server(&cfg, &f, &[]).await.unwrap();
    let a = s
        .attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap();
    assert_eq!(
        a.agent_id.as_str(),
        format!("spiffe://example.org/spire/agent/azure_msi/{TENANT}")
    );
}

#[tokio::test]
async fn agent_reports_imds_failures_within_bounds() {
    let (a, f) = fx::start().await;
    *a.token_override.lock() = Some(Reply::text(500, "boom"));
    let err = agent(&f).attest(&mut Collect(None)).await.unwrap_err();
    assert_eq!(err.code, spire_plugin::Code::Internal);
    assert_eq!(
        err.message,
        "unable to fetch token: unexpected status code 500: boom"
    );

    *a.token_override.lock() = Some(Reply::json(
        200,
        &serde_json::json!({"token_type": "Bearer"}),
    ));
    let err = agent(&f).attest(&mut Collect(None)).await.unwrap_err();
    assert_eq!(
        err.message,
        "unable to fetch token: response missing access token"
    );

    *a.token_override.lock() = Some(Reply::text(200, "<html>"));
    let err = agent(&f).attest(&mut Collect(None)).await.unwrap_err();
    assert!(
        err.message
            .starts_with("unable to fetch token: unable to decode response: "),
        "{err}"
    );

    *a.token_override.lock() = Some(Reply::text(200, "{}").delayed(Duration::from_secs(30)));
    let slow =
        AzureMsiAgent::new(&AgentConfig::default()).with_imds(&f.url(), Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = slow.attest(&mut Collect(None)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.message.contains("timed out"), "{err}");

    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = AzureMsiAgent::new(&AgentConfig::default())
        .with_imds(&format!("http://{down}"), Duration::from_secs(5))
        .attest(&mut Collect(None))
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("unable to fetch token: Get \"http://127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn resource_ids_parse_as_spires_patterns() {
    assert_eq!(
        parse_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "Microsoft.Compute/virtualMachines"
        ),
        Some(("rg".into(), "vm".into()))
    );
    assert_eq!(
        parse_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/x",
            "Microsoft.Compute/virtualMachines"
        ),
        None
    );
    assert_eq!(
        parse_subnet_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/sn"
        ),
        Some(("rg".into(), "v".into(), "sn".into()))
    );
    assert_eq!(parse_subnet_id("/subscriptions//resourceGroups/rg"), None);
}

#[tokio::test]
async fn keys_are_fetched_through_oidc_discovery_and_cached() {
    let (_a, f) = fx::start().await;
    let s = server(&config(app_tenant()), &f, &[]).await.unwrap();
    s.attest(payload(&f).await, &mut NoChallenges)
        .await
        .unwrap();
    let count = |p: &str| f.requests().iter().filter(|r| r.path() == p).count();
    assert_eq!(count("/common/.well-known/openid-configuration"), 1);
    let _ = s.attest(payload(&f).await, &mut NoChallenges).await;
    assert_eq!(
        count("/common/discovery/v2.0/keys"),
        1,
        "cached for an hour"
    );
    let _ = Azure::token; // the fixture's token issuer is what the agent fetched
}
