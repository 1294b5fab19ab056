//! `entry create`, `entry update` and `entry delete`: the flags they share, the JSON
//! `-data` files and the per-entry batch results.

use super::*;

/// The flags `entry create` and `entry update` share.
pub(super) struct WriteFlags {
    pub(super) entry_id: Flag<String>,
    pub(super) parent_id: Flag<String>,
    pub(super) spiffe_id: Flag<String>,
    pub(super) x509_ttl: Flag<i64>,
    pub(super) jwt_ttl: Flag<i64>,
    pub(super) path: Flag<String>,
    pub(super) selectors: Flag<StringsFlag>,
    pub(super) federates_with: Flag<StringsFlag>,
    pub(super) node: Option<Flag<bool>>,
    pub(super) admin: Flag<bool>,
    pub(super) store_svid: Flag<bool>,
    pub(super) downstream: Flag<bool>,
    pub(super) expiry: Flag<i64>,
    pub(super) dns: Flag<StringsFlag>,
    pub(super) hint: Flag<String>,
    pub(super) output: Flag<OutputFlag>,
}

pub(super) fn write_flags(f: &mut FlagSet, entry_id_usage: &str, node: bool) -> WriteFlags {
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

impl WriteFlags {
    /// The checks `entry create` and `entry update` end with, in SPIRE's order.
    fn validate_id_and_ttls(&self, m: &Parsed) -> Result<(), String> {
        if m.get(&self.spiffe_id).is_empty() {
            return Err("a SPIFFE ID is required".into());
        }
        if *m.get(&self.x509_ttl) < 0 {
            return Err("a positive x509-SVID TTL is required".into());
        }
        if *m.get(&self.jwt_ttl) < 0 {
            return Err("a positive JWT-SVID TTL is required".into());
        }
        Ok(())
    }

    /// The entry the flags describe, under `parent_id` with `spiffe_id` (parsed by the
    /// caller, each command in its own order).
    fn entry(&self, m: &Parsed, parent_id: Spiffeid, spiffe_id: Spiffeid) -> Result<Entry, String> {
        let x509_svid_ttl = checked_i32(*m.get(&self.x509_ttl), "X509 SVID TTL")?;
        let jwt_svid_ttl = checked_i32(*m.get(&self.jwt_ttl), "JWT SVID TTL")?;
        let selectors = parse_selectors(m.get(&self.selectors).as_slice())?;
        Ok(Entry {
            id: m.get(&self.entry_id).clone(),
            parent_id: Some(parent_id),
            spiffe_id: Some(spiffe_id),
            downstream: *m.get(&self.downstream),
            expires_at: *m.get(&self.expiry),
            dns_names: m.get(&self.dns).to_vec(),
            store_svid: *m.get(&self.store_svid),
            x509_svid_ttl,
            jwt_svid_ttl,
            hint: m.get(&self.hint).clone(),
            selectors,
            federates_with: m.get(&self.federates_with).to_vec(),
            admin: *m.get(&self.admin),
            ..Default::default()
        })
    }

    /// The entries to write: from the `-data` file (or standard input) if given, else the
    /// one the flags describe.
    fn entries(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
        from_flags: impl FnOnce() -> Result<Entry, String>,
    ) -> Result<Vec<Entry>, String> {
        let path = m.get(&self.path);
        if path.is_empty() {
            Ok(vec![from_flags()?])
        } else {
            parse_entry_json(io, path)
        }
    }

    /// Prints a batch's results: the response as JSON, or the entries written and those
    /// refused (each refused one shown as it was sent).
    fn report<R: serde::Serialize>(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
        verb: &str,
        resp: &R,
        results: Vec<(
            Option<&spire_proto::spire::api::types::Status>,
            Option<&Entry>,
        )>,
    ) -> Result<(), String> {
        if is_json(m, &self.output) {
            return print_proto(io, resp);
        }
        print_batch_results(io, verb, results.into_iter())
    }
}

pub(super) fn parse_selectors(list: &[String]) -> Result<Vec<Selector>, String> {
    list.iter().map(|s| parse_selector(s)).collect()
}

/// `createCommand`.
pub(super) struct Create(WriteFlags);

pub(super) fn create() -> Box<dyn Command> {
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
        f.validate_id_and_ttls(m)
    }

    /// The entry the flags describe (`parseConfig`); a node entry's parent is the server.
    fn entry_from_flags(&self, m: &Parsed) -> Result<Entry, String> {
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
        f.entry(m, parent_id, spiffe_id)
    }
}

impl ServerCommand for Create {
    fn synopsis(&self) -> &'static str {
        "Creates registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        self.validate(m)?;
        let entries = self.0.entries(m, io, || self.entry_from_flags(m))?;
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
        let results = resp
            .results
            .iter()
            .map(|r| (r.status.as_ref(), r.entry.as_ref()))
            .collect();
        self.0.report(m, io, "create", &resp, results)
    }
}

/// The pretty printer of `entry create` and `entry update` results.
pub(super) fn print_batch_results<'a>(
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
pub(super) struct Update(WriteFlags);

pub(super) fn update() -> Box<dyn Command> {
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
        f.validate_id_and_ttls(m)
    }

    /// The entry the flags describe (`parseConfig`).
    fn entry_from_flags(&self, m: &Parsed) -> Result<Entry, String> {
        let f = &self.0;
        let parent_id = id_to_proto(m.get(&f.parent_id).as_str())?;
        let spiffe_id = id_to_proto(m.get(&f.spiffe_id).as_str())?;
        f.entry(m, parent_id, spiffe_id)
    }
}

impl ServerCommand for Update {
    fn synopsis(&self) -> &'static str {
        "Updates registration entries"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        self.validate(m)?;
        let entries = self.0.entries(m, io, || self.entry_from_flags(m))?;
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
        let results = resp
            .results
            .iter()
            .map(|r| (r.status.as_ref(), r.entry.as_ref()))
            .collect();
        self.0.report(m, io, "update", &resp, results)
    }
}

/// `deleteCommand`.
pub(super) struct Delete {
    pub(super) entry_id: Flag<String>,
    pub(super) file: Flag<String>,
    pub(super) output: Flag<OutputFlag>,
}

pub(super) fn delete() -> Box<dyn Command> {
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
pub(super) fn parse_delete_json(io: &mut Io<'_>, path: &str) -> Result<Vec<String>, String> {
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
