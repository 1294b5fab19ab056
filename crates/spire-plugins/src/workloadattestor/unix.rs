//! The `unix` WorkloadAttestor: selectors from the caller's process credentials, as SPIRE's
//! `unix` plugin reports them (effective UID and GID, supplementary groups, and with
//! `discover_workload_path` the executable path and its SHA-256).

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use spire_plugin::{PluginError, PluginResult, WorkloadAttestor};

/// `plugin_data` of the `unix` WorkloadAttestor.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UnixConfig {
    /// Also report `path` and `sha256` selectors.
    #[serde(default)]
    pub discover_workload_path: bool,
    /// Maximum executable size to hash; 0 means no limit, negative means never hash.
    #[serde(default)]
    pub workload_size_limit: i64,
}

/// The `unix` WorkloadAttestor.
#[derive(Debug, Clone)]
pub struct UnixAttestor {
    config: UnixConfig,
    proc_root: PathBuf,
    etc: PathBuf,
}

/// Credentials of a process as `/proc/<pid>/status` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCredentials {
    /// Effective UID.
    pub uid: u32,
    /// Effective GID.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Reads effective UID/GID and supplementary groups from a `status` file's text.
pub fn parse_status(text: &str) -> Result<ProcessCredentials, String> {
    let field = |name: &str| -> Option<Vec<u32>> {
        text.lines().find_map(|l| l.strip_prefix(name)).map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
    };
    let uids = field("Uid:").ok_or("UIDs lookup: no UIDs for process")?;
    let gids = field("Gid:").ok_or("GIDs lookup: no GIDs for process")?;
    // SPIRE takes the effective ID (the second value) when there are several.
    let pick = |v: &[u32]| {
        if v.len() > 1 {
            v.get(1).copied()
        } else {
            v.first().copied()
        }
    };
    Ok(ProcessCredentials {
        uid: pick(&uids).ok_or("UIDs lookup: no UIDs for process")?,
        gid: pick(&gids).ok_or("GIDs lookup: no GIDs for process")?,
        groups: field("Groups:").unwrap_or_default(),
    })
}

/// Finds a name by numeric ID in a passwd- or group-format file.
fn lookup_name(file: &Path, id: u32) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.split(':');
        let name = parts.next()?;
        let _password = parts.next()?;
        let num: u32 = parts.next()?.parse().ok()?;
        (num == id && !name.is_empty()).then(|| name.to_string())
    })
}

impl UnixAttestor {
    /// The attestor reading the real `/proc` and `/etc`.
    pub fn new(config: UnixConfig) -> Self {
        Self::with_roots(config, PathBuf::from("/proc"), PathBuf::from("/etc"))
    }

    /// The attestor reading another proc and etc directory (tests, or `HOST_PROC`).
    pub fn with_roots(config: UnixConfig, proc_root: PathBuf, etc: PathBuf) -> Self {
        Self {
            config,
            proc_root,
            etc,
        }
    }

    fn selectors(&self, pid: i32) -> PluginResult<Vec<String>> {
        let dir = self.proc_root.join(pid.to_string());
        let status = fs::read_to_string(dir.join("status"))
            .map_err(|e| PluginError::internal(format!("failed to get process: {e}")))?;
        let creds = parse_status(&status).map_err(PluginError::internal)?;
        let passwd = self.etc.join("passwd");
        let group = self.etc.join("group");
        let mut out = vec![format!("uid:{}", creds.uid)];
        if let Some(user) = lookup_name(&passwd, creds.uid) {
            out.push(format!("user:{user}"));
        }
        out.push(format!("gid:{}", creds.gid));
        if let Some(g) = lookup_name(&group, creds.gid) {
            out.push(format!("group:{g}"));
        }
        for sg in &creds.groups {
            out.push(format!("supplementary_gid:{sg}"));
            if let Some(g) = lookup_name(&group, *sg) {
                out.push(format!("supplementary_group:{g}"));
            }
        }
        if self.config.discover_workload_path {
            let exe = fs::read_link(dir.join("exe"))
                .map_err(|e| PluginError::internal(format!("path lookup: {e}")))?;
            out.push(format!("path:{}", exe.display()));
            if self.config.workload_size_limit >= 0 {
                // Hash through the process's own root, so a binary in another mount
                // namespace is the one that is measured.
                let rel = exe.strip_prefix("/").unwrap_or(&exe);
                let ns_path = dir.join("root").join(rel);
                let digest = sha256_file(&ns_path, self.config.workload_size_limit)
                    .map_err(PluginError::internal)?;
                out.push(format!("sha256:{digest}"));
            }
        }
        Ok(out)
    }
}

fn sha256_file(path: &Path, limit: i64) -> Result<String, String> {
    let mut f = fs::File::open(path).map_err(|e| format!("SHA256 digest: {e}"))?;
    if limit > 0 {
        let size = f
            .metadata()
            .map_err(|e| format!("SHA256 digest: {e}"))?
            .len();
        if size > limit as u64 {
            return Err(format!(
                "workload {} exceeds size limit (size={size}, limit={limit})",
                path.display()
            ));
        }
    }
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("SHA256 digest: {e}"))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

#[async_trait]
impl WorkloadAttestor for UnixAttestor {
    async fn attest(&self, pid: i32) -> PluginResult<Vec<String>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.selectors(pid))
            .await
            .map_err(|e| PluginError::internal(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing_takes_effective_ids() {
        let text =
            "Name:\tx\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t101\t100\t100\nGroups:\t4 27 \n";
        let c = parse_status(text).unwrap();
        assert_eq!(
            c,
            ProcessCredentials {
                uid: 1001,
                gid: 101,
                groups: vec![4, 27]
            }
        );
        assert!(parse_status("Name: x\n").is_err());
    }

    #[tokio::test]
    async fn attests_this_process() {
        let pid = std::process::id() as i32;
        let cfg = UnixConfig {
            discover_workload_path: true,
            workload_size_limit: 0,
        };
        let sel = UnixAttestor::new(cfg).attest(pid).await.unwrap();
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let c = parse_status(&status).unwrap();
        assert_eq!(sel[0], format!("uid:{}", c.uid));
        assert!(sel.iter().any(|s| s == &format!("gid:{}", c.gid)));
        let exe = std::env::current_exe().unwrap();
        assert!(
            sel.iter().any(|s| s == &format!("path:{}", exe.display())),
            "{sel:?}"
        );
        let digest = sha256_file(&exe, 0).unwrap();
        assert!(sel.iter().any(|s| s == &format!("sha256:{digest}")));
        if c.uid == 0 {
            assert!(sel.iter().any(|s| s == "user:root"), "{sel:?}");
        }
    }

    #[tokio::test]
    async fn size_limit_and_never_hash() {
        let pid = std::process::id() as i32;
        let tiny = UnixConfig {
            discover_workload_path: true,
            workload_size_limit: 1,
        };
        let err = UnixAttestor::new(tiny).attest(pid).await.unwrap_err();
        assert!(err.message.contains("exceeds size limit"), "{err}");
        let never = UnixConfig {
            discover_workload_path: true,
            workload_size_limit: -1,
        };
        let sel = UnixAttestor::new(never).attest(pid).await.unwrap();
        assert!(!sel.iter().any(|s| s.starts_with("sha256:")));
    }

    #[tokio::test]
    async fn names_come_from_passwd_and_group_files() {
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path().join("proc/42");
        fs::create_dir_all(&proc_dir).unwrap();
        fs::write(
            proc_dir.join("status"),
            "Uid:\t5\t5\t5\t5\nGid:\t6\t6\t6\t6\nGroups:\t7\n",
        )
        .unwrap();
        let etc = dir.path().join("etc");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("passwd"), "alice:x:5:6::/home/alice:/bin/sh\n").unwrap();
        fs::write(etc.join("group"), "staff:x:6:\nwheel:x:7:alice\n").unwrap();
        let a = UnixAttestor::with_roots(UnixConfig::default(), dir.path().join("proc"), etc);
        let sel = a.attest(42).await.unwrap();
        assert_eq!(
            sel,
            [
                "uid:5",
                "user:alice",
                "gid:6",
                "group:staff",
                "supplementary_gid:7",
                "supplementary_group:wheel"
            ]
        );
        assert!(a.attest(43).await.is_err());
    }
}
