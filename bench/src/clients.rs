//! gRPC clients on the real sockets and ports: the server's admin socket, its agent-facing
//! TLS port (as an attested agent), and an agent's Workload API socket.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use hyper_util::rt::TokioIo;
use spiffe_core::bundle::BundleSet;
use spiffe_core::{Bundle, KeyType, PrivateKey, SpiffeId, TrustDomain};
use spire_proto::spire::api::server::agent::v1 as agentv1;
use spire_proto::spire::api::server::bundle::v1 as bundlev1;
use spire_proto::spire::api::server::entry::v1 as entryv1;
use spire_proto::spire::api::types;
use spire_proto::workload;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spire_tls::{Authorize, PeerVerifier, SharedBundles, SvidResolver, TlsConnector};
use tokio::net::{TcpStream, UnixStream};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::procs::TRUST_DOMAIN;

/// Largest message any client accepts (a 100 000-entry list page is far below this).
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

/// How long one RPC may take before the run fails.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(120);

/// Awaits `fut` with [`RPC_TIMEOUT`].
pub(crate) async fn timed<T>(
    what: &str,
    fut: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(status)) => bail!("{what}: {} {}", status.code(), status.message()),
        Err(_) => bail!("{what}: no answer in {} s", RPC_TIMEOUT.as_secs()),
    }
}

/// A connected channel over the UNIX socket at `path`.
pub(crate) async fn uds_channel(path: &Path) -> Result<Channel> {
    let path = path.to_path_buf();
    Ok(Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await?)
}

/// `spiffe://example.org<path>`.
pub(crate) fn spiffe_id(path: &str) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: TRUST_DOMAIN.into(),
        path: path.into(),
    }
}

/// The SPIFFE ID SPIRE gives an agent attested with `token`.
pub(crate) fn join_token_agent_path(token: &str) -> String {
    format!("/spire/agent/join_token/{token}")
}

/// The uid of this process: the unix attestor reports it for our Workload API calls.
pub(crate) fn my_uid() -> Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// The selector that matches this process as a workload.
pub(crate) fn workload_selector() -> Result<types::Selector> {
    Ok(types::Selector {
        r#type: "unix".into(),
        value: format!("uid:{}", my_uid()?),
    })
}

/// A selector no process here has.
pub(crate) fn unmatched_selector(i: usize) -> types::Selector {
    types::Selector {
        r#type: "unix".into(),
        value: format!("uid:{}", 1_000_000 + i),
    }
}

/// An entry for `spiffe_path` under `parent_path` with `selector`.
pub(crate) fn entry(
    parent_path: &str,
    spiffe_path: &str,
    selector: types::Selector,
) -> types::Entry {
    types::Entry {
        parent_id: Some(spiffe_id(parent_path)),
        spiffe_id: Some(spiffe_id(spiffe_path)),
        selectors: vec![selector],
        ..Default::default()
    }
}

/// Admin clients on a server's UNIX socket.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    channel: Channel,
}

impl Admin {
    pub(crate) async fn connect(socket: &Path) -> Result<Self> {
        Ok(Self {
            channel: uds_channel(socket).await?,
        })
    }

    fn entries(&self) -> entryv1::entry_client::EntryClient<Channel> {
        entryv1::entry_client::EntryClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// A join token valid for a day.
    pub(crate) async fn join_token(&self) -> Result<String> {
        let mut c = agentv1::agent_client::AgentClient::new(self.channel.clone());
        let t = timed(
            "CreateJoinToken",
            c.create_join_token(agentv1::CreateJoinTokenRequest {
                ttl: 86_400,
                ..Default::default()
            }),
        )
        .await?
        .into_inner();
        Ok(t.value)
    }

    /// A join token and one entry under its agent ID that matches this process as a
    /// workload; returns the token, the agent's ID path and the workload selector.
    pub(crate) async fn token_with_workload_entry(
        &self,
        path: &str,
    ) -> Result<(String, String, types::Selector)> {
        let token = self.join_token().await?;
        let parent = join_token_agent_path(&token);
        let selector = workload_selector()?;
        self.create_entries(vec![entry(&parent, path, selector.clone())])
            .await?;
        Ok((token, parent, selector))
    }

    /// Deletes every attested agent (so that an attestor that trusts on first use lets the
    /// same node attest again); returns how many there were.
    pub(crate) async fn delete_all_agents(&self) -> Result<usize> {
        let mut c = agentv1::agent_client::AgentClient::new(self.channel.clone());
        let agents = timed(
            "ListAgents",
            c.list_agents(agentv1::ListAgentsRequest::default()),
        )
        .await?
        .into_inner()
        .agents;
        for a in &agents {
            timed(
                "DeleteAgent",
                c.delete_agent(agentv1::DeleteAgentRequest { id: a.id.clone() }),
            )
            .await?;
        }
        Ok(agents.len())
    }

    /// Creates `entries` in one BatchCreateEntry call; returns their IDs in order.
    pub(crate) async fn create_entries(&self, entries: Vec<types::Entry>) -> Result<Vec<String>> {
        let resp = timed(
            "BatchCreateEntry",
            self.entries()
                .batch_create_entry(entryv1::BatchCreateEntryRequest {
                    entries,
                    output_mask: None,
                }),
        )
        .await?
        .into_inner();
        let mut ids = Vec::with_capacity(resp.results.len());
        for r in resp.results {
            if let Some(s) = r.status.as_ref()
                && s.code != 0
            {
                bail!("BatchCreateEntry: entry rejected: {} {}", s.code, s.message);
            }
            ids.push(r.entry.map(|e| e.id).unwrap_or_default());
        }
        Ok(ids)
    }

    /// Creates `entries` in batches of `batch`.
    pub(crate) async fn create_entries_batched(
        &self,
        entries: impl IntoIterator<Item = types::Entry>,
        batch: usize,
    ) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut pending = Vec::with_capacity(batch);
        for e in entries {
            pending.push(e);
            if pending.len() == batch {
                ids.extend(self.create_entries(std::mem::take(&mut pending)).await?);
            }
        }
        if !pending.is_empty() {
            ids.extend(self.create_entries(pending).await?);
        }
        Ok(ids)
    }

    /// CountEntries with no filter.
    pub(crate) async fn count_entries(&self) -> Result<usize> {
        let resp = timed(
            "CountEntries",
            self.entries()
                .count_entries(entryv1::CountEntriesRequest::default()),
        )
        .await?;
        Ok(usize::try_from(resp.get_ref().count).unwrap_or(0))
    }

    /// ListEntries of everything in pages of `page_size`; returns how many were listed and
    /// the bytes of the response messages.
    pub(crate) async fn list_all(&self, page_size: i32) -> Result<(usize, usize)> {
        use prost::Message as _;
        let mut c = self.entries();
        let mut token = String::new();
        let (mut listed, mut bytes) = (0, 0);
        loop {
            let resp = timed(
                "ListEntries",
                c.list_entries(entryv1::ListEntriesRequest {
                    page_size,
                    page_token: token.clone(),
                    ..Default::default()
                }),
            )
            .await?
            .into_inner();
            bytes += resp.encoded_len();
            listed += resp.entries.len();
            if resp.next_page_token.is_empty() || resp.entries.is_empty() {
                return Ok((listed, bytes));
            }
            token = resp.next_page_token;
        }
    }

    /// The IDs of every entry (ListEntries, pages of 1000).
    pub(crate) async fn entry_ids(&self) -> Result<std::collections::HashSet<String>> {
        let mut ids = std::collections::HashSet::new();
        let mut page_token = String::new();
        loop {
            let resp = timed(
                "ListEntries",
                self.entries().list_entries(entryv1::ListEntriesRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                }),
            )
            .await?
            .into_inner();
            ids.extend(resp.entries.into_iter().map(|e| e.id));
            if resp.next_page_token.is_empty() {
                return Ok(ids);
            }
            page_token = resp.next_page_token;
        }
    }

    /// The first page of ListEntries with `page_size` entries; how many came.
    pub(crate) async fn list_page(&self, page_size: i32) -> Result<usize> {
        let resp = timed(
            "ListEntries",
            self.entries().list_entries(entryv1::ListEntriesRequest {
                page_size,
                ..Default::default()
            }),
        )
        .await?;
        Ok(resp.get_ref().entries.len())
    }

    /// The server's trust bundle.
    pub(crate) async fn bundle(&self) -> Result<Bundle> {
        let mut c = bundlev1::bundle_client::BundleClient::new(self.channel.clone());
        let b = timed(
            "GetBundle",
            c.get_bundle(bundlev1::GetBundleRequest::default()),
        )
        .await?
        .into_inner();
        let mut out = Bundle::new(TrustDomain::new(TRUST_DOMAIN)?);
        for a in b.x509_authorities {
            out.add_x509_authority(a.asn1);
        }
        Ok(out)
    }
}

/// A lazily connecting channel to `address` doing TCP + TLS with `connector`.
fn tls_channel(address: &str, connector: TlsConnector) -> Result<Channel> {
    let address = address.to_string();
    Ok(Endpoint::try_from("http://spire-server")?
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let address = address.clone();
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(&address).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(spire_tls::server_name(), tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })))
}

fn connector(bundle: &Bundle, svid: Option<&AgentSvid>) -> Result<TlsConnector> {
    let mut set = BundleSet::new();
    set.insert(bundle.clone());
    let server_id = SpiffeId::parse(&format!("spiffe://{TRUST_DOMAIN}/spire/server"))?;
    let verifier = PeerVerifier::new(SharedBundles::new(set), Authorize::Id(server_id));
    let resolver = match svid {
        Some(s) => {
            let r = SvidResolver::new();
            r.set(&s.chain, &s.pkcs8)?;
            Some(r)
        }
        None => None,
    };
    Ok(TlsConnector::from(spire_tls::client_config(
        verifier, resolver,
    )?))
}

/// An agent SVID obtained by join-token attestation.
#[derive(Debug, Clone)]
pub(crate) struct AgentSvid {
    pub(crate) chain: Vec<Vec<u8>>,
    pub(crate) pkcs8: Vec<u8>,
    /// `/spire/agent/join_token/<token>`.
    pub(crate) path: String,
}

/// Attests as an agent with `token` over the server's TLS port (`Agent/AttestAgent`, the
/// join_token exchange: one message each way).
pub(crate) async fn attest(address: &str, bundle: &Bundle, token: &str) -> Result<AgentSvid> {
    use agentv1::attest_agent_request::{Params, Step};
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let pkcs8 = key.pkcs8_der().to_vec();
    let csr = spire_pki::make_csr(key, None)?;
    let ch = tls_channel(address, connector(bundle, None)?)?;
    let mut client = agentv1::agent_client::AgentClient::new(ch);
    let first = agentv1::AttestAgentRequest {
        step: Some(Step::Params(Params {
            data: Some(types::AttestationData {
                r#type: "join_token".into(),
                payload: token.as_bytes().to_vec(),
            }),
            params: Some(agentv1::AgentX509svidParams { csr }),
        })),
    };
    let mut stream = timed(
        "AttestAgent",
        client.attest_agent(tokio_stream::iter([first])),
    )
    .await?
    .into_inner();
    let resp = timed("AttestAgent", stream.message())
        .await?
        .context("AttestAgent: empty response")?;
    let Some(agentv1::attest_agent_response::Step::Result(result)) = resp.step else {
        bail!("AttestAgent: unexpected challenge for a join token");
    };
    let svid = result.svid.context("AttestAgent: no SVID")?;
    Ok(AgentSvid {
        chain: svid.cert_chain,
        pkcs8,
        path: join_token_agent_path(token),
    })
}

/// A new mutual-TLS channel to the server presenting `svid` (its own HTTP/2 connection).
pub(crate) fn agent_channel(address: &str, bundle: &Bundle, svid: &AgentSvid) -> Result<Channel> {
    tls_channel(address, connector(bundle, Some(svid))?)
}

/// A Workload API client type: every call carries `workload.spiffe.io: true`.
pub(crate) type WorkloadClient = SpiffeWorkloadApiClient<
    InterceptedService<
        Channel,
        fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
    >,
>;

fn workload_header(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    req.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    Ok(req)
}

/// A Workload API client on its own connection to the agent socket.
pub(crate) async fn workload_client(socket: &Path) -> Result<WorkloadClient> {
    let ch = uds_channel(socket).await?;
    let f: fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> = workload_header;
    Ok(SpiffeWorkloadApiClient::with_interceptor(ch, f).max_decoding_message_size(MAX_MESSAGE))
}

/// The SPIFFE IDs of the first FetchX509SVID message (the stream is dropped after it).
pub(crate) async fn fetch_x509_ids(client: &mut WorkloadClient) -> Result<Vec<String>> {
    let mut stream = timed(
        "FetchX509SVID",
        client.fetch_x509svid(workload::X509svidRequest {}),
    )
    .await?
    .into_inner();
    let msg = timed("FetchX509SVID", stream.message())
        .await?
        .context("FetchX509SVID: stream ended")?;
    Ok(msg.svids.into_iter().map(|s| s.spiffe_id).collect())
}

/// Polls the Workload API until the first FetchX509SVID message satisfies `done`
/// (connection errors and "no identity issued" are retried); fails after `timeout`.
pub(crate) async fn wait_for_svids(
    socket: &Path,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: String;
    loop {
        match workload_client(socket).await {
            Ok(mut c) => match fetch_x509_ids(&mut c).await {
                Ok(ids) if done(&ids) => return Ok(()),
                Ok(ids) => last = format!("{} SVIDs so far", ids.len()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the workload did not get its SVIDs within {} s ({last})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `spiffe://example.org<path>` as a string, as the Workload API reports it.
pub(crate) fn id_string(path: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}{path}")
}
