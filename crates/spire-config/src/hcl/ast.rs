//! The syntax tree, shaped like hashicorp/hcl v1's `ast` package so that decoding, plugin
//! ordering and printing can follow hcl's rules step by step.

use super::token::{Pos, Token};

/// Any node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    ObjectList(ObjectList),
    ObjectItem(Box<ObjectItem>),
    ObjectType(ObjectType),
    ListType(ListType),
    Literal(LiteralType),
}

impl Node {
    /// hcl's `Node.Pos()`.
    pub(crate) fn pos(&self) -> Pos {
        match self {
            Node::ObjectList(l) => l.pos(),
            Node::ObjectItem(i) => i.pos(),
            Node::ObjectType(o) => o.lbrace,
            Node::ListType(l) => l.lbrack,
            Node::Literal(l) => l.token.pos,
        }
    }

    /// The Go type name hcl's error messages print (`%T`).
    pub(crate) fn go_type(&self) -> &'static str {
        match self {
            Node::ObjectList(_) => "*ast.ObjectList",
            Node::ObjectItem(_) => "*ast.ObjectItem",
            Node::ObjectType(_) => "*ast.ObjectType",
            Node::ListType(_) => "*ast.ListType",
            Node::Literal(_) => "*ast.LiteralType",
        }
    }
}

/// A list of items: the body of a file or of an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ObjectList {
    pub(crate) items: Vec<ObjectItem>,
}

impl ObjectList {
    pub(crate) fn pos(&self) -> Pos {
        self.items.first().map(ObjectItem::pos).unwrap_or_default()
    }

    /// hcl's `ObjectList.Filter(key)`: the items whose first key matches `key` (exactly or
    /// case-insensitively), with that key removed.
    pub(crate) fn filter(&self, key: &str) -> ObjectList {
        let items = self
            .items
            .iter()
            .filter(|item| {
                item.keys
                    .first()
                    .is_some_and(|k| k.value == key || eq_fold(&k.value, key))
            })
            .map(|item| {
                let mut copy = item.clone();
                copy.keys.remove(0);
                copy
            })
            .collect();
        ObjectList { items }
    }
}

/// Go's `strings.EqualFold` (simple Unicode case folding).
pub(crate) fn eq_fold(a: &str, b: &str) -> bool {
    let mut ai = a.chars();
    let mut bi = b.chars();
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                if x != y && !x.to_lowercase().eq(y.to_lowercase()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// `key key2 = value` or `key "label" { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ObjectItem {
    pub(crate) keys: Vec<Token>,
    /// Position of `=` (or `:` in JSON); invalid when the item is a block.
    pub(crate) assign: Pos,
    pub(crate) val: Node,
    pub(crate) lead_comment: Option<CommentGroup>,
    pub(crate) line_comment: Option<CommentGroup>,
}

impl ObjectItem {
    pub(crate) fn pos(&self) -> Pos {
        self.keys.first().map(|k| k.pos).unwrap_or_default()
    }
}

/// `{ ... }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ObjectType {
    pub(crate) lbrace: Pos,
    pub(crate) rbrace: Pos,
    pub(crate) list: ObjectList,
}

/// `[ ... ]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListType {
    pub(crate) lbrack: Pos,
    pub(crate) rbrack: Pos,
    pub(crate) list: Vec<Node>,
}

/// A number, float, bool, string or heredoc.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LiteralType {
    pub(crate) token: Token,
    pub(crate) lead_comment: Option<CommentGroup>,
    pub(crate) line_comment: Option<CommentGroup>,
}

impl LiteralType {
    pub(crate) fn new(token: Token) -> LiteralType {
        LiteralType {
            token,
            lead_comment: None,
            line_comment: None,
        }
    }
}

/// One `#`, `//` or `/* */` comment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Comment {
    pub(crate) start: Pos,
    pub(crate) text: String,
}

/// Adjacent comments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CommentGroup {
    pub(crate) list: Vec<Comment>,
}
