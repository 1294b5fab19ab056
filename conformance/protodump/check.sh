#!/usr/bin/env bash
# Regenerates the wire golden file from the reference Go modules and diffs it
# against the committed copy. With --update, overwrites the committed copy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
golden="$here/../../crates/spire-proto/tests/golden/wire.txt"
fresh="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$fresh" "$log"' EXIT

if ! (cd "$here" && go run . >"$fresh" 2>"$log"); then
    cat "$log" >&2
    echo "protodump: go run failed" >&2
    exit 1
fi

if [[ "${1:-}" == "--update" ]]; then
    cp "$fresh" "$golden"
    echo "protodump: updated $golden"
    exit 0
fi

if diff -u "$golden" "$fresh"; then
    echo "protodump: golden file is up to date ($(grep -vc '^#' "$golden") facts)"
else
    echo "protodump: golden file differs from the reference; run $0 --update if the change is intended" >&2
    exit 1
fi
