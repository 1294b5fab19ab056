//! Join tokens.

use crate::harness::*;

pub(crate) fn tokens(p: &mut Parity) {
    p.both_n(&["token", "generate"], &ident, &|v| {
        blank_fields(v, &["expires_at"]);
    });
    p.cmp(&args(
        "token generate -spiffeID spiffe://example.org/alias -ttl 30",
    ));
    p.both_n(
        &args("entry show -spiffeID spiffe://example.org/alias"),
        &ident,
        &norm_created,
    );
    for args in [
        &["-spiffeID", "spiffe://other.org/alias"][..],
        &["-spiffeID", "spiffe://example.org/spire/server"],
        &["-spiffeID", "spiffe://example.org/spire/agent/x"],
        &["-spiffeID", "spiffe://example.org"],
        &["-spiffeID", "not an id"],
        &["-ttl", "-5"],
        &["-ttl", "0"],
    ] {
        let mut a = vec!["token", "generate"];
        a.extend_from_slice(args);
        p.both_n(&a, &ident, &|v| blank_fields(v, &["expires_at"]));
    }
}
