//! Scenario 17, database failover: one server on a PostgreSQL primary with a streaming
//! standby (`scripts/test-databases.sh pg-ha-start`, a fresh pair per sample). A client
//! writes one entry every 20 ms through the admin socket; the primary is stopped and the
//! standby promoted at once (as a failover manager would). Recorded: the time from the
//! primary's loss to the first successful write, the writes refused meanwhile, and the
//! acknowledged entries missing afterwards.
//!
//! Two routes to the database: through a TCP proxy that the failover manager points at the
//! new primary (toxiproxy here, standing for a VIP, HAProxy or pgbouncer), which both
//! implementations take; and libpq's multi-host URL with `target_session_attrs=read-write`,
//! which SPIRE 1.13's PostgreSQL driver (lib/pq) refuses.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::sync::Mutex;

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Implementation, Server, ServerOptions};
use crate::report::{Goal, Metrics, Unit, median, percentile, row};

/// Pause between two writes of the writer.
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// How long a failover may take before the sample fails.
const FAILOVER_LIMIT: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("test-databases.sh")
}

/// A primary and a standby in a directory of their own, stopped when dropped.
struct Pair {
    dir: tempfile::TempDir,
    url: String,
    primary: u16,
    standby: u16,
}

impl Pair {
    fn start() -> Result<Pair> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix("spire-bench-failover-")
            .tempdir()?;
        // The clusters run as the `postgres` user, which must reach the directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let out = databases(dir.path(), "pg-ha-start")?;
        let get = |k: &str| -> Result<String> {
            Ok(out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .with_context(|| format!("pg-ha-start printed no {k}"))?
                .trim_matches('\'')
                .to_string())
        };
        Ok(Pair {
            url: get("SPIRE_RS_TEST_PG_HA_URL")?,
            primary: get("SPIRE_RS_TEST_PG_PRIMARY_PORT")?.parse()?,
            standby: get("SPIRE_RS_TEST_PG_STANDBY_PORT")?.parse()?,
            dir,
        })
    }

    fn run(&self, cmd: &str) -> Result<()> {
        databases(self.dir.path(), cmd).map(|_| ())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = databases(self.dir.path(), "pg-ha-stop");
    }
}

fn databases(dir: &Path, cmd: &str) -> Result<String> {
    let out = Command::new("bash")
        .arg(script())
        .arg(cmd)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("running scripts/test-databases.sh")?;
    if !out.status.success() {
        bail!(
            "test-databases.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A toxiproxy of our own with one proxy, `pg`, in front of the primary.
struct Proxy {
    child: std::process::Child,
    api: u16,
    port: u16,
}

impl Proxy {
    async fn start(upstream: u16) -> Result<Proxy> {
        let out = Command::new("bash")
            .arg(script().with_file_name("toxiproxy.sh"))
            .stderr(Stdio::inherit())
            .output()
            .context("running scripts/toxiproxy.sh")?;
        if !out.status.success() {
            bail!("scripts/toxiproxy.sh failed");
        }
        let bin =
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("toxiproxy-server");
        let (api, port) = (crate::procs::free_port()?, crate::procs::free_port()?);
        let child = Command::new(&bin)
            .args(["-host", "127.0.0.1", "-port", &api.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let proxy = Proxy { child, api, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", api))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("toxiproxy did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy
            .call(
                "POST",
                "/proxies",
                &format!(
                    r#"{{"name":"pg","listen":"127.0.0.1:{port}","upstream":"127.0.0.1:{upstream}","enabled":true}}"#
                ),
            )
            .await?;
        Ok(proxy)
    }

    /// Points the proxy at another server (its open connections are dropped).
    async fn repoint(&self, upstream: u16) -> Result<()> {
        self.call(
            "POST",
            "/proxies/pg",
            &format!(r#"{{"upstream":"127.0.0.1:{upstream}"}}"#),
        )
        .await
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.api)).await?;
            s.write_all(
                format!(
                    "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let out = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .context("toxiproxy API: no answer")??;
        let ok = out.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
        if !ok {
            bail!("toxiproxy {method} {path}: {out}");
        }
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the server reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A single-host URL to a proxy that is pointed at the new primary after promotion.
    Proxy,
    /// libpq's multi-host URL with `target_session_attrs=read-write`.
    MultiHost,
}

impl Route {
    const ALL: [Route; 2] = [Route::Proxy, Route::MultiHost];

    /// The prefix of the route's metric keys.
    fn prefix(self) -> &'static str {
        match self {
            Route::Proxy => "proxy",
            Route::MultiHost => "multi",
        }
    }
}

/// The metrics of one route: key (after the route's prefix), label, unit, whether 0 is
/// the goal. The first label is completed by the route's name.
const ROUTE_ROWS: [(&str, &str, Unit, bool); 5] = [
    (
        "failover",
        "primary lost → first successful write, median",
        Unit::Secs,
        false,
    ),
    ("failover_max", "… max", Unit::Secs, false),
    (
        "promote",
        "… of which promoting (and re-pointing), median",
        Unit::Secs,
        false,
    ),
    ("refused", "… writes refused, mean", Unit::Count, false),
    ("lost", "… acknowledged entries lost", Unit::Count, true),
];

/// What the writer saw: acknowledged entry IDs with the time of the answer, and refusals.
#[derive(Default)]
struct Writes {
    acked: Vec<(Instant, String)>,
    refused: Vec<Instant>,
}

struct Sample {
    failover: Duration,
    promote: Duration,
    refused: usize,
    lost: usize,
}

async fn sample(imp: &Implementation, route: Route, n: usize) -> Result<Sample> {
    let pair = Pair::start()?;
    let proxy = match route {
        Route::Proxy => Some(Proxy::start(pair.primary).await?),
        Route::MultiHost => None,
    };
    let url = match &proxy {
        Some(p) => format!(
            "postgres://spire:spire@127.0.0.1:{}/spire?sslmode=disable",
            p.port
        ),
        None => pair.url.clone(),
    };
    let opts = ServerOptions {
        sql: Some(("postgres".into(), url)),
        ..ServerOptions::default()
    };
    let mut server = Server::spawn(imp, &opts)?;
    server.wait_ready(Duration::from_secs(60)).await?;
    let admin = Admin::connect(&server.socket).await?;
    let parent = "/bench/failover/parent".to_string();
    let selector = clients::unmatched_selector(0);

    let writes = Arc::new(Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (admin, writes, stop, parent) =
            (admin.clone(), writes.clone(), stop.clone(), parent.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let e = clients::entry(
                    &parent,
                    &format!("/bench/failover/{n}/{i}"),
                    selector.clone(),
                );
                i += 1;
                let r = admin.create_entries(vec![e]).await;
                let now = Instant::now();
                let mut w = writes.lock().await;
                match r {
                    Ok(ids) => w.acked.extend(ids.into_iter().map(|id| (now, id))),
                    Err(_) => w.refused.push(now),
                }
                drop(w);
                tokio::time::sleep(WRITE_EVERY).await;
            }
        })
    };
    // Writes flow for a second before the fault.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if writes.lock().await.acked.is_empty() {
        bail!("no write succeeded before the failover");
    }

    pair.run("pg-ha-stop-primary")?;
    let lost_at = Instant::now();
    pair.run("pg-ha-promote")?;
    if let Some(p) = &proxy {
        p.repoint(pair.standby).await?;
    }
    let promote = lost_at.elapsed();
    let failover = loop {
        {
            let w = writes.lock().await;
            if let Some((at, _)) = w.acked.iter().find(|(at, _)| *at > lost_at) {
                break at.duration_since(lost_at);
            }
        }
        if lost_at.elapsed() > FAILOVER_LIMIT {
            bail!(
                "no write succeeded within {} s of the primary's loss",
                FAILOVER_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // A few more writes on the new primary, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.context("writer task")?;

    let present = admin.entry_ids().await?;
    let w = writes.lock().await;
    let lost = w
        .acked
        .iter()
        .filter(|(_, id)| !present.contains(id))
        .count();
    let refused = w.refused.iter().filter(|at| **at > lost_at).count();
    drop(w);
    server.proc.stop().await;
    drop(proxy);
    drop(pair);
    Ok(Sample {
        failover,
        promote,
        refused,
        lost,
    })
}

/// The reference's cells of the multi-host rows (see the section's note).
const LIBPQ_REFUSES: &str = "not supported (lib/pq: one host only)";

async fn measure(imp: Implementation, ours: &'static str, samples: usize) -> Result<Metrics> {
    let mut m = Metrics::default();
    for route in Route::ALL {
        let prefix = route.prefix();
        if route == Route::MultiHost && imp.name != ours {
            for (k, ..) in ROUTE_ROWS {
                m.missing(format!("{prefix}_{k}"), LIBPQ_REFUSES);
            }
            continue;
        }
        let mut failovers = Vec::new();
        let mut promotes = Vec::new();
        let mut refused = 0;
        let mut lost = 0;
        for n in 0..samples {
            let s = sample(&imp, route, n).await?;
            crate::log(&format!(
                "failover ({route:?}) sample {n}: {} ms to the first write ({} ms promoting), {} refused, {} lost",
                s.failover.as_millis(),
                s.promote.as_millis(),
                s.refused,
                s.lost
            ));
            failovers.push(s.failover.as_secs_f64());
            promotes.push(s.promote.as_secs_f64());
            refused += s.refused;
            lost += s.lost;
        }
        failovers.sort_by(f64::total_cmp);
        m.set(format!("{prefix}_failover"), median(&failovers));
        m.set(
            format!("{prefix}_failover_max"),
            percentile(&failovers, 100.0),
        );
        m.set(format!("{prefix}_promote"), median(&promotes));
        m.set(format!("{prefix}_refused"), refused as f64 / samples as f64);
        m.set(format!("{prefix}_lost"), lost as f64);
    }
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> crate::report::Section {
    let n = ctx.sizes.failover_samples;
    let title = "17. Database failover: primary lost, standby promoted";
    let description = format!(
        "One server on a PostgreSQL 15 primary with a streaming standby (a fresh pair for \
         each of {n} samples per route). A client writes one entry every 20 ms \
         (BatchCreateEntry on the admin socket). The primary is stopped (`pg_ctl -m fast`), \
         then the standby is promoted at once (`pg_ctl promote -w`, as a failover manager \
         would). Measured from the moment the primary is down: the first acknowledged \
         write; the writes refused meanwhile; and the acknowledged entries missing from \
         ListEntries afterwards (all samples together). Two routes: a TCP proxy (toxiproxy, \
         standing for a VIP, HAProxy or pgbouncer) pointed at the new primary right after \
         the promotion, with a one-host URL; and the multi-host URL \
         `postgres://…@primary,standby/spire?target_session_attrs=read-write`, which only \
         spire-rs takes."
    );
    let rows = Route::ALL
        .into_iter()
        .flat_map(|route| {
            let name = match route {
                Route::Proxy => "through a proxy",
                Route::MultiHost => "multi-host URL",
            };
            ROUTE_ROWS
                .into_iter()
                .enumerate()
                .map(move |(i, (key, label, unit, zero))| {
                    let label = if i == 0 {
                        format!("{name}: {label}")
                    } else {
                        label.to_string()
                    };
                    let r = row(format!("{}_{key}", route.prefix()), label, unit);
                    if zero { r.goal(Goal::AtMost(0.0)) } else { r }
                })
        })
        .collect();
    let notes = vec![
        "Reference SPIRE 1.13 opens PostgreSQL through lib/pq, which takes one host: given \
         the multi-host URL it fails at start with `dial tcp: lookup \
         127.0.0.1:P1,127.0.0.1:P2: no such host`."
            .to_string(),
    ];
    let ours = ctx.ours.name;
    super::section(ctx, title, description, rows, notes, |imp| {
        measure(imp, ours, n)
    })
    .await
}
