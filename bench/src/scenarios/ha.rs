//! Scenario 16, HA propagation: two servers of one implementation on one PostgreSQL
//! database (`SPIRE_RS_TEST_POSTGRES_URL`, from `scripts/test-databases.sh`); an entry is
//! written through server A's admin socket, and the time from that BatchCreateEntry call
//! returning to the already open FetchX509SVID stream of a workload on an agent of server B
//! delivering the new SVID is recorded.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::Ctx;
use crate::clients::{self, Admin};
use crate::procs::{Agent, Implementation, Server, ServerOptions};
use crate::report::{Goal, Metrics, Outcome, Section, Unit, row};

const PG_ENV: &str = "SPIRE_RS_TEST_POSTGRES_URL";

/// A database of its own on the test PostgreSQL server, dropped afterwards.
struct Database {
    base: String,
    name: String,
}

impl Database {
    fn create(tag: &str) -> Result<Self> {
        let base = std::env::var(PG_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| {
                format!("{PG_ENV} is not set (start PostgreSQL with scripts/test-databases.sh)")
            })?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let db = Self {
            base,
            name: format!("spire_bench_ha_{tag}_{}_{nanos}", std::process::id()),
        };
        db.psql(&format!("CREATE DATABASE {}", db.name))?;
        Ok(db)
    }

    fn psql(&self, sql: &str) -> Result<()> {
        let out = Command::new("psql")
            .args([self.base.as_str(), "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The connection string of this database (the server URL with its path replaced).
    fn url(&self) -> Result<String> {
        let (head, query) = self.base.split_once('?').unwrap_or((&self.base, ""));
        let (server, _) = head
            .rsplit_once('/')
            .with_context(|| format!("{PG_ENV}: no database path"))?;
        Ok(if query.is_empty() {
            format!("{server}/{}", self.name)
        } else {
            format!("{server}/{}?{query}", self.name)
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = self.psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

async fn measure(imp: Implementation, samples: usize) -> Result<Metrics> {
    let tag: String = imp
        .name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let db = Database::create(&tag)?;
    let opts = ServerOptions {
        sql: Some(("postgres".into(), db.url()?)),
        ..ServerOptions::default()
    };
    let mut server_a = Server::spawn(&imp, &opts)?;
    server_a.wait_ready(Duration::from_secs(60)).await?;
    let mut server_b = Server::spawn(&imp, &opts)?;
    server_b.wait_ready(Duration::from_secs(60)).await?;
    let admin_a = Admin::connect(&server_a.socket).await?;
    let admin_b = Admin::connect(&server_b.socket).await?;
    let (token, parent, selector) = admin_b
        .token_with_workload_entry("/bench/ha/initial")
        .await?;
    let agent = Agent::start(&imp, server_b.port, &token).await?;
    clients::wait_for_svids(&agent.socket, Duration::from_secs(60), |ids| {
        !ids.is_empty()
    })
    .await?;

    let m = super::propagation::entry_delays(
        &admin_a,
        &parent,
        &selector,
        &agent.socket,
        "/bench/ha",
        samples,
    )
    .await?;
    agent.proc.stop().await;
    server_b.proc.stop().await;
    server_a.proc.stop().await;
    drop(db);
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let n = ctx.sizes.propagation_samples;
    let title = "16. HA: write on server A, SVID on an agent of server B";
    let description = format!(
        "Two servers of one implementation share one PostgreSQL database (each its own CA \
             key); one agent attests to server B, and the harness, its workload, keeps a \
             FetchX509SVID stream open. {n} times, after a random pause of 0.2–1.2 s, an \
             entry matching the workload is created with BatchCreateEntry on server A's \
             admin socket, and the time from that call returning to B's agent's stream \
             delivering the new SPIFFE ID is recorded. Default sync settings (SPIRE: \
             server B's entry cache follows the events tables every 5 s, the agent syncs \
             every 5 s; spire-rs: server B polls the events tables every second and pushes \
             the change to its agents' watch streams)."
    );
    let rows = vec![
        row(
            "median",
            "entry on A → SVID on B's agent's stream, median",
            Unit::Secs,
        )
        .goal(Goal::AtMost(1.0)),
        row("p90", "… p90", Unit::Secs),
        row("min", "… min", Unit::Secs),
        row("max", "… max", Unit::Secs),
    ];
    if std::env::var(PG_ENV).map_or(true, |v| v.is_empty()) {
        // Not a figure: in --smoke a missing spire-rs figure fails the run (CI starts the
        // database before it).
        let why = format!("{PG_ENV} unset (scripts/test-databases.sh starts PostgreSQL)");
        return Section {
            title: title.into(),
            description,
            rows,
            reference: Outcome::NotRun(why.clone()),
            ours: Outcome::NotRun(why),
            notes: Vec::new(),
            seconds: 0.0,
        };
    }
    super::section(ctx, title, description, rows, Vec::new(), |imp| {
        measure(imp, n)
    })
    .await
}
