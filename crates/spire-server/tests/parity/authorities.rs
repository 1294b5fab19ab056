//! Local X.509 and JWT authorities: show, prepare, activate, taint, revoke.

use crate::harness::*;

pub(crate) fn local_authorities(p: &mut Parity) {
    let bundle = |p: &mut Parity| {
        p.both_n(&["bundle", "show"], &norm_pem, &norm_bundle_json);
        p.text(&args("bundle show -format spiffe"), b"", &norm_spiffe_doc);
    };
    for kind in ["x509", "jwt"] {
        let la = |op: &'static str| -> Vec<&'static str> { vec!["localauthority", kind, op] };
        let show = |p: &mut Parity| {
            p.learn_authorities(kind);
            p.both_n(&la("show"), &norm_authority_text, &norm_authority_json);
        };
        // A refused operation, in both output forms.
        let refused = |p: &mut Parity, op: &'static str, id: &str| {
            let mut args = la(op);
            args.extend(["-authorityID", id]);
            p.both_n(&args, &norm_authority_text, &norm_authority_json);
        };
        // A state change, in one output form: pretty for X.509, JSON for JWT.
        let change = |p: &mut Parity, op: &'static str, id: Option<&str>| {
            let mut args = la(op);
            if let Some(id) = id {
                args.extend(["-authorityID", id]);
            }
            if kind == "jwt" {
                args.extend(["-output", "json"]);
                p.json(&args, b"", &norm_authority_json);
            } else {
                p.text(&args, b"", &norm_authority_text);
            }
        };
        show(p);
        for op in ["activate", "taint", "revoke"] {
            p.both_n(&la(op), &norm_authority_text, &norm_authority_json);
            refused(p, op, "nope");
        }
        let active = format!("{{{kind}-1}}");
        refused(p, "activate", &active);
        refused(p, "taint", &active);
        refused(p, "revoke", &active);

        // Prepare twice: the second replaces the first (which stays in the bundle).
        p.text(&la("prepare"), b"", &norm_authority_text);
        show(p);
        let mut prepare_json = la("prepare");
        prepare_json.extend(["-output", "json"]);
        p.json(&prepare_json, b"", &norm_authority_json);
        show(p);
        bundle(p);
        let replaced = format!("{{{kind}-2}}");
        let prepared = format!("{{{kind}-3}}");
        refused(p, "activate", &replaced);
        refused(p, "taint", &prepared);
        refused(p, "revoke", &prepared);
        change(p, "activate", Some(&prepared));
        show(p);
        // The old authority: not re-activatable, revocable only once tainted.
        let old = active;
        refused(p, "activate", &old);
        refused(p, "activate", &prepared);
        refused(p, "revoke", &old);
        refused(p, "taint", &prepared);
        refused(p, "taint", &replaced);
        refused(p, "revoke", &replaced);
        change(p, "taint", Some(&old));
        show(p);
        bundle(p);
        refused(p, "taint", &old);
        change(p, "revoke", Some(&old));
        show(p);
        bundle(p);
        refused(p, "revoke", &old);
        refused(p, "taint", &old);
        // A new rotation on top.
        change(p, "prepare", None);
        show(p);
        bundle(p);
    }
    for op in ["taint", "revoke"] {
        p.both(&["upstreamauthority", op, "-subjectKeyID", "abcd"]);
        p.both(&["upstreamauthority", op]);
    }
    p.both_n(&["bundle", "count"], &ident, &|_| {});
}
