//! Go's text/template as SPIRE runs `agent_path_template`: the whole action language
//! (pipelines, variables, parenthesised calls, `if`/`else`/`with`/`range`/`break`/
//! `continue`, comments and trim markers), Go's builtin functions, and the fixed list of
//! sprig v3 functions SPIRE's `agentpathtemplate` package allows, executed with
//! `missingkey=error`. Error texts follow Go's (`template: agent-path:…`).
//!
//! Data is a [`Value`] tree: [`Value::Struct`] for SPIRE's Go structs (a field the
//! struct lacks is an error naming the type, as in Go), [`Value::StrMap`] for
//! `map[string]string` data such as AWS tags (a missing key is Go's
//! `map has no entry for key` error), strings and numbers.
//!
//! ```
//! use spire_gocompat::template::{PathTemplate, Value};
//!
//! let t = PathTemplate::parse(r#"/{{ .PluginName }}/{{ .Region | lower | replace "-" "_" }}"#).unwrap();
//! let data = Value::structure("x.data", [("PluginName", Value::from("aws_iid")), ("Region", Value::from("US-EAST-1"))]);
//! assert_eq!(t.execute(&data, &mut |b| b.fill(0)).unwrap(), "/aws_iid/us_east_1");
//! ```

mod exec;
mod funcs;
mod gofmt;
mod parse;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The template's name in Go's messages (SPIRE names it so).
pub(crate) const NAME: &str = "agent-path";

/// A Go value as a template sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A nil interface.
    Nil,
    Bool(bool),
    /// Go `int`.
    Int(i64),
    /// Go `int64` (struct fields such as GCP's project number).
    Int64(i64),
    Float(f64),
    Str(String),
    /// `[]interface{}`.
    List(Vec<Value>),
    /// `[]string`.
    StrList(Vec<String>),
    /// `map[string]interface{}` (shared, as Go maps are: sprig's `set` changes it).
    Map(Rc<RefCell<BTreeMap<String, Value>>>),
    /// `map[string]string` named `type_name` (e.g. `map[string]string`).
    StrMap {
        type_name: String,
        entries: BTreeMap<String, String>,
    },
    /// A Go struct: its type name (`pkg.Type`) and exported fields, in declaration order.
    Struct {
        type_name: String,
        fields: Vec<(String, Value)>,
    },
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl Value {
    /// A struct value of type `type_name`.
    pub fn structure<K: Into<String>>(
        type_name: &str,
        fields: impl IntoIterator<Item = (K, Value)>,
    ) -> Self {
        Value::Struct {
            type_name: type_name.to_string(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    /// A `map[string]string` (named `type_name` in Go's type errors).
    pub fn str_map<K: Into<String>, V: Into<String>>(
        type_name: &str,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Value::StrMap {
            type_name: type_name.to_string(),
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A `map[string]interface{}`.
    pub fn map(entries: BTreeMap<String, Value>) -> Self {
        Value::Map(Rc::new(RefCell::new(entries)))
    }

    /// Go's type name of this value, as `reflect.Type.String` prints it.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Int64(_) => "int64".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::List(_) => "[]interface {}".into(),
            Value::StrList(_) => "[]string".into(),
            Value::Map(_) => "map[string]interface {}".into(),
            Value::StrMap { type_name, .. } | Value::Struct { type_name, .. } => type_name.clone(),
        }
    }
}

/// A source of random bytes (for sprig's `uuidv4`).
pub type Random<'a> = &'a mut dyn FnMut(&mut [u8]);

/// A parsed agent path template.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTemplate {
    nodes: Vec<parse::Node>,
    defines: parse::Defines,
    text: String,
}

impl PathTemplate {
    /// Parses `text` as Go's `template.New("agent-path").Option("missingkey=error").
    /// Funcs(SPIRE's sprig subset).Parse(text)` does; errors are worded as Go's.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (nodes, defines) = parse::Parser::parse(text)?;
        Ok(Self {
            nodes,
            defines,
            text: text.to_string(),
        })
    }

    /// Executes with `data` as dot; `random` fills bytes for `uuidv4`.
    pub fn execute(&self, data: &Value, random: Random<'_>) -> Result<String, String> {
        exec::execute(&self.text, &self.nodes, &self.defines, data, random)
    }
}

#[cfg(test)]
mod tests;
