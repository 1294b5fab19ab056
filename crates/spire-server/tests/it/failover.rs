//! Database faults under a running server, with real PostgreSQL servers:
//!
//! - a primary failover: a streaming standby promoted after the primary stops, followed
//!   through a libpq multi-host URL with `target_session_attrs=read-write` (SPIRE's
//!   documented HA set-up), with the standby also serving as the read replica
//!   (`ro_connection_string`);
//! - latency and a cut between the server and its database (PostgreSQL and MariaDB),
//!   injected by toxiproxy.
//!
//! In both, agents keep being served from memory, writes fail cleanly while the database
//! is away and succeed after, no write that was acknowledged is lost, no event is missed
//! (agents see changes made after the fault), and the server is never restarted.
//!
//! The primary/standby pair comes from `scripts/test-databases.sh pg-ha-start` in a temp
//! dir of the test's own; the fault tests use a fresh database on the shared test servers
//! (`scripts/test-databases.sh start`) behind a toxiproxy of their own
//! (`scripts/toxiproxy.sh`, built once per machine).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use spiffe_core::{KeyType, PrivateKey};
use spire_proto::spire::api::server::entry::v1 as entryv1;
use spire_proto::spire::api::server::svid::v1 as svidv1;
use spire_testsupport::toxiproxy::Toxiproxy;
use sqlx::Connection as _;
use tonic::Code;
use tonic::transport::Channel;

use crate::authz::{attest, bundle_of, csr_for, tcp_channel};
use crate::support::*;

fn script(name: &str) -> PathBuf {
    spire_testsupport::workspace_root()
        .join("scripts")
        .join(name)
}

/// Runs `scripts/test-databases.sh CMD DIR`; its `export K=V` lines.
pub(crate) fn databases(cmd: &str, dir: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let out = Command::new("bash")
        .arg(script("test-databases.sh"))
        .arg(cmd)
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run test-databases.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "test-databases.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect())
}

fn tempdir_for_postgres() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // The clusters run as the `postgres` user, which must reach the directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A primary and a streaming standby of the test's own.
struct OwnHa {
    dir: tempfile::TempDir,
    url: String,
    standby_port: u16,
}

impl OwnHa {
    fn start() -> Result<OwnHa, String> {
        let dir = tempdir_for_postgres();
        let env = databases("pg-ha-start", dir.path())?;
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("pg-ha-start printed no {k}"))
        };
        Ok(OwnHa {
            url: get("SPIRE_RS_TEST_PG_HA_URL")?,
            standby_port: get("SPIRE_RS_TEST_PG_STANDBY_PORT")?
                .parse()
                .map_err(|e| format!("standby port: {e}"))?,
            dir,
        })
    }

    fn run(&self, cmd: &str) {
        databases(cmd, self.dir.path()).unwrap();
    }
}

impl Drop for OwnHa {
    fn drop(&mut self) {
        let _ = databases("pg-ha-stop", self.dir.path());
    }
}

/// An attested agent's view of the server: its mTLS channel and SPIFFE ID path.
struct AgentView {
    channel: Channel,
    path: String,
}

impl AgentView {
    async fn attest(server: &TestServer) -> AgentView {
        let bundle = bundle_of(server).await;
        let (chain, key, path) = attest(server, &bundle).await;
        AgentView {
            channel: tcp_channel(server.port, &bundle, Some((&chain, &key))).await,
            path,
        }
    }

    /// The IDs of the entries the agent may serve.
    async fn authorized(&self) -> Result<Vec<String>, tonic::Status> {
        Ok(
            entryv1::entry_client::EntryClient::new(self.channel.clone())
                .get_authorized_entries(entryv1::GetAuthorizedEntriesRequest::default())
                .await?
                .into_inner()
                .entries
                .into_iter()
                .map(|e| e.id)
                .collect(),
        )
    }

    /// Waits until the agent may serve exactly `n` entries.
    async fn wait_for(&self, n: usize, server: &TestServer) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ids = self.authorized().await.unwrap();
            if ids.len() == n {
                return ids;
            }
            assert!(
                Instant::now() < deadline,
                "the agent sees {} entries, not {n}\n{}",
                ids.len(),
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Has an X509-SVID signed for `entry_id`; the status code.
    async fn sign(&self, entry_id: &str) -> Result<i32, tonic::Status> {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let results = svidv1::svid_client::SvidClient::new(self.channel.clone())
            .batch_new_x509svid(svidv1::BatchNewX509svidRequest {
                params: vec![svidv1::NewX509svidParams {
                    entry_id: entry_id.to_string(),
                    csr: csr_for(&key, None),
                }],
            })
            .await?
            .into_inner()
            .results;
        Ok(results[0].status.as_ref().map_or(-1, |s| s.code))
    }
}

fn create(parent: &str, n: u32) -> entryv1::BatchCreateEntryRequest {
    entryv1::BatchCreateEntryRequest {
        entries: vec![entry("", parent, &format!("/workload-{n}"))],
        output_mask: None,
    }
}

/// One BatchCreateEntry; the entry's ID, or the failure's code and message.
async fn try_create(
    entries: &mut entryv1::entry_client::EntryClient<Channel>,
    parent: &str,
    n: u32,
) -> Result<String, (i32, String)> {
    match entries.batch_create_entry(create(parent, n)).await {
        Ok(r) => {
            let r = r.into_inner().results.remove(0);
            let st = r.status.unwrap_or_default();
            if st.code == 0 {
                Ok(r.entry.unwrap().id)
            } else {
                Err((st.code, st.message))
            }
        }
        Err(st) => Err((st.code() as i32, st.message().to_string())),
    }
}

async fn list_all(entries: &mut entryv1::entry_client::EntryClient<Channel>) -> usize {
    entries
        .list_entries(entryv1::ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/test-databases.sh); scripts/test.sh runs it"]
async fn postgres_failover_to_a_promoted_standby_without_restart_or_lost_writes() {
    let ha = OwnHa::start().unwrap_or_else(|e| panic!("a PostgreSQL pair is required: {e}"));
    let replica = format!(
        "postgres://spire:spire@127.0.0.1:{}/spire?sslmode=disable&application_name=spire-rs-replica",
        ha.standby_port
    );
    let mut server = TestServer::new(
        Some(Db {
            kind: "postgres",
            connection_string: ha.url.clone(),
        }),
        "",
    );
    server.datastore_extra = format!("ro_connection_string = \"{replica}\"");
    server.start().await;
    let pid = server.pid();

    let agent = AgentView::attest(&server).await;
    let mut entries = server.entries().await;
    let mut written = Vec::new();
    for n in 0..20 {
        written.push(try_create(&mut entries, &agent.path, n).await.unwrap());
    }
    agent.wait_for(20, &server).await;

    // The standby serves as the read replica: the scan for new node events reads there,
    // as SPIRE's does.
    let mut standby = sqlx::postgres::PgConnection::connect(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        ha.standby_port
    ))
    .await
    .unwrap();
    let replica_sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spire-rs-replica'",
    )
    .fetch_one(&mut standby)
    .await
    .unwrap();
    assert!(
        replica_sessions > 0,
        "no connection from the server on the read replica"
    );
    drop(standby);

    // The primary goes away; the standby is still read-only.
    let lost_at = Instant::now();
    ha.run("pg-ha-stop-primary");

    // Agents are served from memory meanwhile.
    assert_eq!(agent.authorized().await.unwrap().len(), 20);
    assert_eq!(agent.sign(&written[0]).await.unwrap(), 0);
    // Writes fail cleanly (no host takes writes), and at once.
    let started = Instant::now();
    let (code, message) = try_create(&mut entries, &agent.path, 100)
        .await
        .unwrap_err();
    assert_eq!(code, Code::Internal as i32, "{message}");
    assert!(
        message.contains("target_session_attrs=read-write"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a write took {:?} to fail with no primary",
        started.elapsed()
    );

    // Promotion: the next write goes to the new primary, through the same process.
    ha.run("pg-ha-promote");
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match try_create(&mut entries, &agent.path, 20).await {
            Ok(id) => break id,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write succeeded after the promotion: {e:?}\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!(
        "failover: primary lost -> first successful write after promotion: {:?}",
        lost_at.elapsed()
    );
    written.push(after);
    assert_eq!(server.pid(), pid, "the server was restarted");
    assert!(
        server
            .log()
            .contains("Switching database connections to another host"),
        "{}",
        server.log()
    );

    // Nothing acknowledged was lost, and the change made after the failover reaches the
    // agent through the events on the new primary.
    assert_eq!(list_all(&mut entries).await, written.len());
    let mut seen = agent.wait_for(written.len(), &server).await;
    seen.sort();
    written.sort();
    assert_eq!(seen, written);
    assert_eq!(agent.sign(&written[0]).await.unwrap(), 0);
    server.stop();
}

/// The port of a datastore's connection string (a PostgreSQL URL or a MySQL DSN).
fn upstream_port(db: &Db) -> u16 {
    if db.kind == "postgres" {
        url::Url::parse(&db.connection_string)
            .unwrap()
            .port()
            .unwrap()
    } else {
        // user:pass@tcp(127.0.0.1:PORT)/db?params
        let (_, tail) = db.connection_string.split_once("tcp(").unwrap();
        let (addr, _) = tail.split_once(')').unwrap();
        addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }
}

/// The datastore's connection string rewritten to go through `proxy_port`.
fn through_proxy(db: &Db, proxy_port: u16) -> Db {
    let connection_string = if db.kind == "postgres" {
        let mut u = url::Url::parse(&db.connection_string).unwrap();
        u.set_port(Some(proxy_port)).unwrap();
        u.to_string()
    } else {
        let (head, tail) = db.connection_string.split_once("tcp(").unwrap();
        let (_, rest) = tail.split_once(')').unwrap();
        format!("{head}tcp(127.0.0.1:{proxy_port}){rest}")
    };
    Db {
        kind: db.kind,
        connection_string,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and toxiproxy (scripts/test-databases.sh, scripts/toxiproxy.sh); scripts/test.sh runs it"]
async fn postgres_latency_and_cut_leave_agents_served_from_memory() {
    latency_and_cut(postgres().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB and toxiproxy (scripts/test-databases.sh, scripts/toxiproxy.sh); scripts/test.sh runs it"]
async fn mariadb_latency_and_cut_leave_agents_served_from_memory() {
    latency_and_cut(mysql().await.unwrap()).await;
}

async fn latency_and_cut(db: Db) {
    let toxi = Toxiproxy::start()
        .await
        .unwrap_or_else(|e| panic!("toxiproxy is required: {e}"));
    // The proxy's port is known only once it exists: make it, then point the server at it.
    let proxy_port = toxi.proxy("pg", upstream_port(&db)).await.unwrap();
    let proxied = through_proxy(&db, proxy_port);
    let mut server = TestServer::new(Some(proxied), "");
    server.start().await;
    let pid = server.pid();
    let agent = AgentView::attest(&server).await;
    let mut entries = server.entries().await;
    let mut written = Vec::new();
    for n in 0..10 {
        written.push(try_create(&mut entries, &agent.path, n).await.unwrap());
    }
    agent.wait_for(10, &server).await;

    // Latency: 1.5 s on every answer from the database (longer than the 1 s a direct
    // connection attempt is given to tell a database away from a slow one).
    const LATENCY_MS: u64 = 1500;
    toxi.add_toxic(
        "pg",
        &serde_json::json!({
            "name": "slow",
            "type": "latency",
            "stream": "downstream",
            "attributes": {"latency": LATENCY_MS, "jitter": 0},
        }),
    )
    .await
    .unwrap();
    // Agent calls do not wait on the database: each answers in less than one
    // database round trip would take.
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(agent.authorized().await.unwrap().len(), 10);
        assert_eq!(agent.sign(&written[0]).await.unwrap(), 0);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(LATENCY_MS),
            "agent calls took {took:?} with {LATENCY_MS} ms of database latency"
        );
    }
    // Writes still succeed, slowly, and reach the agent.
    written.push(try_create(&mut entries, &agent.path, 10).await.unwrap());
    agent.wait_for(11, &server).await;
    toxi.remove_toxic("pg", "slow").await.unwrap();

    // A black hole (nothing answers, nothing is refused): health says so after its 5 s
    // bound, while agents are still served.
    toxi.add_toxic(
        "pg",
        &serde_json::json!({
            "name": "hole",
            "type": "timeout",
            "stream": "upstream",
            "attributes": {"timeout": 0},
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        crate::outage::grpc_health(&server).await,
        spire_proto::grpc::health::v1::health_check_response::ServingStatus::NotServing as i32
    );
    assert_eq!(agent.authorized().await.unwrap().len(), 11);
    toxi.remove_toxic("pg", "hole").await.unwrap();

    // Cut: the proxy stops accepting and drops its connections.
    toxi.update("pg", &serde_json::json!({"enabled": false}))
        .await
        .unwrap();
    assert_eq!(agent.authorized().await.unwrap().len(), 11);
    assert_eq!(agent.sign(&written[0]).await.unwrap(), 0);
    let started = Instant::now();
    let (code, _) = try_create(&mut entries, &agent.path, 100)
        .await
        .unwrap_err();
    assert_eq!(code, Code::Internal as i32);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a write took {:?} to fail with the database cut off",
        started.elapsed()
    );

    // Back: writes succeed in the same process, and nothing acknowledged is lost.
    toxi.update("pg", &serde_json::json!({"enabled": true}))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        match try_create(&mut entries, &agent.path, 11).await {
            Ok(id) => break id,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write succeeded after the cut ended: {e:?}\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    written.push(id);
    assert_eq!(server.pid(), pid);
    assert_eq!(list_all(&mut entries).await, written.len());
    let mut seen = agent.wait_for(written.len(), &server).await;
    seen.sort();
    written.sort();
    assert_eq!(seen, written);
    server.stop();
}
