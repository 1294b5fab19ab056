//! The `entry` commands.

use crate::harness::*;

pub(crate) fn entries(c: &mut Ctx) {
    let created = |v: &mut serde_json::Value| blank_fields(v, &["created_at"]);
    let basic: &[&str] = &args(
        "entry create -entryID e-basic -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w1 -selector unix:uid:1000 -selector unix:gid:1000",
    );
    c.pair(
        basic,
        b"",
        &[&args("entry delete -entryID e-basic")],
        &ident,
    );
    let full: &[&str] = &args(
        "entry create -entryID e-full -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w2 -selector k8s:ns:default -selector k8s:sa:default -x509SVIDTTL 300 -jwtSVIDTTL 60 -dns a.example -dns b.example -hint h1 -admin -downstream -storeSVID -entryExpiry 1900000000 -federatesWith spiffe://fed1.test -federatesWith fed2.test",
    );
    c.pair(full, b"", &[&args("entry delete -entryID e-full")], &ident);
    let node: &[&str] = &args(
        "entry create -entryID e-node -node -spiffeID spiffe://example.org/nodes -selector join_token:abc",
    );
    c.pair(node, b"", &[&args("entry delete -entryID e-node")], &ident);
    let json_entry: &[&str] = &args(
        "entry create -entryID e-json -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w3 -selector unix:uid:3 -dns <&>.example -output json",
    );
    c.pair_json(
        json_entry,
        b"",
        &[&args("entry delete -entryID e-json")],
        &created,
    );
    // Failures reported by the server, per entry.
    c.cmp(&args("entry create -entryID e-dup -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w1 -selector unix:gid:1000 -selector unix:uid:1000"));
    c.cmp_json(&args("entry create -entryID e-dup -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w1 -selector unix:gid:1000 -selector unix:uid:1000 -output json"));
    c.cmp(&args("entry create -entryID e-basic -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/other -selector unix:uid:1"));
    c.cmp(&args("entry create -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/spire/x -selector unix:uid:1"));
    c.cmp(&args("entry create -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -federatesWith spiffe://nope.test"));
    c.cmp(&args("entry create -parentID spiffe://example.org/agent -spiffeID spiffe://other.org/x -selector unix:uid:1"));
    c.cmp(&[
        "entry",
        "create",
        "-entryID",
        "bad id with spaces",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/x",
        "-selector",
        "unix:uid:1",
    ]);
    c.cmp(&args("entry create -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector : -hint h"));
    // -data files and standard input.
    let entries_json = r#"{"entries":[
        {"entry_id":"e-data1","spiffe_id":"spiffe://example.org/d1","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:11"}],"x509_svid_ttl":200,"jwt_svid_ttl":30,
         "dns_names":["d1.example"],"hint":"dh","admin":true,"federates_with":["spiffe://fed1.test"],
         "entryExpiry":1900000000,"store_svid":true},
        {"entry_id":"e-data2","spiffe_id":"spiffe://example.org/d2","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:12"},{"type":"unix","value":"gid:12"}],"downstream":true}
    ]}"#;
    let entries_file = c.file("entries.json", entries_json);
    let reset_data: &[&[&str]] = &[
        &args("entry delete -entryID e-data1"),
        &args("entry delete -entryID e-data2"),
    ];
    c.pair(
        &["entry", "create", "-data", &entries_file],
        b"",
        reset_data,
        &ident,
    );
    c.pair(
        &args("entry create -data -"),
        entries_json.as_bytes(),
        reset_data,
        &ident,
    );
    c.pair_json(
        &["entry", "create", "-data", &entries_file, "-output", "json"],
        b"",
        reset_data,
        &created,
    );
    c.cmp(&["entry", "create", "-data", &entries_file]);
    c.cmp_json(&["entry", "create", "-data", &entries_file, "-output", "json"]);
    c.cmp(&[
        "entry",
        "create",
        "-data",
        &entries_file,
        "-spiffeID",
        "ignored",
    ]);

    // Listing and counting.
    for args in [
        &["entry", "show"][..],
        &args("entry show -entryID e-basic"),
        &args("entry show -entryID e-full"),
        &args("entry show -entryID nope"),
        &args("entry show -entryID e-basic -hint x"),
        &args("entry show -spiffeID spiffe://example.org/w1"),
        &args("entry show -spiffeID spiffe://example.org/none"),
        &args("entry show -parentID spiffe://example.org/agent"),
        &args("entry show -parentID spiffe://example.org/spire/server"),
        &args("entry show -selector unix:uid:1000"),
        &args("entry show -selector unix:uid:1000 -matchSelectorsOn exact"),
        &args("entry show -selector unix:uid:1000 -selector unix:gid:1000 -matchSelectorsOn exact"),
        &args("entry show -selector unix:uid:1000 -selector unix:uid:12 -matchSelectorsOn any"),
        &args(
            "entry show -selector unix:uid:1000 -selector unix:gid:1000 -selector unix:x:y -matchSelectorsOn subset",
        ),
        &args("entry show -selector unix:uid:1000 -matchSelectorsOn superset"),
        &args("entry show -federatesWith spiffe://fed1.test"),
        &args("entry show -federatesWith spiffe://fed1.test -matchFederatesWithOn exact"),
        &args(
            "entry show -federatesWith spiffe://fed1.test -federatesWith spiffe://fed2.test -matchFederatesWithOn any",
        ),
        &args(
            "entry show -federatesWith spiffe://fed1.test -federatesWith spiffe://fed2.test -matchFederatesWithOn subset",
        ),
        &["entry", "show", "-federatesWith", "bad td"],
        &args("entry show -hint h1"),
        &args("entry show -hint dh"),
        &["entry", "show", "-downstream"],
        &["entry", "show", "-downstream=false"],
        &args(
            "entry show -spiffeID spiffe://example.org/w2 -parentID spiffe://example.org/agent -hint h1 -downstream",
        ),
        &["entry", "count"],
        &args("entry count -spiffeID spiffe://example.org/w1"),
        &args("entry count -parentID spiffe://example.org/agent"),
        &args("entry count -selector unix:uid:1000 -matchSelectorsOn exact"),
        &args("entry count -federatesWith spiffe://fed1.test -matchFederatesWithOn any"),
        &args("entry count -hint h1"),
        &["entry", "count", "-downstream"],
        &args("entry count -spiffeID spiffe://example.org/none"),
    ] {
        c.cmp(args);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        c.cmp_json(&j);
    }

    // Updates: each starts from the same freshly created entry.
    let upd_create: &[&str] = &args(
        "entry create -entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u -selector unix:uid:50",
    );
    let reset_upd: &[&[&str]] = &[&args("entry delete -entryID e-upd"), upd_create];
    c.setup(upd_create);
    c.pair(
        &args("entry update -entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u2 -selector unix:uid:51 -x509SVIDTTL 120 -jwtSVIDTTL 20 -dns u.example -hint uh -admin -downstream -storeSVID -entryExpiry 1900000001 -federatesWith spiffe://fed1.test"),
        b"",
        reset_upd,
        &ident,
    );
    c.pair_json(
        &args("entry update -entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u3 -selector unix:uid:52 -output json"),
        b"",
        reset_upd,
        &created,
    );
    let upd_json = r#"{"entries":[{"entry_id":"e-upd","spiffe_id":"spiffe://example.org/u4",
        "parent_id":"spiffe://example.org/agent","selectors":[{"type":"unix","value":"uid:53"}],
        "hint":"from-data"}]}"#;
    let upd_file = c.file("update.json", upd_json);
    c.pair(
        &["entry", "update", "-data", &upd_file],
        b"",
        reset_upd,
        &ident,
    );
    c.pair(
        &args("entry update -data -"),
        upd_json.as_bytes(),
        reset_upd,
        &ident,
    );
    c.cmp(&args("entry update -entryID nope -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u -selector unix:uid:50"));
    c.cmp_json(&args("entry update -entryID nope -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u -selector unix:uid:50 -output json"));
    c.cmp(&args("entry update -entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/spire/nope -selector unix:uid:50"));

    // Deletes.
    let del_create: &[&str] = &args(
        "entry create -entryID e-del -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/del -selector unix:uid:60",
    );
    let del_create2: &[&str] = &args(
        "entry create -entryID e-del2 -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/del2 -selector unix:uid:61",
    );
    c.setup(del_create);
    c.pair(
        &args("entry delete -entryID e-del"),
        b"",
        &[del_create],
        &ident,
    );
    c.setup(del_create);
    c.pair_json(
        &args("entry delete -entryID e-del -output json"),
        b"",
        &[del_create],
        &|_| {},
    );
    c.cmp(&args("entry delete -entryID e-del"));
    c.cmp(&args("entry delete -entryID e-del"));
    c.cmp_json(&args("entry delete -entryID e-del -output json"));
    let ids = c.file("ids.json", r#"{"ids":["e-del","e-del2"]}"#);
    c.setup(del_create);
    c.setup(del_create2);
    c.pair(
        &["entry", "delete", "-file", &ids],
        b"",
        &[del_create, del_create2],
        &ident,
    );
    c.setup(del_create);
    c.pair(
        &args("entry delete -file -"),
        br#"{"ids":["e-del","e-missing"]}"#,
        &[del_create],
        &ident,
    );
    c.cmp(&args("entry delete -file -"));
    c.cmp_norm(&args("entry delete -file -"), br#"{"ids":[]}"#, &ident);
    c.cmp_norm(
        &args("entry delete -file -"),
        br#"{"ids":["x","y"]}"#,
        &ident,
    );
    c.cmp(&["entry", "show"]);
}
