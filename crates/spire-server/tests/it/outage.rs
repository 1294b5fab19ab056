//! PostgreSQL going away under a running server, and coming back: calls that need the
//! database fail at once (not after a pool's 30 s timeout), `spire-server healthcheck` and
//! the health listener report the server unhealthy, and once the database is back the
//! same process reads and writes again, without a restart.
//!
//! The test runs a PostgreSQL of its own (through `scripts/test-databases.sh pg-start`,
//! which comes back on the same port), so stopping it disturbs no other test.

use std::process::Command;
use std::time::{Duration, Instant};

use spire_proto::grpc::health::v1 as health;
use spire_proto::spire::api::server::entry::v1 as entryv1;
use tonic::Code;

use crate::support::*;

/// A PostgreSQL cluster of this test's own.
struct OwnPostgres {
    dir: tempfile::TempDir,
    url: String,
}

impl OwnPostgres {
    fn start() -> Result<OwnPostgres, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // The cluster runs as the `postgres` user, which must reach its directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let mut pg = OwnPostgres {
            dir,
            url: String::new(),
        };
        pg.url = pg.run("pg-start")?;
        Ok(pg)
    }

    /// Runs `scripts/test-databases.sh CMD` on the cluster; the URL it prints, if any.
    fn run(&self, cmd: &str) -> Result<String, String> {
        Ok(crate::failover::databases(cmd, self.dir.path())?
            .into_iter()
            .find(|(k, _)| k == "SPIRE_RS_TEST_POSTGRES_URL")
            .map(|(_, v)| v)
            .unwrap_or_default())
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.run("pg-stop");
    }
}

fn healthcheck(server: &TestServer) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spire-server"))
        .args(["healthcheck", "-socketPath"])
        .arg(&server.socket)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The HTTP status of `GET path` on the health listener.
async fn http_health(port: u16, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // The listener starts beside the API sockets: allow it a moment on the first call.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "health listener: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap()
}

pub(crate) async fn grpc_health(server: &TestServer) -> i32 {
    health::health_client::HealthClient::new(server.channel().await)
        .check(health::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and MariaDB (scripts/test-databases.sh); scripts/test.sh runs it"]
async fn postgres_outage_fails_fast_reports_unhealthy_and_recovers_without_restart() {
    // Ignored by a plain `cargo test`; where it is asked for, it must run.
    let pg = OwnPostgres::start()
        .unwrap_or_else(|e| panic!("a PostgreSQL of the test's own is required: {e}"));
    let mut server = TestServer::new(
        Some(Db {
            kind: "postgres",
            connection_string: pg.url.clone(),
        }),
        "",
    );
    let health_port = free_port();
    server.extra_top_level = format!(
        "health_checks {{\n    listener_enabled = true\n    bind_address = \"127.0.0.1\"\n    bind_port = \"{health_port}\"\n}}"
    );
    server.start().await;
    let create = |n: u32| entryv1::BatchCreateEntryRequest {
        entries: vec![entry("", "/node", &format!("/workload-{n}"))],
        output_mask: None,
    };
    let mut entries = server.entries().await;
    let r = entries
        .batch_create_entry(create(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[0].status.as_ref().unwrap().code, 0);
    assert!(healthcheck(&server).0);
    assert_eq!(
        grpc_health(&server).await,
        health::health_check_response::ServingStatus::Serving as i32
    );
    assert_eq!(http_health(health_port, "/live").await, 200);
    assert_eq!(http_health(health_port, "/ready").await, 200);

    pg.run("pg-stop").unwrap();

    // Every call that needs the database fails at once, with the database's error.
    for _ in 0..3 {
        let started = Instant::now();
        let st = entries
            .list_entries(entryv1::ListEntriesRequest::default())
            .await
            .unwrap_err();
        let took = started.elapsed();
        eprintln!("outage: ListEntries failed in {took:?}: {}", st.message());
        assert_eq!(st.code(), Code::Internal, "{st:?}");
        assert!(
            st.message().starts_with("failed to list entries: "),
            "{st:?}"
        );
        assert!(
            took < Duration::from_secs(1),
            "ListEntries took {took:?} to fail with the database stopped"
        );
    }
    let r = entries
        .batch_create_entry(create(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.results[0].status.as_ref().unwrap().code,
        Code::Internal as i32
    );

    // Health says so.
    let (ok, out) = healthcheck(&server);
    assert!(!ok, "healthcheck passed with the database stopped: {out}");
    assert_eq!(
        grpc_health(&server).await,
        health::health_check_response::ServingStatus::NotServing as i32
    );
    // As in SPIRE, the datastore check counts for live and ready alike.
    assert_eq!(http_health(health_port, "/live").await, 500);
    assert_eq!(http_health(health_port, "/ready").await, 500);

    // The database comes back: the same server reads and writes again.
    pg.run("pg-start").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match entries.batch_create_entry(create(3)).await {
            Ok(r) if r.get_ref().results[0].status.as_ref().unwrap().code == 0 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no recovery after the database came back: {other:?}\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let listed = entries
        .list_entries(entryv1::ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(listed.len(), 2, "entries 1 and 3 (2 failed while away)");
    assert!(healthcheck(&server).0);
    assert_eq!(
        grpc_health(&server).await,
        health::health_check_response::ServingStatus::Serving as i32
    );
    assert_eq!(http_health(health_port, "/ready").await, 200);
    server.stop();
}
