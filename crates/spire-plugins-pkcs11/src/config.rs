//! `plugin_data` of KeyManager "pkcs11": decoded as written ([`Config`]), then parsed once
//! into [`Settings`], which cannot hold a contradictory or incomplete configuration.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Pkcs11Error;

/// Which program the KeyManager serves; it picks the default key label prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// spire-server: keys `x509-CA-A`, `JWT-Signer-B`, … labelled `spire-server-<id>`.
    Server,
    /// spire-agent: keys `agent-svid-A`/`-B` labelled `spire-agent-<id>`.
    Agent,
}

impl Side {
    /// The default `key_label_prefix`.
    pub fn default_prefix(self) -> &'static str {
        match self {
            Side::Server => "spire-server-",
            Side::Agent => "spire-agent-",
        }
    }
}

/// The `plugin_data` block as written. Unknown keys are refused by the catalogs.
#[derive(Clone, Default, serde::Deserialize)]
pub struct Config {
    /// Absolute path of the PKCS#11 module (shared library), e.g.
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    #[serde(default)]
    pub module_path: String,
    /// The token's label (`CKA_LABEL` of the token, as `softhsm2-util --show-slots` shows).
    #[serde(default)]
    pub token_label: String,
    /// The slot ID of the token (instead of `token_label`).
    #[serde(default)]
    pub slot_id: Option<u64>,
    /// The user PIN.
    #[serde(default)]
    pub user_pin: String,
    /// A file holding the user PIN (one trailing newline is ignored).
    #[serde(default)]
    pub user_pin_file: String,
    /// Prefix of the label of every key object this KeyManager creates and uses; the label is
    /// the prefix followed by SPIRE's key ID.
    #[serde(default)]
    pub key_label_prefix: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("module_path", &self.module_path)
            .field("token_label", &self.token_label)
            .field("slot_id", &self.slot_id)
            .field("user_pin", &redacted(&self.user_pin))
            .field("user_pin_file", &self.user_pin_file)
            .field("key_label_prefix", &self.key_label_prefix)
            .finish()
    }
}

fn redacted(pin: &str) -> &'static str {
    if pin.is_empty() { "" } else { "<redacted>" }
}

/// How the token is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token whose label is this (blank padding ignored).
    Label(String),
    /// The token in this slot.
    SlotId(u64),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "{l:?}"),
            TokenSelector::SlotId(id) => write!(f, "in slot {id}"),
        }
    }
}

/// A user PIN. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// The PIN's text, for `C_Login` only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Where the user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// `user_pin`.
    Inline(Pin),
    /// `user_pin_file`, read when the token is opened.
    File(PathBuf),
}

impl PinSource {
    /// The PIN: the inline one, or the file's content without its trailing line break.
    pub fn read(&self) -> Result<Pin, Pkcs11Error> {
        match self {
            PinSource::Inline(pin) => Ok(pin.clone()),
            PinSource::File(path) => read_pin_file(path),
        }
    }
}

fn read_pin_file(path: &Path) -> Result<Pin, Pkcs11Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let failed = |reason: String| Pkcs11Error::PinFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "user_pin_file is accessible by group or others");
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let pin = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if pin.is_empty() {
        return Err(failed("the file is empty".into()));
    }
    Ok(Pin(pin.to_string()))
}

/// A complete, consistent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The module (absolute path).
    pub module_path: PathBuf,
    /// The token.
    pub token: TokenSelector,
    /// The user PIN.
    pub pin: PinSource,
    /// The prefix of every key label.
    pub key_label_prefix: String,
}

/// The most bytes a token label can have (`CK_TOKEN_INFO.label`).
const TOKEN_LABEL_MAX: usize = 32;

impl Config {
    /// Parses the block for `side`; the messages name the offending keys.
    pub fn parse(&self, side: Side) -> Result<Settings, Pkcs11Error> {
        let bad = |m: &str| Err(Pkcs11Error::Config(m.to_string()));
        if self.module_path.is_empty() {
            return bad("module_path is required");
        }
        let module_path = PathBuf::from(&self.module_path);
        if !module_path.is_absolute() {
            return bad("module_path must be an absolute path");
        }
        let token = match (self.token_label.is_empty(), self.slot_id) {
            (false, None) => {
                if self.token_label.len() > TOKEN_LABEL_MAX {
                    return bad("token_label must be at most 32 bytes long");
                }
                TokenSelector::Label(self.token_label.clone())
            }
            (true, Some(id)) => TokenSelector::SlotId(id),
            (true, None) => return bad("one of token_label or slot_id is required"),
            (false, Some(_)) => return bad("token_label and slot_id are mutually exclusive"),
        };
        let pin = match (self.user_pin.is_empty(), self.user_pin_file.is_empty()) {
            (false, true) => PinSource::Inline(Pin(self.user_pin.clone())),
            (true, false) => PinSource::File(PathBuf::from(&self.user_pin_file)),
            (true, true) => return bad("one of user_pin or user_pin_file is required"),
            (false, false) => return bad("user_pin and user_pin_file are mutually exclusive"),
        };
        let key_label_prefix = self
            .key_label_prefix
            .clone()
            .unwrap_or_else(|| side.default_prefix().to_string());
        if key_label_prefix.chars().any(char::is_control) {
            return bad("key_label_prefix must not contain control characters");
        }
        Ok(Settings {
            module_path,
            token,
            pin,
            key_label_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn base() -> Config {
        Config {
            module_path: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "spire".into(),
            user_pin: "1234".into(),
            ..Config::default()
        }
    }

    fn err(c: &Config) -> String {
        c.parse(Side::Server).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_choices() {
        let s = base().parse(Side::Server).unwrap();
        assert_eq!(s.key_label_prefix, "spire-server-");
        assert_eq!(s.token, TokenSelector::Label("spire".into()));
        assert_eq!(
            base().parse(Side::Agent).unwrap().key_label_prefix,
            "spire-agent-"
        );
        let c = Config {
            token_label: String::new(),
            slot_id: Some(7),
            key_label_prefix: Some("b-".into()),
            ..base()
        };
        let s = c.parse(Side::Agent).unwrap();
        assert_eq!(s.token, TokenSelector::SlotId(7));
        assert_eq!(s.key_label_prefix, "b-");
    }

    #[test]
    fn incomplete_or_contradictory_blocks_are_refused() {
        let mut c = base();
        c.module_path = String::new();
        assert_eq!(err(&c), "module_path is required");
        c.module_path = "libsofthsm2.so".into();
        assert_eq!(err(&c), "module_path must be an absolute path");
        let mut c = base();
        c.token_label = String::new();
        assert_eq!(err(&c), "one of token_label or slot_id is required");
        c.token_label = "x".into();
        c.slot_id = Some(1);
        assert_eq!(err(&c), "token_label and slot_id are mutually exclusive");
        c.slot_id = None;
        c.token_label = "x".repeat(33);
        assert_eq!(err(&c), "token_label must be at most 32 bytes long");
        let mut c = base();
        c.user_pin = String::new();
        assert_eq!(err(&c), "one of user_pin or user_pin_file is required");
        c.user_pin = "1".into();
        c.user_pin_file = "/x".into();
        assert_eq!(err(&c), "user_pin and user_pin_file are mutually exclusive");
    }

    #[test]
    fn the_pin_never_shows_in_debug_output() {
        let c = base();
        assert!(!format!("{c:?}").contains("1234"));
        let s = c.parse(Side::Server).unwrap();
        assert!(!format!("{s:?}").contains("1234"), "{s:?}");
    }

    #[test]
    fn pin_files_lose_one_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        for (text, want) in [
            ("1234\n", "1234"),
            ("1234\r\n", "1234"),
            ("1234", "1234"),
            (" 12 34 \n\n", " 12 34 \n"),
        ] {
            std::fs::write(&path, text).unwrap();
            let pin = PinSource::File(path.clone()).read().unwrap();
            assert_eq!(pin.expose(), want);
        }
        std::fs::write(&path, "\n").unwrap();
        let e = PinSource::File(path.clone())
            .read()
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("the file is empty"), "{e}");
        let e = PinSource::File(dir.path().join("none"))
            .read()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unable to read user_pin_file"), "{e}");
    }
}
