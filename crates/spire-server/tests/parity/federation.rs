//! Federation relationships.

use crate::bundles::Files;
use crate::harness::*;

pub(crate) fn federation(p: &mut Parity, files: &Files) {
    let pem_text = read(std::path::Path::new(&files.pem));
    let spiffe_text = read(std::path::Path::new(&files.spiffe));
    let fed_web: &[&str] = &args_with(
        "federation create -trustDomain fedx.test -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web -trustDomainBundlePath",
        &[&files.pem],
    );
    p.cmp(fed_web);
    p.cmp(&args_with("federation create -trustDomain fedy.test -bundleEndpointURL https://127.0.0.1:1/b -bundleEndpointProfile https_spiffe -endpointSpiffeID spiffe://fedy.test/bundle-server -trustDomainBundlePath", &[&files.spiffe, "-trustDomainBundleFormat", "spiffe"]));
    p.json(
        &args("federation create -trustDomain fedz.test -bundleEndpointURL https://127.0.0.1:1/z -bundleEndpointProfile https_web -output json"),
        b"",
        &|_| {},
    );
    // The relationship with fed1.test reuses the bundle set earlier.
    p.cmp(&args("federation create -trustDomain fed1.test -bundleEndpointURL https://127.0.0.1:1/f1 -bundleEndpointProfile https_web"));
    let mut dup = fed_web.to_vec();
    p.cmp(&dup);
    dup.extend(["-output", "json"]);
    p.json(&dup, b"", &|_| {});
    let refused: &[&[&str]] = &[
        &args(
            "-trustDomain Bad.TD -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web",
        ),
        &args(
            "-trustDomain fedq.test -bundleEndpointURL http://insecure/bundle -bundleEndpointProfile https_web",
        ),
        &args(
            "-trustDomain fedq.test -bundleEndpointURL https://user:pw@host/bundle -bundleEndpointProfile https_web",
        ),
        &args(
            "-trustDomain fedq.test -bundleEndpointURL https:///bundle -bundleEndpointProfile https_web",
        ),
        &args(
            "-trustDomain fedq.test -bundleEndpointURL https://127.0.0.1:1/b -bundleEndpointProfile https_spiffe -endpointSpiffeID not-an-id",
        ),
        &args(
            "-trustDomain example.org -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web",
        ),
        &args_with(
            "-trustDomain spiffe://fedq.test -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web -trustDomainBundlePath",
            &[&files.pem],
        ),
    ];
    for tail in refused {
        let mut args = vec!["federation", "create"];
        args.extend_from_slice(tail);
        p.both(&args);
    }
    for (td, url) in [
        ("fedu1.test", "https://example.com"),
        ("fedu2.test", "https://EXAMPLE.com/Path"),
        ("fedu3.test", "https://example.com:443/x"),
        ("fedu4.test", "HTTPS://example.com/a/../b?q=1#frag"),
        ("fedu5.test", "https://[::1]:8443/x"),
        ("fedu6.test", "https://@example.com/x"),
        ("fedu7.test", "https:example.com"),
        ("fedu8.test", "https://example.com/a b"),
        ("fedu9.test", "https://host:port/x"),
    ] {
        p.both(&[
            "federation",
            "create",
            "-trustDomain",
            td,
            "-bundleEndpointURL",
            url,
            "-bundleEndpointProfile",
            "https_web",
        ]);
        p.both(&["federation", "show", "-trustDomain", td]);
        p.cmp(&["federation", "delete", "-id", td]);
    }
    p.both(&["federation", "list"]);
    p.both(&["bundle", "list"]);
    let pem_json = serde_json::to_string(&pem_text).unwrap();
    let rel_json = format!(
        r#"{{"federationRelationships":[
            {{"trustDomain":"fedd1.test","bundleEndpointURL":"https://127.0.0.1:1/d1","bundleEndpointProfile":"https_web",
              "trustDomainBundle":{pem_json},"trustDomainBundleFormat":"pem"}},
            {{"trustDomain":"fedd2.test","bundleEndpointURL":"https://127.0.0.1:1/d2","bundleEndpointProfile":"https_spiffe",
              "endpointSPIFFEID":"spiffe://fedd2.test/server","trustDomainBundle":{spiffe_text},"trustDomainBundleFormat":"spiffe"}},
            {{"trustDomain":"fedd3.test","bundleEndpointURL":"https://127.0.0.1:1/d3","bundleEndpointProfile":"https_web"}},
            {{"trustDomain":"fedd4.test","bundleEndpointURL":"http://127.0.0.1:1/d4","bundleEndpointProfile":"https_web"}}
        ]}}"#
    );
    let rel_file = p.file("relationships.json", &rel_json);
    p.cmp(&["federation", "create", "-data", &rel_file]);
    p.cmp(&args("federation delete -id fedd1.test"));
    p.text(
        &args("federation create -data -"),
        rel_json.as_bytes(),
        &ident,
    );
    p.json(
        &[
            "federation",
            "create",
            "-data",
            &rel_file,
            "-output",
            "json",
        ],
        b"",
        &|_| {},
    );
    p.cmp(&["federation", "update", "-data", &rel_file]);
    p.json(
        &[
            "federation",
            "update",
            "-data",
            &rel_file,
            "-output",
            "json",
        ],
        b"",
        &|_| {},
    );
    p.both(&args("federation update -trustDomain fedx.test -bundleEndpointURL https://127.0.0.1:2/bundle -bundleEndpointProfile https_spiffe -endpointSpiffeID spiffe://fedx.test/srv"));
    p.both(&args_with("federation update -trustDomain fedx.test -bundleEndpointURL https://127.0.0.1:2/bundle -bundleEndpointProfile https_web -trustDomainBundlePath", &[&files.spiffe, "-trustDomainBundleFormat", "spiffe"]));
    p.both(&args("federation update -trustDomain nope.test -bundleEndpointURL https://127.0.0.1:2/bundle -bundleEndpointProfile https_web"));
    p.both(&args("federation update -trustDomain example.org -bundleEndpointURL https://127.0.0.1:2/bundle -bundleEndpointProfile https_web"));
    p.both(&args("bundle list -id spiffe://fedx.test"));
    for args in [
        &["federation", "list"][..],
        &args("federation show -trustDomain fedx.test"),
        &args("federation show -trustDomain fedy.test"),
        &args("federation show -trustDomain fedd2.test"),
        &args("federation show -trustDomain nope.test"),
        &["federation", "show", "-trustDomain", "bad td"],
        &["federation", "show", "-trustDomain", ""],
        &args("federation refresh -id nope.test"),
        &["federation", "refresh", "-id", "bad td"],
        &args("federation refresh -id fedx.test"),
        &args("federation delete -id nope.test"),
        &["federation", "delete", "-id", "bad td"],
        &["federation", "delete", "-id", ""],
    ] {
        p.both(args);
    }
    p.both(&args("federation delete -id fedx.test"));
    p.both(&args("federation delete -id fedx.test"));
    for td in [
        "fedy.test",
        "fedz.test",
        "fedd1.test",
        "fedd2.test",
        "fedd3.test",
    ] {
        p.cmp(&["federation", "delete", "-id", td]);
    }
    p.both(&["federation", "list"]);
    p.both(&["bundle", "list"]);
}

/// The federation area with the foreign bundle files it reads.
pub(crate) fn with_files(p: &mut Parity) {
    let files = crate::bundles::federated_files(p);
    federation(p, &files);
}
