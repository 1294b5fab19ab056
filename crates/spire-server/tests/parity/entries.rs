//! Registration entries: create, show, update, delete, count, with their refusals.

use crate::harness::*;

pub(crate) fn entries(p: &mut Parity) {
    let basic: &[&str] = &args(
        "entry create -entryID e-basic -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w1 -selector unix:gid:1000 -selector unix:uid:1000",
    );
    p.cmp(basic);
    p.cmp(&args("entry create -entryID e-full -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w2 -selector k8s:ns:default -selector k8s:sa:default -x509SVIDTTL 300 -jwtSVIDTTL 60 -dns a.example -dns b.example -hint h1 -admin -downstream -storeSVID -entryExpiry 1900000000 -federatesWith spiffe://fed1.test -federatesWith fed2.test"));
    p.cmp(&args("entry create -entryID e-node -node -spiffeID spiffe://example.org/nodes -selector join_token:abc"));
    p.json(
        &args("entry create -entryID e-json -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w3 -selector unix:uid:3 -dns x.example -output json"),
        b"",
        &norm_created,
    );
    // Server-side refusals, one entry at a time.
    let dup = [
        "entry",
        "create",
        "-entryID",
        "e-dup",
        "-parentID",
        "spiffe://example.org/agent",
        "-spiffeID",
        "spiffe://example.org/w1",
        "-selector",
        "unix:gid:1000",
        "-selector",
        "unix:uid:1000",
    ];
    p.both_n(&dup, &ident, &norm_created);
    let mut dup_no_id = dup.to_vec();
    dup_no_id.drain(2..4);
    p.both_n(&dup_no_id, &ident, &norm_created);
    let long_id = "i".repeat(256);
    let refused: &[&[&str]] = &[
        // An existing entry ID with different content.
        &args(
            "-entryID e-basic -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/other -selector unix:uid:1",
        ),
        // Reserved path.
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/spire/x -selector unix:uid:1",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/spire -selector unix:uid:1",
        ),
        // Unknown federated trust domain.
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -federatesWith spiffe://nope.test",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -federatesWith spiffe://example.org",
        ),
        &[
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
            "-federatesWith",
            "Bad TD",
        ],
        // Foreign trust domains.
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://other.org/x -selector unix:uid:1",
        ),
        &args(
            "-parentID spiffe://other.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1",
        ),
        &args(
            "-parentID spiffe://example.org -spiffeID spiffe://example.org/x -selector unix:uid:1",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org -selector unix:uid:1",
        ),
        // Malformed IDs, selectors, names.
        &[
            "-entryID",
            "bad id with spaces",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &args(
            "-entryID ñ -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x/ -selector unix:uid:1",
        ),
        &args("-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector :"),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:",
        ),
        &args("-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x"),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -dns bad_label",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -dns é.example",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -x509SVIDTTL -5",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -jwtSVIDTTL -5",
        ),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -entryExpiry -5",
        ),
        &args("-spiffeID spiffe://example.org/x -selector unix:uid:1"),
        &args(
            "-parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -selector k8s:ns:x -storeSVID",
        ),
        &[
            "-entryID",
            &long_id,
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/x",
            "-selector",
            "unix:uid:1",
        ],
        &args(
            "-node -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1",
        ),
    ];
    // Each case its own SPIFFE ID, so that none is refused as similar to another.
    for (i, tail) in refused.iter().enumerate() {
        let unique = format!("spiffe://example.org/x{i}");
        let mut args = vec!["entry", "create"];
        args.extend(tail.iter().map(|a| {
            if *a == "spiffe://example.org/x" {
                unique.as_str()
            } else {
                a
            }
        }));
        p.both_n(&args, &ident, &norm_created);
    }
    for (id, dns) in [
        ("e-dns1", &args("-dns A.example -dns b_b.example")[..]),
        ("e-dns2", &["-dns", " a.example "]),
        ("e-dns3", &["-dns", "a..example"]),
        ("e-dns4", &["-dns", "-a.example"]),
        ("e-dns5", &["-dns", "ab--c.example"]),
        ("e-dns6", &["-dns", "*.*.example"]),
        ("e-dns7", &["-dns", "a.*.example"]),
        ("e-dns8", &["-dns", "a.example."]),
        ("e-dns9", &["-dns", " "]),
    ] {
        let selector = format!("dns:{id}");
        let mut args = vec![
            "entry",
            "create",
            "-entryID",
            id,
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/dns",
            "-selector",
            &selector,
            "-selector",
            "unix:uid:4242",
        ];
        args.extend_from_slice(dns);
        p.both_n(&args, &ident, &norm_created);
    }
    // Selectors, DNS names and federated trust domains given out of order (elsewhere they
    // are given sorted: see DS_ENTRY_ORDER).
    p.both_n(
        &args("entry create -entryID e-order -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/order -selector z:b -selector z:a -selector a:z -dns b.example -dns a.example -federatesWith spiffe://fed2.test -federatesWith spiffe://fed1.test"),
        &ident,
        &norm_created,
    );
    p.both_n(&args("entry show -entryID e-order"), &ident, &norm_created);
    p.both_n(
        &args("entry update -entryID e-order -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/order -selector y:b -selector y:a -dns d.example -dns c.example -federatesWith spiffe://fed2.test -federatesWith spiffe://fed1.test"),
        &ident,
        &norm_created,
    );
    p.both_n(&args("entry show -entryID e-order"), &ident, &norm_created);
    let long_hint = "h".repeat(1025);
    p.cmp(&args_with("entry create -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/x -selector unix:uid:1 -hint", &[&long_hint]));

    // -data files and standard input, with per-entry failures in the batch.
    let entries_json = r#"{"entries":[
        {"entry_id":"e-data1","spiffe_id":"spiffe://example.org/d1","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:11"}],"x509_svid_ttl":200,"jwt_svid_ttl":30,
         "dns_names":["d1.example"],"hint":"dh","admin":true,"federates_with":["spiffe://fed1.test"],
         "entryExpiry":1900000000,"store_svid":true},
        {"entry_id":"e-data2","spiffe_id":"spiffe://example.org/d2","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"gid:12"},{"type":"unix","value":"uid:12"}],"downstream":true},
        {"entry_id":"e-data3","spiffe_id":"spiffe://example.org/spire/d3","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:13"}]},
        {"entry_id":"e-data4","spiffe_id":"spiffe://example.org/d4","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:14"}],"federates_with":["spiffe://nope.test"]},
        {"entry_id":"e-data5","spiffe_id":"spiffe://example.org/w1","parent_id":"spiffe://example.org/agent",
         "selectors":[{"type":"unix","value":"uid:1000"},{"type":"unix","value":"gid:1000"}]}
    ]}"#;
    let entries_file = p.file("entries.json", entries_json);
    p.cmp(&["entry", "create", "-data", &entries_file]);
    p.cmp(&args("entry delete -entryID e-data1"));
    p.cmp(&args("entry delete -entryID e-data2"));
    p.text(
        &args("entry create -data -"),
        entries_json.as_bytes(),
        &ident,
    );
    p.json(
        &["entry", "create", "-data", &entries_file, "-output", "json"],
        b"",
        &norm_created,
    );
    p.text(&args("entry create -data -"), br#"{"entries":[]}"#, &ident);

    // Listing and counting with every filter.
    let filters: &[&[&str]] = &[
        &[],
        &["-spiffeID", "spiffe://example.org/w1"],
        &["-spiffeID", "spiffe://example.org/none"],
        &["-spiffeID", "spiffe://example.org/spire/x"],
        &["-spiffeID", "spiffe://other.org/w1"],
        &["-parentID", "spiffe://example.org/agent"],
        &["-parentID", "spiffe://example.org/spire/server"],
        &["-parentID", "spiffe://other.org/agent"],
        &["-selector", "unix:uid:1000"],
        &args("-selector unix:uid:1000 -matchSelectorsOn exact"),
        &args("-selector unix:uid:1000 -selector unix:gid:1000 -matchSelectorsOn exact"),
        &args("-selector unix:uid:1000 -selector unix:uid:12 -matchSelectorsOn any"),
        &args(
            "-selector unix:uid:1000 -selector unix:gid:1000 -selector unix:x:y -matchSelectorsOn subset",
        ),
        &args("-selector unix:uid:1000 -matchSelectorsOn superset"),
        &args("-selector unix:uid:1000 -matchSelectorsOn bogus"),
        &["-selector", "unix"],
        &["-federatesWith", "spiffe://fed1.test"],
        &args("-federatesWith spiffe://fed1.test -matchFederatesWithOn exact"),
        &args(
            "-federatesWith spiffe://fed1.test -federatesWith spiffe://fed2.test -matchFederatesWithOn exact",
        ),
        &args(
            "-federatesWith spiffe://fed1.test -federatesWith spiffe://fed2.test -matchFederatesWithOn any",
        ),
        &args(
            "-federatesWith spiffe://fed1.test -federatesWith spiffe://fed2.test -matchFederatesWithOn subset",
        ),
        &args("-federatesWith spiffe://fed2.test -matchFederatesWithOn superset"),
        &["-federatesWith", "bad td"],
        &["-hint", "h1"],
        &["-hint", "dh"],
        &["-hint", "none"],
        &["-downstream"],
        &["-downstream=false"],
        &args(
            "-spiffeID spiffe://example.org/w2 -parentID spiffe://example.org/agent -hint h1 -downstream -selector k8s:ns:default -federatesWith spiffe://fed1.test",
        ),
    ];
    for f in filters {
        for cmd in ["show", "count"] {
            let mut args = vec!["entry", cmd];
            args.extend_from_slice(f);
            p.both_n(&args, &ident, &norm_created);
        }
    }
    for id in ["e-basic", "e-full", "e-node", "nope", ""] {
        p.both_n(&["entry", "show", "-entryID", id], &ident, &norm_created);
    }
    p.both_n(
        &args("entry show -entryID e-basic -hint x"),
        &ident,
        &norm_created,
    );

    // Updates.
    p.cmp(&args("entry create -entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u -selector unix:uid:50"));
    p.cmp(&args("entry update -entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u2 -selector unix:uid:51 -x509SVIDTTL 120 -jwtSVIDTTL 20 -dns u.example -hint uh -admin -downstream -storeSVID -entryExpiry 1900000001 -federatesWith spiffe://fed1.test"));
    p.both_n(&args("entry show -entryID e-upd"), &ident, &norm_created);
    p.json(
        &args("entry update -entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u3 -selector unix:uid:52 -output json"),
        b"",
        &norm_created,
    );
    let upd_json = r#"{"entries":[{"entry_id":"e-upd","spiffe_id":"spiffe://example.org/u4",
        "parent_id":"spiffe://example.org/agent","selectors":[{"type":"unix","value":"uid:53"}],
        "hint":"from-data"},
        {"entry_id":"nope","spiffe_id":"spiffe://example.org/u5",
        "parent_id":"spiffe://example.org/agent","selectors":[{"type":"unix","value":"uid:53"}]}]}"#;
    let upd_file = p.file("update.json", upd_json);
    p.cmp(&["entry", "update", "-data", &upd_file]);
    p.text(&args("entry update -data -"), upd_json.as_bytes(), &ident);
    p.both_n(&args("entry show -entryID e-upd"), &ident, &norm_created);
    let bad_updates: &[&[&str]] = &[
        &args(
            "-entryID nope -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u -selector unix:uid:50",
        ),
        &args(
            "-entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/spire/nope -selector unix:uid:50",
        ),
        &args(
            "-entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u -selector unix:uid:50 -federatesWith spiffe://nope.test",
        ),
        // Would make it a duplicate of e-basic.
        &args(
            "-entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/w1 -selector unix:gid:1000 -selector unix:uid:1000",
        ),
        &args(
            "-entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u",
        ),
        &[
            "-entryID",
            "",
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            "spiffe://example.org/u",
            "-selector",
            "unix:uid:50",
        ],
        &args(
            "-entryID e-upd -parentID spiffe://example.org/agent -spiffeID spiffe://example.org/u -selector unix:uid:50 -x509SVIDTTL -1",
        ),
    ];
    for tail in bad_updates {
        let mut args = vec!["entry", "update"];
        args.extend_from_slice(tail);
        p.both_n(&args, &ident, &norm_created);
    }
    p.both_n(&args("entry show -entryID e-upd"), &ident, &norm_created);

    // Deletes.
    for e in ["e-del", "e-del2"] {
        p.cmp(&[
            "entry",
            "create",
            "-entryID",
            e,
            "-parentID",
            "spiffe://example.org/agent",
            "-spiffeID",
            &format!("spiffe://example.org/{e}"),
            "-selector",
            "unix:uid:60",
        ]);
    }
    p.cmp(&args("entry delete -entryID e-del"));
    p.both(&args("entry delete -entryID e-del"));
    p.both(&["entry", "delete", "-entryID", ""]);
    p.json(
        &args("entry delete -entryID e-del2 -output json"),
        b"",
        &|_| {},
    );
    let ids = p.file("ids.json", r#"{"ids":["e-data1","e-data2","e-missing"]}"#);
    p.cmp(&["entry", "delete", "-file", &ids]);
    p.text(
        &args("entry delete -file -"),
        br#"{"ids":["e-json","x",""]}"#,
        &ident,
    );
    p.text(&args("entry delete -file -"), br#"{"ids":[]}"#, &ident);
    p.both_n(&["entry", "show"], &ident, &norm_created);
    p.both(&["entry", "count"]);

    // More entries than one ListEntries page (the CLI asks for 500 at a time).
    let many: Vec<String> = (0..520)
        .map(|i| {
            format!(
                r#"{{"entry_id":"e-many-{i:03}","spiffe_id":"spiffe://example.org/many/{i}","parent_id":"spiffe://example.org/agent","selectors":[{{"type":"many","value":"{i}"}}]}}"#
            )
        })
        .collect();
    let many_file = p.file(
        "many.json",
        &format!(r#"{{"entries":[{}]}}"#, many.join(",")),
    );
    p.cmp(&["entry", "create", "-data", &many_file]);
    p.both(&["entry", "count"]);
    p.both_n(&["entry", "show"], &ident, &norm_created);
    p.both_n(
        &args("entry show -parentID spiffe://example.org/agent"),
        &ident,
        &norm_created,
    );
    let many_ids: Vec<String> = (0..520).map(|i| format!(r#""e-many-{i:03}""#)).collect();
    let many_ids = p.file(
        "many-ids.json",
        &format!(r#"{{"ids":[{}]}}"#, many_ids.join(",")),
    );
    p.cmp(&["entry", "delete", "-file", &many_ids]);
    p.both(&["entry", "count"]);
}
