//! `spire-server entry create|update|delete|show|count`.

use spire_goflag::{Command, Flag, FlagSet, Io, Parsed, StringsFlag};
use spire_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, BatchCreateEntryResponse, BatchDeleteEntryRequest,
    BatchDeleteEntryResponse, BatchUpdateEntryRequest, BatchUpdateEntryResponse,
    CountEntriesRequest, CountEntriesResponse, GetEntryRequest, ListEntriesRequest,
    ListEntriesResponse, count_entries_request, list_entries_request,
};
use spire_proto::spire::api::types::{
    Entry, FederatesWithMatch, Selector, SelectorMatch, Spiffeid, federates_with_match,
    selector_match,
};

use super::{Adapter, ServerClient, ServerCommand, err, out, parse_selector, pluralize};
use crate::gofmt::{quote, read_file, utc_string};
use crate::goid::{parse_id, parse_td, proto_to_string};
use crate::gojson::{Decoder, Node, parse};
use crate::grpc::{RpcError, code_name_i32};
use crate::printer::{OutputFlag, is_json, output_flag, print_proto};
use crate::sort::sort_slice;

mod read;
mod write;

use read::*;
use write::*;

pub(crate) fn commands() -> Vec<(Vec<&'static str>, Box<dyn Command>)> {
    vec![
        (vec!["entry", "count"], count()),
        (vec!["entry", "create"], create()),
        (vec!["entry", "update"], update()),
        (vec!["entry", "delete"], delete()),
        (vec!["entry", "show"], show()),
    ]
}

/// `printEntry`.
pub(crate) fn print_entry(e: &Entry, w: &mut dyn std::io::Write) {
    let id = if e.id.is_empty() { "(none)" } else { &e.id };
    let _ = writeln!(w, "Entry ID         : {id}");
    let _ = writeln!(
        w,
        "SPIFFE ID        : {}",
        proto_to_string(e.spiffe_id.as_ref())
    );
    let _ = writeln!(
        w,
        "Parent ID        : {}",
        proto_to_string(e.parent_id.as_ref())
    );
    let _ = writeln!(w, "Revision         : {}", e.revision_number);
    if e.downstream {
        let _ = writeln!(w, "Downstream       : true");
    }
    if e.x509_svid_ttl == 0 {
        let _ = writeln!(w, "X509-SVID TTL    : default");
    } else {
        let _ = writeln!(w, "X509-SVID TTL    : {}", e.x509_svid_ttl);
    }
    if e.jwt_svid_ttl == 0 {
        let _ = writeln!(w, "JWT-SVID TTL     : default");
    } else {
        let _ = writeln!(w, "JWT-SVID TTL     : {}", e.jwt_svid_ttl);
    }
    if e.expires_at != 0 {
        let _ = writeln!(w, "Expiration time  : {}", utc_string(e.expires_at));
    }
    for s in &e.selectors {
        let _ = writeln!(w, "Selector         : {}:{}", s.r#type, s.value);
    }
    for id in &e.federates_with {
        let _ = writeln!(w, "FederatesWith    : {id}");
    }
    for dns in &e.dns_names {
        let _ = writeln!(w, "DNS name         : {dns}");
    }
    if e.admin {
        let _ = writeln!(w, "Admin            : true");
    }
    if e.store_svid {
        let _ = writeln!(w, "StoreSvid        : true");
    }
    if !e.hint.is_empty() {
        let _ = writeln!(w, "Hint             : {}", e.hint);
    }
    let _ = writeln!(w);
}

/// `idStringToProto`.
fn id_to_proto(s: &str) -> Result<Spiffeid, String> {
    parse_id(s).map(|id| id.proto()).map_err(str::to_owned)
}

/// Reads `path`, or standard input for `-`.
pub(crate) fn read_path_or_stdin(io: &mut Io<'_>, path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        io.stdin
            .read_to_end(&mut buf)
            .map_err(|e| format!("read /dev/stdin: {}", crate::gofmt::errno_text(&e)))?;
        return Ok(buf);
    }
    read_file(path)
}

/// A `common.RegistrationEntry` as `encoding/json` decodes it.
#[derive(Debug, Default)]
struct RawEntry {
    selectors: Vec<Option<(String, String)>>,
    parent_id: String,
    spiffe_id: String,
    x509_svid_ttl: i64,
    federates_with: Vec<String>,
    entry_id: String,
    admin: bool,
    downstream: bool,
    entry_expiry: i64,
    dns_names: Vec<String>,
    revision_number: i64,
    store_svid: bool,
    jwt_svid_ttl: i64,
    hint: String,
    created_at: i64,
}

const ENTRY_FIELDS: &[&str] = &[
    "selectors",
    "parent_id",
    "spiffe_id",
    "x509_svid_ttl",
    "federates_with",
    "entry_id",
    "admin",
    "downstream",
    "entryExpiry",
    "dns_names",
    "revision_number",
    "store_svid",
    "jwt_svid_ttl",
    "hint",
    "created_at",
];

fn decode_entry(d: &mut Decoder, n: &Node) -> Option<RawEntry> {
    let mut e = RawEntry::default();
    let present = d.object(
        n,
        "RegistrationEntry",
        "common.RegistrationEntry",
        ENTRY_FIELDS,
        |d, i, v| match i {
            0 => {
                e.selectors = d
                    .slice(v, "[]*common.Selector", |d, s| {
                        let (mut t, mut val) = (String::new(), String::new());
                        let present = d.object(
                            s,
                            "Selector",
                            "common.Selector",
                            &["type", "value"],
                            |d, i, v| {
                                if i == 0 {
                                    d.string(v, &mut t);
                                } else {
                                    d.string(v, &mut val);
                                }
                            },
                        );
                        present.then_some((t, val))
                    })
                    .unwrap_or_default();
            }
            1 => d.string(v, &mut e.parent_id),
            2 => d.string(v, &mut e.spiffe_id),
            3 => d.int(v, &mut e.x509_svid_ttl, 32, "int32"),
            4 => e.federates_with = d.strings(v).unwrap_or_default(),
            5 => d.string(v, &mut e.entry_id),
            6 => d.bool(v, &mut e.admin),
            7 => d.bool(v, &mut e.downstream),
            8 => d.int(v, &mut e.entry_expiry, 64, "int64"),
            9 => e.dns_names = d.strings(v).unwrap_or_default(),
            10 => d.int(v, &mut e.revision_number, 64, "int64"),
            11 => d.bool(v, &mut e.store_svid),
            12 => d.int(v, &mut e.jwt_svid_ttl, 32, "int32"),
            13 => d.string(v, &mut e.hint),
            _ => d.int(v, &mut e.created_at, 64, "int64"),
        },
    );
    present.then_some(e)
}

/// `api.RegistrationEntryToProto`.
fn raw_entry_to_proto(e: RawEntry) -> Result<Entry, String> {
    let spiffe_id = parse_id(&e.spiffe_id).map_err(|err| format!("invalid SPIFFE ID: {err}"))?;
    let parent_id = parse_id(&e.parent_id).map_err(|err| format!("invalid parent ID: {err}"))?;
    let mut federates_with = Vec::new();
    for td in &e.federates_with {
        federates_with
            .push(parse_td(td).map_err(|err| format!("invalid federated trust domain: {err}"))?);
    }
    Ok(Entry {
        id: e.entry_id,
        spiffe_id: Some(spiffe_id.proto()),
        parent_id: Some(parent_id.proto()),
        selectors: e
            .selectors
            .into_iter()
            .map(|s| {
                let (t, v) = s.unwrap_or_default();
                Selector {
                    r#type: t,
                    value: v,
                }
            })
            .collect(),
        x509_svid_ttl: i32::try_from(e.x509_svid_ttl).unwrap_or_default(),
        federates_with,
        admin: e.admin,
        downstream: e.downstream,
        expires_at: e.entry_expiry,
        dns_names: e.dns_names,
        revision_number: e.revision_number,
        store_svid: e.store_svid,
        jwt_svid_ttl: i32::try_from(e.jwt_svid_ttl).unwrap_or_default(),
        hint: e.hint,
        created_at: e.created_at,
    })
}

/// `parseEntryJSON`.
fn parse_entry_json(io: &mut Io<'_>, path: &str) -> Result<Vec<Entry>, String> {
    let data = read_path_or_stdin(io, path)?;
    let doc = parse(&data)?;
    if matches!(doc.value, crate::gojson::JVal::Null) {
        // SPIRE dereferences the nil result and panics here.
        return Err("runtime error: invalid memory address or nil pointer dereference".into());
    }
    let mut d = Decoder::new();
    let mut entries: Vec<Option<RawEntry>> = Vec::new();
    d.object(
        &doc,
        "RegistrationEntries",
        "common.RegistrationEntries",
        &["entries"],
        |d, _, v| {
            entries = d
                .slice(v, "[]*common.RegistrationEntry", decode_entry)
                .unwrap_or_default();
        },
    );
    d.finish()?;
    entries
        .into_iter()
        .map(|e| match e {
            Some(e) => raw_entry_to_proto(e),
            None => Err("missing registration entry".to_owned()),
        })
        .collect()
}

/// `util.CheckedCast[int32](int)`.
fn checked_i32(v: i64, what: &str) -> Result<i32, String> {
    i32::try_from(v)
        .map_err(|_| format!("invalid value for {what}: overflow converting int({v}) to int32"))
}
