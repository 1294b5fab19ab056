//! How SPIRE spells metric names and label values: go-metrics' Prometheus key flattening,
//! SPIRE's label sanitizing, and the RPC middleware's `rpc_<service>_<method>` keys.

/// go-metrics' Prometheus sink: key parts joined with `_`, then space, `.`, `=`, `-` and `/`
/// each replaced by `_` (other characters are left to the exposition's own escaping).
pub fn flatten_key(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('_');
        }
        out.extend(part.chars().map(|c| match c {
            ' ' | '.' | '=' | '-' | '/' => '_',
            c => c,
        }));
    }
    out
}

/// SPIRE's `sanitize`: every run of characters outside `[A-Za-z0-9_]`, together with one
/// `_` right after it, becomes a single `_` (the regular expression `\W+_?`).
pub fn sanitize(val: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(val.len());
    let mut chars = val.chars().peekable();
    while let Some(c) = chars.next() {
        if is_word(c) {
            out.push(c);
            continue;
        }
        while chars.peek().is_some_and(|&n| !is_word(n)) {
            chars.next();
        }
        if chars.peek() == Some(&'_') {
            chars.next();
        }
        out.push('_');
    }
    out
}

/// SPIRE's `metricKey`: PascalCase to snake_case, anything but letters and digits to `_`.
/// An underscore goes before an upper-case letter that is neither first nor last, when
/// a neighbour is lower case and the output does not already end in `_`.
pub fn metric_key(s: &str) -> String {
    let input: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &r) in input.iter().enumerate() {
        if !r.is_alphanumeric() {
            out.push('_');
            continue;
        }
        let is_upper = r.to_lowercase().ne(std::iter::once(r));
        if is_upper
            && i > 0
            && i + 1 < input.len()
            && (input[i + 1].is_lowercase() || input[i - 1].is_lowercase())
            && !out.ends_with('_')
        {
            out.push('_');
        }
        out.extend(r.to_lowercase());
    }
    out
}

/// The metric key parts of a gRPC method (`/pkg.Service/Method`) as SPIRE's middleware
/// builds them: the server API prefix dropped, a few services shortened, the service split
/// at dots, every part through [`metric_key`].
pub fn rpc_key(full_method: &str) -> Vec<String> {
    let path = full_method.strip_prefix('/').unwrap_or(full_method);
    let (raw_service, method) = path.split_once('/').unwrap_or(("", ""));
    let service = shorten_service(raw_service);
    let method = method.replace("SubscribeToX509SVIDs", "subscribe_to_x509_svids");
    service
        .split('.')
        .chain(std::iter::once(method.as_str()))
        .map(metric_key)
        .collect()
}

fn shorten_service(raw: &str) -> String {
    // strings.NewReplacer applies the first matching pattern at each position.
    const REPLACEMENTS: [(&str, &str); 6] = [
        ("spire.api.server.", ""),
        ("SpiffeWorkloadAPI", "WorkloadAPI"),
        ("envoy.service.secret.v3.SecretDiscoveryService", "SDS.v3"),
        ("grpc.health.v1.Health", "Health"),
        ("logger.v1.Logger", "Logger"),
        (
            "spire.api.agent.delegatedidentity.v1.DelegatedIdentity",
            "DelegatedIdentity",
        ),
    ];
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    'outer: while !rest.is_empty() {
        for (from, to) in REPLACEMENTS {
            if let Some(after) = rest.strip_prefix(from) {
                out.push_str(to);
                rest = after;
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_joined_and_flattened_as_go_metrics_does() {
        assert_eq!(
            flatten_key(&["spire_server", "rpc", "a.b", "x-y/z=w v"]),
            "spire_server_rpc_a_b_x_y_z_w_v"
        );
        assert_eq!(flatten_key(&["rateLimit"]), "rateLimit");
    }

    #[test]
    fn labels_are_sanitized_as_spire_does() {
        assert_eq!(sanitize("1.13.3-dev-unk"), "1_13_3_dev_unk");
        assert_eq!(sanitize("example.org"), "example_org");
        assert_eq!(sanitize("a.-_b"), "a_b");
        assert_eq!(sanitize("a__b"), "a__b");
        assert_eq!(sanitize("spiffe://td/x"), "spiffe_td_x");
        assert_eq!(sanitize("PermissionDenied"), "PermissionDenied");
    }

    #[test]
    fn method_names_become_spire_s_metric_keys() {
        assert_eq!(metric_key("FetchX509SVID"), "fetch_x509svid");
        assert_eq!(metric_key("FetchX509Bundles"), "fetch_x509_bundles");
        assert_eq!(metric_key("FetchJWTSVID"), "fetch_jwtsvid");
        assert_eq!(metric_key("BatchNewX509SVID"), "batch_new_x509svid");
        assert_eq!(metric_key("AttestAgent"), "attest_agent");
        assert_eq!(metric_key("WorkloadAPI"), "workload_api");
        assert_eq!(metric_key("v1"), "v1");
        assert_eq!(metric_key("SDS"), "sds");
    }

    #[test]
    fn full_methods_become_rpc_keys() {
        assert_eq!(
            rpc_key("/spire.api.server.svid.v1.SVID/BatchNewX509SVID"),
            ["svid", "v1", "svid", "batch_new_x509svid"]
        );
        assert_eq!(
            rpc_key("/spire.api.server.agent.v1.Agent/AttestAgent"),
            ["agent", "v1", "agent", "attest_agent"]
        );
        assert_eq!(
            rpc_key("/SpiffeWorkloadAPI/FetchX509SVID"),
            ["workload_api", "fetch_x509svid"]
        );
        assert_eq!(rpc_key("/grpc.health.v1.Health/Check"), ["health", "check"]);
        assert_eq!(
            rpc_key("/spire.api.server.logger.v1.Logger/GetLogger"),
            ["logger", "get_logger"]
        );
        assert_eq!(
            rpc_key("/spire.api.agent.delegatedidentity.v1.DelegatedIdentity/SubscribeToX509SVIDs"),
            ["delegated_identity", "subscribe_to_x509_svids"]
        );
        assert_eq!(
            rpc_key("/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"),
            ["sds", "v3", "stream_secrets"]
        );
    }
}
