//! Compiles the hand-written `.proto` files under `<repo>/proto` without `protoc`:
//! protox parses and links them, tonic-prost-build generates messages plus gRPC
//! clients and servers, and pbjson-build generates protojson serde impls for the
//! packages the CLIs print with `-output json`.
//!
//! Two files have no protobuf package (the Workload API and the CA journal).
//! prost writes package-less code to one file named after
//! `default_package_filename`, so each of them gets its own codegen run.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::{env, fs};

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

/// Package-less files, by their path under `proto/`, and the Rust module
/// (and generated file stem) each one gets.
const PACKAGELESS: &[(&str, &str)] = &[
    ("spiffe/workload/workload.proto", "workload"),
    ("private/server/journal/journal.proto", "journal"),
];

/// Type-name prefixes that get protojson serde impls.
const SERDE_PREFIXES: &[&str] = &[".spire.api", ".spire.agent"];

/// Package-less files that also get serde impls (see `with_package`).
const SERDE_PACKAGELESS: &[&str] = &["workload"];

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;
    // A directory here makes cargo rescan it recursively.
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root, &proto_root, &mut files)?;
    files.sort();

    let fds = protox::compile(&files, [&proto_root])?;

    // The exported descriptor set: every file including the google imports,
    // without source info (comments) to keep the binary small.
    let exported = FileDescriptorSet {
        file: fds
            .file
            .iter()
            .map(|f| FileDescriptorProto {
                source_code_info: None,
                ..f.clone()
            })
            .collect(),
    };
    let exported_bytes = exported.encode_to_vec();
    fs::write(out_dir.join("file_descriptor_set.bin"), &exported_bytes)?;

    // The well-known types only: `google.rpc` is ours (proto/google/rpc).
    let is_google = |f: &FileDescriptorProto| f.package() == "google.protobuf";
    let google: Vec<FileDescriptorProto> =
        fds.file.iter().filter(|f| is_google(f)).cloned().collect();

    // Everything with a package, in one run.
    let packaged: Vec<FileDescriptorProto> = fds
        .file
        .iter()
        .filter(|f| !is_google(f) && !f.package().is_empty())
        .cloned()
        .collect();
    // prost needs the imported google files in its message graph (it panics
    // on unknown types); being extern paths, they generate no code.
    let mut main_set = google.clone();
    main_set.extend(packaged.iter().cloned());
    generate(FileDescriptorSet { file: main_set }, None)?;

    // One run per package-less file.
    for (path, stem) in PACKAGELESS {
        let file = fds
            .file
            .iter()
            .find(|f| f.name() == *path)
            .ok_or_else(|| format!("{path} is missing from the compiled set"))?;
        if !file.package().is_empty() {
            return Err(format!("{path} was expected to have no package").into());
        }
        let mut set = google.clone();
        set.push(file.clone());
        generate(FileDescriptorSet { file: set }, Some(stem))?;

        if SERDE_PACKAGELESS.contains(stem) {
            let mut serde_set = google.clone();
            serde_set.push(with_package(file, stem));
            let bytes = FileDescriptorSet { file: serde_set }.encode_to_vec();
            pbjson()
                .register_descriptors(&bytes)?
                .build(&[format!(".{stem}")])?;
            // Type names in serde messages: drop the borrowed package again.
            let serde_file = out_dir.join(format!("{stem}.serde.rs"));
            let code = fs::read_to_string(&serde_file)?
                .replace(&format!("\"{stem}."), "\"")
                .replace(&format!("struct {stem}."), "struct ");
            fs::write(&serde_file, code)?;
        }
    }

    let mut serde_set = google;
    serde_set.extend(packaged);
    let bytes = FileDescriptorSet { file: serde_set }.encode_to_vec();
    pbjson()
        .register_descriptors(&bytes)?
        .build(SERDE_PREFIXES)?;

    // See `emit_null_for_unset_messages`: its rewrite is only right when no
    // serde-enabled field uses proto3 `optional`.
    for file in &fds.file {
        let serde = SERDE_PREFIXES
            .iter()
            .any(|p| format!(".{}", file.package()).starts_with(p))
            || PACKAGELESS
                .iter()
                .any(|(path, stem)| file.name() == *path && SERDE_PACKAGELESS.contains(stem));
        if serde && file.message_type.iter().any(has_proto3_optional) {
            return Err(format!(
                "{}: proto3 optional fields need a different JSON rewrite in build.rs",
                file.name()
            )
            .into());
        }
    }
    for entry in fs::read_dir(&out_dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".serde.rs") {
            let code = fs::read_to_string(&path)?;
            fs::write(&path, emit_null_for_unset_messages(&code))?;
        }
    }

    Ok(())
}

fn has_proto3_optional(msg: &DescriptorProto) -> bool {
    msg.field.iter().any(|f| f.proto3_optional()) || msg.nested_type.iter().any(has_proto3_optional)
}

/// Go's protojson with `EmitUnpopulated` prints an unset message field as
/// `null`; pbjson's `emit_fields` leaves it out. pbjson serializes a singular
/// message field as
///
/// ```text
/// if let Some(v) = self.<field>.as_ref() {
///     struct_ser.serialize_field("<name>", v)?;
/// }
/// ```
///
/// and this adds an `else` branch writing `null`. (The len counted for the
/// struct already includes the field.) Oneofs, which protojson leaves out when
/// unset, are serialized through a `match` and do not match the pattern.
fn emit_null_for_unset_messages(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = String::with_capacity(code.len() + code.len() / 8);
    let mut i = 0;
    while i < lines.len() {
        let (open, body) = (lines[i].trim(), lines.get(i + 1).map(|l| l.trim()));
        let close = lines.get(i + 2).map(|l| l.trim());
        let field_name = body
            .and_then(|b| b.strip_prefix("struct_ser.serialize_field(\""))
            .and_then(|b| b.strip_suffix("\", v)?;"));
        if let (true, Some(name), Some("}")) = (
            open.starts_with("if let Some(v) = self.") && open.ends_with(".as_ref() {"),
            field_name,
            close,
        ) {
            let indent = &lines[i][..lines[i].len() - lines[i].trim_start().len()];
            out.push_str(lines[i]);
            out.push('\n');
            out.push_str(lines[i + 1]);
            out.push('\n');
            out.push_str(&format!("{indent}}} else {{\n"));
            out.push_str(&format!(
                "{indent}    struct_ser.serialize_field(\"{name}\", &None::<()>)?;\n"
            ));
            out.push_str(&format!("{indent}}}\n"));
            i += 3;
        } else {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
        }
    }
    out
}

/// Runs prost + tonic code generation into `OUT_DIR`. Package-less code goes
/// to `<stem>.rs`.
fn generate(fds: FileDescriptorSet, packageless_stem: Option<&str>) -> Result<(), Box<dyn Error>> {
    let mut config = tonic_prost_build::Config::new();
    if let Some(stem) = packageless_stem {
        config.default_package_filename(stem);
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Well-known types come from pbjson-types, which carries protojson
        // serde impls; prost's default mapping to prost-types must be off.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}

/// pbjson settings matching SPIRE's CLI printer (protojson with
/// `UseProtoNames: true`, `EmitUnpopulated: true`).
fn pbjson() -> pbjson_build::Builder {
    let mut builder = pbjson_build::Builder::new();
    builder
        .extern_path(".google.protobuf", "::pbjson_types")
        .preserve_proto_field_names()
        .emit_fields();
    builder
}

/// pbjson-build requires a package. Give a package-less file the package
/// `stem` (rewriting its local type references to match) so its serde impls
/// land in `<stem>.serde.rs` with paths relative to the `stem` module.
fn with_package(file: &FileDescriptorProto, stem: &str) -> FileDescriptorProto {
    fn fix_message(msg: &mut DescriptorProto, stem: &str) {
        for field in &mut msg.field {
            if let Some(name) = field.type_name.as_mut()
                && !name.starts_with(".google.")
            {
                *name = format!(".{stem}{name}");
            }
        }
        for nested in &mut msg.nested_type {
            fix_message(nested, stem);
        }
    }

    let mut file = file.clone();
    file.package = Some(stem.to_owned());
    for msg in &mut file.message_type {
        fix_message(msg, stem);
    }
    file.service.clear();
    file
}

fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}
