//! CA rotation end to end with a one-minute CA: prepare, activate, old; and forced
//! rotation through the LocalAuthority API.

use std::time::{Duration, Instant};

use spire_proto::spire::api::server::localauthority::v1 as la;

use spire_proto::spire::api::server::bundle::v1::GetBundleRequest;

use crate::support::*;

#[tokio::test]
async fn x509_and_jwt_authorities_rotate_on_schedule() {
    // Prepare after 30 s, activate after 50 s.
    let mut server = TestServer::new(
        None,
        "ca_ttl = \"60s\"\n    default_x509_svid_ttl = \"10s\"",
    );
    server.start().await;
    let first = server
        .authorities()
        .await
        .get_x509_authority_state(la::GetX509AuthorityStateRequest {})
        .await
        .unwrap()
        .into_inner();
    let a = first.active.clone().unwrap().authority_id;
    assert!(first.prepared.is_none() && first.old.is_none());

    let mut saw_prepared = false;
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let st = server
            .authorities()
            .await
            .get_x509_authority_state(la::GetX509AuthorityStateRequest {})
            .await
            .unwrap()
            .into_inner();
        let bundle = server
            .bundles()
            .await
            .get_bundle(GetBundleRequest::default())
            .await
            .unwrap()
            .into_inner();
        if let Some(p) = &st.prepared {
            saw_prepared = true;
            // A prepared authority is published at once.
            assert_eq!(
                bundle.x509_authorities.len(),
                2,
                "prepared {} not in the bundle",
                p.authority_id
            );
        }
        if st.active.as_ref().unwrap().authority_id != a {
            assert!(saw_prepared, "activated without being seen prepared");
            assert_eq!(st.old.as_ref().unwrap().authority_id, a);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rotation within 100 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let jwt = server
        .authorities()
        .await
        .get_jwt_authority_state(la::GetJwtAuthorityStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(jwt.old.is_some(), "the JWT key rotated too: {jwt:?}");
    let log = server.log();
    for line in [
        "X509 CA prepared",
        "X509 CA activated",
        "JWT key prepared",
        "JWT key activated",
    ] {
        assert!(log.matches(line).count() >= 2, "{line} twice:\n{log}");
    }
}

#[tokio::test]
async fn forced_rotation_taint_and_revoke() {
    let mut server = TestServer::new(None, "");
    server.start().await;
    let mut la = server.authorities().await;
    let before = la
        .get_x509_authority_state(la::GetX509AuthorityStateRequest {})
        .await
        .unwrap()
        .into_inner();
    let old_id = before.active.unwrap().authority_id;

    // Activating what is not prepared is refused.
    let err = la
        .activate_x509_authority(la::ActivateX509AuthorityRequest {
            authority_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "unexpected authority ID");

    let prepared = la
        .prepare_x509_authority(la::PrepareX509AuthorityRequest {})
        .await
        .unwrap()
        .into_inner();
    let new_id = prepared.prepared_authority.unwrap().authority_id;
    let activated = la
        .activate_x509_authority(la::ActivateX509AuthorityRequest {
            authority_id: new_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(activated.activated_authority.unwrap().authority_id, new_id);

    // The current authority cannot be tainted; the old one can.
    let err = la
        .taint_x509_authority(la::TaintX509AuthorityRequest {
            authority_id: new_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "unable to taint current local authority");
    let err = la
        .revoke_x509_authority(la::RevokeX509AuthorityRequest {
            authority_id: new_id,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "invalid authority ID: unable to use current authority"
    );
    la.taint_x509_authority(la::TaintX509AuthorityRequest {
        authority_id: old_id.clone(),
    })
    .await
    .unwrap();
    let bundle = server
        .bundles()
        .await
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        bundle.x509_authorities.iter().filter(|a| a.tainted).count(),
        1
    );
    la.revoke_x509_authority(la::RevokeX509AuthorityRequest {
        authority_id: old_id,
    })
    .await
    .unwrap();
    let bundle = server
        .bundles()
        .await
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bundle.x509_authorities.len(), 1);
    assert!(
        server
            .log()
            .contains("X.509 authority revoked successfully")
    );
}
