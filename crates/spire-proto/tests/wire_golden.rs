//! Pins the wire facts of every compiled message, enum and RPC to
//! `tests/golden/wire.txt`, which `conformance/protodump` produces from the
//! reference Go modules (not from our `.proto` files).

use std::collections::{BTreeSet, HashMap};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

const GOLDEN: &str = include_str!("golden/wire.txt");

/// The Envoy SDS messages we declare, each with all of Envoy's fields
/// (`conformance/protodump/envoy`); ours are a subset.
const GOLDEN_ENVOY: &str = include_str!("golden/wire-envoy.txt");

/// Packages of which we declare only what SDS needs (checked against
/// [`GOLDEN_ENVOY`] as a subset).
fn is_subset_package(pkg: &str) -> bool {
    pkg.starts_with("envoy.") || pkg == "google.rpc"
}

/// Full name of a type declared at `scope` (a package or message full name).
fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

struct Walker<'a> {
    /// Every message by full name (no leading dot), to recognise map entries.
    messages: HashMap<String, &'a DescriptorProto>,
    lines: BTreeSet<String>,
}

impl<'a> Walker<'a> {
    fn index(&mut self, scope: &str, msg: &'a DescriptorProto) {
        let full = join(scope, msg.name());
        for nested in &msg.nested_type {
            self.index(&full, nested);
        }
        self.messages.insert(full, msg);
    }

    fn type_name(field: &FieldDescriptorProto) -> String {
        match field.r#type() {
            Type::Message | Type::Enum | Type::Group => {
                field.type_name().trim_start_matches('.').to_owned()
            }
            other => other
                .as_str_name()
                .trim_start_matches("TYPE_")
                .to_lowercase(),
        }
    }

    fn map_entry(&self, field: &FieldDescriptorProto) -> Option<&'a DescriptorProto> {
        if field.r#type() != Type::Message || field.label() != Label::Repeated {
            return None;
        }
        let entry = self
            .messages
            .get(field.type_name().trim_start_matches('.'))?;
        entry
            .options
            .as_ref()
            .and_then(|o| o.map_entry)
            .unwrap_or(false)
            .then_some(*entry)
    }

    fn field_line(
        &self,
        msg_full: &str,
        msg: &DescriptorProto,
        field: &FieldDescriptorProto,
    ) -> String {
        let mut line = format!(
            "{msg_full} {} {} {}",
            field.name(),
            field.number(),
            Self::type_name(field)
        );
        if let Some(entry) = self.map_entry(field) {
            let kv: Vec<String> = entry.field.iter().map(Self::type_name).collect();
            line.push_str(&format!(" map<{}>", kv.join(",")));
        } else if field.label() == Label::Repeated {
            line.push_str(" repeated");
        } else if field.proto3_optional() {
            line.push_str(" optional");
        }
        if let Some(idx) = field.oneof_index
            && !field.proto3_optional()
        {
            let oneof = usize::try_from(idx)
                .ok()
                .and_then(|i| msg.oneof_decl.get(i));
            line.push_str(&format!(
                " oneof={}",
                oneof.map_or("<bad oneof_index>", |o| o.name())
            ));
        }
        if field
            .options
            .as_ref()
            .and_then(|o| o.deprecated)
            .unwrap_or(false)
        {
            line.push_str(" deprecated");
        }
        line
    }

    fn walk_enum(&mut self, scope: &str, e: &EnumDescriptorProto) {
        let full = join(scope, e.name());
        for v in &e.value {
            self.lines
                .insert(format!("enum {full} {} {}", v.name(), v.number()));
        }
    }

    fn walk_message(&mut self, scope: &str, msg: &'a DescriptorProto) {
        if msg
            .options
            .as_ref()
            .and_then(|o| o.map_entry)
            .unwrap_or(false)
        {
            return;
        }
        let full = join(scope, msg.name());
        self.lines.insert(format!("message {full}"));
        for field in &msg.field {
            let line = self.field_line(&full, msg, field);
            self.lines.insert(line);
        }
        for e in &msg.enum_type {
            self.walk_enum(&full, e);
        }
        for nested in &msg.nested_type {
            self.walk_message(&full, nested);
        }
    }
}

/// The facts of our compiled descriptors, in the golden file's line format:
/// SPIRE's packages (`subset == false`) or the Envoy subset (`subset == true`).
fn facts(fds: &FileDescriptorSet, subset: bool) -> BTreeSet<String> {
    let ours: Vec<_> = fds
        .file
        .iter()
        .filter(|f| {
            if subset {
                return is_subset_package(f.package());
            }
            // spire-rs's own extension packages are not part of SPIRE's wire facts.
            f.package() != "google.protobuf"
                && !f.package().starts_with("spirers.")
                && !is_subset_package(f.package())
        })
        .collect();
    let mut w = Walker {
        messages: HashMap::new(),
        lines: BTreeSet::new(),
    };
    for file in &ours {
        for msg in &file.message_type {
            w.index(file.package(), msg);
        }
    }
    for file in &ours {
        let pkg = file.package();
        w.lines
            .insert(format!("package \"{pkg}\" {}", file.syntax()));
        for e in &file.enum_type {
            w.walk_enum(pkg, e);
        }
        for msg in &file.message_type {
            w.walk_message(pkg, msg);
        }
        for svc in &file.service {
            for m in &svc.method {
                let mut line = format!(
                    "rpc /{}/{} {} {}",
                    join(pkg, svc.name()),
                    m.name(),
                    m.input_type().trim_start_matches('.'),
                    m.output_type().trim_start_matches('.'),
                );
                if m.client_streaming() {
                    line.push_str(" client_streaming");
                }
                if m.server_streaming() {
                    line.push_str(" server_streaming");
                }
                w.lines.insert(line);
            }
        }
    }
    w.lines
}

fn golden() -> BTreeSet<String> {
    lines_of(GOLDEN)
}

fn lines_of(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn descriptors_match_reference_golden() {
    let fds = FileDescriptorSet::decode(spire_proto::FILE_DESCRIPTOR_SET).unwrap();
    let actual = facts(&fds, false);
    let expected = golden();

    let missing: Vec<_> = expected.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&expected).collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut report = String::from(
            "our .proto files differ from the reference wire facts \
             (- only in tests/golden/wire.txt, + only in our descriptors):\n",
        );
        for l in &missing {
            report.push_str(&format!("- {l}\n"));
        }
        for l in &extra {
            report.push_str(&format!("+ {l}\n"));
        }
        panic!("{report}");
    }
}

#[test]
fn envoy_subset_matches_reference_golden() {
    let fds = FileDescriptorSet::decode(spire_proto::FILE_DESCRIPTOR_SET).unwrap();
    let actual = facts(&fds, true);
    let expected = lines_of(GOLDEN_ENVOY);
    // Every field, message, package and RPC we declare is Envoy's, unchanged.
    let extra: Vec<_> = actual.difference(&expected).collect();
    // Every message and RPC the golden file pins is declared (fields may be left out).
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| l.starts_with("message ") || l.starts_with("rpc ") || l.starts_with("package "))
        .filter(|l| !actual.contains(*l))
        .collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "our Envoy protos differ from tests/golden/wire-envoy.txt:\n\
         not Envoy's: {extra:#?}\nnot declared: {missing:#?}"
    );
    // The fields SPIRE's SDS handler reads or writes are all declared.
    for field in [
        "envoy.config.core.v3.Node metadata 3 google.protobuf.Struct",
        "envoy.config.core.v3.Node user_agent_build_version 8 envoy.config.core.v3.BuildVersion oneof=user_agent_version_type",
        "envoy.config.core.v3.DataSource inline_bytes 2 bytes oneof=specifier",
        "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext custom_validator_config 12 envoy.config.core.v3.TypedExtensionConfig",
        "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext trusted_ca 1 envoy.config.core.v3.DataSource",
        "envoy.extensions.transport_sockets.tls.v3.TlsCertificate private_key 2 envoy.config.core.v3.DataSource",
        "envoy.service.discovery.v3.DiscoveryRequest error_detail 6 google.rpc.Status",
    ] {
        assert!(actual.contains(field), "{field} is not declared");
    }
}

#[test]
fn golden_is_sorted_and_unique() {
    // The Go side prints sorted, de-duplicated lines; keep the committed file so.
    let lines: Vec<&str> = GOLDEN.lines().filter(|l| !l.starts_with('#')).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(lines, sorted);
    assert!(
        lines.len() > 1000,
        "golden file looks truncated: {} lines",
        lines.len()
    );
}

#[test]
fn descriptor_set_holds_every_proto_file() {
    let fds = FileDescriptorSet::decode(spire_proto::FILE_DESCRIPTOR_SET).unwrap();
    let names: BTreeSet<&str> = fds.file.iter().map(|f| f.name()).collect();
    for name in [
        "spiffe/workload/workload.proto",
        "private/server/journal/journal.proto",
        "spire/api/types/entry.proto",
        "spire/api/server/entry/v1/entry.proto",
        "grpc/health/v1/health.proto",
        "goplugin/plugin.proto",
        "google/protobuf/struct.proto",
    ] {
        assert!(
            names.contains(name),
            "{name} missing from FILE_DESCRIPTOR_SET"
        );
    }
    assert!(fds.file.iter().all(|f| f.source_code_info.is_none()));
}
