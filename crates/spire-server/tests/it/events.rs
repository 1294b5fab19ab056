//! Two writers sharing the database commit out of event-ID order: the server follows both
//! (on PostgreSQL and MariaDB), although the event with the lower ID becomes visible after
//! the higher one has been read. An agent's authorized entries, answered from the server's
//! in-memory index, show what the follower read.

use std::time::{Duration, Instant};

use spire_proto::spire::api::server::entry::v1 as entryv1;
use sqlx::Connection as _;

use crate::authz::{attest, bundle_of, tcp_channel};
use crate::support::*;

/// A connection of another writer, on the same database.
enum Writer {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
}

impl Writer {
    async fn connect(db: &Db) -> Writer {
        match db.kind {
            "postgres" => Writer::Pg(
                sqlx::PgConnection::connect(&db.connection_string)
                    .await
                    .unwrap(),
            ),
            _ => {
                // user:pass@tcp(host:port)/db?params -> mysql://user:pass@host:port/db
                let dsn = &db.connection_string;
                let (head, tail) = dsn.rsplit_once('/').unwrap();
                let (userinfo, addr) = head.rsplit_once('@').unwrap();
                let addr = addr.trim_start_matches("tcp(").trim_end_matches(')');
                let name = tail.split('?').next().unwrap();
                let url = format!("mysql://{userinfo}@{addr}/{name}");
                Writer::My(sqlx::MySqlConnection::connect(&url).await.unwrap())
            }
        }
    }

    async fn exec(&mut self, sql: String) {
        let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
        match self {
            Writer::Pg(c) => q.execute(c).await.map(|_| ()),
            Writer::My(c) => q.execute(c).await.map(|_| ()),
        }
        .unwrap();
    }

    /// Inserts an entry under `parent` with its event, as SPIRE writes them.
    async fn insert_entry(&mut self, entry_id: &str, spiffe_id: &str, parent: &str) {
        self.exec(format!(
            "INSERT INTO registered_entries (created_at, updated_at, entry_id, spiffe_id, parent_id, \
             ttl, admin, downstream, expiry, revision_number, store_svid, hint, jwt_svid_ttl) \
             VALUES (NOW(), NOW(), '{entry_id}', '{spiffe_id}', '{parent}', 0, false, false, 0, 0, false, '', 0)"
        ))
        .await;
        self.exec(format!(
            "INSERT INTO selectors (created_at, updated_at, registered_entry_id, type, value) \
             SELECT NOW(), NOW(), id, 'unix', 'uid:1000' FROM registered_entries WHERE entry_id = '{entry_id}'"
        ))
        .await;
        self.exec(format!(
            "INSERT INTO registered_entries_events (created_at, updated_at, entry_id) \
             VALUES (NOW(), NOW(), '{entry_id}')"
        ))
        .await;
    }
}

async fn authorized(
    client: &mut entryv1::entry_client::EntryClient<tonic::transport::Channel>,
) -> Vec<String> {
    client
        .get_authorized_entries(entryv1::GetAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn wait_authorized(
    client: &mut entryv1::entry_client::EntryClient<tonic::transport::Channel>,
    entry_id: &str,
    server: &TestServer,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids = authorized(client).await;
        if ids.iter().any(|i| i == entry_id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{entry_id} never reached the index (authorized: {ids:?})\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn out_of_order_commits_are_followed(db: Db) {
    let mut server = TestServer::new(Some(db.clone()), "");
    server.start().await;
    let bundle = bundle_of(&server).await;
    let (chain, key, agent_path) = attest(&server, &bundle).await;
    let agent_id = format!("spiffe://example.org{agent_path}");
    let mut client = entryv1::entry_client::EntryClient::new(
        tcp_channel(server.port, &bundle, Some((&chain, &key))).await,
    );

    // Writer A takes the lower event ID and commits last.
    let mut a = Writer::connect(&db).await;
    let mut b = Writer::connect(&db).await;
    a.exec("BEGIN".into()).await;
    a.insert_entry("e-first", "spiffe://example.org/first", &agent_id)
        .await;
    b.exec("BEGIN".into()).await;
    b.insert_entry("e-second", "spiffe://example.org/second", &agent_id)
        .await;
    b.exec("COMMIT".into()).await;
    wait_authorized(&mut client, "e-second", &server).await;
    assert!(
        !authorized(&mut client)
            .await
            .contains(&"e-first".to_string())
    );

    a.exec("COMMIT".into()).await;
    wait_authorized(&mut client, "e-first", &server).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and MariaDB (scripts/test-databases.sh); scripts/test.sh runs it"]
async fn out_of_order_commits_are_followed_on_postgres() {
    if let Some(db) = postgres().await {
        out_of_order_commits_are_followed(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and MariaDB (scripts/test-databases.sh); scripts/test.sh runs it"]
async fn out_of_order_commits_are_followed_on_mysql() {
    if let Some(db) = mysql().await {
        out_of_order_commits_are_followed(db).await;
    }
}
