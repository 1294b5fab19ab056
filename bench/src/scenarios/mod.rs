//! The scenarios. Each runs reference SPIRE, then spire-rs, never both at once, and turns
//! their figures into one section of the report.

pub(crate) mod cloud;
pub(crate) mod coldstart;
pub(crate) mod docker;
pub(crate) mod failover;
pub(crate) mod federation;
pub(crate) mod fleet;
pub(crate) mod footprint;
pub(crate) mod ha;
pub(crate) mod k8s;
pub(crate) mod pkcs11;
pub(crate) mod plugins;
pub(crate) mod propagation;
pub(crate) mod scale;
pub(crate) mod sds;
pub(crate) mod signing;
pub(crate) mod telemetry;
pub(crate) mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::procs::Implementation;
use crate::report::{Metrics, Outcome, RowSpec, Section};

/// Sizes of a run.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    /// Workload API calls per measurement (split over the clients).
    pub(crate) latency_calls: usize,
    /// Untimed calls per client before measuring.
    pub(crate) latency_warmup: usize,
    /// Seconds per signing measurement.
    pub(crate) sign_secs: f64,
    /// Entries created one after the other while a workload watches.
    pub(crate) propagation_samples: usize,
    /// Entries created through the batch API in the scale scenario (the large agent's).
    pub(crate) scale_entries: usize,
    /// Entries of the small fresh agent in the scale scenario.
    pub(crate) scale_small_agent: usize,
    /// SVIDs held by the agent whose RSS is measured.
    pub(crate) footprint_svids: usize,
    /// Starts measured for start-to-ready.
    pub(crate) starts: usize,
    /// Seconds an idle process is left alone before its RSS is read.
    pub(crate) idle_secs: u64,
    /// Entries in the datastore for the cold start.
    pub(crate) cold_entries: usize,
    /// How long a cold start may take before it is reported as not finished.
    pub(crate) cold_timeout: Duration,
    /// Simulated agents in the fleet scenario.
    pub(crate) fleet_agents: usize,
    /// Failovers measured, each on a fresh primary/standby pair.
    pub(crate) failover_samples: usize,
}

impl Sizes {
    pub(crate) fn default_run() -> Self {
        Self {
            latency_calls: 10_000,
            latency_warmup: 200,
            sign_secs: 10.0,
            propagation_samples: 20,
            scale_entries: 100_000,
            scale_small_agent: 10_000,
            footprint_svids: 1_000,
            starts: 5,
            idle_secs: 5,
            cold_entries: 1_000_000,
            cold_timeout: Duration::from_secs(600),
            fleet_agents: 5_000,
            failover_samples: 3,
        }
    }

    pub(crate) fn smoke() -> Self {
        Self {
            latency_calls: 200,
            latency_warmup: 10,
            sign_secs: 1.0,
            propagation_samples: 2,
            scale_entries: 600,
            scale_small_agent: 100,
            footprint_svids: 20,
            starts: 1,
            idle_secs: 1,
            cold_entries: 2_000,
            cold_timeout: Duration::from_secs(60),
            fleet_agents: 50,
            failover_samples: 1,
        }
    }

    pub(crate) fn large() -> Self {
        Self {
            latency_calls: 100_000,
            latency_warmup: 500,
            sign_secs: 30.0,
            propagation_samples: 50,
            scale_entries: 1_000_000,
            scale_small_agent: 100_000,
            footprint_svids: 5_000,
            starts: 10,
            idle_secs: 10,
            cold_entries: 5_000_000,
            cold_timeout: Duration::from_secs(1800),
            fleet_agents: 20_000,
            failover_samples: 5,
        }
    }
}

/// What every scenario gets.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) ours: Implementation,
    pub(crate) reference: Option<Implementation>,
    pub(crate) sizes: Sizes,
    /// Where generated datastores are kept between runs.
    pub(crate) cache_dir: PathBuf,
}

/// Runs `measure` for reference SPIRE (when given) and then spire-rs, and builds the
/// section.
pub(crate) async fn section<F, Fut>(
    ctx: &Ctx,
    title: &str,
    description: String,
    rows: Vec<RowSpec>,
    notes: Vec<String>,
    measure: F,
) -> Section
where
    F: Fn(Implementation) -> Fut,
    Fut: Future<Output = Result<Metrics>>,
{
    let started = Instant::now();
    let run = |imp: Implementation| {
        let fut = measure(imp.clone());
        async move {
            crate::log(&format!("{title}: {} ...", imp.name));
            let t = Instant::now();
            let out = match fut.await {
                Ok(m) => Outcome::Done(m),
                Err(e) => {
                    crate::log(&format!("{title}: {} FAILED: {e:#}", imp.name));
                    Outcome::Failed(format!("{e:#}"))
                }
            };
            crate::log(&format!(
                "{title}: {} done in {:.1} s",
                imp.name,
                t.elapsed().as_secs_f64()
            ));
            out
        }
    };
    let reference = match &ctx.reference {
        Some(r) => run(r.clone()).await,
        None => Outcome::NotRun("no --reference-dir".into()),
    };
    let ours = run(ctx.ours.clone()).await;
    Section {
        title: title.to_string(),
        description,
        rows,
        reference,
        ours,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    }
}
