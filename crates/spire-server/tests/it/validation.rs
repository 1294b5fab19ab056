//! Bad input gets SPIRE's error and writes nothing.

use spire_proto::spire::api::server::agent::v1::{CountAgentsRequest, CreateJoinTokenRequest};
use spire_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, CountEntriesRequest};
use spire_proto::spire::api::types;

use crate::support::*;

#[tokio::test]
async fn invalid_entries_are_refused_and_not_stored() {
    let mut server = TestServer::new(None, "");
    server.start().await;
    let mut bad_selector = entry("", "/spire/agent/a", "/w");
    bad_selector.selectors = vec![selector("", "x")];
    let mut reserved = entry("", "/spire/agent/a", "/spire/w");
    reserved.selectors = vec![selector("unix", "uid:1")];
    let mut wrong_td = entry("", "/spire/agent/a", "/w");
    wrong_td.spiffe_id = Some(types::Spiffeid {
        trust_domain: "Other.org".into(),
        path: "/w".into(),
    });
    let mut no_selectors = entry("", "/spire/agent/a", "/w");
    no_selectors.selectors.clear();
    let resp = server
        .entries()
        .await
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![bad_selector, reserved, wrong_td, no_selectors],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let messages: Vec<(i32, String)> = resp
        .results
        .iter()
        .map(|r| r.status.clone().map(|s| (s.code, s.message)).unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            (3, "failed to convert entry: missing selector type".to_string()),
            (
                3,
                "failed to convert entry: invalid spiffe ID: \"spiffe://example.org/spire/w\" is not a workload in trust domain \"example.org\"; path is in the reserved namespace".to_string()
            ),
            (
                3,
                "failed to convert entry: invalid spiffe ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores".to_string()
            ),
            (3, "failed to convert entry: selector list is empty".to_string()),
        ]
    );
    let count = server
        .entries()
        .await
        .count_entries(CountEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 0);

    let err = server
        .agents()
        .await
        .create_join_token(CreateJoinTokenRequest {
            ttl: 0,
            token: String::new(),
            agent_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "ttl is required, you must provide one");
    let agents = server
        .agents()
        .await
        .count_agents(CountAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agents.count, 0);
}

#[tokio::test]
async fn unknown_config_keys_stop_the_server_with_the_key_named() {
    let server = TestServer::new(None, "bogus_key = \"x\"");
    server.write_config();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spire-server"))
        .args(["run", "-config"])
        .arg(server.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bogus_key"), "{stderr}");
    assert!(
        !server.dir.path().join("data").exists(),
        "nothing written on bad config"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spire-server"))
        .args(["validate", "-config"])
        .arg(server.config_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("SPIRE server configuration file is invalid: "),
        "{stderr}"
    );
    assert!(stderr.contains("bogus_key"), "{stderr}");
}

#[tokio::test]
async fn unavailable_plugins_are_named() {
    let server = TestServer::new(None, "");
    server.write_config();
    let conf = std::fs::read_to_string(server.config_path())
        .unwrap()
        .replace("KeyManager \"disk\"", "KeyManager \"bogus\"");
    std::fs::write(server.config_path(), conf).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spire-server"))
        .args(["validate", "-config"])
        .arg(server.config_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "SPIRE server configuration file is invalid: failed to load plugin \"bogus\": no built-in plugin \"bogus\" for type \"KeyManager\"\n"
    );
}
