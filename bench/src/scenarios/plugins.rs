//! Scenario 7, external plugins: the cost of a plugin behind `plugin_cmd` on the two hot paths
//! it can sit on. The same Go plugins (built with SPIRE's plugin SDK by
//! `conformance/goplugins/build.sh`, found through `SPIRE_RS_GOPLUGINS_DIR`) are loaded by
//! both implementations:
//!
//! - a WorkloadAttestor (`pidinfo`) whose selector the workload's entry needs, on the
//!   Workload API's FetchX509SVID, next to the same call with the built-in `unix` attestor;
//! - the server's KeyManager (`memkeys`, in the plugin's memory) on MintX509SVID, one
//!   signature per call, next to the built-in `disk` KeyManager.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use spiffe_core::{KeyType, PrivateKey};
use spire_proto::spire::api::server::svid::v1 as svidv1;
use spire_proto::spire::api::types;

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server, ServerOptions};
use crate::report::{Metrics, Outcome, Section, Unit, percentile, row};

const PERCENTILES: [f64; 2] = [50.0, 99.0];

fn plugins_dir() -> Option<PathBuf> {
    std::env::var_os("SPIRE_RS_GOPLUGINS_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("workloadattestor-pidinfo").is_file())
}

/// Sorted latencies of `calls` sequential FetchX509SVID calls after `warmup` untimed ones.
pub(super) async fn fetch_latencies(
    socket: &Path,
    calls: usize,
    warmup: usize,
) -> Result<Vec<f64>> {
    let mut client = clients::workload_client(socket).await?;
    for _ in 0..warmup {
        clients::fetch_x509_ids(&mut client).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        if clients::fetch_x509_ids(&mut client).await?.is_empty() {
            bail!("FetchX509SVID: no SVIDs");
        }
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// FetchX509SVID with the workload identified by `selector`, the agent also running
/// `extra_plugins`.
async fn workload(
    imp: &Implementation,
    extra_plugins: &str,
    selector: types::Selector,
    calls: usize,
    warmup: usize,
) -> Result<Vec<f64>> {
    let server = Server::start(imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let token = admin.join_token().await?;
    let parent = clients::join_token_agent_path(&token);
    admin
        .create_entries(vec![clients::entry(&parent, "/bench/plugin", selector)])
        .await?;
    let mut agent = Agent::spawn_with(imp, server.port, &token, extra_plugins)?;
    agent.wait_ready(Duration::from_secs(120)).await?;
    clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
        !ids.is_empty()
    })
    .await?;
    let samples = fetch_latencies(&agent.socket, calls, warmup).await;
    agent.proc.stop().await;
    server.proc.stop().await;
    samples
}

/// Sorted latencies of sequential MintX509SVID calls on a server with `key_manager`.
async fn mint(
    imp: &Implementation,
    key_manager: Option<String>,
    calls: usize,
    warmup: usize,
) -> Result<Vec<f64>> {
    let mut server = Server::spawn(
        imp,
        &ServerOptions {
            key_manager,
            ..ServerOptions::default()
        },
    )?;
    server.wait_ready(Duration::from_secs(60)).await?;
    let id = spiffe_core::SpiffeId::parse(&format!(
        "spiffe://{}/bench/mint",
        crate::procs::TRUST_DOMAIN
    ))?;
    let csr = spire_pki::make_csr(PrivateKey::generate(KeyType::EcP256)?, Some(&id))?;
    let mut client =
        svidv1::svid_client::SvidClient::new(clients::uds_channel(&server.socket).await?)
            .max_decoding_message_size(clients::MAX_MESSAGE);
    let mut samples = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let t = Instant::now();
        let resp = clients::timed(
            "MintX509SVID",
            client.mint_x509svid(svidv1::MintX509svidRequest {
                csr: csr.clone(),
                ttl: 0,
            }),
        )
        .await?;
        if resp.get_ref().svid.is_none() {
            bail!("MintX509SVID: no SVID");
        }
        if i >= warmup {
            samples.push(t.elapsed().as_secs_f64());
        }
    }
    server.proc.stop().await;
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

async fn measure(
    imp: Implementation,
    dir: PathBuf,
    calls: usize,
    warmup: usize,
) -> Result<Metrics> {
    let mut m = Metrics::default();
    let uid = clients::workload_selector()?.value;
    let builtin = workload(&imp, "", clients::workload_selector()?, calls, warmup).await?;
    let pidinfo = format!(
        "WorkloadAttestor \"pidinfo\" {{\n        plugin_cmd = \"{}\"\n        plugin_data {{}}\n    }}",
        dir.join("workloadattestor-pidinfo").display()
    );
    let selector = types::Selector {
        r#type: "pidinfo".into(),
        value: uid,
    };
    let external = workload(&imp, &pidinfo, selector, calls, warmup).await?;
    let memkeys = format!(
        "KeyManager \"memkeys\" {{\n        plugin_cmd = \"{}\"\n    }}",
        dir.join("server-keymanager-memkeys").display()
    );
    let mint_builtin = mint(&imp, None, calls, warmup).await?;
    let mint_external = mint(&imp, Some(memkeys), calls, warmup).await?;
    for p in PERCENTILES {
        let (b, e) = (percentile(&builtin, p), percentile(&external, p));
        m.set(format!("wa.builtin.p{p}"), b);
        m.set(format!("wa.external.p{p}"), e);
        m.set(format!("wa.added.p{p}"), e - b);
        let (b, e) = (percentile(&mint_builtin, p), percentile(&mint_external, p));
        m.set(format!("km.builtin.p{p}"), b);
        m.set(format!("km.external.p{p}"), e);
        m.set(format!("km.added.p{p}"), e - b);
    }
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let (calls, warmup) = (s.latency_calls.min(2_000), s.latency_warmup);
    let mut rows = Vec::new();
    for p in PERCENTILES {
        rows.push(row(
            format!("wa.builtin.p{p}"),
            format!("FetchX509SVID p{p}, built-in unix attestor"),
            Unit::Secs,
        ));
        rows.push(row(
            format!("wa.external.p{p}"),
            format!("FetchX509SVID p{p}, external pidinfo attestor (Go SDK)"),
            Unit::Secs,
        ));
        rows.push(row(
            format!("wa.added.p{p}"),
            format!("… added by the external attestor, p{p}"),
            Unit::Secs,
        ));
    }
    for p in PERCENTILES {
        rows.push(row(
            format!("km.builtin.p{p}"),
            format!("MintX509SVID p{p}, built-in disk KeyManager"),
            Unit::Secs,
        ));
        rows.push(row(
            format!("km.external.p{p}"),
            format!("MintX509SVID p{p}, external memkeys KeyManager (Go SDK)"),
            Unit::Secs,
        ));
        rows.push(row(
            format!("km.added.p{p}"),
            format!("… added by the external KeyManager, p{p}"),
            Unit::Secs,
        ));
    }
    let title = "7. External plugins";
    let description = format!(
        "The same Go plugins (SPIRE's plugin SDK) loaded by both implementations with \
         `plugin_cmd`. Workload rows: one server and one agent; the harness is the workload, \
         matched by `unix:uid` (built-in) or by the plugin's `pidinfo:uid` (the agent runs \
         both attestors); {calls} sequential FetchX509SVID calls on one connection after \
         {warmup} untimed ones. KeyManager rows: {calls} sequential MintX509SVID calls on the \
         admin socket (one CA signature each) with the built-in `disk` KeyManager, then with \
         the external `memkeys` one. spire-rs caches a process's selectors for as long as \
         the process lives, so its external attestor is called once per workload process; \
         SPIRE calls every attestor on every request."
    );
    let Some(dir) = plugins_dir() else {
        return Section {
            title: title.into(),
            description,
            rows,
            reference: Outcome::NotRun(
                "SPIRE_RS_GOPLUGINS_DIR unset (conformance/goplugins/build.sh builds the plugins)"
                    .into(),
            ),
            ours: Outcome::NotRun("SPIRE_RS_GOPLUGINS_DIR unset".into()),
            notes: Vec::new(),
            seconds: 0.0,
        };
    };
    super::section(ctx, title, description, rows, Vec::new(), |imp| {
        measure(imp, dir.clone(), calls, warmup)
    })
    .await
}
