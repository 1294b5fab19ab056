//! The `token` command.

use crate::harness::*;

pub(crate) fn join_tokens(c: &mut Ctx) {
    c.cmp_norm(&["token", "generate"], b"", &norm_uuid);
    c.cmp_norm(
        &args("token generate -spiffeID spiffe://example.org/alias -ttl 30"),
        b"",
        &norm_uuid,
    );
    c.cmp_json_norm(&args("token generate -output json"), b"", &|v| {
        blank_fields(v, &["value", "expires_at"]);
    });
    c.cmp(&args("token generate -spiffeID spiffe://other.org/alias"));
    c.cmp(&args(
        "token generate -spiffeID spiffe://example.org/spire/server",
    ));
    c.cmp(&args("token generate -ttl -5"));
}
