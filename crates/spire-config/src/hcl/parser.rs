//! The HCL parser, following hashicorp/hcl v1's parser (including where it attaches
//! comments, which the printer needs, and which malformed inputs it quietly accepts).

use super::SyntaxError;
use super::ast::{
    Comment, CommentGroup, ListType, LiteralType, Node, ObjectItem, ObjectList, ObjectType,
};
use super::scanner::HclScanner;
use super::token::{Pos, Token, TokenType};

enum PErr {
    /// hcl's `errEofToken`: not an error at the top level.
    Eof,
    At(Pos, String),
}

type PResult<T> = Result<T, PErr>;

fn at<T>(pos: Pos, msg: impl Into<String>) -> PResult<T> {
    Err(PErr::At(pos, msg.into()))
}

struct Parser<'a> {
    sc: HclScanner<'a>,
    tok: Token,
    lead_comment: Option<CommentGroup>,
    line_comment: Option<CommentGroup>,
    unscanned: bool,
}

/// Parses HCL text into the root object list.
pub(crate) fn parse_hcl(src: &str) -> Result<ObjectList, SyntaxError> {
    let src = src.replace("\r\n", "\n");
    let mut p = Parser {
        sc: HclScanner::new(&src),
        tok: Token::new(TokenType::Illegal, Pos::default(), String::new()),
        lead_comment: None,
        line_comment: None,
        unscanned: false,
    };
    let result = p.object_list(false);
    if let Some((pos, msg)) = p.sc.error() {
        return Err(SyntaxError {
            pos: *pos,
            message: format!("At {pos}: {msg}"),
        });
    }
    match result {
        Ok(list) => Ok(list),
        Err(PErr::At(pos, msg)) => Err(SyntaxError {
            pos,
            message: format!("At {pos}: {msg}"),
        }),
        Err(PErr::Eof) => Err(SyntaxError {
            pos: Pos::default(),
            message: "EOF token found".to_owned(),
        }),
    }
}

impl Parser<'_> {
    fn object_list(&mut self, obj: bool) -> PResult<ObjectList> {
        let mut node = ObjectList::default();
        loop {
            if obj {
                let tok = self.scan();
                self.unscan();
                if tok.ty == TokenType::RBrace {
                    break;
                }
            }
            match self.object_item() {
                Err(PErr::Eof) => break,
                Err(e) => return Err(e),
                Ok(item) => node.items.push(item),
            }
            let tok = self.scan();
            if tok.ty != TokenType::Comma {
                self.unscan();
            }
        }
        Ok(node)
    }

    fn consume_comment(&mut self) -> (Comment, i64) {
        let mut endline = self.tok.pos.line as i64;
        if self.tok.text.as_bytes().get(1) == Some(&b'*') {
            endline += self.tok.text.matches('\n').count() as i64;
        }
        let comment = Comment {
            start: self.tok.pos,
            text: self.tok.text.clone(),
        };
        self.tok = self.sc.scan();
        (comment, endline)
    }

    fn consume_comment_group(&mut self, n: i64) -> (CommentGroup, i64) {
        let mut list = Vec::new();
        let mut endline = self.tok.pos.line as i64;
        while self.tok.ty == TokenType::Comment && (self.tok.pos.line as i64) <= endline + n {
            let (comment, end) = self.consume_comment();
            endline = end;
            list.push(comment);
        }
        (CommentGroup { list }, endline)
    }

    fn object_item(&mut self) -> PResult<ObjectItem> {
        let (keys, mut err) = self.object_key();
        if !keys.is_empty() && matches!(err, Some(PErr::Eof)) {
            err = None;
        }
        if !keys.is_empty() && err.is_some() && self.tok.ty == TokenType::RBrace {
            err = None;
            self.tok.ty = TokenType::Eof;
        }
        if let Some(e) = err {
            return Err(e);
        }
        let lead_comment = self.lead_comment.take();
        let mut assign = Pos::default();
        let val = match self.tok.ty {
            TokenType::Assign => {
                assign = self.tok.pos;
                self.object()?
            }
            TokenType::LBrace => Node::ObjectType(self.object_type()?),
            _ => {
                let names: Vec<&str> = keys.iter().map(|k| k.text.as_str()).collect();
                return at(
                    self.tok.pos,
                    format!(
                        "key '{}' expected start of object ('{{') or assignment ('=')",
                        names.join(" ")
                    ),
                );
            }
        };
        let mut item = ObjectItem {
            keys,
            assign,
            val,
            lead_comment,
            line_comment: None,
        };
        if self.line_comment.is_some() {
            item.line_comment = self.line_comment.take();
        }
        self.scan();
        if !item.keys.is_empty()
            && item.val.pos().line == item.keys[0].pos.line
            && self.line_comment.is_some()
        {
            item.line_comment = self.line_comment.take();
        }
        self.unscan();
        Ok(item)
    }

    fn object_key(&mut self) -> (Vec<Token>, Option<PErr>) {
        let mut keys = Vec::new();
        loop {
            let tok = self.scan();
            match tok.ty {
                TokenType::Eof => return (keys, Some(PErr::Eof)),
                TokenType::Assign => {
                    if keys.len() > 1 {
                        return (
                            Vec::new(),
                            Some(PErr::At(
                                self.tok.pos,
                                format!("nested object expected: LBRACE got: {}", self.tok.ty),
                            )),
                        );
                    }
                    if keys.is_empty() {
                        return (
                            Vec::new(),
                            Some(PErr::At(self.tok.pos, "no object keys found!".to_owned())),
                        );
                    }
                    return (keys, None);
                }
                TokenType::LBrace => {
                    let err = keys.is_empty().then(|| {
                        PErr::At(
                            self.tok.pos,
                            format!("expected: IDENT | STRING got: {}", self.tok.ty),
                        )
                    });
                    return (keys, err);
                }
                TokenType::Ident | TokenType::String => keys.push(tok),
                TokenType::Illegal => {
                    return (
                        keys,
                        Some(PErr::At(self.tok.pos, "illegal character".to_owned())),
                    );
                }
                other => {
                    return (
                        keys,
                        Some(PErr::At(
                            self.tok.pos,
                            format!("expected: IDENT | STRING | ASSIGN | LBRACE got: {other}"),
                        )),
                    );
                }
            }
        }
    }

    fn object(&mut self) -> PResult<Node> {
        let tok = self.scan();
        match tok.ty {
            TokenType::Number
            | TokenType::Float
            | TokenType::Bool
            | TokenType::String
            | TokenType::Heredoc => Ok(Node::Literal(LiteralType::new(tok))),
            TokenType::LBrace => Ok(Node::ObjectType(self.object_type()?)),
            TokenType::LBrack => Ok(Node::ListType(self.list_type()?)),
            TokenType::Eof => Err(PErr::Eof),
            _ => at(tok.pos, format!("Unknown token: {tok}")),
        }
    }

    fn object_type(&mut self) -> PResult<ObjectType> {
        let lbrace = self.tok.pos;
        let list = self.object_list(true)?;
        let tok = self.scan();
        if tok.ty != TokenType::RBrace {
            return at(
                tok.pos,
                format!("object expected closing RBRACE got: {}", tok.ty),
            );
        }
        Ok(ObjectType {
            lbrace,
            rbrace: self.tok.pos,
            list,
        })
    }

    fn list_type(&mut self) -> PResult<ListType> {
        let mut l = ListType {
            lbrack: self.tok.pos,
            rbrack: Pos::default(),
            list: Vec::new(),
        };
        let mut need_comma = false;
        loop {
            let tok = self.scan();
            if need_comma && !matches!(tok.ty, TokenType::Comma | TokenType::RBrack) {
                return at(
                    tok.pos,
                    format!(
                        "error parsing list, expected comma or list end, got: {}",
                        tok.ty
                    ),
                );
            }
            match tok.ty {
                TokenType::Bool
                | TokenType::Number
                | TokenType::Float
                | TokenType::String
                | TokenType::Heredoc => {
                    let mut lit = LiteralType::new(tok);
                    if let Some(c) = self.lead_comment.take() {
                        lit.lead_comment = Some(c);
                    }
                    l.list.push(Node::Literal(lit));
                    need_comma = true;
                }
                TokenType::Comma => {
                    self.scan();
                    if self.line_comment.is_some()
                        && let Some(Node::Literal(lit)) = l.list.last_mut()
                    {
                        lit.line_comment = self.line_comment.take();
                    }
                    self.unscan();
                    need_comma = false;
                }
                TokenType::LBrace => match self.object_type() {
                    Ok(o) => {
                        l.list.push(Node::ObjectType(o));
                        need_comma = true;
                    }
                    Err(e) => {
                        return at(
                            tok.pos,
                            format!(
                                "error while trying to parse object within list: {}",
                                perr_text(e)
                            ),
                        );
                    }
                },
                TokenType::LBrack => match self.list_type() {
                    Ok(inner) => l.list.push(Node::ListType(inner)),
                    Err(e) => {
                        return at(
                            tok.pos,
                            format!(
                                "error while trying to parse list within list: {}",
                                perr_text(e)
                            ),
                        );
                    }
                },
                TokenType::RBrack => {
                    l.rbrack = self.tok.pos;
                    return Ok(l);
                }
                other => {
                    return at(
                        tok.pos,
                        format!("unexpected token while parsing list: {other}"),
                    );
                }
            }
        }
    }

    fn scan(&mut self) -> Token {
        if self.unscanned {
            self.unscanned = false;
            return self.tok.clone();
        }
        let prev = self.tok.pos;
        self.tok = self.sc.scan();
        if self.tok.ty == TokenType::Comment {
            let mut comment = None;
            if self.tok.pos.line == prev.line {
                let (group, endline) = self.consume_comment_group(0);
                if self.tok.pos.line as i64 != endline {
                    self.line_comment = Some(group.clone());
                }
                comment = Some(group);
            }
            let mut endline: i64 = -1;
            while self.tok.ty == TokenType::Comment {
                let (group, end) = self.consume_comment_group(1);
                comment = Some(group);
                endline = end;
            }
            if endline + 1 == self.tok.pos.line as i64
                && !matches!(self.tok.ty, TokenType::RBrace | TokenType::RBrack)
            {
                self.lead_comment = comment;
            }
        }
        self.tok.clone()
    }

    fn unscan(&mut self) {
        self.unscanned = true;
    }
}

fn perr_text(e: PErr) -> String {
    match e {
        PErr::Eof => "EOF token found".to_owned(),
        PErr::At(pos, msg) => format!("At {pos}: {msg}"),
    }
}
