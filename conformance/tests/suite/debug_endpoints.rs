//! Debug endpoints (after SPIRE's `debug-endpoints` suite): the server's
//! `spire.api.server.debug.v1.Debug/GetInfo` on its socket and the agent's
//! `spire.agent.debug.v1.Debug/GetInfo` on its admin socket.

use spire_proto::spire::agent::debug::v1 as agent_debug;
use spire_proto::spire::api::server::debug::v1 as server_debug;

use crate::support::{
    AgentOpts, Deadline, Scenario, ServerOpts, agent_subject, id, join_token_pair, server_subject,
    uid_selector, workload,
};

fn chain_ids(chain: &[impl ChainId]) -> Vec<String> {
    chain.iter().map(ChainId::spiffe_id).collect()
}

trait ChainId {
    fn spiffe_id(&self) -> String;
}

impl ChainId for server_debug::get_info_response::Cert {
    fn spiffe_id(&self) -> String {
        self.id
            .as_ref()
            .map(|i| format!("spiffe://{}{}", i.trust_domain, i.path))
            .unwrap_or_default()
    }
}

impl ChainId for agent_debug::get_info_response::Cert {
    fn spiffe_id(&self) -> String {
        self.id
            .as_ref()
            .map(|i| format!("spiffe://{}{}", i.trust_domain, i.path))
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn server_get_info() {
    let sc = Scenario::new("debug_endpoints::server_get_info");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;

    let ch = workload::uds_channel(&server.socket).await.unwrap();
    let mut c = server_debug::debug_client::DebugClient::new(ch);
    // SPIRE caches GetInfo for a few seconds: poll until it reflects the agent and entry.
    let d = Deadline::new("server Debug GetInfo to count the agent and the entry", 30);
    let info = loop {
        let info = c
            .get_info(server_debug::GetInfoRequest::default())
            .await
            .expect("server Debug GetInfo")
            .into_inner();
        if info.agents_count == 1 && info.entries_count == 1 {
            break info;
        }
        d.tick(format!("{info:?}")).await;
    };
    let ids = chain_ids(&info.svid_chain);
    assert_eq!(
        ids.first().map(String::as_str),
        Some(id("/spire/server").as_str()),
        "svid_chain {ids:?}"
    );
    assert!(info.svid_chain.iter().all(|c| c.expires_at > 0), "{info:?}");
    // SPIRE counts every bundle it stores, its own included.
    assert_eq!(
        info.federated_bundles_count, 1,
        "federated_bundles_count: SPIRE 1.13 counts every stored bundle, its own included; {info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn agent_get_info() {
    let sc = Scenario::new("debug_endpoints::agent_get_info");
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts {
            admin_socket: true,
            ..Default::default()
        },
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;

    let admin = agent.admin_socket.clone().unwrap();
    let d = Deadline::new("agent Debug GetInfo to report a sync and a cached SVID", 60);
    let info = loop {
        let last = match workload::uds_channel(&admin).await {
            Ok(ch) => match agent_debug::debug_client::DebugClient::new(ch)
                .get_info(agent_debug::GetInfoRequest::default())
                .await
            {
                Ok(r) => {
                    let info = r.into_inner();
                    if info.last_sync_success > 0 && info.cached_x509_svids_count >= 1 {
                        break info;
                    }
                    format!("{info:?}")
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        d.tick(last).await;
    };
    let ids = chain_ids(&info.svid_chain);
    assert_eq!(ids.first(), Some(&agent_id), "svid_chain {ids:?}");
}
