//! The `plugins { ... }` section (SPIRE's `pkg/common/catalog/config.go`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::decode::{DecodeCtx, DecodeError, Parent, RawNode, decode_nodes};
use crate::error::{ConfigError, UnknownKey};
use crate::hcl::ast::{Node, ObjectList};
use crate::hcl::printer::print_node;
use crate::hcl::{self, Format};

/// All configured plugins, in the order they appear in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginsConfig {
    /// The plugins, in file order.
    pub plugins: Vec<PluginConfig>,
}

impl PluginsConfig {
    /// The plugin of this type and name.
    pub fn find(&self, plugin_type: &str, name: &str) -> Option<&PluginConfig> {
        self.plugins
            .iter()
            .find(|p| p.plugin_type == plugin_type && p.name == name)
    }

    /// The plugins of one type, in file order.
    pub fn of_type<'a>(&'a self, plugin_type: &'a str) -> impl Iterator<Item = &'a PluginConfig> {
        self.plugins
            .iter()
            .filter(move |p| p.plugin_type == plugin_type)
    }

    /// Reads just the `plugins { ... }` section of a server or agent configuration text
    /// (nothing else is validated). `Ok` with no plugins when the section is absent.
    pub fn from_config_text(text: &str, format: Format) -> Result<PluginsConfig, ConfigError> {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        struct OnlyPlugins {
            plugins: Option<RawNode>,
        }
        let parsed = crate::sections::parse_into::<OnlyPlugins>(text, format, None)?;
        match parsed.raw.plugins {
            Some(node) => plugins_from_node(&node),
            None => Ok(PluginsConfig::default()),
        }
    }

    /// How many plugins are configured.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether no plugin is configured.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

/// One `<Type> "<name>" { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin type, such as `NodeAttestor`.
    pub plugin_type: String,
    /// The plugin name, such as `x509pop`.
    pub name: String,
    /// `plugin_cmd`: the executable of an external plugin (`None` for built-ins).
    pub plugin_cmd: Option<String>,
    /// `plugin_args`.
    pub plugin_args: Vec<String>,
    /// `plugin_checksum` (hex SHA-256), when given.
    pub plugin_checksum: Option<String>,
    /// `enabled` (default true).
    pub enabled: bool,
    /// `plugin_data` or `plugin_data_file`.
    pub data: PluginData,
}

impl PluginConfig {
    /// Whether the plugin is an external executable.
    pub fn is_external(&self) -> bool {
        self.plugin_cmd.is_some()
    }
}

/// Where a plugin's configuration comes from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum PluginData {
    /// Neither `plugin_data` nor `plugin_data_file` (or an empty `plugin_data {}`): SPIRE
    /// passes an empty configuration string.
    #[default]
    None,
    /// `plugin_data { ... }` (or `plugin_data = { ... }`).
    Inline(LoadedPluginData),
    /// `plugin_data_file = "path"`: read when the plugin is configured, and again when SPIRE
    /// reconfigures plugins (SIGUSR1).
    File(PathBuf),
}

impl PluginData {
    /// The configuration as of now: inline data, or the file's current contents parsed.
    /// `Ok(None)` when there is none.
    pub fn load(&self) -> Result<Option<LoadedPluginData>, ConfigError> {
        match self {
            PluginData::None => Ok(None),
            PluginData::Inline(d) => Ok(Some(d.clone())),
            PluginData::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    message: crate::file::go_io_message("open", path, &e),
                })?;
                LoadedPluginData::parse(&text)
                    .map(Some)
                    .map_err(|e| e.with_path(path))
            }
        }
    }

    /// Whether the data can change at run time (`plugin_data_file`).
    pub fn is_dynamic(&self) -> bool {
        matches!(self, PluginData::File(_))
    }

    /// The text to hand to the plugin now (empty when there is none).
    pub fn text(&self) -> Result<String, ConfigError> {
        Ok(self.load()?.map(|d| d.text).unwrap_or_default())
    }
}

/// A plugin's configuration: the text SPIRE hands to the plugin, and the parsed tree that
/// built-in plugins decode with [`LoadedPluginData::decode`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPluginData {
    text: String,
    node: Node,
    json: bool,
}

impl LoadedPluginData {
    /// Parses configuration text (HCL or JSON, as SPIRE's plugins accept it), such as the
    /// contents of a `plugin_data_file`.
    pub fn parse(text: &str) -> Result<LoadedPluginData, ConfigError> {
        let doc = hcl::parse(text, Format::Auto).map_err(crate::syntax_error)?;
        Ok(LoadedPluginData {
            text: text.to_owned(),
            node: Node::ObjectList(doc.root),
            json: doc.json,
        })
    }

    fn from_node(node: Node, json: bool) -> LoadedPluginData {
        LoadedPluginData {
            text: print_node(&node, json),
            node,
            json,
        }
    }

    /// The configuration text given to the plugin (for external plugins: exactly what SPIRE
    /// sends, `plugin_data` printed back to HCL; for `plugin_data_file`: the file's text).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Decodes into `T` with SPIRE's (hcl's) rules, failing on keys that `T` has no field
    /// for (like SPIRE's `join_token` attestor does).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let (value, unknown) = self.decode_lenient()?;
        if !unknown.is_empty() {
            return Err(ConfigError::UnknownKeys { keys: unknown });
        }
        Ok(value)
    }

    /// Decodes into `T` with SPIRE's (hcl's) rules, returning the keys `T` has no field for
    /// instead of failing (what most SPIRE plugins do: they ignore unknown keys).
    pub fn decode_lenient<T: DeserializeOwned>(&self) -> Result<(T, Vec<UnknownKey>), ConfigError> {
        let ctx = DecodeCtx {
            json: self.json,
            ..DecodeCtx::default()
        };
        let value = decode_nodes("root", vec![self.node.clone()], Parent::Root, &ctx)
            .map_err(|e| crate::decode_error(e, None))?;
        let unknown = ctx
            .unused
            .into_inner()
            .into_iter()
            .map(|u| {
                let section = match u.path.strip_prefix("root") {
                    Some(rest) => format!("plugin_data{rest}"),
                    None => u.path,
                };
                UnknownKey {
                    section,
                    key: u.key,
                    line: u.pos.line,
                    column: u.pos.column,
                }
            })
            .collect();
        Ok((value, unknown))
    }

    /// The data as JSON, shaped as hcl decodes it into Go's `map[string]interface{}` (nested
    /// blocks become lists of objects).
    pub fn to_json(&self) -> Result<serde_json::Value, ConfigError> {
        self.decode_lenient().map(|(v, _)| v)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPluginConfig {
    plugin_cmd: String,
    plugin_args: Vec<String>,
    plugin_checksum: String,
    plugin_data: Option<RawNode>,
    plugin_data_file: Option<String>,
    enabled: Option<bool>,
}

/// SPIRE's `PluginConfigsFromHCLNode`.
pub(crate) fn plugins_from_node(raw: &RawNode) -> Result<PluginsConfig, ConfigError> {
    let Node::ObjectList(list) = &raw.node else {
        return Err(ConfigError::invalid(
            "plugins",
            raw.node.pos().line,
            format!(
                "expected plugins node type *ast.ObjectList but got {}",
                raw.node.go_type()
            ),
        ));
    };
    let mut order = Vec::new();
    plugin_order(list, &[], &mut order);
    let mut seen = std::collections::HashSet::new();
    for (t, n, line) in &order {
        if !seen.insert((t.clone(), n.clone())) {
            return Err(ConfigError::invalid(
                "plugins",
                *line,
                format!(
                    "plugin {}/{} declared more than once",
                    crate::go_quote(t),
                    crate::go_quote(n)
                ),
            ));
        }
    }
    let ctx = DecodeCtx {
        json: raw.json,
        ..DecodeCtx::default()
    };
    type PluginsMaps = Vec<HashMap<String, HashMap<String, RawPluginConfig>>>;
    let maps: PluginsMaps = decode_nodes("root", vec![raw.node.clone()], Parent::Other, &ctx)
        .map_err(|e| decode_failure("failed to decode plugins config: ", e))?;
    let total: usize = maps
        .iter()
        .map(|m| m.values().map(HashMap::len).sum::<usize>())
        .sum();
    if total != order.len() {
        return Err(ConfigError::invalid(
            "plugins",
            raw.node.pos().line,
            format!("bug: expected {} plugins but got {total}", order.len()),
        ));
    }
    let mut plugins = Vec::with_capacity(order.len());
    for (plugin_type, name, line) in order {
        let Some(raw_cfg) = maps
            .iter()
            .find_map(|m| m.get(&plugin_type).and_then(|by_name| by_name.get(&name)))
        else {
            return Err(ConfigError::invalid(
                "plugins",
                line,
                format!(
                    "bug: plugin config for {}/{} not located",
                    crate::go_quote(&plugin_type),
                    crate::go_quote(&name)
                ),
            ));
        };
        plugins.push(plugin_from_raw(plugin_type, name, line, raw_cfg)?);
    }
    Ok(PluginsConfig { plugins })
}

fn decode_failure(prefix: &str, e: DecodeError) -> ConfigError {
    ConfigError::WrongType {
        path: None,
        key: e
            .key_path()
            .map(|k| {
                k.trim_start_matches("root")
                    .trim_start_matches('.')
                    .to_owned()
            })
            .unwrap_or_default(),
        line: e.pos().map(|p| p.line).unwrap_or(0),
        column: e.pos().map(|p| p.column).unwrap_or(0),
        message: format!("{prefix}{e}"),
    }
    .into_plain()
}

impl ConfigError {
    /// A decode error that SPIRE reports without the "unable to decode configuration" prefix.
    fn into_plain(self) -> ConfigError {
        match self {
            ConfigError::WrongType {
                key, line, message, ..
            } => ConfigError::InvalidValue { key, line, message },
            other => other,
        }
    }
}

fn plugin_from_raw(
    plugin_type: String,
    name: String,
    line: usize,
    raw: &RawPluginConfig,
) -> Result<PluginConfig, ConfigError> {
    if raw.plugin_data.is_some() && raw.plugin_data_file.is_some() {
        return Err(ConfigError::invalid(
            "plugin_data",
            line,
            format!(
                "failed to create plugin config for {}/{}: only one of [plugin_data, plugin_data_file] can be used",
                crate::go_quote(&plugin_type),
                crate::go_quote(&name)
            ),
        ));
    }
    let mut data = PluginData::None;
    if let Some(node) = &raw.plugin_data {
        let loaded = LoadedPluginData::from_node(node.node.clone(), node.json);
        if !loaded.text.is_empty() {
            data = PluginData::Inline(loaded);
        }
    }
    if let Some(file) = &raw.plugin_data_file {
        data = PluginData::File(Path::new(file).to_owned());
    }
    Ok(PluginConfig {
        plugin_type,
        name,
        plugin_cmd: (!raw.plugin_cmd.is_empty()).then(|| raw.plugin_cmd.clone()),
        plugin_args: raw.plugin_args.clone(),
        plugin_checksum: (!raw.plugin_checksum.is_empty()).then(|| raw.plugin_checksum.clone()),
        enabled: raw.enabled.unwrap_or(true),
        data,
    })
}

/// SPIRE's `determinePluginOrder`: the first two keys met walking down the tree name a
/// plugin, whether written `T "n" {}`, `T { n {} }` or `"T" "n" plugin_data {}`.
fn plugin_order(list: &ObjectList, outer: &[String], out: &mut Vec<(String, String, usize)>) {
    for item in &list.items {
        let mut keys = outer.to_vec();
        keys.extend(item.keys.iter().map(|k| k.value.clone()));
        if keys.len() >= 2 {
            out.push((keys[0].clone(), keys[1].clone(), item.pos().line));
            continue;
        }
        plugin_order_node(&item.val, &keys, out);
    }
}

fn plugin_order_node(node: &Node, keys: &[String], out: &mut Vec<(String, String, usize)>) {
    match node {
        Node::ObjectType(o) => plugin_order(&o.list, keys, out),
        Node::ObjectList(l) => plugin_order(l, keys, out),
        Node::ListType(l) => {
            for e in &l.list {
                plugin_order_node(e, keys, out);
            }
        }
        Node::ObjectItem(i) => plugin_order(
            &ObjectList {
                items: vec![(**i).clone()],
            },
            keys,
            out,
        ),
        Node::Literal(_) => {}
    }
}
