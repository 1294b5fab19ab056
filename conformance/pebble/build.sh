#!/usr/bin/env bash
# Builds pebble (a small ACME server for tests, by Let's Encrypt) and pebble-challtestsrv
# (its DNS/challenge test server) from the Go module proxy, once per machine, into a cache
# directory keyed by version. Prints the cache directory on stdout: it holds bin/pebble,
# bin/pebble-challtestsrv and pebble.minica.pem (the root pebble's own TLS listener uses).
#
# Usage: conformance/pebble/build.sh
# Env:   PEBBLE_VERSION (default v2.10.3), PEBBLE_CACHE (default ~/.cache/spire-rs/pebble)
set -euo pipefail

version="${PEBBLE_VERSION:-v2.10.3}"
cache="${PEBBLE_CACHE:-$HOME/.cache/spire-rs/pebble}/$version"
# Scenarios run in parallel: one build at a time, the others wait for it.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
bin="$cache/bin"

if [[ -x "$bin/pebble" && -x "$bin/pebble-challtestsrv" && -f "$cache/pebble.minica.pem" ]]; then
    echo "$cache"
    exit 0
fi
command -v go >/dev/null || { echo "go is required to build pebble" >&2; exit 1; }
(
    mkdir -p "$cache/mod" "$bin"
    cd "$cache/mod"
    export GOFLAGS=-mod=mod
    # `go install pkg@version` needs the proxy's version list, which it may refuse (403):
    # add the tools to a module of our own and install from there.
    [[ -f go.mod ]] || go mod init spire-rs-pebble >/dev/null 2>&1
    go get -tool "github.com/letsencrypt/pebble/v2/cmd/pebble@$version" \
        "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$version"
    GOBIN="$bin" go install github.com/letsencrypt/pebble/v2/cmd/pebble \
        github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv
    src="$(go list -m -f '{{.Dir}}' "github.com/letsencrypt/pebble/v2")"
    cp "$src/test/certs/pebble.minica.pem" "$cache/pebble.minica.pem"
    cp "$src/test/certs/localhost/cert.pem" "$cache/localhost.cert.pem"
    cp "$src/test/certs/localhost/key.pem" "$cache/localhost.key.pem"
    chmod 0644 "$cache"/*.pem
) >&2
echo "$cache"
