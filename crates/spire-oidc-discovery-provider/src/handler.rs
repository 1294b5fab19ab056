//! The HTTP answers, as SPIRE's handler gives them: a pure function of the request, the
//! configuration and the current key set. The discovery document is served at
//! `<prefix>/.well-known/openid-configuration` (behind gorilla's `ProxyHeaders`, so
//! `X-Forwarded-Host` and `X-Forwarded-Proto`/`X-Forwarded-Scheme`/`Forwarded: proto=` count,
//! and only there), the keys at `<prefix>/keys`; only the discovery document checks the
//! host against `domains`.

use std::time::SystemTime;

use crate::keys::{KeySet, go_json_indent, jwks_document};

/// What the handler needs of a request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// The `Host` header (or the URI's authority).
    pub host: String,
    /// Whether it came over TLS.
    pub tls: bool,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Go's `http.Error`.
fn error(status: u16, text: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("Content-Type", "text/plain; charset=utf-8".into()),
            ("X-Content-Type-Options", "nosniff".into()),
        ],
        body: format!("{text}\n").into_bytes(),
    }
}

/// Go's `http.NotFound`.
fn not_found() -> Response {
    error(404, "404 page not found")
}

/// The handler's settings.
#[derive(Debug, Clone)]
pub struct Handler {
    /// `domains`.
    pub domains: Vec<String>,
    /// `allow_insecure_scheme`.
    pub allow_insecure_scheme: bool,
    /// `set_key_use`.
    pub set_key_use: bool,
    /// `jwt_issuer`.
    pub jwt_issuer: Option<String>,
    /// `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// `server_path_prefix` (empty means `/`).
    pub server_path_prefix: String,
}

/// Go's `url.JoinPath(base, elem)` for a path base.
pub fn join_path(base: &str, elem: &str) -> String {
    let relative = !base.starts_with('/');
    let joined = clean(&format!("/{}/{}", base.trim_start_matches('/'), elem));
    let mut p = if relative {
        joined[1..].to_string()
    } else {
        joined
    };
    if elem.ends_with('/') && !p.ends_with('/') {
        p.push('/');
    }
    p
}

/// Go's `path.Clean` for an absolute path.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `url.URL{Scheme, Host, Path}.String()`.
fn url_string(scheme: &str, host: &str, path: &str) -> String {
    let slash = if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{scheme}://{host}{slash}{path}")
}

/// Scheme and host (and path) of a configured URL.
fn split_url(u: &str) -> (&str, &str, &str) {
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    let tail = &rest[end..];
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    (scheme, host, &tail[..path_end])
}

/// SPIRE's domain policy (`DomainAllowlist`): the name must already be in its IDNA lookup
/// form (lowercase ASCII letters, digits, hyphens and dots) and be one of `domains`.
pub fn check_domain(domains: &[String], domain: &str) -> Result<(), String> {
    domain_key(domain)?;
    if domains.iter().any(|d| d == domain) {
        Ok(())
    } else {
        Err(format!(
            "domain {} is not allowed",
            spire_gocompat::strconv::quote(domain)
        ))
    }
}

fn domain_key(domain: &str) -> Result<(), String> {
    let q = spire_gocompat::strconv::quote(domain);
    for c in domain.chars() {
        if c.is_ascii_uppercase() || !c.is_ascii() {
            // IDNA lookup maps these (lowercase, punycode): not "already punycode encoded".
            return Err(format!("domain {q} must already be punycode encoded"));
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.') {
            return Err(format!(
                "domain {q} is not a valid domain name: idna: disallowed rune U+{:04X}",
                c as u32
            ));
        }
    }
    Ok(())
}

/// The host part of `host[:port]` (Go's `net.SplitHostPort`, falling back to the whole).
fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((h, port)) = rest.split_once("]:")
        && !port.contains(':')
    {
        return h;
    }
    match host.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h,
        _ => host,
    }
}

/// gorilla's `ProxyHeaders` scheme: `X-Forwarded-Proto`, else `X-Forwarded-Scheme`, else
/// `proto=http(s)` in `Forwarded`, lowercased.
fn forwarded_scheme(r: &Request) -> Option<String> {
    if let Some(p) = r.header("x-forwarded-proto") {
        return Some(p.to_lowercase());
    }
    if let Some(p) = r.header("x-forwarded-scheme") {
        return Some(p.to_lowercase());
    }
    let fwd = r.header("forwarded")?.to_lowercase();
    let at = fwd.find("proto=")?;
    let rest = &fwd[at + "proto=".len()..];
    if rest.starts_with("https") {
        Some("https".into())
    } else if rest.starts_with("http") {
        Some("http".into())
    } else {
        None
    }
}

/// Go's `http.TimeFormat`.
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[dt.weekday().number_days_from_monday() as usize],
        dt.day(),
        MONTHS[dt.month() as usize - 1],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Parses an `If-Modified-Since` value in `http.TimeFormat`.
fn parse_http_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|d| d.assume_utc().unix_timestamp())
}

impl Handler {
    fn prefix(&self) -> &str {
        if self.server_path_prefix.is_empty() {
            "/"
        } else {
            &self.server_path_prefix
        }
    }

    /// The path of the discovery document.
    pub fn well_known_path(&self) -> String {
        join_path(self.prefix(), "/.well-known/openid-configuration")
    }

    /// The path of the keys.
    pub fn keys_path(&self) -> String {
        join_path(self.prefix(), "/keys")
    }

    /// Answers one request.
    pub fn handle(&self, r: &Request, keys: Option<&KeySet>) -> Response {
        if r.path == self.well_known_path() {
            self.well_known(r)
        } else if r.path == self.keys_path() {
            self.keys(r, keys)
        } else {
            not_found()
        }
    }

    fn well_known(&self, r: &Request) -> Response {
        if r.method != "GET" {
            return error(405, "method not allowed");
        }
        let host = r
            .header("x-forwarded-host")
            .map(str::to_string)
            .unwrap_or_else(|| r.host.clone());
        let scheme = forwarded_scheme(r);
        let url_scheme =
            if self.allow_insecure_scheme && !r.tls && scheme.as_deref() != Some("https") {
                "http"
            } else {
                "https"
            };
        let issuer = match &self.jwt_issuer {
            Some(i) => i.clone(),
            None => {
                let path = if self.prefix() != "/" {
                    self.prefix()
                } else {
                    ""
                };
                url_string(url_scheme, &host, path)
            }
        };
        let jwks_uri = match (&self.jwks_uri, &self.jwt_issuer) {
            (Some(u), _) => u.clone(),
            (None, Some(i)) => {
                let (scheme, ihost, path) = split_url(i);
                url_string(scheme, ihost, &join_path(path, "keys"))
            }
            (None, None) => url_string(url_scheme, &host, &join_path(self.prefix(), "keys")),
        };
        if let Err(e) = check_domain(&self.domains, host_only(&host)) {
            return error(400, &e);
        }
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            issuer: &'a str,
            jwks_uri: &'a str,
            authorization_endpoint: &'a str,
            response_types_supported: [&'a str; 1],
            subject_types_supported: [&'a str; 1],
            id_token_signing_alg_values_supported: [&'a str; 3],
        }
        let body = go_json_indent(&Doc {
            issuer: &issuer,
            jwks_uri: &jwks_uri,
            authorization_endpoint: "",
            response_types_supported: ["id_token"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: ["RS256", "ES256", "ES384"],
        });
        Response {
            status: 200,
            headers: vec![("Content-Type", "application/json".into())],
            body,
        }
    }

    fn keys(&self, r: &Request, keys: Option<&KeySet>) -> Response {
        if r.method != "GET" {
            return error(405, "method not allowed");
        }
        let Some(set) = keys else {
            return error(500, "document not available");
        };
        let body = jwks_document(set, self.set_key_use);
        let modified = http_date(set.modified);
        let mut headers = vec![
            (
                "Cache-Control",
                "no-cache, no-store, must-revalidate".to_string(),
            ),
            ("Pragma", "no-cache".into()),
            ("Expires", "0".into()),
            ("Content-Type", "application/json".into()),
            ("Last-Modified", modified),
        ];
        // http.ServeContent: If-Modified-Since at or after the modification time (to the
        // second) is answered 304 without a body.
        let mod_secs = set
            .modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Some(ims) = r.header("if-modified-since").and_then(parse_http_date)
            && mod_secs <= ims
        {
            headers.retain(|(k, _)| *k != "Content-Type");
            return Response {
                status: 304,
                headers,
                body: vec![],
            };
        }
        headers.push(("Accept-Ranges", "bytes".into()));
        Response {
            status: 200,
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spiffe_core::{KeyType, PrivateKey};

    fn handler() -> Handler {
        Handler {
            domains: vec!["localhost".into(), "oidc.example.org".into()],
            allow_insecure_scheme: false,
            set_key_use: false,
            jwt_issuer: None,
            jwks_uri: None,
            server_path_prefix: String::new(),
        }
    }

    fn get(path: &str, host: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            host: host.into(),
            ..Default::default()
        }
    }

    fn doc(resp: &Response) -> serde_json::Value {
        serde_json::from_slice(&resp.body).unwrap()
    }

    #[test]
    fn discovery_document_as_spire() {
        let h = handler();
        let r = h.handle(
            &get("/.well-known/openid-configuration", "localhost:8080"),
            None,
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\n  \"issuer\": \"https://localhost:8080\",\n  \"jwks_uri\": \"https://localhost:8080/keys\",\n  \"authorization_endpoint\": \"\",\n  \"response_types_supported\": [\n    \"id_token\"\n  ],\n  \"subject_types_supported\": [\n    \"public\"\n  ],\n  \"id_token_signing_alg_values_supported\": [\n    \"RS256\",\n    \"ES256\",\n    \"ES384\"\n  ]\n}"
        );
    }

    #[test]
    fn insecure_scheme_prefix_and_forwarded_headers() {
        let mut h = handler();
        h.allow_insecure_scheme = true;
        h.server_path_prefix = "/foo".into();
        let mut r = get("/foo/.well-known/openid-configuration", "localhost");
        let d = doc(&h.handle(&r, None));
        assert_eq!(d["issuer"], "http://localhost/foo");
        assert_eq!(d["jwks_uri"], "http://localhost/foo/keys");
        r.headers = vec![
            ("x-forwarded-host".into(), "oidc.example.org".into()),
            ("x-forwarded-proto".into(), "HTTPS".into()),
        ];
        let d = doc(&h.handle(&r, None));
        assert_eq!(d["issuer"], "https://oidc.example.org/foo");
        r.headers = vec![("forwarded".into(), "for=1.2.3.4;proto=https".into())];
        assert_eq!(doc(&h.handle(&r, None))["issuer"], "https://localhost/foo");
        assert_eq!(
            h.handle(&get("/.well-known/openid-configuration", "localhost"), None)
                .status,
            404
        );
    }

    #[test]
    fn issuer_and_jwks_uri_settings() {
        let mut h = handler();
        h.jwt_issuer = Some("https://issuer.example/base".into());
        let d = doc(&h.handle(&get("/.well-known/openid-configuration", "localhost"), None));
        assert_eq!(d["issuer"], "https://issuer.example/base");
        assert_eq!(d["jwks_uri"], "https://issuer.example/base/keys");
        h.jwks_uri = Some("https://cdn.example/jwks.json".into());
        let d = doc(&h.handle(&get("/.well-known/openid-configuration", "localhost"), None));
        assert_eq!(d["jwks_uri"], "https://cdn.example/jwks.json");
    }

    #[test]
    fn unknown_and_invalid_domains() {
        let h = handler();
        let r = h.handle(
            &get("/.well-known/openid-configuration", "evil.example:443"),
            None,
        );
        assert_eq!(r.status, 400);
        assert_eq!(r.body, b"domain \"evil.example\" is not allowed\n");
        let r = h.handle(&get("/.well-known/openid-configuration", "LOCALHOST"), None);
        assert_eq!(
            r.body,
            b"domain \"LOCALHOST\" must already be punycode encoded\n"
        );
        let r = h.handle(&get("/.well-known/openid-configuration", "a_b"), None);
        assert_eq!(
            r.body,
            b"domain \"a_b\" is not a valid domain name: idna: disallowed rune U+005F\n"
        );
        // The keys are served whatever the host.
        let set = KeySet {
            keys: Some(vec![]),
            modified: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(
            h.handle(&get("/keys", "evil.example"), Some(&set)).status,
            200
        );
    }

    #[test]
    fn keys_headers_methods_and_unavailable() {
        let h = handler();
        assert_eq!(
            h.handle(&get("/keys", "localhost"), None),
            error(500, "document not available")
        );
        let set = KeySet {
            keys: Some(vec![crate::keys::Key {
                kid: "k".into(),
                key: PrivateKey::generate(KeyType::EcP256)
                    .unwrap()
                    .public_key()
                    .clone(),
            }]),
            modified: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        };
        let r = h.handle(&get("/keys", "localhost"), Some(&set));
        assert_eq!(r.status, 200);
        assert!(
            r.headers
                .contains(&("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT".into()))
        );
        assert!(r.headers.contains(&(
            "Cache-Control",
            "no-cache, no-store, must-revalidate".into()
        )));
        let mut cond = get("/keys", "localhost");
        cond.headers = vec![(
            "if-modified-since".into(),
            "Tue, 14 Nov 2023 22:13:20 GMT".into(),
        )];
        assert_eq!(h.handle(&cond, Some(&set)).status, 304);
        let mut post = get("/keys", "localhost");
        post.method = "POST".into();
        assert_eq!(
            h.handle(&post, Some(&set)),
            error(405, "method not allowed")
        );
        assert_eq!(h.handle(&get("/other", "localhost"), None).status, 404);
    }

    #[test]
    fn join_path_as_go() {
        assert_eq!(join_path("/", "/keys"), "/keys");
        assert_eq!(join_path("/foo/", "keys"), "/foo/keys");
        assert_eq!(join_path("", "keys"), "keys");
        assert_eq!(join_path("foo", "/keys"), "foo/keys");
    }
}
