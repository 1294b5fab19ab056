//! Authorization on the agent-facing TCP listener: an attested agent may do what SPIRE lets
//! agents do and nothing more; a caller without an agent SVID may only attest.

use hyper_util::rt::TokioIo;
use spiffe_core::{Bundle, KeyType, PrivateKey, SpiffeId, TrustDomain};
use spire_proto::spire::api::server::agent::v1 as agentv1;
use spire_proto::spire::api::server::bundle::v1::GetBundleRequest;
use spire_proto::spire::api::server::entry::v1 as entryv1;
use spire_proto::spire::api::server::svid::v1 as svidv1;
use spire_proto::spire::api::types;
use spire_tls::{Authorize, PeerVerifier, SharedBundles, SvidResolver, TlsConnector};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::support::*;

/// A channel to the server's TCP port that trusts `bundle` and presents `svid` if given.
pub(crate) async fn tcp_channel(
    port: u16,
    bundle: &Bundle,
    svid: Option<(&[Vec<u8>], &PrivateKey)>,
) -> Channel {
    let mut set = spiffe_core::BundleSet::new();
    set.insert(bundle.clone());
    let server_id = SpiffeId::parse("spiffe://example.org/spire/server").unwrap();
    let verifier = PeerVerifier::new(SharedBundles::new(set), Authorize::Id(server_id));
    let resolver = svid.map(|(chain, key)| {
        let r = SvidResolver::new();
        r.set(chain, key.pkcs8_der()).unwrap();
        r
    });
    let connector = TlsConnector::from(spire_tls::client_config(verifier, resolver).unwrap());
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

pub(crate) fn csr_for(key: &PrivateKey, id: Option<&SpiffeId>) -> Vec<u8> {
    spire_pki::make_csr(PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap(), id).unwrap()
}

/// Attests with a fresh join token; returns the agent's SVID chain, key and ID.
pub(crate) async fn attest(
    server: &TestServer,
    bundle: &Bundle,
) -> (Vec<Vec<u8>>, PrivateKey, String) {
    let token = server
        .agents()
        .await
        .create_join_token(agentv1::CreateJoinTokenRequest {
            ttl: 600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let request = agentv1::AttestAgentRequest {
        step: Some(agentv1::attest_agent_request::Step::Params(
            agentv1::attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: token.clone().into_bytes(),
                }),
                params: Some(agentv1::AgentX509svidParams {
                    csr: csr_for(&key, None),
                }),
            },
        )),
    };
    let mut client =
        agentv1::agent_client::AgentClient::new(tcp_channel(server.port, bundle, None).await);
    let mut responses = client
        .attest_agent(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(agentv1::attest_agent_response::Step::Result(result)) = response.step else {
        panic!("expected an attestation result, got {response:?}");
    };
    let svid = result.svid.unwrap();
    (
        svid.cert_chain,
        key,
        format!("/spire/agent/join_token/{token}"),
    )
}

pub(crate) async fn bundle_of(server: &TestServer) -> Bundle {
    let b = server
        .bundles()
        .await
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut out = Bundle::new(TrustDomain::new("example.org").unwrap());
    for a in &b.x509_authorities {
        out.add_x509_authority(a.asn1.clone());
    }
    out
}

fn denied_for(status: &tonic::Status, method: &str) {
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        format!("authorization denied for method {method}")
    );
}

#[tokio::test]
async fn agents_and_anonymous_callers_get_only_what_spire_allows() {
    let mut server = TestServer::new(None, "");
    server.start().await;
    let bundle = bundle_of(&server).await;
    let (chain, key, agent_path) = attest(&server, &bundle).await;

    // One entry the agent is authorized for, one under another parent.
    let created = server
        .entries()
        .await
        .batch_create_entry(entryv1::BatchCreateEntryRequest {
            entries: vec![
                entry("", &agent_path, "/mine"),
                entry("", "/spire/agent/join_token/someone-else", "/theirs"),
            ],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = created
        .results
        .iter()
        .map(|r| r.entry.as_ref().unwrap().id.clone())
        .collect();
    let (mine, theirs) = (ids[0].clone(), ids[1].clone());

    let agent = tcp_channel(server.port, &bundle, Some((&chain, &key))).await;

    // Admin RPCs are refused to an agent.
    let err = entryv1::entry_client::EntryClient::new(agent.clone())
        .list_entries(entryv1::ListEntriesRequest::default())
        .await
        .unwrap_err();
    denied_for(&err, "/spire.api.server.entry.v1.Entry/ListEntries");
    let err = agentv1::agent_client::AgentClient::new(agent.clone())
        .create_join_token(agentv1::CreateJoinTokenRequest {
            ttl: 60,
            ..Default::default()
        })
        .await
        .unwrap_err();
    denied_for(&err, "/spire.api.server.agent.v1.Agent/CreateJoinToken");
    let err = svidv1::svid_client::SvidClient::new(agent.clone())
        .mint_x509svid(svidv1::MintX509svidRequest {
            csr: csr_for(
                &key,
                Some(&SpiffeId::parse("spiffe://example.org/mine").unwrap()),
            ),
            ttl: 60,
        })
        .await
        .unwrap_err();
    denied_for(&err, "/spire.api.server.svid.v1.SVID/MintX509SVID");

    // The agent sees only its own entry and gets an SVID only for it.
    let authorized = entryv1::entry_client::EntryClient::new(agent.clone())
        .get_authorized_entries(entryv1::GetAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<&str> = authorized.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(seen, vec![mine.as_str()]);

    let workload_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let results = svidv1::svid_client::SvidClient::new(agent.clone())
        .batch_new_x509svid(svidv1::BatchNewX509svidRequest {
            params: vec![
                svidv1::NewX509svidParams {
                    entry_id: mine.clone(),
                    csr: csr_for(&workload_key, None),
                },
                svidv1::NewX509svidParams {
                    entry_id: theirs.clone(),
                    csr: csr_for(&workload_key, None),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 2);
    let ok = &results[0];
    assert_eq!(ok.status.as_ref().unwrap().code, 0, "{ok:?}");
    assert_eq!(ok.svid.as_ref().unwrap().id, pid("/mine"));
    let refused = results[1].status.as_ref().unwrap();
    assert_eq!(refused.code, tonic::Code::NotFound as i32);
    assert_eq!(refused.message, "entry not found or not authorized");
    assert!(results[1].svid.is_none());

    let err = svidv1::svid_client::SvidClient::new(agent.clone())
        .new_jwtsvid(svidv1::NewJwtsvidRequest {
            entry_id: theirs.clone(),
            audience: vec!["aud".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "entry not found or not authorized");

    // Without an agent SVID, agent RPCs are refused; bundle reads are open to anyone.
    let anonymous = tcp_channel(server.port, &bundle, None).await;
    let err = entryv1::entry_client::EntryClient::new(anonymous.clone())
        .get_authorized_entries(entryv1::GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    denied_for(
        &err,
        "/spire.api.server.entry.v1.Entry/GetAuthorizedEntries",
    );
    let err = svidv1::svid_client::SvidClient::new(anonymous.clone())
        .batch_new_x509svid(svidv1::BatchNewX509svidRequest {
            params: vec![svidv1::NewX509svidParams {
                entry_id: mine.clone(),
                csr: csr_for(&workload_key, None),
            }],
        })
        .await
        .unwrap_err();
    denied_for(&err, "/spire.api.server.svid.v1.SVID/BatchNewX509SVID");
    spire_proto::spire::api::server::bundle::v1::bundle_client::BundleClient::new(anonymous)
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap();

    // A banned agent is refused with SPIRE's details.
    server
        .agents()
        .await
        .ban_agent(agentv1::BanAgentRequest {
            id: pid(&agent_path),
        })
        .await
        .unwrap();
    let err = entryv1::entry_client::EntryClient::new(agent)
        .get_authorized_entries(entryv1::GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    denied_for(
        &err,
        "/spire.api.server.entry.v1.Entry/GetAuthorizedEntries",
    );
    assert_eq!(
        denied_reason(&err),
        Some(types::permission_denied_details::Reason::AgentBanned)
    );
}

/// `google.rpc.Status`, to read the details SPIRE attaches to a denial.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

fn denied_reason(status: &tonic::Status) -> Option<types::permission_denied_details::Reason> {
    use prost::Message as _;
    let rpc = RpcStatus::decode(status.details()).ok()?;
    rpc.details.iter().find_map(|any| {
        let d = types::PermissionDeniedDetails::decode(any.value.as_slice()).ok()?;
        types::permission_denied_details::Reason::try_from(d.reason).ok()
    })
}
