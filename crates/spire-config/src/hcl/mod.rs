//! A reimplementation of the parts of hashicorp/hcl v1 that SPIRE relies on: the HCL and
//! JSON parsers (with positions), the printer used for `plugin_data`, and the reflection-
//! driven decoder's rules (see [`crate::decode`]).

pub(crate) mod ast;
pub(crate) mod json;
pub(crate) mod parser;
pub(crate) mod printer;
pub(crate) mod scanner;
pub(crate) mod strconv;
pub(crate) mod token;

pub use token::Pos;

/// Which syntax a configuration text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Decide as SPIRE does: JSON when the first non-space character is `{`, else HCL.
    #[default]
    Auto,
    /// HCL (version 1 syntax, as SPIRE reads it).
    Hcl,
    /// JSON.
    Json,
}

impl Format {
    /// Resolves [`Format::Auto`] for `text` (hcl's `lexMode`).
    pub fn detect(self, text: &str) -> Format {
        match self {
            Format::Auto => match text.chars().find(|c| !c.is_whitespace()) {
                Some('{') => Format::Json,
                _ => Format::Hcl,
            },
            other => other,
        }
    }
}

/// A syntax error: hcl's message (which already carries the position, as `At L:C: ...`
/// for HCL) and the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) pos: Pos,
    pub(crate) message: String,
}

/// A parsed document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    pub(crate) root: ast::ObjectList,
    pub(crate) json: bool,
}

/// Parses `text` in `format`.
pub(crate) fn parse(text: &str, format: Format) -> Result<Document, SyntaxError> {
    match format.detect(text) {
        Format::Json => Ok(Document {
            root: json::parse_json(text)?,
            json: true,
        }),
        _ => Ok(Document {
            root: parser::parse_hcl(text)?,
            json: false,
        }),
    }
}
