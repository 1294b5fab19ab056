//! Every configuration file shipped with SPIRE v1.13.3 (`conf/server`, `conf/agent`,
//! `test/fixture/config`), read from the Go module cache at test time.
//!
//! The expected results of a full load were recorded by running the reference binaries
//! (`spire-server validate -config F` / `spire-agent validate -config F`, SPIRE 1.13.3) on
//! the same files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{conf_files, file_name, spire_module_dir};
use spire_config::{
    AgentFile, AgentOverrides, ConfigError, Format, PluginData, PluginsConfig, ServerFile,
    ServerOverrides, UnknownKey, read_config_file,
};

const NAMED_PIPE: &str = "invalid configuration: named_pipe_name is not supported in this platform; please use socket_path instead";

/// What `spire-server validate` printed after "SPIRE server configuration file is invalid: "
/// (`None`: "SPIRE server configuration file is valid.").
fn server_reference(name: &str) -> Option<&'static str> {
    match name {
        "server.conf" | "server_container.conf" | "server_full.conf" => None,
        "server_windows.conf" => Some(NAMED_PIPE),
        n if n.starts_with("server_and_agent_bad") || n.starts_with("server_bad") => {
            Some("trust_domain must be configured")
        }
        n if n.starts_with("server_good") || n.starts_with("server_run") => {
            Some("data_dir must be configured")
        }
        other => panic!("no reference result recorded for {other}"),
    }
}

/// The same for `spire-agent validate`.
fn agent_reference(name: &str) -> Option<&'static str> {
    match name {
        "agent.conf" | "agent_container.conf" | "agent_full.conf" | "agent_run_windows.conf" => {
            None
        }
        "agent_windows.conf" | "agent_good_windows.conf" => Some(NAMED_PIPE),
        "agent_good_posix.conf" => Some("unknown configuration detected"),
        "agent_run_posix.conf" => Some(
            "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set",
        ),
        n if n.starts_with("server_and_agent") || n.starts_with("agent_") => {
            Some("plugins section must be configured")
        }
        other => panic!("no reference result recorded for {other}"),
    }
}

fn check_full_load<T>(path: &Path, result: Result<T, ConfigError>, want: Option<&str>) {
    match (result, want) {
        (Ok(_), None) => {}
        (Ok(_), Some(want)) => panic!("{}: loaded, SPIRE says {want:?}", path.display()),
        (Err(e), None) => panic!("{}: SPIRE loads it, we say {e}", path.display()),
        (Err(e), Some(want)) => {
            let got = e.to_string();
            if want == "unknown configuration detected" {
                assert!(got.starts_with(want), "{}: {got}", path.display());
            } else {
                assert_eq!(got, want, "{}", path.display());
            }
        }
    }
}

fn server_files() -> Vec<std::path::PathBuf> {
    let mut files = conf_files("conf/server");
    files.extend(
        conf_files("test/fixture/config")
            .into_iter()
            .filter(|p| file_name(p).starts_with("server_")),
    );
    files
}

fn agent_files() -> Vec<std::path::PathBuf> {
    let mut files = conf_files("conf/agent");
    files.extend(conf_files("test/fixture/config").into_iter().filter(|p| {
        let n = file_name(p);
        n.starts_with("agent_") || n.starts_with("server_and_agent_")
    }));
    files
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn module_cache_has_the_files() {
    assert_eq!(conf_files("conf/server").len(), 4);
    assert_eq!(conf_files("conf/agent").len(), 4);
    assert_eq!(conf_files("test/fixture/config").len(), 29);
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn server_files_parse_and_load_like_spire() {
    let files = server_files();
    assert!(files.len() >= 25);
    for path in files {
        let name = file_name(&path);
        let file =
            ServerFile::read(&path, None).unwrap_or_else(|e| panic!("{name} should parse: {e}"));
        if !name.contains("_bad_") {
            assert!(
                file.check_unknown_keys().is_ok(),
                "{name}: {:?}",
                file.unknown_keys()
            );
        }
        let loaded = file.into_config(&ServerOverrides::default());
        check_full_load(&path, loaded, server_reference(&name));
    }
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn agent_files_parse_and_load_like_spire() {
    let files = agent_files();
    assert!(files.len() >= 18);
    for path in files {
        let name = file_name(&path);
        let file =
            AgentFile::read(&path, None).unwrap_or_else(|e| panic!("{name} should parse: {e}"));
        // agent_good_{posix,windows}.conf set bind_address and bind_port, which SPIRE 1.13
        // reports as unknown agent keys (the reference binary rejects agent_good_posix.conf).
        if !name.contains("_bad_") && !name.starts_with("agent_good_") {
            assert!(
                file.check_unknown_keys().is_ok(),
                "{name}: {:?}",
                file.unknown_keys()
            );
        }
        let loaded = file.into_config(&AgentOverrides::default());
        check_full_load(&path, loaded, agent_reference(&name));
    }
}

fn keys_by_section(keys: &[UnknownKey]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| (k.section.clone(), k.key.clone()))
        .collect()
}

fn pairs(section: &str, keys: &[&str]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| (section.to_owned(), (*k).to_owned()))
        .collect()
}

/// The sections and keys SPIRE's own `TestWarnOnUnknownConfig` expects (server and agent).
fn bad_fixture_expectations() -> HashMap<&'static str, Vec<(String, String)>> {
    let two = ["unknown_option1", "unknown_option2"];
    let four = [
        "unknown_option1",
        "unknown_option2",
        "unknown_option3",
        "unknown_option4",
    ];
    HashMap::from([
        (
            "server_and_agent_bad_root_block.conf",
            pairs("top-level", &two),
        ),
        ("server_bad_server_block.conf", pairs("server", &two)),
        (
            "server_bad_nested_ca_subject_block.conf",
            pairs("ca_subject", &two),
        ),
        ("server_bad_ratelimit_block.conf", pairs("ratelimit", &two)),
        (
            "server_bad_nested_bundle_endpoint_block.conf",
            pairs("bundle endpoint", &two),
        ),
        (
            "server_bad_nested_bundle_endpoint_acme_block.conf",
            pairs("bundle endpoint ACME", &two),
        ),
        (
            "server_and_agent_bad_nested_Prometheus_block.conf",
            pairs("Prometheus", &two),
        ),
        (
            "server_and_agent_bad_nested_DogStatsd_block.conf",
            pairs("DogStatsd", &four),
        ),
        (
            "server_and_agent_bad_nested_Statsd_block.conf",
            pairs("Statsd", &four),
        ),
        (
            "server_and_agent_bad_nested_M3_block.conf",
            pairs("M3", &four),
        ),
        (
            "server_and_agent_bad_nested_InMem_block.conf",
            pairs("InMem", &two),
        ),
        (
            "server_and_agent_bad_nested_health_checks_block.conf",
            pairs("health check", &two),
        ),
        ("agent_bad_agent_block.conf", pairs("agent", &two)),
    ])
}

/// Bad fixtures whose unknown keys SPIRE 1.13 does not report (detection is disabled in
/// `checkForUnknownConfig`, spiffe/spire#1101): they load, and we list the keys as ignored.
fn ignored_fixture_expectations() -> HashMap<&'static str, Vec<(String, String)>> {
    let two = ["unknown_option1", "unknown_option2"];
    let mut fw = pairs("federates_with \"test1\"", &two);
    fw.extend(pairs("federates_with \"test2\"", &two));
    HashMap::from([
        (
            "server_bad_nested_experimental_block.conf",
            pairs("experimental", &two),
        ),
        (
            "server_bad_nested_federation_block.conf",
            pairs("federation", &two),
        ),
        ("server_bad_nested_federates_with_block.conf", fw),
        (
            "server_and_agent_bad_telemetry_block.conf",
            pairs("telemetry", &two),
        ),
    ])
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn bad_fixtures_name_the_unknown_keys_and_sections() {
    let expected = bad_fixture_expectations();
    let ignored = ignored_fixture_expectations();
    let mut seen = 0;
    for path in conf_files("test/fixture/config") {
        let name = file_name(&path);
        if !name.contains("_bad_") {
            continue;
        }
        seen += 1;
        let mut results = Vec::new();
        if name.starts_with("server_") {
            let f = ServerFile::read(&path, None).unwrap();
            results.push((
                f.check_unknown_keys(),
                f.unknown_keys().to_vec(),
                f.ignored_unknown_keys().to_vec(),
            ));
        }
        if name.starts_with("agent_") || name.starts_with("server_and_agent_") {
            let f = AgentFile::read(&path, None).unwrap();
            results.push((
                f.check_unknown_keys(),
                f.unknown_keys().to_vec(),
                f.ignored_unknown_keys().to_vec(),
            ));
        }
        for (check, unknown, ignored_keys) in results {
            if let Some(want) = expected.get(name.as_str()) {
                assert_eq!(&keys_by_section(&unknown), want, "{name}");
                let err = check.expect_err(&name);
                let msg = err.to_string();
                assert!(msg.starts_with("unknown configuration detected: "), "{msg}");
                for (section, key) in want {
                    assert!(
                        msg.contains(&format!(
                            "unknown configuration key \"{key}\" in section \"{section}\" at line "
                        )),
                        "{name}: {msg}"
                    );
                }
                assert!(unknown.iter().all(|k| k.line > 0));
            } else if let Some(want) = ignored.get(name.as_str()) {
                assert!(check.is_ok(), "{name}: SPIRE accepts it");
                assert_eq!(&keys_by_section(&ignored_keys), want, "{name}");
            } else {
                panic!("unexpected bad fixture {name}");
            }
        }
    }
    assert_eq!(seen, 17);
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn unknown_key_lines_point_at_the_keys() {
    let path = spire_module_dir()
        .join("test/fixture/config/server_and_agent_bad_nested_DogStatsd_block.conf");
    let f = ServerFile::read(&path, None).unwrap();
    let lines: Vec<(String, usize, usize)> = f
        .unknown_keys()
        .iter()
        .map(|k| (k.key.clone(), k.line, k.column))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("unknown_option1".to_owned(), 4, 13),
            ("unknown_option2".to_owned(), 5, 13),
            ("unknown_option3".to_owned(), 8, 13),
            ("unknown_option4".to_owned(), 9, 13),
        ]
    );
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn templated_fixtures_expand_the_environment() {
    let env: HashMap<String, String> = HashMap::from([(
        "TEST_DATA_TRUST_DOMAIN".to_owned(),
        "example.org".to_owned(),
    )]);
    for name in ["server_good_templated.conf", "agent_good_templated.conf"] {
        let path = spire_module_dir().join("test/fixture/config").join(name);
        let text = read_config_file(&path, Some(&env)).unwrap();
        assert!(text.contains("trust_domain = \"example.org\""), "{text}");
        let raw = read_config_file(&path, None).unwrap();
        assert!(raw.contains("$TEST_DATA_TRUST_DOMAIN"));
    }
    let path = spire_module_dir().join("test/fixture/config/server_good_templated.conf");
    let cfg = ServerFile::read(&path, Some(&env))
        .unwrap()
        .into_config(&ServerOverrides {
            data_dir: Some("/tmp/d".into()),
            ..Default::default()
        });
    // The file has no plugins section.
    assert_eq!(
        cfg.unwrap_err().to_string(),
        "plugins section must be configured"
    );
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn good_fixture_plugins_are_read_in_order() {
    let path = spire_module_dir().join("test/fixture/config/server_good_posix.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let plugins = PluginsConfig::from_config_text(&text, Format::Auto).unwrap();
    let names: Vec<(&str, &str, bool)> = plugins
        .plugins
        .iter()
        .map(|p| (p.plugin_type.as_str(), p.name.as_str(), p.enabled))
        .collect();
    assert_eq!(
        names,
        vec![
            ("plugin_type_server", "plugin_name_server", true),
            ("plugin_type_server", "plugin_disabled", false),
            ("plugin_type_server", "plugin_enabled", true),
        ]
    );
    let first = &plugins.plugins[0];
    assert_eq!(first.plugin_cmd.as_deref(), Some("./pluginServerCmd"));
    assert_eq!(
        first.plugin_checksum.as_deref(),
        Some("pluginServerChecksum")
    );
    match &first.data {
        PluginData::Inline(d) => {
            assert_eq!(d.text(), "join_token = \"PLUGIN-SERVER-NOT-A-SECRET\"")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        plugins.plugins[2].data,
        PluginData::File("plugin.conf".into())
    );
}

#[test]
#[ignore = "needs SPIRE 1.13.3's module in the Go module cache; scripts/test.sh runs it"]
fn full_server_conf_values() {
    let path = spire_module_dir().join("conf/server/server_full.conf");
    let cfg = ServerFile::read(&path, None)
        .unwrap()
        .into_config(&ServerOverrides::default())
        .unwrap();
    assert_eq!(cfg.trust_domain.name(), "example.org");
    assert_eq!(cfg.bind_port, 8081);
    assert!(cfg.plugins.find("DataStore", "sql").is_some());
    // server_full.conf's plugin_data is printed back to text exactly as SPIRE prints it
    // (recorded with hashicorp/hcl's printer).
    let sql = cfg.plugins.find("DataStore", "sql").unwrap();
    let PluginData::Inline(d) = &sql.data else {
        panic!("{:?}", sql.data)
    };
    assert_eq!(
        d.text(),
        "# database_type: database type, <sqlite3|postgres|mysql>\ndatabase_type = \"sqlite3\"\n\n# connection_string: database specific connection string. The format\n# depends on the value specified for database_type.\nconnection_string = \"./.data/datastore.sqlite3\""
    );
}
