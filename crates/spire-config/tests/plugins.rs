//! The plugins section, `plugin_data` text and decoding for built-in plugins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use serde::Deserialize;
use spire_config::{
    ConfigError, Format, LoadedPluginData, PluginData, PluginsConfig, ServerOverrides, Spanned,
    load_server_config,
};

fn plugins(text: &str) -> PluginsConfig {
    PluginsConfig::from_config_text(text, Format::Auto).unwrap()
}

fn inline(data: &PluginData) -> &LoadedPluginData {
    match data {
        PluginData::Inline(d) => d,
        other => panic!("{other:?}"),
    }
}

const TRICKY: &str = r#"plugins {
  NodeAttestor "k8s_psat" {
    plugin_data {
      # lead comment
      clusters = {
        "foo" = {
          service_account_allow_list = ["ns:sa", "ns2:sa2"] // line comment
          audience = ["spire-server"]
          enable_api_server_queries = true
        }
        bar {
          x = 1
        }
      }
      a = 1
      bb = 2.5
      ccc = "three"

      multi = [
        "one", # c1
        "two",
      ]
      doc = <<EOF
hello
  world
EOF
      empty {}
      other {}
      num = 0x10
      str_num = "42"
    }
  }
  KeyManager "disk" {
    plugin_data = { directory = "./.data", nested = { k = "v" } }
  }
  "NodeAttestor" {
    "x509pop" {
      plugin_data {
        ca_bundle_path = "/x"
      }
    }
  }
}
"#;

/// The text SPIRE hands to plugins, recorded by printing the same `plugin_data` nodes with
/// hashicorp/hcl v1.0.1-vault-7's `printer.DefaultConfig` (SPIRE's dependency).
#[test]
fn plugin_data_text_is_what_spire_prints() {
    let p = plugins(TRICKY);
    let order: Vec<(&str, &str)> = p
        .plugins
        .iter()
        .map(|c| (c.plugin_type.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            ("NodeAttestor", "k8s_psat"),
            ("KeyManager", "disk"),
            ("NodeAttestor", "x509pop"),
        ]
    );
    let psat = inline(&p.plugins[0].data);
    assert_eq!(
        psat.text(),
        r#"# lead comment
clusters = {
  "foo" = {
    service_account_allow_list = ["ns:sa", "ns2:sa2"] // line comment
    audience                   = ["spire-server"]
    enable_api_server_queries  = true
  }

  bar {
    x = 1
  }
}

a = 1

bb = 2.5

ccc = "three"

multi = [
  "one", # c1
  "two",
]

doc = <<EOF
hello
  world
EOF

empty {}
other {}

num = 0x10

str_num = "42""#
    );
    assert_eq!(
        inline(&p.plugins[1].data).text(),
        "directory = \"./.data\"\n\nnested = {\n  k = \"v\"\n}"
    );
    assert_eq!(inline(&p.plugins[2].data).text(), "ca_bundle_path = \"/x\"");

    // hcl's interface{} shapes (also recorded from Go): nested blocks are lists of maps.
    assert_eq!(
        psat.to_json().unwrap(),
        serde_json::json!({
            "a": 1, "bb": 2.5, "ccc": "three",
            "clusters": [{"bar": [{"x": 1}], "foo": [{
                "audience": ["spire-server"],
                "enable_api_server_queries": true,
                "service_account_allow_list": ["ns:sa", "ns2:sa2"]}]}],
            "doc": "hello\n  world\n", "empty": [{}], "multi": ["one", "two"],
            "num": 16, "other": [{}], "str_num": "42"
        })
    );
}

#[test]
fn plugin_data_text_round_trips() {
    let p = plugins(TRICKY);
    for plugin in &p.plugins {
        let d = inline(&plugin.data);
        let reparsed = LoadedPluginData::parse(d.text()).unwrap();
        assert_eq!(reparsed.text(), d.text());
        assert_eq!(reparsed.to_json().unwrap(), d.to_json().unwrap());
    }
}

#[test]
fn block_and_assignment_forms_are_equivalent() {
    let a = plugins(
        "plugins {\n  KeyManager \"disk\" {\n    plugin_data { directory = \"/d\" }\n  }\n}",
    );
    let b = plugins(
        "plugins {\n  KeyManager \"disk\" {\n    plugin_data = { directory = \"/d\" }\n  }\n}",
    );
    assert_eq!(
        inline(&a.plugins[0].data).to_json().unwrap(),
        inline(&b.plugins[0].data).to_json().unwrap()
    );
    assert_eq!(inline(&a.plugins[0].data).text(), "directory = \"/d\"");
    assert_eq!(inline(&b.plugins[0].data).text(), "directory = \"/d\"");
}

#[test]
fn plugin_fields() {
    let p = plugins(
        r#"plugins {
  NodeAttestor "ext" {
    plugin_cmd = "/opt/plugin"
    plugin_args = ["-v", "--x"]
    plugin_checksum = "abcd"
    enabled = false
  }
  KeyManager "memory" {
    plugin_data {}
  }
}"#,
    );
    let ext = p.find("NodeAttestor", "ext").unwrap();
    assert!(ext.is_external());
    assert_eq!(ext.plugin_cmd.as_deref(), Some("/opt/plugin"));
    assert_eq!(ext.plugin_args, vec!["-v", "--x"]);
    assert_eq!(ext.plugin_checksum.as_deref(), Some("abcd"));
    assert!(!ext.enabled);
    assert_eq!(ext.data, PluginData::None);
    let mem = p.find("KeyManager", "memory").unwrap();
    assert!(!mem.is_external() && mem.enabled);
    // An empty plugin_data gives no data at all, as in SPIRE.
    assert_eq!(mem.data, PluginData::None);
    assert_eq!(p.of_type("KeyManager").count(), 1);
}

#[test]
fn plugin_data_file_is_read_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.conf");
    std::fs::write(&path, "directory = \"/first\"\n").unwrap();
    let p = plugins(&format!(
        "plugins {{\n  KeyManager \"disk\" {{\n    plugin_data_file = \"{}\"\n  }}\n}}",
        path.display()
    ));
    let data = &p.plugins[0].data;
    assert!(data.is_dynamic());
    assert_eq!(*data, PluginData::File(path.clone()));
    let loaded = data.load().unwrap().unwrap();
    assert_eq!(loaded.text(), "directory = \"/first\"\n");
    #[derive(Deserialize)]
    struct Disk {
        directory: String,
    }
    assert_eq!(loaded.decode::<Disk>().unwrap().directory, "/first");
    // Re-read on every load (SIGUSR1 reconfiguration).
    std::fs::write(&path, "{\"directory\": \"/second\"}").unwrap();
    let loaded = data.load().unwrap().unwrap();
    assert_eq!(loaded.decode::<Disk>().unwrap().directory, "/second");
    std::fs::remove_file(&path).unwrap();
    let err = data.load().unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with("no such file or directory"),
        "{err}"
    );
}

#[test]
fn plugin_data_and_file_together_fail() {
    let err = load_server_config(
        "server {\n trust_domain = \"example.org\"\n data_dir = \"/d\"\n}\nplugins {\n  KeyManager \"disk\" {\n    plugin_data { directory = \"/d\" }\n    plugin_data_file = \"/x\"\n  }\n}",
        Format::Auto,
        &ServerOverrides::default(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to create plugin config for \"KeyManager\"/\"disk\": only one of [plugin_data, plugin_data_file] can be used"
    );
    assert_eq!(err.line(), Some(6));
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(default)]
struct Cluster {
    service_account_allow_list: Vec<String>,
    use_token_review_api_validation: bool,
    audience: Vec<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            service_account_allow_list: Vec::new(),
            use_token_review_api_validation: false,
            audience: vec!["spire-server".into()],
        }
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
struct PsatConfig {
    clusters: BTreeMap<String, Cluster>,
    port: u16,
    ttl: String,
    names: Vec<String>,
    mode: Option<Mode>,
    token: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Strict,
    Lenient,
}

#[test]
fn built_in_plugins_decode_with_hcl_rules() {
    let p = plugins(
        r#"plugins {
  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        "prod" = {
          service_account_allow_list = ["spire:spire-agent"]
          use_token_review_api_validation = true
        }
        "dev" = {
          service_account_allow_list = ["a:b"]
          audience = ["x"]
        }
      }
      port = "8443"
      ttl = 30
      names = ["a"]
      names = ["b"]
      mode = "strict"
      token = "t"
    }
  }
}"#,
    );
    let d = inline(&p.plugins[0].data);
    let cfg: PsatConfig = d.decode().unwrap();
    assert_eq!(cfg.port, 8443);
    assert_eq!(cfg.ttl, "30");
    assert_eq!(cfg.names, vec!["a", "b"]);
    assert_eq!(cfg.mode, Some(Mode::Strict));
    assert_eq!(cfg.clusters.len(), 2);
    assert!(cfg.clusters["prod"].use_token_review_api_validation);
    assert_eq!(cfg.clusters["prod"].audience, vec!["spire-server"]);
    assert_eq!(cfg.clusters["dev"].audience, vec!["x"]);
    let token = cfg.token.unwrap();
    assert_eq!((token.value.as_str(), token.line), ("t", 19));
}

#[test]
fn plugin_decode_errors_and_unknown_keys() {
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    #[allow(dead_code)]
    struct Disk {
        directory: String,
        port: u16,
        enabled: bool,
    }
    let d = LoadedPluginData::parse("directory = \"/d\"\nextra = 1\nnested { x = 1 }\n").unwrap();
    let err = d.decode::<Disk>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown configuration detected: unknown configuration key \"extra\" in section \"plugin_data\" at line 2; unknown configuration key \"nested\" in section \"plugin_data\" at line 3"
    );
    let (cfg, unknown) = d.decode_lenient::<Disk>().unwrap();
    assert_eq!(cfg.directory, "/d");
    assert_eq!(unknown.len(), 2);

    let cases: &[(&str, &str)] = &[
        (
            "enabled = \"yes\"",
            "unable to decode configuration: At 1:11: root.enabled: unknown type *ast.LiteralType",
        ),
        (
            "port = 70000",
            "unable to decode configuration: At 1:8: root.port: invalid value: integer `70000`, expected u16",
        ),
        (
            "port = \"x\"",
            "unable to decode configuration: At 1:8: root.port: strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "directory = [1]",
            "unable to decode configuration: At 1:13: root.directory: unknown type for string *ast.ListType",
        ),
    ];
    for (text, want) in cases {
        let err = LoadedPluginData::parse(text)
            .unwrap()
            .decode::<Disk>()
            .unwrap_err();
        assert_eq!(err.to_string(), *want, "{text}");
        assert_eq!(err.line(), Some(1));
    }

    // A required field (no serde default) names the key.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Required {
        directory: String,
    }
    let err = LoadedPluginData::parse("other = 1")
        .unwrap()
        .decode_lenient::<Required>()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to decode configuration: At 1:1: root: missing field `directory`"
    );
}

#[test]
fn json_plugin_data_decodes_the_same() {
    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Disk {
        directory: String,
        port: i64,
        list: Vec<String>,
    }
    let hcl = LoadedPluginData::parse("directory = \"/d\"\nport = \"1\"\nlist = [\"a\"]").unwrap();
    let json =
        LoadedPluginData::parse("{\"directory\": \"/d\", \"port\": 1, \"list\": [\"a\"]}").unwrap();
    assert_eq!(
        hcl.decode::<Disk>().unwrap(),
        json.decode::<Disk>().unwrap()
    );
}
