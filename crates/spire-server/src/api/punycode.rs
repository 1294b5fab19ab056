//! Punycode (RFC 3492) as x/net/idna applies it, for SPIRE's DNS name validation: decoding
//! fails where Go's fails (a leading delimiter, a bad digit, overflow, more than 1024 code
//! points), and code points Go cannot represent become U+FFFD.

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 128;
/// Go keeps its counters in `int32`.
const LIMIT: u64 = i32::MAX as u64;

/// The bias adaptation of RFC 3492 §6.1.
fn adapt(delta: u32, points: u32, first: bool) -> u32 {
    let mut delta = if first { delta / DAMP } else { delta / 2 };
    delta += delta / points.max(1);
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE * delta) / (delta + SKEW)
}

/// The threshold for position `k` under `bias`.
fn threshold(k: u32, bias: u32) -> u32 {
    if k <= bias {
        T_MIN
    } else if k >= bias + T_MAX {
        T_MAX
    } else {
        k - bias
    }
}

fn digit_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0') + 26),
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a')),
        _ => None,
    }
}

fn digit_char(d: u32) -> char {
    // `d` is below BASE by construction.
    let d = u8::try_from(d).unwrap_or(0);
    if d < 26 {
        char::from(b'a' + d)
    } else {
        char::from(b'0' + d - 26)
    }
}

/// Decodes the part of a label after `xn--`; `None` where Go reports an error.
pub(crate) fn decode(encoded: &str) -> Option<String> {
    if encoded.is_empty() {
        return Some(String::new());
    }
    let b = encoded.as_bytes();
    let (mut out, mut pos): (Vec<u32>, usize) = match encoded.rfind('-') {
        Some(0) => return None,
        Some(d) if d + 1 == b.len() => return Some(encoded[..d].to_string()),
        Some(d) => (b[..d].iter().map(|&c| u32::from(c)).collect(), d + 1),
        None => (Vec::new(), 0),
    };
    let (mut i, mut n, mut bias) = (0u32, INITIAL_N, INITIAL_BIAS);
    while pos < b.len() {
        let old_i = i;
        let mut w = 1u32;
        let mut k = BASE;
        loop {
            let d = digit_value(*b.get(pos)?)?;
            pos += 1;
            let next = u64::from(i) + u64::from(d) * u64::from(w);
            if next > LIMIT {
                return None;
            }
            i = u32::try_from(next).ok()?;
            let t = threshold(k, bias);
            if d < t {
                break;
            }
            let next_w = u64::from(w) * u64::from(BASE - t);
            if next_w > LIMIT {
                return None;
            }
            w = u32::try_from(next_w).ok()?;
            k += BASE;
        }
        if out.len() >= 1024 {
            return None;
        }
        let points = u32::try_from(out.len() + 1).ok()?;
        bias = adapt(i - old_i, points, old_i == 0);
        n = n.checked_add(i / points)?;
        i %= points;
        if n > 0x10_FFFF {
            return None;
        }
        out.insert(usize::try_from(i).ok()?, n);
        i += 1;
    }
    Some(
        out.into_iter()
            .map(|c| char::from_u32(c).unwrap_or('\u{FFFD}'))
            .collect(),
    )
}

/// Encodes a label (without the `xn--` prefix); `None` on overflow.
pub(crate) fn encode(label: &str) -> Option<String> {
    let code_points: Vec<u32> = label.chars().map(u32::from).collect();
    let mut out: String = label.chars().filter(char::is_ascii).collect();
    let basic = u32::try_from(out.len()).ok()?;
    let mut handled = basic;
    if basic > 0 {
        out.push('-');
    }
    let (mut delta, mut n, mut bias) = (0u64, INITIAL_N, INITIAL_BIAS);
    let total = u32::try_from(code_points.len()).ok()?;
    while handled < total {
        let m = code_points.iter().copied().filter(|&c| c >= n).min()?;
        delta += u64::from(m - n) * u64::from(handled + 1);
        if delta > LIMIT {
            return None;
        }
        n = m;
        for &c in &code_points {
            if c < n {
                delta += 1;
                if delta > LIMIT {
                    return None;
                }
            }
            if c != n {
                continue;
            }
            let mut q = u32::try_from(delta).ok()?;
            let mut k = BASE;
            loop {
                let t = threshold(k, bias);
                if q < t {
                    break;
                }
                out.push(digit_char(t + (q - t) % (BASE - t)));
                q = (q - t) / (BASE - t);
                k += BASE;
            }
            out.push(digit_char(q));
            bias = adapt(u32::try_from(delta).ok()?, handled + 1, handled == basic);
            delta = 0;
            handled += 1;
        }
        delta += 1;
        n += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3492_samples_round_trip() {
        for (decoded, encoded) in [
            ("bücher", "bcher-kva"),
            ("münchen", "mnchen-3ya"),
            ("пример", "e1afmkfd"),
            ("例え", "r8jz45g"),
            ("abc", "abc-"),
        ] {
            assert_eq!(decode(encoded).as_deref(), Some(decoded), "{encoded}");
            assert_eq!(encode(decoded).as_deref(), Some(encoded), "{decoded}");
        }
        assert_eq!(
            decode("80AK6AA92E").as_deref(),
            decode("80ak6aa92e").as_deref()
        );
    }

    #[test]
    fn decoding_fails_where_go_fails() {
        assert_eq!(decode("-abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("a!"), None);
        assert_eq!(decode("99999999999"), None);
        assert_eq!(decode("").as_deref(), Some(""));
    }
}
