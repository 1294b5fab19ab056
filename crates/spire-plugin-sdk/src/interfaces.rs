//! The plugin interfaces beyond the attestors, each over its `spire-plugin` trait: the
//! server's UpstreamAuthority, Notifier, BundlePublisher and CredentialComposer, and the
//! agent's SVIDStore. Messages are converted by `spire-plugin-wire`, as the host converts
//! them.

use std::sync::Arc;

use spiffe_core::{PublicKey, SpiffeId};
use spire_plugin::{
    BundlePublisher, CredentialComposer, JwtKey, Notifier, SvidStore, UpstreamAuthority,
    UpstreamUpdates, X509Authority,
};
use spire_plugin_wire::bundle::{bundle_from_proto, jwt_key_from_proto, jwt_key_to_proto};
use spire_plugin_wire::composer as wire;
use spire_proto::spire::plugin::agent::svidstore::v1 as ss;
use spire_proto::spire::plugin::server::bundlepublisher::v1 as bp;
use spire_proto::spire::plugin::server::credentialcomposer::v1 as cc;
use spire_proto::spire::plugin::server::notifier::v1 as nt;
use spire_proto::spire::plugin::server::upstreamauthority::v1 as ua;
use spire_proto::spire::plugin::types;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::services::{BoxStream, status};

fn missing_bundle() -> Status {
    Status::invalid_argument("missing bundle")
}

// === Notifier ===

struct NotifierService(Arc<dyn Notifier>);

#[tonic::async_trait]
impl nt::notifier_server::Notifier for NotifierService {
    async fn notify(
        &self,
        request: Request<nt::NotifyRequest>,
    ) -> Result<Response<nt::NotifyResponse>, Status> {
        match request.into_inner().event {
            Some(nt::notify_request::Event::BundleUpdated(e)) => {
                let bundle = e.bundle.ok_or_else(missing_bundle)?;
                self.0
                    .bundle_updated(&bundle_from_proto(bundle))
                    .await
                    .map_err(status)?;
            }
            // An event this SDK does not know: nothing to do, as SPIRE's SDK plugins answer.
            None => {}
        }
        Ok(Response::new(nt::NotifyResponse {}))
    }

    async fn notify_and_advise(
        &self,
        request: Request<nt::NotifyAndAdviseRequest>,
    ) -> Result<Response<nt::NotifyAndAdviseResponse>, Status> {
        match request.into_inner().event {
            Some(nt::notify_and_advise_request::Event::BundleLoaded(e)) => {
                let bundle = e.bundle.ok_or_else(missing_bundle)?;
                self.0
                    .bundle_loaded(&bundle_from_proto(bundle))
                    .await
                    .map_err(status)?;
            }
            None => {}
        }
        Ok(Response::new(nt::NotifyAndAdviseResponse {}))
    }
}

pub(crate) fn notifier(p: Arc<dyn Notifier>) -> (&'static str, Routes) {
    (
        "spire.plugin.server.notifier.v1.Notifier",
        Routes::new(nt::notifier_server::NotifierServer::new(NotifierService(p))),
    )
}

// === BundlePublisher ===

struct BundlePublisherService(Arc<dyn BundlePublisher>);

#[tonic::async_trait]
impl bp::bundle_publisher_server::BundlePublisher for BundlePublisherService {
    async fn publish_bundle(
        &self,
        request: Request<bp::PublishBundleRequest>,
    ) -> Result<Response<bp::PublishBundleResponse>, Status> {
        let bundle = request.into_inner().bundle.ok_or_else(missing_bundle)?;
        self.0
            .publish_bundle(&bundle_from_proto(bundle))
            .await
            .map_err(status)?;
        Ok(Response::new(bp::PublishBundleResponse {}))
    }
}

pub(crate) fn bundle_publisher(p: Arc<dyn BundlePublisher>) -> (&'static str, Routes) {
    (
        "spire.plugin.server.bundlepublisher.v1.BundlePublisher",
        Routes::new(bp::bundle_publisher_server::BundlePublisherServer::new(
            BundlePublisherService(p),
        )),
    )
}

// === CredentialComposer ===

struct CredentialComposerService(Arc<dyn CredentialComposer>);

fn invalid(what: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid {what}: {e}"))
}

fn id_and_key(spiffe_id: &str, public_key: &[u8]) -> Result<(SpiffeId, PublicKey), Status> {
    let id = SpiffeId::parse(spiffe_id).map_err(|e| invalid("SPIFFE ID", e))?;
    let key = PublicKey::from_spki_der(public_key).map_err(|e| invalid("public key", e))?;
    Ok((id, key))
}

#[tonic::async_trait]
impl cc::credential_composer_server::CredentialComposer for CredentialComposerService {
    async fn compose_server_x509ca(
        &self,
        request: Request<cc::ComposeServerX509caRequest>,
    ) -> Result<Response<cc::ComposeServerX509caResponse>, Status> {
        let a = wire::ca_from_proto(request.into_inner().attributes).map_err(status)?;
        let a = self.0.compose_server_x509_ca(a).await.map_err(status)?;
        Ok(Response::new(cc::ComposeServerX509caResponse {
            attributes: Some(wire::ca_to_proto(a)),
        }))
    }

    async fn compose_server_x509svid(
        &self,
        request: Request<cc::ComposeServerX509svidRequest>,
    ) -> Result<Response<cc::ComposeServerX509svidResponse>, Status> {
        let a = wire::svid_from_proto(request.into_inner().attributes).map_err(status)?;
        let a = self.0.compose_server_x509_svid(a).await.map_err(status)?;
        Ok(Response::new(cc::ComposeServerX509svidResponse {
            attributes: Some(wire::svid_to_proto(a)),
        }))
    }

    async fn compose_agent_x509svid(
        &self,
        request: Request<cc::ComposeAgentX509svidRequest>,
    ) -> Result<Response<cc::ComposeAgentX509svidResponse>, Status> {
        let r = request.into_inner();
        let (id, key) = id_and_key(&r.spiffe_id, &r.public_key)?;
        let a = wire::svid_from_proto(r.attributes).map_err(status)?;
        let a = self
            .0
            .compose_agent_x509_svid(&id, &key, a)
            .await
            .map_err(status)?;
        Ok(Response::new(cc::ComposeAgentX509svidResponse {
            attributes: Some(wire::svid_to_proto(a)),
        }))
    }

    async fn compose_workload_x509svid(
        &self,
        request: Request<cc::ComposeWorkloadX509svidRequest>,
    ) -> Result<Response<cc::ComposeWorkloadX509svidResponse>, Status> {
        let r = request.into_inner();
        let (id, key) = id_and_key(&r.spiffe_id, &r.public_key)?;
        let a = wire::svid_from_proto(r.attributes).map_err(status)?;
        let a = self
            .0
            .compose_workload_x509_svid(&id, &key, a)
            .await
            .map_err(status)?;
        Ok(Response::new(cc::ComposeWorkloadX509svidResponse {
            attributes: Some(wire::svid_to_proto(a)),
        }))
    }

    async fn compose_workload_jwtsvid(
        &self,
        request: Request<cc::ComposeWorkloadJwtsvidRequest>,
    ) -> Result<Response<cc::ComposeWorkloadJwtsvidResponse>, Status> {
        let r = request.into_inner();
        let id = SpiffeId::parse(&r.spiffe_id).map_err(|e| invalid("SPIFFE ID", e))?;
        let claims = r
            .attributes
            .and_then(|a| a.claims)
            .map(wire::from_struct)
            .unwrap_or_default();
        let claims = self
            .0
            .compose_workload_jwt_svid(&id, claims)
            .await
            .map_err(status)?;
        Ok(Response::new(cc::ComposeWorkloadJwtsvidResponse {
            attributes: Some(cc::JwtsvidAttributes {
                claims: Some(wire::to_struct(claims)),
            }),
        }))
    }
}

pub(crate) fn credential_composer(p: Arc<dyn CredentialComposer>) -> (&'static str, Routes) {
    (
        "spire.plugin.server.credentialcomposer.v1.CredentialComposer",
        Routes::new(
            cc::credential_composer_server::CredentialComposerServer::new(
                CredentialComposerService(p),
            ),
        ),
    )
}

// === SVIDStore ===

struct SvidStoreService(Arc<dyn SvidStore>);

#[tonic::async_trait]
impl ss::svid_store_server::SvidStore for SvidStoreService {
    async fn put_x509svid(
        &self,
        request: Request<ss::PutX509svidRequest>,
    ) -> Result<Response<ss::PutX509svidResponse>, Status> {
        let (svid, metadata) =
            spire_plugin_wire::svidstore::from_put_request(request.into_inner()).map_err(status)?;
        self.0
            .put_x509_svid(&svid, &metadata)
            .await
            .map_err(status)?;
        Ok(Response::new(ss::PutX509svidResponse {}))
    }

    async fn delete_x509svid(
        &self,
        request: Request<ss::DeleteX509svidRequest>,
    ) -> Result<Response<ss::DeleteX509svidResponse>, Status> {
        self.0
            .delete_x509_svid(&request.into_inner().metadata)
            .await
            .map_err(status)?;
        Ok(Response::new(ss::DeleteX509svidResponse {}))
    }
}

pub(crate) fn svid_store(p: Arc<dyn SvidStore>) -> (&'static str, Routes) {
    (
        "spire.plugin.agent.svidstore.v1.SVIDStore",
        Routes::new(ss::svid_store_server::SvidStoreServer::new(
            SvidStoreService(p),
        )),
    )
}

// === UpstreamAuthority ===

struct UpstreamAuthorityService(Arc<dyn UpstreamAuthority>);

/// The plugin's later news, sent on the stream the host keeps open.
#[derive(Debug)]
struct StreamUpdates<T> {
    out: mpsc::UnboundedSender<Result<T, Status>>,
    make: fn(Vec<X509Authority>, Vec<JwtKey>) -> Option<T>,
}

impl<T: Send + Sync + std::fmt::Debug + 'static> UpstreamUpdates for StreamUpdates<T> {
    fn x509_roots(&self, roots: Vec<X509Authority>) {
        if let Some(message) = (self.make)(roots, Vec::new()) {
            let _ = self.out.send(Ok(message));
        }
    }
    fn jwt_keys(&self, keys: Vec<JwtKey>) {
        if let Some(message) = (self.make)(Vec::new(), keys) {
            let _ = self.out.send(Ok(message));
        }
    }
}

fn certificates(roots: Vec<X509Authority>) -> Vec<types::X509Certificate> {
    roots
        .into_iter()
        .map(|r| types::X509Certificate {
            asn1: r.der,
            tainted: r.tainted,
        })
        .collect()
}

#[tonic::async_trait]
impl ua::upstream_authority_server::UpstreamAuthority for UpstreamAuthorityService {
    type MintX509CAAndSubscribeStream = BoxStream<ua::MintX509caResponse>;
    type PublishJWTKeyAndSubscribeStream = BoxStream<ua::PublishJwtKeyResponse>;
    type SubscribeToLocalBundleStream = BoxStream<ua::SubscribeToLocalBundleResponse>;

    async fn mint_x509ca_and_subscribe(
        &self,
        request: Request<ua::MintX509caRequest>,
    ) -> Result<Response<Self::MintX509CAAndSubscribeStream>, Status> {
        let r = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let updates = Arc::new(StreamUpdates {
            out: tx.clone(),
            make: |roots, _| {
                (!roots.is_empty()).then(|| ua::MintX509caResponse {
                    x509_ca_chain: Vec::new(),
                    upstream_x509_roots: certificates(roots),
                })
            },
        });
        let minted = self
            .0
            .mint_x509_ca(&r.csr, r.preferred_ttl, updates)
            .await
            .map_err(status)?;
        let _ = tx.send(Ok(ua::MintX509caResponse {
            x509_ca_chain: minted
                .x509_ca_chain
                .into_iter()
                .map(|asn1| types::X509Certificate {
                    asn1,
                    tainted: false,
                })
                .collect(),
            upstream_x509_roots: minted
                .upstream_x509_roots
                .into_iter()
                .map(|asn1| types::X509Certificate {
                    asn1,
                    tainted: false,
                })
                .collect(),
        }));
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn publish_jwt_key_and_subscribe(
        &self,
        request: Request<ua::PublishJwtKeyRequest>,
    ) -> Result<Response<Self::PublishJWTKeyAndSubscribeStream>, Status> {
        let key = request
            .into_inner()
            .jwt_key
            .ok_or_else(|| Status::invalid_argument("missing JWT key"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let updates = Arc::new(StreamUpdates {
            out: tx.clone(),
            make: |_, keys| {
                (!keys.is_empty()).then(|| ua::PublishJwtKeyResponse {
                    upstream_jwt_keys: keys.iter().map(jwt_key_to_proto).collect(),
                })
            },
        });
        let keys = self
            .0
            .publish_jwt_key(&jwt_key_from_proto(key), updates)
            .await
            .map_err(status)?;
        let _ = tx.send(Ok(ua::PublishJwtKeyResponse {
            upstream_jwt_keys: keys.iter().map(jwt_key_to_proto).collect(),
        }));
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn subscribe_to_local_bundle(
        &self,
        _request: Request<ua::SubscribeToLocalBundleRequest>,
    ) -> Result<Response<Self::SubscribeToLocalBundleStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        let updates = Arc::new(StreamUpdates {
            out: tx.clone(),
            make: |roots, keys| {
                (!roots.is_empty() || !keys.is_empty()).then(|| {
                    ua::SubscribeToLocalBundleResponse {
                        upstream_x509_roots: certificates(roots),
                        upstream_jwt_keys: keys.iter().map(jwt_key_to_proto).collect(),
                    }
                })
            },
        });
        let first = self
            .0
            .subscribe_to_local_bundle(updates)
            .await
            .map_err(status)?;
        let _ = tx.send(Ok(ua::SubscribeToLocalBundleResponse {
            upstream_x509_roots: certificates(first.x509_roots),
            upstream_jwt_keys: first.jwt_keys.iter().map(jwt_key_to_proto).collect(),
        }));
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

pub(crate) fn upstream_authority(p: Arc<dyn UpstreamAuthority>) -> (&'static str, Routes) {
    (
        "spire.plugin.server.upstreamauthority.v1.UpstreamAuthority",
        Routes::new(ua::upstream_authority_server::UpstreamAuthorityServer::new(
            UpstreamAuthorityService(p),
        )),
    )
}
