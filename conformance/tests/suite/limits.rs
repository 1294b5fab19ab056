//! What every listener does with a request over gRPC's 4 MiB limit, and with a method no
//! service has. SPIRE sets no message-size options, so grpc-go's defaults answer:
//! RESOURCE_EXHAUSTED ("grpc: received message larger than max (N vs. 4194304)") before
//! authentication, on the TLS port (an AttestAgent stream of 5 MB or 60 MB with no client
//! certificate: grpc-go answers this itself, whatever SPIRE's handler then logs), the admin
//! socket and the Workload API; the server's memory does not grow with what it refused. A
//! method no service has is UNIMPLEMENTED.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use spire_proto::spire::api::server::agent::v1 as agentv1;
use spire_proto::spire::api::server::entry::v1 as entryv1;
use spire_proto::spire::api::types;
use spire_proto::workload::JwtsvidRequest;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::support::workload::uds_channel;
use crate::support::{
    AgentOpts, Scenario, ServerOpts, agent_subject, id, join_token_pair, server_subject,
};

/// An unauthenticated channel to the server's TLS port (the server's chain is not checked:
/// the caller has no bundle, as an agent before attestation with insecure bootstrap).
async fn tls_channel(port: u16) -> Channel {
    let server_id = spiffe_core::SpiffeId::parse(&id("/spire/server")).unwrap();
    let verifier = spire_tls::PeerVerifier::insecure_bootstrap(server_id);
    let connector =
        spire_tls::TlsConnector::from(spire_tls::client_config(verifier, None).unwrap());
    let address = format!("127.0.0.1:{port}");
    Endpoint::try_from("http://127.0.0.1")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let address = address.clone();
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(&address).await?;
                let tls = connector.connect(spire_tls::server_name(), tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}

async fn attest_status(port: u16, payload_len: usize) -> tonic::Status {
    let request = agentv1::AttestAgentRequest {
        step: Some(agentv1::attest_agent_request::Step::Params(
            agentv1::attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: vec![b'x'; payload_len],
                }),
                params: None,
            },
        )),
    };
    let mut client = agentv1::agent_client::AgentClient::new(tls_channel(port).await);
    match client
        .attest_agent(futures::stream::iter(vec![request]))
        .await
    {
        Err(st) => st,
        Ok(resp) => match resp.into_inner().message().await {
            Err(st) => st,
            Ok(m) => panic!("an oversize request was answered: {m:?}"),
        },
    }
}

fn assert_exhausted(what: &str, st: &tonic::Status) {
    assert_eq!(st.code(), Code::ResourceExhausted, "{what}: {st:?}");
    assert!(
        st.message()
            .starts_with("grpc: received message larger than max (")
            && st.message().ends_with(" vs. 4194304)"),
        "{what}: {st:?}"
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    spire_testsupport::peak_rss_kib(pid).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn oversize_messages_and_unknown_methods() {
    let sc = Scenario::new("limits::oversize_messages_and_unknown_methods");
    let (server, agent, _agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts::default(),
    )
    .await;

    // TLS port, no client certificate: AttestAgent streams of 5 MB and 60 MB.
    assert_exhausted(
        "AttestAgent 5 MB",
        &attest_status(server.port, 5_000_000).await,
    );
    let pid = server.pid().unwrap();
    let before = peak_rss_kib(pid);
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let port = server.port;
            tokio::spawn(async move { attest_status(port, 60_000_000).await })
        })
        .collect();
    for c in calls {
        assert_exhausted("AttestAgent 60 MB", &c.await.unwrap());
    }
    let after = peak_rss_kib(pid);
    eprintln!("limits: server peak RSS {before} KiB -> {after} KiB after 10 x 60 MB");
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB for requests it refused"
    );

    // Admin socket, unary: 5 MB BatchCreateEntry.
    let mut entries =
        entryv1::entry_client::EntryClient::new(uds_channel(&server.socket).await.unwrap());
    let st = entries
        .batch_create_entry(entryv1::BatchCreateEntryRequest {
            entries: vec![types::Entry {
                hint: "h".repeat(5_000_000),
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap_err();
    assert_exhausted("admin BatchCreateEntry", &st);

    // Admin socket: a method no service has.
    let mut grpc = tonic::client::Grpc::new(uds_channel(&server.socket).await.unwrap());
    grpc.ready().await.unwrap();
    let st =
        grpc
            .unary(
                tonic::Request::new(entryv1::CountEntriesRequest::default()),
                http::uri::PathAndQuery::from_static(
                    "/spire.api.server.entry.v1.Entry/NoSuchMethod",
                ),
                tonic_prost::ProstCodec::<
                    entryv1::CountEntriesRequest,
                    entryv1::CountEntriesResponse,
                >::default(),
            )
            .await
            .unwrap_err();
    assert_eq!(st.code(), Code::Unimplemented, "{st:?}");

    // Workload API: a 5 MB FetchJWTSVID.
    let mut wl = SpiffeWorkloadApiClient::new(uds_channel(&agent.socket).await.unwrap());
    let mut req = tonic::Request::new(JwtsvidRequest {
        audience: vec!["a".repeat(5_000_000)],
        spiffe_id: String::new(),
    });
    req.metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    req.set_timeout(Duration::from_secs(30));
    let st = wl.fetch_jwtsvid(req).await.unwrap_err();
    assert_exhausted("Workload API FetchJWTSVID", &st);

    // Both still serve.
    assert!(
        entries
            .count_entries(entryv1::CountEntriesRequest::default())
            .await
            .is_ok()
    );
}
