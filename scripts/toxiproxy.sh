#!/usr/bin/env bash
# Builds toxiproxy (Shopify's TCP fault-injection proxy) from the Go module proxy, once per
# machine, into a cache directory keyed by version, and prints the directory holding
# `toxiproxy-server` and `toxiproxy-cli` on stdout (progress on stderr). The database fault
# tests start the server on a port of their own and drive its HTTP API.
#
# Usage: scripts/toxiproxy.sh
# Env:   TOXIPROXY_VERSION (default v2.12.0), SPIRE_RS_CACHE (default ~/.cache/spire-rs)
set -euo pipefail

version="${TOXIPROXY_VERSION:-v2.12.0}"
cache="${SPIRE_RS_CACHE:-$HOME/.cache/spire-rs}/toxiproxy-$version"
bin="$cache/bin"
mkdir -p "$cache"
# Tests run in parallel: one build at a time, the others wait for it.
exec 9>"$cache/.lock"
flock 9

if [[ -x "$bin/toxiproxy-server" && -x "$bin/toxiproxy-cli" ]]; then
    echo "$bin"
    exit 0
fi
command -v go >/dev/null || { echo "toxiproxy.sh: go is required to build toxiproxy" >&2; exit 1; }
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(
    mkdir -p "$tmp/mod" "$tmp/bin"
    cd "$tmp/mod"
    export GOFLAGS=-mod=mod
    # The proxy's version list may be refused or partial here: pin the version in a module
    # of our own and install from there.
    go mod init spire-rs-toxiproxy >/dev/null 2>&1
    go get -tool "github.com/Shopify/toxiproxy/v2/cmd/server@$version" \
        "github.com/Shopify/toxiproxy/v2/cmd/cli@$version"
    GOBIN="$tmp/bin" go install github.com/Shopify/toxiproxy/v2/cmd/server \
        github.com/Shopify/toxiproxy/v2/cmd/cli
) >&2
mv "$tmp/bin/server" "$tmp/bin/toxiproxy-server"
mv "$tmp/bin/cli" "$tmp/bin/toxiproxy-cli"
# Whole or not at all: a half-built cache is never used.
rm -rf "$bin"
mv "$tmp/bin" "$bin"
echo "$bin"
