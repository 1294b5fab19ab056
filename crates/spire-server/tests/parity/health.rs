//! Health checks and the logger level.

use crate::harness::*;

pub(crate) fn health_and_logger(p: &mut Parity) {
    p.cmp(&["healthcheck"]);
    p.cmp(&["healthcheck", "-verbose"]);
    p.cmp(&["healthcheck", "-shallow", "-verbose"]);
    p.both(&["logger", "get"]);
    for level in [
        "info", "WARN", "warning", "trace", "panic", "Fatal", "error", "debug", "verbose",
    ] {
        p.both(&["logger", "set", "-level", level]);
        p.both(&["logger", "get"]);
    }
    p.cmp(&["logger", "set"]);
    p.both(&["logger", "reset"]);
    p.both(&["logger", "get"]);
}
