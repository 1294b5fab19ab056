//! The harness: one reference spire-server 1.13.3, the reference CLI and ours run against
//! it with the same arguments; one area of the CLI per test (see `main.rs`).

pub(crate) use crate::common::{
    Diff, Out, Server, args, args_with, blank_fields, ident, mode, norm_jwt, norm_pem, norm_times,
    norm_uuid, our_server_cli, read, ref_server_bin, run_cli, run_ref,
};
pub(crate) use spire_goflag::Cli;

pub(crate) struct Ctx {
    /// The reference server (agents attest to it).
    pub(crate) server: Server,
    pub(crate) socket: String,
    pub(crate) ours: Cli,
    pub(crate) d: Diff,
    pub(crate) tmp: tempfile::TempDir,
}

pub(crate) fn sock_args<'a>(args: &[&'a str], socket: &'a str) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.push("-socketPath");
    v.push(socket);
    v
}

impl Ctx {
    pub(crate) fn theirs_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_ref(&ref_server_bin(), &sock_args(args, &self.socket), stdin)
    }

    pub(crate) fn theirs(&self, args: &[&str]) -> Out {
        self.theirs_in(args, b"")
    }

    pub(crate) fn ours_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_cli(&self.ours, &sock_args(args, &self.socket), stdin)
    }

    /// Runs a setup command with the reference CLI, which must succeed.
    pub(crate) fn setup(&self, args: &[&str]) -> Out {
        let out = self.theirs(args);
        assert_eq!(out.code, 0, "setup {args:?} failed: {out:?}");
        out
    }

    /// Runs `args` with both (reference first) and compares after `norm`.
    pub(crate) fn cmp_norm(&mut self, args: &[&str], stdin: &[u8], norm: &dyn Fn(&str) -> String) {
        let r = self.theirs_in(args, stdin);
        let o = self.ours_in(args, stdin);
        self.d.same(&args.join(" "), &r, &o, norm);
    }

    pub(crate) fn cmp(&mut self, args: &[&str]) {
        self.cmp_norm(args, b"", &ident);
    }

    pub(crate) fn cmp_json_norm(
        &mut self,
        args: &[&str],
        stdin: &[u8],
        norm: &dyn Fn(&mut serde_json::Value),
    ) {
        let r = self.theirs_in(args, stdin);
        let o = self.ours_in(args, stdin);
        self.d.same_json(&args.join(" "), &r, &o, norm);
    }

    pub(crate) fn cmp_json(&mut self, args: &[&str]) {
        self.cmp_json_norm(args, b"", &|_| {});
    }

    /// Runs state-resetting steps with the reference CLI (failures, such
    /// as deleting what is not there, are fine).
    pub(crate) fn reset(&self, steps: &[&[&str]]) {
        for step in steps {
            let _ = self.theirs(step);
        }
    }

    /// A state-changing command: `reset` sets the state up, the reference
    /// runs the command, `reset` sets the same state up again, ours runs it.
    pub(crate) fn pair(
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

    pub(crate) fn pair_json(
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

    pub(crate) fn file(&self, name: &str, content: &str) -> String {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }
}

/// Normalizes what localauthority output varies in: authority IDs and
/// expiry times.
pub(crate) fn norm_authority(s: &str) -> String {
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

pub(crate) fn json_authority(v: &mut serde_json::Value) {
    blank_fields(v, &["authority_id", "expires_at"]);
}

pub(crate) fn authority_id(out: &Out, slot: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v[slot]["authority_id"].as_str().unwrap().to_owned()
}

/// Starts a reference server, runs `area` with both CLIs against it and fails on any
/// difference.
pub(crate) fn run(name: &str, area: impl FnOnce(&mut Ctx)) {
    let server = Server::start();
    let mut c = Ctx {
        socket: server.socket.clone(),
        server,
        ours: our_server_cli(),
        d: Diff::new(),
        tmp: tempfile::tempdir().unwrap(),
    };
    area(&mut c);
    let Ctx { d, server, .. } = c;
    d.finish(&format!("spire-server CLI: {name}"));
    drop(server);
}

/// The server's own bundle as files both CLIs read: `(PEM path, SPIFFE document path)`.
pub(crate) fn server_bundle_files(c: &Ctx) -> (String, String) {
    let pem = c.file("server.pem", &c.setup(&["bundle", "show"]).stdout);
    let spiffe = c.file(
        "server.json",
        &c.setup(&args("bundle show -format spiffe")).stdout,
    );
    (pem, spiffe)
}
