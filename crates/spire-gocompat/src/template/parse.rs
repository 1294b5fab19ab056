//! Lexing and parsing of Go's text/template syntax into a tree (`text/template/parse`).
//! Positions are byte offsets into the template text, for Go's `name:line:col` locations.

use super::funcs;

/// A parse failure, worded as Go's `template: NAME:LINE: MSG`.
pub(super) fn parse_error(text: &str, pos: usize, msg: &str) -> String {
    let line = 1 + text[..pos.min(text.len())].matches('\n').count();
    format!("template: {}:{line}: {msg}", super::NAME)
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break(usize),
    Continue(usize),
    /// `{{template "name" pipeline}}` (also what `{{block}}` leaves in place).
    Template {
        pos: usize,
        name_pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
}

/// Named templates from `{{define}}` and `{{block}}`.
pub(super) type Defines = std::collections::BTreeMap<String, Vec<Node>>;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Branch {
    pub(super) pos: usize,
    pub(super) pipe: Pipe,
    pub(super) list: Vec<Node>,
    pub(super) else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pipe {
    pub(super) pos: usize,
    /// Declared (`:=`) or assigned (`=`) variables.
    pub(super) decl: Vec<String>,
    pub(super) is_assign: bool,
    pub(super) cmds: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Command {
    pub(super) pos: usize,
    pub(super) args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Number {
    pub(super) text: String,
    pub(super) int: Option<i64>,
    pub(super) float: Option<f64>,
}

impl Number {
    /// Go's `idealConstant`: a float only when written as one.
    pub(super) fn ideal_is_float(&self) -> bool {
        self.float.is_some()
            && !self.text.starts_with('\'')
            && !is_hex_int(&self.text)
            && self.text.contains(['.', 'e', 'E', 'p', 'P'])
    }
}

fn is_hex_int(s: &str) -> bool {
    let s = s.trim_start_matches(['+', '-']);
    (s.starts_with("0x") || s.starts_with("0X")) && !s.contains(['.', 'p', 'P'])
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
    /// `.A.B` (an empty chain is dot itself).
    Field {
        pos: usize,
        chain: Vec<String>,
    },
    Dot(usize),
    /// `$x.A.B`.
    Var {
        pos: usize,
        name: String,
        chain: Vec<String>,
    },
    /// A function name.
    Ident {
        pos: usize,
        name: String,
    },
    Str {
        pos: usize,
        text: String,
        quoted: String,
    },
    Num {
        pos: usize,
        num: Number,
    },
    Bool {
        pos: usize,
        value: bool,
    },
    Nil(usize),
    /// `(pipeline).A.B`.
    Pipe {
        pos: usize,
        pipe: Box<Pipe>,
        chain: Vec<String>,
    },
}

impl Arg {
    pub(super) fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Dot(pos)
            | Arg::Var { pos, .. }
            | Arg::Ident { pos, .. }
            | Arg::Str { pos, .. }
            | Arg::Num { pos, .. }
            | Arg::Bool { pos, .. }
            | Arg::Nil(pos)
            | Arg::Pipe { pos, .. } => *pos,
        }
    }
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Field { chain, .. } => {
                for c in chain {
                    write!(f, ".{c}")?;
                }
                Ok(())
            }
            Arg::Dot(_) => f.write_str("."),
            Arg::Var { name, chain, .. } => {
                f.write_str(name)?;
                for c in chain {
                    write!(f, ".{c}")?;
                }
                Ok(())
            }
            Arg::Ident { name, .. } => f.write_str(name),
            Arg::Str { quoted, .. } => f.write_str(quoted),
            Arg::Num { num, .. } => f.write_str(&num.text),
            Arg::Bool { value, .. } => write!(f, "{value}"),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Pipe { pipe, chain, .. } => {
                write!(f, "({pipe})")?;
                for c in chain {
                    write!(f, ".{c}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    Left,
    Right,
    Space,
    Pipe,
    LParen,
    RParen,
    Comma,
    Declare,
    Assign,
    Field(String),
    Dot,
    Var(String),
    Ident(String),
    Keyword(&'static str),
    Str(String, String),
    Num(String),
    Char(String),
    Bool(bool),
    Nil,
    Eof,
}

impl Tok {
    /// The token as Go's `item.String` shows it in parse errors.
    fn go(&self) -> String {
        let q = |s: &str| crate::strconv::quote(s);
        match self {
            Tok::Eof => "EOF".into(),
            Tok::Keyword(k) => format!("<{k}>"),
            Tok::Text(t) => q(t),
            Tok::Left => q("{{"),
            Tok::Right => q("}}"),
            Tok::Space => q(" "),
            Tok::Pipe => q("|"),
            Tok::LParen => q("("),
            Tok::RParen => q(")"),
            Tok::Comma => q(","),
            Tok::Declare => q(":="),
            Tok::Assign => q("="),
            Tok::Field(f) => q(&format!(".{f}")),
            Tok::Dot => q("."),
            Tok::Var(v) | Tok::Ident(v) | Tok::Num(v) | Tok::Char(v) => q(v),
            Tok::Str(_, quoted) => q(quoted),
            Tok::Bool(b) => q(&b.to_string()),
            Tok::Nil => q("nil"),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

struct Lexer<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Lexer<'a> {
    fn run(src: &'a str) -> Result<Vec<(Tok, usize)>, String> {
        let mut lx = Lexer {
            src,
            toks: Vec::new(),
        };
        lx.lex_all()?;
        Ok(lx.toks)
    }

    fn err(&self, pos: usize, msg: &str) -> String {
        parse_error(self.src, pos, msg)
    }

    fn lex_all(&mut self) -> Result<(), String> {
        let b = self.src.as_bytes();
        let mut i = 0;
        let mut trim_next_text = false;
        loop {
            let start = i;
            let Some(off) = self.src[i..].find("{{") else {
                let mut t = &self.src[start..];
                if trim_next_text {
                    t = t.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
                }
                if !t.is_empty() {
                    self.toks.push((Tok::Text(t.to_string()), start));
                }
                self.toks.push((Tok::Eof, self.src.len()));
                return Ok(());
            };
            let ld = i + off;
            let mut after = ld + 2;
            let trim_left = b.len() > after + 1 && b[after] == b'-' && is_space(b[after + 1]);
            let mut t = &self.src[start..ld];
            if trim_next_text {
                t = t.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
            }
            if trim_left {
                t = t.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
            }
            if !t.is_empty() {
                self.toks.push((Tok::Text(t.to_string()), start));
            }
            if trim_left {
                after += 2;
            }
            // Comment?
            let mut j = after;
            while trim_left && j < b.len() && is_space(b[j]) {
                j += 1;
            }
            if self.src[j..].starts_with("/*") {
                let Some(end) = self.src[j + 2..].find("*/") else {
                    return Err(self.err(ld, "unclosed comment"));
                };
                let k = j + 2 + end + 2;
                let (close, trim_right) = if self.src[k..].starts_with("}}") {
                    (k + 2, false)
                } else if self.src[k..].starts_with(" -}}") {
                    (k + 4, true)
                } else {
                    return Err(self.err(ld, "comment ends before closing delimiter"));
                };
                i = close;
                trim_next_text = trim_right;
                continue;
            }
            self.toks.push((Tok::Left, ld));
            let (end, trim_right) = self.lex_inside(after)?;
            i = end;
            trim_next_text = trim_right;
        }
    }

    /// Lexes an action's inside from `i`; returns the offset after `}}` and whether a
    /// right trim marker was present.
    fn lex_inside(&mut self, mut i: usize) -> Result<(usize, bool), String> {
        let src = self.src;
        let b = src.as_bytes();
        let mut parens = 0usize;
        loop {
            if src[i..].starts_with("}}") {
                if parens > 0 {
                    return Err(self.err(i, "unclosed left paren"));
                }
                self.toks.push((Tok::Right, i));
                return Ok((i + 2, false));
            }
            if i >= b.len() {
                return Err(self.err(i, "unclosed action"));
            }
            let c = b[i];
            if is_space(c) {
                let s = i;
                while i < b.len() && is_space(b[i]) {
                    i += 1;
                }
                if src[i..].starts_with("-}}") {
                    if parens > 0 {
                        return Err(self.err(i, "unclosed left paren"));
                    }
                    self.toks.push((Tok::Right, i));
                    return Ok((i + 3, true));
                }
                self.toks.push((Tok::Space, s));
                continue;
            }
            match c {
                b'|' => {
                    self.toks.push((Tok::Pipe, i));
                    i += 1;
                }
                b'(' => {
                    parens += 1;
                    self.toks.push((Tok::LParen, i));
                    i += 1;
                }
                b')' => {
                    if parens == 0 {
                        return Err(self.err(i, "unexpected right paren"));
                    }
                    parens -= 1;
                    self.toks.push((Tok::RParen, i));
                    i += 1;
                }
                b',' => {
                    self.toks.push((Tok::Comma, i));
                    i += 1;
                }
                b':' => {
                    if b.get(i + 1) != Some(&b'=') {
                        return Err(self.err(i, "expected :="));
                    }
                    self.toks.push((Tok::Declare, i));
                    i += 2;
                }
                b'=' => {
                    self.toks.push((Tok::Assign, i));
                    i += 1;
                }
                b'"' => {
                    let s = i;
                    i += 1;
                    loop {
                        match b.get(i) {
                            None | Some(b'\n') => {
                                return Err(self.err(s, "unterminated quoted string"));
                            }
                            Some(b'\\') => i += 2,
                            Some(b'"') => break,
                            _ => i += 1,
                        }
                    }
                    i += 1;
                    let quoted = &src[s..i];
                    let text = unquote(quoted)
                        .ok_or_else(|| self.err(s, &format!("invalid syntax: {quoted}")))?;
                    self.toks.push((Tok::Str(text, quoted.to_string()), s));
                }
                b'`' => {
                    let s = i;
                    let Some(end) = src[i + 1..].find('`') else {
                        return Err(self.err(s, "unterminated raw quoted string"));
                    };
                    i = i + 1 + end + 1;
                    let text = src[s + 1..i - 1].replace('\r', "");
                    self.toks.push((Tok::Str(text, src[s..i].to_string()), s));
                }
                b'\'' => {
                    let s = i;
                    i += 1;
                    loop {
                        match b.get(i) {
                            None | Some(b'\n') => {
                                return Err(self.err(s, "unterminated character constant"));
                            }
                            Some(b'\\') => i += 2,
                            Some(b'\'') => break,
                            _ => i += 1,
                        }
                    }
                    i += 1;
                    self.toks.push((Tok::Char(src[s..i].to_string()), s));
                }
                b'$' => {
                    let s = i;
                    i += 1;
                    while i < b.len() && is_alnum(src, i) {
                        i += char_len(src, i);
                    }
                    self.toks.push((Tok::Var(src[s..i].to_string()), s));
                }
                b'.' => {
                    if b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                        let s = i;
                        i = scan_number(src, i);
                        self.toks.push((Tok::Num(src[s..i].to_string()), s));
                        continue;
                    }
                    let s = i;
                    i += 1;
                    if i < b.len() && is_alnum(src, i) {
                        while i < b.len() && is_alnum(src, i) {
                            i += char_len(src, i);
                        }
                        self.toks.push((Tok::Field(src[s + 1..i].to_string()), s));
                    } else {
                        self.toks.push((Tok::Dot, s));
                    }
                }
                b'0'..=b'9' | b'+' | b'-' => {
                    let s = i;
                    i = scan_number(src, i);
                    if i == s || (i == s + 1 && matches!(c, b'+' | b'-')) {
                        return Err(self.err(s, &format!("unexpected {:?} in command", c as char)));
                    }
                    if i < b.len() && is_alnum(src, i) {
                        let mut e = i;
                        while e < b.len() && is_alnum(src, e) {
                            e += char_len(src, e);
                        }
                        return Err(self.err(s, &format!("bad number syntax: {:?}", &src[s..e])));
                    }
                    self.toks.push((Tok::Num(src[s..i].to_string()), s));
                }
                _ if is_alnum(src, i) => {
                    let s = i;
                    while i < b.len() && is_alnum(src, i) {
                        i += char_len(src, i);
                    }
                    let word = &src[s..i];
                    let tok = match word {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        _ => match KEYWORDS.iter().find(|k| **k == word) {
                            Some(k) => Tok::Keyword(k),
                            None => Tok::Ident(word.to_string()),
                        },
                    };
                    self.toks.push((tok, s));
                }
                _ => {
                    let ch = src[i..].chars().next().unwrap_or('?');
                    return Err(self.err(i, &format!("unrecognized character in action: {ch:?}")));
                }
            }
        }
    }
}

fn char_len(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

fn is_alnum(s: &str, i: usize) -> bool {
    s[i..]
        .chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_alphanumeric())
}

fn scan_number(s: &str, mut i: usize) -> usize {
    let b = s.as_bytes();
    if i < b.len() && matches!(b[i], b'+' | b'-') {
        i += 1;
    }
    let mut digits: &[u8] = b"0123456789_";
    if b.get(i) == Some(&b'0') && b.get(i + 1).is_some_and(|c| b"xXoObB".contains(c)) {
        digits = match b[i + 1] {
            b'x' | b'X' => b"0123456789abcdefABCDEF_",
            b'o' | b'O' => b"01234567_",
            _ => b"01_",
        };
        i += 2;
    }
    while i < b.len() && digits.contains(&b[i]) {
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && digits.contains(&b[i]) {
            i += 1;
        }
    }
    let exp: &[u8] = if digits.len() > 20 { b"pP" } else { b"eE" };
    if i < b.len() && exp.contains(&b[i]) {
        i += 1;
        if i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() || b.get(i) == Some(&b'_') {
            i += 1;
        }
    }
    i
}

/// Go's `strconv.Unquote` for a double-quoted literal.
pub(super) fn unquote(q: &str) -> Option<String> {
    let inner = q.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = inner.chars().peekable();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| -> Option<()> {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
        Some(())
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut bytes, &mut out)?;
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(s) = simple {
            flush(&mut bytes, &mut out)?;
            out.push(s);
            continue;
        }
        let take = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize, radix: u32| {
            let mut v: u32 = 0;
            for _ in 0..n {
                v = v * radix + chars.next()?.to_digit(radix)?;
            }
            Some(v)
        };
        match e {
            'x' => bytes.push(u8::try_from(take(&mut chars, 2, 16)?).ok()?),
            '0'..='7' => {
                let v = e.to_digit(8)? * 64 + take(&mut chars, 2, 8)?;
                bytes.push(u8::try_from(v).ok()?);
            }
            'u' => {
                flush(&mut bytes, &mut out)?;
                out.push(char::from_u32(take(&mut chars, 4, 16)?)?);
            }
            'U' => {
                flush(&mut bytes, &mut out)?;
                out.push(char::from_u32(take(&mut chars, 8, 16)?)?);
            }
            _ => return None,
        }
    }
    flush(&mut bytes, &mut out)?;
    Some(out)
}

fn parse_number(text: &str) -> Option<Number> {
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        let s = unquote(&format!("\"{}\"", inner.replace("\\'", "'")))?;
        let mut cs = s.chars();
        let c = cs.next()?;
        if cs.next().is_some() {
            return None;
        }
        return Some(Number {
            text: text.into(),
            int: Some(i64::from(u32::from(c))),
            float: Some(f64::from(u32::from(c))),
        });
    }
    let clean = text.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let int = {
        let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
            (16, d.to_string())
        } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
            (8, d.to_string())
        } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
            (2, d.to_string())
        } else if body.len() > 1
            && body.starts_with('0')
            && body.bytes().all(|c| c.is_ascii_digit())
        {
            (8, body[1..].to_string())
        } else {
            (10, body.clone())
        };
        i128::from_str_radix(&digits, radix)
            .ok()
            .map(|v| if neg { -v } else { v })
    };
    let mut n = Number {
        text: text.into(),
        int: None,
        float: None,
    };
    if let Some(v) = int {
        let v = i64::try_from(v).ok()?;
        n.int = Some(v);
        #[allow(clippy::cast_precision_loss)]
        {
            n.float = Some(v as f64);
        }
        return Some(n);
    }
    let f: f64 = clean.parse().ok()?;
    if !text.contains(['.', 'e', 'E', 'p', 'P']) {
        return None;
    }
    n.float = Some(f);
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        n.int = Some(f as i64);
    }
    Some(n)
}

/// Whether a template body is only whitespace text (Go's `IsEmptyTree`).
fn is_empty_tree(nodes: &[Node]) -> bool {
    nodes.iter().all(|n| match n {
        Node::Text(t) => t.trim().is_empty(),
        _ => false,
    })
}

// ---- parser ----

pub(super) struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    i: usize,
    vars: Vec<String>,
    range_depth: usize,
    defines: Defines,
}

enum ListEnd {
    Eof,
    End(usize),
    Else(usize),
}

impl<'a> Parser<'a> {
    pub(super) fn parse(src: &'a str) -> Result<(Vec<Node>, Defines), String> {
        let toks = Lexer::run(src)?;
        let mut p = Parser {
            src,
            toks,
            i: 0,
            vars: vec!["$".into()],
            range_depth: 0,
            defines: Defines::new(),
        };
        let (list, end) = p.list()?;
        match end {
            ListEnd::Eof => Ok((list, p.defines)),
            ListEnd::End(pos) => Err(p.err(pos, "unexpected {{end}}")),
            ListEnd::Else(pos) => Err(p.err(pos, "unexpected {{else}}")),
        }
    }

    fn err(&self, pos: usize, msg: &str) -> String {
        parse_error(self.src, pos, msg)
    }

    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> (Tok, usize) {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn next_non_space(&mut self) -> (Tok, usize) {
        loop {
            let t = self.next();
            if t.0 != Tok::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> (Tok, usize) {
        let save = self.i;
        let t = self.next_non_space();
        self.i = save;
        t
    }

    fn list(&mut self) -> Result<(Vec<Node>, ListEnd), String> {
        let mut out = Vec::new();
        loop {
            let (tok, pos) = self.next();
            match tok {
                Tok::Eof => return Ok((out, ListEnd::Eof)),
                Tok::Text(t) => out.push(Node::Text(t)),
                Tok::Left => {
                    let (t2, p2) = self.peek_non_space();
                    match t2 {
                        Tok::Keyword("end") => {
                            self.next_non_space();
                            self.expect_right("end")?;
                            return Ok((out, ListEnd::End(p2)));
                        }
                        Tok::Keyword("else") => {
                            self.next_non_space();
                            return Ok((out, ListEnd::Else(p2)));
                        }
                        Tok::Keyword(k) => {
                            self.next_non_space();
                            out.push(self.keyword(k, p2)?);
                        }
                        _ => {
                            let pipe = self.pipeline("command", pos)?;
                            out.push(Node::Action(pipe));
                        }
                    }
                }
                other => return Err(self.err(pos, &format!("unexpected {}", other.go()))),
            }
        }
    }

    fn expect_right(&mut self, ctx: &str) -> Result<(), String> {
        let (t, pos) = self.next_non_space();
        if t != Tok::Right {
            return Err(self.err(pos, &format!("unexpected {} in {ctx}", t.go())));
        }
        Ok(())
    }

    fn keyword(&mut self, k: &str, pos: usize) -> Result<Node, String> {
        match k {
            "if" | "with" | "range" => self.branch(k, pos),
            "break" | "continue" => {
                if self.range_depth == 0 {
                    return Err(self.err(pos, &format!("{{{{{k}}}}} outside {{{{range}}}}")));
                }
                self.expect_right(k)?;
                Ok(if k == "break" {
                    Node::Break(pos)
                } else {
                    Node::Continue(pos)
                })
            }
            "define" | "block" => {
                let (t, p) = self.next_non_space();
                let name_pos = p;
                let Tok::Str(name, _) = t else {
                    return Err(self.err(p, &format!("unexpected {} in {k} clause", t.go())));
                };
                let pipe = if k == "block" {
                    Some(self.pipeline("block", pos)?)
                } else {
                    self.expect_right("define clause")?;
                    None
                };
                // A defined template has its own variable scope.
                let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
                let saved_range = std::mem::take(&mut self.range_depth);
                let (body, end) = self.list()?;
                self.vars = saved;
                self.range_depth = saved_range;
                match end {
                    ListEnd::End(_) => {}
                    ListEnd::Eof => return Err(self.err(self.src.len(), "unexpected EOF")),
                    ListEnd::Else(p) => return Err(self.err(p, "unexpected {{else}}")),
                }
                if let Some(prev) = self.defines.get(&name)
                    && !is_empty_tree(prev)
                    && !is_empty_tree(&body)
                {
                    {
                        return Err(self.err(
                            pos,
                            &format!("template: multiple definition of template {name:?}"),
                        ));
                    }
                }
                if !is_empty_tree(&body) || !self.defines.contains_key(&name) {
                    self.defines.insert(name.clone(), body);
                }
                Ok(match pipe {
                    Some(pipe) => Node::Template {
                        pos,
                        name_pos,
                        name,
                        pipe: Some(pipe),
                    },
                    None => Node::Text(String::new()),
                })
            }
            "template" => {
                let (t, p) = self.next_non_space();
                let Tok::Str(name, _) = t else {
                    return Err(self.err(p, &format!("unexpected {} in template clause", t.go())));
                };
                let (t2, _) = self.peek_non_space();
                let pipe = if t2 == Tok::Right {
                    self.next_non_space();
                    None
                } else {
                    Some(self.pipeline("template clause", pos)?)
                };
                Ok(Node::Template {
                    pos,
                    name_pos: p,
                    name,
                    pipe,
                })
            }
            _ => Err(self.err(pos, &format!("unexpected <{k}>"))),
        }
    }

    fn branch(&mut self, k: &str, pos: usize) -> Result<Node, String> {
        let vars_len = self.vars.len();
        let pipe = self.pipeline(k, pos)?;
        if k == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.list()?;
        if k == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            ListEnd::Eof => return Err(self.err(self.src.len(), "unexpected EOF")),
            ListEnd::End(_) => None,
            ListEnd::Else(_) => {
                // `{{else if ...}}` / `{{else with ...}}` chain into a nested branch.
                let (t, p) = self.peek_non_space();
                if (k == "if" && t == Tok::Keyword("if"))
                    || (k == "with" && t == Tok::Keyword("with"))
                {
                    self.next_non_space();
                    let nested = self.branch(k, p)?;
                    Some(vec![nested])
                } else {
                    self.expect_right("else")?;
                    let (else_list, end2) = self.list()?;
                    match end2 {
                        ListEnd::End(_) => Some(else_list),
                        ListEnd::Eof => {
                            return Err(self.err(self.src.len(), "unexpected EOF"));
                        }
                        ListEnd::Else(p) => {
                            return Err(self.err(p, "expected end; found {{else}}"));
                        }
                    }
                }
            }
        };
        self.vars.truncate(vars_len);
        let b = Branch {
            pos,
            pipe,
            list,
            else_list,
        };
        Ok(match k {
            "if" => Node::If(b),
            "with" => Node::With(b),
            _ => Node::Range(b),
        })
    }

    /// A pipeline up to `}}` (or `)` when `ctx` is "parenthesized pipeline").
    fn pipeline(&mut self, ctx: &str, pos: usize) -> Result<Pipe, String> {
        let mut decl = Vec::new();
        let mut is_assign = false;
        // Declarations: `$x :=`, `$x =`, `$i, $v :=` (range).
        let save = self.i;
        let (t, _) = self.peek_non_space();
        if let Tok::Var(name) = t {
            self.next_non_space();
            let (t2, p2) = self.peek_non_space();
            match t2 {
                Tok::Declare | Tok::Assign => {
                    self.next_non_space();
                    is_assign = t2 == Tok::Assign;
                    decl.push(name);
                }
                Tok::Comma if ctx == "range" => {
                    self.next_non_space();
                    let (t3, p3) = self.next_non_space();
                    let Tok::Var(name2) = t3 else {
                        return Err(self.err(p3, "range can only initialize variables"));
                    };
                    let (t4, p4) = self.next_non_space();
                    match t4 {
                        Tok::Declare => {}
                        Tok::Assign => is_assign = true,
                        _ => return Err(self.err(p4, "range can only initialize variables")),
                    }
                    decl.push(name);
                    decl.push(name2);
                }
                _ => {
                    let _ = p2;
                    self.i = save;
                }
            }
        } else {
            self.i = save;
        }
        if is_assign {
            for d in &decl {
                if !self.vars.contains(d) {
                    return Err(self.err(pos, &format!("undefined variable {d:?}")));
                }
            }
        }
        let mut cmds = Vec::new();
        let end_tok = if ctx == "parenthesized pipeline" {
            Tok::RParen
        } else {
            Tok::Right
        };
        loop {
            let (t, p) = self.peek_non_space();
            if t == end_tok {
                self.next_non_space();
                if cmds.is_empty() {
                    return Err(self.err(p, &format!("missing value for {ctx}")));
                }
                break;
            }
            let cmd = self.command(&end_tok)?;
            cmds.push(cmd);
        }
        if !is_assign {
            for d in &decl {
                self.vars.push(d.clone());
            }
        }
        for (i, c) in cmds.iter().enumerate() {
            if i > 0 {
                match &c.args[0] {
                    Arg::Bool { .. }
                    | Arg::Dot(_)
                    | Arg::Nil(_)
                    | Arg::Num { .. }
                    | Arg::Str { .. } => {
                        return Err(self.err(
                            c.pos,
                            &format!("non executable command in pipeline stage {}", i + 1),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(Pipe {
            pos,
            decl,
            is_assign,
            cmds,
        })
    }

    fn command(&mut self, end_tok: &Tok) -> Result<Command, String> {
        let mut args = Vec::new();
        let (_, pos) = self.peek_non_space();
        loop {
            let (t, p) = self.peek_non_space();
            if &t == end_tok || t == Tok::Pipe {
                if t == Tok::Pipe {
                    if args.is_empty() {
                        return Err(self.err(p, "unexpected \"|\" in command"));
                    }
                    self.next_non_space();
                }
                break;
            }
            let operand = self.operand()?;
            args.push(operand);
            // Operands must be separated by space.
            let (t2, p2) = self.peek().clone();
            match t2 {
                Tok::Space | Tok::Pipe | Tok::Right | Tok::RParen => {}
                _ => {
                    return Err(self.err(p2, &format!("unexpected {} in operand", t2.go())));
                }
            }
        }
        if args.is_empty() {
            return Err(self.err(pos, "empty command"));
        }
        Ok(Command { pos, args })
    }

    /// Trailing `.Field`s; Go positions a chained term at its first trailing field.
    fn chain_at(&mut self, pos: &mut usize) -> Vec<String> {
        if let (Tok::Field(_), p) = self.peek() {
            *pos = *p;
        }
        self.chain()
    }

    fn chain(&mut self) -> Vec<String> {
        let mut chain = Vec::new();
        while let (Tok::Field(f), _) = self.peek().clone() {
            self.next();
            chain.push(f);
        }
        chain
    }

    fn operand(&mut self) -> Result<Arg, String> {
        let (t, mut pos) = self.next_non_space();
        let arg = match t {
            Tok::Field(f) => {
                let mut chain = vec![f];
                chain.extend(self.chain_at(&mut pos));
                Arg::Field { pos, chain }
            }
            Tok::Dot => {
                if let (Tok::Field(_), p) = self.peek().clone() {
                    return Err(self.err(p, "unexpected . after term \".\""));
                }
                Arg::Dot(pos)
            }
            Tok::Var(name) => {
                if !self.vars.contains(&name) {
                    return Err(self.err(pos, &format!("undefined variable {name:?}")));
                }
                let chain = self.chain_at(&mut pos);
                Arg::Var { pos, name, chain }
            }
            Tok::Ident(name) => {
                if !funcs::is_defined(&name) {
                    return Err(self.err(pos, &format!("function {name:?} not defined")));
                }
                if let (Tok::Field(_), p) = self.peek().clone() {
                    return Err(self.err(p, &format!("unexpected . after term {name:?}")));
                }
                Arg::Ident { pos, name }
            }
            Tok::Str(text, quoted) => Arg::Str { pos, text, quoted },
            Tok::Num(text) | Tok::Char(text) => {
                let num = parse_number(&text).ok_or_else(|| {
                    let digits = text.trim_start_matches(['+', '-']);
                    let msg = if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                        format!("integer overflow: {text:?}")
                    } else {
                        format!("illegal number syntax: {text:?}")
                    };
                    self.err(pos, &msg)
                })?;
                Arg::Num { pos, num }
            }
            Tok::Bool(value) => Arg::Bool { pos, value },
            Tok::Nil => Arg::Nil(pos),
            Tok::LParen => {
                let pipe = self.pipeline("parenthesized pipeline", pos)?;
                let chain = self.chain_at(&mut pos);
                Arg::Pipe {
                    pos,
                    pipe: Box::new(pipe),
                    chain,
                }
            }
            Tok::Keyword(k) => {
                return Err(self.err(pos, &format!("unexpected <{k}> in command")));
            }
            other => return Err(self.err(pos, &format!("unexpected {} in command", other.go()))),
        };
        Ok(arg)
    }
}
