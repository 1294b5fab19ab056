//! The serde access types the decoder hands out: sequences, maps, structs, spanned
//! values and decoded Go values.

use super::*;

pub(super) struct SeqDe<'a, 'c> {
    pub(super) parent: &'a De<'c>,
    pub(super) elems: std::vec::IntoIter<(String, Node)>,
}

impl<'de> SeqAccess<'de> for SeqDe<'_, '_> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        let Some((name, node)) = self.elems.next() else {
            return Ok(None);
        };
        let pos = node.pos();
        let mut de = self.parent.child(name.clone(), vec![node], Parent::Slice);
        de.slice_elem = true;
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.add_context(&name, pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.elems.len())
    }
}

pub(super) struct MapDe<'a, 'c> {
    pub(super) parent: &'a De<'c>,
    pub(super) entries: std::vec::IntoIter<(String, Vec<Node>)>,
    pub(super) pending: Option<(String, Vec<Node>)>,
}

impl<'de> MapAccess<'de> for MapDe<'_, '_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((key, nodes)) = self.entries.next() else {
            return Ok(None);
        };
        let pos = nodes.last().map(Node::pos).unwrap_or_default();
        let name = format!("{}.{key}", self.parent.name);
        let k = seed
            .deserialize(IntoDeserializer::<DecodeError>::into_deserializer(
                key.clone(),
            ))
            .map_err(|e| e.add_context(&name, pos))?;
        self.pending = Some((key, nodes));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let (key, nodes) = self
            .pending
            .take()
            .ok_or_else(|| DecodeError::plain("map value requested before its key".to_owned()))?;
        let name = format!("{}.{key}", self.parent.name);
        let pos = nodes.last().map(Node::pos).unwrap_or_default();
        seed.deserialize(self.parent.child(name.clone(), nodes, Parent::Other))
            .map_err(|e| e.add_context(&name, pos))
    }
}

pub(super) struct StructDe<'a, 'c> {
    pub(super) parent: &'a De<'c>,
    pub(super) entries: std::vec::IntoIter<(&'static str, Vec<Node>)>,
    pub(super) pending: Option<(&'static str, Vec<Node>)>,
}

impl<'de> MapAccess<'de> for StructDe<'_, '_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((field, nodes)) = self.entries.next() else {
            return Ok(None);
        };
        let k = seed.deserialize(IntoDeserializer::<DecodeError>::into_deserializer(field))?;
        self.pending = Some((field, nodes));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let (field, nodes) = self.pending.take().ok_or_else(|| {
            DecodeError::plain("struct value requested before its key".to_owned())
        })?;
        let name = format!("{}.{field}", self.parent.name);
        let pos = nodes.last().map(Node::pos).unwrap_or_default();
        seed.deserialize(self.parent.child(name.clone(), nodes, Parent::Other))
            .map_err(|e| e.add_context(&name, pos))
    }
}

pub(super) struct SpannedDe<'c> {
    pub(super) de: Option<De<'c>>,
    pub(super) pos: Pos,
    pub(super) step: u8,
}

impl<'de> MapAccess<'de> for SpannedDe<'_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let key = match self.step {
            0 => SPANNED_LINE,
            1 => SPANNED_COLUMN,
            2 => SPANNED_VALUE,
            _ => return Ok(None),
        };
        seed.deserialize(IntoDeserializer::<DecodeError>::into_deserializer(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let step = self.step;
        self.step += 1;
        match step {
            0 => seed.deserialize(IntoDeserializer::<DecodeError>::into_deserializer(
                self.pos.line as u64,
            )),
            1 => seed.deserialize(IntoDeserializer::<DecodeError>::into_deserializer(
                self.pos.column as u64,
            )),
            _ => match self.de.take() {
                Some(de) => seed.deserialize(de),
                None => Err(DecodeError::plain("spanned value read twice".to_owned())),
            },
        }
    }
}

/// Feeds a [`GoValue`] to a visitor.
pub(super) struct GoValueDe(pub(super) GoValue);

impl<'de> Deserializer<'de> for GoValueDe {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            GoValue::Bool(b) => visitor.visit_bool(b),
            GoValue::Int(i) => visitor.visit_i64(i),
            GoValue::Float(f) => visitor.visit_f64(f),
            GoValue::String(s) => visitor.visit_string(s),
            GoValue::List(v) => visitor.visit_seq(GoSeq(v.into_iter())),
            GoValue::MapList(v) => visitor.visit_seq(GoSeq(
                v.into_iter()
                    .map(GoValue::Map)
                    .collect::<Vec<_>>()
                    .into_iter(),
            )),
            GoValue::Map(m) => visitor.visit_map(GoMap {
                entries: m.into_iter(),
                pending: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

pub(super) struct GoSeq(pub(super) std::vec::IntoIter<GoValue>);

impl<'de> SeqAccess<'de> for GoSeq {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        match self.0.next() {
            Some(v) => seed.deserialize(GoValueDe(v)).map(Some),
            None => Ok(None),
        }
    }
}

pub(super) struct GoMap {
    pub(super) entries: std::vec::IntoIter<(String, GoValue)>,
    pub(super) pending: Option<GoValue>,
}

impl<'de> MapAccess<'de> for GoMap {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(v);
        seed.deserialize(IntoDeserializer::<DecodeError>::into_deserializer(k))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        match self.pending.take() {
            Some(v) => seed.deserialize(GoValueDe(v)),
            None => Err(DecodeError::plain(
                "map value requested before its key".to_owned(),
            )),
        }
    }
}
