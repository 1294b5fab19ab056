//! Attestation latency of `gcp_iit` and `azure_msi`, both halves in process, against the
//! loopback fixtures: the agent's metadata request, then the server's check (Google's
//! certificates and Microsoft's keys cached after the first call, as in production), with
//! and without the provider API calls that extra selectors need. Run with
//! `cargo bench -p spire-plugins-gcp-azure --features fixtures`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use spiffe_core::TrustDomain;
use spire_plugin::{
    AgentNodeAttestor, AttestationExchange, AttestedAgent, Challenger, PluginError, PluginResult,
    ServerNodeAttestor,
};
use spire_plugin_host::hostservices::{AgentLookup, AgentLookupCell};
use spire_plugins_gcp_azure::fixtures::{TestKey, azure as azfx, gcp as gcpfx};
use spire_plugins_gcp_azure::{azure, gcp};

struct NoneAttested;

#[async_trait]
impl AgentLookup for NoneAttested {
    async fn is_attested(&self, _agent_id: &str) -> Result<bool, String> {
        Ok(false)
    }
}

fn agents() -> AgentLookupCell {
    let cell: AgentLookupCell = Arc::new(OnceLock::new());
    let _ = cell.set(Arc::new(NoneAttested));
    cell
}

struct NoChallenges;

#[async_trait]
impl Challenger for NoChallenges {
    async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
        Err(PluginError::internal("no challenge expected"))
    }
}

/// Hands the agent's payload to the server half, as the agent-server stream does.
struct Direct<'a> {
    server: &'a dyn ServerNodeAttestor,
    result: Option<AttestedAgent>,
}

#[async_trait]
impl AttestationExchange for Direct<'_> {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        self.result = Some(self.server.attest(data, &mut NoChallenges).await?);
        Ok(None)
    }
}

async fn attest(agent: &dyn AgentNodeAttestor, server: &dyn ServerNodeAttestor) {
    let mut ex = Direct {
        server,
        result: None,
    };
    agent.attest(&mut ex).await.unwrap();
    assert!(ex.result.is_some());
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let dir = tempfile::tempdir().unwrap();

    let (gcp_agent, gcp_plain, gcp_metadata, _gf) = rt.block_on(async {
        let (_g, f) = gcpfx::start(gcpfx::Instance::default()).await;
        let agent = gcp::GcpIitAgent::new(&gcp::AgentConfig {
            identity_token_host: f.host(),
            service_account: String::new(),
        });
        let base = gcp::ServerConfig {
            projectid_allow_list: vec!["test-project".into()],
            ..Default::default()
        };
        let plain = gcp::GcpIitServer::new(&base, td.clone(), agents())
            .unwrap()
            .with_endpoints(&format!("{}/oauth2/v1/certs", f.url()), &f.url());
        let sa_key = TestKey::generate("sa-key");
        let sa = dir.path().join("sa.json");
        std::fs::write(
            &sa,
            serde_json::json!({
                "type": "service_account",
                "private_key_id": "sa-key",
                "private_key": sa_key.private_key_pem(),
                "client_email": "bench@test-project.iam.gserviceaccount.com",
                "token_uri": format!("{}/token", f.url()),
            })
            .to_string(),
        )
        .unwrap();
        let with_md = gcp::ServerConfig {
            use_instance_metadata: true,
            allowed_label_keys: vec!["allowed".into()],
            allowed_metadata_keys: vec!["allowed".into()],
            service_account_file: sa.display().to_string(),
            ..base
        };
        let metadata = gcp::GcpIitServer::new(&with_md, td.clone(), agents())
            .unwrap()
            .with_endpoints(&format!("{}/oauth2/v1/certs", f.url()), &f.url());
        (agent, plain, metadata, f)
    });
    c.bench_function("gcp_iit attest (token, JWT check)", |b| {
        b.to_async(&rt).iter(|| attest(&gcp_agent, &gcp_plain));
    });
    c.bench_function("gcp_iit attest with use_instance_metadata", |b| {
        b.to_async(&rt).iter(|| attest(&gcp_agent, &gcp_metadata));
    });

    let (az_agent, az_server, _af) = rt.block_on(async {
        let (_a, f) = azfx::start().await;
        let agent = azure::AzureMsiAgent::new(&azure::AgentConfig::default())
            .with_imds(&f.url(), Duration::from_secs(10));
        let cfg = azure::ServerConfig {
            tenants: [(
                azfx::TENANT.to_string(),
                azure::TenantConfig {
                    subscription_id: "sub-1".into(),
                    app_id: "app".into(),
                    app_secret: "secret".into(),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let server = azure::AzureMsiServer::with_env(
            &cfg,
            td.clone(),
            agents(),
            azure::Endpoints {
                authority: format!("{}/", f.url()),
                arm: f.url(),
                imds: f.url(),
                env: Arc::new(|_| None),
            },
            Arc::new(SystemTime::now),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        (agent, server, f)
    });
    c.bench_function("azure_msi attest (token, JWT check, ARM selectors)", |b| {
        b.to_async(&rt).iter(|| attest(&az_agent, &az_server));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
