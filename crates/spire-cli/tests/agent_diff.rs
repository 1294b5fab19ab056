//! The `spire-agent` client commands, run by the reference CLI and by ours
//! against one reference spire-agent 1.13.3 (attested to a reference
//! server): same output, errors and exit codes, with only elapsed times
//! normalized (SVIDs come from the agent's cache, so they are identical).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Diff, FirstWrite, Out, Server, ident, mode, norm_elapsed, our_agent_cli, ref_agent_bin,
    run_cli, run_ref,
};
use spire_goflag::{Cli, Io};

struct Ctx {
    socket: String,
    ours: Cli,
    d: Diff,
}

impl Ctx {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = args.to_vec();
        v.push("-socketPath");
        v.push(&self.socket);
        v
    }

    fn theirs(&self, args: &[&str]) -> Out {
        run_ref(&ref_agent_bin(), &self.args(args), b"")
    }

    fn ours(&self, args: &[&str]) -> Out {
        run_cli(&self.ours, &self.args(args), b"")
    }

    fn cmp_norm(&mut self, args: &[&str], norm: &dyn Fn(&str) -> String) {
        let r = self.theirs(args);
        let o = self.ours(args);
        self.d.same(&args.join(" "), &r, &o, norm);
    }

    fn cmp(&mut self, args: &[&str]) {
        self.cmp_norm(args, &ident);
    }

    fn cmp_json(&mut self, args: &[&str]) {
        let r = self.theirs(args);
        let o = self.ours(args);
        self.d.same_json(&args.join(" "), &r, &o, &|_| {});
    }
}

/// SPIRE prints JWT bundles in Go map order (random); sort the
/// `bundle(...)` blocks.
fn norm_jwt_bundles(s: &str) -> String {
    let mut head = String::new();
    let mut blocks: Vec<String> = Vec::new();
    for line in s.split_inclusive('\n') {
        if line.starts_with("bundle(") {
            blocks.push(line.to_owned());
        } else if let Some(last) = blocks.last_mut() {
            last.push_str(line);
        } else {
            head.push_str(line);
        }
    }
    blocks.sort();
    head + &blocks.concat()
}

/// The first update the reference `api watch` prints.
fn reference_watch_first(socket: &str) -> String {
    let mut child = Command::new(ref_agent_bin())
        .args(["api", "watch", "-socketPath", socket])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut expected_blank: Option<usize> = None;
        let mut blanks = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if expected_blank.is_none()
                && let Some(rest) = line.strip_prefix("Received ")
            {
                let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
                expected_blank = Some(n + 1);
            }
            if line.is_empty() {
                blanks += 1;
            }
            text.push_str(&line);
            text.push('\n');
            if Some(blanks) == expected_blank {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    text
}

fn our_watch_first(cli: &Cli, socket: &str) -> String {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut w = FirstWrite(buf.clone());
    let mut stdin: &[u8] = b"";
    let mut stderr = Vec::new();
    let _ = cli.run(
        &["api", "watch", "-socketPath", socket],
        &mut Io {
            stdin: &mut stdin,
            stdout: &mut w,
            stderr: &mut stderr,
        },
    );
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn agent_commands_match_reference() {
    let server = Server::start();
    let agent = server.start_agent();
    let mut c = Ctx {
        socket: agent.socket.clone(),
        ours: our_agent_cli(),
        d: Diff::new(),
    };

    // No registration entry yet: no identity.
    c.cmp(&["api", "fetch"]);
    c.cmp(&["api", "fetch", "x509", "-output", "json"]);
    c.cmp(&["api", "fetch", "jwt", "-audience", "x"]);
    c.cmp(&["api", "validate", "jwt", "-audience", "x", "-svid", "a.b.c"]);
    c.cmp(&["healthcheck"]);
    c.cmp(&["healthcheck", "-verbose"]);
    c.cmp(&["healthcheck", "-shallow"]);

    // Entries for this process's uid, one federating with another trust
    // domain so that responses carry federated bundles.
    let probe = tempfile::NamedTempFile::new().unwrap();
    let uid = probe.as_file().metadata().unwrap().uid().to_string();
    let selector = format!("unix:uid:{uid}");
    let pem = server.cli(&["bundle", "show"]).stdout;
    let pem_path = server.dir.path().join("fed.pem");
    std::fs::write(&pem_path, &pem).unwrap();
    let p = pem_path.display().to_string();
    assert_eq!(
        server
            .cli(&["bundle", "set", "-id", "spiffe://fed1.test", "-path", &p])
            .code,
        0
    );
    for args in [
        vec![
            "entry",
            "create",
            "-entryID",
            "w1",
            "-parentID",
            &agent.id,
            "-spiffeID",
            "spiffe://example.org/workload",
            "-selector",
            &selector,
            "-hint",
            "first",
            "-dns",
            "w.example",
            "-federatesWith",
            "spiffe://fed1.test",
        ],
        vec![
            "entry",
            "create",
            "-entryID",
            "w2",
            "-parentID",
            &agent.id,
            "-spiffeID",
            "spiffe://example.org/workload2",
            "-selector",
            &selector,
        ],
    ] {
        let out = server.cli(&args);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let start = Instant::now();
    loop {
        let out = c.theirs(&["api", "fetch"]);
        if out.code == 0
            && out.stdout.starts_with("Received 2 svids")
            && out.stdout.contains("[spiffe://fed1.test]")
        {
            let jwt = c.theirs(&["api", "fetch", "jwt", "-audience", "probe"]);
            if jwt.code == 0 && jwt.stdout.contains("bundle(spiffe://fed1.test)") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no SVIDs: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // X509-SVIDs.
    c.cmp_norm(&["api", "fetch"], &norm_elapsed);
    c.cmp_norm(&["api", "fetch", "x509"], &norm_elapsed);
    c.cmp_norm(&["api", "fetch", "x509", "-timeout", "10s"], &norm_elapsed);
    c.cmp_norm(&["api", "fetch", "-timeout", "0"], &norm_elapsed);
    c.cmp(&["api", "fetch", "-silent"]);
    c.cmp(&["api", "fetch", "-timeout", "1ns"]);
    c.cmp(&["api", "fetch", "jwt", "-audience", "x", "-timeout", "1ns"]);
    c.cmp(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "x",
        "-svid",
        "a",
        "-timeout",
        "1ns",
    ]);
    c.cmp_json(&["api", "fetch", "-output", "json"]);
    c.cmp_json(&[
        "api",
        "fetch",
        "x509",
        "-output",
        "json",
        "-write",
        "/nonexistent",
    ]);
    c.cmp(&["api", "fetch", "-silent", "-write", "/nonexistent/dir"]);
    {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().display().to_string();
        let snapshot = |dir: &std::path::Path| {
            let mut files: Vec<(String, u32, String)> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| {
                    let p = e.unwrap().path();
                    (
                        p.file_name().unwrap().to_string_lossy().into_owned(),
                        mode(&p),
                        std::fs::read_to_string(&p).unwrap(),
                    )
                })
                .collect();
            files.sort();
            files
        };
        let args = ["api", "fetch", "-write", &ds];
        let r = c.theirs(&args);
        let ref_files = snapshot(dir.path());
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        let o = c.ours(&args);
        c.d.same("api fetch -write", &r, &o, &norm_elapsed);
        let our_files = snapshot(dir.path());
        c.d.count += 1;
        if ref_files != our_files {
            c.d.failures.push(format!(
                "api fetch -write files\n  reference: {ref_files:?}\n  ours:      {our_files:?}\n"
            ));
        }
        let rel = format!(
            "{ds}/../{}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        c.cmp(&["api", "fetch", "x509", "-silent", "-write", &rel]);
    }

    // JWT-SVIDs (cached by the agent per audience, so identical).
    let jwt_norm = |s: &str| norm_jwt_bundles(s);
    c.cmp_norm(&["api", "fetch", "jwt", "-audience", "x"], &jwt_norm);
    c.cmp_norm(&["api", "fetch", "jwt", "-audience", "x,y"], &jwt_norm);
    c.cmp_norm(
        &[
            "api",
            "fetch",
            "jwt",
            "-audience",
            "x",
            "-spiffeID",
            "spiffe://example.org/workload2",
        ],
        &jwt_norm,
    );
    c.cmp(&[
        "api",
        "fetch",
        "jwt",
        "-audience",
        "x",
        "-spiffeID",
        "spiffe://example.org/nobody",
    ]);
    c.cmp(&["api", "fetch", "jwt", "-audience", "x", "-spiffeID", "bad"]);
    c.cmp(&["api", "fetch", "jwt", "-audience", ""]);
    c.cmp_json(&["api", "fetch", "jwt", "-audience", "x", "-output", "json"]);
    c.cmp_json(&["api", "fetch", "jwt", "-audience", "x", "-format", "json"]);
    let token = {
        let out = c.theirs(&["api", "fetch", "jwt", "-audience", "x", "-output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v[0]["svids"][0]["svid"].as_str().unwrap().to_owned()
    };
    c.cmp(&["api", "validate", "jwt", "-audience", "x", "-svid", &token]);
    c.cmp_json(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "x",
        "-svid",
        &token,
        "-output",
        "json",
    ]);
    c.cmp(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "nope",
        "-svid",
        &token,
    ]);
    c.cmp(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "x",
        "-svid",
        "garbage",
    ]);
    c.cmp_json(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "x",
        "-svid",
        "garbage",
        "-output",
        "json",
    ]);
    c.cmp(&["api", "validate", "jwt", "-audience", "x"]);

    // Watch: the first update.
    let r = reference_watch_first(&c.socket);
    let o = our_watch_first(&c.ours, &c.socket);
    c.d.same(
        "api watch (first update)",
        &Out {
            stdout: r,
            stderr: String::new(),
            code: 0,
        },
        &Out {
            stdout: o,
            stderr: String::new(),
            code: 0,
        },
        &norm_elapsed,
    );

    c.cmp(&["healthcheck", "-verbose"]);
    let Ctx { d, .. } = c;
    d.finish("spire-agent");
    drop(agent);
}
