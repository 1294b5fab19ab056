//! `spire-server federation create|update|delete|list|show|refresh`.

use spire_goflag::{Command, Flag, FlagSet, Io, Parsed};
use spire_proto::spire::api::server::trustdomain::v1::{
    BatchCreateFederationRelationshipRequest, BatchDeleteFederationRelationshipRequest,
    BatchUpdateFederationRelationshipRequest, GetFederationRelationshipRequest,
    ListFederationRelationshipsRequest, RefreshBundleRequest,
};
use spire_proto::spire::api::types::{
    Bundle as ProtoBundle, FederationRelationship, HttpsWebProfile, HttpsspiffeProfile, Status,
    federation_relationship::BundleEndpointProfile,
};

use super::entry::read_path_or_stdin;
use super::{Adapter, ServerClient, ServerCommand, err, out, pluralize};
use crate::bundleutil::{FORMAT_PEM, FORMAT_SPIFFE, parse_bundle};
use crate::gofmt::{quote, read_file};
use crate::goid::parse_id;
use crate::gojson::{Decoder, JVal, Node, parse};
use crate::grpc::{RpcError, code_name_i32};
use crate::printer::{OutputFlag, is_json, output_flag, print_proto};

const PROFILE_HTTPS_WEB: &str = "https_web";
const PROFILE_HTTPS_SPIFFE: &str = "https_spiffe";

pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    vec![
        (vec!["federation", "create"], write(true)),
        (vec!["federation", "delete"], delete()),
        (vec!["federation", "list"], list()),
        (vec!["federation", "show"], show()),
        (vec!["federation", "refresh"], refresh()),
        (vec!["federation", "update"], write(false)),
    ]
}

/// `federationRelationshipConfig`.
#[derive(Debug, Default, Clone)]
struct Config {
    trust_domain: String,
    bundle_endpoint_url: String,
    bundle_endpoint_profile: String,
    endpoint_spiffe_id: String,
    trust_domain_bundle: Option<Vec<u8>>,
    trust_domain_bundle_format: String,
    trust_domain_bundle_path: String,
}

/// `printFederationRelationship`.
fn print_relationship(fr: &FederationRelationship, w: &mut dyn std::io::Write) {
    let _ = writeln!(w, "Trust domain              : {}", fr.trust_domain);
    let _ = writeln!(w, "Bundle endpoint URL       : {}", fr.bundle_endpoint_url);
    match &fr.bundle_endpoint_profile {
        Some(BundleEndpointProfile::HttpsWeb(_)) => {
            let _ = writeln!(w, "Bundle endpoint profile   : https_web");
        }
        Some(BundleEndpointProfile::HttpsSpiffe(p)) => {
            let _ = writeln!(w, "Bundle endpoint profile   : https_spiffe");
            let _ = writeln!(w, "Endpoint SPIFFE ID        : {}", p.endpoint_spiffe_id);
        }
        None => {}
    }
}

/// `bundleFromRawMessage`.
fn bundle_from_raw(raw: &[u8], format: &str, td: &str) -> Result<ProtoBundle, String> {
    let data = match format {
        FORMAT_PEM => {
            let doc = parse(raw).map_err(|e| format!("failed to unmarshal json: {e}"))?;
            match doc.value {
                JVal::Str(s) => s.into_bytes(),
                JVal::Null => Vec::new(),
                other => {
                    return Err(format!(
                        "failed to unmarshal json: json: cannot unmarshal {} into Go value of type string",
                        other.kind()
                    ));
                }
            }
        }
        FORMAT_SPIFFE => raw.to_vec(),
        other => return Err(format!("bundle format {} is unsupported", quote(other))),
    };
    parse_bundle(&data, format, td)
}

/// `jsonToProto`.
fn config_to_proto(fr: &Config) -> Result<FederationRelationship, String> {
    if fr.trust_domain.is_empty() {
        return Err("trust domain is required".into());
    }
    if fr.bundle_endpoint_url.is_empty() {
        return Err("bundle endpoint URL is required".into());
    }
    let mut proto = FederationRelationship {
        trust_domain: fr.trust_domain.clone(),
        bundle_endpoint_url: fr.bundle_endpoint_url.clone(),
        ..Default::default()
    };
    let mut bundle_td = fr.trust_domain.clone();
    match fr.bundle_endpoint_profile.as_str() {
        PROFILE_HTTPS_WEB => {
            proto.bundle_endpoint_profile =
                Some(BundleEndpointProfile::HttpsWeb(HttpsWebProfile {}));
        }
        PROFILE_HTTPS_SPIFFE => {
            if fr.endpoint_spiffe_id.is_empty() {
                return Err(
                    "endpoint SPIFFE ID is required if 'https_spiffe' endpoint profile is set"
                        .into(),
                );
            }
            let id = parse_id(&fr.endpoint_spiffe_id)
                .map_err(|e| format!("cannot parse bundle endpoint SPIFFE ID: {e}"))?;
            bundle_td = id.td;
            proto.bundle_endpoint_profile =
                Some(BundleEndpointProfile::HttpsSpiffe(HttpsspiffeProfile {
                    endpoint_spiffe_id: fr.endpoint_spiffe_id.clone(),
                }));
        }
        other => {
            return Err(format!(
                "unknown bundle endpoint profile type: {}",
                quote(other)
            ));
        }
    }
    if !fr.trust_domain_bundle_path.is_empty() {
        let data = read_file(&fr.trust_domain_bundle_path)
            .map_err(|e| format!("cannot read bundle file: {e}"))?;
        let b = parse_bundle(&data, &fr.trust_domain_bundle_format, &bundle_td)
            .map_err(|e| format!("cannot parse bundle file: {e}"))?;
        proto.trust_domain_bundle = Some(b);
    } else if let Some(raw) = &fr.trust_domain_bundle {
        let b = bundle_from_raw(raw, &fr.trust_domain_bundle_format, &bundle_td)
            .map_err(|e| format!("cannot parse bundle raw message: {e}"))?;
        proto.trust_domain_bundle = Some(b);
    }
    Ok(proto)
}

const CONFIG_FIELDS: &[&str] = &[
    "trustDomain",
    "bundleEndpointURL",
    "bundleEndpointProfile",
    "endpointSPIFFEID",
    "trustDomainBundle",
    "trustDomainBundleFormat",
];

/// `federationRelationshipsFromFile`.
fn relationships_from_file(
    io: &mut Io<'_>,
    path: &str,
) -> Result<Vec<FederationRelationship>, String> {
    let data = read_path_or_stdin(io, path)?;
    let doc = parse(&data).map_err(|e| format!("failed to parse JSON: {e}"))?;
    let mut d = Decoder::new();
    let mut items: Vec<Option<Config>> = Vec::new();
    d.object(
        &doc,
        "federationRelationships",
        "federation.federationRelationships",
        &["federationRelationships"],
        |d, _, v| {
            items = d
                .slice(v, "[]*federation.federationRelationshipConfig", |d, n| {
                    decode_config(d, n, &data)
                })
                .unwrap_or_default();
        },
    );
    d.finish()
        .map_err(|e| format!("failed to parse JSON: {e}"))?;
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        // SPIRE dereferences a JSON null item and panics.
        let item = item.unwrap_or_default();
        out.push(config_to_proto(&item).map_err(|e| format!("could not parse item {i}: {e}"))?);
    }
    Ok(out)
}

fn decode_config(d: &mut Decoder, n: &Node, data: &[u8]) -> Option<Config> {
    let mut c = Config::default();
    let present = d.object(
        n,
        "federationRelationshipConfig",
        "federation.federationRelationshipConfig",
        CONFIG_FIELDS,
        |d, i, v| match i {
            0 => d.string(v, &mut c.trust_domain),
            1 => d.string(v, &mut c.bundle_endpoint_url),
            2 => d.string(v, &mut c.bundle_endpoint_profile),
            3 => d.string(v, &mut c.endpoint_spiffe_id),
            4 => c.trust_domain_bundle = Some(data[v.start..v.end].to_vec()),
            _ => d.string(v, &mut c.trust_domain_bundle_format),
        },
    );
    present.then_some(c)
}

/// The flags of `federation create` and `federation update`.
struct WriteFlags {
    path: Flag<String>,
    trust_domain: Flag<String>,
    url: Flag<String>,
    profile: Flag<String>,
    endpoint_id: Flag<String>,
    bundle_path: Flag<String>,
    bundle_format: Flag<String>,
    output: Flag<OutputFlag>,
}

fn write_flags(f: &mut FlagSet) -> WriteFlags {
    WriteFlags {
        path: f.string(
            "data",
            "",
            "Path to a file containing federation relationships in JSON format (optional). If set to '-', read the JSON from stdin.",
        ),
        trust_domain: f.string(
            "trustDomain",
            "",
            "Name of the trust domain to federate with (e.g., example.org)",
        ),
        url: f.string(
            "bundleEndpointURL",
            "",
            "URL of the SPIFFE bundle endpoint that provides the trust bundle (must use the HTTPS protocol)",
        ),
        profile: f.string(
            "bundleEndpointProfile",
            "",
            &format!(
                "Endpoint profile type (either {} or {})",
                quote(PROFILE_HTTPS_WEB),
                quote(PROFILE_HTTPS_SPIFFE)
            ),
        ),
        endpoint_id: f.string(
            "endpointSpiffeID",
            "",
            "SPIFFE ID of the SPIFFE bundle endpoint server. Only used for 'spiffe' profile.",
        ),
        bundle_path: f.string(
            "trustDomainBundlePath",
            "",
            "Path to the trust domain bundle data (optional).",
        ),
        bundle_format: f.string(
            "trustDomainBundleFormat",
            FORMAT_PEM,
            &format!(
                "The format of the bundle data (optional). Either {} or {}.",
                quote(FORMAT_PEM),
                quote(FORMAT_SPIFFE)
            ),
        ),
        output: output_flag(f),
    }
}

impl WriteFlags {
    /// `getRelationships`.
    fn relationships(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
    ) -> Result<Vec<FederationRelationship>, String> {
        let config = Config {
            trust_domain: m.get(&self.trust_domain).clone(),
            bundle_endpoint_url: m.get(&self.url).clone(),
            bundle_endpoint_profile: m.get(&self.profile).clone(),
            endpoint_spiffe_id: m.get(&self.endpoint_id).clone(),
            trust_domain_bundle: None,
            trust_domain_bundle_format: m.get(&self.bundle_format).clone(),
            trust_domain_bundle_path: m.get(&self.bundle_path).clone(),
        };
        let path = m.get(&self.path);
        if !path.is_empty() {
            let empty = config.bundle_endpoint_profile.is_empty()
                && config.bundle_endpoint_url.is_empty()
                && config.trust_domain_bundle_format == FORMAT_PEM
                && config.trust_domain_bundle_path.is_empty()
                && config.endpoint_spiffe_id.is_empty()
                && config.trust_domain.is_empty();
            if !empty {
                return Err(
                    "cannot use other flags to specify relationship fields when 'data' flag is set"
                        .into(),
                );
            }
            return relationships_from_file(io, path);
        }
        Ok(vec![config_to_proto(&config)?])
    }
}

/// `federation create` (`create == true`) and `federation update`.
struct Write {
    create: bool,
    flags: WriteFlags,
}

fn write(create: bool) -> Box<dyn Command> {
    let name = if create {
        "federation create"
    } else {
        "federation update"
    };
    Adapter::new(name, |f| Write {
        create,
        flags: write_flags(f),
    })
    .boxed()
}

impl ServerCommand for Write {
    fn synopsis(&self) -> &'static str {
        if self.create {
            "Creates a dynamic federation relationship with a foreign trust domain"
        } else {
            "Updates a dynamic federation relationship with a foreign trust domain"
        }
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let relationships = self.flags.relationships(m, io)?;
        let json = is_json(m, &self.flags.output);
        let results: Vec<(Option<Status>, Option<FederationRelationship>)> = if self.create {
            let resp = async {
                let r = c
                    .trust_domain()
                    .await?
                    .batch_create_federation_relationship(
                        BatchCreateFederationRelationshipRequest {
                            federation_relationships: relationships.clone(),
                            output_mask: None,
                        },
                    )
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("request failed: {e}"))?;
            if json {
                return print_proto(io, &resp);
            }
            resp.results
                .into_iter()
                .map(|r| (r.status, r.federation_relationship))
                .collect()
        } else {
            let resp = async {
                let r = c
                    .trust_domain()
                    .await?
                    .batch_update_federation_relationship(
                        BatchUpdateFederationRelationshipRequest {
                            federation_relationships: relationships.clone(),
                            input_mask: None,
                            output_mask: None,
                        },
                    )
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("request failed: {e}"))?;
            if json {
                return print_proto(io, &resp);
            }
            resp.results
                .into_iter()
                .map(|r| (r.status, r.federation_relationship))
                .collect()
        };
        if relationships.len() < results.len() {
            return Err("internal error: cli printer; please report this bug".into());
        }
        let verb = if self.create { "create" } else { "update" };
        let mut failed = Vec::new();
        let mut succeeded = Vec::new();
        for (i, (status, fr)) in results.into_iter().enumerate() {
            let code = status.as_ref().map_or(0, |s| s.code);
            if code == 0 {
                succeeded.push(fr.unwrap_or_default());
            } else {
                failed.push((status.unwrap_or_default(), relationships[i].clone()));
            }
        }
        for fr in &succeeded {
            out!(io, "\n");
            print_relationship(fr, io.stdout);
        }
        for (status, fr) in &failed {
            out!(io, "\n");
            err!(
                io,
                "Failed to {verb} the following federation relationship (code: {}, msg: {}):\n",
                code_name_i32(status.code),
                quote(&status.message)
            );
            print_relationship(fr, io.stderr);
        }
        if !failed.is_empty() {
            return Err(format!(
                "failed to {verb} one or more federation relationships"
            ));
        }
        Ok(())
    }
}

/// `deleteCommand`.
struct Delete {
    id: Flag<String>,
    output: Flag<OutputFlag>,
}

fn delete() -> Box<dyn Command> {
    Adapter::new("federation delete", |f| Delete {
        id: f.string("id", "", "SPIFFE ID of the trust domain"),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Delete {
    fn synopsis(&self) -> &'static str {
        "Deletes a dynamic federation relationship"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let id = m.get(&self.id);
        if id.is_empty() {
            return Err("id is required".into());
        }
        let resp = async {
            let r = c
                .trust_domain()
                .await?
                .batch_delete_federation_relationship(BatchDeleteFederationRelationshipRequest {
                    trust_domains: vec![id.clone()],
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("failed to delete federation relationship: {e}"))?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        let Some(first) = resp.results.first() else {
            return Err("internal error: cli printer; please report this bug".into());
        };
        match &first.status {
            Some(s) if s.code != 0 => Err(format!(
                "failed to delete federation relationship {}: {}",
                quote(&first.trust_domain),
                s.message
            )),
            _ => {
                out!(io, "federation relationship deleted.\n");
                Ok(())
            }
        }
    }
}

/// `listCommand`.
struct List {
    output: Flag<OutputFlag>,
}

fn list() -> Box<dyn Command> {
    Adapter::new("federation list", |f| List {
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for List {
    fn synopsis(&self) -> &'static str {
        "Lists all dynamic federation relationships"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let resp = async {
            let r = c
                .trust_domain()
                .await?
                .list_federation_relationships(ListFederationRelationshipsRequest::default())
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("error listing federation relationship: {e}"))?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        let n = resp.federation_relationships.len();
        out!(
            io,
            "{}\n",
            pluralize(
                &format!("Found {n} "),
                "federation relationship",
                "federation relationships",
                n
            )
        );
        for fr in &resp.federation_relationships {
            out!(io, "\n");
            print_relationship(fr, io.stdout);
        }
        Ok(())
    }
}

/// `showCommand`.
struct Show {
    trust_domain: Flag<String>,
    output: Flag<OutputFlag>,
}

fn show() -> Box<dyn Command> {
    Adapter::new("federation show", |f| Show {
        trust_domain: f.string(
            "trustDomain",
            "",
            "The trust domain name of the federation relationship to show",
        ),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Show {
    fn synopsis(&self) -> &'static str {
        "Shows a dynamic federation relationship"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let td = m.get(&self.trust_domain);
        if td.is_empty() {
            return Err("a trust domain name is required".into());
        }
        let fr = async {
            let r = c
                .trust_domain()
                .await?
                .get_federation_relationship(GetFederationRelationshipRequest {
                    trust_domain: td.clone(),
                    output_mask: None,
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("error showing federation relationship: {e}"))?;
        if is_json(m, &self.output) {
            return print_proto(io, &fr);
        }
        out!(
            io,
            "Found a federation relationship with trust domain {td}:\n\n"
        );
        print_relationship(&fr, io.stdout);
        Ok(())
    }
}

/// `refreshCommand`.
struct Refresh {
    id: Flag<String>,
    output: Flag<OutputFlag>,
}

fn refresh() -> Box<dyn Command> {
    Adapter::new("federation refresh", |f| Refresh {
        id: f.string("id", "", "SPIFFE ID of the trust domain"),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Refresh {
    fn synopsis(&self) -> &'static str {
        "Refreshes the bundle from the specified federated trust domain"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let id = m.get(&self.id);
        if id.is_empty() {
            return Err("id is required".into());
        }
        let result = async {
            c.trust_domain()
                .await?
                .refresh_bundle(RefreshBundleRequest {
                    trust_domain: id.clone(),
                })
                .await?;
            Ok::<_, RpcError>(())
        }
        .await;
        match result {
            Ok(()) => {
                if is_json(m, &self.output) {
                    return print_proto(
                        io,
                        &Status {
                            code: 0,
                            message: "OK".into(),
                        },
                    );
                }
                out!(io, "Bundle refreshed\n");
                Ok(())
            }
            Err(e) if e.code == tonic::Code::NotFound => Err(format!(
                "there is no federation relationship with trust domain {}",
                quote(id)
            )),
            Err(e) => Err(format!("failed to refresh bundle: {e}")),
        }
    }
}
