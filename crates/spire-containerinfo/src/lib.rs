//! Which pod and container a process runs in, read from `/proc/<pid>/mountinfo` and
//! `/proc/<pid>/cgroup` as SPIRE 1.13's container-aware workload attestors (`k8s`, `docker`)
//! read them: the "new" container locator (cgroup mount roots first, then cgroup paths; the
//! last 64-hex segment is the container ID, a `pod<uid>` segment above it the pod) and the
//! legacy Kubernetes one (two whole-path patterns for cgroupfs/systemd and CRI-O paths).
//! Both understand cgroup v1, v2 and hybrid layouts, the cgroupfs and systemd drivers, and
//! containerd, CRI-O, Docker and Podman (`libpod-<id>`) IDs. [`cgroup_paths`] also serves
//! the docker attestor's legacy `container_id_cgroup_matchers`. [`refuse_sigstore`] is the
//! attestors' shared check of their `experimental` block.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use spire_plugin::{Code, PluginError, PluginResult};

/// Refuses an `experimental { sigstore { … } }` block (the decoded `experimental` value of the
/// `docker` or `k8s` attestor's configuration): spire-rs has no sigstore image verification.
/// The block decodes as an object, or as a list of objects when HCL repeats it.
pub fn refuse_sigstore(experimental: Option<&serde_json::Value>) -> Result<(), String> {
    fn names_sigstore(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(fields) => fields.contains_key("sigstore"),
            serde_json::Value::Array(items) => items.iter().any(names_sigstore),
            _ => false,
        }
    }
    if experimental.is_some_and(names_sigstore) {
        return Err("experimental sigstore image verification is not supported by spire-rs".into());
    }
    Ok(())
}

/// Where a process's pod UID and container ID are found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The pod UID, dashes only (empty when the paths name none).
    pub pod_uid: String,
    /// The container ID (empty when the process is not in a container).
    pub container_id: String,
}

#[allow(
    clippy::expect_used,
    reason = "constant patterns, checked by the tests"
)]
static RE_POD_UID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)pod([[:xdigit:]]{8}[-_][[:xdigit:]]{4}[-_][[:xdigit:]]{4}[-_][[:xdigit:]]{4}[-_][[:xdigit:]]{12})(?-u:\b)")
        .expect("pod UID pattern")
});
#[allow(
    clippy::expect_used,
    reason = "constant patterns, checked by the tests"
)]
static RE_CONTAINER_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)([[:xdigit:]]{64})(?-u:\b)").expect("container ID pattern")
});
#[allow(
    clippy::expect_used,
    reason = "constant patterns, checked by the tests"
)]
static LEGACY: LazyLock<[Regex; 2]> = LazyLock::new(|| {
    [
        Regex::new(concat!(
            r"[[:punct:]]pod(?P<poduid>[[:xdigit:]]{8}[[:punct:]]?[[:xdigit:]]{4}[[:punct:]]?[[:xdigit:]]{4}[[:punct:]]?[[:xdigit:]]{4}[[:punct:]]?[[:xdigit:]]{12})[[:punct:]]",
            r"(?:[[:^punct:]]+[[:punct:]])*",
            r"(?P<containerid>[[:xdigit:]]{64})$"
        ))
        .expect("legacy cgroupfs/systemd pattern"),
        Regex::new(concat!(
            r"(?P<mustnotmatch>pod[[:xdigit:]]{8}[[:punct:]]?[[:xdigit:]]{4}[[:punct:]]?[[:xdigit:]]{4}[[:punct:]]?[[:xdigit:]]{4}[[:punct:]]?[[:xdigit:]]{12}[[:punct:]])?",
            r"(?:[[:^punct:]]*/*)*crio[[:punct:]]",
            r"(?P<containerid>[[:xdigit:]]{64})$"
        ))
        .expect("legacy CRI-O pattern"),
    ]
});

/// Reads the locations from a root directory (`/` on a host; a fixture tree in tests).
#[derive(Debug, Clone)]
pub struct Locator {
    root: PathBuf,
    legacy: bool,
    verbose: bool,
}

impl Locator {
    /// A locator reading `<root>/proc`; `legacy` selects SPIRE's legacy container locator.
    pub fn new(root: impl Into<PathBuf>, legacy: bool) -> Locator {
        Locator {
            root: root.into(),
            legacy,
            verbose: false,
        }
    }

    /// With `on`, every mount and cgroup read is logged at debug level ("PID mount
    /// enumerated", "PID cgroup enumerated"), as `verbose_container_locator_logs` asks.
    #[must_use]
    pub fn verbose(mut self, on: bool) -> Locator {
        self.verbose = on;
        self
    }

    fn proc_file(&self, pid: i32, name: &str) -> PathBuf {
        self.root.join("proc").join(pid.to_string()).join(name)
    }

    /// The container ID of `pid` alone (the docker attestor's view: pod UIDs are not
    /// looked for, so a path naming a pod does not outrank one that names none); empty
    /// when the process is in no container or is gone.
    pub fn container_id(&self, pid: i32) -> PluginResult<String> {
        self.find(pid, false).map(|l| l.container_id)
    }

    /// The pod UID and container ID of `pid`.
    pub fn locate(&self, pid: i32) -> PluginResult<Location> {
        if self.legacy {
            // The legacy locator reports a vanished process (SPIRE's: the file must exist).
            let file = self.proc_file(pid, "cgroup");
            let Some(cgroups) = read_cgroups(&file)? else {
                return Err(PluginError::internal(format!(
                    "unable to obtain cgroups: open {}: no such file or directory",
                    file.display()
                )));
            };
            return legacy_from_cgroups(&cgroups);
        }
        self.find(pid, true)
    }

    /// SPIRE's new locator: mount roots first, then cgroup paths.
    fn find(&self, pid: i32, with_pod: bool) -> PluginResult<Location> {
        let mountinfo = self.proc_file(pid, "mountinfo");
        let mut found = Location::default();
        if let Some(mounts) = read_mounts(&mountinfo)? {
            if self.verbose {
                for (i, (fs_type, root)) in mounts.iter().enumerate() {
                    tracing::debug!(index = i + 1, total = mounts.len(), r#type = %fs_type, root = %root, "PID mount enumerated");
                }
            }
            let mut ex = Extractor::new(with_pod);
            for (_, root) in mounts
                .iter()
                .filter(|(t, _)| t == "cgroup" || t == "cgroup2")
            {
                ex.add(root)?;
            }
            found = ex.into_location();
        }
        if found.container_id.is_empty() {
            let paths = read_cgroups(&self.proc_file(pid, "cgroup"))?.unwrap_or_default();
            if self.verbose {
                for (i, path) in paths.iter().enumerate() {
                    tracing::debug!(index = i + 1, total = paths.len(), path = %path, "PID cgroup enumerated");
                }
            }
            let mut ex = Extractor::new(with_pod);
            for path in &paths {
                ex.add(path)?;
            }
            found = ex.into_location();
        }
        Ok(found)
    }
}

/// The cgroup paths of `/proc/<pid>/cgroup` (`id:controllers:path`); `None` when the file
/// does not exist (the process is gone).
fn read_cgroups(path: &Path) -> PluginResult<Option<Vec<String>>> {
    match cgroup_paths(path) {
        Ok(paths) => Ok(Some(paths)),
        Err(CgroupsError::Missing(_)) => Ok(None),
        Err(e) => Err(PluginError::internal(format!(
            "unable to obtain cgroups: {e}"
        ))),
    }
}

/// Why `/proc/<pid>/cgroup` could not be read; shown as SPIRE's `cgroups.GetCgroups` words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupsError {
    /// The file does not exist (Go's `*os.PathError`).
    Missing(String),
    /// It could not be read (Go's `*os.PathError`).
    Unreadable(String),
    /// A line without three colon-separated fields.
    BadLine(String),
}

impl std::fmt::Display for CgroupsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CgroupsError::Missing(m) | CgroupsError::Unreadable(m) | CgroupsError::BadLine(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for CgroupsError {}

/// Every cgroup path in `/proc/<pid>/cgroup` (the third field of each line), in file order.
pub fn cgroup_paths(path: &Path) -> Result<Vec<String>, CgroupsError> {
    let text = match std::fs::read(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            let msg = spire_gocompat::os::path_error("open", &path.display().to_string(), &e);
            return Err(if e.kind() == std::io::ErrorKind::NotFound {
                CgroupsError::Missing(msg)
            } else {
                CgroupsError::Unreadable(msg)
            });
        }
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.splitn(3, ':').collect();
        let [_, _, group] = parts.as_slice() else {
            return Err(CgroupsError::BadLine(format!(
                "invalid cgroup entry, contains {} colon separated fields but expected at least 3: {}",
                parts.len(),
                spire_gocompat::strconv::quote(line)
            )));
        };
        out.push((*group).to_string());
    }
    Ok(out)
}

/// The file system type and root of every mount in `/proc/<pid>/mountinfo`, in file order;
/// `None` when the file does not exist.
fn read_mounts(path: &Path) -> PluginResult<Option<Vec<(String, String)>>> {
    let text = match std::fs::read(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PluginError::internal(format!(
                "failed to parse mount info at {}: {}",
                spire_gocompat::strconv::quote(&path.display().to_string()),
                spire_gocompat::os::path_error("open", &path.display().to_string(), &e)
            )));
        }
    };
    let mut mounts = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        // mount-utils' ParseMountInfo: whitespace-separated fields, the optional ones ended
        // by "-" somewhere from the seventh field on.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let sep = fields.iter().skip(6).position(|f| *f == "-").map(|i| i + 6);
        let (Some(sep), true) = (sep, fields.len() >= 10) else {
            return Err(PluginError::internal(format!(
                "failed to parse mount info at {}: wrong number of fields (expected at least 10, got {}): {line}",
                spire_gocompat::strconv::quote(&path.display().to_string()),
                fields.len()
            )));
        };
        let fs_type = fields.get(sep + 1).copied().unwrap_or_default();
        mounts.push((fs_type.to_string(), fields[3].to_string()));
    }
    Ok(Some(mounts))
}

/// SPIRE's `extractor`: folds the (pod, container) found in each path, refusing
/// conflicting answers.
#[derive(Debug, Default)]
struct Extractor {
    pod_uid: String,
    container_id: String,
    with_pod: bool,
}

impl Extractor {
    fn new(with_pod: bool) -> Extractor {
        Extractor {
            with_pod,
            ..Extractor::default()
        }
    }

    fn add(&mut self, path: &str) -> PluginResult<()> {
        let (mut pod_uid, container_id) = extract(path);
        if !self.with_pod {
            pod_uid.clear();
        }
        if !self.pod_uid.is_empty() && pod_uid.is_empty() {
            return Ok(());
        }
        if self.pod_uid.is_empty() && !pod_uid.is_empty() {
            self.pod_uid.clone_from(&pod_uid);
            self.container_id.clone_from(&container_id);
        }
        if !pod_uid.is_empty() && !self.pod_uid.is_empty() && pod_uid != self.pod_uid {
            tracing::debug!(previous = %self.pod_uid, current = %pod_uid, "Workload pod UID conflict");
            return Err(PluginError::new(
                Code::FailedPrecondition,
                format!(
                    "multiple pod UIDs found ({}, {})",
                    spire_gocompat::strconv::quote(&self.pod_uid),
                    spire_gocompat::strconv::quote(&pod_uid)
                ),
            ));
        }
        if !self.container_id.is_empty() && container_id != self.container_id {
            tracing::debug!(previous = %self.container_id, current = %container_id, "Workload container ID conflict");
            return Err(PluginError::new(
                Code::FailedPrecondition,
                format!(
                    "multiple container IDs found ({}, {})",
                    spire_gocompat::strconv::quote(&self.container_id),
                    spire_gocompat::strconv::quote(&container_id)
                ),
            ));
        }
        self.container_id = container_id;
        self.pod_uid = pod_uid;
        Ok(())
    }

    fn into_location(self) -> Location {
        Location {
            pod_uid: self.pod_uid,
            container_id: self.container_id,
        }
    }
}

/// Go's `path.Split`, then one trailing slash trimmed (as SPIRE's `stripSegment`).
fn strip_segment(p: &str) -> (&str, &str) {
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// The (pod UID, container ID) one cgroup path or mount root names: the container ID is
/// the first 64-hex word of the deepest segment that has one; the pod UID is looked for
/// from there upwards.
fn extract(path: &str) -> (String, String) {
    let (mut rest, mut segment) = strip_segment(path);
    let mut container_id = String::new();
    while !segment.is_empty() {
        if let Some(c) = RE_CONTAINER_ID.captures(segment)
            && let Some(m) = c.get(1)
        {
            container_id = m.as_str().to_string();
            segment = &segment[..m.start()];
            break;
        }
        (rest, segment) = strip_segment(rest);
    }
    if container_id.is_empty() {
        return (String::new(), String::new());
    }
    if segment.is_empty() {
        (rest, segment) = strip_segment(rest);
    }
    let mut pod_uid = String::new();
    while !segment.is_empty() {
        if let Some(c) = RE_POD_UID.captures(segment)
            && let Some(m) = c.get(1)
        {
            pod_uid = m.as_str().replace('_', "-");
            break;
        }
        (rest, segment) = strip_segment(rest);
    }
    (pod_uid, container_id)
}

/// The legacy locator over every cgroup path.
fn legacy_from_cgroups(paths: &[String]) -> PluginResult<Location> {
    let mut found = Location::default();
    for p in paths {
        let Some((pod_uid, container_id)) = legacy_match(p) else {
            continue;
        };
        if found.container_id.is_empty() {
            found = Location {
                pod_uid,
                container_id,
            };
        } else if found.container_id != container_id {
            return Err(PluginError::new(
                Code::FailedPrecondition,
                format!(
                    "multiple container IDs found in cgroups ({}, {})",
                    found.container_id, container_id
                ),
            ));
        } else if found.pod_uid != pod_uid {
            return Err(PluginError::new(
                Code::FailedPrecondition,
                format!(
                    "multiple pod UIDs found in cgroups ({}, {})",
                    found.pod_uid, pod_uid
                ),
            ));
        }
    }
    Ok(found)
}

/// Go's `unicode.IsPunct` on ASCII: the punctuation characters, not the symbols
/// (`$+<=>^`|~`).
fn is_go_punct(c: char) -> bool {
    matches!(
        c,
        '!' | '"'
            | '#'
            | '%'
            | '&'
            | '\''
            | '('
            | ')'
            | '*'
            | ','
            | '-'
            | '.'
            | '/'
            | ':'
            | ';'
            | '?'
            | '@'
            | '['
            | '\\'
            | ']'
            | '_'
            | '{'
            | '}'
    )
}

fn legacy_match(path: &str) -> Option<(String, String)> {
    let path = path.strip_suffix(".scope").unwrap_or(path);
    let mut result = None;
    for re in LEGACY.iter() {
        let Some(c) = re.captures(path) else {
            continue;
        };
        if c.name("mustnotmatch")
            .is_some_and(|m| !m.as_str().is_empty())
        {
            continue;
        }
        if result.is_some() {
            tracing::warn!(cgroup = path, "More than one regex matches for cgroup");
            return None;
        }
        let pod = c
            .name("poduid")
            .map(|m| {
                m.as_str()
                    .chars()
                    .map(|ch| if is_go_punct(ch) { '-' } else { ch })
                    .collect::<String>()
            })
            .unwrap_or_default();
        let container = c
            .name("containerid")
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        result = Some((pod, container));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigstore_is_refused_in_every_decoded_shape() {
        use serde_json::json;
        assert_eq!(refuse_sigstore(None), Ok(()));
        assert_eq!(refuse_sigstore(Some(&json!({}))), Ok(()));
        assert_eq!(refuse_sigstore(Some(&json!([{"other": 1}]))), Ok(()));
        // A value that merely mentions the word is not the block.
        assert_eq!(refuse_sigstore(Some(&json!({"note": "sigstore"}))), Ok(()));
        for v in [json!({"sigstore": {}}), json!([{"sigstore": [{}]}])] {
            let err = refuse_sigstore(Some(&v)).err().unwrap_or_default();
            assert!(err.contains("sigstore"), "{v}: {err}");
        }
    }

    const CID: &str = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";
    const UID: &str = "2c48913c-b29f-11e7-9350-020968147796";

    fn both(path: &str) -> ((String, String), Option<(String, String)>) {
        (extract(path), legacy_match(path))
    }

    #[test]
    fn cgroupfs_driver_paths() {
        // What the loopback cluster's kubelet (cgroupfs, containerd) gives, on v1 and v2.
        let p = format!("/kubepods/besteffort/pod{UID}/{CID}");
        let (new, legacy) = both(&p);
        assert_eq!(new, (UID.to_string(), CID.to_string()));
        assert_eq!(legacy, Some((UID.to_string(), CID.to_string())));
        let p = format!("/kubepods/pod{UID}/{CID}");
        assert_eq!(extract(&p), (UID.to_string(), CID.to_string()));
    }

    #[test]
    fn systemd_driver_paths() {
        let u = UID.replace('-', "_");
        let containerd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{CID}.scope"
        );
        let (new, legacy) = both(&containerd);
        assert_eq!(new, (UID.to_string(), CID.to_string()));
        assert_eq!(legacy, Some((UID.to_string(), CID.to_string())));
        let docker = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/docker-{CID}.scope"
        );
        assert_eq!(extract(&docker), (UID.to_string(), CID.to_string()));
        let crio = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/crio-{CID}.scope"
        );
        assert_eq!(extract(&crio), (UID.to_string(), CID.to_string()));
        // The legacy CRI-O pattern refuses a path that also names the pod, and the first
        // pattern takes it instead.
        assert_eq!(
            legacy_match(&crio),
            Some((UID.to_string(), CID.to_string()))
        );
    }

    #[test]
    fn crio_and_docker_outside_pods() {
        let crio = format!("/system.slice/crio-{CID}.scope");
        assert_eq!(extract(&crio), (String::new(), CID.to_string()));
        assert_eq!(legacy_match(&crio), Some((String::new(), CID.to_string())));
        let docker = format!("/docker/{CID}");
        assert_eq!(extract(&docker), (String::new(), CID.to_string()));
        assert_eq!(legacy_match(&docker), None);
    }

    #[test]
    fn host_paths_name_nothing() {
        for p in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/spire-agent.service",
            "",
        ] {
            assert_eq!(extract(p), (String::new(), String::new()), "{p}");
            assert_eq!(legacy_match(p), None, "{p}");
        }
        // A 64-hex word that is part of a longer word is not a container ID.
        assert_eq!(
            extract(&format!("/x/{CID}0")),
            (String::new(), String::new())
        );
    }

    fn fixture(pid: i32, cgroup: &str, mountinfo: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proc").join(pid.to_string());
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("cgroup"), cgroup).unwrap();
        if let Some(m) = mountinfo {
            std::fs::write(p.join("mountinfo"), m).unwrap();
        }
        dir
    }

    #[test]
    fn hybrid_v1_and_v2_files_agree() {
        // cgroup v1 hybrid (this machine kind): every hierarchy and the unified one.
        let path = format!("/kubepods/besteffort/pod{UID}/{CID}");
        let cgroup =
            format!("12:memory:{path}\n11:cpu,cpuacct:{path}\n1:name=systemd:{path}\n0::{path}\n");
        let host_mounts = "25 30 0:22 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n26 30 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let dir = fixture(42, &cgroup, Some(host_mounts));
        for legacy in [false, true] {
            let l = Locator::new(dir.path(), legacy).locate(42).unwrap();
            assert_eq!(l.pod_uid, UID);
            assert_eq!(l.container_id, CID);
        }
        // A process gone: nothing, no error.
        assert_eq!(
            Locator::new(dir.path(), false).locate(43).unwrap(),
            Location::default()
        );
    }

    #[test]
    fn cgroup_namespace_mount_roots_are_used_first() {
        // Inside a private cgroup namespace /proc/<pid>/cgroup says "/", the mount roots
        // still carry the path.
        let root = format!("/kubepods/besteffort/pod{UID}/{CID}");
        let mounts = format!(
            "25 30 0:22 {root} /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n26 30 0:5 / /dev rw - tmpfs tmpfs rw\n"
        );
        let dir = fixture(7, "0::/\n", Some(&mounts));
        let l = Locator::new(dir.path(), false).locate(7).unwrap();
        assert_eq!((l.pod_uid.as_str(), l.container_id.as_str()), (UID, CID));
    }

    /// The debug lines logged while `f` runs.
    fn debug_lines(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(sub, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn verbose_locator_logs_every_mount_and_cgroup() {
        let mounts = "25 30 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n26 30 0:5 / /dev rw - tmpfs tmpfs rw\n";
        let dir = fixture(7, &format!("0::/docker/{CID}\n"), Some(mounts));
        let quiet = debug_lines(|| {
            Locator::new(dir.path(), false).locate(7).unwrap();
        });
        assert!(!quiet.contains("enumerated"), "{quiet}");
        let loud = debug_lines(|| {
            let l = Locator::new(dir.path(), false)
                .verbose(true)
                .locate(7)
                .unwrap();
            assert_eq!(l.container_id, CID);
        });
        assert_eq!(loud.matches("PID mount enumerated").count(), 2, "{loud}");
        assert!(
            loud.contains("type=tmpfs") && loud.contains("total=2"),
            "{loud}"
        );
        assert!(
            loud.contains("PID cgroup enumerated") && loud.contains(&format!("path=/docker/{CID}")),
            "{loud}"
        );
    }

    #[test]
    fn conflicts_and_garbage_are_errors() {
        let other = "f".repeat(64);
        let cgroup =
            format!("1:memory:/kubepods/pod{UID}/{CID}\n2:cpu:/kubepods/pod{UID}/{other}\n");
        let dir = fixture(9, &cgroup, None);
        let err = Locator::new(dir.path(), false).locate(9).unwrap_err();
        assert_eq!(err.code, Code::FailedPrecondition);
        assert!(
            err.message.starts_with("multiple container IDs found"),
            "{err}"
        );
        let err = Locator::new(dir.path(), true).locate(9).unwrap_err();
        assert!(
            err.message
                .starts_with("multiple container IDs found in cgroups"),
            "{err}"
        );

        let dir = fixture(10, "garbage\n", None);
        let err = Locator::new(dir.path(), false).locate(10).unwrap_err();
        assert!(err.message.contains("invalid cgroup entry"), "{err}");
        let dir = fixture(11, "0::/\n", Some("1 2 3\n"));
        let err = Locator::new(dir.path(), false).locate(11).unwrap_err();
        assert!(err.message.contains("wrong number of fields"), "{err}");
    }
}
