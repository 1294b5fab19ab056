//! go-spiffe v2's `spiffeid.FromString` and `spiffeid.TrustDomainFromString`
//! with their exact error texts (SPIRE prints them verbatim).

use spire_proto::spire::api::types::Spiffeid;

pub(crate) const ERR_BAD_TRUST_DOMAIN_CHAR: &str = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
const ERR_BAD_PATH_SEGMENT_CHAR: &str =
    "path segment characters are limited to letters, numbers, dots, dashes, and underscores";
const ERR_DOT_SEGMENT: &str = "path cannot contain dot segments";
const ERR_NO_LEADING_SLASH: &str = "path must have a leading slash";
const ERR_EMPTY: &str = "cannot be empty";
const ERR_EMPTY_SEGMENT: &str = "path cannot contain empty segments";
const ERR_MISSING_TRUST_DOMAIN: &str = "trust domain is missing";
const ERR_TRAILING_SLASH: &str = "path cannot have a trailing slash";
const ERR_WRONG_SCHEME: &str = "scheme is missing or invalid";

const SCHEME: &str = "spiffe://";

/// A parsed SPIFFE ID: trust domain name and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Id {
    pub(crate) td: String,
    pub(crate) path: String,
}

impl Id {
    /// The ID as text.
    pub(crate) fn string(&self) -> String {
        format!("{SCHEME}{}{}", self.td, self.path)
    }

    /// The API type.
    pub(crate) fn proto(&self) -> Spiffeid {
        Spiffeid {
            trust_domain: self.td.clone(),
            path: self.path.clone(),
        }
    }
}

fn is_td_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_')
}

fn is_path_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_')
}

/// `spiffeid.ValidatePath`.
pub(crate) fn validate_path(path: &str) -> Result<(), &'static str> {
    let b = path.as_bytes();
    if b.is_empty() {
        return Ok(());
    }
    if b[0] != b'/' {
        return Err(ERR_NO_LEADING_SLASH);
    }
    let mut start = 0;
    for (end, &c) in b.iter().enumerate() {
        if c == b'/' {
            match &b[start..end] {
                b"/" => return Err(ERR_EMPTY_SEGMENT),
                b"/." | b"/.." => return Err(ERR_DOT_SEGMENT),
                _ => {}
            }
            start = end;
            continue;
        }
        if !is_path_char(c) {
            return Err(ERR_BAD_PATH_SEGMENT_CHAR);
        }
    }
    match &b[start..] {
        b"/" => Err(ERR_TRAILING_SLASH),
        b"/." | b"/.." => Err(ERR_DOT_SEGMENT),
        _ => Ok(()),
    }
}

/// `spiffeid.FromString`.
pub(crate) fn parse_id(id: &str) -> Result<Id, &'static str> {
    if id.is_empty() {
        return Err(ERR_EMPTY);
    }
    let Some(rest) = id.strip_prefix(SCHEME) else {
        return Err(ERR_WRONG_SCHEME);
    };
    let b = rest.as_bytes();
    let mut idx = 0;
    while idx < b.len() {
        let c = b[idx];
        if c == b'/' {
            break;
        }
        if !is_td_char(c) {
            return Err(ERR_BAD_TRUST_DOMAIN_CHAR);
        }
        idx += 1;
    }
    if idx == 0 {
        return Err(ERR_MISSING_TRUST_DOMAIN);
    }
    validate_path(&rest[idx..])?;
    Ok(Id {
        td: rest[..idx].to_owned(),
        path: rest[idx..].to_owned(),
    })
}

/// `spiffeid.TrustDomainFromString`: the trust domain name.
pub(crate) fn parse_td(id_or_name: &str) -> Result<String, &'static str> {
    if id_or_name.is_empty() {
        return Err(ERR_MISSING_TRUST_DOMAIN);
    }
    if id_or_name.contains(":/") {
        return parse_id(id_or_name).map(|id| id.td);
    }
    if !id_or_name.bytes().all(is_td_char) {
        return Err(ERR_BAD_TRUST_DOMAIN_CHAR);
    }
    Ok(id_or_name.to_owned())
}

/// `idutil.IDFromProto` (trust domain then path validation), as text.
pub(crate) fn id_from_proto(id: Option<&Spiffeid>) -> Result<String, String> {
    let Some(id) = id else {
        return Err("request must specify SPIFFE ID".to_owned());
    };
    let td = parse_td(&id.trust_domain).map_err(str::to_owned)?;
    validate_path(&id.path).map_err(str::to_owned)?;
    Ok(format!("{SCHEME}{td}{}", id.path))
}

/// `fmt.Sprintf("spiffe://%s%s", id.TrustDomain, id.Path)`, empty when unset.
pub(crate) fn proto_to_string(id: Option<&Spiffeid>) -> String {
    match id {
        Some(id) => format!("{SCHEME}{}{}", id.trust_domain, id.path),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(
            parse_id("spiffe://example.org/a/b").map(|i| i.string()),
            Ok("spiffe://example.org/a/b".to_owned())
        );
        assert_eq!(parse_id(""), Err(ERR_EMPTY));
        assert_eq!(parse_id("bad"), Err(ERR_WRONG_SCHEME));
        assert_eq!(parse_id("spiffe://"), Err(ERR_MISSING_TRUST_DOMAIN));
        assert_eq!(parse_id("spiffe://Ex"), Err(ERR_BAD_TRUST_DOMAIN_CHAR));
        assert_eq!(parse_id("spiffe://e//a"), Err(ERR_EMPTY_SEGMENT));
        assert_eq!(parse_id("spiffe://e/a/"), Err(ERR_TRAILING_SLASH));
        assert_eq!(parse_id("spiffe://e/./a"), Err(ERR_DOT_SEGMENT));
        assert_eq!(parse_id("spiffe://e/a b"), Err(ERR_BAD_PATH_SEGMENT_CHAR));
        assert_eq!(parse_td("spiffe://td"), Ok("td".to_owned()));
        assert_eq!(parse_td("td"), Ok("td".to_owned()));
        assert_eq!(parse_td("bad td"), Err(ERR_BAD_TRUST_DOMAIN_CHAR));
        assert_eq!(parse_td(""), Err(ERR_MISSING_TRUST_DOMAIN));
    }
}
