//! The parity harness: a reference server and ours started side by side, the reference CLI
//! run against each, outputs compared after hiding per-side values; one area of the admin
//! API per test (see `main.rs`).

pub(crate) use crate::cli_common::{
    Diff, Out, args, args_with, blank_fields, ident, mode, norm_jwt, norm_pem, norm_times,
    norm_uuid, read, ref_server_bin, run_ref,
};
pub(crate) use crate::support::{Attestation, Impl, Server, X509PopIdentity};

pub(crate) type TextNorm<'a> = &'a dyn Fn(&str) -> String;
pub(crate) type JsonNorm<'a> = &'a dyn Fn(&mut serde_json::Value);

/// Cases (by name prefix) whose difference is accepted, with the reason.
const KNOWN: &[(&str, &str)] = &[];

/// One server and the CLI pointed at it.
pub(crate) struct Side {
    pub(crate) server: Server,
    /// `(name, value)`: `{name}` in arguments expands to `value`; `value` in output
    /// becomes `<name>`.
    vars: Vec<(String, String)>,
}

impl Side {
    pub(crate) fn new(server: Server) -> Side {
        let vars = vec![
            ("socket".to_owned(), server.socket.clone()),
            ("dir".to_owned(), server.dir.path().display().to_string()),
        ];
        Side { server, vars }
    }

    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_owned(), value.to_owned()));
    }

    pub(crate) fn expand(&self, arg: &str) -> String {
        let mut s = arg.to_owned();
        for (n, v) in &self.vars {
            s = s.replace(&format!("{{{n}}}"), v);
        }
        s
    }

    /// Replaces every known value by its name, longest first; then random UUIDs.
    pub(crate) fn hide(&self, s: &str) -> String {
        let mut vars: Vec<&(String, String)> =
            self.vars.iter().filter(|(_, v)| !v.is_empty()).collect();
        vars.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let mut s = s.to_owned();
        for (n, v) in vars {
            s = s.replace(v.as_str(), &format!("<{n}>"));
        }
        norm_uuid(&s)
    }

    /// Runs the reference CLI against this side's server.
    pub(crate) fn run_raw(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut v: Vec<String> = args.iter().map(|a| self.expand(a)).collect();
        v.push("-socketPath".into());
        v.push(self.server.socket.clone());
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        run_ref(&ref_server_bin(), &v, stdin)
    }

    pub(crate) fn hide_out(&self, out: Out) -> Out {
        Out {
            stdout: self.hide(&out.stdout),
            stderr: self.hide(&out.stderr),
            code: out.code,
        }
    }

    pub(crate) fn run(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.hide_out(self.run_raw(args, stdin))
    }
}

pub(crate) struct Parity {
    pub(crate) r: Side,
    pub(crate) o: Side,
    pub(crate) d: Diff,
    /// Accepted differences that did occur.
    known: Vec<String>,
    /// Which `KNOWN` entries did occur.
    known_seen: Vec<bool>,
    /// Which `KNOWN` entries' cases ran.
    known_ran: Vec<bool>,
    pub(crate) tmp: tempfile::TempDir,
    /// How many authority IDs of each kind were named so far.
    authorities: [usize; 2],
    /// The x509pop identities agents may attest with.
    pub(crate) x509pop: Vec<X509PopIdentity>,
}

impl Parity {
    /// Runs `args` on both sides; new authority IDs a `localauthority` command made are
    /// named before the outputs are normalized.
    pub(crate) fn both_sides(&mut self, args: &[&str], stdin: &[u8]) -> (Out, Out) {
        let (r, o) = std::thread::scope(|s| {
            let r = s.spawn(|| self.r.run_raw(args, stdin));
            let o = self.o.run_raw(args, stdin);
            (r.join().unwrap(), o)
        });
        if args.first() == Some(&"localauthority")
            && let Some(kind) = args.get(1)
        {
            self.learn_authorities(kind);
        }
        let (mut r, mut o) = (self.r.hide_out(r), self.o.hide_out(o));
        // Minting warns with the SVID's expiry when it is capped: a time of each server.
        if matches!(args.first(), Some(&"x509" | &"jwt")) {
            r.stderr = norm_times(&r.stderr);
            o.stderr = norm_times(&o.stderr);
        }
        if std::env::var_os("SPIRE_PARITY_TRACE").is_some() {
            eprintln!(
                "=== {}\n--- reference ({})\n{}{}--- ours ({})\n{}{}",
                self.name_of(args),
                r.code,
                r.stdout,
                r.stderr,
                o.code,
                o.stdout,
                o.stderr
            );
        }
        (r, o)
    }

    pub(crate) fn known_reason(name: &str) -> Option<&'static str> {
        KNOWN
            .iter()
            .find(|(n, _)| name.starts_with(n))
            .map(|(_, r)| *r)
    }

    /// Moves a failure of a known case to `known`.
    pub(crate) fn settle(&mut self, name: &str, failures_before: usize) {
        if let Some(i) = KNOWN.iter().position(|(n, _)| name.starts_with(n)) {
            self.known_ran[i] = true;
        }
        if let Some(reason) = Self::known_reason(name)
            && self.d.failures.len() > failures_before
        {
            let f = self.d.failures.split_off(failures_before);
            self.known.push(format!("{reason}\n{}", f.join("\n")));
            if let Some(i) = KNOWN.iter().position(|(n, _)| name.starts_with(n)) {
                self.known_seen[i] = true;
            }
        }
    }

    /// A case's name: its arguments, with the shared files' directory hidden.
    pub(crate) fn name_of(&self, args: &[&str]) -> String {
        args.join(" ")
            .replace(&self.tmp.path().display().to_string(), "<files>")
    }

    pub(crate) fn text(&mut self, args: &[&str], stdin: &[u8], norm: TextNorm<'_>) {
        let (r, o) = self.both_sides(args, stdin);
        let name = self.name_of(args);
        let before = self.d.failures.len();
        self.d.same(&name, &r, &o, norm);
        self.settle(&name, before);
    }

    pub(crate) fn json(&mut self, args: &[&str], stdin: &[u8], norm: JsonNorm<'_>) {
        let (r, o) = self.both_sides(args, stdin);
        let name = self.name_of(args);
        let before = self.d.failures.len();
        self.d.same_json(&name, &r, &o, norm);
        self.settle(&name, before);
    }

    pub(crate) fn cmp(&mut self, args: &[&str]) {
        self.text(args, b"", &ident);
    }

    /// The command in pretty form and with `-output json`.
    pub(crate) fn both(&mut self, args: &[&str]) {
        self.both_n(args, &ident, &|_| {});
    }

    pub(crate) fn both_n(&mut self, args: &[&str], text: TextNorm<'_>, json: JsonNorm<'_>) {
        self.text(args, b"", text);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        self.json(&j, b"", json);
    }

    /// A file both sides read (same path, same content).
    pub(crate) fn file(&self, name: &str, content: &str) -> String {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    /// Names the authority IDs `localauthority <kind> show` reports that are not named
    /// yet (`x509-N` / `jwt-N`, in order of appearance, the same on both sides).
    pub(crate) fn learn_authorities(&mut self, kind: &str) {
        let k = usize::from(kind == "jwt");
        let args = ["localauthority", kind, "show", "-output", "json"];
        let ids = |side: &Side| -> Vec<String> {
            let out = side.run_raw(&args, b"");
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
            ["active", "prepared", "old"]
                .iter()
                .filter_map(|slot| v[slot]["authority_id"].as_str().map(str::to_owned))
                .filter(|id| !side.vars.iter().any(|(_, v)| v == id))
                .collect()
        };
        let (r, o) = (ids(&self.r), ids(&self.o));
        for i in 0..r.len().max(o.len()) {
            self.authorities[k] += 1;
            let name = format!("{kind}-{}", self.authorities[k]);
            if let Some(id) = r.get(i) {
                self.r.set(&name, id);
            }
            if let Some(id) = o.get(i) {
                self.o.set(&name, id);
            }
        }
    }
}

/// Starts a reference server and ours (SQLite, memory KeyManager, join_token and x509pop),
/// names their authorities, runs `area` against both and fails on any difference that is not
/// in `KNOWN`.
pub(crate) fn run(name: &str, area: impl FnOnce(&mut Parity)) {
    let started = std::time::Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("parity-files")
        .tempdir_in("/tmp")
        .unwrap();
    let (x509pop_ca, x509pop) = crate::support::x509pop_material(tmp.path(), &["x1", "x2"]);
    let (r, o) = std::thread::scope(|s| {
        let r = s.spawn(|| Server::start(Impl::Reference, &x509pop_ca));
        let o = s.spawn(|| Server::start(Impl::Ours, &x509pop_ca));
        (r.join().unwrap(), o.join().unwrap())
    });
    let mut p = Parity {
        r: Side::new(r),
        o: Side::new(o),
        d: Diff::new(),
        known: Vec::new(),
        known_seen: vec![false; KNOWN.len()],
        known_ran: vec![false; KNOWN.len()],
        tmp,
        authorities: [0, 0],
        x509pop,
    };
    p.learn_authorities("x509");
    p.learn_authorities("jwt");
    area(&mut p);
    let Parity {
        d,
        known,
        known_seen,
        known_ran,
        ..
    } = p;
    for k in &known {
        eprintln!("known difference: {k}");
    }
    for (((prefix, _), seen), ran) in KNOWN.iter().zip(known_seen).zip(known_ran) {
        if ran && !seen {
            eprintln!("KNOWN entry no longer differs (drop it?): {prefix}");
        }
    }
    eprintln!("parity of {name} ran in {:.1?}", started.elapsed());
    d.finish(&format!("admin API parity: {name}"));
}

// --- normalizers -------------------------------------------------------------------------

/// Replaces what follows `label` on each line that starts with it.
pub(crate) fn blank_after(s: &str, labels: &[&str]) -> String {
    s.split_inclusive('\n')
        .map(|l| match labels.iter().find(|p| l.starts_with(*p)) {
            Some(p) => format!("{p}<x>{}", if l.ends_with('\n') { "\n" } else { "" }),
            None => l.to_owned(),
        })
        .collect()
}

/// Agent listings: SVID expiry and serial numbers differ between servers.
pub(crate) fn norm_agent_text(s: &str) -> String {
    blank_after(s, &["Expiration time   : ", "Serial number     : "])
}

pub(crate) fn norm_agent_json(v: &mut serde_json::Value) {
    blank_fields(v, &["x509svid_serial_number", "x509svid_expires_at"]);
}

/// SPIFFE bundle documents: key material differs (key IDs are per-side variables), and the
/// CLI prints JWT authorities in Go map order, so they are sorted by key ID.
pub(crate) fn norm_spiffe_doc(s: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(s) else {
        return s.to_owned();
    };
    if let Some(keys) = doc
        .get_mut("keys")
        .and_then(serde_json::Value::as_array_mut)
    {
        for k in keys.iter_mut() {
            blank_fields(k, &["x", "y", "n", "x5c"]);
        }
        keys.sort_by_key(|k| (k["use"].to_string(), k["kid"].to_string()));
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Our own bundle in API JSON: certificates, keys and expiry differ.
pub(crate) fn norm_bundle_json(v: &mut serde_json::Value) {
    blank_fields(v, &["asn1", "public_key", "expires_at"]);
}

/// Local authority output: expiry differs.
pub(crate) fn norm_authority_text(s: &str) -> String {
    s.lines()
        .map(|l| match l.find("Expires at: ") {
            Some(i) => format!("{}Expires at: <time>", &l[..i]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn norm_authority_json(v: &mut serde_json::Value) {
    blank_fields(v, &["expires_at"]);
}

pub(crate) fn norm_created(v: &mut serde_json::Value) {
    blank_fields(v, &["created_at"]);
}
