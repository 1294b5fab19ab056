//! The HCL and JSON scanners. Positions, error positions and the odd corners (what counts
//! as a number, when a heredoc ends) follow hashicorp/hcl v1's scanners, because SPIRE's
//! error messages print them.

use super::strconv::{unindent_heredoc, unquote};
use super::token::{Pos, Token, TokenType};

/// hcl's end-of-input sentinel (Go `rune(0)`).
const EOF: char = '\0';

/// Character reader with hcl's position bookkeeping.
struct Reader<'a> {
    src: &'a str,
    /// Byte offset of the next character to read.
    next: usize,
    /// Size of the last character successfully read (for `unread`).
    last_read: usize,
    src_pos: Pos,
    prev_pos: Pos,
    last_char_len: usize,
    last_line_len: usize,
    /// The last error reported, as hcl's parser keeps only the last one.
    error: Option<(Pos, String)>,
}

impl<'a> Reader<'a> {
    fn new(src: &'a str) -> Reader<'a> {
        Reader {
            src,
            next: 0,
            last_read: 0,
            src_pos: Pos {
                offset: 0,
                line: 1,
                column: 0,
            },
            prev_pos: Pos::default(),
            last_char_len: 0,
            last_line_len: 0,
            error: None,
        }
    }

    fn read(&mut self) -> char {
        let Some(ch) = self.src[self.next..].chars().next() else {
            self.src_pos.column += 1;
            self.last_char_len = 0;
            return EOF;
        };
        let size = ch.len_utf8();
        self.next += size;
        self.last_read = size;
        self.prev_pos = self.src_pos;
        self.src_pos.column += 1;
        self.last_char_len = size;
        self.src_pos.offset += size;
        if ch == '\n' {
            self.src_pos.line += 1;
            self.last_line_len = self.src_pos.column;
            self.src_pos.column = 0;
        }
        if ch == '\0' {
            self.err("unexpected null character (0x00)");
            return EOF;
        }
        if ch == '\u{E123}' {
            self.err("unicode code point U+E123 reserved for internal use");
            return '\u{FFFD}';
        }
        ch
    }

    fn unread(&mut self) {
        self.next = self.next.saturating_sub(self.last_read);
        self.src_pos = self.prev_pos;
    }

    fn peek(&self) -> char {
        self.src[self.next..].chars().next().unwrap_or(EOF)
    }

    fn recent_position(&self) -> Pos {
        let offset = self.src_pos.offset.saturating_sub(self.last_char_len);
        if self.src_pos.column > 0 {
            Pos {
                offset,
                line: self.src_pos.line,
                column: self.src_pos.column,
            }
        } else if self.last_line_len > 0 {
            Pos {
                offset,
                line: self.src_pos.line - 1,
                column: self.last_line_len,
            }
        } else {
            Pos {
                offset,
                line: 1,
                column: 1,
            }
        }
    }

    fn err(&mut self, msg: &str) {
        let pos = self.recent_position();
        self.error = Some((pos, msg.to_owned()));
    }

    /// Position and start offset of a token whose first character was just read.
    fn token_start(&self) -> (Pos, usize) {
        let start = self.src_pos.offset.saturating_sub(self.last_char_len);
        let pos = if self.src_pos.column > 0 {
            Pos {
                offset: start,
                line: self.src_pos.line,
                column: self.src_pos.column,
            }
        } else {
            Pos {
                offset: start,
                line: self.src_pos.line.saturating_sub(1),
                column: self.last_line_len,
            }
        };
        (pos, start)
    }

    fn text(&self, start: usize) -> String {
        self.src
            .get(start..self.src_pos.offset)
            .unwrap_or_default()
            .to_owned()
    }

    fn scan_mantissa(&mut self, mut ch: char) -> char {
        let mut scanned = false;
        while ch.is_ascii_digit() {
            ch = self.read();
            scanned = true;
        }
        if scanned && ch != EOF {
            self.unread();
        }
        ch
    }

    fn scan_fraction(&mut self, ch: char) -> char {
        if ch == '.' {
            let p = self.peek();
            return self.scan_mantissa(p);
        }
        ch
    }

    fn scan_exponent(&mut self, mut ch: char) -> char {
        if ch == 'e' || ch == 'E' {
            ch = self.read();
            if ch == '-' || ch == '+' {
                ch = self.read();
            }
            ch = self.scan_mantissa(ch);
        }
        ch
    }

    fn scan_digits(&mut self, mut ch: char, base: u32, mut n: usize, hcl: bool) {
        let start = n;
        while n > 0 && ch.to_digit(16).is_some_and(|d| d < base) {
            ch = self.read();
            if hcl && ch == EOF {
                break;
            }
            n -= 1;
        }
        if n > 0 {
            self.err("illegal char escape");
        }
        if hcl {
            if n != start && ch != EOF {
                self.unread();
            }
        } else {
            self.unread();
        }
    }

    fn scan_escape(&mut self, hcl: bool) {
        let ch = self.read();
        match ch {
            'a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '"' => {}
            '0'..='7' => self.scan_digits(ch, 8, 3, hcl),
            'x' => {
                let c = self.read();
                self.scan_digits(c, 16, 2, hcl);
            }
            'u' => {
                let c = self.read();
                self.scan_digits(c, 16, 4, hcl);
            }
            'U' => {
                let c = self.read();
                self.scan_digits(c, 16, 8, hcl);
            }
            _ => self.err("illegal char escape"),
        }
    }

    fn scan_string(&mut self, hcl: bool) {
        let mut braces = 0usize;
        loop {
            let ch = self.read();
            if (ch == '\n' && (!hcl || braces == 0)) || ch == EOF {
                self.err("literal not terminated");
                return;
            }
            if ch == '"' && (!hcl || braces == 0) {
                break;
            }
            if braces == 0 && ch == '$' && self.peek() == '{' {
                braces += 1;
                self.read();
            } else if braces > 0 && ch == '{' {
                braces += 1;
            }
            if braces > 0 && ch == '}' {
                braces -= 1;
            }
            if ch == '\\' {
                self.scan_escape(hcl);
            }
        }
    }
}

fn is_letter(ch: char) -> bool {
    ch.is_ascii_alphabetic() || ch == '_' || (ch as u32 >= 0x80 && ch.is_alphabetic())
}

fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (ch as u32 >= 0x80 && ch.is_numeric())
}

fn is_whitespace(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\n' | '\r')
}

/// The HCL scanner.
pub(crate) struct HclScanner<'a> {
    r: Reader<'a>,
}

impl<'a> HclScanner<'a> {
    pub(crate) fn new(src: &'a str) -> HclScanner<'a> {
        HclScanner {
            r: Reader::new(src),
        }
    }

    /// The last scanner error, if any.
    pub(crate) fn error(&self) -> Option<&(Pos, String)> {
        self.r.error.as_ref()
    }

    pub(crate) fn scan(&mut self) -> Token {
        let mut ch = self.r.read();
        while is_whitespace(ch) {
            ch = self.r.read();
        }
        let (pos, start) = self.r.token_start();
        let ty = if is_letter(ch) {
            let lit = self.scan_identifier(start);
            if lit == "true" || lit == "false" {
                TokenType::Bool
            } else {
                TokenType::Ident
            }
        } else if ch.is_ascii_digit() {
            self.scan_number(ch)
        } else {
            match ch {
                EOF => TokenType::Eof,
                '"' => {
                    self.r.scan_string(true);
                    TokenType::String
                }
                '#' | '/' => {
                    self.scan_comment(ch);
                    TokenType::Comment
                }
                '.' => {
                    let p = self.r.peek();
                    if p.is_ascii_digit() {
                        let c = self.r.scan_mantissa(p);
                        self.r.scan_exponent(c);
                        TokenType::Float
                    } else {
                        TokenType::Period
                    }
                }
                '<' => {
                    self.scan_heredoc();
                    TokenType::Heredoc
                }
                '[' => TokenType::LBrack,
                ']' => TokenType::RBrack,
                '{' => TokenType::LBrace,
                '}' => TokenType::RBrace,
                ',' => TokenType::Comma,
                '=' => TokenType::Assign,
                '+' => TokenType::Add,
                '-' => {
                    if self.r.peek().is_ascii_digit() {
                        let c = self.r.read();
                        self.scan_number(c)
                    } else {
                        TokenType::Sub
                    }
                }
                _ => {
                    self.r.err("illegal char");
                    TokenType::Illegal
                }
            }
        };
        let text = self.r.text(start);
        let mut tok = Token::new(ty, pos, text);
        match ty {
            TokenType::String => match unquote(&tok.text, true) {
                Some(v) => tok.value = v,
                None if self.r.error.is_none() => {
                    self.r.error = Some((pos, format!("unquote {} err: invalid syntax", tok.text)));
                }
                None => {}
            },
            TokenType::Heredoc => {
                if let Some(v) = unindent_heredoc(&tok.text) {
                    tok.value = v;
                }
            }
            _ => {}
        }
        tok
    }

    fn scan_identifier(&mut self, start: usize) -> String {
        let mut ch = self.r.read();
        while is_letter(ch) || is_digit(ch) || ch == '-' || ch == '.' {
            ch = self.r.read();
        }
        if ch != EOF {
            self.r.unread();
        }
        self.r.text(start)
    }

    fn scan_comment(&mut self, ch: char) {
        if ch == '#' || (ch == '/' && self.r.peek() != '*') {
            if ch == '/' && self.r.peek() != '/' {
                self.r.err("expected '/' for comment");
                return;
            }
            let mut c = self.r.read();
            while c != '\n' && c != EOF {
                c = self.r.read();
            }
            if c != EOF {
                self.r.unread();
            }
            return;
        }
        let mut c = ch;
        if c == '/' {
            self.r.read();
            c = self.r.read();
        }
        loop {
            if c == EOF {
                self.r.err("comment not terminated");
                break;
            }
            let c0 = c;
            c = self.r.read();
            if c0 == '*' && c == '/' {
                break;
            }
        }
    }

    fn scan_number(&mut self, ch: char) -> TokenType {
        let mut ch = ch;
        if ch == '0' {
            ch = self.r.read();
            if ch == 'x' || ch == 'X' {
                ch = self.r.read();
                let mut found = false;
                while ch.is_ascii_hexdigit() {
                    ch = self.r.read();
                    found = true;
                }
                if !found {
                    self.r.err("illegal hexadecimal number");
                }
                if ch != EOF {
                    self.r.unread();
                }
                return TokenType::Number;
            }
            let mut illegal_octal = false;
            while ch.is_ascii_digit() {
                ch = self.r.read();
                if ch == '8' || ch == '9' {
                    illegal_octal = true;
                }
            }
            if ch == 'e' || ch == 'E' {
                self.r.scan_exponent(ch);
                return TokenType::Float;
            }
            if ch == '.' {
                ch = self.r.scan_fraction(ch);
                if ch == 'e' || ch == 'E' {
                    ch = self.r.read();
                    self.r.scan_exponent(ch);
                }
                return TokenType::Float;
            }
            if illegal_octal {
                self.r.err("illegal octal number");
            }
            if ch != EOF {
                self.r.unread();
            }
            return TokenType::Number;
        }
        self.r.scan_mantissa(ch);
        ch = self.r.read();
        if ch == 'e' || ch == 'E' {
            self.r.scan_exponent(ch);
            return TokenType::Float;
        }
        if ch == '.' {
            ch = self.r.scan_fraction(ch);
            if ch == 'e' || ch == 'E' {
                ch = self.r.read();
                self.r.scan_exponent(ch);
            }
            return TokenType::Float;
        }
        if ch != EOF {
            self.r.unread();
        }
        TokenType::Number
    }

    fn scan_heredoc(&mut self) {
        if self.r.read() != '<' {
            self.r.err("heredoc expected second '<', didn't see it");
            return;
        }
        let offs = self.r.src_pos.offset;
        let mut ch = self.r.read();
        if ch == '-' {
            ch = self.r.read();
        }
        while is_letter(ch) || is_digit(ch) {
            ch = self.r.read();
        }
        if ch == EOF {
            self.r.err("heredoc not terminated");
            return;
        }
        if ch == '\r' && self.r.peek() == '\n' {
            ch = self.r.read();
        }
        if ch != '\n' {
            self.r.err("invalid characters in heredoc anchor");
            return;
        }
        let end = self.r.src_pos.offset - self.r.last_char_len;
        let ident = self.r.src.get(offs..end).unwrap_or_default().to_owned();
        if ident.is_empty() || ident == "-" {
            self.r.err("zero-length heredoc anchor");
            return;
        }
        let anchor = ident.strip_prefix('-').unwrap_or(&ident).to_owned();
        let mut line_start = self.r.src_pos.offset;
        loop {
            let ch = self.r.read();
            if ch == '\n' {
                let line_end = self.r.src_pos.offset - self.r.last_char_len;
                let line = self.r.src.get(line_start..line_end).unwrap_or_default();
                if line.len() >= ident.len() && anchor_matches(line, &anchor) {
                    break;
                }
                line_start = self.r.src_pos.offset;
            }
            if ch == EOF {
                self.r.err("heredoc not terminated");
                return;
            }
        }
    }
}

/// `^[[:space:]]*ANCHOR\r*\z`.
fn anchor_matches(line: &str, anchor: &str) -> bool {
    let trimmed = line.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
    let Some(rest) = trimmed.strip_prefix(anchor) else {
        return false;
    };
    rest.chars().all(|c| c == '\r')
}

/// The JSON scanner (hcl's `json/scanner`).
pub(crate) struct JsonScanner<'a> {
    r: Reader<'a>,
}

impl<'a> JsonScanner<'a> {
    pub(crate) fn new(src: &'a str) -> JsonScanner<'a> {
        JsonScanner {
            r: Reader::new(src),
        }
    }

    pub(crate) fn error(&self) -> Option<&(Pos, String)> {
        self.r.error.as_ref()
    }

    pub(crate) fn scan(&mut self) -> Token {
        let mut ch = self.r.read();
        while is_whitespace(ch) {
            ch = self.r.read();
        }
        let (pos, start) = self.r.token_start();
        let ty = if is_letter(ch) {
            let mut c = self.r.read();
            while is_letter(c) || is_digit(c) || c == '-' {
                c = self.r.read();
            }
            if c != EOF {
                self.r.unread();
            }
            let lit = self.r.text(start);
            match lit.as_str() {
                "true" | "false" => TokenType::Bool,
                "null" => TokenType::Null,
                _ => {
                    self.r.err("illegal char");
                    TokenType::Illegal
                }
            }
        } else if ch.is_ascii_digit() {
            self.scan_number(ch)
        } else {
            match ch {
                EOF => TokenType::Eof,
                '"' => {
                    self.r.scan_string(false);
                    TokenType::String
                }
                '.' => {
                    let p = self.r.peek();
                    if p.is_ascii_digit() {
                        let c = self.r.scan_mantissa(p);
                        self.r.scan_exponent(c);
                        TokenType::Float
                    } else {
                        TokenType::Period
                    }
                }
                '[' => TokenType::LBrack,
                ']' => TokenType::RBrack,
                '{' => TokenType::LBrace,
                '}' => TokenType::RBrace,
                ',' => TokenType::Comma,
                ':' => TokenType::Colon,
                '-' => {
                    if self.r.peek().is_ascii_digit() {
                        let c = self.r.read();
                        self.scan_number(c)
                    } else {
                        self.r.err("illegal char");
                        TokenType::Illegal
                    }
                }
                c => {
                    self.r.err(&format!("illegal char: {c}"));
                    TokenType::Illegal
                }
            }
        };
        let text = self.r.text(start);
        let mut tok = Token::new(ty, pos, text);
        if ty == TokenType::String {
            match unquote(&tok.text, false) {
                Some(v) => tok.value = v,
                None if self.r.error.is_none() => {
                    self.r.error = Some((pos, format!("unquote {} err: invalid syntax", tok.text)));
                }
                None => {}
            }
            tok.json = true;
        }
        tok
    }

    fn scan_number(&mut self, ch: char) -> TokenType {
        let zero = ch == '0';
        let pos = self.r.src_pos;
        self.r.scan_mantissa(ch);
        let mut ch = self.r.read();
        if ch == 'e' || ch == 'E' {
            self.r.scan_exponent(ch);
            return TokenType::Float;
        }
        if ch == '.' {
            ch = self.r.scan_fraction(ch);
            if ch == 'e' || ch == 'E' {
                ch = self.r.read();
                self.r.scan_exponent(ch);
            }
            return TokenType::Float;
        }
        if ch != EOF {
            self.r.unread();
        }
        if zero && pos != self.r.src_pos {
            self.r.err("numbers cannot start with 0");
        }
        TokenType::Number
    }
}
