//! Decoding errors: hcl's message and the position it points at.

use super::*;

/// An error from decoding: hcl's message and, when known, the position it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub(super) pos: Option<Pos>,
    pub(super) message: String,
    /// Whether the message already names the key (set once a field's context was added).
    pub(super) named: bool,
}

impl DecodeError {
    pub(crate) fn at(node: &Node, message: String) -> DecodeError {
        DecodeError {
            pos: Some(node.pos()),
            message,
            named: true,
        }
    }

    pub(crate) fn plain(message: String) -> DecodeError {
        DecodeError {
            pos: None,
            message,
            named: true,
        }
    }

    /// The position the error points at, if any.
    pub fn pos(&self) -> Option<Pos> {
        self.pos
    }

    /// The message without the `At L:C:` prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The dotted decoder path of the key (`root.server.bind_port`), when the message starts
    /// with one.
    pub fn key_path(&self) -> Option<&str> {
        let head = self.message.split(": ").next()?;
        (head.starts_with("root") && !head.contains(' ')).then_some(head)
    }

    pub(crate) fn add_context(mut self, name: &str, pos: Pos) -> DecodeError {
        if !self.named {
            self.message = format!("{name}: {}", self.message);
            self.named = true;
            if self.pos.is_none() {
                self.pos = Some(pos);
            }
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(pos) => write!(f, "At {pos}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError {
            pos: None,
            message: msg.to_string(),
            named: false,
        }
    }
}
