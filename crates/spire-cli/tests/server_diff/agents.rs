//! The `agent` commands.

use crate::harness::*;

pub(crate) fn agents(c: &mut Ctx) {
    let mut a1 = c.server.start_agent();
    let mut a2 = c.server.start_agent();
    a1.stop();
    a2.stop();
    let (id1, id2) = (a1.id.clone(), a2.id.clone());
    for args in [
        &["agent", "list"][..],
        &args("agent list -attestationType join_token"),
        &args("agent list -attestationType x509pop"),
        &args("agent list -banned true"),
        &args("agent list -banned false"),
        &args("agent list -banned maybe"),
        &args("agent list -canReattest true"),
        &args("agent list -canReattest false"),
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2000-01-01 00:00:00 +0000 +00",
        ],
        &[
            "agent",
            "list",
            "-expiresBefore",
            "2999-01-01 00:00:00 +0000 +00",
        ],
        &args("agent list -selector join_token:x"),
        &args("agent list -selector join_token:x -matchSelectorsOn any"),
        &["agent", "count"],
        &args("agent count -banned true"),
        &args("agent count -canReattest false -attestationType join_token"),
        &[
            "agent",
            "count",
            "-expiresBefore",
            "2000-01-01 00:00:00 -0700 -07",
        ],
        &["agent", "show", "-spiffeID", &id1],
        &args("agent show -spiffeID spiffe://example.org/spire/agent/join_token/nope"),
        &args("agent show -spiffeID spiffe://other.org/agent"),
        &["agent", "purge"],
        &["agent", "purge", "-dryRun"],
        &args("agent purge -expiredFor 1s"),
    ] {
        c.cmp(args);
        let mut j = args.to_vec();
        j.extend(["-output", "json"]);
        c.cmp_json(&j);
    }
    // Ban and evict: the reference acts on one agent, ours on the other.
    let r = c.theirs(&["agent", "ban", "-spiffeID", &id1]);
    let o = c.ours_in(&["agent", "ban", "-spiffeID", &id2], b"");
    c.d.same("agent ban", &r, &o, &ident);
    c.cmp(&["agent", "show", "-spiffeID", &id1]);
    c.cmp_json(&["agent", "show", "-spiffeID", &id2, "-output", "json"]);
    c.cmp(&args("agent list -banned true"));
    c.cmp_json(&["agent", "ban", "-spiffeID", &id1, "-output", "json"]);
    c.cmp(&args(
        "agent ban -spiffeID spiffe://example.org/spire/agent/join_token/nope",
    ));
    let r = c.theirs(&["agent", "evict", "-spiffeID", &id1]);
    let o = c.ours_in(
        &["agent", "evict", "-spiffeID", &id2, "-output", "pretty"],
        b"",
    );
    c.d.same("agent evict", &r, &o, &ident);
    c.cmp(&["agent", "evict", "-spiffeID", &id1]);
    c.cmp_json(&["agent", "evict", "-spiffeID", &id2, "-output", "json"]);
    c.cmp(&["agent", "list"]);
    let mut a3 = c.server.start_agent();
    a3.stop();
    let mut a4 = c.server.start_agent();
    a4.stop();
    let r = run_ref(
        &ref_server_bin(),
        &[
            "agent",
            "evict",
            "-spiffeID",
            &a3.id,
            "-output",
            "json",
            "-socketPath",
            &c.socket,
        ],
        b"",
    );
    let o = c.ours_in(
        &["agent", "evict", "-spiffeID", &a4.id, "-output", "json"],
        b"",
    );
    c.d.same_json("agent evict -output json", &r, &o, &|_| {});
}
