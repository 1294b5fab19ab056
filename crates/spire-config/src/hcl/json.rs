//! The JSON form of a configuration, parsed the way hashicorp/hcl v1's JSON parser does:
//! into the same tree as HCL, with nested objects "flattened" into multi-key items so that
//! `{"plugins": {"NodeAttestor": {"x509pop": {...}}}}` decodes like the HCL block form. The
//! parser's leniencies (booleans dropped from lists, some errors ignored before a `}`) are
//! kept because SPIRE accepts such files.

use super::SyntaxError;
use super::ast::{ListType, LiteralType, Node, ObjectItem, ObjectList, ObjectType};
use super::scanner::JsonScanner;
use super::token::{Pos, Token, TokenType};

enum PErr {
    Eof,
    Msg(Pos, String),
}

struct Parser<'a> {
    sc: JsonScanner<'a>,
    tok: Token,
}

/// Parses JSON text into the root object list.
pub(crate) fn parse_json(src: &str) -> Result<ObjectList, SyntaxError> {
    let mut p = Parser {
        sc: JsonScanner::new(src),
        tok: Token::new(TokenType::Illegal, Pos::default(), String::new()),
    };
    let result = p.object();
    if let Some((pos, msg)) = p.sc.error() {
        return Err(SyntaxError {
            pos: *pos,
            message: format!("{pos}: {msg}"),
        });
    }
    match result {
        Ok(obj) => {
            let mut list = obj.list;
            flatten_list(&mut list);
            Ok(list)
        }
        Err(PErr::Eof) => Err(SyntaxError {
            pos: p.tok.pos,
            message: "EOF token found".to_owned(),
        }),
        Err(PErr::Msg(pos, message)) => Err(SyntaxError { pos, message }),
    }
}

impl Parser<'_> {
    fn scan(&mut self) -> Token {
        self.tok = self.sc.scan();
        self.tok.clone()
    }

    fn err<T>(&self, msg: String) -> Result<T, PErr> {
        Err(PErr::Msg(self.tok.pos, msg))
    }

    /// Returns the list and the error that ended it (hcl keeps the partial list).
    fn object_list(&mut self) -> (ObjectList, Option<PErr>) {
        let mut node = ObjectList::default();
        loop {
            match self.object_item() {
                Err(PErr::Eof) => break,
                Err(e) => return (node, Some(e)),
                Ok(item) => node.items.push(item),
            }
            if self.scan().ty != TokenType::Comma {
                break;
            }
        }
        (node, None)
    }

    fn object_item(&mut self) -> Result<ObjectItem, PErr> {
        let keys = self.object_key()?;
        let assign = self.tok.pos;
        let val = self.object_value()?;
        Ok(ObjectItem {
            keys,
            assign,
            val,
            lead_comment: None,
            line_comment: None,
        })
    }

    fn object_key(&mut self) -> Result<Vec<Token>, PErr> {
        let mut keys = Vec::new();
        loop {
            let tok = self.scan();
            match tok.ty {
                TokenType::Eof => return Err(PErr::Eof),
                TokenType::String => keys.push(tok),
                TokenType::Colon => {
                    if keys.is_empty() {
                        return self.err(format!("expected: STRING got: {}", tok.ty));
                    }
                    return Ok(keys);
                }
                TokenType::Illegal => return self.err("illegal".to_owned()),
                other => return self.err(format!("expected: STRING got: {other}")),
            }
        }
    }

    fn object_value(&mut self) -> Result<Node, PErr> {
        let tok = self.scan();
        match tok.ty {
            TokenType::Number
            | TokenType::Float
            | TokenType::Bool
            | TokenType::Null
            | TokenType::String => Ok(Node::Literal(LiteralType::new(hcl_literal(tok)))),
            TokenType::LBrace => Ok(Node::ObjectType(self.object_type()?)),
            TokenType::LBrack => Ok(Node::ListType(self.list_type()?)),
            TokenType::Eof => Err(PErr::Eof),
            _ => self.err(format!("Expected object value, got unknown token: {tok}")),
        }
    }

    fn object(&mut self) -> Result<ObjectType, PErr> {
        let tok = self.scan();
        match tok.ty {
            TokenType::LBrace => self.object_type(),
            TokenType::Eof => Err(PErr::Eof),
            _ => self.err(format!("Expected object, got unknown token: {tok}")),
        }
    }

    fn object_type(&mut self) -> Result<ObjectType, PErr> {
        let lbrace = self.tok.pos;
        let (list, err) = self.object_list();
        if let Some(e) = err
            && self.tok.ty != TokenType::RBrace
        {
            return Err(e);
        }
        Ok(ObjectType {
            lbrace,
            rbrace: self.tok.pos,
            list,
        })
    }

    fn list_type(&mut self) -> Result<ListType, PErr> {
        let mut l = ListType {
            lbrack: self.tok.pos,
            rbrack: Pos::default(),
            list: Vec::new(),
        };
        loop {
            let tok = self.scan();
            match tok.ty {
                TokenType::Number | TokenType::Float | TokenType::String => {
                    l.list
                        .push(Node::Literal(LiteralType::new(hcl_literal(tok))));
                }
                TokenType::Comma => {}
                TokenType::LBrace => {
                    let o = self.object_type()?;
                    l.list.push(Node::ObjectType(o));
                }
                // hcl's JSON parser skips these.
                TokenType::Bool | TokenType::LBrack => {}
                TokenType::RBrack => {
                    l.rbrack = tok.pos;
                    return Ok(l);
                }
                other => return self.err(format!("unexpected token while parsing list: {other}")),
            }
        }
    }
}

/// hcl's `json/token.Token.HCLToken`: `null` becomes an empty string.
fn hcl_literal(tok: Token) -> Token {
    if tok.ty == TokenType::Null {
        let mut t = Token::new(TokenType::String, tok.pos, String::new());
        t.json = true;
        return t;
    }
    tok
}

/// hcl's `flattenObjects`, applied to a list and then to everything below it.
fn flatten_list(list: &mut ObjectList) {
    let items = std::mem::take(&mut list.items);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        flatten_item(item, &mut out);
    }
    for item in &mut out {
        flatten_node(&mut item.val);
    }
    list.items = out;
}

fn flatten_node(node: &mut Node) {
    match node {
        Node::ObjectType(o) => flatten_list(&mut o.list),
        Node::ListType(l) => l.list.iter_mut().for_each(flatten_node),
        Node::ObjectList(l) => flatten_list(l),
        Node::ObjectItem(i) => flatten_node(&mut i.val),
        Node::Literal(_) => {}
    }
}

fn flatten_item(item: ObjectItem, out: &mut Vec<ObjectItem>) {
    match &item.val {
        Node::ObjectType(ot) => {
            // hcl checks for a nil item slice, which only an empty JSON object has.
            if ot.list.items.is_empty()
                || ot
                    .list
                    .items
                    .iter()
                    .any(|sub| !matches!(sub.val, Node::ObjectType(_)))
            {
                out.push(item);
                return;
            }
            let Node::ObjectType(ot) = item.val else {
                return;
            };
            for sub in ot.list.items {
                let mut keys = item.keys.clone();
                keys.extend(sub.keys);
                flatten_item(
                    ObjectItem {
                        keys,
                        assign: item.assign,
                        val: sub.val,
                        lead_comment: None,
                        line_comment: None,
                    },
                    out,
                );
            }
        }
        Node::ListType(lt) => {
            if lt.list.is_empty() || lt.list.iter().any(|e| !matches!(e, Node::ObjectType(_))) {
                out.push(item);
                return;
            }
            let Node::ListType(lt) = item.val else {
                return;
            };
            for elem in lt.list {
                flatten_item(
                    ObjectItem {
                        keys: item.keys.clone(),
                        assign: item.assign,
                        val: elem,
                        lead_comment: None,
                        line_comment: None,
                    },
                    out,
                );
            }
        }
        _ => out.push(item),
    }
}
