//! Message-size limits and unknown methods, as grpc-go answers them for SPIRE: a request
//! over 4 MiB is refused with RESOURCE_EXHAUSTED before anything is buffered or any caller
//! is authenticated (on the TLS port and on the admin socket), and a method no service has
//! is UNIMPLEMENTED, not PERMISSION_DENIED.

use spire_proto::spire::api::server::agent::v1 as agentv1;
use spire_proto::spire::api::server::entry::v1 as entryv1;
use spire_proto::spire::api::types;
use tonic::Code;

use crate::authz::{bundle_of, tcp_channel};
use crate::support::*;

fn attest_request(payload_len: usize) -> agentv1::AttestAgentRequest {
    agentv1::AttestAgentRequest {
        step: Some(agentv1::attest_agent_request::Step::Params(
            agentv1::attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: vec![b'x'; payload_len],
                }),
                params: None,
            },
        )),
    }
}

/// The status of an unauthenticated AttestAgent call carrying `payload_len` bytes.
async fn attest_status(
    port: u16,
    bundle: &spiffe_core::Bundle,
    payload_len: usize,
) -> tonic::Status {
    let mut client = agentv1::agent_client::AgentClient::new(tcp_channel(port, bundle, None).await);
    match client
        .attest_agent(tokio_stream::iter(vec![attest_request(payload_len)]))
        .await
    {
        Err(st) => st,
        Ok(resp) => match resp.into_inner().message().await {
            Err(st) => st,
            Ok(m) => panic!("an oversize request was answered: {m:?}"),
        },
    }
}

fn assert_oversize(st: &tonic::Status) {
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(
        st.message()
            .starts_with("grpc: received message larger than max (")
            && st.message().ends_with(" vs. 4194304)"),
        "grpc-go's message: {st:?}"
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    spire_testsupport::peak_rss_kib(pid).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_requests_are_refused_before_authentication_without_buffering() {
    let mut server = TestServer::new(None, "");
    server.start().await;
    let bundle = bundle_of(&server).await;

    // Just under the limit is read (and refused for what it says, not for its size).
    let st = attest_status(server.port, &bundle, 4 * 1024 * 1024 - 64).await;
    assert_ne!(st.code(), Code::ResourceExhausted, "{st:?}");

    // 5 MB, no client certificate.
    assert_oversize(&attest_status(server.port, &bundle, 5_000_000).await);

    // Ten concurrent 60 MB requests: all refused, and the server never holds them.
    let before = peak_rss_kib(server.pid().unwrap());
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let bundle = bundle.clone();
            let port = server.port;
            tokio::spawn(async move { attest_status(port, &bundle, 60_000_000).await })
        })
        .collect();
    for c in calls {
        assert_oversize(&c.await.unwrap());
    }
    let after = peak_rss_kib(server.pid().unwrap());
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB for requests it refused"
    );

    // The admin socket has the same limit.
    let entry = types::Entry {
        hint: "h".repeat(5_000_000),
        ..entry("", "/node", "/workload")
    };
    let st = server
        .entries()
        .await
        .batch_create_entry(entryv1::BatchCreateEntryRequest {
            entries: vec![entry],
            output_mask: None,
        })
        .await
        .unwrap_err();
    assert_oversize(&st);

    // And the server still serves.
    assert!(
        server
            .entries()
            .await
            .count_entries(entryv1::CountEntriesRequest::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn unknown_methods_are_unimplemented() {
    let mut server = TestServer::new(None, "");
    server.start().await;
    for (path, message) in [
        (
            "/spire.api.server.entry.v1.Entry/NoSuchMethod",
            "unknown method NoSuchMethod for service spire.api.server.entry.v1.Entry",
        ),
        (
            "/spire.api.server.nosuch.v1.NoSuch/Call",
            "unknown service spire.api.server.nosuch.v1.NoSuch",
        ),
    ] {
        let mut grpc = tonic::client::Grpc::new(server.channel().await);
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<
            entryv1::CountEntriesRequest,
            entryv1::CountEntriesResponse,
        >::default();
        let st = grpc
            .unary(
                tonic::Request::new(entryv1::CountEntriesRequest::default()),
                http::uri::PathAndQuery::from_static(path),
                codec,
            )
            .await
            .unwrap_err();
        assert_eq!(st.code(), Code::Unimplemented, "{path}: {st:?}");
        assert_eq!(st.message(), message);
    }
}
