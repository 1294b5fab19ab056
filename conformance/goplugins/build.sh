#!/usr/bin/env bash
# Builds the external test plugins (SPIRE plugin SDK, Go) once per machine into a cache
# directory keyed by a hash of their sources, and prints that directory: one executable per
# plugin, named after its folder here (e.g. workloadattestor-pidinfo).
# Env: SPIRE_RS_GOPLUGINS_CACHE (default ~/.cache/spire-rs/goplugins)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "go is required to build the test plugins" >&2; exit 1; }
cd "$here"
sum="$(find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)"
cache="${SPIRE_RS_GOPLUGINS_CACHE:-$HOME/.cache/spire-rs/goplugins}"
# Scenarios run in parallel: one build at a time, the others wait for it.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
out="$cache/$sum"
if [[ ! -f "$out/.complete" ]]; then
    mkdir -p "$out"
    for dir in */; do
        name="${dir%/}"
        [[ -f "$name/main.go" ]] || continue
        GOFLAGS=-mod=mod go build -o "$out/$name.tmp" "./$name" >&2
        mv "$out/$name.tmp" "$out/$name"
    done
    touch "$out/.complete"
fi
echo "$out"
