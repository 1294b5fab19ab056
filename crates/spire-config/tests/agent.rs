//! Agent configuration: defaults, the bootstrap trust rules, overrides.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::agent_conf;
use spiffe_core::KeyType;
use spire_config::{
    AgentConfig, AgentOverrides, ConfigError, Format, RebootstrapMode, TrustBundleFormat,
    TrustBundleSource, load_agent_config,
};

fn load(text: &str) -> Result<AgentConfig, ConfigError> {
    load_agent_config(text, Format::Auto, &AgentOverrides::default(), None)
}

#[test]
fn defaults_are_spires() {
    let c = load(&agent_conf("insecure_bootstrap = true")).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("."));
    assert_eq!(
        c.socket_path,
        PathBuf::from("/tmp/spire-agent/public/api.sock")
    );
    assert_eq!(c.admin_socket_path, None);
    assert_eq!(c.trust_domain.name(), "example.org");
    assert_eq!(c.server_address, "localhost");
    assert_eq!(c.server_port, 8081);
    assert_eq!(c.trust_bundle, TrustBundleSource::InsecureBootstrap);
    assert_eq!(c.trust_bundle_format, TrustBundleFormat::Pem);
    assert_eq!(c.join_token, None);
    assert!(c.retry_bootstrap);
    assert_eq!(c.rebootstrap_mode, RebootstrapMode::Never);
    assert_eq!(c.rebootstrap_delay, Duration::from_secs(600));
    assert_eq!(c.sds.default_svid_name, "default");
    assert_eq!(c.sds.default_bundle_name, "ROOTCA");
    assert_eq!(c.sds.default_all_bundles_name, "ALL");
    assert!(!c.sds.disable_spiffe_cert_validation);
    assert_eq!(c.workload_x509_svid_key_type, KeyType::EcP256);
    assert!(!c.allow_unauthenticated_verifiers);
    assert_eq!(c.availability_target, None);
    assert_eq!(c.x509_svid_cache_max_size, 1000);
    assert_eq!(c.jwt_svid_cache_max_size, 1000);
    assert_eq!(c.experimental.sync_interval, Duration::from_secs(5));
    assert!(c.experimental.use_sync_authorized_entries);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_agent_key_is_read() {
    let c = load(&agent_conf(
        r#"
  data_dir = "/var/lib/spire-agent"
  socket_path = "/run/spire/agent.sock"
  admin_socket_path = "/run/spire-admin/admin.sock"
  trust_bundle_url = "https://bundle.example.org/b.pem"
  trust_bundle_format = "spiffe"
  join_token = "abc"
  rebootstrap_mode = "always"
  rebootstrap_delay = "1m"
  log_level = "warn"
  sds {
    default_svid_name = "svid"
    default_bundle_name = "b"
    default_all_bundles_name = "all"
    disable_spiffe_cert_validation = true
  }
  workload_x509_svid_key_type = "RSA-2048"
  allow_unauthenticated_verifiers = true
  allowed_foreign_jwt_claims = ["c1", "c2"]
  authorized_delegates = ["spiffe://example.org/delegate"]
  availability_target = "48h"
  x509_svid_cache_max_size = "5000"
  jwt_svid_cache_max_size = 10
  profiling_enabled = true
  experimental {
    sync_interval = "10s"
    use_sync_authorized_entries = false
    require_pq_kem = true
  }
"#,
    ))
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/spire-agent"));
    assert_eq!(
        c.admin_socket_path,
        Some(PathBuf::from("/run/spire-admin/admin.sock"))
    );
    assert_eq!(
        c.trust_bundle,
        TrustBundleSource::Url {
            url: "https://bundle.example.org/b.pem".into(),
            unix_socket: None
        }
    );
    assert_eq!(c.trust_bundle_format, TrustBundleFormat::Spiffe);
    assert_eq!(c.join_token.as_deref(), Some("abc"));
    assert_eq!(c.rebootstrap_mode, RebootstrapMode::Always);
    assert_eq!(c.rebootstrap_delay, Duration::from_secs(60));
    assert_eq!(c.sds.default_svid_name, "svid");
    assert!(c.sds.disable_spiffe_cert_validation);
    assert_eq!(c.workload_x509_svid_key_type, KeyType::Rsa2048);
    assert!(c.allow_unauthenticated_verifiers);
    assert_eq!(c.allowed_foreign_jwt_claims, vec!["c1", "c2"]);
    assert_eq!(
        c.authorized_delegates[0].as_str(),
        "spiffe://example.org/delegate"
    );
    assert_eq!(c.availability_target, Some(Duration::from_secs(48 * 3600)));
    assert_eq!(c.x509_svid_cache_max_size, 5000);
    assert_eq!(c.jwt_svid_cache_max_size, 10);
    assert!(c.profiling.enabled);
    assert_eq!(c.experimental.sync_interval, Duration::from_secs(10));
    assert!(!c.experimental.use_sync_authorized_entries);
    assert!(c.experimental.require_pq_kem);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("use_sync_authorized_entries"))
    );
}

#[test]
fn exactly_one_bootstrap_trust_source() {
    // (settings, Ok(source kind) or SPIRE's message)
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("trust_bundle_path = \"/b.pem\"", Ok("path")),
        ("trust_bundle_url = \"https://x/b\"", Ok("url")),
        ("insecure_bootstrap = true", Ok("insecure")),
        (
            "insecure_bootstrap = false\ntrust_bundle_path = \"/b\"",
            Ok("path"),
        ),
        (
            "",
            Err(
                "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set",
            ),
        ),
        (
            "insecure_bootstrap = false",
            Err(
                "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set",
            ),
        ),
        (
            "trust_bundle_path = \"/b\"\ntrust_bundle_url = \"https://x\"",
            Err("only one of trust_bundle_url or trust_bundle_path can be specified, not both"),
        ),
        (
            "insecure_bootstrap = true\ntrust_bundle_url = \"https://x\"",
            Err("only one of insecure_bootstrap or trust_bundle_url can be specified, not both"),
        ),
        (
            "insecure_bootstrap = true\ntrust_bundle_path = \"/b\"",
            Err("only one of insecure_bootstrap or trust_bundle_path can be specified, not both"),
        ),
        (
            "insecure_bootstrap = true\ntrust_bundle_path = \"/b\"\ntrust_bundle_url = \"https://x\"",
            Err(
                "only one of insecure_bootstrap, trust_bundle_url, or trust_bundle_path can be specified, not the three options",
            ),
        ),
        (
            "trust_bundle_url = \"ftp://x\"",
            Err("trust bundle URL must start with https://"),
        ),
        (
            "trust_bundle_url = \"http://localhost/b\"\ntrust_bundle_unix_socket = \"/run/b.sock\"",
            Ok("url"),
        ),
        (
            "trust_bundle_url = \"http://localhost/b?spire-x=1\"\ntrust_bundle_unix_socket = \"/s\"",
            Err("trust_bundle_url query params can not start with spire-"),
        ),
        (
            "trust_bundle_path = \"/b\"\ntrust_bundle_unix_socket = \"/s\"",
            Err("if trust_bundle_unix_socket is specified, so must be trust_bundle_url"),
        ),
        (
            "trust_bundle_url = \"https://x\"\ninsecure_bootstrap = true\nrebootstrap_mode = \"auto\"",
            Err("only one of insecure_bootstrap or trust_bundle_url can be specified, not both"),
        ),
        (
            "insecure_bootstrap = true\nrebootstrap_mode = \"auto\"",
            Err("insecure_bootstrap option can not be used with rebootstrapping"),
        ),
    ];
    for (settings, want) in cases {
        let got = load(&agent_conf(settings));
        match (got, want) {
            (Ok(c), Ok(kind)) => {
                let k = match c.trust_bundle {
                    TrustBundleSource::Path(_) => "path",
                    TrustBundleSource::Url { .. } => "url",
                    TrustBundleSource::InsecureBootstrap => "insecure",
                };
                assert_eq!(k, *kind, "{settings}");
            }
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), *msg, "{settings}"),
            (got, want) => panic!("{settings}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn join_token_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "  tok-123\n").unwrap();
    let c = load(&agent_conf(&format!(
        "insecure_bootstrap = true\njoin_token_file = \"{}\"",
        path.display()
    )))
    .unwrap();
    assert_eq!(c.join_token.as_deref(), Some("tok-123"));
    std::fs::write(&path, " \n").unwrap();
    let err = load(&agent_conf(&format!(
        "insecure_bootstrap = true\njoin_token_file = \"{}\"",
        path.display()
    )))
    .unwrap_err();
    assert_eq!(err.to_string(), "join token file is empty");
    let err = load(&agent_conf(
        "insecure_bootstrap = true\njoin_token = \"a\"\njoin_token_file = \"/x\"",
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "only one of join_token or join_token_file can be specified, not both"
    );
}

#[test]
fn overrides_take_precedence_like_mergo() {
    let text = agent_conf(
        "trust_bundle_path = \"/file.pem\"\ndata_dir = \"/file-data\"\nretry_bootstrap = true\nlog_level = \"debug\"",
    );
    let o = AgentOverrides {
        data_dir: Some("/flag-data".into()),
        server_address: Some("spire.example.org".into()),
        server_port: Some(9443),
        trust_domain: Some("flag.org".into()),
        trust_bundle: Some("/flag.pem".into()),
        trust_bundle_format: Some("spiffe".into()),
        socket_path: Some("/flag.sock".into()),
        join_token: Some("flagtoken".into()),
        retry_bootstrap: Some(false),
        log_level: Some("error".into()),
        allow_unauthenticated_verifiers: Some(true),
        ..Default::default()
    };
    let c = load_agent_config(&text, Format::Auto, &o, None).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/flag-data"));
    assert_eq!(c.server_address, "spire.example.org");
    assert_eq!(c.server_port, 9443);
    assert_eq!(c.trust_domain.name(), "flag.org");
    assert_eq!(c.trust_bundle, TrustBundleSource::Path("/flag.pem".into()));
    assert_eq!(c.trust_bundle_format, TrustBundleFormat::Spiffe);
    assert_eq!(c.socket_path, PathBuf::from("/flag.sock"));
    assert_eq!(c.join_token.as_deref(), Some("flagtoken"));
    assert!(
        !c.retry_bootstrap,
        "-retryBootstrap=false given explicitly wins"
    );
    assert_eq!(c.log.level, spire_config::LogLevel::Error);
    assert!(c.allow_unauthenticated_verifiers);

    // A -trustBundleUrl flag next to a file's trust_bundle_path is the "both" error, as in
    // SPIRE (the merge keeps both).
    let o = AgentOverrides {
        trust_bundle_url: Some("https://x".into()),
        ..Default::default()
    };
    let err = load_agent_config(&text, Format::Auto, &o, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "only one of trust_bundle_url or trust_bundle_path can be specified, not both"
    );

    // -insecureBootstrap=false cannot turn off the file's insecure_bootstrap (mergo).
    let o = AgentOverrides {
        insecure_bootstrap: Some(false),
        ..Default::default()
    };
    let c = load_agent_config(
        &agent_conf("insecure_bootstrap = true"),
        Format::Auto,
        &o,
        None,
    )
    .unwrap();
    assert_eq!(c.trust_bundle, TrustBundleSource::InsecureBootstrap);

    // -rebootstrapMode / -rebootstrapDelay.
    let o = AgentOverrides {
        rebootstrap_mode: Some("auto".into()),
        rebootstrap_delay: Some("2m".into()),
        ..Default::default()
    };
    let c = load_agent_config(
        &agent_conf("trust_bundle_path = \"/b\""),
        Format::Auto,
        &o,
        None,
    )
    .unwrap();
    assert_eq!(c.rebootstrap_mode, RebootstrapMode::Auto);
    assert_eq!(c.rebootstrap_delay, Duration::from_secs(120));
}

#[test]
fn agent_validation_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "x509_svid_cache_max_size = -1",
            "x509_svid_cache_max_size should not be negative",
        ),
        (
            "rebootstrap_delay = \"soon\"",
            "error parsing rebootstrap delay duration: time: invalid duration \"soon\"",
        ),
        (
            "availability_target = \"x\"",
            "unable to parse availability_target: time: invalid duration \"x\"",
        ),
        (
            "experimental { admin_named_pipe_name = \"x\" }",
            "invalid configuration: admin_named_pipe_name is not supported in this platform; please use admin_socket_path instead",
        ),
    ];
    for (line, want) in cases {
        let err = load(&agent_conf(&format!("insecure_bootstrap = true\n{line}"))).unwrap_err();
        assert_eq!(err.to_string(), *want, "{line}");
    }
    let err = load("agent {\n server_address = \"x\"\n}\nplugins {}").unwrap_err();
    assert_eq!(err.to_string(), "server_port must be configured");
    let err =
        load("agent {\n server_address = \"x\"\n server_port = 1\n}\nplugins {}").unwrap_err();
    assert_eq!(err.to_string(), "trust_domain must be configured");
}

#[test]
fn sds_names_keep_spires_defaults_unless_given() {
    // SPIRE fills the defaults before decoding: a block naming one key keeps the others,
    // and an explicit empty string stays empty.
    let c = load(&agent_conf(
        "  insecure_bootstrap = true\n  sds {\n    default_bundle_name = \"\"\n    disable_spiffe_cert_validation = true\n  }\n",
    ))
    .unwrap();
    assert_eq!(c.sds.default_svid_name, "default");
    assert_eq!(c.sds.default_bundle_name, "");
    assert_eq!(c.sds.default_all_bundles_name, "ALL");
    assert!(c.sds.disable_spiffe_cert_validation);
}
