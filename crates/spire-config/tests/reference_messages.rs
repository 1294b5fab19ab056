//! Error messages compared with what the SPIRE 1.13.3 reference binaries print for the same
//! configuration. Each expected string below was observed by writing the configuration to
//! `F.conf` and running `spire-server validate -config F.conf` (or `spire-agent validate`);
//! the binaries print "SPIRE server configuration file is invalid: " and then the message.
//! `{path}` stands for the file path as given on the command line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use spire_config::{
    AgentOverrides, ConfigError, ServerOverrides, load_agent_config_file, load_server_config_file,
};

#[derive(Clone, Copy)]
enum Match {
    /// Byte-for-byte SPIRE's message.
    Exact,
    /// SPIRE's message is a prefix of ours (we add the unknown keys and their lines).
    Prefix,
    /// Ours starts with the first part and ends with the second: we add the key's position
    /// and name where SPIRE prints only Go's bare `strconv` error.
    Around(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    agent: bool,
    text: &'static str,
    spire: &'static str,
    how: Match,
}

const SERVER_CASES: &[Case] = &[
    Case {
        name: "notd",
        agent: false,
        text: "server {\n  data_dir = \"/tmp/d\"\n}\nplugins {}\n",
        spire: "trust_domain must be configured",
        how: Match::Exact,
    },
    Case {
        name: "badttl",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  default_x509_svid_ttl = \"x\"\n}\nplugins {}\n",
        spire: "could not parse default X509 SVID ttl \"x\": time: invalid duration \"x\"",
        how: Match::Exact,
    },
    Case {
        name: "badport",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  bind_port = \"abc\"\n}\nplugins {}\n",
        spire: "unable to decode configuration at \"{path}\": strconv.ParseInt: parsing \"abc\": invalid syntax",
        how: Match::Around(
            "unable to decode configuration at \"{path}\": At 4:15: root.server.bind_port: ",
            "strconv.ParseInt: parsing \"abc\": invalid syntax",
        ),
    },
    Case {
        name: "boolstr",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  audit_log_enabled = \"true\"\n}\nplugins {}\n",
        spire: "unable to decode configuration at \"{path}\": At 4:23: root.server.audit_log_enabled: unknown type *ast.LiteralType",
        how: Match::Exact,
    },
    Case {
        name: "both",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n}\nplugins {\n  DataStore \"sql\" {\n    plugin_data { a = 1 }\n    plugin_data_file = \"/tmp/x\"\n  }\n}\n",
        spire: "failed to create plugin config for \"DataStore\"/\"sql\": only one of [plugin_data, plugin_data_file] can be used",
        how: Match::Exact,
    },
    Case {
        name: "noplugins",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n}\n",
        spire: "plugins section must be configured",
        how: Match::Exact,
    },
    Case {
        name: "syntax",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \n}\n",
        spire: "unable to decode configuration at \"{path}\": At 4:1: Unknown token: 4:1 RBRACE }",
        how: Match::Exact,
    },
    Case {
        name: "unknown",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  bogus = 1\n  data_dir = \"/tmp/d\"\n  other \"x\" { }\n  \"quoted\" = 2\n  Bind_Port = \"8082\"\n}\nplugins {\n  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\" } }\n}\ntelemetry { weird = 1 \n  Prometheus { port = 9 zz = 1 } }\nhealth_checks { nope = 1 }\ntopbogus = 3\n",
        spire: "unknown configuration detected",
        how: Match::Prefix,
    },
    Case {
        name: "h_illegal",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\" @\n}\n",
        spire: "unable to decode configuration at \"{path}\": At 3:23: illegal char",
        how: Match::Exact,
    },
    Case {
        name: "h_str",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\n  data_dir = \"/tmp/d\"\n}\n",
        spire: "unable to decode configuration at \"{path}\": At 2:30: literal not terminated",
        how: Match::Exact,
    },
    Case {
        name: "h_keyonly",
        agent: false,
        text: "server {\n  trust_domain\n}\n",
        spire: "unable to decode configuration at \"{path}\": At 3:1: key 'trust_domain' expected start of object ('{') or assignment ('=')",
        how: Match::Exact,
    },
    Case {
        name: "h_dup",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  admin_ids = [\"spiffe://example.org/a\"]\n  admin_ids = [\"spiffe://example.org/b\", \"bad id\"]\n}\nplugins { }\n",
        spire: "could not parse admin ID \"bad id\": scheme is missing or invalid",
        how: Match::Exact,
    },
    Case {
        name: "h_floatstr",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = 1.5\n}\nplugins { }\n",
        spire: "unable to decode configuration at \"{path}\": At 3:14: root.server.data_dir: unknown type for string *ast.LiteralType",
        how: Match::Exact,
    },
    Case {
        name: "h_slicestr",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/d\"\n  admin_ids = \"spiffe://example.org/a\"\n}\nplugins { }\n",
        spire: "unable to decode configuration at \"{path}\": At 4:15: unknown slice type: *ast.LiteralType",
        how: Match::Exact,
    },
    Case {
        name: "port70k",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  bind_port = 70000\n}\nplugins {}\n",
        spire: "could not resolve bind address \"0.0.0.0:70000\": address 70000: invalid port",
        how: Match::Exact,
    },
    Case {
        name: "portneg",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  bind_port = -1\n}\nplugins {}\n",
        spire: "could not resolve bind address \"0.0.0.0:-1\": address -1: invalid port",
        how: Match::Exact,
    },
    Case {
        name: "s_keytype",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  ca_key_type = \"ec-p521\"\n}\nplugins {}\n",
        spire: "error parsing ca_key_type: key type \"ec-p521\" is unknown; must be one of [rsa-2048, rsa-4096, ec-p256, ec-p384]",
        how: Match::Exact,
    },
    Case {
        name: "s_fedhttp",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  federation {\n    federates_with \"td2.org\" {\n      bundle_endpoint_url = \"http://x\"\n      bundle_endpoint_profile \"https_web\" {}\n    }\n  }\n}\nplugins {}\n",
        spire: "federation.federates_with[\"td2.org\"].bundle_endpoint_url must use the HTTPS protocol; URL found: \"http://x\"",
        how: Match::Exact,
    },
    Case {
        name: "s_fedprofile",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  federation {\n    federates_with \"td2.org\" {\n      bundle_endpoint_url = \"https://x\"\n      bundle_endpoint_profile \"https_spiffe\" { endpoint_spiffe_id = \"nope\" }\n    }\n  }\n}\nplugins {}\n",
        spire: "error parsing federation relationship for trust domain \"td2.org\": could not get endpoint SPIFFE ID: scheme is missing or invalid",
        how: Match::Exact,
    },
    Case {
        name: "s_beprofile",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  federation {\n    bundle_endpoint {\n      address = \"0.0.0.0\"\n      port = 8443\n      profile \"https_web\" {}\n    }\n  }\n}\nplugins {}\n",
        spire: "malformed https_web profile configuration: 'acme' or 'serving_cert_file' is required",
        how: Match::Exact,
    },
    Case {
        name: "s_flags",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  experimental { feature_flags = [\"zz\", \"aa\"] }\n}\nplugins {}\n",
        spire: "error loading feature flags: unknown feature flag(s): [aa zz]",
        how: Match::Exact,
    },
    Case {
        name: "s_loglevel",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  log_level = \"LOUD\"\n}\nplugins {}\n",
        spire: "could not start logger: not a valid logrus Level: \"LOUD\"",
        how: Match::Exact,
    },
    Case {
        name: "s_logfmt",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  log_format = \"xml\"\n}\nplugins {}\n",
        spire: "could not start logger: unknown logger format: \"xml\"",
        how: Match::Exact,
    },
    Case {
        name: "s_dupplugin",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n}\nplugins {\n  DataStore \"sql\" {}\n  DataStore { sql {} }\n}\n",
        spire: "plugin \"DataStore\"/\"sql\" declared more than once",
        how: Match::Exact,
    },
    Case {
        name: "s_enabledstr",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n}\nplugins {\n  DataStore \"sql\" {\n    enabled = \"false\"\n  }\n}\n",
        spire: "failed to decode plugins config: At 7:15: root[0].DataStore.sql.enabled: unknown type *ast.LiteralType",
        how: Match::Exact,
    },
    Case {
        name: "s_pluginsstr",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n}\nplugins = \"x\"\n",
        spire: "expected plugins node type *ast.ObjectList but got *ast.LiteralType",
        how: Match::Exact,
    },
    Case {
        name: "s_staleness",
        agent: false,
        text: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/d\"\n  max_attested_node_info_staleness = \"\"\n}\nplugins {}\n",
        spire: "could not parse max attested node staleness \"\": time: invalid duration \"\"",
        how: Match::Exact,
    },
    Case {
        name: "j_first",
        agent: false,
        text: "{\n  \"telemetry\": {\"Prometheus\": {\"port\": 9090}},\n  \"server\": {\"trust_domain\": \"example.org\", \"data_dir\": \"/tmp/d\"},\n  \"plugins\": {\"DataStore\": {\"sql\": {\"plugin_data\": {\"database_type\": \"sqlite3\"}}}}\n}\n",
        spire: "unknown configuration detected",
        how: Match::Prefix,
    },
    Case {
        name: "j_syntax",
        agent: false,
        text: "{\n  \"server\": {\"trust_domain\": \"example.org\", \"data_dir\": },\n  \"plugins\": {}\n}\n",
        spire: "data_dir must be configured",
        how: Match::Exact,
    },
];

const AGENT_CASES: &[Case] = &[
    Case {
        name: "a_none",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n}\nplugins {}\n",
        spire: "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set",
        how: Match::Exact,
    },
    Case {
        name: "a_two",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = \"8081\"\n  trust_bundle_path = \"/x\"\n  trust_bundle_url = \"https://x\"\n}\nplugins {}\n",
        spire: "only one of trust_bundle_url or trust_bundle_path can be specified, not both",
        how: Match::Exact,
    },
    Case {
        name: "a_three",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  trust_bundle_path = \"/x\"\n  trust_bundle_url = \"https://x\"\n}\nplugins {}\n",
        spire: "only one of insecure_bootstrap, trust_bundle_url, or trust_bundle_path can be specified, not the three options",
        how: Match::Exact,
    },
    Case {
        name: "a_ins_path",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  trust_bundle_path = \"/x\"\n}\nplugins {}\n",
        spire: "only one of insecure_bootstrap or trust_bundle_path can be specified, not both",
        how: Match::Exact,
    },
    Case {
        name: "a_unknown",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  foo = \"bar\"\n  sds { weird = 1 }\n  experimental { zz = 1 }\n}\nplugins {}\n",
        spire: "unknown configuration detected",
        how: Match::Prefix,
    },
    Case {
        name: "a_httpurl",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  trust_bundle_url = \"http://x\"\n}\nplugins {}\n",
        spire: "trust bundle URL must start with https://",
        how: Match::Exact,
    },
    Case {
        name: "a_badtd",
        agent: true,
        text: "agent {\n  trust_domain = \"Example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n}\nplugins {}\n",
        spire: "could not parse trust_domain \"Example.org\": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
        how: Match::Exact,
    },
    Case {
        name: "a_noagent",
        agent: true,
        text: "plugins {}\n",
        spire: "server_address must be configured",
        how: Match::Exact,
    },
    Case {
        name: "a_noplug",
        agent: true,
        text: "agent {}\n",
        spire: "plugins section must be configured",
        how: Match::Exact,
    },
    Case {
        name: "a_fmt",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  trust_bundle_format = \"der\"\n}\nplugins {}\n",
        spire: "invalid value for trust_bundle_format, expected \"pem\" or \"spiffe\"",
        how: Match::Exact,
    },
    Case {
        name: "a_rb",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  rebootstrap_mode = \"sometimes\"\n}\nplugins {}\n",
        spire: "unknown rebootstrap mode specified: sometimes",
        how: Match::Exact,
    },
    Case {
        name: "a_avail",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  availability_target = \"1h\"\n}\nplugins {}\n",
        spire: "availability_target must be at least 24h0m0s",
        how: Match::Exact,
    },
    Case {
        name: "a_deleg",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  authorized_delegates = [\"spiffe://other.org/x\"]\n}\nplugins {}\n",
        spire: "error validating authorized delegate: SPIFFE ID \"spiffe://other.org/x\" is not a member of trust domain \"example.org\"",
        how: Match::Exact,
    },
    Case {
        name: "a_wkt",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  workload_x509_svid_key_type = \"ec-p384\"\n}\nplugins {}\n",
        spire: "key type \"ec-p384\" is unknown; must be one of [rsa-2048, ec-p256]",
        how: Match::Exact,
    },
    Case {
        name: "a_retry",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  trust_bundle_path = \"/x\"\n  rebootstrap_mode = \"auto\"\n  retry_bootstrap = true\n}\nplugins {}\n",
        spire: "you can not set retry_bootstrap when using reboostrap_mode",
        how: Match::Exact,
    },
    Case {
        name: "a_jtf",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  join_token_file = \"/nonexistent/token\"\n}\nplugins {}\n",
        spire: "unable to read join token file \"/nonexistent/token\": open /nonexistent/token: no such file or directory",
        how: Match::Exact,
    },
    Case {
        name: "a_admin",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  admin_socket_path = \"/tmp/spire-agent/public/sub/admin.sock\"\n}\nplugins {}\n",
        spire: "admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket",
        how: Match::Exact,
    },
    Case {
        name: "a_sync",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  insecure_bootstrap = true\n  experimental { sync_interval = \"5x\" }\n}\nplugins {}\n",
        spire: "could not parse synchronization interval: time: unknown unit \"x\" in duration \"5x\"",
        how: Match::Exact,
    },
    Case {
        name: "a_unix",
        agent: true,
        text: "agent {\n  trust_domain = \"example.org\"\n  server_address = \"localhost\"\n  server_port = 8081\n  trust_bundle_url = \"https://x/?spiffe-a=1\"\n  trust_bundle_unix_socket = \"/tmp/s\"\n}\nplugins {}\n",
        spire: "trust bundle URL must start with http:// when used with trust bundle unix socket",
        how: Match::Exact,
    },
];

fn run(case: &Case, dir: &Path) -> ConfigError {
    let path = dir.join(format!("{}.conf", case.name));
    std::fs::write(&path, case.text).unwrap();
    let result = if case.agent {
        load_agent_config_file(&path, &AgentOverrides::default(), None).map(|_| ())
    } else {
        load_server_config_file(&path, &ServerOverrides::default(), None).map(|_| ())
    };
    result.expect_err(case.name)
}

#[test]
fn error_messages_match_the_reference_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut exact = 0;
    for case in SERVER_CASES.iter().chain(AGENT_CASES) {
        let err = run(case, dir.path());
        let path = dir.path().join(format!("{}.conf", case.name));
        let fill = |s: &str| s.replace("{path}", &path.display().to_string());
        let got = err.to_string();
        match case.how {
            Match::Exact => {
                assert_eq!(got, fill(case.spire), "{}", case.name);
                exact += 1;
            }
            Match::Prefix => assert!(got.starts_with(case.spire), "{}: {got}", case.name),
            Match::Around(head, tail) => {
                assert!(got.starts_with(&fill(head)), "{}: {got}", case.name);
                assert!(got.ends_with(tail), "{}: {got}", case.name);
            }
        }
    }
    assert!(exact >= 40, "{exact}");
}

/// SPIRE logs `Unknown configuration detected` with `section` and `keys` fields, one line
/// per section, in this order; the keys it does not report (`other "x" {}` after the first
/// item, a quoted key, anything under `telemetry` itself) are not reported here either.
#[test]
fn unknown_keys_match_spires_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let case = SERVER_CASES.iter().find(|c| c.name == "unknown").unwrap();
    let ConfigError::UnknownKeys { keys } = run(case, dir.path()) else {
        panic!()
    };
    // Reference output:
    //   level=error msg="Unknown configuration detected" keys=topbogus section=top-level
    //   level=error msg="Unknown configuration detected" keys=bogus section=server
    //   level=error msg="Unknown configuration detected" keys=zz section=Prometheus
    //   level=error msg="Unknown configuration detected" keys=nope section="health check"
    let got: Vec<(&str, &str, usize)> = keys
        .iter()
        .map(|k| (k.section.as_str(), k.key.as_str(), k.line))
        .collect();
    assert_eq!(
        got,
        vec![
            ("top-level", "topbogus", 15),
            ("server", "bogus", 3),
            ("Prometheus", "zz", 13),
            ("health check", "nope", 14),
        ]
    );

    // {"telemetry": {"Prometheus": ...}} as the first item: hcl flattens it to one item with
    // two keys and SPIRE reports `keys=Prometheus section=top-level`.
    let case = SERVER_CASES.iter().find(|c| c.name == "j_first").unwrap();
    let ConfigError::UnknownKeys { keys } = run(case, dir.path()) else {
        panic!()
    };
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].section.as_str(), keys[0].key.as_str()),
        ("top-level", "Prometheus")
    );

    // `keys=foo section=agent` only: sds and experimental are not checked.
    let case = AGENT_CASES.iter().find(|c| c.name == "a_unknown").unwrap();
    let ConfigError::UnknownKeys { keys } = run(case, dir.path()) else {
        panic!()
    };
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].section.as_str(), keys[0].key.as_str()),
        ("agent", "foo")
    );
    assert_eq!(
        run(case, dir.path()).to_string(),
        "unknown configuration detected: unknown configuration key \"foo\" in section \"agent\" at line 6"
    );
}

#[test]
fn file_errors_match_spire() {
    // `spire-server validate -config /nonexistent.conf`
    let err = load_server_config_file(
        Path::new("/nonexistent.conf"),
        &ServerOverrides::default(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not find config file /nonexistent.conf: please use the -config flag"
    );
    // `spire-server validate -config /tmp`
    let err =
        load_server_config_file(Path::new("/tmp"), &ServerOverrides::default(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to read configuration at \"/tmp\": read /tmp: is a directory"
    );
    // A relative missing path is reported absolute.
    let err = load_agent_config_file(
        Path::new("no/such/agent.conf"),
        &AgentOverrides::default(),
        None,
    )
    .unwrap_err();
    let ConfigError::NotFound { path } = &err else {
        panic!("{err:?}")
    };
    assert!(path.is_absolute() && path.ends_with("no/such/agent.conf"));
}
