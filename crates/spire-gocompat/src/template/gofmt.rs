//! Go's `fmt` printing of template values: `%v`, `Sprint`, `Sprintln` and `Sprintf`.

use super::Value;

pub(super) fn quote(s: &str) -> String {
    crate::strconv::quote(s)
}

/// `fmt.Sprint("%v", v)`.
pub(super) fn value_string(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) | Value::Int64(i) => i.to_string(),
        Value::Float(f) => float_g(*f, None, 21),
        Value::Str(s) => s.clone(),
        Value::List(l) => {
            let items: Vec<String> = l.iter().map(value_string).collect();
            format!("[{}]", items.join(" "))
        }
        Value::StrList(l) => format!("[{}]", l.join(" ")),
        Value::Map(m) => {
            let items: Vec<String> = m
                .borrow()
                .iter()
                .map(|(k, v)| format!("{k}:{}", value_string(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        Value::StrMap { entries, .. } => {
            let items: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", items.join(" "))
        }
        Value::Struct { fields, .. } => {
            let items: Vec<String> = fields.iter().map(|(_, v)| value_string(v)).collect();
            format!("{{{}}}", items.join(" "))
        }
    }
}

/// Shortest decimal digits and decimal exponent of a finite, non-zero `f`
/// (`0.d1d2… × 10^exp`, Go's `digs` with `dp = exp`).
fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    (digits, exp + 1)
}

/// `%g` / `%v` of a float64 with optional precision; `%v` uses exponent threshold 21.
pub(super) fn float_g(f: f64, prec: Option<usize>, vthreshold: i32) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let neg = f < 0.0;
    let (digits, dp) = match prec {
        None => shortest_digits(f),
        Some(p) => {
            let p = p.max(1);
            let s = format!("{:.*e}", p - 1, f.abs());
            let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let mut d: String = mant.chars().filter(char::is_ascii_digit).collect();
            while d.len() > 1 && d.ends_with('0') {
                d.pop();
            }
            (d, exp.parse::<i32>().unwrap_or(0) + 1)
        }
    };
    let eprec = match prec {
        None => vthreshold,
        Some(p) => i32::try_from(p.max(1)).unwrap_or(i32::MAX),
    };
    let exp = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    } else if dp <= 0 {
        out.push_str("0.");
        for _ in 0..(-dp) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let dpu = usize::try_from(dp).unwrap_or(0);
        if digits.len() <= dpu {
            out.push_str(&digits);
            for _ in digits.len()..dpu {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..dpu]);
            out.push('.');
            out.push_str(&digits[dpu..]);
        }
    }
    out
}

fn is_string(v: &Value) -> bool {
    matches!(v, Value::Str(_))
}

/// `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !is_string(a) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&value_string(a));
    }
    out
}

/// `fmt.Sprintln(args...)`.
pub(super) fn sprintln(args: &[Value]) -> String {
    let items: Vec<String> = args.iter().map(value_string).collect();
    format!("{}\n", items.join(" "))
}

#[derive(Default, Clone, Copy)]
struct Flags {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
}

fn pad(s: String, width: Option<usize>, f: Flags) -> String {
    let Some(w) = width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if f.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if f.zero {
        let (sign, rest) = match s.strip_prefix(['-', '+']) {
            Some(r) => (&s[..1], r.to_string()),
            None => ("", s.clone()),
        };
        format!("{sign}{}{rest}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn bad_verb(verb: char, v: &Value) -> String {
    match v {
        Value::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", v.type_name(), value_string(v)),
    }
}

fn fmt_int(i: i64, verb: char, prec: Option<usize>, f: Flags) -> Option<String> {
    let mag = i.unsigned_abs();
    let mut digits = match verb {
        'd' | 'v' => mag.to_string(),
        'x' => format!("{mag:x}"),
        'X' => format!("{mag:X}"),
        'o' => format!("{mag:o}"),
        'b' => format!("{mag:b}"),
        _ => return None,
    };
    if let Some(p) = prec {
        while digits.len() < p {
            digits.insert(0, '0');
        }
        if p == 0 && mag == 0 {
            digits.clear();
        }
    }
    if f.sharp {
        match verb {
            'x' => digits.insert_str(0, "0x"),
            'X' => digits.insert_str(0, "0X"),
            'o' if !digits.starts_with('0') => digits.insert(0, '0'),
            _ => {}
        }
    }
    let sign = if i < 0 {
        "-"
    } else if f.plus {
        "+"
    } else if f.space {
        " "
    } else {
        ""
    };
    Some(format!("{sign}{digits}"))
}

fn fmt_float(x: f64, verb: char, prec: Option<usize>, f: Flags) -> Option<String> {
    let s = match verb {
        'v' => float_g(x, prec, 21),
        'g' | 'G' => float_g(x, prec, prec.map_or(21, |p| i32::try_from(p).unwrap_or(21))),
        'f' | 'F' => {
            if x.is_finite() {
                format!("{:.*}", prec.unwrap_or(6), x)
            } else {
                float_g(x, None, 21)
            }
        }
        'e' | 'E' => {
            if !x.is_finite() {
                float_g(x, None, 21)
            } else {
                let s = format!("{:.*e}", prec.unwrap_or(6), x);
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                let e: i32 = e.parse().unwrap_or(0);
                let out = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
                if verb == 'E' { out.to_uppercase() } else { out }
            }
        }
        _ => return None,
    };
    let s = if verb == 'G' { s.to_uppercase() } else { s };
    if (f.plus || f.space) && !s.starts_with('-') && !s.starts_with('+') {
        return Some(format!("{}{s}", if f.plus { '+' } else { ' ' }));
    }
    Some(s)
}

fn hex_str(s: &[u8], upper: bool, f: Flags) -> String {
    let mut out = String::new();
    for (i, b) in s.iter().enumerate() {
        if f.space && i > 0 {
            out.push(' ');
        }
        if f.sharp && (f.space || i == 0) {
            out.push_str(if upper { "0X" } else { "0x" });
        }
        if upper {
            out.push_str(&format!("{b:02X}"));
        } else {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

fn format_one(verb: char, v: &Value, prec: Option<usize>, f: Flags) -> String {
    match (verb, v) {
        ('v', Value::Str(s)) | ('s', Value::Str(s)) => match prec {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('q', Value::Str(s)) => {
            if f.sharp && !s.contains('`') {
                format!("`{s}`")
            } else {
                quote(s)
            }
        }
        ('x', Value::Str(s)) => hex_str(s.as_bytes(), false, f),
        ('X', Value::Str(s)) => hex_str(s.as_bytes(), true, f),
        ('t' | 'v', Value::Bool(b)) => b.to_string(),
        ('c', Value::Int(i) | Value::Int64(i)) => u32::try_from(*i)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or('\u{FFFD}')
            .to_string(),
        ('q', Value::Int(i) | Value::Int64(i)) => {
            let c = u32::try_from(*i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            let q = quote(&c.to_string());
            format!("'{}'", &q[1..q.len() - 1].replace("\\\"", "\""))
        }
        ('U', Value::Int(i) | Value::Int64(i)) => format!("U+{:04X}", i),
        (_, Value::Int(i) | Value::Int64(i)) => {
            fmt_int(*i, verb, prec, f).unwrap_or_else(|| bad_verb(verb, v))
        }
        (_, Value::Float(x)) => fmt_float(*x, verb, prec, f).unwrap_or_else(|| bad_verb(verb, v)),
        ('v', other) => value_string(other),
        ('s', Value::StrList(l)) => format!("[{}]", l.join(" ")),
        ('s' | 'q' | 'x' | 'X' | 'd', Value::List(l)) => {
            let items: Vec<String> = l.iter().map(|x| format_one(verb, x, prec, f)).collect();
            format!("[{}]", items.join(" "))
        }
        ('q' | 'x' | 'X', Value::StrList(l)) => {
            let items: Vec<String> = l
                .iter()
                .map(|x| format_one(verb, &Value::Str(x.clone()), prec, f))
                .collect();
            format!("[{}]", items.join(" "))
        }
        _ => bad_verb(verb, v),
    }
}

/// `fmt.Sprintf(format, args...)` for the verbs templates use.
pub(super) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut argi = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut f = Flags::default();
        while let Some(&c) = chars.peek() {
            match c {
                '-' => f.minus = true,
                '+' => f.plus = true,
                '0' => f.zero = true,
                ' ' => f.space = true,
                '#' => f.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
                      argi: &mut usize|
         -> Option<usize> {
            if chars.peek() == Some(&'*') {
                chars.next();
                let v = args.get(*argi);
                *argi += 1;
                return match v {
                    Some(Value::Int(i) | Value::Int64(i)) => usize::try_from(*i).ok(),
                    _ => None,
                };
            }
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        let width = number(&mut chars, &mut argi);
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            prec = Some(number(&mut chars, &mut argi).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        if verb == 'T' {
            if let Some(arg) = args.get(argi) {
                argi += 1;
                out.push_str(&pad(arg.type_name(), width, f));
            } else {
                out.push_str("%!T(MISSING)");
            }
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        let f2 = if verb == 's' || verb == 'v' && matches!(arg, Value::Str(_)) {
            Flags {
                zero: f.zero && !f.minus,
                ..f
            }
        } else {
            f
        };
        out.push_str(&pad(format_one(verb, arg, prec, f2), width, f2));
    }
    if argi < args.len() {
        let extra: Vec<String> = args[argi..]
            .iter()
            .map(|a| match a {
                Value::Nil => "<nil>".to_string(),
                _ => format!("{}={}", a.type_name(), value_string(a)),
            })
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}
