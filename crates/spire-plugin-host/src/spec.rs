//! What to launch: an external plugin's name, type, absolute path, arguments and optional
//! SHA-256 checksum, parsed from a `plugins {}` block's `plugin_cmd`, `plugin_args` and
//! `plugin_checksum` with SPIRE's messages.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use crate::LoadError;

/// The SHA-256 an executable must have (`plugin_checksum`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Checksum([u8; 32]);

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checksum({})", hex::encode(self.0))
    }
}

impl Checksum {
    /// Parses a hex SHA-256 as SPIRE does: "checksum is not a valid hex string", or "expected
    /// checksum of length 64; got N" for a digest of another size.
    pub fn parse(hex_text: &str) -> Result<Self, LoadError> {
        let bytes = hex::decode(hex_text)
            .map_err(|_| LoadError::Checksum("checksum is not a valid hex string".into()))?;
        let digest: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            LoadError::Checksum(format!(
                "expected checksum of length 64; got {}",
                bytes.len() * 2
            ))
        })?;
        Ok(Self(digest))
    }

    /// Checks the file at `path` (go-plugin's `SecureConfig.Check`).
    pub fn verify(&self, path: &Path) -> Result<(), LoadError> {
        let launch = |m: String| LoadError::Launch(format!("error verifying checksum: {m}"));
        let shown = path.display().to_string();
        let mut file = std::fs::File::open(path)
            .map_err(|e| launch(spire_gocompat::os::path_error("open", &shown, &e)))?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| launch(spire_gocompat::os::path_error("read", &shown, &e)))?;
            if n == 0 {
                break;
            }
            ctx.update(buf.get(..n).unwrap_or_default());
        }
        if ctx.finish().as_ref() == self.0.as_slice() {
            Ok(())
        } else {
            Err(LoadError::Launch("checksums did not match".into()))
        }
    }
}

/// One external plugin to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The plugin's name in the configuration (`WorkloadAttestor "<name>"`).
    pub name: String,
    /// The plugin type (`WorkloadAttestor`); also go-plugin's magic cookie key and value.
    pub plugin_type: String,
    /// The executable, made absolute against the working directory (never looked up in
    /// `PATH`).
    pub path: PathBuf,
    /// `plugin_args`.
    pub args: Vec<String>,
    /// `plugin_checksum`, when given.
    pub checksum: Option<Checksum>,
}

impl LaunchSpec {
    /// Builds the spec from a plugin block's fields; `cwd` resolves a relative `plugin_cmd`
    /// (Go's `filepath.Abs`).
    pub fn new(
        name: &str,
        plugin_type: &str,
        plugin_cmd: &str,
        args: &[String],
        checksum: Option<&str>,
        cwd: &Path,
    ) -> Result<Self, LoadError> {
        let checksum = checksum
            .filter(|c| !c.is_empty())
            .map(Checksum::parse)
            .transpose()?;
        Ok(Self {
            name: name.to_owned(),
            plugin_type: plugin_type.to_owned(),
            path: absolute(plugin_cmd, cwd),
            args: args.to_vec(),
            checksum,
        })
    }
}

impl LaunchSpec {
    /// What `validate` can tell without starting the plugin: the checksum matches when one
    /// is given, else the file exists and is executable. The errors are those a start would
    /// give.
    pub fn check_executable(&self) -> Result<(), crate::HostError> {
        use std::os::unix::fs::PermissionsExt as _;
        let load = |source: LoadError| crate::HostError::Load {
            name: self.name.clone(),
            source,
        };
        if let Some(sum) = &self.checksum {
            sum.verify(&self.path).map_err(load)?;
        }
        let shown = self.path.display().to_string();
        let exec_error = |e: &std::io::Error| {
            load(LoadError::Launch(spire_gocompat::os::path_error(
                "fork/exec",
                &shown,
                e,
            )))
        };
        let meta = std::fs::metadata(&self.path).map_err(|e| exec_error(&e))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(exec_error(&std::io::Error::from_raw_os_error(13)));
        }
        Ok(())
    }
}

/// Go's `filepath.Abs`: joined with `cwd` when relative, then cleaned lexically.
fn absolute(path: &str, cwd: &Path) -> PathBuf {
    let joined = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_parse_with_spires_messages() {
        let ok = "a".repeat(64);
        assert!(Checksum::parse(&ok).is_ok());
        assert_eq!(
            Checksum::parse("zz").unwrap_err().to_string(),
            "checksum is not a valid hex string"
        );
        assert_eq!(
            Checksum::parse("abcd").unwrap_err().to_string(),
            "expected checksum of length 64; got 4"
        );
    }

    #[test]
    fn paths_are_made_absolute_without_path_lookup() {
        let cwd = Path::new("/srv/spire");
        assert_eq!(absolute("plugin", cwd), PathBuf::from("/srv/spire/plugin"));
        assert_eq!(
            absolute("./bin/../plugins/p", cwd),
            PathBuf::from("/srv/spire/plugins/p")
        );
        assert_eq!(absolute("/opt//p", cwd), PathBuf::from("/opt/p"));
    }

    #[test]
    fn a_file_is_checked_against_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p");
        std::fs::write(&file, b"abc").unwrap();
        // SHA-256("abc")
        let good =
            Checksum::parse("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .unwrap();
        good.verify(&file).unwrap();
        let bad = Checksum::parse(&"0".repeat(64)).unwrap();
        assert_eq!(
            bad.verify(&file).unwrap_err().to_string(),
            "failed to launch plugin: checksums did not match"
        );
        let missing = dir.path().join("missing");
        assert_eq!(
            good.verify(&missing).unwrap_err().to_string(),
            format!(
                "failed to launch plugin: error verifying checksum: open {}: no such file or directory",
                missing.display()
            )
        );
    }
}
