//! A serde `Deserializer` over the hcl tree that decodes the way hashicorp/hcl v1's
//! reflection decoder (`hcl.DecodeObject`) does, so that SPIRE's structs and built-in
//! plugins' configuration structs accept exactly what SPIRE accepts:
//!
//! - keys match struct fields case-insensitively;
//! - a field given several times is decoded repeatedly into the same value: scalars keep the
//!   last value, lists are concatenated, structs and maps are merged;
//! - weak typing: a quoted number decodes into an integer (`"8081"`, `"0x10"`), a number into
//!   a string (its text), but a quoted `"true"` is *not* a bool and a float is not a string;
//! - labelled blocks (`NodeAttestor "x509pop" { ... }`) decode as maps keyed by the label, and
//!   repeated blocks as lists;
//! - untyped targets (`serde_json::Value`) get hcl's `interface{}` shapes: a nested block
//!   becomes a *list* of maps;
//! - keys that no field takes are collected ("unused keys") with their positions, by hcl's
//!   rule (identifier keys and JSON keys only).
//!
//! Error messages are hcl's, for example `At 4:23: root.server.audit_log_enabled: unknown
//! type *ast.LiteralType`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::hcl::ast::{Node, ObjectItem, ObjectList, ObjectType, eq_fold};
use crate::hcl::strconv::parse_int;
use crate::hcl::token::{Pos, TokenType};

mod access;
mod error;

use access::*;
pub use error::DecodeError;

/// A key that no struct field took, with the decoder path of the struct it was found in
/// (`root`, `root.server`, `root.telemetry.DogStatsd[1]`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnusedKey {
    pub(crate) path: String,
    pub(crate) key: String,
    pub(crate) pos: Pos,
}

/// State shared by one decoding run.
#[derive(Debug, Default)]
pub(crate) struct DecodeCtx {
    pub(crate) unused: RefCell<Vec<UnusedKey>>,
    pub(crate) json: bool,
}

/// What kind of value holds the one being decoded (hcl's decoder stack top), which decides
/// whether an untyped block becomes a map or a list of maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parent {
    Root,
    Slice,
    Other,
}

/// Decodes `nodes` (decoded one after the other into the same value) into `T`.
pub(crate) fn decode_nodes<'de, T: Deserialize<'de>>(
    name: &str,
    nodes: Vec<Node>,
    parent: Parent,
    ctx: &DecodeCtx,
) -> Result<T, DecodeError> {
    let pos = nodes.last().map(Node::pos).unwrap_or_default();
    T::deserialize(De {
        name: name.to_owned(),
        nodes,
        parent,
        slice_elem: false,
        ctx,
    })
    .map_err(|e| e.add_context(name, pos))
}

pub(crate) struct De<'c> {
    name: String,
    nodes: Vec<Node>,
    parent: Parent,
    slice_elem: bool,
    ctx: &'c DecodeCtx,
}

impl<'c> De<'c> {
    fn child(&self, name: String, nodes: Vec<Node>, parent: Parent) -> De<'c> {
        De {
            name,
            nodes,
            parent,
            slice_elem: false,
            ctx: self.ctx,
        }
    }

    fn pos(&self) -> Pos {
        self.nodes.last().map(Node::pos).unwrap_or_default()
    }

    fn last(&self) -> Result<&Node, DecodeError> {
        self.nodes
            .last()
            .ok_or_else(|| DecodeError::plain(format!("{}: no value", self.name)))
    }

    fn decode_bool(&self, name: &str, node: &Node) -> Result<bool, DecodeError> {
        if let Node::Literal(l) = node
            && l.token.ty == TokenType::Bool
        {
            return Ok(l.token.text == "true");
        }
        Err(DecodeError::at(
            node,
            format!("{name}: unknown type {}", node.go_type()),
        ))
    }

    fn decode_int(&self, name: &str, node: &Node) -> Result<i64, DecodeError> {
        if let Node::Literal(l) = node {
            let text = match l.token.ty {
                TokenType::Number => Some(&l.token.text),
                TokenType::String => Some(&l.token.value),
                _ => None,
            };
            if let Some(text) = text {
                return parse_int(text).map_err(|e| DecodeError::at(node, format!("{name}: {e}")));
            }
        }
        Err(DecodeError::at(
            node,
            format!("{name}: unknown type {}", node.go_type()),
        ))
    }

    fn decode_float(&self, name: &str, node: &Node) -> Result<f64, DecodeError> {
        if let Node::Literal(l) = node
            && matches!(l.token.ty, TokenType::Float | TokenType::Number)
        {
            return l.token.text.parse::<f64>().map_err(|_| {
                DecodeError::at(
                    node,
                    format!(
                        "{name}: strconv.ParseFloat: parsing {}: invalid syntax",
                        crate::hcl::strconv::go_quote(&l.token.text)
                    ),
                )
            });
        }
        Err(DecodeError::at(
            node,
            format!("{name}: unknown type {}", node.go_type()),
        ))
    }

    fn decode_string(&self, name: &str, node: &Node) -> Result<String, DecodeError> {
        if let Node::Literal(l) = node {
            match l.token.ty {
                TokenType::Number => return Ok(l.token.text.clone()),
                TokenType::String | TokenType::Heredoc => return Ok(l.token.value.clone()),
                _ => {}
            }
        }
        Err(DecodeError::at(
            node,
            format!("{name}: unknown type for string {}", node.go_type()),
        ))
    }

    fn last_string(&self) -> Result<String, DecodeError> {
        let mut out = String::new();
        for n in &self.nodes {
            out = self.decode_string(&self.name, n)?;
        }
        self.last()?;
        Ok(out)
    }

    fn last_int(&self) -> Result<i64, DecodeError> {
        let mut out = 0;
        for n in &self.nodes {
            out = self.decode_int(&self.name, n)?;
        }
        self.last()?;
        Ok(out)
    }

    /// hcl's `decodeSlice` element list for one node.
    fn slice_items(node: &Node) -> Result<Vec<Node>, DecodeError> {
        match node {
            Node::ObjectList(l) => Ok(l
                .items
                .iter()
                .map(|i| Node::ObjectItem(Box::new(i.clone())))
                .collect()),
            Node::ObjectType(_) => Ok(vec![node.clone()]),
            Node::ListType(l) => Ok(l.list.clone()),
            _ => Err(DecodeError::at(
                node,
                format!("unknown slice type: {}", node.go_type()),
            )),
        }
    }

    /// hcl's `decodeMap` steps for one node: (key, value node) in order.
    fn map_steps(name: &str, node: &Node) -> Result<Vec<(String, Node)>, DecodeError> {
        let list = match node {
            Node::ObjectItem(i) => ObjectList {
                items: vec![(**i).clone()],
            },
            Node::ObjectType(o) => o.list.clone(),
            Node::ObjectList(l) => l.clone(),
            _ => {
                return Err(DecodeError::at(
                    node,
                    format!("{name}: not an object type for map ({})", node.go_type()),
                ));
            }
        };
        let mut done = HashSet::new();
        let mut steps = Vec::new();
        for item in &list.items {
            let Some(key) = item.keys.first() else {
                return Err(DecodeError::at(
                    node,
                    format!("{name}: map must have string keys"),
                ));
            };
            let key = key.value.clone();
            if done.contains(&key) {
                continue;
            }
            let val = if item.keys.len() > 1 {
                done.insert(key.clone());
                Node::ObjectList(list.filter(&key))
            } else {
                item.val.clone()
            };
            steps.push((key, val));
        }
        Ok(steps)
    }

    fn map_entries(&self) -> Result<Vec<(String, Vec<Node>)>, DecodeError> {
        let mut entries: Vec<(String, Vec<Node>)> = Vec::new();
        for node in &self.nodes {
            for (key, val) in Self::map_steps(&self.name, node)? {
                match entries.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, vals)) => vals.push(val),
                    None => entries.push((key, vec![val])),
                }
            }
        }
        Ok(entries)
    }

    /// The object list a struct is decoded from (hcl's `decodeStruct` preamble).
    fn struct_list(&self, node: &Node) -> Result<ObjectList, DecodeError> {
        let node = if self.slice_elem {
            expand_object(node)
        } else {
            node.clone()
        };
        let (item, inner) = match node {
            Node::ObjectItem(i) => {
                let i = *i;
                let val = i.val.clone();
                (Some(i), val)
            }
            other => (None, other),
        };
        match inner {
            Node::ObjectType(o) => Ok(o.list),
            Node::ObjectList(l) => Ok(l),
            Node::Literal(_) if item.is_some() => Ok(ObjectList {
                items: item.into_iter().collect(),
            }),
            other => Err(DecodeError::at(
                &other,
                format!(
                    "{}: not an object type for struct ({})",
                    self.name,
                    other.go_type()
                ),
            )),
        }
    }

    fn struct_fields(
        &self,
        fields: &'static [&'static str],
    ) -> Result<Vec<(&'static str, Vec<Node>)>, DecodeError> {
        let mut per_field: Vec<Vec<Node>> = vec![Vec::new(); fields.len()];
        for node in &self.nodes {
            let list = self.struct_list(node)?;
            let mut unused: Vec<(String, Pos)> = Vec::new();
            for (i, item) in list.items.iter().enumerate() {
                if i > 0 && item.keys.len() > 1 {
                    continue;
                }
                for k in &item.keys {
                    if k.json || k.ty == TokenType::Ident {
                        unused.push((k.value.clone(), k.pos));
                    }
                }
            }
            for (fi, field) in fields.iter().enumerate() {
                let filtered = list.filter(field);
                if filtered.items.is_empty() {
                    continue;
                }
                unused.retain(|(k, _)| !eq_fold(k, field));
                let (prefix, elems): (Vec<ObjectItem>, Vec<ObjectItem>) =
                    filtered.items.into_iter().partition(|i| !i.keys.is_empty());
                if !prefix.is_empty() {
                    per_field[fi].push(Node::ObjectList(ObjectList { items: prefix }));
                }
                for e in elems {
                    per_field[fi].push(match e.val {
                        Node::ObjectType(o) => Node::ObjectList(o.list),
                        v => v,
                    });
                }
            }
            let mut sink = self.ctx.unused.borrow_mut();
            for (key, pos) in unused {
                sink.push(UnusedKey {
                    path: self.name.clone(),
                    key,
                    pos,
                });
            }
        }
        Ok(fields
            .iter()
            .copied()
            .zip(per_field)
            .filter(|(_, nodes)| !nodes.is_empty())
            .collect())
    }

    // ---- hcl's interface{} decoding -------------------------------------------------

    fn iface(
        &self,
        name: &str,
        node: &Node,
        parent: Parent,
        existing: Option<GoValue>,
    ) -> Result<GoValue, DecodeError> {
        match existing {
            Some(GoValue::Bool(_)) => Ok(GoValue::Bool(self.decode_bool(name, node)?)),
            Some(GoValue::Int(_)) => Ok(GoValue::Int(self.decode_int(name, node)?)),
            Some(GoValue::Float(_)) => Ok(GoValue::Float(self.decode_float(name, node)?)),
            Some(GoValue::String(_)) => Ok(GoValue::String(self.decode_string(name, node)?)),
            Some(GoValue::List(mut v)) => {
                for (i, e) in Self::slice_items(node)?.iter().enumerate() {
                    v.push(self.iface(&format!("{name}[{i}]"), e, Parent::Slice, None)?);
                }
                Ok(GoValue::List(v))
            }
            Some(GoValue::MapList(mut v)) => {
                for (i, e) in Self::slice_items(node)?.iter().enumerate() {
                    v.push(self.go_map(&format!("{name}[{i}]"), e, Vec::new())?);
                }
                Ok(GoValue::MapList(v))
            }
            Some(GoValue::Map(m)) => Ok(GoValue::Map(self.go_map(name, node, m)?)),
            None => match node {
                Node::ObjectList(_) | Node::ObjectType(_) => {
                    if matches!(parent, Parent::Root | Parent::Slice) {
                        self.iface(name, node, parent, Some(GoValue::Map(Vec::new())))
                    } else {
                        self.iface(name, node, parent, Some(GoValue::MapList(Vec::new())))
                    }
                }
                Node::ListType(_) => {
                    self.iface(name, node, parent, Some(GoValue::List(Vec::new())))
                }
                Node::Literal(l) => {
                    let seed = match l.token.ty {
                        TokenType::Bool => GoValue::Bool(false),
                        TokenType::Float => GoValue::Float(0.0),
                        TokenType::Number => GoValue::Int(0),
                        TokenType::String | TokenType::Heredoc => GoValue::String(String::new()),
                        _ => {
                            return Err(DecodeError::at(
                                node,
                                format!("{name}: cannot decode into interface: {}", node.go_type()),
                            ));
                        }
                    };
                    self.iface(name, node, parent, Some(seed))
                }
                Node::ObjectItem(_) => Err(DecodeError::plain(format!(
                    "{name}: cannot decode into interface: {}",
                    node.go_type()
                ))),
            },
        }
    }

    fn go_map(
        &self,
        name: &str,
        node: &Node,
        mut map: Vec<(String, GoValue)>,
    ) -> Result<Vec<(String, GoValue)>, DecodeError> {
        for (key, val) in Self::map_steps(name, node)? {
            let field = format!("{name}.{key}");
            match map.iter().position(|(k, _)| *k == key) {
                Some(idx) => {
                    let old = std::mem::replace(&mut map[idx].1, GoValue::Bool(false));
                    map[idx].1 = self.iface(&field, &val, Parent::Other, Some(old))?;
                }
                None => {
                    let v = self.iface(&field, &val, Parent::Other, None)?;
                    map.push((key, v));
                }
            }
        }
        Ok(map)
    }
}

/// hcl's `expandObject`: a JSON item flattened to two keys, decoded as a list element into
/// a struct, is expanded back into a one-key item holding an object.
fn expand_object(node: &Node) -> Node {
    let Node::ObjectItem(item) = node else {
        return node.clone();
    };
    if item.keys.len() != 2 {
        return node.clone();
    }
    let mut inner = (**item).clone();
    let first = inner.keys.remove(0);
    Node::ObjectItem(Box::new(ObjectItem {
        keys: vec![first],
        assign: Pos::default(),
        val: Node::ObjectType(ObjectType {
            lbrace: Pos::default(),
            rbrace: Pos::default(),
            list: ObjectList { items: vec![inner] },
        }),
        lead_comment: None,
        line_comment: None,
    }))
}

/// A value decoded into Go's `interface{}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GoValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<GoValue>),
    MapList(Vec<Vec<(String, GoValue)>>),
    Map(Vec<(String, GoValue)>),
}

// ---- RawNode and Spanned: values that need more than serde's data model -----------------

pub(crate) const RAW_NODE_NAME: &str = "$__spire_config_private_RawNode";
pub(crate) const SPANNED_NAME: &str = "$__spire_config_private_Spanned";
const SPANNED_LINE: &str = "$__spire_config_private_line";
const SPANNED_COLUMN: &str = "$__spire_config_private_column";
const SPANNED_VALUE: &str = "$__spire_config_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_LINE, SPANNED_COLUMN, SPANNED_VALUE];

thread_local! {
    static RAW_SLOT: RefCell<Option<(Node, bool)>> = const { RefCell::new(None) };
}

/// An undecoded subtree (Go's `ast.Node` fields: `plugins`, `plugin_data`, profiles).
/// Only this crate's deserializer can produce one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawNode {
    pub(crate) node: Node,
    pub(crate) json: bool,
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an hcl configuration node")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                _d: D,
            ) -> Result<RawNode, D::Error> {
                RAW_SLOT
                    .with(|slot| slot.borrow_mut().take())
                    .map(|(node, json)| RawNode { node, json })
                    .ok_or_else(|| {
                        de::Error::custom("raw configuration nodes need spire-config's decoder")
                    })
            }
        }
        deserializer.deserialize_newtype_struct(RAW_NODE_NAME, V)
    }
}

/// A decoded value together with the line and column it was written at.
///
/// Works only with this crate's decoder (in `PluginData::decode` and the configuration
/// loaders); use it in a plugin's configuration struct to report positions in errors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spanned<T> {
    /// Line of the value (1-based; 0 when unknown).
    pub line: usize,
    /// Column of the value (1-based; 0 when unknown).
    pub column: usize,
    /// The value.
    pub value: T,
}

impl<T> Spanned<T> {
    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value with its position")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut line = 0;
                let mut column = 0;
                let mut value = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        SPANNED_LINE => line = map.next_value()?,
                        SPANNED_COLUMN => column = map.next_value()?,
                        _ => value = Some(map.next_value()?),
                    }
                }
                let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
                Ok(Spanned {
                    line,
                    column,
                    value,
                })
            }
        }
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, V(std::marker::PhantomData))
    }
}

// ---- serde plumbing ---------------------------------------------------------------------

macro_rules! int_methods {
    ($($method:ident),*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
                let v = self.last_int()?;
                visitor.visit_i64(v)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mut value = None;
        for node in &self.nodes {
            value = Some(self.iface(&self.name, node, self.parent, value)?);
        }
        match value {
            Some(v) => GoValueDe(v).deserialize_any(visitor),
            None => visitor.visit_unit(),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mut out = false;
        for n in &self.nodes {
            out = self.decode_bool(&self.name, n)?;
        }
        self.last()?;
        visitor.visit_bool(out)
    }

    int_methods!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mut out = 0.0;
        for n in &self.nodes {
            out = self.decode_float(&self.name, n)?;
        }
        self.last()?;
        visitor.visit_f64(out)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let s = self.last_string()?;
        visitor.visit_string(s)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.nodes.is_empty() {
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        if name == RAW_NODE_NAME {
            let node = self.last()?.clone();
            let json = self.ctx.json;
            RAW_SLOT.with(|slot| *slot.borrow_mut() = Some((node, json)));
            let result = visitor.visit_newtype_struct(().into_deserializer());
            RAW_SLOT.with(|slot| slot.borrow_mut().take());
            return result;
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mut elems = Vec::new();
        for node in &self.nodes {
            for (i, item) in Self::slice_items(node)?.into_iter().enumerate() {
                elems.push((format!("{}[{i}]", self.name), item));
            }
        }
        visitor.visit_seq(SeqDe {
            parent: &self,
            elems: elems.into_iter(),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let entries = self.map_entries()?;
        let pos = self.pos();
        let name = self.name.clone();
        visitor
            .visit_map(MapDe {
                parent: &self,
                entries: entries.into_iter(),
                pending: None,
            })
            .map_err(|e| e.add_context(&name, pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        if name == SPANNED_NAME {
            let pos = self.pos();
            return visitor.visit_map(SpannedDe {
                de: Some(self),
                pos,
                step: 0,
            });
        }
        let entries = self.struct_fields(fields)?;
        let pos = self.pos();
        let sname = self.name.clone();
        visitor
            .visit_map(StructDe {
                parent: &self,
                entries: entries.into_iter(),
                pending: None,
            })
            .map_err(|e| e.add_context(&sname, pos))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let s = self.last_string()?;
        let pos = self.pos();
        let name = self.name.clone();
        visitor
            .visit_enum(IntoDeserializer::<DecodeError>::into_deserializer(s))
            .map_err(|e| e.add_context(&name, pos))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }
}
