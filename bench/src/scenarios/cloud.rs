//! Scenario 13, cloud node attestation: how long an agent takes from start to ready (attested
//! and synced) with `aws_iid`, `gcp_iit` and `azure_msi`, next to `join_token` on the same
//! server. The clouds are loopback stand-ins speaking their wire formats: an IMDS serving a
//! test-signed instance identity document plus moto for the EC2/IAM look-ups, and the
//! GCP/Azure fixtures of `spire-plugins-gcp-azure` (metadata server, signing keys, Compute
//! and ARM APIs).
//!
//! Reference SPIRE's server trusts only the real providers' keys (compiled in), so the server
//! is spire-rs in both runs and the columns compare the agents: SPIRE's agent and ours, each
//! reading the same fixtures. SPIRE's `azure_msi` agent asks IMDS at its compiled-in address,
//! so that row has no reference figure.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};
use spire_plugins_aws::moto::{ACCOUNT, Moto};
use spire_plugins_aws::testsupport::{ImdsContent, ImdsMode, ImdsServer, TestCa, document};
use spire_plugins_gcp_azure::fixtures::{HttpFixture, azure, gcp};

use super::Ctx;
use crate::clients::Admin;
use crate::procs::{Agent, AgentOptions, Implementation, Server, ServerOptions};
use crate::report::{Metrics, Unit, median, row};

const PROVIDERS: [&str; 4] = ["join_token", "aws_iid", "gcp_iit", "azure_msi"];

const REF_AZURE_AGENT: &str = "SPIRE's azure_msi agent asks IMDS at 169.254.169.254, compiled in";

/// The stand-in clouds, shared by both runs.
struct Clouds {
    aws: Result<Aws, String>,
    _google: std::sync::Arc<gcp::Google>,
    gcp: HttpFixture,
    _azure: std::sync::Arc<azure::Azure>,
    azure: HttpFixture,
}

struct Aws {
    moto: Moto,
    imds: ImdsServer,
    _ca_dir: tempfile::TempDir,
    ca_path: PathBuf,
}

async fn aws() -> Result<Aws, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/moto/setup.sh");
    let moto = Moto::start(&script).await?;
    let region = "us-east-1";
    let seeded = moto
        .seed_instance(region, "bench-node", &[("Name", "bench-node")])
        .await?;
    let ca = TestCa::new("bench aws region")?;
    let ca_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ca_path = ca_dir.path().join("aws-test-ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).map_err(|e| e.to_string())?;
    let doc = document(
        ACCOUNT,
        region,
        &seeded.instance_id,
        "us-east-1a",
        &seeded.image,
    );
    let imds = ImdsServer::start(ImdsContent::signed(&ca, doc)?, ImdsMode::V2)
        .await
        .map_err(|e| format!("IMDS fixture: {e}"))?;
    Ok(Aws {
        moto,
        imds,
        _ca_dir: ca_dir,
        ca_path,
    })
}

impl Clouds {
    async fn start() -> Self {
        let aws = aws().await;
        if let Err(e) = &aws {
            crate::log(&format!("cloud: aws_iid rows not run: {e}"));
        }
        let (google, gcp) = gcp::start(gcp::Instance::default()).await;
        let (azure_state, azure) = azure::start().await;
        Self {
            aws,
            _google: google,
            gcp,
            _azure: azure_state,
            azure,
        }
    }

    fn server_plugins(&self) -> String {
        let mut s = format!(
            "NodeAttestor \"gcp_iit\" {{\n        plugin_data {{\n            projectid_allow_list = [\"test-project\"]\n        }}\n    }}\n    NodeAttestor \"azure_msi\" {{\n        plugin_data {{\n            tenants {{\n                \"{}\" {{\n                    subscription_id = \"sub-1\"\n                    app_id = \"app\"\n                    app_secret = \"s3cret\"\n                }}\n            }}\n        }}\n    }}",
            azure::TENANT
        );
        if self.aws.is_ok() {
            s.push_str(
                "\n    NodeAttestor \"aws_iid\" {\n        plugin_data {\n            skip_block_device = true\n        }\n    }",
            );
        }
        s
    }

    fn server_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "SPIRE_RS_TEST_GCP_IIT_CERTS_URL".to_string(),
                format!("{}/oauth2/v1/certs", self.gcp.url()),
            ),
            ("SPIRE_RS_TEST_GCP_COMPUTE_URL".into(), self.gcp.url()),
            (
                "SPIRE_RS_TEST_AZURE_MSI_AUTHORITY".into(),
                format!("{}/", self.azure.url()),
            ),
            ("SPIRE_RS_TEST_AZURE_ARM_URL".into(), self.azure.url()),
            ("SPIRE_RS_TEST_AZURE_IMDS_URL".into(), self.azure.url()),
        ];
        if let Ok(a) = &self.aws {
            env.push((
                "SPIRE_RS_TEST_AWS_IID_CA".into(),
                a.ca_path.display().to_string(),
            ));
            env.extend(a.moto.server_env());
        }
        env
    }

    /// The agent's NodeAttestor block and environment for `provider`, or why it cannot run.
    fn agent(
        &self,
        imp: &Implementation,
        provider: &str,
    ) -> Result<(String, Vec<(String, String)>), String> {
        let block = |data: String| {
            format!(
                "NodeAttestor \"{provider}\" {{\n        plugin_data {{\n{data}        }}\n    }}"
            )
        };
        match provider {
            "aws_iid" => match &self.aws {
                Ok(a) => Ok((
                    block(format!(
                        "            ec2_metadata_endpoint = \"{}\"\n",
                        a.imds.endpoint()
                    )),
                    Vec::new(),
                )),
                Err(e) => Err(format!("moto not available: {e}")),
            },
            "gcp_iit" => Ok((
                block(format!(
                    "            identity_token_host = \"{}\"\n",
                    self.gcp.host()
                )),
                Vec::new(),
            )),
            "azure_msi" if imp.name == "reference SPIRE" => Err(REF_AZURE_AGENT.into()),
            "azure_msi" => Ok((
                block(String::new()),
                vec![("SPIRE_RS_TEST_AZURE_IMDS_URL".into(), self.azure.url())],
            )),
            _ => Err(format!("unknown provider {provider}")),
        }
    }
}

/// Start-to-ready of one agent with `node_attestor`, after which it is stopped and deleted
/// from the server (the cloud attestors trust on first use).
async fn one_start(
    imp: &Implementation,
    server: &Server,
    admin: &Admin,
    node_attestor: &str,
    join_token: Option<&str>,
    env: &[(String, String)],
) -> Result<f64> {
    let mut agent = Agent::spawn_config(
        imp,
        server.port,
        &AgentOptions {
            join_token,
            node_attestor,
            env,
            ..AgentOptions::default()
        },
    )?;
    let ready = agent
        .wait_ready(Duration::from_secs(60))
        .await
        .map_err(|e| anyhow!("{e:#}\n{}", agent.proc.log_tail()))?;
    agent.proc.stop().await;
    admin.delete_all_agents().await?;
    Ok(ready.as_secs_f64())
}

async fn measure(
    agent_imp: Implementation,
    server_imp: Implementation,
    clouds: &Clouds,
    starts: usize,
) -> Result<Metrics> {
    let mut m = Metrics::default();
    let mut server = Server::spawn(
        &server_imp,
        &ServerOptions {
            extra_plugins: clouds.server_plugins(),
            env: clouds.server_env(),
            ..ServerOptions::default()
        },
    )?;
    server
        .wait_ready(Duration::from_secs(60))
        .await
        .map_err(|e| anyhow!("{e:#}\n{}", server.proc.log_tail()))?;
    let admin = Admin::connect(&server.socket).await?;
    let mut baseline = None;
    for provider in PROVIDERS {
        let mut samples = Vec::with_capacity(starts);
        // One untimed start first: the fixtures' and moto's first answers are slow.
        for i in 0..=starts {
            let sample = if provider == "join_token" {
                let token = admin.join_token().await?;
                one_start(
                    &agent_imp,
                    &server,
                    &admin,
                    "NodeAttestor \"join_token\" {\n        plugin_data {}\n    }",
                    Some(&token),
                    &[],
                )
                .await?
            } else {
                match clouds.agent(&agent_imp, provider) {
                    Ok((block, env)) => {
                        one_start(&agent_imp, &server, &admin, &block, None, &env).await?
                    }
                    Err(why) => {
                        m.missing(format!("{provider}.ready"), why.clone());
                        m.missing(format!("{provider}.added"), why);
                        break;
                    }
                }
            };
            if i > 0 {
                samples.push(sample);
            }
        }
        if samples.is_empty() {
            continue;
        }
        let ready = median(&samples);
        m.set(format!("{provider}.ready"), ready);
        match baseline {
            None => baseline = Some(ready),
            Some(b) => m.set(format!("{provider}.added"), ready - b),
        }
    }
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> super::Section {
    let starts = ctx.sizes.starts.max(1);
    let mut rows = vec![row(
        "join_token.ready",
        "agent start → ready, join_token (baseline)",
        Unit::Secs,
    )];
    for p in &PROVIDERS[1..] {
        rows.push(row(
            format!("{p}.ready"),
            format!("agent start → ready, {p}"),
            Unit::Secs,
        ));
        rows.push(row(
            format!("{p}.added"),
            format!("… added by {p} over join_token"),
            Unit::Secs,
        ));
    }
    let description = format!(
        "One spire-rs server with the `join_token`, `aws_iid`, `gcp_iit` and `azure_msi` node \
         attestors, pointed at loopback stand-ins for the clouds through its test-only \
         variables: an IMDS serving an instance identity document signed by a test region \
         certificate, moto (EC2/IAM look-ups for the selectors), and fixtures speaking GCP's \
         and Azure's wire formats (metadata server, signing keys, Compute and ARM APIs). \
         Reference SPIRE's server trusts only the real providers' keys, compiled in, so the \
         server is spire-rs in both runs and the columns compare the agents. Start → ready \
         is from spawning the agent to its health check reporting SERVING (attested, first \
         sync done), fresh data directory, median of {starts} starts per attestor after one \
         untimed start; the agent is deleted from the server after each start, as the cloud \
         attestors trust on first use. \"Added\" is that median minus the join_token one: \
         the metadata fetch, the server's signature check and its selector look-ups."
    );
    let clouds = Clouds::start().await;
    let server_imp = ctx.ours.clone();
    super::section(
        ctx,
        "13. Cloud node attestation",
        description,
        rows,
        Vec::new(),
        |imp| measure(imp, server_imp.clone(), &clouds, starts),
    )
    .await
}
