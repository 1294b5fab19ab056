//! `spire-server bundle show|list|set|delete|count`.

use spire_goflag::{Command, Flag, Io, Parsed};
use spire_proto::spire::api::server::bundle::v1::{
    BatchDeleteFederatedBundleRequest, BatchSetFederatedBundleRequest, CountBundlesRequest,
    GetBundleRequest, GetFederatedBundleRequest, ListFederatedBundlesRequest,
    batch_delete_federated_bundle_request::Mode,
};

use super::{Adapter, ServerClient, ServerCommand, out, pluralize};
use crate::bundleutil::{
    FORMAT_PEM, FORMAT_SPIFFE, parse_bundle, print_bundle_with_format, validate_format,
};
use crate::gofmt::{errno_text, quote, read_file};
use crate::grpc::RpcError;
use crate::printer::{OutputFlag, is_json, output_flag, print_proto};

pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    vec![
        (vec!["bundle", "count"], count()),
        (vec!["bundle", "show"], show()),
        (vec!["bundle", "list"], list()),
        (vec!["bundle", "set"], set()),
        (vec!["bundle", "delete"], delete()),
    ]
}

/// `showCommand`.
struct Show {
    format: Flag<String>,
    output: Flag<OutputFlag>,
}

fn show() -> Box<dyn Command> {
    Adapter::new("bundle show", |f| Show {
        format: f.string(
            "format",
            FORMAT_PEM,
            &format!(
                "The format to show the bundle (only pretty output format supports this flag). Either {} or {}.",
                quote(FORMAT_PEM),
                quote(FORMAT_SPIFFE)
            ),
        ),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Show {
    fn synopsis(&self) -> &'static str {
        "Prints server CA bundle to stdout"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let bundle = async {
            let r = c
                .bundle()
                .await?
                .get_bundle(GetBundleRequest { output_mask: None })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.output) {
            return print_proto(io, &bundle);
        }
        print_bundle_with_format(io.stdout, &bundle, m.get(&self.format).as_str(), false)
    }
}

/// `listCommand`.
struct List {
    id: Flag<String>,
    format: Flag<String>,
    output: Flag<OutputFlag>,
}

fn list() -> Box<dyn Command> {
    Adapter::new("bundle list", |f| List {
        id: f.string("id", "", "SPIFFE ID of the trust domain"),
        format: f.string(
            "format",
            FORMAT_PEM,
            &format!(
                "The format to list federated bundles (only pretty output format supports this flag). Either {} or {}.",
                quote(FORMAT_PEM),
                quote(FORMAT_SPIFFE)
            ),
        ),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for List {
    fn synopsis(&self) -> &'static str {
        "Lists federated bundle data"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let format = m.get(&self.format);
        let id = m.get(&self.id);
        if !id.is_empty() {
            let bundle = async {
                let r = c
                    .bundle()
                    .await?
                    .get_federated_bundle(GetFederatedBundleRequest {
                        trust_domain: id.clone(),
                        output_mask: None,
                    })
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| e.to_string())?;
            if is_json(m, &self.output) {
                return print_proto(io, &bundle);
            }
            return print_bundle_with_format(io.stdout, &bundle, format, false);
        }
        let resp = async {
            let r = c
                .bundle()
                .await?
                .list_federated_bundles(ListFederatedBundlesRequest::default())
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        for (i, bundle) in resp.bundles.iter().enumerate() {
            if i != 0 {
                out!(io, "\n");
            }
            print_bundle_with_format(io.stdout, bundle, format, true)?;
        }
        Ok(())
    }
}

/// `setCommand`.
struct Set {
    id: Flag<String>,
    path: Flag<String>,
    format: Flag<String>,
    output: Flag<OutputFlag>,
}

fn set() -> Box<dyn Command> {
    Adapter::new("bundle set", |f| Set {
        id: f.string("id", "", "SPIFFE ID of the trust domain"),
        path: f.string("path", "", "Path to the bundle data"),
        format: f.string(
            "format",
            FORMAT_PEM,
            &format!(
                "The format of the bundle data. Either {} or {}.",
                quote(FORMAT_PEM),
                quote(FORMAT_SPIFFE)
            ),
        ),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Set {
    fn synopsis(&self) -> &'static str {
        "Creates or updates federated bundle data"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let id = m.get(&self.id);
        if id.is_empty() {
            return Err("id flag is required".into());
        }
        let format = validate_format(m.get(&self.format).as_str())?;
        let path = m.get(&self.path);
        let data = if path.is_empty() {
            let mut buf = Vec::new();
            io.stdin.read_to_end(&mut buf).map_err(|e| {
                format!(
                    "unable to load bundle data: read /dev/stdin: {}",
                    errno_text(&e)
                )
            })?;
            buf
        } else {
            read_file(path).map_err(|e| format!("unable to load bundle data: {e}"))?
        };
        let bundle = parse_bundle(&data, &format, id)?;
        let resp = async {
            let r = c
                .bundle()
                .await?
                .batch_set_federated_bundle(BatchSetFederatedBundleRequest {
                    bundle: vec![bundle],
                    output_mask: None,
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("failed to set federated bundle: {e}"))?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        let status = resp.results.first().and_then(|r| r.status.clone());
        match status {
            Some(s) if s.code != 0 => Err(format!("failed to set federated bundle: {}", s.message)),
            _ => {
                out!(io, "bundle set.\n");
                Ok(())
            }
        }
    }
}

/// `deleteCommand`.
struct Delete {
    id: Flag<String>,
    mode: Flag<String>,
    output: Flag<OutputFlag>,
}

fn delete() -> Box<dyn Command> {
    Adapter::new("bundle delete", |f| Delete {
        id: f.string("id", "", "SPIFFE ID of the trust domain"),
        mode: f.string(
            "mode",
            "restrict",
            "Deletion mode: one of restrict, delete, or dissociate",
        ),
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Delete {
    fn synopsis(&self) -> &'static str {
        "Deletes federated bundle data"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let id = m.get(&self.id);
        if id.is_empty() {
            return Err("id is required".into());
        }
        let mode = match m.get(&self.mode).as_str() {
            "restrict" => Mode::Restrict,
            "dissociate" => Mode::Dissociate,
            "delete" => Mode::Delete,
            other => return Err(format!("unsupported mode {}", quote(other))),
        };
        let resp = async {
            let r = c
                .bundle()
                .await?
                .batch_delete_federated_bundle(BatchDeleteFederatedBundleRequest {
                    trust_domains: vec![id.clone()],
                    mode: mode as i32,
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("failed to delete federated bundle: {e}"))?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        let first = resp.results.first();
        match first.and_then(|r| r.status.as_ref()) {
            Some(s) if s.code != 0 => Err(format!(
                "failed to delete federated bundle {}: {}",
                quote(first.map(|r| r.trust_domain.as_str()).unwrap_or_default()),
                s.message
            )),
            _ => {
                out!(io, "bundle deleted.\n");
                Ok(())
            }
        }
    }
}

/// `countCommand`.
struct Count {
    output: Flag<OutputFlag>,
}

fn count() -> Box<dyn Command> {
    Adapter::new("bundle count", |f| Count {
        output: output_flag(f),
    })
    .boxed()
}

impl ServerCommand for Count {
    fn synopsis(&self) -> &'static str {
        "Count bundles"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let resp = async {
            let r = c
                .bundle()
                .await?
                .count_bundles(CountBundlesRequest {})
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        let n = usize::try_from(resp.count).unwrap_or(0);
        out!(
            io,
            "{}\n",
            pluralize(&format!("{} ", resp.count), "bundle", "bundles", n)
        );
        Ok(())
    }
}
