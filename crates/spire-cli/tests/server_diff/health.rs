//! The `healthcheck` and `logger` commands.

use crate::harness::*;

pub(crate) fn healthcheck_and_logger(c: &mut Ctx) {
    c.cmp(&["healthcheck"]);
    c.cmp(&["healthcheck", "-verbose"]);
    c.cmp(&["healthcheck", "-shallow", "-verbose"]);
    c.cmp(&["logger", "get"]);
    c.cmp_json(&args("logger get -output json"));
    c.cmp(&args("logger set -level info"));
    c.cmp(&args("logger set -level WARN"));
    c.cmp(&["logger", "get"]);
    c.cmp(&args("logger set -level warning"));
    c.cmp_json(&args("logger set -level trace -output json"));
    c.cmp(&args("logger set -level panic"));
    c.cmp(&args("logger set -level Fatal"));
    c.cmp(&args("logger set -level error"));
    c.cmp(&args("logger set -level verbose"));
    c.cmp(&["logger", "reset"]);
    c.cmp_json(&args("logger reset -output json"));
    c.cmp(&["logger", "get"]);
}
