#!/usr/bin/env bash
# Builds the Envoy SDS conformance client (go-control-plane) once into a cache directory and
# prints the binary's path. Rebuilds when main.go, go.mod or go.sum change.
# Env: SPIRE_RS_SDSCLIENT_CACHE (default ~/.cache/spire-rs/sdsclient)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "go is required to build the SDS client" >&2; exit 1; }
# Static (CGO_ENABLED=0), so it also runs inside a minimal container image.
sum="$( (cat "$here/main.go" "$here/go.mod" "$here/go.sum"; echo static) | sha256sum | cut -c1-16)"
cache="${SPIRE_RS_SDSCLIENT_CACHE:-$HOME/.cache/spire-rs/sdsclient}"
bin="$cache/sdsclient-$sum"
if [[ ! -x "$bin" ]]; then
    mkdir -p "$cache"
    (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$bin.tmp" .) >&2
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
