//! `spire.api.server.trustdomain.v1.TrustDomain`: federation relationships.
//! `RefreshBundle` asks the federated bundle manager for an update now.

use std::sync::Arc;

use async_trait::async_trait;
use spire_datastore::{
    BundleEndpointProfile, DataStoreError, FederationRelationship, FederationRelationshipMask,
};
use spire_proto::spire::api::server::trustdomain::v1 as pb;
use spire_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::convert;
use super::error::{ApiError, ok};
use crate::state::Server;

/// The TrustDomain service.
#[derive(Debug, Clone)]
pub struct TrustDomainService {
    server: Arc<Server>,
}

impl TrustDomainService {
    /// Serves `server`.
    pub fn new(server: Arc<Server>) -> Self {
        Self { server }
    }

    async fn changed(&self) {
        if let Err(e) = self.server.refresh_bundles().await {
            tracing::warn!(error = %e, "Failed to reload bundles after a change");
        }
        self.trigger_reload();
    }

    /// Relationships changed: the bundle manager re-reads them now.
    fn trigger_reload(&self) {
        if let Some(m) = self.server.federation() {
            m.trigger_config_reload();
        }
    }
}

/// What SPIRE's checks see of a URL, split the way Go's `url.Parse` splits it.
#[derive(Debug, PartialEq, Eq)]
struct GoUrl<'a> {
    /// Lower-cased; empty when there is none.
    scheme: String,
    /// The user info, when the authority has an `@`.
    user: Option<&'a str>,
    /// Empty when there is no authority (`https:x`, `https:///x`).
    host: &'a str,
}

/// Splits `raw` like Go's `url.Parse`, with its errors for what commonly goes wrong
/// (control characters, a missing scheme, bad ports and IPv6 brackets, bad escapes in the
/// host) worded as Go words them. WHATWG parsing (the url crate, which stores the URL)
/// differs: it finds a host in `https:///x` or `https:x` and reports other errors.
fn go_url(raw: &str) -> Result<GoUrl<'_>, String> {
    let fail = |e: &str| {
        Err(format!(
            "parse {}: {e}",
            spire_gocompat::strconv::quote(raw)
        ))
    };
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return fail("net/url: invalid control character in URL");
    }
    let rest = raw.split_once('#').map_or(raw, |(r, _)| r);
    let mut scheme = String::new();
    let mut rest = rest;
    for (i, c) in rest.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return fail("missing protocol scheme"),
            ':' => {
                scheme = rest[..i].to_ascii_lowercase();
                rest = &rest[i + 1..];
                break;
            }
            _ => break,
        }
    }
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let no_authority = GoUrl {
        scheme: scheme.clone(),
        user: None,
        host: "",
    };
    let Some(after) = rest.strip_prefix("//") else {
        return Ok(no_authority);
    };
    if scheme.is_empty() && after.starts_with('/') {
        return Ok(no_authority);
    }
    let authority = after.split_once('/').map_or(after, |(a, _)| a);
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let port = if let Some(inner) = host.strip_prefix('[') {
        let Some(close) = inner.rfind(']') else {
            return fail("missing ']' in host");
        };
        &inner[close + 1..]
    } else {
        host.rfind(':').map_or("", |i| &host[i..])
    };
    let valid_port = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()));
    if !valid_port {
        return fail(&format!(
            "invalid port {} after host",
            spire_gocompat::strconv::quote(port)
        ));
    }
    // Go unescapes the host left to right: bad escapes and characters it would have to
    // escape are errors.
    let b = host.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                let end = (i + 3).min(host.len());
                return fail(&format!(
                    "invalid URL escape {}",
                    spire_gocompat::strconv::quote(host.get(i..end).unwrap_or("%"))
                ));
            }
        } else if matches!(c, b' ' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}') {
            return fail(&format!(
                "invalid character {} in host name",
                spire_gocompat::strconv::quote(&char::from(c).to_string())
            ));
        }
    }
    Ok(GoUrl { scheme, user, host })
}

/// Go's `shouldEscape` for paths (`fragment == false`) and fragments.
fn go_should_escape(c: u8, fragment: bool) -> bool {
    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
        return false;
    }
    if matches!(
        c,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@'
    ) {
        return !fragment && c == b'?';
    }
    !(fragment && matches!(c, b'!' | b'(' | b')' | b'*'))
}

/// Go's `EscapedPath`/`EscapedFragment`: the raw text when it is a valid encoding, else
/// the decoded text escaped again.
fn go_escaped(raw: &str, fragment: bool) -> String {
    let valid = raw.bytes().all(|c| {
        matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !go_should_escape(c, fragment)
    });
    if valid {
        return raw.to_owned();
    }
    let b = raw.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| {
            b.get(j)
                .and_then(|c| char::from(*c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                decoded.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len() * 3);
    for c in decoded {
        if go_should_escape(c, fragment) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

/// What Go's `url.URL.String()` prints for a URL `go_url` accepted: scheme lower-cased,
/// path and fragment escaped as Go escapes them, the rest as given. SPIRE stores that.
fn go_url_string(raw: &str) -> String {
    let (rest, fragment) = match raw.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (raw, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (scheme, rest) = match rest.split_once(':') {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => (String::new(), rest),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => match after.find('/') {
            Some(i) => (Some(&after[..i]), &after[i..]),
            None => (Some(after), ""),
        },
        None => (None, rest),
    };
    let mut out = String::with_capacity(raw.len() + 8);
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(&go_escaped(path, false));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment.filter(|f| !f.is_empty()) {
        out.push('#');
        out.push_str(&go_escaped(f, true));
    }
    out
}

/// SPIRE's `ProtoToFederationRelationship`.
fn relationship_from_proto(
    f: &types::FederationRelationship,
) -> Result<FederationRelationship, String> {
    use types::federation_relationship::BundleEndpointProfile as P;
    let trust_domain = convert::parse_td(&f.trust_domain)
        .map_err(|e| format!("failed to parse trust domain: {e}"))?;
    let parse_err = |e: &dyn std::fmt::Display| format!("failed to parse bundle endpoint URL: {e}");
    let go = go_url(&f.bundle_endpoint_url).map_err(|e| parse_err(&e))?;
    if go.scheme != "https" {
        return Err("bundle endpoint URL must use the https scheme".into());
    }
    if go.host.is_empty() {
        return Err("bundle endpoint URL must specify the host".into());
    }
    if go.user.is_some() {
        return Err("bundle endpoint URL must not contain user info".into());
    }
    let url = spire_datastore::BundleEndpointUrl::parse(&go_url_string(&f.bundle_endpoint_url))
        .map_err(|e| parse_err(&e))?;
    let profile = match &f.bundle_endpoint_profile {
        Some(P::HttpsSpiffe(p)) => BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: convert::parse_id(&p.endpoint_spiffe_id)
                .map_err(|e| format!("failed to parse endpoint SPIFFE ID: {e}"))?,
        },
        Some(P::HttpsWeb(_)) => BundleEndpointProfile::HttpsWeb,
        None => return Err("unsupported bundle endpoint profile type: <nil>".into()),
    };
    let bundle = match &f.trust_domain_bundle {
        Some(b) => {
            let stored = convert::bundle_from_proto(b)
                .map_err(|e| format!("failed to parse bundle: {e}"))?;
            if stored.trust_domain != trust_domain {
                return Err(format!(
                    "trust domain bundle ({:?}) must match the trust domain of the federation relationship ({:?})",
                    b.trust_domain,
                    trust_domain.name()
                ));
            }
            Some(stored)
        }
        None => None,
    };
    Ok(FederationRelationship {
        trust_domain,
        bundle_endpoint_url: url,
        bundle_endpoint_profile: profile,
        trust_domain_bundle: bundle,
    })
}

fn to_proto(
    fr: &FederationRelationship,
    mask: Option<&types::FederationRelationshipMask>,
) -> types::FederationRelationship {
    let mut out = convert::relationship_to_proto(fr);
    if let Some(m) = mask {
        if !m.bundle_endpoint_url {
            out.bundle_endpoint_url.clear();
        }
        if !m.bundle_endpoint_profile {
            out.bundle_endpoint_profile = None;
        }
        if !m.trust_domain_bundle {
            out.trust_domain_bundle = None;
        }
    }
    out
}

#[async_trait]
impl pb::trust_domain_server::TrustDomain for TrustDomainService {
    async fn list_federation_relationships(
        &self,
        r: Request<pb::ListFederationRelationshipsRequest>,
    ) -> Result<Response<pb::ListFederationRelationshipsResponse>, Status> {
        let req = r.into_inner();
        let pagination = convert::pagination(req.page_size, &req.page_token);
        let resp = self
            .server
            .registry()
            .ds()
            .list_federation_relationships(pagination)
            .await
            .map_err(|e| ApiError::internal("failed to list federation relationships").with(e))?;
        Ok(Response::new(pb::ListFederationRelationshipsResponse {
            federation_relationships: resp
                .relationships
                .iter()
                .map(|f| to_proto(f, req.output_mask.as_ref()))
                .collect(),
            next_page_token: resp.pagination.map(|p| p.token).unwrap_or_default(),
        }))
    }

    async fn get_federation_relationship(
        &self,
        r: Request<pb::GetFederationRelationshipRequest>,
    ) -> Result<Response<types::FederationRelationship>, Status> {
        let req = r.into_inner();
        let td = convert::parse_td(&req.trust_domain)
            .map_err(|e| ApiError::invalid_argument("failed to parse trust domain").with(e))?;
        let fr = self
            .server
            .registry()
            .ds()
            .fetch_federation_relationship(&td)
            .await
            .map_err(|e| ApiError::internal("failed to fetch federation relationship").with(e))?
            .ok_or_else(|| ApiError::not_found("federation relationship does not exist"))?;
        Ok(Response::new(to_proto(&fr, req.output_mask.as_ref())))
    }

    async fn batch_create_federation_relationship(
        &self,
        r: Request<pb::BatchCreateFederationRelationshipRequest>,
    ) -> Result<Response<pb::BatchCreateFederationRelationshipResponse>, Status> {
        let req = r.into_inner();
        let mut results = Vec::new();
        for f in &req.federation_relationships {
            let result = async {
                let fr = relationship_from_proto(f).map_err(|e| {
                    ApiError::invalid_argument("failed to convert federation relationship")
                        .with(e)
                        .item_status()
                })?;
                if fr.trust_domain == *self.server.trust_domain() {
                    return Err(ApiError::invalid_argument(
                        "unable to create federation relationship for server trust domain",
                    )
                    .item_status());
                }
                self.server
                    .registry()
                    .ds()
                    .create_federation_relationship(fr)
                    .await
                    .map_err(|e| {
                        ApiError::internal("failed to create federation relationship")
                            .with(e)
                            .item_status()
                    })
            }
            .await;
            results.push(match result {
                Ok(fr) => {
                    tracing::debug!(trust_domain_id = %fr.trust_domain, "Federation relationship created");
                    pb::batch_create_federation_relationship_response::Result {
                        status: Some(ok()),
                        federation_relationship: Some(to_proto(&fr, req.output_mask.as_ref())),
                    }
                }
                Err(st) => pb::batch_create_federation_relationship_response::Result {
                    status: Some(st),
                    federation_relationship: None,
                },
            });
        }
        self.changed().await;
        Ok(Response::new(
            pb::BatchCreateFederationRelationshipResponse { results },
        ))
    }

    async fn batch_update_federation_relationship(
        &self,
        r: Request<pb::BatchUpdateFederationRelationshipRequest>,
    ) -> Result<Response<pb::BatchUpdateFederationRelationshipResponse>, Status> {
        let req = r.into_inner();
        let mask = match &req.input_mask {
            Some(m) => FederationRelationshipMask {
                bundle_endpoint_url: m.bundle_endpoint_url,
                bundle_endpoint_profile: m.bundle_endpoint_profile,
                trust_domain_bundle: m.trust_domain_bundle,
            },
            None => FederationRelationshipMask::ALL,
        };
        let mut results = Vec::new();
        for f in &req.federation_relationships {
            let result = async {
                let fr = relationship_from_proto(f).map_err(|e| {
                    ApiError::invalid_argument("failed to convert federation relationship")
                        .with(e)
                        .item_status()
                })?;
                self.server
                    .registry()
                    .ds()
                    .update_federation_relationship(fr, mask)
                    .await
                    .map_err(|e| {
                        ApiError::internal("failed to update federation relationship")
                            .with(e)
                            .item_status()
                    })
            }
            .await;
            results.push(match result {
                Ok(fr) => pb::batch_update_federation_relationship_response::Result {
                    status: Some(ok()),
                    federation_relationship: Some(to_proto(&fr, req.output_mask.as_ref())),
                },
                Err(st) => pb::batch_update_federation_relationship_response::Result {
                    status: Some(st),
                    federation_relationship: None,
                },
            });
        }
        self.changed().await;
        Ok(Response::new(
            pb::BatchUpdateFederationRelationshipResponse { results },
        ))
    }

    async fn batch_delete_federation_relationship(
        &self,
        r: Request<pb::BatchDeleteFederationRelationshipRequest>,
    ) -> Result<Response<pb::BatchDeleteFederationRelationshipResponse>, Status> {
        let req = r.into_inner();
        let mut results = Vec::new();
        for t in req.trust_domains {
            if t.is_empty() {
                results.push(pb::batch_delete_federation_relationship_response::Result {
                    trust_domain: t,
                    status: Some(ApiError::invalid_argument("missing trust domain").item_status()),
                });
                continue;
            }
            let td = match convert::parse_td(&t) {
                Ok(td) => td,
                Err(e) => {
                    results.push(pb::batch_delete_federation_relationship_response::Result {
                        trust_domain: t,
                        status: Some(
                            ApiError::invalid_argument("failed to parse trust domain")
                                .with(e)
                                .item_status(),
                        ),
                    });
                    continue;
                }
            };
            let status = match self
                .server
                .registry()
                .ds()
                .delete_federation_relationship(&td)
                .await
            {
                Ok(()) => ok(),
                Err(DataStoreError::NotFound(_)) => {
                    ApiError::not_found("federation relationship not found").item_status()
                }
                Err(e) => ApiError::internal("failed to delete federation relationship")
                    .with(e)
                    .item_status(),
            };
            results.push(pb::batch_delete_federation_relationship_response::Result {
                trust_domain: td.name().to_string(),
                status: Some(status),
            });
        }
        self.trigger_reload();
        Ok(Response::new(
            pb::BatchDeleteFederationRelationshipResponse { results },
        ))
    }

    async fn refresh_bundle(
        &self,
        r: Request<pb::RefreshBundleRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let req = r.into_inner();
        let td = convert::parse_td(&req.trust_domain)
            .map_err(|e| ApiError::invalid_argument("failed to parse trust domain").with(e))?;
        let Some(manager) = self.server.federation() else {
            return Err(ApiError::not_found(format!(
                "no relationship with trust domain {:?}",
                td.name()
            ))
            .into());
        };
        match manager.refresh_bundle_for(&td).await {
            Ok(true) => {
                tracing::debug!(trust_domain_id = %td.name(), "Bundle refreshed");
                Ok(Response::new(pbjson_types::Empty {}))
            }
            Ok(false) => Err(ApiError::not_found(format!(
                "no relationship with trust domain {:?}",
                td.name()
            ))
            .into()),
            Err(e) => Err(ApiError::internal("failed to refresh bundle")
                .with(e)
                .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_like_go() {
        // Expected values printed by Go 1.25's url.Parse(raw).String().
        for (raw, want) in [
            (
                "HTTPS://example.com/a/../b?q=1#frag",
                "https://example.com/a/../b?q=1#frag",
            ),
            ("https://example.com/a b", "https://example.com/a%20b"),
            ("https://Example.COM:443/x", "https://Example.COM:443/x"),
            ("https://h/a%2fb", "https://h/a%2fb"),
            ("https://h/a%20b c", "https://h/a%20b%20c"),
            ("https://h/\u{fc}", "https://h/%C3%BC"),
            ("https://h/x?a b#f g", "https://h/x?a b#f%20g"),
            ("https://h/x#", "https://h/x"),
            ("https://h", "https://h"),
            ("https://h/(x)!*'", "https://h/(x)!*'"),
            ("https://h/a#b(c)!d e", "https://h/a#b(c)!d%20e"),
        ] {
            assert_eq!(go_url_string(raw), want, "{raw}");
        }
    }

    #[test]
    fn urls_split_like_go() {
        let ok = |raw: &str, scheme: &str, user: Option<&str>, host: &str| {
            assert_eq!(
                go_url(raw).unwrap(),
                GoUrl {
                    scheme: scheme.into(),
                    user,
                    host
                },
                "{raw}"
            );
        };
        ok("https://h:1/x?q#f", "https", None, "h:1");
        ok("HTTPS://u:p@h/x", "https", Some("u:p"), "h");
        ok("https://@h", "https", Some(""), "h");
        ok("https:///x", "https", None, "");
        ok("https:h", "https", None, "");
        ok("https://[::1]:8443/x", "https", None, "[::1]:8443");
        ok("h/x", "", None, "");
        ok("", "", None, "");
        let err = |raw: &str, msg: &str| assert_eq!(go_url(raw).unwrap_err(), msg, "{raw}");
        err(
            "https://host:port/x",
            "parse \"https://host:port/x\": invalid port \":port\" after host",
        );
        err(
            "https://[::1/x",
            "parse \"https://[::1/x\": missing ']' in host",
        );
        err("://x", "parse \"://x\": missing protocol scheme");
        err(
            "https://a b/x",
            "parse \"https://a b/x\": invalid character \" \" in host name",
        );
        err(
            "https://a%zzb/",
            "parse \"https://a%zzb/\": invalid URL escape \"%zz\"",
        );
        err(
            "https://a\tb",
            "parse \"https://a\\tb\": net/url: invalid control character in URL",
        );
    }
}
