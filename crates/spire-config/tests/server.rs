//! Server configuration: defaults, hcl's weak typing, durations, JSON, `-expandEnv`,
//! overrides.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::server_conf;
use spiffe_core::KeyType;
use spire_config::{
    BundleEndpointProfile, CaSubject, ConfigError, FederatesWithProfile, Format, LogFormat,
    LogLevel, ServerConfig, ServerFile, ServerOverrides, load_server_config,
};

fn load(text: &str) -> Result<ServerConfig, ConfigError> {
    load_server_config(text, Format::Auto, &ServerOverrides::default(), None)
}

#[test]
fn defaults_are_spires() {
    let c = load(&server_conf("")).unwrap();
    assert_eq!(c.bind_address, "0.0.0.0");
    assert_eq!(c.bind_port, 8081);
    assert_eq!(
        c.socket_path.to_str(),
        Some("/tmp/spire-server/private/api.sock")
    );
    assert_eq!(c.trust_domain.name(), "example.org");
    assert_eq!(c.data_dir.to_str(), Some("/tmp/data"));
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.format, LogFormat::Default);
    assert_eq!(c.log.file, None);
    assert!(!c.log.source_location);
    assert_eq!(c.ca_ttl, Duration::from_secs(86400));
    assert_eq!(c.default_x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(c.default_jwt_svid_ttl, Duration::from_secs(300));
    assert_eq!(c.agent_ttl, Duration::from_secs(3600));
    assert!(!c.agent_ttl_configured);
    assert_eq!(c.ca_key_type, KeyType::EcP256);
    assert_eq!(c.jwt_key_type, KeyType::EcP256);
    assert_eq!(c.ca_subject, CaSubject::default());
    assert_eq!(c.ca_subject.country, vec!["US"]);
    assert_eq!(c.ca_subject.organization, vec!["SPIFFE"]);
    assert_eq!(c.jwt_issuer, None);
    assert!(c.admin_ids.is_empty());
    assert!(!c.audit_log_enabled);
    assert_eq!(c.prune_attested_nodes_expired_for, None);
    assert!(!c.prune_tofu_nodes);
    assert_eq!(c.max_attested_node_info_staleness, Duration::ZERO);
    assert!(c.ratelimit.attestation && c.ratelimit.signing);
    assert_eq!(c.experimental.cache_reload_interval, Duration::from_secs(5));
    assert_eq!(
        c.experimental.full_cache_reload_interval,
        Duration::from_secs(86400)
    );
    assert_eq!(
        c.experimental.prune_events_older_than,
        Duration::from_secs(43200)
    );
    assert_eq!(c.experimental.event_timeout, Duration::from_secs(900));
    assert!(!c.experimental.events_based_cache);
    assert!(c.federation.bundle_endpoint.is_none());
    assert!(c.plugins.is_empty());
    assert!(c.telemetry.enable_hostname_label);
    assert!(!c.telemetry.enable_trust_domain_label);
    assert!(!c.telemetry.in_mem);
    assert_eq!(c.telemetry.open_telemetry, None);
    assert_eq!(c.telemetry.metric_prefix, None);
    assert!(!c.health_checks.listener_enabled);
    assert_eq!(c.health_checks.bind_address, "localhost");
    assert_eq!(c.health_checks.bind_port, "80");
    assert_eq!(c.health_checks.live_path, "/live");
    assert_eq!(c.health_checks.ready_path, "/ready");
    assert_eq!(c.health_checks.listen_address(), "localhost:80");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_server_key_is_read() {
    let c = load(
        r#"
server {
  bind_address = "127.0.0.1"
  bind_port = "8082"
  socket_path = "/run/spire/api.sock"
  trust_domain = "spiffe://example.org"
  data_dir = "/var/lib/spire"
  log_level = "debug"
  log_format = "json"
  log_file = "/var/log/spire.log"
  log_source_location = true
  ca_ttl = "168h"
  default_x509_svid_ttl = "2h"
  default_jwt_svid_ttl = "10m"
  agent_ttl = "3h"
  ca_key_type = "RSA-2048"
  jwt_key_type = "ec-p384"
  ca_subject {
    country = ["DE"]
    organization = ["Acme"]
    common_name = "ca"
  }
  jwt_issuer = "https://oidc.example.org"
  admin_ids = ["spiffe://example.org/admin", "spiffe://other.org/admin"]
  audit_log_enabled = true
  prune_attested_nodes_expired_for = "720h"
  prune_tofu_nodes = true
  max_attested_node_info_staleness = "30s"
  profiling_enabled = true
  profiling_port = 6060
  profiling_freq = "10"
  profiling_names = ["heap", "goroutine"]
  ratelimit {
    attestation = false
    signing = true
  }
  experimental {
    cache_reload_interval = "10s"
    full_cache_reload_interval = "1h"
    events_based_cache = true
    prune_events_older_than = "6h"
    event_timeout = "1m"
    require_pq_kem = true
    feature_flags = ["i_am_a_test_flag"]
    auth_opa_policy_engine {
      local {
        rego_path = "/p.rego"
        policy_data_path = "/d.json"
      }
    }
  }
  federation {
    bundle_endpoint {
      address = "0.0.0.0"
      port = 8443
      refresh_hint = "10m"
      profile "https_web" {
        serving_cert_file {
          cert_file_path = "/c.pem"
          key_file_path = "/k.pem"
          file_sync_interval = "0s"
        }
      }
    }
    federates_with "td2.org" {
      bundle_endpoint_url = "https://td2.org:8443"
      bundle_endpoint_profile "https_spiffe" {
        endpoint_spiffe_id = "spiffe://td2.org/spire/server"
      }
    }
    federates_with "td3.org" {
      bundle_endpoint_url = "HTTPS://td3.org"
      bundle_endpoint_profile "https_web" {}
    }
  }
}
plugins {}
telemetry {
  Prometheus { port = "9988" }
  DogStatsd = [{ address = "localhost:8125" }]
  Statsd = [{ address = "a:1" }, { address = "b:2" }]
  M3 = [{ address = "m3:9052", env = "prod" }]
  InMem {}
  OpenTelemetry { endpoint = "http://otel:4317" }
  MetricPrefix = "prefix"
  EnableTrustDomainLabel = true
  EnableHostnameLabel = false
  AllowedPrefixes = ["a"]
  BlockedPrefixes = ["b"]
  AllowedLabels = ["c"]
  BlockedLabels = ["d"]
}
health_checks {
  listener_enabled = true
  bind_address = "[::1]"
  bind_port = 8080
  live_path = "/l"
  ready_path = "/r"
}
"#,
    )
    .unwrap();
    assert_eq!(c.bind_address, "127.0.0.1");
    assert_eq!(c.bind_port, 8082);
    assert_eq!(c.socket_path.to_str(), Some("/run/spire/api.sock"));
    assert_eq!(c.trust_domain.name(), "example.org");
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.log.file.as_deref().and_then(|p| p.to_str()),
        Some("/var/log/spire.log")
    );
    assert!(c.log.source_location);
    assert_eq!(c.ca_ttl, Duration::from_secs(168 * 3600));
    assert_eq!(c.default_x509_svid_ttl, Duration::from_secs(7200));
    assert_eq!(c.default_jwt_svid_ttl, Duration::from_secs(600));
    assert_eq!(c.agent_ttl, Duration::from_secs(3 * 3600));
    assert!(c.agent_ttl_configured);
    assert_eq!(c.ca_key_type, KeyType::Rsa2048);
    assert_eq!(c.jwt_key_type, KeyType::EcP384);
    assert_eq!(c.ca_subject.common_name, "ca");
    assert_eq!(c.jwt_issuer.as_deref(), Some("https://oidc.example.org"));
    assert_eq!(c.admin_ids.len(), 2);
    assert_eq!(c.admin_ids[1].as_str(), "spiffe://other.org/admin");
    assert!(c.audit_log_enabled);
    assert_eq!(
        c.prune_attested_nodes_expired_for,
        Some(Duration::from_secs(720 * 3600))
    );
    assert!(c.prune_tofu_nodes);
    assert_eq!(c.max_attested_node_info_staleness, Duration::from_secs(30));
    assert!(c.profiling.enabled);
    assert_eq!(c.profiling.port, 6060);
    assert_eq!(c.profiling.freq, 10);
    assert_eq!(c.profiling.names, vec!["heap", "goroutine"]);
    assert!(!c.ratelimit.attestation && c.ratelimit.signing);
    let e = &c.experimental;
    assert_eq!(e.cache_reload_interval, Duration::from_secs(10));
    assert_eq!(e.full_cache_reload_interval, Duration::from_secs(3600));
    assert!(e.events_based_cache && e.require_pq_kem);
    assert_eq!(e.prune_events_older_than, Duration::from_secs(6 * 3600));
    assert_eq!(e.event_timeout, Duration::from_secs(60));
    assert_eq!(e.feature_flags, vec!["i_am_a_test_flag"]);
    assert_eq!(
        e.auth_opa_policy_engine.as_ref().unwrap().local,
        Some(("/p.rego".to_owned(), "/d.json".to_owned()))
    );
    let be = c.federation.bundle_endpoint.as_ref().unwrap();
    assert_eq!(be.address, Some("0.0.0.0".parse().unwrap()));
    assert_eq!(be.port, 8443);
    assert_eq!(be.refresh_hint, Duration::from_secs(600));
    let BundleEndpointProfile::HttpsWebServingCert(sc) = &be.profile else {
        panic!("{:?}", be.profile)
    };
    assert_eq!(sc.file_sync_interval, Duration::from_secs(3600));
    assert_eq!(c.federation.federates_with.len(), 2);
    let (td2, fw) = c.federation.federates_with.iter().next().unwrap();
    assert_eq!(td2.name(), "td2.org");
    assert_eq!(
        fw.profile,
        FederatesWithProfile::HttpsSpiffe {
            endpoint_spiffe_id: "spiffe://td2.org/spire/server".parse().unwrap()
        }
    );
    let t = &c.telemetry;
    let otel = t.open_telemetry.as_ref().unwrap();
    assert_eq!(
        (otel.endpoint.as_str(), otel.export_interval.as_str()),
        ("http://otel:4317", "10s")
    );
    assert_eq!(t.prometheus.as_ref().unwrap().host, "localhost");
    assert_eq!(t.prometheus.as_ref().unwrap().port, 9988);
    assert_eq!(t.dogstatsd[0].address, "localhost:8125");
    assert_eq!(t.statsd.len(), 2);
    assert_eq!(t.m3[0].env, "prod");
    assert!(t.in_mem);
    assert_eq!(t.metric_prefix.as_deref(), Some("prefix"));
    assert!(t.enable_trust_domain_label && !t.enable_hostname_label);
    assert_eq!(
        (t.allowed_prefixes.as_slice(), t.blocked_prefixes.as_slice()),
        (&["a".to_owned()][..], &["b".to_owned()][..])
    );
    let h = &c.health_checks;
    assert!(h.listener_enabled);
    assert_eq!(h.bind_address, "::1");
    assert_eq!(h.bind_port, "8080");
    assert_eq!(h.listen_address(), "[::1]:8080");
    assert_eq!((h.live_path.as_str(), h.ready_path.as_str()), ("/l", "/r"));
    // Experimental features enabled, developer flag enabled.
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn weak_typing_follows_hcl() {
    // (value of bind_port, expected port or the error's message)
    let ok: &[(&str, u16)] = &[
        ("8082", 8082),
        ("\"8082\"", 8082),
        ("\"0x1f92\"", 8082),
        ("0x1f92", 8082),
        ("017", 15),
        ("\"+8082\"", 8082),
    ];
    for (value, port) in ok {
        let c = load(&server_conf(&format!("bind_port = {value}"))).unwrap();
        assert_eq!(c.bind_port, *port, "{value}");
    }
    // Numbers are accepted where SPIRE's field is a string; their text is kept.
    let c = load(&server_conf("data_dir = 123\njwt_issuer = 0x10")).unwrap();
    assert_eq!(c.data_dir.to_str(), Some("123"));
    assert_eq!(c.jwt_issuer.as_deref(), Some("0x10"));
    // Heredocs are strings.
    let c = load(&server_conf("jwt_issuer = <<EOF\nhttps://x\nEOF\n")).unwrap();
    assert_eq!(c.jwt_issuer.as_deref(), Some("https://x\n"));
    // Keys match case-insensitively.
    let c = load(&server_conf("BIND_PORT = 9000\nAudit_Log_Enabled = true")).unwrap();
    assert_eq!(c.bind_port, 9000);
    assert!(c.audit_log_enabled);

    let bad: &[(&str, &str)] = &[
        // hcl only takes a bool token for a bool.
        (
            "audit_log_enabled = \"true\"",
            "At 4:21: root.server.audit_log_enabled: unknown type *ast.LiteralType",
        ),
        (
            "audit_log_enabled = 1",
            "At 4:21: root.server.audit_log_enabled: unknown type *ast.LiteralType",
        ),
        (
            "bind_port = 80.5",
            "At 4:13: root.server.bind_port: unknown type *ast.LiteralType",
        ),
        (
            "bind_port = true",
            "At 4:13: root.server.bind_port: unknown type *ast.LiteralType",
        ),
        (
            "bind_port = \"99999999999999999999\"",
            "At 4:13: root.server.bind_port: strconv.ParseInt: parsing \"99999999999999999999\": value out of range",
        ),
        (
            "socket_path = true",
            "At 4:15: root.server.socket_path: unknown type for string *ast.LiteralType",
        ),
        (
            "socket_path = [\"a\"]",
            "At 4:15: root.server.socket_path: unknown type for string *ast.ListType",
        ),
        (
            "admin_ids = \"x\"",
            "At 4:13: unknown slice type: *ast.LiteralType",
        ),
        (
            "ca_subject = \"x\"",
            "At 4:14: root.server.ca_subject: not an object type for struct (*ast.LiteralType)",
        ),
    ];
    for (line, want) in bad {
        let err = load(&server_conf(line)).unwrap_err();
        let ConfigError::WrongType { line: l, .. } = &err else {
            panic!("{line}: {err:?}")
        };
        assert_eq!(*l, 4, "{line}");
        assert_eq!(
            err.to_string(),
            format!("unable to decode configuration: {want}"),
            "{line}"
        );
    }
    let err = load(&server_conf("bind_port = \"abc\"")).unwrap_err();
    assert_eq!(err.key(), Some("server.bind_port"));
    assert_eq!(err.line(), Some(4));
}

#[test]
fn repeated_keys_and_blocks_merge_like_hcl() {
    let c = load(
        "server {\n  trust_domain = \"example.org\"\n  admin_ids = [\"spiffe://example.org/a\"]\n}\nserver {\n  data_dir = \"/d\"\n  admin_ids = [\"spiffe://example.org/b\"]\n  bind_port = 1\n  bind_port = 2\n}\nplugins {}\n",
    )
    .unwrap();
    assert_eq!(c.data_dir.to_str(), Some("/d"));
    assert_eq!(c.admin_ids.len(), 2);
    assert_eq!(c.bind_port, 2);
}

#[test]
fn durations_are_go_durations() {
    let ok: &[(&str, Duration)] = &[
        ("1h", Duration::from_secs(3600)),
        ("30s", Duration::from_secs(30)),
        ("1h30m", Duration::from_secs(5400)),
        ("1.5h", Duration::from_secs(5400)),
        ("90m", Duration::from_secs(5400)),
        ("500ms", Duration::from_millis(500)),
    ];
    for (text, want) in ok {
        let c = load(&server_conf(&format!("default_x509_svid_ttl = \"{text}\""))).unwrap();
        assert_eq!(c.default_x509_svid_ttl, *want, "{text}");
        assert_eq!(
            c.agent_ttl, *want,
            "agent_ttl follows default_x509_svid_ttl"
        );
    }
    let bad: &[(&str, &str)] = &[
        (
            "ca_ttl = \"1d\"",
            "could not parse default CA ttl \"1d\": time: unknown unit \"d\" in duration \"1d\"",
        ),
        (
            "default_jwt_svid_ttl = \"5\"",
            "could not parse default JWT SVID ttl \"5\": time: missing unit in duration \"5\"",
        ),
        (
            "agent_ttl = \"x\"",
            "could not parse agent ttl \"x\": time: invalid duration \"x\"",
        ),
        (
            "prune_attested_nodes_expired_for = \"1y\"",
            "could not parse prune_attested_nodes_expired_for: time: unknown unit \"y\" in duration \"1y\"",
        ),
        (
            "experimental { cache_reload_interval = \"soon\" }",
            "could not parse cache reload interval: time: invalid duration \"soon\"",
        ),
        (
            "experimental {\n event_timeout = \"1m\"\n sql_transaction_timeout = \"1m\"\n}",
            "both experimental sql_transaction_timeout and event_timeout set, only set event_timeout",
        ),
    ];
    for (line, want) in bad {
        let err = load(&server_conf(line)).unwrap_err();
        assert_eq!(err.to_string(), *want, "{line}");
    }
    let err = load(&server_conf("ca_ttl = \"1d\"")).unwrap_err();
    assert_eq!((err.key(), err.line()), (Some("ca_ttl"), Some(4)));
    // An empty duration means "unset", as in SPIRE.
    let c = load(&server_conf("ca_ttl = \"\"")).unwrap();
    assert_eq!(c.ca_ttl, Duration::from_secs(86400));
}

#[test]
fn ttl_warnings_are_spires() {
    let c = load(&server_conf("default_x509_svid_ttl = \"5h\"")).unwrap();
    assert_eq!(
        c.warnings[0].message,
        "default_x509_svid_ttl is too high for the configured ca_ttl value. SVIDs with shorter lifetimes may be issued. Please set default_x509_svid_ttl to 4h or less, or the ca_ttl to 30h or more, to guarantee the full default_x509_svid_ttl lifetime when CA rotations are scheduled."
    );
}

#[test]
fn validation_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "trust_domain = \"bad td\"",
            "could not parse trust_domain \"bad td\": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
        ),
        (
            "jwt_key_type = \"ed25519\"",
            "error parsing jwt_key_type: key type \"ed25519\" is unknown; must be one of [rsa-2048, rsa-4096, ec-p256, ec-p384]",
        ),
        (
            "federation {\n bundle_endpoint {\n acme {\n domain_name = \"x\"\n }\n }\n}",
            "federation.bundle_endpoint.acme.email must be configured",
        ),
        (
            "federation {\n federates_with \"td2\" {\n bundle_endpoint_profile \"https_web\" {}\n }\n}",
            "federation.federates_with[\"td2\"].bundle_endpoint_url must be configured",
        ),
        (
            "federation {\n federates_with \"td2\" {\n bundle_endpoint_url = \"https://x\"\n }\n}",
            "federation configuration for trust domain \"td2\": missing bundle endpoint configuration",
        ),
        (
            "federation {\n bundle_endpoint {\n profile \"https_web\" { acme { } }\n profile \"https_spiffe\" {}\n }\n}",
            "exactly one bundle endpoint profile is expected",
        ),
        (
            "experimental { named_pipe_name = \"x\" }",
            "invalid configuration: named_pipe_name is not supported in this platform; please use socket_path instead",
        ),
    ];
    for (line, want) in cases {
        let err = load(&server_conf(line)).unwrap_err();
        assert_eq!(err.to_string(), *want, "{line}");
    }
    let err = load("server {\n trust_domain = \"example.org\"\n}\nplugins {}").unwrap_err();
    assert_eq!(err.to_string(), "data_dir must be configured");
    assert!(matches!(err, ConfigError::MissingKey { ref key, .. } if key == "data_dir"));
}

#[test]
fn bundle_endpoint_profiles() {
    let c = load(&server_conf(
        "federation {\n bundle_endpoint {\n port = 8443\n }\n}",
    ))
    .unwrap();
    let be = c.federation.bundle_endpoint.unwrap();
    assert_eq!(be.profile, BundleEndpointProfile::HttpsSpiffe);
    assert_eq!(be.refresh_hint, Duration::from_secs(300));
    assert_eq!(be.address, None);
    assert!(
        c.warnings[0]
            .message
            .starts_with("Bundle endpoint is configured but has no profile")
    );

    let c = load(&server_conf(
        "federation {\n bundle_endpoint {\n profile \"https_web\" {\n acme {\n domain_name = \"d\"\n tos_accepted = true\n }\n }\n }\n}",
    ))
    .unwrap();
    let BundleEndpointProfile::HttpsWebAcme(acme) = c.federation.bundle_endpoint.unwrap().profile
    else {
        panic!()
    };
    assert_eq!(acme.directory_url, spire_config::LETS_ENCRYPT_DIRECTORY_URL);
    assert_eq!(acme.cache_dir.to_str(), Some("/tmp/data/bundle-acme"));
    assert!(acme.tos_accepted);
}

#[test]
fn env_expansion() {
    let env: HashMap<String, String> = HashMap::from([
        ("TD".to_owned(), "example.org".to_owned()),
        ("PORT".to_owned(), "9090".to_owned()),
    ]);
    let text = "server {\n trust_domain = \"$TD\"\n bind_port = ${PORT}\n data_dir = \"/d$UNSET\"\n jwt_issuer = \"a$$b\"\n}\nplugins {}";
    let c =
        load_server_config(text, Format::Auto, &ServerOverrides::default(), Some(&env)).unwrap();
    assert_eq!(c.trust_domain.name(), "example.org");
    assert_eq!(c.bind_port, 9090);
    assert_eq!(c.data_dir.to_str(), Some("/d"));
    assert_eq!(c.jwt_issuer.as_deref(), Some("a$b"));
    // A closure works too, and without -expandEnv nothing is expanded.
    let lookup = |k: &str| (k == "TD").then(|| "closure.org".to_owned());
    let c = load_server_config(
        "server {\n trust_domain = \"${TD}\"\n data_dir = \"/d\"\n}\nplugins {}",
        Format::Auto,
        &ServerOverrides::default(),
        Some(&lookup),
    )
    .unwrap();
    assert_eq!(c.trust_domain.name(), "closure.org");
    let err =
        load("server {\n trust_domain = \"$TD\"\n data_dir = \"/d\"\n}\nplugins {}").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("could not parse trust_domain \"$TD\"")
    );
}

#[test]
fn json_form() {
    let text = r#"{
  "server": {
    "trust_domain": "example.org",
    "data_dir": "/d",
    "bind_port": "9000",
    "ca_subject": {"country": ["US"], "organization": ["Org"]},
    "admin_ids": ["spiffe://example.org/a"],
    "audit_log_enabled": true
  },
  "plugins": {
    "DataStore": {"sql": {"plugin_data": {"database_type": "sqlite3"}}},
    "NodeAttestor": [{"join_token": {}}]
  },
  "telemetry": {"DogStatsd": [{"address": "a:1"}, {"address": "b:2"}], "MetricPrefix": "p"},
  "health_checks": {"listener_enabled": true, "bind_port": 8080}
}"#;
    let c = load(text).unwrap();
    assert_eq!(c.bind_port, 9000);
    assert_eq!(c.ca_subject.organization, vec!["Org"]);
    assert_eq!(c.admin_ids.len(), 1);
    assert!(c.audit_log_enabled);
    let names: Vec<(&str, &str)> = c
        .plugins
        .plugins
        .iter()
        .map(|p| (p.plugin_type.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("DataStore", "sql"), ("NodeAttestor", "join_token")]
    );
    let sql = c.plugins.find("DataStore", "sql").unwrap();
    // JSON plugin_data is printed back to HCL as SPIRE does (recorded with hashicorp/hcl).
    assert_eq!(sql.data.text().unwrap(), "\"database_type\" = \"sqlite3\"");
    assert_eq!(c.telemetry.dogstatsd.len(), 2);
    assert_eq!(c.health_checks.bind_port, "8080");

    // Unknown keys in JSON are reported with their lines.
    let err = load(
        "{\n \"server\": {\"trust_domain\": \"example.org\", \"data_dir\": \"/d\",\n \"bogus\": 1},\n \"plugins\": {}\n}",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown configuration detected: unknown configuration key \"bogus\" in section \"server\" at line 3"
    );
    // Explicit format.
    assert!(ServerFile::parse("server {}", Format::Json).is_err());
    assert!(ServerFile::parse("{\"server\": {}}", Format::Hcl).is_err());
}

#[test]
fn overrides_take_precedence_like_mergo() {
    let text = server_conf(
        "bind_address = \"10.0.0.1\"\nbind_port = 9000\nlog_level = \"WARN\"\nsocket_path = \"/file.sock\"",
    );
    let o = ServerOverrides {
        bind_address: Some("127.0.0.1".into()),
        server_port: Some(9100),
        socket_path: Some("/flag.sock".into()),
        data_dir: Some("/flag-data".into()),
        trust_domain: Some("flag.org".into()),
        log_level: Some("error".into()),
        log_format: Some("text".into()),
        log_file: Some("/flag.log".into()),
        log_source_location: Some(true),
    };
    let c = load_server_config(&text, Format::Auto, &o, None).unwrap();
    assert_eq!(c.bind_address, "127.0.0.1");
    assert_eq!(c.bind_port, 9100);
    assert_eq!(c.socket_path.to_str(), Some("/flag.sock"));
    assert_eq!(c.data_dir.to_str(), Some("/flag-data"));
    assert_eq!(c.trust_domain.name(), "flag.org");
    assert_eq!(c.log.level, LogLevel::Error);
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.log.source_location);

    // Zero values do not override (mergo), so the file wins, then the defaults.
    let zero = ServerOverrides {
        bind_address: Some(String::new()),
        server_port: Some(0),
        log_source_location: Some(false),
        ..Default::default()
    };
    let c = load_server_config(&text, Format::Auto, &zero, None).unwrap();
    assert_eq!(c.bind_address, "10.0.0.1");
    assert_eq!(c.bind_port, 9000);
    assert_eq!(c.log.level, LogLevel::Warn);
    let c = load_server_config(&server_conf("bind_port = 0"), Format::Auto, &zero, None).unwrap();
    assert_eq!(c.bind_port, 8081);

    // A flag can supply a required value missing from the file.
    let c = load_server_config(
        "server {\n data_dir = \"/d\"\n}\nplugins {}",
        Format::Auto,
        &ServerOverrides {
            trust_domain: Some("example.org".into()),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(c.trust_domain.name(), "example.org");
}

#[test]
fn unknown_keys_can_be_allowed() {
    let text = server_conf("bogus = 1");
    let file = ServerFile::parse(&text, Format::Auto).unwrap();
    assert_eq!(file.unknown_keys().len(), 1);
    let c = file
        .into_config_allowing_unknown(&ServerOverrides::default())
        .unwrap();
    assert_eq!(c.ignored_unknown_keys[0].key, "bogus");
    // Unknown keys in unchecked sections never fail.
    let c = load(&server_conf("experimental { whatever = 1 }")).unwrap();
    assert_eq!(c.ignored_unknown_keys[0].section, "experimental");
    assert_eq!(c.ignored_unknown_keys[0].line, 4);
}
