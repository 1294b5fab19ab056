//! The docker attestor without a daemon: configuration, container location (new locator,
//! legacy matchers), a dead socket, and selectors from a captured inspection.

use super::*;

const CID: &str = "7be9a46d0b8ab00ba7e6cbbc3e5cd0b2d0ea3e7a2d1e4bd9a8bb3c6ab0e62c3f";

/// A `/proc/<pid>` with the given cgroup file (and no mountinfo).
fn proc_fixture(pid: i32, cgroup: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("proc").join(pid.to_string());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("cgroup"), cgroup).unwrap();
    dir
}

fn config(socket: &str) -> Config {
    Config {
        docker_socket_path: socket.into(),
        ..Config::default()
    }
}

#[test]
fn configuration_errors_are_spires() {
    let mut c = config("");
    c.container_id_cgroup_matchers = vec!["/docker/<id>".into()];
    let err = DockerAttestor::new(&c, "/").unwrap_err();
    assert!(
        err.starts_with("the new container locator and custom cgroup matchers cannot both be used"),
        "{err}"
    );
    c.use_new_container_locator = Some(false);
    DockerAttestor::new(&c, "/").unwrap();
    c.container_id_cgroup_matchers = vec!["/docker/*".into()];
    assert_eq!(
        DockerAttestor::new(&c, "/").unwrap_err(),
        "pattern \"/docker/*\" must contain the container id token \"<id>\" exactly once"
    );
    let mut c = config("");
    c.experimental = Some(serde_json::json!({"sigstore": {}}));
    assert!(
        DockerAttestor::new(&c, "/")
            .unwrap_err()
            .contains("sigstore")
    );
    assert_eq!(
        DockerAttestor::new(&config("docker.sock"), "/").unwrap_err(),
        "unable to parse docker host `docker.sock`"
    );
}

#[tokio::test(start_paused = true)]
async fn a_process_in_no_container_never_reaches_the_daemon() {
    let dir = proc_fixture(
        42,
        "12:pids:/user.slice/user-0.slice/session-1.scope\n0::/user.slice\n",
    );
    // The daemon's socket does not exist: a host process gets no selectors at once.
    let a = DockerAttestor::new(&config("unix:///nonexistent/docker.sock"), dir.path()).unwrap();
    let started = tokio::time::Instant::now();
    assert!(a.attest(42).await.unwrap().is_empty());
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Nor does a process that is gone (SPIRE: the new locator finds no files, no container).
    assert!(a.attest(43).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dead_daemon_is_retried_with_backoff_then_reported() {
    let dir = proc_fixture(7, &format!("4:memory:/docker/{CID}\n0::/docker/{CID}\n"));
    let a = DockerAttestor::new(&config("unix:///nonexistent/docker.sock"), dir.path()).unwrap();
    let started = tokio::time::Instant::now();
    let err = a.attest(7).await.unwrap_err();
    assert_eq!(
        err.message,
        "Cannot connect to the Docker daemon at unix:///nonexistent/docker.sock. Is the docker daemon running?"
    );
    // 100 + 200 + 400 ms between the four attempts.
    assert_eq!(started.elapsed(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_never_answers_is_given_up_on() {
    // A socket that accepts connections and never answers (a hung daemon): each attempt
    // ends after 10 s, so attestation gives up after the four attempts and the backoff.
    let dir = proc_fixture(7, &format!("0::/docker/{CID}\n"));
    let socket = dir.path().join("hung.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let host = format!("unix://{}", socket.display());
    let a = DockerAttestor::new(&config(&host), dir.path()).unwrap();
    let started = tokio::time::Instant::now();
    let err = a.attest(7).await.unwrap_err();
    assert_eq!(
        err.message,
        format!("request to the Docker daemon at {host} timed out after 10s")
    );
    assert_eq!(started.elapsed(), Duration::from_millis(40_700));
    held.abort();
}

#[test]
fn legacy_matchers_over_cgroup_files() {
    let matchers = Matchers::new(&["/docker/<id>".to_string()]).unwrap();
    let one = |p: &[&str]| {
        legacy_container_id(
            &matchers,
            &p.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(one(&["/user.slice"]).unwrap(), None);
    assert_eq!(
        one(&["/docker/abc", "/", "/docker/abc"]).unwrap(),
        Some("abc".to_string())
    );
    assert_eq!(
        one(&["/docker/abc", "/docker/def"]).unwrap_err().message,
        "workloadattestor/docker: multiple container IDs found in cgroups (abc, def)"
    );
    assert_eq!(
        one(&["/docker/"]).unwrap_err().message,
        "workloadattestor/docker: a pattern matched, but no container id was found"
    );

    // Through the plugin: the file must exist and be well formed (SPIRE's raw errors).
    let dir = proc_fixture(9, "garbage\n");
    let mut c = config("unix:///nonexistent/docker.sock");
    c.use_new_container_locator = Some(false);
    c.container_id_cgroup_matchers = vec!["/docker/<id>".into()];
    let a = DockerAttestor::new(&c, dir.path()).unwrap();
    assert_eq!(
        a.container_id(9).unwrap_err().message,
        "invalid cgroup entry, contains 1 colon separated fields but expected at least 3: \"garbage\""
    );
    let err = a.container_id(10).unwrap_err().message;
    assert!(
        err.starts_with("open ") && err.ends_with("/proc/10/cgroup: no such file or directory"),
        "{err}"
    );
}

#[test]
fn new_locator_paths_of_docker_podman_and_containerd() {
    for (cgroup, want) in [
        (
            format!("12:pids:/docker/{CID}\n0::/docker/{CID}\n"),
            Some(CID),
        ),
        (
            format!("1:name=systemd:/system.slice/docker-{CID}.scope\n"),
            Some(CID),
        ),
        (
            format!("5:cpu:/libpod_parent/libpod-{CID}\n0::/libpod_parent/libpod-{CID}\n"),
            Some(CID),
        ),
        (
            format!(
                "3:memory:/kubepods/besteffort/pod2c48913c-b29f-11e7-9350-020968147796/{CID}\n"
            ),
            Some(CID),
        ),
        ("0::/init.scope\n".to_string(), None),
    ] {
        let dir = proc_fixture(5, &cgroup);
        let a = DockerAttestor::new(&config(""), dir.path()).unwrap();
        assert_eq!(a.container_id(5).unwrap().as_deref(), want, "{cgroup}");
    }
    // Two containers named: SPIRE refuses to choose (a pod UID does not break the tie for
    // the docker attestor, which does not look for pods).
    let other = "1111111111111111111111111111111111111111111111111111111111111111";
    let dir = proc_fixture(
        5,
        &format!(
            "1:cpuset:/docker/{other}/kubepods/besteffort/pod2c48913c-b29f-11e7-9350-020968147796/{CID}\n0::/docker/{other}/system.slice/containerd.service\n"
        ),
    );
    let a = DockerAttestor::new(&config(""), dir.path()).unwrap();
    assert_eq!(
        a.container_id(5).unwrap_err().message,
        format!("multiple container IDs found (\"{CID}\", \"{other}\")")
    );
}

#[test]
fn selectors_from_an_inspected_container() {
    // `Config` captured from dockerd 20.10.24 (API 1.41) for
    // `docker run --label app=web --label url=http://x:1/a=b -e A=b=c local/busybox:1 sleep 300`
    // (the image labelled org.example.app=demo by `docker import`).
    let config: client::ContainerConfig = serde_json::from_str(
        r#"{"Hostname": "a68e63538c21", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": ["A=b=c", "PATH=/bin"], "Cmd": ["sleep", "300"], "Image": "local/busybox:1", "Volumes": null, "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": {"app": "web", "org.example.app": "demo", "url": "http://x:1/a=b"}}"#,
    )
    .unwrap();
    let mut got = selectors(&config);
    got.sort();
    assert_eq!(
        got,
        [
            "env:A=b=c",
            "env:PATH=/bin",
            "image_id:local/busybox:1",
            "label:app:web",
            "label:org.example.app:demo",
            "label:url:http://x:1/a=b",
        ]
    );
    assert!(selectors(&client::ContainerConfig::default()).is_empty());
}
