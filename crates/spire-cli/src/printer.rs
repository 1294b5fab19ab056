//! SPIRE's `cliprinter`: the `-output pretty|json` flag and the JSON
//! printers (protojson with proto names and unpopulated fields, nulls
//! removed, re-encoded by `encoding/json`).

use serde::Serialize;
use spire_goflag::{Flag, FlagSet, Io, Parsed, Value, ValueError};

use crate::gojson::{marshal_go, remove_nulls};

/// The usage text of `-output`.
pub(crate) const OUTPUT_USAGE: &str = "Desired output format (pretty, json); default: pretty.";

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Pretty,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Pretty => "pretty",
        }
    }
}

/// `cliprinter.FormatterFlag`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutputFlag(Option<Format>);

impl Value for OutputFlag {
    fn set(&mut self, raw: &str) -> Result<(), ValueError> {
        if let Some(prev) = self.0
            && prev.name() != raw
        {
            return Err(ValueError::new(format!(
                "the output format has already been set to {}",
                crate::gofmt::quote(prev.name())
            )));
        }
        let format = match raw.to_lowercase().as_str() {
            "json" => Format::Json,
            "pretty" | "prettyprint" => Format::Pretty,
            _ => {
                return Err(ValueError::new(format!(
                    "bad formatter flag: unknown format option: {}",
                    crate::gofmt::quote(raw)
                )));
            }
        };
        self.0 = Some(format);
        Ok(())
    }

    fn to_go_string(&self) -> String {
        self.0.unwrap_or(Format::Pretty).name().to_owned()
    }

    fn zero_string(&self) -> String {
        "pretty".to_owned()
    }
}

/// Defines `-output` on `fs`.
pub(crate) fn output_flag(fs: &mut FlagSet) -> Flag<OutputFlag> {
    fs.var("output", OutputFlag::default(), OUTPUT_USAGE)
}

/// Whether `-output json` was chosen.
pub(crate) fn is_json(m: &Parsed, flag: &Flag<OutputFlag>) -> bool {
    m.get(flag).0 == Some(Format::Json)
}

/// A message as SPIRE's protojson printer sees it (nulls removed).
pub(crate) fn proto_value<T: Serialize>(msg: &T) -> Result<serde_json::Value, String> {
    let mut v = serde_json::to_value(msg).map_err(|e| e.to_string())?;
    remove_nulls(&mut v);
    Ok(v)
}

/// `protojson.Print`: one message as an object, several as an array,
/// followed by a newline.
pub(crate) fn print_json(io: &mut Io<'_>, values: Vec<serde_json::Value>) -> Result<(), String> {
    if values.is_empty() {
        return Ok(());
    }
    let doc = if values.len() == 1 {
        values.into_iter().next().unwrap_or_default()
    } else {
        serde_json::Value::Array(values)
    };
    let mut out = String::new();
    marshal_go(&doc, &mut out);
    out.push('\n');
    io.stdout
        .write_all(out.as_bytes())
        .map_err(|e| e.to_string())
}

/// Prints one protobuf message as JSON.
pub(crate) fn print_proto<T: Serialize>(io: &mut Io<'_>, msg: &T) -> Result<(), String> {
    let v = proto_value(msg)?;
    print_json(io, vec![v])
}

/// `structjson.Print` of text already laid out as Go's `json.Marshal`
/// would (struct field order).
pub(crate) fn print_struct_json(io: &mut Io<'_>, text: &str) -> Result<(), String> {
    writeln!(io.stdout, "{text}").map_err(|e| e.to_string())
}
