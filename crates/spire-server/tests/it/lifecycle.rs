//! Restarting keeps entries, join tokens, the bundle and the active CA.

use spire_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use spire_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use spire_proto::spire::api::server::localauthority::v1::GetX509AuthorityStateRequest;

use spire_proto::spire::api::server::bundle::v1::GetBundleRequest;

use crate::support::*;

pub(crate) async fn restart_scenario(mut server: TestServer) {
    server.start().await;
    let created = server
        .entries()
        .await
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![
                entry("entry-1", "/spire/agent/a", "/w1"),
                entry("entry-2", "/spire/agent/a", "/w2"),
            ],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        created
            .results
            .iter()
            .all(|r| r.status.as_ref().unwrap().code == 0),
        "{created:?}"
    );
    let token = server
        .agents()
        .await
        .create_join_token(CreateJoinTokenRequest {
            ttl: 600,
            token: "restart-token".into(),
            agent_id: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(token.value, "restart-token");
    let bundle_before = server
        .bundles()
        .await
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    let authority_before = server
        .authorities()
        .await
        .get_x509_authority_state(GetX509AuthorityStateRequest {})
        .await
        .unwrap()
        .into_inner()
        .active
        .unwrap();

    server.stop();
    server.start().await;

    let listed = server
        .entries()
        .await
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<_> = listed.entries.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["entry-1", "entry-2"], "[{}]", server.db.kind);
    // The token is still there: creating it again collides.
    let again = server
        .agents()
        .await
        .create_join_token(CreateJoinTokenRequest {
            ttl: 600,
            token: "restart-token".into(),
            agent_id: None,
        })
        .await;
    assert!(
        again.is_err(),
        "[{}] token was lost over the restart",
        server.db.kind
    );
    let bundle_after = server
        .bundles()
        .await
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        bundle_after.x509_authorities, bundle_before.x509_authorities,
        "[{}] new root after restart",
        server.db.kind
    );
    assert_eq!(bundle_after.jwt_authorities, bundle_before.jwt_authorities);
    let authority_after = server
        .authorities()
        .await
        .get_x509_authority_state(GetX509AuthorityStateRequest {})
        .await
        .unwrap()
        .into_inner()
        .active
        .unwrap();
    assert_eq!(
        authority_after.authority_id, authority_before.authority_id,
        "[{}]",
        server.db.kind
    );
    assert!(
        !server.log().contains("X509 CA prepared\" expiration")
            || server.log().matches("X509 CA prepared").count() == 1
    );
}

#[tokio::test]
async fn restart_keeps_state_on_sqlite() {
    restart_scenario(TestServer::new(None, "")).await;
}
