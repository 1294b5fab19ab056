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

/// The flags `entry create` and `entry update` share.
struct WriteFlags {
    entry_id: Flag<String>,
    parent_id: Flag<String>,
    spiffe_id: Flag<String>,
    x509_ttl: Flag<i64>,
    jwt_ttl: Flag<i64>,
    path: Flag<String>,
    selectors: Flag<StringsFlag>,
    federates_with: Flag<StringsFlag>,
    node: Option<Flag<bool>>,
    admin: Flag<bool>,
    store_svid: Flag<bool>,
    downstream: Flag<bool>,
    expiry: Flag<i64>,
    dns: Flag<StringsFlag>,
    hint: Flag<String>,
    output: Flag<OutputFlag>,
}

fn write_flags(f: &mut FlagSet, entry_id_usage: &str, node: bool) -> WriteFlags {
    WriteFlags {
        entry_id: f.string("entryID", "", entry_id_usage),
        parent_id: f.string("parentID", "", "The SPIFFE ID of this record's parent"),
        spiffe_id: f.string("spiffeID", "", "The SPIFFE ID that this record represents"),
        x509_ttl: f.int(
            "x509SVIDTTL",
            0,
            "The lifetime, in seconds, for x509-SVIDs issued based on this registration entry.",
        ),
        jwt_ttl: f.int(
            "jwtSVIDTTL",
            0,
            "The lifetime, in seconds, for JWT-SVIDs issued based on this registration entry.",
        ),
        path: f.string(
            "data",
            "",
            "Path to a file containing registration JSON (optional). If set to '-', read the JSON from stdin.",
        ),
        selectors: f.strings(
            "selector",
            "A colon-delimited type:value selector. Can be used more than once",
        ),
        federates_with: f.strings(
            "federatesWith",
            "SPIFFE ID of a trust domain to federate with. Can be used more than once",
        ),
        node: node.then(|| {
            f.bool(
                "node",
                false,
                "If set, this entry will be applied to matching nodes rather than workloads",
            )
        }),
        admin: f.bool(
            "admin",
            false,
            "If set, the SPIFFE ID in this entry will be granted access to the SPIRE Server's management APIs",
        ),
        store_svid: f.bool(
            "storeSVID",
            false,
            "A boolean value that, when set, indicates that the resulting issued SVID from this entry must be stored through an SVIDStore plugin",
        ),
        downstream: f.bool(
            "downstream",
            false,
            "A boolean value that, when set, indicates that the entry describes a downstream SPIRE server",
        ),
        expiry: f.int64(
            "entryExpiry",
            0,
            "An expiry, from epoch in seconds, for the resulting registration entry to be pruned",
        ),
        dns: f.strings(
            "dns",
            "A DNS name that will be included in SVIDs issued based on this entry, where appropriate. Can be used more than once",
        ),
        hint: f.string(
            "hint",
            "",
            "The entry hint, used to disambiguate entries with the same SPIFFE ID",
        ),
        output: output_flag(f),
    }
}

fn parse_selectors(list: &[String]) -> Result<Vec<Selector>, String> {
    list.iter().map(|s| parse_selector(s)).collect()
}

/// `createCommand`.
struct Create(WriteFlags);

fn create() -> Box<dyn Command> {
    Adapter::new("entry create", |f| {
        Create(write_flags(
            f,
            "A custom ID for this registration entry (optional). If not set, a new entry ID will be generated",
            true,
        ))
    })
    .boxed()
}

impl Create {
    fn validate(&self, m: &Parsed) -> Result<(), String> {
        let f = &self.0;
        if !m.get(&f.path).is_empty() {
            return Ok(());
        }
        let node = f.node.as_ref().is_some_and(|n| *m.get(n));
        if m.get(&f.selectors).is_empty() {
            return Err("at least one selector is required".into());
        }
        if node && !m.get(&f.federates_with).is_empty() {
            return Err("node entries can not federate".into());
        }
        if m.get(&f.parent_id).is_empty() && !node {
            return Err("a parent ID is required if the node flag is not set".into());
        }
        if m.get(&f.spiffe_id).is_empty() {
            return Err("a SPIFFE ID is required".into());
        }
        if *m.get(&f.x509_ttl) < 0 {
            return Err("a positive x509-SVID TTL is required".into());
        }
        if *m.get(&f.jwt_ttl) < 0 {
            return Err("a positive JWT-SVID TTL is required".into());
        }
        Ok(())
    }

    fn parse_config(&self, m: &Parsed) -> Result<Vec<Entry>, String> {
        let f = &self.0;
        let spiffe_id = id_to_proto(m.get(&f.spiffe_id).as_str())?;
        let node = f.node.as_ref().is_some_and(|n| *m.get(n));
        let parent_id = if node {
            Spiffeid {
                trust_domain: spiffe_id.trust_domain.clone(),
                path: "/spire/server".to_owned(),
            }
        } else {
            id_to_proto(m.get(&f.parent_id).as_str())?
        };
        let x509_svid_ttl = checked_i32(*m.get(&f.x509_ttl), "X509 SVID TTL")?;
        let jwt_svid_ttl = checked_i32(*m.get(&f.jwt_ttl), "JWT SVID TTL")?;
        let selectors = parse_selectors(m.get(&f.selectors).as_slice())?;
        Ok(vec![Entry {
            id: m.get(&f.entry_id).clone(),
            parent_id: Some(parent_id),
            spiffe_id: Some(spiffe_id),
            downstream: *m.get(&f.downstream),
            expires_at: *m.get(&f.expiry),
            dns_names: m.get(&f.dns).to_vec(),
            store_svid: *m.get(&f.store_svid),
            x509_svid_ttl,
            jwt_svid_ttl,
            hint: m.get(&f.hint).clone(),
            selectors,
            federates_with: m.get(&f.federates_with).to_vec(),
            admin: *m.get(&f.admin),
            ..Default::default()
        }])
    }
}

impl ServerCommand for Create {
    fn synopsis(&self) -> &'static str {
        "Creates registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        self.validate(m)?;
        let path = m.get(&self.0.path);
        let entries = if path.is_empty() {
            self.parse_config(m)?
        } else {
            parse_entry_json(io, path)?
        };
        let mut resp: BatchCreateEntryResponse = async {
            let r = c
                .entry()
                .await?
                .batch_create_entry(BatchCreateEntryRequest {
                    entries: entries.clone(),
                    output_mask: None,
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        for (i, r) in resp.results.iter_mut().enumerate() {
            if r.status.as_ref().is_none_or(|s| s.code != 0) {
                r.entry = entries.get(i).cloned();
            }
        }
        if is_json(m, &self.0.output) {
            return print_proto(io, &resp);
        }
        print_batch_results(
            io,
            "create",
            resp.results
                .iter()
                .map(|r| (r.status.as_ref(), r.entry.as_ref())),
        )
    }
}

/// The pretty printer of `entry create` and `entry update` results.
fn print_batch_results<'a>(
    io: &mut Io<'_>,
    verb: &str,
    results: impl Iterator<
        Item = (
            Option<&'a spire_proto::spire::api::types::Status>,
            Option<&'a Entry>,
        ),
    >,
) -> Result<(), String> {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (status, entry) in results {
        let code = status.map_or(0, |s| s.code);
        if code == 0 {
            ok.push(entry);
        } else {
            failed.push((status, entry));
        }
    }
    let empty = Entry::default();
    for e in &ok {
        print_entry(e.unwrap_or(&empty), io.stdout);
    }
    for (status, e) in &failed {
        let (code, msg) = status.map_or((0, ""), |s| (s.code, s.message.as_str()));
        err!(
            io,
            "Failed to {verb} the following entry (code: {}, msg: {}):\n",
            code_name_i32(code),
            quote(msg)
        );
        print_entry(e.unwrap_or(&empty), io.stderr);
    }
    if !failed.is_empty() {
        return Err(format!("failed to {verb} one or more entries"));
    }
    Ok(())
}

/// `updateCommand`.
struct Update(WriteFlags);

fn update() -> Box<dyn Command> {
    Adapter::new("entry update", |f| {
        Update(write_flags(
            f,
            "The Registration Entry ID of the record to update",
            false,
        ))
    })
    .boxed()
}

impl Update {
    fn validate(&self, m: &Parsed) -> Result<(), String> {
        let f = &self.0;
        if !m.get(&f.path).is_empty() {
            return Ok(());
        }
        if m.get(&f.entry_id).is_empty() {
            return Err("entry ID is required".into());
        }
        if m.get(&f.selectors).is_empty() {
            return Err("at least one selector is required".into());
        }
        if m.get(&f.parent_id).is_empty() {
            return Err("a parent ID is required".into());
        }
        if m.get(&f.spiffe_id).is_empty() {
            return Err("a SPIFFE ID is required".into());
        }
        if *m.get(&f.x509_ttl) < 0 {
            return Err("a positive x509-SVID TTL is required".into());
        }
        if *m.get(&f.jwt_ttl) < 0 {
            return Err("a positive JWT-SVID TTL is required".into());
        }
        Ok(())
    }

    fn parse_config(&self, m: &Parsed) -> Result<Vec<Entry>, String> {
        let f = &self.0;
        let parent_id = id_to_proto(m.get(&f.parent_id).as_str())?;
        let spiffe_id = id_to_proto(m.get(&f.spiffe_id).as_str())?;
        let x509_svid_ttl = checked_i32(*m.get(&f.x509_ttl), "X509 SVID TTL")?;
        let jwt_svid_ttl = checked_i32(*m.get(&f.jwt_ttl), "JWT SVID TTL")?;
        let selectors = parse_selectors(m.get(&f.selectors).as_slice())?;
        Ok(vec![Entry {
            id: m.get(&f.entry_id).clone(),
            parent_id: Some(parent_id),
            spiffe_id: Some(spiffe_id),
            downstream: *m.get(&f.downstream),
            expires_at: *m.get(&f.expiry),
            dns_names: m.get(&f.dns).to_vec(),
            x509_svid_ttl,
            jwt_svid_ttl,
            hint: m.get(&f.hint).clone(),
            selectors,
            federates_with: m.get(&f.federates_with).to_vec(),
            admin: *m.get(&f.admin),
            store_svid: *m.get(&f.store_svid),
            ..Default::default()
        }])
    }
}

impl ServerCommand for Update {
    fn synopsis(&self) -> &'static str {
        "Updates registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        self.validate(m)?;
        let path = m.get(&self.0.path);
        let entries = if path.is_empty() {
            self.parse_config(m)?
        } else {
            parse_entry_json(io, path)?
        };
        let mut resp: BatchUpdateEntryResponse = async {
            let r = c
                .entry()
                .await?
                .batch_update_entry(BatchUpdateEntryRequest {
                    entries: entries.clone(),
                    input_mask: None,
                    output_mask: None,
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        for (i, r) in resp.results.iter_mut().enumerate() {
            if r.status.as_ref().is_none_or(|s| s.code != 0) {
                r.entry = entries.get(i).cloned();
            }
        }
        if is_json(m, &self.0.output) {
            return print_proto(io, &resp);
        }
        print_batch_results(
            io,
            "update",
            resp.results
                .iter()
                .map(|r| (r.status.as_ref(), r.entry.as_ref())),
        )
    }
}

/// `deleteCommand`.
struct Delete {
    entry_id: Flag<String>,
    file: Flag<String>,
    output: Flag<OutputFlag>,
}

fn delete() -> Box<dyn Command> {
    Adapter::new("entry delete", |f| Delete {
        entry_id: f.string(
            "entryID",
            "",
            "The Registration Entry ID of the record to delete.",
        ),
        file: f.string(
            "file",
            "",
            "Path to a file containing a JSON structure for batch deletion (optional). If set to '-', read from stdin.",
        ),
        output: output_flag(f),
    })
    .boxed()
}

/// `parseEntryDeleteJSON`.
fn parse_delete_json(io: &mut Io<'_>, path: &str) -> Result<Vec<String>, String> {
    let data = read_path_or_stdin(io, path)?;
    let doc = parse(&data)?;
    let mut d = Decoder::new();
    let mut ids = Vec::new();
    d.object(
        &doc,
        "BatchDeleteEntryRequest",
        "entryv1.BatchDeleteEntryRequest",
        &["ids"],
        |d, _, v| ids = d.strings(v).unwrap_or_default(),
    );
    d.finish()?;
    Ok(ids)
}

impl ServerCommand for Delete {
    fn synopsis(&self) -> &'static str {
        "Deletes registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let file = m.get(&self.file);
        if file.is_empty() && m.get(&self.entry_id).is_empty() {
            return Err("an entry ID is required".into());
        }
        let ids = if file.is_empty() {
            vec![m.get(&self.entry_id).clone()]
        } else {
            parse_delete_json(io, file)?
        };
        let resp: BatchDeleteEntryResponse = async {
            let r = c
                .entry()
                .await?
                .batch_delete_entry(BatchDeleteEntryRequest { ids })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for r in &resp.results {
            if r.status.as_ref().map_or(0, |s| s.code) == 0 {
                ok.push(r);
            } else {
                failed.push(r);
            }
        }
        for r in &ok {
            out!(io, "Deleted entry with ID: {}\n", r.id);
        }
        if !ok.is_empty() {
            out!(io, "\n\n");
        }
        for r in &failed {
            let (code, msg) = r
                .status
                .as_ref()
                .map_or((0, ""), |s| (s.code, s.message.as_str()));
            err!(
                io,
                "Failed to delete entry with ID {} (code: {}, msg: {})\n",
                r.id,
                code_name_i32(code),
                quote(msg)
            );
        }
        if !failed.is_empty() {
            out!(io, "\n\n");
            if ok.is_empty() {
                out!(io, "Failed to delete {} entries", failed.len());
            } else {
                out!(
                    io,
                    "Deleted {} entries successfully, but failed to delete {} entries",
                    ok.len(),
                    failed.len()
                );
            }
            return Err("failed to delete one or more entries".into());
        }
        out!(io, "Deleted {} entries successfully", ok.len());
        Ok(())
    }
}

/// The filter flags `entry show` and `entry count` share.
struct FilterFlags {
    parent_id: Flag<String>,
    spiffe_id: Flag<String>,
    downstream: Flag<bool>,
    selectors: Flag<StringsFlag>,
    federates_with: Flag<StringsFlag>,
    match_federates_with: Flag<String>,
    match_selectors: Flag<String>,
    hint: Flag<String>,
    output: Flag<OutputFlag>,
}

fn filter_flags(f: &mut FlagSet, what: &str) -> FilterFlags {
    FilterFlags {
        parent_id: f.string("parentID", "", &format!("The Parent ID of the records to {what}")),
        spiffe_id: f.string("spiffeID", "", &format!("The SPIFFE ID of the records to {what}")),
        downstream: f.bool(
            "downstream",
            false,
            "A boolean value that, when set, indicates that the entry describes a downstream SPIRE server",
        ),
        selectors: f.strings(
            "selector",
            "A colon-delimited type:value selector. Can be used more than once",
        ),
        federates_with: f.strings(
            "federatesWith",
            "SPIFFE ID of a trust domain an entry is federate with. Can be used more than once",
        ),
        match_federates_with: f.string(
            "matchFederatesWithOn",
            "superset",
            "The match mode used when filtering by federates with. Options: exact, any, superset and subset",
        ),
        match_selectors: f.string(
            "matchSelectorsOn",
            "superset",
            "The match mode used when filtering by selectors. Options: exact, any, superset and subset",
        ),
        hint: f.string(
            "hint",
            "",
            &format!("The Hint of the records to {what} (optional)"),
        ),
        output: output_flag(f),
    }
}

fn selector_match(s: &str) -> Result<i32, String> {
    use selector_match::MatchBehavior as M;
    Ok(match s {
        "exact" => M::MatchExact,
        "any" => M::MatchAny,
        "superset" => M::MatchSuperset,
        "subset" => M::MatchSubset,
        _ => return Err(format!("match behavior {} unknown", quote(s))),
    } as i32)
}

fn federates_match(s: &str) -> Result<i32, String> {
    use federates_with_match::MatchBehavior as M;
    Ok(match s {
        "exact" => M::MatchExact,
        "any" => M::MatchAny,
        "superset" => M::MatchSuperset,
        "subset" => M::MatchSubset,
        _ => return Err(format!("match behavior {} unknown", quote(s))),
    } as i32)
}

/// The filter of `entry show` and `entry count`, in SPIRE's check order.
struct Filter {
    by_parent_id: Option<Spiffeid>,
    by_spiffe_id: Option<Spiffeid>,
    by_selectors: Option<SelectorMatch>,
    by_federates_with: Option<FederatesWithMatch>,
    by_hint: Option<String>,
    by_downstream: bool,
}

impl FilterFlags {
    /// Builds the filter; `count` uses entry count's check order (selectors
    /// before federatesWith is the same in both).
    fn filter(&self, m: &Parsed) -> Result<Filter, String> {
        let mut f = Filter {
            by_parent_id: None,
            by_spiffe_id: None,
            by_selectors: None,
            by_federates_with: None,
            by_hint: None,
            by_downstream: *m.get(&self.downstream),
        };
        let parent = m.get(&self.parent_id);
        if !parent.is_empty() {
            f.by_parent_id = Some(
                id_to_proto(parent)
                    .map_err(|e| format!("error parsing parent ID {}: {e}", quote(parent)))?,
            );
        }
        let spiffe = m.get(&self.spiffe_id);
        if !spiffe.is_empty() {
            f.by_spiffe_id = Some(
                id_to_proto(spiffe)
                    .map_err(|e| format!("error parsing SPIFFE ID {}: {e}", quote(spiffe)))?,
            );
        }
        let selectors = m.get(&self.selectors);
        if !selectors.is_empty() {
            let behavior = selector_match(m.get(&self.match_selectors).as_str())?;
            let mut parsed = Vec::new();
            for s in selectors.iter() {
                parsed
                    .push(parse_selector(s).map_err(|e| format!("error parsing selectors: {e}"))?);
            }
            f.by_selectors = Some(SelectorMatch {
                selectors: parsed,
                r#match: behavior,
            });
        }
        let fw = m.get(&self.federates_with);
        if !fw.is_empty() {
            let behavior = federates_match(m.get(&self.match_federates_with).as_str())?;
            f.by_federates_with = Some(FederatesWithMatch {
                trust_domains: fw.to_vec(),
                r#match: behavior,
            });
        }
        let hint = m.get(&self.hint);
        if !hint.is_empty() {
            f.by_hint = Some(hint.clone());
        }
        Ok(f)
    }
}

/// `showCommand`.
struct Show {
    entry_id: Flag<String>,
    filter: FilterFlags,
}

fn show() -> Box<dyn Command> {
    Adapter::new("entry show", |f| Show {
        entry_id: f.string("entryID", "", "The Entry ID of the records to show"),
        filter: filter_flags(f, "show"),
    })
    .boxed()
}

/// `util.SortTypesEntries`.
pub(crate) fn sort_entries(entries: &mut [Entry]) {
    fn cmp_sel(a: &Selector, b: &Selector) -> std::cmp::Ordering {
        a.r#type.cmp(&b.r#type).then_with(|| a.value.cmp(&b.value))
    }
    for e in entries.iter_mut() {
        sort_slice(&mut e.selectors, |a, b| cmp_sel(a, b).is_lt());
    }
    let key = |id: &Option<Spiffeid>| {
        id.as_ref()
            .map(|i| (i.trust_domain.clone(), i.path.clone()))
            .unwrap_or_default()
    };
    sort_slice(entries, |a, b| {
        let ord = key(&a.spiffe_id)
            .cmp(&key(&b.spiffe_id))
            .then_with(|| key(&a.parent_id).cmp(&key(&b.parent_id)))
            .then_with(|| a.x509_svid_ttl.cmp(&b.x509_svid_ttl))
            .then_with(|| a.jwt_svid_ttl.cmp(&b.jwt_svid_ttl))
            .then_with(|| a.selectors.len().cmp(&b.selectors.len()))
            .then_with(|| {
                a.selectors
                    .iter()
                    .zip(&b.selectors)
                    .map(|(x, y)| cmp_sel(x, y))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        ord.is_lt()
    });
}

impl ServerCommand for Show {
    fn synopsis(&self) -> &'static str {
        "Displays configured registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let id = m.get(&self.entry_id);
        if !id.is_empty()
            && (!m.get(&self.filter.parent_id).is_empty()
                || !m.get(&self.filter.spiffe_id).is_empty()
                || !m.get(&self.filter.selectors).is_empty())
        {
            return Err("the -entryID flag can't be combined with others".into());
        }
        let mut resp = ListEntriesResponse::default();
        if !id.is_empty() {
            let entry = async {
                let r = c
                    .entry()
                    .await?
                    .get_entry(GetEntryRequest {
                        id: id.clone(),
                        output_mask: None,
                    })
                    .await?;
                Ok::<_, RpcError>(r.into_inner())
            }
            .await
            .map_err(|e| format!("error fetching entry ID {id}: {e}"))?;
            resp.entries.push(entry);
        } else {
            let f = self.filter.filter(m)?;
            let filter = list_entries_request::Filter {
                by_spiffe_id: f.by_spiffe_id,
                by_parent_id: f.by_parent_id,
                by_selectors: f.by_selectors,
                by_federates_with: f.by_federates_with,
                by_hint: f.by_hint.map(|value| pbjson_types::StringValue { value }),
                by_downstream: Some(pbjson_types::BoolValue {
                    value: f.by_downstream,
                }),
            };
            let mut token = String::new();
            loop {
                let page = async {
                    let r = c
                        .entry()
                        .await?
                        .list_entries(ListEntriesRequest {
                            filter: Some(filter.clone()),
                            output_mask: None,
                            page_size: 500,
                            page_token: token.clone(),
                        })
                        .await?;
                    Ok::<_, RpcError>(r.into_inner())
                }
                .await
                .map_err(|e| format!("error fetching entries: {e}"))?;
                resp.entries.extend(page.entries);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
        }
        sort_entries(&mut resp.entries);
        if is_json(m, &self.filter.output) {
            return print_proto(io, &resp);
        }
        let n = resp.entries.len();
        out!(
            io,
            "{}\n",
            pluralize(&format!("Found {n} "), "entry", "entries", n)
        );
        for e in &resp.entries {
            print_entry(e, io.stdout);
        }
        Ok(())
    }
}

/// `countCommand`.
struct Count(FilterFlags);

fn count() -> Box<dyn Command> {
    Adapter::new("entry count", |f| Count(filter_flags(f, "count"))).boxed()
}

impl ServerCommand for Count {
    fn synopsis(&self) -> &'static str {
        "Count registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let f = self.0.filter(m)?;
        let filter = count_entries_request::Filter {
            by_spiffe_id: f.by_spiffe_id,
            by_parent_id: f.by_parent_id,
            by_selectors: f.by_selectors,
            by_federates_with: f.by_federates_with,
            by_hint: f.by_hint.map(|value| pbjson_types::StringValue { value }),
            by_downstream: Some(pbjson_types::BoolValue {
                value: f.by_downstream,
            }),
        };
        let resp: CountEntriesResponse = async {
            let r = c
                .entry()
                .await?
                .count_entries(CountEntriesRequest {
                    filter: Some(filter),
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| e.to_string())?;
        if is_json(m, &self.0.output) {
            return print_proto(io, &resp);
        }
        let n = usize::try_from(resp.count).unwrap_or(0);
        out!(
            io,
            "{}\n",
            pluralize(
                &format!("{} registration ", resp.count),
                "entry",
                "entries",
                n
            )
        );
        Ok(())
    }
}
