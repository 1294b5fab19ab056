//! The `federation` commands.

use crate::harness::*;

pub(crate) fn federation(c: &mut Ctx) {
    let (server_pem, server_spiffe) = server_bundle_files(c);
    let pem_text = read(std::path::Path::new(&server_pem));
    let fed_web: &[&str] = &args_with(
        "federation create -trustDomain fedx.test -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web -trustDomainBundlePath",
        &[&server_pem],
    );
    let reset_fedx: &[&[&str]] = &[&args("federation delete -id fedx.test")];
    c.pair(fed_web, b"", reset_fedx, &ident);
    let fed_spiffe: &[&str] = &args_with(
        "federation create -trustDomain fedy.test -bundleEndpointURL https://127.0.0.1:1/b -bundleEndpointProfile https_spiffe -endpointSpiffeID spiffe://fedy.test/bundle-server -trustDomainBundlePath",
        &[&server_spiffe, "-trustDomainBundleFormat", "spiffe"],
    );
    c.pair(
        fed_spiffe,
        b"",
        &[&args("federation delete -id fedy.test")],
        &ident,
    );
    c.pair_json(
        &args("federation create -trustDomain fedz.test -bundleEndpointURL https://127.0.0.1:1/z -bundleEndpointProfile https_web -output json"),
        b"",
        &[&args("federation delete -id fedz.test")],
        &|_| {},
    );
    c.cmp(fed_web);
    let mut dup = fed_web.to_vec();
    dup.extend(["-output", "json"]);
    c.cmp_json(&dup);
    c.cmp(&args("federation create -trustDomain Bad.TD -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web"));
    c.cmp(&args("federation create -trustDomain fedq.test -bundleEndpointURL http://insecure/bundle -bundleEndpointProfile https_web"));
    c.cmp(&args("federation create -trustDomain example.org -bundleEndpointURL https://127.0.0.1:1/bundle -bundleEndpointProfile https_web"));
    let pem_json = serde_json::to_string(&pem_text).unwrap();
    let spiffe_doc = read(std::path::Path::new(&server_spiffe));
    let rel_json = format!(
        r#"{{"federationRelationships":[
            {{"trustDomain":"fedd1.test","bundleEndpointURL":"https://127.0.0.1:1/d1","bundleEndpointProfile":"https_web",
              "trustDomainBundle":{pem_json},"trustDomainBundleFormat":"pem"}},
            {{"trustDomain":"fedd2.test","bundleEndpointURL":"https://127.0.0.1:1/d2","bundleEndpointProfile":"https_spiffe",
              "endpointSPIFFEID":"spiffe://fedd2.test/server","trustDomainBundle":{spiffe_doc},"trustDomainBundleFormat":"spiffe"}},
            {{"trustDomain":"fedd3.test","bundleEndpointURL":"https://127.0.0.1:1/d3","bundleEndpointProfile":"https_web"}}
        ]}}"#
    );
    let rel_file = c.file("relationships.json", &rel_json);
    let reset_rel: &[&[&str]] = &[
        &args("federation delete -id fedd1.test"),
        &args("federation delete -id fedd2.test"),
        &args("federation delete -id fedd3.test"),
    ];
    c.pair(
        &["federation", "create", "-data", &rel_file],
        b"",
        reset_rel,
        &ident,
    );
    c.pair(
        &args("federation create -data -"),
        rel_json.as_bytes(),
        reset_rel,
        &ident,
    );
    c.cmp(&["federation", "create", "-data", &rel_file]);
    c.cmp_json(&[
        "federation",
        "create",
        "-data",
        &rel_file,
        "-output",
        "json",
    ]);
    c.cmp(&["federation", "update", "-data", &rel_file]);
    c.cmp_json(&[
        "federation",
        "update",
        "-data",
        &rel_file,
        "-output",
        "json",
    ]);
    c.cmp(&args("federation update -trustDomain fedx.test -bundleEndpointURL https://127.0.0.1:2/bundle -bundleEndpointProfile https_web"));
    c.cmp(&args("federation update -trustDomain nope.test -bundleEndpointURL https://127.0.0.1:2/bundle -bundleEndpointProfile https_web"));
    c.cmp_json(&args("federation update -trustDomain nope.test -bundleEndpointURL https://127.0.0.1:2/bundle -bundleEndpointProfile https_web -output json"));
    for args in [
        &["federation", "list"][..],
        &args("federation show -trustDomain fedx.test"),
        &args("federation show -trustDomain fedy.test"),
        &args("federation show -trustDomain nope.test"),
        &["federation", "show", "-trustDomain", "bad td"],
        &args("federation refresh -id nope.test"),
        &args("federation refresh -id fedx.test"),
        &args("federation delete -id nope.test"),
    ] {
        c.cmp(args);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        c.cmp_json(&j);
    }
    c.pair(
        &args("federation delete -id fedx.test"),
        b"",
        &[fed_web],
        &ident,
    );
    c.pair_json(
        &args("federation delete -id fedx.test -output json"),
        b"",
        &[fed_web],
        &|_| {},
    );
    c.cmp(&["federation", "list"]);
}
