//! Selectors: `type:value` pairs that describe nodes and workloads.

use std::fmt;

/// Why a selector is invalid. The messages are SPIRE's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The type is empty.
    #[error("missing selector type")]
    MissingType,
    /// The type contains `:`.
    #[error("selector type contains ':'")]
    TypeContainsColon,
    /// The value is empty.
    #[error("missing selector value")]
    MissingValue,
    /// A `type:value` string has no `:`.
    #[error("selector {0:?} must be formatted as type:value")]
    NoSeparator(String),
}

/// A selector, such as `unix:uid:1000` (type `unix`, value `uid:1000`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Selector {
    #[serde(rename = "type")]
    selector_type: String,
    value: String,
}

impl Selector {
    /// Builds a selector from its two parts, checked as SPIRE's API checks them.
    pub fn new(selector_type: &str, value: &str) -> Result<Self, SelectorError> {
        if selector_type.is_empty() {
            return Err(SelectorError::MissingType);
        }
        if selector_type.contains(':') {
            return Err(SelectorError::TypeContainsColon);
        }
        if value.is_empty() {
            return Err(SelectorError::MissingValue);
        }
        Ok(Self {
            selector_type: selector_type.to_string(),
            value: value.to_string(),
        })
    }

    /// Parses `type:value` (the value may contain further colons).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let (t, v) = s
            .split_once(':')
            .ok_or_else(|| SelectorError::NoSeparator(s.to_string()))?;
        Self::new(t, v)
    }

    /// The type, e.g. `unix`.
    pub fn selector_type(&self) -> &str {
        &self.selector_type
    }

    /// The value, e.g. `uid:1000`.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.selector_type, self.value)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let s = Selector::parse("unix:uid:1000").unwrap();
        assert_eq!(s.selector_type(), "unix");
        assert_eq!(s.value(), "uid:1000");
        assert_eq!(s.to_string(), "unix:uid:1000");
        assert_eq!(
            Selector::parse("nocolon"),
            Err(SelectorError::NoSeparator("nocolon".into()))
        );
        assert_eq!(Selector::parse(":v"), Err(SelectorError::MissingType));
        assert_eq!(Selector::parse("t:"), Err(SelectorError::MissingValue));
        assert_eq!(
            Selector::new("a:b", "c"),
            Err(SelectorError::TypeContainsColon)
        );
    }

    #[test]
    fn ordering_is_by_type_then_value() {
        let mut v = [
            Selector::parse("b:1").unwrap(),
            Selector::parse("a:2").unwrap(),
            Selector::parse("a:1").unwrap(),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["a:1", "a:2", "b:1"]);
    }
}
