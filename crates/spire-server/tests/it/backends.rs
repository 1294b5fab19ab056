//! The same scenarios on PostgreSQL and MariaDB (started by scripts/test-databases.sh).

use crate::support::*;

#[tokio::test]
#[ignore = "needs PostgreSQL and MariaDB (scripts/test-databases.sh); scripts/test.sh runs it"]
async fn restart_keeps_state_on_postgres() {
    if let Some(db) = postgres().await {
        crate::lifecycle::restart_scenario(TestServer::new(Some(db), "")).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and MariaDB (scripts/test-databases.sh); scripts/test.sh runs it"]
async fn restart_keeps_state_on_mysql() {
    if let Some(db) = mysql().await {
        crate::lifecycle::restart_scenario(TestServer::new(Some(db), "")).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and MariaDB (scripts/test-databases.sh); scripts/test.sh runs it"]
async fn minting_on_postgres_and_mysql() {
    for db in [postgres().await, mysql().await].into_iter().flatten() {
        crate::mint::mint_scenario(TestServer::new(Some(db), "")).await;
    }
}
