//! UpstreamAuthority `spire` (nested SPIRE): this server's CA is signed by an upstream SPIRE
//! server, reached with the X509-SVID a local agent's Workload API gives this server's
//! workload (an entry marked `downstream` on the upstream side), as SPIRE 1.13 does it.
//!
//! - Minting calls the upstream's `SVID/NewDownstreamX509CA`, then `Bundle/GetBundle` for
//!   the upstream roots.
//! - Publishing a JWT key calls `Bundle/PublishJWTAuthority`; the answer is the upstream's
//!   whole JWT key set.
//! - After a mint, the upstream bundle is polled every 5 s (SPIRE's `upstreamPollFreq`)
//!   until the next mint; a change of roots or JWT keys goes to the CA manager's bundle.
//!
//! Every call fetches the current X509-SVID from the Workload API first, so agent-side
//! rotation needs nothing here; connections last for one call or one poll.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Deserialize;
use spiffe_core::bundle::{Bundle, BundleSet};
use spiffe_core::x509svid::split_der_certificates;
use spiffe_core::{SpiffeId, TrustDomain};
use spire_plugin::{
    Code, JwtKey, PluginError, PluginResult, UpstreamAuthority, UpstreamUpdates, UpstreamX509Ca,
    X509Authority,
};
use spire_proto::spire::api::server::bundle::v1 as bundlev1;
use spire_proto::spire::api::server::svid::v1 as svidv1;
use spire_proto::spire::api::types;
use spire_proto::workload::{X509svidRequest, spiffe_workload_api_client::SpiffeWorkloadApiClient};
use spire_tls::{Authorize, PeerVerifier, SharedBundles, SvidResolver};
use tokio::task::AbortHandle;
use tonic::transport::{Channel, Endpoint, Uri};

/// The plugin's name in SPIRE's catalog.
pub const PLUGIN_NAME: &str = "spire";

/// How often the upstream bundle is polled while a mint's subscription lasts.
const UPSTREAM_POLL: Duration = Duration::from_secs(5);
/// A bound on each call to the Workload API or the upstream server.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `plugin_data` of the `spire` UpstreamAuthority.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// The upstream server's host.
    #[serde(default)]
    pub server_address: String,
    /// The upstream server's port (a string, as in SPIRE).
    #[serde(default)]
    pub server_port: String,
    /// The local agent's Workload API socket.
    #[serde(default)]
    pub workload_api_socket: String,
    /// SPIRE's experimental settings.
    #[serde(default)]
    pub experimental: Experimental,
}

/// `experimental { … }`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Experimental {
    /// Windows only.
    #[serde(default)]
    pub workload_api_named_pipe_name: String,
    /// Refuse key exchanges that are not post-quantum.
    #[serde(default)]
    pub require_pq_kem: bool,
}

/// The `spire` UpstreamAuthority.
pub struct SpireUpstreamAuthority {
    trust_domain: TrustDomain,
    server_id: SpiffeId,
    server_addr: String,
    socket: PathBuf,
    poll: Mutex<Option<AbortHandle>>,
}

impl std::fmt::Debug for SpireUpstreamAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpireUpstreamAuthority")
            .field("server_addr", &self.server_addr)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Drop for SpireUpstreamAuthority {
    fn drop(&mut self) {
        if let Some(old) = self.poll.lock().take() {
            old.abort();
        }
    }
}

fn internal(message: String) -> PluginError {
    PluginError::new(Code::Internal, message)
}

/// SPIRE's gRPC error text: `rpc error: code = X desc = Y`.
fn rpc_text(s: &tonic::Status) -> String {
    spire_gocompat::grpc::status_error(s.code() as i32, s.message())
}

/// What one upstream bundle says, as the CA manager takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UpstreamBundle {
    roots: Vec<X509Authority>,
    jwt_keys: Vec<JwtKey>,
}

fn from_bundle(b: &types::Bundle) -> UpstreamBundle {
    UpstreamBundle {
        roots: b
            .x509_authorities
            .iter()
            .map(|a| X509Authority {
                der: a.asn1.clone(),
                tainted: a.tainted,
            })
            .collect(),
        jwt_keys: b.jwt_authorities.iter().map(jwt_from_api).collect(),
    }
}

fn jwt_from_api(k: &types::JwtKey) -> JwtKey {
    JwtKey {
        public_key: k.public_key.clone(),
        key_id: k.key_id.clone(),
        expires_at: k.expires_at,
        tainted: k.tainted,
    }
}

impl SpireUpstreamAuthority {
    /// Checks the configuration; nothing is dialled until the first call.
    pub fn new(config: &Config, trust_domain: TrustDomain) -> PluginResult<Self> {
        if config.workload_api_socket.is_empty() {
            return Err(PluginError::invalid_argument(
                "unable to set Workload API address: workload_api_socket must be configured",
            ));
        }
        let server_id = trust_domain
            .id_with_path("/spire/server")
            .map_err(|e| internal(format!("unable to build server ID: {e}")))?;
        if config.experimental.require_pq_kem {
            tracing::warn!(
                plugin_name = PLUGIN_NAME,
                "require_pq_kem is not supported by spire-rs; connections use the default key exchanges"
            );
        }
        Ok(Self {
            trust_domain,
            server_id,
            server_addr: format!("{}:{}", config.server_address, config.server_port),
            socket: PathBuf::from(&config.workload_api_socket),
            poll: Mutex::new(None),
        })
    }

    /// A channel to the upstream server authenticated with the Workload API's current
    /// X509-SVID, the upstream server checked as `spiffe://<td>/spire/server` against the
    /// SVID's bundle.
    async fn connect(&self) -> PluginResult<Channel> {
        let svid = tokio::time::timeout(CALL_TIMEOUT, fetch_svid(&self.socket))
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r)
            .map_err(|e| internal(format!("unable to create X509Source: {e}")))?;
        let malformed = |what: &str, e: spiffe_core::x509svid::X509SvidError| {
            internal(format!(
                "unable to create X509Source: the Workload API sent a malformed {what}: {e}"
            ))
        };
        let chain =
            split_der_certificates(&svid.x509_svid).map_err(|e| malformed("X509-SVID", e))?;
        let roots = split_der_certificates(&svid.bundle).map_err(|e| malformed("bundle", e))?;
        if chain.is_empty() || roots.is_empty() {
            return Err(internal(
                "unable to create X509Source: the Workload API sent no X509-SVID or no bundle"
                    .into(),
            ));
        }
        let resolver = SvidResolver::new();
        resolver
            .set(&chain, &svid.x509_svid_key)
            .map_err(|e| internal(format!("unable to create X509Source: {e}")))?;
        let mut set = BundleSet::new();
        let mut own = Bundle::new(self.trust_domain.clone());
        for der in roots {
            own.x509_authorities
                .push(spiffe_core::bundle::X509Authority {
                    der,
                    tainted: false,
                });
        }
        set.insert(own);
        let verifier = PeerVerifier::new(
            SharedBundles::new(set),
            Authorize::Id(self.server_id.clone()),
        );
        let config = spire_tls::client_config(verifier, Some(resolver))
            .map_err(|e| internal(format!("error applying TLS policy: {e}")))?;
        let connector = spire_tls::TlsConnector::from(config);
        let addr = self.server_addr.clone();
        let svc = tower::service_fn(move |_: Uri| {
            let addr = addr.clone();
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(spire_tls::server_name(), tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        Ok(Endpoint::from_static("http://upstream")
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect_with_connector_lazy(svc))
    }

    async fn get_bundle(&self, channel: Channel) -> Result<types::Bundle, String> {
        bundlev1::bundle_client::BundleClient::new(channel)
            .get_bundle(bundlev1::GetBundleRequest::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("failed to get bundle: {}", rpc_text(&s)))
    }

    /// Polls the upstream bundle until the next mint, telling `updates` of changes.
    fn start_polling(self: &Arc<Self>, seen: UpstreamBundle, updates: Arc<dyn UpstreamUpdates>) {
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut seen = seen;
            loop {
                tokio::time::sleep(UPSTREAM_POLL).await;
                let Some(me) = me.upgrade() else { return };
                let fetched = match me.connect().await {
                    Ok(ch) => me.get_bundle(ch).await,
                    Err(e) => Err(e.message),
                };
                match fetched {
                    Ok(b) => {
                        let now = from_bundle(&b);
                        if now.roots != seen.roots && !now.roots.is_empty() {
                            updates.x509_roots(now.roots.clone());
                        }
                        if now.jwt_keys != seen.jwt_keys {
                            updates.jwt_keys(now.jwt_keys.clone());
                        }
                        seen = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, plugin_name = PLUGIN_NAME, "Failed to fetch bundle while polling");
                    }
                }
            }
        });
        if let Some(old) = self.poll.lock().replace(task.abort_handle()) {
            old.abort();
        }
    }
}

/// The first X509-SVID the Workload API gives this process (what go-spiffe's X509Source
/// uses by default).
async fn fetch_svid(socket: &std::path::Path) -> Result<spire_proto::workload::X509svid, String> {
    let path = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let s = tokio::net::UnixStream::connect(&path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(s))
        }
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("dial unix {}: {e}", socket.display()))?;
    let mut request = tonic::Request::new(X509svidRequest::default());
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut stream = SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(request)
        .await
        .map_err(|s| rpc_text(&s))?
        .into_inner();
    let first = stream
        .message()
        .await
        .map_err(|s| rpc_text(&s))?
        .ok_or_else(|| "the Workload API closed the stream".to_string())?;
    first
        .svids
        .into_iter()
        .next()
        .ok_or_else(|| "no X509-SVID in the Workload API's answer".to_string())
}

/// The plugin behind an `Arc`, as the catalog holds it (polling needs a weak handle).
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<SpireUpstreamAuthority>);

#[async_trait]
impl UpstreamAuthority for Shared {
    async fn mint_x509_ca(
        &self,
        csr: &[u8],
        preferred_ttl_secs: i32,
        updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamX509Ca> {
        let me = &self.0;
        let channel = me.connect().await?;
        let resp = svidv1::svid_client::SvidClient::new(channel.clone())
            .new_downstream_x509ca(svidv1::NewDownstreamX509caRequest {
                csr: csr.to_vec(),
                preferred_ttl: preferred_ttl_secs,
            })
            .await
            .map_err(|s| {
                internal(format!(
                    "unable to request a new Downstream X509CA: {}",
                    rpc_text(&s)
                ))
            })?
            .into_inner();
        let bundle = me
            .get_bundle(channel)
            .await
            .map_err(|e| internal(format!("failed to fetch bundle from upstream server: {e}")))?;
        let seen = from_bundle(&bundle);
        let roots: Vec<Vec<u8>> = seen.roots.iter().map(|r| r.der.clone()).collect();
        me.start_polling(seen, updates);
        Ok(UpstreamX509Ca {
            x509_ca_chain: resp.ca_cert_chain,
            upstream_x509_roots: roots,
        })
    }

    async fn publish_jwt_key(
        &self,
        key: &JwtKey,
        _updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<Vec<JwtKey>> {
        let channel = self.0.connect().await?;
        let resp = bundlev1::bundle_client::BundleClient::new(channel)
            .publish_jwt_authority(bundlev1::PublishJwtAuthorityRequest {
                jwt_authority: Some(types::JwtKey {
                    public_key: key.public_key.clone(),
                    key_id: key.key_id.clone(),
                    expires_at: key.expires_at,
                    tainted: key.tainted,
                }),
            })
            .await
            .map_err(|s| internal(format!("failed to push JWT authority: {}", rpc_text(&s))))?
            .into_inner();
        Ok(resp.jwt_authorities.iter().map(jwt_from_api).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Ignore;

    impl UpstreamUpdates for Ignore {
        fn x509_roots(&self, _roots: Vec<X509Authority>) {}
        fn jwt_keys(&self, _keys: Vec<JwtKey>) {}
    }

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn a_workload_api_socket_is_required() {
        let err = SpireUpstreamAuthority::new(&Config::default(), td()).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        assert_eq!(
            err.message,
            "unable to set Workload API address: workload_api_socket must be configured"
        );
    }

    #[tokio::test]
    async fn no_agent_on_the_socket_fails_the_mint_before_any_upstream_call() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("missing.sock");
        let config = Config {
            server_address: "127.0.0.1".into(),
            server_port: "1".into(),
            workload_api_socket: socket.display().to_string(),
            ..Config::default()
        };
        let plugin = Shared(Arc::new(
            SpireUpstreamAuthority::new(&config, td()).unwrap(),
        ));
        let err = plugin
            .mint_x509_ca(b"csr", 0, Arc::new(Ignore))
            .await
            .unwrap_err();
        assert_eq!(err.code, Code::Internal);
        assert!(
            err.message.starts_with(&format!(
                "unable to create X509Source: dial unix {}",
                socket.display()
            )),
            "{}",
            err.message
        );
        let key = JwtKey {
            public_key: vec![],
            key_id: "k".into(),
            expires_at: 0,
            tainted: false,
        };
        let err = plugin
            .publish_jwt_key(&key, Arc::new(Ignore))
            .await
            .unwrap_err();
        assert!(
            err.message.starts_with("unable to create X509Source: "),
            "{}",
            err.message
        );
    }
}
