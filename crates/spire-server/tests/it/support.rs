//! Spawning servers and talking to them.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use spire_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use spire_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spire_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use spire_proto::spire::api::server::localauthority::v1::local_authority_client::LocalAuthorityClient;
use spire_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spire_proto::spire::api::types;
use sqlx::Connection as _;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub const PG_ENV: &str = "SPIRE_RS_TEST_POSTGRES_URL";
pub const MYSQL_ENV: &str = "SPIRE_RS_TEST_MYSQL_URL";
pub const REQUIRE_ENV: &str = "SPIRE_RS_REQUIRE_DBS";

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `(database_type, connection_string)` of a datastore.
#[derive(Debug, Clone)]
pub struct Db {
    pub kind: &'static str,
    pub connection_string: String,
}

fn unique_db_name() -> String {
    format!(
        "spire_srv_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh PostgreSQL database, if a server is configured.
pub async fn postgres() -> Option<Db> {
    let url = match std::env::var(PG_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => {
            // Only ignored tests, run by scripts/test.sh, ask for it: required there.
            panic!("{PG_ENV} is not set: run scripts/test.sh, or scripts/test-databases.sh first");
        }
    };
    let name = unique_db_name();
    let mut c = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let mut u = url::Url::parse(&url).unwrap();
    u.set_path(&format!("/{name}"));
    Some(Db {
        kind: "postgres",
        connection_string: u.to_string(),
    })
}

/// A fresh MySQL/MariaDB database, if a server is configured.
pub async fn mysql() -> Option<Db> {
    let dsn = match std::env::var(MYSQL_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => {
            panic!(
                "{MYSQL_ENV} is not set: run scripts/test.sh, or scripts/test-databases.sh first"
            );
        }
    };
    let (head, tail) = dsn.rsplit_once('/').unwrap();
    let (userinfo, addr) = head.rsplit_once('@').unwrap();
    let addr = addr.trim_start_matches("tcp(").trim_end_matches(')');
    let name = unique_db_name();
    let mut c = sqlx::mysql::MySqlConnection::connect(&format!("mysql://{userinfo}@{addr}"))
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let params = tail
        .split_once('?')
        .map(|(_, p)| p)
        .unwrap_or("parseTime=true");
    Some(Db {
        kind: "mysql",
        connection_string: format!("{head}/{name}?{params}"),
    })
}

/// A server's files and process.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub port: u16,
    pub db: Db,
    pub extra_server_config: String,
    /// Top-level blocks after `plugins {}` (e.g. `health_checks {}`).
    pub extra_top_level: String,
    /// More `plugin_data` lines of the `sql` DataStore (e.g. `ro_connection_string`).
    pub datastore_extra: String,
    child: Option<Child>,
}

impl TestServer {
    /// Configures a server on SQLite (or `db`) in a new temp dir; not started.
    pub fn new(db: Option<Db>, extra_server_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = db.unwrap_or_else(|| Db {
            kind: "sqlite3",
            connection_string: dir
                .path()
                .join("data/datastore.sqlite3")
                .to_string_lossy()
                .into(),
        });
        Self {
            socket: dir.path().join("api.sock"),
            port: free_port(),
            db,
            extra_server_config: extra_server_config.to_string(),
            extra_top_level: String::new(),
            datastore_extra: String::new(),
            dir,
            child: None,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn write_config(&self) {
        let d = self.dir.path().display();
        let conf = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{sock}"
    trust_domain = "example.org"
    data_dir = "{d}/data"
    log_level = "DEBUG"
    {extra}
}}
plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "{kind}"
            connection_string = "{conn}"
            {ds_extra}
        }}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{d}/data/keys.json"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
{top}
"#,
            port = self.port,
            sock = self.socket.display(),
            extra = self.extra_server_config,
            top = self.extra_top_level,
            kind = self.db.kind,
            conn = self.db.connection_string,
            ds_extra = self.datastore_extra,
        );
        std::fs::write(self.config_path(), conf).unwrap();
    }

    /// Starts the server and waits until its socket answers.
    pub async fn start(&mut self) {
        self.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_spire-server"))
            .args(["run", "-config"])
            .arg(self.config_path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(ch) = channel(&self.socket).await
                && BundleClient::new(ch)
                    .get_bundle(
                        spire_proto::spire::api::server::bundle::v1::GetBundleRequest::default(),
                    )
                    .await
                    .is_ok()
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("server exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The running server's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub async fn channel(&self) -> Channel {
        channel(&self.socket).await.unwrap()
    }

    pub async fn entries(&self) -> EntryClient<Channel> {
        EntryClient::new(self.channel().await)
    }
    pub async fn agents(&self) -> AgentClient<Channel> {
        AgentClient::new(self.channel().await)
    }
    pub async fn bundles(&self) -> BundleClient<Channel> {
        BundleClient::new(self.channel().await)
    }
    pub async fn svids(&self) -> SvidClient<Channel> {
        SvidClient::new(self.channel().await)
    }
    pub async fn authorities(&self) -> LocalAuthorityClient<Channel> {
        LocalAuthorityClient::new(self.channel().await)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gRPC channel over a UNIX socket.
pub async fn channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

pub fn pid(path: &str) -> Option<types::Spiffeid> {
    Some(types::Spiffeid {
        trust_domain: "example.org".into(),
        path: path.into(),
    })
}

pub fn selector(t: &str, v: &str) -> types::Selector {
    types::Selector {
        r#type: t.into(),
        value: v.into(),
    }
}

pub fn entry(id: &str, parent: &str, spiffe: &str) -> types::Entry {
    types::Entry {
        id: id.into(),
        parent_id: pid(parent),
        spiffe_id: pid(spiffe),
        selectors: vec![selector("unix", "uid:1000")],
        ..Default::default()
    }
}
