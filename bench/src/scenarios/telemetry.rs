//! Scenario 10, the cost of telemetry on the Workload API: FetchX509SVID (to the first
//! message) p50/p99 and call rate with 1 and 16 clients, on an agent without telemetry and
//! on one serving Prometheus (`telemetry { Prometheus { ... } }`), scraped once a second
//! while the calls run, as a Prometheus server would.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server, free_port};
use crate::report::{Metrics, Section, Unit, count, percentile, row};

const CLIENTS: [usize; 2] = [1, 16];

/// One `GET /metrics`; the body's length.
async fn scrape(port: u16) -> Result<usize> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut body)).await??;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("/metrics did not answer 200");
    }
    Ok(body.len())
}

async fn measure(imp: Implementation, calls: usize, warmup: usize) -> Result<Metrics> {
    let server = Server::start(&imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let mut m = Metrics::default();
    for (mode, prometheus) in [("off", false), ("on", true)] {
        let token = admin.join_token().await?;
        let parent = clients::join_token_agent_path(&token);
        admin
            .create_entries(vec![clients::entry(
                &parent,
                "/bench/workload",
                clients::workload_selector()?,
            )])
            .await?;
        let port = free_port()?;
        let top = if prometheus {
            format!(
                "telemetry {{\n    Prometheus {{\n        host = \"127.0.0.1\"\n        port = {port}\n    }}\n}}\n"
            )
        } else {
            String::new()
        };
        let mut agent = Agent::spawn_with_top(&imp, server.port, &token, "", &top)?;
        agent.wait_ready(Duration::from_secs(120)).await?;
        clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
            !ids.is_empty()
        })
        .await?;
        let scraper = prometheus.then(|| {
            tokio::spawn(async move {
                loop {
                    let _ = scrape(port).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        });
        for n in CLIENTS {
            let samples =
                super::workload::measure_latency_x509(&agent.socket, n, calls, warmup).await?;
            for p in [50.0, 99.0] {
                m.set(format!("{mode}.c{n}.p{p}"), percentile(&samples, p));
            }
            m.set(
                format!("{mode}.c{n}.rate"),
                samples.len() as f64 / samples.iter().sum::<f64>() * n as f64,
            );
        }
        if let Some(s) = scraper {
            s.abort();
            m.set("on.scrape_bytes", scrape(port).await? as f64);
        }
        agent.proc.stop().await;
    }
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let mut rows = Vec::new();
    for mode in ["off", "on"] {
        for n in CLIENTS {
            let clients = if n == 1 { "" } else { "s" };
            for p in [50.0, 99.0] {
                rows.push(row(
                    format!("{mode}.c{n}.p{p}"),
                    format!("FetchX509SVID p{p}, {n} client{clients}, Prometheus {mode}"),
                    Unit::Secs,
                ));
            }
            rows.push(row(
                format!("{mode}.c{n}.rate"),
                format!("FetchX509SVID calls/s, {n} client{clients}, Prometheus {mode}"),
                Unit::Rate("calls/s"),
            ));
        }
    }
    rows.push(row(
        "on.scrape_bytes",
        "/metrics response size after the run",
        Unit::Bytes,
    ));
    let (calls, warmup) = (s.latency_calls, s.latency_warmup);
    super::section(
        ctx,
        "11. Telemetry cost on the Workload API",
        format!(
            "One server; an agent without telemetry, then one with `telemetry {{ Prometheus }}` \
             scraped every second during the calls (both of the same implementation, the \
             harness process is the workload). {} timed FetchX509SVID calls per row (to the \
             first message), split over the clients, after {warmup} untimed calls per client.",
            count(calls)
        ),
        rows,
        Vec::new(),
        |imp| measure(imp, calls, warmup),
    )
    .await
}
