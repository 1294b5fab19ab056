//! The functions an agent path template can call: Go's text/template builtins and the
//! sprig v3.3.0 functions in SPIRE's `agentpathtemplate` funcList, with sprig's
//! semantics (argument order, `must*` errors, the non-`must` forms' lenient results).
//! Go panics inside a function become `error calling NAME: …`, as `safeCall` reports them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::Value;
use super::exec::{State, truth};
use super::gofmt::{self, value_string};

/// A parameter's Go type, as `evalArg`/`validateType` check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Str,
    Int,
    Bool,
    /// `interface{}` (or a builtin's `reflect.Value`).
    Any,
    /// `map[string]interface{}`.
    Map,
}

impl Ty {
    pub(super) fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Bool => "bool",
            Ty::Any => "interface {}",
            Ty::Map => "map[string]interface {}",
        }
    }
}

type F = fn(&mut State<'_>, Vec<Value>) -> Result<Value, String>;

pub(super) struct Func {
    pub(super) params: &'static [Ty],
    pub(super) variadic: Option<Ty>,
    pub(super) call: F,
}

use Ty::{Any, Bool as B, Int as I, Map as M, Str as S};

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

fn s(v: &Value) -> &str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

fn i(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        _ => 0,
    }
}

fn st(x: impl Into<String>) -> Result<Value, String> {
    Ok(Value::Str(x.into()))
}

fn idx(n: i64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("runtime error: slice bounds out of range [{n}]"))
}

fn map_of(v: &Value) -> Rc<RefCell<BTreeMap<String, Value>>> {
    match v {
        Value::Map(m) => m.clone(),
        _ => Rc::new(RefCell::new(BTreeMap::new())),
    }
}

/// The elements of a slice value, or `None` (with its Go kind) for anything else.
fn elems(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => Ok(l.clone()),
        Value::StrList(l) => Ok(l.iter().map(|x| Value::Str(x.clone())).collect()),
        _ => Err(kind(v).to_string()),
    }
}

/// Go's `reflect.Kind` name of a value.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "invalid",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Int64(_) => "int64",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::List(_) | Value::StrList(_) => "slice",
        Value::Map(_) | Value::StrMap { .. } => "map",
        Value::Struct { .. } => "struct",
    }
}

/// sprig's `strval`.
fn strval(v: &Value) -> String {
    value_string(v)
}

/// sprig's `strslice`.
fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::StrList(l) => l.clone(),
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

/// sprig's `empty`.
fn empty(v: &Value) -> bool {
    match v {
        Value::Struct { .. } => false,
        other => !truth(other),
    }
}

fn list(v: Vec<Value>) -> Result<Value, String> {
    Ok(Value::List(v))
}

/// Unicode's title-case letters (category Lt), which Go's `unicode.IsTitle` reports.
fn is_title(c: char) -> bool {
    matches!(c as u32,
        0x01C5 | 0x01C8 | 0x01CB | 0x01F2 | 0x1F88..=0x1F8F | 0x1F98..=0x1F9F
        | 0x1FA8..=0x1FAF | 0x1FBC | 0x1FCC | 0x1FFC)
}

/// Go's `unicode.ToTitle`: upper case, except the digraphs with a title form.
fn to_title(c: char) -> char {
    match c {
        '\u{01C4}'..='\u{01C6}' => '\u{01C5}',
        '\u{01C7}'..='\u{01C9}' => '\u{01C8}',
        '\u{01CA}'..='\u{01CC}' => '\u{01CB}',
        '\u{01F1}'..='\u{01F3}' => '\u{01F2}',
        c if is_title(c) => c,
        c => {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        }
    }
}

/// Go `strings.Title`: title-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        let sep = if prev.is_ascii() {
            !(prev.is_ascii_alphanumeric() || prev == '_')
        } else if prev.is_alphabetic() || prev.is_numeric() {
            false
        } else {
            prev.is_whitespace()
        };
        if sep {
            out.push(to_title(c));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

fn go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\x0b' | '\x0c' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    ) || (c as u32 > 0xff && c.is_whitespace())
}

fn initials(s: &str) -> String {
    let mut out = String::new();
    let mut gap = true;
    for &b in s.as_bytes() {
        let ch = char::from(b);
        if go_space(ch) {
            gap = true;
        } else if gap {
            out.push(ch);
            gap = false;
        }
    }
    out
}

fn nospace(s: &str) -> String {
    let kept: Vec<u8> = s.bytes().filter(|&b| !go_space(char::from(b))).collect();
    if kept.len() == s.len() {
        return s.to_string();
    }
    kept.into_iter().map(char::from).collect()
}

fn untitle(s: &str) -> String {
    let mut out = String::new();
    let mut next = true;
    for c in s.chars() {
        if go_space(c) {
            next = true;
            out.push(c);
        } else if next {
            out.extend(c.to_lowercase());
            next = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn swapcase(s: &str) -> String {
    let mut out = String::new();
    let mut ws = true;
    for c in s.chars() {
        if c.is_uppercase() || is_title(c) {
            out.push(lower1(c));
            ws = false;
        } else if c.is_lowercase() {
            if ws {
                out.push(to_title(c));
                ws = false;
            } else {
                out.extend(c.to_uppercase());
            }
        } else {
            out.push(c);
            ws = go_space(c);
        }
    }
    out
}

fn abbreviate_full(s: &str, offset: i64, max: i64) -> Result<String, ()> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if max < 4 {
        return Err(());
    }
    let len = i64::try_from(s.len()).unwrap_or(i64::MAX);
    if len <= max {
        return Ok(s.to_string());
    }
    let mut offset = offset.min(len);
    if len - offset < max - 3 {
        offset = len - (max - 3);
    }
    let b = s.as_bytes();
    let sub = |from: i64, to: i64| -> String {
        let f = usize::try_from(from.max(0)).unwrap_or(0);
        let t = usize::try_from(to.max(0)).unwrap_or(0).min(b.len());
        String::from_utf8_lossy(&b[f.min(t)..t]).into_owned()
    };
    if offset <= 4 {
        return Ok(sub(0, max - 3) + "...");
    }
    if max < 7 {
        return Err(());
    }
    if offset + max - 3 < len {
        let rest = sub(offset, len);
        return Ok(format!("...{}", abbreviate_full(&rest, 0, max - 3)?));
    }
    Ok(format!("...{}", sub(len - (max - 3), len)))
}

fn wrap_custom(s: &str, len: i64, nl: &str, long_words: bool) -> String {
    if s.is_empty() {
        return String::new();
    }
    let nl = if nl.is_empty() { "\n" } else { nl };
    let wl = usize::try_from(len.max(1)).unwrap_or(1);
    let b = s.as_bytes();
    let n = b.len();
    let mut off = 0;
    let mut out: Vec<u8> = Vec::new();
    while n - off > wl {
        if b[off] == b' ' {
            off += 1;
            continue;
        }
        let end = wl + off + 1;
        let space = b[off..end].iter().rposition(|&c| c == b' ');
        if let Some(sp) = space {
            out.extend_from_slice(&b[off..off + sp]);
            out.extend_from_slice(nl.as_bytes());
            off = off + sp + 1;
        } else if long_words {
            out.extend_from_slice(&b[off..wl + off]);
            out.extend_from_slice(nl.as_bytes());
            off += wl;
        } else {
            let end = wl + off;
            match b[end..].iter().position(|&c| c == b' ') {
                None => {
                    out.extend_from_slice(&b[off..]);
                    off = n;
                }
                Some(i) => {
                    out.extend_from_slice(&b[off..end + i]);
                    out.extend_from_slice(nl.as_bytes());
                    off = end + i + 1;
                }
            }
        }
    }
    out.extend_from_slice(&b[off..]);
    String::from_utf8_lossy(&out).into_owned()
}

// ---- xstrings case conversion (huandu/xstrings v1.5.0) ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wt {
    Invalid,
    Number,
    Upper,
    Alpha,
    Connector,
    Punct,
    Other,
}

fn is_connector(c: char) -> bool {
    c == '-' || c == '_' || go_space(c)
}

fn is_alphabet(c: char) -> bool {
    c.is_alphabetic() && !('\u{4E00}'..='\u{9FCC}').contains(&c)
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() && !matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
}

fn next_word(s: &str) -> (Wt, &str, &str) {
    let mut cs = s.char_indices().peekable();
    let Some((_, r)) = cs.next() else {
        return (Wt::Invalid, "", "");
    };
    let mut end = r.len_utf8();
    let take_while = |end: &mut usize, pred: &dyn Fn(char) -> bool| {
        for c in s[*end..].chars() {
            if !pred(c) {
                break;
            }
            *end += c.len_utf8();
        }
    };
    let wt = if is_connector(r) {
        take_while(&mut end, &is_connector);
        Wt::Connector
    } else if is_punct(r) {
        take_while(&mut end, &is_punct);
        Wt::Punct
    } else if r.is_uppercase() {
        if let Some(r2) = s[end..].chars().next() {
            if r2.is_uppercase() {
                let mut prev_size = r2.len_utf8();
                end += prev_size;
                let mut stopped: Option<char> = None;
                for c in s[end..].chars() {
                    if !c.is_uppercase() {
                        stopped = Some(c);
                        break;
                    }
                    prev_size = c.len_utf8();
                    end += prev_size;
                }
                if stopped.is_some_and(is_alphabet) {
                    end -= prev_size;
                }
            } else if is_alphabet(r2) {
                end += r2.len_utf8();
                take_while(&mut end, &|c| is_alphabet(c) && !c.is_uppercase());
            }
        }
        Wt::Upper
    } else if is_alphabet(r) {
        take_while(&mut end, &|c| is_alphabet(c) && !c.is_uppercase());
        Wt::Alpha
    } else if r.is_numeric() {
        take_while(&mut end, &char::is_numeric);
        Wt::Number
    } else {
        take_while(&mut end, &|c| {
            !(is_connector(c) || is_alphabet(c) || c.is_numeric() || is_punct(c))
        });
        Wt::Other
    };
    (wt, &s[..end], &s[end..])
}

fn to_lower_word(buf: &mut String, wt: Wt, w: &str, conn: char) {
    if wt != Wt::Upper && wt != Wt::Connector {
        buf.push_str(w);
        return;
    }
    for c in w.chars() {
        if is_connector(c) {
            buf.push(conn);
        } else if c.is_uppercase() {
            buf.extend(c.to_lowercase());
        } else {
            buf.push(c);
        }
    }
}

fn camel_to_lower(s: &str, conn: char) -> String {
    if s.is_empty() {
        return String::new();
    }
    let mut buf = String::new();
    let (mut wt, mut word, mut rem) = next_word(s);
    while !rem.is_empty() {
        if wt != Wt::Connector {
            to_lower_word(&mut buf, wt, word, conn);
        }
        let prev = wt;
        let last = word;
        (wt, word, rem) = next_word(rem);
        match prev {
            Wt::Number => {
                while wt == Wt::Alpha || wt == Wt::Number {
                    to_lower_word(&mut buf, wt, word, conn);
                    (wt, word, rem) = next_word(rem);
                }
                if wt != Wt::Invalid && wt != Wt::Punct && wt != Wt::Connector {
                    buf.push(conn);
                }
            }
            Wt::Connector => to_lower_word(&mut buf, prev, last, conn),
            Wt::Punct => {}
            _ => {
                if wt != Wt::Number {
                    if wt != Wt::Connector && wt != Wt::Punct {
                        buf.push(conn);
                    }
                    continue;
                }
                if rem.is_empty() {
                    continue;
                }
                let last = word;
                (wt, word, rem) = next_word(rem);
                if wt != Wt::Alpha {
                    to_lower_word(&mut buf, Wt::Number, last, conn);
                    if wt != Wt::Connector && wt != Wt::Punct {
                        buf.push(conn);
                    }
                    continue;
                }
                buf.push(conn);
                to_lower_word(&mut buf, Wt::Number, last, conn);
                while wt == Wt::Alpha || wt == Wt::Number {
                    to_lower_word(&mut buf, wt, word, conn);
                    (wt, word, rem) = next_word(rem);
                }
                if wt != Wt::Invalid && wt != Wt::Connector && wt != Wt::Punct {
                    buf.push(conn);
                }
            }
        }
    }
    to_lower_word(&mut buf, wt, word, conn);
    buf
}

fn upper1(c: char) -> char {
    c.to_uppercase().next().unwrap_or(c)
}

fn lower1(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

fn pascal(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let mut buf = String::new();
    let mut chars = s.chars();
    let mut first_upper = false;
    let mut r0 = '\0';
    let mut got = false;
    for c in chars.by_ref() {
        if !is_connector(c) {
            first_upper = c.is_uppercase();
            r0 = upper1(c);
            got = true;
            break;
        }
        buf.push(c);
    }
    let rest: Vec<char> = chars.collect();
    if rest.is_empty() {
        if got {
            buf.push(r0);
        }
        return buf;
    }
    for c in rest {
        let r1 = r0;
        r0 = c;
        if is_connector(r0) && is_connector(r1) {
            buf.push(r1);
            continue;
        }
        if is_connector(r1) {
            first_upper = r0.is_uppercase();
            r0 = upper1(r0);
        } else {
            if first_upper {
                if r0.is_uppercase() {
                    r0 = lower1(r0);
                } else {
                    first_upper = false;
                }
            }
            buf.push(r1);
        }
    }
    buf.push(r0);
    buf
}

// ---- hashes and encodings ----

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    for block in padded(data).chunks(64) {
        let mut w = [0u32; 80];
        for t in 0..16 {
            w[t] = u32::from_be_bytes([
                block[4 * t],
                block[4 * t + 1],
                block[4 * t + 2],
                block[4 * t + 3],
            ]);
        }
        for t in 16..80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (t, wt) in w.iter().enumerate() {
            let (f, k) = match t {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let tmp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wt);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = tmp;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut m = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    m.push(0x80);
    while m.len() % 64 != 56 {
        m.push(0);
    }
    m.extend_from_slice(&bits.to_be_bytes());
    m
}

const K256: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    for block in padded(data).chunks(64) {
        let mut w = [0u32; 64];
        for t in 0..16 {
            w[t] = u32::from_be_bytes([
                block[4 * t],
                block[4 * t + 1],
                block[4 * t + 2],
                block[4 * t + 3],
            ]);
        }
        for t in 16..64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for t in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K256[t])
                .wrapping_add(w[t]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b32enc(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = buf.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        let n = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < n {
                out.push(char::from(B32[((v >> (35 - 5 * i)) & 31) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b32dec(s: &str) -> Result<Vec<u8>, String> {
    let s = s.replace(['\r', '\n'], "");
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(8) {
        return Err(format!(
            "illegal base32 data at input byte {}",
            bytes.len() / 8 * 8
        ));
    }
    let mut out = Vec::new();
    for (ci, chunk) in bytes.chunks(8).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let n = 8 - pad;
        if !matches!(n, 8 | 7 | 5 | 4 | 2) || (pad > 0 && ci + 1 != bytes.len() / 8) {
            return Err(format!("illegal base32 data at input byte {}", ci * 8 + n));
        }
        let mut v: u64 = 0;
        for (j, &c) in chunk[..n].iter().enumerate() {
            let d = B32
                .iter()
                .position(|&x| x == c)
                .ok_or_else(|| format!("illegal base32 data at input byte {}", ci * 8 + j))?;
            v |= (d as u64) << (35 - 5 * j);
        }
        let nbytes = n * 5 / 8;
        for k in 0..nbytes {
            out.push(((v >> (32 - 8 * k)) & 0xff) as u8);
        }
    }
    Ok(out)
}

fn b64dec(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let s = s.replace(['\r', '\n'], "");
    base64::engine::general_purpose::STANDARD
        .decode(&s)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                format!("illegal base64 data at input byte {at}")
            }
            _ => format!(
                "illegal base64 data at input byte {}",
                s.len().saturating_sub(s.len() % 4)
            ),
        })
}

// ---- path (Go's `path` package) ----

fn path_clean(p: &str) -> String {
    crate::path::clean(p)
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(p: &str) -> String {
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    path_clean(dir)
}

fn path_ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return p[i..].to_string();
        }
    }
    String::new()
}

// ---- URLs (Go's net/url, as sprig's urlParse/urlJoin use it) ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Enc {
    Path,
    Host,
    UserPassword,
    Fragment,
}

fn should_escape(c: u8, mode: Enc) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Enc::Host && b"!$&'()*+,;=:[]<>\"".contains(&c) {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Enc::Path => c == b'?',
                Enc::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                Enc::Fragment => false,
                Enc::Host => true,
            };
        }
        _ => {}
    }
    if mode == Enc::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

fn escape(s: &str, mode: Enc) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if should_escape(b, mode) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

fn unescape(s: &str, mode: Enc) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(h) = h else {
                    let end = (i + 3).min(b.len());
                    return Err(format!(
                        "invalid URL escape {}",
                        gofmt::quote(&String::from_utf8_lossy(&b[i..end]))
                    ));
                };
                let v = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("00"), 16).unwrap_or(0);
                out.push(v);
                i += 3;
            }
            c => {
                if mode == Enc::Host && c < 0x80 && should_escape(c, mode) {
                    return Err(format!(
                        "invalid character {} in host name",
                        gofmt::quote(&char::from(c).to_string())
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[derive(Default)]
struct Url {
    scheme: String,
    opaque: String,
    user: Option<(String, Option<String>)>,
    host: String,
    path: String,
    raw_query: String,
    fragment: String,
    omit_host: bool,
}

fn user_string(u: &(String, Option<String>)) -> String {
    let mut s = escape(&u.0, Enc::UserPassword);
    if let Some(p) = &u.1 {
        s.push(':');
        s.push_str(&escape(p, Enc::UserPassword));
    }
    s
}

fn parse_url(raw: &str) -> Result<Url, String> {
    let wrap = |e: String| format!("parse {}: {e}", gofmt::quote(raw));
    let (u, frag) = raw.split_once('#').unwrap_or((raw, ""));
    if u.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Err(wrap("net/url: invalid control character in URL".into()));
    }
    let mut url = Url::default();
    if u == "*" {
        url.path = "*".into();
    } else {
        let mut rest = u;
        for (i, c) in u.char_indices() {
            if c.is_ascii_alphabetic() {
                continue;
            }
            if c.is_ascii_digit() || c == '+' || c == '-' || c == '.' {
                if i == 0 {
                    break;
                }
                continue;
            }
            if c == ':' {
                if i == 0 {
                    return Err(wrap("missing protocol scheme".into()));
                }
                url.scheme = u[..i].to_ascii_lowercase();
                rest = &u[i + 1..];
            }
            break;
        }
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            rest = &rest[..rest.len() - 1];
        } else if let Some((r, q)) = rest.split_once('?') {
            url.raw_query = q.to_string();
            rest = r;
        }
        let mut done = false;
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                url.opaque = rest.to_string();
                done = true;
            } else if rest.split('/').next().unwrap_or("").contains(':') {
                return Err(wrap(
                    "first path segment in URL cannot contain colon".into(),
                ));
            }
        }
        if !done {
            if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
                let mut authority = &rest[2..];
                rest = "";
                if let Some(i) = authority.find('/') {
                    rest = &authority[i..];
                    authority = &authority[..i];
                }
                let (userinfo, host) = match authority.rfind('@') {
                    Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
                    None => (None, authority),
                };
                url.host = parse_host(host).map_err(wrap)?;
                if let Some(ui) = userinfo {
                    if !ui
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c))
                    {
                        return Err(wrap("net/url: invalid userinfo".into()));
                    }
                    url.user = Some(match ui.split_once(':') {
                        None => (unescape(ui, Enc::UserPassword).map_err(wrap)?, None),
                        Some((n, p)) => (
                            unescape(n, Enc::UserPassword).map_err(wrap)?,
                            Some(unescape(p, Enc::UserPassword).map_err(wrap)?),
                        ),
                    });
                }
            } else if !url.scheme.is_empty() && rest.starts_with('/') {
                url.omit_host = true;
            }
            url.path = unescape(rest, Enc::Path).map_err(wrap)?;
        }
    }
    url.fragment = unescape(frag, Enc::Fragment).map_err(wrap)?;
    Ok(url)
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let colon_port = &host[i + 1..];
        if !valid_port(colon_port) {
            return Err(format!(
                "invalid port {} after host",
                gofmt::quote(colon_port)
            ));
        }
        return unescape(host, Enc::Host);
    }
    if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_port(colon_port) {
            return Err(format!(
                "invalid port {} after host",
                gofmt::quote(colon_port)
            ));
        }
    }
    unescape(host, Enc::Host)
}

fn valid_port(p: &str) -> bool {
    p.is_empty()
        || p.strip_prefix(':')
            .is_some_and(|d| d.bytes().all(|c| c.is_ascii_digit()))
}

fn hostname(host: &str) -> String {
    let (h, _) = split_host_port(host);
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(&h)
        .to_string()
}

fn split_host_port(host: &str) -> (String, String) {
    let mut h = host;
    let mut port = "";
    if let Some(i) = h.rfind(':').filter(|&i| valid_port(&h[i..])) {
        port = &h[i + 1..];
        h = &h[..i];
    }
    if h.starts_with('[') && h.ends_with(']') {
        return (h[1..h.len() - 1].to_string(), port.to_string());
    }
    (h.to_string(), port.to_string())
}

fn url_string(u: &Url) -> String {
    let mut buf = String::new();
    if !u.scheme.is_empty() {
        buf.push_str(&u.scheme);
        buf.push(':');
    }
    if !u.opaque.is_empty() {
        buf.push_str(&u.opaque);
    } else {
        let no_authority = u.host.is_empty() && u.user.is_none();
        let omit = u.omit_host && no_authority;
        if (!u.scheme.is_empty() || !no_authority) && !omit {
            if !u.host.is_empty() || !u.path.is_empty() || u.user.is_some() {
                buf.push_str("//");
            }
            if let Some(ui) = &u.user {
                buf.push_str(&user_string(ui));
                buf.push('@');
            }
            buf.push_str(&escape(&u.host, Enc::Host));
        }
        let path = if u.path == "*" {
            "*".to_string()
        } else {
            escape(&u.path, Enc::Path)
        };
        if !path.is_empty() && !path.starts_with('/') && !u.host.is_empty() {
            buf.push('/');
        }
        if buf.is_empty() && path.split('/').next().unwrap_or("").contains(':') {
            buf.push_str("./");
        }
        buf.push_str(&path);
    }
    if !u.raw_query.is_empty() {
        buf.push('?');
        buf.push_str(&u.raw_query);
    }
    if !u.fragment.is_empty() {
        buf.push('#');
        buf.push_str(&escape(&u.fragment, Enc::Fragment));
    }
    buf
}

fn url_parse(v: &str) -> Result<Value, String> {
    let u = parse_url(v).map_err(|e| format!("unable to parse url: {e}"))?;
    let mut m = BTreeMap::new();
    m.insert("scheme".to_string(), Value::Str(u.scheme.clone()));
    m.insert("host".to_string(), Value::Str(u.host.clone()));
    m.insert("hostname".to_string(), Value::Str(hostname(&u.host)));
    m.insert("path".to_string(), Value::Str(u.path.clone()));
    m.insert("query".to_string(), Value::Str(u.raw_query.clone()));
    m.insert("opaque".to_string(), Value::Str(u.opaque.clone()));
    m.insert("fragment".to_string(), Value::Str(u.fragment.clone()));
    m.insert(
        "userinfo".to_string(),
        Value::Str(u.user.as_ref().map(user_string).unwrap_or_default()),
    );
    Ok(Value::map(m))
}

fn url_join(d: &Value) -> Result<Value, String> {
    let m = map_of(d);
    let m = m.borrow();
    let get = |k: &str| -> Result<String, String> {
        match m.get(k) {
            None => Ok(String::new()),
            Some(Value::Str(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "unable to parse {k} key, must be of type string, but {} found",
                kind(other)
            )),
        }
    };
    let mut u = Url {
        scheme: get("scheme")?,
        host: get("host")?,
        path: get("path")?,
        raw_query: get("query")?,
        opaque: get("opaque")?,
        fragment: get("fragment")?,
        ..Default::default()
    };
    let userinfo = get("userinfo")?;
    if !userinfo.is_empty() {
        let t = parse_url(&format!("proto://{userinfo}@host"))
            .map_err(|e| format!("unable to parse userinfo in dict: {e}"))?;
        u.user = t.user;
    }
    st(url_string(&u))
}

// ---- regular expressions (Go's regexp is RE2; the regex crate follows the same syntax) ----

fn re(expr: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(expr).map_err(|e| {
        let msg = e.to_string();
        format!(
            "error parsing regexp: {}",
            msg.lines().last().unwrap_or(&msg).trim()
        )
    })
}

fn find_all(r: &regex::Regex, s: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let it = r.find_iter(s).map(|m| m.as_str().to_string());
    match usize::try_from(n) {
        Ok(n) => it.take(n).collect(),
        Err(_) => it.collect(),
    }
}

fn split(r: &regex::Regex, s: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if !r.as_str().is_empty() && s.is_empty() {
        return vec![String::new()];
    }
    let matches: Vec<(usize, usize)> = {
        let it = r.find_iter(s).map(|m| (m.start(), m.end()));
        match usize::try_from(n) {
            Ok(n) => it.take(n).collect(),
            Err(_) => it.collect(),
        }
    };
    let mut out = Vec::new();
    let (mut beg, mut end) = (0, 0);
    for (a, b) in matches {
        if n > 0 && i64::try_from(out.len()).unwrap_or(i64::MAX) == n - 1 {
            break;
        }
        end = a;
        if b != 0 {
            out.push(s[beg..end].to_string());
        }
        beg = b;
    }
    if end != s.len() {
        out.push(s[beg..].to_string());
    }
    out
}

/// Go's `regexp.QuoteMeta`.
fn quote_meta(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Go's `ReplaceAllString` template expansion: `$1`, `${1}`, `$name`, `${name}`, `$$`.
fn replace_all(r: &regex::Regex, s: &str, repl: &str) -> String {
    r.replace_all(s, repl).into_owned()
}

// ---- comparisons (text/template's funcs.go) ----

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn basic_kind(v: &Value) -> Kind {
    match v {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) | Value::Int64(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

fn eq_values(a: &Value, rest: &[Value]) -> Result<bool, String> {
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(a);
    for b in rest {
        let k2 = basic_kind(b);
        let t = if k1 != k2 {
            if !matches!(a, Value::Nil) && !matches!(b, Value::Nil) {
                return Err(format!(
                    "incompatible types for comparison: {} and {}",
                    a.type_name(),
                    b.type_name()
                ));
            }
            false
        } else {
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Int(x) | Value::Int64(x), Value::Int(y) | Value::Int64(y)) => x == y,
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::Str(x), Value::Str(y)) => x == y,
                (Value::Nil, Value::Nil) => true,
                (Value::Struct { .. }, Value::Struct { .. }) if a.type_name() == b.type_name() => {
                    a == b
                }
                _ => {
                    return Err(format!(
                        "non-comparable type {}: {}",
                        value_string(b),
                        b.type_name()
                    ));
                }
            }
        };
        if t {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt_values(a: &Value, b: &Value) -> Result<bool, String> {
    let (k1, k2) = (basic_kind(a), basic_kind(b));
    if matches!(k1, Kind::Invalid | Kind::Other) || matches!(k2, Kind::Invalid | Kind::Other) {
        return Err("invalid type for comparison".into());
    }
    if k1 != k2 {
        return Err(format!(
            "incompatible types for comparison: {} and {}",
            a.type_name(),
            b.type_name()
        ));
    }
    if k1 == Kind::Bool {
        return Err("invalid type for comparison".into());
    }
    Ok(match (a, b) {
        (Value::Int(x) | Value::Int64(x), Value::Int(y) | Value::Int64(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Str(x), Value::Str(y)) => x < y,
        _ => false,
    })
}

fn eval_args(args: &[Value]) -> String {
    if let [Value::Str(s)] = args {
        return s.clone();
    }
    gofmt::sprint(args)
}

fn html_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '\0' => o.push('\u{FFFD}'),
            '"' => o.push_str("&#34;"),
            '\'' => o.push_str("&#39;"),
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

fn js_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\'' => o.push_str("\\'"),
            '"' => o.push_str("\\\""),
            '<' => o.push_str("\\u003C"),
            '>' => o.push_str("\\u003E"),
            '&' => o.push_str("\\u0026"),
            '=' => o.push_str("\\u003D"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(char::from(b));
        } else if b == b' ' {
            o.push('+');
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn index_of(item: &Value, indexes: &[Value]) -> Result<Value, String> {
    let mut v = item.clone();
    for ix in indexes {
        v = match &v {
            Value::Nil => return Err("index of untyped nil".into()),
            Value::List(_) | Value::StrList(_) | Value::Str(_) => {
                let n = match ix {
                    Value::Int(n) | Value::Int64(n) => *n,
                    Value::Nil => return Err("cannot index slice/array with nil".into()),
                    other => {
                        return Err(format!(
                            "cannot index slice/array with type {}",
                            other.type_name()
                        ));
                    }
                };
                let len = match &v {
                    Value::Str(s) => s.len(),
                    other => elems(other).map(|e| e.len()).unwrap_or(0),
                };
                let Some(k) = usize::try_from(n).ok().filter(|k| *k < len) else {
                    return Err(format!("index out of range: {n}"));
                };
                match &v {
                    Value::Str(s) => Value::Int(i64::from(s.as_bytes()[k])),
                    other => elems(other)?.swap_remove(k),
                }
            }
            Value::Map(m) => match ix {
                Value::Str(k) => m.borrow().get(k).cloned().unwrap_or(Value::Nil),
                Value::Nil => Value::Nil,
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            Value::StrMap { entries, .. } => match ix {
                Value::Str(k) => Value::Str(entries.get(k).cloned().unwrap_or_default()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(v)
}

fn to_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        #[allow(clippy::cast_possible_truncation)]
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => crate::strconv::parse_int(s.trim()).unwrap_or(0),
        _ => 0,
    }
}

fn uuidv4(st: &mut State<'_>) -> String {
    let mut b = [0u8; 16];
    (st.random)(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// mergo's merge of `src` into `dst` (maps only): keys `dst` lacks, or holds an empty
/// value for, are taken from `src` (every key, when `overwrite`); nested maps merge
/// recursively and a non-empty map or list in `dst` is kept.
fn merge_into(dst: &mut BTreeMap<String, Value>, src: &BTreeMap<String, Value>, overwrite: bool) {
    for (k, sv) in src {
        if matches!(sv, Value::Nil) {
            if overwrite {
                dst.insert(k.clone(), Value::Nil);
            }
            continue;
        }
        let dv = dst.get(k).cloned();
        if let (Value::Map(sm), Some(Value::Map(dm))) = (sv, &dv)
            && !Rc::ptr_eq(dm, sm)
        {
            {
                let snapshot = sm.borrow().clone();
                merge_into(&mut dm.borrow_mut(), &snapshot, overwrite);
            }
        }
        if let Some(d) = &dv
            && !empty(d)
            && (matches!(sv, Value::List(_) | Value::StrList(_))
                || matches!((sv, d), (Value::Map(_), Value::Map(_))))
        {
            continue;
        }
        if overwrite || dv.as_ref().is_none_or(empty) {
            dst.insert(k.clone(), sv.clone());
        }
    }
}

fn merge(args: &[Value], overwrite: bool) -> Value {
    let dst = map_of(&args[0]);
    for src in &args[1..] {
        let src = map_of(src);
        if Rc::ptr_eq(&dst, &src) {
            continue;
        }
        let snapshot = src.borrow().clone();
        merge_into(&mut dst.borrow_mut(), &snapshot, overwrite);
    }
    Value::Map(dst)
}

fn seq(p: &[i64]) -> String {
    let until = |start: i64, stop: i64, step: i64| -> Vec<i64> {
        let mut v = Vec::new();
        if stop < start {
            if step >= 0 {
                return v;
            }
            let mut i = start;
            while i > stop {
                v.push(i);
                i += step;
            }
            return v;
        }
        if step <= 0 {
            return v;
        }
        let mut i = start;
        while i < stop {
            v.push(i);
            i += step;
        }
        v
    };
    let v = match p {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            until(1, end + inc, inc)
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            until(*start, end + step, step)
        }
        [start, step, end] => {
            let mut inc = 1;
            if end < start {
                inc = -1;
                if *step > 0 {
                    return String::new();
                }
            }
            until(*start, end + inc, *step)
        }
        _ => return String::new(),
    };
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
}

fn dig(args: &[Value]) -> Result<Value, String> {
    if args.len() < 3 {
        return Err("dig needs at least three arguments".into());
    }
    let n = args.len();
    let Value::Map(dict) = &args[n - 1] else {
        return Err(format!(
            "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
            args[n - 1].type_name()
        ));
    };
    let def = args[n - 2].clone();
    let mut keys = Vec::new();
    for k in &args[..n - 2] {
        match k {
            Value::Str(s) => keys.push(s.clone()),
            other => {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not string",
                    other.type_name()
                ));
            }
        }
    }
    let mut cur = dict.clone();
    for (i, k) in keys.iter().enumerate() {
        let step = cur.borrow().get(k).cloned();
        let Some(step) = step else { return Ok(def) };
        if i + 1 == keys.len() {
            return Ok(step);
        }
        match step {
            Value::Map(m) => cur = m,
            other => {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                    other.type_name()
                ));
            }
        }
    }
    Ok(def)
}

fn chunk(size: i64, l: &[Value]) -> Result<Value, String> {
    let n = l.len();
    if size <= 0 {
        return Err("runtime error: integer divide by zero".into());
    }
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if n == 0 {
        return Ok(Value::List(vec![Value::List(Vec::new())]));
    }
    Ok(Value::List(
        l.chunks(size).map(|c| Value::List(c.to_vec())).collect(),
    ))
}

fn must_list(name: &str, v: &Value) -> Result<Vec<Value>, String> {
    elems(v).map_err(|k| format!("Cannot {name} type {k}"))
}

fn list_op(name: &'static str, v: &Value) -> Result<Vec<Value>, String> {
    elems(v).map_err(|k| format!("Cannot find {name} on type {k}"))
}

fn lookup_table(name: &str) -> Option<Func> {
    Some(match name {
        // text/template builtins.
        "and" | "or" => f!(&[Any], Some(Any), |_, _| Ok(Value::Nil)),
        "not" => f!(&[Any], None, |_, a| Ok(Value::Bool(!truth(&a[0])))),
        "len" => f!(&[Any], None, |_, a| {
            let n = match &a[0] {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::StrList(l) => l.len(),
                Value::Map(m) => m.borrow().len(),
                Value::StrMap { entries, .. } => entries.len(),
                other => return Err(format!("len of type {}", other.type_name())),
            };
            Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
        }),
        "index" => f!(&[Any], Some(Any), |_, a| index_of(&a[0], &a[1..])),
        "print" => f!(&[], Some(Any), |_, a| st(gofmt::sprint(&a))),
        "println" => f!(&[], Some(Any), |_, a| st(gofmt::sprintln(&a))),
        "printf" => f!(&[S], Some(Any), |_, a| st(gofmt::sprintf(
            s(&a[0]),
            &a[1..]
        ))),
        "html" => f!(&[], Some(Any), |_, a| st(html_escape(&eval_args(&a)))),
        "js" => f!(&[], Some(Any), |_, a| st(js_escape(&eval_args(&a)))),
        "urlquery" => f!(&[], Some(Any), |_, a| st(query_escape(&eval_args(&a)))),
        "call" => f!(&[Any], Some(Any), |_, a| Err(format!(
            "non-function {} of type {}",
            value_string(&a[0]),
            a[0].type_name()
        ))),
        "eq" => f!(&[Any], Some(Any), |_, a| Ok(Value::Bool(eq_values(
            &a[0],
            &a[1..]
        )?))),
        "ne" => f!(&[Any, Any], None, |_, a| Ok(Value::Bool(!eq_values(
            &a[0],
            &a[1..]
        )?))),
        "lt" => f!(&[Any, Any], None, |_, a| Ok(Value::Bool(lt_values(
            &a[0], &a[1]
        )?))),
        "le" => f!(&[Any, Any], None, |_, a| {
            Ok(Value::Bool(
                lt_values(&a[0], &a[1])? || eq_values(&a[0], &a[1..])?,
            ))
        }),
        "gt" => f!(&[Any, Any], None, |_, a| {
            Ok(Value::Bool(
                !(lt_values(&a[0], &a[1])? || eq_values(&a[0], &a[1..])?),
            ))
        }),
        "ge" => f!(&[Any, Any], None, |_, a| Ok(Value::Bool(!lt_values(
            &a[0], &a[1]
        )?))),
        // sprig: strings.
        "abbrev" => f!(&[I, S], None, |_, a| {
            if i(&a[0]) < 4 {
                return st(s(&a[1]));
            }
            st(abbreviate_full(s(&a[1]), 0, i(&a[0])).unwrap_or_default())
        }),
        "abbrevboth" => f!(&[I, I, S], None, |_, a| {
            let (l, r) = (i(&a[0]), i(&a[1]));
            if r < 4 || l > 0 && r < 7 {
                return st(s(&a[2]));
            }
            st(abbreviate_full(s(&a[2]), l, r).unwrap_or_default())
        }),
        "trunc" => f!(&[I, S], None, |_, a| {
            let (c, x) = (i(&a[0]), s(&a[1]).as_bytes());
            let len = i64::try_from(x.len()).unwrap_or(i64::MAX);
            let out = if c < 0 && len + c > 0 {
                &x[idx(len + c)?..]
            } else if c >= 0 && len > c {
                &x[..idx(c)?]
            } else {
                x
            };
            st(String::from_utf8_lossy(out))
        }),
        "trim" => f!(&[S], None, |_, a| st(s(&a[0]).trim_matches(go_space))),
        "upper" => f!(&[S], None, |_, a| st(s(&a[0]).to_uppercase())),
        "lower" => f!(&[S], None, |_, a| st(s(&a[0]).to_lowercase())),
        "title" => f!(&[S], None, |_, a| st(title(s(&a[0])))),
        "untitle" => f!(&[S], None, |_, a| st(untitle(s(&a[0])))),
        "substr" => f!(&[I, I, S], None, |_, a| {
            let (start, end, x) = (i(&a[0]), i(&a[1]), s(&a[2]).as_bytes());
            let len = i64::try_from(x.len()).unwrap_or(i64::MAX);
            let bounds = |from: i64, to: i64| -> Result<Value, String> {
                if to > len {
                    return Err(format!(
                        "runtime error: slice bounds out of range [:{to}] with length {len}"
                    ));
                }
                if from < 0 || to < from {
                    return Err(format!(
                        "runtime error: slice bounds out of range [{from}:{to}]"
                    ));
                }
                st(String::from_utf8_lossy(&x[idx(from)?..idx(to)?]))
            };
            if start < 0 {
                return bounds(0, end);
            }
            if end < 0 || end > len {
                return bounds(start, len);
            }
            bounds(start, end)
        }),
        "repeat" => f!(&[I, S], None, |_, a| {
            let n = i(&a[0]);
            if n < 0 {
                return Err("strings: negative Repeat count".into());
            }
            st(s(&a[1]).repeat(idx(n)?))
        }),
        "trimAll" => f!(&[S, S], None, |_, a| {
            let cut: Vec<char> = s(&a[0]).chars().collect();
            st(s(&a[1]).trim_matches(cut.as_slice()))
        }),
        "trimSuffix" => f!(&[S, S], None, |_, a| {
            st(s(&a[1]).strip_suffix(s(&a[0])).unwrap_or(s(&a[1])))
        }),
        "trimPrefix" => f!(&[S, S], None, |_, a| {
            st(s(&a[1]).strip_prefix(s(&a[0])).unwrap_or(s(&a[1])))
        }),
        "nospace" => f!(&[S], None, |_, a| st(nospace(s(&a[0])))),
        "initials" => f!(&[S], None, |_, a| st(initials(s(&a[0])))),
        "swapcase" => f!(&[S], None, |_, a| st(swapcase(s(&a[0])))),
        "snakecase" => f!(&[S], None, |_, a| st(camel_to_lower(s(&a[0]), '_'))),
        "kebabcase" => f!(&[S], None, |_, a| st(camel_to_lower(s(&a[0]), '-'))),
        "camelcase" => f!(&[S], None, |_, a| st(pascal(s(&a[0])))),
        "wrap" => f!(&[I, S], None, |_, a| st(wrap_custom(
            s(&a[1]),
            i(&a[0]),
            "",
            false
        ))),
        "wrapWith" => f!(&[I, S, S], None, |_, a| {
            st(wrap_custom(s(&a[2]), i(&a[0]), s(&a[1]), true))
        }),
        "contains" => f!(&[S, S], None, |_, a| Ok(Value::Bool(
            s(&a[1]).contains(s(&a[0]))
        ))),
        "hasPrefix" => f!(&[S, S], None, |_, a| {
            Ok(Value::Bool(s(&a[1]).starts_with(s(&a[0]))))
        }),
        "hasSuffix" => f!(&[S, S], None, |_, a| Ok(Value::Bool(
            s(&a[1]).ends_with(s(&a[0]))
        ))),
        "quote" => f!(&[], Some(Any), |_, a| {
            let out: Vec<String> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| gofmt::quote(&strval(v)))
                .collect();
            st(out.join(" "))
        }),
        "squote" => f!(&[], Some(Any), |_, a| {
            let out: Vec<String> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| format!("'{}'", value_string(v)))
                .collect();
            st(out.join(" "))
        }),
        "cat" => f!(&[], Some(Any), |_, a| {
            let out: Vec<String> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(value_string)
                .collect();
            st(out.join(" "))
        }),
        "indent" => f!(&[I, S], None, |_, a| {
            let pad = " ".repeat(usize::try_from(i(&a[0])).unwrap_or(0));
            st(format!(
                "{pad}{}",
                s(&a[1]).replace('\n', &format!("\n{pad}"))
            ))
        }),
        "nindent" => f!(&[I, S], None, |_, a| {
            let pad = " ".repeat(usize::try_from(i(&a[0])).unwrap_or(0));
            st(format!(
                "\n{pad}{}",
                s(&a[1]).replace('\n', &format!("\n{pad}"))
            ))
        }),
        "replace" => f!(&[S, S, S], None, |_, a| {
            let (old, new, src) = (s(&a[0]), s(&a[1]), s(&a[2]));
            if old.is_empty() {
                // Go inserts `new` around every rune.
                let mut o = String::from(new);
                for c in src.chars() {
                    o.push(c);
                    o.push_str(new);
                }
                return st(o);
            }
            st(src.replace(old, new))
        }),
        "plural" => f!(&[S, S, I], None, |_, a| {
            st(if i(&a[2]) == 1 { s(&a[0]) } else { s(&a[1]) })
        }),
        "sha1sum" => f!(&[S], None, |_, a| st(hex(&sha1(s(&a[0]).as_bytes())))),
        "sha256sum" => f!(&[S], None, |_, a| st(hex(&sha256(s(&a[0]).as_bytes())))),
        "adler32sum" => f!(&[S], None, |_, a| st(
            adler32(s(&a[0]).as_bytes()).to_string()
        )),
        "toString" => f!(&[Any], None, |_, a| st(strval(&a[0]))),
        "seq" => f!(&[], Some(I), |_, a| {
            let p: Vec<i64> = a.iter().map(i).collect();
            st(seq(&p))
        }),
        "splitList" => f!(&[S, S], None, |_, a| {
            let (sep, orig) = (s(&a[0]), s(&a[1]));
            let parts: Vec<String> = if sep.is_empty() {
                orig.chars().map(String::from).collect()
            } else {
                orig.split(sep).map(String::from).collect()
            };
            Ok(Value::StrList(parts))
        }),
        "toStrings" => f!(&[Any], None, |_, a| Ok(Value::StrList(strslice(&a[0])))),
        "join" => f!(&[S, Any], None, |_, a| st(strslice(&a[1]).join(s(&a[0])))),
        "sortAlpha" => f!(&[Any], None, |_, a| {
            let mut v = match &a[0] {
                Value::List(_) | Value::StrList(_) => strslice(&a[0]),
                other => vec![strval(other)],
            };
            v.sort();
            Ok(Value::StrList(v))
        }),
        // sprig: defaults and flow.
        "default" => f!(&[Any], Some(Any), |_, a| {
            Ok(match a.get(1) {
                Some(g) if !empty(g) => g.clone(),
                _ => a[0].clone(),
            })
        }),
        "empty" => f!(&[Any], None, |_, a| Ok(Value::Bool(empty(&a[0])))),
        "coalesce" => f!(&[], Some(Any), |_, a| {
            Ok(a.into_iter().find(|v| !empty(v)).unwrap_or(Value::Nil))
        }),
        "all" => f!(&[], Some(Any), |_, a| Ok(Value::Bool(
            a.iter().all(|v| !empty(v))
        ))),
        "any" => f!(&[], Some(Any), |_, a| Ok(Value::Bool(
            a.iter().any(|v| !empty(v))
        ))),
        "compact" | "mustCompact" => f!(&[Any], None, |_, a| {
            let l = elems(&a[0]).map_err(|k| format!("Cannot compact on type {k}"))?;
            list(l.into_iter().filter(|v| !empty(v)).collect())
        }),
        "ternary" => f!(&[Any, Any, B], None, |_, a| {
            Ok(if matches!(a[2], Value::Bool(true)) {
                a[0].clone()
            } else {
                a[1].clone()
            })
        }),
        "fail" => f!(&[S], None, |_, a| Err(s(&a[0]).to_string())),
        // sprig: paths.
        "base" => f!(&[S], None, |_, a| st(path_base(s(&a[0])))),
        "dir" => f!(&[S], None, |_, a| st(path_dir(s(&a[0])))),
        "clean" => f!(&[S], None, |_, a| st(path_clean(s(&a[0])))),
        "ext" => f!(&[S], None, |_, a| st(path_ext(s(&a[0])))),
        "isAbs" => f!(&[S], None, |_, a| Ok(Value::Bool(
            s(&a[0]).starts_with('/')
        ))),
        // sprig: encodings.
        "b64enc" => f!(&[S], None, |_, a| {
            use base64::Engine as _;
            st(base64::engine::general_purpose::STANDARD.encode(s(&a[0])))
        }),
        "b64dec" => f!(&[S], None, |_, a| match b64dec(s(&a[0])) {
            Ok(b) => st(String::from_utf8_lossy(&b)),
            Err(e) => st(e),
        }),
        "b32enc" => f!(&[S], None, |_, a| st(b32enc(s(&a[0]).as_bytes()))),
        "b32dec" => f!(&[S], None, |_, a| match b32dec(s(&a[0])) {
            Ok(b) => st(String::from_utf8_lossy(&b)),
            Err(e) => st(e),
        }),
        // sprig: lists and dicts.
        "tuple" | "list" => f!(&[], Some(Any), |_, a| list(a)),
        "dict" => f!(&[], Some(Any), |_, a| {
            let mut m = BTreeMap::new();
            for pair in a.chunks(2) {
                let v = pair
                    .get(1)
                    .cloned()
                    .unwrap_or_else(|| Value::Str(String::new()));
                m.insert(strval(&pair[0]), v);
            }
            Ok(Value::map(m))
        }),
        "get" => f!(&[M, S], None, |_, a| {
            Ok(map_of(&a[0])
                .borrow()
                .get(s(&a[1]))
                .cloned()
                .unwrap_or_else(|| Value::Str(String::new())))
        }),
        "set" => f!(&[M, S, Any], None, |_, a| {
            let m = map_of(&a[0]);
            m.borrow_mut().insert(s(&a[1]).to_string(), a[2].clone());
            Ok(Value::Map(m))
        }),
        "unset" => f!(&[M, S], None, |_, a| {
            let m = map_of(&a[0]);
            m.borrow_mut().remove(s(&a[1]));
            Ok(Value::Map(m))
        }),
        "hasKey" => f!(&[M, S], None, |_, a| {
            Ok(Value::Bool(map_of(&a[0]).borrow().contains_key(s(&a[1]))))
        }),
        "pluck" => f!(&[S], Some(M), |_, a| {
            list(
                a[1..]
                    .iter()
                    .filter_map(|d| map_of(d).borrow().get(s(&a[0])).cloned())
                    .collect(),
            )
        }),
        "keys" => f!(&[], Some(M), |_, a| {
            let mut k = Vec::new();
            for d in &a {
                k.extend(map_of(d).borrow().keys().cloned());
            }
            Ok(Value::StrList(k))
        }),
        "pick" => f!(&[M], Some(S), |_, a| {
            let src = map_of(&a[0]);
            let src = src.borrow();
            let mut m = BTreeMap::new();
            for k in &a[1..] {
                if let Some(v) = src.get(s(k)) {
                    m.insert(s(k).to_string(), v.clone());
                }
            }
            Ok(Value::map(m))
        }),
        "omit" => f!(&[M], Some(S), |_, a| {
            let mut m = map_of(&a[0]).borrow().clone();
            for k in &a[1..] {
                m.remove(s(k));
            }
            Ok(Value::map(m))
        }),
        "merge" | "mustMerge" => f!(&[M], Some(M), |_, a| Ok(merge(&a, false))),
        "mergeOverwrite" | "mustMergeOverwrite" => {
            f!(&[M], Some(M), |_, a| Ok(merge(&a, true)))
        }
        "values" => f!(&[M], None, |_, a| list(
            map_of(&a[0]).borrow().values().cloned().collect()
        )),
        "append" | "push" | "mustAppend" | "mustPush" => f!(&[Any, Any], None, |_, a| {
            let mut l = must_list("push on", &a[0])?;
            l.push(a[1].clone());
            list(l)
        }),
        "prepend" | "mustPrepend" => f!(&[Any, Any], None, |_, a| {
            let mut l = must_list("prepend on", &a[0])?;
            l.insert(0, a[1].clone());
            list(l)
        }),
        "first" | "mustFirst" => f!(&[Any], None, |_, a| {
            Ok(list_op("first", &a[0])?
                .into_iter()
                .next()
                .unwrap_or(Value::Nil))
        }),
        "last" | "mustLast" => f!(&[Any], None, |_, a| {
            Ok(list_op("last", &a[0])?.pop().unwrap_or(Value::Nil))
        }),
        "rest" | "mustRest" => f!(&[Any], None, |_, a| {
            let l = list_op("rest", &a[0])?;
            list(l.into_iter().skip(1).collect())
        }),
        "initial" | "mustInitial" => f!(&[Any], None, |_, a| {
            let mut l = list_op("initial", &a[0])?;
            l.pop();
            list(l)
        }),
        "reverse" | "mustReverse" => f!(&[Any], None, |_, a| {
            let mut l = list_op("reverse", &a[0])?;
            l.reverse();
            list(l)
        }),
        "uniq" | "mustUniq" => f!(&[Any], None, |_, a| {
            let mut out: Vec<Value> = Vec::new();
            for v in list_op("uniq", &a[0])? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            list(out)
        }),
        "without" | "mustWithout" => f!(&[Any], Some(Any), |_, a| {
            let omit = &a[1..];
            list(
                list_op("without", &a[0])?
                    .into_iter()
                    .filter(|v| !omit.contains(v))
                    .collect(),
            )
        }),
        "has" | "mustHas" => f!(&[Any, Any], None, |_, a| {
            if matches!(a[1], Value::Nil) {
                return Ok(Value::Bool(false));
            }
            Ok(Value::Bool(list_op("has", &a[1])?.contains(&a[0])))
        }),
        "slice" | "mustSlice" => unreachable_slice(),
        "concat" => f!(&[], Some(Any), |_, a| {
            let mut out = Vec::new();
            for l in &a {
                out.extend(elems(l).map_err(|k| format!("Cannot concat type {k} as list"))?);
            }
            if out.is_empty() {
                return list(Vec::new());
            }
            list(out)
        }),
        "dig" => f!(&[], Some(Any), |_, a| dig(&a)),
        "chunk" | "mustChunk" => f!(&[I, Any], None, |_, a| {
            let l = elems(&a[1]).map_err(|k| format!("Cannot chunk type {k}"))?;
            chunk(i(&a[0]), &l)
        }),
        "uuidv4" => f!(&[], None, |state, _| st(uuidv4(state))),
        // sprig: regular expressions.
        "regexMatch" => f!(&[S, S], None, |_, a| {
            Ok(Value::Bool(
                re(s(&a[0])).is_ok_and(|r| r.is_match(s(&a[1]))),
            ))
        }),
        "mustRegexMatch" => f!(&[S, S], None, |_, a| {
            Ok(Value::Bool(re(s(&a[0]))?.is_match(s(&a[1]))))
        }),
        "regexFindAll" | "mustRegexFindAll" => f!(&[S, S, I], None, |_, a| {
            Ok(Value::StrList(find_all(&re(s(&a[0]))?, s(&a[1]), i(&a[2]))))
        }),
        "regexFind" | "mustRegexFind" => f!(&[S, S], None, |_, a| {
            st(re(s(&a[0]))?
                .find(s(&a[1]))
                .map(|m| m.as_str())
                .unwrap_or_default())
        }),
        "regexReplaceAll" | "mustRegexReplaceAll" => f!(&[S, S, S], None, |_, a| {
            st(replace_all(&re(s(&a[0]))?, s(&a[1]), s(&a[2])))
        }),
        "regexReplaceAllLiteral" | "mustRegexReplaceAllLiteral" => {
            f!(&[S, S, S], None, |_, a| {
                st(re(s(&a[0]))?
                    .replace_all(s(&a[1]), regex::NoExpand(s(&a[2])))
                    .into_owned())
            })
        }
        "regexSplit" | "mustRegexSplit" => f!(&[S, S, I], None, |_, a| {
            Ok(Value::StrList(split(&re(s(&a[0]))?, s(&a[1]), i(&a[2]))))
        }),
        "regexQuoteMeta" => f!(&[S], None, |_, a| st(quote_meta(s(&a[0])))),
        // sprig: URLs.
        "urlParse" => f!(&[S], None, |_, a| url_parse(s(&a[0]))),
        "urlJoin" => f!(&[M], None, |_, a| url_join(&a[0])),
        _ => return None,
    })
}

/// sprig's `slice` replaces text/template's builtin of the same name (SPIRE adds the
/// funcs after the builtins, and a template's funcs win).
fn unreachable_slice() -> Func {
    f!(&[Any], Some(Any), |_, a| {
        let l =
            elems(&a[0]).map_err(|k| format!("list should be type of slice or array but {k}"))?;
        if l.is_empty() {
            return Ok(Value::Nil);
        }
        let start = a.get(1).map_or(0, to_int);
        let end = a.get(2).map_or(i64::try_from(l.len()).unwrap_or(0), to_int);
        let len = i64::try_from(l.len()).unwrap_or(0);
        if start < 0 || end < start || end > len {
            return Err("reflect.Value.Slice: slice index out of bounds".into());
        }
        let part = l[idx(start)?..idx(end)?].to_vec();
        Ok(match &a[0] {
            Value::StrList(_) => Value::StrList(part.iter().map(strval).collect()),
            _ => Value::List(part),
        })
    })
}

/// The function `name`, if a template may call it.
pub(super) fn lookup(name: &str) -> Option<Func> {
    lookup_table(name)
}

pub(super) fn is_defined(name: &str) -> bool {
    lookup_table(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(&[b'a'; 1000])),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
        assert_eq!(adler32(b"Wikipedia"), 300_286_872);
        assert_eq!(b32enc(b"foobar"), "MZXW6YTBOI======");
        assert_eq!(b32dec("MZXW6YTBOI======").unwrap(), b"foobar");
    }

    #[test]
    fn case_conversions_follow_xstrings() {
        assert_eq!(camel_to_lower("FirstName", '_'), "first_name");
        assert_eq!(camel_to_lower("HTTPServer", '_'), "http_server");
        assert_eq!(camel_to_lower("us-east-1", '_'), "us_east_1");
        assert_eq!(camel_to_lower("NoHTTPS", '-'), "no-https");
        assert_eq!(pascal("some_words here"), "SomeWordsHere");
        assert_eq!(pascal("http_server"), "HttpServer");
    }
}
