//! SPIFFE IDs and trust domains, parsed exactly as the SPIFFE ID standard states.
//!
//! Both types are only ever built by parsing, so holding one means the string is valid.
//! Every way a string can be rejected has its own [`IdError`] variant.

use std::fmt;
use std::str::FromStr;

/// The URI scheme prefix of every SPIFFE ID.
const SCHEME_PREFIX: &str = "spiffe://";

/// Trust domain names longer than this many bytes are rejected (SPIFFE ID standard §2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// SPIFFE IDs longer than this many bytes are rejected (SPIFFE ID standard §2.3).
pub const MAX_ID_LEN: usize = 2048;

/// Why a string is not a SPIFFE ID, trust domain or path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input was the empty string.
    #[error("cannot be empty")]
    Empty,
    /// The whole ID is longer than [`MAX_ID_LEN`] bytes.
    #[error("SPIFFE ID is {0} bytes long; the maximum is 2048")]
    TooLong(usize),
    /// The scheme is not `spiffe` (or the `://` separator is missing).
    #[error("scheme is missing or invalid")]
    WrongScheme,
    /// The scheme is `spiffe` in another case, such as `SPIFFE://`.
    #[error("scheme must be lowercase \"spiffe\"")]
    SchemeNotLowercase,
    /// Nothing stands between `spiffe://` and the path.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// The trust domain name is longer than [`MAX_TRUST_DOMAIN_LEN`] bytes.
    #[error("trust domain is {0} bytes long; the maximum is 255")]
    TrustDomainTooLong(usize),
    /// The authority part carries a port (`example.org:8080`).
    #[error("trust domain cannot contain a port")]
    TrustDomainHasPort,
    /// The authority part carries userinfo (`user@example.org`).
    #[error("trust domain cannot contain userinfo")]
    TrustDomainHasUserInfo,
    /// The trust domain has uppercase letters; trust domains are lowercase.
    #[error(
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (found uppercase {0:?})"
    )]
    TrustDomainUppercase(char),
    /// The trust domain has another character outside `[a-z0-9._-]`.
    #[error(
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (found {0:?})"
    )]
    BadTrustDomainChar(char),
    /// The ID carries a query (`?…`).
    #[error("SPIFFE ID cannot contain a query")]
    HasQuery,
    /// The ID carries a fragment (`#…`).
    #[error("SPIFFE ID cannot contain a fragment")]
    HasFragment,
    /// The ID is percent-encoded somewhere.
    #[error("SPIFFE ID cannot contain percent-encoded characters")]
    PercentEncoded,
    /// A path that is not empty does not start with `/`.
    #[error("path must have a leading slash")]
    NoLeadingSlash,
    /// The path has `//`.
    #[error("path cannot contain empty segments")]
    EmptySegment,
    /// The path has a `.` or `..` segment.
    #[error("path cannot contain dot segments")]
    DotSegment,
    /// The path ends with `/`.
    #[error("path cannot have a trailing slash")]
    TrailingSlash,
    /// A path segment has a character outside `[A-Za-z0-9._-]`.
    #[error(
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores (found {0:?})"
    )]
    BadPathChar(char),
}

fn is_td_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn is_path_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

/// Checks a trust domain name (the authority part of a SPIFFE ID).
fn check_trust_domain(name: &str) -> Result<(), IdError> {
    // The common case in one pass; anything else takes the checks below, in the order
    // that picks the error.
    if !name.is_empty() && name.len() <= MAX_TRUST_DOMAIN_LEN && name.bytes().all(is_td_char) {
        return Ok(());
    }
    if name.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    if name.contains('@') {
        return Err(IdError::TrustDomainHasUserInfo);
    }
    if name.contains('%') {
        return Err(IdError::PercentEncoded);
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '[' | ']')) {
        // An IPv6 literal: the standard excludes these outright.
        return Err(IdError::BadTrustDomainChar(c));
    }
    if name.contains(':') {
        return Err(IdError::TrustDomainHasPort);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii() || !is_td_char(*c as u8))
    {
        if c.is_uppercase() {
            return Err(IdError::TrustDomainUppercase(c));
        }
        return Err(IdError::BadTrustDomainChar(c));
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong(name.len()));
    }
    Ok(())
}

/// Whether `path` is `/segment(/segment)*` with only path characters and no `.` or `..`
/// segment: one pass over the bytes for what nearly every path is.
fn plain_path(path: &[u8]) -> bool {
    let Some((b'/', rest)) = path.split_first() else {
        return false;
    };
    rest.split(|&c| c == b'/').all(|segment| {
        !segment.is_empty()
            && segment != b"."
            && segment != b".."
            && segment.iter().all(|&c| is_path_char(c))
    })
}

/// Checks the path part of a SPIFFE ID: empty, or `/segment(/segment)*`.
pub fn validate_path(path: &str) -> Result<(), IdError> {
    if path.is_empty() || plain_path(path.as_bytes()) {
        return Ok(());
    }
    if path.contains('?') {
        return Err(IdError::HasQuery);
    }
    if path.contains('#') {
        return Err(IdError::HasFragment);
    }
    if path.contains('%') {
        return Err(IdError::PercentEncoded);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(IdError::NoLeadingSlash);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err(if i == last {
                IdError::TrailingSlash
            } else {
                IdError::EmptySegment
            });
        }
        if *segment == "." || *segment == ".." {
            return Err(IdError::DotSegment);
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !c.is_ascii() || !is_path_char(*c as u8))
        {
            return Err(IdError::BadPathChar(c));
        }
    }
    Ok(())
}

/// A SPIFFE trust domain, such as `example.org`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain {
    name: Box<str>,
}

impl TrustDomain {
    /// Parses a bare trust domain name such as `example.org`.
    pub fn new(name: &str) -> Result<Self, IdError> {
        check_trust_domain(name)?;
        Ok(Self { name: name.into() })
    }

    /// Parses either a bare name (`example.org`) or a trust domain ID (`spiffe://example.org`),
    /// as SPIRE's `-trustDomain`, `-id` and configuration values accept.
    /// A SPIFFE ID with a path is accepted and its trust domain taken, as go-spiffe does.
    pub fn from_name_or_id(s: &str) -> Result<Self, IdError> {
        if s.contains(":/") {
            Ok(SpiffeId::parse(s)?.trust_domain())
        } else {
            Self::new(s)
        }
    }

    /// The trust domain name, such as `example.org`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>`.
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            id: format!("{SCHEME_PREFIX}{}", self.name).into(),
            path_start: SCHEME_PREFIX.len() + self.name.len(),
        }
    }

    /// `spiffe://<name>` as a string.
    pub fn id_string(&self) -> String {
        format!("{SCHEME_PREFIX}{}", self.name)
    }

    /// Builds an ID in this trust domain from a path (`""` or `/a/b`).
    pub fn id_with_path(&self, path: &str) -> Result<SpiffeId, IdError> {
        validate_path(path)?;
        let id = format!("{SCHEME_PREFIX}{}{path}", self.name);
        if id.len() > MAX_ID_LEN {
            return Err(IdError::TooLong(id.len()));
        }
        Ok(SpiffeId {
            id: id.into(),
            path_start: SCHEME_PREFIX.len() + self.name.len(),
        })
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.name)
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A SPIFFE ID, such as `spiffe://example.org/workload`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    id: Box<str>,
    path_start: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID. The scheme must be lowercase `spiffe`; see [`IdError`] for
    /// everything else that is rejected.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let path_start = Self::check(s)?;
        Ok(Self {
            id: s.into(),
            path_start,
        })
    }

    /// Checks `s` as [`SpiffeId::parse`] does, without building the ID (for bulk reads of
    /// stored IDs). Returns where the path starts.
    pub fn check(s: &str) -> Result<usize, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong(s.len()));
        }
        let rest = match s.strip_prefix(SCHEME_PREFIX) {
            Some(rest) => rest,
            None => {
                let lowered = s.get(..SCHEME_PREFIX.len()).map(str::to_ascii_lowercase);
                if lowered.as_deref() == Some(SCHEME_PREFIX) {
                    return Err(IdError::SchemeNotLowercase);
                }
                return Err(IdError::WrongScheme);
            }
        };
        let td_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (td, path) = rest.split_at(td_end);
        if td.is_empty() {
            return Err(IdError::MissingTrustDomain);
        }
        check_trust_domain(td)?;
        validate_path(path)?;
        Ok(SCHEME_PREFIX.len() + td_end)
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain {
            name: self.trust_domain_name().into(),
        }
    }

    /// The trust domain name, without allocating.
    pub fn trust_domain_name(&self) -> &str {
        &self.id[SCHEME_PREFIX.len()..self.path_start]
    }

    /// Whether this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_name() == td.name()
    }

    /// The path, `""` for a trust domain ID, else `/…`.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Whether this is a trust domain ID (no path).
    pub fn is_trust_domain_id(&self) -> bool {
        self.path().is_empty()
    }

    /// Appends a path (`/a/b`) to this ID.
    pub fn join(&self, path: &str) -> Result<SpiffeId, IdError> {
        validate_path(path)?;
        let id = format!("{}{path}", self.id);
        if id.len() > MAX_ID_LEN {
            return Err(IdError::TooLong(id.len()));
        }
        Ok(SpiffeId {
            id: id.into(),
            path_start: self.path_start,
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SpiffeId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for TrustDomain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> serde::Deserialize<'de> for TrustDomain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TrustDomain::from_name_or_id(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IdError::*;

    /// Inputs that must parse, with the trust domain and path they must yield.
    const VALID: &[(&str, &str, &str)] = &[
        ("spiffe://example.org", "example.org", ""),
        ("spiffe://example.org/workload", "example.org", "/workload"),
        ("spiffe://example.org/a/b/c", "example.org", "/a/b/c"),
        ("spiffe://td", "td", ""),
        ("spiffe://a", "a", ""),
        ("spiffe://1", "1", ""),
        ("spiffe://-", "-", ""),
        ("spiffe://_", "_", ""),
        ("spiffe://.", ".", ""),
        ("spiffe://..", "..", ""),
        ("spiffe://a-b_c.d", "a-b_c.d", ""),
        ("spiffe://127.0.0.1", "127.0.0.1", ""),
        ("spiffe://example.org/UPPER", "example.org", "/UPPER"),
        (
            "spiffe://example.org/MiXeD/case",
            "example.org",
            "/MiXeD/case",
        ),
        ("spiffe://example.org/..a", "example.org", "/..a"),
        ("spiffe://example.org/a..", "example.org", "/a.."),
        ("spiffe://example.org/...", "example.org", "/..."),
        ("spiffe://example.org/.a", "example.org", "/.a"),
        ("spiffe://example.org/-", "example.org", "/-"),
        ("spiffe://example.org/_", "example.org", "/_"),
        (
            "spiffe://example.org/0123456789",
            "example.org",
            "/0123456789",
        ),
        (
            "spiffe://example.org/spire/agent/join_token/abc",
            "example.org",
            "/spire/agent/join_token/abc",
        ),
        (
            "spiffe://example.org/ns/default/sa/web",
            "example.org",
            "/ns/default/sa/web",
        ),
        ("spiffe://x.y.z.example.org/p", "x.y.z.example.org", "/p"),
        ("spiffe://0-0/0", "0-0", "/0"),
        (
            "spiffe://example.org/a/b.c-d_e",
            "example.org",
            "/a/b.c-d_e",
        ),
    ];

    /// Inputs that must be rejected, each with its specific error.
    const INVALID: &[(&str, IdError)] = &[
        ("", Empty),
        ("spiffe", WrongScheme),
        ("spiffe:", WrongScheme),
        ("spiffe:/", WrongScheme),
        ("spiffe:/example.org", WrongScheme),
        ("spiffe:example.org", WrongScheme),
        ("http://example.org", WrongScheme),
        ("https://example.org/a", WrongScheme),
        ("example.org", WrongScheme),
        ("example.org/path", WrongScheme),
        ("/path", WrongScheme),
        ("//example.org", WrongScheme),
        ("spife://example.org", WrongScheme),
        (" spiffe://example.org", WrongScheme),
        ("SPIFFE://example.org", SchemeNotLowercase),
        ("Spiffe://example.org", SchemeNotLowercase),
        ("spIffe://example.org/a", SchemeNotLowercase),
        ("spiffe://", MissingTrustDomain),
        ("spiffe:///", MissingTrustDomain),
        ("spiffe:///path", MissingTrustDomain),
        ("spiffe://?q", MissingTrustDomain),
        ("spiffe://#f", MissingTrustDomain),
        ("spiffe://example.org:8080", TrustDomainHasPort),
        ("spiffe://example.org:/a", TrustDomainHasPort),
        ("spiffe://example.org:0/a", TrustDomainHasPort),
        ("spiffe://user@example.org", TrustDomainHasUserInfo),
        ("spiffe://user:pass@example.org/a", TrustDomainHasUserInfo),
        ("spiffe://@example.org", TrustDomainHasUserInfo),
        ("spiffe://Example.org", TrustDomainUppercase('E')),
        ("spiffe://EXAMPLE.ORG/a", TrustDomainUppercase('E')),
        ("spiffe://exAmple.org", TrustDomainUppercase('A')),
        ("spiffe://exa mple.org", BadTrustDomainChar(' ')),
        (
            "spiffe://example.org\u{00e9}",
            BadTrustDomainChar('\u{00e9}'),
        ),
        ("spiffe://ex!ample", BadTrustDomainChar('!')),
        ("spiffe://ex$ample", BadTrustDomainChar('$')),
        ("spiffe://ex*ample", BadTrustDomainChar('*')),
        ("spiffe://ex+ample", BadTrustDomainChar('+')),
        ("spiffe://ex~ample", BadTrustDomainChar('~')),
        ("spiffe://ex=ample", BadTrustDomainChar('=')),
        ("spiffe://[::1]", BadTrustDomainChar('[')),
        ("spiffe://ex\\ample", BadTrustDomainChar('\\')),
        ("spiffe://example%2eorg", PercentEncoded),
        ("spiffe://example.org?", HasQuery),
        ("spiffe://example.org?a=b", HasQuery),
        ("spiffe://example.org/path?a=b", HasQuery),
        ("spiffe://example.org#", HasFragment),
        ("spiffe://example.org#frag", HasFragment),
        ("spiffe://example.org/path#frag", HasFragment),
        ("spiffe://example.org/pa%20th", PercentEncoded),
        ("spiffe://example.org/%2e", PercentEncoded),
        ("spiffe://example.org/", TrailingSlash),
        ("spiffe://example.org/a/", TrailingSlash),
        ("spiffe://example.org/a/b/", TrailingSlash),
        ("spiffe://example.org//", EmptySegment),
        ("spiffe://example.org//a", EmptySegment),
        ("spiffe://example.org/a//b", EmptySegment),
        ("spiffe://example.org/.", DotSegment),
        ("spiffe://example.org/..", DotSegment),
        ("spiffe://example.org/a/./b", DotSegment),
        ("spiffe://example.org/a/../b", DotSegment),
        ("spiffe://example.org/a/.", DotSegment),
        ("spiffe://example.org/a/..", DotSegment),
        ("spiffe://example.org/a b", BadPathChar(' ')),
        ("spiffe://example.org/a!", BadPathChar('!')),
        ("spiffe://example.org/a$", BadPathChar('$')),
        ("spiffe://example.org/a&b", BadPathChar('&')),
        ("spiffe://example.org/a'b", BadPathChar('\'')),
        ("spiffe://example.org/a(b", BadPathChar('(')),
        ("spiffe://example.org/a*b", BadPathChar('*')),
        ("spiffe://example.org/a+b", BadPathChar('+')),
        ("spiffe://example.org/a,b", BadPathChar(',')),
        ("spiffe://example.org/a;b", BadPathChar(';')),
        ("spiffe://example.org/a=b", BadPathChar('=')),
        ("spiffe://example.org/a:b", BadPathChar(':')),
        ("spiffe://example.org/a@b", BadPathChar('@')),
        ("spiffe://example.org/a~b", BadPathChar('~')),
        ("spiffe://example.org/\u{00fc}", BadPathChar('\u{00fc}')),
        ("spiffe://example.org/a\\b", BadPathChar('\\')),
        ("spiffe://example.org/a\tb", BadPathChar('\t')),
    ];

    #[test]
    fn valid_ids_parse_and_format_back() {
        for (input, td, path) in VALID {
            let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(id.trust_domain_name(), *td, "{input}");
            assert_eq!(id.trust_domain().name(), *td, "{input}");
            assert_eq!(id.path(), *path, "{input}");
            assert_eq!(id.to_string(), *input);
            assert_eq!(id.is_trust_domain_id(), path.is_empty());
        }
    }

    #[test]
    fn invalid_ids_are_rejected_with_their_error() {
        for (input, want) in INVALID {
            match SpiffeId::parse(input) {
                Ok(id) => panic!("{input:?} parsed as {id}"),
                Err(got) => assert_eq!(&got, want, "{input:?}"),
            }
        }
    }

    #[test]
    fn the_table_is_large_enough() {
        assert!(VALID.len() + INVALID.len() + LENGTH_CASES >= 80);
    }

    const LENGTH_CASES: usize = 4;

    #[test]
    fn length_limits() {
        let td255 = "a".repeat(255);
        assert!(SpiffeId::parse(&format!("spiffe://{td255}")).is_ok());
        let td256 = "a".repeat(256);
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{td256}")),
            Err(TrustDomainTooLong(256))
        );
        let path = format!("/{}", "p".repeat(2048 - "spiffe://td/".len()));
        let max = format!("spiffe://td{path}");
        assert_eq!(max.len(), 2048);
        assert!(SpiffeId::parse(&max).is_ok());
        let over = format!("{max}q");
        assert_eq!(SpiffeId::parse(&over), Err(TooLong(2049)));
    }

    #[test]
    fn trust_domain_parsing() {
        assert_eq!(
            TrustDomain::new("example.org").map(|t| t.to_string()),
            Ok("example.org".into())
        );
        assert_eq!(TrustDomain::new(""), Err(MissingTrustDomain));
        assert_eq!(
            TrustDomain::new("Example.org"),
            Err(TrustDomainUppercase('E'))
        );
        assert_eq!(TrustDomain::new("example.org:80"), Err(TrustDomainHasPort));
        assert_eq!(
            TrustDomain::new("spiffe://example.org"),
            Err(TrustDomainHasPort)
        );
        assert_eq!(
            TrustDomain::from_name_or_id("spiffe://example.org").map(|t| t.to_string()),
            Ok("example.org".into())
        );
        assert_eq!(
            TrustDomain::from_name_or_id("spiffe://example.org/path").map(|t| t.to_string()),
            Ok("example.org".into())
        );
        assert_eq!(
            TrustDomain::from_name_or_id("spiffe://"),
            Err(MissingTrustDomain)
        );
        let td = TrustDomain::new("example.org").unwrap();
        assert_eq!(td.id().to_string(), "spiffe://example.org");
        assert_eq!(
            td.id_with_path("/a").unwrap().to_string(),
            "spiffe://example.org/a"
        );
        assert_eq!(td.id_with_path("a"), Err(NoLeadingSlash));
        assert_eq!(td.id().join("/x/y").unwrap().path(), "/x/y");
        assert!(td.id().join("/x/y").unwrap().is_member_of(&td));
    }

    #[test]
    fn serde_round_trip() {
        let id = SpiffeId::parse("spiffe://example.org/a").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"spiffe://example.org/a\"");
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://EX\"").is_err());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn td_strategy() -> impl Strategy<Value = String> {
            "[a-z0-9._-]{1,40}"
        }

        fn path_strategy() -> impl Strategy<Value = String> {
            proptest::collection::vec("[A-Za-z0-9._-]{1,12}", 0..6).prop_map(|segs| {
                segs.into_iter()
                    .filter(|s| s != "." && s != "..")
                    .map(|s| format!("/{s}"))
                    .collect::<String>()
            })
        }

        proptest! {
            #[test]
            fn parse_of_format_is_identity(td in td_strategy(), path in path_strategy()) {
                let s = format!("spiffe://{td}{path}");
                let id = SpiffeId::parse(&s).unwrap();
                prop_assert_eq!(id.to_string(), s.clone());
                let again = SpiffeId::parse(&id.to_string()).unwrap();
                prop_assert_eq!(&again, &id);
                prop_assert_eq!(again.trust_domain().id_with_path(again.path()).unwrap(), id);
            }

            #[test]
            fn arbitrary_strings_never_panic(s in ".{0,80}") {
                if let Ok(id) = SpiffeId::parse(&s) {
                    prop_assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id);
                }
            }

            #[test]
            fn uppercase_trust_domains_are_rejected(td in "[a-z]{0,5}[A-Z][a-z]{0,5}") {
                let err = SpiffeId::parse(&format!("spiffe://{td}/a")).unwrap_err();
                prop_assert!(matches!(err, IdError::TrustDomainUppercase(_)), "{:?}", err);
            }
        }
    }
}

/// go-spiffe's own wording for rejected IDs. SPIRE's APIs and CLIs pass go-spiffe's errors
/// through to users, so where spire-rs must print what SPIRE prints it asks these functions
/// instead of using [`IdError`]'s more specific messages. The classification follows
/// go-spiffe v2's parser exactly (first offending byte wins).
pub mod go_compat {
    const BAD_TD: &str = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
    const BAD_PATH: &str =
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores";

    fn td_char(c: u8) -> bool {
        matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
    }

    fn path_char(c: u8) -> bool {
        matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
    }

    /// go-spiffe's message for `spiffeid.FromString(s)`, or `None` if it would accept `s`.
    pub fn id_error(s: &str) -> Option<&'static str> {
        if s.is_empty() {
            return Some("cannot be empty");
        }
        let Some(rest) = s.strip_prefix("spiffe://") else {
            return Some("scheme is missing or invalid");
        };
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() && bytes[i] != b'/' {
            if !td_char(bytes[i]) {
                return Some(BAD_TD);
            }
            i += 1;
        }
        if i == 0 {
            return Some("trust domain is missing");
        }
        path_error(&rest[i..])
    }

    /// go-spiffe's message for `spiffeid.ValidatePath(path)`.
    pub fn path_error(path: &str) -> Option<&'static str> {
        if path.is_empty() {
            return None;
        }
        if !path.starts_with('/') {
            return Some("path must have a leading slash");
        }
        let bytes = path.as_bytes();
        let mut start = 0;
        for (end, &c) in bytes.iter().enumerate() {
            if c == b'/' {
                match &path[start..end] {
                    "/" => return Some("path cannot contain empty segments"),
                    "/." | "/.." => return Some("path cannot contain dot segments"),
                    _ => {}
                }
                start = end;
                continue;
            }
            if !path_char(c) {
                return Some(BAD_PATH);
            }
        }
        match &path[start..] {
            "/" => Some("path cannot have a trailing slash"),
            "/." | "/.." => Some("path cannot contain dot segments"),
            _ => None,
        }
    }

    /// go-spiffe's message for `spiffeid.TrustDomainFromString(s)`.
    pub fn trust_domain_error(s: &str) -> Option<&'static str> {
        if s.is_empty() {
            return Some("trust domain is missing");
        }
        if s.contains(":/") {
            return id_error(s);
        }
        if s.bytes().any(|c| !td_char(c)) {
            return Some(BAD_TD);
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn go_spiffe_classification() {
            assert_eq!(id_error("spiffe://Example.org/a"), Some(BAD_TD));
            assert_eq!(id_error("spiffe://example.org?q"), Some(BAD_TD));
            assert_eq!(id_error("spiffe://example.org/a?q"), Some(BAD_PATH));
            assert_eq!(
                id_error("spiffe://example.org/"),
                Some("path cannot have a trailing slash")
            );
            assert_eq!(
                id_error("spiffe://example.org//a"),
                Some("path cannot contain empty segments")
            );
            assert_eq!(id_error("spiffe:///a"), Some("trust domain is missing"));
            assert_eq!(id_error("http://x"), Some("scheme is missing or invalid"));
            assert_eq!(id_error("spiffe://example.org/a"), None);
            assert_eq!(trust_domain_error("Example"), Some(BAD_TD));
            assert_eq!(trust_domain_error(""), Some("trust domain is missing"));
            assert_eq!(trust_domain_error("spiffe://ok/path"), None);
            assert_eq!(path_error("a"), Some("path must have a leading slash"));
        }
    }
}
