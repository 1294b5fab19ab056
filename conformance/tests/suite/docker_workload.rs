//! WorkloadAttestor `docker` against real engines (`support::containers`): a process
//! started inside a running container (`docker exec`) asks the agent's Workload API, whose
//! socket is bind-mounted into the container, with go-spiffe, and gets the SVID of an entry
//! whose selectors name the container's labels, image and environment. The same scenario
//! runs against podman's Docker-compatible API socket. Differential scenarios (dockerd and
//! podman) have the subject's agent and reference SPIRE's agent attest processes of the same
//! container and compare the selector sets each logs.

use std::collections::BTreeSet;

use crate::clients::go_client;
use crate::support::containers::Engine;
use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Impl, Scenario, Server, ServerOpts, agent_subject, id,
    join_token_pair, server_subject, tail,
};

fn attestor(engine: &Engine) -> String {
    format!(
        r#"WorkloadAttestor "docker" {{
        plugin_data {{
            docker_socket_path = "{}"
        }}
    }}"#,
        engine.host
    )
}

/// Runs the labelled workload container and an unlabelled one, each with the agent's socket
/// directory at /spire-agent and the client's at /client: `(web, other)` container IDs.
fn containers(engine: &Engine, agent: &Agent, client: &std::path::Path) -> (String, String) {
    let public = agent.socket.parent().unwrap().display().to_string();
    let client_dir = client.parent().unwrap().display().to_string();
    let mounts = [
        "-v".to_string(),
        format!("{public}:/spire-agent"),
        "-v".to_string(),
        format!("{client_dir}:/client:ro"),
    ];
    let mounts: Vec<&str> = mounts.iter().map(String::as_str).collect();
    let mut web = vec![
        "--label",
        "app=web",
        "--label",
        "tier=a:b=c",
        "-e",
        "MODE=x=y",
    ];
    web.extend_from_slice(&mounts);
    web.extend_from_slice(&[engine.image(), "sleep", "600"]);
    let mut other = vec!["--label", "app=other"];
    other.extend_from_slice(&mounts);
    other.extend_from_slice(&[engine.image(), "sleep", "600"]);
    (engine.run_detached(&web), engine.run_detached(&other))
}

/// The go-spiffe client's `x509` fetch run inside `container`.
fn fetch_in(
    engine: &Engine,
    container: &str,
    agent: &Agent,
    client: &std::path::Path,
) -> crate::support::Cmd {
    let socket = format!(
        "unix:///spire-agent/{}",
        agent.socket.file_name().unwrap().to_str().unwrap()
    );
    let client = format!("/client/{}", client.file_name().unwrap().to_str().unwrap());
    engine.exec(
        container,
        &[&client, "x509", "-socket", &socket, "-timeout", "5s"],
    )
}

fn agent_opts(engine: &Engine) -> AgentOpts {
    AgentOpts {
        extra_plugins: attestor(engine),
        ..Default::default()
    }
}

/// The go-spiffe client, the engine, and a server with the subject's agent (docker
/// attestor on the engine's socket): `None` when the client or the engine is unavailable.
async fn setup(
    sc: &Scenario,
    engine: Option<Engine>,
) -> Option<(std::path::PathBuf, Engine, Server, Agent, String)> {
    let client = go_client(sc)?;
    let engine = engine?;
    let (server, agent, agent_id) = join_token_pair(
        sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        agent_opts(&engine),
    )
    .await;
    Some((client, engine, server, agent, agent_id))
}

async fn container_workload(sc: Scenario, engine: Option<Engine>) {
    let Some((client, engine, server, agent, agent_id)) = setup(&sc, engine).await else {
        return;
    };
    let (web, other) = containers(&engine, &agent, &client);

    // Every kind of selector the attestor gives; label and environment values holding `:`
    // and `=` are kept whole.
    let workload = id("/docker/web");
    let selectors = [
        "docker:label:app:web".to_string(),
        "docker:label:tier:a:b=c".to_string(),
        "docker:label:org.example.app:demo".to_string(),
        "docker:env:MODE=x=y".to_string(),
        "docker:env:PATH=/bin".to_string(),
        format!("docker:image_id:{}", engine.image()),
    ];
    let mut args = vec![
        "-parentID",
        agent_id.as_str(),
        "-spiffeID",
        workload.as_str(),
    ];
    for s in &selectors {
        args.extend_from_slice(&["-selector", s.as_str()]);
    }
    server.entry_create(&args);

    let d = Deadline::new("the container's process gets its SVID", 60);
    loop {
        let out = fetch_in(&engine, &web, &agent, &client);
        if out.ok() && out.stdout.contains(&format!("spiffe_id={workload}")) {
            break;
        }
        d.tick(format!("{out}\nagent log: {}", tail(&agent.log(), 1500)))
            .await;
    }

    // Another container (other labels) is not given it; nor is a process outside any
    // container.
    let out = fetch_in(&engine, &other, &agent, &client);
    assert!(
        !out.stdout.contains(&format!("spiffe_id={workload}")),
        "a container without the selectors got the SVID: {out}"
    );
    // ... and it was refused for what the attestor found, not for want of an attestation.
    let other_attested = attested_selector_sets(&agent.log(), "docker")
        .into_iter()
        .any(|(_, s)| s.contains("docker:label:app:other"));
    assert!(
        other_attested,
        "the agent did not attest the other container: {}",
        tail(&agent.log(), 2000)
    );
    let ids = agent.fetch_x509_ids().unwrap_or_default();
    assert!(
        !ids.contains(&workload),
        "a host process got the container's SVID: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn docker_container_workload_gets_its_svid() {
    let sc = Scenario::new("docker_workload::docker_container_workload_gets_its_svid");
    let engine = Engine::docker(&sc);
    container_workload(sc, engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn podman_container_workload_gets_its_svid() {
    let sc = Scenario::new("docker_workload::podman_container_workload_gets_its_svid");
    let engine = Engine::podman(&sc);
    container_workload(sc, engine).await;
}

/// The selector sets an agent's log says it attested for processes it served, newest last:
/// SPIRE's debug line "PID attested to have selectors" (logrus text: `selectors="[type:\"docker\"
/// value:\"label:app:web\" ...]"`; ours gives the same field).
pub(crate) fn attested_selector_sets(log: &str, ty: &str) -> Vec<(u32, BTreeSet<String>)> {
    let mut out = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("PID attested to have selectors"))
    {
        let pid = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("pid="))
            .and_then(|p| p.trim_matches('"').parse().ok())
            .unwrap_or(0);
        out.push((pid, selectors_of_type(line, ty)));
    }
    out
}

/// `type:"t" value:"v"` pairs of a logged selector list, as `t:v`, only those of type `want`.
pub(crate) fn selectors_of_type(line: &str, want: &str) -> BTreeSet<String> {
    // The field is a Go-quoted string holding protobuf text; undo the outer quoting first.
    let unescaped = line.replace("\\\"", "\"").replace("\\\\", "\\");
    let mut set = BTreeSet::new();
    let mut rest = unescaped.as_str();
    while let Some(i) = rest.find("type:\"") {
        rest = &rest[i + 6..];
        let Some(end) = rest.find('"') else { break };
        let ty = rest[..end].to_string();
        rest = &rest[end..];
        let Some(j) = rest.find("value:\"") else {
            break;
        };
        rest = &rest[j + 7..];
        // The value ends at the first unescaped quote.
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut consumed = rest.len();
        while let Some((k, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    consumed = k + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        rest = &rest[consumed..];
        if ty == want {
            set.insert(format!("{ty}:{value}"));
        }
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn docker_selectors_match_reference_agent() {
    let sc = Scenario::new("docker_workload::docker_selectors_match_reference_agent");
    let engine = Engine::docker(&sc);
    selectors_match_reference(sc, engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn podman_selectors_match_reference_agent() {
    let sc = Scenario::new("docker_workload::podman_selectors_match_reference_agent");
    let engine = Engine::podman(&sc);
    selectors_match_reference(sc, engine).await;
}

async fn selectors_match_reference(sc: Scenario, engine: Option<Engine>) {
    let Some((client, engine, server, agent, _)) = setup(&sc, engine).await else {
        return;
    };
    let reference = Agent::start_new(
        &sc,
        "reference-agent",
        Impl::Reference,
        &server,
        &Attestor::JoinToken(server.token(None)),
        agent_opts(&engine),
    )
    .await;
    // One container mounting both agents' sockets.
    let mut mounts = Vec::new();
    for (name, a) in [("a", &agent), ("b", &reference)] {
        mounts.push("-v".to_string());
        mounts.push(format!(
            "{}:/spire-{name}",
            a.socket.parent().unwrap().display()
        ));
    }
    mounts.push("-v".to_string());
    mounts.push(format!("{}:/client:ro", client.parent().unwrap().display()));
    let mut args: Vec<&str> = vec![
        "--label",
        "app=web",
        "--label",
        "tier=a:b=c",
        "-e",
        "MODE=x=y",
    ];
    args.extend(mounts.iter().map(String::as_str));
    args.extend_from_slice(&[engine.image(), "sleep", "600"]);
    let web = engine.run_detached(&args);
    let client_in = format!("/client/{}", client.file_name().unwrap().to_str().unwrap());
    for (name, a) in [("a", &agent), ("b", &reference)] {
        let socket = format!(
            "unix:///spire-{name}/{}",
            a.socket.file_name().unwrap().to_str().unwrap()
        );
        // No entry matches: the fetch fails, but the agent attests (and logs) the caller.
        let _ = engine.exec(
            &web,
            &[&client_in, "x509", "-socket", &socket, "-timeout", "2s"],
        );
    }
    let d = Deadline::new("both agents log the container's selectors", 30);
    let (ours, theirs) = loop {
        let ours = attested_selector_sets(&agent.log(), "docker");
        let theirs = attested_selector_sets(&reference.log(), "docker");
        let pick = |sets: Vec<(u32, BTreeSet<String>)>| {
            sets.into_iter().map(|(_, s)| s).rfind(|s| !s.is_empty())
        };
        if let (Some(a), Some(b)) = (pick(ours), pick(theirs)) {
            break (a, b);
        }
        d.tick(format!(
            "subject log: {}\nreference log: {}",
            tail(&agent.log(), 1500),
            tail(&reference.log(), 1500)
        ))
        .await;
    };
    assert_eq!(
        ours, theirs,
        "the subject's docker selectors differ from reference SPIRE's"
    );
    // Both are what the engine says of the container (podman adds environment of its own).
    let mut want: BTreeSet<String> = [
        "docker:label:app:web".to_string(),
        "docker:label:tier:a:b=c".to_string(),
        "docker:label:org.example.app:demo".to_string(),
        format!("docker:image_id:{}", engine.image()),
    ]
    .into_iter()
    .collect();
    let env = engine.cli_ok(&["inspect", "-f", "{{range .Config.Env}}{{.}}\n{{end}}", &web]);
    want.extend(
        env.lines()
            .filter(|l| !l.is_empty())
            .map(|e| format!("docker:env:{e}")),
    );
    assert!(want.contains("docker:env:MODE=x=y"), "{want:?}");
    assert_eq!(ours, want);
}
