#!/usr/bin/env bash
# Builds the Delegated Identity API client (spire-api-sdk's Go stubs at the version SPIRE
# 1.13.3 requires, plus go-spiffe for verification) once into a cache directory and prints
# the binary's path. Rebuilds when main.go, go.mod or go.sum change.
# Env: SPIRE_RS_DELEGATEDCLIENT_CACHE (default ~/.cache/spire-rs/delegatedclient)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "go is required to build the delegated identity client" >&2; exit 1; }
# Static (CGO_ENABLED=0), like the go-spiffe client.
sum="$( (cat "$here/main.go" "$here/go.mod" "$here/go.sum"; echo static) | sha256sum | cut -c1-16)"
cache="${SPIRE_RS_DELEGATEDCLIENT_CACHE:-$HOME/.cache/spire-rs/delegatedclient}"
bin="$cache/delegatedclient-$sum"
if [[ ! -x "$bin" ]]; then
    mkdir -p "$cache"
    (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$bin.tmp" .) >&2
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
