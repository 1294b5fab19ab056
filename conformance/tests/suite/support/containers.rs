//! Real container engines for a scenario: Debian's dockerd, or rootful podman serving its
//! Docker-compatible API, each on a private root and socket in the scenario's directory,
//! started by `conformance/containers/engines.sh` and stopped (containers removed, daemon
//! stopped by PID) when dropped.

use std::path::{Path, PathBuf};

use super::{Cmd, Scenario, client_unavailable, run, workspace_root};

/// Whether a missing engine fails the scenario instead of skipping it.
pub fn containers_required() -> bool {
    std::env::var("SPIRE_RS_REQUIRE_CONTAINERS").is_ok_and(|v| v == "1")
}

fn script() -> PathBuf {
    workspace_root().join("conformance/containers/engines.sh")
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Docker,
    Podman,
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    pub kind: Kind,
    pub dir: PathBuf,
    /// `unix://<socket>`: the Docker Engine API (the docker attestor's `docker_socket_path`).
    pub host: String,
    podman_flags: Vec<String>,
    podman_run_flags: Vec<String>,
}

impl Engine {
    /// Starts dockerd, or reports it unavailable (a visible skip, or a failure with
    /// `SPIRE_RS_REQUIRE_CONTAINERS=1`).
    pub fn docker(sc: &Scenario) -> Option<Engine> {
        Self::start(sc, Kind::Docker)
    }

    /// Starts podman's API service (see [`Engine::docker`]).
    pub fn podman(sc: &Scenario) -> Option<Engine> {
        Self::start(sc, Kind::Podman)
    }

    fn start(sc: &Scenario, kind: Kind) -> Option<Engine> {
        let (what, bin, package) = match kind {
            Kind::Docker => ("dockerd", "dockerd", "docker.io"),
            Kind::Podman => ("podman", "podman", "podman"),
        };
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
        if !found {
            let why = format!("{bin} is not installed (Debian: {package})");
            assert!(
                !containers_required(),
                "{what} is unavailable and SPIRE_RS_REQUIRE_CONTAINERS=1: {why}"
            );
            client_unavailable(sc, what, &why);
            return None;
        }
        let dir = sc.subdir(match kind {
            Kind::Docker => "docker",
            Kind::Podman => "podman",
        });
        let verb = match kind {
            Kind::Docker => "docker-start",
            Kind::Podman => "podman-start",
        };
        let out = run(&script(), &[verb, &dir.display().to_string()], None);
        let env = super::parse_env_file(&dir.join("engine.env"));
        let split = |k: &str| -> Vec<String> {
            env.get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let engine = Engine {
            kind,
            host: env.get("DOCKER_HOST").cloned().unwrap_or_default(),
            podman_flags: split("PODMAN_FLAGS"),
            podman_run_flags: split("PODMAN_RUN_FLAGS"),
            dir,
        };
        assert!(out.ok(), "engines.sh {verb} failed: {out}");
        Some(engine)
    }

    /// The image every engine has: a static busybox, `ENV PATH=/bin`,
    /// `LABEL org.example.app=demo`, under the name `docker run` was given.
    pub fn image(&self) -> &'static str {
        match self.kind {
            Kind::Docker => "local/busybox:1",
            Kind::Podman => "localhost/busybox:1",
        }
    }

    /// Runs the engine's CLI.
    pub fn cli(&self, args: &[&str]) -> Cmd {
        match self.kind {
            Kind::Docker => {
                let mut all = vec!["-H", self.host.as_str()];
                all.extend_from_slice(args);
                run(Path::new("docker"), &all, None)
            }
            Kind::Podman => {
                let mut all: Vec<&str> = self.podman_flags.iter().map(String::as_str).collect();
                all.extend_from_slice(args);
                run(Path::new("podman"), &all, None)
            }
        }
    }

    /// The CLI, which must succeed; its trimmed stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.ok(), "{:?} {args:?}: {out}", self.kind);
        out.stdout.trim().to_string()
    }

    /// `run -d` with `args` (options, image and command; `--network none` unless a network
    /// is given): the container's ID.
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d"];
        if !args.iter().any(|a| a.starts_with("--network")) {
            all.extend_from_slice(&["--network", "none"]);
        }
        all.extend(self.podman_run_flags.iter().map(String::as_str));
        all.extend_from_slice(args);
        self.cli_ok(&all)
    }

    /// Runs a command in a running container: the process joins its cgroups and
    /// namespaces, as a workload started inside it would.
    pub fn exec(&self, id: &str, args: &[&str]) -> Cmd {
        let mut all = vec!["exec", id];
        all.extend_from_slice(args);
        self.cli(&all)
    }

    /// The host PID of the container's main process.
    pub fn pid(&self, id: &str) -> u32 {
        self.cli_ok(&["inspect", "-f", "{{.State.Pid}}", id])
            .parse()
            .expect("container PID")
    }

    /// Imports the systemd image (`local/debian-systemd:12`; docker only).
    pub fn systemd_image(&self) -> &'static str {
        assert_eq!(self.kind, Kind::Docker, "the systemd image is for dockerd");
        let out = run(
            &script(),
            &["systemd-image", &self.dir.display().to_string()],
            None,
        );
        assert!(out.ok(), "engines.sh systemd-image failed: {out}");
        "local/debian-systemd:12"
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = run(&script(), &["stop", &self.dir.display().to_string()], None);
    }
}
