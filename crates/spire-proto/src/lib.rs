//! Protobuf messages and gRPC clients/servers for the SPIFFE Workload API, the
//! SPIRE server and agent APIs, SPIRE's private stored protos and the SPIRE
//! plugin SDK, generated at build time from the hand-written `.proto` files in
//! `<repo>/proto` (see `proto/README.md`).
//!
//! Modules mirror protobuf packages one to one, so `spire.api.types` is
//! [`spire::api::types`]. Generated code follows prost/tonic naming: message
//! `X509SVIDResponse` is the struct `X509svidResponse`, nested messages and
//! oneofs live in a snake_case module named after their parent
//! (`AttestAgentRequest.Params` is `attest_agent_request::Params`), and each
//! service `S` gets `s_client::SClient` and `s_server::{S, SServer}` (the trait
//! to implement and the tower service wrapping it). Well-known types
//! (`google.protobuf.Empty`, `Struct`, `BoolValue`, ...) are [`pbjson_types`].
//!
//! # Module map
//!
//! | Module | Protobuf package | Services (server trait) |
//! | --- | --- | --- |
//! | [`workload`] | *(none)*, SPIFFE Workload API | `spiffe_workload_api_server::SpiffeWorkloadApi` (`/SpiffeWorkloadAPI/...`) |
//! | [`spire::api::types`] | `spire.api.types` | — (`Entry`, `Agent`, `Bundle`, `X509svid`, `Jwtsvid`, `Spiffeid`, `Selector`, ...) |
//! | [`spire::api::server::agent::v1`] | `spire.api.server.agent.v1` | `agent_server::Agent` |
//! | [`spire::api::server::bundle::v1`] | `spire.api.server.bundle.v1` | `bundle_server::Bundle` |
//! | [`spire::api::server::debug::v1`] | `spire.api.server.debug.v1` | `debug_server::Debug` |
//! | [`spire::api::server::entry::v1`] | `spire.api.server.entry.v1` | `entry_server::Entry` |
//! | [`spire::api::server::localauthority::v1`] | `spire.api.server.localauthority.v1` | `local_authority_server::LocalAuthority` |
//! | [`spire::api::server::logger::v1`] | `spire.api.server.logger.v1` | `logger_server::Logger` |
//! | [`spire::api::server::svid::v1`] | `spire.api.server.svid.v1` | `svid_server::Svid` |
//! | [`spire::api::server::trustdomain::v1`] | `spire.api.server.trustdomain.v1` | `trust_domain_server::TrustDomain` |
//! | [`spire::agent::debug::v1`] | `spire.agent.debug.v1` (sic) | `debug_server::Debug` |
//! | [`spire::api::agent::delegatedidentity::v1`] | `spire.api.agent.delegatedidentity.v1` | `delegated_identity_server::DelegatedIdentity` |
//! | [`spire::api::agent::logger::v1`] | `spire.api.agent.logger.v1` | `logger_server::Logger` |
//! | [`spire::common`] | `spire.common` (datastore blobs) | — (`Bundle`, `RegistrationEntry`, `AttestedNode`, ...) |
//! | [`journal`] | *(none)*, SPIRE CA journal | — (`Entries`, `X509caEntry`, `JwtKeyEntry`, `Status`) |
//! | [`envoy::service::secret::v3`] | `envoy.service.secret.v3` (Envoy SDS, subset of Envoy's API with [`envoy`] and [`google::rpc`]) | `secret_discovery_service_server::SecretDiscoveryService` |
//! | [`grpc::health::v1`] | `grpc.health.v1` | `health_server::Health` |
//! | [`plugin`] | `plugin` (HashiCorp go-plugin) | `grpc_broker_server::GrpcBroker`, `grpc_controller_server::GrpcController`, `grpc_stdio_server::GrpcStdio` |
//! | [`spire::service::common::config::v1`] | `spire.service.common.config.v1` | `config_server::Config` |
//! | [`spire::service::private::init::v1`] | `spire.service.private.init.v1` | `init_server::Init` |
//! | [`spire::plugin::types`] | `spire.plugin.types` | — (`Bundle`, `X509Certificate`, `JwtKey`) |
//! | [`spire::plugin::server::nodeattestor::v1`] | `spire.plugin.server.nodeattestor.v1` | `node_attestor_server::NodeAttestor` |
//! | [`spire::plugin::server::keymanager::v1`] | `spire.plugin.server.keymanager.v1` | `key_manager_server::KeyManager` |
//! | [`spire::plugin::server::upstreamauthority::v1`] | `spire.plugin.server.upstreamauthority.v1` | `upstream_authority_server::UpstreamAuthority` |
//! | [`spire::plugin::server::notifier::v1`] | `spire.plugin.server.notifier.v1` | `notifier_server::Notifier` |
//! | [`spire::plugin::server::bundlepublisher::v1`] | `spire.plugin.server.bundlepublisher.v1` | `bundle_publisher_server::BundlePublisher` |
//! | [`spire::plugin::server::credentialcomposer::v1`] | `spire.plugin.server.credentialcomposer.v1` | `credential_composer_server::CredentialComposer` |
//! | [`spire::plugin::agent::nodeattestor::v1`] | `spire.plugin.agent.nodeattestor.v1` | `node_attestor_server::NodeAttestor` |
//! | [`spire::plugin::agent::keymanager::v1`] | `spire.plugin.agent.keymanager.v1` | `key_manager_server::KeyManager` |
//! | [`spire::plugin::agent::workloadattestor::v1`] | `spire.plugin.agent.workloadattestor.v1` | `workload_attestor_server::WorkloadAttestor` |
//! | [`spire::plugin::agent::svidstore::v1`] | `spire.plugin.agent.svidstore.v1` | `svid_store_server::SvidStore` |
//! | [`spire::hostservice::common::metrics::v1`] | `spire.hostservice.common.metrics.v1` | `metrics_server::Metrics` |
//! | [`spire::hostservice::server::agentstore::v1`] | `spire.hostservice.server.agentstore.v1` | `agent_store_server::AgentStore` |
//! | [`spire::hostservice::server::identityprovider::v1`] | `spire.hostservice.server.identityprovider.v1` | `identity_provider_server::IdentityProvider` |
//!
//! # JSON
//!
//! Messages in [`workload`], `spire::api::*` and [`spire::agent`] implement
//! `serde::Serialize`/`Deserialize` with the protobuf JSON mapping as SPIRE's
//! CLI prints it (Go protojson with `UseProtoNames` and `EmitUnpopulated`):
//! snake_case proto field names, zero values printed, 64-bit integers as
//! strings, bytes as base64, enums by name, unset messages as `null`.
//!
//! # Descriptors
//!
//! [`FILE_DESCRIPTOR_SET`] is the encoded `google.protobuf.FileDescriptorSet`
//! of every file (google imports included, source info stripped), for
//! reflection and for tests that pin the wire format.

/// Encoded `google.protobuf.FileDescriptorSet` of all compiled `.proto` files,
/// including the `google/protobuf/*.proto` files they import.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

/// Declares a module holding the generated code of one protobuf package
/// (`<file>.rs`, plus `<file>.serde.rs` when marked `serde`), with the lints
/// that generated code does not meet switched off.
macro_rules! package {
    ($(#[$attr:meta])* mod $name:ident = $file:literal) => {
        package!(@module $(#[$attr])* $name { include!(concat!(env!("OUT_DIR"), "/", $file, ".rs")); });
    };
    ($(#[$attr:meta])* mod $name:ident = $file:literal + serde) => {
        package!(@module $(#[$attr])* $name {
            include!(concat!(env!("OUT_DIR"), "/", $file, ".rs"));
            include!(concat!(env!("OUT_DIR"), "/", $file, ".serde.rs"));
        });
    };
    (@module $(#[$attr:meta])* $name:ident { $($body:tt)* }) => {
        $(#[$attr])*
        #[allow(
            missing_docs,
            missing_debug_implementations,
            unreachable_pub,
            unused_qualifications,
            rust_2018_idioms,
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            clippy::unwrap_used,
            clippy::expect_used,
            clippy::panic,
        )]
        pub mod $name {
            $($body)*
        }
    };
}

package! {
    /// SPIFFE Workload API (no protobuf package; paths `/SpiffeWorkloadAPI/<Method>`).
    mod workload = "workload" + serde
}

package! {
    /// SPIRE server CA journal (no protobuf package), stored as bytes in the
    /// `ca_journals` table.
    mod journal = "journal"
}

package! {
    /// HashiCorp go-plugin internal services (package `plugin`), used to host
    /// external SPIRE plugins.
    mod plugin = "plugin"
}

/// `grpc.*`
pub mod grpc {
    /// `grpc.health.*`
    pub mod health {
        package! {
            /// `grpc.health.v1`: the standard gRPC health checking protocol.
            mod v1 = "grpc.health.v1"
        }
    }
}

/// `google.*` (other than the well-known types, which are [`pbjson_types`]).
pub mod google {
    package! {
        /// `google.rpc`: the error model carried by xDS NACKs.
        mod rpc = "google.rpc"
    }
}

/// `envoy.*`: the subset of Envoy's API that the agent's SDS service speaks
/// (see `proto/README.md`).
pub mod envoy {
    /// `envoy.type.*`
    pub mod r#type {
        package! {
            /// `envoy.type.v3`: `SemanticVersion`.
            mod v3 = "envoy.r#type.v3"
        }
    }
    /// `envoy.config.*`
    pub mod config {
        /// `envoy.config.core.*`
        pub mod core {
            package! {
                /// `envoy.config.core.v3`: `Node`, `DataSource`, `TypedExtensionConfig`.
                mod v3 = "envoy.config.core.v3"
            }
        }
    }
    /// `envoy.extensions.*`
    pub mod extensions {
        /// `envoy.extensions.transport_sockets.*`
        pub mod transport_sockets {
            /// `envoy.extensions.transport_sockets.tls.*`
            pub mod tls {
                package! {
                    /// `envoy.extensions.transport_sockets.tls.v3`: `Secret` and its parts.
                    mod v3 = "envoy.extensions.transport_sockets.tls.v3"
                }
            }
        }
    }
    /// `envoy.service.*`
    pub mod service {
        /// `envoy.service.discovery.*`
        pub mod discovery {
            package! {
                /// `envoy.service.discovery.v3`: xDS requests and responses.
                mod v3 = "envoy.service.discovery.v3"
            }
        }
        /// `envoy.service.secret.*`
        pub mod secret {
            package! {
                /// `envoy.service.secret.v3`: `secret_discovery_service_server::SecretDiscoveryService`.
                mod v3 = "envoy.service.secret.v3"
            }
        }
    }
}

/// `spirers.*`: spire-rs's own protocol extensions (not part of SPIRE's API).
pub mod spirers {
    /// `spirers.sync.*`
    pub mod sync {
        package! {
            /// `spirers.sync.v1`: change notices pushed from server to agent.
            mod v1 = "spirers.sync.v1"
        }
    }
}

/// `spire.*`
pub mod spire {
    /// `spire.api.*`: the public SPIRE APIs (spire-api-sdk).
    pub mod api {
        package! {
            /// `spire.api.types`: messages shared by the SPIRE APIs.
            mod types = "spire.api.types" + serde
        }

        /// `spire.api.server.*`: SPIRE server APIs.
        pub mod server {
            /// `spire.api.server.agent.*`
            pub mod agent {
                package! {
                    /// `spire.api.server.agent.v1`: the Agent service.
                    mod v1 = "spire.api.server.agent.v1" + serde
                }
            }
            /// `spire.api.server.bundle.*`
            pub mod bundle {
                package! {
                    /// `spire.api.server.bundle.v1`: the Bundle service.
                    mod v1 = "spire.api.server.bundle.v1" + serde
                }
            }
            /// `spire.api.server.debug.*`
            pub mod debug {
                package! {
                    /// `spire.api.server.debug.v1`: the server Debug service.
                    mod v1 = "spire.api.server.debug.v1" + serde
                }
            }
            /// `spire.api.server.entry.*`
            pub mod entry {
                package! {
                    /// `spire.api.server.entry.v1`: the Entry service.
                    mod v1 = "spire.api.server.entry.v1" + serde
                }
            }
            /// `spire.api.server.localauthority.*`
            pub mod localauthority {
                package! {
                    /// `spire.api.server.localauthority.v1`: the LocalAuthority service.
                    mod v1 = "spire.api.server.localauthority.v1" + serde
                }
            }
            /// `spire.api.server.logger.*`
            pub mod logger {
                package! {
                    /// `spire.api.server.logger.v1`: the server Logger service.
                    mod v1 = "spire.api.server.logger.v1" + serde
                }
            }
            /// `spire.api.server.svid.*`
            pub mod svid {
                package! {
                    /// `spire.api.server.svid.v1`: the SVID service.
                    mod v1 = "spire.api.server.svid.v1" + serde
                }
            }
            /// `spire.api.server.trustdomain.*`
            pub mod trustdomain {
                package! {
                    /// `spire.api.server.trustdomain.v1`: the TrustDomain service.
                    mod v1 = "spire.api.server.trustdomain.v1" + serde
                }
            }
        }

        /// `spire.api.agent.*`: SPIRE agent APIs (except Debug, see
        /// [`crate::spire::agent`]).
        pub mod agent {
            /// `spire.api.agent.delegatedidentity.*`
            pub mod delegatedidentity {
                package! {
                    /// `spire.api.agent.delegatedidentity.v1`: the DelegatedIdentity service.
                    mod v1 = "spire.api.agent.delegatedidentity.v1" + serde
                }
            }
            /// `spire.api.agent.logger.*`
            pub mod logger {
                package! {
                    /// `spire.api.agent.logger.v1`: the agent Logger service.
                    mod v1 = "spire.api.agent.logger.v1" + serde
                }
            }
        }
    }

    /// `spire.agent.*`: the agent Debug API, whose package is not under
    /// `spire.api`.
    pub mod agent {
        /// `spire.agent.debug.*`
        pub mod debug {
            package! {
                /// `spire.agent.debug.v1`: the agent Debug service.
                mod v1 = "spire.agent.debug.v1" + serde
            }
        }
    }

    package! {
        /// `spire.common`: SPIRE's internal types, some stored in the datastore
        /// as encoded protobuf (e.g. `bundles.data` holds a [`Bundle`](crate::spire::common::Bundle)).
        mod common = "spire.common"
    }

    /// `spire.service.*`: services every external plugin serves.
    pub mod service {
        /// `spire.service.common.*`
        pub mod common {
            /// `spire.service.common.config.*`
            pub mod config {
                package! {
                    /// `spire.service.common.config.v1`: plugin configuration.
                    mod v1 = "spire.service.common.config.v1"
                }
            }
        }
        /// `spire.service.private.*`
        pub mod private {
            /// `spire.service.private.init.*`
            pub mod init {
                package! {
                    /// `spire.service.private.init.v1`: plugin init/deinit handshake.
                    mod v1 = "spire.service.private.init.v1"
                }
            }
        }
    }

    /// `spire.plugin.*`: plugin interfaces of the SPIRE plugin SDK.
    pub mod plugin {
        package! {
            /// `spire.plugin.types`: messages shared by plugin interfaces.
            mod types = "spire.plugin.types"
        }

        /// `spire.plugin.server.*`: server plugin interfaces.
        pub mod server {
            /// `spire.plugin.server.nodeattestor.*`
            pub mod nodeattestor {
                package! {
                    /// `spire.plugin.server.nodeattestor.v1`
                    mod v1 = "spire.plugin.server.nodeattestor.v1"
                }
            }
            /// `spire.plugin.server.keymanager.*`
            pub mod keymanager {
                package! {
                    /// `spire.plugin.server.keymanager.v1`
                    mod v1 = "spire.plugin.server.keymanager.v1"
                }
            }
            /// `spire.plugin.server.upstreamauthority.*`
            pub mod upstreamauthority {
                package! {
                    /// `spire.plugin.server.upstreamauthority.v1`
                    mod v1 = "spire.plugin.server.upstreamauthority.v1"
                }
            }
            /// `spire.plugin.server.notifier.*`
            pub mod notifier {
                package! {
                    /// `spire.plugin.server.notifier.v1`
                    mod v1 = "spire.plugin.server.notifier.v1"
                }
            }
            /// `spire.plugin.server.bundlepublisher.*`
            pub mod bundlepublisher {
                package! {
                    /// `spire.plugin.server.bundlepublisher.v1`
                    mod v1 = "spire.plugin.server.bundlepublisher.v1"
                }
            }
            /// `spire.plugin.server.credentialcomposer.*`
            pub mod credentialcomposer {
                package! {
                    /// `spire.plugin.server.credentialcomposer.v1`
                    mod v1 = "spire.plugin.server.credentialcomposer.v1"
                }
            }
        }

        /// `spire.plugin.agent.*`: agent plugin interfaces.
        pub mod agent {
            /// `spire.plugin.agent.nodeattestor.*`
            pub mod nodeattestor {
                package! {
                    /// `spire.plugin.agent.nodeattestor.v1`
                    mod v1 = "spire.plugin.agent.nodeattestor.v1"
                }
            }
            /// `spire.plugin.agent.keymanager.*`
            pub mod keymanager {
                package! {
                    /// `spire.plugin.agent.keymanager.v1`
                    mod v1 = "spire.plugin.agent.keymanager.v1"
                }
            }
            /// `spire.plugin.agent.workloadattestor.*`
            pub mod workloadattestor {
                package! {
                    /// `spire.plugin.agent.workloadattestor.v1`
                    mod v1 = "spire.plugin.agent.workloadattestor.v1"
                }
            }
            /// `spire.plugin.agent.svidstore.*`
            pub mod svidstore {
                package! {
                    /// `spire.plugin.agent.svidstore.v1`
                    mod v1 = "spire.plugin.agent.svidstore.v1"
                }
            }
        }
    }

    /// `spire.hostservice.*`: services the host offers to external plugins.
    pub mod hostservice {
        /// `spire.hostservice.common.*`
        pub mod common {
            /// `spire.hostservice.common.metrics.*`
            pub mod metrics {
                package! {
                    /// `spire.hostservice.common.metrics.v1`
                    mod v1 = "spire.hostservice.common.metrics.v1"
                }
            }
        }
        /// `spire.hostservice.server.*`
        pub mod server {
            /// `spire.hostservice.server.agentstore.*`
            pub mod agentstore {
                package! {
                    /// `spire.hostservice.server.agentstore.v1`
                    mod v1 = "spire.hostservice.server.agentstore.v1"
                }
            }
            /// `spire.hostservice.server.identityprovider.*`
            pub mod identityprovider {
                package! {
                    /// `spire.hostservice.server.identityprovider.v1`
                    mod v1 = "spire.hostservice.server.identityprovider.v1"
                }
            }
        }
    }
}
