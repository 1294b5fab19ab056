//! Tokens and positions, as hashicorp/hcl v1 reports them.

use std::fmt;

/// A position in the configuration text. Lines and columns start at 1; a line of 0 means
/// "no position" and prints as `-`, like hcl's `token.Pos`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Pos {
    /// Byte offset, starting at 0.
    pub offset: usize,
    /// Line number, starting at 1.
    pub line: usize,
    /// Column (character count on the line), starting at 1.
    pub column: usize,
}

impl Pos {
    /// Whether the position points into the text.
    pub fn is_valid(&self) -> bool {
        self.line > 0
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_valid() {
            write!(f, "{}:{}", self.line, self.column)
        } else {
            f.write_str("-")
        }
    }
}

/// Token kinds of the HCL and JSON scanners (named as hcl prints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenType {
    Illegal,
    Eof,
    Comment,
    Ident,
    Number,
    Float,
    Bool,
    String,
    Heredoc,
    LBrack,
    LBrace,
    Comma,
    Period,
    RBrack,
    RBrace,
    Assign,
    Add,
    Sub,
    /// JSON only.
    Colon,
    /// JSON only.
    Null,
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenType::Illegal => "ILLEGAL",
            TokenType::Eof => "EOF",
            TokenType::Comment => "COMMENT",
            TokenType::Ident => "IDENT",
            TokenType::Number => "NUMBER",
            TokenType::Float => "FLOAT",
            TokenType::Bool => "BOOL",
            TokenType::String => "STRING",
            TokenType::Heredoc => "HEREDOC",
            TokenType::LBrack => "LBRACK",
            TokenType::LBrace => "LBRACE",
            TokenType::Comma => "COMMA",
            TokenType::Period => "PERIOD",
            TokenType::RBrack => "RBRACK",
            TokenType::RBrace => "RBRACE",
            TokenType::Assign => "ASSIGN",
            TokenType::Add => "ADD",
            TokenType::Sub => "SUB",
            TokenType::Colon => "COLON",
            TokenType::Null => "NULL",
        })
    }
}

/// One scanned token. `value` holds the decoded text of identifiers, strings and heredocs
/// (hcl's `Token.Value()` for those kinds); for other kinds it is the raw text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) ty: TokenType,
    pub(crate) pos: Pos,
    pub(crate) text: String,
    /// The token came from a JSON document (affects unknown-key tracking, as in hcl).
    pub(crate) json: bool,
    pub(crate) value: String,
}

impl Token {
    pub(crate) fn new(ty: TokenType, pos: Pos, text: String) -> Token {
        Token {
            ty,
            pos,
            value: text.clone(),
            text,
            json: false,
        }
    }
}

impl fmt::Display for Token {
    /// hcl's `Token.String()`: `pos type text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.pos, self.ty, self.text)
    }
}
