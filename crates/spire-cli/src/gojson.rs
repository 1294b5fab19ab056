//! Go's `encoding/json`, as far as SPIRE's CLI shows it: `json.Unmarshal`
//! into fixed Go structs (syntax errors, type errors with their field
//! paths, case-insensitive keys, `json.RawMessage`), and `json.Marshal`'s
//! text (sorted map keys, HTML escaping, float formatting).

use spire_gocompat::strconv::quote;

/// A parsed JSON value with the byte range of its text (for `RawMessage`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: JVal,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A JSON value; numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JVal {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

impl JVal {
    /// The word Go's `UnmarshalTypeError` uses for this kind of value.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            JVal::Null => "null",
            JVal::Bool(_) => "bool",
            JVal::Num(_) => "number",
            JVal::Str(_) => "string",
            JVal::Arr(_) => "array",
            JVal::Obj(_) => "object",
        }
    }
}

const EOF_ERR: &str = "unexpected end of JSON input";

/// Go's `quoteChar`.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_owned(),
        b'"' => "'\"'".to_owned(),
        _ => {
            let q = quote(&char::from(c).to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn invalid(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote_char(c))
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && is_space(self.s[self.i]) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self) -> Result<Node, String> {
        self.ws();
        let start = self.i;
        let Some(c) = self.peek() else {
            return Err(EOF_ERR.to_owned());
        };
        let value = match c {
            b'{' => {
                self.i += 1;
                self.object()?
            }
            b'[' => {
                self.i += 1;
                self.array()?
            }
            b'"' => {
                self.i += 1;
                JVal::Str(self.string()?)
            }
            b'-' | b'0'..=b'9' => JVal::Num(self.number()?),
            b't' => {
                self.literal(b"true")?;
                JVal::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                JVal::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                JVal::Null
            }
            _ => return Err(invalid(c, "looking for beginning of value")),
        };
        Ok(Node {
            value,
            start,
            end: self.i,
        })
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        let name = String::from_utf8_lossy(word).into_owned();
        self.i += 1;
        for &expected in &word[1..] {
            let Some(c) = self.peek() else {
                return Err(EOF_ERR.to_owned());
            };
            if c != expected {
                return Err(invalid(
                    c,
                    &format!("in literal {name} (expecting {})", quote_char(expected)),
                ));
            }
            self.i += 1;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn number(&mut self) -> Result<String, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
            match self.peek() {
                None => return Err(EOF_ERR.to_owned()),
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(invalid(c, "in numeric literal")),
            }
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else {
            self.digits();
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            match self.peek() {
                None => return Err(EOF_ERR.to_owned()),
                Some(b'0'..=b'9') => self.digits(),
                Some(c) => return Err(invalid(c, "after decimal point in numeric literal")),
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            match self.peek() {
                None => return Err(EOF_ERR.to_owned()),
                Some(b'0'..=b'9') => self.digits(),
                Some(c) => return Err(invalid(c, "in exponent of numeric literal")),
            }
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..4 {
            let Some(c) = self.peek() else {
                return Err(EOF_ERR.to_owned());
            };
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(invalid(c, "in \\u hexadecimal character escape")),
            };
            v = v * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    /// A string after its opening quote, unquoted as Go does (invalid
    /// UTF-8 and lone surrogates become U+FFFD).
    fn string(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(EOF_ERR.to_owned());
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(EOF_ERR.to_owned());
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let r = self.hex4()?;
                            if (0xD800..0xE000).contains(&r) {
                                // A surrogate: combine with a following low one.
                                let save = self.i;
                                if r < 0xDC00
                                    && self.s.get(self.i) == Some(&b'\\')
                                    && self.s.get(self.i + 1) == Some(&b'u')
                                {
                                    self.i += 2;
                                    match self.hex4() {
                                        Ok(r2) if (0xDC00..0xE000).contains(&r2) => {
                                            let c = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
                                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                            continue;
                                        }
                                        Ok(_) => self.i = save,
                                        Err(e) => return Err(e),
                                    }
                                }
                                out.push('\u{FFFD}');
                            } else {
                                out.push(char::from_u32(r).unwrap_or('\u{FFFD}'));
                            }
                        }
                        _ => return Err(invalid(e, "in string escape code")),
                    }
                }
                0..=0x1f => return Err(invalid(c, "in string literal")),
                0x20..=0x7f => {
                    out.push(char::from(c));
                    self.i += 1;
                }
                _ => {
                    // Multi-byte UTF-8, or an invalid byte.
                    let rest = &self.s[self.i..];
                    let len = match rest[0] {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => 0,
                    };
                    match rest.get(..len).and_then(|b| std::str::from_utf8(b).ok()) {
                        Some(s) if len > 0 => {
                            out.push_str(s);
                            self.i += len;
                        }
                        _ => {
                            out.push('\u{FFFD}');
                            self.i += 1;
                        }
                    }
                }
            }
        }
    }

    fn object(&mut self) -> Result<JVal, String> {
        let mut members = Vec::new();
        self.ws();
        match self.peek() {
            None => return Err(EOF_ERR.to_owned()),
            Some(b'}') => {
                self.i += 1;
                return Ok(JVal::Obj(members));
            }
            Some(b'"') => {}
            Some(c) => return Err(invalid(c, "looking for beginning of object key string")),
        }
        loop {
            // At a key's opening quote.
            self.i += 1;
            let key = self.string()?;
            self.ws();
            match self.peek() {
                None => return Err(EOF_ERR.to_owned()),
                Some(b':') => self.i += 1,
                Some(c) => return Err(invalid(c, "after object key")),
            }
            let v = self.value()?;
            members.push((key, v));
            self.ws();
            match self.peek() {
                None => return Err(EOF_ERR.to_owned()),
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                    match self.peek() {
                        None => return Err(EOF_ERR.to_owned()),
                        Some(b'"') => {}
                        Some(c) => {
                            return Err(invalid(c, "looking for beginning of object key string"));
                        }
                    }
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok(JVal::Obj(members));
                }
                Some(c) => return Err(invalid(c, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<JVal, String> {
        let mut items = Vec::new();
        self.ws();
        match self.peek() {
            None => return Err(EOF_ERR.to_owned()),
            Some(b']') => {
                self.i += 1;
                return Ok(JVal::Arr(items));
            }
            Some(_) => {}
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                None => return Err(EOF_ERR.to_owned()),
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(JVal::Arr(items));
                }
                Some(c) => return Err(invalid(c, "after array element")),
            }
        }
    }
}

/// Parses a whole document, with Go's syntax error texts.
pub(crate) fn parse(data: &[u8]) -> Result<Node, String> {
    let mut p = Parser { s: data, i: 0 };
    let v = p.value()?;
    p.ws();
    if let Some(c) = p.peek() {
        return Err(invalid(c, "after top-level value"));
    }
    Ok(v)
}

/// Go's `foldName` equality, as `encoding/json` matches keys to fields.
fn fold_eq(key: &str, name: &str) -> bool {
    fn fold(c: char) -> char {
        match c {
            'a'..='z' => c.to_ascii_uppercase(),
            '\u{17F}' => 'S',
            '\u{212A}' => 'K',
            _ => c,
        }
    }
    key.chars().map(fold).eq(name.chars().map(fold))
}

/// Decodes parsed JSON into Go-shaped targets, recording the first type
/// error as `json.Unmarshal` reports it.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    err: Option<String>,
    ctx: Option<(&'static str, Vec<&'static str>)>,
}

impl Decoder {
    pub(crate) fn new() -> Decoder {
        Decoder::default()
    }

    /// The first error, if any.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self.err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Records an `UnmarshalTypeError` (`value` is `string`, `number 1.5`,
    /// ...; `ty` the Go type).
    pub(crate) fn type_error(&mut self, value: &str, ty: &str) {
        if self.err.is_some() {
            return;
        }
        self.err = Some(match &self.ctx {
            Some((s, stack)) => format!(
                "json: cannot unmarshal {value} into Go struct field {s}.{} of type {ty}",
                stack.join(".")
            ),
            None => format!("json: cannot unmarshal {value} into Go value of type {ty}"),
        });
    }

    /// A Go `string`.
    pub(crate) fn string(&mut self, v: &Node, out: &mut String) {
        match &v.value {
            JVal::Null => {}
            JVal::Str(s) => s.clone_into(out),
            other => self.type_error(other.kind(), "string"),
        }
    }

    /// A Go `bool`.
    pub(crate) fn bool(&mut self, v: &Node, out: &mut bool) {
        match &v.value {
            JVal::Null => {}
            JVal::Bool(b) => *out = *b,
            other => self.type_error(other.kind(), "bool"),
        }
    }

    /// A Go signed integer of `bits` bits named `ty`.
    pub(crate) fn int(&mut self, v: &Node, out: &mut i64, bits: u32, ty: &str) {
        match &v.value {
            JVal::Null => {}
            JVal::Num(n) => {
                let parsed = n.parse::<i64>().ok().filter(|x| {
                    bits >= 64 || (*x >= -(1i64 << (bits - 1)) && *x < (1i64 << (bits - 1)))
                });
                match parsed {
                    Some(x) => *out = x,
                    None => self.type_error(&format!("number {n}"), ty),
                }
            }
            other => self.type_error(other.kind(), ty),
        }
    }

    /// A Go `uint64`.
    pub(crate) fn uint(&mut self, v: &Node, out: &mut u64, ty: &str) {
        match &v.value {
            JVal::Null => {}
            JVal::Num(n) => match n.parse::<u64>() {
                Ok(x) => *out = x,
                Err(_) => self.type_error(&format!("number {n}"), ty),
            },
            other => self.type_error(other.kind(), ty),
        }
    }

    /// A Go slice: `f` decodes each element; `None` for JSON `null` (a nil
    /// slice).
    pub(crate) fn slice<T>(
        &mut self,
        v: &Node,
        ty: &str,
        mut f: impl FnMut(&mut Decoder, &Node) -> T,
    ) -> Option<Vec<T>> {
        match &v.value {
            JVal::Null => None,
            JVal::Arr(items) => Some(items.iter().map(|n| f(self, n)).collect()),
            other => {
                self.type_error(other.kind(), ty);
                Some(Vec::new())
            }
        }
    }

    /// A Go `[]string`.
    pub(crate) fn strings(&mut self, v: &Node) -> Option<Vec<String>> {
        self.slice(v, "[]string", |d, n| {
            let mut s = String::new();
            d.string(n, &mut s);
            s
        })
    }

    /// A Go struct named `name` (type text `ty`) with JSON field names
    /// `fields`: `f(decoder, field index, value)` decodes each known key.
    /// Returns false for JSON `null` (a nil pointer) and wrong kinds.
    pub(crate) fn object(
        &mut self,
        v: &Node,
        name: &'static str,
        ty: &str,
        fields: &[&'static str],
        mut f: impl FnMut(&mut Decoder, usize, &Node),
    ) -> bool {
        let members = match &v.value {
            JVal::Null => return false,
            JVal::Obj(m) => m,
            other => {
                self.type_error(other.kind(), ty);
                return true;
            }
        };
        // A field promoted from an embedded struct is written
        // `Embedded.name`: matched by `name`, reported with the prefix.
        let json_name = |f: &str| -> String { f.rsplit_once('.').map_or(f, |(_, n)| n).to_owned() };
        for (key, value) in members {
            let idx = fields
                .iter()
                .position(|f| json_name(f) == *key)
                .or_else(|| fields.iter().position(|f| fold_eq(key, &json_name(f))));
            let Some(idx) = idx else {
                continue;
            };
            let saved = self.ctx.clone();
            let mut stack = saved.as_ref().map(|c| c.1.clone()).unwrap_or_default();
            stack.push(fields[idx]);
            self.ctx = Some((name, stack));
            f(self, idx, value);
            self.ctx = saved;
        }
        true
    }
}

/// Appends `s` as a JSON string the way Go's `json.Marshal` escapes it.
pub(crate) fn push_go_string(out: &mut String, s: &str) {
    push_string(out, s, true);
}

/// Appends `s` as a JSON string; `html` escapes `<`, `>`, `&`, U+2028 and
/// U+2029 as `encoding/json` does (protojson does not).
fn push_string(out: &mut String, s: &str, html: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0}'..='\u{1f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            '<' | '>' | '&' if html => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            '\u{2028}' if html => out.push_str("\\u2028"),
            '\u{2029}' if html => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's float64 JSON text.
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

/// Go's `json.Marshal` of a decoded `any` value (maps sorted by key,
/// numbers as float64).
pub(crate) fn marshal_go(v: &serde_json::Value, out: &mut String) {
    marshal(v, out, true);
}

/// protojson's compact text of a `google.protobuf.Struct` or `Value`.
pub(crate) fn marshal_protojson(v: &serde_json::Value, out: &mut String) {
    marshal(v, out, false);
}

fn marshal(v: &serde_json::Value, out: &mut String, html: bool) {
    match v {
        serde_json::Value::Null => out.push_str("null"),
        serde_json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) => out.push_str(&go_float(f)),
            None => out.push_str(&n.to_string()),
        },
        serde_json::Value::String(s) => push_string(out, s, html),
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                marshal(item, out, html);
            }
            out.push(']');
        }
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, key, html);
                out.push(':');
                if let Some(value) = map.get(*key) {
                    marshal(value, out, html);
                }
            }
            out.push('}');
        }
    }
}

/// SPIRE's `removeNulls` on a protojson document.
pub(crate) fn remove_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                remove_nulls(v);
            }
        }
        serde_json::Value::Array(items) => {
            items.retain(|v| !v.is_null());
            for v in items.iter_mut() {
                remove_nulls(v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            err("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(err("{"), EOF_ERR);
        assert_eq!(err(""), EOF_ERR);
        assert_eq!(err("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            err("{\"a\":1 \"b\"}"),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(err("[1 2]"), "invalid character '2' after array element");
        assert_eq!(err("{} x"), "invalid character 'x' after top-level value");
        assert_eq!(
            err("{,}"),
            "invalid character ',' looking for beginning of object key string"
        );
        assert_eq!(err("tru"), EOF_ERR);
        assert_eq!(
            err("trux"),
            "invalid character 'x' in literal true (expecting 'e')"
        );
        assert_eq!(err("-x"), "invalid character 'x' in numeric literal");
        assert_eq!(
            err("1.x"),
            "invalid character 'x' after decimal point in numeric literal"
        );
        assert_eq!(
            err("1ex"),
            "invalid character 'x' in exponent of numeric literal"
        );
        assert_eq!(
            err("\"\\x\""),
            "invalid character 'x' in string escape code"
        );
        assert_eq!(err("\"\n\""), "invalid character '\\n' in string literal");
        assert_eq!(
            err("'"),
            "invalid character '\\'' looking for beginning of value"
        );
        assert_eq!(err("01"), "invalid character '1' after top-level value");
        assert!(parse(b" {\"a\": [1, -0.5e+3, true, null, \"\\u00e9\\ud83d\\ude00\"]} ").is_ok());
    }

    #[test]
    fn type_errors_carry_field_paths() {
        let doc = parse(br#"{"Entries":[{"admin":1,"selectors":[{"type":2}]}]}"#).unwrap();
        let mut d = Decoder::new();
        d.object(&doc, "Top", "pkg.Top", &["entries"], |d, _, v| {
            d.slice(v, "[]*pkg.Entry", |d, e| {
                d.object(
                    e,
                    "Entry",
                    "pkg.Entry",
                    &["admin", "selectors"],
                    |d, i, v| {
                        let mut b = false;
                        if i == 0 {
                            d.bool(v, &mut b);
                        }
                    },
                );
            });
        });
        assert_eq!(
            d.finish().unwrap_err(),
            "json: cannot unmarshal number into Go struct field Entry.entries.admin of type bool"
        );
        let mut d = Decoder::new();
        d.object(&parse(b"[]").unwrap(), "Top", "pkg.Top", &[], |_, _, _| {});
        assert_eq!(
            d.finish().unwrap_err(),
            "json: cannot unmarshal array into Go value of type pkg.Top"
        );
        assert!(fold_eq("ſpiffe_id", "spiffe_id"));
    }

    #[test]
    fn go_marshal() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1e21,"a":"<&>","c":[1.5,null,1795886389]}"#).unwrap();
        let mut out = String::new();
        marshal_go(&v, &mut out);
        assert_eq!(
            out,
            r#"{"a":"\u003c\u0026\u003e","b":1e+21,"c":[1.5,null,1795886389]}"#
        );
    }
}
