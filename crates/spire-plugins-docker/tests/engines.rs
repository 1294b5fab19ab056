//! The docker attestor against real engines: Debian's dockerd and podman's Docker-compatible
//! API, each started on a private root and socket by `conformance/containers/engines.sh`.
//! Without the engines the tests are skipped with a message (and fail when
//! `SPIRE_RS_REQUIRE_CONTAINERS=1`, which `scripts/test.sh` sets).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spire_plugin::WorkloadAttestor;
use spire_plugins_docker::{Config, DockerAttestor};

struct Engine {
    dir: tempfile::TempDir,
    host: String,
    podman: Option<Vec<String>>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/containers/engines.sh")
}

fn text(o: &Output) -> String {
    format!(
        "{} {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Engine {
    fn start(kind: &str) -> Option<Engine> {
        let bin = if kind == "docker" {
            "dockerd"
        } else {
            "podman"
        };
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
        if !found {
            assert!(
                std::env::var("SPIRE_RS_REQUIRE_CONTAINERS").as_deref() != Ok("1"),
                "{bin} is not installed and SPIRE_RS_REQUIRE_CONTAINERS=1"
            );
            eprintln!("SKIPPED: {bin} is not installed (Debian: docker.io, podman)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("spde-")
            .tempdir_in("/tmp")
            .unwrap();
        let out = Command::new(script())
            .args([&format!("{kind}-start"), dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        let env = std::fs::read_to_string(dir.path().join("engine.env")).unwrap_or_default();
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('\'').to_string())
        };
        let engine = Engine {
            host: get("DOCKER_HOST").unwrap_or_default(),
            podman: (kind == "podman").then(|| {
                let mut f: Vec<String> = get("PODMAN_FLAGS")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                f.push("--".into());
                f.extend(
                    get("PODMAN_RUN_FLAGS")
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string),
                );
                f
            }),
            dir,
        };
        assert!(out.status.success(), "engines.sh: {}", text(&out));
        Some(engine)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = match &self.podman {
            None => Command::new("docker")
                .args(["-H", &self.host])
                .args(args)
                .output(),
            Some(flags) => {
                let split = flags.iter().position(|f| f == "--").unwrap();
                let mut cmd = Command::new("podman");
                cmd.args(&flags[..split]);
                if args.first() == Some(&"run") {
                    cmd.arg("run").args(&flags[split + 1..]).args(&args[1..]);
                } else {
                    cmd.args(args);
                }
                cmd.output()
            }
        }
        .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn image(&self) -> &'static str {
        if self.podman.is_some() {
            "localhost/busybox:1"
        } else {
            "local/busybox:1"
        }
    }

    fn attestor(&self, version: &str) -> DockerAttestor {
        DockerAttestor::new(
            &Config {
                docker_socket_path: self.host.clone(),
                docker_version: version.into(),
                ..Config::default()
            },
            "/",
        )
        .unwrap()
    }

    fn stop(&self) {
        let _ = Command::new(script())
            .args(["stop", self.dir.path().to_str().unwrap()])
            .output();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn attests_a_running_container(kind: &str) {
    let Some(engine) = Engine::start(kind) else {
        return;
    };
    let id = engine.cli(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "app=web",
        "--label",
        "url=http://x:1/a=b",
        "-e",
        "A=b=c",
        engine.image(),
        "sleep",
        "600",
    ]);
    let pid: i32 = engine
        .cli(&["inspect", "-f", "{{.State.Pid}}", &id])
        .parse()
        .unwrap();
    let got = sorted(engine.attestor("").attest(pid).await.unwrap());
    let env: Vec<String> = if kind == "docker" {
        vec!["env:A=b=c".into(), "env:PATH=/bin".into()]
    } else {
        // podman adds its own environment, as its API reports it.
        let listed = engine.cli(&["inspect", "-f", "{{range .Config.Env}}{{.}}\n{{end}}", &id]);
        listed
            .lines()
            .filter(|l| !l.is_empty())
            .map(|e| format!("env:{e}"))
            .collect()
    };
    let mut want: Vec<String> = env;
    want.extend([
        format!("image_id:{}", engine.image()),
        "label:app:web".into(),
        "label:org.example.app:demo".into(),
        "label:url:http://x:1/a=b".into(),
    ]);
    assert_eq!(got, sorted(want));
    // A pinned API version gives the same.
    assert_eq!(
        sorted(engine.attestor("1.41").attest(pid).await.unwrap()),
        got
    );
    // A host process (this test) is in no container.
    assert!(
        engine
            .attestor("")
            .attest(std::process::id() as i32)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn dockerd_container_selectors() {
    attests_a_running_container("docker").await;
}

#[tokio::test]
async fn podman_container_selectors() {
    attests_a_running_container("podman").await;
}

#[tokio::test]
async fn a_container_gone_during_attestation_and_a_stopped_daemon() {
    let Some(engine) = Engine::start("docker") else {
        return;
    };
    let id = engine.cli(&[
        "run",
        "-d",
        "--network",
        "none",
        engine.image(),
        "sleep",
        "600",
    ]);
    // The process's cgroups as they were read, then the container removed before the
    // daemon is asked: the inspection fails (after SPIRE's retries) with the daemon's words.
    let proc_dir = tempfile::tempdir().unwrap();
    let p = proc_dir.path().join("proc/77");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("cgroup"),
        format!("4:memory:/docker/{id}\n0::/docker/{id}\n"),
    )
    .unwrap();
    engine.cli(&["rm", "-f", &id]);
    let a = DockerAttestor::new(
        &Config {
            docker_socket_path: engine.host.clone(),
            ..Config::default()
        },
        proc_dir.path(),
    )
    .unwrap();
    let err = a.attest(77).await.unwrap_err();
    assert_eq!(
        err.message,
        format!("Error response from daemon: No such container: {id}")
    );
    // The daemon stopped (its socket gone): the Go client's words.
    engine.stop();
    let err = a.attest(77).await.unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "Cannot connect to the Docker daemon at {}. Is the docker daemon running?",
            engine.host
        )
    );
}
