//! Attested agents: list, show, count, ban, evict, with their filters.

use crate::harness::*;

pub(crate) fn agents(p: &mut Parity) {
    let x509pop = p.x509pop.clone();
    let tokens = ["agent-a1", "agent-a2", "agent-a3", "agent-a4"];
    let mut how: Vec<Attestation<'_>> = tokens.iter().map(|t| Attestation::JoinToken(t)).collect();
    how.extend(x509pop.iter().map(Attestation::X509Pop));
    let (r, o) = (&p.r.server, &p.o.server);
    std::thread::scope(|s| {
        let a = s.spawn(|| how.iter().map(|h| r.attest_agent(*h)).collect::<Vec<_>>());
        let b = s.spawn(|| how.iter().map(|h| o.attest_agent(*h)).collect::<Vec<_>>());
        (a.join().unwrap(), b.join().unwrap())
    });
    let id = |t: &str| format!("spiffe://example.org/spire/agent/join_token/{t}");
    let (a1, a2, a3) = (id(tokens[0]), id(tokens[1]), id(tokens[2]));
    let (x1, x2) = (x509pop[0].id.as_str(), x509pop[1].id.as_str());
    // An alias entry parented to an agent, and to the server.
    p.cmp(&[
        "entry",
        "create",
        "-entryID",
        "e-alias",
        "-node",
        "-spiffeID",
        "spiffe://example.org/alias",
        "-selector",
        &format!("spiffe_id:{a1}"),
    ]);
    p.cmp(&args_with(
        "entry create -entryID e-under-agent -parentID",
        &[
            &a1,
            "-spiffeID",
            "spiffe://example.org/under-agent",
            "-selector",
            "unix:uid:7",
        ],
    ));

    let listings: &[&[&str]] = &[
        &["list"],
        &["list", "-attestationType", "join_token"],
        &["list", "-attestationType", "x509pop"],
        &["list", "-banned", "true"],
        &["list", "-banned", "false"],
        &["list", "-banned", "maybe"],
        &["list", "-canReattest", "true"],
        &["list", "-canReattest", "false"],
        &["list", "-expiresBefore", "2000-01-01 00:00:00 +0000 +00"],
        &["list", "-expiresBefore", "2999-01-01 00:00:00 +0000 +00"],
        &["list", "-expiresBefore", "not a time"],
        &["list", "-selector", "join_token:x"],
        &args("list -selector join_token:x -matchSelectorsOn any"),
        &args("list -selector join_token:x -matchSelectorsOn exact"),
        &args("list -selector join_token:x -matchSelectorsOn bogus"),
        &["list", "-selector", "bad"],
        &["list", "-selector", "x509pop:subject:cn:x1"],
        &args(
            "list -selector x509pop:subject:cn:x1 -selector x509pop:subject:cn:x2 -matchSelectorsOn any",
        ),
        &args("list -selector x509pop:subject:cn:x1 -matchSelectorsOn exact"),
        &args(
            "list -selector x509pop:subject:cn:x1 -selector x509pop:subject:cn:x2 -selector x509pop:ca:fingerprint:nope -matchSelectorsOn subset",
        ),
        &[
            "list",
            "-attestationType",
            "x509pop",
            "-canReattest",
            "true",
            "-banned",
            "false",
            "-expiresBefore",
            "2999-01-01 00:00:00 +0000 +00",
        ],
        &["count", "-selector", "x509pop:subject:cn:x2"],
        &["count", "-canReattest", "true"],
        &["count"],
        &["count", "-banned", "true"],
        &args("count -canReattest false -attestationType join_token"),
        &["count", "-expiresBefore", "2000-01-01 00:00:00 -0700 -07"],
        &["count", "-expiresBefore", "2999-01-01 00:00:00 -0700 -07"],
        &["count", "-selector", "join_token:x"],
    ];
    for l in listings {
        let mut args = vec!["agent"];
        args.extend_from_slice(l);
        p.both_n(&args, &norm_agent_text, &norm_agent_json);
    }
    for target in [
        x1,
        a1.as_str(),
        "spiffe://example.org/spire/agent/join_token/nope",
        "spiffe://other.org/spire/agent/x",
        "spiffe://example.org/workload",
        "spiffe://example.org",
        "not an id",
        "",
    ] {
        for cmd in ["show", "ban", "evict"] {
            if cmd != "show" && (target == a1 || target == x1) {
                continue;
            }
            p.both_n(
                &["agent", cmd, "-spiffeID", target],
                &norm_agent_text,
                &norm_agent_json,
            );
        }
    }
    // Ban, then evict.
    p.both(&["agent", "ban", "-spiffeID", &a1]);
    p.both_n(
        &["agent", "show", "-spiffeID", &a1],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &args("agent list -banned true"),
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &args("agent count -banned false"),
        &norm_agent_text,
        &norm_agent_json,
    );
    p.cmp(&["agent", "evict", "-spiffeID", &a2]);
    p.both(&["agent", "evict", "-spiffeID", &a2]);
    p.both_n(&["agent", "count"], &norm_agent_text, &norm_agent_json);
    p.cmp(&["agent", "ban", "-spiffeID", &a1]);
    p.cmp(&["agent", "evict", "-spiffeID", &a1]);
    p.both_n(
        &["agent", "show", "-spiffeID", &a1],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(&["agent", "list"], &norm_agent_text, &norm_agent_json);
    p.both_n(&["entry", "show"], &ident, &norm_created);
    // An x509pop agent (re-attestable) banned, and an alias entry over its selectors.
    p.cmp(&["agent", "ban", "-spiffeID", x2]);
    p.both_n(
        &args("agent list -canReattest true"),
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &args("entry create -entryID e-x509pop-alias -node -spiffeID spiffe://example.org/x509pop-nodes -selector x509pop:subject:cn:x1"),
        &ident,
        &norm_created,
    );
    // Purging considers re-attestable agents only: nothing has expired for 30 days or 1s;
    // everything "has expired for -2h" (expires within the next 2 hours).
    for tail in [
        &[][..],
        &["-dryRun"],
        &["-expiredFor", "1s"],
        &["-expiredFor", "-2h", "-dryRun"],
    ] {
        let mut args = vec!["agent", "purge"];
        args.extend_from_slice(tail);
        p.both_n(&args, &norm_agent_text, &norm_agent_json);
    }
    p.cmp(&args("agent purge -expiredFor -2h"));
    p.both_n(
        &args("agent purge -expiredFor -2h -output json"),
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(
        &["agent", "show", "-spiffeID", x1],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(&["agent", "list"], &norm_agent_text, &norm_agent_json);
    p.both_n(
        &["agent", "show", "-spiffeID", &a3],
        &norm_agent_text,
        &norm_agent_json,
    );
    p.both_n(&["agent", "count"], &norm_agent_text, &norm_agent_json);
    p.cmp(&args("entry delete -entryID e-alias"));
    p.cmp(&args("entry delete -entryID e-under-agent"));
    p.cmp(&args("entry delete -entryID e-x509pop-alias"));
}
