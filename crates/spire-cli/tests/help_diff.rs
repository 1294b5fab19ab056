//! Help, usage, flag errors and input validation that need no server: the
//! reference CLI and ours must print the same bytes and exit the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Diff, ident, our_agent_cli, our_server_cli, ref_agent_bin, ref_server_bin, run_cli, run_ref,
};

const SERVER_COMMANDS: &[&str] = &[
    "agent ban",
    "agent count",
    "agent evict",
    "agent list",
    "agent show",
    "agent purge",
    "bundle count",
    "bundle show",
    "bundle list",
    "bundle set",
    "bundle delete",
    "entry count",
    "entry create",
    "entry update",
    "entry delete",
    "entry show",
    "federation create",
    "federation delete",
    "federation list",
    "federation show",
    "federation refresh",
    "federation update",
    "logger get",
    "logger set",
    "logger reset",
    "token generate",
    "healthcheck",
    "x509 mint",
    "jwt mint",
    "localauthority x509 show",
    "localauthority x509 prepare",
    "localauthority x509 activate",
    "localauthority x509 taint",
    "localauthority x509 revoke",
    "localauthority jwt show",
    "localauthority jwt prepare",
    "localauthority jwt activate",
    "localauthority jwt taint",
    "localauthority jwt revoke",
    "upstreamauthority taint",
    "upstreamauthority revoke",
];

const AGENT_COMMANDS: &[&str] = &[
    "api fetch",
    "api fetch x509",
    "api fetch jwt",
    "api validate jwt",
    "api watch",
    "healthcheck",
];

fn words(s: &str) -> Vec<&str> {
    s.split(' ').collect()
}

#[test]
#[ignore = "needs reference SPIRE 1.13.3 (conformance/build-reference.sh); scripts/test.sh runs it"]
fn help_usage_and_validation_match_reference() {
    let server = our_server_cli();
    let agent = our_agent_cli();
    let mut d = Diff::new();
    let check_server = |d: &mut Diff, args: &[&str], stdin: &[u8]| {
        let r = run_ref(&ref_server_bin(), args, stdin);
        let o = run_cli(&server, args, stdin);
        d.same(&format!("spire-server {}", args.join(" ")), &r, &o, &ident);
    };
    let check_agent = |d: &mut Diff, args: &[&str], stdin: &[u8]| {
        let r = run_ref(&ref_agent_bin(), args, stdin);
        let o = run_cli(&agent, args, stdin);
        d.same(&format!("spire-agent {}", args.join(" ")), &r, &o, &ident);
    };

    // Command lists, versions and routing.
    for args in [
        &[][..],
        &["-h"],
        &["--help"],
        &["-v"],
        &["--version"],
        &["entry"],
        &["agent"],
        &["bundle"],
        &["federation"],
        &["logger"],
        &["token"],
        &["x509"],
        &["jwt"],
        &["localauthority"],
        &["localauthority", "x509"],
        &["localauthority", "jwt"],
        &["upstreamauthority"],
        &["bogus"],
        &["entry", "bogus"],
        &["-x", "entry", "show"],
    ] {
        check_server(&mut d, args, b"");
    }
    for args in [
        &[][..],
        &["-h"],
        &["-v"],
        &["api"],
        &["api", "fetch", "bogus"],
        &["api", "validate"],
        &["bogus"],
    ] {
        check_agent(&mut d, args, b"");
    }

    // Every command's help and an undefined flag.
    for cmd in SERVER_COMMANDS {
        let mut args = words(cmd);
        args.push("-h");
        check_server(&mut d, &args, b"");
        let mut args = words(cmd);
        args.push("--help");
        check_server(&mut d, &args, b"");
        let mut args = words(cmd);
        args.push("-bogus");
        check_server(&mut d, &args, b"");
        let mut args = words(cmd);
        args.push("--h");
        check_server(&mut d, &args, b"");
    }
    for cmd in AGENT_COMMANDS {
        let mut args = words(cmd);
        args.push("-h");
        check_agent(&mut d, &args, b"");
        let mut args = words(cmd);
        args.push("-bogus");
        check_agent(&mut d, &args, b"");
        let mut args = words(cmd);
        args.push("--h");
        check_agent(&mut d, &args, b"");
    }

    // Flag value errors.
    for args in [
        &["entry", "create", "-x509SVIDTTL", "abc"][..],
        &["entry", "create", "-jwtSVIDTTL"],
        &["entry", "create", "-node=maybe"],
        &["entry", "show", "-output", "yaml"],
        &["entry", "show", "-output", "json", "-output", "pretty"],
        &["entry", "show", "-output", "json", "-output", "JSON"],
        &["agent", "purge", "-expiredFor", "1x"],
        &["x509", "mint", "-ttl", "forever"],
        &["jwt", "mint", "-ttl", "-"],
        &["token", "generate", "-ttl", "0x"],
        &["entry", "create", "-entryExpiry", "99999999999999999999"],
    ] {
        check_server(&mut d, args, b"");
    }
    for args in [
        &["api", "fetch", "-timeout", "x"][..],
        &["api", "fetch", "jwt", "-output", "yaml"],
        &[
            "api", "fetch", "jwt", "-format", "json", "-output", "pretty",
        ],
        &["api", "watch", "-timeout", "1s"],
        &["healthcheck", "-verbose=x"],
    ] {
        check_agent(&mut d, args, b"");
    }

    // Input validation that fails before any RPC (the socket does not
    // exist, so anything sent would show up as a dial error).
    let sock = "/nonexistent-spire-cli-test/api.sock";
    for args in [
        &["entry", "create"][..],
        &["entry", "create", "-selector", "unix:uid:0"],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-node",
            "-federatesWith",
            "spiffe://x",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w",
            "-x509SVIDTTL",
            "-1",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w",
            "-jwtSVIDTTL",
            "-1",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "bad",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://Example.org/w",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w/",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org//p",
            "-spiffeID",
            "spiffe://example.org/w",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w",
            "-x509SVIDTTL",
            "3000000000",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w",
            "-jwtSVIDTTL",
            "3000000000",
        ],
        &[
            "entry",
            "create",
            "-selector",
            "unix:uid:0",
            "-node",
            "-spiffeID",
            "spiffe://example.org/./w",
        ],
        &["entry", "create", "-data", "/nonexistent/entries.json"],
        &["entry", "update"],
        &["entry", "update", "-entryID", "x"],
        &["entry", "update", "-entryID", "x", "-selector", "a:b"],
        &[
            "entry",
            "update",
            "-entryID",
            "x",
            "-selector",
            "a:b",
            "-parentID",
            "spiffe://example.org/p",
        ],
        &[
            "entry",
            "update",
            "-entryID",
            "x",
            "-selector",
            "a:b",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w",
            "-x509SVIDTTL",
            "-5",
        ],
        &[
            "entry",
            "update",
            "-entryID",
            "x",
            "-selector",
            "a:b",
            "-parentID",
            "p",
            "-spiffeID",
            "spiffe://example.org/w",
        ],
        &[
            "entry",
            "update",
            "-entryID",
            "x",
            "-selector",
            "ab",
            "-parentID",
            "spiffe://example.org/p",
            "-spiffeID",
            "spiffe://example.org/w",
        ],
        &["entry", "delete"],
        &["entry", "delete", "-file", "/nonexistent/ids.json"],
        &[
            "entry",
            "show",
            "-entryID",
            "x",
            "-spiffeID",
            "spiffe://example.org/w",
        ],
        &["entry", "show", "-parentID", "nope"],
        &["entry", "show", "-spiffeID", "spiffe://"],
        &[
            "entry",
            "show",
            "-selector",
            "a:b",
            "-matchSelectorsOn",
            "most",
        ],
        &["entry", "show", "-selector", "ab"],
        &[
            "entry",
            "show",
            "-federatesWith",
            "spiffe://x",
            "-matchFederatesWithOn",
            "none",
        ],
        &["entry", "count", "-parentID", "nope"],
        &[
            "entry",
            "count",
            "-selector",
            "a:b",
            "-matchSelectorsOn",
            "x",
        ],
        &["agent", "show"],
        &["agent", "show", "-spiffeID", "spiffe:/x"],
        &["agent", "ban"],
        &["agent", "ban", "-spiffeID", "x"],
        &["agent", "evict"],
        &["agent", "evict", "-spiffeID", "spiffe://a b"],
        &["agent", "list", "-expiresBefore", "2024-01-02"],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2024-13-02 15:04:05 +0000 +00",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2024-02-30 15:04:05 +0000 +00",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2024-02-03 25:04:05 +0000 +00",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2024-02-03 15:64:05 +0000 +00",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2024-02-03 15:04:05 +0000 +00 x",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2024-02-03 15:04:05 0000 +00",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "20x4-02-03 15:04:05 +0000 +00",
        ],
        &["agent", "count", "-expiresBefore", "yesterday"],
        &[
            "agent",
            "list",
            "-selector",
            "a:b",
            "-matchSelectorsOn",
            "x",
        ],
        &["agent", "count", "-selector", "ab"],
        &["bundle", "set"],
        &["bundle", "set", "-id", "spiffe://x", "-format", "der"],
        &[
            "bundle",
            "set",
            "-id",
            "spiffe://x",
            "-path",
            "/nonexistent/b.pem",
        ],
        &["bundle", "delete"],
        &["bundle", "delete", "-id", "spiffe://x", "-mode", "nuke"],
        &["federation", "create"],
        &["federation", "create", "-trustDomain", "td"],
        &[
            "federation",
            "create",
            "-trustDomain",
            "td",
            "-bundleEndpointURL",
            "https://x",
        ],
        &[
            "federation",
            "create",
            "-trustDomain",
            "td",
            "-bundleEndpointURL",
            "https://x",
            "-bundleEndpointProfile",
            "https_spiffe",
        ],
        &[
            "federation",
            "create",
            "-trustDomain",
            "td",
            "-bundleEndpointURL",
            "https://x",
            "-bundleEndpointProfile",
            "https_spiffe",
            "-endpointSpiffeID",
            "x",
        ],
        &[
            "federation",
            "create",
            "-trustDomain",
            "td",
            "-bundleEndpointURL",
            "https://x",
            "-bundleEndpointProfile",
            "https_web",
            "-trustDomainBundlePath",
            "/nonexistent",
        ],
        &[
            "federation",
            "create",
            "-data",
            "x.json",
            "-trustDomain",
            "td",
        ],
        &[
            "federation",
            "create",
            "-data",
            "x.json",
            "-trustDomainBundleFormat",
            "spiffe",
        ],
        &["federation", "create", "-data", "/nonexistent/x.json"],
        &[
            "federation",
            "update",
            "-trustDomain",
            "td",
            "-bundleEndpointURL",
            "https://x",
            "-bundleEndpointProfile",
            "web",
        ],
        &["federation", "delete"],
        &["federation", "show"],
        &["federation", "refresh"],
        &["token", "generate", "-spiffeID", "bad"],
        &["token", "generate", "-ttl", "3000000000"],
        &["x509", "mint"],
        &["x509", "mint", "-spiffeID", "bad"],
        &[
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/w",
            "-ttl",
            "1000000h",
        ],
        &["jwt", "mint"],
        &["jwt", "mint", "-spiffeID", "spiffe://example.org/w"],
        &["jwt", "mint", "-spiffeID", "bad", "-audience", "a"],
        &[
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/w",
            "-audience",
            "a",
            "-ttl",
            "1000000h",
        ],
        &["localauthority", "x509", "activate"],
        &["localauthority", "x509", "taint"],
        &["localauthority", "x509", "revoke"],
        &["localauthority", "jwt", "activate"],
        &["localauthority", "jwt", "taint"],
        &["localauthority", "jwt", "revoke"],
        &["upstreamauthority", "taint"],
        &["upstreamauthority", "revoke"],
        &["logger", "set"],
        &["logger", "set", "-level", "loud"],
    ] {
        let mut v = args.to_vec();
        v.push("-socketPath");
        v.push(sock);
        check_server(&mut d, &v, b"");
    }

    // Commands that reach the (missing) socket: grpc-go's dial errors.
    for args in [
        &["entry", "show"][..],
        &["entry", "show", "-output", "json"],
        &["entry", "count"],
        &["agent", "list"],
        &["agent", "purge"],
        &["bundle", "show"],
        &["bundle", "count"],
        &["bundle", "list"],
        &["federation", "list"],
        &["federation", "refresh", "-id", "td"],
        &["logger", "get"],
        &["localauthority", "x509", "show"],
        &["localauthority", "jwt", "show"],
        &["token", "generate"],
        &["healthcheck"],
        &["healthcheck", "-verbose"],
    ] {
        let long = format!("/tmp/{}/api.sock", "a".repeat(120));
        for s in [sock, "relative/api.sock", "", long.as_str()] {
            let mut v = args.to_vec();
            v.push("-socketPath");
            v.push(s);
            check_server(&mut d, &v, b"");
        }
    }
    for args in [
        &["api", "fetch"][..],
        &["api", "fetch", "-output", "json"],
        &["api", "fetch", "jwt"],
        &["api", "fetch", "jwt", "-audience", "a"],
        &["api", "validate", "jwt"],
        &["api", "validate", "jwt", "-audience", "a"],
        &["api", "validate", "jwt", "-audience", "a", "-svid", "x"],
        &["healthcheck"],
        &["healthcheck", "-verbose"],
    ] {
        for s in [sock, "relative/./api.sock"] {
            let mut v = args.to_vec();
            v.push("-socketPath");
            v.push(s);
            check_agent(&mut d, &v, b"");
        }
    }

    // `api watch` reports a missing socket and retries.
    for socket in [sock, "relative/api.sock"] {
        let args = ["api", "watch", "-socketPath", socket];
        let r = common::ref_first_stderr_line(&ref_agent_bin(), &args);
        let o = common::our_first_stderr(&agent, &args);
        let out = |stderr: String| common::Out {
            stdout: String::new(),
            stderr,
            code: 0,
        };
        d.same(
            &format!("spire-agent {} (first error)", args.join(" ")),
            &out(r),
            &out(o),
            &ident,
        );
    }

    // -data JSON parsing (the file is read before anything is sent).
    let dir = tempfile::tempdir().unwrap();
    let bad_entries = [
        "x",
        "{",
        "",
        "[]",
        "{\"entries\":{}}",
        "{\"entries\":[null]}",
        "{\"entries\":[1]}",
        "{\"entries\":[{\"admin\":1}]}",
        "{\"entries\":[{\"x509_svid_ttl\":\"a\"}]}",
        "{\"entries\":[{\"x509_svid_ttl\":1.5}]}",
        "{\"entries\":[{\"x509_svid_ttl\":99999999999}]}",
        "{\"entries\":[{\"entryExpiry\":1e3}]}",
        "{\"entries\":[{\"selectors\":[{\"type\":1}]}]}",
        "{\"entries\":[{\"selectors\":[1]}]}",
        "{\"entries\":[{\"selectors\":{}}]}",
        "{\"entries\":[{\"dns_names\":[\"a\",2]}]}",
        "{\"entries\":[{\"federates_with\":\"x\"}]}",
        "{\"entries\":[]} x",
        "{\"entries\":[{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"bad\"}]}",
        "{\"entries\":[{\"spiffe_id\":\"bad\",\"parent_id\":\"spiffe://example.org/a\"}]}",
        "{\"entries\":[{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"spiffe://example.org/b\",\"federates_with\":[\"bad td\"]}]}",
        "{\"entries\":[{\"spiffe_id\":\"spiffe://example.org/a\" \"x\"}]}",
        "{\"entries\":[{\"spiffe_id\":tru}]}",
        "{\"entries\":[{\"spiffe_id\":\"\\q\"}]}",
        "{\"entries\":[{\"spiffe_id\":\"\\u12g4\"}]}",
        "{\"entries\":[{\"revision_number\":-}]}",
        "{\"entries\":[{\"revision_number\":1.}]}",
        "{\"entries\":[{\"revision_number\":1e}]}",
        "{'entries':[]}",
        "{\"entries\":[{\"admin\":true,}]}",
        "{\"Entries\":[{\"ADMIN\":\"yes\"}]}",
        "\u{1}",
    ];
    for (i, text) in bad_entries.iter().enumerate() {
        let path = dir.path().join(format!("e{i}.json"));
        std::fs::write(&path, text).unwrap();
        let p = path.display().to_string();
        check_server(
            &mut d,
            &["entry", "create", "-data", &p, "-socketPath", sock],
            b"",
        );
        check_server(
            &mut d,
            &["entry", "update", "-data", &p, "-socketPath", sock],
            b"",
        );
        check_server(
            &mut d,
            &["entry", "create", "-data", "-", "-socketPath", sock],
            text.as_bytes(),
        );
    }
    let bad_ids = [
        "x",
        "[]",
        "{\"ids\":\"a\"}",
        "{\"ids\":[1]}",
        "{\"ids\":[\"a\"],}",
    ];
    for (i, text) in bad_ids.iter().enumerate() {
        let path = dir.path().join(format!("d{i}.json"));
        std::fs::write(&path, text).unwrap();
        let p = path.display().to_string();
        check_server(
            &mut d,
            &["entry", "delete", "-file", &p, "-socketPath", sock],
            b"",
        );
        check_server(
            &mut d,
            &["entry", "delete", "-file", "-", "-socketPath", sock],
            text.as_bytes(),
        );
    }
    let bad_relationships = [
        "x",
        "[]",
        "{\"federationRelationships\":{}}",
        "{\"federationRelationships\":[1]}",
        "{\"federationRelationships\":[{\"trustDomain\":1}]}",
        "{\"federationRelationships\":[{}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_spiffe\",\"endpointSPIFFEID\":\"spiffe://td/\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":\"x\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":\"x\",\"trustDomainBundleFormat\":\"pem\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{},\"trustDomainBundleFormat\":\"pem\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{},\"trustDomainBundleFormat\":\"spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{\"keys\":1},\"trustDomainBundleFormat\":\"spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{\"keys\":[{}]},\"trustDomainBundleFormat\":\"spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-1\"}]},\"trustDomainBundleFormat\":\"spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\"}]},\"trustDomainBundleFormat\":\"spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{\"keys\":[{\"kty\":\"XX\"}]},\"trustDomainBundleFormat\":\"spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":{\"keys\":[],\"spiffe_sequence\":-1},\"trustDomainBundleFormat\":\"spiffe\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":null,\"trustDomainBundleFormat\":\"pem\"}]}",
        "{\"federationRelationships\":[{\"trustDomain\":\"td\",\"bundleEndpointURL\":\"https://x\",\"bundleEndpointProfile\":\"https_web\",\"trustDomainBundle\":\"x\",\"trustDomainBundleFormat\":\"der\"}]}",
    ];
    for (i, text) in bad_relationships.iter().enumerate() {
        let path = dir.path().join(format!("f{i}.json"));
        std::fs::write(&path, text).unwrap();
        let p = path.display().to_string();
        check_server(
            &mut d,
            &["federation", "create", "-data", &p, "-socketPath", sock],
            b"",
        );
        check_server(
            &mut d,
            &["federation", "update", "-data", "-", "-socketPath", sock],
            text.as_bytes(),
        );
    }
    let bad_bundles: &[(&str, &str)] = &[
        ("pem", ""),
        ("pem", "not pem"),
        (
            "pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
        (
            "pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
        ("spiffe", "x"),
        ("spiffe", "{}"),
        ("spiffe", "{\"keys\":null}"),
        (
            "spiffe",
            "{\"keys\":[{\"use\":\"jwt-svid\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
        ),
        ("spiffe", "{\"keys\":[{\"kty\":\"RSA\"}]}"),
        ("spiffe", "{\"keys\":[{\"kty\":\"\"}]}"),
        ("spiffe", "{\"keys\":[1]}"),
        ("spiffe", "{\"keys\":[],\"spiffe_refresh_hint\":\"x\"}"),
    ];
    for (i, (format, text)) in bad_bundles.iter().enumerate() {
        let path = dir.path().join(format!("b{i}"));
        std::fs::write(&path, text).unwrap();
        let p = path.display().to_string();
        check_server(
            &mut d,
            &[
                "bundle",
                "set",
                "-id",
                "spiffe://fed.test",
                "-format",
                format,
                "-path",
                &p,
                "-socketPath",
                sock,
            ],
            b"",
        );
        check_server(
            &mut d,
            &[
                "bundle",
                "set",
                "-id",
                "spiffe://fed.test",
                "-format",
                format,
                "-socketPath",
                sock,
            ],
            text.as_bytes(),
        );
    }
    check_server(
        &mut d,
        &[
            "bundle",
            "set",
            "-id",
            "bad td",
            "-format",
            "spiffe",
            "-socketPath",
            sock,
        ],
        b"{\"keys\":[]}",
    );

    d.finish("help/usage/validation");
}
