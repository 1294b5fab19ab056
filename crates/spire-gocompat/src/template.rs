//! A small subset of Go's text/template, enough for SPIRE's `agent_path_template`: literal
//! text and `{{ .Field }}` / `{{ .A.B }}` substitutions (trim markers `{{-`/`-}}` accepted)
//! from a flat map of dotted names. A field the data lacks is an error worded as Go's
//! (SPIRE's templates execute on structs, where an unknown field cannot render), never
//! `<no value>`, which would make an agent ID no operator intended.

use std::borrow::Borrow;
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

    /// Renders with `values`; `type_name` names the data (`x509pop.agentPathTemplateData`)
    /// in the error, as Go does.
    pub fn render<K: Borrow<str> + Ord>(
        &self,
        values: &BTreeMap<K, String>,
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
        let t =
            PathTemplate::parse("/{{ .PluginName }}/{{.Subject.CommonName}}-{{- .X -}}").unwrap();
        let mut v = BTreeMap::new();
        v.insert("PluginName".to_string(), "x509pop".to_string());
        v.insert("Subject.CommonName".to_string(), "node".to_string());
        v.insert("X".to_string(), "x".to_string());
        assert_eq!(t.render(&v, "T").unwrap(), "/x509pop/node-x");
        v.remove("Subject.CommonName");
        assert_eq!(
            t.render(&v, "x509pop.agentPathTemplateData").unwrap_err(),
            "template: agent-path: executing \"agent-path\" at <.Subject.CommonName>: can't evaluate field Subject.CommonName in type x509pop.agentPathTemplateData"
        );
        let mut by_str: BTreeMap<&str, String> = BTreeMap::new();
        by_str.insert("ProjectID", "p".into());
        let t = PathTemplate::parse("/{{ .ProjectID }}/x").unwrap();
        assert_eq!(t.render(&by_str, "T").unwrap(), "/p/x");
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        assert!(PathTemplate::parse("/{{ printf \"x\" }}").is_err());
        assert!(PathTemplate::parse("/{{ .A").is_err());
        assert!(PathTemplate::parse("/{{ . }}").is_err());
    }
}
