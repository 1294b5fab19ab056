//! SPIRE's `agent_path_template`: Go text/template restricted to literal text and
//! `{{ .Field }}` substitutions (what SPIRE's documentation and defaults use), with
//! `missingkey=error` semantics: a field the data lacks is an error.

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
    /// Parses `text`.
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
            let action = after[..end].trim();
            let field = action
                .strip_prefix('.')
                .filter(|f| {
                    !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
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

    /// Renders with `values`; `type_name` names the data in the error, as Go does.
    pub fn render(
        &self,
        values: &BTreeMap<&str, String>,
        type_name: &str,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(values.get(f.as_str()).ok_or_else(|| {
                    format!(
                        "template: agent-path: executing \"agent-path\" at <.{f}>: can't evaluate field {f} in type {type_name}"
                    )
                })?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_refuses_unknown_ones() {
        let t = PathTemplate::parse("/{{ .PluginName }}/{{.ProjectID}}/x").unwrap();
        let mut v = BTreeMap::new();
        v.insert("PluginName", "gcp_iit".to_string());
        v.insert("ProjectID", "p".to_string());
        assert_eq!(t.render(&v, "T").unwrap(), "/gcp_iit/p/x");
        let t = PathTemplate::parse("/{{ .Nope }}").unwrap();
        assert!(
            t.render(&v, "T")
                .unwrap_err()
                .contains("can't evaluate field Nope")
        );
        assert!(PathTemplate::parse("/{{ .A ").is_err());
        assert!(PathTemplate::parse("/{{ printf }}").is_err());
    }
}
