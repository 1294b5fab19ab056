//! WorkloadAttestor `systemd` against a real systemd 252: a Debian bookworm container runs
//! systemd as PID 1 (private cgroup namespace, never a read-write bind of the host's
//! cgroups), the subject's agent runs inside it (host network, to reach the server on
//! loopback), and a transient service started with `systemd-run` fetches its SVID by the
//! unit's `systemd:id` and `systemd:fragment_path`; a unit with another name does not. Then
//! reference SPIRE's agent, started beside it in the same container, attests a unit of the
//! same name, and the selector sets both agents log are compared.

use crate::clients::go_client;
use crate::docker_workload::attested_selector_sets;
use crate::support::containers::Engine;
use crate::support::containers::Engine as ContainerEngine;
use crate::support::{
    Agent, AgentOpts, Attestor, Deadline, Impl, Scenario, Server, ServerOpts, agent_subject, id,
    server_subject, tail,
};

/// Starts `agent` inside the container as a transient service of its systemd and waits
/// until it is healthy.
async fn start_inside(engine: &ContainerEngine, box_id: &str, agent: &mut Agent, unit: &str) {
    let log = agent.external_run();
    let launch = format!(
        "exec {} run -config {} >{} 2>&1",
        agent.bin.display(),
        agent.conf.display(),
        log.display()
    );
    let out = engine.exec(
        box_id,
        &[
            "systemd-run",
            &format!("--unit={unit}"),
            "--collect",
            "/bin/sh",
            "-c",
            &launch,
        ],
    );
    assert!(out.ok(), "systemd-run {unit}: {out}");
    let socket = agent.socket.display().to_string();
    let bin = agent.bin.display().to_string();
    let d = Deadline::new(format!("{unit} in the container to be healthy"), 60);
    loop {
        let out = engine.exec(box_id, &[&bin, "healthcheck", "-socketPath", &socket]);
        if out.ok() {
            break;
        }
        d.tick(format!("{out}\nagent log: {}", tail(&agent.log(), 1500)))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn systemd_service_gets_its_svid() {
    let sc = Scenario::new("systemd_workload::systemd_service_gets_its_svid");
    let Some(client) = go_client(&sc) else {
        return;
    };
    let Some(engine) = Engine::docker(&sc) else {
        return;
    };
    let image = engine.systemd_image();
    let server = Server::start_new(&sc, "server", server_subject(), ServerOpts::default()).await;
    let token = server.token(None);
    let agent_id = id(&format!("/spire/agent/join_token/{token}"));
    let mut agent = Agent::new(
        &sc,
        "agent",
        agent_subject(),
        &server,
        &Attestor::JoinToken(token),
        AgentOpts {
            extra_plugins: "WorkloadAttestor \"systemd\" {\n        plugin_data {}\n    }".into(),
            ..Default::default()
        },
    );

    // The scenario directory and the agents' binary directories at the same paths inside,
    // so the agents' configurations work unchanged.
    let reference_bin = Impl::Reference.bin("spire-agent");
    let scenario_dir = sc.path().display().to_string();
    let mut bin_dirs = vec![agent.bin.parent().unwrap().display().to_string()];
    let reference_dir = reference_bin.parent().unwrap().display().to_string();
    if !bin_dirs.contains(&reference_dir) {
        bin_dirs.push(reference_dir);
    }
    let client_dir = client.parent().unwrap().display().to_string();
    let mut volumes = vec![
        format!("{scenario_dir}:{scenario_dir}"),
        format!("{client_dir}:/client:ro"),
    ];
    volumes.extend(bin_dirs.iter().map(|d| format!("{d}:{d}:ro")));
    let mut args = vec![
        "--network",
        "host",
        "--cgroupns=private",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "-e",
        "container=docker",
    ];
    for v in &volumes {
        args.extend_from_slice(&["-v", v.as_str()]);
    }
    args.extend_from_slice(&[image, "/lib/systemd/systemd"]);
    let box_id = engine.run_detached(&args);
    let d = Deadline::new("systemd up in the container", 60);
    loop {
        let out = engine.exec(&box_id, &["systemctl", "is-system-running"]);
        let state = out.stdout.trim();
        if state == "running" || state == "degraded" {
            break;
        }
        d.tick(format!("{out}")).await;
    }
    start_inside(&engine, &box_id, &mut agent, "spire-agent").await;
    let socket = agent.socket.display().to_string();

    let workload = id("/systemd/demo");
    server.entry_create(&[
        "-parentID",
        agent_id.as_str(),
        "-spiffeID",
        workload.as_str(),
        "-selector",
        "systemd:id:demo.service",
        "-selector",
        "systemd:fragment_path:/run/systemd/transient/demo.service",
    ]);
    let endpoint = format!("unix://{socket}");
    let client_in = format!("/client/{}", client.file_name().unwrap().to_str().unwrap());
    let fetch = |unit: &str, endpoint: &str| {
        engine.exec(
            &box_id,
            &[
                "systemd-run",
                &format!("--unit={unit}"),
                "--collect",
                "--pipe",
                "--wait",
                "--quiet",
                &client_in,
                "x509",
                "-socket",
                endpoint,
                "-timeout",
                "5s",
            ],
        )
    };
    let d = Deadline::new("the service gets its SVID", 60);
    loop {
        let out = fetch("demo", &endpoint);
        if out.ok() && out.stdout.contains(&format!("spiffe_id={workload}")) {
            break;
        }
        d.tick(format!("{out}\nagent log: {}", tail(&agent.log(), 1500)))
            .await;
    }
    let out = fetch("other", &endpoint);
    assert!(
        !out.stdout.contains(&format!("spiffe_id={workload}")),
        "another unit got the SVID: {out}"
    );
    assert!(
        agent.log().contains("value:\\\"id:other.service\\\""),
        "the agent did not attest the other unit: {}",
        tail(&agent.log(), 2000)
    );

    // Differential: reference SPIRE's agent beside it attests a unit of another name (no
    // entry needed: it logs what it attested), as does the subject's; the sets must agree.
    let mut reference = Agent::new(
        &sc,
        "reference-agent",
        Impl::Reference,
        &server,
        &Attestor::JoinToken(server.token(None)),
        AgentOpts {
            extra_plugins: "WorkloadAttestor \"systemd\" {\n        plugin_data {}\n    }".into(),
            ..Default::default()
        },
    );
    start_inside(&engine, &box_id, &mut reference, "reference-agent").await;
    let reference_endpoint = format!("unix://{}", reference.socket.display());
    let _ = fetch("diff", &reference_endpoint);
    let _ = fetch("diff", &endpoint);
    let want: std::collections::BTreeSet<String> = [
        "systemd:id:diff.service".to_string(),
        "systemd:fragment_path:/run/systemd/transient/diff.service".to_string(),
    ]
    .into_iter()
    .collect();
    let d = Deadline::new("both agents log the unit's selectors", 30);
    loop {
        let seen = |a: &Agent| {
            attested_selector_sets(&a.log(), "systemd")
                .into_iter()
                .map(|(_, s)| s)
                .find(|s| s.contains("systemd:id:diff.service"))
        };
        if let (Some(ours), Some(theirs)) = (seen(&agent), seen(&reference)) {
            assert_eq!(
                ours, theirs,
                "the subject's systemd selectors differ from reference SPIRE's"
            );
            assert_eq!(ours, want);
            break;
        }
        d.tick(format!(
            "subject log: {}\nreference log: {}",
            tail(&agent.log(), 1000),
            tail(&reference.log(), 1000)
        ))
        .await;
    }
}
