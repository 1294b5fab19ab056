//! The `localauthority` and `upstreamauthority` commands.

use crate::harness::*;

pub(crate) fn authorities(c: &mut Ctx) {
    for kind in ["x509", "jwt"] {
        c.cmp(&["localauthority", kind, "show"]);
        c.cmp_json(&["localauthority", kind, "show", "-output", "json"]);
        for op in ["activate", "taint", "revoke"] {
            c.cmp(&["localauthority", kind, op, "-authorityID", "nope"]);
            c.cmp_json(&[
                "localauthority",
                kind,
                op,
                "-authorityID",
                "nope",
                "-output",
                "json",
            ]);
        }
        // prepare: both succeed, each replacing the prepared authority.
        c.cmp_norm(&["localauthority", kind, "prepare"], b"", &norm_authority);
        c.cmp_json_norm(
            &["localauthority", kind, "prepare", "-output", "json"],
            b"",
            &json_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        let show = |c: &Ctx| c.setup(&["localauthority", kind, "show", "-output", "json"]);
        // activate: the reference activates one prepared authority, ours
        // the next.
        let prepared = authority_id(&show(c), "prepared");
        let r = c.theirs(&[
            "localauthority",
            kind,
            "activate",
            "-authorityID",
            &prepared,
        ]);
        c.setup(&["localauthority", kind, "prepare"]);
        let prepared = authority_id(&show(c), "prepared");
        let o = c.ours_in(
            &[
                "localauthority",
                kind,
                "activate",
                "-authorityID",
                &prepared,
            ],
            b"",
        );
        c.d.same(
            &format!("localauthority {kind} activate"),
            &r,
            &o,
            &norm_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        let active = authority_id(&show(c), "active");
        c.cmp(&["localauthority", kind, "taint", "-authorityID", &active]);
        c.cmp(&["localauthority", kind, "revoke", "-authorityID", &active]);
        // taint: the old authority of each rotation.
        let old = authority_id(&show(c), "old");
        let r = c.theirs(&["localauthority", kind, "taint", "-authorityID", &old]);
        c.cmp(&["localauthority", kind, "taint", "-authorityID", &old]);
        c.setup(&["localauthority", kind, "prepare"]);
        let prepared = authority_id(&show(c), "prepared");
        c.setup(&[
            "localauthority",
            kind,
            "activate",
            "-authorityID",
            &prepared,
        ]);
        let old = authority_id(&show(c), "old");
        let o = c.ours_in(
            &["localauthority", kind, "taint", "-authorityID", &old],
            b"",
        );
        c.d.same(
            &format!("localauthority {kind} taint"),
            &r,
            &o,
            &norm_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        c.cmp_json(&["localauthority", kind, "show", "-output", "json"]);
        // revoke: a tainted old authority.
        let r = c.theirs(&["localauthority", kind, "revoke", "-authorityID", &old]);
        c.setup(&["localauthority", kind, "prepare"]);
        let prepared = authority_id(&show(c), "prepared");
        c.setup(&[
            "localauthority",
            kind,
            "activate",
            "-authorityID",
            &prepared,
        ]);
        let old = authority_id(&show(c), "old");
        c.setup(&["localauthority", kind, "taint", "-authorityID", &old]);
        let o = c.ours_in(
            &["localauthority", kind, "revoke", "-authorityID", &old],
            b"",
        );
        c.d.same(
            &format!("localauthority {kind} revoke"),
            &r,
            &o,
            &norm_authority,
        );
        c.cmp(&["localauthority", kind, "show"]);
        c.cmp(&["localauthority", kind, "revoke", "-authorityID", &old]);
    }
    c.cmp(&args("upstreamauthority taint -subjectKeyID abcd"));
    c.cmp_json(&args(
        "upstreamauthority taint -subjectKeyID abcd -output json",
    ));
    c.cmp(&args("upstreamauthority revoke -subjectKeyID abcd"));
    c.cmp_json(&args(
        "upstreamauthority revoke -subjectKeyID abcd -output json",
    ));
    c.cmp(&["bundle", "show"]);
}
