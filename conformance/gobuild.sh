#!/usr/bin/env bash
# Builds one of the Go conformance clients (a module directory beside this script holding
# main.go, go.mod and go.sum) once into ~/.cache/spire-rs/<name>, keyed by a hash of those
# three files, and prints the binary's path. Static (CGO_ENABLED=0), so the binaries also
# run inside minimal container images.
#
# Usage: conformance/gobuild.sh NAME "WHAT" [CACHE_DIR]
#   NAME      the module directory (goclient, sdsclient, delegatedclient, tmplclient)
#   WHAT      how the client is named in the error when Go is missing
#   CACHE_DIR where to keep the binary (default ~/.cache/spire-rs/NAME)
set -euo pipefail
name="$1" what="$2"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/$name" && pwd)"
command -v go >/dev/null || { echo "go is required to build the $what" >&2; exit 1; }
sum="$( (cat "$src/main.go" "$src/go.mod" "$src/go.sum"; echo static) | sha256sum | cut -c1-16)"
cache="${3:-$HOME/.cache/spire-rs/$name}"
bin="$cache/$name-$sum"
mkdir -p "$cache"
# Scenarios run in parallel: one build at a time per cache, the others wait for it.
exec 9>"$cache/.lock"
flock 9
if [[ ! -x "$bin" ]]; then
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$bin.tmp.$$" .) >&2
    mv "$bin.tmp.$$" "$bin"
fi
echo "$bin"
