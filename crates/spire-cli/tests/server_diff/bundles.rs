//! The `bundle` commands.

use crate::harness::*;

pub(crate) fn bundles(c: &mut Ctx) {
    c.cmp(&["bundle", "show"]);
    c.cmp(&args("bundle show -format spiffe"));
    c.cmp(&args("bundle show -format SPIFFE"));
    c.cmp(&args("bundle show -format der"));
    c.cmp_json(&args("bundle show -output json"));
    c.cmp_json(&args("bundle show -output json -format der"));
    c.cmp(&["bundle", "count"]);
    c.cmp_json(&args("bundle count -output json"));
    c.cmp(&["bundle", "list"]);
    c.cmp_json(&args("bundle list -output json"));
    let (server_pem, server_spiffe) = server_bundle_files(c);
    let pem_text = read(std::path::Path::new(&server_pem));
    c.cmp(&args_with(
        "bundle set -id spiffe://fed1.test -path",
        &[&server_pem],
    ));
    c.cmp(&args_with(
        "bundle set -id spiffe://fed2.test -format spiffe -path",
        &[&server_spiffe],
    ));
    c.cmp_norm(
        &args("bundle set -id spiffe://fed3.test"),
        pem_text.as_bytes(),
        &ident,
    );
    c.cmp_json(&args_with(
        "bundle set -id spiffe://fed1.test -path",
        &[&server_pem, "-output", "json"],
    ));
    c.cmp(&args_with("bundle set -id fed4.test -path", &[&server_pem]));
    c.cmp(&args_with(
        "bundle set -id spiffe://example.org -path",
        &[&server_pem],
    ));
    c.cmp(&[
        "bundle",
        "set",
        "-id",
        "spiffe://bad td",
        "-path",
        &server_pem,
    ]);
    c.cmp_json(&[
        "bundle",
        "set",
        "-id",
        "spiffe://bad td",
        "-path",
        &server_pem,
        "-output",
        "json",
    ]);
    c.cmp(&["bundle", "list"]);
    c.cmp(&args("bundle list -format spiffe"));
    c.cmp(&args("bundle list -format xml"));
    c.cmp(&args("bundle list -id spiffe://fed1.test"));
    c.cmp(&args("bundle list -id spiffe://fed2.test -format spiffe"));
    c.cmp(&args("bundle list -id spiffe://nope.test"));
    c.cmp(&["bundle", "list", "-id", "bad td"]);
    c.cmp_json(&args("bundle list -output json"));
    c.cmp_json(&args("bundle list -id spiffe://fed2.test -output json"));
    c.cmp(&["bundle", "count"]);
    let reset_fed3: &[&[&str]] = &[&args_with(
        "bundle set -id spiffe://fed3.test -path",
        &[&server_pem],
    )];
    c.pair(
        &args("bundle delete -id spiffe://fed3.test"),
        b"",
        reset_fed3,
        &ident,
    );
    c.pair(
        &args("bundle delete -id spiffe://fed3.test -mode dissociate"),
        b"",
        reset_fed3,
        &ident,
    );
    c.pair_json(
        &args("bundle delete -id spiffe://fed3.test -mode delete -output json"),
        b"",
        reset_fed3,
        &|_| {},
    );
    c.cmp(&args("bundle delete -id spiffe://fed3.test"));
    c.cmp(&args("bundle delete -id spiffe://nope.test"));
    c.cmp_json(&args("bundle delete -id spiffe://nope.test -output json"));
    c.cmp(&args("bundle delete -id spiffe://example.org"));
}
