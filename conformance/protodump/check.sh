#!/usr/bin/env bash
# Regenerates the wire golden file from the reference Go modules and diffs it
# against the committed copy. With --update, overwrites the committed copy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
goldens="$here/../../crates/spire-proto/tests/golden"
fresh="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$fresh" "$log"' EXIT

# <module dir> <golden file>: SPIRE's packages, then the Envoy SDS subset (its own module,
# so Envoy's dependencies do not move the versions SPIRE's facts come from).
status=0
for pair in ".:wire.txt" "envoy:wire-envoy.txt"; do
    dir="$here/${pair%%:*}"
    golden="$goldens/${pair#*:}"
    if ! (cd "$dir" && go run . >"$fresh" 2>"$log"); then
        cat "$log" >&2
        echo "protodump: go run failed in $dir" >&2
        exit 1
    fi
    if [[ "${1:-}" == "--update" ]]; then
        cp "$fresh" "$golden"
        echo "protodump: updated $golden"
    elif diff -u "$golden" "$fresh"; then
        echo "protodump: $(basename "$golden") is up to date ($(grep -vc '^#' "$golden") facts)"
    else
        echo "protodump: $(basename "$golden") differs from the reference; run $0 --update if the change is intended" >&2
        status=1
    fi
done
exit $status
