//! Scenario 14, federation: how long a change of domain B's trust bundle takes to reach a
//! workload in domain A. Two servers of the same implementation (A: `example.org`, B:
//! `b.test` serving its bundle endpoint with `https_spiffe`), A federating with B through a
//! relationship created with `spire-server federation create`, an agent of A and the harness
//! as its workload, whose entry federates with B. Each sample prepares a new X.509 authority
//! in B (`localauthority x509 prepare`, which publishes it in B's bundle) and times until the
//! workload's FetchX509Bundles stream shows B's bundle with it; then activates it, so the
//! next prepare adds another.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use spire_proto::workload;

use super::Ctx;
use crate::clients::{self, Admin, timed};
use crate::procs::{Agent, Implementation, Server, ServerOptions, free_port};
use crate::report::{Metrics, Unit, median, row};

const B: &str = "b.test";

/// One CLI command of `bin` (`spire-server`) on the admin socket `socket`; its stdout.
async fn cli(bin: &Path, socket: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .arg("-socketPath")
        .arg(socket)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| anyhow!("{} {}: no answer in 30 s", bin.display(), args.join(" ")))??;
    if !out.status.success() {
        bail!(
            "{} {}: {}{}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// B's CA certificates as the workload sees them (DER, concatenated), if any.
fn b_certs(msg: &workload::X509BundlesResponse) -> Option<Vec<u8>> {
    msg.bundles
        .iter()
        .find(|(td, _)| td.trim_start_matches("spiffe://") == B)
        .map(|(_, der)| der.clone())
}

async fn measure(imp: Implementation, samples: usize) -> Result<Metrics> {
    let be_port = free_port()?;
    let mut b = Server::spawn(
        &imp,
        &ServerOptions {
            trust_domain: Some(B.into()),
            extra_server: format!(
                "federation {{\n        bundle_endpoint {{\n            address = \"127.0.0.1\"\n            port = {be_port}\n            refresh_hint = \"1m\"\n            profile \"https_spiffe\" {{}}\n        }}\n    }}"
            ),
            ..ServerOptions::default()
        },
    )?;
    b.wait_ready(Duration::from_secs(60)).await?;
    let a = Server::start(&imp).await?;
    let b_bundle = cli(
        &imp.server,
        &b.socket,
        &["bundle", "show", "-format", "spiffe"],
    )
    .await?;
    let b_bundle_path = crate::procs::work_dir().join(format!("bench-b-bundle-{be_port}.json"));
    std::fs::write(&b_bundle_path, b_bundle)?;
    let created = cli(
        &imp.server,
        &a.socket,
        &[
            "federation",
            "create",
            "-trustDomain",
            B,
            "-bundleEndpointURL",
            &format!("https://127.0.0.1:{be_port}"),
            "-bundleEndpointProfile",
            "https_spiffe",
            "-endpointSpiffeID",
            &format!("spiffe://{B}/spire/server"),
            "-trustDomainBundlePath",
            &b_bundle_path.display().to_string(),
            "-trustDomainBundleFormat",
            "spiffe",
        ],
    )
    .await;
    let _ = std::fs::remove_file(&b_bundle_path);
    created?;

    let admin = Admin::connect(&a.socket).await?;
    let token = admin.join_token().await?;
    let parent = clients::join_token_agent_path(&token);
    let mut e = clients::entry(&parent, "/bench/federated", clients::workload_selector()?);
    e.federates_with = vec![B.to_string()];
    admin.create_entries(vec![e]).await?;
    let agent = Agent::start(&imp, a.port, &token).await?;
    clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
        !ids.is_empty()
    })
    .await?;

    let mut client = clients::workload_client(&agent.socket).await?;
    let mut stream = timed(
        "FetchX509Bundles",
        client.fetch_x509_bundles(workload::X509BundlesRequest {}),
    )
    .await?
    .into_inner();
    // Wait for B's bundle to be there at all (the first refresh of the relationship).
    let mut current = None;
    let first_deadline = Instant::now() + Duration::from_secs(120);
    while current.is_none() {
        let msg = tokio::time::timeout_at(first_deadline.into(), stream.message())
            .await
            .map_err(|_| anyhow!("the workload never saw B's bundle"))??
            .context("FetchX509Bundles stream ended")?;
        current = b_certs(&msg);
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let prepared = cli(
            &imp.server,
            &b.socket,
            &["localauthority", "x509", "prepare", "-output", "json"],
        )
        .await?;
        let t = Instant::now();
        let v: serde_json::Value =
            serde_json::from_str(&prepared).context("localauthority x509 prepare output")?;
        let prepared_id = v["prepared_authority"]["authority_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no prepared authority in {prepared}"))?;
        let deadline = t + Duration::from_secs(180);
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), stream.message())
                .await
                .map_err(|_| anyhow!("B's new authority did not reach the workload in 180 s"))??
                .context("FetchX509Bundles stream ended")?;
            let seen = b_certs(&msg);
            if seen.is_some() && seen != current {
                times.push(t.elapsed().as_secs_f64());
                current = seen;
                break;
            }
        }
        cli(
            &imp.server,
            &b.socket,
            &[
                "localauthority",
                "x509",
                "activate",
                "-authorityID",
                &prepared_id,
            ],
        )
        .await?;
    }
    agent.proc.stop().await;
    a.proc.stop().await;
    b.proc.stop().await;
    let mut m = Metrics::default();
    m.set("b_to_a", median(&times));
    m.set("b_to_a.max", times.iter().copied().fold(0.0, f64::max));
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> super::Section {
    let samples = ctx.sizes.propagation_samples.clamp(1, 10);
    let rows = vec![
        row(
            "b_to_a",
            "new authority in B → workload in A sees it (median)",
            Unit::Secs,
        ),
        row("b_to_a.max", "… slowest sample", Unit::Secs),
    ];
    let description = format!(
        "Two servers of the same implementation: B (`{B}`) serves its bundle endpoint \
         (`https_spiffe`, `refresh_hint = \"1m\"`, SPIRE's minimum), A federates with it \
         through `spire-server federation create`. An agent of A and the harness as its \
         workload, whose entry federates with B, watching FetchX509Bundles. {samples} \
         samples: `localauthority x509 prepare` in B (a new authority published in B's \
         bundle), timed from the command's return until the workload's stream shows B's \
         bundle with it; then `activate`. The path: A's bundle endpoint client refreshes on \
         the hint (SPIRE fetches every quarter of it, so every 15 s here), then A's agent \
         learns the federated bundle (SPIRE's agent syncs every 5 s)."
    );
    super::section(
        ctx,
        "14. Federation: a bundle change in B reaching a workload in A",
        description,
        rows,
        Vec::new(),
        |imp| measure(imp, samples),
    )
    .await
}
