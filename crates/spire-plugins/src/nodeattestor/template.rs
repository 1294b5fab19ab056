//! A small subset of Go's text/template, enough for SPIRE's `agent_path_template`: literal
//! text and `{{ .Field }}` / `{{ .A.B }}` substitutions from a flat map of dotted names.

use std::collections::BTreeMap;

/// A parsed agent path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

impl PathTemplate {
    /// Parses `text`. Only field references are supported inside `{{ }}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed action in {text:?}"))?;
            let action = after[..end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            let field = action
                .strip_prefix('.')
                .filter(|f| {
                    !f.is_empty()
                        && f.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                })
                .ok_or_else(|| format!("unsupported template action {{{{{action}}}}}"))?;
            parts.push(Part::Field(field.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Renders with `values`; a missing field is an error (Go prints `<no value>`, which
    /// would make an ID that no operator intended).
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(
                    values
                        .get(f)
                        .ok_or_else(|| format!("template field .{f} has no value"))?,
                ),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields() {
        let t = PathTemplate::parse("/{{ .PluginName }}/{{.Subject.CommonName}}-x").unwrap();
        let mut v = BTreeMap::new();
        v.insert("PluginName".to_string(), "x509pop".to_string());
        v.insert("Subject.CommonName".to_string(), "node".to_string());
        assert_eq!(t.render(&v).unwrap(), "/x509pop/node-x");
        v.remove("Subject.CommonName");
        assert!(t.render(&v).is_err());
        assert!(PathTemplate::parse("/{{ .A ").is_err());
        assert!(PathTemplate::parse("/{{ printf \"x\" }}").is_err());
    }
}
