//! The `healthcheck` and `logger` commands.

use crate::harness::*;

pub(crate) fn healthcheck_and_logger(c: &mut Ctx) {
    c.cmp(&["healthcheck"]);
    c.cmp(&["healthcheck", "-verbose"]);
    c.cmp(&["healthcheck", "-shallow", "-verbose"]);
    c.cmp(&["logger", "get"]);
    c.cmp_json(&["logger", "get", "-output", "json"]);
    c.cmp(&["logger", "set", "-level", "info"]);
    c.cmp(&["logger", "set", "-level", "WARN"]);
    c.cmp(&["logger", "get"]);
    c.cmp(&["logger", "set", "-level", "warning"]);
    c.cmp_json(&["logger", "set", "-level", "trace", "-output", "json"]);
    c.cmp(&["logger", "set", "-level", "panic"]);
    c.cmp(&["logger", "set", "-level", "Fatal"]);
    c.cmp(&["logger", "set", "-level", "error"]);
    c.cmp(&["logger", "set", "-level", "verbose"]);
    c.cmp(&["logger", "reset"]);
    c.cmp_json(&["logger", "reset", "-output", "json"]);
    c.cmp(&["logger", "get"]);
}
