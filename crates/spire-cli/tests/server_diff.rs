//! Every `spire-server` client command, run by the reference CLI and by ours
//! against one reference spire-server 1.13.3: standard output, standard
//! error and exit codes must match (pretty output byte for byte, JSON as
//! values), after normalizing only what differs from run to run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Diff, Out, Server, blank_fields, ident, mode, norm_jwt, norm_pem, norm_times, norm_uuid,
    our_server_cli, read, ref_server_bin, run_cli, run_ref,
};
use spire_goflag::Cli;

struct Ctx {
    socket: String,
    ours: Cli,
    d: Diff,
    tmp: tempfile::TempDir,
}

fn sock_args<'a>(args: &[&'a str], socket: &'a str) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.push("-socketPath");
    v.push(socket);
    v
}

impl Ctx {
    fn theirs_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_ref(&ref_server_bin(), &sock_args(args, &self.socket), stdin)
    }

    fn theirs(&self, args: &[&str]) -> Out {
        self.theirs_in(args, b"")
    }

    fn ours_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_cli(&self.ours, &sock_args(args, &self.socket), stdin)
    }

    /// Runs a setup command with the reference CLI, which must succeed.
    fn setup(&self, args: &[&str]) -> Out {
        let out = self.theirs(args);
        assert_eq!(out.code, 0, "setup {args:?} failed: {out:?}");
        out
    }

    /// Runs `args` with both (reference first) and compares after `norm`.
    fn cmp_norm(&mut self, args: &[&str], stdin: &[u8], norm: &dyn Fn(&str) -> String) {
        let r = self.theirs_in(args, stdin);
        let o = self.ours_in(args, stdin);
        self.d.same(&args.join(" "), &r, &o, norm);
    }

    fn cmp(&mut self, args: &[&str]) {
        self.cmp_norm(args, b"", &ident);
    }

    fn cmp_json_norm(
        &mut self,
        args: &[&str],
        stdin: &[u8],
        norm: &dyn Fn(&mut serde_json::Value),
    ) {
        let r = self.theirs_in(args, stdin);
        let o = self.ours_in(args, stdin);
        self.d.same_json(&args.join(" "), &r, &o, norm);
    }

    fn cmp_json(&mut self, args: &[&str]) {
        self.cmp_json_norm(args, b"", &|_| {});
    }

    /// Runs state-resetting steps with the reference CLI (failures, such
    /// as deleting what is not there, are fine).
    fn reset(&self, steps: &[&[&str]]) {
        for step in steps {
            let _ = self.theirs(step);
        }
    }

    /// A state-changing command: `reset` sets the state up, the reference
    /// runs the command, `reset` sets the same state up again, ours runs it.
    fn pair(
        &mut self,
        args: &[&str],
        stdin: &[u8],
        reset: &[&[&str]],
        norm: &dyn Fn(&str) -> String,
    ) {
        self.reset(reset);
        let r = self.theirs_in(args, stdin);
        self.reset(reset);
        let o = self.ours_in(args, stdin);
        self.d
            .same(&format!("(pair) {}", args.join(" ")), &r, &o, norm);
    }

    fn pair_json(
        &mut self,
        args: &[&str],
        stdin: &[u8],
        reset: &[&[&str]],
        norm: &dyn Fn(&mut serde_json::Value),
    ) {
        self.reset(reset);
        let r = self.theirs_in(args, stdin);
        self.reset(reset);
        let o = self.ours_in(args, stdin);
        self.d
            .same_json(&format!("(pair) {}", args.join(" ")), &r, &o, norm);
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }
}

/// Normalizes what localauthority output varies in: authority IDs and
/// expiry times.
fn norm_authority(s: &str) -> String {
    s.lines()
        .map(|l| {
            if let Some(i) = l.find("Authority ID: ") {
                format!("{}Authority ID: <id>", &l[..i])
            } else if let Some(i) = l.find("Expires at: ") {
                format!("{}Expires at: <time>", &l[..i])
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn json_authority(v: &mut serde_json::Value) {
    blank_fields(v, &["authority_id", "expires_at"]);
}

fn authority_id(out: &Out, slot: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v[slot]["authority_id"].as_str().unwrap().to_owned()
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn server_commands_match_reference() {
    let server = Server::start();
    let mut c = Ctx {
        socket: server.socket.clone(),
        ours: our_server_cli(),
        d: Diff::new(),
        tmp: tempfile::tempdir().unwrap(),
    };

    // --- healthcheck and logger -------------------------------------------
    c.cmp(&["healthcheck"]);
    c.cmp(&["healthcheck", "-verbose"]);
    c.cmp(&["healthcheck", "-shallow", "-verbose"]);
    c.cmp(&["logger", "get"]);
    c.cmp_json(&["logger", "get", "-output", "json"]);
    c.cmp(&["logger", "set", "-level", "info"]);
    c.cmp(&["logger", "set", "-level", "WARN"]);
    c.cmp(&["logger", "get"]);
    c.cmp(&["logger", "set", "-level", "warning"]);
    c.cmp_json(&["logger", "set", "-level", "trace", "-output", "json"]);
    c.cmp(&["logger", "set", "-level", "panic"]);
    c.cmp(&["logger", "set", "-level", "Fatal"]);
    c.cmp(&["logger", "set", "-level", "error"]);
    c.cmp(&["logger", "set", "-level", "verbose"]);
    c.cmp(&["logger", "reset"]);
    c.cmp_json(&["logger", "reset", "-output", "json"]);
    c.cmp(&["logger", "get"]);

    // --- bundles -----------------------------------------------------------
    c.cmp(&["bundle", "show"]);
    c.cmp(&["bundle", "show", "-format", "spiffe"]);
    c.cmp(&["bundle", "show", "-format", "SPIFFE"]);
    c.cmp(&["bundle", "show", "-format", "der"]);
    c.cmp_json(&["bundle", "show", "-output", "json"]);
    c.cmp_json(&["bundle", "show", "-output", "json", "-format", "der"]);
    c.cmp(&["bundle", "count"]);
    c.cmp_json(&["bundle", "count", "-output", "json"]);
    c.cmp(&["bundle", "list"]);
    c.cmp_json(&["bundle", "list", "-output", "json"]);
    let server_pem = c.file("server.pem", &c.setup(&["bundle", "show"]).stdout);
    let server_spiffe = c.file(
        "server.json",
        &c.setup(&["bundle", "show", "-format", "spiffe"]).stdout,
    );
    let pem_text = read(std::path::Path::new(&server_pem));
    c.cmp(&[
        "bundle",
        "set",
        "-id",
        "spiffe://fed1.test",
        "-path",
        &server_pem,
    ]);
    c.cmp(&[
        "bundle",
        "set",
        "-id",
        "spiffe://fed2.test",
        "-format",
        "spiffe",
        "-path",
        &server_spiffe,
    ]);
    c.cmp_norm(
        &["bundle", "set", "-id", "spiffe://fed3.test"],
        pem_text.as_bytes(),
        &ident,
    );
    c.cmp_json(&[
        "bundle",
        "set",
        "-id",
        "spiffe://fed1.test",
        "-path",
        &server_pem,
        "-output",
        "json",
    ]);
    c.cmp(&["bundle", "set", "-id", "fed4.test", "-path", &server_pem]);
    c.cmp(&[
        "bundle",
        "set",
        "-id",
        "spiffe://example.org",
        "-path",
        &server_pem,
    ]);
    c.cmp(&[
        "bundle",
        "set",
        "-id",
        "spiffe://bad td",
        "-path",
        &server_pem,
    ]);
    c.cmp_json(&[
        "bundle",
        "set",
        "-id",
        "spiffe://bad td",
        "-path",
        &server_pem,
        "-output",
        "json",
    ]);
    c.cmp(&["bundle", "list"]);
    c.cmp(&["bundle", "list", "-format", "spiffe"]);
    c.cmp(&["bundle", "list", "-format", "xml"]);
    c.cmp(&["bundle", "list", "-id", "spiffe://fed1.test"]);
    c.cmp(&[
        "bundle",
        "list",
        "-id",
        "spiffe://fed2.test",
        "-format",
        "spiffe",
    ]);
    c.cmp(&["bundle", "list", "-id", "spiffe://nope.test"]);
    c.cmp(&["bundle", "list", "-id", "bad td"]);
    c.cmp_json(&["bundle", "list", "-output", "json"]);
    c.cmp_json(&[
        "bundle",
        "list",
        "-id",
        "spiffe://fed2.test",
        "-output",
        "json",
    ]);
    c.cmp(&["bundle", "count"]);
    let reset_fed3: &[&[&str]] = &[&[
        "bundle",
        "set",
        "-id",
        "spiffe://fed3.test",
        "-path",
        &server_pem,
    ]];
    c.pair(
        &["bundle", "delete", "-id", "spiffe://fed3.test"],
        b"",
        reset_fed3,
        &ident,
    );
    c.pair(
        &[
            "bundle",
            "delete",
            "-id",
            "spiffe://fed3.test",
            "-mode",
            "dissociate",
        ],
        b"",
        reset_fed3,
        &ident,
    );
    c.pair_json(
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
        reset_fed3,
        &|_| {},
    );
    c.cmp(&["bundle", "delete", "-id", "spiffe://fed3.test"]);
    c.cmp(&["bundle", "delete", "-id", "spiffe://nope.test"]);
    c.cmp_json(&[
        "bundle",
        "delete",
        "-id",
        "spiffe://nope.test",
        "-output",
        "json",
    ]);
    c.cmp(&["bundle", "delete", "-id", "spiffe://example.org"]);

    // --- entries -----------------------------------------------------------
    let created = |v: &mut serde_json::Value| blank_fields(v, &["created_at"]);
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
        "unix:uid:1000",
        "-selector",
        "unix:gid:1000",
    ];
    c.pair(
        basic,
        b"",
        &[&["entry", "delete", "-entryID", "e-basic"]],
        &ident,
    );
    let full: &[&str] = &[
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
    ];
    c.pair(
        full,
        b"",
        &[&["entry", "delete", "-entryID", "e-full"]],
        &ident,
    );
    let node: &[&str] = &[
        "entry",
        "create",
        "-entryID",
        "e-node",
        "-node",
        "-spiffeID",
        "spiffe://example.org/nodes",
        "-selector",
        "join_token:abc",
    ];
    c.pair(
        node,
        b"",
        &[&["entry", "delete", "-entryID", "e-node"]],
        &ident,
    );
    let json_entry: &[&str] = &[
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
        "<&>.example",
        "-output",
        "json",
    ];
    c.pair_json(
        json_entry,
        b"",
        &[&["entry", "delete", "-entryID", "e-json"]],
        &created,
    );
    // Failures reported by the server, per entry.
    c.cmp(&[
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
    ]);
    c.cmp_json(&[
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
        "-output",
        "json",
    ]);
    c.cmp(&[
        "entry",
        "create",
        "-entryID",
        "e-basic",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/other",
        "-selector",
        "unix:uid:1",
    ]);
    c.cmp(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/spire/x",
        "-selector",
        "unix:uid:1",
    ]);
    c.cmp(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/x",
        "-selector",
        "unix:uid:1",
        "-federatesWith",
        "spiffe://nope.test",
    ]);
    c.cmp(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://other.org/x",
        "-selector",
        "unix:uid:1",
    ]);
    c.cmp(&[
        "entry",
        "create",
        "-entryID",
        "bad id with spaces",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/x",
        "-selector",
        "unix:uid:1",
    ]);
    c.cmp(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/x",
        "-selector",
        ":",
        "-hint",
        "h",
    ]);
    // -data files and standard input.
    let entries_json = r#"{"entries":[
        {"entry_id":"e-data1","spiffe_id":"spiffe://example.org/d1","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:11"}],"x509_svid_ttl":200,"jwt_svid_ttl":30,
         "dns_names":["d1.example"],"hint":"dh","admin":true,"federates_with":["spiffe://fed1.test"],
         "entryExpiry":1900000000,"store_svid":true},
        {"entry_id":"e-data2","spiffe_id":"spiffe://example.org/d2","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:12"},{"type":"unix","value":"gid:12"}],"downstream":true}
    ]}"#;
    let entries_file = c.file("entries.json", entries_json);
    let reset_data: &[&[&str]] = &[
        &["entry", "delete", "-entryID", "e-data1"],
        &["entry", "delete", "-entryID", "e-data2"],
    ];
    c.pair(
        &["entry", "create", "-data", &entries_file],
        b"",
        reset_data,
        &ident,
    );
    c.pair(
        &["entry", "create", "-data", "-"],
        entries_json.as_bytes(),
        reset_data,
        &ident,
    );
    c.pair_json(
        &["entry", "create", "-data", &entries_file, "-output", "json"],
        b"",
        reset_data,
        &created,
    );
    c.cmp(&["entry", "create", "-data", &entries_file]);
    c.cmp_json(&["entry", "create", "-data", &entries_file, "-output", "json"]);
    c.cmp(&[
        "entry",
        "create",
        "-data",
        &entries_file,
        "-spiffeID",
        "ignored",
    ]);

    // Listing and counting.
    for args in [
        &["entry", "show"][..],
        &["entry", "show", "-entryID", "e-basic"],
        &["entry", "show", "-entryID", "e-full"],
        &["entry", "show", "-entryID", "nope"],
        &["entry", "show", "-entryID", "e-basic", "-hint", "x"],
        &["entry", "show", "-spiffeID", "spiffe://example.org/w1"],
        &["entry", "show", "-spiffeID", "spiffe://example.org/none"],
        &["entry", "show", "-parentID", "spiffe://example.org/agent"],
        &[
            "entry",
            "show",
            "-parentID",
            "spiffe://example.org/spire/server",
        ],
        &["entry", "show", "-selector", "unix:uid:1000"],
        &[
            "entry",
            "show",
            "-selector",
            "unix:uid:1000",
            "-matchSelectorsOn",
            "exact",
        ],
        &[
            "entry",
            "show",
            "-selector",
            "unix:uid:1000",
            "-selector",
            "unix:gid:1000",
            "-matchSelectorsOn",
            "exact",
        ],
        &[
            "entry",
            "show",
            "-selector",
            "unix:uid:1000",
            "-selector",
            "unix:uid:12",
            "-matchSelectorsOn",
            "any",
        ],
        &[
            "entry",
            "show",
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
            "entry",
            "show",
            "-selector",
            "unix:uid:1000",
            "-matchSelectorsOn",
            "superset",
        ],
        &["entry", "show", "-federatesWith", "spiffe://fed1.test"],
        &[
            "entry",
            "show",
            "-federatesWith",
            "spiffe://fed1.test",
            "-matchFederatesWithOn",
            "exact",
        ],
        &[
            "entry",
            "show",
            "-federatesWith",
            "spiffe://fed1.test",
            "-federatesWith",
            "spiffe://fed2.test",
            "-matchFederatesWithOn",
            "any",
        ],
        &[
            "entry",
            "show",
            "-federatesWith",
            "spiffe://fed1.test",
            "-federatesWith",
            "spiffe://fed2.test",
            "-matchFederatesWithOn",
            "subset",
        ],
        &["entry", "show", "-federatesWith", "bad td"],
        &["entry", "show", "-hint", "h1"],
        &["entry", "show", "-hint", "dh"],
        &["entry", "show", "-downstream"],
        &["entry", "show", "-downstream=false"],
        &[
            "entry",
            "show",
            "-spiffeID",
            "spiffe://example.org/w2",
            "-parentID",
            "spiffe://example.org/agent",
            "-hint",
            "h1",
            "-downstream",
        ],
        &["entry", "count"],
        &["entry", "count", "-spiffeID", "spiffe://example.org/w1"],
        &["entry", "count", "-parentID", "spiffe://example.org/agent"],
        &[
            "entry",
            "count",
            "-selector",
            "unix:uid:1000",
            "-matchSelectorsOn",
            "exact",
        ],
        &[
            "entry",
            "count",
            "-federatesWith",
            "spiffe://fed1.test",
            "-matchFederatesWithOn",
            "any",
        ],
        &["entry", "count", "-hint", "h1"],
        &["entry", "count", "-downstream"],
        &["entry", "count", "-spiffeID", "spiffe://example.org/none"],
    ] {
        c.cmp(args);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        c.cmp_json(&j);
    }

    // Updates: each starts from the same freshly created entry.
    let upd_create: &[&str] = &[
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
    ];
    let reset_upd: &[&[&str]] = &[&["entry", "delete", "-entryID", "e-upd"], upd_create];
    c.setup(upd_create);
    c.pair(
        &[
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
        ],
        b"",
        reset_upd,
        &ident,
    );
    c.pair_json(
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
        reset_upd,
        &created,
    );
    let upd_json = r#"{"entries":[{"entry_id":"e-upd","spiffe_id":"spiffe://example.org/u4",
        "parent_id":"spiffe://example.org/agent","selectors":[{"type":"unix","value":"uid:53"}],
        "hint":"from-data"}]}"#;
    let upd_file = c.file("update.json", upd_json);
    c.pair(
        &["entry", "update", "-data", &upd_file],
        b"",
        reset_upd,
        &ident,
    );
    c.pair(
        &["entry", "update", "-data", "-"],
        upd_json.as_bytes(),
        reset_upd,
        &ident,
    );
    c.cmp(&[
        "entry",
        "update",
        "-entryID",
        "nope",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/u",
        "-selector",
        "unix:uid:50",
    ]);
    c.cmp_json(&[
        "entry",
        "update",
        "-entryID",
        "nope",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/u",
        "-selector",
        "unix:uid:50",
        "-output",
        "json",
    ]);
    c.cmp(&[
        "entry",
        "update",
        "-entryID",
        "e-upd",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/spire/nope",
        "-selector",
        "unix:uid:50",
    ]);

    // Deletes.
    let del_create: &[&str] = &[
        "entry",
        "create",
        "-entryID",
        "e-del",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/del",
        "-selector",
        "unix:uid:60",
    ];
    let del_create2: &[&str] = &[
        "entry",
        "create",
        "-entryID",
        "e-del2",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/del2",
        "-selector",
        "unix:uid:61",
    ];
    c.setup(del_create);
    c.pair(
        &["entry", "delete", "-entryID", "e-del"],
        b"",
        &[del_create],
        &ident,
    );
    c.setup(del_create);
    c.pair_json(
        &["entry", "delete", "-entryID", "e-del", "-output", "json"],
        b"",
        &[del_create],
        &|_| {},
    );
    c.cmp(&["entry", "delete", "-entryID", "e-del"]);
    c.cmp(&["entry", "delete", "-entryID", "e-del"]);
    c.cmp_json(&["entry", "delete", "-entryID", "e-del", "-output", "json"]);
    let ids = c.file("ids.json", r#"{"ids":["e-del","e-del2"]}"#);
    c.setup(del_create);
    c.setup(del_create2);
    c.pair(
        &["entry", "delete", "-file", &ids],
        b"",
        &[del_create, del_create2],
        &ident,
    );
    c.setup(del_create);
    c.pair(
        &["entry", "delete", "-file", "-"],
        br#"{"ids":["e-del","e-missing"]}"#,
        &[del_create],
        &ident,
    );
    c.cmp(&["entry", "delete", "-file", "-"]);
    c.cmp_norm(&["entry", "delete", "-file", "-"], br#"{"ids":[]}"#, &ident);
    c.cmp_norm(
        &["entry", "delete", "-file", "-"],
        br#"{"ids":["x","y"]}"#,
        &ident,
    );
    c.cmp(&["entry", "show"]);

    // --- agents ------------------------------------------------------------
    let mut a1 = server.start_agent();
    let mut a2 = server.start_agent();
    a1.stop();
    a2.stop();
    let (id1, id2) = (a1.id.clone(), a2.id.clone());
    for args in [
        &["agent", "list"][..],
        &["agent", "list", "-attestationType", "join_token"],
        &["agent", "list", "-attestationType", "x509pop"],
        &["agent", "list", "-banned", "true"],
        &["agent", "list", "-banned", "false"],
        &["agent", "list", "-banned", "maybe"],
        &["agent", "list", "-canReattest", "true"],
        &["agent", "list", "-canReattest", "false"],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2000-01-01 00:00:00 +0000 +00",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2999-01-01 00:00:00 +0000 +00",
        ],
        &["agent", "list", "-selector", "join_token:x"],
        &[
            "agent",
            "list",
            "-selector",
            "join_token:x",
            "-matchSelectorsOn",
            "any",
        ],
        &["agent", "count"],
        &["agent", "count", "-banned", "true"],
        &[
            "agent",
            "count",
            "-canReattest",
            "false",
            "-attestationType",
            "join_token",
        ],
        &[
            "agent",
            "count",
            "-expiresBefore",
            "2000-01-01 00:00:00 -0700 -07",
        ],
        &["agent", "show", "-spiffeID", &id1],
        &[
            "agent",
            "show",
            "-spiffeID",
            "spiffe://example.org/spire/agent/join_token/nope",
        ],
        &["agent", "show", "-spiffeID", "spiffe://other.org/agent"],
        &["agent", "purge"],
        &["agent", "purge", "-dryRun"],
        &["agent", "purge", "-expiredFor", "1s"],
    ] {
        c.cmp(args);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        c.cmp_json(&j);
    }
    // Ban and evict: the reference acts on one agent, ours on the other.
    let r = c.theirs(&["agent", "ban", "-spiffeID", &id1]);
    let o = c.ours_in(&["agent", "ban", "-spiffeID", &id2], b"");
    c.d.same("agent ban", &r, &o, &ident);
    c.cmp(&["agent", "show", "-spiffeID", &id1]);
    c.cmp_json(&["agent", "show", "-spiffeID", &id2, "-output", "json"]);
    c.cmp(&["agent", "list", "-banned", "true"]);
    c.cmp_json(&["agent", "ban", "-spiffeID", &id1, "-output", "json"]);
    c.cmp(&[
        "agent",
        "ban",
        "-spiffeID",
        "spiffe://example.org/spire/agent/join_token/nope",
    ]);
    let r = c.theirs(&["agent", "evict", "-spiffeID", &id1]);
    let o = c.ours_in(
        &["agent", "evict", "-spiffeID", &id2, "-output", "pretty"],
        b"",
    );
    c.d.same("agent evict", &r, &o, &ident);
    c.cmp(&["agent", "evict", "-spiffeID", &id1]);
    c.cmp_json(&["agent", "evict", "-spiffeID", &id2, "-output", "json"]);
    c.cmp(&["agent", "list"]);
    let mut a3 = server.start_agent();
    a3.stop();
    let mut a4 = server.start_agent();
    a4.stop();
    let r = run_ref(
        &ref_server_bin(),
        &[
            "agent",
            "evict",
            "-spiffeID",
            &a3.id,
            "-output",
            "json",
            "-socketPath",
            &c.socket,
        ],
        b"",
    );
    let o = c.ours_in(
        &["agent", "evict", "-spiffeID", &a4.id, "-output", "json"],
        b"",
    );
    c.d.same_json("agent evict -output json", &r, &o, &|_| {});

    // --- federation --------------------------------------------------------
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
        &server_pem,
    ];
    let reset_fedx: &[&[&str]] = &[&["federation", "delete", "-id", "fedx.test"]];
    c.pair(fed_web, b"", reset_fedx, &ident);
    let fed_spiffe: &[&str] = &[
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
        &server_spiffe,
        "-trustDomainBundleFormat",
        "spiffe",
    ];
    c.pair(
        fed_spiffe,
        b"",
        &[&["federation", "delete", "-id", "fedy.test"]],
        &ident,
    );
    c.pair_json(
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
        &[&["federation", "delete", "-id", "fedz.test"]],
        &|_| {},
    );
    c.cmp(fed_web);
    let mut dup = fed_web.to_vec();
    dup.extend(["-output", "json"]);
    c.cmp_json(&dup);
    c.cmp(&[
        "federation",
        "create",
        "-trustDomain",
        "Bad.TD",
        "-bundleEndpointURL",
        "https://127.0.0.1:1/bundle",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    c.cmp(&[
        "federation",
        "create",
        "-trustDomain",
        "fedq.test",
        "-bundleEndpointURL",
        "http://insecure/bundle",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    c.cmp(&[
        "federation",
        "create",
        "-trustDomain",
        "example.org",
        "-bundleEndpointURL",
        "https://127.0.0.1:1/bundle",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    let pem_json = serde_json::to_string(&pem_text).unwrap();
    let spiffe_doc = read(std::path::Path::new(&server_spiffe));
    let rel_json = format!(
        r#"{{"federationRelationships":[
            {{"trustDomain":"fedd1.test","bundleEndpointURL":"https://127.0.0.1:1/d1","bundleEndpointProfile":"https_web",
              "trustDomainBundle":{pem_json},"trustDomainBundleFormat":"pem"}},
            {{"trustDomain":"fedd2.test","bundleEndpointURL":"https://127.0.0.1:1/d2","bundleEndpointProfile":"https_spiffe",
              "endpointSPIFFEID":"spiffe://fedd2.test/server","trustDomainBundle":{spiffe_doc},"trustDomainBundleFormat":"spiffe"}},
            {{"trustDomain":"fedd3.test","bundleEndpointURL":"https://127.0.0.1:1/d3","bundleEndpointProfile":"https_web"}}
        ]}}"#
    );
    let rel_file = c.file("relationships.json", &rel_json);
    let reset_rel: &[&[&str]] = &[
        &["federation", "delete", "-id", "fedd1.test"],
        &["federation", "delete", "-id", "fedd2.test"],
        &["federation", "delete", "-id", "fedd3.test"],
    ];
    c.pair(
        &["federation", "create", "-data", &rel_file],
        b"",
        reset_rel,
        &ident,
    );
    c.pair(
        &["federation", "create", "-data", "-"],
        rel_json.as_bytes(),
        reset_rel,
        &ident,
    );
    c.cmp(&["federation", "create", "-data", &rel_file]);
    c.cmp_json(&[
        "federation",
        "create",
        "-data",
        &rel_file,
        "-output",
        "json",
    ]);
    c.cmp(&["federation", "update", "-data", &rel_file]);
    c.cmp_json(&[
        "federation",
        "update",
        "-data",
        &rel_file,
        "-output",
        "json",
    ]);
    c.cmp(&[
        "federation",
        "update",
        "-trustDomain",
        "fedx.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:2/bundle",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    c.cmp(&[
        "federation",
        "update",
        "-trustDomain",
        "nope.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:2/bundle",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    c.cmp_json(&[
        "federation",
        "update",
        "-trustDomain",
        "nope.test",
        "-bundleEndpointURL",
        "https://127.0.0.1:2/bundle",
        "-bundleEndpointProfile",
        "https_web",
        "-output",
        "json",
    ]);
    for args in [
        &["federation", "list"][..],
        &["federation", "show", "-trustDomain", "fedx.test"],
        &["federation", "show", "-trustDomain", "fedy.test"],
        &["federation", "show", "-trustDomain", "nope.test"],
        &["federation", "show", "-trustDomain", "bad td"],
        &["federation", "refresh", "-id", "nope.test"],
        &["federation", "refresh", "-id", "fedx.test"],
        &["federation", "delete", "-id", "nope.test"],
    ] {
        c.cmp(args);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        c.cmp_json(&j);
    }
    c.pair(
        &["federation", "delete", "-id", "fedx.test"],
        b"",
        &[fed_web],
        &ident,
    );
    c.pair_json(
        &[
            "federation",
            "delete",
            "-id",
            "fedx.test",
            "-output",
            "json",
        ],
        b"",
        &[fed_web],
        &|_| {},
    );
    c.cmp(&["federation", "list"]);

    // --- join tokens -------------------------------------------------------
    c.cmp_norm(&["token", "generate"], b"", &norm_uuid);
    c.cmp_norm(
        &[
            "token",
            "generate",
            "-spiffeID",
            "spiffe://example.org/alias",
            "-ttl",
            "30",
        ],
        b"",
        &norm_uuid,
    );
    c.cmp_json_norm(&["token", "generate", "-output", "json"], b"", &|v| {
        blank_fields(v, &["value", "expires_at"]);
    });
    c.cmp(&["token", "generate", "-spiffeID", "spiffe://other.org/alias"]);
    c.cmp(&[
        "token",
        "generate",
        "-spiffeID",
        "spiffe://example.org/spire/server",
    ]);
    c.cmp(&["token", "generate", "-ttl", "-5"]);

    // --- minting -----------------------------------------------------------
    let pem_norm = |s: &str| norm_times(&norm_pem(s));
    c.cmp_norm(
        &["x509", "mint", "-spiffeID", "spiffe://example.org/minted"],
        b"",
        &pem_norm,
    );
    c.cmp_norm(
        &[
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-dns",
            "m.example",
            "-dns",
            "n.example",
            "-ttl",
            "10m",
        ],
        b"",
        &pem_norm,
    );
    c.cmp_norm(
        &[
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-ttl",
            "48h",
        ],
        b"",
        &pem_norm,
    );
    c.cmp_json_norm(
        &[
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-output",
            "json",
        ],
        b"",
        &|v| {
            // The SVID and key differ; the shape and the bundle must not.
            let item = &mut v[0];
            let n = item["x509_svid"].as_array().map_or(0, Vec::len);
            item["x509_svid"] = serde_json::json!(n);
            item["private_key"] = serde_json::json!("<key>");
        },
    );
    c.cmp(&["x509", "mint", "-spiffeID", "spiffe://other.org/minted"]);
    c.cmp(&[
        "x509",
        "mint",
        "-spiffeID",
        "spiffe://example.org/minted",
        "-dns",
        "é.example",
    ]);
    {
        let dir = c.tmp.path().join("mint");
        std::fs::create_dir_all(&dir).unwrap();
        let ds = dir.display().to_string();
        let args = [
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-write",
            &ds,
        ];
        let r = c.theirs(&args);
        let ref_files: Vec<(String, u32, String)> = ["svid.pem", "key.pem", "bundle.pem"]
            .iter()
            .map(|f| {
                let p = dir.join(f);
                (f.to_string(), mode(&p), norm_pem(&read(&p)))
            })
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let o = c.ours_in(&args, b"");
        c.d.same("x509 mint -write", &r, &o, &ident);
        let our_files: Vec<(String, u32, String)> = ["svid.pem", "key.pem", "bundle.pem"]
            .iter()
            .map(|f| {
                let p = dir.join(f);
                (f.to_string(), mode(&p), norm_pem(&read(&p)))
            })
            .collect();
        c.d.count += 1;
        if ref_files != our_files {
            c.d.failures.push(format!(
                "x509 mint -write files\n  reference: {ref_files:?}\n  ours:      {our_files:?}\n"
            ));
        }
        let args = [
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-write",
            "/nonexistent/dir",
        ];
        c.cmp(&args);
    }
    c.cmp_norm(
        &[
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
        ],
        b"",
        &norm_jwt,
    );
    c.cmp_norm(
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
            "48h",
        ],
        b"",
        &|s| norm_times(&norm_jwt(s)),
    );
    c.cmp_json_norm(
        &[
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
            "-output",
            "json",
        ],
        b"",
        &|v| blank_fields(v, &["token", "expires_at", "issued_at"]),
    );
    c.cmp(&[
        "jwt",
        "mint",
        "-spiffeID",
        "spiffe://other.org/minted",
        "-audience",
        "a",
    ]);
    {
        let file = c.tmp.path().join("token.jwt");
        let fs = file.display().to_string();
        let args = [
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
            "-write",
            &fs,
        ];
        let r = c.theirs(&args);
        let ref_file = (mode(&file), norm_jwt(&read(&file)));
        std::fs::remove_file(&file).unwrap();
        let o = c.ours_in(&args, b"");
        c.d.same("jwt mint -write", &r, &o, &ident);
        let our_file = (mode(&file), norm_jwt(&read(&file)));
        c.d.count += 1;
        if ref_file != our_file {
            c.d.failures.push(format!(
                "jwt mint -write file\n  reference: {ref_file:?}\n  ours:      {our_file:?}\n"
            ));
        }
    }

    // --- local and upstream authorities -------------------------------------
    for kind in ["x509", "jwt"] {
        c.cmp(&["localauthority", kind, "show"]);
        c.cmp_json(&["localauthority", kind, "show", "-output", "json"]);
        for op in ["activate", "taint", "revoke"] {
            c.cmp(&["localauthority", kind, op, "-authorityID", "nope"]);
            c.cmp_json(&[
                "localauthority",
                kind,
                op,
                "-authorityID",
                "nope",
                "-output",
                "json",
            ]);
        }
        // prepare: both succeed, each replacing the prepared authority.
        c.cmp_norm(&["localauthority", kind, "prepare"], b"", &norm_authority);
        c.cmp_json_norm(
            &["localauthority", kind, "prepare", "-output", "json"],
            b"",
            &json_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        let show = |c: &Ctx| c.setup(&["localauthority", kind, "show", "-output", "json"]);
        // activate: the reference activates one prepared authority, ours
        // the next.
        let prepared = authority_id(&show(&c), "prepared");
        let r = c.theirs(&[
            "localauthority",
            kind,
            "activate",
            "-authorityID",
            &prepared,
        ]);
        c.setup(&["localauthority", kind, "prepare"]);
        let prepared = authority_id(&show(&c), "prepared");
        let o = c.ours_in(
            &[
                "localauthority",
                kind,
                "activate",
                "-authorityID",
                &prepared,
            ],
            b"",
        );
        c.d.same(
            &format!("localauthority {kind} activate"),
            &r,
            &o,
            &norm_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        let active = authority_id(&show(&c), "active");
        c.cmp(&["localauthority", kind, "taint", "-authorityID", &active]);
        c.cmp(&["localauthority", kind, "revoke", "-authorityID", &active]);
        // taint: the old authority of each rotation.
        let old = authority_id(&show(&c), "old");
        let r = c.theirs(&["localauthority", kind, "taint", "-authorityID", &old]);
        c.cmp(&["localauthority", kind, "taint", "-authorityID", &old]);
        c.setup(&["localauthority", kind, "prepare"]);
        let prepared = authority_id(&show(&c), "prepared");
        c.setup(&[
            "localauthority",
            kind,
            "activate",
            "-authorityID",
            &prepared,
        ]);
        let old = authority_id(&show(&c), "old");
        let o = c.ours_in(
            &["localauthority", kind, "taint", "-authorityID", &old],
            b"",
        );
        c.d.same(
            &format!("localauthority {kind} taint"),
            &r,
            &o,
            &norm_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        c.cmp_json(&["localauthority", kind, "show", "-output", "json"]);
        // revoke: a tainted old authority.
        let r = c.theirs(&["localauthority", kind, "revoke", "-authorityID", &old]);
        c.setup(&["localauthority", kind, "prepare"]);
        let prepared = authority_id(&show(&c), "prepared");
        c.setup(&[
            "localauthority",
            kind,
            "activate",
            "-authorityID",
            &prepared,
        ]);
        let old = authority_id(&show(&c), "old");
        c.setup(&["localauthority", kind, "taint", "-authorityID", &old]);
        let o = c.ours_in(
            &["localauthority", kind, "revoke", "-authorityID", &old],
            b"",
        );
        c.d.same(
            &format!("localauthority {kind} revoke"),
            &r,
            &o,
            &norm_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        c.cmp(&["localauthority", kind, "revoke", "-authorityID", &old]);
    }
    c.cmp(&["upstreamauthority", "taint", "-subjectKeyID", "abcd"]);
    c.cmp_json(&[
        "upstreamauthority",
        "taint",
        "-subjectKeyID",
        "abcd",
        "-output",
        "json",
    ]);
    c.cmp(&["upstreamauthority", "revoke", "-subjectKeyID", "abcd"]);
    c.cmp_json(&[
        "upstreamauthority",
        "revoke",
        "-subjectKeyID",
        "abcd",
        "-output",
        "json",
    ]);
    c.cmp(&["bundle", "show"]);

    let Ctx { d, .. } = c;
    d.finish("spire-server");
}
