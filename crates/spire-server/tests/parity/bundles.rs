//! The local bundle and federated bundles.

use crate::harness::*;

/// Files the later sections reuse.
pub(crate) struct Files {
    /// A CA certificate (the reference server's), PEM.
    pub(crate) pem: String,
    /// A SPIFFE bundle document (the reference server's).
    pub(crate) spiffe: String,
}

pub(crate) fn bundles(p: &mut Parity) {
    p.both_n(&["bundle", "show"], &norm_pem, &norm_bundle_json);
    p.text(&args("bundle show -format spiffe"), b"", &norm_spiffe_doc);
    p.cmp(&args("bundle show -format der"));
    p.both(&["bundle", "count"]);
    p.both(&["bundle", "list"]);

    // Federated bundles: the same (foreign) content on both sides.
    let files = federated_files(p);
    let pem_text = read(std::path::Path::new(&files.pem));
    let (pem, spiffe) = (files.pem.as_str(), files.spiffe.as_str());
    p.cmp(&args_with(
        "bundle set -id spiffe://fed1.test -path",
        &[pem],
    ));
    p.cmp(&args_with(
        "bundle set -id spiffe://fed2.test -format spiffe -path",
        &[spiffe],
    ));
    p.text(
        &args("bundle set -id spiffe://fed3.test"),
        pem_text.as_bytes(),
        &ident,
    );
    p.json(
        &args_with(
            "bundle set -id spiffe://fed1.test -path",
            &[pem, "-output", "json"],
        ),
        b"",
        &|_| {},
    );
    for id in [
        "fed4.test",
        "spiffe://example.org",
        "spiffe://bad td",
        "spiffe://fed5.test/path",
        "",
    ] {
        p.both(&["bundle", "set", "-id", id, "-path", pem]);
    }
    p.text(
        &args("bundle set -id spiffe://fed5.test"),
        b"not a pem",
        &ident,
    );
    p.text(
        &args("bundle set -id spiffe://fed5.test -format spiffe"),
        b"{}",
        &ident,
    );
    p.text(
        &args("bundle set -id spiffe://fed5.test -format spiffe"),
        br#"{"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x":"AA","y":"AA","x5c":["AAAA"]}]}"#,
        &ident,
    );
    p.both(&["bundle", "list"]);
    p.cmp(&args("bundle list -format spiffe"));
    p.cmp(&args("bundle list -format xml"));
    for id in [
        "spiffe://fed1.test",
        "spiffe://fed2.test",
        "spiffe://nope.test",
        "spiffe://example.org",
        "bad td",
    ] {
        p.both(&["bundle", "list", "-id", id]);
    }
    p.cmp(&args("bundle list -id spiffe://fed2.test -format spiffe"));
    p.both(&["bundle", "count"]);

    // Deletion modes, with and without entries that federate with the bundle.
    let fed_entry: &[&str] = &args(
        "entry create -entryID e-fed3 -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/fed3-user -selector unix:uid:3333 -federatesWith spiffe://fed3.test",
    );
    p.cmp(fed_entry);
    p.both(&args("bundle delete -id spiffe://fed3.test"));
    p.both(&args("bundle delete -id spiffe://fed3.test -mode restrict"));
    p.both(&args("bundle delete -id spiffe://fed3.test -mode bogus"));
    p.cmp(&args(
        "bundle delete -id spiffe://fed3.test -mode dissociate",
    ));
    p.both_n(&args("entry show -entryID e-fed3"), &ident, &norm_created);
    p.text(
        &args("bundle set -id spiffe://fed3.test"),
        pem_text.as_bytes(),
        &ident,
    );
    p.cmp(&args("entry delete -entryID e-fed3"));
    p.cmp(fed_entry);
    p.json(
        &args("bundle delete -id spiffe://fed3.test -mode delete -output json"),
        b"",
        &|_| {},
    );
    p.both_n(&args("entry show -entryID e-fed3"), &ident, &norm_created);
    p.text(
        &args("bundle set -id spiffe://fed3.test"),
        pem_text.as_bytes(),
        &ident,
    );
    p.cmp(&args("bundle delete -id spiffe://fed3.test"));
    for id in [
        "spiffe://fed3.test",
        "spiffe://nope.test",
        "spiffe://example.org",
        "bad td",
        "",
    ] {
        p.both(&["bundle", "delete", "-id", id]);
    }
    p.both(&["bundle", "count"]);
}

/// A foreign CA certificate (PEM) and SPIFFE bundle document, written where both sides
/// read them: the reference server's own, under another key ID.
pub(crate) fn federated_files(p: &Parity) -> Files {
    let pem_text = p.r.run_raw(&["bundle", "show"], b"").stdout;
    // The reference's key ID is one of its per-side variables: give the copy its own.
    let spiffe_text =
        p.r.run_raw(&args("bundle show -format spiffe"), b"")
            .stdout
            .replace(p.r.value("jwt-1").unwrap(), "foreign-kid");
    Files {
        pem: p.file("ca.pem", &pem_text),
        spiffe: p.file("bundle.json", &spiffe_text),
    }
}
