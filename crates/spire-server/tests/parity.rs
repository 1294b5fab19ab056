//! Admin-API parity: reference spire-server 1.13.3 and ours, started with the same
//! configuration (SQLite, memory KeyManager, join_token and x509pop), each driven by the
//! same command lines of the *reference* CLI, with reference agents attested to each. Standard output, standard error and exit codes must match
//! after normalizing what legitimately differs between two servers: their CA keys and
//! certificates (PEM bodies, authority IDs, key IDs), times, random UUIDs and agent SVID
//! serial numbers.
//!
//! Each side has its own server, so every command simply runs once against each; the state
//! stays the same on both sides as long as the servers behave the same. Values that differ
//! per side but must correspond (authority IDs, the socket path) are kept as per-side
//! variables: `{name}` in an argument expands to the side's value, and the side's value in
//! its output is replaced by `<name>`.
//!
//! Known, accepted differences are listed in `KNOWN` with their reason; they are reported
//! but do not fail the test. `SPIRE_PARITY_TRACE=1` prints every case's output on both
//! sides; `SPIRE_PARITY_KEEP=1` keeps the servers' directories (configuration, logs,
//! databases).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code: a failure is a failed test"
)]

#[path = "../../spire-cli/tests/common/mod.rs"]
mod cli_common;
#[path = "parity/support.rs"]
mod support;

use cli_common::{
    Diff, Out, blank_fields, ident, mode, norm_jwt, norm_pem, norm_times, norm_uuid, read,
    ref_server_bin, run_ref,
};
use support::{Attestation, Impl, Server, X509PopIdentity};

type TextNorm<'a> = &'a dyn Fn(&str) -> String;
type JsonNorm<'a> = &'a dyn Fn(&mut serde_json::Value);

/// Cases (by name prefix) whose difference is accepted, with the reason.
const KNOWN: &[(&str, &str)] = &[(
    "federation refresh -id fedx.test",
    "RefreshBundle answers Unimplemented: our server has no federation bundle client yet",
)];

/// One server and the CLI pointed at it.
struct Side {
    server: Server,
    /// `(name, value)`: `{name}` in arguments expands to `value`; `value` in output
    /// becomes `<name>`.
    vars: Vec<(String, String)>,
}

impl Side {
    fn new(server: Server) -> Side {
        let vars = vec![
            ("socket".to_owned(), server.socket.clone()),
            ("dir".to_owned(), server.dir.path().display().to_string()),
        ];
        Side { server, vars }
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_owned(), value.to_owned()));
    }

    fn expand(&self, arg: &str) -> String {
        let mut s = arg.to_owned();
        for (n, v) in &self.vars {
            s = s.replace(&format!("{{{n}}}"), v);
        }
        s
    }

    /// Replaces every known value by its name, longest first; then random UUIDs.
    fn hide(&self, s: &str) -> String {
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
    fn run_raw(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut v: Vec<String> = args.iter().map(|a| self.expand(a)).collect();
        v.push("-socketPath".into());
        v.push(self.server.socket.clone());
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        run_ref(&ref_server_bin(), &v, stdin)
    }

    fn hide_out(&self, out: Out) -> Out {
        Out {
            stdout: self.hide(&out.stdout),
            stderr: self.hide(&out.stderr),
            code: out.code,
        }
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.hide_out(self.run_raw(args, stdin))
    }
}

struct Parity {
    r: Side,
    o: Side,
    d: Diff,
    /// Accepted differences that did occur.
    known: Vec<String>,
    /// Which `KNOWN` entries did occur.
    known_seen: Vec<bool>,
    tmp: tempfile::TempDir,
    /// How many authority IDs of each kind were named so far.
    authorities: [usize; 2],
}

impl Parity {
    /// Runs `args` on both sides; new authority IDs a `localauthority` command made are
    /// named before the outputs are normalized.
    fn both_sides(&mut self, args: &[&str], stdin: &[u8]) -> (Out, Out) {
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

    fn known_reason(name: &str) -> Option<&'static str> {
        KNOWN
            .iter()
            .find(|(n, _)| name.starts_with(n))
            .map(|(_, r)| *r)
    }

    /// Moves a failure of a known case to `known`.
    fn settle(&mut self, name: &str, failures_before: usize) {
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
    fn name_of(&self, args: &[&str]) -> String {
        args.join(" ")
            .replace(&self.tmp.path().display().to_string(), "<files>")
    }

    fn text(&mut self, args: &[&str], stdin: &[u8], norm: TextNorm<'_>) {
        let (r, o) = self.both_sides(args, stdin);
        let name = self.name_of(args);
        let before = self.d.failures.len();
        self.d.same(&name, &r, &o, norm);
        self.settle(&name, before);
    }

    fn json(&mut self, args: &[&str], stdin: &[u8], norm: JsonNorm<'_>) {
        let (r, o) = self.both_sides(args, stdin);
        let name = self.name_of(args);
        let before = self.d.failures.len();
        self.d.same_json(&name, &r, &o, norm);
        self.settle(&name, before);
    }

    fn cmp(&mut self, args: &[&str]) {
        self.text(args, b"", &ident);
    }

    /// The command in pretty form and with `-output json`.
    fn both(&mut self, args: &[&str]) {
        self.both_n(args, &ident, &|_| {});
    }

    fn both_n(&mut self, args: &[&str], text: TextNorm<'_>, json: JsonNorm<'_>) {
        self.text(args, b"", text);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        self.json(&j, b"", json);
    }

    /// A file both sides read (same path, same content).
    fn file(&self, name: &str, content: &str) -> String {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    /// Names the authority IDs `localauthority <kind> show` reports that are not named
    /// yet (`x509-N` / `jwt-N`, in order of appearance, the same on both sides).
    fn learn_authorities(&mut self, kind: &str) {
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

// --- normalizers -------------------------------------------------------------------------

/// Replaces what follows `label` on each line that starts with it.
fn blank_after(s: &str, labels: &[&str]) -> String {
    s.split_inclusive('\n')
        .map(|l| match labels.iter().find(|p| l.starts_with(*p)) {
            Some(p) => format!("{p}<x>{}", if l.ends_with('\n') { "\n" } else { "" }),
            None => l.to_owned(),
        })
        .collect()
}

/// Agent listings: SVID expiry and serial numbers differ between servers.
fn norm_agent_text(s: &str) -> String {
    blank_after(s, &["Expiration time   : ", "Serial number     : "])
}

fn norm_agent_json(v: &mut serde_json::Value) {
    blank_fields(v, &["x509svid_serial_number", "x509svid_expires_at"]);
}

/// SPIFFE bundle documents: key material differs (key IDs are per-side variables), and the
/// CLI prints JWT authorities in Go map order, so they are sorted by key ID.
fn norm_spiffe_doc(s: &str) -> String {
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
fn norm_bundle_json(v: &mut serde_json::Value) {
    blank_fields(v, &["asn1", "public_key", "expires_at"]);
}

/// Local authority output: expiry differs.
fn norm_authority_text(s: &str) -> String {
    s.lines()
        .map(|l| match l.find("Expires at: ") {
            Some(i) => format!("{}Expires at: <time>", &l[..i]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn norm_authority_json(v: &mut serde_json::Value) {
    blank_fields(v, &["expires_at"]);
}

fn norm_created(v: &mut serde_json::Value) {
    blank_fields(v, &["created_at"]);
}

// --- the test ----------------------------------------------------------------------------

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn admin_api_matches_reference_server() {
    let started = std::time::Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("parity-files")
        .tempdir_in("/tmp")
        .unwrap();
    let (x509pop_ca, x509pop_agents) = support::x509pop_material(tmp.path(), &["x1", "x2"]);
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
        tmp,
        authorities: [0, 0],
    };
    p.learn_authorities("x509");
    p.learn_authorities("jwt");

    health_and_logger(&mut p);
    let files = bundles(&mut p);
    entries(&mut p);
    agents(&mut p, &x509pop_agents);
    federation(&mut p, &files);
    tokens(&mut p);
    minting(&mut p);
    local_authorities(&mut p);

    let Parity {
        d,
        known,
        known_seen,
        ..
    } = p;
    for k in &known {
        eprintln!("known difference: {k}");
    }
    for ((prefix, _), seen) in KNOWN.iter().zip(known_seen) {
        if !seen {
            eprintln!("KNOWN entry no longer differs (drop it?): {prefix}");
        }
    }
    eprintln!("parity test ran in {:.1?}", started.elapsed());
    d.finish("admin API parity");
}

fn health_and_logger(p: &mut Parity) {
    p.cmp(&["healthcheck"]);
    p.cmp(&["healthcheck", "-verbose"]);
    p.cmp(&["healthcheck", "-shallow", "-verbose"]);
    p.both(&["logger", "get"]);
    for level in [
        "info", "WARN", "warning", "trace", "panic", "Fatal", "error", "debug", "verbose",
    ] {
        p.both(&["logger", "set", "-level", level]);
        p.both(&["logger", "get"]);
    }
    p.cmp(&["logger", "set"]);
    p.both(&["logger", "reset"]);
    p.both(&["logger", "get"]);
}

/// Files the later sections reuse.
struct Files {
    /// A CA certificate (the reference server's), PEM.
    pem: String,
    /// A SPIFFE bundle document (the reference server's).
    spiffe: String,
}

fn bundles(p: &mut Parity) -> Files {
    p.both_n(&["bundle", "show"], &norm_pem, &norm_bundle_json);
    p.text(
        &["bundle", "show", "-format", "spiffe"],
        b"",
        &norm_spiffe_doc,
    );
    p.cmp(&["bundle", "show", "-format", "der"]);
    p.both(&["bundle", "count"]);
    p.both(&["bundle", "list"]);

    // Federated bundles: the same (foreign) content on both sides.
    let pem_text = p.r.run_raw(&["bundle", "show"], b"").stdout;
    // The reference's key ID is one of its per-side variables: give the copy its own.
    let spiffe_text =
        p.r.run_raw(&["bundle", "show", "-format", "spiffe"], b"")
            .stdout
            .replace(p.r.value("jwt-1").unwrap(), "foreign-kid");
    let files = Files {
        pem: p.file("ca.pem", &pem_text),
        spiffe: p.file("bundle.json", &spiffe_text),
    };
    let (pem, spiffe) = (files.pem.as_str(), files.spiffe.as_str());
    p.cmp(&["bundle", "set", "-id", "spiffe://fed1.test", "-path", pem]);
    p.cmp(&[
        "bundle",
        "set",
        "-id",
        "spiffe://fed2.test",
        "-format",
        "spiffe",
        "-path",
        spiffe,
    ]);
    p.text(
        &["bundle", "set", "-id", "spiffe://fed3.test"],
        pem_text.as_bytes(),
        &ident,
    );
    p.json(
        &[
            "bundle",
            "set",
            "-id",
            "spiffe://fed1.test",
            "-path",
            pem,
            "-output",
            "json",
        ],
        b"",
        &|_| {},
    );
    for id in [
        "fed4.test",
        "spiffe://example.org",
        "spiffe://bad td",
        "spiffe://fed5.test/path",
        "",
    ] {
        p.both(&["bundle", "set", "-id", id, "-path", pem]);
    }
    p.text(
        &["bundle", "set", "-id", "spiffe://fed5.test"],
        b"not a pem",
        &ident,
    );
    p.text(
        &[
            "bundle",
            "set",
            "-id",
            "spiffe://fed5.test",
            "-format",
            "spiffe",
        ],
        b"{}",
        &ident,
    );
    p.text(
        &["bundle", "set", "-id", "spiffe://fed5.test", "-format", "spiffe"],
        br#"{"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x":"AA","y":"AA","x5c":["AAAA"]}]}"#,
        &ident,
    );
    p.both(&["bundle", "list"]);
    p.cmp(&["bundle", "list", "-format", "spiffe"]);
    p.cmp(&["bundle", "list", "-format", "xml"]);
    for id in [
        "spiffe://fed1.test",
        "spiffe://fed2.test",
        "spiffe://nope.test",
        "spiffe://example.org",
        "bad td",
    ] {
        p.both(&["bundle", "list", "-id", id]);
    }
    p.cmp(&[
        "bundle",
        "list",
        "-id",
        "spiffe://fed2.test",
        "-format",
        "spiffe",
    ]);
    p.both(&["bundle", "count"]);

    // Deletion modes, with and without entries that federate with the bundle.
    let fed_entry: &[&str] = &[
        "entry",
        "create",
        "-entryID",
        "e-fed3",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/fed3-user",
        "-selector",
        "unix:uid:3333",
        "-federatesWith",
        "spiffe://fed3.test",
    ];
    p.cmp(fed_entry);
    p.both(&["bundle", "delete", "-id", "spiffe://fed3.test"]);
    p.both(&[
        "bundle",
        "delete",
        "-id",
        "spiffe://fed3.test",
        "-mode",
        "restrict",
    ]);
    p.both(&[
        "bundle",
        "delete",
        "-id",
        "spiffe://fed3.test",
        "-mode",
        "bogus",
    ]);
    p.cmp(&[
        "bundle",
        "delete",
        "-id",
        "spiffe://fed3.test",
        "-mode",
        "dissociate",
    ]);
    p.both_n(
        &["entry", "show", "-entryID", "e-fed3"],
        &ident,
        &norm_created,
    );
    p.text(
        &["bundle", "set", "-id", "spiffe://fed3.test"],
        pem_text.as_bytes(),
        &ident,
    );
    p.cmp(&["entry", "delete", "-entryID", "e-fed3"]);
    p.cmp(fed_entry);
    p.json(
        &[
            "bundle",
            "delete",
            "-id",
            "spiffe://fed3.test",
            "-mode",
            "delete",
            "-output",
            "json",
        ],
        b"",
        &|_| {},
    );
    p.both_n(
        &["entry", "show", "-entryID", "e-fed3"],
        &ident,
        &norm_created,
    );
    p.text(
        &["bundle", "set", "-id", "spiffe://fed3.test"],
        pem_text.as_bytes(),
        &ident,
    );
    p.cmp(&["bundle", "delete", "-id", "spiffe://fed3.test"]);
    for id in [
        "spiffe://fed3.test",
        "spiffe://nope.test",
        "spiffe://example.org",
        "bad td",
        "",
    ] {
        p.both(&["bundle", "delete", "-id", id]);
    }
    p.both(&["bundle", "count"]);
    files
}

fn entries(p: &mut Parity) {
    let basic: &[&str] = &[
        "entry",
        "create",
        "-entryID",
        "e-basic",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/w1",
        "-selector",
        "unix:gid:1000",
        "-selector",
        "unix:uid:1000",
    ];
    p.cmp(basic);
    p.cmp(&[
        "entry",
        "create",
        "-entryID",
        "e-full",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/w2",
        "-selector",
        "k8s:ns:default",
        "-selector",
        "k8s:sa:default",
        "-x509SVIDTTL",
        "300",
        "-jwtSVIDTTL",
        "60",
        "-dns",
        "a.example",
        "-dns",
        "b.example",
        "-hint",
        "h1",
        "-admin",
        "-downstream",
        "-storeSVID",
        "-entryExpiry",
        "1900000000",
        "-federatesWith",
        "spiffe://fed1.test",
        "-federatesWith",
        "fed2.test",
    ]);
    p.cmp(&[
        "entry",
        "create",
        "-entryID",
        "e-node",
        "-node",
        "-spiffeID",
        "spiffe://example.org/nodes",
        "-selector",
        "join_token:abc",
    ]);
    p.json(
        &[
            "entry",
            "create",
            "-entryID",
            "e-json",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/w3",
            "-selector",
            "unix:uid:3",
            "-dns",
            "x.example",
            "-output",
            "json",
        ],
        b"",
        &norm_created,
    );
    // Server-side refusals, one entry at a time.
    let dup = [
        "entry",
        "create",
        "-entryID",
        "e-dup",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/w1",
        "-selector",
        "unix:gid:1000",
        "-selector",
        "unix:uid:1000",
    ];
    p.both_n(&dup, &ident, &norm_created);
    let mut dup_no_id = dup.to_vec();
    dup_no_id.drain(2..4);
    p.both_n(&dup_no_id, &ident, &norm_created);
    let long_id = "i".repeat(256);
    let refused: &[&[&str]] = &[
        // An existing entry ID with different content.
        &[
            "-entryID",
            "e-basic",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/other",
            "-selector",
            "unix:uid:1",
        ],
        // Reserved path.
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/spire/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/spire",
            "-selector",
            "unix:uid:1",
        ],
        // Unknown federated trust domain.
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-federatesWith",
            "spiffe://nope.test",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-federatesWith",
            "spiffe://example.org",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-federatesWith",
            "Bad TD",
        ],
        // Foreign trust domains.
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://other.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-parentID",
            "spiffe://other.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-parentID",
            "spiffe://example.org",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org",
            "-selector",
            "unix:uid:1",
        ],
        // Malformed IDs, selectors, names.
        &[
            "-entryID",
            "bad id with spaces",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-entryID",
            "ñ",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x/",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            ":",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-dns",
            "bad_label",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-dns",
            "é.example",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-x509SVIDTTL",
            "-5",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-jwtSVIDTTL",
            "-5",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-entryExpiry",
            "-5",
        ],
        &[
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-selector",
            "k8s:ns:x",
            "-storeSVID",
        ],
        &[
            "-entryID",
            &long_id,
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &[
            "-node",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
    ];
    // Each case its own SPIFFE ID, so that none is refused as similar to another.
    for (i, tail) in refused.iter().enumerate() {
        let unique = format!("spiffe://example.org/x{i}");
        let mut args = vec!["entry", "create"];
        args.extend(tail.iter().map(|a| {
            if *a == "spiffe://example.org/x" {
                unique.as_str()
            } else {
                a
            }
        }));
        p.both_n(&args, &ident, &norm_created);
    }
    for (id, dns) in [
        ("e-dns1", &["-dns", "A.example", "-dns", "b_b.example"][..]),
        ("e-dns2", &["-dns", " a.example "]),
        ("e-dns3", &["-dns", "a..example"]),
        ("e-dns4", &["-dns", "-a.example"]),
        ("e-dns5", &["-dns", "ab--c.example"]),
        ("e-dns6", &["-dns", "*.*.example"]),
        ("e-dns7", &["-dns", "a.*.example"]),
        ("e-dns8", &["-dns", "a.example."]),
        ("e-dns9", &["-dns", " "]),
    ] {
        let selector = format!("dns:{id}");
        let mut args = vec![
            "entry",
            "create",
            "-entryID",
            id,
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/dns",
            "-selector",
            &selector,
            "-selector",
            "unix:uid:4242",
        ];
        args.extend_from_slice(dns);
        p.both_n(&args, &ident, &norm_created);
    }
    // Selectors, DNS names and federated trust domains given out of order (elsewhere they
    // are given sorted: see DS_ENTRY_ORDER).
    p.both_n(
        &[
            "entry",
            "create",
            "-entryID",
            "e-order",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/order",
            "-selector",
            "z:b",
            "-selector",
            "z:a",
            "-selector",
            "a:z",
            "-dns",
            "b.example",
            "-dns",
            "a.example",
            "-federatesWith",
            "spiffe://fed2.test",
            "-federatesWith",
            "spiffe://fed1.test",
        ],
        &ident,
        &norm_created,
    );
    p.both_n(
        &["entry", "show", "-entryID", "e-order"],
        &ident,
        &norm_created,
    );
    p.both_n(
        &[
            "entry",
            "update",
            "-entryID",
            "e-order",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/order",
            "-selector",
            "y:b",
            "-selector",
            "y:a",
            "-dns",
            "d.example",
            "-dns",
            "c.example",
            "-federatesWith",
            "spiffe://fed2.test",
            "-federatesWith",
            "spiffe://fed1.test",
        ],
        &ident,
        &norm_created,
    );
    p.both_n(
        &["entry", "show", "-entryID", "e-order"],
        &ident,
        &norm_created,
    );
    let long_hint = "h".repeat(1025);
    p.cmp(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/x",
        "-selector",
        "unix:uid:1",
        "-hint",
        &long_hint,
    ]);

    // -data files and standard input, with per-entry failures in the batch.
    let entries_json = r#"{"entries":[
        {"entry_id":"e-data1","spiffe_id":"spiffe://example.org/d1","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:11"}],"x509_svid_ttl":200,"jwt_svid_ttl":30,
         "dns_names":["d1.example"],"hint":"dh","admin":true,"federates_with":["spiffe://fed1.test"],
         "entryExpiry":1900000000,"store_svid":true},
        {"entry_id":"e-data2","spiffe_id":"spiffe://example.org/d2","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"gid:12"},{"type":"unix","value":"uid:12"}],"downstream":true},
        {"entry_id":"e-data3","spiffe_id":"spiffe://example.org/spire/d3","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:13"}]},
        {"entry_id":"e-data4","spiffe_id":"spiffe://example.org/d4","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:14"}],"federates_with":["spiffe://nope.test"]},
        {"entry_id":"e-data5","spiffe_id":"spiffe://example.org/w1","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:1000"},{"type":"unix","value":"gid:1000"}]}
    ]}"#;
    let entries_file = p.file("entries.json", entries_json);
    p.cmp(&["entry", "create", "-data", &entries_file]);
    p.cmp(&["entry", "delete", "-entryID", "e-data1"]);
    p.cmp(&["entry", "delete", "-entryID", "e-data2"]);
    p.text(
        &["entry", "create", "-data", "-"],
        entries_json.as_bytes(),
        &ident,
    );
    p.json(
        &["entry", "create", "-data", &entries_file, "-output", "json"],
        b"",
        &norm_created,
    );
    p.text(
        &["entry", "create", "-data", "-"],
        br#"{"entries":[]}"#,
        &ident,
    );

    // Listing and counting with every filter.
    let filters: &[&[&str]] = &[
        &[],
        &["-spiffeID", "spiffe://example.org/w1"],
        &["-spiffeID", "spiffe://example.org/none"],
        &["-spiffeID", "spiffe://example.org/spire/x"],
        &["-spiffeID", "spiffe://other.org/w1"],
        &["-parentID", "spiffe://example.org/agent"],
        &["-parentID", "spiffe://example.org/spire/server"],
        &["-parentID", "spiffe://other.org/agent"],
        &["-selector", "unix:uid:1000"],
        &["-selector", "unix:uid:1000", "-matchSelectorsOn", "exact"],
        &[
            "-selector",
            "unix:uid:1000",
            "-selector",
            "unix:gid:1000",
            "-matchSelectorsOn",
            "exact",
        ],
        &[
            "-selector",
            "unix:uid:1000",
            "-selector",
            "unix:uid:12",
            "-matchSelectorsOn",
            "any",
        ],
        &[
            "-selector",
            "unix:uid:1000",
            "-selector",
            "unix:gid:1000",
            "-selector",
            "unix:x:y",
            "-matchSelectorsOn",
            "subset",
        ],
        &[
            "-selector",
            "unix:uid:1000",
            "-matchSelectorsOn",
            "superset",
        ],
        &["-selector", "unix:uid:1000", "-matchSelectorsOn", "bogus"],
        &["-selector", "unix"],
        &["-federatesWith", "spiffe://fed1.test"],
        &[
            "-federatesWith",
            "spiffe://fed1.test",
            "-matchFederatesWithOn",
            "exact",
        ],
        &[
            "-federatesWith",
            "spiffe://fed1.test",
            "-federatesWith",
            "spiffe://fed2.test",
            "-matchFederatesWithOn",
            "exact",
        ],
        &[
            "-federatesWith",
            "spiffe://fed1.test",
            "-federatesWith",
            "spiffe://fed2.test",
            "-matchFederatesWithOn",
            "any",
        ],
        &[
            "-federatesWith",
            "spiffe://fed1.test",
            "-federatesWith",
            "spiffe://fed2.test",
            "-matchFederatesWithOn",
            "subset",
        ],
        &[
            "-federatesWith",
            "spiffe://fed2.test",
            "-matchFederatesWithOn",
            "superset",
        ],
        &["-federatesWith", "bad td"],
        &["-hint", "h1"],
        &["-hint", "dh"],
        &["-hint", "none"],
        &["-downstream"],
        &["-downstream=false"],
        &[
            "-spiffeID",
            "spiffe://example.org/w2",
            "-parentID",
            "spiffe://example.org/agent",
            "-hint",
            "h1",
            "-downstream",
            "-selector",
            "k8s:ns:default",
            "-federatesWith",
            "spiffe://fed1.test",
        ],
    ];
    for f in filters {
        for cmd in ["show", "count"] {
            let mut args = vec!["entry", cmd];
            args.extend_from_slice(f);
            p.both_n(&args, &ident, &norm_created);
        }
    }
    for id in ["e-basic", "e-full", "e-node", "nope", ""] {
        p.both_n(&["entry", "show", "-entryID", id], &ident, &norm_created);
    }
    p.both_n(
        &["entry", "show", "-entryID", "e-basic", "-hint", "x"],
        &ident,
        &norm_created,
    );

    // Updates.
    p.cmp(&[
        "entry",
        "create",
        "-entryID",
        "e-upd",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/u",
        "-selector",
        "unix:uid:50",
    ]);
    p.cmp(&[
        "entry",
        "update",
        "-entryID",
        "e-upd",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/u2",
        "-selector",
        "unix:uid:51",
        "-x509SVIDTTL",
        "120",
        "-jwtSVIDTTL",
        "20",
        "-dns",
        "u.example",
        "-hint",
        "uh",
        "-admin",
        "-downstream",
        "-storeSVID",
        "-entryExpiry",
        "1900000001",
        "-federatesWith",
        "spiffe://fed1.test",
    ]);
    p.both_n(
        &["entry", "show", "-entryID", "e-upd"],
        &ident,
        &norm_created,
    );
    p.json(
        &[
            "entry",
            "update",
            "-entryID",
            "e-upd",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/u3",
            "-selector",
            "unix:uid:52",
            "-output",
            "json",
        ],
        b"",
        &norm_created,
    );
    let upd_json = r#"{"entries":[{"entry_id":"e-upd","spiffe_id":"spiffe://example.org/u4",
        "parent_id":"spiffe://example.org/agent","selectors":[{"type":"unix","value":"uid:53"}],
        "hint":"from-data"},
        {"entry_id":"nope","spiffe_id":"spiffe://example.org/u5",
        "parent_id":"spiffe://example.org/agent","selectors":[{"type":"unix","value":"uid:53"}]}]}"#;
    let upd_file = p.file("update.json", upd_json);
    p.cmp(&["entry", "update", "-data", &upd_file]);
    p.text(
        &["entry", "update", "-data", "-"],
        upd_json.as_bytes(),
        &ident,
    );
    p.both_n(
        &["entry", "show", "-entryID", "e-upd"],
        &ident,
        &norm_created,
    );
    let bad_updates: &[&[&str]] = &[
        &[
            "-entryID",
            "nope",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/u",
            "-selector",
            "unix:uid:50",
        ],
        &[
            "-entryID",
            "e-upd",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/spire/nope",
            "-selector",
            "unix:uid:50",
        ],
        &[
            "-entryID",
            "e-upd",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/u",
            "-selector",
            "unix:uid:50",
            "-federatesWith",
            "spiffe://nope.test",
        ],
        // Would make it a duplicate of e-basic.
        &[
            "-entryID",
            "e-upd",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/w1",
            "-selector",
            "unix:gid:1000",
            "-selector",
            "unix:uid:1000",
        ],
        &[
            "-entryID",
            "e-upd",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/u",
        ],
        &[
            "-entryID",
            "",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/u",
            "-selector",
            "unix:uid:50",
        ],
        &[
            "-entryID",
            "e-upd",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/u",
            "-selector",
            "unix:uid:50",
            "-x509SVIDTTL",
            "-1",
        ],
    ];
    for tail in bad_updates {
        let mut args = vec!["entry", "update"];
        args.extend_from_slice(tail);
        p.both_n(&args, &ident, &norm_created);
    }
    p.both_n(
        &["entry", "show", "-entryID", "e-upd"],
        &ident,
        &norm_created,
    );

    // Deletes.
    for e in ["e-del", "e-del2"] {
        p.cmp(&[
            "entry",
            "create",
            "-entryID",
            e,
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            &format!("spiffe://example.org/{e}"),
            "-selector",
            "unix:uid:60",
        ]);
    }
    p.cmp(&["entry", "delete", "-entryID", "e-del"]);
    p.both(&["entry", "delete", "-entryID", "e-del"]);
    p.both(&["entry", "delete", "-entryID", ""]);
    p.json(
        &["entry", "delete", "-entryID", "e-del2", "-output", "json"],
        b"",
        &|_| {},
    );
    let ids = p.file("ids.json", r#"{"ids":["e-data1","e-data2","e-missing"]}"#);
    p.cmp(&["entry", "delete", "-file", &ids]);
    p.text(
        &["entry", "delete", "-file", "-"],
        br#"{"ids":["e-json","x",""]}"#,
        &ident,
    );
    p.text(&["entry", "delete", "-file", "-"], br#"{"ids":[]}"#, &ident);
    p.both_n(&["entry", "show"], &ident, &norm_created);
    p.both(&["entry", "count"]);

    // More entries than one ListEntries page (the CLI asks for 500 at a time).
    let many: Vec<String> = (0..520)
        .map(|i| {
            format!(
                r#"{{"entry_id":"e-many-{i:03}","spiffe_id":"spiffe://example.org/many/{i}","parent_id":"spiffe://example.org/agent","selectors":[{{"type":"many","value":"{i}"}}]}}"#
            )
        })
        .collect();
    let many_file = p.file(
        "many.json",
        &format!(r#"{{"entries":[{}]}}"#, many.join(",")),
    );
    p.cmp(&["entry", "create", "-data", &many_file]);
    p.both(&["entry", "count"]);
    p.both_n(&["entry", "show"], &ident, &norm_created);
    p.both_n(
        &["entry", "show", "-parentID", "spiffe://example.org/agent"],
        &ident,
        &norm_created,
    );
    let many_ids: Vec<String> = (0..520).map(|i| format!(r#""e-many-{i:03}""#)).collect();
    let many_ids = p.file(
        "many-ids.json",
        &format!(r#"{{"ids":[{}]}}"#, many_ids.join(",")),
    );
    p.cmp(&["entry", "delete", "-file", &many_ids]);
    p.both(&["entry", "count"]);
}

fn agents(p: &mut Parity, x509pop: &[X509PopIdentity]) {
    let tokens = ["agent-a1", "agent-a2", "agent-a3", "agent-a4"];
    let mut how: Vec<Attestation<'_>> = tokens.iter().map(|t| Attestation::JoinToken(t)).collect();
    how.extend(x509pop.iter().map(Attestation::X509Pop));
    let (r, o) = (&p.r.server, &p.o.server);
    std::thread::scope(|s| {
        let a = s.spawn(|| how.iter().map(|h| r.attest_agent(*h)).collect::<Vec<_>>());
        let b = s.spawn(|| how.iter().map(|h| o.attest_agent(*h)).collect::<Vec<_>>());
        (a.join().unwrap(), b.join().unwrap())
    });
    let id = |t: &str| format!("spiffe://example.org/spire/agent/join_token/{t}");
    let (a1, a2, a3) = (id(tokens[0]), id(tokens[1]), id(tokens[2]));
    let (x1, x2) = (x509pop[0].id.as_str(), x509pop[1].id.as_str());
    // An alias entry parented to an agent, and to the server.
    p.cmp(&[
        "entry",
        "create",
        "-entryID",
        "e-alias",
        "-node",
        "-spiffeID",
        "spiffe://example.org/alias",
        "-selector",
        &format!("spiffe_id:{a1}"),
    ]);
    p.cmp(&[
        "entry",
        "create",
        "-entryID",
        "e-under-agent",
        "-parentID",
        &a1,
        "-spiffeID",
        "spiffe://example.org/under-agent",
        "-selector",
        "unix:uid:7",
    ]);

    let listings: &[&[&str]] = &[
        &["list"],
        &["list", "-attestationType", "join_token"],
        &["list", "-attestationType", "x509pop"],
        &["list", "-banned", "true"],
        &["list", "-banned", "false"],
        &["list", "-banned", "maybe"],
        &["list", "-canReattest", "true"],
        &["list", "-canReattest", "false"],
        &["list", "-expiresBefore", "2000-01-01 00:00:00 +0000 +00"],
        &["list", "-expiresBefore", "2999-01-01 00:00:00 +0000 +00"],
        &["list", "-expiresBefore", "not a time"],
        &["list", "-selector", "join_token:x"],
        &[
            "list",
            "-selector",
            "join_token:x",
            "-matchSelectorsOn",
            "any",
        ],
        &[
            "list",
            "-selector",
            "join_token:x",
            "-matchSelectorsOn",
            "exact",
        ],
        &[
            "list",
            "-selector",
            "join_token:x",
            "-matchSelectorsOn",
            "bogus",
        ],
        &["list", "-selector", "bad"],
        &["list", "-selector", "x509pop:subject:cn:x1"],
        &[
            "list",
            "-selector",
            "x509pop:subject:cn:x1",
            "-selector",
            "x509pop:subject:cn:x2",
            "-matchSelectorsOn",
            "any",
        ],
        &[
            "list",
            "-selector",
            "x509pop:subject:cn:x1",
            "-matchSelectorsOn",
            "exact",
        ],
        &[
            "list",
            "-selector",
            "x509pop:subject:cn:x1",
            "-selector",
            "x509pop:subject:cn:x2",
            "-selector",
            "x509pop:ca:fingerprint:nope",
            "-matchSelectorsOn",
            "subset",
        ],
        &[
            "list",
            "-attestationType",
            "x509pop",
            "-canReattest",
            "true",
            "-banned",
            "false",
            "-expiresBefore",
            "2999-01-01 00:00:00 +0000 +00",
        ],
        &["count", "-selector", "x509pop:subject:cn:x2"],
        &["count", "-canReattest", "true"],
        &["count"],
        &["count", "-banned", "true"],
        &[
            "count",
            "-canReattest",
            "false",
            "-attestationType",
            "join_token",
        ],
        &["count", "-expiresBefore", "2000-01-01 00:00:00 -0700 -07"],
        &["count", "-expiresBefore", "2999-01-01 00:00:00 -0700 -07"],
        &["count", "-selector", "join_token:x"],
    ];
    for l in listings {
        let mut args = vec!["agent"];
        args.extend_from_slice(l);
        p.both_n(&args, &norm_agent_text, &norm_agent_json);
    }
    for target in [
        x1,
        a1.as_str(),
        "spiffe://example.org/spire/agent/join_token/nope",
        "spiffe://other.org/spire/agent/x",
        "spiffe://example.org/workload",
        "spiffe://example.org",
        "not an id",
        "",
    ] {
        for cmd in ["show", "ban", "evict"] {
            if cmd != "show" && (target == a1 || target == x1) {
                continue;
            }
            p.both_n(
                &["agent", cmd, "-spiffeID", target],
                &norm_agent_text,
                &norm_agent_json,
            );
        }
    }
    // Ban, then evict.
    p.both(&["agent", "ban", "-spiffeID", &a1]);
    p.both_n(
        &["agent", "show", "-spiffeID", &a1],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &["agent", "list", "-banned", "true"],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &["agent", "count", "-banned", "false"],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.cmp(&["agent", "evict", "-spiffeID", &a2]);
    p.both(&["agent", "evict", "-spiffeID", &a2]);
    p.both_n(&["agent", "count"], &norm_agent_text, &norm_agent_json);
    p.cmp(&["agent", "ban", "-spiffeID", &a1]);
    p.cmp(&["agent", "evict", "-spiffeID", &a1]);
    p.both_n(
        &["agent", "show", "-spiffeID", &a1],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(&["agent", "list"], &norm_agent_text, &norm_agent_json);
    p.both_n(&["entry", "show"], &ident, &norm_created);
    // An x509pop agent (re-attestable) banned, and an alias entry over its selectors.
    p.cmp(&["agent", "ban", "-spiffeID", x2]);
    p.both_n(
        &["agent", "list", "-canReattest", "true"],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &[
            "entry",
            "create",
            "-entryID",
            "e-x509pop-alias",
            "-node",
            "-spiffeID",
            "spiffe://example.org/x509pop-nodes",
            "-selector",
            "x509pop:subject:cn:x1",
        ],
        &ident,
        &norm_created,
    );
    // Purging considers re-attestable agents only: nothing has expired for 30 days or 1s;
    // everything "has expired for -2h" (expires within the next 2 hours).
    for tail in [
        &[][..],
        &["-dryRun"],
        &["-expiredFor", "1s"],
        &["-expiredFor", "-2h", "-dryRun"],
    ] {
        let mut args = vec!["agent", "purge"];
        args.extend_from_slice(tail);
        p.both_n(&args, &norm_agent_text, &norm_agent_json);
    }
    p.cmp(&["agent", "purge", "-expiredFor", "-2h"]);
    p.both_n(
        &["agent", "purge", "-expiredFor", "-2h", "-output", "json"],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &["agent", "show", "-spiffeID", x1],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(&["agent", "list"], &norm_agent_text, &norm_agent_json);
    p.both_n(
        &["agent", "show", "-spiffeID", &a3],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(&["agent", "count"], &norm_agent_text, &norm_agent_json);
    p.cmp(&["entry", "delete", "-entryID", "e-alias"]);
    p.cmp(&["entry", "delete", "-entryID", "e-under-agent"]);
    p.cmp(&["entry", "delete", "-entryID", "e-x509pop-alias"]);
}

fn federation(p: &mut Parity, files: &Files) {
    let pem_text = read(std::path::Path::new(&files.pem));
    let spiffe_text = read(std::path::Path::new(&files.spiffe));
    let fed_web: &[&str] = &[
        "federation",
        "create",
        "-trustDomain",
        "fedx.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:1/bundle",
        "-bundleEndpointProfile",
        "https_web",
        "-trustDomainBundlePath",
        &files.pem,
    ];
    p.cmp(fed_web);
    p.cmp(&[
        "federation",
        "create",
        "-trustDomain",
        "fedy.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:1/b",
        "-bundleEndpointProfile",
        "https_spiffe",
        "-endpointSpiffeID",
        "spiffe://fedy.test/bundle-server",
        "-trustDomainBundlePath",
        &files.spiffe,
        "-trustDomainBundleFormat",
        "spiffe",
    ]);
    p.json(
        &[
            "federation",
            "create",
            "-trustDomain",
            "fedz.test",
            "-bundleEndpointURL",
            "https://127.0.0.1:1/z",
            "-bundleEndpointProfile",
            "https_web",
            "-output",
            "json",
        ],
        b"",
        &|_| {},
    );
    // The relationship with fed1.test reuses the bundle set earlier.
    p.cmp(&[
        "federation",
        "create",
        "-trustDomain",
        "fed1.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:1/f1",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    let mut dup = fed_web.to_vec();
    p.cmp(&dup);
    dup.extend(["-output", "json"]);
    p.json(&dup, b"", &|_| {});
    let refused: &[&[&str]] = &[
        &[
            "-trustDomain",
            "Bad.TD",
            "-bundleEndpointURL",
            "https://127.0.0.1:1/bundle",
            "-bundleEndpointProfile",
            "https_web",
        ],
        &[
            "-trustDomain",
            "fedq.test",
            "-bundleEndpointURL",
            "http://insecure/bundle",
            "-bundleEndpointProfile",
            "https_web",
        ],
        &[
            "-trustDomain",
            "fedq.test",
            "-bundleEndpointURL",
            "https://user:pw@host/bundle",
            "-bundleEndpointProfile",
            "https_web",
        ],
        &[
            "-trustDomain",
            "fedq.test",
            "-bundleEndpointURL",
            "https:///bundle",
            "-bundleEndpointProfile",
            "https_web",
        ],
        &[
            "-trustDomain",
            "fedq.test",
            "-bundleEndpointURL",
            "https://127.0.0.1:1/b",
            "-bundleEndpointProfile",
            "https_spiffe",
            "-endpointSpiffeID",
            "not-an-id",
        ],
        &[
            "-trustDomain",
            "example.org",
            "-bundleEndpointURL",
            "https://127.0.0.1:1/bundle",
            "-bundleEndpointProfile",
            "https_web",
        ],
        &[
            "-trustDomain",
            "spiffe://fedq.test",
            "-bundleEndpointURL",
            "https://127.0.0.1:1/bundle",
            "-bundleEndpointProfile",
            "https_web",
            "-trustDomainBundlePath",
            &files.pem,
        ],
    ];
    for tail in refused {
        let mut args = vec!["federation", "create"];
        args.extend_from_slice(tail);
        p.both(&args);
    }
    for (td, url) in [
        ("fedu1.test", "https://example.com"),
        ("fedu2.test", "https://EXAMPLE.com/Path"),
        ("fedu3.test", "https://example.com:443/x"),
        ("fedu4.test", "HTTPS://example.com/a/../b?q=1#frag"),
        ("fedu5.test", "https://[::1]:8443/x"),
        ("fedu6.test", "https://@example.com/x"),
        ("fedu7.test", "https:example.com"),
        ("fedu8.test", "https://example.com/a b"),
        ("fedu9.test", "https://host:port/x"),
    ] {
        p.both(&[
            "federation",
            "create",
            "-trustDomain",
            td,
            "-bundleEndpointURL",
            url,
            "-bundleEndpointProfile",
            "https_web",
        ]);
        p.both(&["federation", "show", "-trustDomain", td]);
        p.cmp(&["federation", "delete", "-id", td]);
    }
    p.both(&["federation", "list"]);
    p.both(&["bundle", "list"]);
    let pem_json = serde_json::to_string(&pem_text).unwrap();
    let rel_json = format!(
        r#"{{"federationRelationships":[
            {{"trustDomain":"fedd1.test","bundleEndpointURL":"https://127.0.0.1:1/d1","bundleEndpointProfile":"https_web",
              "trustDomainBundle":{pem_json},"trustDomainBundleFormat":"pem"}},
            {{"trustDomain":"fedd2.test","bundleEndpointURL":"https://127.0.0.1:1/d2","bundleEndpointProfile":"https_spiffe",
              "endpointSPIFFEID":"spiffe://fedd2.test/server","trustDomainBundle":{spiffe_text},"trustDomainBundleFormat":"spiffe"}},
            {{"trustDomain":"fedd3.test","bundleEndpointURL":"https://127.0.0.1:1/d3","bundleEndpointProfile":"https_web"}},
            {{"trustDomain":"fedd4.test","bundleEndpointURL":"http://127.0.0.1:1/d4","bundleEndpointProfile":"https_web"}}
        ]}}"#
    );
    let rel_file = p.file("relationships.json", &rel_json);
    p.cmp(&["federation", "create", "-data", &rel_file]);
    p.cmp(&["federation", "delete", "-id", "fedd1.test"]);
    p.text(
        &["federation", "create", "-data", "-"],
        rel_json.as_bytes(),
        &ident,
    );
    p.json(
        &[
            "federation",
            "create",
            "-data",
            &rel_file,
            "-output",
            "json",
        ],
        b"",
        &|_| {},
    );
    p.cmp(&["federation", "update", "-data", &rel_file]);
    p.json(
        &[
            "federation",
            "update",
            "-data",
            &rel_file,
            "-output",
            "json",
        ],
        b"",
        &|_| {},
    );
    p.both(&[
        "federation",
        "update",
        "-trustDomain",
        "fedx.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:2/bundle",
        "-bundleEndpointProfile",
        "https_spiffe",
        "-endpointSpiffeID",
        "spiffe://fedx.test/srv",
    ]);
    p.both(&[
        "federation",
        "update",
        "-trustDomain",
        "fedx.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:2/bundle",
        "-bundleEndpointProfile",
        "https_web",
        "-trustDomainBundlePath",
        &files.spiffe,
        "-trustDomainBundleFormat",
        "spiffe",
    ]);
    p.both(&[
        "federation",
        "update",
        "-trustDomain",
        "nope.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:2/bundle",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    p.both(&[
        "federation",
        "update",
        "-trustDomain",
        "example.org",
        "-bundleEndpointURL",
        "https://127.0.0.1:2/bundle",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    p.both(&["bundle", "list", "-id", "spiffe://fedx.test"]);
    for args in [
        &["federation", "list"][..],
        &["federation", "show", "-trustDomain", "fedx.test"],
        &["federation", "show", "-trustDomain", "fedy.test"],
        &["federation", "show", "-trustDomain", "fedd2.test"],
        &["federation", "show", "-trustDomain", "nope.test"],
        &["federation", "show", "-trustDomain", "bad td"],
        &["federation", "show", "-trustDomain", ""],
        &["federation", "refresh", "-id", "nope.test"],
        &["federation", "refresh", "-id", "bad td"],
        &["federation", "refresh", "-id", "fedx.test"],
        &["federation", "delete", "-id", "nope.test"],
        &["federation", "delete", "-id", "bad td"],
        &["federation", "delete", "-id", ""],
    ] {
        p.both(args);
    }
    p.both(&["federation", "delete", "-id", "fedx.test"]);
    p.both(&["federation", "delete", "-id", "fedx.test"]);
    for td in [
        "fedy.test",
        "fedz.test",
        "fedd1.test",
        "fedd2.test",
        "fedd3.test",
    ] {
        p.cmp(&["federation", "delete", "-id", td]);
    }
    p.both(&["federation", "list"]);
    p.both(&["bundle", "list"]);
}

fn tokens(p: &mut Parity) {
    p.both_n(&["token", "generate"], &ident, &|v| {
        blank_fields(v, &["expires_at"]);
    });
    p.cmp(&[
        "token",
        "generate",
        "-spiffeID",
        "spiffe://example.org/alias",
        "-ttl",
        "30",
    ]);
    p.both_n(
        &["entry", "show", "-spiffeID", "spiffe://example.org/alias"],
        &ident,
        &norm_created,
    );
    for args in [
        &["-spiffeID", "spiffe://other.org/alias"][..],
        &["-spiffeID", "spiffe://example.org/spire/server"],
        &["-spiffeID", "spiffe://example.org/spire/agent/x"],
        &["-spiffeID", "spiffe://example.org"],
        &["-spiffeID", "not an id"],
        &["-ttl", "-5"],
        &["-ttl", "0"],
    ] {
        let mut a = vec!["token", "generate"];
        a.extend_from_slice(args);
        p.both_n(&a, &ident, &|v| blank_fields(v, &["expires_at"]));
    }
}

fn minting(p: &mut Parity) {
    let pem_norm = |s: &str| norm_times(&norm_pem(s));
    let x509_json = |v: &mut serde_json::Value| {
        // The SVID, key and bundle certificates differ; their number must not.
        let Some(item) = v.as_array_mut().and_then(|a| a.first_mut()) else {
            return;
        };
        for field in ["x509_svid", "root_cas"] {
            let n = item[field].as_array().map_or(0, Vec::len);
            item[field] = serde_json::json!(n);
        }
        item["private_key"] = serde_json::json!("<key>");
    };
    for tail in [
        &["-spiffeID", "spiffe://example.org/minted"][..],
        &[
            "-spiffeID",
            "spiffe://example.org/minted",
            "-dns",
            "m.example",
            "-dns",
            "*.n.example",
            "-ttl",
            "10m",
        ],
        &["-spiffeID", "spiffe://example.org/minted", "-ttl", "48h"],
        &["-spiffeID", "spiffe://other.org/minted"],
        &["-spiffeID", "spiffe://example.org/spire/minted"],
        &["-spiffeID", "spiffe://example.org"],
        &[
            "-spiffeID",
            "spiffe://example.org/minted",
            "-dns",
            "é.example",
        ],
        &[
            "-spiffeID",
            "spiffe://example.org/minted",
            "-dns",
            "bad_label",
        ],
        &[
            "-spiffeID",
            "spiffe://example.org/minted",
            "-dns",
            "*.a.example",
            "-dns",
            "b.a.example",
        ],
        &["-spiffeID", ""],
    ] {
        let mut args = vec!["x509", "mint"];
        args.extend_from_slice(tail);
        p.both_n(&args, &pem_norm, &x509_json);
    }
    // -write: the files' modes and shapes.
    {
        let args = [
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-write",
            "{dir}/mint",
        ];
        let files = |side: &Side| {
            let dir = side.server.dir.path().join("mint");
            std::fs::create_dir_all(&dir).unwrap();
            let out = side.run(&args, b"");
            let files: Vec<(String, u32, String)> = ["svid.pem", "key.pem", "bundle.pem"]
                .iter()
                .map(|f| {
                    let path = dir.join(f);
                    (f.to_string(), mode(&path), norm_pem(&read(&path)))
                })
                .collect();
            (out, files)
        };
        let (r, rf) = files(&p.r);
        let (o, of) = files(&p.o);
        p.d.same("x509 mint -write", &r, &o, &norm_times);
        p.d.count += 1;
        if rf != of {
            p.d.failures.push(format!(
                "x509 mint -write files\n  reference: {rf:?}\n  ours:      {of:?}\n"
            ));
        }
    }
    let jwt_norm = |s: &str| norm_times(&norm_jwt(s));
    for tail in [
        &["-spiffeID", "spiffe://example.org/minted", "-audience", "a"][..],
        &[
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
            "-audience",
            "b",
            "-ttl",
            "48h",
        ],
        &[
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
            "-ttl",
            "30s",
        ],
        &["-spiffeID", "spiffe://other.org/minted", "-audience", "a"],
        &[
            "-spiffeID",
            "spiffe://example.org/spire/x",
            "-audience",
            "a",
        ],
        &["-spiffeID", "spiffe://example.org", "-audience", "a"],
        &["-spiffeID", "spiffe://example.org/minted"],
        &["-spiffeID", "spiffe://example.org/minted", "-audience", ""],
    ] {
        let mut args = vec!["jwt", "mint"];
        args.extend_from_slice(tail);
        p.both_n(&args, &jwt_norm, &|v| {
            blank_fields(v, &["token", "expires_at", "issued_at"]);
        });
    }
    // The minted JWT's claims (not its signature) must match.
    let claims = |side: &Side| {
        let out = side.run_raw(
            &[
                "jwt",
                "mint",
                "-spiffeID",
                "spiffe://example.org/minted",
                "-audience",
                "a",
                "-audience",
                "b",
                "-ttl",
                "10m",
            ],
            b"",
        );
        let token = out.stdout.trim();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "not a JWT: {out:?}");
        use base64::Engine as _;
        let decode = |s: &str| -> serde_json::Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .unwrap(),
            )
            .unwrap()
        };
        let mut header = decode(parts[0]);
        let mut body = decode(parts[1]);
        blank_fields(&mut header, &["kid"]);
        let exp = body["exp"].as_i64().unwrap_or(0) - body["iat"].as_i64().unwrap_or(0);
        blank_fields(&mut body, &["exp", "iat"]);
        body["exp-iat"] = serde_json::json!(exp);
        Out {
            stdout: format!("{header}\n{body}\n"),
            stderr: norm_times(&out.stderr),
            code: out.code,
        }
    };
    let (r, o) = (claims(&p.r), claims(&p.o));
    p.d.same("jwt mint: header and claims", &r, &o, &norm_times);
    {
        let args = [
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
            "-write",
            "{dir}/token.jwt",
        ];
        let file = |side: &Side| {
            let out = side.run(&args, b"");
            let path = side.server.dir.path().join("token.jwt");
            (out, mode(&path), norm_jwt(&read(&path)))
        };
        let (r, rm, rt) = file(&p.r);
        let (o, om, ot) = file(&p.o);
        p.d.same("jwt mint -write", &r, &o, &norm_times);
        p.d.count += 1;
        if (rm, &rt) != (om, &ot) {
            p.d.failures.push(format!(
                "jwt mint -write file\n  reference: {rm:o} {rt:?}\n  ours:      {om:o} {ot:?}\n"
            ));
        }
    }
}

fn local_authorities(p: &mut Parity) {
    let bundle = |p: &mut Parity| {
        p.both_n(&["bundle", "show"], &norm_pem, &norm_bundle_json);
        p.text(
            &["bundle", "show", "-format", "spiffe"],
            b"",
            &norm_spiffe_doc,
        );
    };
    for kind in ["x509", "jwt"] {
        let la = |op: &'static str| -> Vec<&'static str> { vec!["localauthority", kind, op] };
        let show = |p: &mut Parity| {
            p.learn_authorities(kind);
            p.both_n(&la("show"), &norm_authority_text, &norm_authority_json);
        };
        // A refused operation, in both output forms.
        let refused = |p: &mut Parity, op: &'static str, id: &str| {
            let mut args = la(op);
            args.extend(["-authorityID", id]);
            p.both_n(&args, &norm_authority_text, &norm_authority_json);
        };
        // A state change, in one output form: pretty for X.509, JSON for JWT.
        let change = |p: &mut Parity, op: &'static str, id: Option<&str>| {
            let mut args = la(op);
            if let Some(id) = id {
                args.extend(["-authorityID", id]);
            }
            if kind == "jwt" {
                args.extend(["-output", "json"]);
                p.json(&args, b"", &norm_authority_json);
            } else {
                p.text(&args, b"", &norm_authority_text);
            }
        };
        show(p);
        for op in ["activate", "taint", "revoke"] {
            p.both_n(&la(op), &norm_authority_text, &norm_authority_json);
            refused(p, op, "nope");
        }
        let active = format!("{{{kind}-1}}");
        refused(p, "activate", &active);
        refused(p, "taint", &active);
        refused(p, "revoke", &active);

        // Prepare twice: the second replaces the first (which stays in the bundle).
        p.text(&la("prepare"), b"", &norm_authority_text);
        show(p);
        let mut prepare_json = la("prepare");
        prepare_json.extend(["-output", "json"]);
        p.json(&prepare_json, b"", &norm_authority_json);
        show(p);
        bundle(p);
        let replaced = format!("{{{kind}-2}}");
        let prepared = format!("{{{kind}-3}}");
        refused(p, "activate", &replaced);
        refused(p, "taint", &prepared);
        refused(p, "revoke", &prepared);
        change(p, "activate", Some(&prepared));
        show(p);
        // The old authority: not re-activatable, revocable only once tainted.
        let old = active;
        refused(p, "activate", &old);
        refused(p, "activate", &prepared);
        refused(p, "revoke", &old);
        refused(p, "taint", &prepared);
        refused(p, "taint", &replaced);
        refused(p, "revoke", &replaced);
        change(p, "taint", Some(&old));
        show(p);
        bundle(p);
        refused(p, "taint", &old);
        change(p, "revoke", Some(&old));
        show(p);
        bundle(p);
        refused(p, "revoke", &old);
        refused(p, "taint", &old);
        // A new rotation on top.
        change(p, "prepare", None);
        show(p);
        bundle(p);
    }
    for op in ["taint", "revoke"] {
        p.both(&["upstreamauthority", op, "-subjectKeyID", "abcd"]);
        p.both(&["upstreamauthority", op]);
    }
    p.both_n(&["bundle", "count"], &ident, &|_| {});
}
