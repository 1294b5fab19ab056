//! go-spiffe v2's `spiffeid.FromString` and `spiffeid.TrustDomainFromString`
//! with their exact error texts (SPIRE prints them verbatim), on spiffe-core's
//! go-spiffe classification.

use spiffe_core::id::go_compat;

use spire_proto::spire::api::types::Spiffeid;

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

/// `spiffeid.ValidatePath`.
pub(crate) fn validate_path(path: &str) -> Result<(), &'static str> {
    go_compat::path_error(path).map_or(Ok(()), Err)
}

/// `spiffeid.FromString`.
pub(crate) fn parse_id(id: &str) -> Result<Id, &'static str> {
    if let Some(e) = go_compat::id_error(id) {
        return Err(e);
    }
    // Accepted, so the scheme is there and a trust domain follows it.
    let rest = id.strip_prefix(SCHEME).unwrap_or_default();
    let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok(Id {
        td: td.to_owned(),
        path: path.to_owned(),
    })
}

/// `spiffeid.TrustDomainFromString`: the trust domain name.
pub(crate) fn parse_td(id_or_name: &str) -> Result<String, &'static str> {
    if let Some(e) = go_compat::trust_domain_error(id_or_name) {
        return Err(e);
    }
    if id_or_name.contains(":/") {
        return parse_id(id_or_name).map(|id| id.td);
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
        assert_eq!(
            parse_id("spiffe://example.org").map(|i| (i.td, i.path)),
            Ok(("example.org".to_owned(), String::new()))
        );
        let bad_td = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
        assert_eq!(parse_id(""), Err("cannot be empty"));
        assert_eq!(parse_id("bad"), Err("scheme is missing or invalid"));
        assert_eq!(parse_id("spiffe://"), Err("trust domain is missing"));
        assert_eq!(parse_id("spiffe://Ex"), Err(bad_td));
        assert_eq!(
            parse_id("spiffe://e//a"),
            Err("path cannot contain empty segments")
        );
        assert_eq!(
            parse_id("spiffe://e/a/"),
            Err("path cannot have a trailing slash")
        );
        assert_eq!(
            parse_id("spiffe://e/./a"),
            Err("path cannot contain dot segments")
        );
        assert_eq!(
            parse_id("spiffe://e/a b"),
            Err(
                "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
            )
        );
        assert_eq!(parse_td("spiffe://td"), Ok("td".to_owned()));
        assert_eq!(parse_td("td"), Ok("td".to_owned()));
        assert_eq!(parse_td("bad td"), Err(bad_td));
        assert_eq!(parse_td(""), Err("trust domain is missing"));
    }
}
