#!/usr/bin/env bash
# Runs the side-by-side benchmark harness: builds our binaries and the harness in release
# mode, builds (or reuses) reference SPIRE 1.13.3, then runs `spire-bench` with the given
# arguments, by default every scenario at the default sizes, writing bench/RESULTS.md.
#
# Usage: scripts/bench.sh [SCENARIOS] [spire-bench flags]
#   scripts/bench.sh                       # all scenarios, writes bench/RESULTS.md
#   scripts/bench.sh all --smoke           # tiny sizes, report on stdout only
#   scripts/bench.sh signing,workload      # some scenarios, report on stdout only
set -euo pipefail
cd "$(dirname "$0")/.."

reference="$(conformance/build-reference.sh)"
# The Go SDK plugins of the `plugins` scenario.
SPIRE_RS_GOPLUGINS_DIR="$(conformance/goplugins/build.sh)"
export SPIRE_RS_GOPLUGINS_DIR
cargo build --locked --release -p spire-server -p spire-agent -p spire-bench >&2
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"

if [ $# -eq 0 ]; then
    set -- all --out bench/RESULTS.md
fi
exec "$target/spire-bench" "$@" --reference-dir "$reference" --ours-dir "$target"
