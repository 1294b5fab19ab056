//! Several servers on one database (SPIRE's HA model): two servers share a PostgreSQL or
//! MariaDB database, each with its own CA key (no shared UpstreamAuthority: SPIRE 1.13
//! keeps one `ca_journals` row per server and appends each server's root to the one
//! bundle), agents attested to each.
//!
//! Server A is the pairing's server subject; server B is the same implementation
//! (`*_same`) or the other one (`*_mixed`: reference SPIRE and spire-rs on one database).
//! Agents are the pairing's agent subject. Checks: both servers publish a bundle holding
//! both CAs and their agents deliver it; an entry written on A reaches a workload of B's
//! agent (the time is printed as `ha timing`); a workload of B's agent and one of A's
//! agent talk mTLS with go-spiffe (each validates an SVID of the other server's CA); a
//! delete on B removes the SVID from A's agent; an evict on A makes B's x509pop agent
//! re-attest; a ban on A shuts B's agent down.
//!
//! The database servers come from `scripts/test-databases.sh` (`SPIRE_RS_TEST_POSTGRES_URL`,
//! `SPIRE_RS_TEST_MYSQL_URL`); each scenario creates a database of its own and drops it
//! afterwards. Without them the scenario is skipped visibly, or fails with
//! `SPIRE_RS_REQUIRE_DBS=1`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::go_client;
use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Impl, Proc, Scenario, Server, ServerOpts, agent_subject,
    check_svid_json, free_port, id, pki, server::agent_id as listed_id, server_subject, skip,
    uid_selector, wait_agent_listed, x509pop_server_plugin,
};

const PG_ENV: &str = "SPIRE_RS_TEST_POSTGRES_URL";
const MYSQL_ENV: &str = "SPIRE_RS_TEST_MYSQL_URL";
const REQUIRE_ENV: &str = "SPIRE_RS_REQUIRE_DBS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Mysql,
}

/// A database of its own on one of the test servers, dropped when the scenario ends.
#[derive(Debug)]
struct Db {
    kind: Kind,
    name: String,
    /// The server-level URL or DSN the database was made from.
    base: String,
}

impl Db {
    /// Creates a fresh database; `None` (after a visible skip) when the server is not
    /// configured and not required.
    fn create(sc: &Scenario, kind: Kind) -> Option<Db> {
        let var = match kind {
            Kind::Postgres => PG_ENV,
            Kind::Mysql => MYSQL_ENV,
        };
        let Some(base) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            assert!(
                std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
                "{var} is not set and {REQUIRE_ENV}=1 (start the servers with scripts/test-databases.sh)"
            );
            skip(
                sc,
                &format!(
                    "{var} is not set (scripts/test-databases.sh); set {REQUIRE_ENV}=1 to fail instead"
                ),
            );
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("spcf_ha_{}_{}", std::process::id(), nanos);
        let db = Db { kind, name, base };
        db.admin(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    /// Runs one statement as the test user on the server (psql or mysql client).
    fn admin(&self, sql: &str) {
        self.run_sql(sql, false);
    }

    /// Runs one query in this database; its rows, tab-separated, without headers.
    fn query(&self, sql: &str) -> String {
        self.run_sql(sql, true)
    }

    fn run_sql(&self, sql: &str, in_db: bool) -> String {
        let out = match self.kind {
            Kind::Postgres => {
                let url = if in_db {
                    self.datastore().1
                } else {
                    self.base.clone()
                };
                Command::new("psql")
                    .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql])
                    .stdin(Stdio::null())
                    .output()
            }
            Kind::Mysql => {
                let (user, pass, host, port) = mysql_parts(&self.base);
                let mut args = vec![
                    "-h".to_string(),
                    host,
                    "-P".into(),
                    port,
                    "-u".into(),
                    user,
                    format!("-p{pass}"),
                    "-N".into(),
                    "-B".into(),
                ];
                if in_db {
                    args.push(self.name.clone());
                }
                args.extend(["-e".into(), sql.to_string()]);
                Command::new("mysql")
                    .args(&args)
                    .stdin(Stdio::null())
                    .output()
            }
        }
        .unwrap_or_else(|e| panic!("cannot run the {:?} client: {e}", self.kind));
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The `sql` DataStore settings for this database.
    fn datastore(&self) -> (String, String) {
        match self.kind {
            Kind::Postgres => {
                let (head, query) = self.base.split_once('?').unwrap_or((&self.base, ""));
                let (server, _) = head.rsplit_once('/').expect("PostgreSQL URL with a path");
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                ("postgres".into(), format!("{server}/{}{q}", self.name))
            }
            Kind::Mysql => {
                let (head, tail) = self.base.rsplit_once('/').expect("MySQL DSN with a /");
                let query = tail.split_once('?').map_or("", |(_, q)| q);
                (
                    "mysql".into(),
                    format!("{head}/{}?{query}", self.name)
                        .trim_end_matches('?')
                        .to_string(),
                )
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Kept for a look when the scenario failed.
        if !std::thread::panicking() {
            let sql = match self.kind {
                Kind::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                Kind::Mysql => format!("DROP DATABASE IF EXISTS {}", self.name),
            };
            self.admin(&sql);
        }
    }
}

/// `user:pass@tcp(host:port)/db?params` -> (user, pass, host, port).
fn mysql_parts(dsn: &str) -> (String, String, String, String) {
    let (head, _) = dsn.rsplit_once('/').expect("MySQL DSN with a /");
    let (userinfo, addr) = head.rsplit_once('@').expect("MySQL DSN with user@");
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let addr = addr.trim_start_matches("tcp(").trim_end_matches(')');
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "3306"));
    (user.into(), pass.into(), host.into(), port.into())
}

fn other(imp: Impl) -> Impl {
    match imp {
        Impl::Reference => Impl::SpireRs,
        Impl::SpireRs => Impl::Reference,
    }
}

fn kv(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
}

/// What an agent delivers with the SVID for `spiffe_id`: the SVID chain top's authority
/// key ID and the subject key IDs of the bundle's authorities.
fn svid_and_bundle(agent: &Agent, spiffe_id: &str) -> Result<(String, Vec<String>), String> {
    let v = agent.fetch_x509_json()?;
    let svid = v["svids"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["spiffe_id"] == spiffe_id))
        .ok_or_else(|| format!("no SVID for {spiffe_id}"))?;
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    let top = chain.last().map(|c| pki::facts(c).akid).unwrap_or_default();
    let bundle = pki::split_der(&pki::b64(svid["bundle"].as_str().unwrap_or_default()))
        .iter()
        .map(|c| pki::facts(c).skid)
        .collect();
    Ok((top, bundle))
}

/// Waits until `agent` serves `spiffe_id`, polling tightly (for the timing): the time
/// since `since`.
async fn time_until_served(agent: &Agent, spiffe_id: &str, since: Instant) -> Duration {
    let d = Deadline::new(format!("agent {} to serve {spiffe_id}", agent.label), 60);
    loop {
        if let Ok(ids) = agent.fetch_x509_ids()
            && ids.iter().any(|i| i == spiffe_id)
        {
            return since.elapsed();
        }
        assert!(
            !d.expired(),
            "timed out waiting for {spiffe_id} on {}",
            agent.label
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_servers(name: &str, kind: Kind, mixed: bool) {
    let sc = Scenario::new(name);
    let Some(db) = Db::create(&sc, kind) else {
        return;
    };
    let imp_a = server_subject();
    let imp_b = if mixed { other(imp_a) } else { imp_a };
    let ca = pki::NodeCa::new(&sc.subdir("pki"));
    let opts = ServerOpts {
        sql: Some(db.datastore()),
        extra_plugins: x509pop_server_plugin(&ca.ca_path),
        ..Default::default()
    };
    let a = Server::start_new(&sc, "server-a", imp_a, opts.clone()).await;
    let b = Server::start_new(&sc, "server-b", imp_b, opts).await;
    eprintln!(
        "ha: server A {} and server B {} on one {kind:?} database",
        imp_a.name(),
        imp_b.name()
    );

    // One bundle in the database, holding each server's CA; both servers serve it.
    for s in [&a, &b] {
        let d = Deadline::new(format!("server {} to list both CAs", s.label), 30);
        loop {
            let n = pki::pem_certs(&s.bundle_pem()).len();
            if n == 2 {
                break;
            }
            d.tick(format!("{n} X.509 authorities")).await;
        }
    }
    let (auth_a, auth_b) = (a.active_x509_authority(), b.active_x509_authority());
    assert_ne!(auth_a, auth_b, "each server has a CA key of its own");
    // And a CA journal of its own, found by its active X.509 authority ID.
    let journals = db.query("SELECT active_x509_authority_id FROM ca_journals");
    let mut journals: Vec<&str> = journals.lines().map(str::trim).collect();
    journals.sort_unstable();
    let mut want = vec![auth_a.as_str(), auth_b.as_str()];
    want.sort_unstable();
    assert_eq!(journals, want, "one ca_journals row per server");

    let agent_imp = agent_subject();
    let a1_token = a.token(None);
    let a1 = Agent::start_new(
        &sc,
        "agent-a1",
        agent_imp,
        &a,
        &Attestor::JoinToken(a1_token.clone()),
        AgentOpts::default(),
    )
    .await;
    let a1_id = id(&format!("/spire/agent/join_token/{a1_token}"));
    let b1_token = b.token(None);
    let mut b1 = Agent::start_new(
        &sc,
        "agent-b1",
        agent_imp,
        &b,
        &Attestor::JoinToken(b1_token.clone()),
        AgentOpts::default(),
    )
    .await;
    let b1_id = id(&format!("/spire/agent/join_token/{b1_token}"));
    let node = ca.node("node-b2", "ha");
    let b2 = Agent::start_new(
        &sc,
        "agent-b2",
        agent_imp,
        &b,
        &node.attestor(),
        AgentOpts::default(),
    )
    .await;
    let b2_id = node.agent_id();
    // Each server knows the other's agents (node events).
    for s in [&a, &b] {
        for agent in [&a1_id, &b1_id, &b2_id] {
            wait_agent_listed(s, agent, 30).await;
        }
    }

    // Entries written on A, for A's agent and (timed) for B's agent.
    let sel = uid_selector();
    let wl_a = id("/ha/workload-a");
    let keep_a = id("/ha/keep-a");
    let wl_b = id("/ha/workload-b");
    let wl_b2 = id("/ha/workload-b2");
    a.workload_entry(&a1_id, &wl_a, &sel);
    a.workload_entry(&b2_id, &wl_b2, &sel);
    a1.wait_x509(&wl_a, 60).await;
    let t0 = Instant::now();
    a.workload_entry(&b1_id, &wl_b, &sel);
    let took = time_until_served(&b1, &wl_b, t0).await;
    eprintln!(
        "ha timing: entry written on server A ({}) -> workload of server B's ({}) {} agent holds the SVID: {} ms",
        imp_a.name(),
        imp_b.name(),
        agent_imp.name(),
        took.as_millis()
    );
    check_svid_json(&b1.wait_x509(&wl_b, 10).await, &wl_b);

    // Both agents deliver a bundle holding both CAs: the one of their own SVIDs and the
    // one of the other server's agent's SVIDs.
    let (a_ca, _) = svid_and_bundle(&a1, &wl_a).expect("A's agent SVID");
    let (b_ca, _) = svid_and_bundle(&b1, &wl_b).expect("B's agent SVID");
    assert_ne!(a_ca, b_ca, "the servers sign with CAs of their own");
    for (agent, wl) in [(&a1, &wl_a), (&b1, &wl_b)] {
        let d = Deadline::new(format!("agent {} to deliver both CAs", agent.label), 60);
        loop {
            match svid_and_bundle(agent, wl) {
                Ok((_, bundle)) if bundle.contains(&a_ca) && bundle.contains(&b_ca) => break,
                other => d.tick(format!("{other:?}; want {a_ca} and {b_ca}")).await,
            }
        }
    }

    // mTLS between a workload of A's agent and one of B's agent (go-spiffe): each side
    // validates an SVID signed by the other server's CA.
    if let Some(bin) = go_client(&sc) {
        let addr = format!("127.0.0.1:{}", free_port());
        let a_endpoint = a1.endpoint();
        let b_endpoint = b1.endpoint();
        let mut srv = Proc::spawn(
            &bin,
            &[
                "mtls-server",
                "-socket",
                &a_endpoint,
                "-addr",
                &addr,
                "-peer",
                &wl_b,
            ],
            sc.path().join("mtls-server.log"),
            &[],
        );
        let d = Deadline::new("go-spiffe mTLS server to listen", 30);
        while !srv.output().contains("listening") {
            if let Some(status) = srv.exited() {
                panic!("mtls-server exited with {status}: {}", srv.output());
            }
            d.tick(srv.output()).await;
        }
        let client = crate::support::run(
            &bin,
            &[
                "mtls-client",
                "-socket",
                &b_endpoint,
                "-addr",
                &addr,
                "-peer",
                &wl_a,
            ],
            None,
        );
        assert!(client.ok(), "go-spiffe mTLS client on B's agent: {client}");
        assert_eq!(kv(&client.stdout, "reply").as_deref(), Some("echo hello"));
        assert_eq!(kv(&client.stdout, "peer"), Some(wl_a.clone()));
        let d = Deadline::new("go-spiffe mTLS server to finish", 30);
        while srv.exited().is_none() {
            d.tick(srv.output()).await;
        }
        assert!(
            srv.output().contains(&format!("served {wl_b}")),
            "{}",
            srv.output()
        );
    }

    // A delete on B removes the SVID from A's agent (which keeps a second one: go-spiffe
    // sources above present the first SVID, so it comes only now).
    a.workload_entry(&a1_id, &keep_a, &sel);
    a1.wait_x509(&keep_a, 60).await;
    let wl_a_entry = a.cli_json(&["entry", "show", "-spiffeID", &wl_a])["entries"][0]["id"]
        .as_str()
        .expect("entry id")
        .to_string();
    b.cli_ok(&["entry", "delete", "-entryID", &wl_a_entry]);
    let d = Deadline::new("a delete on B to reach A's agent", 60);
    loop {
        match a1.fetch_x509_ids() {
            Ok(ids) if ids == vec![keep_a.clone()] => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }

    // An evict on A: B's x509pop agent attests again (through B) and keeps serving.
    b2.wait_x509(&wl_b2, 60).await;
    let before = wait_agent_listed(&b, &b2_id, 30).await;
    let serial = before["x509svid_serial_number"].clone();
    a.cli_ok(&["agent", "evict", "-spiffeID", &b2_id]);
    let d = Deadline::new("the agent evicted on A to re-attest to B", 90);
    loop {
        let agents = b.agents();
        if let Some(x) = agents.iter().find(|x| listed_id(x) == b2_id)
            && x["x509svid_serial_number"] != serial
        {
            break;
        }
        d.tick(format!("{agents:?}")).await;
    }
    check_svid_json(&b2.wait_x509(&wl_b2, 60).await, &wl_b2);

    // A ban on A shuts B's agent down.
    a.cli_ok(&["agent", "ban", "-spiffeID", &b1_id]);
    b1.wait_log("Agent is banned: removing SVID and shutting down", 60)
        .await;
    b1.wait_exit(30).await;
    let shown = b.cli_json(&["agent", "show", "-spiffeID", &b1_id]);
    assert_eq!(
        shown["banned"], true,
        "agent show on B after a ban on A: {shown}"
    );
    // A's agent is untouched.
    a1.wait_x509(&keep_a, 10).await;
    // The database goes last (it is declared first), after every process.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn postgres_same() {
    two_servers("ha::postgres_same", Kind::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn postgres_mixed() {
    two_servers("ha::postgres_mixed", Kind::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn mysql_same() {
    two_servers("ha::mysql_same", Kind::Mysql, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn mysql_mixed() {
    two_servers("ha::mysql_mixed", Kind::Mysql, true).await;
}

/// Waits until every server lists `n` X.509 authorities in the bundle.
async fn wait_bundle_size(servers: &[&Server], n: usize) {
    for s in servers {
        let d = Deadline::new(format!("server {} to list {n} CAs", s.label), 60);
        loop {
            let have = pki::pem_certs(&s.bundle_pem()).len();
            if have == n {
                break;
            }
            d.tick(format!("{have} X.509 authorities")).await;
        }
    }
}

/// The authority key ID at the top of the chain `server` presents on its TCP port.
fn served_svid_authority(server: &Server) -> Option<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-showcerts", "-connect"])
        .arg(format!("127.0.0.1:{}", server.port))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let pems = pki::pem_certs(&String::from_utf8_lossy(&out.stdout));
    pems.last().map(|c| pki::facts(c).akid)
}

/// Waits until each agent delivers, with its workload's SVID, a bundle that `want` accepts
/// (by the authorities' subject key IDs).
async fn all_deliver(
    agents: &[(Agent, String)],
    workloads: &[String],
    want: impl Fn(&[String]) -> bool,
    what: &str,
) {
    let d = Deadline::new(what.to_string(), 90);
    for ((agent, _), wl) in agents.iter().zip(workloads) {
        loop {
            match svid_and_bundle(agent, wl) {
                Ok((_, skids)) if want(&skids) => break,
                other => d.tick(format!("{}: {other:?}", agent.label)).await,
            }
        }
    }
}

/// Three servers on one database (A and C the pairing's server, B the other
/// implementation), an agent on each, entries written on one server for another's agent;
/// then A's X.509 authority is rotated by hand (prepare, activate, taint, revoke) and every
/// server and every agent follows it through the shared bundle.
async fn three_servers(name: &str, kind: Kind) {
    let sc = Scenario::new(name);
    let Some(db) = Db::create(&sc, kind) else {
        return;
    };
    let imp_a = server_subject();
    let imps = [imp_a, other(imp_a), imp_a];
    let opts = ServerOpts {
        sql: Some(db.datastore()),
        ..Default::default()
    };
    let mut servers = Vec::new();
    for (label, imp) in ["server-a", "server-b", "server-c"].into_iter().zip(imps) {
        servers.push(Server::start_new(&sc, label, imp, opts.clone()).await);
    }
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    eprintln!(
        "ha: servers {}, {} and {} on one {kind:?} database",
        imps[0].name(),
        imps[1].name(),
        imps[2].name()
    );
    wait_bundle_size(&[a, b, c], 3).await;
    let journals = db.query("SELECT count(*) FROM ca_journals");
    assert_eq!(journals.trim(), "3", "one ca_journals row per server");

    // An agent on each server; each one's entry written on the next server.
    let agent_imp = agent_subject();
    let sel = uid_selector();
    let mut agents = Vec::new();
    let mut workloads = Vec::new();
    for (i, s) in [a, b, c].into_iter().enumerate() {
        let token = s.token(None);
        let agent = Agent::start_new(
            &sc,
            &format!("agent-{i}"),
            agent_imp,
            s,
            &Attestor::JoinToken(token.clone()),
            AgentOpts::default(),
        )
        .await;
        let agent_id = id(&format!("/spire/agent/join_token/{token}"));
        for s in [a, b, c] {
            wait_agent_listed(s, &agent_id, 30).await;
        }
        let wl = id(&format!("/ha/three-{i}"));
        [a, b, c][(i + 1) % 3].workload_entry(&agent_id, &wl, &sel);
        agents.push((agent, agent_id));
        workloads.push(wl);
    }
    let mut own_ca = Vec::new();
    for ((agent, _), wl) in agents.iter().zip(&workloads) {
        agent.wait_x509(wl, 60).await;
        own_ca.push(svid_and_bundle(agent, wl).expect("SVID").0);
    }
    for s in [a, b, c] {
        assert!(
            own_ca.contains(&s.active_x509_authority()),
            "every server signs its agents' SVIDs"
        );
    }

    // Prepare on A: the new authority joins the shared bundle, for every server and agent.
    let old = a.active_x509_authority();
    let prepared = a.cli_json(&["localauthority", "x509", "prepare"]);
    let new = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap_or_else(|| panic!("prepare output: {prepared}"))
        .to_string();
    assert_ne!(new, old);
    wait_bundle_size(&[a, b, c], 4).await;
    all_deliver(
        &agents,
        &workloads,
        |skids| skids.len() == 4 && skids.contains(&new),
        "A's prepared authority to reach every agent",
    )
    .await;

    // Activate and taint on A: A's agent moves to the new authority; the others keep
    // their own servers' CAs.
    a.cli_json(&["localauthority", "x509", "activate", "-authorityID", &new]);
    a.cli_json(&["localauthority", "x509", "taint", "-authorityID", &old]);
    for s in [b, c] {
        let d = Deadline::new(format!("server {} to see A's taint", s.label), 60);
        loop {
            let bundle = s.cli_json(&["bundle", "show"]);
            let tainted = bundle["x509_authorities"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|x| x["tainted"] == true).count());
            if tainted == 1 {
                break;
            }
            d.tick(format!("{bundle}")).await;
        }
    }
    let d = Deadline::new("A's agent SVID to move to the new authority", 90);
    loop {
        match svid_and_bundle(&agents[0].0, &workloads[0]) {
            Ok((akid, _)) if akid == new => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }
    for i in [1, 2] {
        let (akid, _) = svid_and_bundle(&agents[i].0, &workloads[i]).expect("SVID");
        assert_eq!(akid, own_ca[i], "an agent of another server was re-minted");
    }
    // As an operator would, revoke only once A serves agents with an SVID of the new
    // authority (both implementations rotate it within their 5 s rotator interval).
    let d = Deadline::new("server A's own SVID to move to the new authority", 60);
    loop {
        match served_svid_authority(a) {
            Some(akid) if akid == new => break,
            other => d.tick(format!("{other:?}")).await,
        }
    }

    // Revoke on A: the old authority leaves every server's bundle and every agent's.
    a.cli_json(&["localauthority", "x509", "revoke", "-authorityID", &old]);
    wait_bundle_size(&[a, b, c], 3).await;
    all_deliver(
        &agents,
        &workloads,
        |skids| skids.len() == 3 && !skids.contains(&old) && skids.contains(&new),
        "the revoked authority to leave every agent's bundle",
    )
    .await;

    // The servers still follow each other: an entry written on C reaches A's agent, signed
    // by A's new authority.
    let after = id("/ha/three-after-rotation");
    c.workload_entry(&agents[0].1, &after, &sel);
    agents[0].0.wait_x509(&after, 60).await;
    assert_eq!(svid_and_bundle(&agents[0].0, &after).expect("SVID").0, new);
    drop(agents);
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn postgres_three_servers_ca_rotation() {
    three_servers("ha::postgres_three_servers_ca_rotation", Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn mysql_three_servers_ca_rotation() {
    three_servers("ha::mysql_three_servers_ca_rotation", Kind::Mysql).await;
}

#[test]
fn mysql_dsn_is_split() {
    assert_eq!(
        mysql_parts("spire:pw@tcp(127.0.0.1:3307)/spire?parseTime=true"),
        (
            "spire".into(),
            "pw".into(),
            "127.0.0.1".into(),
            "3307".into()
        )
    );
}
